"""HTML reports of executed notebooks (nbconvert).

Importing nbconvert and loading its templates costs several hundred
milliseconds, so the exporter is built once per process and thread, and
:func:`warm_up` builds it in the background while a kernel starts.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

_local = threading.local()
_import_lock = threading.Lock()


def _exporter() -> Any:
    exporter = getattr(_local, "exporter", None)
    if exporter is None:
        with _import_lock:  # nbconvert's first import is not thread-safe
            from nbconvert import HTMLExporter

            exporter = HTMLExporter()
        _local.exporter = exporter
    return exporter


def warm_up() -> threading.Thread:
    """Import nbconvert in a background thread; returns the (daemon) thread."""

    def load() -> None:
        with _import_lock:
            import nbconvert  # noqa: F401

    thread = threading.Thread(target=load, name="ductaflow-nbconvert-import", daemon=True)
    thread.start()
    return thread


def write_html(nb: Any, path: Path) -> None:
    """Render ``nb`` as a standalone HTML page at ``path`` (written atomically)."""
    body, _ = _exporter().from_notebook_node(nb)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, path)
