"""``ductaflow cache push``: fill the shared cache with successes made before it was set."""

from __future__ import annotations

from pathlib import Path

import click

import ductaflow

from .common import CONTEXT, EXIT_OK, debug_option


@click.group(context_settings=CONTEXT)
def cache() -> None:
    """The cache that shares successes by fingerprint (see sweep --cache)."""


@cache.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--cache", "url", metavar="URL",
              help="A folder or fsspec URL (s3://...). Default: cache in ductaflow.toml.")  # fmt: skip
@debug_option
def push(paths: tuple[Path, ...], url: str | None) -> int:
    """Push every success under PATHS (default: runs) to the cache, under its recorded fingerprint.

    PATHS may be runs folders, step folders or instance folders. Instances
    the cache holds already, running ones and those that did not succeed are
    left alone. A sweep given a cache pushes its own successes: this is for
    the ones made before.

    \b
    Examples:
      ductaflow cache push
      ductaflow cache push runs/simulate --cache /shared/team/ductaflow-cache
    """
    outcome = ductaflow.push_runs(paths or ("runs",), cache=url)
    for state in ("pushed", "present", "busy", "not success", "failed"):
        if outcome[state]:
            click.echo(f"{state}: {len(outcome[state])}")
    for name in outcome["busy"]:
        click.echo(f"  busy (an attempt is running): {name}")
    return EXIT_OK if not outcome["failed"] else 1
