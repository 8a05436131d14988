"""A sweep run fresh against the same sweep restored from the shared cache, side by side.

Two checkouts of one project (``a`` and ``b``, folders of a temporary
directory) share one cache folder. The flow is small and realistic: a
``parameters`` cell, then numpy and pandas (a 500-row frame binned and
summarised), ``ductaflow.record`` of two metrics, ``summary.csv`` and
``summary.json`` written (the latter holds the folder the flow ran in), and
the HTML report on, as users have it by default.

First the cache is filled from checkout ``a`` (fork engine, timed and
shown, not part of the rounds). Then each approach is warmed up on one
instance and ``--rounds`` rounds (default 3) run the approaches
interleaved, their order reversed every other round, each over
``--instances`` instances (default 200) into an empty runs folder (the
checkout's ``runs/`` is deleted before each, nothing else), ``jobs=2``,
``progress=False``:

- ``kernel, fresh``: ``engine="kernel"`` in ``a``, no cache;
- ``fork, fresh``: ``engine="fork", preload=["pandas"]`` (the default
  engine for sweeps, with the preload a user of a pandas flow sets) in
  ``a``, no cache;
- ``fork, fresh + push``: the same, pushing each success to a second
  cache folder emptied before each round: what the cache costs a run that
  fills it;
- ``restored (folder)``: ``b`` with the filled cache (default engine);
  every row must say ``restored from cache (`` and every instance's
  ``summary.json`` must name the folder in ``a`` it ran in: nothing ran
  in ``b``;
- ``restored (memory://)``: the same from a copy of the cache in fsspec's
  in-memory filesystem: the cost without the cache's disk.

The table gives medians, milliseconds per instance and each approach's
ratio to the restore from the folder, then the target (kernel fresh /
restored at least 10x), the cost of pushing, and a cProfile of one more
restore round (``jobs=1``; every thread profiled, their times summed).

Run: ``python bench/bench_cache.py [--instances N] [--rounds R] [--quick]``
(``--quick``: 20 instances, 1 round, half a minute). The default takes 15 to
17 minutes on a loaded 2-core machine, 13 of them in the kernel engine's rounds.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ductaflow
from ductaflow.cache import FORMAT, MARKER, open_cache

FLOW = """\
# %% tags=["parameters"]
config = {"n": 0, "scale": 1.0}

# %%
import json
import os

import numpy as np
import pandas as pd

import ductaflow

rng = np.random.default_rng(config["n"])
frame = pd.DataFrame({"x": rng.normal(size=500) * config["scale"]})
frame["bin"] = pd.cut(frame["x"], 5, labels=False)
summary = frame.groupby("bin")["x"].agg(["count", "mean", "std"])
summary.to_csv("summary.csv")
mean, sd = float(frame["x"].mean()), float(frame["x"].std())
ductaflow.record(mean=mean, sd=sd)
with open("summary.json", "w") as fh:
    json.dump({"mean": mean, "sd": sd, "ran_in": os.getcwd()}, fh)
summary
"""
STEP = "summarise"
JOBS = 2
TARGET = 10.0  # kernel fresh / restored
KERNEL, FORK, PUSH = "kernel, fresh", "fork, fresh", "fork, fresh + push"
RESTORED, MEMORY = "restored (folder)", "restored (memory://)"
MEMORY_URL = "memory://ductaflow-bench-cache"

Batch = Callable[[list[dict[str, Any]]], None]


def rows_of(n: int) -> list[dict[str, Any]]:
    """The sweep's table: ``n`` rows, each its own seed and one of five scales."""
    return [{"instance_name": f"i{k:04d}", "n": k, "scale": float(1 + k % 5)} for k in range(n)]


def checkout(tmp: Path, name: str) -> Path:
    """A checkout of the project at ``tmp/name``: its flow only."""
    root = tmp / name
    (root / "flow").mkdir(parents=True)
    (root / "flow" / f"{STEP}.py").write_text(FLOW)
    return root


