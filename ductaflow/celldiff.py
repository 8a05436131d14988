"""Cell-by-cell comparison of two executed notebooks: which code cells showed something else.

The code cells of the two notebooks are aligned by position when their
sources line up, else by a sequence match of their sources (a flow edited
between the runs: cells added, removed or changed pair as they best can).
The cell ductaflow injects with the config and the banner of a failed run
are set aside: the injected cell is compared on its own (it differs exactly
when the configs do), the banner says nothing the record does not.

Per aligned pair, what the outputs show is compared by kind: text (streams,
``text/plain``, error tracebacks with their ANSI colour codes stripped) as a
unified diff; images (``image/png``, ``image/svg+xml``...) one by one as
changed or unchanged; HTML as changed or unchanged. Notebooks are read as
JSON (nbformat 4) with the standard library only.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .flow import INJECTED_TAG
from .notebook import ERROR_TAG

#: ANSI escape sequences (colours, cursor moves) that tracebacks and coloured logs carry.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
#: Output data left out of the comparison: a widget's view names a model id drawn anew each run.
_IGNORED = frozenset({"application/vnd.jupyter.widget-view+json"})
_CONTEXT = 3  # lines of context around each change of a text diff


@dataclass(frozen=True)
class ImageChange:
    """One image of a cell in both runs: ``changed``, ``unchanged``, ``added`` (only B) or ``removed``."""

    mime: str
    state: str
    a: str | None = field(default=None, repr=False)  # the image's data in A (base64, or SVG text)
    b: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CellDiff:
    """A code cell whose outputs (or source) differ between two executed notebooks.

    ``index_a``/``index_b`` are the cell's 0-based index in each flow (as in
    errors: the injected config cell not counted), ``None`` on the side it
    is missing from; ``state`` is ``changed``, ``added`` (only in B) or
    ``removed`` (only in A). ``text`` holds the unified diff of the text
    outputs, ``source`` that of the sources when they differ, ``html`` is
    ``changed``/``unchanged`` (``None`` when neither run showed HTML) and
    ``other`` the same for the remaining kinds (Markdown, LaTeX, JSON...).
    """

    index_a: int | None
    index_b: int | None
    execution_count: int | None
    first_line: str
    state: str
    text: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    images: list[ImageChange] = field(default_factory=list)
    html: str | None = None
    other: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The cell's differences as JSON-native data (images by state, without their data)."""
        return {"index_a": self.index_a, "index_b": self.index_b, "execution_count": self.execution_count,
                "first_line": self.first_line, "state": self.state, "text": self.text, "source": self.source,
                "images": [{"mime": i.mime, "state": i.state} for i in self.images], "html": self.html,
                "other": self.other}  # fmt: skip


@dataclass(frozen=True)
class _Cell:
    index: int  # in the flow: the injected cell and a failure banner not counted
    source: str
    execution_count: int | None
    outputs: list[dict[str, Any]]


@dataclass(frozen=True)
class _Shown:
    """What a cell's outputs show, by kind."""

    text: str
    images: list[tuple[str, str]]
    html: str | None
    other: str | None


def read_cells(path: Path) -> tuple[list[_Cell], str | None]:
    """The code cells of the executed notebook ``path`` and the injected cell's source (``None``: none).

    Raises ``OSError`` or ``ValueError`` when the notebook cannot be read.
    """
    notebook = json.loads(path.read_bytes())
    cells, injected, index = [], None, 0
    for cell in notebook.get("cells", []) if isinstance(notebook, dict) else []:
        tags = (cell.get("metadata") or {}).get("tags") or []
        if ERROR_TAG in tags:
            continue
        if INJECTED_TAG in tags:
            injected = _joined(cell.get("source", ""))
            continue
        if cell.get("cell_type") == "code":
            cells.append(_Cell(index, _joined(cell.get("source", "")), cell.get("execution_count"),
                               [o for o in cell.get("outputs") or [] if isinstance(o, dict)]))  # fmt: skip
        index += 1
    return cells, injected


def compare_cells(cells_a: list[_Cell], cells_b: list[_Cell], labels: tuple[str, str]) -> list[CellDiff]:
    """The aligned code cells whose outputs or sources differ, and those found on one side only."""
    diffs = []
    for a, b in align(cells_a, cells_b):
        found = _compare(a, b, labels)
        if found is not None:
            diffs.append(found)
    return diffs


