"""Limits on a flow's process, and how that process ended: byte sizes, the memory limit, OOM kills.

Both engines use these. ``max_memory`` is enforced with the process's
``RLIMIT_DATA`` (:data:`MEMORY_RLIMIT`), set on the flow's process only (the
kernel, or the forked child), never on the conductor, before the first cell:
the flow may allocate ``max_memory`` bytes beyond what its process held then
(the interpreter and kernel; in the fork engine also the modules the zygote
preloaded, shared by every child: a preloaded pandas maps 1.2 GB, 1 GB of it
address space pyarrow's allocator reserved and has not used). The limit
applies to each process: one the flow starts inherits its own copy.

RLIMIT_DATA counts the writable private memory a process maps (its heap,
anonymous mappings, thread stacks), which is what a flow allocates.
RLIMIT_AS also counts code, mapped files and address space reserved but not
usable, which kernels have plenty of: a live ipykernel with numpy and pandas
imported has 1.2 GB of address space but 0.3 GB of data; under a 1 GB
RLIMIT_AS it hangs, under a 1 GB RLIMIT_DATA it runs and an allocation past
the limit raises MemoryError.

A process killed with SIGKILL by the system's out-of-memory killer is told
apart from one killed by anyone else by the OOM-kill counter of its memory
cgroup (cgroup v1 ``memory.oom_control``, v2 ``memory.events.local``; the
system's ``/proc/vmstat`` where the process is in no memory cgroup), read
when the process starts and again once it has died. A SIGKILL sent by
someone else while the killer took a neighbour in the same cgroup would be
taken for the killer's.
"""

from __future__ import annotations

import asyncio
import functools
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError
from .base import ExecutionError

#: The resource limit that enforces ``max_memory`` (see the module's docstring for why this one).
MEMORY_RLIMIT = "RLIMIT_DATA"
#: The names a flow's MemoryError has in a notebook (numpy raises a subclass of its own).
MEMORY_ERRORS = frozenset({"MemoryError", "_ArrayMemoryError"})
#: Units of byte sizes, powers of 1024 as SLURM and docker count memory: 1 GB = 1024 MB = 2**30 bytes.
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(I?B)?\s*", re.IGNORECASE)
_FORMS = 'an int of bytes, or a number and a unit: "512MB", "2GB", "1.5G" (KB, MB, GB, TB; 1 GB = 1024 MB)'


def parse_bytes(value: str | int) -> int:
    """The number of bytes ``value`` names: ``2048``, ``"512MB"``, ``"2GB"``, ``"1.5G"``, ``"2 GiB"``.

    Units are powers of 1024. :class:`ValueError` names the accepted forms
    for anything else, and for a size that is not positive.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)):
        digits, unit, suffix = match.groups()
        if unit == "" and suffix and suffix.upper() == "IB":
            raise ValueError(f"memory size {value!r} is not understood; give {_FORMS}")
        number = int(float(digits) * _UNITS[unit.upper()])
    else:
        raise ValueError(f"memory size {value!r} is not understood; give {_FORMS}")
    if number <= 0:
        raise ValueError(f"memory size {value!r} must be more than 0 bytes; give {_FORMS}")
    return number


def describe_bytes(count: int) -> str:
    """``count`` bytes for people: ``"1.0 GB"``, ``"1.5 GB"``, ``"512 MB"`` (powers of 1024)."""
    for name in ("TB", "GB", "MB", "KB"):
        size = count / _UNITS[name[0]]
        if size >= 1:
            return f"{size:.1f} {name}" if size < 100 else f"{size:.0f} {name}"
    return f"{count} bytes"


def check_max_memory(max_memory: int | None) -> None:
    """Raise :class:`ConfigError` when ``max_memory`` cannot be enforced here (it needs Linux)."""
    if max_memory is not None and not sys.platform.startswith("linux"):
        raise ConfigError(f"max_memory is enforced on Linux only, not on {sys.platform}: leave it unset "
                          "(or run on Linux).", key="max_memory")  # fmt: skip


def limit_memory(max_memory: int, pid: int = 0) -> int:
    """Let process ``pid`` (0: this one) allocate ``max_memory`` bytes more than it holds now; the limit.

    Sets the soft and hard limits, so the flow cannot raise its own; a hard
    limit already lower stays. :class:`ConfigError` off Linux, :class:`OSError`
    when the process is gone or may not be limited.
    """
    check_max_memory(max_memory)
    import resource

    which = getattr(resource, MEMORY_RLIMIT)
    _soft, hard = resource.prlimit(pid, which)
    limit = _data_size(pid) + max_memory
    if hard != resource.RLIM_INFINITY and hard < limit:
        limit = hard
    resource.prlimit(pid, which, (limit, limit))
    return limit


def _data_size(pid: int) -> int:
    """The bytes process ``pid`` (0: this one) has mapped that RLIMIT_DATA counts (its VmData)."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    found = re.search(r"^VmData:\s*(\d+) kB$", status, re.MULTILINE)
    if found is None:
        raise OSError(f"no VmData in /proc/{pid or 'self'}/status")
    return int(found.group(1)) * 1024


def instance_timeout_error(seconds: float | None, index: int | None, count: int | None) -> ExecutionError:
    """The error for an instance stopped at its ``instance_timeout`` in cell ``index``."""
    message = f"the instance did not finish within its instance_timeout of {seconds:g} s"
    return ExecutionError("InstanceTimeoutError", message, index, count, stop_now=True, fault=True)


