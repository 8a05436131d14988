"""Configs: JSON-native normalisation, canonical form, hashing, files and overrides.

A config is normalised once, before anything else happens to it; the same
normalised dict is then injected into the flow, saved as ``config.json`` and
hashed, so the three always agree. Config files (JSON, YAML, TOML) are
parsed in :mod:`ductaflow.configfiles` and normalised here.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import PurePath
from typing import Any

from .configfiles import read_config_file
from .exceptions import ConfigError

JSONValue = Any  # None | bool | int | float | str | list[JSONValue] | dict[str, JSONValue]


def normalise_config(config: Mapping[str, Any] | None) -> dict[str, JSONValue]:
    """Return ``config`` as a dict of JSON-native values.

    numpy/pandas scalars become ``int``/``float``/``bool``/``str``, NaN and
    missing values (``NaN``, ``NaT``, ``pd.NA``) become ``None``, dates and
    timestamps become ISO-8601 strings, paths become strings, tuples and
    arrays become lists. Anything else raises :class:`ConfigError` naming
    the key.

    >>> normalise_config({"n": 3, "ratio": float("nan"), "when": _dt.date(2024, 1, 2)})
    {'n': 3, 'ratio': None, 'when': '2024-01-02'}
    """
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"config must be a dict of settings, got {type(config).__name__}. "
            "Pass a dict such as {'param1': 100}.",
            key=None,
        )
    return _normalise(config, "")


def _normalise(value: Any, key: str) -> JSONValue:
    if value is None or type(value) in (bool, str):
        return value
    if _is_missing(value):
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _normalise_float(float(value), key)
    if isinstance(value, Mapping):
        return {_check_key(k, key): _normalise(v, _join(key, k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    return _normalise_foreign(value, key)


def _normalise_float(value: float, key: str) -> float | None:
    if math.isnan(value):
        return None
    if math.isinf(value):
        raise ConfigError(
            f"config key {key!r} is {value}, which JSON cannot hold. "
            "Use a large finite number, null, or a string such as 'inf'.",
            key=key,
        )
    return value


def _normalise_foreign(value: Any, key: str) -> JSONValue:
    """numpy and pandas values, recognised without importing either library."""
    module = type(value).__module__.split(".")[0]
    if module == "numpy":
        numpy = sys.modules["numpy"]
        if isinstance(value, numpy.datetime64):
            return str(numpy.datetime_as_string(value))
        if isinstance(value, numpy.ndarray):
            return _normalise(value.tolist(), key)
        if isinstance(value, numpy.generic) and not isinstance(value, numpy.timedelta64):
            return _normalise(value.item(), key)
    raise ConfigError(
        f"config key {key!r} holds a {type(value).__module__}.{type(value).__qualname__}, "
        "which cannot be stored as JSON. Convert it to a number, string, list or dict "
        "(for a duration, use its length in seconds).",
        key=key,
    )


def is_missing(value: Any) -> bool:
    """True for None and the missing-value markers of pandas and numpy (NaN, NaT, pd.NA)."""
    if value is None or _is_missing(value):
        return True
    if isinstance(value, (str, bytes, list, tuple, dict)):
        return False
    try:
        return bool(value != value)  # only NaN differs from itself
    except (TypeError, ValueError):  # arrays and other containers
        return False


def _is_missing(value: Any) -> bool:
    name = type(value).__name__
    return name in {"NaTType", "NAType"} or (
        type(value).__module__.startswith("numpy") and name == "datetime64" and str(value) == "NaT"
    )


def _check_key(k: Any, parent: str) -> str:
    if isinstance(k, str):
        return str(k)
    where = f" under {parent!r}" if parent else ""
    raise ConfigError(
        f"config key {k!r}{where} is a {type(k).__name__}; config keys must be strings. "
        f"Rename it to {str(k)!r}.",
        key=_join(parent, str(k)),
    )


def _join(parent: str, k: Any) -> str:
    return f"{parent}.{k}" if parent else str(k)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def flatten(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` for every leaf of a nested config; an empty dict is a leaf.

    >>> dict(flatten({"a": {"b": 1, "c": {}}, "d": 2}, "config"))
    {'config.a.b': 1, 'config.a.c': {}, 'config.d': 2}
    """
    for key, value in config.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            yield from flatten(value, dotted)
        else:
            yield dotted, value


