"""Sweeps from files: a config file with overrides, a table file, a grid, paired lists and random draws.

:func:`sweep` (what ``ductaflow run`` and ``ductaflow sweep`` do) builds the
rows from where they come from (:mod:`ductaflow.sources`,
:mod:`ductaflow.spaces`), records that origin (``config_source`` in
``run.json``, with the seed and replicates) and hands the rows to
:func:`ductaflow.conductor.run_instances`. The single instance of a sweep
without table, grid or draws is never silently replaced by a run of another
config (:func:`check_replacement`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .conductor import run_instances
from .config import flatten
from .exceptions import ConfigError, RunDirectoryError
from .files import shown_path
from .fingerprint import config_changes
from .names import check_name
from .options import runs_folder
from .runrecord import read_record
from .seeds import check_replicates, check_sweep_seed
from .sources import instance_label, planned_instances, rebuild_configs, source_rows
from .spaces import check_space, space_record

_MANY = ("table", "grid", "paired", "random")  # a source with one of these makes many instances


def sweep(
    flow: str | os.PathLike[str],
    table: str | os.PathLike[str] | Any = None,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    paired: Mapping[str, Sequence[Any]] | None = None,
    random: int | None = None,
    space: Mapping[str, Any] | None = None,
    seed: int | None = None,
    replicates: int | None = None,
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

    ``paired`` lists are taken together, one instance per position, not
    multiplied (``{"a": [1, 2], "b": ["x", "y"]}``: two instances).
    ``random=n`` draws ``n`` rows from ``space`` (config key -> a list,
    :func:`uniform` or :func:`log_uniform`), reproducibly from ``seed``. Grid
    combinations, paired rows and draws multiply each other and the table's
    rows. ``seed`` is the sweep seed: each instance's seed (``ductaflow.seed()``
    in the flow) derives from it and the instance's name, and is put in its
    config as ``ductaflow_seed``. ``replicates=N`` makes N instances of each
    row, ``<row>-r0 … -r{N-1}``, differing only by their seeds.

    Without table, grid, paired or random there is one instance, named ``instance_name``,
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
    source.update(_recorded_spaces(paired, random, space, seed, replicates))  # only what is given
    many = table is not None or any(source.get(key) for key in _MANY)
    if instance_name is not None and many:
        raise ValueError("instance_name names the single instance of a sweep without table, grid, paired "
                         "or random")  # fmt: skip
    in_memory = table is not None and source["table"] is None
    base, rows = source_rows(source, root, table if in_memory else None)  # checks the columns
    if not many and instance_name is None and not replace:
        runs = runs_folder(root, kwargs.get("runs_dir"))
        step = check_name(kwargs.get("step_name") or Path(flow).stem, "step name")
        for planned in planned_instances(rows, name_column=name_column, base_config=base, new_keys=True,
                                         replicates=replicates, seed=seed):  # fmt: skip
            check_replacement(runs / step / planned.name, source, planned.config, root)
    return run_instances(flow, rows, base_config=base, name_column=name_column, new_keys=True,  # checked
                         project_root=root, config_source=None if in_memory else source,
                         replicates=replicates, seed=seed, **kwargs)  # fmt: skip


def _recorded_spaces(paired: Any, random: Any, space: Any, seed: Any, replicates: Any) -> dict[str, Any]:
    """The ``config_source`` entries of paired lists, a random sweep, a seed and replicates, when given."""
    recorded: dict[str, Any] = {}
    if paired:
        recorded["paired"] = {key: list(values) for key, values in paired.items()}
    if random is not None or space is not None:
        recorded["random"] = random
        recorded["space"] = None if space is None else space_record(check_space(space))
    if seed is not None:
        recorded["seed"] = check_sweep_seed(seed)
    if replicates is not None:
        recorded["replicates"] = check_replicates(replicates)
    return recorded


def check_replacement(
    run_dir: Path, source: Mapping[str, Any], config: Mapping[str, Any], root: Path
) -> None:
    """Refuse to run a single, implicitly named instance where another config's run is.

    Such an instance is named after the config's ``instance_name``, its file or
    ``default``, not after its values, so ``-o drift=0.5`` would replace the
    run of ``-o drift=0.3``. The run there is the same experiment when it has
    ``config``, or when its recorded config file and overrides give ``config``
    today (the file was edited since: an ordinary re-run). Raises
    :class:`RunDirectoryError` naming the instance, the difference and both
    fixes; reads only.
    """
    record = read_record(run_dir)
    if record is None or _same_experiment(record, source, config, root, run_dir.name):
        return
    old = record.get("config") if isinstance(record.get("config"), Mapping) else {}
    changes = config_changes(old, config, limit=5).removeprefix("config changed (").removesuffix(")")
    before, after = dict(flatten(old)), dict(flatten(config))
    changed = {k: v for k, v in after.items() if k not in before or before[k] != v}
    suggestion = instance_label(changed) if changed and len(changed) <= 3 else "NAME"
    raise RunDirectoryError(
        f"instance {run_dir.name!r} ({shown_path(run_dir, root)}) holds the run of another config: "
        f"{changes}. {_name_origin(source, config)}, "
        "not after its values, so this run would replace that one. "
        f"To keep both, name this one: --instance {suggestion} (instance_name= in Python); "
        "to replace it: --replace (replace=True).",
        run_dir=str(run_dir),
    )


def _same_experiment(record: Mapping[str, Any], source: Mapping[str, Any], config: Mapping[str, Any],
                     root: Path, name: str) -> bool:  # fmt: skip
    if record.get("config") == config:
        return True
    old = record.get("config_source")
    if not isinstance(old, Mapping) or any(old.get(many) for many in _MANY):
        return False  # not a single instance of a config file and overrides: another experiment
    if old.get("config_file") != source.get("config_file"):
        return False
    try:  # the same file and overrides (and seed) give this config today: the file was edited since
        return rebuild_configs(old, root).get(name) == config
    except ConfigError:  # its overrides no longer apply to today's file: another experiment
        return False


def _name_origin(source: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    if config.get("instance_name"):
        return "It is named by the config's instance_name"
    if source.get("config_file"):
        return f"It is named after the config file {source['config_file']!r}"
    return "It has the default name, given when nothing names it"
