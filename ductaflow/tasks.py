"""Tasks: what a worker runs for one instance, wherever it runs (a thread here, a process, a cluster).

The conductor's one scheduling loop hands each instance to an executor
(:mod:`ductaflow.executors`) as a :class:`Task`: everything the instance
needs, picklable, so it can cross to a worker process or another machine.
:func:`run_task` runs under the instance's lock (a file lock in the runs
folder, so processes on several machines sharing that folder agree), decides
again whether the instance must run, and runs it (:mod:`ductaflow.instance`).
It never raises: every outcome is an :class:`InstanceRow`, or ``None`` when
another process holds the instance. A failure of ductaflow itself (a bug,
not the flow's error) keeps its traceback, in the row and in the instance's
log, so that it can be reported.

Threads of this process see the conductor's stop event directly. Tasks sent
elsewhere (:func:`run_task_elsewhere`) watch a stop file in the runs folder
instead, which the conductor creates on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .caching import push_instance, restore_instance
from .config import JSONValue
from .environment import Environment, environment_reason, kernel_environment
from .exceptions import DiskFullError, DuctaflowError, FlowExecutionError, InstanceBusyError
from .fingerprint import Fingerprint, why_run
from .flow import Flow
from .instance import RunOptions, prepare_attempt
from .progress import InstanceRow
from .rundir import LOG_NAME, current_status, is_locked, lock_instance, state_dir, unreadable_record
from .runrecord import RunStatus, error_line, read_record
from .workersignals import stop_on_sigterm

STOP_POLL_S = 0.25  # how often a task sent elsewhere looks for the stop file
START_GRACE_S = 2.0  # after Ctrl-C, how long a held instance may take to show this call's record
SHARE_WAIT_S = 30.0  # how long a worker looks for the conductor's marker before giving up


@dataclass
class Task:
    """One instance to execute, with everything a worker anywhere needs to run it."""

    flow: Flow
    step: str
    name: str
    config: dict[str, JSONValue]
    fingerprint: Fingerprint
    run_dir: Path
    reason: str
    options: RunOptions
    force: bool
    sweep_id: str
    started_at: str  # when the conductor call began (ISO, UTC)
    git: Any
    wait_for_lock: bool = False
    stop_file: Path | None = None  # tasks sent elsewhere stop when this file exists
    retries: int = 0  # times an attempt that failed by a fault (see ExecutionError.fault) is tried again
    retry_on_error: bool = False  # also try again after the flow's own exception
    only_failed: bool = False  # run only if the last attempt failed, crashed or was interrupted
    skip_reason: str = "unchanged"  # shown for an instance the plan does not run
    seen: str | None = None  # the attempt whose record the plan read (attempt_id)
    replicate: int | None = None  # which replicate of its row (replicates=N), for the record
    replicate_of: str | None = None  # that row's instance name


def decide(
    record: dict[str, Any] | None,
    run_dir: Path,
    fingerprint: Fingerprint,
    config: dict[str, JSONValue],
    *,
    force: bool,
    lock_held: bool,
    environment: Environment | None = None,
) -> str | None:
    """Why the instance must run, or ``None`` when its last success (``record``, as read) is up to date.

    ``environment`` (:func:`environment_today`) also makes a success recorded
    in another environment run again: a comparison of digests.
    """
    if record is None and (problem := unreadable_record(run_dir)) is not None:
        return f"previous attempt left an unreadable record ({problem})"
    status = current_status(record, run_dir, lock_held=lock_held)
    if force:
        return "forced"
    old_config = None
    if record and (record.get("fingerprint_parts") or {}).get("config_hash") != fingerprint.config_hash:
        old_config = record.get("config")
    reason = why_run(record, status, fingerprint, old_config, config)
    if reason is None and record is not None and environment is not None:
        return environment_reason(record, run_dir, environment)
    return reason


def environment_today(options: RunOptions) -> Environment | None:
    """The environment flows run in now, when ``rerun_on_env_change`` asks to compare it; else ``None``."""
    if not options.rerun_on_env_change:
        return None
    captured = kernel_environment(options.kernel_name)
    return None if isinstance(captured, str) else captured


def run_task(task: Task, stop: threading.Event) -> InstanceRow | None:
    """Run one instance under its lock; ``None`` when another process holds it. Never raises.

    One instance's trouble (an unwritable folder...) never stops the others:
    it fails that instance. An error of ductaflow itself keeps its traceback
    in the row's error and in the instance's ``log.txt``.
    """
    try:
        return _run_locked(task, stop)
    except DiskFullError as exc:  # its lock could not be made: the next instances' neither
        return _halt(_row(task, RunStatus.FAILED, error=str(exc).splitlines()[0]))
    except (DuctaflowError, OSError, KeyboardInterrupt) as exc:
        return _row(task, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
    except BaseException as exc:
        return _row(task, RunStatus.FAILED, error=internal_error(exc, task.run_dir / LOG_NAME))


def internal_error(exc: BaseException, log: Path | None = None) -> str:
    """The report of an error in ductaflow itself: what to do, and the full traceback.

    The traceback is also appended to ``log`` when that file exists (the
    instance's ``log.txt``), best effort.
    """
    text = "".join(traceback.format_exception(exc)).rstrip()
    if log is not None and log.exists():
        with contextlib.suppress(OSError), open(log, "a", encoding="utf-8") as fh:
            fh.write(f"\n[ductaflow] internal error, please report it:\n{text}\n")
    return f"internal error in ductaflow, please report it: {type(exc).__name__}: {exc}\n{text}"


def run_task_elsewhere(task: Task) -> InstanceRow | None:
    """:func:`run_task` in a worker process, maybe on another machine: the stop event is a file."""
    stop = threading.Event()
    watcher = _StopWatcher(task.stop_file, stop)
    try:
        if stop.is_set():
            return not_started(task)
        problem = _unshared(task)
        if problem:
            return _row(task, RunStatus.FAILED, error=problem)
        with stop_on_sigterm(stop):  # a batch system's SIGTERM: recorded interrupted, not crashed
            return run_task(task, stop)
    finally:
        watcher.close()


def _unshared(task: Task) -> str | None:
    """Why this worker cannot work on the conductor's runs folder, or ``None``.

    The conductor writes a marker for each call (:func:`sweep_marker`); a
    worker that cannot see it has another folder at that path (a node's own
    disk, an unshared copy). A filesystem's cache may hide a new file for a
    while, so the worker looks for up to :data:`SHARE_WAIT_S`, once per call.
    """
    known = _SEEN.get(task.sweep_id)
    if known is None:
        marker = sweep_marker(task.options.runs_dir, task.step, task.sweep_id)
        deadline = time.monotonic() + SHARE_WAIT_S
        while not (known := marker.exists()) and time.monotonic() < deadline:
            time.sleep(0.5)
        _SEEN[task.sweep_id] = known
    if known:
        return None
    return (f"worker host {socket.gethostname()} cannot see {task.options.runs_dir}/ as the conductor "
            "does: the project and its runs folder must be on a filesystem shared by the conductor "
            "and every worker, at the same path.")  # fmt: skip


_SEEN: dict[str, bool] = {}  # per conductor call: whether this worker process sees its runs folder


def settle_cancelled(task: Task, deadline: float) -> InstanceRow:
    """The outcome of a task stopped on Ctrl-C, read from the instance's record.

    A task already running elsewhere goes on until it sees the stop file; its
    record says how it ended. Waits until ``deadline`` (``time.monotonic``)
    for it to let go of the instance.
    """
    grace = min(deadline, time.monotonic() + START_GRACE_S)  # a task may be about to write its record
    while True:
        record = read_record(task.run_dir) or {}
        ours = record.get("sweep_id") == task.sweep_id
        status = current_status(record, task.run_dir) if ours else None
        busy = status is RunStatus.RUNNING or (not ours and is_locked(task.run_dir))
        if not busy or time.monotonic() > (deadline if ours else grace):
            break
        time.sleep(0.2)
    if not ours:
        return not_started(task)
    if status is RunStatus.RUNNING:
        return _row(task, RunStatus.INTERRUPTED, error="interrupted; still stopping on its worker")
    return _from_record(task, record, status)


def _from_record(task: Task, record: dict[str, Any], status: Any) -> InstanceRow:
    """The row for an attempt of this conductor call that has ended, as its record tells."""
    if status is RunStatus.SUCCESS:
        outcome, error = RunStatus.SUCCESS, None
    elif status is RunStatus.FAILED:
        outcome, error = RunStatus.FAILED, error_line(record) or f"the instance ended {status}"
    else:
        outcome = RunStatus.INTERRUPTED
        error = "interrupted by the user" if status is RunStatus.INTERRUPTED else (
            error_line(record) or f"the instance ended {status}")  # fmt: skip
    html = _html_of(task, record) if outcome is not RunStatus.INTERRUPTED else None
    return _row(task, outcome, duration=record.get("duration_s"), error=error, html=html)


def not_started(task: Task) -> InstanceRow:
    """The row of an instance Ctrl-C stopped before it began."""
    return InstanceRow(task.name, RunStatus.INTERRUPTED, "not started", None, str(task.run_dir))


def stop_file(runs_dir: Path, step: str, sweep_id: str) -> Path:
    """Where a conductor call signals its tasks elsewhere to stop."""
    return state_dir(runs_dir / step) / f"stop-{sweep_id}"


def sweep_marker(runs_dir: Path, step: str, sweep_id: str) -> Path:
    """The file a conductor call writes so that its workers can check they share its runs folder."""
    return state_dir(runs_dir / step) / f"sweep-{sweep_id}"


class _StopWatcher:
    """Sets ``stop`` once ``path`` exists; checks at once, then every :data:`STOP_POLL_S`."""

    def __init__(self, path: Path | None, stop: threading.Event) -> None:
        self.path, self.stop, self.done = path, stop, threading.Event()
        if path is None:
            return
        if path.exists():
            stop.set()
            return
        threading.Thread(target=self._watch, name="ductaflow-stop-watch", daemon=True).start()

    def _watch(self) -> None:
        while not self.done.wait(STOP_POLL_S):
            if self.path is not None and self.path.exists():
                self.stop.set()
                return

    def close(self) -> None:
        self.done.set()


def _run_locked(task: Task, stop: threading.Event) -> InstanceRow | None:
    if stop.is_set():
        return not_started(task)
    lock = _lock(task, stop)
    if lock is None:
        return None if not stop.is_set() else not_started(task)
    with lock:
        found = read_record(task.run_dir)
        record = found or {}
        if record.get("sweep_id") == task.sweep_id:  # an executor's retry (its worker died): not again
            status = current_status(record, task.run_dir, lock_held=True)
            return _died(task, record) if status is RunStatus.CRASHED else _from_record(task, record, status)
        today = environment_today(task.options)
        reason = decide(found, task.run_dir, task.fingerprint, task.config, force=task.force, lock_held=True,
                        environment=today)  # fmt: skip
        if reason is None or (task.force and _done_since_planned(task, record)):
            return _row(task, RunStatus.SKIPPED, reason="done by another process")
        if task.only_failed and not last_attempt_failed(found, task.run_dir, lock_held=True):
            return _row(task, RunStatus.SKIPPED, reason="done by another process")
        cache = task.options.cache
        if cache is not None and not task.force:
            restored, reason = _from_cache(task, cache, reason, today)
            if restored is not None:
                return restored
        row = _attempts(task, reason, stop)
        if cache is not None and row.status is RunStatus.SUCCESS:
            push_instance(cache, task.run_dir)
        return row


def _from_cache(
    task: Task, cache: str, reason: str, today: Environment | None
) -> tuple[InstanceRow | None, str]:
    """The row of the instance restored from ``cache``, else ``None`` and why it runs (and why its entry
    was skipped, when it was). With ``today`` (rerun_on_env_change), only an entry made in that
    environment is restored."""
    started = time.monotonic()
    asked = {
        "config_source": task.options.config_source,
        "sweep_id": task.sweep_id,
    }  # this call's, not theirs
    record, skipped = restore_instance(cache, task.run_dir, task.fingerprint.digest, asked=asked,
                                       project_root=task.options.project_root, runs_dir=task.options.runs_dir,
                                       environment=today.sha256 if today is not None else None,
                                       html=task.options.export_html)  # fmt: skip
    if record is None:
        return None, reason if skipped is None else f"{reason}; cache entry skipped ({skipped})"
    duration = round(time.monotonic() - started, 3)
    return _row(task, RunStatus.SUCCESS, record["reason"], duration, html=_html_of(task, record)), reason


def _html_of(task: Task, record: dict[str, Any]) -> str | None:
    """The path of the HTML page ``record`` names, when it exists."""
    html = (record.get("outputs") or {}).get("html")
    return str(task.run_dir / html) if html and (task.run_dir / html).exists() else None


#: States of a last attempt that ``only_failed`` runs again.
FAILED_STATES = frozenset({RunStatus.FAILED, RunStatus.CRASHED, RunStatus.INTERRUPTED})


def last_attempt_failed(record: dict[str, Any] | None, run_dir: Path, *, lock_held: bool = False) -> bool:
    """Whether the instance's last attempt (``record``, as read) failed, crashed, was interrupted or left
    an unreadable record."""
    if record is None:
        return unreadable_record(run_dir) is not None
    return current_status(record, run_dir, lock_held=lock_held) in FAILED_STATES


def _lock(task: Task, stop: threading.Event) -> Any:
    while True:
        try:
            return lock_instance(task.run_dir)
        except InstanceBusyError:
            if not task.wait_for_lock or stop.is_set():
                return None
            time.sleep(0.2)


def _died(task: Task, record: dict[str, Any]) -> InstanceRow:
    where = f"host {record.get('host')}, pid {record.get('pid')}"
    return _row(task, RunStatus.FAILED, error=(
        f"the worker running it ({where}) died mid-instance, so it reads as crashed. "
        "Run the sweep again to retry it."))  # fmt: skip


def _done_since_planned(task: Task, record: dict[str, Any]) -> bool:
    """A success of another attempt than the one the plan saw: another conductor ran it meanwhile.

    Records are told apart by what wrote them (call and start), never by
    comparing times, which two machines' clocks would get wrong.
    """
    return record.get("status") == RunStatus.SUCCESS and attempt_id(record) != task.seen


def attempt_id(record: dict[str, Any] | None) -> str | None:
    """Which attempt wrote ``record``: its conductor call and start time, ``None`` for no record."""
    if not record:
        return None
    return f"{record.get('sweep_id')}@{record.get('started_at')}@{record.get('pid')}@{record.get('host')}"


def _attempts(task: Task, reason: str, stop: threading.Event) -> InstanceRow:
    """The instance's attempt, and up to ``task.retries`` more after a fault; each earlier one is kept."""
    number = 1
    while True:
        row, retry = _attempt(task, reason, stop, number)
        if not retry or number > task.retries or stop.is_set():
            row.attempts = number
            return row
        number += 1


def _attempt(task: Task, reason: str, stop: threading.Event, number: int) -> tuple[InstanceRow, bool]:
    """One attempt's row, and whether it may be tried again."""
    try:
        attempt = prepare_attempt(task.flow.path, task.config, task.run_dir, task.step, task.name,
                                  task.options, flow=task.flow, fingerprint=task.fingerprint,
                                  stop=stop, git=task.git, sweep_id=task.sweep_id)  # fmt: skip
        attempt.reason = reason  # recorded in run.json as the reason this attempt runs
        attempt.number = number
        attempt.replicate, attempt.replicate_of = task.replicate, task.replicate_of
        result = attempt.run()
    except FlowExecutionError as exc:
        error = f"{exc.error_name}: {exc.error_message}".splitlines()[0]
        retry = bool(getattr(exc, "fault", False)) or task.retry_on_error
        return _row(task, RunStatus.FAILED, reason, _duration(task), error, exc.html), retry
    except KeyboardInterrupt:
        return _row(task, RunStatus.INTERRUPTED, reason, _duration(task), "interrupted by the user"), False
    except DiskFullError as exc:  # the next instances would find no room either
        return _halt(_row(task, RunStatus.FAILED, reason, error=str(exc).splitlines()[0])), False
    except (DuctaflowError, OSError) as exc:
        return _row(task, RunStatus.FAILED, reason, error=str(exc).splitlines()[0]), False
    html = str(result.html) if result.html else None
    return _row(task, RunStatus.SUCCESS, reason, result.duration, html=html), False


def _halt(row: InstanceRow) -> InstanceRow:
    """``row``, marked so that the conductor starts no further instance."""
    row.halt = True
    return row


def _duration(task: Task) -> float | None:
    return (read_record(task.run_dir) or {}).get("duration_s")


def _row(task: Task, status: RunStatus, reason: str | None = None, duration: float | None = None,
         error: str | None = None, html: str | None = None) -> InstanceRow:  # fmt: skip
    return InstanceRow(task.name, status, reason or task.reason, duration, str(task.run_dir), error, html)
