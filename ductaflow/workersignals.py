"""SIGTERM in a worker process: its running instances are recorded ``interrupted``, then the worker goes.

A batch system ends a job at its wall time with SIGTERM (dask-jobqueue's
workers, a Slurm or PBS job), some seconds before SIGKILL. A worker process
dying of it at once would leave its running instances' records saying
``running``, which readers then take for ``crashed``. While a task sent
elsewhere runs (:func:`ductaflow.tasks.run_task_elsewhere`), this module's
handler is installed in its process: SIGTERM sets the stop event of every
running instance (each stops its flow and records ``interrupted``), waits up
to :data:`GRACE_S` for them, then lets the signal do what it did before (by
default, end the process).

The handler can only be installed from the main thread. Tasks run in a
Dask worker's thread pool; the worker's event loop runs in the main thread,
so the installation is handed to it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

#: Seconds a SIGTERM'd worker waits for its running instances to record how they ended.
GRACE_S = 10.0

_running: set[threading.Event] = set()  # stop events of the instances running in this process
_guard = threading.Lock()
_previous: Any = None  # the SIGTERM disposition before ours; None: ours is not installed


@contextlib.contextmanager
def stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """While the block runs, a SIGTERM to this process sets ``stop`` and waits for the block to end."""
    _install()
    with _guard:
        _running.add(stop)
    try:
        yield
    finally:
        with _guard:
            _running.discard(stop)


def _install() -> None:
    if _previous is not None or not hasattr(signal, "SIGTERM"):
        return
    if threading.current_thread() is threading.main_thread():
        _install_here()
        return
    loop = _worker_loop()
    if loop is not None:
        loop.add_callback(_install_here)


def _worker_loop() -> Any:
    """The event loop of the Dask worker this thread works for (it runs in the main thread), or None."""
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        return get_worker().loop
    except ValueError:  # not in a worker's task
        return None


def _install_here() -> None:
    global _previous
    if _previous is None:
        _previous = signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    global _previous
    with _guard:
        stops = list(_running)
    for stop in stops:
        stop.set()
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        with _guard:
            if not _running:
                break
        time.sleep(0.02)
    previous, _previous = _previous, None
    signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.raise_signal(signal.SIGTERM)
