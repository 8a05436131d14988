"""Flows run as scripts: python flow/x.py [--config] [--output-dir] [-o k=v] (real subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import listing, record

DEFAULT_CONFIG = {"action": "none", "label": "default", "model": {"alpha": 0.1, "layers": 2}}


@pytest.fixture
def script_project(project, flows) -> Path:
    """A project with flow/header.py (the README header) and config/header.json."""
    (project / "flow").mkdir()
    shutil.copy(flows / "header.py", project / "flow" / "header.py")
    (project / "config").mkdir()
    (project / "config" / "header.json").write_text(json.dumps(DEFAULT_CONFIG))
    return project


def run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run the header flow as a script with ``args``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env, **kwargs
    )


def test_runs_in_place_with_the_default_config(script_project):
    """With no arguments the default config is used and the flow runs in the current directory."""
    out = run(["flow/header.py"], script_project)
    assert out.returncode == 0, out.stderr
    produced = json.loads((script_project / "out.json").read_text())
    assert produced == {"config": DEFAULT_CONFIG, "cwd": str(script_project)}
    assert not (script_project / "run.json").exists()
    assert "label" in out.stdout and "alpha" in out.stdout  # the config summary


def test_output_dir_records_the_run(script_project):
    """--output-dir: the flow works inside it and leaves config.json, log.txt and a success record."""
    out = run(["flow/header.py", "--output-dir", "runs/header/a"], script_project)
    assert out.returncode == 0, out.stderr
    run_dir = script_project / "runs" / "header" / "a"
    files = ["config.json", "environment.json", "log.txt", "out.json", "run.json"]
    assert sorted(os.listdir(run_dir)) == files
    assert json.loads((run_dir / "out.json").read_text()) == {"config": DEFAULT_CONFIG, "cwd": str(run_dir)}
    assert json.loads((run_dir / "config.json").read_text()) == DEFAULT_CONFIG
    rec = record(run_dir)
    assert rec["status"] == "success" and rec["mode"] == "script" and rec["exit_code"] == 0
    assert rec["flow"] == "flow/header.py" and rec["duration_s"] > 0
    assert "running with" in (run_dir / "log.txt").read_text()
    assert "running with" in out.stdout  # also shown in the terminal


def test_paths_are_relative_to_the_launch_directory(script_project):
    """--config and --output-dir are resolved from where the script is launched."""
    elsewhere = script_project / "somewhere"
    elsewhere.mkdir()
    (script_project / "config" / "other.json").write_text(json.dumps({**DEFAULT_CONFIG, "label": "other"}))
    out = run(["../flow/header.py", "--config", "../config/other.json", "--output-dir", "out/x"], elsewhere)
    assert out.returncode == 0, out.stderr
    produced = json.loads((elsewhere / "out" / "x" / "out.json").read_text())
    assert produced["config"]["label"] == "other"


def test_overrides_reach_nested_keys_and_parse_json(script_project):
    """-o key=value overrides, dotted into nested dicts, values as JSON when they parse."""
    args = ["-o", "model.alpha=0.5", "-o", "model.layers=[1,2]", "-o", "label=two words"]
    out = run(["flow/header.py", "--output-dir", "runs/h/o", *args], script_project)
    assert out.returncode == 0, out.stderr
    expected = {"action": "none", "label": "two words", "model": {"alpha": 0.5, "layers": [1, 2]}}
    assert json.loads((script_project / "runs/h/o/config.json").read_text()) == expected
    assert json.loads((script_project / "runs/h/o/out.json").read_text())["config"] == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-o", "model.alpah=1"], ["model.alpah", "model.alpha"]),
        (["--config", "config/missing.json"], ["config/missing.json", "does not exist"]),
        (["--config", "config/bad.json"], ["bad.json", "not valid JSON", "line 1"]),
        (["-o", "novalue"], ["key=value"]),
        (["--output-dir", "runs/x/.."], ["'..'", "not allowed"]),
    ],
    ids=["unknown-key", "missing-config", "bad-json", "malformed-override", "unsafe-output-dir"],
)
def test_bad_input_exits_2_with_a_clear_message(script_project, args, expected):
    """User errors exit with status 2, a message naming the file or key, no traceback, nothing written."""
    (script_project / "config" / "bad.json").write_text("{oops")
    before = listing(script_project)
    out = run(["flow/header.py", "--output-dir", "runs/h/bad", *args], script_project)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    for fragment in expected:
        assert fragment in out.stderr
    assert listing(script_project) == before


def test_help_explains_the_options(script_project):
    """--help describes --config, --output-dir, -o, dotted keys and what is written."""
    out = run(["flow/header.py", "--help"], script_project)
    assert out.returncode == 0
    for fragment in [
        "--config",
        "config/header.json",
        "--output-dir",
        "-o KEY=VALUE",
        "Dotted keys",
        "run.json",
    ]:
        assert fragment in out.stdout


def test_failing_script_is_recorded_with_its_error(script_project):
    """An exception in the flow: exit status 1 and a failed record with the error and its line."""
    out = run(["flow/header.py", "--output-dir", "runs/h/f", "-o", "action=raise"], script_project)
    assert out.returncode == 1
    assert "ValueError: bad value in flow" in out.stderr
    rec = record(script_project / "runs/h/f")
    assert rec["status"] == "failed"
    assert rec["error"]["name"] == "ValueError" and rec["error"]["message"] == "bad value in flow"
    lines = (script_project / "flow/header.py").read_text().splitlines()
    assert "raise ValueError" in lines[rec["error"]["line"] - 1]
    assert "ValueError" in (script_project / "runs/h/f/log.txt").read_text()


def test_sys_exit_zero_is_success_and_hard_exit_is_failure(script_project):
    """sys.exit(0) records success; os._exit(3) records failure with exit code 3."""
    ok = run(["flow/header.py", "--output-dir", "runs/h/e0", "-o", "action=exit0"], script_project)
    assert ok.returncode == 0
    assert record(script_project / "runs/h/e0")["status"] == "success"
    hard = run(["flow/header.py", "--output-dir", "runs/h/e3", "-o", "action=hard_exit"], script_project)
    assert hard.returncode == 3
    rec = record(script_project / "runs/h/e3")
    assert rec["status"] == "failed" and rec["exit_code"] == 3


def test_ctrl_c_records_interrupted(script_project):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) records 'interrupted', exit 130."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}
    proc = subprocess.Popen(
        [sys.executable, "flow/header.py", "--output-dir", "runs/h/int", "-o", "action=sleep"],
        cwd=script_project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    log = script_project / "runs/h/int/log.txt"
    deadline = time.monotonic() + 60
    while not (log.exists() and "running with" in log.read_text()):
        assert time.monotonic() < deadline, "the flow did not start"
        time.sleep(0.1)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=30)
    assert time.monotonic() - started < 5
    assert proc.returncode == 130
    rec = record(script_project / "runs/h/int")
    assert rec["status"] == "interrupted" and rec["error"]["name"] == "KeyboardInterrupt"


def test_rerun_of_an_output_dir_never_mixes_attempts(script_project):
    """A second run into the same output dir starts from a fresh directory."""
    assert run(["flow/header.py", "--output-dir", "runs/h/r"], script_project).returncode == 0
    (script_project / "runs/h/r/stale.txt").write_text("from the first attempt")
    assert (
        run(["flow/header.py", "--output-dir", "runs/h/r", "-o", "label=again"], script_project).returncode
        == 0
    )
    assert not (script_project / "runs/h/r/stale.txt").exists()
    assert json.loads((script_project / "runs/h/r/out.json").read_text())["config"]["label"] == "again"


def test_same_results_in_all_three_modes(script_project):
    """Script in place, script with --output-dir, ductaflow and an interactive kernel all see one config."""
    import jupytext
    import nbclient

    import ductaflow

    assert run(["flow/header.py"], script_project).returncode == 0
    assert run(["flow/header.py", "--output-dir", "runs/header/script"], script_project).returncode == 0
    engine = ductaflow.run_step_flow("flow/header.py", "header", "engine", DEFAULT_CONFIG, export_html=False)
    flow_dir = script_project / "flow"  # VS Code and Jupyter start the kernel beside the file
    notebook = jupytext.read(flow_dir / "header.py")
    nbclient.NotebookClient(
        notebook, kernel_name="python3", resources={"metadata": {"path": str(flow_dir)}}
    ).execute()

    configs = [
        json.loads(p.read_text())["config"]
        for p in [
            script_project / "out.json",
            script_project / "runs/header/script/out.json",
            engine.run_dir / "out.json",
            flow_dir / "out.json",
        ]
    ]
    assert configs == [DEFAULT_CONFIG] * 4
    html_outputs = [
        o for c in notebook.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})
    ]
    assert "<table>" in html_outputs[0]["data"]["text/html"]  # the config summary, as a table


def test_closed_terminal_pipe_does_not_hang_the_run(script_project):
    """Piping a chatty script into `head` ends the echo, not the run: the log keeps everything."""
    flow = script_project / "flow" / "chatty.py"
    flow.write_text(
        (script_project / "flow" / "header.py")
        .read_text()
        .replace(
            'print("running with"',
            'print("x" * 80 + "\\n" * 2, end=""); [print(i) for i in range(200000)]\nprint("running with"',
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}
    shell = f"{sys.executable} flow/chatty.py --output-dir runs/c/a | head -1"
    out = subprocess.run(
        ["bash", "-c", shell], cwd=script_project, capture_output=True, text=True, timeout=60, env=env
    )
    assert out.stdout.strip() != ""
    rec = record(script_project / "runs/c/a")
    assert rec["status"] == "success"
    assert "199999" in (script_project / "runs/c/a/log.txt").read_text()


def test_a_process_left_running_does_not_hold_the_run(script_project):
    """A background process the flow starts and leaves running does not keep the run open."""
    flow = script_project / "flow" / "spawner.py"
    flow.write_text(
        (script_project / "flow" / "header.py")
        .read_text()
        .replace('print("running with"', 'subprocess.Popen(["sleep", "20"])\nprint("running with"')
        .replace("import json\n", "import json\nimport subprocess\n", 1)
    )
    started = time.monotonic()
    out = run(["flow/spawner.py", "--output-dir", "runs/s/a"], script_project)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 10
    assert record(script_project / "runs/s/a")["status"] == "success"
