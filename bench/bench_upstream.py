"""How much reading upstream instances adds to deciding what runs.

Fabricates N up-to-date instances (default 10,000) of three steps, as
finished sweeps would have left them (records written with the fingerprints
the conductor computes):

- ``prep``: the upstream step;
- ``fit``: reads ``output_of("prep")``, so each of its instances has one
  upstream instance whose state (flow, project code, inputs, own upstream) is
  checked and whose fingerprint is part of its own;
- ``plain``: the same flow without the ``output_of`` call: today's decision.

Then times ``run_instances(..., dry_run=True)`` (the whole decision: rows,
config checks, fingerprints, records read) for ``fit`` and ``plain``, in
interleaved rounds (alternating which goes first), and prints medians and
the ratio. Every instance must come out ``skipped``.

Run: ``python bench/bench_upstream.py [N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import ductaflow
from ductaflow.conductor import _Conductor

PREP = '# %% tags=["parameters"]\nconfig = {"n": 0}\n\n# %%\nopen("data.txt", "w").write(str(config["n"]))\n'
FIT = ('# %% tags=["parameters"]\nconfig = {"n": 0}\n\n# %%\nimport ductaflow\n'
       'prep = ductaflow.output_of("prep")\nprint((prep / "data.txt").read_text())\n')  # fmt: skip
PLAIN = FIT.replace('prep = ductaflow.output_of("prep")', 'prep = ductaflow.project_path("runs", "prep")')


def fabricate(root: Path, step: str, rows: list[dict]) -> None:
    """Write up-to-date success records for ``rows`` of ``flow/<step>.py``, as the conductor decides them."""
    conductor = _Conductor(root / "flow" / f"{step}.py", None, None, False, root, None, {})
    for plan in conductor.plan(rows, "instance_name", None, False, []):
        plan.run_dir.mkdir(parents=True)
        record = {"ductaflow_record": 1, "status": "success", "step": step, "instance": plan.name,
                  "flow": f"flow/{step}.py", "project_root": str(root), "duration_s": 1.0,
                  "started_at": "2026-12-01T10:00:00+00:00", "fingerprint": plan.fingerprint.digest,
                  "fingerprint_parts": plan.fingerprint.parts, "config": plan.config}  # fmt: skip
        (plan.run_dir / "run.json").write_text(json.dumps(record))


def decide(root: Path, step: str, rows: list[dict]) -> float:
    """Seconds to decide every row of ``step`` (a dry run); checks that all are skipped."""
    started = time.perf_counter()
    frame = ductaflow.run_instances(root / "flow" / f"{step}.py", rows, project_root=root, dry_run=True,
                                    progress=False)  # fmt: skip
    elapsed = time.perf_counter() - started
    assert (frame.status == "skipped").all(), frame[frame.status != "skipped"].head()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "flow").mkdir()
        (root / "ductaflow.toml").write_text("")
        for step, text in (("prep", PREP), ("fit", FIT), ("plain", PLAIN)):
            (root / "flow" / f"{step}.py").write_text(text)
        rows = [{"instance_name": f"i{k:05d}", "n": k} for k in range(args.n)]
        started = time.perf_counter()
        for step in ("prep", "fit", "plain"):
            fabricate(root, step, rows)
        print(f"fabricated 3 x {args.n} instances in {time.perf_counter() - started:.1f} s")
        times: dict[str, list[float]] = {"plain": [], "fit": []}
        for round_ in range(args.rounds):
            order = ["plain", "fit"] if round_ % 2 == 0 else ["fit", "plain"]
            for step in order:
                times[step].append(decide(root, step, rows))
    plain, fit = statistics.median(times["plain"]), statistics.median(times["fit"])
    print(f"\ndeciding {args.n:,} unchanged instances, {args.rounds} interleaved rounds (median seconds)")
    print(f"  {'without upstream (plain)':38} {plain:8.3f}  ({plain / args.n * 1e6:6.1f} us per instance)")
    print(f"  {'one upstream each (fit <- prep)':38} {fit:8.3f}  ({fit / args.n * 1e6:6.1f} us per instance)")
    print(f"  ratio fit / plain: {fit / plain:.2f}  (bound: 1.5)")


if __name__ == "__main__":
    main()
