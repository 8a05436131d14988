"""The fork engine's child: execute a notebook's cells in a fresh IPython shell, streaming every output.

A child is forked from the zygote (:mod:`.zygote`) for one notebook. It
takes the instance's working directory and environment, replaces file
descriptors 1 and 2 with pipes (so output of C code, ``os.system``,
``!cmd`` and subprocesses is captured as a kernel would), creates an IPython
shell whose displays, results and tracebacks become messages, and runs the
cells in order until one fails or calls ``sys.exit``. Each message is one
JSON line on the connection to the engine in the conductor's process, which
builds the notebook from them; the child never writes the notebook itself, so
a child that dies leaves all it said.

Messages: ``pid``, ``start`` (cell, execution_count), ``stream`` (name,
text), ``display``/``update_display`` (data, metadata, transient),
``clear`` (wait), ``result`` (execution_count, data, metadata), ``error``
(ename, evalue, traceback), ``done`` (cell, status: ok | error | exit), and
``end`` once the cells are over and the flow's files are flushed.
"""

from __future__ import annotations

import atexit
import codecs
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

#: Written to a captured descriptor after each cell: everything before it belongs to that cell.
_MARK = b"\x00ductaflow:sync\x00"


class Channel:
    """The connection to the engine: JSON lines, one per message, from any thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, kind: str, **fields: Any) -> None:
        """Send one message; a gone engine ends the child (nobody would read what it does)."""
        line = json.dumps({"type": kind, **fields}, default=repr).encode() + b"\n"
        with self.lock:
            try:
                self.sock.sendall(line)
            except OSError:
                os._exit(75)


class Capture:
    """File descriptors 1 and 2 read by threads and sent as ``stream`` messages, in order with the rest."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.synced = {1: threading.Event(), 2: threading.Event()}
        for fd, name in ((1, "stdout"), (2, "stderr")):
            read, write = os.pipe()
            os.dup2(write, fd)
            os.close(write)
            threading.Thread(target=self._pump, args=(read, fd, name), daemon=True).start()
        sys.stdout = _text(1)
        sys.stderr = _text(2)
        sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr

    def sync(self) -> None:
        """Return once everything written to 1 and 2 so far has been sent."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        for fd, event in self.synced.items():
            event.clear()
            os.write(fd, _MARK)
        for event in self.synced.values():
            event.wait(10)

    def _pump(self, read: int, fd: int, name: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = b""
        while True:
            try:
                data = os.read(read, 65536)
            except OSError:
                return
            if not data:
                return
            pending += data
            while _MARK in pending:
                before, pending = pending.split(_MARK, 1)
                self._send(name, decoder.decode(before))
                self.synced[fd].set()
            keep = _partial_mark(pending)
            self._send(name, decoder.decode(pending[: len(pending) - keep]))
            pending = pending[len(pending) - keep :]

    def _send(self, name: str, text: str) -> None:
        if text:
            self.channel.send("stream", name=name, text=text)


def _partial_mark(data: bytes) -> int:
    """How many bytes at the end of ``data`` could start a mark split across two reads."""
    for size in range(min(len(_MARK) - 1, len(data)), 0, -1):
        if _MARK.startswith(data[-size:]):
            return size
    return 0


def _text(fd: int) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True,
                            write_through=True)  # fmt: skip


#: The child's connection and capture, which the shell's display classes send through.
_LINK: list[Any] = []
#: The shell made in the zygote before any fork: each child gets a pristine copy of it.
_SHELL: list[Any] = []


def _send(kind: str, **fields: Any) -> None:
    channel, capture = _LINK
    capture.sync()  # what was printed before this output comes before it
    channel.send(kind, **fields)


def make_shell() -> Any:
    """The IPython shell every child uses: displays, results and tracebacks become messages.

    Made once in the zygote (it has run nothing, so each forked copy is
    fresh); a child then links it to its own connection.
    """
    if _SHELL:
        return _SHELL[0]
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
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
            _send("result", execution_count=self.shell.execution_count, **self.message)

    class Shell(InteractiveShell):
        display_pub_class = Type(Publisher)
        displayhook_class = Type(Hook)
        ductaflow_engine = "fork"  # ductaflow.inflow: a shell that executes a flow, as a kernel's does

        def _showtraceback(self, etype: Any, evalue: Any, stb: Any) -> None:
            _send("error", ename=getattr(etype, "__name__", str(etype)), evalue=str(evalue),
                  traceback=list(stb))  # fmt: skip

        def ask_exit(self) -> None:  # exit() or quit() in a cell: end after it, as a kernel would
            self.exit_now = True

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "Linux"
    config.InteractiveShell.xmode = "Context"
    shell = Shell.instance(config=config)
    atexit.unregister(shell.atexit_operations)  # a child ends with the flow's own handlers only
    _SHELL.append(shell)
    return shell


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
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C and timeouts: KeyboardInterrupt
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # as ipykernel does
    os.chdir(request["cwd"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.argv = [""]
    if request.get("flow_dir"):
        from ..flowpath import after_stdlib

        after_stdlib(request["flow_dir"], sys.path)


def _matplotlib_inline(shell: Any) -> None:
    """Figures as PNG displays at the end of each cell, as in a kernel, also when pyplot was preloaded."""
    backend = os.environ.get("MPLBACKEND", "")
    if "matplotlib.pyplot" in sys.modules and "inline" in backend:
        shell.enable_matplotlib("inline")


def _cells(shell: Any, channel: Channel, capture: Capture, cells: list[list[Any]]) -> None:
    for index, source in cells:
        count = shell.execution_count
        channel.send("start", cell=index, execution_count=count)
        result = shell.run_cell(source, store_history=True)
        capture.sync()
        error = result.error_before_exec or result.error_in_exec
        if isinstance(error, SystemExit):
            clean = error.code in (None, 0, "") or str(error.code) in ("", "0", "None")
            channel.send("done", cell=index, status="exit" if clean else "error", execution_count=count)
            return
        if error is not None:
            channel.send("done", cell=index, status="error", execution_count=count)
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
    capture.sync()