def sweep(root: Path, rows: list[dict[str, Any]], jobs: int = JOBS, **options: Any) -> Any:
    """``run_instances`` of the flow in ``root`` over ``rows`` into its empty runs folder."""
    shutil.rmtree(root / "runs", ignore_errors=True)
    return ductaflow.run_instances(root / "flow" / f"{STEP}.py", rows, project_root=root, jobs=jobs,
                                   progress=False, **options)  # fmt: skip


def fresh(root: Path, **options: Any) -> Batch:
    """Every instance runs here (``reason`` new) and succeeds."""

    def run(rows: list[dict[str, Any]]) -> None:
        frame = sweep(root, rows, **options)
        bad = frame[(frame.status != "success") | (frame.reason != "new")]
        assert bad.empty, bad[["instance", "status", "reason", "error"]].to_string()

    return run


def pushed(root: Path, cache: Path) -> Batch:
    """Every instance runs here and is pushed to ``cache``, emptied first."""
    run_fresh = fresh(root, engine="fork", preload=["pandas"], cache=str(cache))

    def run(rows: list[dict[str, Any]]) -> None:
        shutil.rmtree(cache, ignore_errors=True)
        run_fresh(rows)
        assert len(entries(str(cache))) == len(rows)

    return run


def restored(root: Path, ran_in: Path, cache: str) -> Batch:
    """Every instance is restored from ``cache`` into ``root``: none runs (their flow ran in ``ran_in``)."""

    def run(rows: list[dict[str, Any]]) -> None:
        frame = sweep(root, rows, cache=cache)
        ok = (frame.status == "success") & frame.reason.str.startswith("restored from cache (")
        assert ok.all() and len(frame) == len(rows), frame[~ok][["instance", "status", "reason"]].to_string()
        for row in rows:  # the flow wrote where it ran: in the first checkout, never here
            name = row["instance_name"]
            where = json.loads((root / "runs" / STEP / name / "summary.json").read_text())["ran_in"]
            assert where == str(ran_in / "runs" / STEP / name), f"{name} ran in {where}"

    return run


def entries(url: str) -> list[str]:
    """The markers of the entries published in the cache at ``url``."""
    cache = open_cache(url)
    return cache.fs.glob(f"{cache.root}/{FORMAT}/*/*/*/*/{MARKER}")


def copy_to_memory(folder: Path) -> None:
    """Copy the cache ``folder`` into fsspec's in-memory filesystem at :data:`MEMORY_URL`."""
    cache = open_cache(MEMORY_URL)
    for path in folder.rglob("*"):
        if path.is_file():
            cache.fs.pipe_file(f"{cache.root}/{path.relative_to(folder).as_posix()}", path.read_bytes())


def run_rounds(batches: dict[str, Batch], rows: list[dict[str, Any]], rounds: int) -> dict[str, list[float]]:
    """Warm each approach up on one instance, then time ``rounds`` interleaved batches: seconds by name."""
    for batch in batches.values():
        batch(rows[:1])
    seconds: dict[str, list[float]] = {name: [] for name in batches}
    names = list(batches)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            start = time.perf_counter()
            batches[name](rows)
            seconds[name].append(time.perf_counter() - start)
            print(f"  round {i + 1}: {name:<22} {seconds[name][-1]:8.2f} s", flush=True)
    return seconds


def profile_all_threads(call: Callable[[], None]) -> pstats.Stats:
    """cProfile of ``call`` in this thread and in every thread it starts (the conductor's workers)."""
    profiles = [cProfile.Profile()]

    def start_here(*_: Any) -> None:  # the first event in a new thread: hand over to a profiler of its own
        sys.setprofile(None)
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()

    threading.setprofile(start_here)
    profiles[0].enable()
    try:
        call()
    finally:
        profiles[0].disable()
        threading.setprofile(None)
    stats = pstats.Stats(profiles[0], stream=io.StringIO())
    for profile in profiles[1:]:
        stats.add(profile)
    return stats


