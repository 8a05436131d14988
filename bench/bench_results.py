"""How fast ``collect`` gathers 10,000 instances into a DataFrame, and the report built from them.

Fabricates N instances (default 10,000) shaped like real ones: a full run
record (versions, host, git, fingerprint parts), ``config.json`` and a
``metrics.json`` of a few values. Times side by side:

- ``collect("runs")``: status, config and metric columns, checks included;
- the hand-written alternative: glob every ``run.json`` and ``metrics.json``,
  ``json.load`` them and ``pandas.json_normalize`` the lot (no checks);
- ``build_report("runs")``: collect plus the self-contained HTML page.

Target: collect under 2 s for 10,000 instances. Run: ``python bench/bench_results.py [N]``.
"""

from __future__ import annotations

import glob
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

import ductaflow
from ductaflow.runrecord import base_record

TARGET_S = 2.0


def fabricate(runs: Path, n: int) -> None:
    """Write N instance directories of one step with record, config and metrics."""
    parts = {"flow_sha256": "0" * 64, "config_hash": "1" * 64, "inputs": {}, "kernel": "ductaflow-python"}
    template = base_record(
        step="study", instance="x", mode="kernel", flow="flow/study.py", flow_sha256="0" * 64,
        config_hash="1" * 64, run_dir="", project_root=str(runs.parent), status="success",
        started_at="2026-11-23T10:00:00.000+00:00", ended_at="2026-11-23T10:00:01.000+00:00",
        duration_s=1.234, kernel="ductaflow-python", fingerprint="2" * 64, fingerprint_parts=parts,
        git=None, error=None,
    )  # fmt: skip
    for k in range(n):
        run_dir = runs / "study" / f"i{k:05d}"
        run_dir.mkdir(parents=True)
        config = {"seed": k, "model": {"alpha": k / n, "kind": "ridge"}, "label": f"scenario {k}"}
        record = {**template, "instance": run_dir.name, "run_dir": str(run_dir), "config": config}
        (run_dir / "run.json").write_text(json.dumps(record, indent=2))
        (run_dir / "config.json").write_text(json.dumps(config))
        (run_dir / "metrics.json").write_text(json.dumps({"rmse": k % 97 / 10, "n": 500, "fit": {"r2": 0.9}}))


def by_hand(runs: Path) -> pd.DataFrame:
    """What users write without ductaflow: load every record and metrics file, normalise."""
    rows = []
    for record_file in sorted(glob.glob(str(runs / "*" / "*" / "run.json"))):
        with open(record_file) as fh:
            record = json.load(fh)
        with open(Path(record_file).with_name("metrics.json")) as fh:
            record["metrics"] = json.load(fh)
        rows.append(record)
    return pd.json_normalize(rows)


def timed(label: str, action: Callable[[], object]) -> float:
    """Run ``action`` once; print and return the seconds it took."""
    start = time.perf_counter()
    action()
    took = time.perf_counter() - start
    print(f"  {label:<40} {took:>7.3f} s")
    return took


def main(n: int) -> None:
    """Fabricate, time, print ratios and the verdict."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        fabricate(runs, n)
        print(f"{n} instances with run.json, config.json and metrics.json (files in the page cache)")
        frame = ductaflow.collect(runs)
        assert len(frame) == n and (frame.status == "success").all() and "metric.fit.r2" in frame
        ours = timed("ductaflow.collect", lambda: ductaflow.collect(runs))
        theirs = timed("hand-written glob + json + json_normalize", lambda: by_hand(runs))
        report = timed("ductaflow.build_report (collect + page)", lambda: ductaflow.build_report(runs))
        size = (runs / "index.html").stat().st_size >> 10
        print(f"  collect / by hand: x{ours / theirs:.2f}; report page {size} KiB, took {report:.2f} s")
        print(f"  collect under {TARGET_S:.0f} s: {'yes' if ours < TARGET_S else 'NO'}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
