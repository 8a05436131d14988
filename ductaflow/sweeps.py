"""Sweeps from files: a config file with overrides, a table file and a grid become a conductor call.

:func:`sweep` (what ``ductaflow run`` and ``ductaflow sweep`` do) builds the
rows from where they come from (:mod:`ductaflow.sources`), records that
origin (``config_source`` in ``run.json``) and hands the rows to
:func:`ductaflow.conductor.run_instances`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .conductor import run_instances
from .files import shown_path
from .names import check_name
from .options import runs_folder
from .sources import check_replacement, source_rows


def sweep(
    flow: str | os.PathLike[str],
    table: str | os.PathLike[str] | Any = None,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    instance_name: str | None = None,
    name_column: str = "instance_name",
    new_keys: bool = False,
    replace: bool = False,
    project_root: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``flow`` for every row of ``table`` times every combination of ``grid``; return a DataFrame.

    The base config is ``config_file`` with ``overrides`` (``"key=value"``)
    applied; each table row and grid combination is merged over it. ``table``
    is a table file (see :func:`read_table`), a DataFrame or a list of dicts.
    With a config file, a table column that is not one of its keys is refused
    (naming the closest keys) unless ``new_keys=True``.

    Without table and grid there is one instance, named ``instance_name``,
    else the config's ``instance_name``, else the config file's stem, else
    ``default``. Unless it was named with ``instance_name``, a run of another
    config already there is not replaced: the call raises
    :class:`RunDirectoryError` (naming the difference) unless ``replace=True``.
    Other arguments pass to :func:`run_instances` (``jobs``, ``force``,
    ``inputs``, ``dry_run``, ``engine``, ``preload``...).

    When the table is a file (or absent), each run records where its config
    came from, so :func:`check_instance` can say when today's files would
    give another config.

    >>> frame = sweep("flow/make_data.py", grid={"seed": [1, 2]}, config_file="config/make_data.json",
    ...               overrides=["n_days=60"], progress=False)
    >>> frame[["instance", "status"]]
      instance   status
    0   seed=1  success
    1   seed=2  success
    """
    root = Path(project_root if project_root is not None else os.getcwd()).absolute()
    source: dict[str, Any] = {
        "config_file": None if config_file is None else shown_path(config_file, root),
        "overrides": list(overrides),
        "table": shown_path(table, root) if isinstance(table, (str, os.PathLike)) else None,
        "grid": {key: list(values) for key, values in (grid or {}).items()} or None,
        "instance_name": instance_name,
        "name_column": name_column,
        "new_keys": bool(new_keys),
    }
    if instance_name is not None and (table is not None or grid):
        raise ValueError("instance_name names the single instance of a sweep without table or grid")
    in_memory = table is not None and source["table"] is None
    base, rows = source_rows(source, root, table if in_memory else None)  # checks the columns
    if table is None and not grid and instance_name is None and not replace:
        runs = runs_folder(root, kwargs.get("runs_dir"))
        step = check_name(kwargs.get("step_name") or Path(flow).stem, "step name")
        check_replacement(runs / step / rows[0][name_column], source, base, root)
    return run_instances(flow, rows, base_config=base, name_column=name_column, new_keys=True,  # checked
                         project_root=root, config_source=None if in_memory else source,
                         **kwargs)  # fmt: skip
