"""The run index: views tell the truth of the files after hand edits, two conductors, a corrupt file."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import FLOWS, listing

import ductaflow
from ductaflow.exceptions import ConfigError
from ductaflow.indexstore import INDEX_NAME, filesystem_type
from ductaflow.rows import instance_row
from ductaflow.runfolders import find_instances
from ductaflow.runindex import open_index

ROWS = [{"instance_name": "low", "x": 1, "label": "alpha"},
        {"instance_name": "mid", "x": 5, "label": "beta"},
        {"instance_name": "high", "x": 3, "label": "gamma"},
        {"instance_name": "broken", "x": 2, "label": "delta", "fail": True}]  # fmt: skip
FLOW = FLOWS / "metrics.py"


def _sweep(root: Path, rows: list[dict] = ROWS, **options) -> pd.DataFrame:
    return ductaflow.run_instances(FLOW, rows, project_root=root, progress=False, jobs=2, export_html=False,
                                   base_config={"loops": 20}, new_keys=True, **options)  # fmt: skip


def _truth(runs: Path) -> list[dict]:
    """Each instance's row read from its files alone, as the views showed them before the index."""
    return [
        {k: v for k, v in instance_row(d).items() if not k.startswith("_")} for d in find_instances([runs])
    ]


def _stored(runs: Path) -> dict[tuple[str, str], str]:
    """(step, instance) -> status, as the database holds them, without a refresh."""
    with sqlite3.connect(runs / INDEX_NAME) as db:
        found = db.execute("SELECT step, name, status FROM instances")
        return {(step, name): status for step, name, status in found}


def _indexed(runs: Path) -> list[dict]:
    rows = ductaflow.collect(runs)
    return json.loads(rows.to_json(orient="records"))


def _same(runs: Path) -> None:
    """collect() through the index equals the rows read from the files, column by column."""
    truth = pd.DataFrame(_truth(runs))
    got = ductaflow.collect(runs)
    columns = [c for c in got.columns if c in truth.columns]
    assert sorted(got.run_dir) == sorted(truth.run_dir)
    merged = got[columns].merge(truth[columns], on="run_dir", suffixes=("", "_files"))
    for column in columns:
        if column != "run_dir":
            left, right = merged[column].astype(str), merged[f"{column}_files"].astype(str)
            assert list(left) == list(right), column


def test_a_sweep_fills_the_index_as_records_are_written(project: Path) -> None:
    """After a sweep the index holds every instance already: a refresh reads nothing again."""
    frame = _sweep(project)
    assert list(frame.status) == ["success", "success", "success", "failed"]
    runs = project / "runs"
    assert (runs / INDEX_NAME).is_file()
    assert _stored(runs) == {("metrics", n): s for n, s in zip(frame.instance, frame.status, strict=True)}
    index = open_index(runs)
    assert index.enabled
    found = {row["instance"]: row for row in index.rows("metrics")}
    assert found["broken"]["status"] == "failed" and "failed after recording" in found["broken"]["error"]
    assert found["mid"]["metric.score"] == 10 and found["mid"]["config.label"] == "beta"
    assert found["low"]["host"] and found["low"]["ended"] and found["low"]["reason"] == "new"
    _same(runs)


