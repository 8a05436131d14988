"""Sweeps: instances from a config file, overrides, a table file and a grid, remembered for later.

``sweep`` is what ``ductaflow run`` and ``ductaflow sweep`` do. It records
where each instance's config came from (``config_source`` in ``run.json``) so
that :func:`rebuild_configs` can build it again from today's files and tell
whether it changed.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import JSONValue, load_config, normalise_config
from .exceptions import ConfigError
from .table import instances_from_table, read_table, table_rows


def sweep(
    flow: str | os.PathLike[str],
    table: str | os.PathLike[str] | Any = None,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    instance_name: str | None = None,
    name_column: str = "instance_name",
    project_root: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``flow`` for every row of ``table`` times every combination of ``grid``; return a DataFrame.

    The base config is ``config_file`` with ``overrides`` (``"key=value"``)
    applied; each table row and grid combination is merged over it. ``table``
    is a table file (see :func:`read_table`), a DataFrame or a list of dicts.
    Without table and grid there is one instance, named ``instance_name``,
    else the config's ``instance_name``, else the config file's stem, else
    ``default``. Other arguments pass to :func:`run_instances` (``jobs``,
    ``force``, ``inputs``, ``dry_run``...).

    When the table is a file (or absent), each run records where its config
    came from, so :func:`check_instance` can say when today's files would
    give another config.

    >>> sweep("flow/make_data.py", grid={"noise": [1, 5]},
    ...       config_file="config/make_data.json")  # doctest: +SKIP
    """
    from .conductor import run_instances

    root = Path(project_root if project_root is not None else os.getcwd()).absolute()
    source: dict[str, Any] = {
        "config_file": _relative(config_file, root),
        "overrides": list(overrides),
        "table": _relative(table, root) if isinstance(table, (str, os.PathLike)) else None,
        "grid": {key: list(values) for key, values in (grid or {}).items()} or None,
        "instance_name": instance_name,
        "name_column": name_column,
    }
    if instance_name is not None and (table is not None or grid):
        raise ValueError("instance_name names the single instance of a sweep without table or grid")
    in_memory = table is not None and source["table"] is None
    base, rows = _rows(source, root, None if not in_memory else table)
    return run_instances(flow, rows, base_config=base, name_column=name_column, project_root=root,
                         config_source=None if in_memory else source, **kwargs)  # fmt: skip


def rebuild_configs(source: Mapping[str, Any], root: Path) -> dict[str, dict[str, JSONValue]]:
    """Instance name -> the config it would get today from a recorded ``config_source``.

    Raises :class:`ConfigError` when a file it came from is gone or broken.
    """
    base, rows = _rows(source, root, None)
    name_column = source.get("name_column") or "instance_name"
    return dict(instances_from_table(rows, name_column=name_column, base_config=base))


def _rows(source: Mapping[str, Any], root: Path, table: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config_file = source.get("config_file")
    base = load_config(_absolute(config_file, root), source.get("overrides") or ())
    name_column = source.get("name_column") or "instance_name"
    if source.get("table"):
        table = read_table(_absolute(source["table"], root))
    if table is None:
        name = source.get("instance_name") or base.get("instance_name")
        if not name and not source.get("grid"):
            name = Path(config_file).stem if config_file else "default"
        rows: list[dict[str, Any]] = [{name_column: name}] if name and not source.get("grid") else [{}]
    else:
        rows = table_rows(table)
    return base, _times_grid(rows, source.get("grid") or {})


def _times_grid(rows: list[dict[str, Any]], grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    if not grid:
        return rows
    for key, values in grid.items():
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            raise ConfigError(f"grid key {key!r} needs a non-empty list of values, got {values!r}.", key=key)
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    return [{**row, **normalise_config(combo)} for row in rows for combo in combos]


def _relative(path: Any, root: Path) -> str | None:
    if path is None:
        return None
    absolute = Path(path).absolute()
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return str(absolute)


def _absolute(path: str | None, root: Path) -> Path | None:
    return None if path is None else root / path
