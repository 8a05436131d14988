"""The kernel engine: execute a notebook in a Jupyter kernel, in a given directory.

Built directly on nbclient. Compared with calling papermill it:

- starts the kernel in the run directory (``cwd`` passed to the launcher, the
  calling process never changes directory, so several instances may execute
  in one process at once);
- uses the interpreter ductaflow runs in unless a ``kernel_name`` is given,
  so a stray user-level ``python3`` kernelspec cannot pick another Python;
- streams every stream output to ``log.txt`` as it arrives, and sends the
  kernel process's own stdout/stderr (subprocesses, C extensions) there too;
- saves the notebook after every cell;
- asks the kernel to exit, renders the report meanwhile, and kills it after
  ``SHUTDOWN_GRACE`` seconds, so a slow kernel exit never stalls a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import Execution, ExecutionError, Outcome
from .kernels import CURRENT_PYTHON_LABEL, check_kernel, client_class, kernel_manager
from .kernelstart import ensure_awaited, start_kernel
from .limits import OomKills, instance_timeout_error, kernel_death, limit_kernel_memory, memory_limit_error

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CLEAN_EXIT_VALUES = {"", "0", "None"}
#: Seconds a kernel gets to exit by itself (atexit handlers, file flushes) before it is killed.
SHUTDOWN_GRACE = 0.5
#: Seconds to wait, once a cell's reply is in, for the rest of its output (up to the kernel's "idle").
OUTPUT_GRACE = 4


class KernelEngine:
    """The ``kernel`` engine: each notebook in a new Jupyter kernel started in its working directory."""

    name: ClassVar[str] = "kernel"

    def check(self, kernel_name: str | None) -> None:
        """Raise :class:`KernelNotFoundError` when ``kernel_name`` is not installed."""
        check_kernel(kernel_name)

    def label(self, kernel_name: str | None) -> str:
        """The kernel's name, or ``ductaflow-python`` for the Python ductaflow runs in."""
        return kernel_name or CURRENT_PYTHON_LABEL

    def execute(self, execution: Execution) -> Outcome:
        """Execute the notebook in place in a new kernel started in ``execution.cwd``.

        ``log`` receives the flow's stdout/stderr as it happens (it must be a
        real file: the kernel process writes to it too). ``on_progress(nb)`` is
        called before the first cell and after each cell. ``on_finish(outcome)``
        is called once when execution is over, while the kernel shuts down, so
        finishing work (the HTML report) overlaps the kernel's exit.

        Cell errors, timeouts, kernel death and a kernel that cannot start are
        returned in :attr:`Outcome.error`; so is a ``KeyboardInterrupt``
        (Ctrl-C) received while the kernel runs, with ``interrupted=True``,
        after the kernel has been stopped: the caller records it, then
        re-raises. Setting ``stop`` (from any thread) interrupts the same way.
        Past ``instance_timeout`` the kernel is killed (InstanceTimeoutError);
        ``max_memory`` limits the kernel process's memory (:mod:`.limits`).
        """
        limit = execution.instance_timeout
        runner = _Runner(execution, deadline=None if limit is None else time.monotonic() + limit)
        outcome, interrupted = _run_in_own_loop(runner.run, execution.stop)
        outcome.interrupt_received = interrupted
        return outcome


def _run_in_own_loop(main: Callable[[], Any], stop: threading.Event | None = None) -> tuple[Any, bool]:
    """Run the coroutine ``main()`` on a new event loop in a worker thread; return its result.

    Also returns whether a Ctrl-C (KeyboardInterrupt) was received while waiting.

    The caller may itself be in an event loop (a conductor running in a
    notebook). Ctrl-C while waiting cancels the coroutine, which stops its
    kernel and returns; a second Ctrl-C stops waiting. ``stop`` does what
    Ctrl-C does, for callers in other threads (a conductor's workers).
    """
    box: dict[str, Any] = {}
    ready = threading.Event()  # the loop and its task exist (or could not be made)
    done = threading.Event()  # not Thread.join: an interrupted join can return early before 3.13

    def work() -> None:  # the loop is made here: a Ctrl-C reaches the main thread only, never half a loop
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(main())
            if stop is not None:  # cancelled with the other leftovers when the loop closes
                box["watcher"] = loop.create_task(_cancel_when_set(stop, task))
            box["loop"], box["task"] = loop, task
            ready.set()
            box["result"] = loop.run_until_complete(task)
        except BaseException as exc:
            box["error"] = exc
        finally:
            try:
                _close(loop)
            finally:
                ready.set()
                done.set()

    threading.Thread(target=work, name="ductaflow-engine", daemon=True).start()
    interrupted = False
    try:
        done.wait()
    except KeyboardInterrupt:
        interrupted = True
        ready.wait()
        if "task" in box and not done.is_set():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to cancel
                box["loop"].call_soon_threadsafe(box["task"].cancel)
        done.wait()
    if "error" in box:
        raise box["error"]
    return box["result"], interrupted


