"""``--grid KEY=V1,V2``: values read as JSON when they parse, split on the commas outside brackets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click


def parse_grids(grids: Sequence[str]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for text in grids:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise click.BadParameter(
                f"{text!r} is not KEY=V1,V2 (e.g. --grid seed=1,2,3).", param_hint="--grid"
            )
        if key in grid:
            raise click.BadParameter(f"key {key!r} is given twice; list all its values in one --grid.",
                                     param_hint="--grid")  # fmt: skip
        parsed = _json_or_text(raw)
        grid[key] = parsed if isinstance(parsed, list) else [_json_or_text(v) for v in _split_values(raw)]
        if not grid[key]:
            raise click.BadParameter(f"{text!r} lists no values.", param_hint="--grid")
    return grid


def _split_values(raw: str) -> list[str]:
    """Split on the commas outside brackets and double quotes: ``a,[1,2],"x,y"`` gives three values."""
    values, depth, quoted, current = [], 0, False, ""
    for char in raw:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "[{":
            depth += 1
        elif not quoted and char in "]}":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            values.append(current)
            current = ""
            continue
        current += char
    if quoted or depth:
        raise click.BadParameter(
            f"{raw!r} has an unclosed {'quote' if quoted else 'bracket'}.", param_hint="--grid"
        )
    values.append(current)
    if any(not value.strip() for value in values):
        raise click.BadParameter(f"{raw!r} has an empty value (two commas in a row, or one at an end).",
                                 param_hint="--grid")  # fmt: skip
    return values


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()
