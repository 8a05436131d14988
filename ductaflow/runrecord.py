"""The run record (``run.json``): states, the error it holds, reading and writing, environment capture.

``run.json`` is the single source of truth about an instance. It is written
when an attempt starts (``running``) and rewritten when it ends; every write
is atomic and durable (:func:`ductaflow.files.write_atomic`), so a reader
never sees half a record.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import functools
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .files import read_json, write_json_atomic

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


@dataclasses.dataclass(frozen=True)
class RunError:
    """Why an attempt did not succeed, as stored under ``error`` in ``run.json``.

    A flow executed by an engine names the failing cell (``cell_index`` in the
    flow, ``execution_count``, ``cell_source``); a script run names the
    script's ``line``. Fields that do not apply are ``None``.
    """

    name: str  # the exception's type, or what stopped the run (KeyboardInterrupt, DeadKernelError...)
    message: str
    cell_index: int | None = None
    execution_count: int | None = None
    cell_source: str | None = None
    line: int | None = None
    traceback: str = ""
    fault: bool = False  # the machinery failed (a process died, a limit, no answer), not the flow's code

    def as_record(self) -> dict[str, Any]:
        """The JSON-native dict stored in ``run.json`` (the traceback cut to its last 20,000 characters)."""
        return {**dataclasses.asdict(self), "traceback": self.traceback[-20000:]}

    @classmethod
    def from_record(cls, data: Any) -> RunError | None:
        """The error of a record's ``error`` field; ``None`` when it holds none (or not a mapping)."""
        if not isinstance(data, Mapping):
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        return cls(**{"name": str(values.pop("name", "")), "message": str(values.pop("message", "")),
                      **values})  # fmt: skip

    @property
    def first_line(self) -> str:
        """``KeyError: 'x'``: the name and the message's first line."""
        return f"{self.name}: {self.message}".strip().splitlines()[0]


def error_line(record: Mapping[str, Any]) -> str | None:
    """The first line of a record's error (``KeyError: 'x'``), or ``None``."""
    error = RunError.from_record(record.get("error"))
    return error.first_line if error is not None else None


def now_iso() -> str:
    """Return the current time as an ISO-8601 string with UTC offset."""
    return _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="milliseconds")


def write_record(run_dir: Path, record: Mapping[str, Any]) -> None:
    """Write ``record`` as ``run_dir/run.json``, atomically and durably."""
    write_json_atomic(run_dir / RECORD_NAME, record, durable=True)


def read_record(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Return the run record in ``run_dir``, or ``None`` when absent, unreadable or not ductaflow's."""
    data, _ = read_json(os.path.join(run_dir, RECORD_NAME))
    return data if is_record(data) else None


def is_record(data: Any) -> bool:
    """True when ``data`` (a parsed ``run.json``) was written by ductaflow."""
    return isinstance(data, dict) and "ductaflow_record" in data


def versions() -> dict[str, str | None]:
    """Versions of Python and the packages that shape a run, without importing them."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str | None]:  # read once per process: installing a package mid-run is rare
    import platform
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
    import getpass
    import socket

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
    import subprocess

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
