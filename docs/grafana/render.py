#!/usr/bin/env python3
"""Draws the Grafana board from a real Prometheus, without Grafana: an HTML page of its panels.

Grafana cannot be installed on the machines this project is built on (their network reaches
crates.io, PyPI, npm and Debian only, and Debian has no Grafana), so this script plays
Grafana's part for the board's screenshot and for checking the board's queries:

- reads the board (docs/grafana/tower-breaker.json by default): its rows and panels, their
  places on the 24-column grid, units, value mappings and thresholds;
- runs every panel's queries against Prometheus's HTTP API (`/api/v1/query_range`), with the
  board's variables filled in as Grafana would (`$name` = all, `$__rate_interval`,
  `$__range`);
- writes one self-contained HTML page (inline SVG, no script) that draws time series, the
  state timeline and the stat panel in Grafana's dark theme.

A panel whose query Prometheus refuses is an error; `--require-data` also fails on a panel
that drew no series, which shows a query that names a series the run never produced.

Usage (a Prometheus scraping a run of `cargo run --all-features --example prometheus --
--serve 127.0.0.1:9898`, see docs/grafana/README.md):

    python3 docs/grafana/render.py --prometheus http://127.0.0.1:9090 \
        --minutes 3 --rate-interval 8s --out target/board.html --require-data
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --window-size=1600,1800 --screenshot=docs/grafana-board.png target/board.html
"""
import argparse
import html
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BOARD = ROOT / "docs/grafana/tower-breaker.json"

WIDTH = 1560  # px of the page's grid
ROW_UNIT = 30  # px per gridPos.h, as Grafana
GAP = 8
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
           "#705da0", "#37872d", "#fade2a", "#447ebc", "#c15c17", "#890f02", "#0a437c"]
NAMED = {"green": "#73bf69", "red": "#f2495c", "yellow": "#fade2a", "orange": "#ff9830",
         "purple": "#b877d9", "blue": "#5794f2"}


# -- queries ----------------------------------------------------------------------------------

def fill(expr, start, end, rate_interval):
    # `$name` is "All" (its `allValue`, `.*`), in each way Grafana writes a variable. `.*` is a
    # regex: an equality matcher on it becomes a regex matcher, or it would match the two
    # characters `.*` and draw nothing.
    expr = re.sub(r"\$\{name(?::\w+)?\}|\[\[name\]\]", "$name", expr)
    expr = re.sub(r'(!?)="\$name"', lambda m: ('!~' if m.group(1) else '=~') + '".*"', expr)
    expr = re.sub(r"\$name\b", ".*", expr)
    expr = expr.replace("$__rate_interval", rate_interval)
    expr = expr.replace("$__range", f"{int(end - start)}s")
    return expr


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    url = f"{prometheus}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            body = json.load(answer)
    except urllib.error.HTTPError as error:
        try:
            body = json.load(error)
        except ValueError:
            raise SystemExit(f"Prometheus answered {error.code} to {expr!r}")
    except urllib.error.URLError as error:
        raise SystemExit(f"no Prometheus at {prometheus}: {error.reason}")
    if body.get("status") != "success":
        raise SystemExit(f"Prometheus refused {expr!r}: {body.get('error')}")
    return body["data"]["result"]


def legend(fmt, metric):
    if not fmt:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


def right_axis_refs(panel):
    """The targets an override puts on the right axis (`custom.axisPlacement: right`)."""
    refs = set()
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        right = any(p.get("id") == "custom.axisPlacement" and p.get("value") == "right"
                    for p in override.get("properties", []))
        if right and matcher.get("id") == "byFrameRefID":
            refs.add(matcher.get("options"))
    return refs


def series_of(panel, prometheus, start, end, step, rate_interval):
    """(legend, points, on the right axis) of each series the panel's queries return."""
    out = []
    right = right_axis_refs(panel)
    for target in panel.get("targets", []):
        expr = fill(target["expr"], start, end, rate_interval)
        for result in query_range(prometheus, expr, start, end, step):
            points = [(float(t), float(v)) for t, v in result["values"]
                      if not math.isnan(float(v)) and not math.isinf(float(v))]
            if points:
                out.append((legend(target.get("legendFormat"), result["metric"]), points,
                            target.get("refId") in right))
    return out


# -- formatting -------------------------------------------------------------------------------

def fmt_value(value, unit):
    if unit == "percentunit":
        return f"{value * 100:.0f}%"
    if unit == "s":
        if value == 0:
            return "0 s"
        if value < 1:
            return f"{value * 1000:.0f} ms"
        return f"{value:.1f} s" if value < 60 else f"{value / 60:.1f} min"
    suffix = " req/s" if unit == "reqps" else ""
    if value == 0:
        return "0" + suffix
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}K{suffix}"
    if abs(value) >= 10 or float(value).is_integer():
        return f"{value:.0f}{suffix}"
    return f"{value:.2g}{suffix}"


