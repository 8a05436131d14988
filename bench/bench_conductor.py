"""Benchmark: the conductor ``ductaflow.run_instances`` versus the alternatives, in one run.

Executes N instances of a trivial flow (default 20) with, side by side:

* ``ductaflow.run_instances(..., jobs=1, force=True)`` (default ``export_html=True``);
* ``ductaflow.run_instances(..., jobs=2, force=True)``;
* a plain loop of ``papermill.execute_notebook`` over the same configs, on the
  flow converted once to ``.ipynb``;
* the floor: N sequential ``python flow.py`` subprocesses (no kernel at all).

Each approach gets one untimed single-instance warm-up, then is timed once over
all N instances with ``time.perf_counter()``; the report gives the ratios.

It then measures how fast the conductor decides that nothing needs to run:
10,000 up-to-date instances (default) are fabricated as run records sharing one
200 MB declared input, and one ``run_instances`` call over them is timed end to
end (every instance must come back ``skipped``/``unchanged``). Finally
``tracemalloc`` gives the peak memory of that decision for 1,000 and 10,000
instances.

Everything is written to a temporary directory; nothing lands in the repository.

Usage: ``python bench/bench_conductor.py [--n N] [--decide M]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import papermill
from _common import convert_for_papermill, write_flow

import ductaflow
from ductaflow.config import config_hash, normalise_config
from ductaflow.fingerprint import Fingerprint, InputHasher
from ductaflow.flow import read_flow

FLOW_SOURCE = """\
# %% tags=["parameters"]
config = {}

# %%
x = config.get("n", 0) + 1
"""
KERNEL_LABEL = "ductaflow-python"
DECIDE_STEP = "decide"
INPUT_REL = "data/big.bin"
INPUT_MB = 200
MEMORY_SIZES = (1_000, 10_000)
JOBS1 = "ductaflow jobs=1"
JOBS2 = "ductaflow jobs=2"
PAPERMILL = "papermill loop"
FLOOR = "floor: python flow.py"
TARGET_JOBS1 = 1.0
TARGET_JOBS2 = 1.7
TARGET_DECIDE_S = 2.0

Rows = list[dict[str, Any]]
Approach = Callable[[Rows], None]


def make_rows(count: int) -> Rows:
    """Control-table rows ``{"instance_name": "i00000", "n": 0}`` ... for ``count`` instances."""
    return [{"instance_name": f"i{i:05d}", "n": i} for i in range(count)]


def conductor(project: Path, flow: Path, jobs: int) -> Approach:
    """An approach running the rows with ``run_instances(jobs=jobs, force=True)``."""

    def run(rows: Rows) -> None:
        frame = ductaflow.run_instances(
            flow, rows, step_name=f"jobs{jobs}", jobs=jobs, force=True, progress=False, project_root=project
        )
        bad = frame[frame["status"] != "success"]
        if not bad.empty:
            raise RuntimeError(f"run_instances jobs={jobs}: not all succeeded:\n{bad.to_string()}")

    return run


def papermill_loop(ipynb: Path, out_dir: Path) -> Approach:
    """An approach calling ``papermill.execute_notebook`` once per row, one after another."""

    def run(rows: Rows) -> None:
        for row in rows:
            papermill.execute_notebook(
                str(ipynb),
                str(out_dir / f"out_{row['instance_name']}.ipynb"),
                parameters={"config": {"n": row["n"]}},
                kernel_name="python3",
                progress_bar=False,
            )

    return run


def script_loop(flow: Path) -> Approach:
    """The floor: run the flow file as a plain script once per row (config stays ``{}``)."""

    def run(rows: Rows) -> None:
        for _ in rows:
            subprocess.run([sys.executable, str(flow)], check=True, cwd=flow.parent)

    return run


def time_approaches(approaches: dict[str, Approach], rows: Rows) -> dict[str, float]:
    """Warm every approach up on one row (untimed), then time each once over all rows."""
    for approach in approaches.values():
        approach(rows[:1])
    times: dict[str, float] = {}
    for name, approach in approaches.items():
        start = time.perf_counter()
        approach(rows)
        times[name] = time.perf_counter() - start
    return times


def verdict(ok: bool) -> str:
    """``met`` or ``MISSED`` for a target."""
    return "met" if ok else "MISSED"


def print_ratio(label: str, ratio: float, target: float | None = None) -> None:
    """Print one ratio line, with its target and verdict when it has one."""
    goal = f"  target >= {target:.1f}: {verdict(ratio >= target)}" if target is not None else ""
    print(f"  {label:<24} x{ratio:.2f}{goal}")


def print_execution(times: dict[str, float], n: int) -> None:
    """Print the execution table, the ratios and whether the targets are met."""
    header = f"{'approach':<24} {'total s':>8} {'s/instance':>11}"
    print(f"execution of {n} instances (each approach warmed up once, then timed once over all {n}):")
    print(header)
    print("-" * len(header))
    for name, total in times.items():
        print(f"{name:<24} {total:>8.2f} {total / n:>11.3f}")
    print()
    print("ratios of total time (>1 means the approach on the right is faster):")
    print_ratio("papermill loop / jobs=1", times[PAPERMILL] / times[JOBS1], TARGET_JOBS1)
    print_ratio("papermill loop / jobs=2", times[PAPERMILL] / times[JOBS2], TARGET_JOBS2)
    print_ratio("jobs=1 / jobs=2", times[JOBS1] / times[JOBS2])
    print_ratio("jobs=1 / floor", times[JOBS1] / times[FLOOR])


def write_big_input(path: Path, megabytes: int) -> None:
    """Write ``megabytes`` MB of random bytes to ``path``, 1 MB at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for _ in range(megabytes):
            fh.write(os.urandom(1 << 20))


