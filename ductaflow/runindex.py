"""The run index: every instance's row in one SQLite database in the runs folder, so views stay fast.

``runs/.ductaflow-index.sqlite`` (WAL mode) holds each instance's row (what
:func:`ductaflow.collect` shows, see :mod:`ductaflow.rows`), its raw
status, fingerprint and attempt, and the signature of the files it was made
from (inode, modification time and size of ``run.json`` and
``metrics.json``). The files stay the truth: every read first calls
:meth:`RunIndex.refresh`, which lists the step folders, compares each
signature with a ``stat`` of the files, re-reads what changed, adds new
folders and drops vanished ones. A conductor updates the row in the same
step that writes a record (:func:`note_instance`), so the next view reads
nothing. Several processes share the database through SQLite's own locking.

Where SQLite's locking cannot be trusted (a network filesystem: NFS, SMB,
Lustre...) or ``DUCTAFLOW_INDEX=off`` is set, the index lives in memory for
the call: the views read every file each time, as they would without it,
and say so once. ``read_only=True`` (``ductaflow serve``) never writes into
the runs folder: it copies the database into memory and keeps that copy true.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .indexquery import order_by, where_clause
from .indexstore import (
    BASIS_KEYS,
    DROP_TABLES,
    INDEX_NAME,
    SCHEMA,
    TABLES,
    connect,
    drop,
    finite_json,
    folders,
    is_memory,
    loads_rows,
    memory,
    read_instance,
    tell_once,
    unavailable,
)
from .rows import BASE_COLUMNS
from .rundir import STATE_DIR
from .runrecord import RECORD_NAME, RunStatus, is_record

_SHARED: dict[tuple[int, str], RunIndex] = {}  # per process: the index each runs folder's writers share
_SHARED_LOCK = threading.Lock()


def open_index(runs_dir: str | os.PathLike[str], *, read_only: bool = False) -> RunIndex:
    """The index of ``runs_dir``: its database, or one in memory when it cannot or must not be written.

    A database is made only in a runs folder: one holding a step folder that
    ductaflow made (with its ``.ductaflow`` state folder), never in any
    folder a view was pointed at, nor in one that does not exist yet.
    """
    runs = Path(runs_dir).absolute()
    why = unavailable(runs)
    if (
        why is None
        and not read_only
        and not (runs / INDEX_NAME).exists()
        and not any((runs / step / STATE_DIR).is_dir() for step in folders(runs))
    ):
        return RunIndex(runs, memory())
    if read_only or why is not None:
        if why is not None:
            tell_once(runs, why)
        index = RunIndex(runs, memory())
        if read_only and why is None:
            index.seed_from(runs / INDEX_NAME)
        return index
    try:
        return RunIndex(runs, connect(runs / INDEX_NAME))
    except sqlite3.DatabaseError as exc:
        problem = exc
        if "not a database" in str(exc) or "malformed" in str(exc):  # the files are the truth: made again
            drop(runs / INDEX_NAME)
            try:
                return RunIndex(runs, connect(runs / INDEX_NAME))
            except sqlite3.Error as again:
                problem = again
    tell_once(runs, f"its index cannot be opened or written ({problem})")
    return RunIndex(runs, memory())


def shared_index(runs_dir: Path) -> RunIndex:
    """This process's index of ``runs_dir``, opened once and shared by its threads."""
    key = (os.getpid(), os.fspath(runs_dir))
    with _SHARED_LOCK:
        index = _SHARED.get(key)
        if index is None or (not index.enabled and unavailable(runs_dir) is None):
            index = _SHARED[key] = open_index(runs_dir)
        return index


def note_instance(run_dir: Path, *, create: bool = True) -> None:
    """Bring ``run_dir``'s row in its runs folder's index up to date; never raises (files are the truth).

    ``create=False`` (a script run with ``--output-dir`` anywhere) only
    updates an index that exists already.
    """
    runs = run_dir.parent.parent
    if not create and not (runs / INDEX_NAME).exists():
        return
    try:
        index = shared_index(runs)
        if index.enabled:
            index.note(run_dir)
    except (sqlite3.Error, OSError):
        pass


#: A row's JSON with ``run_dir`` where the folder is now (a runs folder can be moved), set by SQLite.
_PLACED = "json_set(row, '$.run_dir', ? || step || ? || name)"


