"""What the page of ``ductaflow serve`` shows, as plain data: steps with an ETA, pages of rows, one instance.

Functions take the run index (:class:`ductaflow.serve.watcher.LiveIndex`
keeps it fresh); everything is paged, so a step of 100,000 instances costs
the page no more than a step of 50.

The ETA of a step: each running instance is expected to take the step's
mean success duration, so it has ``max(mean - elapsed, 0)`` left; instances
known but not started (``pending``, when a conductor records them) have the
whole mean left. The work left, divided among the instances running now (the
workers), is the ETA, and never less than the longest running instance's own
remainder. No success yet, or nothing running: no ETA.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from ..charts import chart_data
from ..exceptions import UnsafeNameError
from ..files import read_json
from ..names import check_name
from ..runrecord import RECORD_NAME, RunStatus

PAGE_SIZE = 50
LOG_TAIL_LINES = 200
_LOG_TAIL_BYTES = 256 * 1024
_ALL = 2**62  # a limit no step reaches
_RUNNING_SAMPLE = 500  # the running instances whose elapsed time the ETA reads; the rest count alike
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # colours in a traceback
TABLE_COLUMNS = ["instance", "status", "reason", "duration", "host", "started"]


def steps_view(index: Any, summaries: list[dict[str, Any]], now: datetime | None = None) -> list[dict]:
    """The steps' ``summaries`` (``index.steps()``: counts by status...) each with its ``eta_s``."""
    now = now or datetime.now(UTC)
    steps = []
    for step in summaries:
        started: list[str] = []
        if step.get("running") and step.get("mean_success_s") is not None:
            _, rows = index.query(step["step"], status=str(RunStatus.RUNNING), limit=_RUNNING_SAMPLE)
            started = [row["started"] for row in rows if row.get("started")]
        steps.append({**step, "eta_s": eta_seconds(step, started, now)})
    return steps


def eta_seconds(step: dict[str, Any], running_started: list[str], now: datetime) -> float | None:
    """Seconds until the step's known instances are done (see the module's docstring), or ``None``.

    Two running for 10 s and 4 s, two pending, 10 s a success: (0 + 6 + 2 * 10) / 2.

    >>> step = {"running": 2, "mean_success_s": 10.0, "counts": {"pending": 2}}
    >>> now = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    >>> eta_seconds(step, ["2026-01-01T12:00:00+00:00", "2026-01-01T12:00:06+00:00"], now)
    13.0
    """
    running, mean = int(step.get("running") or 0), step.get("mean_success_s")
    if not running or mean is None:
        return None
    left = [max(mean - _elapsed(started, now), 0.0) for started in running_started]
    unseen = running - len(left)  # running beyond the sample, or with no start time: half done, say
    work = sum(left) + unseen * mean / 2 + int((step.get("counts") or {}).get("pending", 0)) * mean
    return round(max(work / running, max(left, default=0.0)), 1)


def _elapsed(started: str, now: datetime) -> float:
    try:
        when = datetime.fromisoformat(started)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:  # a record without an offset: local time
        when = when.astimezone()
    return max((now - when).total_seconds(), 0.0)


def rows_view(index: Any, step: str, columns: list[str], *, sort: str, descending: bool, where: str,
              status: str | None, offset: int) -> dict[str, Any]:  # fmt: skip
    """One page of a step's instances, sorted and filtered by the index, with the step's ``columns`` shown."""
    shown = [*TABLE_COLUMNS, *[c for c in columns if c.startswith("metric.")],
             *[c for c in columns if c.startswith("config.")]]  # fmt: skip
    total, rows = index.query(step, sort=sort, descending=descending, where=where, status=status or None,
                              offset=max(offset, 0), limit=PAGE_SIZE)  # fmt: skip
    page = [{**{c: row.get(c) for c in shown}, "error": row.get("error")} for row in rows]
    return {"step": step, "total": total, "offset": max(offset, 0), "limit": PAGE_SIZE, "columns": shown,
            "rows": finite(page)}  # fmt: skip


def instance_view(index: Any, step: str, instance: str) -> dict[str, Any] | None:
    """One instance, re-read from its folder: its row, links to its files, the tail of its log.

    ``None`` when there is no such instance, or either name is not a single
    safe folder name (``..`` leads nowhere).
    """
    try:
        check_name(step, "step name"), check_name(instance)
    except UnsafeNameError:
        return None
    row = index.row(step, instance)
    if row is None:
        return None
    run_dir = str(row.get("run_dir") or "")
    names = {"notebook": row.get("_html"), "config": "config.json", "log": "log.txt"}
    links = {label: file_link(step, instance, name) for label, name in names.items()
             if isinstance(name, str) and os.path.isfile(os.path.join(run_dir, name))}  # fmt: skip
    shown = {k: v for k, v in row.items() if not k.startswith("_") and k != "run_dir"}
    return {"row": finite(shown), "links": links, "upstream": row.get("_upstream") or [],
            "error": error_detail(run_dir) if row.get("error") else None,
            "running": row.get("status") == RunStatus.RUNNING,
            "log": log_tail(os.path.join(run_dir, "log.txt")) if run_dir else None}  # fmt: skip


def error_detail(run_dir: str) -> str | None:
    """The failure recorded in ``run_dir``'s ``run.json``: its cell's source and traceback, as plain text."""
    record, _ = read_json(os.path.join(run_dir, RECORD_NAME))
    error = record.get("error") if isinstance(record, dict) else None
    if not isinstance(error, dict):
        return None
    parts = [f"{error.get('name', 'Error')}: {error.get('message', '')}"]
    if error.get("cell_source"):
        parts.append(f"in cell {error.get('cell_index', '?')}:\n{error['cell_source']}")
    if error.get("traceback"):
        parts.append(_ANSI.sub("", str(error["traceback"])))
    return "\n\n".join(parts)


def file_link(step: str, instance: str, name: str) -> str:
    """The page-relative URL of a file in an instance folder, served by the files route."""
    return "files/" + "/".join(urllib.parse.quote(part, safe="") for part in (step, instance, name))


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str | None:
    """The last ``lines`` lines of the text file ``path`` (reading at most its last 256 KiB), or ``None``."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(size - _LOG_TAIL_BYTES, 0))
            data = file.read()
    except OSError:
        return None
    if size > _LOG_TAIL_BYTES:  # the first line read is the end of a longer one
        data = data.partition(b"\n")[2]
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None``: JSON has neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def charts_view(index: Any, step: str) -> dict[str, Any]:
    """The data of a step's charts: :func:`ductaflow.charts.chart_data` of all its rows (it samples them)."""
    _, rows = index.query(step, limit=_ALL)
    return {"step": step, "charts": chart_data(rows)}
