"""Script mode with ``--output-dir``: run the flow script again inside the output dir and record it.

The supervising process holds the instance lock, writes ``config.json`` and
the ``running`` record, starts the child with the output dir as its working
directory, copies the child's stdout/stderr to the terminal and to
``log.txt`` as they arrive, and writes the final record from the child's exit
status (and the error the child saved, if any). A child that crashes or is
killed is still recorded, because the record is not the child's to write.
"""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from .config import config_hash
from .exceptions import DuctaflowError
from .instance import CONFIG_NAME, LOG_NAME, STATE_DIR, close_attempt, lock_instance, open_attempt
from .names import check_name
from .runrecord import RunStatus, base_record, git_info, now_iso

_FORWARD_SIGINT_AFTER = 1.0  # seconds; a terminal's Ctrl-C reaches the child directly
_QUIET = 0.2  # seconds without output after which an ended child's pipes are done


def run_script(out_dir: Path, config: dict[str, Any], argv: list[str]) -> int:
    """Run the current script under supervision in ``out_dir``; return its exit code."""
    from .script import _CHILD_ENV, _ERROR_ENV

    check_name(out_dir.name, "output directory name")
    command, env = _child_command()
    script = Path(sys.argv[0]).absolute()
    with lock_instance(out_dir):
        record = _start_record(out_dir, script, config, command)
        started = time.monotonic()
        open_attempt(out_dir, config, record)
        error_file = out_dir.parent / STATE_DIR / f"error-{out_dir.name}-{os.getpid()}.json"
        error_file.unlink(missing_ok=True)
        env.update(
            {
                _CHILD_ENV: str(out_dir / CONFIG_NAME),
                _ERROR_ENV: str(error_file),
                "PYTHONUNBUFFERED": "1",
                "DUCTAFLOW_RUN_DIR": str(out_dir),
            }
        )
        code, interrupted = _run_child(command, env, out_dir)
        error = _read_error(error_file)
        status = _status(code, interrupted, error)
        record["exit_code"] = code
        if status is not RunStatus.SUCCESS:
            record["error"] = error or _exit_error(code, status)
        close_attempt(out_dir, record, status, started)
    if status is RunStatus.INTERRUPTED:
        return 130
    return code if code >= 0 else 128 - code


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
    cwd = Path.cwd()
    try:
        shown = str(script.relative_to(cwd))
    except ValueError:
        shown = str(script)
    return base_record(
        step=out_dir.parent.name,
        instance=out_dir.name,
        mode="script",
        flow=shown,
        flow_sha256=hashlib.sha256(script.read_bytes()).hexdigest(),
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


def _wait(proc: subprocess.Popen[bytes]) -> tuple[int, bool]:
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


def _forward_interrupt(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=_FORWARD_SIGINT_AFTER)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
    except KeyboardInterrupt:  # a second Ctrl-C: stop the child now
        proc.terminate()


def _read_error(path: Path) -> dict[str, Any] | None:
    import json

    try:
        error = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        path.unlink(missing_ok=True)
    return error if isinstance(error, dict) else None


def _status(code: int, interrupted: bool, error: dict[str, Any] | None) -> RunStatus:
    if code == 0:
        return RunStatus.SUCCESS
    if interrupted or (error or {}).get("name") == "KeyboardInterrupt" or code == -signal.SIGINT:
        return RunStatus.INTERRUPTED
    return RunStatus.FAILED


def _exit_error(code: int, status: RunStatus) -> dict[str, Any]:
    if status is RunStatus.INTERRUPTED:
        return {
            "name": "KeyboardInterrupt",
            "message": "interrupted by the user (Ctrl-C or SIGTERM)",
            "line": None,
        }
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return {"name": "Killed", "message": f"the script was killed by signal {name}", "line": None}
    return {"name": "SystemExit", "message": f"the script exited with code {code}", "line": None}
