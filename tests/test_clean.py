"""``ductaflow clean`` and ``clean_runs``: kept previous attempts, debug copies, instances a table dropped.

Real runs make every folder cleaned here; a real second process holds an
instance running while a clean tries to delete it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import listing, record
from test_cli import cli

import ductaflow


def size(path: Path) -> int:
    """The bytes of the files under ``path`` (links not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def started_by(run_dir: Path, pid: int) -> bool:
    """True once the attempt in ``run_dir`` is the one process ``pid`` started."""
    try:
        return record(run_dir).get("pid") == pid
    except (OSError, ValueError):
        return False


@pytest.fixture
def study(project: Path, flows: Path) -> Path:
    """Step ok: a, b, c from scenarios.csv; a's success kept aside after a failed attempt; b debugged."""
    (project / "flow").mkdir()
    for name in ("ok.py", "slow.py"):
        shutil.copy(flows / name, project / "flow" / name)
    (project / "scenarios.csv").write_text("instance_name,n\na,1\nb,2\nc,3\n")
    done = cli("sweep", "flow/ok.py", "--table", "scenarios.csv", "--no-html")
    assert done.returncode == 0, done.stdout + done.stderr
    with pytest.raises(ductaflow.FlowExecutionError):  # n * 2 fails for a dict: a's success is kept aside
        ductaflow.run_step_flow("flow/ok.py", "ok", "a", {"n": {"x": 1}}, export_html=False)
    ductaflow.debug_notebook("runs/ok/b")
    return project


def test_a_dry_run_lists_previous_attempts_and_debug_copies_with_sizes_and_deletes_nothing(
    study: Path,
) -> None:
    """Without delete, clean_runs lists each folder, its kind and size, and every file stays."""
    before = listing(study)
    frame = ductaflow.clean_runs("runs")
    assert listing(study) == before
    assert list(frame.columns) == ["kind", "step", "instance", "path", "bytes", "deleted", "note"]
    previous, debug = study / "runs/ok/.ductaflow/previous/a", study / "runs/ok/.debug-b"
    assert frame[["kind", "step", "instance", "path"]].values.tolist() == [
        ["previous", "ok", "a", str(previous)],
        ["debug", "ok", "b", str(debug)],
    ]
    assert frame.bytes.tolist() == [size(previous), size(debug)] and min(frame.bytes) > 0
    assert not frame.deleted.any() and (frame.note == "").all()


def test_yes_deletes_them_and_says_what_it_freed(study: Path) -> None:
    """clean shows a table and the total; with --yes it deletes exactly those and the instances stay whole."""
    instances = {name: listing(study / "runs/ok" / name) for name in "abc"}
    total = size(study / "runs/ok/.ductaflow/previous/a") + size(study / "runs/ok/.debug-b")
    shown = cli("clean")
    assert shown.returncode == 0, shown.stderr
    assert "would delete 2" in shown.stdout and "add --yes" in shown.stdout
    assert "runs/ok/.ductaflow/previous/a" in shown.stdout and "runs/ok/.debug-b" in shown.stdout
    assert (study / "runs/ok/.debug-b").is_dir()
    done = cli("clean", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"deleted 2, freed {total / 1000:.1f} kB"
    assert not (study / "runs/ok/.debug-b").exists() and listing(study / "runs/ok/.ductaflow/previous") == []
    assert {name: listing(study / "runs/ok" / name) for name in "abc"} == instances
    assert [p.name for p in (study / "runs/ok/.ductaflow").iterdir() if p.name.startswith("deleting-")] == []
    assert cli("clean").stdout == "nothing to clean under runs\n"


def test_not_in_deletes_the_instances_a_table_no_longer_names(study: Path) -> None:
    """--not-in: the step's instances missing from the table go (with their copies); the others stay."""
    (study / "scenarios.csv").write_text("instance_name,n\nb,2\nc,3\n")
    shown = cli("clean", "runs/ok", "--not-in", "scenarios.csv")
    assert shown.returncode == 0, shown.stderr
    frame = ductaflow.clean_runs("runs/ok", not_in="scenarios.csv")
    assert frame[["kind", "instance"]].values.tolist() == [
        ["not-in-table", "a"], ["previous", "a"], ["debug", "b"]]  # fmt: skip
    assert cli("clean", "runs/ok", "--not-in", "scenarios.csv", "--yes").returncode == 0
    assert sorted(p.name for p in (study / "runs/ok").iterdir()) == [".ductaflow", "b", "c"]
    assert [r["instance"] for r in json.loads(cli("status", "--json").stdout)] == ["b", "c"]
    assert record(study / "runs/ok/b")["status"] == "success"


def test_names_come_as_sweep_makes_them_with_the_grid(project: Path, flows: Path) -> None:
    """Derived names and --grid name rows as sweep did; a table naming no instance of the step is refused."""
    (project / "flow").mkdir()
    shutil.copy(flows / "ok.py", project / "flow" / "ok.py")
    (project / "t.csv").write_text("n,label\n1,x\n2,y\n3,z\n")
    args = (
        "sweep",
        "flow/ok.py",
        "--table",
        "t.csv",
        "--grid",
        "extra_file=false,true",
        "--no-html",
        "-j",
        "2",
    )
    assert cli(*args).returncode == 0
    assert len(list((project / "runs/ok").glob("n=*"))) == 6
    (project / "t.csv").write_text("n,label\n1,x\n3,z\n")
    before = listing(project)
    refused = cli("clean", "runs/ok", "--not-in", "t.csv", "--yes")  # without the grid no name matches
    assert refused.returncode == 2 and "names no instance of step 'ok' (it has 6: " in refused.stderr
    assert listing(project) == before
    frame = ductaflow.clean_runs("runs/ok", not_in="t.csv", grid={"extra_file": [False, True]})
    assert frame.instance.tolist() == ["n=2,label=y,extra_file=false", "n=2,label=y,extra_file=true"]
    done = cli("clean", "runs/ok", "--not-in", "t.csv", "--grid", "extra_file=false,true", "--yes")
    assert done.returncode == 0 and done.stdout.startswith("deleted 2, freed ")
    assert len(list((project / "runs/ok").glob("n=*"))) == 4


def test_a_running_instance_and_its_kept_attempt_are_never_deleted(study: Path) -> None:
    """An instance another process is running, and its previous attempt, are listed as kept and stay."""
    hold = study / "hold"
    hold.write_text("")
    ductaflow.run_step_flow("flow/slow.py", "ok", "busy", {"sleep": 0}, export_html=False)
    code = ("import ductaflow; ductaflow.run_step_flow('flow/slow.py', 'ok', 'busy', "
            f"{{'sleep': 0, 'hold': {str(hold)!r}}}, export_html=False)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=study)
    try:
        busy, deadline = study / "runs/ok/busy", time.monotonic() + 60
        log = busy / "log.txt"  # made just after the attempt's record: wait for both
        while not (started_by(busy, proc.pid) and log.exists() and "first cell done" in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        (study / "scenarios.csv").write_text("instance_name,n\na,1\nb,2\nc,3\n")
        frame = ductaflow.clean_runs("runs/ok", not_in="scenarios.csv", delete=True)
        kept = frame[frame.instance == "busy"]
        running = "running now: kept"
        assert kept[["kind", "deleted", "note"]].values.tolist() == [
            ["not-in-table", False, running], ["previous", False, running]]  # fmt: skip
        assert frame[frame.instance != "busy"].deleted.all()
        assert (study / "runs/ok/busy/log.txt").exists() and (
            study / "runs/ok/.ductaflow/previous/busy"
        ).is_dir()
    finally:
        hold.unlink()
        assert proc.wait(timeout=120) == 0
    assert record(study / "runs/ok/busy")["status"] == "success"


def test_an_instance_locked_by_a_thread_of_this_process_is_kept(study: Path) -> None:
    """An instance whose lock this process holds (a run in another thread) is kept with its kept attempt."""
    from ductaflow.rundir import lock_instance

    (study / "scenarios.csv").write_text("instance_name,n\nb,2\nc,3\n")
    with lock_instance(study / "runs/ok/a"):
        frame = ductaflow.clean_runs("runs/ok", not_in="scenarios.csv", delete=True)
    assert frame[["instance", "kind", "deleted", "note"]].values.tolist() == [
        ["a", "not-in-table", False, "running now: kept"], ["a", "previous", False, "running now: kept"],
        ["b", "debug", True, ""]]  # fmt: skip
    assert (study / "runs/ok/a/run.json").exists()


def test_links_are_never_followed_and_foreign_folders_never_listed(study: Path, tmp_path: Path) -> None:
    """Symbolic links into other folders, and folders without ductaflow's layout, are left as they are."""
    outside = tmp_path / "outside"
    shutil.copytree(study / "runs/ok", outside / "ok", symlinks=True)  # a step folder of its own
    (study / "runs/linked").symlink_to(outside / "ok")
    (study / "runs/ok/.debug-c").symlink_to(outside / "ok/.debug-b")
    (study / "runs/ok/c/data").symlink_to(outside)  # inside an instance the table drops
    (study / "runs/ok/notes").mkdir()  # the user's: no run record
    (study / "runs/ok/notes/todo.txt").write_text("mine")
    (study / "runs/ok/.debug-x").mkdir()  # no marker
    (study / "runs/ok/.debug-x/f.txt").write_text("mine")
    (study / "runs/ok/.ductaflow/previous/zz").mkdir()  # no run record
    (study / "scenarios.csv").write_text("instance_name,n\na,1\nb,2\n")
    outside_before = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    frame = ductaflow.clean_runs("runs/ok", not_in="scenarios.csv", delete=True)
    assert frame[["kind", "instance"]].values.tolist() == [
        ["previous", "a"], ["debug", "b"], ["not-in-table", "c"]]  # fmt: skip
    assert frame.deleted.all()
    assert {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == outside_before
    assert listing(study / "runs/ok/notes") == ["todo.txt"] and listing(study / "runs/ok/.debug-x") == [
        "f.txt"
    ]
    assert (study / "runs/ok/.ductaflow/previous/zz").is_dir() and os.path.islink(study / "runs/ok/.debug-c")
    assert ductaflow.clean_runs("runs").path.tolist() == []


def test_usage_errors_delete_nothing(study: Path) -> None:
    """--not-in on a runs folder, an instance directory, a missing table or path: exit 2, nothing changes."""
    before = listing(study)
    cases = {
        ("clean", "--not-in", "scenarios.csv"): "not a step folder",
        ("clean", "runs/ok/a"): "is an instance directory",
        ("clean", "runs/ok", "--not-in", "nope.csv"): "nope.csv",
        ("clean", "runs/nope"): "is not a directory",
        ("clean", "--grid", "n=1,2"): "only go with --not-in",
    }
    for args, message in cases.items():
        done = cli(*args, "--yes")
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert listing(study) == before
    assert "ductaflow clean runs/simulate --not-in scenarios.csv" in cli("clean", "--help").stdout


def test_a_folder_an_interrupted_clean_left_is_removed(study: Path) -> None:
    """A folder set apart by a clean that stopped before removing it is listed as a leftover and removed."""
    left = study / "runs/ok/.ductaflow/deleting-0123456789ab"
    shutil.copytree(study / "runs/ok/c", left)
    frame = ductaflow.clean_runs("runs/ok")
    assert frame[["kind", "instance", "path"]].values.tolist()[0] == ["leftover", "", str(left)]
    assert left.is_dir()
    assert ductaflow.clean_runs("runs/ok", delete=True).deleted.all() and not left.exists()
    assert [r["instance"] for r in json.loads(cli("status", "--json").stdout)] == ["a", "b", "c"]
