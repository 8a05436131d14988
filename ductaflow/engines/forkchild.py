"""The fork engine's child: execute a notebook's cells in a fresh IPython shell, streaming every output.

A child is forked from the zygote (:mod:`.zygote`) for one notebook. It
takes the instance's working directory and environment, makes file
descriptors 1 and 2 pipes whose read ends it hands to the engine (so output
of C code, ``os.system``, ``!cmd`` and subprocesses is captured as a kernel
would, and read by a process that outlives the flow: :mod:`.forkstreams`),
uses the IPython shell made in the zygote, whose displays, results and
tracebacks become messages, and runs the cells in order until one fails or
calls ``sys.exit``. Each message is one JSON line on the connection to the
engine in the conductor's process, which builds the notebook from them; the
child never writes the notebook itself, so a child that dies leaves all it
said and printed.

Messages: ``pid``, ``pipes`` (the two read ends attached), ``start`` (cell,
execution_count), ``display``/``update_display`` (data, metadata,
transient), ``clear`` (wait), ``result`` (execution_count, data, metadata),
``error`` (ename, evalue, traceback), ``sync`` (orders the two streams),
``done`` (cell, status: ok | error | exit), and ``end`` once the cells are
over and the flow's files are flushed. All but ``pid``, ``pipes`` and
``fatal`` are preceded by a mark on both streams.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from .forkstreams import MARK
from .limits import limit_memory

#: Messages sent without marking the streams first (as the engine expects: forkstreams).
_UNORDERED = frozenset({"pid", "pipes", "fatal"})
#: What ipykernel's shell sets in a flow's environment (colour and no pager for commands it runs).
_KERNEL_ENV = {"TERM": "xterm-color", "CLICOLOR": "1", "FORCE_COLOR": "1", "CLICOLOR_FORCE": "1",
               "PAGER": "cat", "GIT_PAGER": "cat"}  # fmt: skip


class Channel:
    """The connection to the engine: JSON lines, one per message, from any thread of the child."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.pid = os.getpid()  # a process the flow forks shares the socket: it sends nothing
        self.capture: Capture | None = None

    def send(self, kind: str, **fields: Any) -> None:
        """Send one message, after marking both streams; a gone engine ends the child."""
        if os.getpid() != self.pid:
            return
        line = json.dumps({"type": kind, **fields}, default=repr).encode() + b"\n"
        with self.lock:
            if self.capture is not None and kind not in _UNORDERED:
                self.capture.mark()
            try:
                self.sock.sendall(line)
            except OSError:
                os._exit(75)

    def send_fds(self, kind: str, fds: list[int]) -> None:
        """Send one message with file descriptors attached (SCM_RIGHTS)."""
        line = json.dumps({"type": kind}).encode() + b"\n"
        with self.lock:
            try:
                socket.send_fds(self.sock, [line], fds)
            except OSError:
                os._exit(75)


class Capture:
    """File descriptors 1 and 2 made pipes whose read ends the engine holds (:mod:`.forkstreams`)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        reads = []
        for fd in (1, 2):
            read, write = os.pipe()
            os.dup2(write, fd)
            os.close(write)
            reads.append(read)
        channel.send_fds("pipes", reads)
        for read in reads:
            os.close(read)
        self.last = 1  # the descriptor the flow's Python code wrote to last
        sys.stdout = _Stream(self, 1)
        sys.stderr = _Stream(self, 2)
        sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr
        channel.capture = self

    def flush(self) -> None:
        """Flush ``sys.stdout`` and ``sys.stderr`` (whatever the flow put there) into the pipes."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()

    def mark(self) -> None:
        """Flush, then mark both pipes: the engine reads them up to here before the next message."""
        self.flush()
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                os.write(fd, MARK)

    def sync(self) -> None:
        """Keep the order of what was written to the two streams so far (the engine reads them apart)."""
        self.channel.send("sync")


