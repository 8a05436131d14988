"""Relative data paths: ``project_path`` names the same file in every way a flow runs (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbclient
import pytest
from conftest import listing, record

import ductaflow
from ductaflow.project import find_project_root

READER = """\
# %% tags=["parameters"]
config = {}

# %%
import json
from pathlib import Path

import ductaflow
from ductaflow import is_notebook_execution, load_cli_config, project_path

if not is_notebook_execution():
    config = load_cli_config("config/reader.json", "Read the input table")
rows = project_path(config["input_csv"]).read_text().splitlines()
Path("seen.json").write_text(json.dumps({"rows": rows, "root": str(ductaflow.project_root())}))
"""


def clean_env() -> dict[str, str]:
    """This process's environment without ductaflow's variables (as a user's shell has it)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}


def python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run Python with ``args`` in ``cwd``, as a user would from a terminal."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=clean_env())  # fmt: skip


def run_as_notebook(flow: Path, cwd: Path) -> None:
    """Run ``flow``'s cells in a kernel started in ``cwd``, as VS Code or Jupyter does (config empty)."""
    notebook = jupytext.read(flow)
    nbclient.NotebookClient(
        notebook, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()


@pytest.fixture
def reader(project: Path) -> Path:
    """A project whose flow reads data/input.csv, named relative to the root in its config."""
    (project / "flow").mkdir()
    (project / "flow" / "reader.py").write_text(READER)
    (project / "config").mkdir()
    (project / "config" / "reader.json").write_text(json.dumps({"input_csv": "data/input.csv"}))
    (project / "data").mkdir()
    (project / "data" / "input.csv").write_text("a,b\n1,2\n")
    return project


def seen(folder: Path) -> dict[str, object]:
    """What the reader flow saw, from the folder it ran in."""
    return json.loads((folder / "seen.json").read_text())


def test_the_same_input_file_in_every_mode(reader: Path) -> None:
    """In place, from inside flow/, with --output-dir, under ductaflow and as a notebook: one file."""
    expected = {"rows": ["a,b", "1,2"], "root": str(reader)}
    assert python(["flow/reader.py"], reader).returncode == 0
    assert seen(reader) == expected
    inside = python(["reader.py"], reader / "flow")  # the default config is found from the root too
    assert inside.returncode == 0, inside.stderr
    assert seen(reader / "flow") == expected
    out = python(["flow/reader.py", "--output-dir", "runs/reader/script"], reader)
    assert out.returncode == 0, out.stderr
    assert seen(reader / "runs/reader/script") == expected
    done = python(["-m", "ductaflow", "run", "flow/reader.py", "--config", "config/reader.json",
                   "--instance", "engine", "--no-html"], reader)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert seen(reader / "runs/reader/engine") == expected
    for cwd in (reader / "flow", reader):  # VS Code starts the kernel beside the file, or in the workspace
        run_as_notebook(reader / "flow" / "reader.py", cwd)
        assert seen(cwd) == expected


def test_project_root_can_be_set(reader: Path, tmp_path: Path) -> None:
    """DUCTAFLOW_PROJECT_ROOT wins over the markers, in the flow's own process."""
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    (other / "data" / "input.csv").write_text("x\n9\n")
    env = {**clean_env(), "DUCTAFLOW_PROJECT_ROOT": str(other)}
    out = subprocess.run([sys.executable, "flow/reader.py"], cwd=reader, capture_output=True, text=True,
                         timeout=120, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert seen(reader) == {"rows": ["x", "9"], "root": str(other)}


@pytest.mark.parametrize("marker", ["pyproject.toml", ".git", "conductor.py", "ductaflow.toml", "config/"])
def test_the_root_is_the_nearest_folder_with_a_marker(tmp_path: Path, marker: str) -> None:
    """Each marker makes its folder the root, for a flow in any subfolder below it."""
    root = tmp_path / "study"
    deep = root / "flows" / "part"
    deep.mkdir(parents=True)
    (deep / "x.py").write_text("")
    (root / marker).mkdir() if marker.endswith("/") else (root / marker).write_text("")
    assert find_project_root(deep / "x.py") == root
    assert find_project_root(deep) == root


def test_without_a_marker_the_root_is_the_flows_folder(tmp_path: Path) -> None:
    """No marker anywhere up: the flow's folder; a file named config is not a marker."""
    folder = tmp_path / "loose"
    folder.mkdir()
    (tmp_path / "config").write_text("a file, not a folder")
    (folder / "x.py").write_text("")
    assert find_project_root(folder / "x.py") == folder


def test_scaffold_flow_reads_its_data_in_all_three_modes(tmp_path: Path) -> None:
    """The project `ductaflow new` makes: its flow reads data/shocks.csv and gives one walk every way."""
    study = ductaflow.new_project(tmp_path / "study")
    assert (study / "data" / "shocks.csv").is_file()
    assert python(["flow/simulate.py"], study).returncode == 0
    out = python(["flow/simulate.py", "--output-dir", "runs/simulate/script"], study)
    assert out.returncode == 0, out.stderr
    done = python(["-m", "ductaflow", "run", "flow/simulate.py", "--config", "config/simulate.json",
                   "--instance", "engine", "--no-html"], study)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_as_notebook(study / "flow" / "simulate.py", study / "flow")
    folders = (study, study / "runs/simulate/script", study / "runs/simulate/engine", study / "flow")
    walks = [(folder / "walk.csv").read_text() for folder in folders]
    assert walks[1:] == walks[:1] * 3
    without = python(["flow/simulate.py", "-o", "shocks_csv=data/none.csv"], study)
    assert without.returncode == 1 and str(study / "data" / "none.csv") in without.stderr


def test_a_refused_output_dir_writes_nothing_anywhere(tmp_path: Path, reader: Path) -> None:
    """--output-dir naming a folder of other files (or the project) is refused, and nothing is written."""
    before = listing(tmp_path)
    for target in ("flow", "."):
        out = python(["flow/reader.py", "--output-dir", target], reader)
        assert out.returncode == 2 and "did not write" in out.stderr, out.stderr
    assert listing(tmp_path) == before


def test_default_config_from_inside_the_flow_folder(reader: Path) -> None:
    """python reader.py from flow/ finds config/reader.json at the root; --config stays launch-relative."""
    inside = reader / "flow"
    out = python(["reader.py", "--output-dir", "../runs/reader/inside"], inside)
    assert out.returncode == 0, out.stderr
    assert record(reader / "runs/reader/inside")["status"] == "success"
    assert json.loads((reader / "runs/reader/inside/config.json").read_text()) == {
        "input_csv": "data/input.csv"
    }
    wrong = python(["reader.py", "--config", "config/reader.json"], inside)
    assert wrong.returncode == 2 and "config/reader.json" in wrong.stderr
