"""The run index's small query language: filter terms and sort keys turned into SQL with bound values.

A term is ``column<op>value`` (``=``, ``!=``, ``>``, ``<``, ``>=``, ``<=``,
``~`` for "contains", case-insensitive) or free text, matched against the
instance name, status, error and reason. A column is any row key
(``status``, ``duration``, ``config.alpha``, ``metric.rmse``...); a bare name
that is not a base column means ``config.<name>`` or else ``metric.<name>``.
Values that read as numbers compare as numbers. Terms combine with AND.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from .exceptions import ConfigError
from .rows import BASE_COLUMNS, EXTRA_KEYS

_TERM = re.compile(r"^([^=!<>~]+?)(!=|>=|<=|=|>|<|~)(.*)$")
_FREE = ("instance", "status", "error", "reason")


def where_clause(where: str, status: str | None = None) -> tuple[str, list[Any]]:
    """``(" AND ...", params)`` for the terms of ``where`` and one ``status``.

    Raises :class:`ConfigError` for a term that cannot be read.
    """
    sql, params = [], []
    if status:
        sql.append("status = ?")
        params.append(status)
    try:
        terms = shlex.split(where or "")
    except ValueError as exc:
        raise ConfigError(f"the filter {where!r} cannot be read ({exc}); close its quotes.") from exc
    for term in filter(None, terms):  # '""' is an empty term: nothing to match
        if term[0] in "=!<>~":
            raise ConfigError(f"the filter term {term!r} names no column: write it as column{term[0]}value "
                              "(e.g. metric.rmse<0.5).", key=term)  # fmt: skip
        found = _TERM.match(term)
        if found is None:
            likes = " OR ".join(f"instr(lower(CAST({_value(c)[0]} AS TEXT)), ?) > 0" for c in _FREE)
            sql.append(f"({likes})")
            for column in _FREE:
                params += [*_value(column)[1], term.lower()]
            continue
        column, op, raw = found.group(1).strip(), found.group(2), found.group(3)
        expr, keys = _value(column)
        if op == "~":
            sql.append(f"instr(lower(CAST({expr} AS TEXT)), ?) > 0")
            params += [*keys, raw.lower()]
            continue
        value = _number(raw)
        if op in ("=", "!=") and isinstance(value, str) and value.lower() in ("", "null", "none"):
            sql.append(f"{expr} IS {'NOT ' if op == '!=' else ''}NULL")
            params += keys
            continue
        sql.append(f"{expr} {op} ?" if op != "!=" else f"({expr} IS NULL OR {expr} != ?)")
        params += [*keys, *(keys if op == "!=" else []), value]
    return "".join(f" AND {s}" for s in sql), params


def order_by(sort: str, descending: bool) -> tuple[str, list[Any]]:
    """``(ORDER BY text, params)`` sorting by ``sort`` (empty values last), then by instance name."""
    expr, keys = _value(sort or "instance")
    direction = "DESC" if descending else "ASC"
    return f"{expr} IS NULL, {expr} {direction}, name {direction}", [*keys, *keys]


def _value(column: str) -> tuple[str, list[Any]]:
    """The SQL expression of a row key, and the values it binds."""
    if column == "status":
        return "status", []
    if column == "instance":
        return "name", []
    if column in BASE_COLUMNS or column in EXTRA_KEYS or column.startswith(("config.", "metric.")):
        return "json_extract(row, ?)", [_path(column)]
    both = "coalesce(json_extract(row, ?), json_extract(row, ?))"
    return both, [_path(f"config.{column}"), _path(f"metric.{column}")]


def _path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _number(raw: str) -> Any:
    try:
        number = int(raw)
        return number if -(1 << 63) <= number < (1 << 63) else float(number)  # what SQLite can bind
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw
