"""The example project works: conductor.py as a script and as a notebook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, record

STEPS = ("make_data", "analyse")
SCENARIOS = ("baseline", "high_growth", "volatile")


@pytest.fixture
def example(tmp_path):
    """A copy of the example project: flows, configs and the conductor."""
    for name in ("flow", "config"):
        shutil.copytree(REPO / name, tmp_path / name)
    shutil.copy(REPO / "conductor.py", tmp_path / "conductor.py")
    return tmp_path


def _assert_all_instances_succeeded(root):
    for step in STEPS:
        for scenario in SCENARIOS:
            assert record(root / "runs" / step / scenario)["status"] == "success"
    summary = json.loads((root / "runs" / "analyse" / "high_growth" / "summary.json").read_text())
    baseline = json.loads((root / "runs" / "analyse" / "baseline" / "summary.json").read_text())
    assert summary["fitted_trend_per_day"] > baseline["fitted_trend_per_day"]


def test_conductor_runs_as_a_script(example):
    """python conductor.py runs every scenario through both steps and prints the results table."""
    out = subprocess.run(
        [sys.executable, "conductor.py"], cwd=example, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert all(s in out.stdout for s in SCENARIOS) and "fitted_trend_per_day" in out.stdout
    _assert_all_instances_succeeded(example)
    assert (example / "runs" / "make_data" / "volatile" / "demand.png").exists()


def test_conductor_runs_as_a_notebook(example):
    """conductor.py opened as a notebook (jupytext) runs cell by cell to the same results."""
    import jupytext
    import nbclient

    notebook = jupytext.read(example / "conductor.py")
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", resources={"metadata": {"path": str(example)}}
    )
    client.execute()
    _assert_all_instances_succeeded(example)
