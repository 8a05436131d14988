"""Choosing the engine and the modules it preloads: arguments, command-line flags and ductaflow.toml.

The engine under test here is a recording one, registered by name for these
tests: it notes the name it was chosen by, the instance and the ``preload``
it was given, then runs the notebook in a real kernel through the kernel
engine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import listing, record, run, tally

import ductaflow
import ductaflow.cli
from ductaflow import ConfigError
from ductaflow.engines import ENGINES, Execution, Outcome, get_engine, register_engine

Journal = list[tuple[str, str, tuple[str, ...]]]  # (engine name, instance, preload), one per execution


class RecordingEngine:
    """The kernel engine, noting what each execution asked of it."""

    def __init__(self, name: str, journal: Journal) -> None:
        self.name = name
        self.journal = journal
        self.kernel = get_engine("kernel")

    def check(self, kernel_name: str | None) -> None:
        self.kernel.check(kernel_name)

    def label(self, kernel_name: str | None) -> str:
        return self.kernel.label(kernel_name)

    def execute(self, execution: Execution) -> Outcome:
        self.journal.append((self.name, execution.cwd.name, execution.preload))
        return self.kernel.execute(execution)


@pytest.fixture
def journal() -> Iterator[Journal]:
    """Two recording engines, ``recording`` and ``recording-other``, writing into one journal."""
    seen: Journal = []
    names = ("recording", "recording-other")
    for name in names:
        register_engine(name, lambda name=name: RecordingEngine(name, seen))
    yield seen
    for name in names:
        ENGINES.pop(name, None)


@pytest.fixture
def ok_flow(project: Path, flows: Path) -> Path:
    """The ok flow, copied into the project's flow/ folder."""
    (project / "flow").mkdir()
    return Path(shutil.copy(flows / "ok.py", project / "flow" / "ok.py"))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``ductaflow ARGS`` in this process and the current directory, output captured."""
    done = CliRunner().invoke(ductaflow.cli.cli, args, catch_exceptions=False)
    return subprocess.CompletedProcess(["ductaflow", *args], done.exit_code, done.stdout, done.stderr)


def settings(project: Path, text: str) -> None:
    """Write the project's ductaflow.toml."""
    (project / "ductaflow.toml").write_text(text)


def test_kernel_engine_chosen_by_name_runs_and_is_recorded(project: Path, flows: Path) -> None:
    """engine="kernel" runs the flow in a kernel; run.json names the engine and an empty preload."""
    result = ductaflow.run_step_flow(flows / "ok.py", "ok", "k", {"n": 1}, engine="kernel", export_html=False)
    rec = record(result.run_dir)
    assert rec["status"] == "success" and rec["engine"] == "kernel"
    assert rec["options"]["preload"] == [] and rec["kernel"] == "ductaflow-python"


def test_an_unknown_engine_is_refused_before_anything_is_written(project: Path, ok_flow: Path) -> None:
    """engine="nope" is a ConfigError listing the engines, from each entry point; the command exits 2."""
    listed = re.escape("engine 'nope' is not known. Choose one of:") + r".*\bkernel\b"
    with pytest.raises(ConfigError, match=listed):
        ductaflow.run_step_flow(ok_flow, "ok", "a", {"n": 1}, engine="nope")
    with pytest.raises(ConfigError, match=listed):
        ductaflow.run_instances(ok_flow, [{"n": 1}], engine="nope", progress=False)
    with pytest.raises(ConfigError, match=listed):
        ductaflow.sweep(ok_flow, grid={"n": [1, 2]}, engine="nope", progress=False)
    for command in (["run", "flow/ok.py"], ["sweep", "flow/ok.py", "--grid", "n=1,2"]):
        done = cli(*command, "--engine", "nope")
        assert done.returncode == 2 and "error: engine 'nope' is not known" in done.stderr, done.stderr
    assert listing(project) == ["flow", "flow/ok.py"]


BAD_PRELOAD = {
    "empty name": ([""], "preload entry '' is not a module name"),
    "trailing space": (["pandas "], "preload entry 'pandas ' is not a module name"),
    "empty part": (["matplotlib..pyplot"], "preload entry 'matplotlib..pyplot' is not a module name"),
    "dash": (["my-module"], "preload entry 'my-module' is not a module name"),
    "not a string": (["pandas", 3], "preload entry 3 is not a module name"),
    "a keyword": (["import"], "preload entry 'import' is not a module name"),
    "a bare string": ("pandas", "preload must be a list of module names, not the string 'pandas'"),
}


