"""Debug copies (``ductaflow open``, ``debug_notebook``): beside the instance, never in it.

The debug notebooks are executed in real kernels from another directory, as
an editor would, and the instance directory is compared byte by byte before
and after.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import listing, record
from test_cli import cli

import ductaflow
from ductaflow.metrics import read_metrics


@pytest.fixture
def proj(project: Path, flows: Path) -> Path:
    """A project with the test flows ok.py and metrics.py in flow/."""
    (project / "flow").mkdir()
    for name in ("ok.py", "metrics.py"):
        shutil.copy(flows / name, project / "flow" / name)
    return project


def contents(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def execute(notebook: Path, elsewhere: Path) -> Any:
    """Run every cell of ``notebook`` in a fresh kernel started in ``elsewhere``; return the notebook."""
    import nbclient
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    elsewhere.mkdir(exist_ok=True)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(elsewhere)}}).execute()  # fmt: skip
    return nb


def test_the_debug_copy_reproduces_the_run_and_leaves_the_instance_as_it_was(
    proj: Path, tmp_path: Path
) -> None:
    """open: the notebook, run cell by cell, redoes the run in the copy; the instance keeps every byte."""
    assert cli("run", "flow/ok.py", "-o", "n=4", "-o", "label=dbg", "--instance", "dbg").returncode == 0
    run_dir = proj / "runs" / "ok" / "dbg"
    before = contents(run_dir)
    done = cli("open", "runs/ok/dbg")
    assert done.returncode == 0, done.stderr
    copy = proj / "runs" / "ok" / ".debug-dbg"
    notebook = copy / "debug_ok.ipynb"
    assert f"wrote {notebook.relative_to(proj)}" in done.stdout
    assert json.loads((copy / "config.json").read_text()) == {"n": 4, "label": "dbg"}
    nb = execute(notebook, tmp_path / "elsewhere")
    assert contents(run_dir) == before
    seen = json.loads((copy / "seen.json").read_text())
    assert seen["config"] == {"n": 4, "label": "dbg"}
    assert seen["cwd"] == str(copy)
    assert seen["is_notebook_execution"] is True
    assert nb.cells[-1].outputs[0]["data"]["text/plain"] == "8"
    status = json.loads(cli("status", "--json").stdout)
    assert [(r["instance"], r["outdated"]) for r in status] == [("dbg", False)]
    assert list(ductaflow.collect("runs").instance) == ["dbg"]
    assert cli("why", "runs/ok/dbg").stdout.count("up to date") == 1


def test_a_rerun_of_the_instance_leaves_its_debug_copy(proj: Path) -> None:
    """The debug copy and what its cells wrote survive a forced re-run, a failed one and a later success."""
    assert cli("run", "flow/ok.py", "-o", "n=1", "--instance", "a").returncode == 0
    notebook = ductaflow.debug_notebook("runs/ok/a")
    (notebook.parent / "scratch.txt").write_text("mine")
    before = contents(notebook.parent)
    assert cli("run", "flow/ok.py", "-o", "n=1", "--instance", "a", "--force").returncode == 0
    assert cli("run", "flow/ok.py", "-o", 'n={"a": 1}', "--instance", "a").returncode == 1
    assert cli("run", "flow/ok.py", "-o", "n=2", "--instance", "a").returncode == 0
    assert contents(notebook.parent) == before
    assert record(proj / "runs/ok/a")["status"] == "success"


def test_metrics_and_upstream_files_from_a_debug_copy(proj: Path, tmp_path: Path) -> None:
    """record() in a debug copy writes there; relative paths and project_root() name what the run's did."""
    (proj / "flow" / "reads_upstream.py").write_text(
        '# %% tags=["parameters"]\nconfig = {}\n\n'
        "# %%\nimport ductaflow\n"
        "upstream = open('../../metrics/m/log.txt').read()\n"
        "ductaflow.record(upstream_found='loop of record calls' in upstream, x=config['x'],\n"
        "                 root=str(ductaflow.project_root()))\n"
    )
    ductaflow.run_step_flow("flow/metrics.py", "metrics", "m", {"x": 2, "loops": 3}, export_html=False)
    ductaflow.run_step_flow("flow/reads_upstream.py", "reader", "r", {"x": 5}, export_html=False)
    instance = proj / "runs" / "reader" / "r"
    expected = {"upstream_found": True, "x": 5, "root": str(proj / "flow")}  # no marker above the flow
    assert json.loads((instance / "metrics.json").read_text()) == expected
    before = contents(proj / "runs")
    notebook = ductaflow.debug_notebook(instance)
    execute(notebook, tmp_path / "elsewhere")
    assert read_metrics(notebook.parent) == expected  # the journal counts too
    after = contents(proj / "runs")
    assert {k: v for k, v in after.items() if not k.startswith("reader/.debug-r/")} == before


