"""Run the web app of ``ductaflow serve`` until interrupted: bind, index, serve, print the URL once up."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError
from .access import DEFAULT_HOST, access_token, page_url

DEFAULT_PORT = 8765
MISSING_STACK = "ductaflow serve needs starlette and uvicorn: pip install 'ductaflow[serve]'"


def web_stack_installed() -> bool:
    """Whether the packages ``ductaflow serve`` runs on (starlette, uvicorn) can be imported."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return False
    return True


def serve_runs(
    runs_dir: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the live view of ``runs_dir`` on ``host``:``port`` until interrupted (Ctrl-C raises).

    ``announce(url)`` is called once the server accepts requests. ``port``
    0 picks a free port. An address other than this machine's loopback needs
    ``token`` (``"auto"`` makes one). Nothing is ever written into
    ``runs_dir``. Raises :class:`ConfigError` when ``runs_dir`` is not a
    folder, the port is taken, or the address cannot be bound.
    """
    import uvicorn

    from .app import create_app
    from .watcher import LiveIndex

    folder = Path(runs_dir)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise ConfigError(f"the runs folder {str(folder)!r} {what}. Give the folder holding "
                          "<step>/<instance> folders, e.g. `ductaflow serve runs`.",
                          path=str(folder))  # fmt: skip
    needed = access_token(host, token)
    listening = _listen(host, port)
    live = LiveIndex(folder)
    try:
        live.start()
        app = create_app(live, folder, host=host, token=needed)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)  # fmt: skip
        url = page_url(host, listening.getsockname()[1], needed)
        _announcing_server(config, lambda: announce(url)).run(sockets=[listening])
    finally:
        live.stop()
        listening.close()


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port``, or a ConfigError saying why not."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        return socket.create_server((host, port), family=family, backlog=128)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r} is not an address of this machine ({exc.strerror}).",
                          key="--host") from None  # fmt: skip
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is already in use (another ductaflow serve?): give "
                              "--port 0 to pick a free port, or another --port.",
                              key="--port") from None  # fmt: skip
        reason = exc.strerror or exc
        raise ConfigError(f"cannot listen on {host} port {port}: {reason}.", key="--host") from None


def _announcing_server(config: Any, ready: Callable[[], None]) -> Any:
    """A uvicorn server calling ``ready()`` once it has started (its sockets accept requests)."""
    import uvicorn

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                ready()

    return Announcing(config)
