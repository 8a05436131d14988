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
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import threading
from typing import Any

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
    """Accept requests on the Unix socket ``path`` until standard input closes."""
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
    print(json.dumps({"ready": True}), flush=True)
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.data == "parent" and not os.read(sys.stdin.fileno(), 4096):
                _stop(children)
                return
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


def main(argv: list[str]) -> int:
    """Preload, report readiness on stdout, serve; the exit code says why it ended."""
    path, modules = argv[0], argv[1:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine stops children itself
    failed = preload(modules)
    if not failed:
        from .forkchild import make_shell

        make_shell()  # once, here: every child gets a fresh copy
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if failed or threads:
        print(json.dumps({"ready": False, "failed": failed, "threads": threads}), flush=True)
        return 1
    serve(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
