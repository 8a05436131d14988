"""Sources: where instances come from. Control tables, grids and config files become named configs.

Columns of a table (a DataFrame, a list of dicts, or a table file read by
:func:`ductaflow.table.read_table`) become config keys; a dotted column
(``processing.param1``) becomes a nested dict; the base config lies under
every row. Instance names come from a name column, or are derived from the
columns whose values vary across rows (``param1=100,mode=A``). A grid
multiplies every row by every combination of its values.

Over a base config, every column must name a key the base has (a typo such
as ``volatilty`` is refused, naming the closest keys), unless the table adds
keys on purpose (``new_keys=True``).

A sweep records where its configs came from (``config_source`` in
``run.json``) so that :func:`rebuild_configs` can build them again from
today's files and tell whether they changed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import (
    JSONValue,
    apply_overrides,
    canonical_json,
    closest,
    dotted_keys,  # the keys -o and --grid may name: a column may name the same
    flatten,
    is_missing,
    load_config,
    normalise_config,
)
from .exceptions import ConfigError
from .names import check_name
from .seeds import NamedConfig, replicated
from .spaces import combinations
from .table import read_table

_MAX_DERIVED = 80
_DRAW_DIGITS = 4  # significant digits of a random draw's float in an instance name
_UNSAFE_CHARS = re.compile(r'[\\/:*?"<>|\s\x00-\x1f\x7f]+')
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp", "Zs"}  # control, format (zero-width...), separators


def instances_from_table(
    table: Any,
    *,
    name_column: str = "instance_name",
    base_config: Mapping[str, Any] | None = None,
    new_keys: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """Return ``(instance name, normalised config)`` for each row of ``table``.

    With a (non-empty) ``base_config``, every column but the name column must
    be a key of it (a dotted column: every part); ``new_keys=True`` lets the
    table add keys. Raises :class:`ConfigError` or :class:`UnsafeNameError`
    naming the column or row for unknown columns, bad values, conflicting
    dotted columns, missing, unsafe or duplicate names.
    """
    if base_config and not new_keys:
        check_columns(table_columns(table), base_config, name_column=name_column)
    rows = table_rows(table)
    base = normalise_config(base_config)
    given = [row.pop(name_column, None) for row in rows]
    configs = [_merge(base, _nest(row, index)) for index, row in enumerate(rows)]
    if any(name is not None for name in given):
        names = [_given_name(name, index, name_column) for index, name in enumerate(given)]
    else:
        names = _derived_names([normalise_config(row) for row in rows])
    _check_unique(names)
    return list(zip(names, configs, strict=True))


def table_rows(table: Any) -> list[dict[str, Any]]:
    """The rows of a DataFrame or list of dicts as dicts; an empty DataFrame cell is left out."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):  # a pandas DataFrame
        # an empty cell means "not given": base_config or the flow's default applies
        if not table.isna().to_numpy().any():  # nothing to leave out: no look at each cell (numpy
            columns = list(table.columns)  # scalars of extension types are normalised with the config)
            return [dict(zip(columns, values, strict=True)) for values in table.itertuples(False, None)]
        return [{k: v for k, v in row.items() if not is_missing(v)} for row in table.to_dict("records")]
    if isinstance(table, Sequence) and not isinstance(table, (str, bytes)):
        rows = []
        for index, row in enumerate(table):
            if not isinstance(row, Mapping):
                kind = type(row).__name__
                raise ConfigError(f"row {index} of the table is a {kind}, not a dict.", key=index)
            rows.append(dict(row))
        return rows
    raise ConfigError(
        f"the table must be a pandas DataFrame or a list of dicts, got {type(table).__name__}.", key=None
    )


def table_columns(table: Any) -> list[Any]:
    """The columns of a DataFrame (even those left empty), or every key of a list of dicts."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        return list(table.columns)
    return list(dict.fromkeys(k for row in table_rows(table) for k in row))


def check_columns(
    columns: Iterable[Any],
    base: Mapping[str, Any],
    *,
    name_column: str = "instance_name",
    table: str | None = None,
    base_name: str = "base_config",
) -> None:
    """Refuse columns that are not keys of ``base`` (dotted: every part), naming the closest keys.

    ``table`` (a file) and ``base_name`` (what holds the base) are named in the
    message: ``table file 'scenarios.csv': column 'volatilty' is not a key of
    the config file 'config/simulate.json' (did you mean 'volatility'?). ...``
    """
    known = list(dotted_keys(base))
    unknown = [c for c in columns if isinstance(c, str) and c != name_column and c not in known]
    if not unknown:
        return
    hints = []
    for column in unknown[:5]:
        close = closest(column, known)  # as -o's "did you mean"
        hints.append(f" (did you mean {' or '.join(repr(k) for k in close)}?)" if close else "")
    where = f"table file {table!r}" if table else "the table"
    if len(unknown) == 1:
        head = f"{where}: column {unknown[0]!r} is not a key of {base_name}{hints[0]}."
    else:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        shown = ", ".join(f"{c!r}{h}" for c, h in zip(unknown, hints, strict=False))
        head = f"{where}: columns {shown}{more} are not keys of {base_name}."
    listing = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
    noun = "column's name" if len(unknown) == 1 else "columns' names"
    raise ConfigError(
        f"{head} Fix the {noun} (the keys: {listing or '(none)'}), or, if the table adds keys "
        "on purpose, pass new_keys=True (ductaflow sweep --new-keys).",
        key=unknown[0],
        path=table,
    )


def _nest(row: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Turn dotted keys into nested dicts, refusing a key that is both a value and a section."""
    nested: dict[str, Any] = {}
    for key, value in row.items():
        if not isinstance(key, str):
            raise ConfigError(f"column {key!r} is not a string; name the table's columns with text.", key=key)
        node = nested
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise _conflict(index, ".".join(parts[: depth + 1]), key)
        if parts[-1] in node and isinstance(node[parts[-1]], dict):
            raise _conflict(index, key, key)
        node[parts[-1]] = value
    return normalise_config(nested)