def fabricate_records(project: Path, flow: Path, rows: Rows, inputs: dict[str, str]) -> None:
    """Write an up-to-date ``run.json`` and ``config.json`` for every row under ``runs/decide/``."""
    flow_sha = read_flow(flow).sha256
    for row in rows:
        config = normalise_config({k: v for k, v in row.items() if k != "instance_name"})
        fp = Fingerprint(flow_sha, config_hash(config), inputs, KERNEL_LABEL)
        run_dir = project / "runs" / DECIDE_STEP / row["instance_name"]
        run_dir.mkdir(parents=True)
        record = {
            "ductaflow_record": 1,
            "status": "success",
            "fingerprint": fp.digest,
            "fingerprint_parts": fp.parts,
        }
        (run_dir / "run.json").write_text(json.dumps(record), encoding="utf-8")
        (run_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")


def decide(project: Path, flow: Path, rows: Rows) -> pd.DataFrame:
    """One ``run_instances`` call over fabricated records; assert every instance was skipped."""
    frame = ductaflow.run_instances(
        flow, rows, step_name=DECIDE_STEP, inputs=[INPUT_REL], progress=False, project_root=project
    )
    skipped = (frame["status"] == "skipped") & (frame["reason"] == "unchanged")
    if len(frame) != len(rows) or not skipped.all():  # an assertion that survives python -O
        raise AssertionError(f"records not recognised as up to date:\n{frame[~skipped].head().to_string()}")
    return frame


def time_hash(project: Path) -> tuple[dict[str, str], float]:
    """Hash the declared input with a fresh ``InputHasher``; return the hashes and the seconds taken."""
    start = time.perf_counter()
    hashes = InputHasher(project).hash_inputs([INPUT_REL])
    return hashes, time.perf_counter() - start


def bench_decision(project: Path, flow: Path, rows: Rows) -> None:
    """Fabricate up-to-date instances, time the decision over all of them and report it."""
    start = time.perf_counter()
    write_big_input(project / INPUT_REL, INPUT_MB)
    hashes, _ = time_hash(project)
    fabricate_records(project, flow, rows, hashes)
    setup = time.perf_counter() - start
    print(f"decision over {len(rows)} up-to-date instances sharing one {INPUT_MB} MB declared input")
    print(
        f"  (setup: {INPUT_MB} MB input written and {len(rows)} records fabricated in {setup:.1f} s, untimed)"
    )
    start = time.perf_counter()
    decide(project, flow, rows)
    total = time.perf_counter() - start
    _, hash_s = time_hash(project)
    ok = total < TARGET_DECIDE_S
    print(
        f"  run_instances end to end         {total:>7.3f} s  target < {TARGET_DECIDE_S:.0f} s: {verdict(ok)}"
    )
    print(f"  of which hashing the input       {hash_s:>7.3f} s  (a fresh InputHasher, file in page cache)")
    rest_us = (total - hash_s) / len(rows) * 1e6
    print(f"  everything else                  {total - hash_s:>7.3f} s  ({rest_us:.0f} us/instance)")
    print(f"  all {len(rows)} instances reported skipped/unchanged: yes (asserted)")


def peak_memory(project: Path, flow: Path, rows: Rows) -> int:
    """Peak bytes traced by ``tracemalloc`` during one all-skipped decision over ``rows``."""
    tracemalloc.start()
    try:
        decide(project, flow, rows)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_memory(project: Path, flow: Path, rows: Rows) -> None:
    """Report the decision's peak traced memory for each size in ``MEMORY_SIZES`` that fits."""
    sizes = [size for size in MEMORY_SIZES if size <= len(rows)] or [len(rows)]
    peaks = {size: peak_memory(project, flow, rows[:size]) for size in sizes}
    print("peak traced memory of the decision (tracemalloc, all skipped; includes the 1 MB hash buffer):")
    for size, peak in peaks.items():
        print(f"  {size:>6} instances  peak {peak / 1e6:>7.2f} MB  = {peak / size:>7.0f} B/instance")
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        marginal = (peaks[big] - peaks[small]) / (big - small)
        print(f"  marginal cost {small} -> {big}: {marginal:.0f} B per extra instance")


def print_header(n: int, decide_n: int) -> None:
    """Print the machine and version line."""
    print(
        f"bench_conductor: cpus={os.cpu_count()} python={platform.python_version()} "
        f"papermill={papermill.__version__} ductaflow={ductaflow.__version__} n={n} decide={decide_n}"
    )
    print("flow: trivial 2-cell flow (parameters cell, then x = config.get('n', 0) + 1); wall-clock seconds")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the benchmark and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="instances executed per approach (default 20)")
    parser.add_argument(
        "--decide", type=int, default=10_000, help="up-to-date instances decided (default 10000)"
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.decide < 1:
        parser.error("--n and --decide must be at least 1")
    print_header(args.n, args.decide)
    with tempfile.TemporaryDirectory(prefix="ductaflow-bench-") as tmp:
        project = Path(tmp) / "project"
        flow = write_flow(project, FLOW_SOURCE)
        pm_dir = Path(tmp) / "papermill"
        pm_dir.mkdir()
        approaches = {
            JOBS1: conductor(project, flow, 1),
            JOBS2: conductor(project, flow, 2),
            PAPERMILL: papermill_loop(convert_for_papermill(flow, pm_dir), pm_dir),
            FLOOR: script_loop(flow),
        }
        print_execution(time_approaches(approaches, make_rows(args.n)), args.n)
        print()
        decide_rows = make_rows(args.decide)
        bench_decision(project, flow, decide_rows)
        print()
        bench_memory(project, flow, decide_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
