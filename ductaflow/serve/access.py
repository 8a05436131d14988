"""Who may reach ``ductaflow serve``: the address it binds, its token, and which files it hands out.

Standard library only, so the command checks its options before the web
stack is imported.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import urllib.parse
from pathlib import Path

from ..exceptions import ConfigError

DEFAULT_HOST = "127.0.0.1"
GENERATE = "auto"  # --token auto: a new random token, printed in the URL
MIN_TOKEN_LENGTH = 16
TOKEN_COOKIE = "ductaflow_token"
TOKEN_HEADER = "x-ductaflow-token"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.x.x.x, ::1, localhost): no other machine can connect."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def access_token(host: str, token: str | None) -> str | None:
    """The token every request must carry, or ``None`` when none is needed.

    Binding an address other machines can reach needs one: ``token`` as
    given, or a new random one when it is ``"auto"``. Raises
    :class:`ConfigError` when it is missing there, or too short to guess.
    """
    if token == GENERATE:
        return secrets.token_urlsafe(24)
    if token is None:
        if is_loopback(host):
            return None
        raise ConfigError(f"--host {host} lets other machines reach the runs folder, so it needs a token: "
                          f"add --token {GENERATE} (a new one, printed in the URL) or --token TOKEN "
                          f"(or set DUCTAFLOW_SERVE_TOKEN); or leave --host out to serve on "
                          f"{DEFAULT_HOST} only.", key="--token")  # fmt: skip
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"--token is {len(token)} characters long; give at least {MIN_TOKEN_LENGTH} "
                          f"(or --token {GENERATE} for a random one).", key="--token")  # fmt: skip
    return token


def token_matches(expected: str, given: str | None) -> bool:
    """Whether ``given`` is the token, compared in constant time."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def page_url(host: str, port: int, token: str | None) -> str:
    """The URL to open: a wildcard address is shown as this machine's name; the token rides in the query."""
    if host in ("0.0.0.0", "::", ""):
        import socket

        host = socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    query = "?" + urllib.parse.urlencode({"token": token}) if token else ""
    return f"http://{shown}:{port}/{query}"


def inside(root: Path, relative: str) -> Path | None:
    """The file ``relative`` names inside ``root`` (links followed), or ``None`` if it leads outside.

    ``root`` must be resolved already. ``..``, absolute paths and links to
    elsewhere all give ``None``; so does a path that does not exist.
    """
    if "\x00" in relative or os.path.isabs(relative):
        return None
    try:
        target = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a link loop, a name too long
        return None
    return target if target.is_relative_to(root) else None
