"""Control table files: ``read_table`` reads CSV, TSV, Excel, Parquet and JSON into a DataFrame.

Readers are kept in a registry by file suffix (:func:`register_reader`), so
a project can add its own. Turning a table's rows into instances is
:mod:`ductaflow.sources`'s work.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .exceptions import ConfigError
from .files import shown_path

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
    integers, and an empty cell means "not given". In a CSV or TSV file a row
    with more fields than the header is refused, naming its line; a row with
    fewer has its last cells empty. Raises :class:`ConfigError` naming the
    file when it is missing, unreadable, malformed or has no rows.
    """
    p = Path(path)
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise ConfigError(f"table file {shown_path(p)!r} has suffix {p.suffix!r}, which ductaflow cannot "
                          f"read. Use one of: {known}.", path=str(p))  # fmt: skip
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise ConfigError(f"table file {shown_path(p)!r} {what}. Check the path (relative to {os.getcwd()}).",
                          path=str(p))  # fmt: skip
    try:
        table = reader(p)
    except ConfigError:
        raise
    except Exception as exc:  # every parser has its own errors: all mean a malformed file
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"table file {shown_path(p)!r} cannot be read: {detail}. Fix the file or export "
                          "it again.", path=str(p)) from None  # fmt: skip
    if len(table) == 0:
        raise ConfigError(f"table file {shown_path(p)!r} has no rows: add one row per instance.", path=str(p))
    return table


def _read_csv(path: Path, sep: str = ",") -> Any:
    import pandas as pd

    _check_fields(path, sep)
    return pd.read_csv(path, sep=sep, dtype_backend="numpy_nullable")


def _check_fields(path: Path, sep: str) -> None:
    """Refuse a row with more fields than the header, naming its line: pandas would misread it.

    With one extra field in every row pandas takes the first column as the
    index (names and values shift); here the row's own line says what to fix.
    A shorter row is left to pandas: its missing last cells are empty, "not
    given", like empty cells.
    """
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file, delimiter=sep)
        header: list[str] | None = None
        end = 0
        for fields in reader:
            line, end = end + 1, reader.line_num  # a quoted value may span lines: the row starts here
            if not fields:  # a blank line, skipped as pandas skips it
                continue
            if header is None:
                header = fields
                if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
                    raise _one_column(path, header[0], sep)
            elif len(fields) > len(header):
                raise ConfigError(_too_many(path, line, fields, header, sep), path=str(path), line=line)


def _one_column(path: Path, column: str, sep: str) -> ConfigError:
    return ConfigError(f"table file {shown_path(path)!r} has one column, {column!r}: it looks separated "
                       f"by ';' or tabs, not by {sep!r}. Save it as comma-separated CSV, or tab-separated "
                       "with the suffix .tsv.", path=str(path))  # fmt: skip


def _too_many(path: Path, line: int, fields: list[str], header: list[str], sep: str) -> str:
    extra = fields[len(header) :]
    mark = "tab" if sep == "\t" else repr(sep)
    head = (f"table file {shown_path(path)!r}: line {line} has {len(fields)} fields but the header has "
            f"{len(header)} ({', '.join(header)})")  # fmt: skip
    if not any(value.strip() for value in extra):
        them = "it" if len(extra) == 1 else "them"
        return f"{head}: it ends with {len(extra)} {mark} too many. Delete {them}."
    example = ' ("Oslo, Norway")' if sep == "," else ""
    return (f"{head}, so {', '.join(repr(v) for v in extra)} would belong to no column. Fix the line: "
            f"quote a value that holds a {mark}{example}, remove the extra value, or name the extra column "
            "in the header.")  # fmt: skip


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
        raise ConfigError(f"table file {shown_path(path)!r} must hold a JSON list of objects, one per "
                          'instance ([{"param1": 1}, {"param1": 2}]).', path=str(path))  # fmt: skip
    return pd.DataFrame(data, dtype=object)  # values stay as JSON gave them


def _need(module: str, extra: str, path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"reading {shown_path(path)!r} needs the optional dependency {module}: "
                          f"pip install 'ductaflow[{extra}]'.", path=str(path))  # fmt: skip


register_reader([".csv"], _read_csv)
register_reader([".tsv", ".tab"], lambda path: _read_csv(path, sep="\t"))
register_reader([".xlsx", ".xlsm"], _read_excel)
register_reader([".parquet", ".pq"], _read_parquet)
register_reader([".json"], _read_json)
