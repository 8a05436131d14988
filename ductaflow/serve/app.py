"""The web app of ``ductaflow serve``: Starlette routes over the run index, read-only.

Routes (all GET): ``/`` the page; ``/static/...`` its script and plotly.js
(from the installed ``plotly`` package, never a CDN); ``/api/version`` the
index's version, which the page polls every second to learn of changes;
``/api/steps``; ``/api/rows`` a page of a step's instances, sorted and
filtered by the index; ``/api/instance`` one instance with its log's tail;
``/api/charts`` a step's chart data; ``/files/<step>/<instance>/<file>``
any file inside the runs folder (refused if the path leads outside it).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..charts import CHARTS_JS, plotly_js
from ..exceptions import DuctaflowError
from . import views
from .access import TOKEN_COOKIE, TOKEN_HEADER, inside, is_loopback, token_matches
from .watcher import LiveIndex, columns_of, steps_of

_SANDBOX = "sandbox allow-scripts allow-popups allow-downloads allow-forms"  # run files' pages in no origin
_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json; charset=utf-8",
          ".txt": "text/plain; charset=utf-8", ".log": "text/plain; charset=utf-8",
          ".py": "text/plain; charset=utf-8", ".csv": "text/plain; charset=utf-8"}  # fmt: skip


def create_app(live: LiveIndex, runs_dir: Path, *, host: str, token: str | None) -> Any:
    """The Starlette app serving ``runs_dir`` through its index ``live`` (started), reachable as ``host``.

    With a ``token``, every request must carry it; without one (loopback
    only), the Host header must name this machine, so a web page elsewhere
    cannot reach the app through a rebound DNS name.
    """
    root = runs_dir.resolve()
    api = _Api(live, root)
    routes = [
        Route("/", api.page),
        Route("/static/{name}", api.static),
        Route("/api/version", api.version),
        Route("/api/steps", api.steps),
        Route("/api/rows", api.rows),
        Route("/api/instance", api.instance),
        Route("/api/charts", api.charts),
        Route("/files/{path:path}", api.files),
    ]
    middleware = []
    if token is None:
        hosts = ["127.0.0.1", "localhost", "[::1]", "::1", host] if is_loopback(host) else [host]
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=hosts))
    app = Starlette(routes=routes, middleware=middleware)
    return _TokenGate(app, token) if token else app


class _Api:
    """The route handlers; each asks the index thread and answers JSON (or a file)."""

    def __init__(self, live: LiveIndex, root: Path) -> None:
        self.live, self.root = live, root

    def page(self, request: Request) -> Response:
        text = (_HERE / "page.html").read_text(encoding="utf-8")
        title = f"ductaflow serve: {self.root.name}"
        return Response(text.replace("__TITLE__", _escape(title)), media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store"})  # fmt: skip

    def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":  # 4.6 MB, the same for the life of the process: cached by the browser
            return Response(_plotly_js(), media_type="text/javascript; charset=utf-8",
                            headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip
        path = _STATIC.get(name)
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        kind = "text/css" if path.suffix == ".css" else "text/javascript"
        return FileResponse(path, media_type=f"{kind}; charset=utf-8", headers={"Cache-Control": "no-cache"})

    def version(self, request: Request) -> Response:
        return _json({"version": self.live.version, "refreshed_at": self.live.refreshed_at,
                      "problem": self.live.problem})  # fmt: skip

    def steps(self, request: Request) -> Response:
        steps = self.live.call(views.steps_view, self.live.memo("steps", steps_of))
        return _json({"version": self.live.version, "runs": str(self.root), "steps": views.finite(steps)})

    def rows(self, request: Request) -> Response:
        q = request.query_params
        try:
            offset = int(q.get("offset", "0"))
        except ValueError:
            return _json({"error": f"offset {q.get('offset')!r} is not a whole number"}, 400)
        options = {"sort": q.get("sort") or "instance", "descending": q.get("desc") == "1",
                   "where": q.get("where", ""), "status": q.get("status"), "offset": offset}  # fmt: skip
        try:
            step = q.get("step", "")
            columns = self.live.memo(("columns", step), columns_of, step)
            page = self.live.call(lambda index: views.rows_view(index, step, columns, **options))
        except DuctaflowError as exc:  # a filter term or sort column the index does not understand
            return _json({"error": str(exc)}, 400)
        return _json(page)

    def instance(self, request: Request) -> Response:
        step, instance = request.query_params.get("step", ""), request.query_params.get("instance", "")
        shown = self.live.call(views.instance_view, step, instance)
        if shown is None:
            return _json({"error": f"no instance {step}/{instance} in {self.root}"}, 404)
        return _json(shown)

    def charts(self, request: Request) -> Response:
        step = request.query_params.get("step", "")
        return _json(self.live.memo(("charts", step), views.charts_view, step))

    def files(self, request: Request) -> Response:
        target = inside(self.root, request.path_params["path"])
        if target is None:
            return PlainTextResponse("no such file inside the runs folder", status_code=404)
        if not target.is_file():
            return PlainTextResponse("not a file", status_code=404)
        headers = {"Content-Security-Policy": _SANDBOX, "X-Content-Type-Options": "nosniff"}
        media = _TYPES.get(target.suffix.lower())
        return FileResponse(target, media_type=media, headers=headers)


class _TokenGate:
    """ASGI middleware: a request without the token gets 403; ``?token=`` once sets a cookie for the rest."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        from_query = request.query_params.get("token")
        given = [from_query, request.cookies.get(TOKEN_COOKIE), request.headers.get(TOKEN_HEADER)]
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            given.append(authorization[7:])
        if not any(token_matches(self.token, g) for g in given):
            refused = PlainTextResponse("403: this ductaflow serve needs its token (the URL it printed)", 403)
            await refused(scope, receive, send)
            return
        if not token_matches(self.token, from_query):
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


_HERE = Path(__file__).parent
_STATIC = {"serve.js": _HERE / "static" / "serve.js", "serve.css": _HERE / "static" / "serve.css",
           "charts.js": CHARTS_JS}  # fmt: skip


@functools.cache
def _plotly_js() -> bytes:
    return plotly_js().encode("utf-8")


def _json(value: Any, status: int = 200) -> Response:
    body = json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})  # fmt: skip


def _escape(text: str) -> str:
    import html

    return html.escape(text)
