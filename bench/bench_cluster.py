"""Benchmark: instances on a Dask LocalCluster (``--scheduler local:2``) versus ``jobs=2``, in one run.

Executes N instances of a trivial flow (default 20) with, side by side:

* ``run_instances(..., jobs=2, force=True)``: two threads of this process,
  each driving its own kernel;
* ``run_instances(..., executor=client, force=True)`` on a LocalCluster of two
  single-threaded worker processes started beforehand (what
  ``run_instances(executor=...)`` costs once a cluster is up);
* ``with dask_client("local:2"): run_instances(...)``: starting and stopping
  the cluster too, with fresh workers;
* end to end from the command line, each in a fresh interpreter:
  ``ductaflow sweep --jobs 2`` against ``ductaflow sweep --scheduler local:2``.

Each approach gets one untimed warm-up. Then ``--rounds`` rounds (default 5)
time the first two, alternating which goes first; the third, whose cluster
start and stop would disturb the others, is timed ``--rounds`` times after
them, and so are the two commands, alternating. The report gives the median
of each and the ratios to ``jobs=2``; the target is a cluster overhead under
20% (ratio < 1.20) once the cluster is up.

Everything is written to a temporary directory; nothing lands in the repository.

Usage: ``python bench/bench_cluster.py [--n N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import write_flow

import ductaflow

FLOW_SOURCE = """\
# %% tags=["parameters"]
config = {}

# %%
x = config.get("n", 0) + 1
"""
CLI_JOBS2 = "CLI sweep --jobs 2"
CLI_LOCAL2 = "CLI sweep --scheduler local:2"
JOBS2 = "jobs=2 (threads)"
CLUSTER = "local:2, cluster up"
CLUSTER_START = "local:2, incl. start/stop"
TARGET = 1.20

Approach = Callable[[int], None]


def check(frame: Any, label: str) -> None:
    """Every instance must have succeeded."""
    bad = frame[frame["status"] != "success"]
    if not bad.empty:
        raise RuntimeError(f"{label}: not all succeeded:\n{bad.to_string()}")


def approach(project: Path, flow: Path, step: str, **kwargs: Any) -> Approach:
    """Run ``n`` instances of the trivial flow with ``run_instances(**kwargs)``."""

    def run(n: int) -> None:
        rows = [{"instance_name": f"i{i:03d}", "n": i} for i in range(n)]
        frame = ductaflow.run_instances(flow, rows, step_name=step, force=True, progress=False,
                                        project_root=project, **kwargs)  # fmt: skip
        check(frame, step)

    return run


def command(project: Path, flow: Path, *options: str) -> Approach:
    """``ductaflow sweep`` over a table of ``n`` rows, in a fresh interpreter."""

    def run(n: int) -> None:
        table = project / f"table{n}.csv"
        table.write_text("instance_name,n\n" + "".join(f"i{i:03d},{i}\n" for i in range(n)))
        cmd = [sys.executable, "-m", "ductaflow", "sweep", str(flow), "--table", str(table), "--force",
               "--step", "cli", *options]  # fmt: skip
        subprocess.run(cmd, cwd=project, check=True, capture_output=True)

    return run


def with_fresh_cluster(project: Path, flow: Path) -> Approach:
    """Start a LocalCluster of two worker processes, run, stop it: the CLI's ``--scheduler local:2``."""

    def run(n: int) -> None:
        with ductaflow.dask_client("local:2") as client:
            approach(project, flow, "fresh", executor=client)(n)

    return run


def timed(run: Approach, n: int) -> float:
    """Seconds taken by ``run(n)``."""
    start = time.perf_counter()
    run(n)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="instances per timed run (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp, ductaflow.dask_client("local:2") as client:
        project = Path(tmp)
        flow = write_flow(project, FLOW_SOURCE)
        approaches = {
            JOBS2: approach(project, flow, "jobs2", jobs=2),
            CLUSTER: approach(project, flow, "cluster", executor=client),
            CLUSTER_START: with_fresh_cluster(project, flow),
        }
        for run in approaches.values():
            run(2)
        times: dict[str, list[float]] = {name: [] for name in approaches}
        for round_ in range(args.rounds):
            pair = [JOBS2, CLUSTER] if round_ % 2 == 0 else [CLUSTER, JOBS2]
            for name in pair:
                times[name].append(timed(approaches[name], args.n))
        for _ in range(args.rounds):
            times[CLUSTER_START].append(timed(approaches[CLUSTER_START], args.n))
        commands = {CLI_JOBS2: command(project, flow, "--jobs", "2"),
                    CLI_LOCAL2: command(project, flow, "--scheduler", "local:2")}  # fmt: skip
        for round_ in range(args.rounds):
            for name in list(commands)[:: 1 if round_ % 2 == 0 else -1]:
                times.setdefault(name, []).append(timed(commands[name], args.n))
    report(times, args.n)


def report(times: dict[str, list[float]], n: int) -> None:
    """The table of medians and the ratios to ``jobs=2``."""
    print(f"\n{n} trivial instances, HTML reports on; median of {len(times[JOBS2])} rounds")
    header = f"{'approach':<28} {'median s':>9} {'s/instance':>11} {'all rounds':>32}"
    print(header)
    print("-" * len(header))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        shown = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:<28} {medians[name]:>9.2f} {medians[name] / n:>11.3f} {shown:>32}")
    up = medians[CLUSTER] / medians[JOBS2]
    verdict = "met" if up < TARGET else "MISSED"
    print("\nratios to jobs=2 (<1.20 means under 20% overhead):")
    print(f"  {'local:2 cluster up / jobs=2':<36} x{up:.2f}  target < {TARGET:.2f}: {verdict}")
    print(f"  {'local:2 incl. start / jobs=2':<36} x{medians[CLUSTER_START] / medians[JOBS2]:.2f}")
    print(f"  {'CLI local:2 / CLI jobs 2':<36} x{medians[CLI_LOCAL2] / medians[CLI_JOBS2]:.2f}")


if __name__ == "__main__":
    main()
