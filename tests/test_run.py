"""Executing one instance: the directory contract, the run record, failures and re-runs (real kernels)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import interrupt_when, listing, record

import ductaflow
from ductaflow import FlowExecutionError, RunStatus


def test_instance_directory_contract(project, flows):
    """A successful run leaves config, executed notebook, HTML, log and a complete success record."""
    result = ductaflow.run_step_flow(flows / "ok.py", "ok", "first", {"n": 21, "label": "hello"})

    run_dir = project / "runs" / "ok" / "first"
    assert result.run_dir == run_dir
    assert result.status is RunStatus.SUCCESS
    assert sorted(os.listdir(run_dir)) == [
        "config.json",
        "environment.json",
        "log.txt",
        "ok.html",
        "ok.ipynb",
        "run.json",
        "seen.json",
    ]
    assert json.loads((run_dir / "config.json").read_text()) == {"n": 21, "label": "hello"}
    seen = json.loads((run_dir / "seen.json").read_text())
    assert seen["config"] == {"n": 21, "label": "hello"}
    assert seen["cwd"] == str(run_dir)
    assert seen["is_notebook_execution"] is True
    executed = nbformat.read(run_dir / "ok.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["data"]["text/plain"] == "42"
    assert "stdout line hello" in (run_dir / "ok.html").read_text()
    assert result.notebook == run_dir / "ok.ipynb"
    assert result.html == run_dir / "ok.html"
    assert result.config == {"n": 21, "label": "hello"}


def test_run_record_fields(project, flows):
    """run.json holds status, times, flow hash, config hash, versions, host, user and pid."""
    result = ductaflow.run_step_flow(flows / "ok.py", "ok", "rec", {"n": 1})
    rec = record(result.run_dir)
    assert rec["status"] == "success"
    assert rec == result.record
    assert rec["step"] == "ok" and rec["instance"] == "rec"
    assert rec["flow_sha256"] == hashlib.sha256((flows / "ok.py").read_bytes()).hexdigest()
    assert rec["config_hash"] == ductaflow.config.config_hash({"n": 1})
    assert rec["started_at"] < rec["ended_at"]
    assert 0 < rec["duration_s"] == result.duration
    assert rec["pid"] == os.getpid()
    assert rec["host"] and "user" in rec  # the user may have no name in some containers
    assert rec["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert rec["versions"]["papermill"] and rec["versions"]["ductaflow"] == ductaflow.__version__
    assert rec["error"] is None
    assert rec["git"] is None  # the project is not a git work tree


def test_git_commit_branch_and_dirty_flag(project, flows):
    """In a git work tree the record names the commit, the branch and whether tracked files changed."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}  # fmt: skip
    (project / "flow").mkdir()
    (project / "flow" / "ok.py").write_bytes((flows / "ok.py").read_bytes())
    for cmd in (
        ["init", "-q", "-b", "study"],
        ["add", "flow"],
        ["-c", "commit.gpgsign=false", "commit", "-qm", "f"],
    ):
        subprocess.run(["git", *cmd], cwd=project, check=True, env=env)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True
    ).stdout.strip()

    clean = record(ductaflow.run_step_flow("flow/ok.py", "ok", "clean", {}).run_dir)
    (project / "flow" / "ok.py").write_text((flows / "ok.py").read_text() + "\n# edited\n")
    dirty = record(ductaflow.run_step_flow("flow/ok.py", "ok", "dirty", {}).run_dir)

    assert clean["git"] == {"commit": head, "branch": "study", "dirty": False}
    assert dirty["git"] == {"commit": head, "branch": "study", "dirty": True}
    assert clean["flow"] == "flow/ok.py"


