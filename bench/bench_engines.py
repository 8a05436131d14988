"""Benchmark: ductaflow's two engines, ``kernel`` and ``fork``, against papermill and plain scripts.

For three flows (trivial, a pandas groupby, a matplotlib figure saved and
shown), runs batches of N instances (default 20) side by side, interleaved
round by round with the order alternating, and reports the median over the
rounds (default 3) of the seconds per instance for:

* ``ductaflow.run_instances(..., engine="kernel", jobs=1)`` and ``jobs=2``;
* ``ductaflow.run_instances(..., engine="fork", jobs=1)`` and ``jobs=2``, with
  ``preload=["pandas"]`` / ``["matplotlib.pyplot"]`` for the heavy flows;
* a loop of ``papermill.execute_notebook`` (python3 kernel, sequential);
* ``python flow.py`` in a subprocess per instance (no notebook at all);
* ploomber-engine's ``execute_notebook`` in a loop, when it is installed.

All ductaflow runs keep the default HTML report, except one more column (fork
engine, jobs=1, ``export_html=False``) that gives the cost of the report. The
script also times the fork engine's zygote start in fresh interpreters, and a
single instance in a fresh interpreter with each engine.

``--long`` instead runs 2,000 sequential trivial instances with the fork
engine in this process and prints its memory (VmRSS) and open file
descriptors after 100 and after 2,000, and the zygote's.

Everything is written to a temporary directory; nothing lands in the repository.

Usage: ``python bench/bench_engines.py [--n N] [--rounds R] [--single-rounds S]``
       ``python bench/bench_engines.py --long [--long-n M]``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import papermill
from _common import convert_for_papermill

import ductaflow

TRIVIAL = """\
# %% tags=["parameters"]
config = {}

# %%
n = config.get("n", 0)
total = sum(i * i for i in range(10_000)) + n
print(n, total)
"""
PANDAS = """\
# %% tags=["parameters"]
config = {}

# %%
import pandas as pd

n = config.get("n", 0)
frame = pd.DataFrame({"group": [i % 10 for i in range(10_000)], "value": range(n, n + 10_000)})
summary = frame.groupby("group")["value"].agg(["count", "mean", "sum"])
summary.to_csv("summary.csv")
summary
"""
MATPLOTLIB = """\
# %% tags=["parameters"]
config = {}

# %%
import matplotlib.pyplot as plt

