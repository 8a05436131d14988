"""``ductaflow status``, ``why`` and ``report``: what ran, whether it is current, and a page of it all."""

from __future__ import annotations

import json
from pathlib import Path

import click

import ductaflow

from ..console import UNKNOWN, explanation, print_status, print_would_run, shown
from ..runrecord import RECORD_NAME
from .common import CONTEXT, EXIT_OK, debug_option


@click.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of objects) for programs.")
@click.option("--outdated", is_flag=True, help="Only instances that would run again.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    metavar="N",
    help="Show at most N rows (the counts cover all); 0 shows every row. --json always has all.",
)
@click.option(
    "--runs-dir",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="The runs folder to look in when no PATHS are given (default: runs).",
)
@debug_option
def status(paths: tuple[Path, ...], as_json: bool, outdated: bool, limit: int, runs_dir: Path | None) -> int:
    """Show the instances under runs/ (or PATHS): status, when, how long, and whether outdated.

    PATHS may be runs folders, step folders (runs/<step>) or instance
    directories. An instance is outdated when today's flow source, config
    file, table or input files differ from its last successful run, or its
    latest attempt did not succeed.

    \b
    Examples:
      ductaflow status
      ductaflow status runs/simulate --outdated
      ductaflow status --limit 0          # every row of a big sweep
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
    print_status(records[:limit] if limit else records, frame.status.value_counts().to_dict(), len(records))
    return EXIT_OK


@click.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
@debug_option
def why(run_dir: Path, as_json: bool) -> int:
    """Explain whether the instance RUN_DIR would run again, part by part.

    Compares its last successful run with today's flow source, config (when
    it came from a config file or table) and input files. Given a step folder
    (runs/<step>) or a runs folder, lists each instance with whether it would
    run again and why, step by step.

    \b
    Examples:
      ductaflow why runs/simulate/calm
      ductaflow why runs/simulate
    """
    if not run_dir.is_dir():
        raise ductaflow.RunDirectoryError(f"{str(run_dir)!r} is not a directory. Give an instance "
                                          "directory such as runs/<step>/<instance>, a step folder "
                                          "or a runs folder.", run_dir=str(run_dir))  # fmt: skip
    if not (run_dir / RECORD_NAME).exists():
        return _why_each(run_dir, as_json)
    check = ductaflow.check_instance(run_dir)
    if check.status == UNKNOWN:
        raise ductaflow.RunDirectoryError(f"{run_dir}: {check.reason}", run_dir=str(run_dir))
    if as_json:
        data = {k: getattr(check, k) for k in ("step", "instance", "status", "started_at", "duration_s",
                                              "outdated", "orphaned", "reason", "error")}  # fmt: skip
        data.update(run_dir=str(check.run_dir), details=[{"part": p, "state": s} for p, s in check.details],
                    compared_with=str(check.compared_with) if check.compared_with else None)  # fmt: skip
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return EXIT_OK
    for line in explanation(check):
        click.echo(line)
    return EXIT_OK


def _why_each(folder: Path, as_json: bool) -> int:
    """``why`` of a step or runs folder: every instance under it, step by step."""
    frame = ductaflow.check_instances([folder])
    if frame.empty:
        raise ductaflow.RunDirectoryError(f"{folder}: no ductaflow instance in it (no run.json there, nor in "
                                          "its folders or theirs). Give an instance directory such as "
                                          "runs/<step>/<instance>, a step folder or a runs folder.",
                                          run_dir=str(folder))  # fmt: skip
    records = json.loads(frame.to_json(orient="records"))
    if as_json:
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        print_would_run(records)
    return EXIT_OK


@click.command(context_settings=CONTEXT)
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Where to write the report (default: PATH/index.html).",
)
@debug_option
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


@click.command("index", context_settings=CONTEXT)
@click.argument("runs", required=False, type=click.Path(path_type=Path))
@click.option("--rebuild", is_flag=True, help="Forget the index and read every run folder's files again.")
@debug_option
def index(runs: Path | None, rebuild: bool) -> int:
    """Bring the run index of RUNS (default: runs) up to date with its files, or --rebuild it.

    The index (RUNS/.ductaflow-index.sqlite) is what status, collect, the
    report, serve and the conductor's decision read. Each of them brings it
    up to date first, so this is never required: use it to pay for a first
    build in advance, or to start again from the files.

    \b
    Examples:
      ductaflow index
      ductaflow index /shared/study/runs --rebuild
    """
    summary = ductaflow.refresh_index(runs or Path("runs"), rebuild=rebuild)
    where = shown(Path(summary["index"])) if summary["index"] else f"none ({summary['why_not']})"
    click.echo(f"{summary['instances']} instances in {summary['steps']} steps; "
               f"{summary['changed']} read again; index: {where}")  # fmt: skip
    return EXIT_OK