def test_failing_flow_leaves_evidence_and_raises(project, flows):
    """A failing cell: notebook, HTML and a failed record are written; the error names cell and error."""
    with pytest.raises(FlowExecutionError) as info:
        ductaflow.run_step_flow(flows / "broken.py", "broken", "b1", {})

    error = info.value
    run_dir = project / "runs" / "broken" / "b1"
    assert error.instance == "b1" and error.step == "broken"
    assert error.cell_index == 2
    assert error.error_name == "KeyError"
    assert "'no_such_key'" in error.error_message
    message = str(error)
    assert "cell 2" in message and "KeyError" in message
    assert "runs/broken/b1/broken.ipynb" in message and "runs/broken/b1/broken.html" in message
    rec = record(run_dir)
    assert rec["status"] == "failed"
    assert rec["error"]["name"] == "KeyError"
    assert rec["error"]["cell_index"] == 2
    assert rec["error"]["cell_source"] == 'missing = config["no_such_key"]'
    assert "no_such_key" in rec["error"]["traceback"]
    html = (run_dir / "broken.html").read_text()
    assert "KeyError" in html and "this run failed" in html
    executed = nbformat.read(run_dir / "broken.ipynb", as_version=4)
    assert "never runs" not in json.dumps([c.get("outputs", []) for c in executed.cells])
    log = (run_dir / "log.txt").read_text()
    assert "before the failure" in log and "KeyError" in log


def test_sys_exit_zero_counts_as_success(project, flows):
    """sys.exit(0) ends the flow successfully; later cells do not run."""
    result = ductaflow.run_step_flow(flows / "sysexit0.py", "exit", "zero", {})
    assert result.status is RunStatus.SUCCESS
    assert (result.run_dir / "before_exit.txt").exists()
    assert not (result.run_dir / "after_exit.txt").exists()


def test_kernel_death_is_recorded_as_failed(project, flows):
    """A flow that kills its own kernel (os._exit) is recorded failed with DeadKernelError."""
    with pytest.raises(FlowExecutionError) as info:
        ductaflow.run_step_flow(flows / "kills_kernel.py", "die", "k", {})
    assert info.value.error_name == "DeadKernelError"
    assert info.value.cell_index == 2
    rec = record(project / "runs" / "die" / "k")
    assert rec["status"] == "failed" and rec["error"]["name"] == "DeadKernelError"
    assert "about to die" in (project / "runs" / "die" / "k" / "log.txt").read_text()
    assert (project / "runs" / "die" / "k" / "kills_kernel.html").exists()


def test_cell_timeout_is_recorded_as_failed(project, flows):
    """A cell running past the per-cell timeout fails the run with the reason, quickly."""
    with pytest.raises(FlowExecutionError) as info:
        ductaflow.run_step_flow(flows / "slow.py", "slow", "t", {"sleep": 60}, timeout=2)
    rec = record(project / "runs" / "slow" / "t")
    assert rec["status"] == "failed"
    assert rec["error"]["name"] == "CellTimeoutError"
    assert "timeout of 2 s" in rec["error"]["message"]
    assert rec["duration_s"] < 20
    assert info.value.cell_index == 2


def test_rerun_never_mixes_attempts(project, flows):
    """A re-run replaces the directory: files written only by the first attempt are gone."""
    first = ductaflow.run_step_flow(flows / "ok.py", "ok", "same", {"extra_file": True})
    assert (first.run_dir / "extra.txt").exists()
    second = ductaflow.run_step_flow(flows / "ok.py", "ok", "same", {"extra_file": False})
    assert not (second.run_dir / "extra.txt").exists()
    assert json.loads((second.run_dir / "config.json").read_text()) == {"extra_file": False}
    stored = f"environments/{record(second.run_dir)['environment']['sha256']}.json"  # linked, one per step
    state = ["environments", stored, "previous", "same.lock", "staging"]
    assert listing(project / "runs" / "ok" / ".ductaflow") == state


def test_failed_rerun_keeps_last_success(project, flows):
    """When a re-run fails, the last successful attempt is kept aside and the error points to it."""
    good = ductaflow.run_step_flow(flows / "ok.py", "step", "inst", {"n": 1})
    broken = project / "broken_copy.py"
    broken.write_text((flows / "broken.py").read_text())
    with pytest.raises(FlowExecutionError) as info:
        ductaflow.run_step_flow(broken, "step", "inst", {})
    kept = project / "runs" / "step" / ".ductaflow" / "previous" / "inst"
    assert str(kept) in str(info.value)
    assert record(kept)["status"] == "success"
    assert (kept / "seen.json").exists()
    assert record(good.run_dir)["status"] == "failed"
    ductaflow.run_step_flow(flows / "ok.py", "step", "inst", {"n": 2})
    assert not kept.exists()  # a new success replaces the kept one


def test_caller_working_directory_is_unchanged(project, flows):
    """Executing a flow never changes the calling process's working directory."""
    before = os.getcwd()
    ductaflow.run_step_flow(flows / "ok.py", "ok", "cwd", {})
    assert os.getcwd() == before


