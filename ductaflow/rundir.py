"""The run folder: its layout, the instance lock, and each attempt's fresh directory.

Layout of a runs folder::

    runs/<step>/<instance>/        the instance directory (one attempt, never mixed)
        config.json  run.json  log.txt  <flow>.ipynb  <flow>.html  ... the flow's own files
    runs/<step>/.ductaflow/        ductaflow's own state for the step:
        <instance>.lock            held while an attempt runs
        previous/<instance>/       the last successful attempt, kept while a
                                   newer attempt runs or after it failed
        staging/<instance>-<pid>-<thread>/  an attempt's directory being made, then renamed
        environments/<sha256>.json  each environment.json once, hard-linked into the instances
        attempts/<instance>/<n>/   the unsuccessful attempts of the latest call that
                                   tried it again (retries), and an attempt whose
                                   record was unreadable, set aside as found

An attempt starts in a directory that holds only its ``config.json`` and
``run.json`` (:func:`open_attempt`) and ends by writing its final record
(:func:`close_attempt`); both are called with the instance lock held.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .environment import STORE_NAME, Environment, keep_flow_file, store_environment
from .exceptions import DiskFullError, InstanceBusyError, RunDirectoryError
from .files import no_space, overwrite_in_place, read_json, rename, shown_path, write_json_atomic
from .metrics import fold as fold_metrics
from .runrecord import RECORD_NAME, RunStatus, is_record, now_iso, read_record, write_record

RUNS_DIR = "runs"
STATE_DIR = ".ductaflow"
CONFIG_NAME = "config.json"
LOG_NAME = "log.txt"


def layout_root(run_dir: Path) -> Path:
    """The project root that ``<root>/runs/<step>/<instance>`` implies for ``run_dir``."""
    return run_dir.parents[2] if len(run_dir.parents) > 2 else run_dir.parent


def previous_attempt_dir(run_dir: Path) -> Path:
    """Where the last successful attempt of ``run_dir`` is kept while a new one runs."""
    return run_dir.parent / STATE_DIR / "previous" / run_dir.name


def attempts_dir(run_dir: Path) -> Path:
    """Where the earlier unsuccessful attempts of ``run_dir`` are kept (retries, an unreadable record)."""
    return run_dir.parent / STATE_DIR / "attempts" / run_dir.name


def unreadable_record(run_dir: Path) -> str | None:
    """What is wrong with the record of an instance directory ductaflow made, or ``None``.

    ``None`` when ``run_dir`` holds a readable record, or none at all. A
    ``run.json`` that is empty, truncated or garbage (a crash of another tool,
    a full disk) in a folder that ductaflow's layout identifies as an
    instance (its ``config.json``, or its log and notebook) is an interrupted
    attempt: ``"run.json is unreadable (JSONDecodeError)"``.
    """
    path = run_dir / RECORD_NAME
    data, problem = read_json(path)
    if problem == "is missing" or is_record(data):
        return None
    if not (
        (run_dir / CONFIG_NAME).is_file() or ((run_dir / LOG_NAME).is_file() and any(run_dir.glob("*.ipynb")))
    ):
        return None  # not laid out as one of ours (its lock proves nothing: taking it makes it)
    return f"{RECORD_NAME} {problem or 'is not a ductaflow record'}"


def state_dir(step_dir: Path) -> Path:
    """The folder of ductaflow's own files for a step folder (``runs/<step>/.ductaflow``)."""
    return step_dir / STATE_DIR


def state_file(run_dir: Path, name: str) -> Path:
    """A file of ductaflow's own for the instance ``run_dir``, in its step's state folder."""
    return state_dir(run_dir.parent) / name


# Instance locks held by this process. On NFS a file lock belongs to the process, not to one
# open file, so two threads (two sweeps sharing a Dask worker) would both get it: they check here.
_HELD: set[str] = set()
_HELD_GUARD = threading.Lock()


def _lock_path(run_dir: Path) -> Path:
    return state_file(run_dir, f"{run_dir.name}.lock")


