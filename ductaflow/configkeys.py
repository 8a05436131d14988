"""A flow's config keys, types and defaults: as data, and as ``ductaflow run --help-config`` shows them."""

from __future__ import annotations

import os
from typing import Any

from .configtypes import NO_CHECK_DIRECTIVE
from .flow import read_flow
from .parameters import declared_keys


def config_keys(flow: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The config keys ``flow``'s parameters cell declares, with their types and defaults.

    One dict per key: ``key`` (dotted for nested sections), ``type`` (``int``,
    ``float``, ``str``, ``bool``, ``list[int]``, ``list``, ``dict``, ``any``),
    ``default``, ``required``, ``source`` (``config``: a key of the cell's
    ``config`` dict; ``variable``: a papermill-style variable; ``ductaflow``:
    ``instance_name`` and ``ductaflow_seed``, which every flow accepts) and
    ``checked`` (``False`` when the cell holds ``# ductaflow: no-check-config``).
    A cell assigning ``config = {}`` declares no key: any config is accepted.

    >>> from pathlib import Path
    >>> cell = '# %% tags=["parameters"]\\nconfig = {"lr": 0.1, "model": {"layers": [64, 32]}}\\n'
    >>> _ = Path("typed.py").write_text(cell)
    >>> [(k["key"], k["type"], k["default"]) for k in config_keys("typed.py") if k["source"] == "config"]
    [('lr', 'float', 0.1), ('model.layers', 'list[int]', [64, 32])]
    >>> [k["key"] for k in config_keys("flow/make_data.py")]  # config = {}: only ductaflow's own keys
    ['instance_name', 'ductaflow_seed']
    """
    return declared_keys(read_flow(flow).parameters)


def config_help(flow: str | os.PathLike[str]) -> str:
    """What ``ductaflow run FLOW --help-config`` prints: the keys, types and defaults, in a table."""
    parameters = read_flow(flow).parameters
    rows = declared_keys(parameters)
    own = [row for row in rows if row["source"] != "ductaflow"]
    name = os.fspath(flow)
    if not own:
        how = "does not assign `config`"
        if parameters.assigns_config:
            how = "assigns `config = {}`" if parameters.defaults == {} else "assigns `config` no literal dict"
        lines = [f"{name} accepts any config: its parameters cell {how}, and declares no keys."]
    elif own[0]["source"] == "variable":
        lines = [f"{name} has papermill-style parameters: a config key naming a variable sets it.", "",
                 *_table(own)]  # fmt: skip
    else:
        lines = [f"{name} declares these config keys; each must be given (dotted: inside a section).",
                 "", *_table(own)]  # fmt: skip
    if own and not parameters.checked:
        lines += [
            "",
            f"Unknown keys and types are not checked: the parameters cell holds `{NO_CHECK_DIRECTIVE}`.",
        ]
    elif own:
        lines += ["", "Other keys, and values of other types, are refused (an int for a float is fine);",
                  "--no-check-config lets them through."]  # fmt: skip
    lines += [
        "",
        "Every flow also accepts instance_name (str) and ductaflow_seed (int, the instance's seed).",
    ]
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    cells = [("key", "type", "default")] + [(r["key"], r["type"], _default(r)) for r in rows]
    widths = [max(len(cell[i]) for cell in cells) for i in range(2)]
    return [f"  {k:<{widths[0]}}  {t:<{widths[1]}}  {d}".rstrip() for k, t, d in cells]


def _default(row: dict[str, Any]) -> str:
    if row["type"].endswith("(not a literal)"):
        return ""
    text = repr(row["default"])
    return text if len(text) <= 60 else text[:57] + "..."
