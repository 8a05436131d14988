"""Charts: the data that the report and ``ductaflow serve`` draw with plotly.js, and plotly.js itself.

The whole API, for a page that shows charts of one step::

    from ductaflow.charts import chart_data, charts_js, plotly_js

    data = chart_data(rows)       # rows: one step's row dicts (collect_rows, the run index); plain JSON
    plotly_js()                   # plotly.min.js, from the installed plotly package (read once a process)
    charts_js()                   # static/charts.js: defines the global DuctaflowCharts

In the page, after both scripts: ``DuctaflowCharts.render(container, data)``
draws into the element ``container`` (again with new data: the metric and
columns chosen in its selects are kept). The four charts:

- **metric**: a metric (``select.chart-y``) against a config column or
  another metric (``select.chart-x``). A numeric column is a scatter, one
  point per instance (failures red); a step with replicates shows each
  replicated row's mean with its standard deviation as error bars
  (:func:`ductaflow.results.aggregate_rows`); a text or true/false column
  is one point per category: the mean ± standard deviation of the metric
  over that category's successful instances.
- **series**: a metric recorded as a list of numbers (``record(loss=[0.9,
  0.5, 0.3])``) drawn as one line per instance (``select.chart-series``).
- **parallel**: parallel coordinates of the config columns that vary, and a
  metric (``select.chart-colour``) as the last axis and the colour.
- **timeline**: one bar per instance from its start to its end, one lane per
  worker (overlapping instances of a host packed into lanes ``host/0``,
  ``host/1``...), coloured by status.

Each chart draws at most a few thousand marks, so a step of 100,000
instances stays quick: scatter and parallel coordinates draw a systematic
sample of at most ``MAX_POINTS`` instances (every k-th in the given order,
plus the instances holding each metric's smallest and largest value), so the
shape and the range of the sweep stay true; the series chart draws at most
``MAX_LINES`` lines (every k-th), each at most ``MAX_LINE_POINTS`` points
(evenly spaced, first and last kept); categories and replicate means are
computed over every instance (at most ``MAX_CATEGORIES`` categories, the most
frequent), and the timeline merges neighbouring bars of one lane and status
until at most ``MAX_BARS`` remain. Each chart says what it left out.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import numbers
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .exceptions import ConfigError
from .results import aggregate_rows, sample_std
from .runrecord import RunStatus

MAX_POINTS = 5000
MAX_LINES = 50
MAX_LINE_POINTS = 100
MAX_CATEGORIES = 100
MAX_BARS = 5000
CHARTS_JS = Path(__file__).parent / "static" / "charts.js"


@functools.cache
def plotly_js() -> str:
    """The text of ``plotly.min.js`` shipped in the installed ``plotly`` package, read once a process.

    The package is located without importing it (its Python API is slow to
    import and not needed). Raises :class:`ConfigError` saying how to install
    it when it is missing.
    """
    spec = importlib.util.find_spec("plotly")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise ConfigError("the charts need plotly.js from the Python package plotly, which is not installed: "
                      "pip install 'plotly>=5.20'")  # fmt: skip


@functools.cache
def charts_js() -> str:
    """The text of ``static/charts.js``, which defines ``DuctaflowCharts.render(container, data)``."""
    return CHARTS_JS.read_text(encoding="utf-8")


def chart_data(rows: list[dict[str, Any]], *, now: float | None = None,
               replicates: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """The JSON that ``DuctaflowCharts.render`` draws, from the rows of one step.

    ``rows`` are row dicts as :func:`ductaflow.results.collect_rows` and the
    run index give them (``config.*`` and ``metric.*`` keys; ``ended``,
    ``host`` and ``pid`` when known). ``now`` (seconds since the epoch,
    default: the current time) ends the bars of running instances.
    ``replicates``: the rows' :func:`~ductaflow.results.aggregate_rows`, when
    the caller has them already. Values are JSON-native and finite (NaN and
    infinity become null).
    """
    now = time.time() if now is None else now
    keys = list(dict.fromkeys(k for row in rows for k in row))
    raw = {k: [row.get(k) for row in rows] for k in keys if k.startswith(("config.", "metric."))}
    configs = [k for k in keys if k.startswith("config.") and any(v is not None for v in raw[k])]
    series = [k for k in keys if k.startswith("metric.") and any(map(_series, raw[k]))]
    values = {k: [v if _number(v) else None for v in raw[k]] for k in raw if k.startswith("metric.")}
    metrics = [k for k in values if k not in series and any(v is not None for v in values[k])]
    numeric = [k for k in configs if all(_number(v) for v in raw[k] if v is not None)]
    values.update({k: [_finite(v) for v in raw[k]] for k in numeric})
    categorical = [k for k in configs if k not in numeric]
    values.update({k: list(map(_label, raw[k])) for k in categorical})
    varying = [k for k in configs if len(set(values[k])) > 1]
    successes = [row.get("status") == RunStatus.SUCCESS for row in rows]
    return {
        "instances": len(rows),
        "configs": configs,
        "metrics": metrics,
        "series": series,
        "numeric": numeric + metrics,
        "varying": varying,
        **_defaults(values, configs, metrics, numeric, varying),
        "sample": _sample(rows, values, [*configs, *metrics]),
        "replicates": _replicates(rows, numeric, metrics, replicates),
        "categories": {k: _categories(values[k], values, metrics, successes) for k in categorical},
        "lines": {k: _lines(rows, k) for k in series},
        "timeline": _timeline(rows, now),
    }


def _number(value: Any) -> bool:
    """A finite real number, not a bool (int and float checked first: the fast path)."""
    if type(value) is float or type(value) is int:
        return type(value) is int or math.isfinite(value)
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _series(value: Any) -> bool:
    """A recorded series: a list of numbers, some maybe null (a NaN recorded: it shows as a gap)."""
    kinds = {type(v) for v in value} if type(value) is list else set()
    return kinds <= {int, float, type(None)} and bool(kinds - {type(None)})


def _finite(value: Any) -> Any:
    """A number or a label as JSON holds it: NaN and infinity as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _label(value: Any) -> str | None:
    """How a value of a text (categorical) column reads: text as is, true/false, JSON for the rest."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Real):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def natural_key(text: str) -> tuple[tuple[int, Any], ...]:
    """A sort key putting ``run2`` before ``run10`` and ignoring case."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower())
                 for part in re.split(r"(\d+)", text) if part)  # fmt: skip


