"""run.json keeps the reason each attempt ran: new, config changed, flow changed, forced, failed before."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import record, run

import ductaflow


def test_each_attempt_of_a_conductor_records_why_it_ran(project, tally_flow):
    """The reason a conductor gave an instance is its record's reason, attempt after attempt."""
    rows = [{"instance_name": "a", "p": 1}, {"instance_name": "b", "p": 2}]
    runs = project / "runs" / "tally"
    run(tally_flow, rows, project)
    assert record(runs / "a")["reason"] == "new" and record(runs / "b")["reason"] == "new"

    rows[1]["p"] = 3
    run(tally_flow, rows, project)
    assert record(runs / "a")["reason"] == "new"  # skipped: its record is the first attempt's
    assert record(runs / "b")["reason"] == "config changed (p: 2 -> 3)"

    tally_flow.write_text(tally_flow.read_text() + "\n# an edit\n")
    run(tally_flow, rows, project)
    assert record(runs / "a")["reason"] == "flow changed"

    rows[0]["fail"] = "once"
    run(tally_flow, rows, project)
    del rows[0]["fail"]
    run(tally_flow, rows, project)
    assert record(runs / "a")["status"] == "success"
    assert record(runs / "a")["reason"] == "previous attempt failed"
    run(tally_flow, rows, project, force=True)
    assert record(runs / "b")["reason"] == "forced"


def test_a_direct_run_records_what_changed_or_that_it_ran_again(project, flows):
    """run_step_flow records new, then what changed, then 'unchanged, run again' when nothing did."""

    def reason(config: dict) -> str:
        result = ductaflow.run_step_flow(flows / "ok.py", "ok", "one", config, export_html=False)
        return result.record["reason"]

    assert reason({"n": 1}) == "new"
    assert reason({"n": 2}) == "config changed (n: 1 -> 2)"
    assert reason({"n": 2}) == "unchanged, run again"
    with pytest.raises(ductaflow.FlowExecutionError):
        reason({"n": {"a": 1}})  # n * 2 fails for a dict
    assert record(project / "runs" / "ok" / "one")["reason"] == "config changed (n removed, n.a=1 added)"


def test_a_script_run_with_output_dir_records_why_it_ran(project, flows):
    """python flow/x.py --output-dir: new, then unchanged, a changed config, a failure, a changed flow."""
    (project / "flow").mkdir()
    flow = Path(shutil.copy(flows / "header.py", project / "flow" / "header.py"))
    (project / "config").mkdir()
    (project / "config" / "header.json").write_text('{"action": "none"}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}

    def reason(*overrides: str) -> str:
        args = [sys.executable, str(flow), "--output-dir", "runs/header/a", *(f"-o{o}" for o in overrides)]
        done = subprocess.run(args, cwd=project, capture_output=True, text=True, timeout=120, env=env)
        assert "Traceback" not in done.stderr or "bad value in flow" in done.stderr, done.stderr
        return record(project / "runs" / "header" / "a")["reason"]

    assert reason("action=none") == "new"
    assert reason("action=none") == "unchanged, run again"
    assert reason("action=raise") == "config changed (action: none -> raise)"
    assert reason("action=none") == "previous attempt failed"
    flow.write_text(flow.read_text() + "\n# an edit\n")
    assert reason("action=none") == "flow changed"
