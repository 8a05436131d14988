"""Per-instance limits and how a flow's process ended, in both engines, on real kernels and forks.

``instance_timeout`` stops a flow that ignores SIGINT; ``max_memory`` turns
an allocation past the limit into MemoryLimitError while the conductor keeps
its own limits; a process that dies names its signal or exit status; the
system's out-of-memory killer is told apart from any other SIGKILL (for real,
in a memory cgroup of its own, where this machine lets the test make one).
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jupytext
import pytest
from conftest import REPO, gone

from ductaflow.engines import Execution, Outcome, get_engine
from ductaflow.engines.limits import MEMORY_RLIMIT, OomKills, describe_bytes, parse_bytes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="limits are enforced on Linux")

ENGINES = ["kernel", "fork"]
GB = 2**30


def notebook(*cells: str) -> object:
    """A notebook of these code cells, as jupytext reads a percent-format flow."""
    return jupytext.reads("".join(f"# %%\n{cell}\n\n" for cell in cells), fmt="py:percent")


def execute(engine: str, run: Path, *cells: str, **options: object) -> Outcome:
    """Execute ``cells`` with ``engine`` in the directory ``run``; the outcome."""
    run.mkdir(exist_ok=True)
    with open(run / "log.txt", "w") as log:
        job = Execution(notebook(*cells), cwd=run, log=log, env=dict(os.environ), **options)  # type: ignore[arg-type]
        return get_engine(engine).execute(job)


def wait_for(path: Path, timeout: float = 120) -> str:
    """The text of ``path`` once the flow has written it (it writes it whole, then renames it)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"the flow never wrote {path.name}"
        time.sleep(0.01)
    return path.read_text()


#: A cell that writes its process id to pid.txt (whole, by a rename) once the flow is in it.
WRITE_PID = "import os\nopen('pid.tmp', 'w').write(str(os.getpid()))\nos.replace('pid.tmp', 'pid.txt')"


@pytest.mark.parametrize("engine", ENGINES)
def test_instance_timeout_kills_a_flow_that_ignores_sigint(engine: str, tmp_path: Path) -> None:
    """Past instance_timeout a flow stuck with SIGINT ignored is killed: InstanceTimeoutError in its cell."""
    hang = f"import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n{WRITE_PID}\ntime.sleep(600)"
    started = time.monotonic()
    outcome = execute(engine, tmp_path / "run", "x = 1", hang, "never = True", instance_timeout=4)
    elapsed = time.monotonic() - started
    error = outcome.error
    assert error is not None and error.name == "InstanceTimeoutError"
    assert error.message == "the instance did not finish within its instance_timeout of 4 s"
    assert error.cell_index == 1 and error.stop_now and error.fault and not error.interrupted
    assert 4 <= elapsed < 30  # the fork engine waits STOP_GRACE (2 s) after SIGINT, then kills
    assert gone(int((tmp_path / "run" / "pid.txt").read_text()))
    assert "[ductaflow] InstanceTimeoutError" in (tmp_path / "run" / "log.txt").read_text()
    assert outcome.notebook.cells[2].get("outputs") == []


@pytest.mark.parametrize("engine", ENGINES)
def test_an_instance_within_its_timeout_succeeds(engine: str, tmp_path: Path) -> None:
    """An instance that ends before its instance_timeout is not touched by it."""
    outcome = execute(engine, tmp_path / "run", "x = 1", "print(x + 1)", instance_timeout=120)
    assert outcome.error is None
    assert outcome.notebook.cells[1].outputs[0]["text"] == "2\n"


IMPORTS = """\
import numpy, pandas
frame = pandas.DataFrame({"a": numpy.arange(10**6) % 7, "b": numpy.arange(10**6)})
print(int(frame.groupby("a")["b"].sum().sum()))"""
#: 0.6 GB allocated and touched: well within the 1 GB the flow may allocate.
KEEP = "kept = numpy.ones(int(0.6 * 2**30) // 8)"

ALLOCATIONS = {"bytearray": "data = bytearray(3 * 2**30)", "numpy": "data = numpy.ones(int(4e8))"}


@pytest.mark.parametrize("allocation", list(ALLOCATIONS))
@pytest.mark.parametrize("engine", ENGINES)
def test_max_memory_turns_an_allocation_past_it_into_memorylimiterror(
    engine: str, allocation: str, tmp_path: Path
) -> None:
    """Under max_memory=1 GB a flow uses pandas (preloaded or not) and 0.6 GB; 3 GB is MemoryLimitError."""
    conductor_limit = resource.getrlimit(resource.RLIMIT_DATA)
    cells = (IMPORTS, KEEP, ALLOCATIONS[allocation])
    outcome = execute(engine, tmp_path / "run", *cells, max_memory=GB, preload=("numpy", "pandas"))
    assert outcome.notebook.cells[0].outputs[0]["text"] == "499999500000\n"
    error = outcome.error
    assert error is not None and error.name == "MemoryLimitError", error
    assert error.message.startswith("the flow ran out of memory under its max_memory limit of 1.0 GB (")
    assert "MemoryError" in error.message and "MemoryError" in error.traceback
    assert error.cell_index == 2 and error.execution_count == 3
    assert not error.fault and error.signal is None
    assert resource.getrlimit(resource.RLIMIT_DATA) == conductor_limit  # never the conductor's