def nice_ticks(bottom, top):
    """Round ticks from at most `bottom` (0 or below) to at least `top`."""
    bottom, top = min(bottom, 0), max(top, 0)
    if top - bottom <= 0:
        return [0, 1]
    raw = (top - bottom) / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(bottom / step), math.ceil(top / step)
    return [i * step for i in range(first, last + 1)]


def clock(t):
    return time.strftime("%H:%M:%S", time.localtime(t))


# -- panels -----------------------------------------------------------------------------------

def timeseries_svg(series, unit, start, end, step, w, h):
    has_right = any(r for _, _, r in series)
    left, right, top, bottom = 64, 64 if has_right else 8, 8, 22
    plot_w, plot_h = w - left - right, h - top - bottom

    def axis(on_right):
        values = [v for _, pts, r in series if r == on_right for _, v in pts]
        # Values can be negative (a quota key's level while calls wait for their turn).
        low, high = min(values, default=0), max(values, default=0)
        if unit == "percentunit":
            high = max(high, 1.0) if high > 0.5 else max(high, 0.01)
        ticks = nice_ticks(low, high)
        return ticks, ticks[0], ticks[-1]

    axes = {False: axis(False), True: axis(True)}

    def x(t):
        return left + (t - start) / (end - start) * plot_w

    def y(v, on_right=False):
        _, low, high = axes[on_right]
        return top + plot_h - (v - low) / ((high - low) or 1) * plot_h

    parts = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">']
    for tick in axes[False][0]:
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     'stroke="#2c3235"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">'
                     f'{html.escape(fmt_value(tick, unit))}</text>')
    if has_right:
        for tick in axes[True][0]:
            parts.append(f'<text x="{w - right + 6}" y="{y(tick, True) + 4:.1f}">'
                         f'{html.escape(fmt_value(tick, unit))}</text>')
    for i in range(5):
        t = start + i * (end - start) / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{x(t):.1f}" y="{h - 6}" text-anchor="{anchor}">{clock(t)}</text>')
    for i, (_, pts, on_right) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        # Break the line where Prometheus has no sample (a series that came and went, or a
        # NaN dropped): a gap of more than two of the query's steps.
        runs, run, last = [], [], None
        for t, v in pts:
            if last is not None and t - last > 2.5 * step:
                runs.append(run)
                run = []
            run.append(f"{x(t):.1f},{y(v, on_right):.1f}")
            last = t
        runs.append(run)
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            elif run:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                             f'points="{" ".join(run)}"/>')
    parts.append("</svg>")
    return "".join(parts)


def legend_html(series):
    items = []
    for i, (label, _, on_right) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        label += " (right axis)" if on_right else ""
        items.append(f'<span><i style="background:{colour}"></i>{html.escape(label)}</span>')
    return f'<div class="legend">{"".join(items)}</div>'


def mapping(panel):
    out = {}
    for m in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        if m.get("type") == "value":
            for value, option in m.get("options", {}).items():
                out[float(value)] = (option.get("text", value),
                                     NAMED.get(option.get("color"), option.get("color", "#888")))
    return out


