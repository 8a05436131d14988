"""``ductaflow serve``: a live web view of a runs folder, read-only, over the run index.

Modules: ``access`` (address, token, which files may be handed out),
``watcher`` (the thread owning and refreshing the index), ``views`` (what
the page shows, as data), ``app`` (the Starlette routes), ``server`` (bind,
serve, announce). Only ``server`` and ``app`` import the web stack
(starlette, uvicorn: ``pip install 'ductaflow[serve]'``), and only when
called, so importing this package stays light.
"""

from __future__ import annotations

from .server import DEFAULT_PORT, MISSING_STACK, serve_runs, web_stack_installed

__all__ = ["DEFAULT_PORT", "MISSING_STACK", "serve_runs", "web_stack_installed"]
