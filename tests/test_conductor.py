"""run_instances: tables, names, skip/run reasons, failures, progress, crashes and concurrency."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    conductor_script,
    interrupt_when,
    listing,
    record,
    result_rows,
    run,
    run_in_terminal,
    tally,
)

import ductaflow
from ductaflow import ConfigError, UnsafeNameError


def reasons(frame: pd.DataFrame) -> dict[str, str]:
    """instance -> reason."""
    return dict(zip(frame.instance, frame.reason, strict=True))


def test_only_changed_instances_run_and_say_why(project, tally_flow):
    """new, unchanged, config changed, flow changed and forced, each for the right instances."""
    rows = [{"instance_name": "a", "p": 1}, {"instance_name": "b", "p": 2}]
    first = run(tally_flow, rows, project)
    assert list(first.status) == ["success", "success"] and set(first.reason) == {"new"}

    again = run(tally_flow, rows, project)
    assert list(again.status) == ["skipped", "skipped"] and set(again.reason) == {"unchanged"}

    rows[1]["p"] = 3
    changed = run(tally_flow, rows, project)
    assert reasons(changed) == {"a": "unchanged", "b": "config changed (p: 2 -> 3)"}

    tally_flow.write_text(tally_flow.read_text() + "\n# an edit\n")
    edited = run(tally_flow, rows, project)
    assert set(reasons(edited).values()) == {"flow changed"}

    forced = run(tally_flow, rows, project, force=True)
    assert set(forced.reason) == {"forced"} and set(forced.status) == {"success"}
    assert sorted(tally(project)) == sorted(["a", "b", "b", "a", "b", "a", "b"])


def test_input_changes_are_detected_per_row(project, tally_flow):
    """Declared inputs, table-wide and per row through a config key, re-run exactly their users."""
    data = project / "data"
    data.mkdir()
    for name in ("x.csv", "y.csv", "shared.txt"):
        (data / name).write_text("v1")
    rows = [
        {"instance_name": "x", "input_csv": "data/x.csv"},
        {"instance_name": "y", "input_csv": "data/y.csv"},
    ]
    run(tally_flow, rows, project, inputs=["input_csv", "data/shared.txt"])

    (data / "x.csv").write_text("v2")
    after_x = run(tally_flow, rows, project, inputs=["input_csv", "data/shared.txt"])
    assert reasons(after_x) == {"x": "input changed (data/x.csv)", "y": "unchanged"}

    (data / "shared.txt").write_text("v2")
    after_shared = run(tally_flow, rows, project, inputs=["input_csv", "data/shared.txt"])
    assert set(reasons(after_shared).values()) == {"input changed (data/shared.txt)"}
    parts = record(project / "runs" / "tally" / "x")["fingerprint_parts"]
    assert set(parts["inputs"]) == {"data/x.csv", "data/shared.txt"}


def test_missing_input_is_an_error_before_anything_runs(project, tally_flow):
    """An input that does not exist is refused, naming it and the instance, before any write."""
    before = listing(project)
    with pytest.raises(ConfigError, match=r"'data/none\.csv' \(instance 'a'\) does not exist"):
        run(tally_flow, [{"instance_name": "a", "f": "data/none.csv"}], project, inputs=["f"])
    assert listing(project) == before


def test_failed_previous_attempt_reruns(project, tally_flow):
    """An instance that failed runs again next time with reason 'previous attempt failed'."""
    first = run(tally_flow, [{"instance_name": "ok"}, {"instance_name": "bad", "fail": "boom"}], project)
    assert dict(zip(first.instance, first.status, strict=True)) == {"ok": "success", "bad": "failed"}
    assert first.error[1] == "RuntimeError: asked to fail: boom"
    second = run(tally_flow, [{"instance_name": "ok"}, {"instance_name": "bad", "fail": "boom"}], project)
    assert reasons(second) == {"ok": "unchanged", "bad": "previous attempt failed"}


def test_failures_and_kernel_death_do_not_stop_the_others(project, tally_flow):
    """A failing instance and one whose kernel dies are recorded; every other instance runs."""
    rows = [{"n": i} for i in range(4)] + [{"n": 4, "fail": "x"}, {"n": 5, "die": True}]
    frame = run(tally_flow, rows, project, jobs=2)
    statuses = dict(zip(frame.instance, frame.status, strict=True))
    assert statuses == {
        "n=0,fail=null,die=null": "success",
        "n=1,fail=null,die=null": "success",
        "n=2,fail=null,die=null": "success",
        "n=3,fail=null,die=null": "success",
        "n=4,fail=x,die=null": "failed",
        "n=5,fail=null,die=true": "failed",
    }
    died = frame.set_index("instance").loc["n=5,fail=null,die=true"]
    death = {"kernel": "DeadKernelError", "fork": "DeadProcessError"}[record(Path(died.run_dir))["engine"]]
    assert died.error.startswith(death)  # the process executing the flow died: as each engine names it
    assert record(Path(died.run_dir))["status"] == "failed"


def test_raise_on_failure_lists_every_failed_instance(project, tally_flow):
    """raise_on_failure raises after all instances finished, naming each failure."""
    rows = [
        {"instance_name": "good"},
        {"instance_name": "bad1", "fail": 1},
        {"instance_name": "bad2", "fail": 2},
    ]
    with pytest.raises(ductaflow.InstancesFailedError) as info:
        run(tally_flow, rows, project, raise_on_failure=True)
    assert info.value.failed == ["bad1", "bad2"]
    assert "bad1: RuntimeError: asked to fail: 1" in str(info.value)
    assert record(project / "runs" / "tally" / "good")["status"] == "success"


def test_dotted_columns_and_base_config(project, flows):
    """Dotted columns become nested dicts merged over base_config (new_keys: mode is added); names come
    from varying columns."""
    table = pd.DataFrame({"processing.param1": [100, 200], "processing.mode": ["A", "A"]})
    base = {"processing": {"param1": 0, "window": 7}, "label": "base"}
    frame = ductaflow.run_instances(
        flows / "ok.py", table, base_config=base, new_keys=True, progress=False, export_html=False
    )
    assert list(frame.instance) == ["processing.param1=100", "processing.param1=200"]
    seen = json.loads((Path(frame.run_dir[1]) / "seen.json").read_text())["config"]
    assert seen == {"processing": {"param1": 200, "window": 7, "mode": "A"}, "label": "base"}


def test_derived_names_are_safe_short_and_stable():
    """Derived names replace unsafe characters and cut long names with a stable hash suffix."""
    from ductaflow.sources import instances_from_table

    rows = [{"path": "a/b c", "k": 1}, {"path": "x" * 200, "k": 1}]
    names = [name for name, _ in instances_from_table(rows)]
    assert names[0] == "path=a_b_c"
    assert len(names[1]) == 80 and names[1].startswith("path=xxx")
    assert names == [name for name, _ in instances_from_table(rows)]
    assert instances_from_table([{"k": 1}])[0][0] == "k=1"


@pytest.mark.parametrize(
    ("table", "error", "match"),
    [
        (
            [{"instance_name": "a"}, {"instance_name": "a"}],
            ConfigError,
            r"duplicate instance names: 'a' \(rows 0 and 1\)",
        ),
        ([{"p": 1}, {"p": 1}], ConfigError, "duplicate instance names"),
        ([{"instance_name": "../x"}], UnsafeNameError, "not allowed"),
        ([{"instance_name": "ok"}, {"p": 1}], ConfigError, "row 1 has no value"),
        ([{"a": 1, "a.b": 2}], ConfigError, "both a value and a section"),
        ("not a table", ConfigError, "DataFrame or a list of dicts"),
    ],
    ids=["duplicate-given", "duplicate-derived", "unsafe", "missing-name", "dotted-conflict", "not-a-table"],
)
def test_bad_tables_are_refused_before_anything_runs(project, flows, table, error, match):
    """Duplicate, unsafe or missing names and malformed tables raise before any write."""
    with pytest.raises(error, match=match):
        ductaflow.run_instances(flows / "ok.py", table, progress=False)
    assert listing(project) == []


def test_progress_lines_when_not_a_terminal(project, tally_flow, capsys):
    """Without a terminal, one plain line per finished instance, then the summary."""
    run(tally_flow, [{"instance_name": "a"}, {"instance_name": "b", "fail": "x"}], project, progress=True)
    out = capsys.readouterr().out
    assert "tally: 2 instances, 2 to run, 0 up to date" in out
    assert "] success     a" in out and "] failed      b" in out
    assert "RuntimeError: asked to fail: x" in out
    assert "tally: 2 instances in" in out and "1 success, 1 failed" in out


def test_progress_false_is_silent(project, tally_flow, capsys):
    """progress=False prints nothing."""
    run(tally_flow, [{"instance_name": "a"}], project, progress=False)
    assert capsys.readouterr().out == ""


def test_live_bar_on_a_terminal(project, tally_flow):
    """On a terminal the rich bar shows done/total, running, failed and skipped."""

    code = (
        "import ductaflow\n"
        f"rows = [{{'instance_name': n, 'tally': {str(project / 'tally.txt')!r}}} for n in 'abc']\n"
        f"ductaflow.run_instances({str(tally_flow)!r}, rows, jobs=2, export_html=False)\n"
    )
    status, text = run_in_terminal([sys.executable, "-c", code], cwd=project)
    assert status == 0, text
    assert "3/3" in text and "failed 0" in text and "skipped 0" in text
    assert "tally: 3 instances in" in text


def test_two_conductors_run_each_instance_once(project, tally_flow):
    """Two conductor processes on one table execute every instance exactly once between them."""
    rows = [{"instance_name": f"i{i}", "sleep": 1} for i in range(6)]
    script = conductor_script(project, tally_flow, rows, jobs=2)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], cwd=project, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(tally(project)) == [f"i{i}" for i in range(6)]
    statuses = [{r["instance"]: r["status"] for r in result_rows(out)} for out in outputs]
    for name in (f"i{i}" for i in range(6)):
        assert sorted(s[name] for s in statuses) == ["skipped", "success"]


def test_kill_9_then_rerun_resumes_exactly_the_unfinished(project, tally_flow):
    """After kill -9 no unfinished instance is 'success'; a re-run executes just those, skipping the rest."""
    rows = [{"instance_name": f"i{i}", "sleep": 1.5} for i in range(6)]
    script = conductor_script(project, tally_flow, rows, jobs=2, progress=False)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=project, stdout=subprocess.DEVNULL)
    runs = project / "runs" / "tally"
    deadline = time.monotonic() + 120
    while True:  # kill once two have finished and a later one is in flight
        statuses = [(record(d) or {}).get("status") for d in _instance_dirs(runs)]
        if statuses.count("success") >= 2 and "running" in statuses:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    states = {d.name: record(d)["status"] for d in _instance_dirs(runs)}
    for name, status in states.items():
        if status == "success":
            assert (runs / name / "done.txt").read_text() == "finished"
    finished = {name for name, status in states.items() if status == "success"}
    assert 2 <= len(finished) < 6

    frame = run(tally_flow, rows, project, jobs=2)
    by_name = dict(zip(frame.instance, zip(frame.status, frame.reason, strict=True), strict=True))
    for name in (f"i{i}" for i in range(6)):
        if name in finished:
            assert by_name[name] == ("skipped", "unchanged")
        else:
            assert by_name[name][0] == "success"
            assert by_name[name][1] in {"new", "previous attempt crashed"}
    assert any(reason == "previous attempt crashed" for _, reason in by_name.values())


def test_ctrl_c_interrupts_records_and_returns(project, tally_flow):
    """SIGINT stops new starts, interrupts running kernels, prints the summary and returns quickly."""
    rows = [{"instance_name": f"i{i}", "sleep": 30} for i in range(5)]
    script = conductor_script(project, tally_flow, rows, jobs=2)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=project, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(tally(project)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 0
    result = {r["instance"]: (r["status"], r["reason"]) for r in result_rows(out)}
    interrupted = [n for n, (status, reason) in result.items() if status == "interrupted" and reason == "new"]
    not_started = [n for n, (status, reason) in result.items() if reason == "not started"]
    assert len(interrupted) == 2 and len(not_started) == 3
    for name in interrupted:
        assert record(project / "runs" / "tally" / name)["status"] == "interrupted"
    assert "tally: 5 instances in" in out and "5 interrupted" in out  # the summary
    again = run(tally_flow, [{**r, "sleep": 0} for r in rows], project)
    assert reasons(again) == {
        name: "previous attempt interrupted" if name in interrupted else "new" for name in result
    }


def _instance_dirs(runs: Path) -> list[Path]:
    if not runs.exists():
        return []
    return [
        d for d in runs.iterdir() if d.is_dir() and not d.name.startswith(".") and (d / "run.json").exists()
    ]


def test_an_unlockable_instance_fails_alone(project, tally_flow):
    """An instance whose lock cannot be taken is reported failed; the others still run."""
    (project / "runs" / "tally" / ".ductaflow" / "b.lock").mkdir(parents=True)  # a folder, not a lock file
    frame = run(tally_flow, [{"instance_name": "a"}, {"instance_name": "b"}, {"instance_name": "c"}], project)
    statuses = dict(zip(frame.instance, frame.status, strict=True))
    assert statuses == {"a": "success", "b": "failed", "c": "success"}
    assert frame.error[1].startswith("RunDirectoryError") and "IsADirectoryError" in frame.error[1]


def test_directory_and_glob_inputs(project, tally_flow):
    """A declared directory or glob covers every file in it; a glob matching nothing is an error."""
    (project / "data" / "parts").mkdir(parents=True)
    (project / "data" / "parts" / "a.csv").write_text("1")
    (project / "data" / "b.csv").write_text("2")
    specs = ["data/parts", "data/*.csv"]
    run(tally_flow, [{"instance_name": "i"}], project, inputs=specs)
    assert reasons(run(tally_flow, [{"instance_name": "i"}], project, inputs=specs)) == {"i": "unchanged"}

    (project / "data" / "parts" / "a.csv").write_text("changed")
    assert reasons(run(tally_flow, [{"instance_name": "i"}], project, inputs=specs)) == {
        "i": "input changed (data/parts)"
    }
    (project / "data" / "c.csv").write_text("3")
    assert reasons(run(tally_flow, [{"instance_name": "i"}], project, inputs=specs)) == {
        "i": "input added (data/c.csv)"
    }
    with pytest.raises(ConfigError, match=r"'data/\*\.parquet' .*matches no file"):
        run(tally_flow, [{"instance_name": "i"}], project, inputs=["data/*.parquet"])


def _statuses_on_disk(project: Path) -> list[str]:
    """The status in each instance record under runs/tally ('?' for one being replaced)."""
    found = []
    for path in (project / "runs" / "tally").glob("[!.]*/run.json"):
        try:
            found.append(record(path.parent)["status"])
        except (OSError, ValueError, KeyError):
            found.append("?")
    return found


CONDUCTOR_MOMENTS = {  # of 12 instances, 4 at a time, the last held until the Ctrl-C
    "first record says running": lambda project: "running" in _statuses_on_disk(project),
    "first flow started": lambda project: len(tally(project)) >= 1,
    "some finished, others running": lambda project: {"success", "running"} <= {*_statuses_on_disk(project)},
    "all but the last finished": lambda project: _statuses_on_disk(project).count("success") >= 11,
}


@pytest.mark.parametrize("moment", CONDUCTOR_MOMENTS, ids=CONDUCTOR_MOMENTS)
def test_ctrl_c_at_any_moment_returns_a_result(project, tally_flow, moment):
    """Ctrl-C at any moment of a busy conductor returns its result frame with a summary, no traceback."""
    (project / "hold").write_text("")
    rows = [{"instance_name": f"i{i}"} for i in range(11)] + [
        {"instance_name": "i11", "hold": str(project / "hold")}
    ]
    script = conductor_script(project, tally_flow, rows, jobs=4)
    out, err = interrupt_when(script, project, lambda out, err: CONDUCTOR_MOMENTS[moment](project))
    assert "Traceback" not in err, err
    statuses = {r["status"] for r in result_rows(out)}
    assert statuses <= {"success", "interrupted"}
    for row in result_rows(out):
        status = record(Path(row["run_dir"]))["status"] if row["reason"] != "not started" else None
        assert status in {None, "success", "interrupted"}


def test_empty_dataframe_cells_leave_the_base_config(project, flows):
    """An empty cell in a DataFrame means "not given": the base config's value stays."""
    table = pd.DataFrame({"instance_name": ["a", "b"], "noise": [1.0, None]})
    frame = ductaflow.run_instances(flows / "ok.py", table, base_config={"noise": 5.0}, progress=False,
                                    export_html=False)  # fmt: skip
    seen = [json.loads((Path(d) / "seen.json").read_text())["config"] for d in frame.run_dir]
    assert seen == [{"noise": 1.0}, {"noise": 5.0}]


