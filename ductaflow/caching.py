"""What an instance does with the shared cache (:mod:`ductaflow.cache`): restore instead of run, push.

A conductor's task asks :func:`restore_instance` for an instance that must
run, and gives :func:`push_instance` each success, under the instance's
lock. :func:`push_runs` (``ductaflow cache push``) pushes successes made
before the cache was set. The cache never decides a result: an entry that
fails a check is skipped with a warning on stderr and the instance runs; a
push that fails keeps the result here. A store that keeps failing (the
network is down) is left alone for :data:`REST_S` seconds after
:data:`FAILURES_IN_A_ROW` failures in a row, said once, so that a sweep of a
thousand instances does not wait on it a thousand times.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .cache import FORMAT, MARKER, ArchiveGone, CacheEntry, CacheUnreachable, RunCache, open_cache
from .exceptions import CacheEntryError, ConfigError, DiskFullError, InstanceBusyError
from .progress import RESTORED
from .project import find_project_root
from .rundir import lock_if_writable
from .runfolders import find_instances
from .runrecord import RunStatus, now_iso, read_record
from .settings import cache_url, project_settings

FAILURES_IN_A_ROW = 5  # failures of the store in a row before it is left alone for a while
REST_S = 60.0  # how long a failing store is left alone


def restore_instance(
    url: str, run_dir: Path, fingerprint: str, *, project_root: Path, runs_dir: Path,
    environment: str | None = None, html: bool = False, asked: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, str | None]:  # fmt: skip
    """Restore ``run_dir``'s instance with ``fingerprint`` from the cache at ``url``, if it holds it.

    Returns the record placed and ``None``; ``(None, None)`` when the cache
    has no such entry, or, given ``environment`` (a sha256 of
    ``environment.json``), none made in that environment; ``(None, why)``
    when its entry was skipped (partial, corrupt, made without the HTML page
    ``html`` asks for, the store unreachable), which is also said on stderr.
    The record's ``reason`` says where the entry came from and ``restored``
    says more; ``asked`` holds what this call asked that the record should
    say instead of the pusher's (``config_source``, ``sweep_id``; ``None``
    values are dropped). A full disk here raises :class:`DiskFullError`.
    Call with the instance lock held.
    """
    cache = open_cache(url)
    step, instance = run_dir.parent.name, run_dir.name
    if _resting(cache):
        return None, None

    def look_and_restore() -> dict[str, Any] | None:
        entry = cache.lookup(fingerprint, step, instance)
        if entry is None or (environment is not None and entry.environment != environment):
            return None
        return cache.restore(entry, run_dir, project_root=project_root, runs_dir=runs_dir, html=html,
                             **_facts(cache, entry, asked or {}))  # fmt: skip

    try:
        try:
            record = look_and_restore()
        except ArchiveGone:  # a push replaced the entry meanwhile: its new marker names its archive
            record = look_and_restore()
        _worked(cache)
        return record, None
    except DiskFullError:
        raise
    except Exception as exc:  # the entry's trouble, or the store's: never this instance's
        if isinstance(exc, CacheUnreachable):
            _failed(cache)
        if not getattr(exc, "quiet", False):
            shown = exc if isinstance(exc, CacheEntryError) else f"{type(exc).__name__}: {exc}"
            say(f"cache entry {fingerprint[:12]} for {step}/{instance} in {cache.shown} skipped: {shown}; "
                "the instance runs instead")  # fmt: skip
        return None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _facts(cache: RunCache, entry: CacheEntry, asked: Mapping[str, Any]) -> dict[str, Any]:
    """What a restored record says besides the pusher's: where it came from, what this call asked."""
    origin = {"from": cache.shown, "host": entry.host, "pushed_at": entry.pushed_at,
              "restored_at": now_iso(), "by": socket.gethostname()}  # fmt: skip
    return {**asked, "reason": f"{RESTORED} ({entry.origin})", "restored": origin}


