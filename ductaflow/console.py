"""What the ``ductaflow`` command shows: tables (rich on a terminal, aligned text when piped), an
instance's explanation, times, durations and paths. Printing only; no decisions."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click

import ductaflow

from .files import shown_path as shown
from .progress import count

UNKNOWN = "unknown"  # the status of a folder without a readable run record


def print_plan(frame: Any) -> None:
    """Print a dry run's frame: each instance, whether it would run or be skipped, and why."""
    rows = [{"instance": r.instance, "action": "run" if r.status == ductaflow.RunStatus.PENDING else "skip",
             "reason": r.reason, "run_dir": shown(r.run_dir)} for r in frame.itertuples()]  # fmt: skip
    print_table(rows, f"{count(len(rows))}, {sum(r['action'] == 'run' for r in rows)} would run")


def print_status(records: list[dict[str, Any]], counts: dict[str, int], total: int | None = None) -> None:
    """Print ``ductaflow status``: one row per instance under a title counting each status.

    ``total``: how many instances there are when ``records`` holds only the first of them.
    """
    rows = [status_row(r) for r in records]
    total = len(rows) if total is None else total
    title = f"{count(total)}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) if total else (
        "no instances")  # fmt: skip
    print_table(rows, title)
    if total > len(rows):
        click.echo(f"... and {total - len(rows):,} more not shown: --limit 0 shows every row, --outdated "
                   "only those that would run again, --json all of them for programs")  # fmt: skip


def status_row(r: dict[str, Any]) -> dict[str, str]:
    """One instance of ``ductaflow status`` (a record of check_instances' frame) as table cells."""
    outdated = "orphaned" if r.get("orphaned") else {True: "yes", False: "no"}.get(r["outdated"], "?")
    return {"step": r["step"], "instance": r["instance"], "status": r["status"],
            "started": when(r["started_at"]), "took": took(r["duration_s"]), "outdated": outdated,
            "why": r["reason"] + _failure(r)}  # fmt: skip


def print_would_run(records: list[dict[str, Any]]) -> None:
    """Print ``ductaflow why`` of a step or runs folder: per step, each instance, would it run, and why."""
    steps: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        steps.setdefault(str(Path(r["run_dir"]).parent), []).append(r)
    for number, (step_dir, rows) in enumerate(steps.items()):
        cells = [{"instance": r["instance"], "would run": would_run(r), "why": r["reason"] + _failure(r)}
                 for r in rows]  # fmt: skip
        if number:
            click.echo("")
        running = sum(cell["would run"] == "yes" for cell in cells)
        print_table(cells, f"{shown(step_dir)}: {count(len(cells))}, {running} would run")


def would_run(r: dict[str, Any]) -> str:
    """``yes``, ``no`` or ``?``: whether a sweep would run the instance again (an orphan: no)."""
    return "no" if r.get("orphaned") else {True: "yes", False: "no"}.get(r["outdated"], "?")


def _failure(r: dict[str, Any]) -> str:
    return f" ({r['error']})" if r["error"] and r["status"] != ductaflow.RunStatus.SUCCESS else ""


def explanation(check: Any) -> list[str]:
    """What ``ductaflow why`` says of an :class:`InstanceCheck`, line by line."""
    lines = [f"{shown(check.run_dir)}: {check.status}, started {when(check.started_at)}, "
             f"took {took(check.duration_s)}"]  # fmt: skip
    if check.error and check.status != ductaflow.RunStatus.SUCCESS:
        lines.append(f"last error: {check.error}")
    if check.orphaned:
        lines.append(check.reason)
    elif check.outdated is None:
        lines.append(f"cannot tell: {check.reason}")
    elif check.outdated:
        lines.append(f"outdated, it would run again: {check.reason}")
    else:
        lines.append("up to date: nothing changed since its last successful run")
    if check.compared_with and check.compared_with != check.run_dir:
        lines.append(f"compared with the last successful run, kept in {shown(check.compared_with)}")
    width = max((len(part) for part, _ in check.details), default=0)
    return lines + [f"  {part:<{width}} {state}" for part, state in check.details]


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """Print ``rows`` under ``title``: a rich table on a terminal; aligned plain text when piped."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in rows[0] if rows else []:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(styled(k, str(v)) for k, v in row.items()))
        Console().print(table)
        return
    click.echo(title)
    if not rows:
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    for line in [{c: c for c in columns}, *rows]:
        click.echo("  ".join(str(line[c]).ljust(widths[c]) for c in columns).rstrip())


def styled(column: str, value: str) -> str:
    """A cell as rich markup: statuses in colour, other text escaped."""
    Status = ductaflow.RunStatus
    colours = {
        Status.SUCCESS: "green",
        Status.FAILED: "red",
        Status.CRASHED: "red",
        Status.INTERRUPTED: "yellow",
        "yes": "yellow",  # outdated
    }
    colour = colours.get(value) if column in ("status", "outdated", "action", "would run") else None
    return f"[{colour}]{value}[/{colour}]" if colour else value.replace("[", r"\[")


def when(iso: str | None) -> str:
    """An ISO time as local ``YYYY-MM-DD HH:MM:SS``; ``-`` when unknown."""
    if not iso:
        return "-"
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def took(seconds: float | None) -> str:
    """A duration in seconds, or minutes past two; ``-`` when unknown."""
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
