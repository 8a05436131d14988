"""A flow may have any file name: one named like a standard-library module runs in all three modes.

The flow's folder is importable (its sibling ``helpers.py``), right after the
standard library, so neither a kernel starting up nor ductaflow's own imports
load the flow in place of the standard module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import record
from test_cli import cli

import ductaflow

#: (the flow's file name, the standard module it imports): named like it, or not named like anything
CASES = {"types": ("types", "types"), "random": ("random", "random"), "plain name": ("analysis", "json")}


def make_flow(project: Path, flows: Path, name: str) -> Path:
    """flow/<name>.py (the stdlib_named test flow) beside its helper module flow/helpers.py."""
    folder = project / "flow"
    folder.mkdir(exist_ok=True)
    (folder / "helpers.py").write_text("VALUE = 1\n")
    return Path(shutil.copy(flows / "stdlib_named.py", folder / f"{name}.py"))


def assert_sees_the_standard_module_and_its_helper(
    seen_file: Path, project: Path, first: bool = False
) -> None:
    """What the flow wrote: the standard module (not the flow), its helper, its folder after the stdlib.

    ``first``: the folder is first on the path, where Python put it (a script whose folder holds no
    file named like a standard module is left as Python made it).
    """
    seen = json.loads(seen_file.read_text())
    folder = project / "flow"
    stdlib = Path(os.__file__).resolve().parent
    assert stdlib in Path(seen["module"]).resolve().parents, seen["module"]  # not the flow itself
    assert Path(seen["helper"]).resolve() == (folder / "helpers.py").resolve()
    path = [Path(entry or ".").resolve() for entry in seen["path"]]
    if first:
        assert path[0] == folder.resolve()
    else:
        assert path.index(stdlib) < path.index(folder.resolve())


@pytest.mark.parametrize("name, module", CASES.values(), ids=CASES.keys())
def test_executed_by_ductaflow(project: Path, flows: Path, name: str, module: str) -> None:
    """run_step_flow: the kernel starts, the flow imports the standard module and its helper."""
    flow = make_flow(project, flows, name)
    result = ductaflow.run_step_flow(flow, "named", name, {"module": module}, export_html=False)
    assert result.status == ductaflow.RunStatus.SUCCESS
    assert_sees_the_standard_module_and_its_helper(result.run_dir / "seen.json", project)


def test_executed_by_ductaflow_run_in_a_named_kernel(project: Path, flows: Path) -> None:
    """ductaflow run --kernel python3 (an installed ipykernel spec) runs flow/types.py too."""
    make_flow(project, flows, "types")
    done = cli("run", "flow/types.py", "-o", "module=types", "--kernel", "python3", "--no-html")
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = project / "runs" / "types" / "default"
    assert record(run_dir)["kernel"] == "python3"
    assert_sees_the_standard_module_and_its_helper(run_dir / "seen.json", project)


def script(project: Path, name: str, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """python flow/<name>.py --config named.json ARGS (the config names the module), a real process."""
    (project / "named.json").write_text(json.dumps({"module": module}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}
    command = [sys.executable, f"flow/{name}.py", "--config", "named.json", *args]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("name, module", CASES.values(), ids=CASES.keys())
def test_as_a_script_with_output_dir(project: Path, flows: Path, name: str, module: str) -> None:
    """python flow/<name>.py --output-dir: the supervisor and its child both import ductaflow and run it."""
    make_flow(project, flows, name)
    done = script(project, name, module, "--output-dir", "runs/named/a")
    assert done.returncode == 0, done.stderr
    run_dir = project / "runs" / "named" / "a"
    assert record(run_dir)["status"] == "success"
    assert_sees_the_standard_module_and_its_helper(run_dir / "seen.json", project, first=name == "analysis")


@pytest.mark.parametrize("name, module", CASES.values(), ids=CASES.keys())
def test_as_a_script_in_place(project: Path, flows: Path, name: str, module: str) -> None:
    """python flow/<name>.py: runs in place with the standard module and its helper."""
    make_flow(project, flows, name)
    done = script(project, name, module)
    assert done.returncode == 0, done.stderr
    assert_sees_the_standard_module_and_its_helper(project / "seen.json", project, first=name == "analysis")
