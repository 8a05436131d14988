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


@cache.command(context_settings=CONTEXT)
@click.option("--cache", "url", metavar="URL",
              help="A folder or fsspec URL (s3://...). Default: cache in ductaflow.toml.")  # fmt: skip
@click.option("--older-than", "days", type=click.FloatRange(min=0), metavar="DAYS",
              help="Also remove every entry pushed more than DAYS days ago.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@debug_option
def clean(url: str | None, days: float | None, dry_run: bool) -> int:
    """Remove from the cache what no sweep will restore, and with --older-than, old entries.

    Archives no entry names (a push cut short, the loser of two pushes of one
    instance at once) go once an hour old; with --older-than DAYS, so does
    every entry pushed before then.

    \b
    Examples:
      ductaflow cache clean --dry-run
      ductaflow cache clean --older-than 90 --cache s3://team-bucket/ductaflow-cache
    """
    done = ductaflow.clean_cache(url, older_than_days=days, dry_run=dry_run)
    for key in done["removed"]:
        click.echo(f"{'would remove' if dry_run else 'removed'} {key}")
    verb = "would free" if dry_run else "freed"
    click.echo(
        f"{len(done['removed'])} files, {done['entries']} whole entries: {verb} {done['bytes'] / 1e6:.1f} MB"
    )
    return EXIT_OK