def align(cells_a: list[_Cell], cells_b: list[_Cell]) -> list[tuple[_Cell | None, _Cell | None]]:
    """Pairs of cells: by position when the sources line up, else by a sequence match of the sources."""
    sources_a, sources_b = [c.source for c in cells_a], [c.source for c in cells_b]
    if sources_a == sources_b:
        return list(zip(cells_a, cells_b, strict=True))
    pairs: list[tuple[_Cell | None, _Cell | None]] = []
    matcher = difflib.SequenceMatcher(None, sources_a, sources_b, autojunk=False)
    for _, a1, a2, b1, b2 in matcher.get_opcodes():
        left, right = cells_a[a1:a2], cells_b[b1:b2]
        paired = min(len(left), len(right))  # 'equal' and 'replace' blocks pair in order
        pairs += list(zip(left[:paired], right[:paired], strict=True))
        pairs += [(cell, None) for cell in left[paired:]] + [(None, cell) for cell in right[paired:]]
    return pairs


def _compare(a: _Cell | None, b: _Cell | None, labels: tuple[str, str]) -> CellDiff | None:
    one = b if b is not None else a
    assert one is not None
    first = next((line for line in one.source.splitlines() if line.strip()), "")
    where = {"index_a": a.index if a else None, "index_b": b.index if b else None,
             "execution_count": one.execution_count, "first_line": first}  # fmt: skip
    if a is None or b is None:
        return CellDiff(**where, state="added" if a is None else "removed")
    shown_a, shown_b = shown(a.outputs), shown(b.outputs)
    source = _unified(a.source, b.source, labels) if a.source != b.source else []
    if shown_a == shown_b and not source:
        return None
    images = [_image(i, shown_a.images, shown_b.images)
              for i in range(max(len(shown_a.images), len(shown_b.images)))]  # fmt: skip
    return CellDiff(**where, state="changed", text=_unified(shown_a.text, shown_b.text, labels),
                    source=source, images=images, html=_state(shown_a.html, shown_b.html),
                    other=_state(shown_a.other, shown_b.other))  # fmt: skip


def parameters_diff(a: str | None, b: str | None, labels: tuple[str, str]) -> list[str]:
    """The unified diff of the two injected config cells (empty when they are the same)."""
    return _unified(a or "", b or "", labels) if a != b else []


def shown(outputs: list[dict[str, Any]]) -> _Shown:
    """What ``outputs`` show, by kind; consecutive pieces of one stream count as one text."""
    text: list[str] = []
    images: list[tuple[str, str]] = []
    html: list[str] = []
    other: list[str] = []
    stream = None
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            piece = _joined(output.get("text", ""))
            if stream == output.get("name") and text:
                text[-1] += piece
            else:
                text.append(piece)
            stream = output.get("name")
            continue
        stream = None
        if kind == "error":
            trace = _joined(output.get("traceback") or [], "\n")
            text.append(trace or f"{output.get('ename')}: {output.get('evalue')}")
        elif kind in ("execute_result", "display_data"):
            _sort(output.get("data") or {}, text, images, html, other)
    lines = "".join(_ANSI.sub("", piece if piece.endswith("\n") else piece + "\n") for piece in text)
    return _Shown(lines, images, "".join(html) if html else None, "\n".join(other) if other else None)


def _sort(data: dict[str, Any], text: list[str], images: list[tuple[str, str]], html: list[str],
          other: list[str]) -> None:  # fmt: skip
    for mime, value in data.items():
        if mime in _IGNORED:
            continue
        if mime.startswith("image/"):
            content = _joined(value)
            images.append((mime, content if "svg" in mime else "".join(content.split())))
        elif mime == "text/plain":
            text.append(_joined(value))
        elif mime == "text/html":
            html.append(_joined(value))
        else:
            other.append(f"{mime}: {value if isinstance(value, str) else json.dumps(value, sort_keys=True)}")


def _image(i: int, a: list[tuple[str, str]], b: list[tuple[str, str]]) -> ImageChange:
    if i >= len(a):
        return ImageChange(b[i][0], "added", None, b[i][1])
    if i >= len(b):
        return ImageChange(a[i][0], "removed", a[i][1], None)
    state = "unchanged" if a[i] == b[i] else "changed"
    return ImageChange(b[i][0], state, a[i][1], b[i][1])


def _state(a: str | None, b: str | None) -> str | None:
    if a is None and b is None:
        return None
    return "unchanged" if a == b else "changed"


def _unified(a: str, b: str, labels: tuple[str, str]) -> list[str]:
    if a == b:
        return []
    lines = difflib.unified_diff(a.splitlines(), b.splitlines(), *labels, lineterm="", n=_CONTEXT)
    return list(lines)


def _joined(value: Any, separator: str = "") -> str:
    """Notebook text: a string, or a list of strings (as nbformat may store it on disk)."""
    if isinstance(value, list):
        return separator.join(str(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value)