def test_opening_again_rewrites_the_notebook_and_keeps_what_the_cells_wrote(proj: Path) -> None:
    """A second open rewrites the notebook and config.json of the copy; files its cells wrote stay."""
    assert cli("run", "flow/ok.py", "-o", "n=1", "--instance", "a").returncode == 0
    notebook = ductaflow.debug_notebook("runs/ok/a")
    notebook.write_text("{}")
    (notebook.parent / "config.json").write_text("{}")
    (notebook.parent / "out.csv").write_text("x\n1\n")
    assert ductaflow.debug_notebook("runs/ok/a") == notebook
    assert "injected-parameters" in notebook.read_text()
    assert json.loads((notebook.parent / "config.json").read_text()) == {"n": 1}
    assert (notebook.parent / "out.csv").read_text() == "x\n1\n"


def test_open_refuses_a_folder_ductaflow_did_not_write(proj: Path) -> None:
    """A folder of the user's where the copy would go is left as it is, and open says so (exit 2)."""
    assert cli("run", "flow/ok.py", "--instance", "a").returncode == 0
    mine = proj / "runs" / "ok" / ".debug-a"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    done = cli("open", "runs/ok/a")
    assert done.returncode == 2
    assert "did not write" in done.stderr and ".debug-a" in done.stderr
    assert listing(mine) == ["notes.txt"]


def _program(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_open_names_the_editors_found_on_path(
    proj: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open's hint lists the editors on PATH, in order, each with a command that opens the notebook."""
    assert cli("run", "flow/ok.py", "--instance", "a").returncode == 0
    bin_dir = tmp_path / "bin"
    for name in ("jupyter-lab", "code"):
        _program(bin_dir, name)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-venv" / "python"))
    lines = cli("open", "runs/ok/a").stdout.splitlines()
    start = lines.index("open it with:")
    assert lines[start + 1 : start + 3] == [
        "  code runs/ok/.debug-a/debug_ok.ipynb",
        "  cd runs/ok/.debug-a && jupyter lab debug_ok.ipynb",
    ]
    assert not any("notebook debug_ok" in line or "pip install" in line for line in lines)


def test_open_finds_jupyter_beside_this_python_or_says_how_to_install_an_editor(
    proj: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jupyter beside the interpreter (a venv not activated) is named by its path; else how to get one."""
    assert cli("run", "flow/ok.py", "--instance", "a").returncode == 0
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    venv_bin = tmp_path / "venv" / "bin"
    _program(venv_bin, "jupyter-notebook")
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    found = cli("open", "runs/ok/a").stdout
    assert f"  cd runs/ok/.debug-a && {venv_bin / 'jupyter-notebook'} debug_ok.ipynb" in found
    assert "jupyter lab" not in found and "code " not in found
    os.remove(venv_bin / "jupyter-notebook")
    none = cli("open", "runs/ok/a").stdout
    assert "no notebook editor on PATH" in none
    assert "pip install jupyterlab, then cd runs/ok/.debug-a && jupyter lab debug_ok.ipynb" in none
    assert "VS Code with its Jupyter extension" in none and "code runs/ok/.debug-a/debug_ok.ipynb" in none
