"""Benchmark: cost of executing one instance of a trivial flow, ductaflow versus papermill.

Runs, side by side in one process and interleaved round by round:

* ``papermill.execute_notebook`` on the flow converted once to ``.ipynb``;
* ``ductaflow.run_step_flow`` with ``export_html=True`` (the default; it also
  renders an HTML report, which papermill does not);
* ``ductaflow.run_step_flow`` with ``export_html=False``.

Each call is timed whole with ``time.perf_counter()``. Papermill's graceful
kernel shutdown occasionally stalls for seconds, so the table reports the tail
(p90, max, runs over 2 s) as well as the mean and median. The script also
measures the cost of ``import ductaflow`` in a fresh interpreter and checks that
it pulls in none of the heavy execution libraries.

Everything is written to a temporary directory; nothing lands in the repository.

Usage: ``python bench/bench_instance.py [--rounds N]``
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import papermill
from _common import FLOW_STEM, convert_for_papermill, write_flow

import ductaflow

FLOW_SOURCE = """\
# %% tags=["parameters"]
config = {}

# %%
x = config.get("n", 0) + 1
print(x)
"""
CONFIG: dict[str, int] = {"n": 41}
SLOW_S = 2.0
HEAVY_MODULES = ("pandas", "nbconvert", "papermill", "nbclient", "jupytext")
IMPORT_REPEATS = 10
PAPERMILL = "papermill"
DUCTA_HTML = "ductaflow (html)"
DUCTA_NOHTML = "ductaflow (no html)"

Runner = Callable[[], None]


def make_runners(project: Path, flow: Path, ipynb: Path) -> dict[str, Runner]:
    """Build one zero-argument callable per approach, each re-running the same instance."""
    pm_out = ipynb.with_name(f"{FLOW_STEM}.out.ipynb")

    def run_papermill() -> None:
        papermill.execute_notebook(
            str(ipynb),
            str(pm_out),
            parameters={"config": CONFIG},
            kernel_name="python3",
            progress_bar=False,
        )

    def ducta(instance: str, export_html: bool) -> Runner:
        def run() -> None:
            result = ductaflow.run_step_flow(
                flow, FLOW_STEM, instance, CONFIG, project_root=project, export_html=export_html
            )
            if result.status != ductaflow.RunStatus.SUCCESS:
                raise RuntimeError(f"ductaflow run {instance!r} ended with status {result.status}")

        return run

    return {
        PAPERMILL: run_papermill,
        DUCTA_HTML: ducta("html", export_html=True),
        DUCTA_NOHTML: ducta("nohtml", export_html=False),
    }


def timed(runner: Runner) -> float:
    """Return the wall-clock seconds taken by one call of ``runner``."""
    start = time.perf_counter()
    runner()
    return time.perf_counter() - start


def run_rounds(runners: dict[str, Runner], rounds: int) -> dict[str, list[float]]:
    """Warm each runner up once, then time ``rounds`` interleaved rounds.

    The order of the approaches is reversed every other round so that neither
    systematically runs first (e.g. right after another kernel shut down).
    """
    for runner in runners.values():
        runner()
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(timed(runners[name]))
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def print_table(times: dict[str, list[float]]) -> None:
    """Print per-approach statistics (seconds) and ductaflow/papermill ratios."""
    header = f"{'approach':<20} {'n':>3} {'mean':>7} {'median':>7} {'p90':>7} {'max':>7} {'>2s':>4}"
    print(header)
    print("-" * len(header))
    for name, values in times.items():
        slow = sum(v > SLOW_S for v in values)
        print(
            f"{name:<20} {len(values):>3} {statistics.mean(values):>7.3f} "
            f"{statistics.median(values):>7.3f} {percentile(values, 90):>7.3f} "
            f"{max(values):>7.3f} {slow:>4}"
        )
    print()
    pm = times[PAPERMILL]
    for name in (DUCTA_HTML, DUCTA_NOHTML):
        mean_ratio = statistics.mean(times[name]) / statistics.mean(pm)
        median_ratio = statistics.median(times[name]) / statistics.median(pm)
        print(f"{name} / papermill: mean x{mean_ratio:.2f}, median x{median_ratio:.2f}")


def time_subprocess(code: str) -> float:
    """Wall-clock seconds to run ``python -c code`` in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def heavy_modules_imported() -> list[str]:
    """Top-level heavy modules that ``import ductaflow`` loads, per a fresh interpreter."""
    probe = (
        "import sys, ductaflow\n"
        f"heavy = {HEAVY_MODULES!r}\n"
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line]


def report_import_cost() -> None:
    """Time ``import ductaflow`` against an empty interpreter start and list heavy imports."""
    bare: list[float] = []
    with_import: list[float] = []
    for _ in range(IMPORT_REPEATS):
        bare.append(time_subprocess("pass"))
        with_import.append(time_subprocess("import ductaflow"))
    bare_med = statistics.median(bare)
    imp_med = statistics.median(with_import)
    print(f"import cost ({IMPORT_REPEATS} fresh interpreters each, interleaved, median):")
    print(f"  python -c 'pass'              {bare_med:.3f} s")
    print(f"  python -c 'import ductaflow'  {imp_med:.3f} s")
    print(f"  import ductaflow costs        {imp_med - bare_med:.3f} s")
    print(f"  heavy modules loaded by import ductaflow: {heavy_modules_imported()} (expected [])")


def print_header(rounds: int) -> None:
    """Print the machine and version line."""
    print(
        f"bench_instance: cpus={os.cpu_count()} python={platform.python_version()} "
        f"papermill={papermill.__version__} ductaflow={ductaflow.__version__} rounds={rounds}"
    )
    print(f"flow: trivial 2-cell flow, config={CONFIG}; times in seconds, whole call")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the benchmark and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds per approach (default 20)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    print_header(args.rounds)
    with tempfile.TemporaryDirectory(prefix="ductaflow-bench-") as tmp:
        project = Path(tmp) / "project"
        flow = write_flow(project, FLOW_SOURCE)
        nb_dir = Path(tmp) / "papermill"
        nb_dir.mkdir()
        ipynb = convert_for_papermill(flow, nb_dir)
        times = run_rounds(make_runners(project, flow, ipynb), args.rounds)
    print_table(times)
    print()
    report_import_cost()
    return 0


if __name__ == "__main__":
    sys.exit(main())
