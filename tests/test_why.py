"""ductaflow why and status on what a sweep left behind: orphaned instances, step folders, runs folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_cli import cli


@pytest.fixture
def swept(project: Path, flows: Path) -> Path:
    """A project whose flow/ok.py was swept over t.csv (instances a, b and c)."""
    (project / "flow").mkdir()
    shutil.copy(flows / "ok.py", project / "flow" / "ok.py")
    (project / "t.csv").write_text("instance_name,n\na,1\nb,2\nc,3\n")
    done = cli("sweep", "flow/ok.py", "--table", "t.csv", "--no-html")
    assert done.returncode == 0, done.stderr
    return project


def test_why_on_an_instance_whose_row_was_removed_says_it_is_orphaned(swept: Path) -> None:
    """A row taken out of the table: why says the instance is orphaned, not that it would run again."""
    (swept / "t.csv").write_text("instance_name,n\na,1\nc,3\n")
    said = cli("why", "runs/ok/b")
    assert said.returncode == 0, said.stderr
    assert "orphaned: no longer a row of t.csv, so a sweep of that table would not run it" in said.stdout
    assert "would run again" not in said.stdout and "cannot tell" not in said.stdout

    data = json.loads(cli("why", "runs/ok/b", "--json").stdout)
    assert data["orphaned"] is True and data["outdated"] is None
    plan = cli("sweep", "flow/ok.py", "--table", "t.csv", "--dry-run")
    assert "b" not in [line.split()[0] for line in plan.stdout.splitlines()[2:]]  # the sweep agrees


def test_status_marks_orphaned_instances(swept: Path) -> None:
    """status shows an orphaned instance as such, and --outdated leaves it out."""
    (swept / "t.csv").write_text("instance_name,n\na,1\nc,4\n")
    rows = {r["instance"]: r for r in json.loads(cli("status", "--json").stdout)}
    assert [rows[k]["orphaned"] for k in "abc"] == [False, True, False]
    assert rows["c"]["outdated"] is True and rows["c"]["reason"] == "config changed (n: 3 -> 4)"
    plain = cli("status").stdout.splitlines()
    row_b = next(line for line in plain if line.startswith("ok ") and " b " in line)
    assert " orphaned " in row_b and "no longer a row of t.csv" in row_b
    outdated = json.loads(cli("status", "--outdated", "--json").stdout)
    assert [r["instance"] for r in outdated] == ["c"]


def test_why_on_a_step_folder_lists_each_instance_and_whether_it_would_run(swept: Path) -> None:
    """why runs/<step>: one line per instance, would it run again (yes, no) and why; --json the same."""
    (swept / "t.csv").write_text("instance_name,n\na,1\nc,4\n")
    done = cli("why", "runs/ok")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "runs/ok: 3 instances, 1 would run"
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows["a"].split()[1] == "no" and rows["a"].endswith("up to date")
    assert rows["b"].split()[1] == "no" and "orphaned: no longer a row of t.csv" in rows["b"]
    assert rows["c"].split()[1] == "yes" and rows["c"].endswith("config changed (n: 3 -> 4)")
    data = json.loads(cli("why", "runs/ok", "--json").stdout)
    assert [(r["instance"], r["outdated"], r["orphaned"]) for r in data] == [
        ("a", False, False), ("b", None, True), ("c", True, False)
    ]  # fmt: skip


def test_why_on_a_runs_folder_lists_each_step(swept: Path) -> None:
    """why runs: a table per step, each titled with its folder and how many would run."""
    assert cli("run", "flow/ok.py", "--step", "other", "--instance", "solo", "--no-html").returncode == 0
    done = cli("why", "runs")
    assert done.returncode == 0, done.stderr
    tables = done.stdout.split("\n\n")
    assert tables[0].startswith("runs/ok: 3 instances, 0 would run\n")
    assert tables[1].startswith("runs/other: 1 instance, 0 would run\n") and "solo" in tables[1]
    empty = swept / "empty"
    empty.mkdir()
    refused = cli("why", "empty")
    assert refused.returncode == 2 and "no ductaflow instance" in refused.stderr
