"""One instance: validate, prepare its directory, execute, record.

Layout of a step folder::

    runs/<step>/<instance>/        the instance directory (one attempt, never mixed)
    runs/<step>/.ductaflow/        ductaflow's own state for the step:
        <instance>.lock            held while an attempt runs
        previous/<instance>/       the last successful attempt, kept while a
                                   newer attempt runs or after it failed

Everything a user can get wrong is checked before the first byte is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import engine
from .config import config_hash, normalise_config
from .exceptions import FlowExecutionError, InstanceBusyError, RunDirectoryError
from .fingerprint import Fingerprint
from .flow import Flow, read_flow
from .metrics import fold as fold_metrics
from .names import check_name
from .runrecord import RECORD_NAME, RunStatus, base_record, git_info, now_iso, read_record, write_json_atomic

RUNS_DIR = "runs"
_UNKNOWN = object()  # git state not computed yet
STATE_DIR = ".ductaflow"
CONFIG_NAME = "config.json"
LOG_NAME = "log.txt"


@dataclass(frozen=True)
class RunResult:
    """What one executed instance produced."""

    step: str
    instance: str
    run_dir: Path
    status: RunStatus
    duration: float
    notebook: Path
    html: Path | None
    log: Path
    record: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        """The config the instance ran with (as recorded in ``run.json``)."""
        return dict(self.record["config"])


@dataclass(frozen=True)
class _Options:
    kernel_name: str | None
    timeout: float | None
    export_html: bool
    log_output: bool
    project_root: Path
    runs_dir: Path
    config_source: dict[str, Any] | None = None


def run_step_flow(
    notebook_file: str | os.PathLike[str],
    step_name: str,
    instance_name: str,
    config: Mapping[str, Any] | None = None,
    *,
    project_root: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
    export_html: bool = True,
    log_output: bool = False,
    runs_dir: str | os.PathLike[str] | None = None,
    config_source: Mapping[str, Any] | None = None,
) -> RunResult:
    """Execute a flow with ``config`` into ``runs/<step_name>/<instance_name>/``.

    ``runs/`` lives under ``project_root`` (default: the current directory);
    ``runs_dir`` puts the step folders elsewhere (relative paths are taken
    from ``project_root``). ``config_source`` says where the config came from
    (``{"config_file": "config/x.json", "overrides": ["n=3"]}``, paths relative
    to the project root); it is recorded so :func:`check_instance` can tell
    when that file changed.
    The flow runs in a new kernel whose working directory is the instance
    directory; ``kernel_name`` picks an installed kernel instead of the Python
    ductaflow runs in; ``timeout`` limits each cell (seconds);
    ``export_html=False`` skips the HTML report; ``log_output=True`` also
    echoes the flow's output to this process's stdout/stderr.

    Returns a :class:`RunResult`. Raises :class:`FlowExecutionError` when the
    flow fails (after saving the notebook, HTML and record), and ductaflow
    errors for bad input before anything is written.

    >>> result = run_step_flow("flow/make_data.py", "make_data", "small", {"n_rows": 50})
    >>> result.status
    <RunStatus.SUCCESS: 'success'>
    """
    options = make_options(
        project_root, kernel_name, timeout, export_html, log_output, runs_dir, config_source
    )
    check_name(step_name, "step name")
    check_name(instance_name, "instance name")
    run_dir = options.runs_dir / step_name / instance_name
    return _run(notebook_file, config, run_dir, step_name, instance_name, options)


def run_notebook(
    notebook_file: str | os.PathLike[str],
    config: Mapping[str, Any] | None = None,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    project_root: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
    export_html: bool = True,
    log_output: bool = False,
    runs_dir: str | os.PathLike[str] | None = None,
    config_source: Mapping[str, Any] | None = None,
) -> RunResult:
    """Execute a flow with ``config`` into ``output_dir``.

    Without ``output_dir`` the run goes to ``runs/<flow stem>/<instance>/``
    under ``project_root``, where the instance is ``config["instance_name"]``
    when present, else a 12-character hash of the config (the same config
    always lands in the same directory). Options as in :func:`run_step_flow`.

    >>> run_notebook("flow/make_data.py", {"n_rows": 50}, output_dir="runs/make_data/try1").status
    <RunStatus.SUCCESS: 'success'>
    """
    options = make_options(
        project_root, kernel_name, timeout, export_html, log_output, runs_dir, config_source
    )
    if output_dir is not None:
        run_dir = Path(output_dir).absolute()
        check_name(run_dir.name, "output directory name")
        return _run(notebook_file, config, run_dir, run_dir.parent.name, run_dir.name, options)
    normalised = normalise_config(config)
    instance = normalised.get("instance_name") or config_hash(normalised)[:12]
    check_name(instance, "instance name (config['instance_name'])")
    step = check_name(Path(notebook_file).stem, "step name (the flow's file name)")
    run_dir = options.runs_dir / step / instance
    return _run(notebook_file, normalised, run_dir, step, instance, options)


def make_options(
    project_root: Any,
    kernel_name: str | None = None,
    timeout: float | None = None,
    export_html: bool = True,
    log_output: bool = False,
    runs_dir: str | os.PathLike[str] | None = None,
    config_source: Mapping[str, Any] | None = None,
) -> _Options:
    """Check and gather the options every instance of a call shares."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    root = Path(project_root if project_root is not None else os.getcwd()).absolute()
    runs = root / (runs_dir if runs_dir is not None else RUNS_DIR)
    if runs.exists() and not runs.is_dir():
        raise RunDirectoryError(f"the runs folder {runs} is a file. Pick another runs folder.",
                                run_dir=str(runs))  # fmt: skip
    source = normalise_config(config_source) if config_source is not None else None
    return _Options(kernel_name, timeout, bool(export_html), bool(log_output), root, runs, source)