@dataclass
class _Runner:
    job: Execution
    index: int | None = None  # the cell being executed
    finished: bool = False  # on_finish has been called
    deadline: float | None = None  # time.monotonic() past which the instance is stopped
    timed_out: bool = False  # the deadline cancelled the run
    process: Any = None  # the kernel's process (a Popen), once started
    oom: OomKills | None = None  # out-of-memory kills where the kernel lives, from its start

    @property
    def nb(self) -> Any:
        return self.job.notebook

    async def run(self) -> Outcome:
        job = self.job
        client = client_class()(
            self.nb,
            km=kernel_manager(job.kernel_name),
            timeout=job.timeout,
            startup_timeout=job.startup_timeout,
            iopub_timeout=OUTPUT_GRACE,
            allow_errors=False,
            record_timing=True,
        )
        outcome = Outcome(notebook=self.nb)
        client.ductaflow_log, client.ductaflow_echo = job.log, job.echo
        client.ductaflow_note = lambda text: self._note(outcome, text)
        client.reset_execution_trackers()
        job.on_progress(self.nb)
        watcher = asyncio.create_task(self._deadline(asyncio.current_task()))
        try:
            await self._start(client, outcome)
            if outcome.error is None:
                self._watch_process(client, outcome)
            if outcome.error is None:
                await self._cells(client, outcome)
        except asyncio.CancelledError:  # Ctrl-C (_run_in_own_loop) or the deadline cancels this task
            outcome.error = self._cancelled_error()
        finally:
            watcher.cancel()
            await self._stop_even_if_cancelled(client, outcome)
        return outcome

    async def _deadline(self, task: asyncio.Task[Any] | None) -> None:
        """Cancel ``task`` (the run) at the instance's deadline, as a Ctrl-C would, noting why."""
        if self.deadline is None:
            return
        await asyncio.sleep(max(0.0, self.deadline - time.monotonic()))
        if task is not None and not task.cancelling():  # not already stopping for a Ctrl-C
            self.timed_out = True
            task.cancel()

    def _cancelled_error(self) -> ExecutionError:
        index = self.index
        if not self.timed_out:
            return ExecutionError("KeyboardInterrupt", "interrupted by the user", index, interrupted=True,
                                  stop_now=True)  # fmt: skip
        count = self.nb.cells[index].get("execution_count") if index is not None else None
        error = instance_timeout_error(self.job.instance_timeout, index, count)
        self._log_error(error)
        return error

    def _watch_process(self, client: Any, outcome: Outcome) -> None:
        """Keep the kernel's process, count OOM kills from now, and limit its memory to max_memory."""
        self.process = getattr(getattr(client.km, "provisioner", None), "process", None)  # a local kernel's
        pid = getattr(self.process, "pid", None)
        self.oom = OomKills.watch(pid) if pid is not None else None
        if self.job.max_memory is not None:
            outcome.error = limit_kernel_memory(self.job.max_memory, pid)
            if outcome.error is not None:
                self._log_error(outcome.error)

    async def _stop_even_if_cancelled(self, client: Any, outcome: Outcome) -> None:
        """Stop the kernel; a cancel (Ctrl-C) arriving meanwhile only makes the stop immediate.

        A flow whose cells all ran keeps its result; the caller still learns of
        the Ctrl-C (``Outcome.interrupt_received``) and re-raises it.
        """
        try:
            await self._stop(client, outcome)
        except asyncio.CancelledError:
            if not self.finished:
                self._finish(outcome)
            if client.km.has_kernel:
                await client.km.shutdown_kernel(now=True)

    async def _start(self, client: Any, outcome: Outcome) -> None:
        try:
            reply = await start_kernel(client, self.job, outcome, lambda text: self._note(outcome, text))
        except Exception as exc:  # no kernel started or answered
            message = f"the kernel could not start: {type(exc).__name__}: {exc}"
            outcome.error = ExecutionError("KernelStartError", message, stop_now=True, fault=True)
            self._log_error(outcome.error)
            return
        self.nb.metadata["language_info"] = reply["content"].get("language_info", {})

    async def _cells(self, client: Any, outcome: Outcome) -> None:
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        for index, cell in enumerate(self.nb.cells):
            self.index = index
            try:
                await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except CellExecutionError as exc:
                if exc.ename == "SystemExit" and exc.evalue.strip() in _CLEAN_EXIT_VALUES:
                    outcome.exited_early = True
                else:
                    error = _cell_error(cell, index, exc.ename, exc.evalue, _last_traceback(cell))
                    outcome.error = memory_limit_error(error, self.job.max_memory)
            except CellTimeoutError:
                message = f"the cell did not finish within the per-cell timeout of {self.job.timeout} s"
                outcome.error = _cell_error(cell, index, "CellTimeoutError", message, "")
                outcome.error.stop_now = outcome.error.fault = True
            except DeadKernelError:
                if _cancelled():  # nbclient reports our Ctrl-C cancellation as a dead kernel
                    raise asyncio.CancelledError from None
                outcome.error = await kernel_death(self.process, self.oom)
                outcome.error.cell_index, outcome.error.execution_count = index, cell.get("execution_count")
            except Exception as exc:  # e.g. an output that is not valid nbformat; the cell may still run
                outcome.error = _cell_error(cell, index, type(exc).__name__, str(exc).split("\n")[0], "")
                outcome.error.stop_now = True
            self.job.on_progress(self.nb)
            if outcome.error is not None:
                self._log_error(outcome.error)
            if outcome.error is not None or outcome.exited_early:
                return

    def _note(self, outcome: Outcome, text: str) -> None:
        """Tell, in the log and the outcome's notes, what the engine worked around."""
        outcome.notes.append(text)
        self.job.log.write(f"\n[ductaflow] {text}\n")
        self.job.log.flush()

    def _log_error(self, error: ExecutionError) -> None:
        log = self.job.log
        log.write(f"\n[ductaflow] {error.name}: {error.message}\n")
        log.write(error.traceback + ("\n" if error.traceback else ""))
        log.flush()

    def _finish(self, outcome: Outcome) -> None:
        self.finished = True
        self.job.on_finish(outcome)

    async def _stop(self, client: Any, outcome: Outcome) -> None:
        """Ask the kernel to exit (it runs atexit and flushes files), finish outputs meanwhile, then kill."""
        km, kc = client.km, client.kc
        busy = outcome.error is not None and outcome.error.stop_now
        try:
            if kc is not None and not busy and await km.is_alive():
                await _flush_open_files(client)
                await ensure_awaited(kc.shutdown())
                deadline = time.monotonic() + SHUTDOWN_GRACE
                try:
                    self._finish(outcome)
                finally:
                    while time.monotonic() < deadline and await km.is_alive():
                        await asyncio.sleep(0.005)
            else:
                self._finish(outcome)
        finally:
            if kc is not None:
                kc.stop_channels()
            if km.has_kernel:
                await km.shutdown_kernel(now=True)


