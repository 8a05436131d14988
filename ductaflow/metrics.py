"""``record``: results a flow reports, kept in ``metrics.json`` in its instance directory.

Light: only the standard library and ductaflow's config normalisation, so a
flow pays nothing for it. Values are kept in memory and written atomically
to ``metrics.json`` at once, then at most every 0.2 s while calls keep
coming (a background timer writes the last ones), when the process exits,
and when ductaflow stops the kernel, so a loop of thousands of calls costs
little and a flow that fails keeps what it recorded before.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .config import normalise_config
from .exceptions import ConfigError, MetricError

METRICS_NAME = "metrics.json"
RUN_DIR_ENV = "DUCTAFLOW_RUN_DIR"  # set by ductaflow for the kernel, the script child and debug notebooks
_WRITE_EVERY = 0.2  # seconds
_MAX_CHARS = 100_000
_MISSING = object()


class _Store:
    """This process's recorded values and their file."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, Any] = {}
        self.path: Path | None = None
        self.loaded = False
        self.dirty = False
        self.last_write = 0.0
        self.timer: threading.Timer | None = None
        self.told = False

    def update(self, values: dict[str, Any]) -> None:
        with self.lock:
            self._load()
            self.values.update(values)
            self.dirty = True
            if self.path is None:
                self._tell(values)
            elif time.monotonic() - self.last_write >= _WRITE_EVERY:
                self._write()
            elif self.timer is None:
                self.timer = threading.Timer(_WRITE_EVERY, self.flush)
                self.timer.daemon = True
                self.timer.start()

    def flush(self) -> None:
        with self.lock:
            self.timer = None
            if self.dirty and self.path is not None:
                self._write()

    def _load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        run_dir = os.environ.get(RUN_DIR_ENV)
        self.path = Path(run_dir) / METRICS_NAME if run_dir else None
        if self.path is not None and self.path.exists():  # another process of this run recorded first
            with contextlib.suppress(OSError, ValueError):
                self.values.update(json.loads(self.path.read_text(encoding="utf-8")))
        atexit.register(self.flush)

    def _write(self) -> None:
        assert self.path is not None
        tmp = self.path.with_name(f".{METRICS_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.values, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        self.dirty = False
        self.last_write = time.monotonic()

    def _tell(self, values: dict[str, Any]) -> None:
        if not self.told:
            self.told = True
            names = ", ".join(map(repr, values))
            print(f"ductaflow.record: not in a ductaflow run, so {names} and later values are kept in "
                  "memory only (ductaflow.recorded() returns them).", file=sys.stderr)  # fmt: skip


_STORE = _Store()


def record(name: str | None = None, value: Any = _MISSING, /, **values: Any) -> None:
    """Record results of the flow: ``record("rmse", 0.12)`` or ``record(rmse=0.12, n=500)``.

    Values must be JSON-native or convertible (numbers, text, booleans, None,
    numpy scalars, dates, short lists, small dicts); recording a name again
    overwrites it. In a run executed by ductaflow (kernel, script with
    ``--output-dir``, or a debug notebook) they go to ``metrics.json`` in the
    instance directory, and :func:`collect` and the report show them;
    elsewhere they stay in memory (:func:`recorded`). A value that cannot be
    stored raises :class:`MetricError` naming it.
    """
    items: dict[str, Any] = {}
    if name is not None:
        if value is _MISSING:
            raise TypeError(
                f"record({name!r}) needs a value: record({name!r}, value) or record({name}=value)"
            )
        items[name] = value
    elif value is not _MISSING:
        raise TypeError("record(None, value): give the value a name")
    items.update(values)
    if not items:
        raise TypeError("record() needs something to record: record('rmse', 0.12) or record(rmse=0.12)")
    _STORE.update({key: _checked(key, item) for key, item in items.items()})


def recorded() -> dict[str, Any]:
    """The values :func:`record` received in this process (and, in a run, found in ``metrics.json``)."""
    with _STORE.lock:
        _STORE._load()
        return dict(_STORE.values)


def flush() -> None:
    """Write recorded values now (ductaflow calls this before it stops a kernel)."""
    _STORE.flush()


def _checked(name: Any, value: Any) -> Any:
    if not isinstance(name, str) or not name.strip():
        raise MetricError(f"a metric name must be non-empty text, got {name!r}.", metric=repr(name))
    try:
        normalised = normalise_config({name: value})[name]
    except ConfigError:
        raise MetricError(f"metric {name!r}: a {type(value).__name__} cannot be stored in {METRICS_NAME}. "
                          "Record numbers, text, booleans, None, or short lists and small dicts of them.",
                          metric=name) from None  # fmt: skip
    size = len(json.dumps(normalised, ensure_ascii=False))
    if size > _MAX_CHARS:
        raise MetricError(f"metric {name!r} is {size} characters of JSON, more than {_MAX_CHARS}. Write it "
                          "to a file in the instance directory and record the file's name.",
                          metric=name)  # fmt: skip
    return normalised