class _Stream(io.TextIOWrapper):
    """``sys.stdout`` or ``sys.stderr``: text written after the other stream's is sent after it."""

    def __init__(self, capture: Capture, fd: int) -> None:
        raw = io.FileIO(fd, "w", closefd=False)
        super().__init__(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True,
                         write_through=True)  # fmt: skip
        self.capture, self.fd = capture, fd

    def write(self, text: str) -> int:
        if text and self.capture.last != self.fd:  # the two pipes are read apart: keep their order
            self.capture.last = self.fd
            self.capture.sync()
        return super().write(text)


#: The child's connection and capture, which the shell's display classes send through.
_LINK: list[Any] = []
#: The shell made in the zygote before any fork: each child gets a pristine copy of it.
_SHELL: list[Any] = []


def _send(kind: str, **fields: Any) -> None:
    _LINK[0].send(kind, **fields)  # the streams are marked first: what was printed before comes before


def make_shell() -> Any:
    """The IPython shell every child uses: displays, results and tracebacks become messages.

    Made once in the zygote (it has run nothing, so each forked copy is
    fresh); a child then links it to its own connection.
    """
    if _SHELL:
        return _SHELL[0]
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets import Type
    from traitlets.config import Config

    class Publisher(DisplayPublisher):
        def publish(self, data: Any, metadata: Any = None, source: Any = None, *, transient: Any = None,
                    update: bool = False, **kwargs: Any) -> None:  # fmt: skip
            kind = "update_display" if update else "display"
            _send(kind, data=data, metadata=metadata or {}, transient=transient or {})

        def clear_output(self, wait: bool = False) -> None:
            _send("clear", wait=wait)

    class Hook(DisplayHook):
        def start_displayhook(self) -> None:
            self.message: dict[str, Any] = {"data": {}, "metadata": {}}

        def write_output_prompt(self) -> None:
            pass

        def write_format_data(self, format_dict: Any, md_dict: Any = None) -> None:
            self.message = {"data": format_dict, "metadata": md_dict or {}}

        def finish_displayhook(self) -> None:
            _send("result", execution_count=self.prompt_count, **self.message)  # the cell's, as ipykernel

    class Shell(InteractiveShell):
        display_pub_class = Type(Publisher)
        displayhook_class = Type(Hook)
        ductaflow_engine = "fork"  # ductaflow.inflow: a shell that executes a flow, as a kernel's does

        def _showtraceback(self, etype: Any, evalue: Any, stb: Any) -> None:
            _send("error", ename=getattr(etype, "__name__", str(etype)), evalue=str(evalue),
                  traceback=list(stb))  # fmt: skip

        def ask_exit(self) -> None:  # exit() or quit() in a cell: end after it, as a kernel would
            self.exit_now = True

        def enable_gui(self, gui: Any = None) -> None:  # %matplotlib inline; no GUI event loop here
            if gui not in (None, "inline"):
                raise UsageError(f"the fork engine runs no GUI event loop ({gui}): use %matplotlib inline, "
                                 "or engine='kernel'")  # fmt: skip
            self.active_eventloop = gui

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.xmode = "Context"  # colors: IPython's default theme, as ipykernel's
    from ipykernel.compiler import XCachingCompiler  # cells named as ipykernel names them (tracebacks)

    shell = Shell.instance(config=config, compiler_class=XCachingCompiler)
    atexit.unregister(shell.atexit_operations)  # a child ends with the flow's own handlers only
    _SHELL.append(shell)
    return shell


def warm_up(shell: Any) -> None:
    """Set up once what every child would set up again: a first cell, the session logger, a traceback.

    An empty cell runs silently, the shell's session logger is built, and a
    traceback is formatted (its syntax highlighting compiles pygments'
    lexers: about 0.08 s that a failing flow would otherwise pay). Nothing a
    flow can see changes: no execution count, no history, no names.
    """
    import getpass  # noqa: F401  (refused in each child: see _no_stdin)

    shell.run_cell("pass", store_history=False, silent=True)
    shell.last_execution_result = None
    shell.last_execution_succeeded = True
    _ = shell.logger
    try:
        raise ValueError("warm-up")
    except ValueError:
        shell.InteractiveTB.structured_traceback(*sys.exc_info())


