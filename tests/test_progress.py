"""What a conductor prints while it runs: counts of what runs, and words in the singular or plural."""

from __future__ import annotations

import re
import sys

import pytest
from conftest import run, run_in_terminal
from test_cli import cli

import ductaflow
from ductaflow.fingerprint import Fingerprint, why_run
from ductaflow.runrecord import RunStatus


def test_progress_lines_number_only_the_instances_that_run(project, tally_flow, capsys):
    """Of three instances two up to date: the header says so and the one that runs is [1/1]."""
    rows = [{"instance_name": name, "p": 1} for name in "abc"]
    run(tally_flow, rows, project)
    rows[2]["p"] = 2
    run(tally_flow, rows, project, progress=True)
    out = capsys.readouterr().out
    assert "tally: 3 instances, 1 to run, 2 up to date" in out
    assert re.search(r"^\[1/1\] success +c ", out, re.MULTILINE), out
    assert "[3/3]" not in out


def test_one_instance_is_counted_in_the_singular(project, tally_flow, capsys):
    """One instance: '1 instance' in the header, the summary and the error of raise_on_failure."""
    with pytest.raises(ductaflow.InstancesFailedError) as info:
        run(tally_flow, [{"instance_name": "a", "fail": "x"}], project, progress=True, raise_on_failure=True)
    out = capsys.readouterr().out
    assert "tally: 1 instance, 1 to run, 0 up to date" in out
    assert "tally: 1 instance in " in out
    assert "1 instances" not in out
    assert str(info.value).startswith("1 instance of step 'tally' failed:")


def test_status_of_one_instance_is_titled_in_the_singular(project, tally_flow):
    """ductaflow status over a single instance: '1 instance: 1 success'."""
    run(tally_flow, [{"instance_name": "a"}], project)
    done = cli("status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "1 instance: 1 success"


def test_live_bar_counts_only_the_instances_that_run(project, tally_flow):
    """On a terminal, one instance to run of three shows 1/1 with two skipped, never 3/3."""
    rows = [{"instance_name": name, "tally": str(project / "tally.txt")} for name in "abc"]
    run(tally_flow, [{"instance_name": name} for name in "ab"], project)
    code = f"import ductaflow\nductaflow.run_instances({str(tally_flow)!r}, {rows!r}, export_html=False)\n"
    status, text = run_in_terminal([sys.executable, "-c", code], cwd=project)
    assert status == 0, text
    assert "1/1" in text and "skipped 2" in text, text
    assert "3/3" not in text and "2/3" not in text


def test_one_hidden_input_change_is_one_change():
    """Past the three input changes shown, one more is '+1 more input change'."""
    inputs = {f"in{i}": "a" for i in range(4)}
    parts = {"flow_sha256": "f", "config_hash": "c", "kernel": "k", "inputs": inputs}
    old = {"fingerprint": "old", "fingerprint_parts": parts}
    now = Fingerprint("f", "c", {f"in{i}": "b" for i in range(4)}, "k")
    reason = why_run(old, RunStatus.SUCCESS, now)
    assert reason is not None and reason.endswith("; +1 more input change"), reason
