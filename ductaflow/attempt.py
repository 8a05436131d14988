"""One attempt at one instance: a fresh directory, the engine's execution, the final record.

An :class:`Attempt` (made by :func:`ductaflow.instance.prepare_attempt`, run
with the instance lock held) opens a fresh instance directory
(:mod:`ductaflow.rundir`), hands the notebook to the selected engine
(:mod:`ductaflow.engines`), saves the notebook and its HTML page as the cells
run (:mod:`ductaflow.notebook`), and writes the final record, whatever stops
it: the flow's error, a dead process, Ctrl-C, or a full disk.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import rundir
from .config import config_hash
from .engines import Execution, ExecutionError, Outcome, get_engine
from .environment import Environment, kernel_environment
from .exceptions import FlowExecutionError
from .files import no_space, shown_path
from .fingerprint import Fingerprint, why_run
from .flow import Flow
from .notebook import failure_banner, save_notebook, warm_up, write_html
from .options import RunOptions
from .project import ROOT_ENV, find_project_root
from .runindex import note_instance
from .runrecord import RECORD_NAME, RunError, RunStatus, base_record, git_info, now_iso, read_record
from .seeds import config_seed

UNKNOWN = object()  # git state not computed yet


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


class Attempt:
    """One attempt at one instance, from a fresh directory to its final record."""

    def __init__(
        self,
        flow: Flow,
        config: dict[str, Any],
        run_dir: Path,
        step: str,
        instance: str,
        options: RunOptions,
        fingerprint: Fingerprint,
        stop: threading.Event | None,
    ) -> None:
        self.flow, self.config, self.run_dir, self.options = flow, config, run_dir, options
        self.step, self.instance, self.fingerprint, self.stop = step, instance, fingerprint, stop
        self.notebook_path = run_dir / f"{flow.stem}.ipynb"
        self.html_path = run_dir / f"{flow.stem}.html"
        self.log_path = run_dir / rundir.LOG_NAME
        self.previous = rundir.previous_attempt_dir(run_dir)
        # runs/<step>/<instance>: its runs folder's index is made if missing (an output_dir elsewhere: never)
        self.in_runs_dir = run_dir.parent.parent.absolute() == options.runs_dir.absolute()
        self.record: dict[str, Any] = {}
        self.environment: Environment | None = None  # the kernel's, linked into the directory
        self.started = 0.0
        self.html_import: Any = None
        self.git: Any = UNKNOWN
        self.sweep_id: str | None = None
        self.reason: str | None = None  # why it runs, recorded; worked out under the lock when not given
        self.concluded = False  # the final record is written
        self.number = 1  # which attempt of this conductor call: retries keep the earlier ones
        self.replicate: int | None = None  # which replicate of a row (replicates=N), recorded
        self.replicate_of: str | None = None  # that row's instance name

    def run(self) -> RunResult:
        """Execute the attempt; call with the instance lock held.

        Returns the result of a success; raises :class:`FlowExecutionError`
        for a failure and ``KeyboardInterrupt`` for an interruption, each
        after the notebook, its HTML page and the record are written.
        """
        try:
            self._prepare_directory()
        except OSError as exc:
            if no_space(exc):  # nothing was made: the new directory is assembled aside, then renamed
                raise rundir.disk_full(exc, self.run_dir) from exc
            raise
        nb = None
        try:  # from the 'running' record on, whatever stops the attempt is recorded
            note_instance(self.run_dir, create=self.in_runs_dir)  # the live view sees it running
            self.html_import = warm_up() if self.options.export_html else None
            nb = self.flow.with_config(self.config)
            log = _Log(open(self.log_path, "a", encoding="utf-8", buffering=1))  # noqa: SIM115
            try:
                outcome = self._execute(nb, log)
            finally:
                log.close()
            if log.no_room is not None:  # the log lost lines: so may have the flow's own files
                raise log.no_room
            result = self._conclude(outcome)
        except BaseException as exc:
            if not self.concluded:
                self._record_crash(nb, exc)
            if no_space(exc):
                raise rundir.disk_full(exc, self.run_dir) from exc
            raise
        if outcome.interrupt_received:  # the cells had finished: the result stands, the Ctrl-C goes on
            raise KeyboardInterrupt
        return result

    def _prepare_directory(self) -> None:
        self.started = time.monotonic()
        options = self.options
        self.record = base_record(
            step=self.step,
            instance=self.instance,
            reason=self.reason or self._why(),
            mode="kernel",
            engine=options.engine,
            flow=shown_path(self.flow.path, options.project_root),
            flow_sha256=self.flow.sha256,
            config_hash=config_hash(self.config),
            run_dir=str(self.run_dir),
            project_root=str(options.project_root),
            started_at=now_iso(),
            ended_at=None,
            duration_s=None,
            kernel=options.kernel_label,
            options={
                "timeout": options.timeout,
                "instance_timeout": options.instance_timeout,
                "max_memory": options.max_memory,
                "export_html": options.export_html,
                "preload": list(options.preload),
            },
            fingerprint=self.fingerprint.digest,
            fingerprint_parts=self.fingerprint.parts,
            config=self.config,
            outputs={
                "config": rundir.CONFIG_NAME,
                "notebook": self.notebook_path.name,
                "log": rundir.LOG_NAME,
                "html": self.html_path.name if options.export_html else None,
            },
            git=git_info(options.project_root) if self.git is UNKNOWN else self.git,
            error=None,
        )
        if options.config_source is not None:
            self.record["config_source"] = options.config_source
        if self.sweep_id is not None:
            self.record["sweep_id"] = self.sweep_id
        if self.fingerprint.upstream:  # the upstream instances it reads, with the fingerprints it read
            self.record["upstream"] = [
                {"step": key.split("/")[0], "instance": key.split("/", 1)[1], "fingerprint": digest,
                 "run_dir": shown_path(options.runs_dir / key, options.project_root)}
                for key, digest in self.fingerprint.upstream.items()
            ]  # fmt: skip
        self.record["seed"] = config_seed(self.config, self.instance)  # what ductaflow.seed() returns
        if self.replicate is not None:
            self.record["replicate"], self.record["replicate_of"] = self.replicate, self.replicate_of
        keep_as = None
        if self.number > 1:  # a retry: the attempts before it stay in the step's attempts folder
            keep_as = str(self.number - 1)
            self.record["attempt"] = self.number
            kept = rundir.attempts_dir(self.run_dir)
            self.record["earlier_attempts"] = [str(kept / str(n)) for n in range(1, self.number)]
        self.environment = self._environment()
        rundir.open_attempt(self.run_dir, self.config, self.record, keep_failed_as=keep_as,
                            environment=self.environment)  # fmt: skip

    def _environment(self) -> Environment | None:
        """The kernel's environment, named in the record; ``None`` (and a warning why) when not known."""
        captured = kernel_environment(self.options.kernel_name)
        if isinstance(captured, str):
            self.record.setdefault("warnings", []).append(f"environment not recorded: {captured}")
            return None
        self.record["environment"] = captured.summary
        return captured

    def _why(self) -> str:
        """Why a direct call runs the instance: what a conductor would say, else that it runs again."""
        old = read_record(self.run_dir)
        if old is None and (problem := rundir.unreadable_record(self.run_dir)) is not None:
            return f"previous attempt left an unreadable record ({problem})"
        status = rundir.current_status(old, self.run_dir, lock_held=True)
        reason = why_run(old, status, self.fingerprint, (old or {}).get("config"), self.config)
        return reason or "unchanged, run again"

    def _execute(self, nb: Any, log: Any) -> Outcome:
        env = dict(os.environ)
        env["DUCTAFLOW_INJECTED"] = "1"
        env["DUCTAFLOW_RUN_DIR"] = str(self.run_dir)
        env.setdefault(ROOT_ENV, str(find_project_root(self.flow.path)))  # project_path() in the flow
        execution = Execution(
            nb,
            cwd=self.run_dir,
            log=log,
            env=env,
            timeout=self.options.timeout,
            kernel_name=self.options.kernel_name,
            echo=self.options.log_output,
            on_progress=lambda nb: save_notebook(nb, self.notebook_path),
            on_finish=lambda outcome: self._finish_outputs(nb, outcome.error),
            stop=self.stop,
            flow_dir=self.flow.path.absolute().parent,  # its sibling modules importable, as in a script
            preload=self.options.preload,
            instance_timeout=self.options.instance_timeout,
            max_memory=self.options.max_memory,
        )
        return get_engine(self.options.engine).execute(execution)

    def _finish_outputs(self, nb: Any, error: ExecutionError | None) -> None:
        if error is not None:
            nb.cells.insert(0, failure_banner(_where(self._flow_cell_index(error), error),
                                              error.name, error.message))  # fmt: skip
        save_notebook(nb, self.notebook_path)
        if self.html_import is not None:
            self.html_import.join()
            try:
                write_html(nb, self.html_path)
            except Exception as exc:  # the run's results stand without their report, unless the disk is full
                if no_space(exc):
                    raise
                self.record["outputs"]["html"] = None
                self.record["html_error"] = f"{type(exc).__name__}: {exc}"

    def _flow_cell_index(self, error: ExecutionError) -> int | None:
        index = error.cell_index
        if index is None or index <= self.flow.parameters_index:
            return index
        return index - 1  # cells after the injected one

    def _conclude(self, outcome: Outcome) -> RunResult:
        error = outcome.error
        for warning in rundir.keep_flow_files(self.run_dir, self.config, self.record["started_at"],
                                              self.environment):  # fmt: skip
            self.record.setdefault("warnings", []).append(warning)
        if outcome.restarts:
            self.record["engine_restarts"] = outcome.restarts
        if outcome.notes:
            self.record.setdefault("warnings", []).extend(outcome.notes)
        status = RunStatus.SUCCESS
        if error is not None:
            status = RunStatus.INTERRUPTED if _interrupted(error) else RunStatus.FAILED
            self.record["error"] = self._run_error(error).as_record()
            if self.previous.exists():
                self.record["previous_success"] = str(self.previous)
        rundir.close_attempt(self.run_dir, self.record, status, self.started)
        self.concluded = True  # before anything else can be interrupted: the record stands
        note_instance(self.run_dir, create=self.in_runs_dir)
        if status is RunStatus.SUCCESS:
            return self._result(status)
        if status is RunStatus.INTERRUPTED:
            raise KeyboardInterrupt
        raise self._execution_error(error)  # type: ignore[arg-type]

    def _run_error(self, error: ExecutionError) -> RunError:
        index = self._flow_cell_index(error)
        cells = self.flow.notebook.cells
        source = cells[index].source if index is not None and index < len(cells) else None
        return RunError(error.name, error.message, index, error.execution_count, source,
                        traceback=error.traceback, fault=error.fault)  # fmt: skip

    def _record_crash(self, nb: Any, exc: BaseException) -> None:
        """ductaflow itself failed (disk full, Ctrl-C outside the kernel...): record it, best effort.

        A record that cannot be written is said on stderr: it still reads
        ``running``, which readers take for ``crashed`` once nobody holds the lock.
        """
        if not self.record:
            return
        interrupted = isinstance(exc, KeyboardInterrupt)
        if no_space(exc):
            error = RunError("DiskFullError", str(rundir.disk_full(exc, self.run_dir)))  # type: ignore[arg-type]
        else:
            error = RunError(type(exc).__name__, str(exc) or "interrupted by the user")
        self.record["error"] = error.as_record()
        status = RunStatus.INTERRUPTED if interrupted else RunStatus.FAILED
        try:  # the record first: it is small and says what happened
            rundir.close_attempt(self.run_dir, self.record, status, self.started)
            note_instance(self.run_dir, create=self.in_runs_dir)
        except OSError as write_error:
            print(f"ductaflow: could not record instance {self.instance!r} as {status} "
                  f"({shown_path(self.run_dir / RECORD_NAME)}: {write_error.strerror or write_error}); "
                  "its record still says running, which `ductaflow status` shows as crashed once this "
                  "process has ended.", file=sys.stderr)  # fmt: skip
        if nb is not None:
            with contextlib.suppress(OSError):
                save_notebook(nb, self.notebook_path)

    def _html(self) -> Path | None:
        return self.html_path if self.options.export_html and self.html_path.exists() else None

    def _result(self, status: RunStatus) -> RunResult:
        return RunResult(self.step, self.instance, self.run_dir, status, self.record["duration_s"],
                         self.notebook_path, self._html(), self.log_path, self.record)  # fmt: skip

    def _execution_error(self, error: ExecutionError) -> FlowExecutionError:
        fields = self.record["error"]
        first_line = (fields["cell_source"] or "").strip().splitlines()[:1]
        html = self._html()
        lines = [
            f"instance {self.instance!r} of step {self.step!r} failed {_where(fields['cell_index'], error)} "
            f"of {self.record['flow']}: {error.name}: {error.message}",
            *([f"  cell starts: {first_line[0]}"] if first_line else []),
            f"  notebook: {shown_path(self.notebook_path)}",
            *([f"  report:   {shown_path(html)}"] if html else []),
            f"  log:      {shown_path(self.log_path)}",
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
            status=RunStatus.FAILED.value,
            fault=error.fault,
        )


