"""``ductaflow serve``: a live web view of a runs folder."""

from __future__ import annotations

from pathlib import Path

import click

import ductaflow

from ..serve import DEFAULT_PORT, MISSING_STACK, web_stack_installed
from ..serve.access import DEFAULT_HOST, GENERATE
from .common import CONTEXT, EXIT_OK, EXIT_USAGE, debug_option


@click.command(context_settings=CONTEXT)
@click.argument("runs", required=False, type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="The port to listen on; 0 picks a free one.")  # fmt: skip
@click.option("--host", default=DEFAULT_HOST, show_default=True, metavar="ADDR",
              help="The address to listen on. Any address but this machine's own needs --token.")  # fmt: skip
@click.option("--token", envvar="DUCTAFLOW_SERVE_TOKEN", metavar="TOKEN",
              help=f"Every request must carry TOKEN (at least 16 characters); '{GENERATE}' makes a random "
                   "one. It is printed in the URL; env: DUCTAFLOW_SERVE_TOKEN.")  # fmt: skip
@debug_option
def serve(runs: Path | None, port: int, host: str, token: str | None) -> int:
    """Serve a live web view of RUNS (default: runs) until Ctrl-C, and print its URL.

    Per step: counts by status and an ETA; a table of its instances that
    sorts, filters (`config.lr>0.01 status=failed`) and pages on the server;
    a running instance's log as it grows; a failure's error and notebook;
    charts of its metrics. It updates itself while sweeps run elsewhere, and
    never writes into RUNS. Needs `pip install 'ductaflow[serve]'`.

    \b
    Examples:
      ductaflow serve
      ductaflow serve /shared/study/runs --port 0
      ductaflow serve runs --host 0.0.0.0 --token auto
    """
    if not web_stack_installed():
        click.echo(f"error: {MISSING_STACK}", err=True)
        return EXIT_USAGE
    ductaflow.serve_runs(runs or Path("runs"), host=host, port=port, token=token,
               announce=lambda url: click.echo(f"serving {url}  (Ctrl-C stops)"))  # fmt: skip
    return EXIT_OK
