"""The parameters cell decides what a config may hold, in every mode; flows in any format jupytext reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from conftest import listing, record
from test_cli import cli

import ductaflow

SCHEMA_FLOW = """\
# %% tags=["parameters"]
config = {"drift": 0.1, "volatility": 1.0, "model": {"alpha": 0.5, "layers": 2}}

# %%
import json
from pathlib import Path

from ductaflow import is_notebook_execution, load_cli_config

if not is_notebook_execution():
    config = load_cli_config("config/schema.json")
Path("seen.json").write_text(json.dumps(config))
"""
GOOD = {"drift": 0.3, "volatility": 2.0, "model": {"alpha": 0.1, "layers": 3}}

PAPERMILL_FLOW = """\
# %% tags=["parameters"]
alpha = 0.1
label = "none"

# %%
import json
from pathlib import Path

Path("seen.json").write_text(json.dumps({"alpha": alpha, "label": label}))
"""


def python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run Python in ``cwd`` as a user would from a terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


@pytest.fixture
def schema(project: Path) -> Path:
    """A project whose flow declares its keys in the parameters cell, with a config file that fits."""
    (project / "flow").mkdir()
    (project / "flow" / "schema.py").write_text(SCHEMA_FLOW)
    (project / "config").mkdir()
    (project / "config" / "schema.json").write_text(json.dumps(GOOD))
    return project


def typo(project: Path) -> None:
    """Misspell volatility in the config file, as a user would."""
    config = dict(GOOD)
    config["volatilty"] = config.pop("volatility")
    (project / "config" / "schema.json").write_text(json.dumps(config))


def test_a_config_that_fits_runs_in_every_mode(schema: Path) -> None:
    """The declared keys, all given: ductaflow and the script both run with them."""
    result = ductaflow.run_step_flow("flow/schema.py", "schema", "ok", GOOD, export_html=False)
    assert json.loads((result.run_dir / "seen.json").read_text()) == GOOD
    out = python(["flow/schema.py", "--output-dir", "runs/schema/script"], schema)
    assert out.returncode == 0, out.stderr
    assert json.loads((schema / "runs/schema/script/seen.json").read_text()) == GOOD


def test_a_misspelt_key_is_refused_before_the_run_in_every_mode(schema: Path) -> None:
    """`volatilty` in the config file: run, sweep and script refuse it naming the declared key."""
    typo(schema)
    done = cli("run", "flow/schema.py", "--config", "config/schema.json")
    assert done.returncode == 2
    assert "'volatilty' is not declared by the parameters cell of flow/schema.py" in done.stderr
    assert "Did you mean 'volatility'?" in done.stderr
    swept = cli("sweep", "flow/schema.py", "--config", "config/schema.json", "--grid", "drift=0.1,0.2")
    assert swept.returncode == 2 and "Did you mean 'volatility'?" in swept.stderr
    for args in (["flow/schema.py"], ["flow/schema.py", "--output-dir", "runs/schema/script"]):
        out = python(args, schema)
        assert out.returncode == 2 and "Did you mean 'volatility'?" in out.stderr, out.stderr
    assert not (schema / "runs").exists() and not (schema / "seen.json").exists()


def test_a_missing_or_nested_key_is_refused(schema: Path) -> None:
    """A declared key left out, and a typo inside a declared section, are refused by name."""
    missing = {k: v for k, v in GOOD.items() if k != "drift"}
    with pytest.raises(ductaflow.ConfigError, match=r"has no key drift \(default 0.1\)"):
        ductaflow.run_step_flow("flow/schema.py", "schema", "a", missing)
    nested = {**GOOD, "model": {"alpah": 0.1, "layers": 3}}
    with pytest.raises(ductaflow.ConfigError, match=r"'model.alpah' is not declared.*'model.alpha'"):
        ductaflow.run_step_flow("flow/schema.py", "schema", "b", nested)
    rows = [{"instance_name": "x", "drift": 0.2}, {"instance_name": "y", "drfit": 0.2}]
    with pytest.raises(ductaflow.ConfigError, match=r"instance 'y'.*|'drfit'"):
        ductaflow.run_instances("flow/schema.py", rows, base_config=missing | {"drift": 0.1})
    assert listing(schema / "runs") == []


def test_an_empty_config_cell_declares_nothing(project: Path, flows: Path) -> None:
    """`config = {}`: any config runs, as before."""
    (project / "flow").mkdir()
    declared = SCHEMA_FLOW.splitlines()[1]
    (project / "flow" / "free.py").write_text(SCHEMA_FLOW.replace(declared, "config = {}"))
    result = ductaflow.run_step_flow("flow/free.py", "free", "a", {"anything": 1}, export_html=False)
    assert json.loads((result.run_dir / "seen.json").read_text()) == {"anything": 1}


def test_papermill_style_overrides_reach_the_variables(project: Path) -> None:
    """`alpha = 0.1` in the cell and -o alpha=0.9: the flow runs with 0.9; a typo is refused."""
    (project / "pm.py").write_text(PAPERMILL_FLOW)
    done = cli("run", "pm.py", "-o", "alpha=0.9", "--no-html")
    assert done.returncode == 0, done.stderr
    assert json.loads((project / "runs/pm/default/seen.json").read_text()) == {"alpha": 0.9, "label": "none"}
    refused = cli("run", "pm.py", "-o", "alpah=0.9", "--instance", "typo", "--no-html")
    assert refused.returncode == 2
    assert "'alpah' is not a parameter of pm.py (instance 'typo'). Did you mean 'alpha'?" in refused.stderr
    assert "config = {}" in refused.stderr  # the message explains ductaflow's own convention
    assert not (project / "runs/pm/typo").exists()


LIGHT = """\
# + tags=["parameters"]
config = {}
# -

