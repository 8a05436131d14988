"""The fork engine's zygote: a process that imported IPython and the preloaded modules once, and forks.

Started by :mod:`.fork` as ``python -m ductaflow.engines.zygote SOCKET
[MODULE ...]`` in a session of its own. It imports IPython's shell, ductaflow's
in-flow helpers and the modules to preload, checks that doing so started no
thread (forking a process with threads can deadlock the child), writes one
JSON line on stdout (``{"ready": true}`` or what failed), and serves: each
connection to ``SOCKET`` carries one request (a JSON line: the cells, the
working directory, the environment, the flow's folder), for which it forks a
child (:func:`.forkchild.run_child`) that answers on that connection. When the
child ends, the zygote sends its exit status (an ``exit`` message) on the same
connection and closes it. The zygote ends when its standard input closes: the
process that started it is gone.

The engine's end is here too: :func:`zygote_for` starts a zygote on first
use and keeps one per process and set of preloaded modules (a Dask worker
keeps its own), and :func:`close_zygotes` ends them when the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Any, NoReturn

#: Imported before any preload: what every child needs, so no child pays for it.
BASE_PRELOAD = ("IPython.core.interactiveshell", "ductaflow.inflow", "ductaflow.metrics", "ductaflow.script",
                "ductaflow.project", "ductaflow.flowpath", "ductaflow.engines.forkchild")  # fmt: skip


def preload(modules: list[str]) -> dict[str, str]:
    """Import the base and ``modules``; return ``{module: error}`` for those that failed."""
    failed = {}
    for name in (*BASE_PRELOAD, *modules):
        try:
            importlib.import_module(name)
        except BaseException as exc:  # an import may raise anything, SystemExit included
            failed[name] = f"{type(exc).__name__}: {exc}"
    return failed


def serve(path: str) -> None:
    """Accept requests on the Unix socket ``path`` until standard input closes, then exit the process."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_write)
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "parent")
    selector.register(wake_read, selectors.EVENT_READ, "child")
    try:
        print(json.dumps({"ready": True}), flush=True)
    except OSError:  # the parent is gone already
        _leave(path, children)
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.data == "parent" and not os.read(sys.stdin.fileno(), 4096):
                _leave(path, children)
            if key.data == "child":
                while os.read(wake_read, 4096) == 4096:
                    pass
            if key.data == "accept":
                _accept(listener, children, [listener.fileno(), wake_read, wake_write])
        _reap(children)


def _accept(listener: socket.socket, children: dict[int, socket.socket], own: list[int]) -> None:
    conn, _ = listener.accept()
    try:
        request = json.loads(_read_line(conn))
    except (OSError, ValueError) as exc:
        _send(conn, "fatal", message=f"bad request: {exc}", traceback="")
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        from .forkchild import run_child

        def close_others() -> None:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in own:
                os.close(fd)
            for other in children.values():
                other.close()

        run_child(conn, request, close_others)
    children[pid] = conn


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            signal_number = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            _send(conn, "exit", code=code, signal=signal_number)
            conn.close()


def _stop(children: dict[int, socket.socket]) -> None:
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1 << 20)
        if not chunk:
            raise ValueError("the connection closed before a whole request")
        data += chunk
    return data


def _send(conn: socket.socket, kind: str, **fields: Any) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps({"type": kind, **fields}).encode() + b"\n")


# The engine's end: start a zygote, keep one per process and preload set, end them at exit.

#: The environment the zygote starts with: figures as inline PNGs, as ipykernel sets it.
_ZYGOTE_ENV = {
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}


def _leave(path: str, children: dict[int, socket.socket]) -> NoReturn:
    """The parent is gone: stop the children, remove the socket and its folder, exit at once.

    A parent killed with -9 cannot remove them itself; tearing down what was
    preloaded would take longer than the work left.
    """
    _stop(children)
    with contextlib.suppress(OSError):
        os.unlink(path)
        os.rmdir(os.path.dirname(path))
    os._exit(0)


class ZygoteError(RuntimeError):
    """The zygote could not start, or its preload failed."""