def _run(
    notebook_file: Any,
    config: Mapping[str, Any] | None,
    run_dir: Path,
    step: str,
    instance: str,
    options: _Options,
) -> RunResult:
    attempt = prepare_attempt(notebook_file, config, run_dir, step, instance, options)
    with lock_instance(run_dir):
        return attempt.run()


def prepare_attempt(
    notebook_file: Any,
    config: Mapping[str, Any] | None,
    run_dir: Path,
    step: str,
    instance: str,
    options: _Options,
    *,
    flow: Flow | None = None,
    fingerprint: Fingerprint | None = None,
    stop: threading.Event | None = None,
    git: Any = _UNKNOWN,
    sweep_id: str | None = None,
) -> _Attempt:
    """Check everything a user can get wrong and return the attempt, writing nothing.

    ``flow`` and ``fingerprint`` may be given when already computed (a
    conductor reads the flow once for all its instances), and so may ``git``,
    the project's git state. ``stop`` interrupts the attempt when set.
    ``sweep_id``, recorded as is, names the conductor call that started it.
    """
    normalised = normalise_config(config)
    if flow is None:
        flow = read_flow(notebook_file)
        engine.check_kernel(options.kernel_name)
    check_run_dir(run_dir)
    if fingerprint is None:
        fingerprint = Fingerprint(flow.sha256, config_hash(normalised), {}, kernel_label(options.kernel_name))
    attempt = _Attempt(flow, normalised, run_dir, step, instance, options, fingerprint, stop)
    attempt.git = git
    attempt.sweep_id = sweep_id
    return attempt


def kernel_label(kernel_name: str | None) -> str:
    """How a kernel choice is named in records and fingerprints."""
    return kernel_name or "ductaflow-python"


def current_status(record: Mapping[str, Any] | None, run_dir: Path, *, lock_held: bool = False) -> str | None:
    """The instance's state: its record's status, or ``crashed`` for a stale ``running`` record.

    A ``running`` record is stale when nobody holds the instance lock (the
    process that wrote it is gone). Pass ``lock_held=True`` when the caller
    holds the lock itself.
    """
    if record is None:
        return None
    status = record.get("status")
    if status != RunStatus.RUNNING.value:
        return str(status)
    if lock_held:
        return RunStatus.CRASHED.value
    from filelock import FileLock, Timeout

    path = _lock_path(run_dir)
    with _HELD_GUARD:
        if str(path) in _HELD:  # held by a thread of this process: probing the file could release it
            return RunStatus.RUNNING.value
        probe = FileLock(path, timeout=0)
        try:
            with probe.acquire():
                return RunStatus.CRASHED.value
        except Timeout:
            return RunStatus.RUNNING.value


# Instance locks held by this process. On NFS a file lock belongs to the process, not to one
# open file, so two threads (two sweeps sharing a Dask worker) would both get it: they check here.
_HELD: set[str] = set()
_HELD_GUARD = threading.Lock()


def _lock_path(run_dir: Path) -> Path:
    return run_dir.parent / STATE_DIR / f"{run_dir.name}.lock"


