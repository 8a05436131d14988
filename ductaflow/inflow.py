"""Helpers used inside flows. Light imports only: a flow run as a script starts fast."""

from __future__ import annotations

import html
import os
import sys
from collections.abc import Mapping
from typing import Any

from .metrics import RUN_DIR_ENV
from .names import DEBUG_PREFIX
from .seeds import config_seed

_script_config: list[Mapping[str, Any]] = []  # what load_cli_config last returned in this process


def _kernel_shell() -> Any:
    """The IPython shell of the Jupyter kernel this code runs in, or ``None``."""
    if "IPython" not in sys.modules:
        return None
    shell = sys.modules["IPython"].get_ipython()
    # a Jupyter kernel's shell, or the fork engine's (ductaflow.engines.forkchild)
    executes_flows = hasattr(shell, "kernel") or getattr(shell, "ductaflow_engine", None)
    return shell if shell is not None and executes_flows else None


def is_notebook_execution() -> bool:
    """True when the flow's config was injected into the Jupyter kernel it runs in.

    That is the case when ductaflow executes the flow, and when papermill or
    an opened instance notebook has filled ``config``. It is False when the
    flow runs as a script (``python flow/x.py``), and in an interactive
    notebook (VS Code, Jupyter) whose parameters cell still holds an empty
    ``config``, so that ``load_cli_config`` supplies the default config there.

    >>> is_notebook_execution()
    False
    """
    shell = _kernel_shell()
    if shell is None:
        return False
    if os.environ.get("DUCTAFLOW_INJECTED") == "1":
        return True
    config = shell.user_ns.get("config")
    return isinstance(config, Mapping) and len(config) > 0


def seed() -> int:
    """The seed of this instance: an int in ``[0, 2**32)``, stable across re-runs, distinct per instance.

    It is the config's ``ductaflow_seed`` when there is one (the conductor
    puts it there when given a sweep seed: ``seed=``, ``--seed``), else a
    hash of sweep seed 0 and the instance's name: the name of the folder the
    flow runs in (``runs/<step>/<instance>/``, also for a script run with
    ``--output-dir``, and the instance's for its debug copy), else the
    config's ``instance_name``, else ``default``
    (an interactive notebook gets the seed of an instance named ``default``).
    Pass it to the generators the flow uses, e.g.
    ``numpy.random.default_rng(ductaflow.seed())``.

    >>> seed() == seed() and 0 <= seed() < 2**32
    True
    """
    config = _flow_config()
    run_dir = os.environ.get(RUN_DIR_ENV)
    if run_dir:  # a debug copy's folder, runs/<step>/.debug-<instance>, draws what the instance drew
        name = os.path.basename(os.path.normpath(run_dir)).removeprefix(DEBUG_PREFIX)
        return config_seed(config, name)
    named = config.get("instance_name") if config is not None else None
    return config_seed(config, str(named) if named else "default")


def _flow_config() -> Mapping[str, Any] | None:
    """The flow's config: the kernel's ``config`` variable, else what ``load_cli_config`` returned."""
    shell = _kernel_shell()
    if shell is not None and isinstance(shell.user_ns.get("config"), Mapping):
        return shell.user_ns["config"]  # type: ignore[no-any-return]
    return _script_config[-1] if _script_config else None


def keep_script_config(config: Mapping[str, Any]) -> None:
    """Remember the config ``load_cli_config`` returns, for :func:`seed` in script mode."""
    _script_config[:] = [config]


def display_config_summary(config: Mapping[str, Any], title: str = "Configuration") -> None:
    """Show ``config`` readably: an HTML table in a notebook, aligned text in a terminal.

    Nested dicts are shown as their own sections, named by their dotted key.

    >>> display_config_summary({"n": 3, "model": {"alpha": 0.5}}, "Run")
    Run
    ===
      n     : 3
    <BLANKLINE>
    model
      alpha : 0.5
    """
    sections = _sections(config)
    if _kernel_shell() is not None:
        from IPython.display import HTML, display

        display(HTML(_as_html(title, sections)))
    else:
        print(_as_text(title, sections))


def _sections(config: Mapping[str, Any], name: str = "") -> list[tuple[str, list[tuple[str, Any]]]]:
    flat = [(str(k), v) for k, v in config.items() if not (isinstance(v, Mapping) and v)]
    out = [(name, flat)] if flat or not name else []
    for k, v in config.items():
        if isinstance(v, Mapping) and v:
            out.extend(_sections(v, f"{name}.{k}" if name else str(k)))
    return out


def _as_text(title: str, sections: list[tuple[str, list[tuple[str, Any]]]]) -> str:
    width = max((len(k) for _, rows in sections for k, _ in rows), default=0)
    lines = [title, "=" * len(title)]
    for name, rows in sections:
        if name:
            lines += ["", name]
        lines += [f"  {k.ljust(width)} : {_short(v)}" for k, v in rows]
        if not rows and not name:
            lines.append("  (empty)")
    return "\n".join(lines)


def _as_html(title: str, sections: list[tuple[str, list[tuple[str, Any]]]]) -> str:
    parts = [f"<div class='ductaflow-config'><h4>{html.escape(title)}</h4>"]
    for name, rows in sections:
        if name:
            parts.append(f"<h5 style='margin-bottom:2px'>{html.escape(name)}</h5>")
        body = "".join(
            f"<tr><td style='text-align:left'><code>{html.escape(k)}</code></td>"
            f"<td style='text-align:left'>{html.escape(_short(v))}</td></tr>"
            for k, v in rows
        )
        parts.append(
            f"<table><thead><tr><th>key</th><th>value</th></tr></thead><tbody>{body}</tbody></table>"
        )
    parts.append("</div>")
    return "".join(parts)


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
