"""``ductaflow new``, ``open`` and ``clean``: start a project, debug an instance, tidy a runs folder."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import click

import ductaflow

from ..console import print_table, shown
from .common import CONTEXT, EXIT_FAILED, EXIT_OK, debug_option
from .grid import parse_grids


@click.command(name="open", context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@debug_option
def open_(run_dir: Path) -> int:
    """Write a debug copy of the instance RUN_DIR and say how to open its notebook.

    The copy is runs/<step>/.debug-<instance>/, beside the instance: a
    notebook holding the flow with the instance's config injected, and the
    instance's config.json. Its first cell makes the kernel work from the
    copy's folder, so running the cells reproduces the run without touching
    the recorded instance; re-runs of the instance leave the copy
    (ductaflow clean removes it).

    \b
    Examples:
      ductaflow open runs/simulate/calm
    """
    notebook = ductaflow.debug_notebook(run_dir)
    click.echo(f"wrote {shown(notebook)}\n  the cells work in {shown(notebook.parent)}/: what they write "
               f"stays there, and {shown(run_dir)} is left as it is")  # fmt: skip
    commands = _open_commands(notebook)
    if commands:
        click.echo("open it with:")
    else:
        click.echo(
            "no notebook editor on PATH (code, jupyter-lab, jupyter-notebook); install one and open it:"
        )
        commands = [f"JupyterLab: pip install jupyterlab, then {_jupyter('jupyter lab', notebook)}",
                    "VS Code with its Jupyter extension (https://code.visualstudio.com): "
                    + _code("code", notebook)]  # fmt: skip
    for command in commands:
        click.echo(f"  {command}")
    click.echo("Run the cells in order from the first.")
    return EXIT_OK


def _open_commands(notebook: Path) -> list[str]:
    """How to open ``notebook`` with each editor on PATH or beside this Python (a venv not activated)."""
    commands = []
    for program, command in (("code", "code"), ("jupyter-lab", "jupyter lab"),
                             ("jupyter-notebook", "jupyter notebook")):  # fmt: skip
        if not shutil.which(program):
            beside = Path(sys.executable).parent
            if not shutil.which(program, path=str(beside)):
                continue
            command = str(beside / program)
        commands.append(_code(command, notebook) if program == "code" else _jupyter(command, notebook))
    return commands


def _code(command: str, notebook: Path) -> str:
    return f"{shlex.quote(command)} {shlex.quote(shown(notebook))}"


def _jupyter(command: str, notebook: Path) -> str:
    """Jupyter serves no file inside a hidden folder under its root: it starts in the debug copy."""
    program = command if command.startswith("jupyter ") else shlex.quote(command)
    return f"cd {shlex.quote(shown(notebook.parent))} && {program} {shlex.quote(notebook.name)}"


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


@click.command(context_settings=CONTEXT)
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option(
    "--not-in",
    "table",
    type=click.Path(path_type=Path),
    metavar="TABLE",
    help="Also the instances of the step folder PATH that this table does not name.",
)
@click.option(
    "--name-column",
    default="instance_name",
    show_default=True,
    metavar="NAME",
    help="The table column holding instance names (else names come from the values that vary).",
)
@click.option(
    "--grid",
    "grids",
    multiple=True,
    metavar="KEY=V1,V2",
    help="The sweep's --grid, which names each row times each combination. Repeatable.",
)
@click.option("--yes", is_flag=True, help="Delete them (without it, only show what would go).")
@debug_option
def clean(path: Path | None, table: Path | None, name_column: str, grids: tuple[str, ...], yes: bool) -> int:
    """Show, and with --yes delete, what PATH (runs, or runs/<step>) no longer needs.

    That is: previous attempts kept in runs/<step>/.ductaflow/previous/,
    unsuccessful attempts kept in runs/<step>/.ductaflow/attempts/ (retries),
    debug copies written by ductaflow open (runs/<step>/.debug-<instance>/),
    and with --not-in, the instances of one step that a table no longer
    names (named as sweep names them: --name-column, else the values that
    vary, times --grid). An instance running now is kept; symbolic links are
    not followed; folders ductaflow did not write are never listed.

    \b
    Examples:
      ductaflow clean
      ductaflow clean runs/simulate --not-in scenarios.csv
      ductaflow clean runs/simulate --not-in scenarios.csv --yes
    """
    if table is None and (grids or name_column != "instance_name"):
        raise click.UsageError("--name-column and --grid only go with --not-in TABLE.")
    if path is None and not Path("runs").exists():
        click.echo(f"nothing to clean: {Path('runs').absolute()} does not exist")
        return EXIT_OK
    frame = ductaflow.clean_runs(path or Path("runs"), not_in=table, name_column=name_column,
                                 grid=parse_grids(grids) if grids else None, delete=yes)  # fmt: skip
    if frame.empty:
        click.echo(f"nothing to clean under {shown(path or Path('runs'))}")
        return EXIT_OK
    rows = [{"kind": r.kind, "size": _size(r.bytes), "path": shown(r.path), "note": r.note}
            for r in frame.itertuples()]  # fmt: skip
    if not frame.note.any():
        rows = [{k: v for k, v in row.items() if k != "note"} for row in rows]
    gone = frame[frame.deleted] if yes else frame[frame.note.eq("")]
    freed = _size(int(gone.bytes.sum()))
    title = (f"deleted {len(gone)}, freed {freed}" if yes else
             f"would delete {len(gone)}, {freed} (nothing deleted: add --yes to delete them)")  # fmt: skip
    print_table(rows, title)
    return EXIT_FAILED if yes and frame.note.str.startswith("not deleted").any() else EXIT_OK


def _size(n: int) -> str:
    """Bytes as people read them: ``512 B``, ``1.2 MB``."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
