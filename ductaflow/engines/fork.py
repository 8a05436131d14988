"""The fork engine: each notebook in a child forked from a warm zygote, not in a new kernel.

Starting a Jupyter kernel and importing the same libraries again is almost
all a small instance costs. This engine keeps one zygote per process and set
of preloaded modules (:mod:`.zygote`: IPython, ductaflow's in-flow helpers and
the modules named in ``preload``, imported once), and forks a child from it for
each notebook (:mod:`.forkchild`). The child runs the cells in a fresh IPython
shell in the instance directory and streams every output here, where the
notebook is built, the log written and the per-cell timeout kept; a child
that dies (``os._exit``, a segfault, a kill) ends only its own instance, and
what it said before stays in the notebook.

It runs flows in the Python ductaflow runs in (no ``kernel_name``) on
platforms with ``fork``; elsewhere, and for a named kernel, it says to use
``engine="kernel"``.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any, ClassVar

from nbformat import ValidationError

from ..exceptions import ConfigError
from .base import Execution, ExecutionError, Outcome
from .forkstreams import Streams
from .kernels import CURRENT_PYTHON_LABEL
from .limits import OomKills, death, instance_timeout_error, memory_limit_error
from .zygote import Zygote, ZygoteError, zygote_for

#: Messages whose place among the outputs does not matter: no mark precedes them on the pipes.
_UNORDERED = frozenset({"pid", "pipes", "fatal", "exit"})
#: Errors of a time limit: they name the cell the flow was in when it was stopped.
_TIMEOUTS = frozenset({"CellTimeoutError", "InstanceTimeoutError"})
#: Seconds a child gets to stop after SIGINT (a timeout, Ctrl-C) before it is killed.
STOP_GRACE = 2.0
#: Seconds the notebook on disk may lag behind the cells that ended: an instance that ends sooner saves once.
PROGRESS_LAG = 0.2


class ForkEngine:
    """The ``fork`` engine: each notebook in a process forked from a zygote that preloaded its imports."""

    name: ClassVar[str] = "fork"

    def check(self, kernel_name: str | None) -> None:
        """Refuse what this engine cannot do: a named kernel, a platform without ``fork``."""
        if not hasattr(os, "fork"):
            raise ConfigError("the fork engine needs os.fork, which this platform lacks: use engine='kernel' "
                              "(--engine kernel).", key="engine")  # fmt: skip
        if kernel_name is not None:
            raise ConfigError(f"the fork engine runs flows in the Python ductaflow runs in; kernel "
                              f"{kernel_name!r} needs engine='kernel' (--engine kernel).",
                              key="engine")  # fmt: skip

    def label(self, kernel_name: str | None) -> str:
        """``ductaflow-python``, as the kernel engine names this Python: switching engines re-runs nothing."""
        return CURRENT_PYTHON_LABEL

    def execute(self, execution: Execution) -> Outcome:
        """Execute the notebook in a child of the zygote for ``execution.preload`` (see ``Engine``)."""
        limit = execution.instance_timeout
        deadline = None if limit is None else time.monotonic() + limit
        outcome = Outcome(notebook=execution.notebook)
        try:
            zygote = zygote_for(tuple(execution.preload), execution.startup_timeout)
        except ZygoteError as exc:
            outcome.error = ExecutionError("EngineStartError", str(exc), stop_now=True, fault=True)
            _log_error(execution, outcome.error)
            execution.on_finish(outcome)
            return outcome
        _Child(execution, outcome, deadline).run(zygote)
        return outcome


class _Child:
    """The engine's side of one child: send the request, build the notebook from what comes back."""

    def __init__(self, job: Execution, outcome: Outcome, deadline: float | None = None) -> None:
        self.job, self.outcome = job, outcome
        self.deadline = deadline  # time.monotonic() past which the instance is stopped (instance_timeout)
        self.oom: OomKills | None = None  # out-of-memory kills where the child lives, from its start
        self.nb = job.notebook
        self.pid: int | None = None
        self.cell: Any = None
        self.index: int | None = None
        self.started = 0.0  # when the current cell started (monotonic)
        self.clear_pending = False  # clear_output(wait=True): clear at the next output
        self.displays: dict[str, list[Any]] = {}  # display_id -> its outputs
        self.stopping: tuple[float, str] | None = None  # (when SIGINT was sent, why)
        self.killed = False
        self.exit: dict[str, Any] | None = None
        self.ended = False
        self.save_at: float | None = time.monotonic() + PROGRESS_LAG  # when unsaved progress is saved

    def run(self, zygote: Zygote) -> None:
        job = self.job
        cells = [[i, c.source] for i, c in enumerate(self.nb.cells) if c.cell_type == "code"]
        request = {"cells": cells, "cwd": str(job.cwd), "env": job.env, "max_memory": job.max_memory,
                   "flow_dir": str(job.flow_dir) if job.flow_dir else None}  # fmt: skip
        try:
            sock = zygote.connect()
            sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            self._fail("EngineStartError", f"the fork engine's zygote did not take the notebook: {exc}")
            job.on_finish(self.outcome)
            return
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ, "messages")
        self.streams = Streams(selector, self._on_text)
        try:
            self._receive(sock, selector)
        except KeyboardInterrupt:
            self.outcome.interrupt_received = True
            self._interrupt("interrupted by the user")
            try:
                self._receive(sock, selector)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for the flow to wind down
                self._signal(signal.SIGKILL)
        finally:
            sock.close()
            self.streams.close()
            selector.close()
        self._conclude()

    def _receive(self, sock: socket.socket, selector: selectors.BaseSelector) -> None:
        """Handle messages and read the flow's output until the connection closes, watching the time."""
        pending = b""
        while True:
            for key, _ in selector.select(0.05):
                if key.data != "messages":
                    self.streams.readable(key.fd)
                    continue
                data, fds, _flags, _address = socket.recv_fds(sock, 1 << 20, 2)
                if fds:
                    self.streams.adopt(fds)
                if not data:
                    return
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    self._handle(json.loads(line))
            self._watch()

    def _watch(self) -> None:
        """Between messages: a save due, the stop event, the time limits, the grace after SIGINT."""
        now = time.monotonic()
        if self.save_at is not None and now >= self.save_at:
            self.save_at = None
            self.job.on_progress(self.nb)
        if self.stopping is not None:
            if not self.killed and self.pid is not None and now - self.stopping[0] > STOP_GRACE:
                self._signal(signal.SIGKILL)
                self.killed = True
            return
        job = self.job
        if job.stop is not None and job.stop.is_set():
            self._interrupt("interrupted by the user")
        elif self.deadline is not None and now > self.deadline:
            self._stop_with(instance_timeout_error(job.instance_timeout, self.index, self._count()))
        elif job.timeout is not None and self.index is not None and now - self.started > job.timeout:
            message = f"the cell did not finish within the per-cell timeout of {job.timeout} s"
            self._stop_with(ExecutionError("CellTimeoutError", message, self.index, self._count(),
                                           stop_now=True, fault=True))  # fmt: skip

    def _interrupt(self, message: str) -> None:
        self._stop_with(ExecutionError("KeyboardInterrupt", message, self.index, self._count(),
                                       interrupted=True, stop_now=True))  # fmt: skip

    def _stop_with(self, error: ExecutionError) -> None:
        """Fail with ``error`` and ask the flow to stop (SIGINT), killed after ``STOP_GRACE``."""
        if self.stopping is not None:
            return
        self.outcome.error = error
        self.stopping = (time.monotonic(), error.name)
        self._signal(signal.SIGINT)

    def _signal(self, number: int) -> None:
        if self.pid is not None and self.exit is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, number)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.killed and kind != "exit":  # a killed child's last words: too late
            return
        ordered = kind not in _UNORDERED
        if ordered:
            self.streams.settle()  # the text written before this message goes first
        handler = getattr(self, f"_on_{kind}", None)  # "sync" has none: it only orders the two streams
        try:
            if handler is not None:
                handler(message)
            if ordered:
                self.streams.after_message()
        except ValidationError as exc:  # an output nbformat refuses fails the cell, as in the kernel engine
            error = ExecutionError(type(exc).__name__, str(exc).split("\n")[0], self.index, self._count())
            error.stop_now = True
            self._stop_with(error)
            self._signal(signal.SIGKILL)  # at once: the kernel engine stops its kernel at once too
            self.killed = True

    def _on_pid(self, message: dict[str, Any]) -> None:
        self.pid = message["pid"]
        self.oom = OomKills.watch(self.pid)

    def _on_start(self, message: dict[str, Any]) -> None:
        self.index = message["cell"]
        self.cell = self.nb.cells[self.index]
        self.cell.outputs = []
        self.cell.execution_count = message["execution_count"]
        self.started = time.monotonic()
        self.clear_pending = False

    def _on_text(self, name: str, text: str) -> None:
        """Text the flow wrote to stdout or stderr: to the log, the terminal (echo) and the cell."""
        log = self.job.log
        log.write(text)
        log.flush()
        if self.job.echo:
            (sys.stdout if name == "stdout" else sys.stderr).write(text)
        if self.cell is None:
            return
        outputs = self._outputs()
        if outputs and outputs[-1].get("output_type") == "stream" and outputs[-1].get("name") == name:
            outputs[-1]["text"] += text
        else:
            outputs.append(_output("stream", name=name, text=text))

    def _on_display(self, message: dict[str, Any]) -> None:
        output = _output("display_data", data=message["data"], metadata=message["metadata"])
        self._add(output, message)

    def _on_update_display(self, message: dict[str, Any]) -> None:
        update = _output("display_data", data=message["data"], metadata=message["metadata"])
        for output in self.displays.get(message["transient"].get("display_id"), []):
            output["data"], output["metadata"] = update["data"], update["metadata"]

    def _on_clear(self, message: dict[str, Any]) -> None:
        if message["wait"]:
            self.clear_pending = True
        elif self.cell is not None:
            self.cell.outputs = []

    def _on_result(self, message: dict[str, Any]) -> None:
        output = _output("execute_result", data=message["data"], metadata=message["metadata"],
                         execution_count=message["execution_count"])  # fmt: skip
        self._add(output, message)

    def _on_error(self, message: dict[str, Any]) -> None:
        output = _output("error", ename=message["ename"], evalue=message["evalue"],
                         traceback=message["traceback"])  # fmt: skip
        self._add(output, message)

    def _on_done(self, message: dict[str, Any]) -> None:
        status = message["status"]
        if status == "exit":
            self.outcome.exited_early = True
        elif status == "error" and self.stopping is None:
            error = _cell_error(self.cell, self.index, message)
            self.outcome.error = memory_limit_error(error, self.job.max_memory)
        self.index = None
        if self.save_at is None:
            self.save_at = time.monotonic() + PROGRESS_LAG

    def _on_end(self, message: dict[str, Any]) -> None:
        self.ended = True
        self.save_at = None  # on_finish saves the notebook
        self.job.on_finish(self.outcome)

    def _on_exit(self, message: dict[str, Any]) -> None:
        self.exit = message

    def _on_fatal(self, message: dict[str, Any]) -> None:
        trace = message.get("traceback", "")
        self._fail("EngineError", f"the fork engine failed: {message['message']}", trace)

    def _add(self, output: Any, message: dict[str, Any]) -> None:
        if self.cell is None:
            return
        display_id = (message.get("transient") or {}).get("display_id")
        if display_id:
            self.displays.setdefault(display_id, []).append(output)
        self._outputs().append(output)

    def _outputs(self) -> list[Any]:
        if self.clear_pending:
            self.cell.outputs = []
            self.clear_pending = False
        return self.cell.outputs  # type: ignore[no-any-return]

    def _count(self) -> int | None:
        return self.cell.get("execution_count") if self.cell is not None else None

    def _fail(self, name: str, message: str, traceback: str = "") -> None:
        if self.outcome.error is None:
            self.outcome.error = ExecutionError(name, message, self.index, self._count(), traceback,
                                                stop_now=True, fault=True)  # fmt: skip

    def _conclude(self) -> None:
        """After the connection closed: a child that ended without ``end`` died; say how."""
        if not self.ended:
            if self.outcome.error is None:
                number = (self.exit or {}).get("signal")
                error = death("DeadProcessError", _death(self.exit), number, self.oom, "the flow's process")
                error.cell_index, error.execution_count = self.index, self._count()
                self.outcome.error = error
            elif self.outcome.error.name in _TIMEOUTS and self.index is not None:
                self.outcome.error.cell_index = self.index
            _log_error(self.job, self.outcome.error)
            self.job.on_finish(self.outcome)
        elif self.outcome.error is not None:
            _log_error(self.job, self.outcome.error)


