"""export_mlflow and `ductaflow export mlflow`: real sweeps read back from a real MLflow SQLite store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import record

import ductaflow
from ductaflow.cli import cli

pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")
from mlflow.tracking import MlflowClient

FLOW = """\
# %% tags=["parameters"]
config = {}

# %%
import os
import time

import ductaflow

lr = config.get("lr", 0.1)
loss = [round(1 / (1 + lr * epoch), 6) for epoch in range(4)]
ductaflow.record(loss=loss, score=loss[-1], best="adam", split={"train": 0.5, "test": 0.25})
os.makedirs("out/deep", exist_ok=True)
with open("out/summary.txt", "w") as fh:
    fh.write(f"lr {lr}")
with open("out/deep/detail.txt", "w") as fh:
    fh.write(f"detail {lr}")
while os.path.exists(config.get("hold", "")):  # a test keeps the instance running while this file exists
    time.sleep(0.02)
if os.path.exists(config.get("gate", "")):
    raise ValueError("gate closed")
"""
ARTIFACTS = {
    "run.json",
    "config.json",
    "metrics.json",
    "environment.json",
    "fit.ipynb",
    "fit.html",
    "log.txt",
}


def sweep(project: Path, rows: list[dict[str, Any]]) -> Any:
    """Run the fit flow on ``rows`` (instance_name, lr, gate...) in the project."""
    flow = project / "flow" / "fit.py"
    if not flow.exists():
        flow.parent.mkdir(exist_ok=True)
        flow.write_text(FLOW)
    return ductaflow.run_instances(flow, rows, progress=False)


@pytest.fixture
def swept(project: Path) -> Path:
    """Three instances of the fit flow: a and b succeed, c fails (its gate file exists)."""
    (project / "gate").write_text("closed")
    sweep(project, [
        {"instance_name": "a", "lr": 0.1, "opt.beta": 0.9, "gate": "none"},
        {"instance_name": "b", "lr": 0.2, "opt.beta": 0.8, "gate": "none"},
        {"instance_name": "c", "lr": 0.3, "opt.beta": 0.7, "gate": str(project / "gate")},
    ])  # fmt: skip
    return project / "runs" / "fit"


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database holding only its tables (made once: its migrations take 3 s)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path: Path, empty_store: Path) -> str:
    """A tracking URI of a fresh MLflow SQLite database outside the project."""
    (tmp_path / "store").mkdir()
    shutil.copy(empty_store, tmp_path / "store" / "mlflow.db")
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


def runs_by_name(store: str) -> dict[str, Any]:
    """Every active MLflow run in the store, by run name (each name once)."""
    client = MlflowClient(tracking_uri=store)
    ids = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(ids, max_results=1000)
    names = [run.info.run_name for run in found]
    assert len(names) == len(set(names)), names
    return {run.info.run_name: run for run in found}


def row_counts(store: str) -> dict[str, int]:
    """The number of rows in every table of the store's database."""
    with sqlite3.connect(store.removeprefix("sqlite:///")) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {table: db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}


def newest(store: str, run_id: str, key: str) -> tuple[dict[int, float], list[tuple[int, float]]]:
    """A metric's latest point of each step (by timestamp), and its points with the newest timestamp."""
    points = sorted(
        MlflowClient(tracking_uri=store).get_metric_history(run_id, key), key=lambda m: m.timestamp
    )
    last = [(m.step, m.value) for m in points if m.timestamp == points[-1].timestamp]
    return {m.step: m.value for m in points}, sorted(last)


