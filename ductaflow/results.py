"""``collect``: every instance's record, config and metrics as one DataFrame row."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .instance import CONFIG_NAME, current_status
from .metrics import METRICS_NAME
from .runrecord import RECORD_NAME
from .status import error_line, find_instances

BASE_COLUMNS = ["step", "instance", "status", "started", "duration", "run_dir", "error", "note"]


def collect(path: str | os.PathLike[str] = "runs", step: str | None = None) -> Any:
    """One row per instance under ``path`` (a runs folder, a step folder or an instance directory).

    Columns: step, instance, status, started, duration (seconds), run_dir,
    error (the failure's first line), note (why a row is incomplete), then
    every config key as ``config.<key>`` (nested keys dotted) and every metric
    as ``metric.<name>``. ``step`` keeps one step. An instance directory whose
    ``run.json`` is missing or corrupt appears with status ``unknown`` and a
    note. Raises :class:`ConfigError` when ``path`` is not a directory.

    >>> collect("runs", step="make_data")[["instance", "status", "metric.rmse"]]  # doctest: +SKIP
    """
    import pandas as pd

    dirs = find_instances([path])
    if step is not None:
        dirs = [d for d in dirs if d.parent.name == step]
    rows = [instance_row(d) for d in dirs]
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in BASE_COLUMNS))
    configs = [c for c in extra if c.startswith("config.")]
    metrics = [c for c in extra if c.startswith("metric.")]
    return pd.DataFrame(rows, columns=[*BASE_COLUMNS, *configs, *metrics])


def instance_row(run_dir: Path) -> dict[str, Any]:
    """The flat row of one instance directory, as :func:`collect` shows it."""
    row: dict[str, Any] = {"step": run_dir.parent.name, "instance": run_dir.name, "status": "unknown",
                           "started": None, "duration": None, "run_dir": os.fspath(run_dir), "error": None,
                           "note": None}  # fmt: skip
    folder = str(run_dir)
    record, problem = _read_json(os.path.join(folder, RECORD_NAME))
    if not isinstance(record, dict) or "ductaflow_record" not in record:
        row["note"] = f"{RECORD_NAME} {problem or 'is not a ductaflow run record'}"
        return row
    row.update(step=str(record.get("step", row["step"])), status=current_status(record, run_dir),
               instance=str(record.get("instance", row["instance"])), started=record.get("started_at"),
               duration=record.get("duration_s"), error=error_line(record))  # fmt: skip
    config = record.get("config")
    if not isinstance(config, dict):  # script-mode records keep the config in config.json only
        config, _ = _read_json(os.path.join(folder, CONFIG_NAME))
    row.update(_flat(config if isinstance(config, dict) else {}, "config."))
    metrics, problem = _read_json(os.path.join(folder, METRICS_NAME))
    if isinstance(metrics, dict):
        row.update(_flat(metrics, "metric."))
    elif problem != "is missing":
        row["note"] = f"{METRICS_NAME} {problem or 'does not hold an object'}"
    return row


def _read_json(path: str) -> tuple[Any, str | None]:
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read()), None
    except FileNotFoundError:
        return None, "is missing"
    except (OSError, ValueError) as exc:
        return None, f"is unreadable ({type(exc).__name__})"


def _flat(values: Mapping[str, Any], prefix: str) -> Iterable[tuple[str, Any]]:
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
