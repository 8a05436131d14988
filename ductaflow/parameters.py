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

Values are checked against the literal defaults too, by the rules of
:mod:`ductaflow.configtypes` (a string where the default is a number is
refused). The comment line ``# ductaflow: no-check-config`` in the cell (or
``check_config=False`` on the call) turns off the unknown-key and type
checks; declared keys must still be given.

A cell that assigns nothing (or cannot be parsed) declares nothing. Light
imports only: script mode checks its config with this.
"""

from __future__ import annotations

import ast
import pprint
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import closest
from .configtypes import NO_CHECK_DIRECTIVE, fits, type_name, wrong_type
from .exceptions import ConfigError
from .seeds import SEED_KEY, SEED_LIMIT

#: Config keys every flow accepts: ductaflow itself reads them.
RESERVED_KEYS = frozenset({"instance_name", "ductaflow_seed"})
_DIRECTIVE = re.compile(r"^\s*#\s*ductaflow:\s*no-check-config\s*$", re.MULTILINE)
_RESERVED_TYPES = {"ductaflow_seed": 0}  # reserved keys whose values are checked, as against these defaults
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
    #: The literal values the cell assigns to its variables (papermill-style defaults).
    values: dict[str, Any] = field(default_factory=dict)
    #: Unknown keys and types are checked: the cell has no ``# ductaflow: no-check-config`` line.
    checked: bool = True

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
    >>> read_parameters("# ductaflow: no-check-config\\nconfig = {}").checked
    False
    """
    code = "\n".join(line for line in source.splitlines() if not _MAGIC.match(line))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return NOTHING
    names: list[str] = []
    values: dict[str, Any] = {}
    defaults: dict[str, Any] | None = None
    for node in tree.body:
        for target, value in _assignments(node):
            if target == "config":
                defaults = _literal_dict(value)
                continue
            if target not in names:
                names.append(target)
            literal = _literal(value)
            if literal is _NOT_LITERAL:
                values.pop(target, None)
            else:
                values[target] = literal
    assigns_config = "config" in {t for node in tree.body for t, _ in _assignments(node)}
    checked = not _DIRECTIVE.search(source)
    return Parameters(defaults, tuple(names), assigns_config, values, checked)


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


def check_config(
    parameters: Parameters, config: Mapping[str, Any], flow: str, *, strict: bool = True
) -> None:
    """Raise :class:`ConfigError` when ``config`` does not fit what the parameters cell declares.

    ``strict=False`` (``check_config=False`` on a call) or the cell's ``#
    ductaflow: no-check-config`` line lets unknown keys and other types
    through; a declared key left out is refused either way, and
    ``ductaflow_seed``, read by ductaflow, must be an int.

    >>> try:
    ...     check_config(read_parameters("config = {'drift': 0.1}"), {"drfit": 0.3}, "flow/x.py")
    ... except ConfigError as exc:
    ...     print(exc)
    config key 'drfit' is not declared by the parameters cell of flow/x.py. Did you mean 'drift'? ...
    >>> try:
    ...     check_config(read_parameters("config = {'epochs': 10}"), {"epochs": "10"}, "flow/x.py")
    ... except ConfigError as exc:
    ...     print(exc)
    config key 'epochs' is '10' (str), but the parameters cell of flow/x.py declares it int (default 10). ...
    """
    for key, default in _RESERVED_TYPES.items():
        if key in config and not fits(config[key], default):
            raise wrong_type(key, config[key], default, flow, reserved=True)
    if not 0 <= config.get(SEED_KEY, 0) < SEED_LIMIT:  # what numpy's generators take
        raise ConfigError(f"config key {SEED_KEY!r} of {flow} is {config[SEED_KEY]}: a seed must be a whole "
                          f"number from 0 to {SEED_LIMIT - 1}.", key=SEED_KEY)  # fmt: skip
    strict = strict and parameters.checked
    if parameters.defaults:
        _check_against(parameters.defaults, config, "", flow, strict)
    elif parameters.papermill_style and strict:
        unknown = [k for k in config if k not in parameters.variables and k not in RESERVED_KEYS]
        if unknown:
            raise _not_a_variable(unknown[0], parameters.variables, flow)
        for key, default in parameters.values.items():
            if key in config and not fits(config[key], default):
                raise wrong_type(key, config[key], default, flow)


def declared_keys(parameters: Parameters) -> list[dict[str, Any]]:
    """The keys a parameters cell declares, one dict each: what ``ductaflow.config_keys`` returns.

    Each has ``key`` (dotted for nested sections), ``type`` (as
    :func:`ductaflow.configtypes.type_name` names it), ``default``,
    ``required`` (ductaflow's convention: every declared key must be given),
    ``source`` (``config``: a key of the cell's dict; ``variable``: a
    papermill-style variable; ``ductaflow``: a reserved key any flow accepts)
    and ``checked`` (whether its type, and unknown keys beside it, are checked).

    >>> cell = read_parameters("config = {'m': {'a': 1}}")
    >>> [(k["key"], k["type"], k["default"]) for k in declared_keys(cell)]
    [('m.a', 'int', 1), ('instance_name', 'str', None), ('ductaflow_seed', 'int', None)]
    """
    rows: list[dict[str, Any]] = []
    if parameters.defaults:
        _declared_rows(parameters.defaults, "", parameters.checked, rows)
    elif parameters.papermill_style:
        for name in parameters.variables:
            literal = name in parameters.values
            kind = "" if literal else "any (not a literal)"
            rows.append(_row(name, parameters.values.get(name), False, "variable", parameters.checked, kind))
    rows.append(_row("instance_name", None, False, "ductaflow", True, "str"))
    rows.append(_row("ductaflow_seed", None, False, "ductaflow", True, "int"))
    return rows


def _declared_rows(
    declared: Mapping[str, Any], prefix: str, checked: bool, rows: list[dict[str, Any]]
) -> None:
    for key, default in declared.items():
        if isinstance(default, dict) and default:
            _declared_rows(default, f"{prefix}{key}.", checked, rows)
        else:
            rows.append(_row(prefix + key, default, True, "config", checked))


def _row(
    key: str, default: Any, required: bool, source: str, checked: bool, kind: str = ""
) -> dict[str, Any]:
    return {"key": key, "type": kind or type_name(default), "default": default, "required": required,
            "source": source, "checked": checked}  # fmt: skip


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


_NOT_LITERAL = object()


def _literal(value: ast.expr | None) -> Any:
    if value is None:
        return _NOT_LITERAL
    try:
        return ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _literal_dict(value: ast.expr | None) -> dict[str, Any] | None:
    literal = _literal(value)
    return literal if isinstance(literal, dict) and all(isinstance(k, str) for k in literal) else None


def _check_against(
    declared: Mapping[str, Any], config: Mapping[str, Any], prefix: str, flow: str, strict: bool
) -> None:
    for key in config if strict else ():
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
        if strict and not fits(config[key], default):
            raise wrong_type(prefix + key, config[key], default, flow)
        if isinstance(default, dict) and default and isinstance(config[key], Mapping):
            _check_against(default, config[key], f"{prefix}{key}.", flow, strict)


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
        f"Declared keys: {listing}. Fix the key, or add it to the flow's parameters cell "
        f"(`{NO_CHECK_DIRECTIVE}` in that cell, or --no-check-config, lets unknown keys through).",
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
