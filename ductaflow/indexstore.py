"""Where the run index lives: its SQLite file, when SQLite can be trusted there, and its tables.

See :mod:`ductaflow.runindex` for what the index holds and how it stays true to the files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .rows import row_of, watched_files
from .runrecord import RECORD_NAME, RunStatus

INDEX_NAME = ".ductaflow-index.sqlite"
INDEX_ENV = "DUCTAFLOW_INDEX"  # "off": read the files each time
SCHEMA = "2"
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre",
                                 "gpfs", "beegfs", "afs", "fuse.sshfs", "fuse.glusterfs", "fuse.s3fs",
                                 "fuse.gcsfuse", "fuse.rclone"})  # fmt: skip
_TOLD: set[str] = set()
_TOLD_LOCK = threading.Lock()

TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS instances (
    step TEXT NOT NULL, name TEXT NOT NULL, sig TEXT NOT NULL, raw TEXT NOT NULL, status TEXT NOT NULL,
    fingerprint TEXT, attempt TEXT, row TEXT NOT NULL, basis INTEGER, config_hash TEXT,
    PRIMARY KEY (step, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bases (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sources (key TEXT PRIMARY KEY, files TEXT NOT NULL, hashes TEXT NOT NULL)
    WITHOUT ROWID;
"""
#: Files changed more recently than this (ns) are read again at the next refresh: a same-size rewrite
#: within one timestamp tick (a second on some filesystems) keeps inode, mtime and size.
RACY_NS = 2_000_000_000
DROP_TABLES = "DROP TABLE instances; DROP TABLE bases; DROP TABLE sources; DELETE FROM meta;"
#: What a success is compared with today, besides its config (``ductaflow status``): shared by a sweep.
BASIS_KEYS = ("flow", "flow_sha256", "project_root", "config_source", "kernel", "mode")


def unavailable(runs_dir: Path) -> str | None:
    """Why ``runs_dir`` cannot hold an index (``DUCTAFLOW_INDEX=off``, a network filesystem), or ``None``."""
    if os.environ.get(INDEX_ENV, "").lower() in ("off", "0", "no", "false"):
        return f"{INDEX_ENV}=off"
    if not runs_dir.is_dir():
        return "it does not exist yet"
    kind = filesystem_type(runs_dir)
    if kind in NETWORK_FILESYSTEMS:
        return f"it is on a network filesystem ({kind}) where SQLite's locking is unsafe"
    return None


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The filesystem type of ``path`` from ``/proc/mounts`` (or ``mounts``' text); ``None`` when unknown."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target, best, kind = os.path.realpath(path), -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), fields[2]
    return kind


def loads_rows(texts: list[str]) -> list[dict[str, Any]]:
    """Many rows' JSON texts parsed in one call (much faster than one call each)."""
    return json.loads("[" + ",".join(texts) + "]") if texts else []


def connect(path: Path) -> sqlite3.Connection:
    """The database at ``path`` in WAL mode, shared by threads; raises DatabaseError when it is corrupt."""
    db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a corrupt file fails here
    return db


def memory() -> sqlite3.Connection:
    """An empty database in memory (shared by threads)."""
    return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)


def is_memory(db: sqlite3.Connection) -> bool:
    """True when ``db`` lives in memory only."""
    return all(not file for _, name, file in db.execute("PRAGMA database_list") if name == "main")


def drop(path: Path) -> None:
    """Remove the database at ``path`` and its WAL files."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.unlink(f"{path}{suffix}")


def tell_once(runs: Path, why: str) -> None:
    """Say once per process and runs folder that the views read every file there, and why."""
    if why == "it does not exist yet":
        return
    with _TOLD_LOCK:
        if os.fspath(runs) in _TOLD:
            return
        _TOLD.add(os.fspath(runs))
    print(
        f"ductaflow: no run index for {runs}: {why}; views read every run folder's files instead",
        file=sys.stderr,
    )


def read_instance(run_dir: Path) -> tuple[str, str, dict[str, Any], Any]:
    """``(name, signature, row, record)`` of an instance directory: the signature is taken before the read.

    The signature names the watched files, then ``inode:mtime_ns:size;`` of
    ``run.json`` and of each of them; empty: no record. ``running`` in front
    marks a live attempt, and ``recent`` files changed in the last
    :data:`RACY_NS` (a same-size rewrite within one timestamp tick would
    keep the signature): both are read again at every refresh.
    """
    try:
        before = os.stat(run_dir / RECORD_NAME)
    except OSError:
        before = None
    record: Any = None
    problem = "is missing"
    if before is not None:
        try:
            with open(run_dir / RECORD_NAME, "rb") as fh:
                record, problem = json.loads(fh.read()), None
        except (OSError, ValueError) as exc:
            problem = f"is unreadable ({type(exc).__name__})"
    files = watched_files(record)
    stats = [] if before is None else [before, *(_stat(run_dir / f) for f in files)]
    sig = "".join(_stat_sig(st) if st is not None else "-;" for st in stats)
    row = row_of(run_dir, record, problem)
    if row["status"] == RunStatus.RUNNING:  # alive now: read again until it ends (a crashed one stays so)
        sig = "running" + sig
    elif before is not None:
        sig = ",".join(files) + "|" + sig
        if time.time_ns() - max(st.st_mtime_ns for st in stats if st is not None) < RACY_NS:
            sig = "recent" + sig
    return run_dir.name, sig, row, record


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def finite_json(row: dict[str, Any]) -> str:
    """A row as JSON that SQLite's JSON functions read: NaN and infinities (a hand-written file) as null."""
    try:
        return json.dumps(row, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(row), ensure_ascii=False, default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _stat_sig(st: os.stat_result) -> str:
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size};"


def folders(path: Path) -> list[str]:  # steps of a runs folder, instances of a step
    """Sub-directory names not starting with a dot (``os.scandir``: no stat per entry)."""
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
    except (FileNotFoundError, NotADirectoryError):  # gone; any other error is raised: rows are kept
        return []


def file_signature(root: Path, given: Any) -> str:
    """``name:inode:mtime_ns:size;`` of a file a config source reads (``root / given``), for cache keys."""
    if not given:
        return "-;"
    try:
        st = os.stat(root / str(given))
    except OSError:
        return f"{given}:missing;"
    if time.time_ns() - st.st_mtime_ns < RACY_NS:  # changed a moment ago: never matched again
        return f"{given}:recent:{time.time_ns()};"
    return f"{given}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size};"