def memory_limit_error(error: ExecutionError, max_memory: int | None) -> ExecutionError:
    """``error`` as a MemoryLimitError when it is the flow's MemoryError under ``max_memory``."""
    if max_memory is None or error.name not in MEMORY_ERRORS:
        return error
    detail = f"{error.name}: {error.message}" if error.message else error.name
    limit = describe_bytes(max_memory)
    message = f"the flow ran out of memory under its max_memory limit of {limit} ({detail})"
    return ExecutionError("MemoryLimitError", message, error.cell_index, error.execution_count,
                          error.traceback)  # fmt: skip


def signal_name(number: int) -> str:
    """The name of signal ``number`` (``"SIGKILL"``), or ``"signal 99"`` for one Python does not know."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def limit_kernel_memory(max_memory: int, pid: int | None) -> ExecutionError | None:
    """Limit the kernel process ``pid``'s memory; the KernelStartError when it cannot be limited."""
    try:
        if pid is None:
            raise OSError("the kernel has no local process")
        limit_memory(max_memory, pid)
    except (OSError, ValueError) as exc:
        limit = describe_bytes(max_memory)
        message = f"the kernel's memory could not be limited to {limit} (max_memory): {exc}"
        return ExecutionError("KernelStartError", message, stop_now=True)
    return None


async def kernel_death(process: Any, oom: OomKills | None) -> ExecutionError:
    """The error for a kernel whose ``process`` (a Popen, or None) died: its signal or exit status."""
    returncode, waited = None, time.monotonic() + 1.0
    while process is not None and returncode is None and time.monotonic() < waited:
        returncode = process.poll()  # the kernel was seen dead: its exit status is due
        if returncode is None:
            await asyncio.sleep(0.01)
    number = -returncode if returncode is not None and returncode < 0 else None
    how = "the flow crashed or exited the process" if returncode is None else f"exit status {returncode}"
    if number is not None:
        how = f"killed by {signal_name(number)}"
    message = f"the kernel died while executing this cell ({how})"
    return death("DeadKernelError", message, number, oom, "the kernel")


def death(name: str, message: str, number: int | None, oom: OomKills | None, what: str) -> ExecutionError:
    """A process's death as an error: ``name`` and ``message``, or an OutOfMemoryError.

    Signal ``number`` ended it (None: it exited); a SIGKILL while ``oom``
    counted an out-of-memory kill was the system's out-of-memory killer's,
    and ``what`` (``"the kernel"``) names the process for that message.
    """
    name_of_signal = signal_name(number) if number else None
    if name_of_signal == "SIGKILL" and oom is not None and oom.happened():
        return out_of_memory(what)
    return ExecutionError(name, message, signal=name_of_signal, stop_now=True, fault=True)


def out_of_memory(what: str) -> ExecutionError:
    """The error for ``what`` (``"the kernel"``) killed by the system's out-of-memory killer."""
    message = (f"the system's out-of-memory killer stopped {what} while executing this cell (SIGKILL): the "
               "flow, or what ran beside it, wanted more memory than the machine or cgroup had")  # fmt: skip
    return ExecutionError("OutOfMemoryError", message, signal="SIGKILL", stop_now=True, fault=True)


@dataclass
class OomKills:
    """The out-of-memory kills counted where a process lives, from when it was watched."""

    path: Path  # the counter: memory.oom_control, memory.events or /proc/vmstat
    start: int

    @classmethod
    def watch(cls, pid: int) -> OomKills | None:
        """Start counting for process ``pid``; None where no counter can be read."""
        for path in (*_cgroup_counters(pid), Path("/proc/vmstat")):
            count = _read_count(path)
            if count is not None:
                return cls(path, count)
        return None

    def happened(self) -> bool:
        """Whether the out-of-memory killer killed a process there since the watch began."""
        count = _read_count(self.path)
        return count is not None and count > self.start


def _read_count(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    found = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def _cgroup_counters(pid: int) -> list[Path]:
    """The OOM-kill counters of ``pid``'s memory cgroup, nearest first (cgroup v1, then v2)."""
    try:
        memberships = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    found: list[Path] = []
    for version, counters in ((1, ("memory.oom_control",)), (2, ("memory.events.local", "memory.events"))):
        for line in memberships:
            number, controllers, path = line.split(":", 2)
            ours = "memory" in controllers.split(",") if version == 1 else number == "0" and not controllers
            if ours:
                found += _nearest(path, _cgroup_mounts(version), counters)
    return found


@functools.cache
def _cgroup_mounts(version: int) -> list[tuple[str, str]]:
    """(root, mount point) of each mount of the cgroup v1 memory hierarchy, or of cgroup v2.

    Read once per process: cgroup hierarchies are mounted at boot.
    """
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in mounts:
        fields, _, rest = line.partition(" - ")
        kind, _source, options = [*rest.split(" "), "", ""][:3]
        parts = fields.split(" ")
        if (version == 1 and kind == "cgroup" and "memory" in options.split(",")) or (
            version == 2 and kind == "cgroup2"
        ):
            found.append((parts[3], parts[4]))
    return found


def _nearest(path: str, mounts: list[tuple[str, str]], counters: tuple[str, ...]) -> list[Path]:
    """The ``counters`` files of the cgroup ``path`` and its parents below the root, where mounted."""
    found = []
    for root, point in mounts:
        if root != "/" and path != root and not path.startswith(root.rstrip("/") + "/"):
            continue
        relative = path[len(root) :] if root != "/" else path
        directory = Path(point, relative.lstrip("/"))
        while directory != Path(point) and Path(point) in directory.parents:  # the root counts no kills
            found += [directory / counter for counter in counters]
            directory = directory.parent
    return found