def _death(exit: dict[str, Any] | None) -> str:
    if exit is None:
        return "the flow's process ended without a word (its zygote is gone)"
    if exit.get("signal"):
        try:
            name = signal.Signals(exit["signal"]).name
        except ValueError:
            name = f"signal {exit['signal']}"
        return f"the flow's process died from {name} while executing this cell (a crash or a kill)"
    return f"the flow's process exited with status {exit.get('code')} while executing this cell (os._exit?)"


def _cell_error(cell: Any, index: int | None, done: dict[str, Any]) -> ExecutionError:
    import re

    for output in reversed(cell.get("outputs", []) if cell is not None else []):
        if output.get("output_type") == "error":
            traceback = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", "\n".join(output.get("traceback", [])))
            count = cell.get("execution_count")
            return ExecutionError(output["ename"], output["evalue"], index, count, traceback)
    name, message = done.get("ename") or "CellExecutionError", done.get("evalue", "the cell failed")
    return ExecutionError(name, message, index, cell.get("execution_count"))  # a UsageError: stderr only


def _output(output_type: str, **fields: Any) -> Any:
    """A notebook output, as nbformat makes it from a kernel message (displays and results validated)."""
    from nbformat import NotebookNode
    from nbformat.v4 import new_output

    if output_type in ("display_data", "execute_result"):
        fields["metadata"] = fields.get("metadata") or {}
        return new_output(output_type, **fields)  # ValidationError for data nbformat refuses, as nbclient
    return NotebookNode(output_type=output_type, **fields)


def _log_error(job: Execution, error: ExecutionError) -> None:
    job.log.write(f"\n[ductaflow] {error.name}: {error.message}\n")
    job.log.write(error.traceback + ("\n" if error.traceback else ""))
    job.log.flush()


__all__ = ["ForkEngine"]
