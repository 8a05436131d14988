"""Control tables: a DataFrame or list of dicts becomes named instance configs.

Columns become config keys; a dotted column (``processing.param1``) becomes a
nested dict; ``base_config`` lies under every row. Instance names come from a
name column, or are derived from the columns whose values vary across rows
(``param1=100,mode=A``). ``read_table`` reads a table file (CSV, TSV, Excel,
Parquet, JSON) with the reader registered for its suffix.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import canonical_json, flatten, is_missing, normalise_config
from .exceptions import ConfigError
from .names import check_name

_MAX_DERIVED = 80
_UNSAFE_CHARS = re.compile(r'[\\/:*?"<>|\s\x00-\x1f\x7f]+')
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp", "Zs"}  # control, format (zero-width...), separators


def instances_from_table(
    table: Any, *, name_column: str = "instance_name", base_config: Mapping[str, Any] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Return ``(instance name, normalised config)`` for each row of ``table``.

    Raises :class:`ConfigError` or :class:`UnsafeNameError` naming the row for
    bad values, conflicting dotted columns, missing, unsafe or duplicate names.
    """
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
    merged = copy.deepcopy(dict(base))
    for key, value in row.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _given_name(name: Any, index: int, column: str) -> str:
    if name is None or (isinstance(name, float) and name != name):
        raise ConfigError(f"row {index} has no value in the {column!r} column; name every row.", key=column)
    text = str(name) if not isinstance(name, str) else name
    return check_name(text, f"instance name in row {index}")


def _derived_names(rows: list[dict[str, Any]]) -> list[str]:
    flat = [dict(flatten(row)) for row in rows]
    columns = list(dict.fromkeys(k for row in flat for k in row))
    varying = [c for c in columns if len({canonical_json({"v": row.get(c)}) for row in flat}) > 1]
    shown = varying or (columns if len(rows) == 1 else [])
    return [
        check_name(instance_label({c: row.get(c) for c in shown}), "derived instance name") for row in flat
    ]


def instance_label(values: Mapping[str, Any]) -> str:
    """A safe instance name from values: ``param1=100,mode=A`` (long ones cut, with a hash suffix)."""
    if not values:
        return "default"
    text = ",".join(f"{key}={_text(value)}" for key, value in values.items())
    visible = "".join("_" if unicodedata.category(ch) in _INVISIBLE else ch for ch in text)
    safe = _UNSAFE_CHARS.sub("_", visible).lstrip(".").rstrip(" .") or "default"
    if len(safe) <= _MAX_DERIVED:
        return safe
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{safe[: _MAX_DERIVED - 11].rstrip(' .')}-{digest}"


def _text(value: Any) -> str:
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


TableReader = Callable[[Path], Any]
READERS: dict[str, TableReader] = {}  # suffix -> reader returning a DataFrame


def register_reader(suffixes: Sequence[str], reader: TableReader) -> None:
    """Make :func:`read_table` read files ending in ``suffixes`` (``".csv"``) with ``reader``."""
    for suffix in suffixes:
        READERS[suffix.lower()] = reader


def read_table(path: str | os.PathLike[str]) -> Any:
    """Read a control table file into a pandas DataFrame, one row per instance.

    Supported: ``.csv``, ``.tsv``/``.tab``, ``.xlsx`` (first sheet; needs the
    ``ductaflow[excel]`` extra), ``.parquet`` (needs ``ductaflow[parquet]``)
    and ``.json`` (a list of objects). Integer columns with empty cells stay
    integers, and an empty cell means "not given". Raises :class:`ConfigError`
    naming the file when it is missing, unreadable, malformed or has no rows.
    """
    p = Path(path)
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise ConfigError(f"table file {str(p)!r} has suffix {p.suffix!r}, which ductaflow cannot read. "
                          f"Use one of: {known}.", path=str(p))  # fmt: skip
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise ConfigError(f"table file {str(p)!r} {what}. Check the path (relative to {os.getcwd()}).",
                          path=str(p))  # fmt: skip
    try:
        table = reader(p)
    except ConfigError:
        raise
    except Exception as exc:  # every parser has its own errors: all mean a malformed file
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"table file {str(p)!r} cannot be read: {detail}. Fix the file or export it again.",
                          path=str(p)) from None  # fmt: skip
    if len(table) == 0:
        raise ConfigError(f"table file {str(p)!r} has no rows: add one row per instance.", path=str(p))
    return table


def _read_csv(path: Path, sep: str = ",") -> Any:
    import pandas as pd

    table = pd.read_csv(path, sep=sep, dtype_backend="numpy_nullable")
    if len(table.columns) == 1 and (";" in str(table.columns[0]) or "\t" in str(table.columns[0])):
        raise ConfigError(f"table file {str(path)!r} has one column, {table.columns[0]!r}: it looks "
                          f"separated by ';' or tabs, not by {sep!r}. Save it as comma-separated CSV, "
                          "or tab-separated with the suffix .tsv.", path=str(path))  # fmt: skip
    return table


def _read_excel(path: Path) -> Any:
    _need("openpyxl", "excel", path)
    import pandas as pd

    return pd.read_excel(path, dtype_backend="numpy_nullable")


def _read_parquet(path: Path) -> Any:
    _need("pyarrow", "parquet", path)
    import pandas as pd

    return pd.read_parquet(path, dtype_backend="numpy_nullable")


def _read_json(path: Path) -> Any:
    import pandas as pd

    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ConfigError(f"table file {str(path)!r} must hold a JSON list of objects, one per instance "
                          '([{"param1": 1}, {"param1": 2}]).', path=str(path))  # fmt: skip
    return pd.DataFrame(data, dtype=object)  # values stay as JSON gave them


def _need(module: str, extra: str, path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"reading {str(path)!r} needs the optional dependency {module}: "
                          f"pip install 'ductaflow[{extra}]'.", path=str(path))  # fmt: skip


register_reader([".csv"], _read_csv)
register_reader([".tsv", ".tab"], lambda path: _read_csv(path, sep="\t"))
register_reader([".xlsx", ".xlsm"], _read_excel)
register_reader([".parquet", ".pq"], _read_parquet)
register_reader([".json"], _read_json)
