"""The conductor: many instances from a table or a sweep; only new or changed ones run, in parallel.

:func:`sweep` (what ``ductaflow run`` and ``ductaflow sweep`` do) builds a
table from a config file, overrides, a table file and a grid
(:mod:`ductaflow.sources`) and hands it to :func:`run_instances`. One
scheduling loop plans every row (its fingerprint and whether it must run),
submits the instances to run as tasks (:mod:`ductaflow.tasks`) to an
executor (threads by default: each instance's work happens in its own kernel
process; or a Dask cluster, see :mod:`ductaflow.executors`) and reports
events to a display (:mod:`ductaflow.progress`). Each instance is decided
twice: once for the plan shown up front, and again under its lock just
before it runs, so two conductors on the same table run each instance once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from .cache import open_cache
from .config import config_hash
from .engines import DEFAULT_MANY_ENGINE, get_engine
from .exceptions import DuctaflowError, RunDirectoryError
from .executors import as_executor
from .files import shown_path
from .fingerprint import Fingerprint, InputHasher, row_inputs
from .flow import Flow, read_flow
from .names import check_name
from .options import make_options
from .parameters import check_config
from .plancache import decide_plans, plan_key, remember_plan, skip_all
from .progress import Display, InstanceRow, failures_error, make_display, rows_frame
from .projectcode import flow_code
from .runindex import shared_index
from .runrecord import RunStatus, git_info, now_iso
from .sources import planned_instances
from .tasks import (
    Task,
    environment_today,
    not_started,
    run_task,
    run_task_elsewhere,
    settle_cancelled,
    stop_file,
    sweep_marker,
)
from .upstream import plan_upstream, upstream_templates

_OPTIONS = {"kernel_name", "timeout", "export_html", "log_output", "runs_dir", "config_source", "engine",
            "preload", "instance_timeout", "max_memory", "check_config", "rerun_on_env_change",
            "cache"}  # fmt: skip


STOP_WAIT_S = 60.0  # after Ctrl-C, how long to wait for instances running elsewhere to stop
STALE_MARKER_S = 86400.0  # markers and stop files of calls older than this are cleared


def run_instances(
    flow: str | os.PathLike[str],
    table: Any,
    *,
    step_name: str | None = None,
    name_column: str = "instance_name",
    base_config: Mapping[str, Any] | None = None,
    new_keys: bool = False,
    jobs: int | None = None,
    force: bool = False,
    inputs: Sequence[str | os.PathLike[str]] | None = None,
    progress: bool = True,
    raise_on_failure: bool = False,
    dry_run: bool = False,
    report: bool = False,
    project_root: str | os.PathLike[str] | None = None,
    executor: Any = None,
    retries: int = 0,
    retry_on_error: bool = False,
    only_failed: bool = False,
    replicates: int | None = None,
    seed: int | None = None,
    upstream: Any = None,
    with_upstream: bool = False,
    **options: Any,
) -> Any:
    """Run ``flow`` once per row of ``table`` into ``runs/<step>/<instance>/``; return a DataFrame.

    ``table`` is a DataFrame or a list of dicts: columns become config keys
    (dotted columns nest), merged over ``base_config``; a column that is not
    a key of ``base_config`` is refused, naming the closest keys, unless
    ``new_keys=True`` (the table adds keys on purpose). Instance names come
    from ``name_column``, else from the columns whose values vary. Instances
    whose last success has the same fingerprint (flow, config, ``inputs``,
    kernel) are skipped unless ``force``. ``inputs`` lists files, directories
    or globs (relative to the project root) whose content the instances
    depend on; an entry naming a config key (``"input_csv"``) means the
    path(s) that key holds in each row. ``jobs`` instances run at once
    (default: the number of CPUs).

    ``executor`` runs the instances elsewhere: a ``dask.distributed.Client``
    (see :func:`dask_client`) or any ``concurrent.futures.Executor``. Every
    instance is then submitted at once and the executor queues them (``jobs``,
    when given, caps how many are in flight). Workers need the project and
    its runs folder at the same path, on a shared filesystem, and ductaflow
    in their environment. An instance whose worker dies is not retried in
    the same call: it reads as crashed and the next call re-runs it.

    ``retries=N`` tries an instance again, up to N times, when its attempt
    failed by a fault: its process died or was killed, it timed out (a cell
    or the whole instance), or its kernel did not start; with
    ``retry_on_error=True`` also when the flow raised. Each earlier attempt
    is kept in ``runs/<step>/.ductaflow/attempts/<instance>/<n>/`` and the
    record says which attempt it is. ``only_failed=True`` runs only the
    instances whose last attempt failed, crashed or was interrupted (or left
    an unreadable record); the others are skipped, up to date or not.

    ``replicates=N`` runs N instances of each row, ``<row>-r0 … -r{N-1}``,
    differing only by their seed (``ductaflow.seed()`` in the flow, derived
    from the instance's name). ``seed`` is the sweep seed those seeds derive
    from; given, it is put in each config as ``ductaflow_seed``.

    Steps that depend on steps: an instance reading another step's results
    with :func:`output_of` (``output_of("prep")``: the instance of step
    ``prep`` named like it) has that upstream instance's fingerprint in its
    own, found by reading the flow's code. ``upstream`` declares more, or
    other, upstream instances: a step name, a list of ``"step"`` or
    ``"step/instance"``, or ``{"prep": "{dataset}"}`` (templates filled in
    with ``{instance}`` and config keys). An upstream instance that is
    missing, failed or out of date (its flow, project code, inputs or own
    upstream changed) raises :class:`UpstreamError` before anything runs;
    ``with_upstream=True`` runs the ones that exist again first, from their
    records, chain included. The project's own modules the flow imports
    (``src/mylib/model.py``) are part of the fingerprint too.

    ``cache`` (a folder or an fsspec URL such as ``s3://bucket/cache``;
    default: ``cache`` in ``ductaflow.toml``; ``False``: none) shares
    successes by fingerprint: an instance that must run is restored from it
    when it holds that fingerprint (reason ``restored from cache (host,
    date)``), and each success is pushed to it (:mod:`ductaflow.cache`).

    ``options`` pass to each instance:
    ``kernel_name``, ``timeout``, ``instance_timeout``, ``max_memory``,
    ``export_html``, ``log_output``, ``runs_dir``, ``config_source``,
    ``engine``, ``preload`` (see :func:`run_step_flow`). The project's
    ``ductaflow.toml`` is read once, for every instance of the call.

    Returns one row per instance: instance, status (success, failed, skipped,
    interrupted), reason, duration, run_dir, error, attempts. Ctrl-C stops
    starting instances, interrupts the running ones and returns. An instance
    that finds the disk full fails, and no further instance starts (each is
    ``failed``, ``not started``). With
    ``raise_on_failure``, failures raise :class:`InstancesFailedError` after
    all instances have finished. With ``dry_run`` nothing runs: the rows say
    ``pending`` (with the reason it would run) or ``skipped``. With
    ``report=True`` the runs folder's ``index.html`` (:func:`build_report`)
    is refreshed when the instances have finished.

    >>> base = load_config("config/make_data.json", ["n_days=60"])
    >>> frame = run_instances("flow/make_data.py", [{"noise": 1.0}, {"noise": 9.0}],
    ...                       base_config=base, progress=False)
    >>> frame[["instance", "status", "reason"]]
        instance   status reason
    0  noise=1.0  success    new
    1  noise=9.0  success    new
    """
    started = time.monotonic()
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number, 0 or more, got {retries!r}")
    conductor = _Conductor(flow, step_name, jobs, force, project_root, executor, options)
    conductor.retries, conductor.retry_on_error, conductor.only_failed = retries, retry_on_error, only_failed
    conductor.replicates, conductor.seed = replicates, seed
    conductor.upstream, conductor.with_upstream, conductor.dry_run = upstream, with_upstream, dry_run
    conductor.progress = progress
    plans = conductor.plan(table, name_column, base_config, new_keys, inputs or [])
    if dry_run:
        rows = [InstanceRow(p.name, RunStatus.PENDING if p.reason else RunStatus.SKIPPED,
                            p.reason or "unchanged", None, str(p.run_dir)) for p in plans]  # fmt: skip
        return rows_frame(rows)
    display = make_display(progress, conductor.step, queued=conductor.remote)
    rows = conductor.run(plans, display)
    display.end(rows, time.monotonic() - started)
    if report:
        _refresh_report(conductor.options.runs_dir)
    frame = rows_frame(rows)
    failed = [r for r in rows if r.status is RunStatus.FAILED]
    if raise_on_failure and failed:
        raise failures_error(conductor.step, failed)
    return frame


class _Conductor:
    def __init__(self, flow: Any, step_name: str | None, jobs: int | None, force: bool, project_root: Any,
                 executor: Any, options: dict[str, Any]) -> None:  # fmt: skip
        unknown = set(options) - _OPTIONS
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; run_instances accepts {sorted(_OPTIONS)}")
        self.options = make_options(project_root, **options, default_engine=DEFAULT_MANY_ENGINE)
        self.flow: Flow = read_flow(flow)
        # absolute: a worker elsewhere resolves the flow's folder (importable) and the record's path
        self.flow = dataclasses.replace(self.flow, path=self.flow.path.absolute())
        get_engine(self.options.engine).check(self.options.kernel_name)
        if self.options.cache is not None:
            open_cache(self.options.cache)  # a URL fsspec cannot open is refused before anything runs
        self.step = check_name(step_name or self.flow.stem, "step name")
        if jobs is not None and jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.pool, self.remote = as_executor(executor) if executor is not None else (None, False)
        # own threads: one per CPU; an executor of the caller's: everything at once, it queues
        self.jobs = jobs or (None if executor is not None else os.cpu_count() or 1)
        self.force = force
        self.stop = threading.Event()
        self.sweep_id = uuid.uuid4().hex
        self.stop_file = stop_file(self.options.runs_dir, self.step, self.sweep_id) if self.remote else None
        self.marker = sweep_marker(self.options.runs_dir, self.step, self.sweep_id) if self.remote else None
        self.started_at = now_iso()
        self.git = git_info(self.options.project_root)  # once per call, not per instance
        self.running: dict[Future[InstanceRow | None], Task] = {}
        self.deferred: list[Task] = []  # held by another process: retried when nothing else is left
        self.finished: SimpleQueue[Future[InstanceRow | None]] = SimpleQueue()  # futures as they finish
        self.retries, self.retry_on_error, self.only_failed = 0, False, False
        self.replicates: int | None = None  # instances per row (replicates=N)
        self.seed: int | None = None  # the sweep seed given, put in each config as ductaflow_seed
        self.halted: str | None = None  # why no further instance starts (the disk is full)
        self.upstream: Any = None  # upstream instances declared by the call (see upstream_templates)
        self.with_upstream = self.dry_run = False
        self.progress = True

    def plan(
        self, table: Any, name_column: str, base: Any, new_keys: bool, inputs: Sequence[Any]
    ) -> list[Task]:
        """Validate every row and decide what runs, writing nothing."""
        hasher = InputHasher(self.options.project_root)
        kernel = self.options.kernel_label
        step_dir = self.options.runs_dir / self.step
        index = shared_index(self.options.runs_dir)
        code = flow_code(self.flow.notebook, self.flow.path, self.options.project_root)
        key = self._plan_key(table, base, code, name_column, new_keys, inputs)
        if key is not None and (skips := skip_all(index, self.step, key, step_dir)) is not None:
            return skips  # an unchanged sweep: no config built again
        plans = []
        planned = planned_instances(table, name_column=name_column, base_config=base, new_keys=new_keys,
                                    replicates=self.replicates, seed=self.seed)  # fmt: skip
        instances = [(p.name, p.config) for p in planned]
        replicas = {p.name: p for p in planned}
        shown = shown_path(self.flow.path)
        for name, config in instances:
            check_config(self.flow.parameters, config, f"{shown} (instance {name!r})",
                         strict=self.options.check_config)  # fmt: skip
        upstream, waiting = plan_upstream(self.flow, self.upstream, instances, self.options.runs_dir, hasher,
                                          with_upstream=self.with_upstream, dry_run=self.dry_run,
                                          run_first=self._run_upstream_first)  # fmt: skip
        for name, config in instances:
            where = f" (instance {name!r})"
            hashes = hasher.hash_inputs(row_inputs(inputs, config, where), where)
            fingerprint = Fingerprint(
                self.flow.sha256, config_hash(config), hashes, kernel, code, upstream[name]
            )
            plans.append(Task(self.flow, self.step, name, config, fingerprint, step_dir / name, "",
                              self.options, self.force, self.sweep_id, self.started_at, self.git,
                              stop_file=self.stop_file, retries=self.retries,
                              replicate=replicas[name].replicate, replicate_of=replicas[name].replicate_of,
                              retry_on_error=self.retry_on_error, only_failed=self.only_failed))  # fmt: skip
        environment = environment_today(self.options)  # once per call; each success compares its digest
        decide_plans(plans, index, self.step, force=self.force, only_failed=self.only_failed,
                     environment=environment, waiting=waiting)  # fmt: skip
        remember_plan(index, key, plans)
        return plans

    def _plan_key(self, table: Any, base: Any, code: dict[str, str], name_column: str, new_keys: bool,
                  inputs: Sequence[Any]) -> tuple[str, str] | None:  # fmt: skip
        """The key of this call's plan in the index, when a remembered plan may answer it."""
        if self.force or self.only_failed or self.with_upstream or inputs or self.options.rerun_on_env_change:
            return None
        if upstream_templates(self.flow, self.upstream):  # upstream fingerprints change on their own
            return None
        parts = {"flow": self.flow.sha256, "code": code, "kernel": self.options.kernel_label,
                 "name_column": name_column, "new_keys": new_keys, "replicates": self.replicates,
                 "seed": self.seed, "check_config": self.options.check_config}  # fmt: skip
        return plan_key(table, base, parts)

    def _run_upstream_first(self, runs: list[dict[str, Any]]) -> None:
        """Run again the upstream instances :func:`plan_upstream` asks for, with this call's options."""
        options = self.options  # all but where each config came from, which their records say
        shared = {name: getattr(options, name) for name in _OPTIONS - {"config_source"}}
        shared["cache"] = options.cache or False  # none: none for them either, whatever the settings say
        for how in runs:
            frame = run_instances(**how, **shared, with_upstream=True, jobs=self.jobs, executor=self.pool,
                                  project_root=options.project_root, progress=self.progress)  # fmt: skip
            if (frame.status == RunStatus.INTERRUPTED).any():  # Ctrl-C there: this call stops too
                raise KeyboardInterrupt

    def run(self, plans: list[Task], display: Display) -> list[InstanceRow]:
        """Execute the plans that must run, ``jobs`` at a time; rows come back in table order."""
        rows: dict[str, InstanceRow] = {}
        for plan in plans:
            if not plan.reason:
                row = InstanceRow(plan.name, RunStatus.SKIPPED, plan.skip_reason, None, str(plan.run_dir))
                rows[plan.name] = row
        queue = deque(p for p in plans if p.reason)
        if self.marker is not None and queue:
            self._mark_sweep(self.marker)
        display.begin(len(plans), len(rows))
        own = self.pool is None
        pool = self.pool or ThreadPoolExecutor(self.jobs, thread_name_prefix="ductaflow-instance")
        try:
            self._loop(pool, queue, rows, display)
            if self.marker is not None:  # every task has returned: none will look for it again
                with contextlib.suppress(OSError):
                    self.marker.unlink(missing_ok=True)
        except KeyboardInterrupt:  # the marker and stop file stay: tasks elsewhere may look for them
            self._interrupt(queue, rows, display)
        finally:
            if own:
                pool.shutdown(wait=True)
        return [rows.get(p.name) or not_started(p) for p in plans]  # a Ctrl-C mid-submit left a gap

    def _mark_sweep(self, marker: Path) -> None:
        """Write this call's marker (workers check they see it); clear markers older than a day."""
        state = marker.parent
        try:
            state.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError as exc:
            error = f"cannot write {marker} ({type(exc).__name__}: {exc}). Is the runs folder writable?"
            raise RunDirectoryError(error, run_dir=str(state)) from None
        stale = time.time() - STALE_MARKER_S
        for old in [*state.glob("sweep-*"), *state.glob("stop-*")]:
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < stale:
                    old.unlink()

    def _loop(self, pool: Executor, queue: deque[Task], rows: dict[str, InstanceRow],
              display: Display) -> None:  # fmt: skip
        while queue or self.running or self.deferred:
            if self.halted is not None:  # the disk is full: the queued instances would fail too
                for plan in [*queue, *self.deferred]:
                    row = InstanceRow(plan.name, RunStatus.FAILED, "not started", None, str(plan.run_dir),
                                      f"not started: {self.halted}")  # fmt: skip
                    rows[plan.name] = row
                    display.finished(row)
                queue.clear()
                self.deferred = []
                if not self.running:
                    break
            while queue and (self.jobs is None or len(self.running) < self.jobs):
                self._submit(pool, queue.popleft(), rows, display)
            if not self.running:  # only instances another process is running are left: wait for them
                for plan in self.deferred:
                    plan.wait_for_lock = True
                queue.extend(self.deferred)
                self.deferred = []
                continue
            future = self.finished.get()  # one at a time: no scan of every future in flight
            plan = self.running[future]
            row = _outcome(future, plan)
            if row is None:
                self.deferred.append(plan)
                display.requeued(plan.name)
            else:
                rows[row.instance] = row
                display.finished(row)
                if row.halt and self.halted is None:
                    self.halted = row.error
            del self.running[future]  # last: a Ctrl-C before here finds the plan still running

    def _submit(self, pool: Executor, plan: Task, rows: dict[str, InstanceRow], display: Display) -> None:
        display.started(plan.name)
        try:
            if self.remote:
                future = pool.submit(run_task_elsewhere, plan)
            else:
                future = pool.submit(run_task, plan, self.stop)
        except Exception as exc:  # a broken or shut-down executor: this instance fails, the loop goes on
            row = InstanceRow(plan.name, RunStatus.FAILED, plan.reason, None, str(plan.run_dir),
                              f"the executor refused it: {type(exc).__name__}: {exc}")  # fmt: skip
            rows[plan.name] = row
            display.finished(row)
            return
        self.running[future] = plan
        future.add_done_callback(self.finished.put)

    def _interrupt(self, queue: deque[Task], rows: dict[str, InstanceRow], display: Display) -> None:
        """Ctrl-C: cancel queued work, stop the running instances (they record 'interrupted')."""
        self.stop.set()
        display.interrupting()
        if self.stop_file is not None:
            with contextlib.suppress(OSError):
                self.stop_file.parent.mkdir(parents=True, exist_ok=True)
                self.stop_file.touch()
        for future in self.running:
            future.cancel()  # queued work goes; what already runs cannot be cancelled, or stops on its own
        deadline = time.monotonic() + STOP_WAIT_S
        for future, plan in list(self.running.items()):
            row = self._stopped(future, plan, deadline)
            rows[row.instance] = row
            display.finished(row)
        for plan in [*queue, *self.deferred]:
            rows.setdefault(plan.name, not_started(plan))

    def _stopped(self, future: Future[InstanceRow | None], plan: Task, deadline: float) -> InstanceRow:
        """After Ctrl-C: the task's own row, or, if cancelled, lost or still going, what its record says."""
        if not future.cancelled():
            try:
                return future.result(timeout=max(0.0, deadline - time.monotonic())) or not_started(plan)
            except Exception:  # cancelled, still going, or a pool whose workers got the Ctrl-C too
                pass
        return settle_cancelled(plan, deadline)


def _outcome(future: Future[InstanceRow | None], plan: Task) -> InstanceRow | None:
    """A finished future's row; an executor's own failure (a lost worker...) fails the instance."""
    try:
        return future.result()
    except CancelledError:
        error = "cancelled by the executor (did the scheduler or the worker go away?)"
    except Exception as exc:
        error = f"the executor lost it: {type(exc).__name__}: {exc}".splitlines()[0]
        if isinstance(exc, ModuleNotFoundError):
            error += " (is ductaflow installed in the workers' environment?)"
    return InstanceRow(plan.name, RunStatus.FAILED, plan.reason, None, str(plan.run_dir), error)


def _refresh_report(runs_dir: Path) -> None:
    """Rebuild the runs folder's report; a failure is reported, never lost results."""
    from .report import build_report

    try:
        build_report(runs_dir)
    except (DuctaflowError, OSError) as exc:
        print(f"ductaflow: could not refresh {runs_dir / 'index.html'}: {exc}", file=sys.stderr)
