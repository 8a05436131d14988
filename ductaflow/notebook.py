"""An executed notebook's files: the notebook saved as its cells run, a failure banner, its HTML page.

The HTML page is rendered with nbconvert's templates
(:mod:`.htmlpage`). Importing nbconvert and loading its templates costs
several hundred milliseconds, so the exporter is built once per process (and
then caches what a sweep's pages repeat), and :func:`warm_up` imports it in
the background while a kernel starts.

The page uses nbconvert's lab template without the scripts it would fetch
from a CDN (require.js, MathJax, mermaid, the widget manager), so it opens
offline, from disk or a shared drive, with no failed request; LaTeX and
mermaid diagrams in markdown show as source, widgets as their text form.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .files import write_atomic, write_json_atomic

#: Tag of the markdown cell ductaflow puts first in the notebook of a failed run.
ERROR_TAG = "ductaflow-error"

_import_lock = threading.Lock()
_render_lock = threading.Lock()
_exporter: Any = None
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""


def _render(nb: Any) -> str:
    """Render with the process's one exporter (built once; rendering is serialised)."""
    global _exporter
    with _render_lock:
        if _exporter is None:
            with _import_lock:  # nbconvert's first import is not thread-safe
                from jinja2 import DictLoader

                from .htmlpage import PageExporter

                loader = DictLoader({"ductaflow-offline.html.j2": _TEMPLATE})
                _exporter = PageExporter(extra_loaders=[loader], template_file="ductaflow-offline.html.j2")
        body, _ = _exporter.from_notebook_node(nb)
    return body


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
    write_atomic(path, _render(nb))


def save_notebook(nb: Any, path: Path) -> None:
    """Write ``nb`` as an ``.ipynb`` file at ``path``, atomically (a reader never sees half of it)."""
    write_json_atomic(path, nb, indent=1)


def failure_banner(where: str, error_name: str, error_message: str) -> Any:
    """A markdown cell, tagged ``ductaflow-error``, saying the run failed ``where`` and with what."""
    import nbformat

    cell = nbformat.v4.new_markdown_cell(
        f"<span style='color:#b00020'>**ductaflow: this run failed {where}**</span> — "
        f"`{error_name}: {error_message}`"
    )
    cell.metadata["tags"] = [ERROR_TAG]
    return cell