def test_every_view_tells_the_truth_after_hand_edits(project: Path) -> None:
    """Folders deleted, copied, records and metrics edited in place by hand: no view shows the old state."""
    _sweep(project)
    runs = project / "runs"
    step = runs / "metrics"
    assert set(ductaflow.collect(runs).instance) == {"low", "mid", "high", "broken"}
    shutil.rmtree(step / "high")  # deleted by hand
    shutil.copytree(step / "low", step / "copy")  # a folder copied in by hand
    record = json.loads((step / "mid" / "run.json").read_text())
    record.update(status="failed", error={"name": "EditedError", "message": "edited by hand"})
    with open(step / "mid" / "run.json", "r+") as fh:  # edited in place: same inode
        fh.write(json.dumps(record))
        fh.truncate()
    with open(step / "low" / "metrics.json", "r+") as fh:
        metrics = json.load(fh)
        fh.seek(0)
        fh.write(json.dumps({**metrics, "score": 99}))
        fh.truncate()
    (step / "broken" / "run.json").write_text("{cut short")

    got = {Path(row["run_dir"]).name: row for row in _indexed(runs)}
    assert set(got) == {"low", "mid", "broken", "copy"}
    assert got["mid"]["status"] == "failed" and got["mid"]["error"] == "EditedError: edited by hand"
    assert got["low"]["metric.score"] == 99
    assert got["broken"]["status"] == "unreadable record"
    assert got["copy"]["status"] == "success" and got["copy"]["instance"] == "low"  # as its record says
    _same(runs)

    checks = ductaflow.check_instances([runs])
    checks.index = [Path(d).name for d in checks.run_dir]
    assert set(checks.index) == {"low", "mid", "broken", "copy"}
    assert checks.loc["mid", "status"] == "failed" and checks.loc["mid", "outdated"]
    assert checks.loc["broken", "status"] == "unreadable record"
    (step / "low" / "metrics.json").write_text(json.dumps({**metrics, "score": 98}))  # status reads records
    assert len(ductaflow.check_instances([runs])) == 4  # only: the next collect must still see this
    assert ductaflow.collect(runs).set_index("run_dir").loc[str(step / "low"), "metric.score"] == 98
    index = open_index(runs)
    assert index.query("metrics", where="score=98")[0] == 1
    assert [s["counts"] for s in index.steps()] == [{"failed": 1, "success": 2, "unreadable record": 1}]
    page = ductaflow.build_report(runs).read_text()
    data = page[page.index('id="ductaflow-data">') :].split("</script>")[0]  # what the page embeds
    assert json.loads(data.split(">", 1)[1])["steps"][0]["counts"] == {"unreadable record": 1, "success": 2,
                                                                       "failed": 1}  # fmt: skip
    assert "EditedError: edited by hand" in data


def test_the_decision_reads_the_index_but_never_skips_what_changed_by_hand(project: Path) -> None:
    """A record's fingerprint edited by hand, or its index deleted: the next sweep decides from the files."""
    _sweep(project, ROWS[:3])
    step = project / "runs" / "metrics"
    record = json.loads((step / "mid" / "run.json").read_text())
    (step / "mid" / "run.json").write_text(json.dumps({**record, "fingerprint": "edited"}))
    again = _sweep(project, ROWS[:3]).set_index("instance")
    assert again.loc["mid", "status"] == "success" and again.loc["low", "status"] == "skipped"
    assert again.loc["mid", "reason"] == "fingerprint changed"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{project / 'runs' / INDEX_NAME}{suffix}").unlink(missing_ok=True)
    assert set(_sweep(project, ROWS[:3]).status) == {"skipped"}


def test_status_sees_a_table_edited_after_its_configs_were_kept(project: Path) -> None:
    """The config hashes a table makes are kept in the index only while the table file is unchanged."""
    table = project / "table.csv"
    table.write_text("instance_name,x,label\nlow,1,alpha\nmid,5,beta\n")
    ductaflow.sweep(FLOW, table, project_root=project, progress=False, export_html=False,
                    overrides=["loops=20"], new_keys=True)  # fmt: skip
    assert list(ductaflow.check_instances(["runs"]).reason) == ["up to date", "up to date"]
    table.write_text("instance_name,x,label\nlow,1,alpha\nmid,6,beta\n")
    for _ in range(2):  # the first call keeps the new hashes, the second reads them
        checks = ductaflow.check_instances(["runs"]).set_index("instance")
        assert checks.loc["low", "reason"] == "up to date"
        assert checks.loc["mid", "reason"] == "config changed (x: 5 -> 6)" and checks.loc["mid", "outdated"]
    table.write_text("instance_name,x,label\nlow,1,alpha\n")
    assert ductaflow.check_instances(["runs"]).set_index("instance").loc["mid", "orphaned"]