def lock_instance(run_dir: Path) -> Any:
    """Hold the instance's lock (a context manager); raise if another process, or thread, holds it."""
    from filelock import FileLock, Timeout

    path = _lock_path(run_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _HELD_GUARD:
            if str(path) in _HELD:
                raise Timeout(str(path))
            lock = FileLock(path, timeout=0)
            lock.acquire()
            _HELD.add(str(path))
        return _HeldLock(lock, str(path))
    except Timeout:
        raise InstanceBusyError(
            f"instance {run_dir.name!r} ({run_dir}) is being executed by another process. "
            "Wait for it to finish, or run a different instance.",
            run_dir=str(run_dir),
        ) from None
    except OSError as exc:
        raise RunDirectoryError(
            f"cannot create ductaflow's lock for {run_dir} ({type(exc).__name__}: {exc}). "
            "Check that the folder is writable and that no file stands where a folder should be.",
            run_dir=str(run_dir),
        ) from None


class _HeldLock:
    """An acquired instance lock; leaving the ``with`` block releases it."""

    def __init__(self, lock: Any, key: str) -> None:
        self.lock, self.key = lock, key

    def __enter__(self) -> _HeldLock:
        return self

    def __exit__(self, *exc: object) -> None:
        with _HELD_GUARD:
            self.lock.release()
            _HELD.discard(self.key)


def layout_root(run_dir: Path) -> Path:
    """The project root that ``<root>/runs/<step>/<instance>`` implies for ``run_dir``."""
    return run_dir.parents[2] if len(run_dir.parents) > 2 else run_dir.parent


def previous_attempt_dir(run_dir: Path) -> Path:
    """Where the last successful attempt of ``run_dir`` is kept while a new one runs."""
    return run_dir.parent / STATE_DIR / "previous" / run_dir.name


def open_attempt(run_dir: Path, config: dict[str, Any], record: dict[str, Any]) -> None:
    """Give ``run_dir`` a fresh directory holding only ``config.json`` and ``run.json``.

    A previous successful attempt is moved to :func:`previous_attempt_dir`; the
    remains of an unsuccessful one are removed; a directory holding files that
    ductaflow did not write is refused. The new directory is assembled under
    a temporary name and renamed into place, so it never exists without its
    record. Call with the instance lock held.
    """
    _set_aside(run_dir)
    staging = run_dir.parent / STATE_DIR / f"new-{run_dir.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_json_atomic(staging / CONFIG_NAME, config)
    write_json_atomic(staging / RECORD_NAME, record)
    os.replace(staging, run_dir)


def close_attempt(run_dir: Path, record: dict[str, Any], status: RunStatus, started: float) -> None:
    """Fold recorded metrics, write the final record; after a success, drop the kept previous attempt."""
    with contextlib.suppress(OSError):  # the flow's process may have died before folding its journal
        fold_metrics(run_dir, final=True)
    record["status"] = status.value
    record["ended_at"] = now_iso()
    record["duration_s"] = round(time.monotonic() - started, 3)
    write_json_atomic(run_dir / RECORD_NAME, record)
    if status is RunStatus.SUCCESS:
        shutil.rmtree(previous_attempt_dir(run_dir), ignore_errors=True)


def check_run_dir(run_dir: Path) -> None:
    """Raise :class:`RunDirectoryError` when ``run_dir`` cannot hold a ductaflow run; writes nothing."""
    for parent in run_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirectoryError(f"{parent} is a file, so {run_dir} cannot be created. "
                                        "Pick another output directory.", run_dir=str(run_dir))  # fmt: skip
            break
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunDirectoryError(
            f"{run_dir} exists and is not a directory. Remove it or pick another name.", run_dir=str(run_dir)
        )
    if read_record(run_dir) is None and any(run_dir.iterdir()):
        raise RunDirectoryError(
            f"{run_dir} already holds files that ductaflow did not write (no ductaflow {RECORD_NAME}). "
            "ductaflow will not mix its output with them or delete them: choose another output directory "
            "or move those files away.",
            run_dir=str(run_dir),
        )


def _set_aside(run_dir: Path) -> None:
    check_run_dir(run_dir)  # again, under the lock
    if not run_dir.exists():
        return
    old = read_record(run_dir)
    if old is not None and old.get("status") == RunStatus.SUCCESS.value:
        previous = previous_attempt_dir(run_dir)
        shutil.rmtree(previous, ignore_errors=True)
        previous.parent.mkdir(parents=True, exist_ok=True)
        os.replace(run_dir, previous)
    else:  # an empty directory or the evidence of an unsuccessful attempt
        shutil.rmtree(run_dir)


class _Attempt:
    """One attempt at one instance, from a fresh directory to its final record."""

    def __init__(
        self,
        flow: Flow,
        config: dict[str, Any],
        run_dir: Path,
        step: str,
        instance: str,
        options: _Options,
        fingerprint: Fingerprint,
        stop: threading.Event | None,
    ) -> None:
        self.flow, self.config, self.run_dir, self.options = flow, config, run_dir, options
        self.step, self.instance, self.fingerprint, self.stop = step, instance, fingerprint, stop
        self.notebook_path = run_dir / f"{flow.stem}.ipynb"
        self.html_path = run_dir / f"{flow.stem}.html"
        self.log_path = run_dir / LOG_NAME
        self.previous = previous_attempt_dir(run_dir)
        self.record: dict[str, Any] = {}
        self.started = 0.0
        self.html_import: Any = None
        self.git: Any = _UNKNOWN
        self.sweep_id: str | None = None

    def run(self) -> RunResult:
        self._prepare_directory()
        self.html_import = _warm_html() if self.options.export_html else None
        nb = self.flow.with_config(self.config)
        try:
            with open(self.log_path, "a", encoding="utf-8", buffering=1) as log:
                outcome = self._execute(nb, log)
        except BaseException as exc:
            self._record_crash(nb, exc)
            raise
        result = self._conclude(outcome.error)
        if outcome.interrupt_received:  # the cells had finished: the result stands, the Ctrl-C goes on
            raise KeyboardInterrupt
        return result

    def _prepare_directory(self) -> None:
        self.started = time.monotonic()
        self.record = base_record(
            step=self.step,
            instance=self.instance,
            mode="kernel",
            flow=_display_path(self.flow.path.absolute(), self.options.project_root),
            flow_sha256=self.flow.sha256,
            config_hash=config_hash(self.config),
            run_dir=str(self.run_dir),
            project_root=str(self.options.project_root),
            started_at=now_iso(),
            ended_at=None,
            duration_s=None,
            kernel=kernel_label(self.options.kernel_name),
            options={"timeout": self.options.timeout, "export_html": self.options.export_html},
            fingerprint=self.fingerprint.digest,
            fingerprint_parts=self.fingerprint.parts,
            config=self.config,
            outputs={
                "config": CONFIG_NAME,
                "notebook": self.notebook_path.name,
                "log": LOG_NAME,
                "html": self.html_path.name if self.options.export_html else None,
            },
            git=git_info(self.options.project_root) if self.git is _UNKNOWN else self.git,
            error=None,
        )
        if self.options.config_source is not None:
            self.record["config_source"] = self.options.config_source
        if self.sweep_id is not None:
            self.record["sweep_id"] = self.sweep_id
        open_attempt(self.run_dir, self.config, self.record)

    def _execute(self, nb: Any, log: Any) -> engine.Outcome:
        env = dict(os.environ)
        env["DUCTAFLOW_INJECTED"] = "1"
        env["DUCTAFLOW_RUN_DIR"] = str(self.run_dir)
        flow_dir = str(self.flow.path.absolute().parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (flow_dir, env.get("PYTHONPATH")) if p)
        return engine.execute(
            nb,
            cwd=str(self.run_dir),
            log=log,
            kernel_name=self.options.kernel_name,
            timeout=self.options.timeout,
            echo=self.options.log_output,
            on_progress=self._save_notebook,
            on_finish=lambda outcome: self._finish_outputs(nb, outcome.error),
            env=env,
            stop=self.stop,
        )

    def _save_notebook(self, nb: Any) -> None:
        tmp = self.notebook_path.with_name(f".{self.notebook_path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(nb, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, self.notebook_path)

    def _finish_outputs(self, nb: Any, error: engine.ExecutionError | None) -> None:
        if error is not None:
            nb.cells.insert(0, _banner(error, self._flow_cell_index(error)))
        self._save_notebook(nb)
        if self.html_import is not None:
            from .report import write_html

            self.html_import.join()
            try:
                write_html(nb, self.html_path)
            except Exception as exc:  # the run's results stand without their report
                self.record["outputs"]["html"] = None
                self.record["html_error"] = f"{type(exc).__name__}: {exc}"

    def _flow_cell_index(self, error: engine.ExecutionError) -> int | None:
        index = error.cell_index
        if index is None or index <= self.flow.parameters_index:
            return index
        return index - 1  # cells after the injected one

    def _keep_flow_files(self) -> None:
        """A flow that wrote config.json or run.json itself: keep its file as *.flow.json, ours stands."""
        for name in (CONFIG_NAME, RECORD_NAME):
            path = self.run_dir / name
            ours = self._is_our_record() if name == RECORD_NAME else _json(path) == self.config
            if path.exists() and not ours:
                os.replace(path, path.with_suffix(".flow.json"))
                self.record.setdefault("warnings", []).append(
                    f"the flow wrote {name}, a name ductaflow uses: kept as {path.stem}.flow.json"
                )
        if not (self.run_dir / CONFIG_NAME).exists():
            write_json_atomic(self.run_dir / CONFIG_NAME, self.config)

    def _is_our_record(self) -> bool:
        on_disk = read_record(self.run_dir)
        return on_disk is not None and on_disk.get("started_at") == self.record["started_at"]

    def _conclude(self, error: engine.ExecutionError | None) -> RunResult:
        self._keep_flow_files()
        status = RunStatus.SUCCESS
        if error is not None:
            status = RunStatus.INTERRUPTED if error.interrupted else RunStatus.FAILED
            self.record["error"] = self._error_fields(error)
            if self.previous.exists():
                self.record["previous_success"] = str(self.previous)
        close_attempt(self.run_dir, self.record, status, self.started)
        if status is RunStatus.SUCCESS:
            return self._result(status)
        if status is RunStatus.INTERRUPTED:
            raise KeyboardInterrupt
        raise self._execution_error(error)  # type: ignore[arg-type]

    def _error_fields(self, error: engine.ExecutionError) -> dict[str, Any]:
        index = self._flow_cell_index(error)
        return {
            "name": error.name,
            "message": error.message,
            "cell_index": index,
            "execution_count": error.execution_count,
            "cell_source": self._cell_source(index),
            "traceback": error.traceback[-20000:],
        }

    def _cell_source(self, index: int | None) -> str | None:
        if index is None or index >= len(self.flow.notebook.cells):
            return None
        return self.flow.notebook.cells[index].source

    def _record_crash(self, nb: Any, exc: BaseException) -> None:
        """ductaflow itself failed (disk full, Ctrl-C outside the kernel...): record it, best effort."""
        if not self.record:
            return
        interrupted = isinstance(exc, KeyboardInterrupt)
        self.record["error"] = {
            "name": type(exc).__name__,
            "message": str(exc) or "interrupted by the user",
            "cell_index": None,
            "execution_count": None,
            "cell_source": None,
            "traceback": "",
        }
        status = RunStatus.INTERRUPTED if interrupted else RunStatus.FAILED
        with contextlib.suppress(OSError):  # the record first: it is small and says what happened
            close_attempt(self.run_dir, self.record, status, self.started)
        with contextlib.suppress(OSError):
            self._save_notebook(nb)

    def _result(self, status: RunStatus) -> RunResult:
        html = self.html_path if self.options.export_html and self.html_path.exists() else None
        return RunResult(
            self.step,
            self.instance,
            self.run_dir,
            status,
            self.record["duration_s"],
            self.notebook_path,
            html,
            self.log_path,
            self.record,
        )

    def _execution_error(self, error: engine.ExecutionError) -> FlowExecutionError:
        fields = self.record["error"]
        where = "before any cell ran" if fields["cell_index"] is None else f"in cell {fields['cell_index']}"
        if error.execution_count:
            where += f" (In [{error.execution_count}])"
        first_line = (fields["cell_source"] or "").strip().splitlines()[:1]
        html = self.html_path if self.options.export_html and self.html_path.exists() else None
        lines = [
            f"instance {self.instance!r} of step {self.step!r} failed {where} of {self.record['flow']}: "
            f"{error.name}: {error.message}",
            *([f"  cell starts: {first_line[0]}"] if first_line else []),
            f"  notebook: {_display_path(self.notebook_path, Path.cwd())}",
            *([f"  report:   {_display_path(html, Path.cwd())}"] if html else []),
            f"  log:      {_display_path(self.log_path, Path.cwd())}",
        ]
        if "previous_success" in self.record:
            lines.append(f"  the last successful attempt is kept in {self.record['previous_success']}")
        return FlowExecutionError(
            "\n".join(lines),
            instance=self.instance,
            step=self.step,
            run_dir=str(self.run_dir),
            cell_index=fields["cell_index"],
            error_name=error.name,
            error_message=error.message,
            notebook=str(self.notebook_path),
            html=str(html) if html else None,
            status="failed",
        )


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _warm_html() -> Any:
    from .report import warm_up

    return warm_up()


def _banner(error: engine.ExecutionError, cell_index: int | None) -> Any:
    import nbformat

    where = "before any cell ran" if cell_index is None else f"in cell {cell_index}"
    if error.execution_count:
        where += f" (In [{error.execution_count}])"
    cell = nbformat.v4.new_markdown_cell(
        f"<span style='color:#b00020'>**ductaflow: this run failed {where}**</span> — "
        f"`{error.name}: {error.message}`"
    )
    cell.metadata["tags"] = ["ductaflow-error"]
    return cell


def _display_path(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)