@pytest.mark.parametrize("engine", ENGINES)
def test_max_memory_limits_only_the_flows_process(engine: str, tmp_path: Path) -> None:
    """The limit is the flow's process's, 2 GB beyond what it held; the next instance's is the conductor's."""
    probe = "import resource\nprint(resource.getrlimit(resource.RLIMIT_DATA))"
    conductor_limit = resource.getrlimit(resource.RLIMIT_DATA)
    limited = execute(engine, tmp_path / "a", probe, max_memory=2 * GB)
    free = execute(engine, tmp_path / "b", probe)
    assert limited.error is None and free.error is None
    soft, hard = eval(limited.notebook.cells[0].outputs[0]["text"])
    assert soft == hard and 2 * GB < soft < 3 * GB
    assert free.notebook.cells[0].outputs[0]["text"] == f"{conductor_limit}\n"
    assert resource.getrlimit(resource.RLIMIT_DATA) == conductor_limit


@pytest.mark.parametrize("engine", ENGINES)
def test_a_flows_own_memoryerror_without_max_memory_keeps_its_name(engine: str, tmp_path: Path) -> None:
    """Without max_memory, MemoryError stays the flow's own error: not a fault."""
    outcome = execute(engine, tmp_path / "run", "raise MemoryError('made up')")
    error = outcome.error
    assert error is not None and (error.name, error.message) == ("MemoryError", "made up")
    assert not error.fault


DEATHS = [
    ("os._exit(3)", None, {"kernel": "(exit status 3)", "fork": "exited with status 3"}),
    ("os.kill(os.getpid(), signal.SIGSEGV)", "SIGSEGV", {"kernel": "(killed by SIGSEGV)", "fork": "SIGSEGV"}),
    ("os.kill(os.getpid(), signal.SIGTERM)", "SIGTERM", {"kernel": "(killed by SIGTERM)", "fork": "SIGTERM"}),
]


@pytest.mark.parametrize(("code", "signal_name", "words"), DEATHS, ids=["exit3", "sigsegv", "sigterm"])
@pytest.mark.parametrize("engine", ENGINES)
def test_a_process_that_dies_names_its_signal_or_exit_status(
    engine: str, code: str, signal_name: str | None, words: dict[str, str], tmp_path: Path
) -> None:
    """A flow whose process dies is a fault naming the signal (``signal``) or the exit status."""
    outcome = execute(engine, tmp_path / "run", "x = 1", f"import os, signal\n{code}")
    error = outcome.error
    death = {"kernel": "DeadKernelError", "fork": "DeadProcessError"}[engine]
    assert error is not None and error.name == death and words[engine] in error.message, error
    assert error.signal == signal_name and error.fault and error.cell_index == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_a_sigkill_from_outside_is_not_out_of_memory(engine: str, tmp_path: Path) -> None:
    """A flow killed with SIGKILL by another process is a death by SIGKILL, not the out-of-memory killer."""
    run = tmp_path / "run"
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(execute, engine, run, "x = 1", f"{WRITE_PID}\nimport time\ntime.sleep(600)")
        os.kill(int(wait_for(run / "pid.txt")), signal.SIGKILL)  # the flow is in the cell: it wrote its pid
        error = future.result(timeout=120).error
    assert error is not None and error.name in ("DeadKernelError", "DeadProcessError"), error
    assert error.signal == "SIGKILL" and "SIGKILL" in error.message and "out-of-memory" not in error.message
    assert error.fault and error.cell_index == 1


FLOW_ERRORS = [
    ("raise ValueError('the flow is wrong')", {}, "ValueError", False),
    ("import time\ntime.sleep(600)", {"timeout": 1}, "CellTimeoutError", True),
]


@pytest.mark.parametrize(("code", "options", "name", "fault"), FLOW_ERRORS, ids=["exception", "cell-timeout"])
@pytest.mark.parametrize("engine", ENGINES)
def test_fault_marks_the_machinery_not_the_flow(
    engine: str, code: str, options: dict, name: str, fault: bool, tmp_path: Path
) -> None:
    """The flow's own exception is no fault; a cell timeout is one."""
    error = execute(engine, tmp_path / "run", code, **options).error
    assert error is not None and error.name == name and error.fault is fault


