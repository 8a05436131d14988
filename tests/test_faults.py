"""Faults a long sweep meets: corrupt records, retries after a dying flow, re-running what failed, SIGTERM.

Every test runs real flows in real kernels or forked children and reads the
files they leave.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import conductor_script, record, result_rows, run, tally

import ductaflow

RUNS = Path("runs")

#: Dies (os._exit) on its first ``die_times`` executions of an instance, then succeeds.
FLAKY = """\
# %% tags=["parameters"]
config = {}

# %%
import os

with open(config["tally"], "a") as tally:
    tally.write(os.path.basename(os.getcwd()) + "\\n")
with open(config["tally"]) as tally:
    runs = tally.read().split().count(os.path.basename(os.getcwd()))
if runs <= config.get("die_times", 0):
    os._exit(3)
if runs <= config.get("raise_times", 0):
    raise ValueError(f"raised on execution {runs}")

# %%
with open("done.txt", "w") as fh:
    fh.write("finished")
"""


@pytest.fixture
def flaky(project: Path) -> Path:
    (project / "flow").mkdir(exist_ok=True)
    path = project / "flow" / "flaky.py"
    path.write_text(FLAKY)
    return path


@pytest.mark.parametrize("engine", ["fork", "kernel"])
def test_retries_try_a_dying_instance_again_and_keep_every_attempt(project, flaky, engine, capsys):
    """Dies twice, then succeeds: with retries=2 it succeeds on attempt 3; attempts 1 and 2 are kept."""
    frame = run(flaky, [{"instance_name": "a", "die_times": 2}], project, retries=2, engine=engine,
                progress=True)  # fmt: skip
    assert list(frame.status) == ["success"] and list(frame.attempts) == [3]
    run_dir = project / RUNS / "flaky" / "a"
    rec = record(run_dir)
    assert rec["status"] == "success" and rec["attempt"] == 3
    kept = project / RUNS / "flaky" / ".ductaflow" / "attempts" / "a"
    assert rec["earlier_attempts"] == [str(kept / "1"), str(kept / "2")]
    for n in ("1", "2"):
        earlier = record(kept / n)
        assert earlier["status"] == "failed" and earlier["error"]["fault"] is True
        assert earlier["error"]["name"] in {"DeadKernelError", "DeadProcessError"}
        assert not (kept / n / "done.txt").exists()
    assert (run_dir / "done.txt").read_text() == "finished"
    assert tally(project) == ["a", "a", "a"]
    assert "retried after a fault: a (3 attempts, success)" in capsys.readouterr().out


def test_retries_run_out_and_a_new_call_starts_a_new_history(project, flaky):
    """Dying three times with retries=1: failed after 2 attempts; the next call drops those kept attempts."""
    first = run(flaky, [{"instance_name": "a", "die_times": 3}], project, retries=1)
    assert list(first.status) == ["failed"] and list(first.attempts) == [2]
    kept = project / RUNS / "flaky" / ".ductaflow" / "attempts" / "a"
    assert sorted(p.name for p in kept.iterdir()) == ["1"]
    second = run(flaky, [{"instance_name": "a", "die_times": 3}], project, retries=1)
    assert list(second.status) == ["success"] and list(second.attempts) == [2]
    assert sorted(p.name for p in kept.iterdir()) == ["1"]
    assert record(kept / "1")["sweep_id"] == record(project / RUNS / "flaky" / "a")["sweep_id"]
    assert tally(project) == ["a"] * 4


def test_a_flow_exception_is_retried_only_when_asked(project, flaky):
    """A Python exception in the flow is its own error: not retried unless retry_on_error=True."""
    plain = run(flaky, [{"instance_name": "a", "raise_times": 1}], project, retries=3)
    assert list(plain.status) == ["failed"] and list(plain.attempts) == [1]
    assert plain.error[0] == "ValueError: raised on execution 1"
    asked = run(flaky, [{"instance_name": "b", "raise_times": 1}], project, retries=3, retry_on_error=True)
    assert list(asked.status) == ["success"] and list(asked.attempts) == [2]
    with pytest.raises(ValueError, match="retries must be a whole number"):
        run(flaky, [{"instance_name": "c"}], project, retries=-1)


def test_only_failed_runs_just_the_instances_whose_last_attempt_failed(project, flaky):
    """Failed, crashed and interrupted ones run; up-to-date, outdated and never-run ones do not."""
    (project / "input.txt").write_text("1")
    rows = [{"instance_name": name, "raise_times": 1 if name == "failed" else 0, "input": "input.txt"}
            for name in ("ok", "failed", "crashed", "interrupted")]  # fmt: skip
    run(flaky, rows, project, inputs=["input"])
    step = project / RUNS / "flaky"
    for name, status in (
        ("crashed", "running"),
        ("interrupted", "interrupted"),
    ):  # as a kill or Ctrl-C leaves
        rec = record(step / name)
        (step / name / "run.json").write_text(json.dumps({**rec, "status": status}))
    (project / "input.txt").write_text("2")  # every earlier success is now outdated
    again = run(flaky, [*rows, {"instance_name": "new", "input": "input.txt"}], project, inputs=["input"],
                only_failed=True)  # fmt: skip
    outcome = dict(zip(again.instance, zip(again.status, again.reason, strict=True), strict=True))
    assert outcome == {
        "ok": ("skipped", "last attempt did not fail (only_failed)"),
        "failed": ("success", "previous attempt failed"),
        "crashed": ("success", "previous attempt crashed"),
        "interrupted": ("success", "previous attempt interrupted"),
        "new": ("skipped", "last attempt did not fail (only_failed)"),
    }
    assert not (step / "new").exists()


CORRUPTIONS = {
    "empty": b"",
    "truncated": None,  # the first half of the real record
    "garbage": bytes(range(256)) * 4,
    "not a record": b'{"written": "by another tool"}',
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_an_unreadable_record_is_an_interrupted_attempt(project, flaky, corruption):
    """status says 'unreadable record', why explains, a re-run keeps it aside and runs the instance."""
    run(flaky, [{"instance_name": "a"}], project)
    run_dir = project / RUNS / "flaky" / "a"
    original = (run_dir / "run.json").read_bytes()
    damaged = CORRUPTIONS[corruption]
    (run_dir / "run.json").write_bytes(original[: len(original) // 2] if damaged is None else damaged)

    check = ductaflow.check_instance(run_dir)
    assert check.status == "unreadable record" and check.outdated is True
    assert "an interrupted attempt" in check.reason
    status = ductaflow.check_instances([project / RUNS])
    assert list(status.status) == ["unreadable record"]
    assert list(ductaflow.collect(project / RUNS).status) == ["unreadable record"]

    again = run(flaky, [{"instance_name": "a"}], project)
    assert list(again.status) == ["success"]
    assert again.reason[0].startswith("previous attempt left an unreadable record (run.json ")
    kept = project / RUNS / "flaky" / ".ductaflow" / "attempts" / "a" / "unreadable-record"
    assert (kept / "done.txt").exists() and (kept / "run.json").read_bytes() != original
    assert record(run_dir)["status"] == "success"
    assert ductaflow.check_instance(run_dir).reason == "flow and inputs unchanged; " + (
        "config not checked: it was given from Python or a script, not read from files by ductaflow"
    )


def test_someone_elses_folder_with_a_bad_run_json_is_still_refused(project, flaky):
    """A folder ductaflow did not lay out (no config.json, no lock) keeps its files: the run is refused."""
    foreign = project / RUNS / "flaky" / "a"
    foreign.mkdir(parents=True)
    (foreign / "run.json").write_text("{not json")
    (foreign / "results.csv").write_text("x\n1\n")
    frame = run(flaky, [{"instance_name": "a"}], project)
    assert list(frame.status) == ["failed"] and "did not write" in frame.error[0]
    assert sorted(p.name for p in foreign.iterdir()) == ["results.csv", "run.json"]
    assert ductaflow.check_instance(foreign).status == "unknown"


def test_the_cli_main_puts_the_previous_sigterm_handler_back(project, flaky):
    """ductaflow.cli.main called from Python: its SIGTERM handler is gone once it returns."""
    code = (
        "import signal, sys\n"
        "from ductaflow.cli import main\n"
        "def mine(signum, frame):\n"
        "    pass\n"
        "signal.signal(signal.SIGTERM, mine)\n"
        "try:\n"
        f"    main(['run', {str(flaky)!r}, '-o', 'tally={project / 'tally.txt'}', '--instance', 'a'])\n"
        "except SystemExit as exit_:\n"
        "    print('exit', exit_.code)\n"
        "print('restored', signal.getsignal(signal.SIGTERM) is mine)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert out.stdout.splitlines()[-2:] == ["exit 0", "restored True"], out.stderr


def test_the_cli_retries_and_reruns_only_the_failed(project, flaky):
    """--retries and --only-failed from the command line; a bad --max-memory is a usage error."""
    tally_file = project / "tally.txt"
    (project / "table.csv").write_text(f"instance_name,die_times,tally\na,1,{tally_file}\nb,5,{tally_file}\n")
    sweep = [sys.executable, "-m", "ductaflow", "sweep", str(flaky), "--table", "table.csv", "-j", "1"]
    first = subprocess.run(
        [*sweep, "--retries", "1"], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 1, first.stderr
    assert "retried after a fault: a (2 attempts, success), b (2 attempts, failed)" in first.stdout
    (project / "table.csv").write_text(f"instance_name,die_times,tally\na,1,{tally_file}\nb,0,{tally_file}\n")
    second = subprocess.run(
        [*sweep, "--only-failed"], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert tally(project) == ["a", "a", "b", "b", "b"]
    bad = subprocess.run([*sweep, "--max-memory", "lots"], cwd=project, capture_output=True, text=True)
    assert bad.returncode == 2 and "--max-memory" in bad.stderr and '"2GB"' in bad.stderr


def test_force_skips_what_another_conductor_finished_after_the_plan(project, tally_flow):
    """force=True: an instance another conductor finished after this one planned it is not run again.

    Attempts are told apart by who wrote their record (call, start, process,
    host), never by comparing times that two machines' clocks would get wrong.
    """
    run(tally_flow, [{"instance_name": "a"}], project)
    hold = project / "hold"
    hold.write_text("")
    rows = [{"instance_name": "first", "hold": str(hold)}, {"instance_name": "a"}]
    script = conductor_script(project, tally_flow, rows, jobs=1, force=True, progress=False)
    with subprocess.Popen(
        [sys.executable, "-c", script], cwd=project, stdout=subprocess.PIPE, text=True
    ) as other:
        wait_for(lambda: "first" in tally(project))  # it has planned 'a' and is busy with 'first'
        mine = run(tally_flow, [{"instance_name": "a"}], project, force=True)
        assert list(mine.status) == ["success"]
        hold.unlink()
        out, _ = other.communicate(timeout=300)
    outcome = {r["instance"]: (r["status"], r["reason"]) for r in result_rows(out)}
    assert outcome == {"first": ("success", "forced"), "a": ("skipped", "done by another process")}
    assert tally(project).count("a") == 2


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


HANGS = """\
# %% tags=["parameters"]
config = {}

