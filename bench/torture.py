"""Fault torture: real conductor processes, fresh projects, faults at random moments; a table of what broke.

Every trial builds a fresh temporary project (a flow, a control table, an
empty ``ductaflow.toml``), runs real conductor processes on it (the
``ductaflow sweep`` command, or a small script calling
``ductaflow.run_instances``), hurts them, and checks what is left:

* ``kill -9`` of a conductor at a random moment (a random delay after an
  event: the start, the first record, the first flow ended, the first
  success, every flow ended), then a re-run to completion;
* races: 8 conductors started at once on one 12-instance table, all to completion;
* Ctrl-C (SIGINT to the conductor's process group) and SIGTERM (to the
  conductor) at random moments, the first trials of each while a
  100,000-row table is still being planned, then a re-run to completion (on
  the first 8 rows of the big table for those);
* faults inside a flow, with both engines: ``os._exit(3)``, a segfault, a C
  call that hangs with SIGINT blocked (run with a per-cell ``timeout``), and
  a memory blow-up under ``max_memory="500MB"`` (only when ``run_instances``
  accepts ``max_memory``; the flow never allocates more than 1.5 GB), then a
  re-run with the fault disarmed.

The flow appends ``<instance> <pid> start|end`` to a journal outside the runs
folder (``O_APPEND``) and writes ``done.marker`` in its last cell. Counted for
every trial, all of which must be 0:

* false successes: a ``success`` record whose ``config.json``, notebook
  (nbformat, every code cell executed), HTML report, log or marker is
  missing, truncated or invalid;
* duplicate executions: an instance started twice by one conductor or by the
  racing conductors, or started again by the re-run after it had succeeded;
* leftover processes: any process carrying the trial's environment marker
  (zygote, forked child, kernel) still alive 15 s after its conductors ended;
* leftover temporary files: ``*.tmp`` anywhere under ``runs/``, staging
  folders in ``.ductaflow/staging/`` (or ``new-*`` ones of older versions);
* not completed: an instance whose record is not ``success`` after the re-run;
* other: an unexpected exit code, a conductor slow to stop after SIGINT or
  SIGTERM, a record left ``running`` by a conductor that stopped cleanly, a
  previous attempt kept after the instance succeeded, a fault recorded as
  anything but a failure.

Temporary folders of passing trials are deleted; those of failing trials are
kept and named. ``--only KIND:N`` re-runs one trial with the same random
choices (``--seed`` the same); KIND is kill9, race, sigint, sigterm or fault.

Usage: ``python bench/torture.py [--quick] [--seed N] [--only KIND[:N]] [--keep]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil
from rich.console import Console
from rich.table import Table

PYTHON = sys.executable
MARKER_ENV = "DUCTAFLOW_TORTURE_TRIAL"
STEP = "t"
MEMORY_LIMIT = "500MB"
BIG_ROWS = 100_000
LEFTOVER_WAIT_S = 15.0  # a process of the trial still alive this long after its conductors ended is left over
STOP_PROMPT_S = 10.0  # a conductor must exit this soon after SIGINT or SIGTERM
PLANNING_STOP_PROMPT_S = 5.0  # ... and this soon when the signal came while it was planning
RUN_DEADLINE_S = 300.0  # a conductor left to finish must do so within this
POLL_S = 0.005

FLOW = '''\
# %% tags=["parameters"]
config = {"n": 0, "sleep": 0.0}

# %%
import os
import time

from ductaflow import project_path

NAME = os.path.basename(os.getcwd())


def journal(event):
    """Append one line to the trial's journal, outside the runs folder, in one write."""
    fd = os.open(project_path("journal.txt"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{NAME} {os.getpid()} {event}\\n".encode())
    finally:
        os.close(fd)


journal("start")

# %%
armed = project_path("armed", NAME)
fault = open(armed).read().strip() if os.path.exists(armed) else ""
if fault == "exit3":
    os._exit(3)
elif fault == "segfault":
    import ctypes

    ctypes.string_at(0)
elif fault == "hang":
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    time.sleep(600)
elif fault == "memory":
    hoard = []
    for _ in range(30):  # 1.5 GB at most, whatever the limit does
        hoard.append(b"x" * (50 << 20))
    raise RuntimeError("1.5 GB allocated without a MemoryError: max_memory was not enforced")

# %%
time.sleep(config["sleep"])
print(f"instance {NAME}: n = {config['n']}")

# %%
with open("done.marker", "w") as fh:
    fh.write(NAME)
journal("end")
'''

DRIVER = '''\
"""Run the trial's table with ductaflow.run_instances; exit 0, 1 (an instance failed) or 130 (interrupted)."""
import json
import sys

import ductaflow

spec = json.loads(sys.argv[1])
try:
    with open(spec["table"]) as fh:
        rows = json.load(fh)
    frame = ductaflow.run_instances("flow/t.py", rows, **spec["options"])
except KeyboardInterrupt:
    sys.exit(130)
statuses = set(frame.status)
sys.exit(130 if "interrupted" in statuses else 1 if "failed" in statuses else 0)
'''

PROBE = """\
import sys
import ductaflow
try:
    ductaflow.run_instances("flow/t.py", [{"n": 1, "sleep": 0.0}], dry_run=True, progress=False,
                            max_memory=sys.argv[1])
except TypeError as exc:
    print(exc)
    sys.exit(1)
"""

FAULTS = ("exit3", "segfault", "hang", "memory")
FAULT_LABELS = {"exit3": "os._exit(3)", "segfault": "segfault", "hang": "hung C call", "memory": "memory"}
EVENTS = ("start", "first record", "first end", "first success", "all flows ended")


# --- the problems one trial found -----------------------------------------------------------------------


@dataclass
class Problems:
    """What one trial found, by column of the table; each entry one sentence naming what and where."""

    false_success: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    leftover_process: list[str] = field(default_factory=list)
    leftover_tmp: list[str] = field(default_factory=list)
    not_completed: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what happened, not a failure

    def columns(self) -> list[list[str]]:
        """The must-be-0 columns, in table order."""
        return [
            self.false_success,
            self.duplicate,
            self.leftover_process,
            self.leftover_tmp,
            self.not_completed,
            self.other,
        ]

    def count(self) -> int:
        """How many problems in all."""
        return sum(len(column) for column in self.columns())


COLUMN_NAMES = ("false success", "duplicate", "leftover process", "leftover tmp", "not completed", "other")


# --- a trial's project and its processes ---------------------------------------------------------------


class Project:
    """A fresh temporary project: the flow, its tables, the journal, and the marker for its processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = uuid.uuid4().hex
        self.since = time.time()
        (root / "flow").mkdir(parents=True)
        (root / "flow" / "t.py").write_text(FLOW, encoding="utf-8")
        (root / "driver.py").write_text(DRIVER, encoding="utf-8")
        (root / "ductaflow.toml").write_text("", encoding="utf-8")
        (root / "armed").mkdir()
        (root / "tmp").mkdir()
        self.step_dir = root / "runs" / STEP
        self.journal = root / "journal.txt"
        self.names: list[str] = []

    def env(self) -> dict[str, str]:
        """The conductors' environment: the trial's marker, temporary files inside the project."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}
        env[MARKER_ENV] = self.marker
        env["TMPDIR"] = str(self.root / "tmp")
        env["JUPYTER_RUNTIME_DIR"] = str(self.root / "tmp" / "jupyter-runtime")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def write_table(self, rows: list[dict[str, object]], stem: str = "table") -> None:
        """Write ``rows`` as ``<stem>.csv`` (for the command) and ``<stem>.json`` (for run_instances)."""
        lines = ["instance_name,n,sleep", *(f"{r['instance_name']},{r['n']},{r['sleep']}" for r in rows)]
        (self.root / f"{stem}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (self.root / f"{stem}.json").write_text(json.dumps(rows), encoding="utf-8")

    def journal_lines(self) -> list[tuple[str, int, str]]:
        """The journal as (instance, pid, event) triples; a torn line is skipped."""
        if not self.journal.exists():
            return []
        triples = []
        for line in self.journal.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                triples.append((parts[0], int(parts[1]), parts[2]))
        return triples


def make_rows(rng: random.Random, count: int, *, start: int = 0) -> list[dict[str, object]]:
    """Table rows ``i000000``... with a random sleep each, so faults land in every phase of an instance."""
    return [
        {"instance_name": f"i{i:06d}", "n": i, "sleep": round(rng.uniform(0.05, 0.4), 3)}
        for i in range(start, start + count)
    ]


@dataclass
class Conductor:
    """A conductor process started by a trial, its output file and when it started."""

    proc: subprocess.Popen[bytes]
    output: Path
    started: float

    def output_text(self) -> str:
        """What it printed so far."""
        return self.output.read_text(encoding="utf-8", errors="replace") if self.output.exists() else ""

    def planned(self) -> bool:
        """Whether it has finished planning: its first progress line says how many instances run."""
        return f"{STEP}: " in self.output_text()

    def tail(self) -> str:
        """The last lines it printed, on one line."""
        return " | ".join(self.output_text().strip().splitlines()[-4:])[-400:]

    def wait(self, timeout: float) -> int | None:
        """Its exit code, or None if it still runs after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """kill -9 the conductor (only it: what it started must notice by itself)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def start_conductor(
    project: Project,
    front: str,
    engine: str,
    table: str = "table",
    *,
    jobs: int = 2,
    options: dict[str, object] | None = None,
    tag: str = "",
) -> Conductor:
    """Start ``ductaflow sweep`` (front ``cli``) or the run_instances script (``driver``) on a table."""
    options = dict(options or {})
    if front == "cli":
        command = [
            PYTHON,
            "-m",
            "ductaflow",
            "sweep",
            "flow/t.py",
            "--table",
            f"{table}.csv",
            "-j",
            str(jobs),
            "--engine",
            engine,
        ]
        if "timeout" in options:
            command += ["--timeout", str(options.pop("timeout"))]
        if options:
            raise ValueError(f"the command cannot take {sorted(options)}")
    else:
        spec = {"table": f"{table}.json", "options": {"jobs": jobs, "engine": engine, **options}}
        command = [PYTHON, "driver.py", json.dumps(spec)]
    output = project.root / f"conductor-{tag or uuid.uuid4().hex[:8]}.out"
    with open(output, "wb") as fh:
        proc = subprocess.Popen(
            command,
            cwd=project.root,
            env=project.env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Conductor(proc, output, time.monotonic())


def trial_processes(project: Project) -> list[psutil.Process]:
    """Live processes carrying the trial's marker in their environment (zombies are already dead)."""
    found = []
    for proc in psutil.process_iter(["create_time", "status"]):
        info = proc.info
        if info["create_time"] is None or info["create_time"] < project.since - 1:
            continue
        if info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(MARKER_ENV) == project.marker:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def describe(proc: psutil.Process) -> str:
    """A process as a person reads it: pid, parent, what it runs, where."""
    try:
        command = " ".join(proc.cmdline())
        command = command if len(command) < 140 else command[:137] + "..."
        return f"pid {proc.pid} (parent {proc.ppid()}, {proc.status()}): {command}"
    except psutil.Error:
        return f"pid {proc.pid} (gone while described)"


def settle_processes(project: Project, when: str, problems: Problems) -> None:
    """Wait (polling) up to LEFTOVER_WAIT_S for the trial's processes to end; count and kill the rest."""
    deadline = time.monotonic() + LEFTOVER_WAIT_S
    while True:
        alive = trial_processes(project)
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    for proc in alive:
        problems.leftover_process.append(
            f"{when}: {describe(proc)} still alive after {LEFTOVER_WAIT_S:.0f} s"
        )
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def wait_until(predicate: Callable[[], bool], conductors: Iterable[Conductor], timeout: float) -> bool:
    """Poll ``predicate`` until it holds (True), every conductor has exited or ``timeout`` passed (False)."""
    conductors = list(conductors)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if all(c.proc.poll() is not None for c in conductors):
            return predicate()
        time.sleep(POLL_S)
    return False


def event_reached(project: Project, event: str, total: int) -> Callable[[], bool]:
    """A predicate for ``event`` of one conductor run over ``total`` instances."""

    def records() -> list[Path]:
        return list(project.step_dir.glob("*/run.json")) if project.step_dir.exists() else []

    def ended() -> int:
        return sum(1 for _, _, what in project.journal_lines() if what == "end")

    def success() -> bool:
        for path in records():
            try:
                if b'"success"' in path.read_bytes():
                    return True
            except OSError:  # replaced or removed while read
                continue
        return False

    checks: dict[str, Callable[[], bool]] = {
        "start": lambda: True,
        "first record": lambda: bool(records()),
        "first end": lambda: ended() >= 1,
        "first success": success,
        "all flows ended": lambda: ended() >= total,
    }
    return checks[event]


# --- checks on a project ---------------------------------------------------------------------------


def read_json_file(path: Path) -> tuple[object, str | None]:
    """``(value, None)`` or ``(None, what is wrong)``."""
    try:
        return json.loads(path.read_bytes()), None
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__})"


def success_problem(run_dir: Path, record: dict[str, object]) -> str | None:
    """Why a ``success`` record is false (an output missing, truncated or invalid), or None."""
    config, problem = read_json_file(run_dir / "config.json")
    if problem:
        return f"config.json {problem}"
    if "config" in record and config != record["config"]:
        return "config.json differs from the record's config"
    try:
        nb = nbformat.read(run_dir / "t.ipynb", as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        return f"notebook t.ipynb invalid or missing ({type(exc).__name__}: {str(exc)[:80]})"
    unrun = [
        i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.execution_count is None
    ]
    if unrun:
        return f"notebook cells {unrun} never executed"
    marker = run_dir / "done.marker"
    if not marker.exists() or marker.read_text(encoding="utf-8") != run_dir.name:
        return "done.marker missing: the flow did not finish"
    html = run_dir / "t.html"
    if (record.get("outputs") or {}).get("html") and (  # type: ignore[union-attr]
        not html.exists()
        or not html.read_text(encoding="utf-8", errors="replace").rstrip().endswith("</html>")
    ):
        return "t.html missing or truncated"
    if not (run_dir / "log.txt").exists():
        return "log.txt missing"
    return None


def scan_records(project: Project, problems: Problems, when: str, *, stopped_cleanly: bool) -> dict[str, str]:
    """Every instance's status (``unknown`` for a bad record); false successes and bad records counted."""
    statuses: dict[str, str] = {}
    if not project.step_dir.exists():
        return statuses
    for run_dir in sorted(p for p in project.step_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        record, problem = read_json_file(run_dir / "run.json")
        if problem or not isinstance(record, dict):
            statuses[run_dir.name] = "unknown"
            problems.other.append(f"{when}: {run_dir.name}/run.json {problem or 'not an object'}")
            continue
        status = str(record.get("status"))
        statuses[run_dir.name] = status
        if status == "success":
            why = success_problem(run_dir, record)
            if why:
                problems.false_success.append(f"{when}: {run_dir.name} says success but {why}")
        elif status == "running" and stopped_cleanly:
            problems.other.append(f"{when}: {run_dir.name} left 'running' by a conductor that exited cleanly")
    return statuses


def scan_leftover_files(project: Project, problems: Problems) -> None:
    """``*.tmp`` anywhere under runs/, staging folders, previous attempts of succeeded instances."""
    runs = project.root / "runs"
    if not runs.exists():
        return
    for folder, dirs, files in os.walk(runs):
        for name in [*files, *dirs]:
            if name.endswith(".tmp"):
                problems.leftover_tmp.append(str(Path(folder, name).relative_to(project.root)))
    state = project.step_dir / ".ductaflow"
    if state.exists():
        for staging in [*state.glob("new-*"), *state.glob("staging/*")]:
            problems.leftover_tmp.append(f"staging folder {staging.relative_to(project.root)}")
        previous = state / "previous"
        for kept in sorted(previous.iterdir()) if previous.exists() else []:
            record, _ = read_json_file(project.step_dir / kept.name / "run.json")
            if isinstance(record, dict) and record.get("status") == "success":
                problems.other.append(f"{kept.relative_to(project.root)} kept after {kept.name} succeeded")


def note_stray_temporaries(project: Project, problems: Problems) -> None:
    """Zygote socket folders and kernel connection files left in the trial's TMPDIR (a note, not counted)."""
    tmp = project.root / "tmp"
    zygotes = list(tmp.glob("ductaflow-zygote-*"))
    connections = list((tmp / "jupyter-runtime").glob("kernel-*.json"))
    if zygotes:
        problems.notes.append(f"zygote folders left in TMPDIR: {len(zygotes)}")
    if connections:
        problems.notes.append(f"kernel connection files left: {len(connections)}")


def count_events(lines: list[tuple[str, int, str]], event: str) -> dict[str, int]:
    """How many times each instance logged ``event``."""
    counts: dict[str, int] = {}
    for name, _, what in lines:
        if what == event:
            counts[name] = counts.get(name, 0) + 1
    return counts


def check_duplicates(
    first: list[tuple[str, int, str]],
    second: list[tuple[str, int, str]],
    succeeded: set[str],
    problems: Problems,
    first_label: str,
) -> None:
    """No instance started twice by one conductor run; none started again by the re-run once succeeded."""
    for label, lines in ((first_label, first), ("re-run", second)):
        for name, starts in count_events(lines, "start").items():
            if starts > 1:
                pids = sorted({pid for n, pid, what in lines if n == name and what == "start"})
                problems.duplicate.append(f"{label}: {name} started {starts} times (flow pids {pids})")
    for name, starts in count_events(second, "start").items():
        if name in succeeded:
            problems.duplicate.append(f"re-run: {name} executed again ({starts}x) though it had succeeded")


def check_completed(project: Project, problems: Problems, statuses: dict[str, str]) -> None:
    """Every instance of the table ends ``success``."""
    for name in project.names:
        status = statuses.get(name, "missing")
        if status != "success":
            problems.not_completed.append(f"{name}: {status} after the re-run")


def expect_exit(
    code: int | None, expected: Iterable[int], conductor: Conductor, what: str, problems: Problems
) -> None:
    """Count an exit code other than ``expected`` (None: it did not finish and was killed)."""
    if code is None:
        conductor.kill()
        problems.other.append(
            f"{what}: still running after {RUN_DEADLINE_S:.0f} s, killed; {conductor.tail()}"
        )
    elif code not in tuple(expected):
        problems.other.append(f"{what}: exit code {code}; {conductor.tail()}")


def rerun(
    project: Project,
    front: str,
    engine: str,
    problems: Problems,
    table: str = "table",
    options: dict[str, object] | None = None,
) -> tuple[list[tuple[str, int, str]], dict[str, str]]:
    """Run the conductor again to completion; return the journal lines it added and the final statuses."""
    offset = len(project.journal_lines())
    conductor = start_conductor(project, front, engine, table, options=options, tag="rerun")
    expect_exit(conductor.wait(RUN_DEADLINE_S), (0,), conductor, "re-run", problems)
    settle_processes(project, "after the re-run", problems)
    statuses = scan_records(
        project, problems, "after the re-run", stopped_cleanly=False
    )  # running: not completed
    scan_leftover_files(project, problems)
    note_stray_temporaries(project, problems)
    check_completed(project, problems, statuses)
    return project.journal_lines()[offset:], statuses


# --- the trials ------------------------------------------------------------------------------------


@dataclass
class Trial:
    """One trial: which kind, its number, the table row it counts in, its own random choices."""

    kind: str
    number: int
    row: str
    rng: random.Random
    describe: str = ""


@dataclass
class Context:
    """What every trial shares: where projects go, and whether the memory fault can run."""

    base: Path
    keep: bool
    seed: int
    max_memory: bool


def signal_trial(
    ctx: Context,
    trial: Trial,
    project: Project,
    sig: signal.Signals,
    *,
    engine: str,
    front: str,
    planning: bool,
) -> Problems:
    """Start a conductor, send ``sig`` at a random moment, check, re-run to completion, check again."""
    rng, problems = trial.rng, Problems()
    rows = make_rows(rng, 8)
    project.names = [str(r["instance_name"]) for r in rows]
    project.write_table(rows)
    if planning:
        big = rows + [{"instance_name": f"i{i:06d}", "n": i, "sleep": 0.0} for i in range(8, BIG_ROWS)]
        project.write_table(big, "big")
        event, delay = "start", rng.uniform(0.5, 4.0)
    else:
        event = rng.choice(EVENTS)
        delay = rng.uniform(0, 3.5 if engine == "fork" else 8.0) if event == "start" else rng.uniform(0, 0.5)
    trial.describe = f"{engine} {front} {'100k table, ' if planning else ''}{event} +{delay:.3f} s"
    conductor = start_conductor(project, front, engine, "big" if planning else "table", tag="first")
    wait_until(event_reached(project, event, len(rows)), [conductor], RUN_DEADLINE_S)
    time.sleep(delay)  # the random moment: the point of the trial, not a synchronisation
    landed = where_landed(project, conductor, len(rows))
    trial.describe += f", landed {landed}"
    problems.notes.append(f"landed {landed}")
    sent = time.monotonic()
    if conductor.proc.poll() is None:
        if sig is signal.SIGINT:
            os.killpg(conductor.proc.pid, sig)  # as a terminal's Ctrl-C: the whole foreground group
        else:
            os.kill(conductor.proc.pid, sig)
    if sig is signal.SIGKILL:
        conductor.kill()
        code: int | None = None
    else:
        code = conductor.wait(60)
        check_stop(code, time.monotonic() - sent, landed, sig, conductor, problems)
    settle_processes(project, f"after {sig.name}", problems)
    clean = (sig is not signal.SIGKILL and code == 130) or landed == "after exit"
    statuses = scan_records(project, problems, f"after {sig.name}", stopped_cleanly=clean)
    if planning and landed == "planning" and project.step_dir.exists():
        written = sorted(p.name for p in project.step_dir.iterdir())
        problems.notes.append(f"written while planning: {written[:5]}")
    succeeded = {name for name, status in statuses.items() if status == "success"}
    first = project.journal_lines()
    second, _ = rerun(project, front, engine, problems)
    check_duplicates(first, second, succeeded, problems, f"before {sig.name}")
    return problems


def where_landed(project: Project, conductor: Conductor, total: int) -> str:
    """Which phase the conductor is in now: planning, running, after the flows, after exit."""
    if conductor.proc.poll() is not None:
        return "after exit"
    if not conductor.planned():
        return "planning"
    ended = sum(1 for _, _, what in project.journal_lines() if what == "end")
    return "after the flows" if ended >= total else "running"


def check_stop(
    code: int | None,
    latency: float,
    landed: str,
    sig: signal.Signals,
    conductor: Conductor,
    problems: Problems,
) -> None:
    """After SIGINT or SIGTERM: exit 130 (0 if it had already finished), promptly.

    After the flows, the command may have returned already: it has put back
    the handlers the process had before (the defaults), so the process, its
    results recorded, dies of the signal (exit code minus its number).
    """
    if code is None:
        conductor.kill()
        problems.other.append(
            f"still running 60 s after the signal (landed {landed}), killed; {conductor.tail()}"
        )
        return
    expected = (0,) if landed == "after exit" else (130, 0, -sig) if landed == "after the flows" else (130,)
    if code not in expected:
        problems.other.append(f"exit code {code} after the signal (landed {landed}); {conductor.tail()}")
    limit = PLANNING_STOP_PROMPT_S if landed == "planning" else STOP_PROMPT_S
    if landed != "after exit" and latency > limit:
        problems.other.append(
            f"exited {latency:.1f} s after the signal (landed {landed}; limit {limit:.0f} s)"
        )
    problems.notes.append(f"stop {latency:.2f} s")


def race_trial(ctx: Context, trial: Trial, project: Project, *, engine: str) -> Problems:
    """Eight ``ductaflow sweep`` commands at once on one 12-instance table; each instance runs once."""
    problems = Problems()
    rows = make_rows(trial.rng, 12)
    project.names = [str(r["instance_name"]) for r in rows]
    project.write_table(rows)
    trial.describe = f"{engine}, 8 x ductaflow sweep -j 2"
    conductors = [start_conductor(project, "cli", engine, tag=f"race{i}") for i in range(8)]
    for i, conductor in enumerate(conductors):
        expect_exit(conductor.wait(RUN_DEADLINE_S), (0,), conductor, f"conductor {i}", problems)
    settle_processes(project, "after the race", problems)
    statuses = scan_records(project, problems, "after the race", stopped_cleanly=True)
    scan_leftover_files(project, problems)
    note_stray_temporaries(project, problems)
    check_completed(project, problems, statuses)
    lines = project.journal_lines()
    check_duplicates(lines, [], set(), problems, "race")
    ends = count_events(lines, "end")
    for name in project.names:
        if ends.get(name, 0) != 1 and statuses.get(name) == "success":
            problems.duplicate.append(f"race: {name} ended {ends.get(name, 0)} times")
    return problems


def fault_trial(ctx: Context, trial: Trial, project: Project, *, fault: str, engine: str) -> Problems:
    """One instance of four faults (armed by a file), the others succeed; disarmed, the re-run completes."""
    problems = Problems()
    rows = make_rows(trial.rng, 4)
    project.names = [str(r["instance_name"]) for r in rows]
    project.write_table(rows)
    victim = trial.rng.choice(project.names)
    (project.root / "armed" / victim).write_text(fault, encoding="utf-8")
    options: dict[str, object] = {"progress": True}
    if fault == "hang":
        options["timeout"] = 4
    if fault == "memory":
        options["max_memory"] = MEMORY_LIMIT
    trial.describe = f"{engine}, victim {victim}, options {options}"
    conductor = start_conductor(project, "driver", engine, options=options, tag="first")
    expect_exit(conductor.wait(RUN_DEADLINE_S), (1,), conductor, "faulty run", problems)
    settle_processes(project, "after the faulty run", problems)
    statuses = scan_records(project, problems, "after the faulty run", stopped_cleanly=True)
    victim_outcome(project, victim, fault, statuses, problems)
    succeeded = {name for name, status in statuses.items() if status == "success"}
    first = project.journal_lines()
    (project.root / "armed" / victim).unlink()
    second, _ = rerun(project, "driver", engine, problems, options=options)
    check_duplicates(first, second, succeeded, problems, "faulty run")
    return problems


def victim_outcome(
    project: Project, victim: str, fault: str, statuses: dict[str, str], problems: Problems
) -> None:
    """The faulty instance must be recorded ``failed``; its error name is noted."""
    status = statuses.get(victim, "missing")
    record, _ = read_json_file(project.step_dir / victim / "run.json")
    error = (record.get("error") or {}) if isinstance(record, dict) else {}
    name = f"{error.get('name')}: {str(error.get('message'))[:90]}" if error else "no error"
    problems.notes.append(f"{fault}: {name}")
    if status != "failed":
        problems.other.append(f"faulty run: {victim} ({fault}) recorded {status!r}, not 'failed' ({name})")
    if fault == "memory" and error.get("name") not in ("MemoryLimitError", "MemoryError"):
        problems.other.append(f"faulty run: {victim} memory fault gave {name}, not MemoryLimitError")


# --- the plan and the report ---------------------------------------------------------------------------


@dataclass
class Planned:
    """A trial to run: its kind, number (1-based, within its kind), table row, and how to run it."""

    kind: str
    number: int
    row: str
    run: Callable[[Context, Trial, Project], Problems]


def plan_trials(quick: bool, max_memory: bool) -> list[Planned]:
    """Every trial of the run, in order; ``quick`` runs fewer of each kind, faults with one engine each."""
    planned: list[Planned] = []
    kills, races, stops, per_fault = (4, 2, 2, 1) if quick else (30, 10, 10, 2)
    for i in range(kills):
        engine, front = ("kernel" if i % 3 == 2 else "fork"), ("cli" if i % 2 else "driver")
        runner = _signal_runner(signal.SIGKILL, engine, front, False)
        planned.append(Planned("kill9", i + 1, f"kill -9 ({engine})", runner))
    for i in range(races):
        engine = "kernel" if i % 2 else "fork"
        planned.append(Planned("race", i + 1, f"race of 8 ({engine})", _race_runner(engine)))
    for offset, (kind, sig) in enumerate((("sigint", signal.SIGINT), ("sigterm", signal.SIGTERM))):
        planning_trials = 1 if quick else 3
        for i in range(stops):
            planning = i < planning_trials
            engine = "fork" if planning or (i + offset) % 2 else "kernel"
            row = f"{sig.name} planning 100k" if planning else f"{sig.name} ({engine})"
            planned.append(Planned(kind, i + 1, row, _signal_runner(sig, engine, "cli", planning)))
    number = 0
    for index, fault in enumerate(FAULTS):
        if fault == "memory" and not max_memory:
            continue
        for engine in [("fork", "kernel")[index % 2]] if quick else ["fork", "kernel"]:
            for _ in range(per_fault):
                number += 1
                row = f"{FAULT_LABELS[fault]} ({engine})"
                planned.append(Planned("fault", number, row, _fault_runner(fault, engine)))
    return planned


def _signal_runner(
    sig: signal.Signals, engine: str, front: str, planning: bool
) -> Callable[[Context, Trial, Project], Problems]:
    return lambda ctx, trial, project: signal_trial(
        ctx, trial, project, sig, engine=engine, front=front, planning=planning
    )


def _race_runner(engine: str) -> Callable[[Context, Trial, Project], Problems]:
    return lambda ctx, trial, project: race_trial(ctx, trial, project, engine=engine)


def _fault_runner(fault: str, engine: str) -> Callable[[Context, Trial, Project], Problems]:
    return lambda ctx, trial, project: fault_trial(ctx, trial, project, fault=fault, engine=engine)


@dataclass
class RowTotals:
    """One row of the table: trials, problems by column, time, notes."""

    trials: int = 0
    counts: list[int] = field(default_factory=lambda: [0] * len(COLUMN_NAMES))
    seconds: float = 0.0
    notes: dict[str, int] = field(default_factory=dict)


def run_one(ctx: Context, planned: Planned, position: str) -> tuple[Problems, float, Trial]:
    """Run one trial in a fresh project; delete the project unless it failed (or ``--keep``)."""
    trial = Trial(
        planned.kind,
        planned.number,
        planned.row,
        random.Random(f"{ctx.seed}:{planned.kind}:{planned.number}"),
    )
    root = Path(tempfile.mkdtemp(prefix=f"{planned.kind}-{planned.number}-", dir=ctx.base))
    project = Project(root / "project")
    started = time.monotonic()
    try:
        problems = planned.run(ctx, trial, project)
    except Exception as exc:  # a bug of this script, or a wait that broke: counted, the run goes on
        problems = Problems(other=[f"the trial itself raised {type(exc).__name__}: {exc}"])
    finally:
        settle_processes(project, "at the end of the trial", Problems())  # never leave anything behind
    elapsed = time.monotonic() - started
    failed = problems.count() > 0
    if failed or ctx.keep:
        problems.notes.append(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    verdict = "ok" if not failed else f"{problems.count()} PROBLEM(S)"
    name = f"{position} {planned.kind}:{planned.number} {planned.row}"
    print(f"{name}: {trial.describe} -> {verdict} ({elapsed:.1f} s)", flush=True)
    for column, entries in zip(COLUMN_NAMES, problems.columns(), strict=True):
        for entry in entries:
            print(f"    [{column}] {entry}", flush=True)
    return problems, elapsed, trial


def memory_supported(base: Path) -> bool:
    """Whether ``ductaflow.run_instances`` accepts ``max_memory`` (a dry run in a throwaway project)."""
    project = Project(Path(tempfile.mkdtemp(prefix="probe-", dir=base)) / "project")
    probe = subprocess.run(
        [PYTHON, "-c", PROBE, MEMORY_LIMIT],
        cwd=project.root,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    shutil.rmtree(project.root.parent, ignore_errors=True)
    return probe.returncode == 0


def report(
    totals: dict[str, RowTotals],
    failures: list[tuple[Planned, Trial, Problems]],
    seed: int,
    skipped_memory: bool,
    wall: float,
) -> None:
    """Print the table, then every problem with the command that reproduces its trial, then the notes."""
    console = Console(width=160)
    table = Table(title=f"ductaflow fault torture (seed {seed}, {wall / 60:.1f} min)")
    table.add_column("fault")
    for name in ("trials", *COLUMN_NAMES, "time s"):
        table.add_column(name, justify="right")
    for row, t in totals.items():
        table.add_row(row, str(t.trials), *(str(c) for c in t.counts), f"{t.seconds:.0f}")
    if skipped_memory:
        table.add_row(
            "memory (fork, kernel)",
            "skipped: run_instances does not accept max_memory yet",
            *[""] * (len(COLUMN_NAMES) + 1),
        )
    console.print(table)
    console.print("what happened (count of trials):")
    for row, t in totals.items():
        shown = ", ".join(f"{note} x{n}" for note, n in sorted(t.notes.items()))
        console.print(f"  {row}: {shown}", soft_wrap=True)
    if not failures:
        console.print("no problems.")
        return
    console.print(f"\n{len(failures)} trial(s) with problems:")
    for planned, trial, problems in failures:
        console.print(f"* {planned.kind}:{planned.number} ({planned.row}; {trial.describe})", soft_wrap=True)
        console.print(
            f"  reproduce: .venv/bin/python bench/torture.py --seed {seed} --only "
            f"{planned.kind}:{planned.number}",
            soft_wrap=True,
        )
        for name, column in zip(COLUMN_NAMES, problems.columns(), strict=True):
            for entry in column:
                console.print(f"  [{name}] {entry}", soft_wrap=True, markup=False)
        kept = [n for n in problems.notes if n.startswith("kept ")]
        for note in kept:
            console.print(f"  {note}", soft_wrap=True, markup=False)


def summarize_note(note: str) -> str | None:
    """The part of a note worth counting across trials (times and paths are left out)."""
    if note.startswith(("kept ", "stop ")):
        return None
    return note


def tree_state() -> str:
    """The repository's commit and the files of the package changed since, as tested."""
    repo = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(repo)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--", "ductaflow"], capture_output=True, text=True
    )
    files = [line[3:] for line in changed.stdout.splitlines()]
    return f"{head.strip() or '?'}" + (
        f" with {len(files)} changed file(s): {', '.join(files)}" if files else ""
    )


def main() -> int:
    """Run the trials, print the table; exit 1 when any trial found a problem."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials of each kind (about 3 minutes)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument(
        "--only",
        metavar="KIND[:N]",
        help="run only these trials (kill9, race, sigint, sigterm, fault), or only trial N of that kind",
    )
    parser.add_argument("--keep", action="store_true", help="keep every trial's folder, not only failed ones")
    args = parser.parse_args()
    # A background job of a shell starts with SIGINT ignored, and a child inherits that: conductors
    # would ignore the trials' Ctrl-C. Handled here, it is back to the default in every child.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    base = Path(tempfile.mkdtemp(prefix=f"ductaflow-torture-{seed}-"))
    wall = time.monotonic()
    max_memory = memory_supported(base)
    planned = plan_trials(args.quick, max_memory)
    if args.only:
        kind, _, number = args.only.partition(":")
        planned = [p for p in planned if p.kind == kind and (not number or p.number == int(number))]
    print(f"ductaflow tree: {tree_state()}", flush=True)
    print(
        f"seed {seed}; {len(planned)} trials; folders under {base}; load {os.getloadavg()[0]:.2f}; "
        f"max_memory {'accepted' if max_memory else 'not accepted: memory fault skipped'}",
        flush=True,
    )
    ctx = Context(base, args.keep, seed, max_memory)
    totals: dict[str, RowTotals] = {}
    failures = []
    for position, item in enumerate(planned, 1):
        problems, elapsed, trial = run_one(ctx, item, f"[{position}/{len(planned)}]")
        row = totals.setdefault(item.row, RowTotals())
        row.trials += 1
        row.seconds += elapsed
        row.counts = [a + len(b) for a, b in zip(row.counts, problems.columns(), strict=True)]
        for note in filter(None, map(summarize_note, problems.notes)):
            row.notes[note] = row.notes.get(note, 0) + 1
        if problems.count():
            failures.append((item, trial, problems))
    with_memory = not max_memory and (not args.only or args.only.startswith("fault"))
    report(totals, failures, seed, with_memory, time.monotonic() - wall)
    if not any(base.iterdir()):
        base.rmdir()
    print(f"load {os.getloadavg()[0]:.2f} at the end", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
