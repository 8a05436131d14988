"""The run index behind ``ductaflow serve``: read-only, refreshed by a background thread, answers memoised.

A thread calls ``index.refresh()`` in a loop, pausing at least a second and
at least twice as long as the last refresh took, so a huge runs folder never
keeps the disk busy. The web requests query the index from their own
threads (it is thread-safe; a refresh holds its lock only to store what
changed). What does not depend on the request (``steps()``, a step's
columns) is remembered until the index's version changes, and worked out by
the refreshing thread right after a change, so a page asks only for its rows.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
MIN_PAUSE_S = 1.0


def steps_of(index: Any) -> list[dict[str, Any]]:
    """``index.steps()``."""
    return index.steps()


def columns_of(index: Any, step: str) -> list[str]:
    """``index.columns(step)``."""
    return index.columns(step)


def pause_after(refresh_s: float) -> float:
    """How long to wait after a refresh that took ``refresh_s`` seconds before the next one."""
    return max(MIN_PAUSE_S, 2 * refresh_s)


class LiveIndex:
    """A read-only run index of ``runs_dir``, kept fresh by a background thread.

    :meth:`start` opens it and refreshes it once (raising what that raised),
    then refreshes in the background; :attr:`version` is ``index.version``
    after the last refresh; :meth:`call` runs ``function(index, ...)``;
    :meth:`memo` does too, remembering the answer until the version changes;
    :meth:`stop` ends the thread.
    """

    def __init__(self, runs_dir: str | os.PathLike[str]) -> None:
        self.runs_dir = runs_dir
        self.version = 0
        self.refreshed_at = 0.0  # time.time() of the last refresh
        self.problem: str | None = None  # why the last refresh failed
        self.index: Any = None
        self._memo: dict[Hashable, Any] = {}
        self._memo_version = -1
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ductaflow-serve-refresh", daemon=True)

    def start(self) -> None:
        """Open the index, refresh it once, then keep refreshing in the background."""
        from ..runindex import open_index

        self.index = open_index(self.runs_dir, read_only=True)
        self._pause = self._refresh()
        self._thread.start()

    def stop(self) -> None:
        """End the refreshing thread (after the refresh under way, if any)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(index, *args)``."""
        return function(self.index, *args)

    def memo(self, key: Hashable, function: Callable[..., T], *args: Any) -> T:
        """``function(index, *args)``, remembered under ``key`` while the index's version stays the same."""
        with self._lock:
            if self._memo_version != self.version:
                self._memo, self._memo_version = {}, self.version
            if key in self._memo:
                return self._memo[key]
        found = function(self.index, *args)
        with self._lock:
            if self._memo_version == self.version:
                self._memo[key] = found
        return found

    def _run(self) -> None:
        pause = self._pause
        while not self._stopping.wait(pause):
            try:
                pause = self._refresh()
            except Exception as exc:  # the next refresh tells the truth again; the page shows why meanwhile
                self.problem = f"reading the runs folder failed: {exc}"
                pause = MIN_PAUSE_S
            else:
                self.problem = None

    def _refresh(self) -> float:
        start = time.monotonic()
        self.index.refresh()
        took = time.monotonic() - start
        changed = int(self.index.version) != self.version
        self.version = int(self.index.version)
        self.refreshed_at = time.time()
        if changed:  # what every page asks first, ready before it asks
            for step in self.memo("steps", steps_of):
                self.memo(("columns", step["step"]), columns_of, step["step"])
        return pause_after(took)