import json
from pathlib import Path

Path("seen.json").write_text(json.dumps(config))
"""


@pytest.mark.parametrize("fmt", ["py:light", "md:myst", "md:markdown", "Rmd:rmarkdown"])
def test_every_text_format_jupytext_reads_is_a_flow(project: Path, fmt: str) -> None:
    """A light script, a MyST or Markdown notebook, an R Markdown notebook: the parameters cell is found."""
    notebook = jupytext.reads(LIGHT, fmt="py:light")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    extension = fmt.split(":")[0]
    flow = project / f"light.{extension}"
    flow.write_text(jupytext.writes(notebook, fmt=fmt))
    result = ductaflow.run_step_flow(flow, "light", extension, {"n": 1}, export_html=False)
    assert json.loads((result.run_dir / "seen.json").read_text()) == {"n": 1}
    executed = nbformat.read(result.notebook, as_version=4)
    assert [c.metadata.get("tags") for c in executed.cells if c.metadata.get("tags")] == [
        ["parameters"], ["injected-parameters"]]  # fmt: skip


def test_a_light_script_runs_in_every_mode(project: Path) -> None:
    """The light format as a script (in place and recorded) and under ductaflow: one config."""
    flow = project / "light.py"
    flow.write_text(LIGHT.replace("import json\n", "import json\n\nfrom ductaflow import load_cli_config\n\n"
                                  "config = config or load_cli_config(None)\n"))  # fmt: skip
    out = python(["light.py", "-o", "n=1", "--output-dir", "runs/light/s"], project)
    assert (
        out.returncode == 2 and "does not exist in the config" in out.stderr
    )  # no config file: -o adds none
    (project / "c.json").write_text('{"n": 0}')
    out = python(["light.py", "--config", "c.json", "-o", "n=1", "--output-dir", "runs/light/s"], project)
    assert out.returncode == 0, out.stderr
    assert record(project / "runs/light/s")["status"] == "success"
    assert json.loads((project / "runs/light/s/seen.json").read_text()) == {"n": 1}
    result = ductaflow.run_step_flow(flow, "light", "engine", {"n": 1}, export_html=False)
    assert json.loads((result.run_dir / "seen.json").read_text()) == {"n": 1}


def test_a_misspelt_flow_path_gets_did_you_mean(project: Path) -> None:
    """flow/simulte.py: the error names flow/simulate.py; a wrong folder is said to be missing."""
    (project / "flow").mkdir()
    (project / "flow" / "simulate.py").write_text(LIGHT)
    done = cli("run", "flow/simulte.py")
    assert done.returncode == 2 and "Did you mean 'flow/simulate.py'?" in done.stderr
    done = cli("run", "flows/simulate.py")
    assert done.returncode == 2 and "Its folder 'flows' does not exist either" in done.stderr