def run_child(sock: socket.socket, request: dict[str, Any], close_others: Callable[[], None]) -> None:
    """In a forked child: execute ``request``'s cells and exit; never returns."""
    code = 0
    try:
        close_others()
        channel = Channel(sock)
        channel.send("pid", pid=os.getpid())
        _become_the_flow(request)
        capture = Capture(channel)
        _LINK[:] = [channel, capture]
        shell = make_shell()
        _matplotlib_inline(shell)
        _no_stdin()
        _cells(shell, channel, capture, request["cells"])
        _wind_down(shell, capture)
        channel.send("end")
    except BaseException as exc:  # ductaflow's own failure: say it, then end
        import traceback

        code = 70
        with contextlib.suppress(BaseException):
            message = f"{type(exc).__name__}: {exc}"
            Channel(sock).send("fatal", message=message, traceback=traceback.format_exc())
    finally:
        os._exit(code)


def _become_the_flow(request: dict[str, Any]) -> None:
    if request.get("max_memory") is not None:  # this process only: never the zygote or the conductor
        limit_memory(request["max_memory"])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C and timeouts: KeyboardInterrupt
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # as ipykernel does
    os.environ.update(_KERNEL_ENV)
    zygote_dir = os.getcwd()  # the zygote put it on the path to preload from it; a kernel lacks it
    sys.path[:] = [entry for entry in sys.path if entry != zygote_dir]
    os.chdir(request["cwd"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.argv = [""]
    if "" not in sys.path:  # the working directory importable, before site-packages, as in a kernel
        packages = [os.path.basename(entry) in ("site-packages", "dist-packages") for entry in sys.path]
        sys.path.insert(packages.index(True) if True in packages else 0, "")
    if request.get("flow_dir"):
        from ..flowpath import after_stdlib

        after_stdlib(request["flow_dir"], sys.path)


def _matplotlib_inline(shell: Any) -> None:
    """Figures as PNG displays at the end of each cell, as in a kernel, also when pyplot was preloaded."""
    backend = os.environ.get("MPLBACKEND", "")
    if "matplotlib.pyplot" in sys.modules and "inline" in backend:
        shell.enable_matplotlib("inline")


def _no_stdin() -> None:
    """``input()`` and ``getpass()`` raise as ipykernel's do when the frontend (nbclient) gives no stdin."""
    import builtins
    import getpass

    from IPython.core.error import StdinNotImplementedError

    def refuse(what: str) -> Callable[..., str]:
        def refused(*args: Any, **kwargs: Any) -> str:
            raise StdinNotImplementedError(f"{what} was called, but this frontend does not support input "
                                           "requests.")  # fmt: skip

        return refused

    builtins.input = refuse("raw_input")
    getpass.getpass = refuse("getpass")


def _cells(shell: Any, channel: Channel, capture: Capture, cells: list[list[Any]]) -> None:
    for index, source in cells:
        if not source.strip():  # nbclient does not execute an empty cell: no count, no output
            continue
        count = shell.execution_count
        channel.send("start", cell=index, execution_count=count)
        result = shell.run_cell(source, store_history=True)
        error = result.error_before_exec or result.error_in_exec
        if isinstance(error, SystemExit):
            clean = error.code in (None, 0, "") or str(error.code) in ("", "0", "None")
            channel.send("done", cell=index, status="exit" if clean else "error", execution_count=count)
            return
        if error is not None:  # named here too: a UsageError leaves no error output, as in a kernel
            channel.send("done", cell=index, status="error", execution_count=count,
                         ename=type(error).__name__, evalue=str(error))  # fmt: skip
            return
        channel.send("done", cell=index, status="ok", execution_count=count)
        if shell.exit_now:
            return


def _wind_down(shell: Any, capture: Capture) -> None:
    """What a kernel's exit does: flush the flow's open files and metrics, run its atexit handlers."""
    for value in list(shell.user_ns.values()):
        if isinstance(value, io.IOBase) and not value.closed:
            with contextlib.suppress(Exception):
                value.flush()
    metrics = sys.modules.get("ductaflow.metrics")
    if metrics is not None:
        with contextlib.suppress(Exception):
            metrics.flush()
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    capture.flush()