# %%
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a C call that will not be interrupted, as far as it goes
with open("started.txt", "w") as fh:
    fh.write("started")
time.sleep(3600)
"""

GREEDY = """\
# %% tags=["parameters"]
config = {}

# %%
hoard = bytearray(3 * 2**30)
"""


def test_limits_stop_an_instance_and_name_themselves(project):
    """instance_timeout (retried: a fault) and max_memory (not retried: the flow's MemoryError) in records."""
    (project / "flow").mkdir()
    (project / "flow" / "hangs.py").write_text(HANGS)
    (project / "flow" / "greedy.py").write_text(GREEDY)
    hung = ductaflow.run_instances("flow/hangs.py", [{"instance_name": "h"}], instance_timeout=2, retries=1,
                                   progress=False, export_html=False)  # fmt: skip
    assert list(hung.status) == ["failed"] and list(hung.attempts) == [2]
    assert hung.error[0] == ("InstanceTimeoutError: the instance did not finish within its instance_timeout "
                             "of 2 s")  # fmt: skip
    rec = record(project / RUNS / "hangs" / "h")
    assert rec["error"]["fault"] is True and rec["options"]["instance_timeout"] == 2
    greedy = ductaflow.run_instances("flow/greedy.py", [{"instance_name": "g"}], max_memory="512MB",
                                     retries=1, progress=False, export_html=False)  # fmt: skip
    assert list(greedy.status) == ["failed"] and list(greedy.attempts) == [1]
    assert greedy.error[0].startswith("MemoryLimitError: the flow ran out of memory under its max_memory "
                                      "limit of 512 MB")  # fmt: skip
    with pytest.raises(ValueError, match="memory size 'lots' is not understood"):
        ductaflow.run_step_flow("flow/greedy.py", "greedy", "x", {}, max_memory="lots")


def test_clean_lists_and_deletes_kept_attempts(project, flaky):
    """The attempts a retry kept are listed by clean with their size, and deleted with delete=True."""
    run(flaky, [{"instance_name": "a", "die_times": 1}], project, retries=1)
    kept = project / RUNS / "flaky" / ".ductaflow" / "attempts" / "a"
    listed = ductaflow.clean_runs(project / RUNS)
    assert listed[["kind", "instance", "path"]].values.tolist() == [["attempts", "a", str(kept)]]
    assert listed.bytes[0] > 0 and kept.exists()
    gone = ductaflow.clean_runs(project / RUNS, delete=True)
    assert gone.deleted.tolist() == [True] and not kept.exists()
    assert record(project / RUNS / "flaky" / "a")["status"] == "success"


def test_a_process_killed_while_it_made_an_attempt_leaves_nothing_for_long(project, flaky):
    """A staging folder a kill -9 left goes with the instance's next attempt, and clean lists it."""
    run(flaky, [{"instance_name": "a"}, {"instance_name": "a-1"}], project)
    state = project / RUNS / "flaky" / ".ductaflow" / "staging"  # emptied by every attempt
    assert list(state.iterdir()) == []
    for name in ("a-99999-1", "a-1-99999-2"):  # as a process killed inside open_attempt leaves them
        (state / name).mkdir()
        (state / name / ".config.json.99999.1.tmp").write_bytes(b"")
    listed = ductaflow.clean_runs(project / RUNS)
    assert sorted(listed.path) == [str(state / "a-1-99999-2"), str(state / "a-99999-1")]
    assert set(listed.kind) == {"leftover"}
    run(flaky, [{"instance_name": "a"}], project, force=True)
    assert not (state / "a-99999-1").exists() and (state / "a-1-99999-2").exists()  # not a's
    assert ductaflow.clean_runs(project / RUNS, delete=True).deleted.tolist() == [True]
    assert list(state.iterdir()) == []


@pytest.mark.parametrize("depth", ["short", "too deep for a socket"])
def test_a_conductor_killed_with_9_leaves_no_zygote_behind(project, tally_flow, depth):
    """kill -9 of a fork-engine conductor: its zygote ends and removes its socket folder from TMPDIR.

    A TMPDIR too deep for a Unix socket's path puts the socket in /tmp.
    """
    import os
    import signal
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="df-"))
    temp = short if depth == "short" else project / ("deep" * 30)
    temp.mkdir(exist_ok=True)
    hold = project / "hold"
    hold.write_text("")
    script = conductor_script(project, tally_flow, [{"instance_name": "a", "hold": str(hold)}], engine="fork",
                              progress=False)  # fmt: skip
    env = {**os.environ, "TMPDIR": str(temp)}
    with subprocess.Popen([sys.executable, "-c", script], cwd=project, env=env) as conductor:
        wait_for(lambda: "a" in tally(project))
        [folder] = [Path(arguments[4]).parent for arguments in _commands_of_children(conductor.pid)
                    if arguments[2:4] == ["-m", "ductaflow.engines.zygote"]]  # fmt: skip
        assert folder.parent == (temp if depth == "short" else Path("/tmp"))
        assert folder.name.startswith("ductaflow-zygote-") and (folder / "socket").exists()
        conductor.send_signal(signal.SIGKILL)
    wait_for(lambda: not folder.exists())
    short.rmdir()


def _commands_of_children(pid: int) -> list[list[str]]:
    """The command lines of the processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append((stat.parent / "cmdline").read_text().rstrip("\0").split("\0"))
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_what_the_engine_worked_around_is_in_the_record(project, flows):
    """A cell whose end of output never came: the run succeeds and run.json's warnings say so."""
    result = ductaflow.run_step_flow(flows / "drops_idle.py", "idle", "a", {}, engine="kernel",
                                     export_html=False)  # fmt: skip
    assert result.status == "success"
    [warning] = result.record["warnings"]
    assert warning.startswith("cell 3: the kernel's reply came but not the end of its output")
    assert record(result.run_dir)["warnings"] == [warning] and "engine_restarts" not in result.record