def test_names_differing_only_in_case_are_duplicates():
    """'A' and 'a' would share a folder on macOS and Windows: refused as duplicates."""
    from ductaflow.sources import instances_from_table

    with pytest.raises(ConfigError, match="differ only in case"):
        instances_from_table([{"instance_name": "A"}, {"instance_name": "a"}])
    assert [n for n, _ in instances_from_table([{"label": "x\u200dy"}, {"label": "z"}])] == [
        "label=x_y",
        "label=z",
    ]


def test_empty_input_key_declares_no_input(project, tally_flow):
    """A per-row input key holding null or "" declares no input for that row."""
    (project / "a.csv").write_text("1")
    rows = [
        {"instance_name": "a", "extra": "a.csv"},
        {"instance_name": "b", "extra": ""},
        {"instance_name": "c", "extra": None},
    ]
    run(tally_flow, rows, project, inputs=["extra"])
    again = run(tally_flow, rows, project, inputs=["extra"])
    assert set(again.reason) == {"unchanged"}
    assert record(project / "runs" / "tally" / "b")["fingerprint_parts"]["inputs"] == {}


def test_sweep_of_one_unnamed_instance_refuses_to_replace_another_configs_run(project, flows):
    """sweep() without table, grid or instance_name: a run of another config there is refused, writing
    nothing, unless replace=True; the same config, or an explicit name, runs as before."""
    (project / "config").mkdir()
    (project / "config" / "ok.json").write_text(json.dumps({"n": 1, "label": "base"}))
    options = {"progress": False, "export_html": False}
    made = ductaflow.run_instances(flows / "ok.py", [{"instance_name": "ok", "n": 3}], **options)
    assert list(made.status) == ["success"]  # named by a table: no config file recorded
    before = listing(project / "runs")
    with pytest.raises(ductaflow.RunDirectoryError, match=r"instance 'ok' .*: label=base added, n: 3 -> 1"):
        ductaflow.sweep(flows / "ok.py", config_file="config/ok.json", **options)
    with pytest.raises(ductaflow.RunDirectoryError, match="replace=True"):
        ductaflow.sweep(flows / "ok.py", config_file="config/ok.json", dry_run=True, **options)
    assert listing(project / "runs") == before
    replaced = ductaflow.sweep(flows / "ok.py", config_file="config/ok.json", replace=True, **options)
    assert list(replaced.status) == ["success"]
    again = ductaflow.sweep(flows / "ok.py", config_file="config/ok.json", **options)
    assert list(again.status) == ["skipped"]
    named = ductaflow.sweep(flows / "ok.py", config_file="config/ok.json", overrides=["n=2"],
                            instance_name="ok", **options)  # fmt: skip
    assert list(named.reason) == ["config changed (n: 1 -> 2)"]