def push_instance(url: str, run_dir: Path, record: dict[str, Any] | None = None) -> CacheEntry | None:
    """Push the success in ``run_dir`` (its ``record``, read when not given) to the cache at ``url``;
    ``None``, said on stderr, when it could not be pushed (the result stays here), or is no success.
    Call with the instance lock held."""
    record = read_record(run_dir) if record is None else record
    if not _pushable(record):
        return None
    cache = open_cache(url)
    if _resting(cache):
        return None
    try:
        entry = cache.push(run_dir, record)
    except Exception as exc:  # the network, the store's permissions: the result is kept here all the same
        if not isinstance(exc, CacheEntryError):
            _failed(cache)
        say(f"could not push {run_dir.parent.name}/{run_dir.name} to the cache {cache.shown} "
            f"({type(exc).__name__}: {exc}); it is kept here")  # fmt: skip
        return None
    _worked(cache)
    return entry


def push_runs(
    paths: Iterable[str | os.PathLike[str]] = ("runs",),
    cache: str | os.PathLike[str] | None = None,
) -> dict[str, list[str]]:
    """Push every success under ``paths`` (runs folders, step folders, instance folders) to ``cache``.

    Each goes under the fingerprint its record holds, which is what a later
    lookup for the same flow, config and inputs asks for. ``cache`` defaults
    to ``cache`` in the project's ``ductaflow.toml``; without either,
    :class:`ConfigError`. Returns the instances (``step/instance``) by
    outcome: ``pushed``, ``present`` (the cache holds that entry already),
    ``busy`` (an attempt is running), ``not success`` and ``failed`` (the
    push failed; said on stderr). A runs folder that cannot be written (a
    read-only copy) is pushed without taking the instances' locks.
    """
    folders = find_instances(paths)
    store = open_cache(_chosen(cache, folders[0] if folders else Path.cwd()))
    outcome: dict[str, list[str]] = {"pushed": [], "present": [], "busy": [], "not success": [], "failed": []}
    for run_dir in folders:
        name = f"{run_dir.parent.name}/{run_dir.name}"
        try:
            lock = lock_if_writable(run_dir)  # a read-only runs folder: no lock, nothing runs in it
        except InstanceBusyError:
            outcome["busy"].append(name)
            continue
        with lock:
            outcome[_push_one(store, run_dir)].append(name)
    return outcome


def _pushable(record: dict[str, Any] | None) -> bool:
    """Whether ``record`` is a success with a fingerprint: what the cache holds."""
    return bool(record) and record.get("status") == RunStatus.SUCCESS and bool(record.get("fingerprint"))


def _push_one(store: RunCache, run_dir: Path) -> str:
    record = read_record(run_dir)
    if not _pushable(record):
        return "not success"
    try:
        if store.lookup(str(record["fingerprint"]), run_dir.parent.name, run_dir.name) is not None:
            return "present"
    except CacheEntryError:  # a spoiled entry: this success replaces it
        pass
    return "pushed" if push_instance(store.url, run_dir, record) is not None else "failed"