def top_entries(stats: pstats.Stats, count: int, ours: bool) -> list[tuple[float, float, int, str]]:
    """The ``count`` functions with the most time: ductaflow's by cumulative seconds (``ours``), else any
    by own seconds; each (cumulative, own, calls, where)."""
    package = Path(ductaflow.__file__).parent
    found = []
    for (filename, line, function), (_, calls, own, cumulative, _) in stats.stats.items():
        if filename.startswith(str(package)):
            where = f"{Path(filename).relative_to(package.parent)}:{line}({function})"
        elif ours:
            continue
        else:
            where = f"{Path(filename).name}:{line}({function})" if line else function
        found.append((cumulative, own, calls, where))
    return sorted(found, key=lambda item: item[0] if ours else item[1], reverse=True)[:count]


def load() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every number."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def report(seconds: dict[str, list[float]], n: int) -> None:
    """Medians, per instance, ratio to the folder restore; the target and the cost of pushing."""
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    base = medians[RESTORED]
    print(
        f"\n{n} instances, jobs={JOBS}, HTML report on, medians of {len(seconds[KERNEL])} interleaved rounds:"
    )
    header = f"{'approach':<22} {'median s':>9} {'ms/instance':>12} {'x restored':>11}   rounds (s)"
    print(header)
    print("-" * len(header))
    for name, median in medians.items():
        each = " ".join(f"{s:.2f}" for s in seconds[name])
        print(f"{name:<22} {median:>9.2f} {median / n * 1000:>12.1f} {median / base:>11.1f}   {each}")
    ratio = medians[KERNEL] / base
    print(f"\ntarget: kernel fresh / restored (folder) = x{ratio:.1f} >= x{TARGET:.0f}: "
          f"{'met' if ratio >= TARGET else 'MISSED'}")  # fmt: skip
    push = (medians[PUSH] - medians[FORK]) / n * 1000
    print(f"pushing: fresh + push / fresh (fork) = x{medians[PUSH] / medians[FORK]:.2f}, "
          f"{push:+.1f} ms per instance")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200, help="instances per sweep (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 instances, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.instances, args.rounds = 20, 1
    if min(args.instances, args.rounds) < 1:
        parser.error("--instances and --rounds must be at least 1")
    rows = rows_of(args.instances)
    print(f"bench_cache: cpus={os.cpu_count()} ductaflow={ductaflow.__version__} "
          f"instances={args.instances} rounds={args.rounds} jobs={JOBS}")  # fmt: skip
    print(f"load average at the start: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ductaflow-bench-cache-") as tmp:
        a, b = checkout(Path(tmp), "a"), checkout(Path(tmp), "b")
        cache, spare = Path(tmp) / "cache", Path(tmp) / "push-cache"
        start = time.perf_counter()
        fresh(a, engine="fork", preload=["pandas"], cache=str(cache))(rows)
        filled = time.perf_counter() - start
        archives = sum(p.stat().st_size for p in cache.rglob("*.tar.gz"))
        assert len(entries(str(cache))) == len(rows)
        print(f"cache filled from checkout a (fork, first call: zygote start included): {filled:.2f} s; "
              f"{len(rows)} entries, {archives / len(rows) / 1024:.1f} KiB per archive")  # fmt: skip
        copy_to_memory(cache)
        batches = {
            KERNEL: fresh(a, engine="kernel", cache=False),
            FORK: fresh(a, engine="fork", preload=["pandas"], cache=False),
            PUSH: pushed(a, spare),
            RESTORED: restored(b, a, str(cache)),
            MEMORY: restored(b, a, MEMORY_URL),
        }
        seconds = run_rounds(batches, rows, args.rounds)
        report(seconds, args.instances)
        stats = profile_all_threads(lambda: sweep(b, rows, jobs=1, cache=str(cache)))
        print(
            f"\none more restore from the folder under cProfile (jobs=1, all threads), top 12 of ductaflow "
            f"by cumulative seconds ({stats.total_tt:.2f} s profiled in all):"
        )
        for cumulative, own, calls, name in top_entries(stats, 12, ours=True):
            print(f"  {cumulative:7.3f} cum {own:7.3f} own {calls:6d} calls  {name}")
        print("top 10 of every function by own seconds:")
        for cumulative, own, calls, name in top_entries(stats, 10, ours=False):
            print(f"  {cumulative:7.3f} cum {own:7.3f} own {calls:6d} calls  {name}")
    print(f"load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
