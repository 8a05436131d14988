"""The report: ``build_report`` writes one self-contained HTML page of every instance under a runs folder.

It is for people who never open Python.

The page embeds its data as JSON and draws everything with a little inline
JavaScript: no CDN, no server, so it works opened from disk, a shared drive
or an e-mail attachment, offline. Per step: counts by status, a table that
sorts by any column and filters by text and status, links to each
instance's report, config and log (and to the reports of the upstream
instances it read), and a chart of a chosen metric against a
chosen config column (at first a metric and a column that vary). The chart
measures its labels in the page, so they stay inside it whatever the values.
A step with replicates (``replicates=N``) also gets a table of each
replicated row: every metric's mean ± standard deviation over its successful
replicates, and how many there were (:func:`ductaflow.aggregate_replicates`).
"""

from __future__ import annotations

import html
import json
import math
import os
import urllib.parse
from pathlib import Path
from typing import Any

from .exceptions import ConfigError
from .files import write_atomic
from .results import aggregate_rows, collect_rows

REPORT_NAME = "index.html"


def build_report(path: str | os.PathLike[str] = "runs", output: str | os.PathLike[str] | None = None) -> Path:
    """Write the report of every instance under ``path`` to ``output`` (default ``<path>/index.html``).

    Returns the report's path. Links inside it are relative, so the runs
    folder can be moved or shared with the report in it. Raises
    :class:`ConfigError` when ``path`` is not a directory or ``output`` is one.

    >>> build_report("runs").relative_to(Path.cwd())
    PosixPath('runs/index.html')
    """
    target = (Path(output) if output is not None else Path(path) / REPORT_NAME).absolute()
    if target.is_dir():
        raise ConfigError(f"the report's output {str(output)!r} is a folder; give a file name such as "
                          f"{Path(str(output)) / REPORT_NAME}.", path=str(output))  # fmt: skip
    steps: dict[str, list[dict[str, Any]]] = {}
    rows = collect_rows(path)
    pages = {}  # "step/instance" -> the link to its own report page, for the instances reading it
    for row in rows:
        row["links"] = _links(Path(row["run_dir"]), row.pop("_html", None), target.parent)
        pages[f"{row['step']}/{row['instance']}"] = row["links"].get("report")
        steps.setdefault(row["step"], []).append(row)
    for row in rows:
        for key in row.pop("_upstream", []):  # an upstream instance outside this report: its folder
            folder = Path(row["run_dir"]).parent.parent / key
            row["links"][f"upstream {key}"] = pages.get(key) or _relative(folder, target.parent)
    data = [{"step": step, "rows": rows, "configs": _columns(rows, "config."),
             "metrics": _columns(rows, "metric."), "replicates": aggregate_rows(rows)}
            for step, rows in sorted(steps.items())]  # fmt: skip
    payload = json.dumps(_finite({"steps": data}), ensure_ascii=False, default=str, allow_nan=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):  # inert inside <script>
        payload = payload.replace(char, escaped)
    page = _PAGE.replace("__TITLE__", html.escape(f"ductaflow runs: {Path(path).absolute().name}"))
    page = page.replace("__DATA__", payload)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, page)
    return target


def _links(run_dir: Path, html_name: str | None, base: Path) -> dict[str, str]:
    links = {}
    for label, name in (("report", html_name), ("config", "config.json"), ("log", "log.txt")):
        if name and (run_dir / name).is_file():
            links[label] = _relative(run_dir / name, base)
    return links


def _relative(path: Path, base: Path) -> str:
    """A link to ``path`` from a page in ``base``, quoted: '#', '%', '?', ':' may be in names."""
    return "./" + urllib.parse.quote(Path(os.path.relpath(path, base)).as_posix(), safe="/")


