"""Typed configs: the parameters cell's defaults are the flow's schema, keys and types, with two ways out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, listing
from test_cli import cli, process

import ductaflow
from ductaflow.flow import read_flow
from ductaflow.parameters import check_config

TYPED_FLOW = """\
# %% tags=["parameters"]
config = {"lr": 0.1, "epochs": 10, "label": "base", "model": {"layers": [64, 32], "dropout": False}}

# %%
import json
from pathlib import Path

from ductaflow import is_notebook_execution, load_cli_config

if not is_notebook_execution():
    config = load_cli_config("config/typed.json")
Path("seen.json").write_text(json.dumps(config))
"""
GOOD = {"lr": 0.3, "epochs": 5, "label": "steep", "model": {"layers": [8], "dropout": True}}
DIRECTIVE = "# ductaflow: no-check-config"

PAPERMILL_FLOW = """\
# %% tags=["parameters"]
alpha = 0.1
steps = 3
label = None

# %%
import json
from pathlib import Path

Path("seen.json").write_text(json.dumps({"alpha": alpha, "steps": steps, "label": label}))
"""


@pytest.fixture
def typed(project: Path) -> Path:
    """A project whose flow declares typed keys in its parameters cell, with a config file that fits."""
    (project / "flow").mkdir()
    (project / "flow" / "typed.py").write_text(TYPED_FLOW)
    (project / "config").mkdir()
    (project / "config" / "typed.json").write_text(json.dumps(GOOD))
    return project


def seen(run_dir: Path) -> dict:
    """The config the flow saw, as it wrote it."""
    return json.loads((run_dir / "seen.json").read_text())


def instances(step_dir: Path) -> list[str]:
    """The instance folders of a step folder."""
    return sorted(p.name for p in step_dir.iterdir() if not p.name.startswith("."))


def test_a_misspelt_key_is_refused_with_the_suggestion_and_nothing_written(typed: Path) -> None:
    """`epochz` in one row of three: run_instances names the row, the key and `epochs`; no folder is made."""
    rows = [{"instance_name": "a"}, {"instance_name": "b", "epochz": 3}, {"instance_name": "c"}]
    with pytest.raises(ductaflow.ConfigError) as info:
        ductaflow.run_instances("flow/typed.py", rows, base_config=GOOD, new_keys=True, progress=False)
    message = str(info.value)
    assert "config key 'epochz' is not declared by the parameters cell of flow/typed.py" in message
    assert "(instance 'b')" in message and "Did you mean 'epochs'?" in message
    assert info.value.key == "epochz"
    assert listing(typed / "runs") == []


def test_a_wrong_type_is_refused_on_the_command_line_with_exit_2(typed: Path) -> None:
    """-o epochs='"ten"' in a real `ductaflow run`: exit 2, a message naming key, value, default; no trace."""
    done = process("run", "flow/typed.py", "--config", "config/typed.json", "-o", 'epochs="ten"', cwd=typed)
    assert done.returncode == 2, done.stderr
    assert "config key 'epochs' is 'ten' (str), but the parameters cell of flow/typed.py" in done.stderr
    assert "declares it int (default 10)" in done.stderr and "Give a whole number" in done.stderr
    assert "Traceback" not in done.stderr
    assert listing(typed / "runs") == []


@pytest.mark.parametrize(
    ("override", "key", "shown"),
    [
        ("lr=true", "lr", "True (bool)"),
        ("epochs=2.5", "epochs", "2.5 (float)"),
        ("label=7", "label", "7 (int)"),
        ("model.dropout=1", "model.dropout", "1 (int)"),
        ('model.layers=[64,"x"]', "model.layers", "[64, 'x'] (list; item 1 is 'x', str)"),
        ("model={}", "model", None),  # a section without its keys: the missing keys are named
    ],
    ids=[
        "bool-for-float",
        "float-for-int",
        "int-for-str",
        "int-for-bool",
        "str-in-int-list",
        "empty-section",
    ],
)
def test_a_wrong_type_is_refused_by_run_step_flow(typed: Path, override: str, key: str, shown: str) -> None:
    """Each value of another type than the default is refused naming the dotted key and the value."""
    config = ductaflow.load_config("config/typed.json", [override])
    with pytest.raises(ductaflow.ConfigError) as info:
        ductaflow.run_step_flow("flow/typed.py", "typed", "bad", config, export_html=False)
    if shown is None:
        assert "has no 2 keys model.layers (default [64, 32]), model.dropout" in str(info.value)
    else:
        assert f"config key {key!r} is {shown}, but the parameters cell of flow/typed.py" in str(info.value)
        assert info.value.key == key
    assert listing(typed / "runs") == []


def test_a_wrong_type_in_one_row_stops_run_instances_before_any_row_runs(typed: Path) -> None:
    """A table whose second row gives lr as text: refused naming that row; the first row does not run."""
    rows = [{"instance_name": "a", "lr": 0.2}, {"instance_name": "b", "lr": "0.2"}]
    with pytest.raises(ductaflow.ConfigError, match=r"'lr' is '0.2' \(str\).*instance 'b'.*not text"):
        ductaflow.run_instances("flow/typed.py", rows, base_config=GOOD, progress=False)
    assert listing(typed / "runs") == []


def test_an_int_where_a_float_is_declared_runs_as_given(typed: Path) -> None:
    """lr=1 for the default 0.1: accepted, and the flow sees the int 1 (nothing is converted)."""
    result = ductaflow.run_step_flow("flow/typed.py", "typed", "int", {**GOOD, "lr": 1}, export_html=False)
    assert result.status == ductaflow.RunStatus.SUCCESS
    assert seen(result.run_dir)["lr"] == 1 and isinstance(seen(result.run_dir)["lr"], int)


def test_the_flow_directive_lets_unknown_keys_and_other_types_run(typed: Path) -> None:
    """The no-check-config line in the cell: an extra key and a text epochs run; a missing key does not."""
    flow = typed / "flow" / "typed.py"
    flow.write_text(TYPED_FLOW.replace('tags=["parameters"]\n', f'tags=["parameters"]\n{DIRECTIVE}\n'))
    loose = {**GOOD, "epochs": "ten", "extra": 1}
    result = ductaflow.run_step_flow(flow, "typed", "loose", loose, export_html=False)
    assert seen(result.run_dir) == loose
    missing = {k: v for k, v in GOOD.items() if k != "lr"}
    with pytest.raises(ductaflow.ConfigError, match=r"has no key lr \(default 0.1\)"):
        ductaflow.run_step_flow(flow, "typed", "missing", missing, export_html=False)
    assert instances(typed / "runs/typed") == ["loose"]


def test_check_config_false_lets_the_same_config_run_in_every_call(typed: Path) -> None:
    """The config the directive lets through also runs with check_config=False and --no-check-config."""
    loose = {**GOOD, "epochs": "ten", "extra": 1}
    with pytest.raises(ductaflow.ConfigError):
        ductaflow.run_step_flow("flow/typed.py", "typed", "a", loose, export_html=False)
    result = ductaflow.run_step_flow(
        "flow/typed.py", "typed", "a", loose, export_html=False, check_config=False
    )
    assert seen(result.run_dir) == loose
    notebook = ductaflow.run_notebook("flow/typed.py", loose, output_dir="runs/nb/b", export_html=False,
                                      check_config=False)  # fmt: skip
    assert seen(notebook.run_dir) == loose
    frame = ductaflow.run_instances("flow/typed.py", [{"instance_name": "c", **loose}], progress=False,
                                    export_html=False, check_config=False)  # fmt: skip
    assert list(frame.status) == [ductaflow.RunStatus.SUCCESS]
    assert seen(typed / "runs/typed/c") == loose
    (typed / "config" / "loose.json").write_text(json.dumps(loose))
    refused = cli(
        "sweep", "flow/typed.py", "--config", "config/loose.json", "--grid", "lr=0.1,0.2", "--no-html"
    )
    assert refused.returncode == 2 and "'extra' is not declared" in refused.stderr
    done = cli("sweep", "flow/typed.py", "--config", "config/loose.json", "--grid", "lr=0.1,0.2", "--no-html",
               "--no-check-config")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert seen(typed / "runs/typed/lr=0.2") == {**loose, "lr": 0.2}
    done = cli("run", "flow/typed.py", "--config", "config/loose.json", "--no-html", "--no-check-config")
    assert done.returncode == 0, done.stderr
    assert seen(typed / "runs/typed/loose") == loose


def test_papermill_variables_are_typed_by_their_literal_values(project: Path) -> None:
    """alpha = 0.1, steps = 3, label = None: steps 2.5 is refused, alpha 1 runs, label takes anything."""
    (project / "pm.py").write_text(PAPERMILL_FLOW)
    with pytest.raises(
        ductaflow.ConfigError, match=r"'steps' is 2.5 \(float\).*declares it int \(default 3\)"
    ):
        ductaflow.run_step_flow("pm.py", "pm", "bad", {"steps": 2.5}, export_html=False)
    result = ductaflow.run_step_flow("pm.py", "pm", "ok", {"alpha": 1, "label": [1, "a"]}, export_html=False)
    assert seen(result.run_dir) == {"alpha": 1, "steps": 3, "label": [1, "a"]}
    assert instances(project / "runs/pm") == ["ok"]


def test_ductaflow_seed_is_accepted_by_every_flow_and_must_be_an_int(typed: Path) -> None:
    """ductaflow_seed is reserved: 7 runs in a flow not declaring it; "7" is refused, even unchecked."""
    result = ductaflow.run_step_flow(
        "flow/typed.py", "typed", "s", {**GOOD, "ductaflow_seed": 7}, export_html=False
    )
    assert seen(result.run_dir)["ductaflow_seed"] == 7
    for strict in (True, False):
        with pytest.raises(ductaflow.ConfigError, match=r"'ductaflow_seed' is '7' \(str\).*instance's seed"):
            ductaflow.run_step_flow("flow/typed.py", "typed", "t", {**GOOD, "ductaflow_seed": "7"},
                                    export_html=False, check_config=strict)  # fmt: skip
    assert not (typed / "runs/typed/t").exists()


def test_a_script_refuses_a_wrong_type_as_a_run_would(typed: Path) -> None:
    """`python flow/typed.py` with label 7 in its config file: exit 2 naming the key, as a run does."""
    (typed / "config" / "typed.json").write_text(json.dumps({**GOOD, "label": 7}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}
    out = subprocess.run([sys.executable, "flow/typed.py"], cwd=typed, capture_output=True, text=True,
                         timeout=120, env=env)  # fmt: skip
    assert out.returncode == 2
    assert (
        "config key 'label' is 7 (int), but the parameters cell of flow/typed.py declares it str"
        in out.stderr
    )
    assert not (typed / "seen.json").exists()


def test_help_config_lists_the_keys_types_and_defaults_and_runs_nothing(typed: Path) -> None:
    """`ductaflow run flow/typed.py --help-config`: one line per dotted key with type and default; exit 0."""
    done = cli("run", "flow/typed.py", "--help-config")
    assert done.returncode == 0, done.stderr
    table = [line.split(maxsplit=2) for line in done.stdout.splitlines() if line.startswith("  ")]
    assert table == [
        ["key", "type", "default"],
        ["lr", "float", "0.1"],
        ["epochs", "int", "10"],
        ["label", "str", "'base'"],
        ["model.layers", "list[int]", "[64, 32]"],
        ["model.dropout", "bool", "False"],
    ]
    assert "--no-check-config lets them through" in done.stdout
    assert not (typed / "runs").exists()
    keys = ductaflow.config_keys("flow/typed.py")
    assert [(k["key"], k["type"], k["default"], k["source"]) for k in keys if k["required"]] == [
        (row[0], row[1], value, "config")
        for row, value in zip(table[1:], [0.1, 10, "base", [64, 32], False], strict=True)
    ]
    assert {k["key"]: k["type"] for k in keys if k["source"] == "ductaflow"} == {
        "instance_name": "str", "ductaflow_seed": "int"}  # fmt: skip


def test_help_config_of_open_directive_and_papermill_flows(typed: Path) -> None:
    """config = {} accepts anything; the directive is reported; papermill variables are listed with types."""
    (typed / "flow" / "free.py").write_text(TYPED_FLOW.replace(TYPED_FLOW.splitlines()[1], "config = {}"))
    done = cli("run", "flow/free.py", "--help-config")
    assert (
        done.returncode == 0
        and "flow/free.py accepts any config: its parameters cell assigns `config = {}`" in (done.stdout)
    )
    (typed / "flow" / "loose.py").write_text(TYPED_FLOW.replace("config = {", f"{DIRECTIVE}\nconfig = {{"))
    done = cli("run", "flow/loose.py", "--help-config")
    assert f"not checked: the parameters cell holds `{DIRECTIVE}`" in done.stdout
    assert all(not k["checked"] for k in ductaflow.config_keys("flow/loose.py") if k["source"] == "config")
    (typed / "pm.py").write_text(PAPERMILL_FLOW)
    done = cli("run", "pm.py", "--help-config")
    table = [line.split(maxsplit=2) for line in done.stdout.splitlines() if line.startswith("  ")]
    assert "papermill-style" in done.stdout
    assert table[1:] == [["alpha", "float", "0.1"], ["steps", "int", "3"], ["label", "any", "None"]]
    assert cli("run", "flow/missing.py", "--help-config").returncode == 2


@pytest.mark.parametrize("config_file", sorted((REPO / "config").glob("*.json")), ids=lambda p: p.name)
def test_the_example_configs_fit_their_flows(config_file: Path) -> None:
    """Each config/<name>.json satisfies the keys and types of flow/<name>.py."""
    flow = read_flow(REPO / "flow" / f"{config_file.stem}.py")
    check_config(flow.parameters, ductaflow.load_config(config_file), str(flow.path))