def test_log_has_stdout_stderr_and_subprocess_output(project, flows):
    """log.txt holds the flow's stdout, stderr and the output of processes it starts."""
    result = ductaflow.run_step_flow(flows / "ok.py", "ok", "log", {"label": "L"})
    log = result.log.read_text()
    assert "stdout line L" in log
    assert "stderr line" in log
    assert "from a subprocess" in log
    assert "WARNING" not in log  # no kernel noise


def test_log_and_notebook_are_written_while_running(project, flows):
    """While a cell runs, the log and the notebook of the completed cells are already on disk."""
    import threading

    hold = project / "hold"
    hold.write_text("")
    thread = threading.Thread(
        target=ductaflow.run_step_flow,
        args=(flows / "slow.py", "slow", "live", {"sleep": 0, "hold": str(hold)}),
    )
    thread.start()
    run_dir = project / "runs" / "slow" / "live"

    def first_cell_saved() -> bool:
        notebook = run_dir / "slow.ipynb"
        if not notebook.exists():
            return False
        outputs = [c.get("outputs", []) for c in json.loads(notebook.read_text())["cells"]]
        return "first cell done" in json.dumps(outputs)

    try:
        _wait_for(first_cell_saved)
        partial = nbformat.read(run_dir / "slow.ipynb", as_version=4)
        running_record = record(run_dir)
        log_while_running = (run_dir / "log.txt").read_text()
    finally:
        hold.unlink()  # the held cell may finish now
        thread.join()
    assert running_record["status"] == "running"
    assert "first cell done" in log_while_running
    assert partial.cells[-1].get("outputs") == []  # the sleeping cell had not finished
    assert record(run_dir)["status"] == "success"


def test_export_html_false(project, flows):
    """export_html=False writes no HTML report."""
    result = ductaflow.run_step_flow(flows / "ok.py", "ok", "nohtml", {}, export_html=False)
    assert result.html is None
    assert not list(result.run_dir.glob("*.html"))
    assert result.record["outputs"]["html"] is None


def test_files_left_open_by_the_flow_are_flushed(project, flows):
    """A file the flow never closes still holds its content after the run, as in a script."""
    result = ductaflow.run_step_flow(flows / "leaves_file_open.py", "open", "f", {}, export_html=False)
    assert (result.run_dir / "unclosed.txt").read_text() == "buffered result"


def test_pandas_and_numpy_config_is_normalised_everywhere(project, flows):
    """numpy/NaN/Timestamp values agree in config.json, the injected cell and the flow's own view."""
    row = pd.DataFrame({"n": [np.int64(3)], "x": [np.nan], "when": [pd.Timestamp("2024-05-01")]}).iloc[0]
    result = ductaflow.run_step_flow(flows / "ok.py", "ok", "np", dict(row))
    expected = {"n": 3, "x": None, "when": "2024-05-01T00:00:00"}
    assert json.loads((result.run_dir / "config.json").read_text()) == expected
    assert json.loads((result.run_dir / "seen.json").read_text())["config"] == expected
    assert result.record["config_hash"] == ductaflow.config.config_hash(expected)


def test_run_notebook_names_instance_from_config_or_hash(project, flows):
    """run_notebook uses config['instance_name'], else a stable 12-character config hash."""
    named = ductaflow.run_notebook(flows / "ok.py", {"instance_name": "mine", "n": 1}, export_html=False)
    assert named.run_dir == project / "runs" / "ok" / "mine"
    hashed = ductaflow.run_notebook(flows / "ok.py", {"n": 5}, export_html=False)
    expected = ductaflow.config.config_hash({"n": 5})[:12]
    assert hashed.run_dir == project / "runs" / "ok" / expected
    assert hashed.instance == expected


def test_run_notebook_output_dir(project, flows, tmp_path):
    """run_notebook with output_dir runs there, relative to the current directory."""
    result = ductaflow.run_notebook(flows / "ok.py", {"n": 2}, output_dir="results/trial", export_html=False)
    assert result.run_dir == project / "results" / "trial"
    assert record(result.run_dir)["status"] == "success"


