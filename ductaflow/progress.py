"""What a conductor shows while it runs: a live bar in a terminal, one line per instance otherwise.

The scheduling loop reports events (instances skipped, started, finished);
a display only listens. ``rich`` is imported only for the terminal bar.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Protocol

from .exceptions import InstancesFailedError
from .runrecord import RunStatus

#: The columns of the DataFrame a conductor call returns, one row per instance.
COLUMNS = ["instance", "status", "reason", "duration", "run_dir", "error", "attempts"]
RESTORED = "restored from cache"  # how the reason of an instance restored from a cache begins


@dataclass
class InstanceRow:
    """One instance's outcome in a conductor's results."""

    instance: str
    status: RunStatus  # success | failed | skipped | interrupted (pending in a dry run)
    reason: str
    duration: float | None
    run_dir: str
    error: str | None = None
    html: str | None = None
    attempts: int = 0  # attempts this call made (more than 1: tried again after a fault)
    halt: bool = False  # start no more instances: they would fail the same way (the disk is full)


class Display(Protocol):
    """Receives a conductor's events."""

    def begin(self, total: int, skipped: int) -> None: ...
    def started(self, name: str) -> None: ...
    def requeued(self, name: str) -> None: ...
    def finished(self, row: InstanceRow) -> None: ...
    def interrupting(self) -> None: ...
    def end(self, rows: list[InstanceRow], elapsed: float) -> None: ...


def make_display(progress: bool, step: str, *, queued: bool = False) -> Display:
    """The display for ``progress``: silent, a rich bar on a terminal, or plain lines.

    ``queued``: started instances may wait in an executor's queue, so the bar
    counts them as "in flight" rather than "running".
    """
    if not progress:
        return _Silent()
    if sys.stdout.isatty():
        return _Bar(step, "in flight" if queued else "running")
    return _Lines(step)


class _Silent:
    def begin(self, total: int, skipped: int) -> None:
        pass

    def started(self, name: str) -> None:
        pass

    def requeued(self, name: str) -> None:
        pass

    def finished(self, row: InstanceRow) -> None:
        pass

    def interrupting(self) -> None:
        pass

    def end(self, rows: list[InstanceRow], elapsed: float) -> None:
        pass


class _Lines(_Silent):
    """One plain line per finished instance, numbered among those that run: for logs, pipes and CI."""

    def __init__(self, step: str) -> None:
        self.step, self.total, self.done = step, 0, 0

    def begin(self, total: int, skipped: int) -> None:
        self.total, self.done = total - skipped, 0  # up-to-date instances are counted once, here
        print(f"{self.step}: {count(total)}, {total - skipped} to run, {skipped} up to date", flush=True)

    def finished(self, row: InstanceRow) -> None:
        self.done += 1
        width = len(str(self.total))
        took = f"{row.duration:.1f} s" if row.duration is not None else "-"
        line = f"[{self.done:>{width}}/{self.total}] {row.status:<11} {row.instance}  {took}  ({row.reason})"
        print(line + (f"\n    {row.error}" if row.error else ""), flush=True)

    def interrupting(self) -> None:
        print("interrupted: stopping the running instances...", flush=True)

    def end(self, rows: list[InstanceRow], elapsed: float) -> None:
        print(summary(rows, self.step, elapsed), flush=True)


class _Bar(_Lines):
    """A live rich progress bar: done/total of the instances that run, running, failed, skipped, time left."""

    def __init__(self, step: str, running_label: str = "running") -> None:
        super().__init__(step)
        self.running_label = running_label
        self.bar: Any = None
        self.counts = {"running": 0, "failed": 0, "skipped": 0}

    def begin(self, total: int, skipped: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.counts["skipped"] = skipped
        fields = (
            f"{self.running_label} {{task.fields[running]}} · failed {{task.fields[failed]}}"
            " · skipped {task.fields[skipped]}"
        )
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(fields),
            TextColumn("· left"), TimeRemainingColumn(),
        )  # fmt: skip
        self.task = self.bar.add_task(self.step, total=total - skipped, **self.counts)
        self.bar.start()

    def started(self, name: str) -> None:
        self.counts["running"] += 1
        self.bar.update(self.task, **self.counts)

    def requeued(self, name: str) -> None:  # another process holds it: it waits for the end
        self.counts["running"] -= 1
        self.bar.update(self.task, **self.counts)

    def finished(self, row: InstanceRow) -> None:
        self.counts["running"] -= 1
        if row.status is RunStatus.FAILED:
            self.counts["failed"] += 1
            self.bar.console.print(f"[red]failed[/red] {row.instance}: {row.error}")
        self.bar.update(self.task, advance=1, **self.counts)

    def interrupting(self) -> None:
        self.bar.console.print("[yellow]interrupted: stopping the running instances...[/yellow]")

    def end(self, rows: list[InstanceRow], elapsed: float) -> None:
        self.bar.stop()
        print(summary(rows, self.step, elapsed), flush=True)


def summary(rows: list[InstanceRow], step: str, elapsed: float) -> str:
    """Counts by status, then each failed instance with its first error line and report."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    order = [RunStatus.SUCCESS, RunStatus.SKIPPED, RunStatus.FAILED, RunStatus.INTERRUPTED]
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    restored = sum(row.status is RunStatus.SUCCESS and row.reason.startswith(RESTORED) for row in rows)
    if restored:  # of the successes: how many came from the cache, not run here
        parts[0] += f" ({restored} restored from cache)"
    lines = [f"{step}: {count(len(rows))} in {elapsed:.1f} s: {', '.join(parts) or 'nothing to do'}"]
    failed = [row for row in rows if row.status is RunStatus.FAILED]
    for row in failed[:20]:
        lines.append(f"  failed {row.instance}: {row.error}")
        lines.append(f"         {row.html or row.run_dir}")
    if len(failed) > 20:
        lines.append(f"  ... and {count(len(failed) - 20, 'more failed instance')}")
    retried = [row for row in rows if row.attempts > 1]
    if retried:
        shown = ", ".join(f"{row.instance} ({row.attempts} attempts, {row.status})" for row in retried[:20])
        more = f" and {len(retried) - 20} more" if len(retried) > 20 else ""
        lines.append(f"  retried after a fault: {shown}{more}")
    return "\n".join(lines)


def count(n: int, noun: str = "instance") -> str:
    """``1 instance``, ``2 instances``: a number and its noun, singular or plural."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def rows_frame(rows: list[InstanceRow]) -> Any:
    """The DataFrame of a conductor call's rows (:data:`COLUMNS`), statuses as plain text."""
    import pandas as pd

    frame = pd.DataFrame({c: [getattr(r, c) for r in rows] for c in COLUMNS}, columns=COLUMNS)
    frame["status"] = [str(r.status) for r in rows]  # plain text, not RunStatus members
    return frame


def failures_error(step: str, failed: list[InstanceRow]) -> InstancesFailedError:
    """The error a call with ``raise_on_failure`` raises: the failed instances, their errors and pages."""
    listed = "\n".join(f"  {row.instance}: {row.error}  ({row.html or row.run_dir})" for row in failed[:50])
    more = f"\n  ... and {len(failed) - 50} more" if len(failed) > 50 else ""
    return InstancesFailedError(
        f"{count(len(failed))} of step {step!r} failed:\n{listed}{more}",
        step=step,
        failed=[row.instance for row in failed],
    )