class _Log:
    """``log.txt`` for an engine: a write that finds the disk full is dropped and remembered, not raised.

    Raised inside an engine's output handling, it would end the run as the
    flow's own error; the attempt raises it once the engine has stopped.
    """

    def __init__(self, file: Any) -> None:
        self.file, self.no_room = file, None

    def write(self, text: str) -> int:
        return self._guard(self.file.write, text) or 0

    def flush(self) -> None:
        self._guard(self.file.flush)

    def fileno(self) -> int:
        return int(self.file.fileno())

    def close(self) -> None:
        self._guard(self.file.close)  # closed even when its last flush finds no room

    def _guard(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as exc:
            if not no_space(exc):
                raise
            if exc.filename is None:
                exc.filename = self.file.name
            self.no_room = self.no_room or exc
            return None


def _interrupted(error: ExecutionError) -> bool:
    """Stopped from outside: Ctrl-C, the stop event, or the flow's process terminated by SIGTERM."""
    return error.interrupted or error.signal == "SIGTERM"


def _where(cell_index: int | None, error: ExecutionError) -> str:
    """``in cell 3 (In [4])``, or ``before any cell ran``."""
    where = "before any cell ran" if cell_index is None else f"in cell {cell_index}"
    return where + (f" (In [{error.execution_count}])" if error.execution_count else "")