def canonical_json(config: Mapping[str, JSONValue]) -> str:
    """Return the canonical JSON text of a normalised config (sorted keys, compact)."""
    return _CANONICAL.encode(config)


def config_hash(config: Mapping[str, JSONValue]) -> str:
    """Return the sha256 hex digest of a normalised config's canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


def load_config_file(path: str | os.PathLike[str]) -> dict[str, JSONValue]:
    """Read a config file and return it normalised: JSON, YAML or TOML, chosen by the suffix.

    ``.yaml`` and ``.yml`` files are read with ``yaml.safe_load``, ``.toml``
    files with ``tomllib``, ``.json`` and any other suffix as JSON. The same
    settings give the same config, and the same hash, in every format.
    Raises :class:`ConfigError` naming the file when it is missing, cannot be
    parsed (with line and column), does not hold a mapping of settings, or
    holds a value a config cannot (the key is named).

    >>> _ = Path("settings.yaml").write_text("{seed: 7, start: 2025-01-01, model: {alpha: 0.5}}")
    >>> load_config_file("settings.yaml")
    {'seed': 7, 'start': '2025-01-01', 'model': {'alpha': 0.5}}
    """
    data = read_config_file(path)
    try:
        return normalise_config(data)
    except ConfigError as exc:
        raise ConfigError(f"config file {str(path)!r}: {exc.message}", path=str(path),
                          key=exc.fields.get("key")) from None  # fmt: skip


def parse_override(text: str) -> tuple[str, JSONValue]:
    """Split ``key=value`` into the key and its value parsed as JSON, else a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"override {text!r} is not of the form key=value (e.g. -o processing.param1=200).",
            key=text,
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def apply_overrides(
    config: Mapping[str, JSONValue], overrides: Iterable[str | tuple[str, Any]]
) -> dict[str, JSONValue]:
    """Return a copy of ``config`` with ``key=value`` overrides applied.

    Dotted keys reach into nested dicts. Overriding a key that does not exist
    raises :class:`ConfigError` listing the closest existing keys.
    """
    result = json.loads(json.dumps(config))
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        _set_dotted(result, key, _normalise(value, key))
    return result


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Iterable[str | tuple[str, Any]] = ()
) -> dict[str, JSONValue]:
    """Return a config from a config file (JSON, YAML or TOML) and ``key=value`` overrides, normalised.

    With ``path``, overrides may only replace keys the file has (a typo is an
    error listing the closest keys). Without it, the overrides build the whole
    config and dotted keys create nested sections.

    >>> load_config(None, ["n=3", "model.alpha=0.5", "label=north"])
    {'n': 3, 'model': {'alpha': 0.5}, 'label': 'north'}
    """
    if path is not None:
        return apply_overrides(load_config_file(path), overrides)
    config: dict[str, JSONValue] = {}
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        node = config
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                section = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {key!r} reaches into {section!r}, which holds a value, "
                                  "not a section. Override one or the other.", key=key)  # fmt: skip
        node[parts[-1]] = _normalise(value, key)
    return config


def _set_dotted(config: dict[str, JSONValue], key: str, value: JSONValue) -> None:
    node: Any = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise _unknown_key(config, key, ".".join(parts[: depth + 1]))
        if depth == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


def closest(word: str, choices: Iterable[str], cutoff: float = 0.5) -> list[str]:
    """Up to three of ``choices`` close to ``word``, closest first: the "did you mean" of every error.

    >>> closest("volatilty", ["drift", "volatility", "seed"])
    ['volatility']
    """
    return difflib.get_close_matches(word, list(choices), n=3, cutoff=cutoff)


def _unknown_key(config: Mapping[str, JSONValue], key: str, missing: str) -> ConfigError:
    known = list(dotted_keys(config))
    close = closest(key, known)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    listing = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
    return ConfigError(
        f"override key {key!r} does not exist in the config ({missing!r} not found).{hint} "
        f"Existing keys: {listing or '(none)'}. Add the key to the config file first.",
        key=key,
    )


def dotted_keys(config: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    """Every key of a nested config, sections included, dotted: the keys ``-o`` may name.

    >>> list(dotted_keys({"n": 1, "model": {"alpha": 0.5}}))
    ['n', 'model', 'model.alpha']
    """
    for k, v in config.items():
        yield _join(prefix, k)
        if isinstance(v, Mapping):
            yield from dotted_keys(v, _join(prefix, k))