n = config.get("n", 0)
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot(range(100), [((i + n) % 17) ** 2 for i in range(100)])
ax.set_title(f"n = {n}")
fig.savefig("figure.png", dpi=80)
plt.show()
"""


@dataclass(frozen=True)
class FlowCase:
    """One benchmarked flow: its source, the preload a user would give, the per-instance target."""

    name: str
    stem: str  # the flow file's name: not the name of a module it imports, which it would shadow
    source: str
    preload: tuple[str, ...]
    target_s: float


FLOWS = (
    FlowCase("trivial", "trivial", TRIVIAL, (), 0.05),
    FlowCase("pandas", "groupby", PANDAS, ("pandas",), 0.06),
    FlowCase("matplotlib", "figure", MATPLOTLIB, ("matplotlib.pyplot",), 0.25),
)
KERNEL1, KERNEL2 = "kernel j1", "kernel j2"
FORK1, FORK2 = "fork j1", "fork j2"
FORK1_NOHTML = "fork j1 nohtml"
PAPERMILL = "papermill"
SCRIPT = "python flow.py"
PLOOMBER = "ploomber"
TARGET_TRIVIAL_VS_PAPERMILL = 0.06
TARGET_JOBS2_SPEEDUP = 1.6
TARGET_HTML_RATIO = 2.0
TARGET_ZYGOTE_S = 1.5
LONG_CHECKPOINT = 100

#: Instances of ductaflow runs that did not succeed: reported at the end, their batches still timed.
FAILURES: list[str] = []

Batch = Callable[[list[int]], None]  # runs the instances n = each of the given numbers


# --- the approaches -----------------------------------------------------------------------------------


def write_flows(project: Path) -> dict[str, Path]:
    """Write each benchmarked flow into ``project/flow/`` and return their paths by name."""
    folder = project / "flow"
    folder.mkdir(parents=True)
    flows = {}
    for case in FLOWS:
        flows[case.name] = folder / f"{case.stem}.py"
        flows[case.name].write_text(case.source, encoding="utf-8")
    return flows


def conductor(
    project: Path,
    flow: Path,
    step: str,
    engine: str,
    jobs: int,
    preload: Sequence[str],
    export_html: bool = True,
) -> Batch:
    """``run_instances(..., engine=engine, jobs=jobs, force=True)`` over the batch (preload: fork only)."""
    options: dict[str, Any] = {"engine": engine}
    if engine == "fork":
        options["preload"] = list(preload)

    def run(numbers: list[int]) -> None:
        frame = ductaflow.run_instances(
            flow,
            [{"instance_name": f"i{n:05d}", "n": n} for n in numbers],
            step_name=step,
            jobs=jobs,
            force=True,
            progress=False,
            project_root=project,
            export_html=export_html,
            **options,
        )
        for row in frame[frame["status"] != "success"].itertuples():
            FAILURES.append(f"{step}/{row.instance}: {row.status}: {str(row.error).strip().splitlines()[0]}")

    return run


def papermill_loop(ipynb: Path, work: Path) -> Batch:
    """``papermill.execute_notebook`` once per instance, one after another."""
    work.mkdir(parents=True)

    def run(numbers: list[int]) -> None:
        for n in numbers:
            papermill.execute_notebook(
                str(ipynb),
                str(work / f"out_{n:05d}.ipynb"),
                parameters={"config": {"n": n}},
                kernel_name="python3",
                progress_bar=False,
                cwd=str(work),
            )

    return run


def ploomber_loop(ipynb: Path, work: Path) -> Batch:
    """ploomber-engine's ``execute_notebook`` once per instance, one after another (in this process)."""
    from ploomber_engine import execute_notebook

    work.mkdir(parents=True)

    def run(numbers: list[int]) -> None:
        for n in numbers:
            execute_notebook(
                str(ipynb),
                str(work / f"out_{n:05d}.ipynb"),
                parameters={"config": {"n": n}},
                cwd=str(work),
                progress_bar=False,
            )

    return run