def test_output_dir_with_foreign_files_is_refused(project, flows):
    """ductaflow will not run into (or delete) a directory holding files it did not write."""
    target = project / "mine"
    target.mkdir()
    (target / "precious.csv").write_text("keep me")
    with pytest.raises(ductaflow.RunDirectoryError, match="did not write"):
        ductaflow.run_notebook(flows / "ok.py", {}, output_dir=target)
    assert listing(target) == ["precious.csv"]


def test_project_root_option(project, flows, tmp_path):
    """project_root places runs/ under another directory."""
    other = tmp_path / "elsewhere"
    result = ductaflow.run_step_flow(flows / "ok.py", "ok", "x", {}, project_root=other, export_html=False)
    assert result.run_dir == other / "runs" / "ok" / "x"
    assert not (project / "runs").exists()


BAD_INPUTS = {
    "unsafe-instance": (
        lambda f: ductaflow.run_step_flow(f / "ok.py", "ok", "../up", {}),
        ductaflow.UnsafeNameError,
    ),
    "unsafe-step": (
        lambda f: ductaflow.run_step_flow(f / "ok.py", "a/b", "x", {}),
        ductaflow.UnsafeNameError,
    ),
    "unsafe-config-name": (
        lambda f: ductaflow.run_notebook(f / "ok.py", {"instance_name": "/abs"}),
        ductaflow.UnsafeNameError,
    ),
    "no-parameters": (
        lambda f: ductaflow.run_step_flow(f / "no_parameters.py", "np", "x", {}),
        ductaflow.FlowError,
    ),
    "missing-flow": (lambda f: ductaflow.run_step_flow(f / "nope.py", "np", "x", {}), ductaflow.FlowError),
    "bad-config-value": (
        lambda f: ductaflow.run_step_flow(f / "ok.py", "ok", "x", {"f": object()}),
        ductaflow.ConfigError,
    ),
    "unknown-kernel": (
        lambda f: ductaflow.run_step_flow(f / "ok.py", "ok", "x", {}, kernel_name="no-such-kernel"),
        ductaflow.KernelNotFoundError,
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_writes_nothing(project, flows, case):
    """Each user error raises its ductaflow error before anything is written."""
    call, error = case
    with pytest.raises(error):
        call(flows)
    assert listing(project) == []


def test_two_instances_in_one_process_at_once(project, flows):
    """Two instances executing in threads of one process both succeed in their own directories."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(ductaflow.run_step_flow, flows / "ok.py", "ok", f"t{i}", {"n": i}) for i in range(2)
        ]
        results = [f.result() for f in futures]
    for i, result in enumerate(results):
        seen = json.loads((result.run_dir / "seen.json").read_text())
        assert seen["config"] == {"n": i} and seen["cwd"] == str(result.run_dir)


def test_same_instance_in_another_process_is_refused(project, flows):
    """While another process executes an instance, running it here is refused and changes nothing."""
    hold = project / "hold"
    hold.write_text("")
    config = {"sleep": 0, "hold": str(hold)}  # it runs until the test removes the hold file
    code = (
        "import ductaflow, sys; "
        f"ductaflow.run_step_flow({str(flows / 'slow.py')!r}, 'slow', 'busy', {config!r}, export_html=False)"
    )
    other = subprocess.Popen([sys.executable, "-c", code], cwd=project)
    try:
        run_dir = project / "runs" / "slow" / "busy"
        _wait_for(
            lambda: (run_dir / "log.txt").exists() and "first cell done" in (run_dir / "log.txt").read_text()
        )
        with pytest.raises(ductaflow.InstanceBusyError, match="another process"):
            ductaflow.run_step_flow(flows / "ok.py", "slow", "busy", {})
        assert record(run_dir)["status"] == "running"
    finally:
        hold.unlink()  # the other process may finish now
        assert other.wait(timeout=120) == 0
    assert record(run_dir)["status"] == "success"
    assert (run_dir / "slept.txt").exists()


def test_ctrl_c_records_interrupted_and_stops_the_kernel(project, flows):
    """SIGINT during a run stops the kernel, records 'interrupted' and raises KeyboardInterrupt."""
    import signal

    code = (
        "import ductaflow\n"
        "try:\n"
        f"    ductaflow.run_step_flow({str(flows / 'slow.py')!r}, 'slow', 'ctrlc', {{'sleep': 60}})\n"
        "except KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt raised')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=project, stdout=subprocess.PIPE, text=True)
    run_dir = project / "runs" / "slow" / "ctrlc"
    _wait_for(
        lambda: (run_dir / "log.txt").exists() and "first cell done" in (run_dir / "log.txt").read_text()
    )
    kernel_pids = _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert "KeyboardInterrupt raised" in out
    rec = record(run_dir)
    assert rec["status"] == "interrupted"
    assert rec["error"]["name"] == "KeyboardInterrupt" and rec["error"]["cell_index"] == 2
    assert (run_dir / "slow.html").exists()
    assert kernel_pids and not [pid for pid in kernel_pids if _alive(pid)]


def test_stray_python3_kernelspec_is_ignored_unless_asked_for(project, flows, tmp_path, monkeypatch):
    """A user-level 'python3' kernelspec pointing elsewhere is not used unless kernel_name selects it."""
    marker = tmp_path / "stray-used"
    fake = tmp_path / "other-python"
    fake.write_text(f'#!/bin/sh\ntouch {marker}\nexec {sys.executable} -m ipykernel_launcher "$@"\n')
    fake.chmod(0o755)
    spec_dir = tmp_path / "jupyter-data" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [str(fake), "-f", "{connection_file}"], "display_name": "Stray", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")  # user-level specs first, as outside a venv

    default = ductaflow.run_step_flow(flows / "ok.py", "ok", "default-kernel", {}, export_html=False)
    assert json.loads((default.run_dir / "seen.json").read_text())["executable"] == sys.executable
    assert not marker.exists()

    chosen = ductaflow.run_step_flow(
        flows / "ok.py", "ok", "chosen", {}, kernel_name="python3", export_html=False
    )
    assert marker.exists()
    assert chosen.record["kernel"] == "python3"


def _wait_for(condition, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


def test_report_failure_keeps_a_successful_run(project, flows):
    """When nbconvert cannot render the report, the run still succeeds and the record says why."""
    result = ductaflow.run_step_flow(flows / "missing_attachment.py", "att", "a", {})
    assert result.status is RunStatus.SUCCESS
    assert result.html is None and not list(result.run_dir.glob("*.html"))
    rec = record(result.run_dir)
    assert rec["status"] == "success"
    assert rec["outputs"]["html"] is None
    assert "missing attachment" in rec["html_error"]
    assert "warnings" not in rec and not list(result.run_dir.glob("*.flow.json"))
    assert (result.run_dir / "result.txt").read_text() == "the flow's own result"


def test_invalid_output_is_a_cell_failure(project, flows):
    """An output nbformat refuses fails its cell like any error, with the notebook and report saved."""
    with pytest.raises(FlowExecutionError) as info:
        ductaflow.run_step_flow(flows / "invalid_output.py", "bad", "out", {})
    assert info.value.error_name == "NotebookValidationError"
    assert info.value.cell_index == 1
    run_dir = project / "runs" / "bad" / "out"
    assert record(run_dir)["status"] == "failed"
    assert (run_dir / "invalid_output.html").exists()


def test_log_output_echoes_the_flow_output(project, flows, capfd):
    """log_output=True also shows the flow's stdout and stderr in this process's streams."""
    ductaflow.run_step_flow(flows / "ok.py", "ok", "echo", {"label": "E"}, export_html=False, log_output=True)
    captured = capfd.readouterr()
    assert "stdout line E" in captured.out
    assert "stderr line" in captured.err
    ductaflow.run_step_flow(flows / "ok.py", "ok", "quiet", {"label": "Q"}, export_html=False)
    assert "stdout line Q" not in capfd.readouterr().out


def test_unguarded_load_cli_config_keeps_the_injected_config(project, flows):
    """A flow calling load_cli_config without the guard still runs with the injected config."""
    result = ductaflow.run_step_flow(flows / "unguarded.py", "unguarded", "u", {"a": 1}, export_html=False)
    assert json.loads((result.run_dir / "seen.json").read_text()) == {"a": 1}


def test_foreign_run_json_is_not_taken_for_a_record(project, flows):
    """A folder whose run.json another tool wrote is refused, and its files are kept."""
    target = project / "results" / "exp1"
    target.mkdir(parents=True)
    (target / "run.json").write_text('{"model": "xgb", "status": "failed"}')
    (target / "predictions.csv").write_text("keep me")
    with pytest.raises(ductaflow.RunDirectoryError, match="did not write"):
        ductaflow.run_notebook(flows / "ok.py", {}, output_dir=target)
    assert sorted(os.listdir(target)) == ["predictions.csv", "run.json"]


def _status_on_disk(run_dir: Path) -> str | None:
    """The status in ``run_dir``'s record, or None while there is none."""
    try:
        return record(run_dir)["status"]
    except (OSError, ValueError, KeyError):
        return None


def _executed_cells(notebook: Path) -> int:
    """How many code cells of the notebook on disk have been executed (0 while there is none)."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return 0
    return sum(c["cell_type"] == "code" and c.get("execution_count") is not None for c in cells)


def _log_holds(run_dir: Path, text: str) -> bool:
    log = run_dir / "log.txt"
    return log.exists() and text in log.read_text()


RUN_MOMENTS = {  # from before ductaflow is called to after the run has recorded success
    "calling ductaflow": lambda run_dir, err: "calling ductaflow" in err,
    "record says running": lambda run_dir, err: _status_on_disk(run_dir) == "running",
    "kernel starting": lambda run_dir, err: (run_dir / "log.txt").exists(),
    "log holds the flow's output": lambda run_dir, err: _log_holds(run_dir, "stdout line"),
    "notebook has every cell executed": lambda run_dir, err: _executed_cells(run_dir / "ok.ipynb") == 4,
    "report written": lambda run_dir, err: (run_dir / "ok.html").exists(),
    "record says success": lambda run_dir, err: _status_on_disk(run_dir) == "success",
}


@pytest.mark.parametrize("moment", RUN_MOMENTS, ids=RUN_MOMENTS)
def test_ctrl_c_at_any_moment_gives_a_clean_outcome(project, flows, moment):
    """Ctrl-C at any point of a short run: a recorded outcome and a KeyboardInterrupt, never a stray error."""

    code = (
        "import sys\n"
        "import ductaflow\n"
        "try:\n"
        "    print('calling ductaflow', file=sys.stderr, flush=True)\n"
        f"    ductaflow.run_step_flow({str(flows / 'ok.py')!r}, 'ok', 'c', {{}})\n"
        "    print('RETURNED')\n"
        "except KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt')\n"
    )
    run_dir = project / "runs" / "ok" / "c"
    out, err = interrupt_when(code, project, lambda out, err: RUN_MOMENTS[moment](run_dir, err))
    assert "Traceback" not in err, err
    rec_file = project / "runs" / "ok" / "c" / "run.json"
    if out.strip() == "RETURNED":  # the signal came after the run ended: nothing to interrupt
        assert record(rec_file.parent)["status"] == "success"
        return
    assert out.strip() == "KeyboardInterrupt"
    if rec_file.exists():
        assert record(rec_file.parent)["status"] in {"success", "interrupted"}


def test_refused_output_dir_gets_no_lock_file(project, flows):
    """A refused output directory is left exactly as it was: not even a lock file appears beside it."""
    (project / "mine" / "data").mkdir(parents=True)
    (project / "mine" / "data" / "keep.csv").write_text("x")
    with pytest.raises(ductaflow.RunDirectoryError):
        ductaflow.run_notebook(flows / "ok.py", {}, output_dir="mine/data")
    assert listing(project / "mine") == ["data", "data/keep.csv"]


def test_subprocess_output_is_logged_once(project, flows):
    """Output of a process the flow starts appears once in log.txt."""
    result = ductaflow.run_step_flow(flows / "ok.py", "ok", "once", {}, export_html=False)
    assert result.log.read_text().count("from a subprocess") == 1


def test_flow_files_named_like_ductaflows_are_kept_aside(project, flows):
    """A flow writing config.json or run.json loses nothing, and ductaflow's own files stand."""
    result = ductaflow.run_step_flow(flows / "writes_reserved_names.py", "names", "r", {"alpha": 1})
    run_dir = result.run_dir
    assert json.loads((run_dir / "config.flow.json").read_text()) == {"resolved": True}
    assert json.loads((run_dir / "run.flow.json").read_text()) == {"metrics": {"auc": 0.9}}
    assert json.loads((run_dir / "config.json").read_text()) == {"alpha": 1}
    rec = record(run_dir)
    assert rec["status"] == "success" and rec["config"] == {"alpha": 1} == result.config
    assert len(rec["warnings"]) == 2
