"""Benchmark: what the checks before a run cost, this tree against an earlier revision, in one run.

Since a flow's parameters cell is its schema, configs are checked before
anything runs (script mode reads the cell without jupytext), table columns
are checked against the base config, CSV rows are counted, and importing
ductaflow may move a script's folder on ``sys.path``. This measures, with
the package of ``--base`` (default ``0050489``, before these checks) and the
package of this tree, each in fresh interpreters:

* ``import ductaflow``;
* a flow run as a script in place (``python flow/x.py -o n=3``), whose
  parameters cell declares its keys;
* ``sweep(..., dry_run=True)`` planning ``--rows`` instances (default 2000)
  from a CSV table over a config file: reading, checking, fingerprinting.

Rounds alternate which package goes first; the report gives the median of
each and the ratio of this tree to the base.

Usage: ``python bench/bench_checks.py [--base REV] [--rounds R] [--rows N]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLOW = """\
# %% tags=["parameters"]
config = {"n": 1, "drift": 0.1}

# %%
from ductaflow import is_notebook_execution, load_cli_config

if not is_notebook_execution():
    config = load_cli_config("config/x.json")
print(config["n"] * 2)
"""
PLAN = """
import time, ductaflow
started = time.perf_counter()
plan = ductaflow.sweep("flow/x.py", "table.csv", config_file="config/x.json", dry_run=True, progress=False)
assert len(plan) == {rows}, len(plan)
print(time.perf_counter() - started)
"""


def export(rev: str, into: Path) -> Path:
    """The package as it was at ``rev``, unpacked into ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "ductaflow"], capture_output=True,
                             check=True).stdout  # fmt: skip
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def project(root: Path, rows: int) -> Path:
    """A project with flow/x.py, config/x.json and a table of ``rows`` rows."""
    (root / "flow").mkdir(parents=True)
    (root / "flow" / "x.py").write_text(FLOW)
    (root / "config").mkdir()
    (root / "config" / "x.json").write_text(json.dumps({"n": 1, "drift": 0.1}))
    lines = ["instance_name,n,drift"] + [f"i{i},{i},{i / 1000}" for i in range(rows)]
    (root / "table.csv").write_text("\n".join(lines) + "\n")
    return root


def timed(args: list[str], cwd: Path, package: Path) -> float:
    """Seconds a fresh interpreter takes to run ``args`` with ``package`` first on its path."""
    env = {**os.environ, "PYTHONPATH": str(package)}
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def planned(cwd: Path, package: Path, rows: int) -> float:
    """Seconds ``sweep(dry_run=True)`` takes inside a fresh interpreter (imports not counted)."""
    env = {**os.environ, "PYTHONPATH": str(package)}
    out = subprocess.run([sys.executable, "-c", PLAN.format(rows=rows)], cwd=cwd, env=env, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return float(out.strip().splitlines()[-1])


def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="0050489")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = export(args.base, Path(tmp) / "base")
        packages = {f"base {args.base}": base, "this tree": REPO}
        cwd = project(Path(tmp) / "project", args.rows)
        measures = {
            "import ductaflow": lambda p: timed(["-c", "import ductaflow"], cwd, p),
            "script in place": lambda p: timed(["flow/x.py", "-o", "n=3"], cwd, p),
            f"plan {args.rows} rows (dry run)": lambda p: planned(cwd, p, args.rows),
        }
        times = {(m, name): [] for m in measures for name in packages}
        for measure in measures.values():  # warm-up: disk caches, bytecode
            for package in packages.values():
                measure(package)
        for round_ in range(args.rounds):
            order = list(packages.items())[:: 1 if round_ % 2 == 0 else -1]
            for label, measure in measures.items():
                for name, package in order:
                    times[(label, name)].append(measure(package))
    names = list(packages)
    print(f"medians of {args.rounds} rounds, seconds")
    print(f"{'':32} {names[0]:>16} {names[1]:>12} {'ratio':>7}")
    for label in measures:
        old, new = (statistics.median(times[(label, n)]) for n in names)
        print(f"{label:32} {old:16.3f} {new:12.3f} {new / old:7.2f}")


if __name__ == "__main__":
    main()