def clean_cache(
    cache: str | os.PathLike[str] | None = None,
    *,
    older_than_days: float | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Remove from ``cache`` what no reader will restore; return what was (``dry_run``: would be) removed.

    Always: archives no marker names (a push cut short, the loser of two
    pushes of one entry at once) and markers that are not a cache entry, once
    older than :data:`ORPHAN_AGE_S`, so that a push in flight keeps its
    archive. With ``older_than_days``, also every entry pushed longer ago
    than that, its marker first. ``cache`` defaults to ``cache`` in the
    project's ``ductaflow.toml``. Returns the keys removed (``removed``), how
    many entries went whole (``entries``) and the bytes freed (``bytes``).
    """
    store = open_cache(_chosen(cache, Path.cwd()))
    now = time.time()
    doomed: list[str] = []
    entries = 0
    for folder, names in _entry_folders(store).items():
        try:
            marker = store.read_marker(f"{folder}/{MARKER}") if MARKER in names else None
        except CacheEntryError:  # not a cache entry: the next push writes a good one over it
            marker = None
            if _age_s(store, f"{folder}/{MARKER}", now) > ORPHAN_AGE_S:
                doomed.append(f"{folder}/{MARKER}")
        expired = marker is not None and older_than_days is not None and (
            now - _timestamp(marker.pushed_at) > older_than_days * 86400)  # fmt: skip
        if expired:
            entries += 1
            doomed.append(f"{folder}/{MARKER}")  # first: a reader never finds a marker without its archive
        for name in sorted(names - {MARKER}):
            orphan = marker is None or name != marker.archive
            if expired or (orphan and _age_s(store, f"{folder}/{name}", now) > ORPHAN_AGE_S):
                doomed.append(f"{folder}/{name}")
    freed = 0
    for key in doomed:
        with contextlib.suppress(Exception):
            freed += int(store.fs.size(key) or 0)
            if not dry_run:
                store.fs.rm_file(key)
    return {"removed": doomed, "entries": entries, "bytes": freed}


ORPHAN_AGE_S = 3600.0  # an archive no marker names is removed once this old: a push takes less


def _entry_folders(store: RunCache) -> dict[str, set[str]]:
    """Each entry folder of ``store`` and the names of the files in it (a marker being written left out)."""
    folders: dict[str, set[str]] = {}
    try:
        found = store.fs.find(f"{store.root}/{FORMAT}")
    except FileNotFoundError:
        return folders
    for key in found:
        folder, _, name = str(key).rpartition("/")
        if not name.startswith("."):
            folders.setdefault(folder, set()).add(name)
    return folders


def _age_s(store: RunCache, key: str, now: float) -> float:
    """Seconds since ``key`` was written; 0 when the store cannot tell (it is then kept)."""
    try:
        return now - store.fs.modified(key).timestamp()
    except Exception:
        return 0.0


def _timestamp(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return time.time()  # a date that does not parse: as if pushed now, kept


def _chosen(cache: str | os.PathLike[str] | None, start: Path) -> str:
    """The cache given, else the one ``ductaflow.toml`` names for the project holding ``start``."""
    if cache is not None:
        given = cache_url(cache, Path.cwd())
    else:
        given = project_settings(find_project_root(start)).cache
    if given is None:
        raise ConfigError("no cache given: pass --cache URL (a folder or an fsspec URL such as "
                          "s3://bucket/cache), or set cache = \"...\" in the project's ductaflow.toml.",
                          key="cache")  # fmt: skip
    return given


def say(message: str) -> None:
    """Tell the user on stderr about a skipped entry or a failed push: results never depend on the cache."""
    with _LOCK:
        print(f"ductaflow: {message}", file=sys.stderr, flush=True)


_LOCK = threading.Lock()
_FAILURES: dict[str, int] = {}  # url -> failures of the store in a row
_RESTING: dict[str, float] = {}  # url -> until when (time.monotonic) it is left alone


def _failed(cache: RunCache) -> None:
    with _LOCK:
        _FAILURES[cache.url] = _FAILURES.get(cache.url, 0) + 1
        if _FAILURES[cache.url] < FAILURES_IN_A_ROW:
            return
        _FAILURES[cache.url] = 0
        _RESTING[cache.url] = time.monotonic() + REST_S
    say(f"the cache {cache.shown} failed {FAILURES_IN_A_ROW} times in a row: it is not used for "
        f"{REST_S:.0f} s (instances run, their results are kept here)")  # fmt: skip


def _worked(cache: RunCache) -> None:
    with _LOCK:
        _FAILURES.pop(cache.url, None)


def _resting(cache: RunCache) -> bool:
    with _LOCK:
        until = _RESTING.get(cache.url)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del _RESTING[cache.url]
        return False
