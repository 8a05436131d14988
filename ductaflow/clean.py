"""Clean: what a runs folder keeps and no longer needs, listed with its size, deleted only when asked.

Five kinds of folder, each found only where ductaflow puts it and only when
it is ductaflow's:

- ``previous``: a kept previous attempt, ``runs/<step>/.ductaflow/previous/<instance>/``
  (the last success, kept while a later attempt runs or after it failed),
  holding its run record;
- ``attempts``: the unsuccessful attempts kept for an instance,
  ``runs/<step>/.ductaflow/attempts/<instance>/`` (those a retry tried again,
  one whose record was unreadable), each holding its config or record;
- ``debug``: a debug copy written by ``ductaflow open``,
  ``runs/<step>/.debug-<instance>/``, holding its marker;
- ``not-in-table``: with ``not_in``, an instance directory of the step,
  holding its run record, whose name the table does not give;
- ``leftover``: a folder a clean was deleting when it stopped, or an
  attempt's directory a killed process was making (``.ductaflow/staging/``).

The rules: a previous attempt or an instance is deleted only under the
instance's lock, so nothing running is touched (it is listed, ``kept``); no
symbolic link is followed or deleted, so nothing outside the folder given is
reached; a folder without ductaflow's layout (no run record, no marker) is
never listed. A folder is first renamed into the step's ``.ductaflow/``
folder, then removed: an instance is there whole or gone, never half deleted.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .debug import DEBUG_PREFIX, is_debug_copy
from .exceptions import ConfigError, InstanceBusyError, RunDirectoryError
from .files import rename
from .rundir import (
    CONFIG_NAME,
    STATE_DIR,
    is_locked,
    lock_instance,
    stale_staging,
)
from .runrecord import RECORD_NAME, read_record
from .sources import instances_from_table, source_rows

COLUMNS = ["kind", "step", "instance", "path", "bytes", "deleted", "note"]
KINDS = ("not-in-table", "previous", "attempts", "debug", "leftover")  # the order of one instance's rows
RUNNING = "running now: kept"
_TRASH = "deleting-"  # runs/<step>/.ductaflow/deleting-...: a folder being removed


@dataclass
class _Found:
    kind: str
    step_dir: Path
    instance: str
    path: Path
    size: int = 0
    deleted: bool = False
    note: str = ""


def clean_runs(
    path: str | os.PathLike[str] = "runs",
    *,
    not_in: Any = None,
    name_column: str = "instance_name",
    grid: Mapping[str, Sequence[Any]] | None = None,
    delete: bool = False,
) -> Any:
    """List, and with ``delete=True`` delete, what ``path`` (a runs or step folder) no longer needs.

    Returns a DataFrame with one row per folder: ``kind``, ``step``,
    ``instance``, ``path``, ``bytes`` (the files' size), ``deleted`` and
    ``note`` (``running now: kept``, or why it could not be deleted). Kinds:
    ``previous``, a kept previous attempt (``<step>/.ductaflow/previous/``);
    ``attempts``, an instance's kept unsuccessful attempts
    (``<step>/.ductaflow/attempts/<instance>/``);
    ``debug``, a debug copy (``<step>/.debug-<instance>/``);
    ``not-in-table``, an instance ``not_in`` does not name; ``leftover``, a
    folder an interrupted clean was removing, or the directory a killed
    process was making for an attempt. Without ``delete`` nothing is
    touched. An instance or its previous attempt is deleted only under the
    instance's lock: one running is kept. No symbolic link is followed, and
    a folder without ductaflow's run record or debug marker is never listed.

    ``not_in`` (a table file, a DataFrame or a list of dicts) adds the
    instances of the step folder ``path`` that the table does not name. Names
    come as ``sweep`` makes them: from ``name_column``, else from the values
    that vary, each row times every combination of ``grid`` (give the grid
    the sweep had); the base config does not change names. Names differing
    only in case count as one. A table naming none of the step's instances is
    refused (:class:`ConfigError`), as is ``not_in`` with a runs folder: one
    table never deletes another step's instances.

    >>> clean_runs("runs")[["kind", "step", "instance", "deleted"]]  # a dry run: it lists, deletes nothing
        kind       step instance  deleted
    0  debug  make_data    short    False
    >>> table = [{"noise": 1.0}, {"noise": 9.0}]  # instances noise=1.0 and noise=9.0
    >>> gone = clean_runs("runs/make_data", not_in=table, delete=True)
    >>> gone[["kind", "instance", "deleted"]]
               kind instance  deleted
    0  not-in-table   seed=1     True
    1  not-in-table   seed=2     True
    2  not-in-table    short     True
    3         debug    short     True
    4  not-in-table     try1     True
    >>> sorted(p.name for p in Path("runs/make_data").iterdir())
    ['.ductaflow', 'noise=1.0', 'noise=9.0']
    """
    import pandas as pd

    root = Path(path).absolute()
    steps = _step_folders(root, for_table=not_in is not None)
    names = None if not_in is None else _table_names(not_in, name_column, grid)
    found = [item for step in steps for item in _found_in(step, names)]
    if delete:
        for item in found:
            _delete(item)
    rows = [[i.kind, i.step_dir.name, i.instance, str(i.path), i.size, i.deleted, i.note] for i in found]
    return pd.DataFrame(rows, columns=COLUMNS)


def _step_folders(root: Path, for_table: bool) -> list[Path]:
    """``root`` itself when it is a step folder, else its step folders; raises for anything else."""
    if not root.is_dir():
        raise ConfigError(f"{str(root)!r} is not a directory. Give a runs folder or a step folder "
                          "(runs/<step>).", path=str(root))  # fmt: skip
    if (root / RECORD_NAME).exists():
        raise ConfigError(f"{root} is an instance directory. Give its step folder ({root.parent}) or the "
                          "runs folder.", path=str(root))  # fmt: skip
    if _is_step(root):
        return [root]
    if for_table:
        raise ConfigError(f"{root} is not a step folder. A table names the instances of one step: give "
                          "its folder, such as runs/<step>, so it never deletes another step's "
                          "instances.", path=str(root))  # fmt: skip
    return [step for step in _folders(root) if not step.name.startswith(".") and _is_step(step)]


def _is_step(folder: Path) -> bool:
    return _real_dir(folder / STATE_DIR) or any((child / RECORD_NAME).is_file() for child in _folders(folder))


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _folders(parent: Path) -> list[Path]:
    """The folders in ``parent`` (hidden ones too), by name; symbolic links are left out."""
    try:
        with os.scandir(parent) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def _table_names(table: Any, name_column: str, grid: Mapping[str, Sequence[Any]] | None) -> set[str]:
    source: dict[str, Any] = {"grid": dict(grid or {}), "name_column": name_column}
    if isinstance(table, (str, os.PathLike)):
        source["table"] = str(Path(table).absolute())
        table = None
    base, rows = source_rows(source, Path.cwd(), table=table)
    pairs = instances_from_table(rows, name_column=name_column, base_config=base)
    return {name.casefold() for name, _ in pairs}


def _found_in(step: Path, names: set[str] | None) -> list[_Found]:
    found = []
    state = step / STATE_DIR
    if _real_dir(state):
        found += [_Found("previous", step, p.name, p) for p in _folders(state / "previous") if read_record(p)]
        found += [_Found("attempts", step, p.name, p) for p in _folders(state / "attempts") if _attempts(p)]
        found += [_Found("leftover", step, "", p) for p in _folders(state) if p.name.startswith(_TRASH)]
        found += [_Found("leftover", step, "", p) for p in stale_staging(step)
                  if not _running(step / p.name.rsplit("-", 2)[0])]  # fmt: skip
    for folder in _folders(step):
        if folder.name.startswith(DEBUG_PREFIX) and is_debug_copy(folder):
            found.append(_Found("debug", step, folder.name.removeprefix(DEBUG_PREFIX), folder))
    if names is not None:
        found += _not_in_table(step, names)
    for item in found:
        item.size = _size(item.path)
        if item.kind in ("previous", "attempts", "not-in-table") and _running(step / item.instance):
            item.note = RUNNING
    return sorted(found, key=lambda i: (i.instance, KINDS.index(i.kind), str(i.path)))


def _not_in_table(step: Path, names: set[str]) -> list[_Found]:
    instances = [f for f in _folders(step) if not f.name.startswith(".") and read_record(f) is not None]
    if instances and not any(f.name.casefold() in names for f in instances):
        shown = ", ".join(f.name for f in instances[:3]) + (", ..." if len(instances) > 3 else "")
        raise ConfigError(
            f"the table names no instance of step {step.name!r} (it has {len(instances)}: {shown}), so "
            "clean deletes none. Check the step folder and the table. Names made from the values that "
            "vary change when another column starts or stops varying: give the table a name column "
            "(--name-column), and the sweep's --grid if it had one.",
            path=str(step),
        )
    return [_Found("not-in-table", step, f.name, f) for f in instances if f.name.casefold() not in names]


def _attempts(folder: Path) -> bool:
    """Whether ``folder`` holds kept attempts: sub-folders with ductaflow's config or record."""
    return any((a / CONFIG_NAME).is_file() or (a / RECORD_NAME).is_file() for a in _folders(folder))


def _running(run_dir: Path) -> bool:
    """True while a process holds the instance's lock."""
    return is_locked(run_dir)


def _size(path: Path) -> int:
    """The bytes of the files under ``path``, links counted as themselves and not followed."""
    total, pending = 0, [path]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


def _delete(item: _Found) -> None:
    """Rename ``item`` into its step's state folder (under the instance's lock when it has one), remove it."""
    if item.note == RUNNING:
        return
    trash = item.path
    try:
        if item.kind == "leftover":
            pass
        elif item.kind == "debug":
            trash = _set_apart(item)
        else:
            with lock_instance(item.step_dir / item.instance):
                trash = _set_apart(item)
        shutil.rmtree(trash)
        item.deleted = True
    except InstanceBusyError:
        item.note = RUNNING
    except (OSError, RunDirectoryError) as exc:
        item.deleted = not item.path.exists() and not trash.exists()
        item.note = "" if item.deleted else f"not deleted: {exc}"


def _set_apart(item: _Found) -> Path:
    """Move ``item`` to a name only clean uses, after checking it is still what was listed."""
    if item.kind == "debug":
        ours = is_debug_copy(item.path)
    else:
        ours = _attempts(item.path) if item.kind == "attempts" else read_record(item.path) is not None
    if item.path.is_symlink() or not ours:
        raise RunDirectoryError(f"{item.path} changed since it was listed; left as it is.",
                                run_dir=str(item.path))  # fmt: skip
    trash = item.step_dir / STATE_DIR / f"{_TRASH}{uuid.uuid4().hex[:12]}"
    trash.parent.mkdir(exist_ok=True)
    rename(item.path, trash)
    return trash
