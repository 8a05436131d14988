"""``ductaflow new`` and ``ductaflow open``: start a project, reproduce an instance in a notebook."""

from __future__ import annotations

from pathlib import Path

import click

import ductaflow

from ..console import shown
from .common import CONTEXT, EXIT_OK, debug_option


@click.command(name="open", context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@debug_option
def open_(run_dir: Path) -> int:
    """Write a debug notebook into the instance RUN_DIR and say how to open it.

    The notebook holds the flow with the instance's config injected; its
    first cell makes the kernel work from the instance directory, as the run
    did. Run the cells in order to reproduce the run and inspect any step.

    \b
    Examples:
      ductaflow open runs/simulate/calm
    """
    notebook = shown(ductaflow.debug_notebook(run_dir))
    click.echo(f"wrote {notebook}\n"
               f"  VS Code: code {notebook}\n"
               f"  Jupyter: jupyter lab {notebook}\n"
               "Run the cells in order from the first: it works from the instance directory.")  # fmt: skip
    return EXIT_OK


@click.command(context_settings=CONTEXT)
@click.argument("directory", type=click.Path(path_type=Path))
@debug_option
def new(directory: Path) -> int:
    """Create a ductaflow project in DIRECTORY that runs at once.

    It holds flow/simulate.py, config/simulate.json, scenarios.csv (three
    scenarios), conductor.py (runs them), a README and a .gitignore that keeps
    runs/ out of git.

    \b
    Examples:
      ductaflow new my-study && cd my-study && python conductor.py
    """
    created = ductaflow.new_project(directory)
    click.echo(f"created {created}/: flow/simulate.py, config/simulate.json, scenarios.csv, conductor.py\n"
               f"next: cd {created} && python conductor.py")  # fmt: skip
    return EXIT_OK
