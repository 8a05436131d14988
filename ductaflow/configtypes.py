"""The types of config values: which values may stand for a parameters cell's literal defaults.

A flow's parameters cell declares its config keys with literal defaults
(``config = {"lr": 0.1, "epochs": 10}``); a config value fits a default of
the same JSON type: ``True`` is not an int nor ``1`` a bool, a float default
takes ints too, a non-empty list of one scalar type takes lists of that type,
a dict takes a dict, ``None`` takes anything. Values are JSON-native here
(normalised first). Light imports only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .exceptions import ConfigError

#: The comment line that, in a parameters cell, turns off the unknown-key and type checks of the flow.
NO_CHECK_DIRECTIVE = "# ductaflow: no-check-config"


def fits(value: Any, default: Any) -> bool:
    """Whether a config value may stand for a parameters cell's literal ``default``.

    >>> fits(3, 0.5), fits(True, 1), fits(1, False), fits([1, 2], [0]), fits(["a"], [0]), fits("x", None)
    (True, False, False, True, False, True)
    """
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        kinds = int if isinstance(default, int) else (int, float)
        return isinstance(value, kinds) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        element = _element(default)
        return isinstance(value, (list, tuple)) and (
            element is None or all(fits(item, element) for item in value)
        )
    if isinstance(default, dict):
        return isinstance(value, Mapping)
    return True  # a literal no config value can be (a set, bytes): not checked


def type_name(default: Any) -> str:
    """How a default's type reads in messages and ``--help-config``.

    >>> type_name(0.1), type_name([1, 2]), type_name(["a", 1]), type_name({}), type_name(None)
    ('float', 'list[int]', 'list', 'dict', 'any')
    """
    if default is None:
        return "any"
    if isinstance(default, (list, tuple)):
        element = _element(default)
        return "list" if element is None else f"list[{type_name(element)}]"
    if isinstance(default, (bool, int, float, str, dict)):
        return type(default).__name__
    return f"any ({type(default).__name__} not checked)"


def _element(default: list[Any] | tuple[Any, ...]) -> Any:
    """A default standing for each element of a list default of one scalar type, else ``None``."""
    kinds = {bool if isinstance(x, bool) else type(x) for x in default}
    if len(kinds) == 1 and kinds <= {bool, int, float, str}:
        return default[0]
    return 0.0 if kinds == {int, float} else None


def wrong_type(key: str, value: Any, default: Any, flow: str, reserved: bool = False) -> ConfigError:
    """The error for ``value`` of ``key`` not fitting ``default`` (``reserved``: a key ductaflow reads)."""
    expected = type_name(default)
    item = _bad_item(value, default)
    given = f"{_shown(value)} ({_type_of(value)}{item})"
    if reserved:
        return ConfigError(
            f"config key {key!r} is {given}, but ductaflow reads it as the instance's seed: an int "
            f"({flow}). Give a whole number, such as 3, or leave the key out.",
            key=key,
        )
    return ConfigError(
        f"config key {key!r} is {given}, but the parameters cell of {flow} declares it {expected} "
        f"(default {_shown(default)}). {_fix(key, value, default)}Or change the default in the parameters "
        f"cell; `{NO_CHECK_DIRECTIVE}` in that cell, or --no-check-config (check_config=False), lets any "
        "type through.",
        key=key,
    )


def _bad_item(value: Any, default: Any) -> str:
    element = _element(default) if isinstance(default, (list, tuple)) else None
    if element is None or not isinstance(value, (list, tuple)):
        return ""
    index, bad = next((i, v) for i, v in enumerate(value) if not fits(v, element))
    return f"; item {index} is {_shown(bad)}, {_type_of(bad)}"


def _fix(key: str, value: Any, default: Any) -> str:
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        default, value = _element(default), next(v for v in value if not fits(v, _element(default)))
    if isinstance(default, str):
        return (
            f"Give text: a quoted string in a config file or table, -o '{key}=\"...\"' on the command line "
            "(-o values that parse as JSON are read as JSON). "
        )
    if isinstance(default, bool):
        return "Give true or false. "
    if isinstance(default, int) and isinstance(value, float):
        return (
            "Give a whole number, without a decimal point (a pandas column with missing values holds "
            "floats: give it the Int64 dtype), or make the default a float if fractions are meant. "
        )
    if isinstance(default, (int, float)):
        number = "a whole number" if isinstance(default, int) else "a number"
        return (
            f'Give {number}, not text (a quoted "1" is text). '
            if isinstance(value, str)
            else f"Give {number}. "
        )
    return f"Give a {type_name(default)}. "


def _type_of(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