def test_a_corrupt_index_is_made_again_from_the_files(project: Path) -> None:
    """Garbage in the database file: views still tell the truth, and the index works again afterwards."""
    _sweep(project, ROWS[:2])
    runs = project / "runs"
    for suffix in ("-wal", "-shm"):
        Path(f"{runs / INDEX_NAME}{suffix}").unlink(missing_ok=True)
    (runs / INDEX_NAME).write_bytes(b"this is not a database" * 100)
    shown = []
    for env in ({**os.environ, "DUCTAFLOW_INDEX": "off"}, os.environ):  # the files alone, then the index
        done = subprocess.run([sys.executable, "-m", "ductaflow", "status", "--json"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        shown.append(json.loads(done.stdout))
    assert shown[0] == shown[1] and [r["instance"] for r in shown[1]] == ["low", "mid"]
    with sqlite3.connect(runs / INDEX_NAME) as db:
        assert db.execute("SELECT count(*) FROM instances").fetchone() == (2,)


def test_two_conductors_at_once_keep_one_index_true(project: Path) -> None:
    """Two processes sweep two steps into one runs folder at the same time; the index ends exact."""
    (project / "flow").mkdir()
    for name in ("one", "two"):
        shutil.copy(FLOW, project / "flow" / f"{name}.py")
    code = ("import sys, ductaflow\n"
            "rows = [{'instance_name': f'i{k}', 'x': k, 'loops': 5} for k in range(6)]\n"
            "frame = ductaflow.run_instances(sys.argv[1], rows, progress=False, jobs=2, export_html=False,"
            " new_keys=True)\n"
            "assert set(frame.status) == {'success'}, frame\n")  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-c", code, f"flow/{n}.py"], cwd=project, text=True,
                              stderr=subprocess.PIPE) for n in ("one", "two")]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    stored = _stored(project / "runs")  # every record was noted by the process that wrote it
    assert stored == {(step, f"i{k}"): "success" for step in ("one", "two") for k in range(6)}
    index = open_index(project / "runs")
    assert [(s["step"], s["counts"]) for s in index.steps()] == [
        ("one", {"success": 6}),
        ("two", {"success": 6}),
    ]
    _same(project / "runs")


def test_query_filters_sorts_and_pages_in_sqlite(project: Path) -> None:
    """index.query answers as pandas does over the same rows; a bad term is a clear error."""
    rows = [{"instance_name": f"r{k:02d}", "x": k % 7, "label": "ab"[k % 2], "loops": 3} for k in range(20)]
    rows[4]["fail"] = True
    _sweep(project, rows)
    index = open_index(project / "runs")
    frame = ductaflow.collect(project / "runs")
    x, label, error = frame["config.x"], frame["config.label"], frame.error.fillna("")
    for where, expected in (("x>=4", frame[x >= 4]), ("label=b x<3", frame[(label == "b") & (x < 3)]),
                            ("metric.score!=4", frame[frame["metric.score"] != 4]),
                            ("r1", frame[frame.instance.str.contains("r1")]),
                            ("error~RECORDING", frame[error.str.contains("recording")])):  # fmt: skip
        count, page = index.query("metrics", where=where, sort="x", descending=True, limit=100)
        ordered = expected.sort_values(["config.x", "instance"], ascending=False)
        assert count == len(expected) and [r["instance"] for r in page] == list(ordered.instance), where
    count, page = index.query("metrics", sort="instance", offset=5, limit=5)
    assert count == 20 and [r["instance"] for r in page] == [f"r{k:02d}" for k in range(5, 10)]
    assert index.query("metrics", status="failed")[0] == 1
    with pytest.raises(ConfigError, match="names no column"):
        index.query("metrics", where=">3")
    with pytest.raises(ConfigError, match="close its quotes"):
        index.query("metrics", where='label="a')


