"""The report: ``build_report`` writes one self-contained HTML page of every instance under a runs folder.

It is for people who never open Python.

The page embeds its data as JSON and draws everything with a little inline
JavaScript: no CDN, no server, so it works opened from disk, a shared drive
or an e-mail attachment, offline. Per step: counts by status, a table that
sorts by any column and filters by text and status, links to each
instance's report, config and log, and a chart of a chosen metric against a
chosen config column.
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
from .results import collect_rows

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
    for row in collect_rows(path):
        row["links"] = _links(Path(row["run_dir"]), row.pop("_html", None), target.parent)
        steps.setdefault(row["step"], []).append(row)
    data = [{"step": step, "rows": rows, "configs": _columns(rows, "config."),
             "metrics": _columns(rows, "metric.")} for step, rows in sorted(steps.items())]  # fmt: skip
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
            relative = Path(os.path.relpath(run_dir / name, base)).as_posix()
            links[label] = "./" + urllib.parse.quote(relative, safe="/")  # '#', '%', '?', ':' in names
    return links


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
.interrupted,.running{background:#fbeec1} .unknown{background:#e4e4e4}
.counts span{margin-right:1em} .error{color:#a00;font-size:.9em} .controls{margin:.5em 0}
.controls input,.controls select{margin-right:1em} svg{background:#fafafa;border:1px solid #ddd}
</style></head><body>
<h1>__TITLE__</h1>
<p id="overall" class="counts"></p>
<div id="steps"></div>
<script type="application/json" id="ductaflow-data">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("ductaflow-data").textContent);
const STATUSES = ["success", "failed", "crashed", "interrupted", "running", "unknown"];
const SUCCEEDED = STATUSES[0];
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
  return shown(a).localeCompare(shown(b), undefined, {numeric: true});
}
function chart(step, svg, xKey, yKey) {
  const W = 640, H = 320, P = 48;
  svg.replaceChildren();
  const pts = step.rows.filter(r => typeof r[xKey] === "number" && typeof r[yKey] === "number");
  if (!pts.length) { svg.append(svgEl("text", {x: P, y: H / 2}, "no numeric values to plot")); return; }
  const xs = pts.map(r => r[xKey]), ys = pts.map(r => r[yKey]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = v => P + (x1 === x0 ? (W - 2 * P) / 2 : (v - x0) / (x1 - x0) * (W - 2 * P));
  const sy = v => H - P - (y1 === y0 ? (H - 2 * P) / 2 : (v - y0) / (y1 - y0) * (H - 2 * P));
  svg.append(svgEl("line", {x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#888"}),
             svgEl("line", {x1: P, y1: P, x2: P, y2: H - P, stroke: "#888"}),
             svgEl("text", {x: W / 2, y: H - 8, "text-anchor": "middle"}, xKey),
             svgEl("text", {x: 12, y: P - 16}, yKey),
             svgEl("text", {x: P, y: H - P + 16, "text-anchor": "middle"}, shown(x0)),
             svgEl("text", {x: W - P, y: H - P + 16, "text-anchor": "middle"}, shown(x1)),
             svgEl("text", {x: P - 4, y: H - P, "text-anchor": "end"}, shown(y0)),
             svgEl("text", {x: P - 4, y: P + 4, "text-anchor": "end"}, shown(y1)));
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
function section(step) {
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
            ([k, href]) => [el("a", {href, "class": "link-" + k}, k), " "]);
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
  if (step.metrics.length) {
    const numeric = c => step.rows.some(r => typeof r[c] === "number");
    const varying = c => new Set(step.rows.map(r => shown(r[c]))).size > 1;
    const xs = [...step.configs, ...step.metrics].filter(numeric)
      .sort((a, b) => (varying(a) ? 0 : 1) - (varying(b) ? 0 : 1));  // varying columns first
    const xSel = el("select", {"class": "chart-x"}, ...xs.map(c => el("option", {value: c}, c)));
    const ySel = el("select", {"class": "chart-y"}, ...step.metrics.map(c => el("option", {value: c}, c)));
    const svg = svgEl("svg", {width: 640, height: 320, "class": "chart"});
    const draw = () => chart(step, svg, xSel.value, ySel.value);
    xSel.addEventListener("change", draw);
    ySel.addEventListener("change", draw);
    sec.append(el("div", {"class": "controls"}, "chart: ", ySel, " against ", xSel), svg);
    draw();
  }
  render();
  return sec;
}
countLine(document.getElementById("overall"), DATA.steps.flatMap(s => s.rows));
document.getElementById("steps").append(...DATA.steps.map(section));
if (!DATA.steps.length) document.getElementById("steps").append(el("p", {}, "No instances yet."));
</script></body></html>
"""