@pytest.mark.parametrize(("preload", "message"), BAD_PRELOAD.values(), ids=BAD_PRELOAD.keys())
def test_a_bad_preload_entry_is_refused_naming_it(project: Path, flows: Path, preload, message) -> None:
    """A preload entry that is not a dotted module name is a ConfigError naming it; nothing is written."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        ductaflow.run_step_flow(flows / "ok.py", "ok", "a", {"n": 1}, preload=preload)
    assert listing(project) == []


def test_a_bad_preload_flag_exits_2_naming_it(project: Path, ok_flow: Path) -> None:
    """--preload with a name that is not a module's: exit 2, the entry named, nothing run."""
    done = cli("run", "flow/ok.py", "--preload", "pandas", "--preload", "numpy.")
    assert done.returncode == 2 and "preload entry 'numpy.' is not a module name" in done.stderr
    assert not (project / "runs").exists()


def test_ductaflow_toml_chooses_the_engine_and_its_preload(
    project: Path, tally_flow: Path, journal: Journal
) -> None:
    """engine and preload in ductaflow.toml reach the engine for every instance, and run.json records them."""
    settings(project, 'engine = "recording"\npreload = ["json", "email.mime.text"]\n')
    frame = run(tally_flow, [{"instance_name": "a"}, {"instance_name": "b"}], project, jobs=2)
    assert list(frame.status) == ["success", "success"]
    assert sorted(tally(project)) == ["a", "b"]
    preload = ("json", "email.mime.text")
    assert sorted(journal) == [("recording", "a", preload), ("recording", "b", preload)]
    for name in ("a", "b"):
        rec = record(project / "runs" / "tally" / name)
        assert rec["engine"] == "recording" and rec["options"]["preload"] == list(preload)


def test_ductaflow_toml_is_read_once_per_call(project: Path, tally_flow: Path, journal: Journal) -> None:
    """An edit to ductaflow.toml while a call runs reaches the next call, not the call's later instances."""
    settings(project, 'engine = "recording"\npreload = ["json"]\n')
    hold = project / "hold"
    hold.touch()
    rows = [{"instance_name": "a", "hold": str(hold)}, {"instance_name": "b"}]
    outcome: dict[str, object] = {}
    call = threading.Thread(target=lambda: outcome.update(frame=run(tally_flow, rows, project, jobs=1)))
    call.start()
    try:
        deadline = time.monotonic() + 120
        while "a" not in tally(project):  # instance a runs, held until the file goes
            assert call.is_alive() and time.monotonic() < deadline, "instance a did not start"
            time.sleep(0.01)
        settings(project, 'engine = "recording"\npreload = ["csv"]\n')
    finally:
        hold.unlink()
        call.join(timeout=120)
    assert list(outcome["frame"].status) == ["success", "success"]  # type: ignore[attr-defined]
    assert journal == [("recording", "a", ("json",)), ("recording", "b", ("json",))]
    run(tally_flow, [{"instance_name": "c"}], project)
    assert journal[-1] == ("recording", "c", ("csv",))


def test_command_line_flags_reach_the_engine(project: Path, ok_flow: Path, journal: Journal) -> None:
    """--engine and --preload on run and sweep reach the engine; --dry-run executes nothing."""
    done = cli("run", "flow/ok.py", "--engine", "recording", "--preload", "json", "--preload",
               "email.mime.text", "--no-html")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert journal == [("recording", "default", ("json", "email.mime.text"))]
    assert record(project / "runs/ok/default")["options"]["preload"] == ["json", "email.mime.text"]
    done = cli("sweep", "flow/ok.py", "--grid", "n=1,2", "--engine", "recording-other", "--preload", "csv",
               "--no-html")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(journal[1:]) == [("recording-other", "n=1", ("csv",)), ("recording-other", "n=2", ("csv",))]
    planned = cli("sweep", "flow/ok.py", "--grid", "n=3", "--engine", "recording", "--dry-run")
    assert planned.returncode == 0 and "n=3" in planned.stdout and len(journal) == 3
    assert not (project / "runs/ok/n=3").exists()


