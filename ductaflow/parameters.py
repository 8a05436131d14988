"""A flow's parameters cell: what it declares, a config checked against it, and the cell injected after it.

Two conventions are understood:

- **ductaflow's**: the cell assigns ``config``. When it assigns a non-empty
  literal dict (``config = {"drift": 0.1, "volatility": 1.0}``), those keys
  are the flow's schema: a config with a key the flow does not declare (a
  typo such as ``volatilty``) or without one it declares is refused before
  anything runs, naming the key and the closest declared ones. Nested
  literal dicts are checked the same way; an empty dict (``config = {}``)
  declares nothing and accepts any config.
- **papermill's**: the cell assigns variables (``alpha = 0.1``) and no
  ``config``. Each config key is then injected as a variable of that name
  too, as papermill does, and a key that is not one of the cell's variables
  is refused: a run never reports success having ignored a parameter given
  to it. Variables the config leaves out keep the cell's values.

A cell that assigns nothing (or cannot be parsed) declares nothing. Light
imports only: script mode checks its config with this.
"""

from __future__ import annotations

import ast
import pprint
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import closest
from .exceptions import ConfigError

#: Config keys every flow accepts: ductaflow itself reads them.
RESERVED_KEYS = frozenset({"instance_name"})
_MAGIC = re.compile(r"^\s*[%!]")
_SCRIPT_CELL = re.compile(r"^# (?:%%|\+)(?P<options>.*)$")  # percent and light cell markers
_SCRIPT_END = re.compile(r"^# (?:%%|\+|-)\s*(?:$|\S)")


@dataclass(frozen=True)
class Parameters:
    """What a parameters cell declares."""

    #: The literal dict assigned to ``config`` (``None``: not assigned, or not a literal dict).
    defaults: dict[str, Any] | None
    #: Names the cell assigns other than ``config`` (papermill-style parameters).
    variables: tuple[str, ...]
    #: The cell assigns ``config``: ductaflow's convention.
    assigns_config: bool

    @property
    def papermill_style(self) -> bool:
        """The cell assigns variables and no ``config``: config keys are injected as variables."""
        return not self.assigns_config and bool(self.variables)


NOTHING = Parameters(None, (), False)


def read_parameters(source: str) -> Parameters:
    """What the parameters cell ``source`` declares; :data:`NOTHING` when it cannot be parsed.

    >>> read_parameters("config = {'drift': 0.1}").defaults
    {'drift': 0.1}
    >>> read_parameters("alpha = 0.1\\nbeta: int = 2").variables
    ('alpha', 'beta')
    """
    code = "\n".join(line for line in source.splitlines() if not _MAGIC.match(line))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return NOTHING
    names: list[str] = []
    defaults: dict[str, Any] | None = None
    for node in tree.body:
        for target, value in _assignments(node):
            if target == "config":
                defaults = _literal_dict(value)
            elif target not in names:
                names.append(target)
    assigns_config = "config" in {t for node in tree.body for t, _ in _assignments(node)}
    return Parameters(defaults, tuple(names), assigns_config)


def script_parameters(text: str) -> Parameters:
    """The parameters cell of a percent- or light-format script's text, found without jupytext."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        marker = _SCRIPT_CELL.match(line)
        if marker and re.search(r"\bparameters\b", marker.group("options")):
            body = []
            for following in lines[start + 1 :]:
                if _SCRIPT_END.match(following):
                    break
                body.append(following)
            return read_parameters("\n".join(body))
    return NOTHING


def check_config(parameters: Parameters, config: Mapping[str, Any], flow: str) -> None:
    """Raise :class:`ConfigError` when ``config`` does not fit what the parameters cell declares.

    >>> try:
    ...     check_config(read_parameters("config = {'drift': 0.1}"), {"drfit": 0.3}, "flow/x.py")
    ... except ConfigError as exc:
    ...     print(exc)
    config key 'drfit' is not declared by the parameters cell of flow/x.py. Did you mean 'drift'? ...
    """
    if parameters.defaults:
        _check_against(parameters.defaults, config, "", flow)
    elif parameters.papermill_style:
        unknown = [k for k in config if k not in parameters.variables and k not in RESERVED_KEYS]
        if unknown:
            raise _not_a_variable(unknown[0], parameters.variables, flow)


def injected_source(parameters: Parameters, config: Mapping[str, Any]) -> str:
    """The source of the cell injected after the parameters cell.

    >>> print(injected_source(read_parameters("alpha = 0.1"), {"alpha": 0.9}))
    # Parameters
    alpha = 0.9
    config = {'alpha': 0.9}
    <BLANKLINE>
    """
    lines = ["# Parameters"]
    if parameters.papermill_style:
        lines += [f"{key} = {value!r}" for key, value in config.items() if key in parameters.variables]
    lines.append(f"config = {pprint.pformat(dict(config), sort_dicts=False)}")
    return "\n".join(lines) + "\n"


def _assignments(node: ast.stmt) -> list[tuple[str, ast.expr | None]]:
    if isinstance(node, ast.Assign):
        return [(t.id, node.value) for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [(node.target.id, node.value)]
    return []


def _literal_dict(value: ast.expr | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        literal = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return literal if isinstance(literal, dict) and all(isinstance(k, str) for k in literal) else None


def _check_against(declared: Mapping[str, Any], config: Mapping[str, Any], prefix: str, flow: str) -> None:
    for key in config:
        if key not in declared and not (not prefix and key in RESERVED_KEYS):
            raise _undeclared(prefix + key, [prefix + k for k in declared], flow)
    missing = [prefix + k for k in declared if k not in config]
    if missing:
        shown = ", ".join(f"{k} (default {_default(declared, k, prefix)!r})" for k in missing[:8])
        raise ConfigError(
            f"the config has no {_keys(missing)} {shown}, which the parameters cell of {flow} declares. "
            "ductaflow injects the config in place of the cell's dict, so every declared key must be "
            "given: add it to the config file, table or overrides, or remove it from the cell.",
            key=missing[0],
        )
    for key, default in declared.items():
        if isinstance(default, dict) and default and isinstance(config[key], Mapping):
            _check_against(default, config[key], f"{prefix}{key}.", flow)


def _default(declared: Mapping[str, Any], dotted: str, prefix: str) -> Any:
    return declared[dotted[len(prefix) :]]


def _keys(missing: list[str]) -> str:
    return "key" if len(missing) == 1 else f"{len(missing)} keys"


def _hint(key: str, choices: Sequence[str]) -> str:
    close = closest(key, choices)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _undeclared(key: str, declared: list[str], flow: str) -> ConfigError:
    hint = _hint(key, declared)
    listing = ", ".join(declared[:20]) + (" ..." if len(declared) > 20 else "")
    return ConfigError(
        f"config key {key!r} is not declared by the parameters cell of {flow}.{hint} "
        f"Declared keys: {listing}. Fix the key, or add it to the flow's parameters cell.",
        key=key,
    )


def _not_a_variable(key: str, variables: tuple[str, ...], flow: str) -> ConfigError:
    hint = _hint(key, variables)
    return ConfigError(
        f"config key {key!r} is not a parameter of {flow}.{hint} Its parameters cell assigns "
        f"{', '.join(variables)} (papermill style), and ductaflow sets each config key that names one "
        "of them. To pass other settings, assign `config = {}` in the parameters cell and read them "
        "from `config` (ductaflow's convention), or add the variable to the cell.",
        key=key,
    )
