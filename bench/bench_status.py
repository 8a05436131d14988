"""How fast ``ductaflow status`` tells which of many instances are outdated.

Fabricates N up-to-date instances (default 5,000) of one flow, as ``ductaflow
sweep --table`` would have left them (records with ``config_source`` naming a
table file and a config file), then times side by side:

- ``check_instances(["runs"])``: what ``ductaflow status`` computes: reads
  every record, hashes the flow once, rebuilds the table's configs once;
- ``sweep(..., dry_run=True)``: the same question asked from the table's
  side, as ``ductaflow sweep --dry-run`` does;
- ``ductaflow status --json`` as a subprocess, end to end (imports included).

Run: ``python bench/bench_status.py [N]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

import ductaflow
from ductaflow.config import config_hash
from ductaflow.fingerprint import Fingerprint
from ductaflow.flow import read_flow
from ductaflow.sources import rebuild_configs

FLOW = '# %% tags=["parameters"]\nconfig = {}\n\n# %%\nprint(config)\n'


def fabricate(project: Path, n: int) -> None:
    """Write the flow, config, table and N up-to-date instance records of a finished sweep."""
    (project / "flow").mkdir()
    flow = project / "flow" / "f.py"
    flow.write_text(FLOW)
    (project / "config").mkdir()
    (project / "config" / "base.json").write_text(json.dumps({"alpha": 0.1, "beta": {"gamma": 1}}))
    pd.DataFrame({"instance_name": [f"i{k:05d}" for k in range(n)], "alpha": range(n)}).to_csv(
        project / "table.csv", index=False
    )
    source = {"config_file": "config/base.json", "overrides": [], "table": "table.csv", "grid": None,
              "instance_name": None, "name_column": "instance_name"}  # fmt: skip
    sha = read_flow(flow).sha256
    for name, config in rebuild_configs(source, project).items():
        fp = Fingerprint(sha, config_hash(config))
        run_dir = project / "runs" / "f" / name
        run_dir.mkdir(parents=True)
        record = {"ductaflow_record": 1, "status": "success", "step": "f", "instance": name,
                  "flow": "flow/f.py", "project_root": str(project), "duration_s": 1.0,
                  "started_at": "2026-11-23T10:00:00+00:00",
                  "fingerprint": fp.digest, "fingerprint_parts": fp.parts, "config": config,
                  "config_source": source}  # fmt: skip
        (run_dir / "run.json").write_text(json.dumps(record))


def timed(label: str, action: Callable[[], None]) -> float:
    """Run ``action`` once, print and return its wall time."""
    start = time.perf_counter()
    action()
    took = time.perf_counter() - start
    print(f"  {label:<44} {took:>7.3f} s")
    return took


def main(n: int) -> None:
    """Fabricate, time the three approaches, print ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        fabricate(project, n)
        print(f"{n} up-to-date instances of one step, configs from a table file and a config file")

        def status() -> None:
            frame = ductaflow.check_instances([project / "runs"])
            assert len(frame) == n and not frame.outdated.any(), frame[frame.outdated].head()

        def dry_run() -> None:
            frame = ductaflow.sweep(project / "flow" / "f.py", project / "table.csv", project_root=project,
                                    config_file=project / "config" / "base.json", dry_run=True)  # fmt: skip
            assert (frame.status == "skipped").all()

        def command() -> None:
            out = subprocess.run([sys.executable, "-m", "ductaflow", "status", "--json"], cwd=project,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            assert len(json.loads(out.stdout)) == n

        checks = timed("check_instances (ductaflow status)", status)
        planned = timed("sweep(dry_run=True) (ductaflow sweep --dry-run)", dry_run)
        whole = timed("ductaflow status --json, a subprocess", command)
        print(f"  per instance: status {checks / n * 1e6:.0f} us, dry run {planned / n * 1e6:.0f} us")
        print(f"  ratio status / dry run: x{checks / planned:.2f}; command overhead {whole - checks:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
