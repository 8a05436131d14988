"""The exporter behind an instance's HTML page: nbconvert's, minus the work a sweep repeats on every page.

A sweep renders the same flow's cells hundreds of times. nbconvert's HTML
exporter highlights each cell's source with pygments, sanitises the result
with bleach, reads the lab theme's CSS from disk, and at the end parses the
whole page (about 250 kB, most of it CSS) with BeautifulSoup to add ``alt``
text to images and ``tabindex`` to cells and outputs. :class:`PageExporter`
keeps nbconvert's templates, filters and output, and changes only how:

* highlighted and sanitised text is cached by its input (the same cell
  source gives the same HTML), as are the included CSS files;
* the notebook is validated once, not after each of a dozen preprocessors;
* the ``alt`` and ``tabindex`` attributes are added by a scan of the body's
  tags instead of a parse of the page.

The page is the one nbconvert gives, attribute for attribute (the suite checks
it on every corpus notebook); only its serialisation can differ (spacing
inside tags, ``<br/>`` against ``<br>``). If an nbconvert release changes
what this relies on, the exporter falls back to nbconvert's own rendering.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from nbconvert import HTMLExporter
from nbconvert.exporters.templateexporter import TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.strings import clean_html
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

#: What nbconvert gives an image without ``alt`` text.
NO_ALT = "No description has been provided for this image"
#: Distinct inputs remembered per cached filter; a sweep's flow has a few dozen cells.
_CACHE_SIZE = 1024
#: A tag to look at (img, div), or text where tags are not tags (comments, scripts, styles).
_TAG = re.compile(
    r"<!--.*?-->|<(script|style)\b.*?</\1\s*>"
    r"|<(img|div)\b((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>",
    re.IGNORECASE | re.DOTALL,
)
_CLASS = re.compile(r"""\sclass\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_TABINDEX = re.compile(r"""\stabindex(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?""", re.IGNORECASE)
_ALT = re.compile(r"\salt(?=[\s=]|$)", re.IGNORECASE)
_NO_ALT = f' alt="{NO_ALT}"'
_FOCUS = ' tabindex="0"'
_FOCUSABLE = frozenset({"jp-Cell-inputWrapper", "jp-OutputArea-output"})


class _Cache:
    """A bounded memo of a pure text filter (first in, first out)."""

    def __init__(self, function: Callable[..., str]) -> None:
        self.function = function
        self.memo: dict[Any, str] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        key = json.dumps([args, kwargs], sort_keys=True, default=repr)
        result = self.memo.get(key)
        if result is None:
            result = self.memo[key] = self.function(*args, **kwargs)
            if len(self.memo) > _CACHE_SIZE:
                del self.memo[next(iter(self.memo))]
        return result


class PageExporter(HTMLExporter):  # type: ignore[misc]
    """nbconvert's HTML exporter with repeated work cached and no re-parse of the page (see the module)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._highlighters: dict[str, _Cache] = {}
        self._includes: dict[tuple[str, str], Any] = {}
        self._validated = False  # this render's notebook was validated (see _validate_preprocessor)
        self.register_filter("clean_html", _Cache(clean_html))

    def _init_resources(self, resources: dict[str, Any] | None) -> dict[str, Any]:
        resources = super()._init_resources(resources)
        for key in ("include_css", "include_lab_theme"):
            if key in resources:
                resources[key] = self._cached_include(key, resources[key])
        return resources  # type: ignore[no-any-return]

    def _cached_include(self, key: str, include: Callable[[str], Any]) -> Callable[[str], Any]:
        def cached(name: str) -> Any:
            if (key, name) not in self._includes:
                self._includes[key, name] = include(name)
            return self._includes[key, name]

        return cached

    def from_notebook_node(
        self, nb: Any, resources: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[str, Any]:
        """The page of ``nb``, as :class:`nbconvert.HTMLExporter` renders it (see the module)."""
        self._validated = False  # each render validates its notebook once, the fallback's too
        try:
            language = nb.metadata.get("language_info", {})
            lexer = language.get("pygments_lexer", language.get("name", None))
            if lexer not in self._highlighters:
                self._highlighters[lexer] = _Cache(Highlight2HTML(pygments_lexer=lexer, parent=self))
            self.register_filter("highlight_code", self._highlighters[lexer])
            resources = self._init_resources(resources)
            self.register_filter("filter_data_type", WidgetsDataTypeFilter(
                notebook_metadata=self._nb_metadata, parent=self, resources=resources))  # fmt: skip
        except (AttributeError, TypeError):  # nbconvert changed what this relies on: its own way
            return super().from_notebook_node(nb, resources, **kw)  # type: ignore[no-any-return]
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        return accessible(html), resources

    def _validate_preprocessor(self, nbc: Any, preprocessor: Any) -> None:
        """Validate the notebook once, after the first preprocessor, not after each of a dozen."""
        if not self._validated:
            super()._validate_preprocessor(nbc, preprocessor)
            self._validated = True


def accessible(html: str) -> str:
    """Add what nbconvert adds to a page: ``alt`` to images without, ``tabindex="0"`` to cells and outputs.

    The head of a page that has one (the template's CSS, most of the page) is left out of the scan.
    """
    head = html.find("</head>")
    start = head + len("</head>") if head >= 0 else 0
    return html[:start] + _TAG.sub(_accessible_tag, html[start:])


def _accessible_tag(match: re.Match[str]) -> str:
    name, attributes = match.group(2), match.group(3)
    if name is None:  # a comment, a script, a style: left as it is
        return match.group(0)
    closing = "/" if attributes.endswith("/") else ""
    body = attributes[:-1] if closing else attributes
    if name.lower() == "img":
        if _ALT.search(body):
            return match.group(0)
        return f"<{name}{body}{_NO_ALT}{closing}>"
    found = _CLASS.search(body)
    classes = set(next(group for group in found.groups() if group is not None).split()) if found else set()
    if not classes & _FOCUSABLE:
        return match.group(0)
    if _TABINDEX.search(body):  # nbconvert sets it to 0 where it stands
        return f"<{name}{_TABINDEX.sub(_FOCUS, body, count=1)}{closing}>"
    return f"<{name}{body}{_FOCUS}{closing}>"
