"""What ``ductaflow diff`` shows of a :class:`~ductaflow.diff.RunDiff`: lines in the terminal, coloured
by rich (plain when piped), and the same lines as a self-contained HTML page with changed images side by
side. Printing only; the comparison is :mod:`ductaflow.diff`'s."""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .celldiff import CellDiff, ImageChange
from .console import when
from .diff import Change, RunDiff
from .exceptions import ConfigError
from .files import shown_path, write_atomic

#: How each kind of line is coloured in the terminal.
STYLES = {"title": "bold", "a": "red", "b": "green", "changed": "yellow", "hunk": "cyan", "dim": "dim"}
_HASH = re.compile(r"[0-9a-f]{64}")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*")
_LONGEST = 80  # characters of a value shown
_STATES = {"added": "only in B", "removed": "only in A", "changed": "changed", "same": ""}


@dataclass(frozen=True)
class Line:
    """A line of the comparison: its text, kind (a key of :data:`STYLES`, or ``""``) and indent."""

    text: str
    style: str = ""
    indent: int = 0
    image: ImageChange | None = None  # a changed image, shown side by side on the page


def lines(diff: RunDiff) -> list[Line]:
    """The comparison as lines, section by section: runs, config, fingerprint, environment, metrics, cells."""
    out = [Line(f"{label}: {side.name}  {side.status}  started {when(side.started_at)}  "
                f"{shown_path(side.run_dir)}" + (f"  ({side.error})" if side.error else ""), label.lower())
           for label, side in (("A", diff.a), ("B", diff.b))]  # fmt: skip
    out += _changes("config", diff.config, "key")
    out += _fingerprint(diff)
    out += _environment(diff)
    out += _metrics(diff.metrics)
    out += _cells(diff)
    if diff.notes:
        out += [Line("notes", "title"), *(Line(note, "dim", 1) for note in diff.notes)]
    return out


def _changes(title: str, found: list[Change], noun: str) -> list[Line]:
    if not found:
        return [Line(f"{title}: no {noun} differs", "title")]
    plural = "s differ" if len(found) > 1 else " differs"
    return [Line(f"{title}: {len(found)} {noun}{plural}", "title"), *(_change(c) for c in found)]


def _change(change: Change) -> Line:
    if change.state == "added":
        return Line(f"+ {change.name} = {_value(change.b)}  (only in B)", "b", 1)
    if change.state == "removed":
        return Line(f"- {change.name} = {_value(change.a)}  (only in A)", "a", 1)
    return Line(f"~ {change.name}: {_value(change.a)} -> {_value(change.b)}", "changed", 1)


