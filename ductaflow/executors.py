"""Executors: where a conductor's tasks run. Threads of this process, any process pool, or Dask.

:func:`as_executor` turns what a user passes as ``executor=`` into a
``concurrent.futures.Executor``; :func:`dask_client` gives a Dask client for
``--scheduler``: a LocalCluster for one sweep, or a running scheduler.
``distributed`` is optional (``pip install 'ductaflow[dask]'``) and imported
only here, when a scheduler is asked for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from .exceptions import SchedulerError

CONNECT_TIMEOUT_S = 10


def as_executor(executor: Any) -> tuple[Executor, bool]:
    """The ``concurrent.futures`` executor for ``executor`` and whether tasks leave this process.

    ``executor`` is a ``concurrent.futures.Executor`` (a thread pool keeps
    tasks in this process; any other sends them elsewhere) or a
    ``dask.distributed.Client``.
    """
    if isinstance(executor, ThreadPoolExecutor):
        return executor, False
    if isinstance(executor, Executor):
        return executor, True
    if type(executor).__module__.startswith("distributed") and hasattr(executor, "get_executor"):
        return executor.get_executor(pure=False), True
    raise TypeError(
        f"executor must be a concurrent.futures.Executor or a dask.distributed.Client, "
        f"got {type(executor).__name__}"
    )


@contextlib.contextmanager
def dask_client(scheduler: str, *, timeout: float = CONNECT_TIMEOUT_S) -> Iterator[Any]:
    """A ``dask.distributed.Client`` for ``scheduler``, closed (with its cluster) on exit.

    ``scheduler`` is ``local:N`` (a LocalCluster of N single-threaded worker
    processes on this machine, started now and stopped on exit; ``local``
    alone uses one per CPU), or the address of a running scheduler
    (``tcp://host:8786``; a bare ``host:8786`` means tcp). The client is not
    made Dask's default client. Pass it as ``run_instances(..., executor=client)``.

    >>> base = load_config("config/make_data.json", ["n_days=60"])
    >>> with dask_client("local:2") as client:
    ...     frame = run_instances("flow/make_data.py", [{"noise": 1.0}, {"noise": 3.0}],
    ...                           base_config=base, executor=client, progress=False)
    >>> frame[["instance", "status", "reason"]]
        instance   status     reason
    0  noise=1.0  skipped  unchanged
    1  noise=3.0  success        new
    """
    workers = _local_workers(scheduler)
    distributed = _import_distributed(scheduler)
    if workers is not None:
        try:
            cluster = _local_cluster(distributed, workers)
        except Exception as exc:  # the workers died starting: most often a script without a main guard
            raise SchedulerError(
                f"could not start a local Dask cluster of {workers} worker processes "
                f"({type(exc).__name__}: {exc}). A script that starts one must keep its work under "
                '`if __name__ == "__main__":`, since each worker process imports the script again.',
                scheduler=scheduler,
            ) from exc
        with cluster, distributed.Client(cluster, set_as_default=False) as client:
            yield client
        return
    address = scheduler if "://" in scheduler else f"tcp://{scheduler}"
    try:  # checked first: a Client made from a bad address hangs on its way out
        distributed.comm.get_address_host_port(address)
    except ValueError as exc:  # an unknown protocol, a port that is not a number...
        raise SchedulerError(
            f"scheduler {scheduler!r} is not a Dask scheduler address ({exc}). "
            "Use tcp://HOST:PORT (tls://HOST:PORT with TLS), or local:N for workers on this machine.",
            scheduler=scheduler,
        ) from None
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({type(exc).__name__}). "
            "Check the address, that `dask scheduler` runs there and that its port is open, "
            "or use --scheduler local:N for workers on this machine.",
            scheduler=scheduler,
        ) from None
    with client:
        yield client


def _local_workers(scheduler: str) -> int | None:
    """N for ``local:N`` (``local``: one per CPU), ``None`` for an address."""
    kind, _, count = scheduler.strip().partition(":")
    if kind != "local":
        if not scheduler.strip() or " " in scheduler.strip():
            raise SchedulerError(f"scheduler {scheduler!r} is not an address. Use local:N (N worker "
                                 "processes here) or tcp://HOST:PORT.", scheduler=scheduler)  # fmt: skip
        return None
    if not count:
        return os.cpu_count() or 1
    if not count.isdigit() or int(count) < 1:
        raise SchedulerError(f"scheduler {scheduler!r}: N in local:N must be a whole number of worker "
                             "processes, at least 1 (local:4).", scheduler=scheduler)  # fmt: skip
    return int(count)


def _import_distributed(scheduler: str) -> Any:
    try:
        import distributed
    except ImportError:
        raise SchedulerError(
            f"scheduler {scheduler!r} needs Dask's distributed package: pip install 'ductaflow[dask]'.",
            scheduler=scheduler,
        ) from None
    return distributed


def _local_cluster(distributed: Any, workers: int) -> Any:
    """N single-threaded worker processes: one instance each at a time, as with ``jobs=N``."""
    return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address="127.0.0.1:0", preload=[__name__])  # fmt: skip


def dask_setup(worker: Any) -> None:
    """Preload hook of the local cluster's worker processes: Ctrl-C is the sweep's, not theirs.

    A terminal's Ctrl-C reaches every process of the sweep. The conductor
    answers it by stopping the running instances (the stop file), then the
    cluster; a worker dying of the signal first would only add tracebacks.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_warm_up, name="ductaflow-warm-up", daemon=True).start()


def _warm_up() -> None:
    """Import what an instance needs while the sweep is still being planned."""
    import jupyter_client.manager  # noqa: F401
    import nbclient  # noqa: F401

    from . import tasks  # noqa: F401
    from .notebook import warm_up

    warm_up().join()