def test_explicit_choices_beat_ductaflow_toml(project: Path, ok_flow: Path, journal: Journal) -> None:
    """An argument or flag wins over the file, key by key; the file still gives what was not chosen."""
    settings(project, 'engine = "recording"\npreload = ["json"]\n')
    options = {"export_html": False}
    ductaflow.run_step_flow(ok_flow, "ok", "a", {"n": 1}, engine="recording-other", **options)
    ductaflow.run_step_flow(ok_flow, "ok", "b", {"n": 1}, preload=["csv"], **options)
    ductaflow.run_step_flow(ok_flow, "ok", "c", {"n": 1}, preload=[], **options)
    kernel = ductaflow.run_step_flow(ok_flow, "ok", "d", {"n": 1}, engine="kernel", **options)
    done = cli("run", "flow/ok.py", "--instance", "e", "--engine", "recording-other", "--preload", "csv")
    assert done.returncode == 0, done.stderr
    assert journal == [
        ("recording-other", "a", ("json",)),
        ("recording", "b", ("csv",)),
        ("recording", "c", ()),
        ("recording-other", "e", ("csv",)),
    ]
    assert kernel.record["engine"] == "kernel" and kernel.record["options"]["preload"] == ["json"]


def test_switching_engines_or_preload_reruns_nothing(
    project: Path, tally_flow: Path, journal: Journal
) -> None:
    """An up-to-date instance stays up to date under another engine or preload: same results by contract."""
    rows = [{"instance_name": "a"}, {"instance_name": "b"}]
    assert list(run(tally_flow, rows, project, engine="kernel").status) == ["success", "success"]
    again = run(tally_flow, rows, project, engine="recording", preload=["json"])
    assert list(again.status) == ["skipped", "skipped"] and list(again.reason) == ["unchanged", "unchanged"]
    assert journal == [] and sorted(tally(project)) == ["a", "b"]


def test_a_malformed_ductaflow_toml_names_the_file_and_line(project: Path, ok_flow: Path) -> None:
    """Invalid TOML: a ConfigError naming the file, the line and the fix, from the API and the command."""
    settings(project, 'preload = ["json"]\nengine "kernel"\n')
    expected = (
        re.escape("ductaflow.toml is not valid TOML: ") + r".*line 2.*" + re.escape('engine = "kernel"')
    )
    with pytest.raises(ConfigError, match=expected):
        ductaflow.run_step_flow(ok_flow, "ok", "a", {"n": 1})
    done = cli("run", "flow/ok.py")
    assert done.returncode == 2 and re.search(expected, done.stderr), done.stderr
    assert not (project / "runs").exists()


TABLE = 'engine must be the name of an engine in quotes, such as engine = "kernel"; it is a table'
BAD_SETTINGS = {
    "unknown key": ('engin = "kernel"\n', "engin", "unknown setting 'engin' (did you mean 'engine'?)"),
    "a section": ('[engine]\nname = "kernel"\n', "engine", TABLE),
    "engine a number": ("engine = 5\n", "engine", "engine must be the name of an engine in quotes"),
    "engine unknown": ('engine = "nope"\n', "engine", "engine 'nope' is not known. Choose one of: "),
    "preload a string": ('preload = "pandas"\n', "preload", "not the string 'pandas'. Write preload = ["),
    "preload entry": ('preload = ["pandas", "a b"]\n', "preload", "preload entry 'a b' is not a module name"),
}


@pytest.mark.parametrize(("text", "key", "message"), BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_a_wrong_setting_names_the_file_and_key(project: Path, flows: Path, text: str, key: str,
                                                message: str) -> None:  # fmt: skip
    """An unknown key, a wrong type or an unknown engine in ductaflow.toml: an error naming file and key."""
    settings(project, text)
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        ductaflow.run_step_flow(flows / "ok.py", "ok", "a", {"n": 1})
    assert raised.value.path == str(project / "ductaflow.toml") and raised.value.key == key
    assert "ductaflow.toml" in str(raised.value)
    assert listing(project) == ["ductaflow.toml"]


def test_ductaflow_toml_is_found_from_a_folder_below_the_project_root(
    project: Path, flows: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call whose project root is a folder inside the project reads the project's ductaflow.toml."""
    settings(project, 'engine = "nope"\n')
    (project / "analysis").mkdir()
    monkeypatch.chdir(project / "analysis")
    with pytest.raises(ConfigError, match=re.escape(f"It is set in {project / 'ductaflow.toml'}")):
        ductaflow.run_step_flow(flows / "ok.py", "ok", "a", {"n": 1})
    assert listing(project) == ["analysis", "ductaflow.toml"]
