"""One thread owns the run index: it refreshes it in a loop and answers the web requests' questions.

Every use of the index happens in that thread, so the index needs no
locking of its own and a SQLite connection never crosses threads. Between
questions it calls ``index.refresh()``, pausing at least a second and at
least twice as long as the last refresh took, so a huge runs folder never
keeps the disk busy.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
MIN_PAUSE_S = 1.0
_Job = tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]  # function(index, *args), its answer


def pause_after(refresh_s: float) -> float:
    """How long to wait after a refresh that took ``refresh_s`` seconds before the next one."""
    return max(MIN_PAUSE_S, 2 * refresh_s)


class IndexThread:
    """The thread holding a read-only run index of ``runs_dir``, refreshed in the background.

    :meth:`start` opens the index and refreshes it once (raising what that
    raised); :meth:`call` runs ``function(index, ...)`` in the thread and
    returns its result; :attr:`version` is ``index.version`` after the last
    refresh (read without waiting); :meth:`stop` ends the thread.
    """

    def __init__(self, runs_dir: str | os.PathLike[str]) -> None:
        self.runs_dir = runs_dir
        self.version = 0
        self.refreshed_at = 0.0  # time.time() of the last refresh
        self.problem: str | None = None  # why the last refresh failed
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name="ductaflow-serve-index", daemon=True)

    def start(self) -> None:
        """Open the index, refresh it once, then keep refreshing in the background."""
        self._thread.start()
        self._ready.result()

    def stop(self) -> None:
        """End the thread once the question it is answering (if any) is answered."""
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(index, *args)``, run in the index's thread; raises what it raised."""
        done: Future[T] = Future()
        self._jobs.put((function, args, done))
        return done.result()

    def _run(self) -> None:
        from ..runindex import open_index

        try:
            index = open_index(self.runs_dir, read_only=True)
            pause = self._refresh(index)
        except BaseException as exc:  # handed to start(), which raises it
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        due = time.monotonic() + pause
        while True:
            try:
                job = self._jobs.get(timeout=max(0.0, due - time.monotonic()))
            except queue.Empty:
                due = time.monotonic() + self._refresh_quietly(index)
                continue
            if job is None:
                return
            function, args, done = job
            try:
                done.set_result(function(index, *args))
            except Exception as exc:  # raised again in the asking thread
                done.set_exception(exc)

    def _refresh(self, index: Any) -> float:
        start = time.monotonic()
        index.refresh()
        self.version = int(index.version)
        self.refreshed_at = time.time()
        return pause_after(time.monotonic() - start)

    def _refresh_quietly(self, index: Any) -> float:
        """A refresh that failed (a folder vanishing under it) is tried again after the usual pause."""
        try:
            pause = self._refresh(index)
        except Exception as exc:  # the next refresh tells the truth again; the page shows why meanwhile
            self.problem = f"reading the runs folder failed: {exc}"
            return MIN_PAUSE_S
        self.problem = None
        return pause
