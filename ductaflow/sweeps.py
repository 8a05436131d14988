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

from .config import JSONValue, apply_overrides, canonical_json, load_config, normalise_config
from .exceptions import ConfigError
from .names import check_name
from .table import instance_label, instances_from_table, read_table, table_rows


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
    grid = source.get("grid") or {}
    if source.get("table"):
        table = read_table(_absolute(source["table"], root))
    if table is None:
        rows: list[dict[str, Any]] = [{}] if grid else [{name_column: _single_name(source, base)}]
    else:
        rows = table_rows(table)
        if name_column != "instance_name" and not any(name_column in row for row in rows):
            columns = ", ".join(dict.fromkeys(k for row in rows for k in row))
            raise ConfigError(f"the name column {name_column!r} is not a column of the table "
                              f"(columns: {columns}).", key=name_column)  # fmt: skip
    if grid and config_file is not None:
        _check_grid_keys(grid, base, config_file)
    return base, _times_grid(rows, grid, name_column)


def _single_name(source: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """The one instance's name: as given, else the config's instance_name, else the config file's stem."""
    config_file = source.get("config_file")
    if source.get("instance_name") is not None:
        return check_name(str(source["instance_name"]), "instance name (--instance)")
    if base.get("instance_name"):
        return check_name(str(base["instance_name"]), f"instance_name in {config_file}")
    if config_file:
        return check_name(Path(config_file).stem, f"instance name taken from the config file {config_file} "
                          "(name the instance with --instance)")  # fmt: skip
    return "default"


def _check_grid_keys(grid: Mapping[str, Sequence[Any]], base: dict[str, Any], config_file: str) -> None:
    """A grid key must exist in the config file, as an override's must: a typo is an error."""
    for key, values in grid.items():
        try:
            apply_overrides(base, [(key, values[0] if values else None)])
        except ConfigError as exc:
            message = str(exc).replace("override key", "grid key", 1)
            raise ConfigError(message.replace("does not exist in the config", f"is not in {config_file}", 1),
                              key=key) from None  # fmt: skip


def _times_grid(rows: list[dict[str, Any]], grid: Mapping[str, Sequence[Any]],
                name_column: str) -> list[dict[str, Any]]:  # fmt: skip
    """Every row times every grid combination; a named row's name gets the combination appended."""
    if not grid:
        return rows
    for key, values in grid.items():
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            raise ConfigError(f"grid key {key!r} needs a non-empty list of values, got {values!r}.", key=key)
        seen = [canonical_json({"v": v}) for v in normalise_config({key: list(values)})[key]]
        if len(set(seen)) < len(seen):
            raise ConfigError(f"grid key {key!r} lists a value twice ({values!r}); list each value once.",
                              key=key)  # fmt: skip
    combos = [
        normalise_config(dict(zip(grid, values, strict=True))) for values in itertools.product(*grid.values())
    ]
    out = []
    for row in rows:
        for combo in combos:
            merged = {**row, **combo}
            if name_column in row:
                merged[name_column] = f"{row[name_column]},{instance_label(combo)}"
            out.append(merged)
    return out


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