def state_timeline_svg(series, panel, start, end, step, w, h):
    states = mapping(panel)
    label_w = 120
    lane_h = max(14, min(34, (h - 24) // max(1, len(series))))
    parts = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">']

    def x(t):
        return label_w + (t - start) / (end - start) * (w - label_w - 8)

    for lane, (label, pts, _) in enumerate(series):
        y0 = 4 + lane * (lane_h + 4)
        parts.append(f'<text x="{label_w - 8}" y="{y0 + lane_h / 2 + 4:.1f}" text-anchor="end">'
                     f'{html.escape(label)}</text>')
        i = 0
        while i < len(pts):
            j = i
            while j + 1 < len(pts) and pts[j + 1][1] == pts[i][1] and pts[j + 1][0] - pts[j][0] <= 2.5 * step:
                j += 1
            text, colour = states.get(pts[i][1], (fmt_value(pts[i][1], None), "#888"))
            x0, x1 = x(pts[i][0]), x(pts[j][0] + step)
            parts.append(f'<rect x="{x0:.1f}" y="{y0}" width="{max(1.0, x1 - x0):.1f}" '
                         f'height="{lane_h}" fill="{colour}" fill-opacity="0.75"/>')
            if x1 - x0 > 7 * len(text):
                parts.append(f'<text x="{x0 + 4:.1f}" y="{y0 + lane_h / 2 + 4:.1f}" '
                             f'fill="#111217">{html.escape(text)}</text>')
            i = j + 1
    for i in range(5):
        t = start + i * (end - start) / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{x(t):.1f}" y="{h - 6}" text-anchor="{anchor}">{clock(t)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stat_html(series, panel):
    if not series:
        return '<div class="nodata">No data</div>'
    value = series[0][1][-1][1]
    colour = "#73bf69"
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    for s in steps:
        if s.get("value") is None or value >= s["value"]:
            colour = NAMED.get(s.get("color"), s.get("color", colour))
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    return f'<div class="stat" style="color:{colour}">{html.escape(fmt_value(value, unit))}</div>'


# -- page -------------------------------------------------------------------------------------

STYLE = """
body { margin: 0; background: #111217; color: #ccccdc; font: 12px Inter, Helvetica, Arial, sans-serif; }
header { padding: 12px 16px; font-size: 16px; color: #d8d9da; }
header small { color: #8e8e8e; font-size: 12px; margin-left: 12px; }
.grid { position: relative; margin: 0 16px; }
.panel { position: absolute; background: #181b1f; border: 1px solid #2c3235; border-radius: 2px;
         box-sizing: border-box; overflow: hidden; }
.panel h3 { margin: 0; padding: 6px 8px; font-size: 13px; font-weight: 500; color: #d8d9da; }
.row { position: absolute; font-size: 15px; color: #d8d9da; padding-top: 6px; }
svg text { fill: #9fa7b3; font: 11px Inter, Helvetica, Arial, sans-serif; }
.legend { padding: 0 8px; line-height: 16px; }
.legend span { margin-right: 12px; white-space: nowrap; }
.legend i { display: inline-block; width: 12px; height: 3px; margin: 0 4px 3px 0; }
.stat { font-size: 56px; font-weight: 500; text-align: center; margin-top: 30px; }
.nodata { color: #8e8e8e; text-align: center; margin-top: 40px; }
"""


def render(board, prometheus, start, end, rate_interval):
    step = max(1, int((end - start) / 300))
    unit_px = (WIDTH - 0) / 24
    panels_html, empty = [], []
    bottom = 0
    for panel in board["panels"]:
        pos = panel["gridPos"]
        left, top = pos["x"] * unit_px, pos["y"] * ROW_UNIT
        w, h = pos["w"] * unit_px - GAP, pos["h"] * ROW_UNIT - GAP
        bottom = max(bottom, top + h)
        title = html.escape(panel.get("title", ""))
        if panel["type"] == "row":
            panels_html.append(f'<div class="row" style="left:{left}px;top:{top}px">{title}</div>')
            continue
        series = series_of(panel, prometheus, start, end, step, rate_interval)
        if not series:
            empty.append(panel.get("title"))
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        inner_h = int(h - 30)
        if panel["type"] == "stat":
            body = stat_html(series, panel)
        elif not series:
            body = '<div class="nodata">No data</div>'
        elif panel["type"] == "state-timeline":
            body = state_timeline_svg(series, panel, start, end, step, int(w), inner_h)
        else:
            legend_rows = max(1, math.ceil(len(series) / max(1, int(w // 170))))
            chart_h = max(60, inner_h - 16 * legend_rows - 4)
            body = (timeseries_svg(series, unit, start, end, step, int(w), chart_h)
                    + legend_html(series))
        panels_html.append(
            f'<div class="panel" style="left:{left:.0f}px;top:{top}px;width:{w:.0f}px;'
            f'height:{h}px"><h3>{title}</h3>{body}</div>')
    head = (f'<header>{html.escape(board.get("title", "board"))}<small>{clock(start)} to '
            f'{clock(end)} · drawn from Prometheus by docs/grafana/render.py</small></header>')
    page = (f'<!doctype html><meta charset="utf-8"><title>{html.escape(board.get("title", ""))}'
            f'</title><style>{STYLE}</style>{head}<div class="grid" style="height:{bottom + 16}px">'
            f'{"".join(panels_html)}</div>')
    return page, empty


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--board", default=str(BOARD))
    parser.add_argument("--minutes", type=float, default=15, help="the range, ending now")
    parser.add_argument("--end", type=float, help="the range's end (Unix seconds; default now)")
    parser.add_argument("--rate-interval", default="30s",
                        help="$__rate_interval (Grafana: 4 scrape intervals)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--require-data", action="store_true",
                        help="fail when a panel draws no series")
    args = parser.parse_args()
    board = json.loads(Path(args.board).read_text())
    end = args.end or time.time()
    start = end - args.minutes * 60
    page, empty = render(board, args.prometheus.rstrip("/"), start, end, args.rate_interval)
    Path(args.out).write_text(page)
    drawn = sum(1 for p in board["panels"] if p["type"] != "row") - len(empty)
    print(f"{args.out}: {drawn} panels drawn" + (f", no data in: {', '.join(empty)}" if empty else ""))
    if empty and args.require_data:
        sys.exit(1)


if __name__ == "__main__":
    main()