def _finite(value: Any) -> Any:
    """NaN and infinity (from hand-written JSON files) as null: JSON.parse accepts neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _columns(rows: list[dict[str, Any]], prefix: str) -> list[str]:
    return [c for c in dict.fromkeys(k for row in rows for k in row) if c.startswith(prefix)
            and any(row.get(c) is not None for row in rows)]  # fmt: skip


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
th{cursor:pointer;background:#f4f4f4;user-select:none;white-space:nowrap}
th.sorted-asc:after{content:" \\25B2"}
th.sorted-desc:after{content:" \\25BC"} td.num{text-align:right;font-variant-numeric:tabular-nums}
.status{padding:1px 6px;border-radius:3px;font-size:.9em} .success{background:#d9f2d9}
.failed,.crashed{background:#f8d0d0}
.interrupted,.running,.unreadable{background:#fbeec1} .unknown{background:#e4e4e4}
.counts span{margin-right:1em} .error{color:#a00;font-size:.9em} .controls{margin:.5em 0}
.controls input,.controls select{margin-right:1em}
svg.chart{background:#fafafa;border:1px solid #ddd;max-width:100%;height:auto}
svg.chart text{font:12px system-ui,sans-serif;fill:#333}
</style></head><body>
<h1>__TITLE__</h1>
<p id="overall" class="counts"></p>
<div id="steps"></div>
<script type="application/json" id="ductaflow-data">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("ductaflow-data").textContent);
const STATUSES = ["success", "failed", "crashed", "interrupted", "running", "unreadable record", "unknown"];
const SUCCEEDED = STATUSES[0];
const COLLATE = new Intl.Collator(undefined, {numeric: true}).compare;  // "run2" before "run10"
const LIMIT = 500;  // rows drawn at first; a button draws the rest
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) {
    node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  }
  return node;
}
function shown(v) {
  if (v == null) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(+v.toPrecision(6));
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
function counts(rows) {
  const c = {};
  for (const r of rows) c[r.status] = (c[r.status] || 0) + 1;
  return c;
}
function countLine(node, rows) {
  const c = counts(rows);
  node.replaceChildren(...STATUSES.filter(s => c[s]).map(s =>
    el("span", {"data-status": s, "class": "count"}, el("span", {"class": "status " + s}, s), " " + c[s])));
}
function compare(a, b) {
  if (a == null && b == null) return 0;
  if (a == null) return 1;
  if (b == null) return -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return COLLATE(shown(a), shown(b));
}
const W = 640, H = 320, TOP = 24, BOTTOM = 44, PAD = 10, GAP = 6, WIDEST = 160;  // the chart, in its units
function extent(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}
function ticks(values, n) {  // round values (1, 2 or 5 times a power of ten) covering the values
  const [lo, hi] = extent(values);
  if (hi - lo <= Math.abs(lo) * 1e-14) return {lo: lo - 1, hi: hi + 1, at: [lo], labels: [shown(lo)]};
  const raw = (hi - lo) / n, e = Math.floor(Math.log10(raw)), f = raw / 10 ** e;
  let m = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10, p = e;
  if (e < 0 && values.every(Number.isInteger)) [m, p] = [1, 0];  // whole numbers: no tick between them
  const step = m * 10 ** p, first = Math.floor(lo / step), last = Math.ceil(hi / step), at = [];
  for (let k = first; k <= last && at.length < 50; k++) at.push(k * step);
  return {lo: first * step, hi: last * step, at, labels: tickLabels(at, m === 10 ? p + 1 : p)};
}
function tickLabels(at, e) {  // as many digits as the step needs; 1.5e8 or 5e-7 when much shorter
  const fixed = at.map(v => v.toFixed(Math.min(100, Math.max(0, -e))));
  const exp = at.map(v => {
    if (v === 0) return "0";
    const digits = Math.max(0, Number(v.toExponential().split("e")[1]) - e);
    return v.toExponential(Math.min(digits, 20)).replace(/\\.?0+e/, "e").replace("e+", "e");
  });
  const longest = labels => Math.max(...labels.map(s => s.length));
  return longest(fixed) - longest(exp) >= 3 ? exp : fixed;
}
function text(svg, attrs, content, widest) {  // a text, shortened with "…" to at most widest units wide
  const node = svgEl("text", attrs, content);
  svg.append(node);
  fit(node, content, widest);
  return node;
}
function fit(node, content, widest) {
  if (node.getComputedTextLength() <= widest) return;
  let keep = 0, drop = content.length;
  while (keep < drop) {
    const mid = Math.ceil((keep + drop) / 2);
    node.textContent = content.slice(0, mid) + "…";
    if (node.getComputedTextLength() <= widest) keep = mid; else drop = mid - 1;
  }
  node.textContent = content.slice(0, keep) + "…";
}
const width = node => node.getComputedTextLength();
function xAxis(svg, pts, xKey, left) {  // the tick labels placed, the axis's ends and the x scale
  const attrs = {y: H - BOTTOM + 18, "text-anchor": "middle", "class": "tick-x"};
  const values = pts.map(r => r[xKey]);
  let labels = [];
  if (values.every(v => typeof v === "number")) {
    for (const n of [8, 5, 3, 2]) {  // fewer ticks until their labels do not touch
      labels.forEach(t => t.remove());
      const axis = ticks(values, n);
      labels = axis.labels.map(s => text(svg, attrs, s, WIDEST));
      const ws = labels.map(width);
      const x0 = Math.max(left, ws[0] / 2 + 4 - PAD), x1 = W - Math.max(8, ws[ws.length - 1] / 2 + 4 - PAD);
      const sx = v => x0 + PAD + (v - axis.lo) / (axis.hi - axis.lo) * (x1 - x0 - 2 * PAD);
      labels.forEach((t, i) => t.setAttribute("x", sx(axis.at[i])));
      const apart = (w, i) => !i || sx(axis.at[i]) - sx(axis.at[i - 1]) >= (w + ws[i - 1]) / 2 + 8;
      if (n === 2 || ws.every(apart)) return {x0, x1, sx};
    }
  }
  const cats = [...new Set(values.map(shown))].sort(compare), index = new Map(cats.map((c, i) => [c, i]));
  const x0 = left, x1 = W - 8, band = (x1 - x0) / cats.length, at = i => x0 + (i + 0.5) * band;
  labels = cats.map(c => svgEl("text", attrs, c));
  svg.append(...labels);  // all measured at once, then one label in every so many categories kept
  const every = Math.ceil((Math.min(extent(labels.map(width))[1], 96) + 8) / band);
  labels.forEach((t, i) => {
    if (i % every) return t.remove();
    t.setAttribute("x", at(i));
    fit(t, cats[i], Math.min(WIDEST, every * band - 8, 2 * (at(i) - 2), 2 * (W - 2 - at(i))));
  });
  return {x0, x1, sx: v => at(index.get(shown(v)))};
}
function chart(step, svg, xKey, yKey) {
  svg.replaceChildren();
  text(svg, {x: 4, y: 14, "class": "title-y"}, yKey, W - 8);
  const pts = step.rows.filter(r => r[xKey] != null && typeof r[yKey] === "number");
  if (!pts.length) {
    text(svg, {x: W / 2, y: H / 2, "text-anchor": "middle"}, "no values to plot", W - 8);
    return;
  }
  const yAt = ticks(pts.map(r => r[yKey]), 5), y0 = H - BOTTOM;
  const sy = v => y0 - PAD - (v - yAt.lo) / (yAt.hi - yAt.lo) * (y0 - TOP - 2 * PAD);
  const yLabels = yAt.labels.map((s, i) => text(svg, {y: sy(yAt.at[i]), dy: "0.35em", "text-anchor": "end",
                                                       "class": "tick-y"}, s, W * 0.4));
  const {x0, x1, sx} = xAxis(svg, pts, xKey, 4 + Math.max(...yLabels.map(width)) + GAP);
  yLabels.forEach(t => t.setAttribute("x", x0 - GAP));
  const title = text(svg, {y: H - 6, "text-anchor": "middle", "class": "title-x"}, xKey, W - 8);
  const half = width(title) / 2;
  title.setAttribute("x", Math.min(Math.max((x0 + x1) / 2, half + 4), W - half - 4));
  svg.prepend(...yAt.at.map(v => svgEl("line", {x1: x0, y1: sy(v), x2: x1, y2: sy(v), stroke: "#e4e4e4"})),
              svgEl("line", {x1: x0, y1: y0, x2: x1, y2: y0, stroke: "#888"}),
              svgEl("line", {x1: x0, y1: TOP, x2: x0, y2: y0, stroke: "#888"}));
  for (const r of pts) {
    const dot = svgEl("circle", {cx: sx(r[xKey]), cy: sy(r[yKey]), r: 5, "class": "point",
                                 fill: r.status === SUCCEEDED ? "#2a7ab0" : "#c0392b"});
    dot.append(svgEl("title", {}, `${r.instance}: ${shown(r[xKey])}, ${shown(r[yKey])}`));
    svg.append(dot);
  }
}
function svgEl(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}
function section(step, parent) {
  const columns = ["instance", "status", "started", "duration", ...step.configs, ...step.metrics, "links"];
  const sec = el("section", {"class": "step", "data-step": step.step});
  const line = el("p", {"class": "counts"});
  countLine(line, step.rows);
  const filter = el("input", {type: "search", placeholder: "filter rows", "class": "filter"});
  const select = el("select", {"class": "status-filter"}, el("option", {value: ""}, "all statuses"),
                    ...STATUSES.filter(s => counts(step.rows)[s]).map(s => el("option", {value: s}, s)));
  const table = el("table", {"class": "instances"});
  const head = el("tr", {}, ...columns.map(c => el("th", {"data-column": c}, c)));
  const body = el("tbody");
  table.append(el("thead", {}, head), body);
  let order = {column: "instance", dir: 1}, limit = LIMIT, timer = null;
  const more = el("button", {type: "button", "class": "show-all"});
  more.addEventListener("click", () => { limit = Infinity; render(); });
  function render() {
    const text = filter.value.toLowerCase(), status = select.value;
    const searched = columns.filter(c => c !== "links");
    const matching = step.rows.filter(r => (!status || r.status === status) &&
      (!text || searched.some(c => shown(r[c]).toLowerCase().includes(text))
             || (r.error || r.note || "").toLowerCase().includes(text)));
    matching.sort((a, b) => {  // empty cells last, whichever the direction
      const [x, y] = [a[order.column], b[order.column]];
      return x == null || y == null ? compare(x, y) : order.dir * compare(x, y);
    });
    const rows = matching.slice(0, limit);
    more.textContent = `show all ${matching.length} rows`;
    more.hidden = matching.length <= limit;
    body.replaceChildren(...rows.flatMap(r => {
      const tr = el("tr", {"class": "row", "data-instance": r.instance, "data-status": r.status});
      for (const c of columns) {
        if (c === "links") {
          const links = Object.entries(r.links).flatMap(
            ([k, href]) => [el("a", {href, "class": "link-" + k.split(" ")[0]}, k), " "]);
          tr.append(el("td", {}, ...links));
        } else if (c === "status") {
          tr.append(el("td", {}, el("span", {"class": "status " + r.status}, r.status)));
        } else if (c === "duration") {
          tr.append(el("td", {"class": "num"}, r.duration == null ? "" : r.duration.toFixed(1) + " s"));
        } else if (c === "started") {
          tr.append(el("td", {}, r.started ? r.started.replace("T", " ").slice(0, 19) : ""));
        } else {
          tr.append(el("td", typeof r[c] === "number" ? {"class": "num"} : {}, shown(r[c])));
        }
      }
      const out = [tr];
      if (r.error || r.note) out.push(el("tr", {"class": "error-row", "data-instance": r.instance},
        el("td", {colspan: columns.length, "class": "error"}, r.error || r.note)));
      return out;
    }));
    for (const th of head.children) {
      th.className = th.dataset.column === order.column ? (order.dir > 0 ? "sorted-asc" : "sorted-desc") : "";
    }
  }
  head.addEventListener("click", e => {
    const c = e.target.dataset.column;
    if (!c || c === "links") return;
    order = {column: c, dir: order.column === c ? -order.dir : 1};
    render();
  });
  filter.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(render, 150); });
  select.addEventListener("change", render);
  sec.append(el("h2", {}, step.step), line, el("div", {"class": "controls"}, filter, select), table, more);
  if (step.replicates.length) sec.append(...replicateTable(step));
  const plot = chartOf(step);
  if (plot) sec.append(...plot.nodes);
  render();
  parent.append(sec);
  if (plot) plot.draw();  // once on the page: the chart measures its labels
}
function replicateTable(step) {  // mean ± std (n) of each metric over each row's successful replicates
  const head = el("tr", {}, ...["row", "replicates", "succeeded", ...step.metrics].map(c => el("th", {}, c)));
  const spread = (r, m) => r[m + ".n"] == null ? "" : shown(r[m + ".mean"]) +
    (r[m + ".std"] == null ? "" : " ± " + shown(r[m + ".std"])) + ` (n=${r[m + ".n"]})`;
  const body = step.replicates.map(r => el("tr", {"class": "replicate-row", "data-row": r.replicate_of},
    el("td", {}, r.replicate_of), el("td", {"class": "num"}, r.replicates),
    el("td", {"class": "num"}, r.succeeded),
    ...step.metrics.map(m => el("td", {"class": "num", "data-metric": m}, spread(r, m)))));
  return [el("h3", {}, "Replicates: mean ± std (n) of each metric, per row"),
          el("table", {"class": "replicates"}, el("thead", {}, head), el("tbody", {}, ...body))];
}
function axes(step) {  // what the chart offers, and by default a metric and a config column that vary
  const numeric = c => step.rows.some(r => typeof r[c] === "number");
  const varies = c => new Set(step.rows.filter(r => r[c] != null).map(r => shown(r[c]))).size > 1;
  const ys = step.metrics.filter(numeric), xs = [...step.configs, ...step.metrics];
  const y = ys.find(varies) || ys[0];
  const x = [step.configs.filter(numeric), step.configs, xs.filter(c => c !== y)].map(cs => cs.find(varies))
    .find(c => c) || step.configs.find(numeric) || step.configs[0] || xs.find(c => c !== y) || y;
  return {xs, ys, x, y};
}
function chartOf(step) {
  const {xs, ys, x, y} = axes(step);
  if (!ys.length) return null;
  const option = (c, chosen) => el("option", c === chosen ? {value: c, selected: ""} : {value: c}, c);
  const options = (cs, chosen) => cs.map(c => option(c, chosen));
  const xSel = el("select", {"class": "chart-x"}, ...options(xs, x));
  const ySel = el("select", {"class": "chart-y"}, ...options(ys, y));
  const svg = svgEl("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`, "class": "chart"});
  const draw = () => chart(step, svg, xSel.value, ySel.value);
  xSel.addEventListener("change", draw);
  ySel.addEventListener("change", draw);
  return {nodes: [el("div", {"class": "controls"}, "chart: ", ySel, " against ", xSel), svg], draw};
}
countLine(document.getElementById("overall"), DATA.steps.flatMap(s => s.rows));
for (const step of DATA.steps) section(step, document.getElementById("steps"));
if (!DATA.steps.length) document.getElementById("steps").append(el("p", {}, "No instances yet."));
</script></body></html>
"""
