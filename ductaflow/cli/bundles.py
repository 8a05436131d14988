"""``ductaflow pack`` and ``unpack``: finished instances handed over as one run bundle (a .tar.gz)."""

from __future__ import annotations

from pathlib import Path

import click

import ductaflow

from ..console import print_table, shown
from .common import CONTEXT, EXIT_OK, debug_option


@click.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), metavar="FILE",
              help="The bundle to write (a .tar.gz), replaced if it exists.")  # fmt: skip
@debug_option
def pack(paths: tuple[Path, ...], output: Path) -> int:
    """Write the successful instances under PATHS to one run bundle, FILE.

    PATHS are a runs folder, step folders (runs/<step>) or instance
    directories. The bundle holds each instance directory, the flows, config
    files, tables and project modules their records name, and a manifest of
    every file's sha256. Instances running now, or whose last attempt did not
    succeed, are left out and listed. `ductaflow unpack FILE` in another
    checkout places them there, up to date where its files are the same.

    \b
    Examples:
      ductaflow pack runs -o results.tar.gz
      ductaflow pack runs/simulate runs/analyse -o study.tar.gz
      ductaflow pack runs/simulate/calm runs/simulate/stormy -o two.tar.gz
    """
    summary = ductaflow.pack_runs(paths, output)
    for run_dir, why in summary["skipped"]:
        click.echo(f"left out {shown(run_dir)}: {why}")
    for note in summary["notes"]:
        click.echo(f"note: {note}")
    size = summary["bytes"]
    size = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size:,} bytes"
    click.echo(f"wrote {shown(summary['archive'])}: {summary['instances']} instances, {summary['files']} "
               f"files, {size}")  # fmt: skip
    return EXIT_OK


@click.command(context_settings=CONTEXT)
@click.argument("archive", type=click.Path(path_type=Path))
@click.option("--project-root", type=click.Path(path_type=Path), metavar="DIR",
              help="The checkout to unpack into (default: the project holding the working "
                   "directory).")  # fmt: skip
@click.option("--runs-dir", type=click.Path(path_type=Path), metavar="DIR",
              help="The runs folder, relative to the project root (default: the bundle's, usually "
                   "runs).")  # fmt: skip
@click.option("--replace", is_flag=True,
              help="Put the bundle's instance in place of a local success of another "
                   "fingerprint.")  # fmt: skip
@click.option("--with-sources", is_flag=True,
              help="Also write the bundle's flows and modules that the checkout lacks (never over a "
                   "file).")  # fmt: skip
@debug_option
def unpack(archive: Path, project_root: Path | None, runs_dir: Path | None, replace: bool,
           with_sources: bool) -> int:  # fmt: skip
    """Place the instances of the run bundle ARCHIVE in this checkout's runs folder.

    The archive is checked whole first (member names, links, checksums): a
    fault refuses it and nothing is written. An instance already here with
    the same fingerprint is left as it is; one holding another result is
    refused unless --replace. The checkout's flows and modules are never
    overwritten: those that differ from the bundle's are listed, and `why`
    says which instances that makes outdated.

    \b
    Examples:
      ductaflow unpack results.tar.gz
      ductaflow unpack results.tar.gz --project-root ~/study --with-sources
    """
    summary = ductaflow.unpack_runs(archive, project_root=project_root, runs_dir=runs_dir, replace=replace,
                                    with_sources=with_sources)  # fmt: skip
    instances = summary["instances"]
    steps = sorted({i["run_dir"].parent for i in instances})  # a step at once reads through the run index
    checks = ductaflow.check_instances(steps) if steps else None
    here = {} if checks is None else {row.run_dir: row for row in checks.itertuples()}
    rows = []
    for i in instances:
        check = here.get(str(i["run_dir"]))
        state = "?" if check is None else "up to date" if check.outdated is False else check.reason
        rows.append({"instance": f"{i['step']}/{i['instance']}", "action": i["action"], "here": state,
                     "note": i["note"]})  # fmt: skip
    counts = {action: sum(i["action"] == action for i in instances) for action in dict.fromkeys(
        i["action"] for i in instances)}  # fmt: skip
    print_table(rows, f"{shown(summary['archive'])} -> {shown(summary['runs_dir'])}: "
                + ", ".join(f"{n} {a}" for a, n in counts.items()))  # fmt: skip
    states = summary["sources"]
    same = sum(s["state"] == "same" for s in states)
    for source in states:
        if source["state"] == "differs":
            click.echo(f"source {source['path']}: differs from the bundle's (kept; `ductaflow why` names "
                       "the instances it makes outdated)")  # fmt: skip
        elif source["state"] == "missing":
            click.echo(f"source {source['path']}: not in this checkout (--with-sources writes it)")
        elif source["state"] == "written":
            click.echo(f"source {source['path']}: written from the bundle")
    click.echo(f"sources: {same} of {len(states)} the same as the bundle's")
    return EXIT_OK
