"""Many instances: a table becomes instances; only new or changed ones run, in parallel.

One scheduling loop submits instances to a ``concurrent.futures`` executor
(threads by default: each instance's work happens in its own kernel process)
and reports events to a display. Each instance is decided twice: once for the
plan shown up front, and again under its lock just before it runs, so two
conductors on the same table run each instance once.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import engine
from .config import JSONValue, config_hash
from .exceptions import ConfigError, DuctaflowError, FlowExecutionError, InstancesFailedError
from .fingerprint import Fingerprint, InputHasher, why_run
from .flow import Flow, read_flow
from .instance import (
    current_status,
    kernel_label,
    lock_instance,
    make_options,
    prepare_attempt,
)
from .names import check_name
from .progress import Display, InstanceRow, make_display
from .runrecord import git_info, now_iso, read_record
from .table import instances_from_table

COLUMNS = ["instance", "status", "reason", "duration", "run_dir", "error"]
_OPTIONS = {"kernel_name", "timeout", "export_html", "log_output", "runs_dir", "config_source"}


@dataclass
class _Plan:
    name: str
    config: dict[str, JSONValue]
    fingerprint: Fingerprint
    run_dir: Path
    reason: str | None  # why it runs; None: up to date
    wait_for_lock: bool = False


def run_instances(
    flow: str | os.PathLike[str],
    table: Any,
    *,
    step_name: str | None = None,
    name_column: str = "instance_name",
    base_config: Mapping[str, Any] | None = None,
    jobs: int | None = None,
    force: bool = False,
    inputs: Sequence[str | os.PathLike[str]] | None = None,
    progress: bool = True,
    raise_on_failure: bool = False,
    dry_run: bool = False,
    report: bool = False,
    project_root: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Any:
    """Run ``flow`` once per row of ``table`` into ``runs/<step>/<instance>/``; return a DataFrame.

    ``table`` is a DataFrame or a list of dicts: columns become config keys
    (dotted columns nest), merged over ``base_config``. Instance names come
    from ``name_column``, else from the columns whose values vary. Instances
    whose last success has the same fingerprint (flow, config, ``inputs``,
    kernel) are skipped unless ``force``. ``inputs`` lists files, directories
    or globs (relative to the project root) whose content the instances
    depend on; an entry naming a config key (``"input_csv"``) means the
    path(s) that key holds in each row. ``jobs`` instances run at once
    (default: the number of CPUs). ``options`` pass to each instance:
    ``kernel_name``, ``timeout``, ``export_html``, ``log_output``,
    ``runs_dir``, ``config_source`` (see :func:`run_step_flow`).

    Returns one row per instance: instance, status (success, failed, skipped,
    interrupted), reason, duration, run_dir, error. Ctrl-C stops starting
    instances, interrupts the running ones and returns. With
    ``raise_on_failure``, failures raise :class:`InstancesFailedError` after
    all instances have finished. With ``dry_run`` nothing runs: the rows say
    ``pending`` (with the reason it would run) or ``skipped``. With
    ``report=True`` the runs folder's ``index.html`` (:func:`build_report`)
    is refreshed when the instances have finished.

    >>> results = run_instances("flow/make_data.py", [{"noise": 1.0}, {"noise": 9.0}],
    ...                         base_config=base, progress=False)  # doctest: +SKIP
    """
    started = time.monotonic()
    conductor = _Conductor(flow, step_name, jobs, force, project_root, options)
    plans = conductor.plan(table, name_column, base_config, inputs or [])
    if dry_run:
        rows = [InstanceRow(p.name, "pending" if p.reason else "skipped", p.reason or "unchanged", None,
                            str(p.run_dir)) for p in plans]  # fmt: skip
        return _frame(rows)
    display = make_display(progress, conductor.step)
    rows = conductor.run(plans, display)
    display.end(rows, time.monotonic() - started)
    if report:
        _refresh_report(conductor.options.runs_dir)
    frame = _frame(rows)
    failed = [r for r in rows if r.status == "failed"]
    if raise_on_failure and failed:
        raise _failures(conductor.step, failed)
    return frame


class _Conductor:
    def __init__(self, flow: Any, step_name: str | None, jobs: int | None, force: bool, project_root: Any,
                 options: dict[str, Any]) -> None:  # fmt: skip
        unknown = set(options) - _OPTIONS
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; run_instances accepts {sorted(_OPTIONS)}")
        self.options = make_options(project_root, **options)
        self.flow: Flow = read_flow(flow)
        engine.check_kernel(self.options.kernel_name)
        self.step = check_name(step_name or self.flow.stem, "step name")
        self.jobs = jobs if jobs is not None else (os.cpu_count() or 1)
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.force = force
        self.stop = threading.Event()
        self.started_at = now_iso()
        self.git = git_info(self.options.project_root)  # once per call, not per instance
        self.running: dict[Future[InstanceRow | None], _Plan] = {}
        self.deferred: list[_Plan] = []  # held by another process: retried when nothing else is left

    def plan(self, table: Any, name_column: str, base: Any, inputs: Sequence[Any]) -> list[_Plan]:
        """Validate every row and decide what runs, writing nothing."""
        hasher = InputHasher(self.options.project_root)
        kernel = kernel_label(self.options.kernel_name)
        step_dir = self.options.runs_dir / self.step
        plans = []
        for name, config in instances_from_table(table, name_column=name_column, base_config=base):
            where = f" (instance {name!r})"
            hashes = hasher.hash_inputs(_row_inputs(inputs, config, where), where)
            fingerprint = Fingerprint(self.flow.sha256, config_hash(config), hashes, kernel)
            run_dir = step_dir / name
            plans.append(_Plan(name, config, fingerprint, run_dir, None))
        for plan in plans:
            plan.reason = self._why(plan, lock_held=False)
        return plans

    def _why(self, plan: _Plan, *, lock_held: bool) -> str | None:
        record = read_record(plan.run_dir)
        status = current_status(record, plan.run_dir, lock_held=lock_held)
        if self.force:
            return "forced"
        old_config = None
        if (
            record
            and (record.get("fingerprint_parts") or {}).get("config_hash") != plan.fingerprint.config_hash
        ):
            old_config = record.get("config")
        return why_run(record, status, plan.fingerprint, old_config, plan.config)

    def run(self, plans: list[_Plan], display: Display) -> list[InstanceRow]:
        """Execute the plans that must run, ``jobs`` at a time; rows come back in table order."""
        rows: dict[str, InstanceRow] = {}
        for plan in plans:
            if plan.reason is None:
                rows[plan.name] = InstanceRow(plan.name, "skipped", "unchanged", None, str(plan.run_dir))
        display.begin(len(plans), len(rows))
        queue = deque(p for p in plans if p.reason is not None)
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="ductaflow-instance") as pool:
            try:
                self._loop(pool, queue, rows, display)
            except KeyboardInterrupt:
                self._interrupt(queue, rows, display)
        return [rows[p.name] for p in plans]

    def _loop(self, pool: ThreadPoolExecutor, queue: deque[_Plan], rows: dict[str, InstanceRow],
              display: Display) -> None:  # fmt: skip
        while queue or self.running or self.deferred:
            while queue and len(self.running) < self.jobs:
                plan = queue.popleft()
                self.running[pool.submit(self._execute, plan)] = plan
                display.started(plan.name)
            if not self.running:  # only instances another process is running are left: wait for them
                for plan in self.deferred:
                    plan.wait_for_lock = True
                queue.extend(self.deferred)
                self.deferred = []
                continue
            done, _ = wait(self.running, return_when=FIRST_COMPLETED)
            for future in done:
                row = future.result()
                if row is None:
                    self.deferred.append(self.running[future])
                    display.requeued(self.running[future].name)
                else:
                    rows[row.instance] = row
                    display.finished(row)
                del self.running[future]

    def _interrupt(self, queue: deque[_Plan], rows: dict[str, InstanceRow], display: Display) -> None:
        """Ctrl-C: stop the running instances (they record 'interrupted'), start no more."""
        self.stop.set()
        display.interrupting()
        for future, plan in list(self.running.items()):
            row = future.result() or _not_started(plan)
            rows[row.instance] = row
            display.finished(row)
        for plan in queue:
            rows.setdefault(plan.name, _not_started(plan))
        for plan in self.deferred:
            rows.setdefault(plan.name, _not_started(plan))

    def _execute(self, plan: _Plan) -> InstanceRow | None:
        """Run one instance under its lock; ``None`` when another process holds it. Never raises."""
        try:
            return self._execute_locked(plan)
        except (
            BaseException
        ) as exc:  # one instance's trouble (an unwritable folder...) never stops the others
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            return InstanceRow(plan.name, "failed", plan.reason or "", None, str(plan.run_dir), error)

    def _execute_locked(self, plan: _Plan) -> InstanceRow | None:
        if self.stop.is_set():
            return _not_started(plan)
        lock = self._lock(plan)
        if lock is None:
            return None if not self.stop.is_set() else _not_started(plan)
        with lock:
            reason = self._why(plan, lock_held=True)
            if reason is None or (self.force and self._done_since_start(plan)):
                return InstanceRow(plan.name, "skipped", "done by another process", None, str(plan.run_dir))
            return self._attempt(plan, reason)

    def _lock(self, plan: _Plan) -> Any:
        from .exceptions import InstanceBusyError

        while True:
            try:
                return lock_instance(plan.run_dir)
            except InstanceBusyError:
                if not plan.wait_for_lock or self.stop.is_set():
                    return None
                time.sleep(0.2)

    def _done_since_start(self, plan: _Plan) -> bool:
        record = read_record(plan.run_dir) or {}
        return record.get("status") == "success" and str(record.get("started_at", "")) >= self.started_at

    def _attempt(self, plan: _Plan, reason: str) -> InstanceRow:
        run_dir = str(plan.run_dir)
        try:
            attempt = prepare_attempt(self.flow.path, plan.config, plan.run_dir, self.step, plan.name,
                                      self.options, flow=self.flow, fingerprint=plan.fingerprint,
                                      stop=self.stop, git=self.git)  # fmt: skip
            result = attempt.run()
        except FlowExecutionError as exc:
            error = f"{exc.error_name}: {exc.error_message}".splitlines()[0]
            duration = (read_record(plan.run_dir) or {}).get("duration_s")
            return InstanceRow(plan.name, "failed", reason, duration, run_dir, error, exc.html)
        except KeyboardInterrupt:
            duration = (read_record(plan.run_dir) or {}).get("duration_s")
            return InstanceRow(plan.name, "interrupted", reason, duration, run_dir, "interrupted by the user")
        except (DuctaflowError, OSError) as exc:
            return InstanceRow(plan.name, "failed", reason, None, run_dir, str(exc).splitlines()[0])
        html = str(result.html) if result.html else None
        return InstanceRow(plan.name, "success", reason, result.duration, run_dir, None, html)


def _row_inputs(specs: Sequence[Any], config: Mapping[str, Any], where: str) -> list[str]:
    """Paths for one row: an entry naming a config key stands for the path(s) it holds.

    A key holding null or an empty string declares no input for that row.
    """
    paths: list[str] = []
    for spec in specs:
        value = _dotted(config, spec) if isinstance(spec, str) else _ABSENT
        if value is _ABSENT:
            paths.append(os.fspath(spec))
        elif value is None or value == "":
            continue
        elif isinstance(value, str):
            paths.append(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            paths.extend(value)
        else:
            raise ConfigError(
                f"input key {spec!r}{where} holds {value!r}, not a path or list of paths.", key=spec
            )
    return paths


_ABSENT = object()


def _dotted(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _refresh_report(runs_dir: Path) -> None:
    """Rebuild the runs folder's report; a failure is reported, never lost results."""
    from .overview import build_report

    try:
        build_report(runs_dir)
    except (DuctaflowError, OSError) as exc:
        print(f"ductaflow: could not refresh {runs_dir / 'index.html'}: {exc}", file=sys.stderr)


def _frame(rows: list[InstanceRow]) -> Any:
    import pandas as pd

    return pd.DataFrame([{c: getattr(r, c) for c in COLUMNS} for r in rows], columns=COLUMNS)


def _not_started(plan: _Plan) -> InstanceRow:
    return InstanceRow(plan.name, "interrupted", "not started", None, str(plan.run_dir))


def _failures(step: str, failed: list[InstanceRow]) -> InstancesFailedError:
    listed = "\n".join(f"  {row.instance}: {row.error}  ({row.html or row.run_dir})" for row in failed[:50])
    more = f"\n  ... and {len(failed) - 50} more" if len(failed) > 50 else ""
    return InstancesFailedError(
        f"{len(failed)} instance(s) of step {step!r} failed:\n{listed}{more}",
        step=step,
        failed=[row.instance for row in failed],
    )
