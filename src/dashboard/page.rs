//! The dashboard's page: one HTML document with its CSS and script inline (no CDN, no build
//! step, works offline). It reads the stream at `events` beside its own address, and writes
//! every name and key with `textContent`, never as HTML.

pub(super) const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tower-breaker dashboard</title>
<style>
  :root { color-scheme: light; --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #f6f8fa; }
  body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0; background: #fff; }
  header { display: flex; align-items: baseline; gap: 1rem; padding: .75rem 1.25rem; border-bottom: 1px solid var(--line); background: var(--bg); }
  header h1 { font-size: 1.1rem; margin: 0; }
  #conn { font-weight: 600; }
  #conn.live { color: #2e7d32; } #conn.down { color: #c62828; }
  #updated { color: var(--muted); }
  main { padding: .5rem 1.25rem 2rem; }
  section { margin-top: 1rem; }
  section[hidden] { display: none; }
  h2 { font-size: 1rem; margin: .5rem 0; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--muted); font-weight: 600; font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .state { display: inline-block; min-width: 6.5rem; text-align: center; color: #fff; border-radius: 999px; padding: .05rem .6rem; font-weight: 600; font-size: .85rem; }
  .chip { display: inline-block; color: #fff; border-radius: 4px; padding: 0 .4rem; margin-right: .3rem; font-size: .8rem; }
  .bar { display: inline-block; width: 6rem; height: .6rem; background: #eaeef2; border-radius: 3px; vertical-align: middle; margin-left: .4rem; overflow: hidden; }
  .bar > span { display: block; height: 100%; background: #1565c0; }
  .bar.queue > span { background: #ef6c00; }
  .more { color: var(--muted); font-style: italic; }
  .sub td { background: #fbfcfd; font-size: .9rem; }
  .sub td:first-child { padding-left: 1.6rem; }
  svg.spark { vertical-align: middle; }
  .empty { color: var(--muted); }
</style>
</head>
<body>
<header>
  <h1>tower-breaker</h1>
  <span id="conn" class="down">connecting…</span>
  <span id="updated"></span>
</header>
<main>
  <p id="nothing" class="empty" hidden>Nothing is registered with this dashboard yet.</p>
  <section id="breakers" hidden>
    <h2>Circuit breakers</h2>
    <table>
      <thead><tr><th>name</th><th>state</th><th class="num">in state</th><th class="num">failure rate</th><th class="num">slow rate</th><th class="num">calls</th><th class="num">failed</th><th class="num">rejected</th><th class="num">next try in</th><th>history</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="bulkheads" hidden>
    <h2>Bulkheads</h2>
    <table>
      <thead><tr><th>name</th><th class="num">running</th><th class="num">waiting</th><th class="num">rejected (full)</th><th class="num">rejected (timeout)</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="adaptive" hidden>
    <h2>Adaptive limits</h2>
    <table>
      <thead><tr><th>name</th><th class="num">limit</th><th class="num">running</th><th class="num">waiting</th><th class="num">rejected</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="keyed" hidden>
    <h2>Keyed breakers</h2>
    <table>
      <thead><tr><th>name / key</th><th>state</th><th class="num">failure rate</th><th class="num">slow rate</th><th class="num">calls</th><th class="num">rejected</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="quotas" hidden>
    <h2>Quotas</h2>
    <table>
      <thead><tr><th>name / key</th><th class="num">requests left</th><th class="num">tokens left</th><th class="num">paused</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="hedges" hidden>
    <h2>Hedges</h2>
    <table>
      <thead><tr><th>name</th><th class="num">calls</th><th class="num">hedges</th><th class="num">hedge rate</th><th class="num">won by hedge</th><th class="num">declined</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>
"use strict";
const COLOURS = { closed: "#2e7d32", half_open: "#f9a825", open: "#c62828", forced_open: "#6a1b9a", rate_limited: "#ef6c00", disabled: "#757575", metrics_only: "#1565c0" };
const LABELS = { closed: "closed", half_open: "half-open", open: "open", forced_open: "forced open", rate_limited: "rate-limited", disabled: "disabled", metrics_only: "metrics only" };
const label = s => LABELS[s] || s;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function num(field, value) { return el("td", { class: "num", "data-field": field }, value); }
function pct(r) { return r === null || r === undefined ? "–" : (r * 100).toFixed(1) + "%"; }
function duration(ms) {
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " m " + String(Math.floor(s % 60)).padStart(2, "0") + " s";
  return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " m";
}
function stateBadge(state, colour) {
  const span = el("span", { class: "state", "data-field": "state" }, label(state));
  span.style.background = colour || COLOURS[state] || "#757575";
  return span;
}
function bar(value, max, cls) {
  const b = el("span", { class: "bar" + (cls ? " " + cls : "") });
  const fill = el("span");
  fill.style.width = (max > 0 ? Math.min(100, 100 * value / max) : 0) + "%";
  b.append(fill);
  return b;
}
function sparkline(history) {
  const NS = "http://www.w3.org/2000/svg", w = 3, h = 24;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", String(Math.max(1, history.length) * w));
  svg.setAttribute("height", String(h));
  history.forEach((p, i) => {
    const rate = p.failure_rate === null ? 0 : p.failure_rate;
    const height = Math.max(3, Math.round(rate * h));
    const r = document.createElementNS(NS, "rect");
    r.setAttribute("x", String(i * w));
    r.setAttribute("y", String(h - height));
    r.setAttribute("width", String(w - 1));
    r.setAttribute("height", String(height));
    r.setAttribute("fill", COLOURS[p.state] || "#757575");
    svg.append(r);
  });
  return svg;
}
function fill(id, rows) {
  const section = document.getElementById(id);
  const body = section.querySelector("tbody");
  body.replaceChildren(...rows);
  section.hidden = rows.length === 0;
  return rows.length;
}
function left(value, limit) {
  if (limit === null || limit === undefined) return "no limit known";
  return Math.floor(value) + " / " + limit;
}

function render(s) {
  let shown = 0;
  shown += fill("breakers", s.breakers.map(b => el("tr", { "data-kind": "breaker", "data-name": b.name, "data-state": b.state },
    el("td", { "data-field": "name" }, b.name),
    el("td", {}, stateBadge(b.state, b.colour)),
    num("in_state", (b.in_state_at_least ? "≥ " : "") + duration(b.in_state_ms)),
    num("failure_rate", pct(b.failure_rate)),
    num("slow_call_rate", pct(b.slow_call_rate)),
    num("calls", b.calls),
    num("failed_calls", b.failed_calls),
    num("rejected", b.rejected),
    num("retry_after", b.retry_after_ms === null ? "–" : duration(b.retry_after_ms)),
    el("td", { "data-field": "history" }, sparkline(b.history)))));
  shown += fill("bulkheads", s.bulkheads.map(b => el("tr", { "data-kind": "bulkhead", "data-name": b.name },
    el("td", { "data-field": "name" }, b.name),
    el("td", { class: "num" }, el("span", { "data-field": "active" }, b.active + " / " + b.max_concurrent), bar(b.active, b.max_concurrent)),
    el("td", { class: "num" }, el("span", { "data-field": "queued" }, b.queued + " / " + b.max_queue), bar(b.queued, b.max_queue, "queue")),
    num("rejected_full", b.rejected_full),
    num("rejected_timeout", b.rejected_timeout))));
  shown += fill("adaptive", s.adaptive.map(a => el("tr", { "data-kind": "adaptive", "data-name": a.name },
    el("td", { "data-field": "name" }, a.name),
    num("limit", a.limit),
    num("active", a.active),
    num("queued", a.queued),
    num("rejected", a.rejected_full + a.rejected_timeout))));
  const keyedRows = [];
  for (const k of s.keyed) {
    const chips = el("td", { colspan: "5", "data-field": "states" });
    for (const [state, n] of Object.entries(k.states)) {
      const c = el("span", { class: "chip", "data-state": state }, n + " " + label(state));
      c.style.background = COLOURS[state] || "#757575";
      chips.append(c);
    }
    keyedRows.push(el("tr", { "data-kind": "keyed", "data-name": k.name },
      el("td", {}, el("strong", { "data-field": "name" }, k.name), " ", el("span", { "data-field": "keys" }, k.keys + " keys")), chips));
    for (const b of k.listed) {
      keyedRows.push(el("tr", { class: "sub", "data-kind": "keyed-key", "data-name": k.name, "data-key": b.key, "data-state": b.state },
        el("td", { "data-field": "key" }, b.key),
        el("td", {}, stateBadge(b.state, b.colour)),
        num("failure_rate", pct(b.failure_rate)),
        num("slow_call_rate", pct(b.slow_call_rate)),
        num("calls", b.calls),
        num("rejected", b.rejected)));
    }
    if (k.more > 0) keyedRows.push(el("tr", { class: "sub" }, el("td", { colspan: "6", class: "more", "data-field": "more" }, "and " + k.more + " more keys")));
  }
  shown += fill("keyed", keyedRows);
  const quotaRows = [];
  for (const q of s.quotas) {
    quotaRows.push(el("tr", { "data-kind": "quota", "data-name": q.name },
      el("td", { colspan: "4" }, el("strong", { "data-field": "name" }, q.name), " ", el("span", { "data-field": "keys" }, q.keys + " keys"))));
    for (const k of q.listed) {
      quotaRows.push(el("tr", { class: "sub", "data-kind": "quota-key", "data-name": q.name, "data-key": k.key },
        el("td", { "data-field": "key" }, k.key),
        num("requests_left", left(k.requests_left, k.requests_limit)),
        num("tokens_left", left(k.tokens_left, k.tokens_limit)),
        num("paused", k.paused_ms > 0 ? duration(k.paused_ms) : "–")));
    }
    if (q.more > 0) quotaRows.push(el("tr", { class: "sub" }, el("td", { colspan: "4", class: "more" }, "and " + q.more + " more keys")));
  }
  shown += fill("quotas", quotaRows);
  shown += fill("hedges", s.hedges.map(h => el("tr", { "data-kind": "hedge", "data-name": h.name },
    el("td", { "data-field": "name" }, h.name),
    num("calls", h.calls),
    num("hedges", h.hedges),
    num("hedge_rate", pct(h.hedge_rate)),
    num("hedge_wins", h.hedge_wins),
    num("declined", h.declined))));
  document.getElementById("nothing").hidden = shown > 0;
  document.getElementById("updated").textContent = "updated " + new Date(s.taken_at_ms).toLocaleTimeString() + " (#" + s.seq + ")";
  document.body.dataset.seq = String(s.seq);
}

const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
const conn = document.getElementById("conn");
const source = new EventSource(base + "events");
source.addEventListener("snapshot", e => {
  conn.textContent = "live"; conn.className = "live";
  render(JSON.parse(e.data));
});
source.onerror = () => { conn.textContent = "reconnecting…"; conn.className = "down"; };
</script>
</body>
</html>
"##;
