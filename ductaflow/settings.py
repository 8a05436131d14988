"""Project settings: ``ductaflow.toml`` at the project root, the choices every run of a project shares.

Top-level keys, each optional::

    engine = "fork"                           # how notebooks execute (default: kernel)
    preload = ["pandas", "matplotlib.pyplot"] # modules an engine may import once for many notebooks
    cache = "/shared/ductaflow-cache"         # where successes are shared by fingerprint (a folder,
                                              # relative to this file, or an fsspec URL: s3://...)

The file is read once per call (:func:`ductaflow.options.make_options`), not
per instance; an argument given to the call, or a flag on the command line,
wins over it. A malformed file, an unknown key or a value of the wrong type
is a :class:`ConfigError` naming the file, the key and the fix. ``tomllib``
is imported only when a project has the file.
"""

from __future__ import annotations

import keyword
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import closest
from .exceptions import ConfigError
from .files import shown_path

SETTINGS_FILE = "ductaflow.toml"
#: The keys the file may hold, and what each one sets.
KEYS = {
    "engine": 'how notebooks execute, such as engine = "kernel"',
    "preload": 'modules an engine may import once for many notebooks, such as preload = ["pandas"]',
    "cache": 'where successes are shared by fingerprint, such as cache = "s3://team-bucket/ductaflow-cache"',
}
_EXAMPLE = 'engine = "kernel" and preload = ["pandas", "matplotlib.pyplot"]'


@dataclass(frozen=True)
class Settings:
    """A project's settings: ``None`` where the file does not set a key (or there is no file)."""

    engine: str | None = None
    preload: tuple[str, ...] | None = None
    cache: str | None = None  # an fsspec URL, or a folder (given relative to the file, held absolute)
    path: Path | None = None  # the file they were read from; None: the project has none


def project_settings(root: str | os.PathLike[str]) -> Settings:
    """The settings in ``root``'s ``ductaflow.toml``; empty :class:`Settings` when there is none.

    >>> project_settings(Path.cwd())  # the example project has no ductaflow.toml
    Settings(engine=None, preload=None, cache=None, path=None)
    """
    path = Path(root).absolute() / SETTINGS_FILE
    if not path.is_file():
        return Settings()
    shown = shown_path(path)
    data = _parse(path, shown)
    for key in data:
        if key not in KEYS:
            raise _unknown_key(key, shown, path)
    engine = data.get("engine")
    if "engine" in data and (not isinstance(engine, str) or not engine.strip()):
        raise ConfigError(
            f'{shown}: engine must be the name of an engine in quotes, such as engine = "kernel"; '
            f"it is {_kind(engine)}. Fix the engine line.",
            key="engine",
            path=str(path),
        )
    preload = module_names(data["preload"], path) if "preload" in data else None
    cache = data.get("cache")
    if "cache" in data and (not isinstance(cache, str) or not cache.strip()):
        raise ConfigError(f'{shown}: cache must be a folder or URL in quotes, such as cache = "../cache" or '
                          f'cache = "s3://bucket/ductaflow-cache"; it is {_kind(cache)}. Fix the cache line.',
                          key="cache", path=str(path))  # fmt: skip
    return Settings(engine, preload, cache_url(cache, path.parent, f"{shown}: cache"), path)


def cache_url(value: Any, base: Path, where: str = "cache") -> str | None:
    """The cache location ``value`` names, or ``None`` for none (``None``, ``False``, ``""``).

    A local path (no ``protocol://``) is made absolute against ``base``, so
    that processes elsewhere find the same folder.

    >>> cache_url("s3://team-bucket/ductaflow", Path("/p")), cache_url("../cache", Path("/p/a"))
    ('s3://team-bucket/ductaflow', '/p/cache')
    """
    if value is None or value is False or value == "":
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{where} must be a folder or a URL such as s3://bucket/cache, not {value!r}",
                          key="cache")  # fmt: skip
    text = os.fspath(value)
    if "://" in text:
        return text
    return os.path.normpath(base / Path(text).expanduser())


def module_names(value: Any, file: Path | None = None) -> tuple[str, ...]:
    """Check ``value``, a list of module names to preload, and return it as a tuple, repeats dropped.

    Each name is a dotted module name (``matplotlib.pyplot``). Anything else is
    a :class:`ConfigError` naming the bad entry and, when the value came from
    a settings ``file``, that file.

    >>> module_names(["pandas", "matplotlib.pyplot", "pandas"])
    ('pandas', 'matplotlib.pyplot')
    >>> module_names(["matplotlib..pyplot"])
    Traceback (most recent call last):
    ...
    ductaflow.exceptions.ConfigError: preload entry 'matplotlib..pyplot' is not a module name. ...
    """
    where = f"{shown_path(file)}: preload" if file is not None else "preload"
    fields = {"key": "preload", **({"path": str(file)} if file is not None else {})}
    example = 'preload = ["pandas"]' if file is not None else 'preload=["pandas"]'
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, dict):
        raise ConfigError(f"{where} must be a list of module names, not {_kind(value)}. "
                          f"Write {example}.", **fields)  # fmt: skip
    names = list(value)
    for entry in names:
        if not _is_module_name(entry):
            raise ConfigError(
                f"{where} entry {entry!r} is not a module name. Give dotted module names such as "
                f"'pandas' or 'matplotlib.pyplot', as an import statement names them.",
                **fields,
            )
    return tuple(dict.fromkeys(names))


def _is_module_name(entry: Any) -> bool:
    if not isinstance(entry, str) or not entry:
        return False
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in entry.split("."))


def _parse(path: Path, shown: str) -> dict[str, Any]:
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown} cannot be read ({exc}). Make it a readable UTF-8 TOML file.",
                          path=str(path)) from None  # fmt: skip
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))  # a byte order mark, as some editors write
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{shown} is not valid TOML: {exc}. Fix the file: its settings are key = value lines, "
            f"such as {_EXAMPLE}.",
            path=str(path),
        ) from None


def _unknown_key(key: str, shown: str, path: Path) -> ConfigError:
    near = closest(key, KEYS)
    hint = f" (did you mean {' or '.join(repr(k) for k in near)}?)" if near else ""
    known = "; ".join(f"{name}: {what}" for name, what in KEYS.items())
    return ConfigError(f"{shown}: unknown setting {key!r}{hint}. Fix or remove it; the settings are {known}.",
                       key=key, path=str(path))  # fmt: skip


def _kind(value: Any) -> str:
    """How a TOML value reads in a message: ``the string 'pandas'``, ``the number 5``, ``a table``."""
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"