def script_loop(flow: Path, work: Path) -> Batch:
    """``python flow.py`` once per instance in a subprocess (the config stays ``{}``)."""
    work.mkdir(parents=True)
    env = {**os.environ, "MPLBACKEND": "Agg"}

    def run(numbers: list[int]) -> None:
        for _ in numbers:
            subprocess.run(
                [sys.executable, str(flow)],
                check=True,
                cwd=work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    return run


def approaches(case: FlowCase, project: Path, flow: Path) -> dict[str, Batch]:
    """Every approach for one flow, by column name (the HTML-off fork column last)."""
    work = project / "work" / case.name
    ipynb_dir = work / "ipynb"
    ipynb_dir.mkdir(parents=True)
    ipynb = convert_for_papermill(flow, ipynb_dir)
    preload = case.preload
    result = {
        KERNEL1: conductor(project, flow, f"{case.name}_kernel1", "kernel", 1, preload),
        KERNEL2: conductor(project, flow, f"{case.name}_kernel2", "kernel", 2, preload),
        FORK1: conductor(project, flow, f"{case.name}_fork1", "fork", 1, preload),
        FORK2: conductor(project, flow, f"{case.name}_fork2", "fork", 2, preload),
        PAPERMILL: papermill_loop(ipynb, work / "papermill"),
        SCRIPT: script_loop(flow, work / "script"),
    }
    if importlib.util.find_spec("ploomber_engine") is not None:
        result[PLOOMBER] = ploomber_loop(ipynb, work / "ploomber")
    result[FORK1_NOHTML] = conductor(
        project, flow, f"{case.name}_fork1nohtml", "fork", 1, preload, export_html=False
    )
    return result


def run_rounds(batches: dict[str, Batch], n: int, rounds: int) -> tuple[dict[str, list[float]], float]:
    """Warm each approach up on one instance, then time ``rounds`` interleaved batches of ``n``.

    Returns seconds per instance for every round, by approach, and the fork
    engine's first instance (its warm-up, which starts the zygote).
    """
    first_fork = 0.0
    for name, batch in batches.items():
        start = time.perf_counter()
        batch([0])
        if name == FORK1:
            first_fork = time.perf_counter() - start
    per_instance: dict[str, list[float]] = {name: [] for name in batches}
    names = list(batches)
    numbers = list(range(n))
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            start = time.perf_counter()
            batches[name](numbers)
            per_instance[name].append((time.perf_counter() - start) / n)
    return per_instance, first_fork


# --- fresh interpreters -------------------------------------------------------------------------------

ZYGOTE_CODE = """\
import time
try:
    from ductaflow.engines.fork import zygote_for
except ImportError:
    from ductaflow.engines.zygote import zygote_for
start = time.perf_counter()
zygote_for({preload!r})
print(time.perf_counter() - start)
"""

SINGLE_CODE = """\
import time
start = time.perf_counter()
import ductaflow
ready = time.perf_counter()
result = ductaflow.run_step_flow({flow!r}, "single", {name!r}, {{"n": 1}}, project_root={project!r},
                                 engine={engine!r}, preload={preload!r})
assert result.status.value == "success", result.status
print(time.perf_counter() - start, time.perf_counter() - ready)
"""


def python_c(code: str, cwd: Path) -> tuple[float, str]:
    """Run ``python -c code`` in a fresh interpreter; wall-clock seconds and its stdout."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, out.stdout


def zygote_starts(tmp: Path, rounds: int) -> dict[tuple[str, ...], list[float]]:
    """Seconds ``zygote_for(preload)`` takes in a fresh interpreter, per preload, interleaved."""
    preloads = [case.preload for case in FLOWS]
    times: dict[tuple[str, ...], list[float]] = {p: [] for p in preloads}
    for i in range(rounds):
        for preload in preloads if i % 2 == 0 else reversed(preloads):
            _, out = python_c(ZYGOTE_CODE.format(preload=preload), tmp)
            times[preload].append(float(out.split()[-1]))
    return times


def single_instances(
    project: Path, flows: dict[str, Path], rounds: int
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """One instance per fresh interpreter, fork against kernel, HTML report on; interleaved.

    Returns, per (flow, engine), (whole process, the instance alone) seconds for every round.
    """
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    engines = ["kernel", "fork"]
    for case in FLOWS:
        for i in range(rounds):
            for engine in engines if i % 2 == 0 else reversed(engines):
                preload = case.preload if engine == "fork" else ()
                name = f"{case.name}_{engine}_{i}"
                code = SINGLE_CODE.format(
                    flow=str(flows[case.name]),
                    name=name,
                    project=str(project),
                    engine=engine,
                    preload=list(preload),
                )
                whole, out = python_c(code, project)
                alone = float(out.split()[-1])
                times.setdefault((case.name, engine), []).append((whole, alone))
    return times


# --- the long run -------------------------------------------------------------------------------------


def rss_kb(pid: int | str = "self") -> int:
    """The VmRSS of a process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int | str = "self") -> int:
    """How many file descriptors a process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (this one's: the fork engine's zygotes, in ``--long``)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    children.append(int(entry))
    return children


def long_run(project: Path, flow: Path, total: int) -> None:
    """``total`` sequential trivial instances with the fork engine; memory and descriptors along the way."""
    run = conductor(project, flow, "long", "fork", 1, ())
    run([0])  # starts the zygote; not counted
    rows = [("after 1 (warm-up)", 1, 0.0, *snapshot())]
    done = 0
    for upto in (min(LONG_CHECKPOINT, total), total):
        if upto <= done:
            continue
        start = time.perf_counter()
        numbers = list(range(done, upto))
        # instances in batches of 100, as one call per 2,000 would hold their rows in one frame
        for i in range(0, len(numbers), LONG_CHECKPOINT):
            run(numbers[i : i + LONG_CHECKPOINT])
        rows.append((f"after {upto}", upto, (time.perf_counter() - start) / len(numbers), *snapshot()))
        done = upto
    header = (
        f"{'':<18} {'s/instance':>10} {'VmRSS MB':>9} {'open fds':>9} "
        f"{'zygote VmRSS MB':>16} {'zygote fds':>11} {'zygote children':>16}"
    )
    print(header)
    print("-" * len(header))
    for label, _, seconds, rss, fds, zrss, zfds, zkids in rows:
        per = f"{seconds:>10.3f}" if seconds else f"{'':>10}"
        print(f"{label:<18} {per} {rss / 1024:>9.1f} {fds:>9} {zrss / 1024:>16.1f} {zfds:>11} {zkids:>16}")
    first, last = rows[1], rows[-1]
    if last[1] > first[1]:
        growth = (last[3] - first[3]) / (last[1] - first[1])
        print(
            f"\nVmRSS growth from {first[1]} to {last[1]} instances: {growth:.2f} kB per instance; "
            f"open fds {first[4]} -> {last[4]}; zygote fds {first[6]} -> {last[6]}"
        )


def snapshot() -> tuple[int, int, int, int, int]:
    """VmRSS (kB) and open fds of this process; of its children (the zygote) summed, and their children.

    The zygote's children are the flows' processes: between calls there should be none left (no zombie).
    """
    zrss = zfds = zkids = 0
    for pid in child_pids(os.getpid()):
        with contextlib.suppress(OSError):
            zrss += rss_kb(pid)
            zfds += open_fds(pid)
            zkids += len(child_pids(pid))
    return rss_kb(), open_fds(), zrss, zfds, zkids


# --- the report ---------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    """``pass`` or ``FAIL`` for a target."""
    return "pass" if ok else "FAIL"


def print_tables(medians: dict[str, dict[str, float]], columns: list[str]) -> None:
    """Seconds per instance (median of the rounds) and the ratio of each to the papermill loop."""
    width = max(len(c) for c in columns) + 1
    header = f"{'flow':<11}" + "".join(f"{c:>{width}}" for c in columns)
    print("seconds per instance (median of the rounds):")
    print(header)
    print("-" * len(header))
    for flow, row in medians.items():
        print(f"{flow:<11}" + "".join(f"{row[c]:>{width}.3f}" for c in columns))
    print()
    print("ratio to the papermill loop (lower is faster):")
    print(header)
    print("-" * len(header))
    for flow, row in medians.items():
        print(f"{flow:<11}" + "".join(f"{row[c] / row[PAPERMILL]:>{width}.3f}" for c in columns))
    print()


def print_targets(medians: dict[str, dict[str, float]]) -> None:
    """The per-instance, jobs=2 and HTML-report targets, each with pass or FAIL."""
    print("targets:")
    for case in FLOWS:
        fork1 = medians[case.name][FORK1]
        preload = f"preload={list(case.preload)}" if case.preload else "no preload"
        line = f"fork jobs=1 {case.name} ({preload}): {fork1:.4f} s <= {case.target_s} s"
        print(f"  {line:<70} {verdict(fork1 <= case.target_s)}")
    trivial = medians["trivial"]
    ratio = trivial[FORK1] / trivial[PAPERMILL]
    line = f"fork jobs=1 trivial / papermill loop: x{ratio:.3f} <= x{TARGET_TRIVIAL_VS_PAPERMILL}"
    print(f"  {line:<70} {verdict(ratio <= TARGET_TRIVIAL_VS_PAPERMILL)}")
    for flow, row in medians.items():
        for engine, one, two in (("fork", FORK1, FORK2), ("kernel", KERNEL1, KERNEL2)):
            speedup = row[one] / row[two]
            line = f"{engine} {flow}: jobs=1 / jobs=2 = x{speedup:.2f} >= x{TARGET_JOBS2_SPEEDUP}"
            print(f"  {line:<70} {verdict(speedup >= TARGET_JOBS2_SPEEDUP)}")
    print()
    print("the fork engine's HTML report (jobs=1, seconds per instance):")
    for flow, row in medians.items():
        ratio = row[FORK1] / row[FORK1_NOHTML]
        line = (
            f"{flow:<11} html {row[FORK1]:.3f}  no html {row[FORK1_NOHTML]:.3f}  "
            f"x{ratio:.2f} <= x{TARGET_HTML_RATIO}"
        )
        print(f"  {line:<70} {verdict(ratio <= TARGET_HTML_RATIO)}")
    print()


def print_zygote(
    starts: dict[tuple[str, ...], list[float]], first: dict[str, float], medians: dict[str, dict[str, float]]
) -> None:
    """Zygote start per preload, timed directly and as first instance minus steady state."""
    print("zygote start (zygote_for(preload) in a fresh interpreter, median; and the benchmark's first fork")
    print("instance minus the steady jobs=1 median):")
    for case in FLOWS:
        direct = statistics.median(starts[case.preload])
        derived = first[case.name] - medians[case.name][FORK1]
        line = f"{list(case.preload)!s:<22} direct {direct:.3f} s  first-minus-steady {derived:.3f} s"
        print(f"  {line:<70} {verdict(direct <= TARGET_ZYGOTE_S)} (<= {TARGET_ZYGOTE_S} s)")
    print()


def print_single(times: dict[tuple[str, str], list[tuple[float, float]]]) -> None:
    """One instance in a fresh interpreter: kernel against fork, whole process and instance alone."""
    print(
        "one instance in a fresh interpreter (python -c, HTML on; medians, seconds; fork preloads as above;"
    )
    print("target: the fork engine no slower than the kernel engine in every round):")
    header = f"  {'flow':<11} {'kernel':>8} {'fork':>8} {'(instance alone: kernel':>24} {'fork)':>7}"
    print(header)
    for case in FLOWS:
        kernel, fork = times[(case.name, "kernel")], times[(case.name, "fork")]
        k_whole, f_whole = statistics.median(t[0] for t in kernel), statistics.median(t[0] for t in fork)
        k_alone, f_alone = statistics.median(t[1] for t in kernel), statistics.median(t[1] for t in fork)
        wins = sum(f[0] <= k[0] for f, k in zip(fork, kernel, strict=True))  # round by round
        line = f"{case.name:<11} {k_whole:>8.3f} {f_whole:>8.3f} {k_alone:>24.3f} {f_alone:>7.3f}"
        print(f"  {line}   fork no slower in {wins}/{len(fork)} rounds: {verdict(wins == len(fork))}")
    print()


def print_failures() -> None:
    """Every ductaflow instance that did not succeed (none expected): its batch's time is suspect."""
    if FAILURES:
        print(f"WARNING: {len(FAILURES)} ductaflow instance(s) did not succeed (their batches still timed):")
        for failure in FAILURES:
            print(f"  {failure}")
        print()


