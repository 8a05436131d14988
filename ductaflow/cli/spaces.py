"""``--space KEY=SPEC`` for ``--random N``, and ``--zip KEY=V1,V2`` (paired lists), parsed as ``--grid`` is.

A space's SPEC is ``log:LOW:HIGH`` (log-uniform), ``range:LOW:HIGH``
(uniform; two whole numbers give whole numbers, both ends included) or
``V1,V2,...`` (one of the values, read as JSON when they parse, as ``--grid``
reads them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import click

import ductaflow

from .grid import parse_grids

_RANGES = {"log": ductaflow.log_uniform, "range": ductaflow.uniform}


def parse_space(items: Sequence[str]) -> dict[str, Any]:
    """``--space`` options as a space: ``lr=log:1e-4:1e-1``, ``dropout=range:0:0.5``, ``layers=1,2,3``."""
    space: dict[str, Any] = {}
    choices = []
    for text in items:
        key, sep, spec = text.partition("=")
        key = key.strip()
        if not sep or not key or not spec.strip():
            raise click.BadParameter(f"{text!r} is not KEY=SPEC (e.g. --space lr=log:1e-4:1e-1, "
                                     "--space dropout=range:0:0.5, --space layers=1,2,3).",
                                     param_hint="--space")  # fmt: skip
        if key in space:
            raise click.BadParameter(f"key {key!r} is given twice; give it in one --space.",
                                     param_hint="--space")  # fmt: skip
        kind, _, ends = spec.strip().partition(":")
        if kind in _RANGES:
            space[key] = _range(key, kind, ends)
        elif re.fullmatch(r"[A-Za-z_]\w*:[^,:]*:[^,:]*", spec.strip()):  # lg:1e-4:1e-1, a misspelt kind
            raise click.BadParameter(f"{text!r}: {kind!r} is not a kind of range; use log:LOW:HIGH or "
                                     "range:LOW:HIGH, or list values (V1,V2,...).",
                                     param_hint="--space")  # fmt: skip
        else:
            choices.append(text)
            space[key] = None  # keeps the keys' order; filled below
    try:
        parsed = parse_grids(choices)
    except click.BadParameter as exc:
        raise _as(exc, "--space") from None
    return {key: parsed[key] if value is None else value for key, value in space.items()}


def _range(key: str, kind: str, ends: str) -> Any:
    low, sep, high = ends.partition(":")
    try:
        numbers = [json.loads(low), json.loads(high)] if sep else None
    except json.JSONDecodeError:
        numbers = None
    if numbers is None or not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        raise click.BadParameter(f"{key}={kind}:{ends} is not {kind}:LOW:HIGH with two numbers (e.g. "
                                 f"{key}={kind}:{'1e-4:1e-1' if kind == 'log' else '0:0.5'}).",
                                 param_hint="--space")  # fmt: skip
    try:
        return _RANGES[kind](*numbers)
    except ductaflow.ConfigError as exc:
        raise click.BadParameter(f"{key}: {exc}", param_hint="--space") from None


def parse_paired(items: Sequence[str]) -> dict[str, list[Any]]:
    """``--zip a=1,2,3 --zip b=x,y,z``: lists taken together, values read as ``--grid`` reads them."""
    try:
        return parse_grids(items)
    except click.BadParameter as exc:
        raise _as(exc, "--zip") from None


def _as(exc: click.BadParameter, option: str) -> click.BadParameter:
    message = exc.message.replace("--grid seed=1,2,3", f"{option} a=1,2,3").replace("--grid", option)
    return click.BadParameter(message, param_hint=option)