def lock_if_writable(run_dir: Path) -> Any:
    """:func:`lock_instance`, or, where the runs folder cannot be written (a read-only copy, where
    nothing runs either), no lock at all (a null context). Raises :class:`InstanceBusyError`."""
    try:
        return lock_instance(run_dir)
    except (RunDirectoryError, DiskFullError):
        return contextlib.nullcontext()


def lock_instance(run_dir: Path) -> Any:
    """Hold the instance's lock (a context manager); raise if another process, or thread, holds it."""
    from filelock import FileLock, Timeout

    path = _lock_path(run_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _HELD_GUARD:
            if str(path) in _HELD:
                raise Timeout(str(path))
            lock = FileLock(path, timeout=0)
            lock.acquire()
            _HELD.add(str(path))
        return _HeldLock(lock, str(path))
    except Timeout:
        raise InstanceBusyError(
            f"instance {run_dir.name!r} ({run_dir}) is being executed by another process. "
            "Wait for it to finish, or run a different instance.",
            run_dir=str(run_dir),
        ) from None
    except OSError as exc:
        if no_space(exc):
            raise disk_full(exc, run_dir) from None
        raise RunDirectoryError(
            f"cannot create ductaflow's lock for {run_dir} ({type(exc).__name__}: {exc}). "
            "Check that the folder is writable and that no file stands where a folder should be.",
            run_dir=str(run_dir),
        ) from None


def disk_full(exc: OSError, run_dir: Path) -> DiskFullError:
    """The error for a write about ``run_dir`` that found no room: which file, which disk, what to do.

    A file of ductaflow's own state (the lock, the directory being made) is
    named by the instance directory, which is what a user knows.
    """
    ours = exc.filename is not None and STATE_DIR in Path(exc.filename).parts
    where = shown_path(exc.filename) if exc.filename is not None and not ours else shown_path(run_dir)
    return DiskFullError(f"the disk is full ({exc.strerror or exc}) writing {where}: free space on the disk "
                         f"holding {shown_path(run_dir.parent.parent)}, then run again; finished instances "
                         "are kept", path=exc.filename or str(run_dir))  # fmt: skip


class _HeldLock:
    """An acquired instance lock; leaving the ``with`` block releases it."""

    def __init__(self, lock: Any, key: str) -> None:
        self.lock, self.key = lock, key

    def __enter__(self) -> _HeldLock:
        return self

    def __exit__(self, *exc: object) -> None:
        with _HELD_GUARD:
            self.lock.release()
            _HELD.discard(self.key)


def is_locked(run_dir: Path) -> bool:
    """True while a process (or a thread of this one) holds the instance's lock, or it cannot be taken.

    A lock file that was never made is nobody's: then nothing is written.
    """
    if not _lock_path(run_dir).exists():
        return False
    try:
        with lock_instance(run_dir):
            return False
    except (InstanceBusyError, RunDirectoryError, DiskFullError):
        return True


def current_status(
    record: Mapping[str, Any] | None, run_dir: Path, *, lock_held: bool = False
) -> RunStatus | None:
    """The instance's state: its record's status, or ``crashed`` for a stale ``running`` record.

    A ``running`` record is stale when nobody holds the instance lock (the
    process that wrote it is gone). Pass ``lock_held=True`` when the caller
    holds the lock itself. A status this version does not know is returned
    as it is written.
    """
    if record is None:
        return None
    status = record.get("status")
    if status != RunStatus.RUNNING:
        return _as_status(status)
    if lock_held:
        return RunStatus.CRASHED
    from filelock import FileLock, Timeout

    path = _lock_path(run_dir)
    with _HELD_GUARD:
        if str(path) in _HELD:  # held by a thread of this process: probing the file could release it
            return RunStatus.RUNNING
        probe = FileLock(path, timeout=0)
        try:
            with probe.acquire():
                return RunStatus.CRASHED
        except Timeout:
            return RunStatus.RUNNING


def _as_status(value: Any) -> Any:
    try:
        return RunStatus(value)
    except ValueError:
        return str(value)


def check_run_dir(run_dir: Path) -> None:
    """Raise :class:`RunDirectoryError` when ``run_dir`` cannot hold a ductaflow run; writes nothing."""
    for parent in run_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirectoryError(f"{parent} is a file, so {run_dir} cannot be created. "
                                        "Pick another output directory.", run_dir=str(run_dir))  # fmt: skip
            break
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunDirectoryError(
            f"{run_dir} exists and is not a directory. Remove it or pick another name.", run_dir=str(run_dir)
        )
    if read_record(run_dir) is None and any(run_dir.iterdir()) and unreadable_record(run_dir) is None:
        raise RunDirectoryError(
            f"{run_dir} already holds files that ductaflow did not write (no ductaflow {RECORD_NAME}). "
            "ductaflow will not mix its output with them or delete them: choose another output directory "
            "or move those files away.",
            run_dir=str(run_dir),
        )


def open_attempt(
    run_dir: Path,
    config: dict[str, Any],
    record: dict[str, Any],
    *,
    keep_failed_as: str | None = None,
    environment: Environment | None = None,
) -> None:
    """Give ``run_dir`` a fresh directory holding only ``config.json`` and ``run.json``.

    With ``environment``, it also holds ``environment.json``, a hard link to
    the step's one copy of it (:func:`ductaflow.environment.store_environment`).

    A previous successful attempt is moved to :func:`previous_attempt_dir`; the
    remains of an unsuccessful one are removed, or kept as
    ``attempts/<instance>/<keep_failed_as>`` (a retry keeps the attempt it
    retries; a first attempt drops the ones an earlier call kept); a
    directory holding files that ductaflow did not write is refused. The new
    directory is assembled under a temporary name and renamed into place, so
    it never exists without its record, and a failed assembly (a full disk)
    leaves nothing behind. Call with the instance lock held.
    """
    if keep_failed_as is None:
        forget_attempts(run_dir)
    _set_aside(run_dir, keep_failed_as)
    staging = new_staging(run_dir)  # a process killed while it staged left one: gone
    try:
        write_json_atomic(staging / CONFIG_NAME, config, durable=True)
        if environment is not None:
            store_environment(environment, staging, _store(run_dir))
        write_record(staging, record)
        rename(staging, run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def close_attempt(run_dir: Path, record: dict[str, Any], status: RunStatus, started: float) -> None:
    """Fold recorded metrics, write the final record; after a success, drop the kept previous attempt."""
    with contextlib.suppress(OSError):  # the flow's process may have died before folding its journal
        fold_metrics(run_dir, final=True)
    record["status"] = status.value
    record["ended_at"] = now_iso()
    record["duration_s"] = round(time.monotonic() - started, 3)
    try:
        write_record(run_dir, record)
    except OSError as exc:
        if not no_space(exc) or status is RunStatus.SUCCESS:
            raise
        _overwrite_record(run_dir, record, exc)
    if status is RunStatus.SUCCESS:
        shutil.rmtree(previous_attempt_dir(run_dir), ignore_errors=True)


def _overwrite_record(run_dir: Path, record: dict[str, Any], exc: OSError) -> None:
    """A full disk: write the unsuccessful record over the old one, in its blocks, short; else raise ``exc``.

    The last record read ``running``; a reader that meets the file half
    written takes it for an unreadable record, which is an interrupted attempt too.
    """
    short = dict(record)
    if isinstance(short.get("error"), dict):
        short["error"] = {**short["error"], "traceback": short["error"].get("traceback", "")[-1000:]}
    for key in ("versions", "fingerprint_parts", "git"):
        short.pop(key, None)
    short["record_shortened"] = "the disk was full: versions, fingerprint parts and git state left out"
    try:
        overwrite_in_place(run_dir / RECORD_NAME, json.dumps(short, ensure_ascii=False) + "\n")
    except OSError:
        raise exc from None


def keep_flow_files(
    run_dir: Path, config: dict[str, Any], started_at: str, environment: Environment | None = None
) -> list[str]:
    """A flow that wrote config.json, run.json or environment.json itself: keep its file as ``*.flow.json``.

    ``started_at`` tells the attempt's own record from the flow's. Returns a
    warning per file kept; ``config.json`` (and ``environment.json``, given
    ``environment``) is written again if the flow removed it.
    """
    warnings = []
    for name in (CONFIG_NAME, RECORD_NAME):
        path = run_dir / name
        if name == RECORD_NAME:
            ours = (read_record(run_dir) or {}).get("started_at", object()) == started_at
        else:
            ours = read_json(path)[0] == config
        if path.exists() and not ours:
            rename(path, path.with_suffix(".flow.json"))
            warnings.append(f"the flow wrote {name}, a name ductaflow uses: kept as {path.stem}.flow.json")
    if not (run_dir / CONFIG_NAME).exists():
        write_json_atomic(run_dir / CONFIG_NAME, config, durable=True)
    if environment is not None and (kept := keep_flow_file(environment, run_dir, _store(run_dir))):
        warnings.append(kept)
    return warnings


def _store(run_dir: Path) -> Path:
    """Where the step of ``run_dir`` keeps one file per environment."""
    return state_dir(run_dir.parent) / STORE_NAME


def _set_aside(run_dir: Path, keep_failed_as: str | None = None) -> None:
    check_run_dir(run_dir)  # again, under the lock
    if not run_dir.exists():
        return
    old = read_record(run_dir)
    if old is not None and old.get("status") == RunStatus.SUCCESS:
        previous = previous_attempt_dir(run_dir)
        shutil.rmtree(previous, ignore_errors=True)
        previous.parent.mkdir(parents=True, exist_ok=True)
        rename(run_dir, previous)
    elif old is None and unreadable_record(run_dir) is not None:  # kept as found: it may hold results
        keep_attempt(run_dir, "unreadable-record")
    elif keep_failed_as is not None and old is not None:
        keep_attempt(run_dir, keep_failed_as)
    else:  # an empty directory or the evidence of an unsuccessful attempt
        shutil.rmtree(run_dir)


def install_attempt(staged: Path, run_dir: Path) -> None:
    """Put ``staged``, a finished successful instance directory made in the step's staging folder
    (:func:`new_staging`), in place as ``run_dir``'s attempt, in one rename.

    What ``run_dir`` held goes as :func:`open_attempt` sets it aside (files
    that ductaflow did not write are refused). Call with the instance lock held.
    """
    forget_attempts(run_dir)
    _set_aside(run_dir)
    rename(staged, run_dir)
    shutil.rmtree(previous_attempt_dir(run_dir), ignore_errors=True)


def new_staging(run_dir: Path) -> Path:
    """A new empty directory in the staging folder of ``run_dir``'s step, for an attempt being made.

    Named like an attempt's (``<instance>-<pid>-<thread>``), so that a
    process killed while it fills it leaves nothing the next attempt keeps.
    """
    staging = staging_dir(run_dir.parent) / f"{run_dir.name}-{os.getpid()}-{threading.get_ident()}"
    for stale in stale_staging(run_dir.parent, run_dir.name):
        shutil.rmtree(stale, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def staging_dir(step_dir: Path) -> Path:
    """Where attempts' directories are made (``staging/<instance>-<pid>-<thread>``), to be renamed."""
    return state_dir(step_dir) / "staging"


def stale_staging(step_dir: Path, instance: str | None = None) -> list[Path]:
    """Directories being made in ``step_dir``'s staging folder (of ``instance`` only, when given).

    Under the instance's lock, every one of that instance is a leftover of a
    process killed while it made the attempt's directory. The folder holds
    only the attempts being made, so looking costs nothing in a large step.
    """
    found = []
    with contextlib.suppress(OSError), os.scandir(staging_dir(step_dir)) as entries:
        for entry in entries:
            match = _STAGED.fullmatch(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and instance in (None, match.group(1)):
                found.append(Path(entry.path))
    return sorted(found)


_STAGED = re.compile(r"(.+)-\d+-\d+")  # <instance>-<pid>-<thread>


def keep_attempt(run_dir: Path, name: str) -> Path:
    """Move the attempt in ``run_dir`` to ``attempts/<instance>/<name>`` (replacing one there); return it."""
    kept = attempts_dir(run_dir) / name
    shutil.rmtree(kept, ignore_errors=True)
    kept.parent.mkdir(parents=True, exist_ok=True)
    rename(run_dir, kept)
    return kept


def forget_attempts(run_dir: Path) -> None:
    """Drop the attempts kept by an earlier call (a new call's first attempt starts a new history)."""
    shutil.rmtree(attempts_dir(run_dir), ignore_errors=True)
