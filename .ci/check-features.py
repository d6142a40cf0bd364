#!/usr/bin/env python3
"""The feature tables in src/lib.rs and README.md against Cargo.toml's [features].

Fails (exit 1) when a table misses a feature, names one that does not exist, or when `full`
does not enable every feature (directly or through the features it enables).
Run from anywhere: python3 .ci/check-features.py
"""
import pathlib
import re
import sys
import tomllib

root = pathlib.Path(__file__).resolve().parent.parent
features = tomllib.loads((root / "Cargo.toml").read_text())["features"]
declared = set(features) - {"default"}


def table(path, heading, prefix):
    """Feature names in the first column of the table under `heading` (up to the next heading)."""
    names, inside = set(), False
    for line in (root / path).read_text().splitlines():
        text = line[len(prefix):].strip() if line.startswith(prefix) else None
        if text is None:
            if inside and line.startswith("#"):
                break
            continue
        if text.startswith("#"):
            if inside:
                break
            inside = text.lstrip("#").strip() == heading
            continue
        m = re.match(r"\|\s*`([a-z0-9-]+)`\s*\|", text)
        if inside and m:
            names.add(m.group(1))
    return names


def enabled_by(feature, seen=None):
    """Every feature of this crate that `feature` turns on."""
    seen = set() if seen is None else seen
    for item in features.get(feature, []):
        if "/" in item or item.startswith("dep:"):
            continue
        if item not in seen:
            seen.add(item)
            enabled_by(item, seen)
    return seen


problems = []
for path, heading, prefix in [("src/lib.rs", "Feature flags", "//! "), ("README.md", "Feature flags", "")]:
    listed = table(path, heading, prefix)
    if not listed:
        problems.append(f"{path}: no feature table under `{heading}`")
        continue
    for name in sorted(declared - listed):
        problems.append(f"{path}: the feature table leaves out `{name}`")
    for name in sorted(listed - declared):
        problems.append(f"{path}: the feature table names `{name}`, which Cargo.toml does not declare")
missing = declared - {"full"} - enabled_by("full")
for name in sorted(missing):
    problems.append(f"Cargo.toml: `full` does not enable `{name}`")

for problem in problems:
    print(problem, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"feature tables match Cargo.toml ({len(declared)} features; `full` enables all)")
