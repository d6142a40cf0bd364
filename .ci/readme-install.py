#!/usr/bin/env python3
"""Builds each README install recipe in a fresh project, as a newcomer would.

For every `<!-- install: NAME -->` block of `cargo add` lines in README.md, and the
`<!-- example: NAME -->` Rust block that goes with it: `cargo new` in a temporary directory,
the `cargo add` lines as written (with `tower-breaker` taken from this checkout by `--path`),
the example as `src/main.rs`, then `cargo build`. What is built is what the README shows.
The projects share one target directory (`target/readme-install`, or CARGO_TARGET_DIR) so
their common dependencies compile once.

    python3 .ci/readme-install.py [NAME ...]    # all recipes by default
"""
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

root = pathlib.Path(__file__).resolve().parent.parent
readme = (root / "README.md").read_text()


def blocks(kind):
    """{name: code} for each `<!-- kind: name -->` marker followed by a fenced block."""
    pattern = re.compile(r"<!-- " + kind + r": ([a-z0-9_-]+) -->\n+```[^\n]*\n(.*?)\n```", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(readme)}


installs, examples = blocks("install"), blocks("example")
if not installs:
    sys.exit("README.md: no `<!-- install: NAME -->` blocks")
if set(installs) != set(examples):
    sys.exit(f"README.md: install blocks {sorted(installs)} but examples {sorted(examples)}")
names = sys.argv[1:] or sorted(installs)
env = dict(os.environ)
env.setdefault("CARGO_TARGET_DIR", str(root / "target" / "readme-install"))

for name in names:
    print(f"--- README recipe: {name}", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"tower-breaker-{name}-") as tmp:
        app = pathlib.Path(tmp) / "app"
        subprocess.run(["cargo", "new", "--quiet", "--bin", str(app)], check=True, env=env)
        for line in installs[name].splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            words = shlex.split(line)
            if words[:2] != ["cargo", "add"]:
                sys.exit(f"README.md, recipe {name}: not a `cargo add` line: {line}")
            words = [f"--path={root}" if w == "tower-breaker" else w for w in words]
            print("   ", " ".join(words), flush=True)
            subprocess.run(words + ["--quiet"], cwd=app, check=True, env=env)
        (app / "src" / "main.rs").write_text(examples[name] + "\n")
        subprocess.run(["cargo", "build", "--quiet"], cwd=app, check=True, env=env)
    print(f"    built", flush=True)
print(f"README recipes built: {', '.join(names)}")
