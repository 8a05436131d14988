"""The report: ``build_report`` writes one self-contained HTML page of every instance under a runs folder.

It is for people who never open Python.

The page embeds its data as JSON, plotly.js and a little JavaScript: no CDN,
no server, so it works opened from disk, a shared drive or an e-mail
attachment, offline (plotly.js makes it about 5 MB). Per step: counts by
status; the charts of :mod:`ductaflow.charts` (a metric against a config
column, recorded series, parallel coordinates, a timeline per worker), drawn
when they scroll into view; a table of the instances, 100 rows a page, that
sorts by any column and filters by text and status over every row, with
links to each instance's report, config and log (and to the reports of the
upstream instances it read). A step with replicates (``replicates=N``) also
gets a table of each replicated row: every metric's mean ± standard
deviation over its successful replicates, and how many there were
(:func:`ductaflow.aggregate_replicates`). The rows are embedded as columns
of values, not an object per row, so a step of 100,000 instances stays a
page that opens in a second or two.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

from .charts import chart_data, charts_js, natural_key, plotly_js
from .exceptions import ConfigError
from .files import write_atomic
from .results import aggregate_rows, collect_rows

REPORT_NAME = "index.html"
PAGE = Path(__file__).parent / "templates" / "report.html"
LONGEST = 40  # characters of a list or dict value shown in the table (a long one is summed up or cut)


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
        steps.setdefault(row["step"], []).append(row)
    links = _Links(target.parent)
    for rows in steps.values():
        rows.sort(key=lambda row: natural_key(str(row["instance"])))
        for row in rows:
            links.add(row)
    data = [_step(step, rows, links) for step, rows in sorted(steps.items())]
    title = html.escape(f"ductaflow runs: {Path(path).absolute().name}")
    parts = {
        "TITLE": title,
        "DATA": _script_json({"steps": data}),
        "PLOTLY": plotly_js(),
        "CHARTS": charts_js(),
    }
    page = re.sub(r"__(TITLE|DATA|PLOTLY|CHARTS)__", lambda m: parts[m.group(1)], PAGE.read_text("utf-8"))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, page)
    return target


class _Links:
    """Each instance's links from the page: its folder, which of its files exist, the reports it read."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.folders: dict[str, str] = {}  # a step folder -> its link from the page, worked out once
        self.pages: dict[str, str | None] = {}  # "step/instance" -> the link to its own report page

    def add(self, row: dict[str, Any]) -> None:
        """Note the row's folder (``_parent``, ``_dir``) and its files (``_report``, ``_has``)."""
        run_dir = str(row["run_dir"])  # plain strings: pathlib's parsing, 300,000 times, was most of a build
        row["_parent"] = parent = os.path.dirname(run_dir)
        if parent not in self.folders:
            self.folders[parent] = _relative(Path(parent), self.base) + "/"
        row["_dir"] = f"{self.folders[parent]}{urllib.parse.quote(os.path.basename(run_dir))}/"
        name = row.pop("_html", None)
        inside = run_dir + os.sep
        row["_report"] = name if name and os.path.isfile(inside + name) else None
        row["_has"] = int(os.path.isfile(inside + "config.json")) | (
            int(os.path.isfile(inside + "log.txt")) << 1
        )
        report = row["_dir"] + urllib.parse.quote(name) if row["_report"] else None
        self.pages[f"{row['step']}/{row['instance']}"] = report

    def upstream(self, row: dict[str, Any]) -> list[list[str]]:
        """[label, link] of each upstream instance: its report, or its folder when it is not in the page."""
        out = []
        for key in row.get("_upstream") or []:
            folder = Path(row["run_dir"]).parent.parent / key
            out.append([f"upstream {key}", self.pages.get(key) or _relative(folder, self.base)])
        return out


def _step(step: str, rows: list[dict[str, Any]], links: _Links) -> dict[str, Any]:
    """One step's part of the page: its table as columns of values, its replicates and its charts.

    Links are compact: ``base`` is the link of the step's usual folder, and
    ``dir`` names a row's folder only where it is not ``base`` + its name;
    ``has`` holds bits: 1 config.json, 2 log.txt, and from 4 up the position
    (+1) of its report's name in ``reports``.
    """
    configs, metrics = _columns(rows, "config."), _columns(rows, "metric.")
    columns = ["instance", "status", "started", "duration", *configs, *metrics]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    parents: dict[str, int] = {}
    for row in rows:
        parents[row["_parent"]] = parents.get(row["_parent"], 0) + 1
    usual = max(parents, key=parents.__getitem__)
    reports = list(dict.fromkeys(row["_report"] for row in rows if row["_report"]))
    where = {name: i + 1 for i, name in enumerate(reports)}
    replicates = aggregate_rows(rows)
    return {"step": step, "counts": counts, "columns": columns,
            "metrics": [m for m in metrics if any(f"{m}.n" in r for r in replicates)],
            "values": [[_cell(row.get(c)) for row in rows] if c != "started" else
                       [row["started"][:19] if isinstance(row.get("started"), str) else None for row in rows]
                       for c in columns],  # a start to the second, as the table shows it
            "error": [row.get("error") or row.get("note") for row in rows],
            "base": links.folders[usual], "reports": reports,
            "dir": [None if row["_parent"] == usual and Path(row["run_dir"]).name == row["instance"]
                    else row["_dir"] for row in rows],
            "has": [row["_has"] | (where.get(row["_report"], 0) << 2) for row in rows],
            "upstream": {i: found for i, row in enumerate(rows) if (found := links.upstream(row))},
            "replicates": replicates, "charts": chart_data(rows, replicates=replicates)}  # fmt: skip


def _cell(value: Any) -> Any:
    """A table cell's value: numbers, text, true/false as they are; a list or dict as short JSON.

    A list of numbers too long for that reads ``[first … last] (n values)``;
    any other long JSON is cut.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not isinstance(value, (list, dict)):
        return value
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    if len(text) <= LONGEST:
        return text
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return f"[{value[0]:.6g} … {value[-1]:.6g}] ({len(value)} values)"
    return text[:LONGEST] + "…"


def _script_json(value: Any) -> str:
    """JSON for inside a <script> element: NaN and infinity as null, '<', '>' and '&' escaped."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a NaN left in a value from a hand-written file
        text = json.dumps(_finite(value), ensure_ascii=False, default=str, separators=(",", ":"))
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):  # inert inside <script>
        text = text.replace(char, escaped)
    return text


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