class Zygote:
    """One zygote process and the socket it listens on."""

    def __init__(self, preload: tuple[str, ...], startup_timeout: float) -> None:
        self.folder = _socket_folder()
        self.path = os.path.join(self.folder, "socket")
        env = {**_ZYGOTE_ENV, **os.environ}
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "ductaflow.engines.zygote", self.path, *preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True,
        )  # fmt: skip
        ready = _first_line(self.process, startup_timeout)
        if not ready.get("ready"):
            self.close()
            raise ZygoteError(_why_not_ready(preload, ready))

    def alive(self) -> bool:
        """Whether the zygote still serves."""
        return self.process.poll() is None

    def connect(self) -> socket.socket:
        """A connection to the zygote, for one request."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        return sock

    def close(self) -> None:
        """End the zygote (closing its stdin is its signal) and remove its socket."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        for leftover in (self.path, self.folder):
            with contextlib.suppress(OSError):
                os.unlink(leftover) if leftover == self.path else os.rmdir(leftover)


#: Longest socket path used: a Unix socket's path may not exceed 107 bytes (Linux; 103 on macOS).
_SOCKET_PATH_MAX = 100


def _socket_folder() -> str:
    """A new private folder for the zygote's socket: in the temporary folder, or /tmp if that is too deep."""
    for parent in (tempfile.gettempdir(), "/tmp"):
        if len(os.path.join(parent, "ductaflow-zygote-xxxxxxxx", "socket").encode()) <= _SOCKET_PATH_MAX:
            return tempfile.mkdtemp(prefix="ductaflow-zygote-", dir=parent)
    raise ZygoteError("no temporary folder is short enough for a Unix socket path: set TMPDIR to a short one")


_ZYGOTES: dict[tuple[tuple[str, ...], str], Zygote] = {}  # (preload, PYTHONPATH) -> its zygote
_ZYGOTES_GUARD = threading.Lock()


def zygote_for(preload: tuple[str, ...], startup_timeout: float = 60) -> Zygote:
    """The zygote of this process for ``preload``, started on first use (and again if it died).

    A zygote's children inherit its ``sys.path``, made from ``PYTHONPATH``
    when it started: when this process's ``PYTHONPATH`` is another one now,
    another zygote starts, so a flow imports what a new kernel would.
    """
    key = (preload, os.environ.get("PYTHONPATH", ""))
    with _ZYGOTES_GUARD:
        zygote = _ZYGOTES.get(key)
        if zygote is None or not zygote.alive():
            if zygote is not None:
                zygote.close()
            zygote = _ZYGOTES[key] = Zygote(preload, startup_timeout)
        return zygote


@atexit.register
def close_zygotes() -> None:
    """End every zygote of this process (at exit; a dead parent's zygotes end by themselves)."""
    with _ZYGOTES_GUARD:
        for zygote in _ZYGOTES.values():
            zygote.close()
        _ZYGOTES.clear()


def _first_line(process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        process.kill()
        return {"ready": False, "failed": {"zygote": f"not ready within {timeout} s"}}
    line = process.stdout.readline()
    try:
        return json.loads(line) if line else {"ready": False, "failed": {"zygote": "exited while starting"}}
    except ValueError:
        return {"ready": False, "failed": {"zygote": f"said {line[:200]!r}"}}


def _why_not_ready(preload: tuple[str, ...], ready: dict[str, Any]) -> str:
    failed = ready.get("failed") or {}
    threads = ready.get("threads") or []
    parts = [f"{name}: {error}" for name, error in failed.items()]
    if threads:
        parts.append(f"the preloaded modules started threads ({', '.join(threads)}), and a process "
                     "with threads cannot be forked safely: remove the module that starts them from "
                     "preload")  # fmt: skip
    hint = " Fix or remove it in preload (--preload), or use engine='kernel'." if preload else ""
    return f"the fork engine could not start: {'; '.join(parts) or 'no reason given'}.{hint}"


def main(argv: list[str]) -> int:
    """Preload, report readiness on stdout, serve; the exit code says why it ended."""
    path, modules = argv[0], argv[1:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine stops children itself
    from ..flowpath import after_stdlib  # started with -P: the conductor's folder goes after the stdlib

    after_stdlib(os.getcwd(), sys.path)  # so a types.py there cannot break the start; modules there preload
    failed = preload(modules)
    if not failed:
        from .forkchild import make_shell, warm_up
        from .warmups import warm_up_loaded

        warm_up_loaded()  # a preloaded pandas or pyplot used once, so no child pays for a first use
        warm_up(make_shell())  # once, here: every child gets a fresh copy, its first cell not slower
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if failed or threads:
        print(json.dumps({"ready": False, "failed": failed, "threads": threads}), flush=True)
        return 1
    gc.freeze()  # what is loaded now stays out of the children's collections, and its pages shared
    serve(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