def every_kth(count: int, limit: int) -> list[int]:
    """Indices of a systematic sample: all of ``range(count)``, or ``limit`` of them evenly spaced."""
    if count <= limit:
        return list(range(count))
    return [i * count // limit for i in range(limit)]


def _defaults(values: dict[str, list[Any]], configs: list[str], metrics: list[str], numeric: list[str],
              varying: list[str]) -> dict[str, str | None]:  # fmt: skip
    """At first, a metric that varies against a config column that varies (numeric ones first)."""
    moving = [m for m in metrics if len(set(values[m]) - {None}) > 1]
    y = (moving or metrics or [None])[0]
    choices = ([c for c in varying if c in numeric], varying, [m for m in moving if m != y],
               [c for c in configs if c in numeric], configs, [m for m in metrics if m != y])  # fmt: skip
    return {"x": next((cs[0] for cs in choices if cs), y), "y": y}


def _sample(rows: list[dict[str, Any]], values: dict[str, list[Any]], keys: list[str]) -> dict[str, Any]:
    """Columns of at most about MAX_POINTS rows: every k-th, plus each metric's extremes."""
    chosen = set(every_kth(len(rows), MAX_POINTS))
    for key in [k for k in keys if k.startswith("metric.")] if len(rows) > MAX_POINTS else []:
        found = [(v, i) for i, v in enumerate(values[key]) if v is not None]
        if found:
            chosen.update((min(found)[1], max(found)[1]))
    index = sorted(chosen)
    columns: dict[str, list[Any]] = {
        "instance": [rows[i].get("instance") for i in index],
        "status": [rows[i].get("status") for i in index],
        "replicate_of": [rows[i].get("replicate_of") for i in index],
    }
    columns.update({key: [values[key][i] for i in index] for key in keys})
    return {"of": len(rows), "shown": len(index), "every": max(1, -(-len(rows) // MAX_POINTS)),
            "columns": columns}  # fmt: skip


def _replicates(rows: list[dict[str, Any]], numeric: list[str], metrics: list[str],
                groups: list[dict[str, Any]] | None) -> dict[str, Any] | None:  # fmt: skip
    """Each replicated row's shared numeric config values and each metric's mean, std and n (columns)."""
    if not any(row.get("replicate_of") is not None for row in rows):
        return None
    groups = aggregate_rows(rows) if groups is None else groups
    index = every_kth(len(groups), MAX_POINTS)
    keys = ["replicate_of", "replicates", "succeeded", *[k for k in numeric if k.startswith("config.")],
            *[f"{m}.{stat}" for m in metrics for stat in ("mean", "std", "n")]]  # fmt: skip
    columns = {k: [_finite(groups[i].get(k)) for i in index] for k in keys}
    shared = {k for k in keys if k.startswith("config.") and any(v is not None for v in columns[k])}
    columns = {k: v for k, v in columns.items() if not k.startswith("config.") or k in shared}
    return {"of": len(groups), "shown": len(index), "columns": columns}


def _categories(labels: list[str | None], values: dict[str, list[Any]], metrics: list[str],
                successes: list[bool]) -> dict[str, Any]:  # fmt: skip
    """Per category of a text column: how many instances, and each metric's mean, std and n over successes."""
    counts: dict[str, int] = {}
    for label in labels:
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    kept = sorted(sorted(counts, key=lambda c: -counts[c])[:MAX_CATEGORIES], key=natural_key)
    position = {c: i for i, c in enumerate(kept)}
    stats = {}
    for metric in metrics:
        found: list[list[float]] = [[] for _ in kept]
        for label, value, success in zip(labels, values[metric], successes, strict=True):
            if success and value is not None and label in position:
                found[position[label]].append(float(value))
        stats[metric] = {"mean": [math.fsum(v) / len(v) if v else None for v in found],
                         "std": [_stdev(v) for v in found], "n": [len(v) for v in found]}  # fmt: skip
    return {"labels": kept, "count": [counts[c] for c in kept], "dropped": len(counts) - len(kept),
            "stats": stats}  # fmt: skip


def _stdev(values: list[float]) -> float | None:
    """The sample standard deviation (None below two values)."""
    std = sample_std(values)
    return None if std is None else _finite(std)


def _lines(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """At most MAX_LINES of the step's series for ``key``, each at most MAX_LINE_POINTS points."""
    found = [row for row in rows if _series(row.get(key))]
    chosen = [found[i] for i in every_kth(len(found), MAX_LINES)]
    xs, ys = [], []
    for row in chosen:
        values = row[key]
        index = [round(i * (len(values) - 1) / (MAX_LINE_POINTS - 1)) for i in range(MAX_LINE_POINTS)] if (
            len(values) > MAX_LINE_POINTS) else range(len(values))  # fmt: skip
        xs.append(list(index))
        ys.append([_finite(values[i]) for i in index])
    longest = max((len(r[key]) for r in found), default=0)
    return {"of": len(found), "shown": len(chosen), "every": max(1, -(-len(found) // MAX_LINES)),
            "longest": longest, "thinned": longest > MAX_LINE_POINTS, "points": MAX_LINE_POINTS,
            "instance": [r.get("instance") for r in chosen], "status": [r.get("status") for r in chosen],
            "x": xs, "y": ys}  # fmt: skip


def _seconds(value: Any) -> float | None:
    """Seconds since the epoch of an ISO time (a naive one read as UTC), or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=UTC).timestamp()


def _interval(row: dict[str, Any], now: float) -> tuple[float, float] | None:
    """When an instance started and ended (a running one: ``now``), in seconds since the epoch."""
    start = _seconds(row.get("started"))
    if start is None:
        return None
    end = now if row.get("status") == RunStatus.RUNNING else _seconds(row.get("ended"))
    if end is None and _number(row.get("duration")):
        end = start + float(row["duration"])
    return start, max(start, end if end is not None else start)


def pack_lanes(intervals: list[tuple[str, float, float]]) -> tuple[list[str], list[int]]:
    """Lanes for ``(host, start, end)`` intervals: per host, each goes to the lowest lane free at its start.

    Returns the lane labels (``host/0``, ``host/1``...) and each interval's
    lane (an index into the labels).
    """
    import heapq

    order = sorted(range(len(intervals)), key=lambda i: (intervals[i][0], intervals[i][1], intervals[i][2]))
    lanes: dict[str, int] = {}  # "host/n" -> its index, in the order lanes first appear
    placed = [0] * len(intervals)
    busy: dict[str, list[tuple[float, int]]] = {}  # per host: (end, lane number) of the lanes in use
    free: dict[str, list[int]] = {}
    for i in order:
        host, start, end = intervals[i]
        taken, idle = busy.setdefault(host, []), free.setdefault(host, [])
        while taken and taken[0][0] <= start:
            heapq.heappush(idle, heapq.heappop(taken)[1])
        number = heapq.heappop(idle) if idle else len(taken)
        heapq.heappush(taken, (end, number))
        placed[i] = lanes.setdefault(f"{host}/{number}", len(lanes))
    labels = sorted(lanes, key=natural_key)
    renumber = {lanes[label]: new for new, label in enumerate(labels)}
    return labels, [renumber[p] for p in placed]


def _timeline(rows: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """Bars from start to end on lanes per worker (milliseconds since the epoch), merged down to MAX_BARS.

    Neighbouring bars of one lane and status merge first, across ever wider
    gaps; when statuses alternate too often for that, neighbours of any
    status merge into bars of status ``mixed`` that count each status.
    """
    timed = [(row, span) for row in rows if (span := _interval(row, now)) is not None]
    lanes, placed = pack_lanes([(str(row.get("host") or "local"), *span) for row, span in timed])
    bars = sorted(((placed[i], start, end, {str(row.get("status")): 1}, str(row.get("instance")))
                   for i, (row, (start, end)) in enumerate(timed)), key=lambda b: (b[0], b[1]))  # fmt: skip
    span = max((b[2] for b in bars), default=0.0) - min((b[1] for b in bars), default=0.0)
    merged = False
    for mixed in (False, True):
        gap = span / MAX_BARS
        while len(bars) > MAX_BARS and gap <= 2 * span:
            bars, gap, merged = _merge(bars, gap, mixed), gap * 2, True
    return {"of": len(timed), "lanes": lanes, "merged": merged, "limit": MAX_BARS, "now": now * 1000,
            "lane": [b[0] for b in bars], "start": [b[1] * 1000 for b in bars],
            "end": [b[2] * 1000 for b in bars],
            "status": [next(iter(b[3])) if len(b[3]) == 1 else "mixed" for b in bars],
            "label": [b[4] if sum(b[3].values()) == 1 else _counted(b[3]) for b in bars],
            "count": [sum(b[3].values()) for b in bars]}  # fmt: skip


def _counted(counts: dict[str, int]) -> str:
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda c: -c[1]))
    return f"{sum(counts.values())} instances: {parts}"


Bar = tuple[int, float, float, dict[str, int], str]


def _merge(bars: list[Bar], gap: float, mixed: bool) -> list[Bar]:
    """Neighbouring bars of one lane at most ``gap`` seconds apart, as one.

    Of one status; or, if ``mixed``, of any status but together spanning at
    most ``gap`` seconds (so a lane busy for hours keeps that many bars).
    """
    out: list[Bar] = []
    for bar in bars:
        last = out[-1] if out else None
        joins = last is not None and last[0] == bar[0] and bar[1] - last[2] <= gap
        if not joins or (bar[2] - last[1] > gap if mixed else last[3].keys() != bar[3].keys()):
            out.append(bar)
        else:
            counts = dict(last[3])
            for status, n in bar[3].items():
                counts[status] = counts.get(status, 0) + n
            out[-1] = (last[0], last[1], max(last[2], bar[2]), counts, last[4])
    return out