#: Flushes files the flow left open in its globals, and values given to ductaflow.record.
#: The kernel's own exit flushes every file,
#: but ipykernel sometimes hangs before it gets there (and is then killed after SHUTDOWN_GRACE).
_FLUSH_GLOBALS = """\
def _ductaflow_flush():
    import io
    for value in list(get_ipython().user_ns.values()):
        if isinstance(value, io.IOBase) and not value.closed:
            try:
                value.flush()
            except Exception:
                pass
    import sys
    metrics = sys.modules.get("ductaflow.metrics")
    if metrics is not None:
        try:
            metrics.flush()
        except Exception:
            pass
_ductaflow_flush()
del _ductaflow_flush
"""


async def _cancel_when_set(stop: threading.Event, task: asyncio.Task[Any]) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.1)
    task.cancel()


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what nbclient left running (its kernel-alive poller after a failed cell), then close."""
    try:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


async def _flush_open_files(client: Any) -> None:
    try:
        msg_id = client.kc.execute(_FLUSH_GLOBALS, silent=True, store_history=False)
        await asyncio.wait_for(client.async_wait_for_reply(msg_id), timeout=5)
    except Exception:  # best effort: the kernel's own exit flushes too
        pass


def _cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _cell_error(cell: Any, index: int, name: str, message: str, traceback: str) -> ExecutionError:
    return ExecutionError(name, message, index, cell.get("execution_count"), traceback)


def _last_traceback(cell: Any) -> str:
    for output in reversed(cell.get("outputs", [])):
        if output.get("output_type") == "error":
            return _ANSI.sub("", "\n".join(output.get("traceback", [])))
    return ""