def load() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every number."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def print_header(args: argparse.Namespace) -> None:
    """The machine, versions and what the run measures."""
    ploomber = "installed" if importlib.util.find_spec("ploomber_engine") else "not installed (no column)"
    print(
        f"bench_engines: cpus={os.cpu_count()} python={platform.python_version()} "
        f"ductaflow={ductaflow.__version__} papermill={papermill.__version__} ploomber-engine={ploomber}"
    )
    if not args.long:
        print(
            f"{args.n} instances per batch, {args.rounds} rounds interleaved (order alternating), "
            "each approach warmed up on one instance first"
        )
    print(f"load average at the start: {load()}")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the benchmark and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="instances per batch (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per approach (default 3)")
    parser.add_argument(
        "--single-rounds",
        type=int,
        default=3,
        help="fresh-interpreter runs per engine, flow and zygote preload (default 3)",
    )
    parser.add_argument("--long", action="store_true", help="only the long run of sequential instances")
    parser.add_argument("--long-n", type=int, default=2000, help="instances in the long run (default 2000)")
    args = parser.parse_args(argv)
    if min(args.n, args.rounds, args.single_rounds, args.long_n) < 1:
        parser.error("--n, --rounds, --single-rounds and --long-n must be at least 1")
    with tempfile.TemporaryDirectory(prefix="ductaflow-bench-") as tmp:
        project = Path(tmp) / "project"
        flows = write_flows(project)
        print_header(args)
        if args.long:
            print(f"{args.long_n} sequential trivial instances, fork engine, jobs=1, HTML on, one process:")
            long_run(project, flows["trivial"], args.long_n)
            print_failures()
            print(f"load average at the end: {load()}")
            return 0
        medians: dict[str, dict[str, float]] = {}
        first: dict[str, float] = {}
        columns: list[str] = []
        for case in FLOWS:
            batches = approaches(case, project, flows[case.name])
            columns = [c for c in batches if c != FORK1_NOHTML]
            per_instance, first[case.name] = run_rounds(batches, args.n, args.rounds)
            medians[case.name] = {name: statistics.median(v) for name, v in per_instance.items()}
        print_tables(medians, columns)
        print_targets(medians)
        print_zygote(zygote_starts(Path(tmp), args.single_rounds), first, medians)
        print_single(single_instances(project, flows, args.single_rounds))
        print_failures()
        print(f"load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
