"""Rows: one instance directory as the flat row that ``collect``, the report, the index and ``serve`` show.

A row holds the :data:`BASE_COLUMNS`, every config key as ``config.<key>``
(nested keys dotted) and every metric as ``metric.<name>``, plus the keys in
:data:`EXTRA_KEYS`, which the views use and ``collect`` leaves out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import flatten
from .files import read_json
from .metrics import METRICS_NAME, read_metrics
from .rundir import CONFIG_NAME, current_status, unreadable_record
from .runrecord import RECORD_NAME, RunStatus, error_line, is_record

BASE_COLUMNS = ["step", "instance", "status", "started", "duration", "run_dir", "error", "note", "seed",
                "replicate", "replicate_of"]  # fmt: skip
#: Keys of a row beyond the columns of ``collect``: when the attempt ended, where and why it ran, its page.
EXTRA_KEYS = ("ended", "host", "pid", "reason", "_html", "_upstream")
CRASHED_NOTE = "the process running it stopped without recording an end (killed, or the machine went down)"


def instance_row(run_dir: Path) -> dict[str, Any]:
    """The flat row of one instance directory, as :func:`ductaflow.collect` shows it (and its extra keys)."""
    record, problem = read_json(os.path.join(os.fspath(run_dir), RECORD_NAME))
    return row_of(run_dir, record, problem)


def row_of(run_dir: Path, record: Any, problem: str | None = None) -> dict[str, Any]:
    """The row of ``run_dir`` whose ``run.json`` held ``record`` (``problem``: why it could not be read).

    A ``running`` record's status is what the instance lock says now: ``crashed`` when nobody holds it.
    """
    row: dict[str, Any] = dict.fromkeys(BASE_COLUMNS)
    row.update(dict.fromkeys(EXTRA_KEYS))
    row.update(step=run_dir.parent.name, instance=run_dir.name, status="unknown", run_dir=os.fspath(run_dir),
               _upstream=[])  # fmt: skip
    folder = os.fspath(run_dir)
    if not is_record(record):
        row["note"] = f"{RECORD_NAME} {problem or 'is not a ductaflow run record'}"
        if unreadable_record(run_dir) is not None:  # ductaflow's folder: an interrupted attempt
            row["status"] = "unreadable record"
        return row
    status = current_status(record, run_dir)
    row.update(step=str(record.get("step", row["step"])), status=str(status),
               instance=str(record.get("instance", row["instance"])), started=record.get("started_at"),
               duration=record.get("duration_s"), error=error_line(record), seed=record.get("seed"),
               replicate=record.get("replicate"), replicate_of=record.get("replicate_of"),
               ended=record.get("ended_at"), host=record.get("host"), pid=record.get("pid"),
               reason=record.get("reason"))  # fmt: skip
    html = (record.get("outputs") or {}).get("html")
    row["_html"] = html if isinstance(html, str) else None  # the instance's own report page
    upstream = record.get("upstream")  # the upstream instances it read, linked from the report
    row["_upstream"] = [f"{u.get('step')}/{u.get('instance')}" for u in upstream if isinstance(u, dict)] if (
        isinstance(upstream, list)) else []  # fmt: skip
    config = record.get("config")
    if not isinstance(config, dict):  # script-mode records keep the config in config.json only
        config, _ = read_json(os.path.join(folder, CONFIG_NAME))
    row.update(flatten(config if isinstance(config, dict) else {}, "config"))
    unfinished = status in (RunStatus.RUNNING, RunStatus.CRASHED)  # a journal may be left only then
    row.update(flatten(read_metrics(folder, journal=unfinished), "metric"))
    if status == RunStatus.CRASHED:
        row["note"] = CRASHED_NOTE
    return row


def watched_files(record: Any) -> tuple[str, ...]:
    """The files of an instance directory its row is made of, besides ``run.json``."""
    if is_record(record) and not isinstance(record.get("config"), dict):
        return (METRICS_NAME, CONFIG_NAME)
    return (METRICS_NAME,)