def test_read_only_index_writes_nothing_and_follows_the_files(project: Path) -> None:
    """serve's index copies the database into memory and never writes into the runs folder."""
    _sweep(project, ROWS[:2])
    runs = project / "runs"
    before = {p: p.stat().st_mtime_ns for p in map(Path, [runs / p for p in listing(runs)])}
    index = open_index(runs, read_only=True)
    index.refresh()  # seeded from the database's main file; rows still in its WAL are read from files
    assert not index.enabled and [r["instance"] for r in index.rows()] == ["low", "mid"]
    shutil.rmtree(runs / "metrics" / "low")
    version = index.version
    assert index.refresh() >= 1 and index.version > version
    assert [r["instance"] for r in index.rows()] == ["mid"]
    after = {p: p.stat().st_mtime_ns for p in map(Path, [runs / p for p in listing(runs)])}
    mine = runs / "metrics"  # the folder whose entry this test removed
    assert {p: t for p, t in before.items() if "low" not in p.parts and p != mine} == {
        p: t for p, t in after.items() if p != mine}  # fmt: skip


def test_no_index_on_a_network_filesystem_or_when_turned_off(project: Path) -> None:
    """NFS/SMB mounts and DUCTAFLOW_INDEX=off: the views read the files, say so once, write no database."""
    mounts = ("sysfs /sys sysfs rw 0 0\n/dev/sda1 / ext4 rw 0 0\n"
              "server:/export /mnt/shared nfs4 rw,vers=4.2 0 0\n"
              "//nas/team /mnt/team\\040drive cifs rw 0 0\n")  # fmt: skip
    assert filesystem_type(Path("/mnt/shared/study/runs"), mounts) == "nfs4"
    assert filesystem_type(Path("/mnt/team drive/runs"), mounts) == "cifs"
    assert filesystem_type(Path("/mnt/sharedother"), mounts) == "ext4"
    _sweep(project, ROWS[:2])
    runs = project / "runs"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{runs / INDEX_NAME}{suffix}").unlink(missing_ok=True)
    code = "import ductaflow\nfor _ in range(3): print(len(ductaflow.collect('runs')))\n"
    env = {**os.environ, "DUCTAFLOW_INDEX": "off"}
    done = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "2", "2"]
    assert done.stderr.count("no run index") == 1 and "DUCTAFLOW_INDEX=off" in done.stderr
    assert not (runs / INDEX_NAME).exists()