class RunIndex:
    """Rows of a runs folder's instances, kept true to the files. Thread-safe."""

    def __init__(self, runs_dir: Path, connection: sqlite3.Connection) -> None:
        self.runs_dir = runs_dir
        self.enabled = not is_memory(connection)
        self._db = connection
        self._lock = threading.RLock()
        self._db.executescript(TABLES)
        if self._meta("schema") not in (None, SCHEMA):  # made by another version: made again
            self._db.executescript(DROP_TABLES + TABLES)
        self._set_meta("schema", SCHEMA)
        self._version = 0
        self._bases: set[int] = set()  # the bases this connection stored

    @property
    def version(self) -> int:
        """Grows whenever a refresh or a conductor changed a row."""
        with self._lock:
            return int(self._meta("version") or 0) + self._version

    def seed_from(self, database: Path) -> None:
        """Copy the rows of the database at ``database`` into this in-memory index, writing nothing there.

        Opened ``immutable``: SQLite reads the main file only, and neither the
        WAL nor its shared-memory file (which even a read-only reader updates).
        Rows committed only to the WAL yet are read from their files by the
        refresh that follows, like any row whose files changed.
        """
        if not database.is_file():
            return
        try:
            source = sqlite3.connect(f"{database.as_uri()}?immutable=1", uri=True)  # touches no -wal, -shm
            try:
                if source.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (SCHEMA,):
                    with self._lock:
                        source.backup(self._db)
                        self._version += 1
            finally:
                source.close()
        except sqlite3.Error:  # unreadable or busy: the refresh reads the files
            pass

    def refresh(self, step: str | None = None, *, records_only: bool = False) -> int:
        """Reconcile the rows with the files (one step, or all); returns how many rows changed.

        ``records_only`` compares ``run.json`` alone (what status and the
        plan read: half the ``stat`` calls); a row whose other files changed
        keeps its old signature, so the next full refresh reads it again.
        When the database fails (a lock held too long, a full disk), the
        index goes on in memory, read from the files, and says so once.
        """
        try:
            return self._refresh(step, records_only)
        except sqlite3.Error as exc:
            if not self.enabled:
                raise
            tell_once(self.runs_dir, f"its index failed ({exc})")
            with self._lock:
                self._db, self.enabled = memory(), False
                self._db.executescript(TABLES)
            return self._refresh(step, records_only)

    def _refresh(self, step: str | None, records_only: bool = False) -> int:
        with self._lock:  # before the listing: a step a conductor adds meanwhile is not taken for gone
            known = {s for (s,) in self._db.execute("SELECT DISTINCT step FROM instances")}
        steps = [step] if step is not None else folders(self.runs_dir)
        changed = 0
        for name in steps:
            changed += self._refresh_step(name, records_only)
        gone = known - set(steps) if step is None else set()
        if gone:
            with self._lock, self._write():
                self._db.executemany("DELETE FROM instances WHERE step=?", [(s,) for s in gone])
            changed += len(gone)
        return changed

    def rebuild(self) -> int:
        """Forget every row and read all the files again; returns how many rows were read."""
        with self._lock, self._write():
            for table in ("instances", "bases", "sources"):
                self._db.execute(f"DELETE FROM {table}")
            self._bases.clear()
        return self.refresh()

    def note(self, run_dir: Path) -> None:
        """Re-read one instance directory's files into its row (or drop the row when it is gone)."""
        step, name = run_dir.parent.name, run_dir.name
        found = read_instance(run_dir) if run_dir.is_dir() else None  # read before the write lock
        with self._lock, self._write():
            if found is not None:
                self._store(step, [found])
            else:
                self._db.execute("DELETE FROM instances WHERE step=? AND name=?", (step, name))

    def rows(self, step: str | None = None) -> list[dict[str, Any]]:
        """Every row (of one step), refreshed first, in step and instance order."""
        self.refresh(step)
        sql = f"SELECT {_PLACED} FROM instances" + (" WHERE step=?" if step is not None else "")
        with self._lock:
            only = () if step is None else (step,)
            found = self._db.execute(sql + " ORDER BY step, name", (*self._base, *only))
            return loads_rows([text for (text,) in found])

    def row(self, step: str, instance: str) -> dict[str, Any] | None:
        """One row, read again from its files first; ``None`` when the folder does not exist."""
        self.note(self.runs_dir / step / instance)
        with self._lock:
            sql = f"SELECT {_PLACED} FROM instances WHERE step=? AND name=?"
            found = self._db.execute(sql, (*self._base, step, instance)).fetchall()
        return loads_rows([found[0][0]])[0] if found else None

    def glances(self, step: str) -> dict[str, tuple[str, str | None, str | None]]:
        """``{instance: (raw status, fingerprint, attempt)}`` of one step, refreshed first (for the plan)."""
        self.refresh(step, records_only=True)
        with self._lock:
            found = self._db.execute(
                "SELECT name, raw, fingerprint, attempt FROM instances WHERE step=?", (step,)
            )
            return {name: (raw, fp, attempt) for name, raw, fp, attempt in found}

    def successes(self, step: str) -> list[tuple[Any, ...]]:
        """What ``ductaflow status`` needs of each instance of ``step``, refreshed first, by name.

        Tuples ``(name, status, started, duration, error, basis, config hash)``;
        the basis (JSON text of :data:`BASIS_KEYS` and the fingerprint parts but
        the config hash) and the hash are ``None`` unless the latest attempt succeeded.
        """
        self.refresh(step, records_only=True)
        with self._lock:
            return self._db.execute(
                "SELECT name, status, json_extract(row, '$.started'), json_extract(row, '$.duration'),"
                " json_extract(row, '$.error'), bases.text, config_hash FROM instances"
                " LEFT JOIN bases ON bases.id = instances.basis WHERE step=? ORDER BY name",
                (step,),
            ).fetchall()

    def source_hashes(self, key: str, files: str) -> dict[str, str] | None:
        """The config hash of each instance a config source made when its files had signature ``files``."""
        with self._lock:
            found = self._db.execute("SELECT files, hashes FROM sources WHERE key=?", (key,)).fetchone()
        return json.loads(found[1]) if found and found[0] == files else None

    def keep_source_hashes(self, key: str, files: str, hashes: dict[str, str]) -> None:
        """Remember :meth:`source_hashes` (a cache: a failure to write it is ignored)."""
        with contextlib.suppress(sqlite3.Error), self._lock, self._write():
            values = (key, files, json.dumps(hashes))
            self._db.execute("INSERT OR REPLACE INTO sources VALUES (?, ?, ?)", values)

    def steps(self) -> list[dict[str, Any]]:
        """Per step: total, counts by status, first start, last end, mean success duration, running count."""
        with self._lock:
            found = self._db.execute(
                "SELECT step, status, count(*), min(json_extract(row, '$.started')),"
                " max(json_extract(row, '$.ended')),"
                " avg(CASE WHEN status='success' THEN json_extract(row, '$.duration') END)"
                " FROM instances GROUP BY step, status ORDER BY step"
            ).fetchall()
        steps: dict[str, dict[str, Any]] = {}
        for step, status, n, first, last, mean in found:
            empty = {"step": step, "total": 0, "counts": {}, "first_started": None, "last_ended": None,
                     "mean_success_s": None, "running": 0}  # fmt: skip
            item = steps.setdefault(step, empty)
            item["total"] += n
            item["counts"][status] = n
            item["first_started"] = min(filter(None, [item["first_started"], first]), default=None)
            item["last_ended"] = max(filter(None, [item["last_ended"], last]), default=None)
            if status == RunStatus.SUCCESS:
                item["mean_success_s"] = mean
            if status == RunStatus.RUNNING:
                item["running"] = n
        return list(steps.values())

    def columns(self, step: str) -> list[str]:
        """The step's columns: :data:`BASE_COLUMNS`, then ``config.*``, then ``metric.*``, as first met."""
        with self._lock:
            found = self._db.execute(
                "SELECT DISTINCT j.key FROM instances, json_each(instances.row) AS j WHERE step=?", (step,)
            )
            keys = [k for (k,) in found]
        return [*BASE_COLUMNS, *[k for k in keys if k.startswith("config.")],
                *[k for k in keys if k.startswith("metric.")]]  # fmt: skip

    def query(self, step: str, *, sort: str = "instance", descending: bool = False, where: str = "",
              status: str | None = None, offset: int = 0,
              limit: int = 50) -> tuple[int, list[dict[str, Any]]]:  # fmt: skip
        """``(rows matching, that page of rows)`` of one step: filtered, sorted and paged by SQLite.

        ``where`` holds space-separated terms, each ``column<op>value`` (``=``,
        ``!=``, ``>``, ``<``, ``>=``, ``<=``, ``~`` for "contains") or free text
        matched against instance, status, error and reason.
        """
        clause, params = where_clause(where, status)
        order, keys = order_by(sort, descending)
        with self._lock:
            total = self._db.execute(f"SELECT count(*) FROM instances WHERE step=?{clause}", (step, *params))
            count = int(total.fetchone()[0])
            page = self._db.execute(
                f"SELECT {_PLACED} FROM instances WHERE step=?{clause} ORDER BY {order} LIMIT ? OFFSET ?",
                (*self._base, step, *params, *keys, min(max(0, int(limit)), 1 << 62),
                 min(max(0, int(offset)), 1 << 62)),
            ).fetchall()  # fmt: skip
        return count, loads_rows([text for (text,) in page])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    # -- inside ---------------------------------------------------------------------------------

    @property
    def _base(self) -> tuple[str, str]:
        """The values :data:`_PLACED` binds: the runs folder and the separator."""
        return os.fspath(self.runs_dir) + os.sep, os.sep

    def _refresh_step(self, step: str, records_only: bool) -> int:
        folder = self.runs_dir / step
        with self._lock:
            known = dict(self._db.execute("SELECT name, sig FROM instances WHERE step=?", (step,)).fetchall())
        names = folders(folder)
        stale = []
        base, stat = os.fspath(folder) + os.sep, os.stat
        split: dict[str, tuple[str, list[str]]] = {}  # sig's head -> (head, the watched files' suffixes)
        for name in names:  # the hot loop at 100,000 instances: plain strings, one stat per watched file
            sig = known.get(name)
            if not sig or sig[0] == "r":  # no record, "running" or "recent": read again
                stale.append(name)
                continue
            head = sig[: sig.index("|") + 1]
            if head not in split:
                split[head] = (head, [os.sep + f for f in head[:-1].split(",") if f])
            head, suffixes = split[head]
            here = base + name
            try:
                st = stat(here + os.sep + RECORD_NAME)
                today = f"{head}{st.st_ino}:{st.st_mtime_ns}:{st.st_size};"
                if records_only:  # the record's part of the signature alone
                    if not sig.startswith(today):
                        stale.append(name)
                    continue
                for suffix in suffixes:
                    try:
                        st = stat(here + suffix)
                        today += f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size};"
                    except FileNotFoundError:
                        today += "-;"
            except OSError:
                today = ""
            if today != sig:
                stale.append(name)
        gone = known.keys() - set(names)
        if not stale and not gone:
            return 0
        fresh = [read_instance(folder / name) for name in stale]
        with self._lock, self._write():
            self._db.executemany("DELETE FROM instances WHERE step=? AND name=?", [(step, n) for n in gone])
            self._store(step, fresh)
        return len(stale) + len(gone)

    def _store(self, step: str, items: list[tuple[str, str, dict[str, Any], Any]]) -> None:
        values = []
        for name, sig, row, record in items:
            raw = str(record.get("status")) if is_record(record) else ""
            fingerprint = record.get("fingerprint") if is_record(record) else None
            attempt = (f"{record.get('sweep_id')}@{record.get('started_at')}@{record.get('pid')}"
                       f"@{record.get('host')}") if is_record(record) else None  # fmt: skip
            basis, config_hash = self._basis(record) if raw == RunStatus.SUCCESS else (None, None)
            values.append((step, name, sig, raw, str(row["status"]), fingerprint, attempt,
                           finite_json(row), basis, config_hash))  # fmt: skip
        self._db.executemany("INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)

    def _basis(self, record: dict[str, Any]) -> tuple[int, str | None]:
        """The id of what a success shares with its sweep (stored once), and its own config hash."""
        parts = dict(record.get("fingerprint_parts") or {})
        config_hash = parts.pop("config_hash", None)
        basis = {key: record.get(key) for key in BASIS_KEYS}
        basis["fingerprint_parts"] = parts
        text = json.dumps(basis, ensure_ascii=False, default=str)  # key order matters (a space's draws)
        key = int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)  # the same in every process
        if key not in self._bases:
            self._db.execute("INSERT OR IGNORE INTO bases VALUES (?, ?)", (key, text))
            self._bases.add(key)
        return key, config_hash if isinstance(config_hash, str) else None

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; bumps the version the live view watches."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("INSERT INTO meta VALUES ('version', '1') ON CONFLICT(key) DO UPDATE"
                             " SET value = CAST(value AS INTEGER) + 1")  # fmt: skip
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # a failed COMMIT (a full disk) may have ended it already
                self._db.execute("ROLLBACK")
            raise

    def _meta(self, key: str) -> str | None:
        found = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return found[0] if found else None

    def _set_meta(self, key: str, value: str) -> None:
        with self._write():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
