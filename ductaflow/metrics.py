"""``record``: results a flow reports, kept in ``metrics.json`` in its instance directory.

Light: only the standard library and ductaflow's config normalisation, so a
flow pays nothing for it. Each call appends one JSON line to a journal,
``.metrics.jsonl``, under an advisory lock (a few microseconds), so nothing
recorded is lost when the process is killed the next moment, and several
processes of one run (a flow and the scripts it starts) can record side by
side. The journal is folded into ``metrics.json`` 0.2 s after the last call,
when it passes 1 MB, at process exit, before ductaflow stops a kernel, and
by ductaflow itself when the attempt ends.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import normalise_config
from .exceptions import ConfigError, MetricError
from .files import read_json, write_json_atomic

METRICS_NAME = "metrics.json"
JOURNAL_NAME = ".metrics.jsonl"
RUN_DIR_ENV = "DUCTAFLOW_RUN_DIR"  # set by ductaflow for the kernel, the script child and debug notebooks
_FOLD_AFTER = 0.2  # seconds after the last call
_FOLD_SIZE = 1 << 20  # journal bytes
_MAX_CHARS = 100_000
_MISSING = object()

try:
    import fcntl
except ImportError:  # Windows: one process per run directory is assumed
    fcntl = None  # type: ignore[assignment]


class _Store:
    """This process's view of the run directory's metrics."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.memory: dict[str, Any] = {}  # outside a run
        self.fd: int | None = None
        self.run_dir: Path | None = None
        self.started = False
        self.timer: threading.Timer | None = None
        self.told = False
        self.written = 0  # journal bytes this process appended since it last folded

    def _start(self) -> None:
        if self.started:
            return
        self.started = True
        run_dir = os.environ.get(RUN_DIR_ENV)
        if run_dir:
            self.run_dir = Path(run_dir)
            atexit.register(self.flush)

    def update(self, values: dict[str, Any]) -> None:
        with self.lock:
            self._start()
            if self.run_dir is None:
                self.memory.update(values)
                self._tell(values)
                return
            if self.fd is None:
                self.fd = os.open(self.run_dir / JOURNAL_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            line = (json.dumps(values, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            with _locked(self.fd):
                os.write(self.fd, line)
            self.written += len(line)
            if self.written > _FOLD_SIZE:  # this process's share of the journal: fold it now
                self.written = 0
                fold(self.run_dir)  # type: ignore[arg-type]
            elif self.timer is None:
                self.timer = threading.Timer(_FOLD_AFTER, self.flush)
                self.timer.daemon = True
                self.timer.start()

    def flush(self) -> None:
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = None
            if self.run_dir is not None:
                with contextlib.suppress(OSError):
                    fold(self.run_dir)

    def values(self) -> dict[str, Any]:
        with self.lock:
            self._start()
            return read_metrics(self.run_dir) if self.run_dir is not None else dict(self.memory)

    def _tell(self, values: dict[str, Any]) -> None:
        if not self.told:
            self.told = True
            names = ", ".join(map(repr, values))
            print(f"ductaflow.record: not in a ductaflow run, so {names} and later values are kept in "
                  "memory only (ductaflow.recorded() returns them).", file=sys.stderr)  # fmt: skip


_STORE = _Store()
if hasattr(os, "register_at_fork"):  # a forked child opens its own journal handle and lock
    os.register_at_fork(after_in_child=_STORE.reset)


def record(name: str | None = None, value: Any = _MISSING, /, **values: Any) -> None:
    """Record results of the flow: ``record("rmse", 0.12)`` or ``record(rmse=0.12, n=500)``.

    Values must be JSON-native or convertible (numbers, text, booleans, None,
    numpy scalars, dates, short lists, small dicts; NaN is stored as null);
    recording a name again overwrites it. In a run executed by ductaflow
    (kernel, script with ``--output-dir``, or a debug notebook) they go to
    ``metrics.json`` in the instance directory, and :func:`collect` and the
    report show them; elsewhere they stay in memory (:func:`recorded`). A
    value that cannot be stored raises :class:`MetricError` naming it.
    """
    items: dict[str, Any] = {}
    if name is not None:
        if value is _MISSING:
            raise TypeError(f"record({name!r}) needs a value: record({name!r}, value) or record(name=value)")
        items[name] = value
    elif value is not _MISSING:
        raise TypeError("record(None, value): give the value a name")
    items.update(values)
    if not items:
        raise TypeError("record() needs something to record: record('rmse', 0.12) or record(rmse=0.12)")
    _STORE.update({key: _checked(key, item) for key, item in items.items()})


def recorded() -> dict[str, Any]:
    """The values recorded so far: this run directory's metrics, or this process's outside a run."""
    return _STORE.values()


def flush() -> None:
    """Fold the journal into ``metrics.json`` now (ductaflow calls this before it stops a kernel)."""
    _STORE.flush()


def read_metrics(run_dir: str | os.PathLike[str], journal: bool = True) -> dict[str, Any]:
    """``metrics.json`` with any journal lines not yet folded into it (from a process killed early).

    A finished attempt has no journal left: ``journal=False`` skips looking for one.
    """
    folder = os.fspath(run_dir)
    values = read_metrics_file(Path(folder))
    if not journal:
        return values
    with contextlib.suppress(OSError), open(os.path.join(folder, JOURNAL_NAME), "rb") as fh:
        for entry in _entries(fh.read()):
            values.update(entry)
    return values


def fold(run_dir: Path, *, final: bool = False) -> None:
    """Fold the journal into ``metrics.json`` (atomically) and empty it; ``final`` also removes it."""
    journal = run_dir / JOURNAL_NAME
    try:
        fd = os.open(journal, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        with _locked(fd):
            data = os.pread(fd, os.fstat(fd).st_size, 0)
            if data or final:
                values = read_metrics_file(run_dir)
                for entry in _entries(data):
                    values.update(entry)
                if values or (run_dir / METRICS_NAME).exists():
                    write_json_atomic(run_dir / METRICS_NAME, values, indent=1 if final else None)
                os.ftruncate(fd, 0)
            if final:
                journal.unlink(missing_ok=True)
    finally:
        os.close(fd)


def read_metrics_file(run_dir: Path) -> dict[str, Any]:
    """``metrics.json`` alone (an empty dict when absent or unreadable)."""
    loaded, _ = read_json(run_dir / METRICS_NAME)
    return loaded if isinstance(loaded, dict) else {}


def _entries(data: bytes) -> Iterator[dict[str, Any]]:
    for line in data.splitlines():
        with contextlib.suppress(ValueError):  # a line cut short by a kill mid-write
            entry = json.loads(line)
            if isinstance(entry, dict):
                yield entry


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _checked(name: Any, value: Any) -> Any:
    if not isinstance(name, str) or not name.strip():
        raise MetricError(f"a metric name must be non-empty text, got {name!r}.", metric=repr(name))
    try:
        normalised = normalise_config({name: value})[name]
    except ConfigError as exc:
        reason = str(exc).replace("config key", "key", 1)
        raise MetricError(f"metric {name!r} cannot be stored in {METRICS_NAME}: {reason}",
                          metric=name) from None  # fmt: skip
    size = len(json.dumps(normalised, ensure_ascii=False))
    if size > _MAX_CHARS:
        raise MetricError(f"metric {name!r} is {size} characters of JSON, more than {_MAX_CHARS}. Write it "
                          "to a file in the instance directory and record the file's name.",
                          metric=name)  # fmt: skip
    return normalised
