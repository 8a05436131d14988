"""Results: ``collect`` gathers every instance's record, config and metrics as one DataFrame row."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import flatten
from .files import read_json
from .metrics import read_metrics
from .rundir import CONFIG_NAME, current_status, find_instances, unreadable_record
from .runrecord import RECORD_NAME, RunStatus, error_line, is_record

BASE_COLUMNS = ["step", "instance", "status", "started", "duration", "run_dir", "error", "note"]


def collect(path: str | os.PathLike[str] = "runs", step: str | None = None) -> Any:
    """One row per instance under ``path`` (a runs folder, a step folder or an instance directory).

    Columns: step, instance, status, started, duration (seconds), run_dir,
    error (the failure's first line), note (why a row is incomplete), then
    every config key as ``config.<key>`` (nested keys dotted) and every metric
    as ``metric.<name>``. ``step`` keeps one step. An instance directory whose
    ``run.json`` is missing or corrupt appears with status ``unknown`` and a
    note. Raises :class:`ConfigError` when ``path`` is not a directory.

    >>> collect("runs", step="make_data")[["instance", "status", "config.noise", "config.seed"]]
        instance   status  config.noise  config.seed
    0  noise=1.0  success           1.0            1
    1  noise=9.0  success           9.0            1
    2     seed=1  success           5.0            1
    3     seed=2  success           5.0            2
    4      short  success           5.0            1
    5       try1  success           5.0            1
    """
    import pandas as pd

    rows = collect_rows(path, step)
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in BASE_COLUMNS))
    configs = [c for c in extra if c.startswith("config.")]
    metrics = [c for c in extra if c.startswith("metric.")]
    return pd.DataFrame(rows, columns=[*BASE_COLUMNS, *configs, *metrics])


def collect_rows(path: str | os.PathLike[str], step: str | None = None) -> list[dict[str, Any]]:
    """The rows of :func:`collect` as dicts (values exactly as stored)."""
    dirs = find_instances([path])
    if step is not None:
        dirs = [d for d in dirs if d.parent.name == step]
    return [instance_row(d) for d in dirs]


def instance_row(run_dir: Path) -> dict[str, Any]:
    """The flat row of one instance directory, as :func:`collect` shows it."""
    row: dict[str, Any] = {"step": run_dir.parent.name, "instance": run_dir.name, "status": "unknown",
                           "started": None, "duration": None, "run_dir": os.fspath(run_dir), "error": None,
                           "note": None}  # fmt: skip
    folder = str(run_dir)
    record, problem = read_json(os.path.join(folder, RECORD_NAME))
    if not is_record(record):
        row["note"] = f"{RECORD_NAME} {problem or 'is not a ductaflow run record'}"
        if unreadable_record(run_dir) is not None:  # ductaflow's folder: an interrupted attempt
            row["status"] = "unreadable record"
        return row
    status = current_status(record, run_dir)
    row.update(step=str(record.get("step", row["step"])), status=str(status),
               instance=str(record.get("instance", row["instance"])), started=record.get("started_at"),
               duration=record.get("duration_s"), error=error_line(record))  # fmt: skip
    html = (record.get("outputs") or {}).get("html")
    row["_html"] = html if isinstance(html, str) else None  # the instance's own report, for build_report
    config = record.get("config")
    if not isinstance(config, dict):  # script-mode records keep the config in config.json only
        config, _ = read_json(os.path.join(folder, CONFIG_NAME))
    row.update(flatten(config if isinstance(config, dict) else {}, "config"))
    unfinished = status in (RunStatus.RUNNING, RunStatus.CRASHED)  # a journal may be left only then
    row.update(flatten(read_metrics(folder, journal=unfinished), "metric"))
    if status is RunStatus.CRASHED:
        row["note"] = (
            "the process running it stopped without recording an end (killed, or the machine went down)"
        )
    return row
