"""The ``ductaflow`` command: parses arguments, calls the public API, prints, sets the exit code.

Exit codes: 0 every instance succeeded or was up to date; 1 an instance
failed; 2 a usage or input error (a message names the file or argument and
the fix; ``--debug`` adds the traceback); 130 interrupted (Ctrl-C, SIGTERM).
The group maps what a command returns or raises to these codes and messages
itself, so ``click.testing.CliRunner().invoke(cli, args)`` gives what the
real command gives; only :func:`main`, a process of its own, handles SIGTERM.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

import ductaflow

from .console import UNKNOWN, explanation, print_plan, print_status, shown

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_DEBUG = "ductaflow.debug"  # ctx.meta key: --debug was given


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit with its code (the ``ductaflow`` console script).

    The process is the command's own, so SIGTERM (a scheduler cancelling the
    job) is made to stop it like Ctrl-C.
    """
    if hasattr(signal, "SIGTERM") and _in_main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    sys.exit(run_cli(list(sys.argv[1:] if argv is None else argv)))


def run_cli(args: Sequence[str]) -> int:
    """Run the command line with ``args`` in this process; return the exit code."""
    try:
        cli.main(list(args), prog_name="ductaflow")
    except SystemExit as exit_:
        return EXIT_OK if exit_.code is None else exit_.code if isinstance(exit_.code, int) else EXIT_FAILED
    return EXIT_OK


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class _Ductaflow(click.Group):
    """The command group: turns a command's return value or exception into its exit code and message."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_DEBUG] = "--debug" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            code = super().invoke(ctx)
        except click.exceptions.Abort:
            raise click.exceptions.Exit(_interrupted()) from None
        except (KeyboardInterrupt, EOFError):  # as click's own main: a blank line ends the terminal's ^C
            click.echo(err=True)
            raise click.exceptions.Exit(_interrupted()) from None
        except ductaflow.DuctaflowError as exc:
            _error(exc, ctx.meta.get(_DEBUG, False))
            raise click.exceptions.Exit(EXIT_USAGE) from None
        except OSError as exc:  # a folder that cannot be read or written, a full disk: say which
            if exc.errno == errno.EPIPE:  # `ductaflow status | head`: the reader left, nothing more to say
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None
            _error(exc, ctx.meta.get(_DEBUG, False))
            raise click.exceptions.Exit(EXIT_USAGE) from None
        raise click.exceptions.Exit(code if isinstance(code, int) else EXIT_OK)


def _interrupted() -> int:
    click.echo("interrupted", err=True)
    return EXIT_INTERRUPTED


def _error(exc: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"error: {exc}", err=True)
    if not debug:
        click.echo("(add --debug to see the traceback)", err=True)


def _debug_option(function: Callable[..., Any]) -> Callable[..., Any]:
    option = click.option("--debug", is_flag=True, expose_value=False, help="Show the traceback of errors.")
    return option(function)


@click.group(name="ductaflow", cls=_Ductaflow, context_settings=_CONTEXT)
@click.version_option(ductaflow.__version__, "-V", "--version", prog_name="ductaflow")
def cli() -> None:
    """Run notebook-style flows as recorded instances in runs/<step>/<instance>/.

    \b
    Examples:
      ductaflow new my-study && cd my-study && python conductor.py
      ductaflow run flow/simulate.py --config config/simulate.json -o drift=0.3
      ductaflow sweep flow/simulate.py --config config/simulate.json --grid seed=1,2,3
      ductaflow status
    """


def _instance_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by run and sweep."""
    options = [
        click.argument("flow", type=click.Path(path_type=Path)),
        click.option("--config", "config_file", type=click.Path(path_type=Path), metavar="FILE",
                     help="JSON config file (for sweep: the base under every row)."),
        click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Set a config key (dotted: nested; value read as JSON if it parses). Repeatable."),
        click.option("--step", "step_name", metavar="NAME",
                     help="Step folder under runs/ (default: the flow's name)."),
        click.option("--runs-dir", type=click.Path(path_type=Path), metavar="DIR",
                     help="Where step folders go (default: runs)."),
        click.option("--input", "inputs", multiple=True, metavar="PATH",
                     help="A file, folder, glob or config key the flow reads: a change re-runs. Repeatable."),
        click.option("--force", is_flag=True, help="Run even when up to date."),
        click.option("--dry-run", is_flag=True, help="Show what would run and why; run nothing."),
        click.option("--no-html", is_flag=True, help="Skip the HTML report."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     help="Limit on each cell's run time."),
        click.option("--kernel", "kernel_name", metavar="NAME",
                     help="An installed Jupyter kernel (default: this Python)."),
        _debug_option,
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


@cli.command(context_settings=_CONTEXT)
@_instance_options
@click.option(
    "--instance",
    "instance_name",
    metavar="NAME",
    help="Instance name (default: config's instance_name, else the config file's name, else default).",
)
@click.option("--echo", is_flag=True, help="Also print the flow's output as it runs.")
@click.option("--report", is_flag=True, help="Refresh runs/index.html (ductaflow report) at the end.")
def run(flow: Path, instance_name: str | None, echo: bool, **options: Any) -> int:
    """Run one instance of FLOW, unless it is up to date.

    The config is --config with the -o overrides applied (without --config,
    the overrides make the whole config). The instance goes to
    runs/<step>/<instance>/ and is skipped when its flow, config and --input
    files have not changed since its last success.

    \b
    Examples:
      ductaflow run flow/simulate.py --config config/simulate.json
      ductaflow run flow/simulate.py --config config/simulate.json -o drift=0.3 --instance steep
      ductaflow run flow/analyse.py -o input_csv=data/demand.csv --input input_csv --force
    """
    return _run_sweep(flow, options, instance_name=instance_name, jobs=1, log_output=echo)


@cli.command(context_settings=_CONTEXT)
@_instance_options
@click.option(
    "--table",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Control table, one instance per row: .csv .tsv .xlsx .parquet .json.",
)
@click.option(
    "--grid",
    "grids",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Values for one key; several --grid give every combination. Repeatable.",
)
@click.option(
    "--name-column", default="instance_name", show_default=True, help="Table column naming instances."
)
@click.option("--report", is_flag=True, help="Refresh runs/index.html (ductaflow report) at the end.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    help="Instances at once (default: number of CPUs; with --scheduler: all, the cluster queues).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run on Dask: local:N (N worker processes here) or tcp://HOST:8786 (a running scheduler). "
    "Needs ductaflow[dask].",
)
def sweep(flow: Path, table: Path | None, grids: tuple[str, ...], name_column: str, jobs: int | None,
          scheduler: str | None, **options: Any) -> int:  # fmt: skip
    """Run FLOW for every row of a table and/or every combination of a grid.

    Each row (and grid combination) is merged over the base config; dotted
    columns or keys (model.alpha) reach into nested sections. Instances are
    named by the --name-column, else by the values that vary (drift=0.1,seed=2).
    Only new or changed instances run. Grid values are read as JSON when they
    parse: --grid seed=1,2,3, --grid mode=fast,slow, --grid 'weights=[[1,2],[3,4]]'.

    \b
    Examples:
      ductaflow sweep flow/simulate.py --config config/simulate.json --table scenarios.csv --jobs 4
      ductaflow sweep flow/simulate.py --config config/simulate.json --grid seed=1,2,3 --grid drift=0,0.5
      ductaflow sweep flow/simulate.py --config config/simulate.json --table scenarios.xlsx --dry-run
      ductaflow sweep flow/simulate.py --table scenarios.csv --scheduler local:4
      ductaflow sweep flow/simulate.py --table scenarios.csv --scheduler tcp://login1:8786
    """
    if table is None and not grids:
        raise click.UsageError(
            "sweep needs --table FILE or at least one --grid KEY=V1,V2 (use 'run' for one)."
        )
    grid = _parse_grids(grids)
    kwargs = {"table": table, "grid": grid or None, "jobs": jobs, "name_column": name_column}
    if scheduler is None or options["dry_run"]:
        return _run_sweep(flow, options, **kwargs)
    with ductaflow.dask_client(scheduler) as client:
        return _run_sweep(flow, options, executor=client, **kwargs)


def _run_sweep(flow: Path, options: dict[str, Any], **kwargs: Any) -> int:
    Status = ductaflow.RunStatus
    dry_run = options.pop("dry_run")
    export_html = not options.pop("no_html")
    frame = ductaflow.sweep(flow, **options, **kwargs, export_html=export_html, dry_run=dry_run,
                            progress=not dry_run)  # fmt: skip
    if dry_run:
        print_plan(frame)
        return EXIT_OK
    for row in frame.itertuples():
        if row.status in (Status.SUCCESS, Status.FAILED):
            click.echo(f"{row.status}: {shown(row.run_dir)}")
    if (frame.status == Status.INTERRUPTED).any():
        return EXIT_INTERRUPTED
    return EXIT_FAILED if (frame.status == Status.FAILED).any() else EXIT_OK


def _parse_grids(grids: Sequence[str]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for text in grids:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise click.BadParameter(
                f"{text!r} is not KEY=V1,V2 (e.g. --grid seed=1,2,3).", param_hint="--grid"
            )
        if key in grid:
            raise click.BadParameter(f"key {key!r} is given twice; list all its values in one --grid.",
                                     param_hint="--grid")  # fmt: skip
        parsed = _json_or_text(raw)
        grid[key] = parsed if isinstance(parsed, list) else [_json_or_text(v) for v in _split_values(raw)]
        if not grid[key]:
            raise click.BadParameter(f"{text!r} lists no values.", param_hint="--grid")
    return grid


def _split_values(raw: str) -> list[str]:
    """Split on the commas outside brackets and double quotes: ``a,[1,2],"x,y"`` gives three values."""
    values, depth, quoted, current = [], 0, False, ""
    for char in raw:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "[{":
            depth += 1
        elif not quoted and char in "]}":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            values.append(current)
            current = ""
            continue
        current += char
    if quoted or depth:
        raise click.BadParameter(
            f"{raw!r} has an unclosed {'quote' if quoted else 'bracket'}.", param_hint="--grid"
        )
    values.append(current)
    if any(not value.strip() for value in values):
        raise click.BadParameter(f"{raw!r} has an empty value (two commas in a row, or one at an end).",
                                 param_hint="--grid")  # fmt: skip
    return values


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


@cli.command(context_settings=_CONTEXT)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of objects) for programs.")
@click.option("--outdated", is_flag=True, help="Only instances that would run again.")
@click.option(
    "--runs-dir",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="The runs folder to look in when no PATHS are given (default: runs).",
)
@_debug_option
def status(paths: tuple[Path, ...], as_json: bool, outdated: bool, runs_dir: Path | None) -> int:
    """Show the instances under runs/ (or PATHS): status, when, how long, and whether outdated.

    PATHS may be runs folders, step folders (runs/<step>) or instance
    directories. An instance is outdated when today's flow source, config
    file, table or input files differ from its last successful run, or its
    latest attempt did not succeed.

    \b
    Examples:
      ductaflow status
      ductaflow status runs/simulate --outdated
      ductaflow status --runs-dir /shared/study/runs
      ductaflow status --json > status.json
    """
    if not paths and not (runs_dir or Path("runs")).exists():
        where = (runs_dir or Path("runs")).absolute()
        click.echo("[]" if as_json else f"no instances: {where} does not exist yet (nothing has run here)")
        return EXIT_OK
    frame = ductaflow.check_instances(paths or (runs_dir or Path("runs"),))
    if outdated:
        frame = frame[frame.outdated.eq(True)]
    records = json.loads(frame.to_json(orient="records"))
    if as_json:
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return EXIT_OK
    print_status(records, frame.status.value_counts().to_dict())
    return EXIT_OK


@cli.command(context_settings=_CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
@_debug_option
def why(run_dir: Path, as_json: bool) -> int:
    """Explain whether the instance RUN_DIR would run again, part by part.

    Compares its last successful run with today's flow source, config (when
    it came from a config file or table) and input files.

    \b
    Examples:
      ductaflow why runs/simulate/calm
    """
    if not run_dir.is_dir():
        raise ductaflow.RunDirectoryError(f"{str(run_dir)!r} is not a directory. Give an instance "
                                          "directory such as runs/<step>/<instance>.",
                                          run_dir=str(run_dir))  # fmt: skip
    check = ductaflow.check_instance(run_dir)
    if check.status == UNKNOWN:
        raise ductaflow.RunDirectoryError(f"{run_dir}: {check.reason}", run_dir=str(run_dir))
    if as_json:
        data = {k: getattr(check, k) for k in ("step", "instance", "status", "started_at", "duration_s",
                                              "outdated", "reason", "error")}  # fmt: skip
        data.update(run_dir=str(check.run_dir), details=[{"part": p, "state": s} for p, s in check.details],
                    compared_with=str(check.compared_with) if check.compared_with else None)  # fmt: skip
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return EXIT_OK
    for line in explanation(check):
        click.echo(line)
    return EXIT_OK


@cli.command(context_settings=_CONTEXT)
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Where to write the report (default: PATH/index.html).",
)
@_debug_option
def report(path: Path | None, output: Path | None) -> int:
    """Write one self-contained HTML page of every instance under PATH (default: runs).

    Per step: counts by status, a table that sorts by any column and filters
    by text and status, links to each instance's report, config and log,
    failures with their error, and a chart of a metric against a config
    column. It needs no server or network: open it from disk or a share.

    \b
    Examples:
      ductaflow report
      ductaflow report runs --output /shared/study/report.html
    """
    written = ductaflow.build_report(path or Path("runs"), output)
    click.echo(f"wrote {shown(written)}")
    return EXIT_OK


@cli.command(name="open", context_settings=_CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@_debug_option
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


@cli.command(context_settings=_CONTEXT)
@click.argument("directory", type=click.Path(path_type=Path))
@_debug_option
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
