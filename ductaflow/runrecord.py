"""The run record (``run.json``): states, contents and atomic writes.

``run.json`` is the single source of truth about an instance. It is written
when an attempt starts (``running``) and rewritten when it ends; every write
goes to a temporary file in the same directory, is flushed to disk and then
renamed over the old record, so a reader never sees half a record.
"""

from __future__ import annotations

import datetime as _dt
import enum
import getpass
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

RECORD_NAME = "run.json"
RECORD_SCHEMA = 1


class RunStatus(enum.StrEnum):
    """The state of an instance, as stored in ``run.json``.

    Legal moves: ``pending -> running``; ``running -> success | failed |
    interrupted``; ``running -> crashed`` is inferred by readers when the
    process that wrote ``running`` is gone. ``skipped`` is never stored: it
    describes an instance a conductor decided not to execute.
    """

    PENDING = "pending"  # known to a conductor, not started
    RUNNING = "running"  # an attempt is executing (pid and host say where)
    SUCCESS = "success"  # the attempt finished and every output exists
    FAILED = "failed"  # the flow raised, its kernel died or a cell timed out
    INTERRUPTED = "interrupted"  # stopped by the user (Ctrl-C / SIGTERM)
    CRASHED = "crashed"  # a 'running' record whose process no longer exists
    SKIPPED = "skipped"  # up to date, not executed


def now_iso() -> str:
    """Return the current time as an ISO-8601 string with UTC offset."""
    return _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="milliseconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """Return the run record in ``run_dir``, or ``None`` when absent, unreadable or not ductaflow's."""
    try:
        with open(os.path.join(run_dir, RECORD_NAME), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "ductaflow_record" in data else None


def versions() -> dict[str, str | None]:
    """Versions of Python and the packages that shape a run, without importing them."""
    from importlib import metadata

    found: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("ductaflow", "papermill", "nbclient", "ipykernel", "jupytext"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def host_info() -> dict[str, Any]:
    """Host name, user and process id of this attempt."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = None
    return {"host": socket.gethostname(), "user": user, "pid": os.getpid()}


def git_info(directory: Path) -> dict[str, Any] | None:
    """Commit, branch and dirty flag of the git work tree holding ``directory``.

    Returns ``None`` when ``directory`` is not in a git work tree or git is not
    installed. Untracked files do not make the tree dirty. Takes no lock, so
    the user's own git commands are never blocked by a run.
    """
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    info: dict[str, Any] = {"commit": None, "branch": None, "dirty": False}
    for line in out.stdout.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[-1]
            info["commit"] = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split()[-1]
            info["branch"] = None if head == "(detached)" else head
        elif not line.startswith("#"):
            info["dirty"] = True
    return info


def base_record(**fields: Any) -> dict[str, Any]:
    """Return a new ``running`` record holding ``fields`` and this process's context."""
    record: dict[str, Any] = {"ductaflow_record": RECORD_SCHEMA, "status": RunStatus.RUNNING.value}
    record.update(fields)
    record.update(host_info())
    record["versions"] = versions()
    record["python_executable"] = sys.executable
    return record
