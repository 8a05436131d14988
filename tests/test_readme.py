"""The README's commands and examples are true."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from conftest import REPO

README = (REPO / "README.md").read_text()


def _bash_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run runs the README's test command, character for character."""
    test_commands = [line for line in _bash_lines() if "pytest" in line]
    assert len(test_commands) == 1
    assert test_commands[0] in (REPO / ".ci" / "run").read_text().splitlines()


def test_readme_python_examples_run(tmp_path):
    """Every standalone Python example in the README runs in a copy of the example project."""
    shutil.copytree(REPO / "flow", tmp_path / "flow")
    shutil.copytree(REPO / "config", tmp_path / "config")
    examples = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "# %%" not in b]
    batch = [b for b in examples if "dask_jobqueue" in b]  # needs a batch system: checked for syntax only
    for example in batch:
        compile(example, "README.md", "exec")
    examples = [b for b in examples if b not in batch]
    assert len(examples) >= 3 and len(batch) == 1
    for example in examples:
        out = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert (tmp_path / "runs" / "make_data" / "short_noisy" / "demand.png").exists()


def test_readme_script_examples_run(tmp_path):
    """The script-mode commands shown in the README succeed."""
    shutil.copytree(REPO / "flow", tmp_path / "flow")
    shutil.copytree(REPO / "config", tmp_path / "config")
    commands = [line.split("#")[0].split() for line in _bash_lines() if line.startswith("python flow/")]
    assert len(commands) == 4
    for command in commands:
        out = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert (tmp_path / "runs" / "make_data" / "a" / "run.json").exists()
