"""In-flow helpers outside a kernel: is_notebook_execution and display_config_summary."""

import subprocess
import sys

from ductaflow import display_config_summary, is_notebook_execution, load_cli_config


def test_plain_python_is_not_notebook_execution():
    """A plain interpreter, even with the engine's environment marker set, is not a notebook run."""
    code = "import ductaflow; print(ductaflow.is_notebook_execution())"
    env_marked = {"DUCTAFLOW_INJECTED": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env_marked, check=True
    )
    assert out.stdout.strip() == "False"
    assert is_notebook_execution() is False


def test_config_summary_as_aligned_text(capsys):
    """In a terminal the summary is aligned text with nested dicts as their own sections."""
    display_config_summary({"n": 3, "label": "a", "model": {"alpha": 0.5, "opt": {"lr": 0.1}}}, "Run")
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == ["Run", "===", "  n     : 3", "  label : a"]
    assert "model" in lines and "model.opt" in lines
    assert lines[lines.index("model") + 1].strip() == "alpha : 0.5"


def test_config_summary_shortens_long_values(capsys):
    """Very long values are cut so the summary stays readable."""
    display_config_summary({"xs": list(range(1000))})
    out = capsys.readouterr().out
    assert "..." in out and max(len(line) for line in out.splitlines()) < 200


def test_load_cli_config_with_explicit_argv(tmp_path, monkeypatch):
    """load_cli_config reads the default config and applies -o overrides from argv."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.json").write_text('{"n": 1, "model": {"alpha": 0.1}}')
    assert load_cli_config("c.json", argv=["-o", "model.alpha=0.3"]) == {"n": 1, "model": {"alpha": 0.3}}
    assert load_cli_config(None, argv=[]) == {}
