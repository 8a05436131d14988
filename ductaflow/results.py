"""Results: ``collect`` gathers every instance's record, config and metrics as one DataFrame row."""

from __future__ import annotations

import math
import numbers
import os
import statistics
from pathlib import Path
from typing import Any

from .config import is_missing
from .exceptions import ConfigError
from .indexstore import INDEX_NAME, unavailable
from .rows import BASE_COLUMNS, instance_row
from .runfolders import find_instances, is_step_folder
from .runindex import shared_index
from .runrecord import RECORD_NAME, RunStatus


def collect(path: str | os.PathLike[str] = "runs", step: str | None = None) -> Any:
    """One row per instance under ``path`` (a runs folder, a step folder or an instance directory).

    Columns: step, instance, status, started, duration (seconds), run_dir,
    error (the failure's first line), note (why a row is incomplete), seed
    (what ``ductaflow.seed()`` returned), replicate and replicate_of (which
    replicate of which row, with ``replicates=N``; else empty), then
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
    frame = pd.DataFrame(rows, columns=[*BASE_COLUMNS, *configs, *metrics])
    frame["replicate"] = frame["replicate"].astype("Int64")  # whole numbers, empty where not replicated
    return frame


def collect_rows(path: str | os.PathLike[str], step: str | None = None) -> list[dict[str, Any]]:
    """The rows of :func:`collect` as dicts (values exactly as stored), read through the run index.

    Each row also holds the keys of :data:`ductaflow.rows.EXTRA_KEYS`.
    """
    return rows_under(path, step)


def aggregate_replicates(results: Any = "runs", step: str | None = None) -> Any:
    """Mean and spread of each metric over the replicates of each row; one row per replicated row.

    ``results`` is a :func:`collect` DataFrame, or a path to collect from
    (``step`` keeps one step). Only successful replicates count. Columns:
    step, replicate_of (the row), replicates (how many were found),
    succeeded, every config value the replicates share as ``config.<key>``,
    then for each numeric metric ``metric.<name>.mean``, ``.std`` (sample
    standard deviation; empty for fewer than two values) and ``.n``.

    >>> aggregate_replicates("runs").empty  # the example project has no replicates
    True
    """
    import pandas as pd

    if hasattr(results, "to_dict") and hasattr(results, "columns"):
        records = results.to_dict("records")
        rows = [{k: None if is_missing(v) else v for k, v in row.items()} for row in records]
        rows = [row for row in rows if step is None or row.get("step") == step]
    else:
        rows = collect_rows(results, step)
    aggregated = aggregate_rows(rows)
    columns = list(dict.fromkeys(k for row in aggregated for k in row))
    return pd.DataFrame(aggregated, columns=columns or ["step", "replicate_of", "replicates", "succeeded"])


def aggregate_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`aggregate_replicates` over rows of :func:`collect_rows` (plain values), as dicts."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("replicate_of") is not None:
            groups.setdefault((str(row.get("step")), str(row["replicate_of"])), []).append(row)
    out = []
    for (step, of), members in groups.items():
        done = [r for r in members if r.get("status") == RunStatus.SUCCESS]
        summary: dict[str, Any] = {"step": step, "replicate_of": of, "replicates": len(members),
                                   "succeeded": len(done)}  # fmt: skip
        keys = list(dict.fromkeys(k for r in members for k in r))
        for key in [k for k in keys if k.startswith("config.")]:
            if members[0].get(key) is not None and len({repr(r.get(key)) for r in members}) == 1:
                summary[key] = members[0].get(key)
        for key in [k for k in keys if k.startswith("metric.")]:
            values = [float(r[key]) for r in done if _number(r.get(key))]
            if values:
                summary[f"{key}.mean"] = statistics.fmean(values)
                summary[f"{key}.std"] = sample_std(values)
                summary[f"{key}.n"] = len(values)
        out.append(summary)
    return out


def sample_std(values: list[float]) -> float | None:
    """The sample standard deviation (``None`` below two values): two passes of ``math.fsum``.

    As accurate as ``statistics.stdev`` for measured values, and fast for 100,000 of them.
    """
    if len(values) < 2:
        return None
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def rows_under(path: str | os.PathLike[str], step: str | None = None) -> list[dict[str, Any]]:
    """The rows of every instance under ``path`` (a runs folder, a step folder or an instance directory).

    Read through the runs folder's index; ``step`` keeps one step. Raises
    :class:`ConfigError` when ``path`` is not a directory.
    """
    folder = Path(path).absolute()
    if not folder.is_dir() or (folder / RECORD_NAME).exists():
        return [instance_row(d) for d in find_instances([folder]) if step is None or d.parent.name == step]
    if is_step_folder(folder):
        runs, only = folder.parent, folder.name
        if step is not None and step != only:
            return []
    else:
        runs, only = folder, step
    return shared_index(runs).rows(only)


def refresh_index(runs_dir: str | os.PathLike[str] = "runs", *, rebuild: bool = False) -> dict[str, Any]:
    """Bring the run index of ``runs_dir`` up to date with its files (``rebuild``: read every file again).

    Returns ``{"index": its path or None, "why_not": why there is none,
    "steps": n, "instances": n, "changed": rows read again or dropped}``.
    Views do this themselves before they read; call it to rebuild an index
    by hand or to pay for a first build in advance. Raises
    :class:`ConfigError` when ``runs_dir`` is not a folder.

    >>> summary = refresh_index("runs", rebuild=True)
    >>> summary["instances"] == summary["changed"] > 0  # a rebuild reads every instance again
    True
    """
    runs = Path(runs_dir).absolute()
    if not runs.is_dir():
        raise ConfigError(f"the runs folder {str(runs_dir)!r} is not a folder: give the folder that holds "
                          "<step>/<instance> folders (default: runs).", path=str(runs_dir))  # fmt: skip
    index = shared_index(runs)
    changed = index.rebuild() if rebuild else index.refresh()
    summary = index.steps()
    return {"index": os.fspath(runs / INDEX_NAME) if index.enabled else None,
            "why_not": None if index.enabled else unavailable(runs) or "it cannot be opened",
            "steps": len(summary), "instances": sum(s["total"] for s in summary),
            "changed": changed}  # fmt: skip
