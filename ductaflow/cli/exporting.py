"""``ductaflow export``: instances sent to other tools (``export mlflow``)."""

from __future__ import annotations

from pathlib import Path

import click

import ductaflow

from .common import CONTEXT, EXIT_FAILED, EXIT_OK, debug_option

_SHOWN = 20  # instances listed by name per kind of problem


@click.group(context_settings=CONTEXT)
def export() -> None:
    """Send instances to other tools.

    \b
    Examples:
      ductaflow export mlflow runs
    """


@export.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--tracking-uri", metavar="URI",
              help="MLflow's tracking URI: sqlite:///mlflow.db, http://host:5000... [default: "
                   "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current folder]")  # fmt: skip
@click.option("--experiment", metavar="NAME",
              help="The MLflow experiment; {step} and {project} (the project folder's name) are filled "
                   "in; give the same on every machine exporting to one server. "
                   "[default: {project}/{step}]")  # fmt: skip
@click.option("--artifact-location", metavar="URI",
              help="Where a new experiment keeps its artifacts [default: mlartifacts/<experiment> beside a "
                   "SQLite database; a server's own choice].")  # fmt: skip
@click.option("--include", multiple=True, metavar="GLOB",
              help="Also log the instance's files matching GLOB ('*.png', 'out/**'; a folder: the files "
                   "under it). A GLOB matching no file in any instance is noted.")  # fmt: skip
@debug_option
def mlflow(paths: tuple[Path, ...], tracking_uri: str | None, experiment: str | None,
           artifact_location: str | None, include: tuple[str, ...]) -> int:  # fmt: skip
    """Log each instance under PATHS (default: runs) as an MLflow run.

    PATHS may be runs folders, step folders (runs/<step>) or instance
    directories. A run is named step/instance and holds the config as params,
    the recorded metrics (a series as the metric's history), tags (step,
    instance, fingerprint, status, git commit), the status, start and end
    times, and the notebook, HTML page, log, config and run.json (and the
    files --include names) as artifacts. Exporting again changes only what changed: an instance is
    found again by its step, instance and fingerprint; a new fingerprint is a
    new run, and the earlier one is tagged ductaflow.latest=false. Running
    instances are skipped. Needs `pip install 'ductaflow[mlflow]'`.

    \b
    Examples:
      ductaflow export mlflow
      ductaflow export mlflow runs/simulate --experiment demand-study --include '*.png'
      ductaflow export mlflow --tracking-uri http://mlflow.internal:5000
    """
    summary = ductaflow.export_mlflow(paths or Path("runs"), tracking_uri=tracking_uri, experiment=experiment,
                                      artifact_location=artifact_location, include=include)  # fmt: skip
    click.echo(str(summary))
    for title, problems, to_stderr in (("skipped", summary.skipped, False), ("failed", summary.failed, True)):
        for name, why in list(problems.items())[:_SHOWN]:
            click.echo(f"  {title} {name}: {why}", err=to_stderr)
        if len(problems) > _SHOWN:
            click.echo(f"  ... and {len(problems) - _SHOWN} more {title}", err=to_stderr)
    return EXIT_FAILED if summary.failed else EXIT_OK
