"""``ductaflow diff``: what differs between two runs, in the terminal, as JSON or as an HTML page."""

from __future__ import annotations

import json
from pathlib import Path

import click

import ductaflow

from ..console import shown
from ..diffview import print_diff, write_page
from .common import CONTEXT, EXIT_OK, debug_option


@click.command(context_settings=CONTEXT)
@click.argument("run_a")
@click.argument("run_b")
@click.option("--runs-dir", type=click.Path(path_type=Path), metavar="DIR", default=Path("runs"),
              show_default=True, help="The runs folder where step/instance names are looked up.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs instead of the text.")
@click.option("--html", "html_file", type=click.Path(path_type=Path), metavar="FILE",
              help="Also write the comparison as a self-contained HTML page to FILE.")  # fmt: skip
@debug_option
def diff(run_a: str, run_b: str, runs_dir: Path, as_json: bool, html_file: Path | None) -> int:
    """Compare two runs: config, fingerprint, Python and packages, metrics, and each cell's outputs.

    RUN_A and RUN_B are instance directories (runs/fit/a) or step/instance
    names looked up in --runs-dir. Shown: the config keys that differ; the
    fingerprint parts that differ (flow, kernel, each input, project module
    and upstream instance); Python and the package versions that differ;
    every metric side by side; the code cells whose outputs differ, text as a
    unified diff, images and HTML as changed or unchanged.

    Differences do not change the exit code: it is 0 when the comparison was
    made, 2 when RUN_A or RUN_B is not an instance.

    \b
    Examples:
      ductaflow diff runs/fit/a runs/fit/b
      ductaflow diff fit/a fit/b --html diff.html
      ductaflow diff fit/a fit/b --json > diff.json
    """
    compared = ductaflow.diff_runs(run_a, run_b, runs_dir=runs_dir)
    if as_json:
        click.echo(json.dumps(compared.as_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        print_diff(compared)
    if html_file is not None:
        written = write_page(compared, html_file)
        click.echo(f"wrote {shown(written)}", err=as_json)
    return EXIT_OK
