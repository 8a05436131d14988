"""Place an instance made elsewhere (a cache entry, a run bundle) in this runs folder, as if it ran here.

An instance directory copied from another machine or checkout holds a
record whose paths name where it ran. :func:`relocated` rewrites them for
where it lands: ``run_dir``, ``project_root``, the upstream instances'
``run_dir``; what it says about the attempt itself (host, times, versions,
fingerprint) stays as it was. :func:`place_instance` installs a directory
filled in the step's staging folder (:func:`ductaflow.rundir.new_staging`)
as the instance's attempt in one rename, and brings the run index up to
date, so that ``status``, ``collect`` and the report read it like one that
ran here.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .exceptions import RunDirectoryError
from .files import shown_path
from .rundir import install_attempt
from .runindex import note_instance
from .runrecord import RECORD_NAME, RunStatus, read_record, write_record

#: Fields naming folders that do not travel with the instance (the earlier attempts kept where it ran).
#: Other fields stay as the attempt recorded them, ``python_executable`` and an absolute ``flow`` too.
_DROPPED = ("earlier_attempts",)


def relocated(record: Mapping[str, Any], run_dir: Path, project_root: Path, runs_dir: Path) -> dict[str, Any]:
    """``record`` with its paths naming ``run_dir`` in ``project_root`` (step folders in ``runs_dir``).

    >>> old = {"run_dir": "/cluster/p/runs/fit/a", "project_root": "/cluster/p", "flow": "flow/fit.py",
    ...        "upstream": [{"step": "prep", "instance": "a", "run_dir": "runs/prep/a"}]}
    >>> new = relocated(old, Path("/home/me/p/out/fit/a"), Path("/home/me/p"), Path("/home/me/p/out"))
    >>> new["run_dir"], new["project_root"], new["upstream"][0]["run_dir"]
    ('/home/me/p/out/fit/a', '/home/me/p', 'out/prep/a')
    """
    moved = {key: value for key, value in record.items() if key not in _DROPPED}
    moved["run_dir"] = str(run_dir)
    moved["project_root"] = str(project_root)
    upstream = record.get("upstream")
    if isinstance(upstream, list):
        moved["upstream"] = [_upstream_here(entry, project_root, runs_dir) for entry in upstream]
    return moved


def _upstream_here(entry: Any, project_root: Path, runs_dir: Path) -> Any:
    if not isinstance(entry, Mapping) or not {"step", "instance"} <= entry.keys():
        return entry
    where = runs_dir / str(entry["step"]) / str(entry["instance"])
    return {**entry, "run_dir": shown_path(where, project_root)}


def staged_record(staged: Path, fingerprint: str | None = None) -> dict[str, Any]:
    """The success record of the instance directory ``staged``; :class:`RunDirectoryError` saying what is
    wrong when it has none, or one of another fingerprint than ``fingerprint`` (when given)."""
    record = read_record(staged)
    if record is None:
        raise RunDirectoryError(f"it holds no readable ductaflow {RECORD_NAME}", run_dir=str(staged))
    if record.get("status") != RunStatus.SUCCESS:
        raise RunDirectoryError(f"its record says {record.get('status')!r}, not success", run_dir=str(staged))
    if fingerprint is not None and record.get("fingerprint") != fingerprint:
        raise RunDirectoryError(f"its record's fingerprint is {record.get('fingerprint')!r}, "
                                f"not {fingerprint!r}", run_dir=str(staged))  # fmt: skip
    return record


def place_instance(
    staged: Path,
    run_dir: Path,
    record: Mapping[str, Any],
    *,
    project_root: Path,
    runs_dir: Path,
    **facts: Any,
) -> dict[str, Any]:
    """Install ``staged`` (a success made elsewhere, with ``record``) as ``run_dir``'s attempt; return the
    record written.

    The record is :func:`relocated` and ``facts`` are set in it (such as
    ``restored={...}``, saying where it came from; a fact ``None`` removes
    its key). Call with the instance lock held. On an error ``staged`` is
    removed; a success ``run_dir`` held is then kept in the step's
    ``previous`` folder, as when an attempt fails.
    """
    placed = relocated(record, run_dir, project_root, runs_dir)
    placed.update(facts)
    for key in [key for key, value in facts.items() if value is None]:
        del placed[key]
    try:
        write_record(staged, placed)
        install_attempt(staged, run_dir)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    note_instance(run_dir)
    return placed