def _conflict(index: int, section: str, key: str) -> ConfigError:
    return ConfigError(
        f"row {index}: column {key!r} conflicts with {section!r}, which is both a value and a section. "
        "Rename one of the columns.",
        key=key,
    )


def _merge(base: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    merged = _tree_copy(base)
    for key, value in row.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _tree_copy(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a normalised config whose dicts and lists are its own (``deepcopy`` without its memo)."""
    return {k: _tree_copy(v) if isinstance(v, dict) else (_list_copy(v) if isinstance(v, list) else v)
            for k, v in config.items()}  # fmt: skip


def _list_copy(items: list[Any]) -> list[Any]:
    return [_tree_copy(v) if isinstance(v, dict) else (_list_copy(v) if isinstance(v, list) else v)
            for v in items]  # fmt: skip


def _given_name(name: Any, index: int, column: str) -> str:
    if name is None or (isinstance(name, float) and name != name):
        raise ConfigError(f"row {index} has no value in the {column!r} column; name every row.", key=column)
    text = str(name) if not isinstance(name, str) else name
    return check_name(text, f"instance name in row {index}")


def _derived_names(rows: list[dict[str, Any]], digits: int | None = None) -> list[str]:
    flat = [dict(flatten(row)) for row in rows]
    columns = list(dict.fromkeys(k for row in flat for k in row))
    varying = [c for c in columns if len({canonical_json({"v": row.get(c)}) for row in flat}) > 1]
    shown = varying or (columns if len(rows) == 1 else [])
    return [
        check_name(instance_label({c: row.get(c) for c in shown}, digits=digits), "derived instance name")
        for row in flat
    ]


def instance_label(values: Mapping[str, Any], *, digits: int | None = None) -> str:
    """A safe instance name from values: ``param1=100,mode=A`` (long ones cut, with a hash suffix).

    With ``digits``, floats are shown to that many significant digits (a random draw's ``lr=0.001234``).
    """
    if not values:
        return "default"
    text = ",".join(f"{key}={_text(value, digits)}" for key, value in values.items())
    visible = "".join("_" if unicodedata.category(ch) in _INVISIBLE else ch for ch in text)
    safe = _UNSAFE_CHARS.sub("_", visible).lstrip(".").rstrip(" .") or "default"
    if len(safe) <= _MAX_DERIVED:
        return safe
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{safe[: _MAX_DERIVED - 11].rstrip(' .')}-{digest}"


def _text(value: Any, digits: int | None = None) -> str:
    if digits is not None and isinstance(value, float) and math.isfinite(value):
        value = float(f"{value:.{digits}g}")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _check_unique(names: list[str]) -> None:
    seen: dict[str, int] = {}
    duplicates = []
    for index, name in enumerate(names):
        key = name.casefold()  # 'A' and 'a' are one folder on macOS and Windows
        if key in seen:
            duplicates.append(f"{name!r} (rows {seen[key]} and {index})")
        seen.setdefault(key, index)
    if duplicates:
        raise ConfigError(
            f"duplicate instance names: {', '.join(duplicates[:5])}. Each row must name a different "
            "instance (names that differ only in case count as the same): give distinct names in the "
            "name column, or make the rows differ.",
            key=None,
        )


def planned_instances(
    table: Any,
    *,
    name_column: str = "instance_name",
    base_config: Mapping[str, Any] | None = None,
    new_keys: bool = False,
    replicates: int | None = None,
    seed: int | None = None,
) -> list[NamedConfig]:
    """The instances a conductor call plans: :func:`instances_from_table`, then replicates and seeds.

    ``replicates=N`` makes N instances of each row, ``<row>-r0 … -r{N-1}``;
    a sweep ``seed`` puts each instance's seed in its config
    (``ductaflow_seed``, see :mod:`ductaflow.seeds`).
    """
    instances = instances_from_table(table, name_column=name_column, base_config=base_config,
                                     new_keys=new_keys)  # fmt: skip
    return replicated(instances, replicates, seed)  # distinct names with one suffix each stay distinct


def rebuild_configs(source: Mapping[str, Any], root: Path) -> dict[str, dict[str, JSONValue]]:
    """Instance name -> the config it would get today from a recorded ``config_source``.

    Raises :class:`ConfigError` when a file it came from is gone or broken.
    """
    base, rows = source_rows(source, root)
    name_column = source.get("name_column") or "instance_name"
    # source_rows checked the columns as the sweep did: they hold no key to check again
    planned = planned_instances(rows, name_column=name_column, base_config=base, new_keys=True,
                                replicates=source.get("replicates"), seed=source.get("seed"))  # fmt: skip
    return {p.name: p.config for p in planned}


def source_rows(
    source: Mapping[str, Any], root: Path, table: Any = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The base config and the table rows (times the grid) a ``config_source`` describes.

    ``source`` holds ``config_file``, ``overrides``, ``table`` (a file, read
    now), ``grid``, ``paired``, ``random`` and ``space`` (drawn with
    ``seed``), ``instance_name``, ``name_column`` and ``new_keys``, paths
    relative to ``root``; ``table`` gives the rows of an in-memory table
    instead. Over a config file, the table's columns must be keys of it unless
    ``new_keys`` is true (a source recorded before ``new_keys`` existed is
    rebuilt as it was built then: unchecked); grid, paired and space keys
    must be keys of it.
    """
    config_file = source.get("config_file")
    base = load_config(_absolute(config_file, root), source.get("overrides") or ())
    name_column = source.get("name_column") or "instance_name"
    combos, draw_index = combinations(source)
    if source.get("table"):
        table = read_table(_absolute(source["table"], root))
    if table is None:
        rows: list[dict[str, Any]] = [{}] if combos else [{name_column: _single_name(source, base)}]
    else:
        rows = table_rows(table)
        if name_column != "instance_name" and not any(name_column in row for row in rows):
            columns = ", ".join(dict.fromkeys(k for row in rows for k in row))
            raise ConfigError(f"the name column {name_column!r} is not a column of the table "
                              f"(columns: {columns}).", key=name_column)  # fmt: skip
        if config_file is not None and not source.get("new_keys", True):
            check_columns(table_columns(table), base, name_column=name_column, table=source.get("table"),
                          base_name=f"the config file {config_file!r}")  # fmt: skip
    if config_file is not None:
        for kind in ("grid", "paired", "space"):
            _check_keys(source.get(kind) or {}, base, config_file, kind)
    random_names = source.get("random") is not None
    return base, _times(rows, combos, draw_index if random_names else None, name_column)


def _single_name(source: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """The one instance's name: as given, else the config's instance_name, else the config file's stem."""
    config_file = source.get("config_file")
    if source.get("instance_name") is not None:
        return check_name(str(source["instance_name"]), "instance name (--instance)")
    if base.get("instance_name"):
        return check_name(str(base["instance_name"]), f"instance_name in {config_file}")
    if config_file:
        return check_name(Path(config_file).stem, f"instance name taken from the config file {config_file} "
                          "(name the instance with --instance)")  # fmt: skip
    return "default"


def _check_keys(keys: Iterable[str], base: dict[str, Any], config_file: str, kind: str) -> None:
    """A grid (paired, space) key must exist in the config file, as an override's must: a typo is an error."""
    for key in keys:
        try:
            apply_overrides(base, [(key, None)])
        except ConfigError as exc:
            message = str(exc).replace("override key", f"{kind} key", 1)
            raise ConfigError(message.replace("does not exist in the config", f"is not in {config_file}", 1),
                              key=key) from None  # fmt: skip


def _times(rows: list[dict[str, Any]], combos: list[dict[str, Any]], draw_index: list[int] | None,
           name_column: str) -> list[dict[str, Any]]:  # fmt: skip
    """Every row times every combination; a named row's name gets the combination appended.

    With random draws (``draw_index``), every row is named here, floats shown to 4 significant digits,
    and a name met before gets its draw's index (``,draw=7``).
    """
    if not combos:
        return rows
    digits = None if draw_index is None else _DRAW_DIGITS
    out = []
    for row in rows:
        for combo in combos:
            merged = {**row, **combo}
            if name_column in row:
                merged[name_column] = f"{row[name_column]},{instance_label(combo, digits=digits)}"
            out.append(merged)
    if draw_index is not None:
        named = [name_column in row for row in out]
        derived = _derived_names([normalise_config(r) for r in out], _DRAW_DIGITS) if not any(named) else []
        seen: set[str] = set()
        for at, row in enumerate(out):
            if not named[at] and not derived:
                continue  # some rows named, this one not: instances_from_table says so
            name = row[name_column] if named[at] else derived[at]
            if name.casefold() in seen:
                name = check_name(f"{name},draw={draw_index[at % len(combos)]}", "derived instance name")
            seen.add(name.casefold())
            row[name_column] = name
    return out


def _absolute(path: str | None, root: Path) -> Path | None:
    return None if path is None else root / path