def test_byte_sizes_read_and_written() -> None:
    """Sizes in powers of 1024, as people write them; anything else names the accepted forms."""
    assert [parse_bytes(v) for v in (2048, "2048", "512MB", "2GB", "1.5G", "2 GiB", "1k")] == [
        2048, 2048, 512 * 2**20, 2 * GB, 3 * 2**29, 2 * GB, 1024]  # fmt: skip
    assert [describe_bytes(n) for n in (GB, 3 * 2**29, 512 * 2**20, 100)] == ["1.0 GB", "1.5 GB", "512 MB",
                                                                               "100 bytes"]  # fmt: skip
    for bad in ("2 XB", "", "lots", "0", -5, True, 1.5):
        with pytest.raises(ValueError, match=re.escape('"512MB", "2GB", "1.5G"')):
            parse_bytes(bad)  # type: ignore[arg-type]
    assert MEMORY_RLIMIT == "RLIMIT_DATA"


# The out-of-memory killer, for real: a conductor in a memory cgroup of its own, too small for its flow.

OOM_CONDUCTOR = """\
import dataclasses, json, os, sys
from pathlib import Path
import jupytext
from ductaflow.engines import Execution, get_engine

flow = '''# %%
x = 1

# %%
open("/proc/self/oom_score_adj", "w").write("1000")  # the flow, not its conductor, is the one to go
data = b"x" * 2**30  # 1 GB, every page touched
'''
run = Path(sys.argv[2])
with open(run / "log.txt", "w") as log:
    job = Execution(jupytext.reads(flow, fmt="py:percent"), cwd=run, log=log, env=dict(os.environ))
    outcome = get_engine(sys.argv[1]).execute(job)
print(json.dumps(dataclasses.asdict(outcome.error)))
"""


def _memory_cgroup_dir() -> tuple[Path, str, str]:
    """This process's memory cgroup directory, its limit file and its OOM-kill counter file."""
    memberships = Path("/proc/self/cgroup").read_text().splitlines()
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    for line in memberships:
        _number, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            for mount in mounts:
                fields, _, rest = mount.partition(" - ")
                if rest.startswith("cgroup ") and "memory" in rest.split(" ")[2].split(","):
                    root, point = fields.split(" ")[3:5]
                    relative = path[len(root) :] if root != "/" else path
                    return Path(point, relative.lstrip("/")), "memory.limit_in_bytes", "memory.oom_control"
    for line in memberships:
        if line.startswith("0::"):
            for mount in mounts:
                fields, _, rest = mount.partition(" - ")
                if rest.startswith("cgroup2 "):
                    point = fields.split(" ")[4]
                    return Path(point, line[3:].lstrip("/")), "memory.max", "memory.events"
    raise FileNotFoundError("this process is in no memory cgroup (neither cgroup v1 nor v2 is mounted)")


@pytest.fixture
def small_cgroup(tmp_path: Path) -> Iterator[Path]:
    """A memory cgroup of 300 MB without swap, inside this process's own (skips where none can be made)."""
    try:
        parent, limit_file, counter = _memory_cgroup_dir()
        group = parent / f"ductaflow-test-{os.getpid()}-{tmp_path.name}"
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup here (needs root or a delegated cgroup): {exc}")
    try:
        (group / limit_file).write_text(str(300 * 2**20))
        for name, value in (("memory.swap.max", "0"), ("memory.swappiness", "0")):
            if (group / name).exists():
                (group / name).write_text(value)
        problem = None if "oom_kill " in (group / counter).read_text() else f"{counter} counts no oom_kill"
    except OSError as exc:
        problem = f"cannot set a memory limit on a new cgroup here: {exc}"
    if problem is not None:
        group.rmdir()
        pytest.skip(problem)
    yield group
    deadline = time.monotonic() + 60
    while (group / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)  # the zygote ends once its conductor is gone
    group.rmdir()


@pytest.mark.parametrize("engine", ENGINES)
def test_the_out_of_memory_killer_is_named(engine: str, small_cgroup: Path, tmp_path: Path) -> None:
    """A flow killed by the system's out-of-memory killer is OutOfMemoryError, a SIGKILL fault."""
    counter = small_cgroup / ("memory.oom_control" if (small_cgroup / "memory.oom_control").exists()
                              else "memory.events")  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    enter = f'echo $$ > {small_cgroup / "cgroup.procs"} && exec "$@"'
    command = ["sh", "-c", enter, "sh", sys.executable, "-c", OOM_CONDUCTOR, engine, str(run)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    error = json.loads(done.stdout.strip().splitlines()[-1])
    assert OomKills(counter, 0).happened(), "the out-of-memory killer did not run"
    assert error["name"] == "OutOfMemoryError", error
    assert error["message"].startswith("the system's out-of-memory killer stopped the ")
    assert "(SIGKILL)" in error["message"] and error["signal"] == "SIGKILL"
    assert error["fault"] and error["cell_index"] == 1
