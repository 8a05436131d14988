"""Script mode with ``--output-dir``: run the flow script again inside the output dir and record it.

The supervising process holds the instance lock, writes ``config.json`` and
the ``running`` record, starts the child with the output dir as its working
directory, copies the child's stdout/stderr to the terminal and to
``log.txt`` as they arrive, and writes the final record from the child's exit
status (and the error the child saved, if any). A child that crashes or is
killed is still recorded, because the record is not the child's to write.

Both ends of the protocol are here: the supervisor tells the child where its
config is and where to save an uncaught error through two environment
variables, which the child reads with :func:`child_config_path`.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .exceptions import DuctaflowError
from .files import read_json, shown_path
from .names import check_name

if TYPE_CHECKING:
    from .runrecord import RunError, RunStatus

# Flows import this module (through load_cli_config): the supervising side's imports of the run
# folder and the record are deferred into its functions, so that importing ductaflow stays light.

#: Set by the supervisor for the child: the path of the config.json the child runs with.
CHILD_CONFIG_ENV = "DUCTAFLOW_SCRIPT_CONFIG"
#: Set by the supervisor for the child: where the child saves an uncaught exception as JSON.
CHILD_ERROR_ENV = "DUCTAFLOW_SCRIPT_ERROR"

_FORWARD_SIGINT_AFTER = 1.0  # seconds; a terminal's Ctrl-C reaches the child directly
_QUIET = 0.2  # seconds without output after which an ended child's pipes are done


def run_script(out_dir: Path, config: dict[str, Any], argv: list[str]) -> int:
    """Run the current script under supervision in ``out_dir``; return its exit code."""
    from .environment import kernel_environment
    from .project import ROOT_ENV, find_project_root
    from .rundir import (
        CONFIG_NAME,
        check_run_dir,
        close_attempt,
        keep_flow_files,
        lock_instance,
        open_attempt,
        state_file,
    )
    from .runindex import note_instance
    from .runrecord import RunStatus

    check_name(out_dir.name, "output directory name")
    command, env = _child_command()
    script = Path(sys.argv[0]).absolute()
    check_run_dir(out_dir)  # a refusal writes nothing, not even the lock; checked again under it
    env.setdefault(ROOT_ENV, str(find_project_root(script)))
    with lock_instance(out_dir):
        record = _start_record(out_dir, script, config, command)
        started = time.monotonic()
        environment = kernel_environment()  # the child runs in this interpreter
        if isinstance(environment, str):
            record["warnings"], environment = [f"environment not recorded: {environment}"], None
        else:
            record["environment"] = environment.summary
        open_attempt(out_dir, config, record, environment=environment)
        note_instance(out_dir, create=False)
        error_file = state_file(out_dir, f"error-{out_dir.name}-{os.getpid()}.json")
        error_file.unlink(missing_ok=True)
        env.update(
            {
                CHILD_CONFIG_ENV: str(out_dir / CONFIG_NAME),
                CHILD_ERROR_ENV: str(error_file),
                "PYTHONUNBUFFERED": "1",
                "DUCTAFLOW_RUN_DIR": str(out_dir),
            }
        )
        code, interrupted = _run_child(command, env, out_dir)
        error = _read_error(error_file)
        status = _status(code, interrupted, error)
        record["exit_code"] = code
        for warning in keep_flow_files(out_dir, config, record["started_at"], environment):  # as engines do
            record.setdefault("warnings", []).append(warning)
        if status is not RunStatus.SUCCESS:
            record["error"] = (error or _exit_error(code, status)).as_record()
        close_attempt(out_dir, record, status, started)
        note_instance(out_dir, create=False)
    if status is RunStatus.INTERRUPTED:
        return 130
    return code if code >= 0 else 128 - code


def child_config_path() -> str | None:
    """In the supervised child: the path of its config, and from now on its uncaught error is saved.

    ``None`` in any other process. The variables are removed from the
    environment, so processes the flow starts do not take them for theirs.
    """
    if CHILD_CONFIG_ENV not in os.environ:
        return None
    _report_errors_to(os.environ.pop(CHILD_ERROR_ENV, None))
    return os.environ.pop(CHILD_CONFIG_ENV)


def _report_errors_to(path: str | None) -> None:
    """In the supervised child: save an uncaught exception where the supervisor will read it."""
    if not path:
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        import traceback

        from .runrecord import RunError

        frames = traceback.extract_tb(tb)
        script = os.path.abspath(sys.argv[0]) if sys.argv else ""
        lines = [f.lineno for f in frames if os.path.abspath(f.filename) == script]
        error = RunError(kind.__name__, str(value), line=lines[-1] if lines else None,
                         traceback="".join(traceback.format_exception(kind, value, tb)))  # fmt: skip
        try:
            Path(path).write_text(json.dumps(error.as_record()), encoding="utf-8")
        finally:
            previous(kind, value, tb)

    sys.excepthook = hook


def _child_command() -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    options = sys.orig_argv[1 : len(sys.orig_argv) - len(sys.argv)]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:  # python -m package.flow: keep the launch dir importable
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH")) if p)
        return [sys.executable, *options, spec.name, *sys.argv[1:]], env
    script = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
    if script is None or not script.is_file():
        raise DuctaflowError("--output-dir needs the flow to be run as a script file (python flow/x.py ...).")
    return [sys.executable, *options, str(script), *sys.argv[1:]], env


def _start_record(out_dir: Path, script: Path, config: dict[str, Any], command: list[str]) -> dict[str, Any]:
    from .config import config_hash
    from .fingerprint import why_run_again
    from .rundir import CONFIG_NAME, LOG_NAME, current_status
    from .runrecord import base_record, git_info, now_iso, read_record

    cwd = Path.cwd()
    old, flow_sha256 = read_record(out_dir), hashlib.sha256(script.read_bytes()).hexdigest()
    status, old_config = current_status(old, out_dir, lock_held=True), read_json(out_dir / CONFIG_NAME)[0]
    return base_record(
        step=out_dir.parent.name,
        instance=out_dir.name,
        reason=why_run_again(old, status, flow_sha256, config, old_config),
        mode="script",
        flow=shown_path(script, cwd),
        flow_sha256=flow_sha256,
        config_hash=config_hash(config),
        run_dir=str(out_dir),
        project_root=str(cwd),
        started_at=now_iso(),
        ended_at=None,
        duration_s=None,
        command=command,
        outputs={"config": CONFIG_NAME, "log": LOG_NAME},
        git=git_info(cwd),
        error=None,
    )


def _run_child(command: list[str], env: dict[str, str], out_dir: Path) -> tuple[int, bool]:
    import subprocess

    from .rundir import LOG_NAME

    with open(out_dir / LOG_NAME, "ab") as log:
        proc = subprocess.Popen(command, cwd=out_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lock, child_ended = threading.Lock(), threading.Event()
        pumps = [
            threading.Thread(target=_pump, args=(source, terminal, log, lock, child_ended), daemon=True)
            for source, terminal in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr))
        ]
        for pump in pumps:
            pump.start()
        code, interrupted = _wait(proc)
        child_ended.set()
        for pump in pumps:
            pump.join()
    return code, interrupted


def _pump(
    source: IO[bytes], terminal: Any, log: IO[bytes], lock: threading.Lock, child_ended: threading.Event
) -> None:
    """Copy the child's output to log.txt and the terminal until the child has ended and the pipe is quiet.

    A closed terminal (``| head``) only stops the echo; a process the flow left
    running that still holds the pipe does not keep the run open.
    """
    fd, echoing = source.fileno(), True
    while True:
        ready, _, _ = select.select([fd], [], [], _QUIET)
        if not ready:
            if child_ended.is_set():
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        with lock:
            log.write(chunk)
            log.flush()
        echoing = echoing and _echo(terminal, chunk)
    source.close()


def _echo(terminal: Any, chunk: bytes) -> bool:
    """Show output in the terminal; False once the terminal is gone (a closed pipe)."""
    try:
        buffer = getattr(terminal, "buffer", None)
        if buffer is not None:
            buffer.write(chunk)
            buffer.flush()
        else:
            terminal.write(chunk.decode(errors="replace"))
            terminal.flush()
    except (OSError, ValueError):
        return False
    return True


def _wait(proc: Any) -> tuple[int, bool]:
    """Wait for the child; Ctrl-C and SIGTERM go to the child, which the record then reports."""
    stopped: list[int] = []

    def on_sigterm(signum: int, frame: Any) -> None:
        stopped.append(signum)
        proc.terminate()

    restore = None
    if threading.current_thread() is threading.main_thread():
        restore = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while True:
            try:
                return proc.wait(), bool(stopped)
            except KeyboardInterrupt:
                stopped.append(signal.SIGINT)
                _forward_interrupt(proc)
    finally:
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)


def _forward_interrupt(proc: Any) -> None:
    import subprocess

    try:
        proc.wait(timeout=_FORWARD_SIGINT_AFTER)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
    except KeyboardInterrupt:  # a second Ctrl-C: stop the child now
        proc.terminate()


def _read_error(path: Path) -> RunError | None:
    from .runrecord import RunError

    try:
        return RunError.from_record(read_json(path)[0])
    finally:
        path.unlink(missing_ok=True)


def _status(code: int, interrupted: bool, error: RunError | None) -> RunStatus:
    from .runrecord import RunStatus

    if code == 0:
        return RunStatus.SUCCESS
    if interrupted or (error is not None and error.name == "KeyboardInterrupt") or code == -signal.SIGINT:
        return RunStatus.INTERRUPTED
    return RunStatus.FAILED


def _exit_error(code: int, status: RunStatus) -> RunError:
    from .runrecord import RunError, RunStatus

    if status is RunStatus.INTERRUPTED:
        return RunError("KeyboardInterrupt", "interrupted by the user (Ctrl-C or SIGTERM)")
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return RunError("Killed", f"the script was killed by signal {name}")
    return RunError("SystemExit", f"the script exited with code {code}")