def test_the_index_command_rebuilds_and_reports(project: Path) -> None:
    """`ductaflow index --rebuild` reads every instance again; a missing folder is a clear error."""
    _sweep(project, ROWS[:3])
    done = subprocess.run([sys.executable, "-m", "ductaflow", "index", "--rebuild"], cwd=project,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"3 instances in 1 steps; 3 read again; index: runs/{INDEX_NAME}"
    done = subprocess.run([sys.executable, "-m", "ductaflow", "index", "elsewhere"], cwd=project,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "'elsewhere' is not a folder" in done.stderr
    done = subprocess.run([sys.executable, "-m", "ductaflow", "status", "--limit", "2"], cwd=project,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("3 instances: 3 success")
    assert sum(line.startswith("metrics ") for line in lines) == 2
    assert lines[-1].startswith("... and 1 more not shown: --limit 0 shows every row")


def test_an_unchanged_sweep_is_answered_from_its_remembered_plan_but_sees_any_change(
    project: Path,
) -> None:
    """A sweep of files remembers its plan; a row, its base config, flow or record changed: it runs again."""
    flow = project / "flow.py"
    shutil.copy(FLOW, flow)
    table, base = project / "table.csv", project / "base.json"
    table.write_text("instance_name,x\na,1\nb,2\nc,3\n")
    base.write_text('{"x": 0, "loops": 5}')

    def sweep() -> dict[str, str]:
        frame = ductaflow.sweep(flow, table, config_file=base, project_root=project, progress=False,
                                export_html=False)  # fmt: skip
        return dict(zip(frame.instance, frame.status, strict=True))

    assert sweep() == {"a": "success", "b": "success", "c": "success"}
    assert sweep() == {"a": "skipped", "b": "skipped", "c": "skipped"}  # the first plan had no runs folder
    with sqlite3.connect(project / "runs" / INDEX_NAME) as db:
        keys = [k for (k,) in db.execute("SELECT key FROM sources")]
    assert any(k.startswith("plan:") for k in keys)  # remembered after the full plan
    assert sweep() == {"a": "skipped", "b": "skipped", "c": "skipped"}
    table.write_text("instance_name,x\na,1\nb,5\nc,3\n")
    assert sweep() == {"a": "skipped", "b": "success", "c": "skipped"}
    base.write_text('{"x": 0, "loops": 6}')
    assert set(sweep().values()) == {"success"}
    record = json.loads((project / "runs" / "flow" / "c" / "run.json").read_text())
    (project / "runs" / "flow" / "c" / "run.json").write_text(json.dumps({**record, "status": "failed"}))
    assert sweep() == {"a": "skipped", "b": "skipped", "c": "success"}
    flow.write_text(flow.read_text() + "\n# %%\nprint('changed')\n")
    assert set(sweep().values()) == {"success"}
    assert sweep() == {"a": "skipped", "b": "skipped", "c": "skipped"}


def test_odd_values_odd_filters_a_moved_folder_and_folders_that_are_not_runs(project: Path) -> None:
    """NaN in a hand-written metrics.json, empty or huge filter terms, a moved runs folder, an output_dir."""
    _sweep(project, ROWS[:2])
    runs = project / "runs"
    (runs / "metrics" / "low" / "metrics.json").write_text('{"score": NaN, "big": Infinity}')
    index = open_index(runs)
    index.refresh()
    assert index.query("metrics", where="score=null")[0] == 1  # stored as null: SQLite reads every row
    assert [s["counts"] for s in index.steps()] == [{"success": 2}]
    assert len(ductaflow.check_instances([runs])) == 2
    assert index.query("metrics", where='""')[0] == 2
    assert index.query("metrics", where="x<99999999999999999999")[0] == 2
    assert index.query("metrics", offset=10**20)[1] == []
    moved = project / "moved"
    runs.rename(moved)
    assert {Path(d).parent.parent for d in ductaflow.collect(moved).run_dir} == {moved}
    out = project / "elsewhere" / "try1"
    ductaflow.run_notebook(FLOW, {"loops": 2}, output_dir=out)
    assert not (project / INDEX_NAME).exists() and not (out.parent / INDEX_NAME).exists()
    assert len(ductaflow.collect(project / "elsewhere")) == 1
    assert not (project / "elsewhere" / INDEX_NAME).exists()  # a view pointed at it makes none there


def test_the_remembered_plan_is_keyed_by_the_table_and_base_config_given(project: Path) -> None:
    """From Python: the same rows over another base config, or fewer rows, are planned in full."""
    rows = [{"instance_name": n, "x": k} for k, n in enumerate("ab")]
    for _ in range(3):  # new, then a full plan remembered, then answered from it
        frame = _sweep(project, rows)
    assert set(frame.status) == {"skipped"}
    changed = ductaflow.run_instances(FLOW, rows[:1], project_root=project, progress=False, new_keys=True,
                                      export_html=False, base_config={"loops": 21})  # fmt: skip
    assert list(changed.instance) == ["a"] and list(changed.status) == ["success"]


def test_a_crashed_instance_is_read_once_not_at_every_refresh(project: Path) -> None:
    """A ``running`` record whose process is gone reads as crashed, and stays in the index as it is: later
    refreshes read it again only when its files change (a live one is read at every refresh)."""
    _sweep(project, ROWS[:2])
    run_dir = project / "runs" / "metrics" / "low"
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "status": "running", "pid": 999999}))
    for path in (project / "runs" / "metrics").rglob("*"):  # old enough: no file changed a moment ago
        os.utime(path, ns=(10**18, 10**18))
    index = open_index(project / "runs")
    index.refresh()
    assert ductaflow.collect(project / "runs").set_index("instance").loc["low", "status"] == "crashed"
    assert index.refresh() == 0 and index.refresh() == 0