def _value(value: Any) -> str:
    """A value as short text: a sha256 by its first 12 characters, long text cut."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if _HASH.fullmatch(text):
        return text[:12]
    return text if len(text) <= _LONGEST else text[: _LONGEST - 3] + "..."


def _fingerprint(diff: RunDiff) -> list[Line]:
    if diff.fingerprint:
        return _changes("fingerprint", diff.fingerprint, "part")
    same = "no part differs but the config" if diff.config else "the same"
    return [Line(f"fingerprint: {same}", "title")]


def _environment(diff: RunDiff) -> list[Line]:
    python_a, python_b = diff.python
    python = (f"Python {python_a or '?'} in both" if python_a == python_b else
              f"Python {python_a or '?'} -> {python_b or '?'}")  # fmt: skip
    packages = f"{len(diff.packages)} package versions differ" if diff.packages else "packages the same"
    style = "changed" if python_a != python_b else "title"
    return [Line(f"environment: {python}; {packages}", style), *(_change(c) for c in diff.packages)]


def _metrics(metrics: list[Change]) -> list[Line]:
    if not metrics:
        return [Line("metrics: none recorded", "title")]
    differ = sum(m.state != "same" for m in metrics)
    rows = [("metric", "A", "B", ""), *((m.name, _value(m.a) if m.state != "added" else "-",
                                         _value(m.b) if m.state != "removed" else "-", _STATES[m.state])
                                        for m in metrics)]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    cells = [[cell.ljust(width) for cell, width in zip(row, [*widths, 0], strict=True)] for row in rows]
    table = [Line("  ".join(row).rstrip(), "dim" if not number else "changed" if rows[number][3] else "", 1)
             for number, row in enumerate(cells)]  # fmt: skip
    return [Line(f"metrics: {differ} of {len(metrics)} differ{'s' * (differ == 1)}", "title"), *table]


def _cells(diff: RunDiff) -> list[Line]:
    if not diff.cells_compared and not diff.cells:
        return [Line("cells: not compared", "title")]
    count = len(diff.cells)
    verb = "differs" if count == 1 else "differ"
    out = [Line(f"cells: {count} of {diff.cells_compared} code cells {verb} in their outputs", "title")]
    for cell in diff.cells:
        out += _cell(cell)
    if diff.parameters:
        out.append(Line("injected config cell: differs with the config (not counted above)", "dim", 1))
        out += _unified(diff.parameters, 2)
    return out


def _cell(cell: CellDiff) -> list[Line]:
    where = _where(cell)
    if cell.state != "changed":
        return [Line(f"{where}: {cell.first_line}  ({_STATES[cell.state]})", "a" if cell.state == "removed"
                     else "b", 1)]  # fmt: skip
    out = [Line(f"{where}: {cell.first_line}", "changed", 1)]
    if cell.source:
        out += [Line("source:", "", 2), *_unified(cell.source, 3)]
    if cell.text:
        out += [Line("text:", "", 2), *_unified(cell.text, 3)]
    for number, image in enumerate(cell.images, 1):
        state = _STATES.get(image.state) or image.state
        unchanged = image.state == "unchanged"
        out.append(Line(f"image {number} ({image.mime}): {state}", "dim" if unchanged else "changed", 2,
                        None if unchanged else image))  # fmt: skip
    for kind, state in (("HTML", cell.html), ("other outputs", cell.other)):
        if state is not None:
            out.append(Line(f"{kind}: {state}", "dim" if state == "unchanged" else "changed", 2))
    return out


def _where(cell: CellDiff) -> str:
    """``cell 3 (In [3])``, ``cell 3 -> 4`` when it moved; indices as in errors (the flow's, from 0)."""
    index = cell.index_b if cell.index_a is None else cell.index_a
    moved = ""
    if cell.index_a is not None and cell.index_b is not None and cell.index_a != cell.index_b:
        moved = f" -> {cell.index_b}"
    count = f" (In [{cell.execution_count}])" if cell.execution_count else ""
    return f"cell {index}{moved}{count}"


def _unified(diff_lines: list[str], indent: int) -> list[Line]:
    styles = {"---": "a", "+++": "b", "@@": "hunk", "-": "a", "+": "b"}
    return [Line(text, next((s for p, s in styles.items() if text.startswith(p)), ""), indent)
            for text in diff_lines]  # fmt: skip


def print_diff(diff: RunDiff) -> None:
    """Print the comparison to stdout: coloured on a terminal (rich), plain text when piped."""
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    for line in lines(diff):
        if line.style == "title":
            console.print()
        console.print(Text("  " * line.indent + line.text, style=STYLES.get(line.style, "")))


def write_page(diff: RunDiff, path: str | Path) -> Path:
    """Write the comparison as one self-contained HTML page (no script, no network); return its path."""
    target = Path(path).absolute()
    if target.is_dir():
        raise ConfigError(f"the page's output {str(path)!r} is a folder; give a file name such as "
                          f"{Path(path) / 'diff.html'}.", path=str(path))  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, page(diff))
    return target


def page(diff: RunDiff) -> str:
    """The comparison as an HTML page: every text escaped, changed images embedded side by side."""
    title = html.escape(f"ductaflow diff: {diff.a.name} and {diff.b.name}")
    body = []
    for line in lines(diff):
        text = html.escape(line.text)
        if line.style == "title":
            body.append(f"<h2>{text}</h2>")
            continue
        body.append(f'<div class="line {line.style}" style="margin-left:{line.indent * 1.5}em">{text}</div>')
        if line.image is not None:
            body.append(_images(line.image, line.indent))
    return _PAGE.replace("__TITLE__", title).replace("__BODY__", "\n".join(body))


def _images(image: ImageChange, indent: int) -> str:
    figures = []
    for label, data in (("A", image.a), ("B", image.b)):
        source = _data_uri(image.mime, data)
        inner = f'<img alt="{label}" src="{source}">' if source else "<span>no image</span>"
        figures.append(f"<figure>{inner}<figcaption>{label}</figcaption></figure>")
    return f'<div class="images" style="margin-left:{indent * 1.5 + 1.5}em">{"".join(figures)}</div>'


def _data_uri(mime: str, data: str | None) -> str | None:
    """``data:`` URI of an image: base64 checked to be base64, SVG encoded (an ``img`` runs no script)."""
    if data is None or not re.fullmatch(r"image/[\w.+-]+", mime):
        return None
    if "svg" in mime:
        data = base64.b64encode(data.encode()).decode()
    elif not _BASE64.fullmatch(data):
        return None
    return html.escape(f"data:{mime};base64,{data}")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin:1.4em 0 .3em;border-bottom:1px solid #ccc}
.line{font-family:ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere}
.a{color:#a00} .b{color:#070} .changed{color:#8a5a00} .hunk{color:#07a} .dim{color:#777}
.images{display:flex;gap:1em;flex-wrap:wrap;margin:.3em 0}
figure{margin:0;border:1px solid #ddd;padding:.3em} figure img{max-width:45vw;height:auto;display:block}
figcaption{text-align:center;color:#555}
</style></head><body>
<h1>__TITLE__</h1>
__BODY__
</body></html>
"""
