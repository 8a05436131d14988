"""``load_cli_config``: the config of a flow, whichever way the flow runs.

- As a script, ``python flow/x.py [--config FILE] [--output-dir DIR] [-o k=v ...]``.
  With ``--output-dir`` the script is re-executed in a child process whose
  working directory is DIR, while this process supervises it: it writes
  ``config.json`` and ``run.json`` there, copies the child's output to the
  terminal and to ``log.txt`` as it comes, and records ``success``, ``failed``
  (with the error) or ``interrupted`` when the child ends, however it ends.
  The calling process never changes directory or replaces its streams.
- In an interactive notebook, the default config file is loaded.
- A relative default config path is taken from the project root
  (:func:`ductaflow.project_root`) in every mode, so ``python x.py`` from
  inside ``flow/`` and a notebook opened there find ``config/...`` too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from .config import apply_overrides, load_config_file
from .exceptions import ConfigError, DuctaflowError
from .inflow import _kernel_shell, is_notebook_execution, keep_script_config
from .parameters import check_config, script_parameters
from .project import project_root
from .supervisor import child_config_path, run_script

_child_config: str | None = None  # set in the supervised child process

_EPILOG = """\
how it runs:
  Paths on the command line are relative to the directory you launch from.
  Without --output-dir the flow runs in place, in the current directory.
  With --output-dir DIR the flow runs with DIR as its working directory and
  leaves there: config.json (the config it ran with), log.txt (its output)
  and run.json (the run record: running -> success | failed | interrupted).

overrides:
  -o key=value replaces one config entry; repeat it for several. Dotted keys
  reach into nested dicts (-o processing.param1=200). Values are read as JSON
  when they parse (200, 0.5, true, null, [1,2], {"a":1}) and as text otherwise.
  Overriding a key that is not in the config is an error.

examples:
  python {prog} --config config/x.json --output-dir runs/x/a
  python {prog} -o n_rows=500 -o model.alpha=0.1
"""


def load_cli_config(
    default_config_path: str | os.PathLike[str] | None = None,
    description: str | None = None,
    *,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Return the flow's config when it runs as a script or in an interactive notebook.

    As a script, parses ``--config``, ``--output-dir`` and ``-o key=value``
    (``argv`` defaults to ``sys.argv[1:]``; ``--help`` explains them). With
    ``--output-dir`` the whole script is executed again inside that directory
    under supervision and this call does not return: the process exits with
    the flow's exit code. Bad input exits with status 2 and a message naming
    the file or key.

    In a Jupyter kernel it loads ``default_config_path`` and returns it; a
    relative default is taken from the project root in both modes
    (:func:`default_config_file`). In a kernel that received a
    config (see :func:`is_notebook_execution`) it returns that config, so a
    flow that calls it without the guard still runs with the injected config.

    Usage, after the ``parameters`` cell::

        if not is_notebook_execution():
            config = load_cli_config("config/base.json", "Run my analysis")
    """
    global _child_config
    _child_config = child_config_path() or _child_config  # the supervised re-execution: config resolved
    if _child_config is not None:
        config = json.loads(Path(_child_config).read_text(encoding="utf-8"))
    elif (shell := _kernel_shell()) is not None:
        if is_notebook_execution():  # called without the guard: keep the injected config
            config = dict(shell.user_ns["config"])
        else:
            config = _interactive_config(default_config_path)
    else:
        config = _script_config(default_config_path, description, sys.argv[1:] if argv is None else argv)
    keep_script_config(config)  # ductaflow.seed() reads it in script mode
    return config


def _interactive_config(default_config_path: str | os.PathLike[str] | None) -> dict[str, Any]:
    if default_config_path is None:
        return {}
    return load_config_file(default_config_file(default_config_path))


def default_config_file(path: str | os.PathLike[str]) -> Path:
    """Where a flow's default config file is: relative paths are taken from the project root.

    The same file is found whether the flow runs in place, from another
    directory, or as a notebook whose working directory is its folder
    (see :func:`ductaflow.project_root`). A file that exists only relative to
    the working directory, or a folder above it, is used when the project
    root does not hold it; otherwise the project root's path is returned
    (and the error for a missing file names it).
    """
    given = Path(path)
    if given.is_absolute():
        return given
    in_project = project_root() / given
    if in_project.is_file():
        return in_project
    for base in (Path.cwd(), *Path.cwd().parents):
        if (base / given).is_file():
            return base / given
    return in_project


def _parser(description: str | None, default: Any) -> argparse.ArgumentParser:
    prog = sys.argv[0] if sys.argv and sys.argv[0] else "flow.py"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=_EPILOG.replace("{prog}", prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shown = "none" if default is None else f"{default}, from the project root"
    parser.add_argument(
        "--config", metavar="FILE", help=f"config file: .json, .yaml/.yml or .toml (default: {shown})"
    )
    parser.add_argument("--output-dir", metavar="DIR", help="run inside DIR and record the run there")
    parser.add_argument(
        "-o",
        "--override",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="replace one config entry (repeatable; dotted keys for nested dicts)",
    )
    return parser


def _script_config(default: Any, description: str | None, argv: list[str]) -> dict[str, Any]:
    parser = _parser(description, default)
    args = parser.parse_args(argv)
    try:
        # --config is relative to where the script started; the default, to the project root
        config_file = args.config or (default_config_file(default) if default is not None else None)
        config = load_config_file(config_file) if config_file else {}
        config = apply_overrides(config, args.override)
        _check_against_script(config)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.output_dir is None:
        return config
    try:
        _supervise(Path(args.output_dir).absolute(), config, argv)
    except DuctaflowError as exc:
        parser.error(str(exc))
    raise AssertionError("unreachable")  # _supervise exits


def _check_against_script(config: dict[str, Any]) -> None:
    """Refuse a config that does not fit the running script's parameters cell, as a run would."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or script.suffix != ".py" or not script.is_file():
        return
    try:
        text = script.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    check_config(script_parameters(text), config, sys.argv[0])


def _supervise(out_dir: Path, config: dict[str, Any], argv: list[str]) -> NoReturn:
    raise SystemExit(run_script(out_dir, config, argv))