def artifact_paths(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    """Every artifact file of a run, with its path in the run's artifacts."""
    found = set()
    for item in client.list_artifacts(run_id, folder):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def history(store: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """A metric's points as (step, value), in step order."""
    points = MlflowClient(tracking_uri=store).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in points)


def artifact_files(store: str) -> dict[str, int]:
    """Every artifact file beside the store's database, with its modification time (ns)."""
    root = Path(store.removeprefix("sqlite:///")).parent / "mlartifacts"
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def state(store: str) -> tuple[dict, dict, dict]:
    """The store's row counts, its artifact files' times, and every run's tags."""
    return row_counts(store), artifact_files(store), {n: r.data.tags for n, r in runs_by_name(store).items()}


def ms(iso: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


def test_each_instance_is_a_run_read_back_through_mlflow(swept: Path, store: str, project: Path, tmp_path):
    """Params, metric history with steps, tags, status, times and artifacts read back as the instance is."""
    summary = ductaflow.export_mlflow("runs", tracking_uri=store)
    assert sorted(summary.new) == ["fit/a", "fit/b", "fit/c"] and summary.updated == summary.unchanged == []
    assert summary.experiments.keys() == {"project/fit"}  # {project}/{step}
    runs = runs_by_name(store)
    assert runs.keys() == {"fit/a", "fit/b", "fit/c"}
    a, c = runs["fit/a"], runs["fit/c"]
    assert summary.runs["fit/a"] == a.info.run_id
    rec = record(swept / "a")
    assert {k: a.data.params[k] for k in ("lr", "opt.beta", "gate")} == {"lr": "0.1", "opt.beta": "0.9",
                                                                          "gate": "none"}  # fmt: skip
    metrics = json.loads((swept / "a" / "metrics.json").read_text())
    assert history(store, a.info.run_id, "loss") == list(enumerate(metrics["loss"]))
    assert a.data.metrics["score"] == metrics["score"] and a.data.metrics["split.test"] == 0.25
    assert a.data.tags["result.best"] == "adam"
    tags = a.data.tags
    assert (tags["ductaflow.step"], tags["ductaflow.instance"], tags["ductaflow.status"]) == (
        "fit",
        "a",
        "success",
    )
    assert tags["ductaflow.fingerprint"] == rec["fingerprint"] and tags["ductaflow.latest"] == "true"
    assert (
        tags["ductaflow.run_dir"] == str(swept / "a") and "mlflow.source.git.commit" not in tags
    )  # no git here
    assert (a.info.status, c.info.status) == ("FINISHED", "FAILED")
    assert c.data.tags["ductaflow.error"] == "ValueError: gate closed"
    assert (a.info.start_time, a.info.end_time) == (ms(rec["started_at"]), ms(rec["ended_at"]))
    client = MlflowClient(tracking_uri=store)
    assert {f.path for f in client.list_artifacts(a.info.run_id)} == ARTIFACTS
    (tmp_path / "down").mkdir()
    for name in ARTIFACTS:
        local = client.download_artifacts(a.info.run_id, name, dst_path=str(tmp_path / "down"))
        assert Path(local).read_bytes() == (swept / "a" / name).read_bytes(), name
    assert a.info.artifact_uri.startswith((tmp_path / "store" / "mlartifacts").as_uri())
    assert sorted(p.name for p in project.iterdir()) == ["flow", "gate", "runs"]  # nothing left in the cwd
    assert not any(f.path == "out" for f in client.list_artifacts(a.info.run_id))  # not without include


def test_exporting_again_changes_nothing(swept: Path, store: str):
    """A second export finds every run by its tags and writes no row, no metric point and no artifact."""
    first = ductaflow.export_mlflow(swept, tracking_uri=store)
    before = state(store)
    second = ductaflow.export_mlflow(swept, tracking_uri=store)
    assert second.new == second.updated == [] and sorted(second.unchanged) == ["fit/a", "fit/b", "fit/c"]
    assert second.runs == first.runs
    assert state(store) == before
    assert before[0]["metrics"] > 0 and len(before[1]) == 3 * len(ARTIFACTS)  # the failure has its HTML too
    assert "exported 0 new, 0 updated, 3 unchanged" in str(second)


def test_a_changed_config_is_a_new_run_and_the_earlier_one_is_not_latest(swept: Path, store: str, project):
    """An instance run again with another config gets a new run (params never change); the old one is kept."""
    first = ductaflow.export_mlflow(swept, tracking_uri=store)
    sweep(project, [{"instance_name": "a", "lr": 0.5, "opt.beta": 0.9, "gate": "none"}])
    second = ductaflow.export_mlflow(swept, tracking_uri=store)
    assert (
        second.new == ["fit/a"] and sorted(second.unchanged) == ["fit/b", "fit/c"] and second.superseded == 1
    )
    client = MlflowClient(tracking_uri=store)
    old, new = client.get_run(first.runs["fit/a"]), client.get_run(second.runs["fit/a"])
    assert (old.data.params["lr"], new.data.params["lr"]) == ("0.1", "0.5")
    assert (old.data.tags["ductaflow.latest"], new.data.tags["ductaflow.latest"]) == ("false", "true")
    loss = json.loads((swept / "a" / "metrics.json").read_text())["loss"]
    assert history(store, new.info.run_id, "loss") == list(enumerate(loss))
    assert history(store, old.info.run_id, "loss") != list(enumerate(loss))
    counts = row_counts(store)
    third = ductaflow.export_mlflow(swept, tracking_uri=store)
    assert len(third.unchanged) == 3 and third.superseded == 0 and row_counts(store) == counts


def test_a_new_attempt_of_the_same_fingerprint_updates_its_run(swept: Path, store: str, project):
    """The failed instance succeeding with the same config updates its run: same id, FINISHED, its end."""
    first = ductaflow.export_mlflow(swept, tracking_uri=store)
    fingerprint = record(swept / "c")["fingerprint"]
    (project / "gate").unlink()
    sweep(project, [{"instance_name": "c", "lr": 0.3, "opt.beta": 0.7, "gate": str(project / "gate")}])
    rec = record(swept / "c")
    assert rec["status"] == "success" and rec["fingerprint"] == fingerprint
    second = ductaflow.export_mlflow(swept, tracking_uri=store)
    assert second.updated == ["fit/c"] and second.new == [] and second.runs["fit/c"] == first.runs["fit/c"]
    run = MlflowClient(tracking_uri=store).get_run(second.runs["fit/c"])
    assert run.info.status == "FINISHED" and run.info.end_time == ms(rec["ended_at"])
    assert run.data.tags["ductaflow.status"] == "success"
    assert "ductaflow.error" not in run.data.tags and "mlflow.note.content" not in run.data.tags
    loss = json.loads((swept / "c" / "metrics.json").read_text())["loss"]
    assert history(store, run.info.run_id, "loss") == list(enumerate(loss))  # the same values: no point twice
    assert len(runs_by_name(store)) == 3


def test_odd_keys_and_long_values_are_renamed_and_cut_and_say_so(project: Path, store: str):
    """A key MLflow refuses is renamed, a value past 6,000 characters is cut; tags list both."""
    sweep(project, [{"instance_name": "odd", "lr(init)": 1, "note": "x" * 7000, "/abs": 2, "gate": "none"}])
    ductaflow.export_mlflow("runs", tracking_uri=store)
    run = runs_by_name(store)["fit/odd"]
    params, tags = run.data.params, run.data.tags
    assert params["lr_init_"] == "1" and params["__abs"] == "2"
    assert json.loads(tags["ductaflow.renamed"]) == {"lr_init_": "lr(init)", "__abs": "/abs"}
    assert (
        len(params["note"]) == 6000
        and params["note"].startswith("x" * 5000)
        and "config.json" in params["note"]
    )
    assert json.loads(tags["ductaflow.cut"]) == ["note"]


def test_a_running_instance_is_skipped_and_a_crashed_one_is_killed(project: Path, store: str):
    """Running: not exported (said why); its process killed, it is a KILLED run with status crashed."""
    hold = project / "hold"
    hold.write_text("")
    (project / "flow").mkdir()
    (project / "flow" / "fit.py").write_text(FLOW)
    code = ("import ductaflow\n"
            f"ductaflow.run_instances('flow/fit.py', [{{'instance_name': 'h', 'hold': {str(hold)!r}}}], "
            "progress=False)\n")  # fmt: skip
    run_json = project / "runs" / "fit" / "h" / "run.json"
    with subprocess.Popen([sys.executable, "-c", code], cwd=project, start_new_session=True) as proc:
        try:
            deadline = time.monotonic() + 120
            while not (run_json.exists() and record(run_json.parent)["status"] == "running"):
                assert proc.poll() is None and time.monotonic() < deadline, "the instance did not start"
                time.sleep(0.01)
            summary = ductaflow.export_mlflow("runs", tracking_uri=store)
            assert summary.skipped == {"fit/h": "it is running"} and summary.new == []
            assert "skipped 1" in str(summary)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
    summary = ductaflow.export_mlflow("runs", tracking_uri=store)
    assert summary.new == ["fit/h"]
    run = runs_by_name(store)["fit/h"]
    assert run.info.status == "KILLED" and run.data.tags["ductaflow.status"] == "crashed"
    assert run.info.end_time >= run.info.start_time


def test_mlflow_state_of_the_process_is_left_alone(swept: Path, store: str, monkeypatch):
    """No tracking URI set, no active run, no environment variable: MLflow's fluent state is as before."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = (mlflow.get_tracking_uri(), dict(os.environ))
    ductaflow.export_mlflow(swept, tracking_uri=store)
    assert (mlflow.get_tracking_uri(), dict(os.environ)) == before and mlflow.active_run() is None


def test_default_store_is_mlflows_own(swept: Path, project: Path, tmp_path: Path, monkeypatch):
    """MLFLOW_TRACKING_URI when set; else sqlite:///mlflow.db in the current folder, artifacts beside it."""
    uri = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert ductaflow.export_mlflow(swept).tracking_uri == uri and len(runs_by_name(uri)) == 3
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    summary = ductaflow.export_mlflow(swept, experiment="study")
    assert summary.tracking_uri == f"sqlite:///{project / 'mlflow.db'}" and summary.experiments.keys() == {
        "study"
    }
    assert sorted(p.name for p in project.iterdir()) == ["flow", "gate", "mlartifacts", "mlflow.db", "runs"]
    assert len(list((project / "mlartifacts" / "study").iterdir())) == 3


def test_no_instances_is_an_error_naming_the_folder(project: Path, tmp_path: Path):
    """A folder holding no instance says so and touches no store."""
    store = f"sqlite:///{tmp_path / 'never.db'}"
    (project / "runs" / "empty").mkdir(parents=True)
    with pytest.raises(ductaflow.ConfigError, match="no instances found under runs"):
        ductaflow.export_mlflow("runs", tracking_uri=store)
    result = CliRunner().invoke(cli, ["export", "mlflow", "runs", "--tracking-uri", store])
    assert result.exit_code == 2 and "no instances found under runs" in result.output
    assert not Path(store.removeprefix("sqlite:///")).exists()


@pytest.mark.parametrize(
    "uri", ["bogus://nowhere", "sqlite:///{file}/mlflow.db"], ids=["scheme", "not-a-folder"]
)
def test_a_bad_tracking_uri_is_an_error_naming_it(swept: Path, tmp_path: Path, uri: str):
    """A tracking URI MLflow cannot use is a ConfigError naming it; exit 2 on the command line."""
    (tmp_path / "file").write_text("a file, not a folder")
    uri = uri.format(file=tmp_path / "file")
    with pytest.raises(ductaflow.ConfigError, match=f"MLflow cannot use the tracking URI '{uri}'"):
        ductaflow.export_mlflow(swept, tracking_uri=uri)
    result = CliRunner().invoke(cli, ["export", "mlflow", str(swept), "--tracking-uri", uri])
    assert result.exit_code == 2 and "--tracking-uri" in result.output


@pytest.mark.parametrize(
    "pattern", ["", "/etc/*", "../*", "out/../../b/*"], ids=["empty", "absolute", "up", "up-inside"]
)
def test_an_include_glob_outside_the_instance_is_refused(swept: Path, store: str, pattern: str):
    """--include takes globs relative to each instance directory; anything else is an error naming it."""
    result = CliRunner().invoke(
        cli, ["export", "mlflow", "runs", "--tracking-uri", store, "--include", pattern]
    )
    assert result.exit_code == 2 and f"include {pattern!r}: give a glob relative" in result.output
    assert row_counts(store)["runs"] == 0


def test_without_mlflow_the_error_says_what_to_install(swept: Path, project: Path, tmp_path: Path):
    """In an environment without MLflow, the command exits 2 saying pip install 'ductaflow[mlflow]'."""
    store = f"sqlite:///{tmp_path / 'never.db'}"
    code = ("import sys\nsys.modules['mlflow'] = None\nfrom ductaflow.cli import main\n"
            f"main(['export', 'mlflow', 'runs', '--tracking-uri', {store!r}])\n")  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr
    assert "pip install 'ductaflow[mlflow]'" in out.stderr and "Traceback" not in out.stderr
    assert not Path(store.removeprefix("sqlite:///")).exists()


def test_command_line_exports_into_the_named_experiment(swept: Path, project: Path, store: str):
    """`export mlflow RUNS/step --experiment NAME --include GLOB` prints the summary; again, all unchanged."""
    args = ["export", "mlflow", "runs/fit", "--tracking-uri", store, "--experiment", "study-{step}",
            "--include", "out/*.txt"]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith(
        f"exported 3 new, 0 updated, 0 unchanged to {store} (experiment study-fit)"
    )
    for again in (args, args[:-2]):  # the same; then without --include: the files it added stay
        result = CliRunner().invoke(cli, again)
        assert "exported 0 new, 0 updated, 3 unchanged" in result.stdout and result.exit_code == 0
    client = MlflowClient(tracking_uri=store)
    assert client.get_experiment_by_name("study-fit") is not None
    run_id = runs_by_name(store)["fit/b"].info.run_id
    assert [f.path for f in client.list_artifacts(run_id, "out")] == ["out/summary.txt"]
    assert Path(client.download_artifacts(run_id, "out/summary.txt", str(project))).read_text() == "lr 0.2"


def test_an_export_cut_short_is_completed_by_the_next(swept: Path, tmp_path: Path, store: str):
    """Artifacts that cannot be written fail each instance (exit 1, runs left RUNNING); fixed, the next
    export completes those same runs."""
    (tmp_path / "file").write_text("a file, not a folder")
    args = ["export", "mlflow", "runs", "--tracking-uri", store, "--artifact-location",
            (tmp_path / "file" / "artifacts").as_uri()]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "3 failed" in result.stdout and "failed fit/a:" in result.stderr
    cut = runs_by_name(store)
    assert {run.info.status for run in cut.values()} == {"RUNNING"} and len(cut) == 3
    (tmp_path / "file").unlink()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and "exported 0 new, 3 updated, 0 unchanged" in result.stdout
    done = runs_by_name(store)
    assert {n: r.info.run_id for n, r in done.items()} == {n: r.info.run_id for n, r in cut.items()}
    assert {r.info.status for r in done.values()} == {"FINISHED", "FAILED"}
    client = MlflowClient(tracking_uri=store)
    assert {f.path for f in client.list_artifacts(done["fit/b"].info.run_id)} == ARTIFACTS
    assert len(history(store, done["fit/b"].info.run_id, "loss")) == 4  # logged once, before the cut
    assert "3 unchanged" in CliRunner().invoke(cli, args).stdout


VALUES_FLOW = """\
# %% tags=["parameters"]
config = {}

# %%
import json

import ductaflow

with open(config["values"]) as fh:
    ductaflow.record(**json.load(fh))
"""


def test_a_new_attempt_shows_its_values_as_the_latest(project: Path, store: str):
    """Attempts of one fingerprint recording 20, 21, then 20 again (and a series changed, then shorter), each
    exported: MLflow's latest value, and each step's latest point of a series, are the attempt's."""
    (project / "flow").mkdir()
    (project / "flow" / "values.py").write_text(VALUES_FLOW)
    values = project / "values.json"
    client = MlflowClient(tracking_uri=store)
    runs, fingerprints = set(), set()
    for n, recorded in enumerate([{"v": 20, "same": 7, "s": [1, 2, 3, 4]},
                                  {"v": 21, "same": 7, "s": [1, 2, 9, 4]},
                                  {"v": 20, "same": 7, "s": [5, 6]}]):  # fmt: skip
        values.write_text(json.dumps(recorded))
        row = {"instance_name": "x", "values": str(values)}
        ductaflow.run_instances("flow/values.py", [row], force=True, progress=False)
        done = ductaflow.export_mlflow("runs", tracking_uri=store)
        assert (done.new if n == 0 else done.updated) == ["values/x"], done
        metrics = json.loads((project / "runs" / "values" / "x" / "metrics.json").read_text())
        run = client.get_run(done.runs["values/x"])
        assert (run.data.metrics["v"], run.data.metrics["same"]) == (metrics["v"], metrics["same"]) == (
            recorded["v"], 7)  # fmt: skip
        latest, last = newest(store, run.info.run_id, "s")
        assert last == list(enumerate(metrics["s"])) and [latest[i] for i in range(len(last))] == metrics["s"]
        assert run.data.tags["ductaflow.series.s.length"] == str(len(metrics["s"]))
        runs.add(run.info.run_id)
        fingerprints.add(record(project / "runs" / "values" / "x")["fingerprint"])
    assert len(runs) == len(fingerprints) == 1
    run_id = runs.pop()
    by_time = sorted(client.get_metric_history(run_id, "v"), key=lambda m: m.timestamp)
    assert [m.value for m in by_time] == [20, 21, 20] and history(store, run_id, "same") == [(0, 7)]
    assert newest(store, run_id, "s")[0] == {0: 5, 1: 6, 2: 9, 3: 4}  # steps 2 and 3: the longer attempt's
    assert (
        client.get_run(run_id).data.metrics["s"] == 4
    )  # MLflow's latest is at the highest step: see the tag
    before = state(store)
    again = ductaflow.export_mlflow("runs", tracking_uri=store)
    assert again.unchanged == ["values/x"] and state(store) == before


def test_an_include_glob_of_a_folder_logs_the_files_under_it(swept: Path, store: str, project: Path):
    """`--include 'out/**'` logs every file under out/ (on Python 3.11 and 3.12 that glob matches only the
    folders); a glob matching no file in any instance is said, by the command and in the summary."""
    args = ["export", "mlflow", "runs", "--tracking-uri", store, "--include", "out/**", "--include", "*.png"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "include '*.png' matched no file" in result.stdout and "'out/**' matched" not in result.stdout
    client = MlflowClient(tracking_uri=store)
    run_id = runs_by_name(store)["fit/b"].info.run_id
    assert artifact_paths(client, run_id) == ARTIFACTS | {"out/summary.txt", "out/deep/detail.txt"}
    local = client.download_artifacts(run_id, "out/deep/detail.txt", str(project))
    assert Path(local).read_text() == "detail 0.2"
    summary = ductaflow.export_mlflow("runs", tracking_uri=store, include=["out", "nothing/*", "*.png"])
    assert summary.unmatched == ["nothing/*", "*.png"] and len(summary.unchanged) == 3  # out: the same files
    assert str(summary).endswith("include 'nothing/*' matched no file; include '*.png' matched no file")
