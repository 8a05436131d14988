"""Seeds and replicates: every instance's seed is stable and its own; replicates differ by seed only."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FLOWS, record

import ductaflow
from ductaflow import ConfigError
from ductaflow.seeds import SEED_KEY, instance_seed
from ductaflow.sources import planned_instances, rebuild_configs

FLOW = FLOWS / "records_seed.py"


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_derived_seeds_are_stable_in_range_and_distinct_across_1000_instances() -> None:
    """1,000 names give 1,000 different seeds below 2**32; another interpreter derives the same ones."""
    names = [f"noise={i / 10},mode={'AB'[i % 2]}" for i in range(1000)]
    seeds = [instance_seed(0, name) for name in names]
    assert len(set(seeds)) == 1000 and all(0 <= s < 2**32 for s in seeds)
    code = f"from ductaflow.seeds import instance_seed; print([instance_seed(0, n) for n in {names!r}])"
    env = {**os.environ, "PYTHONHASHSEED": "123"}  # str hashes differ between processes: seeds must not
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(done.stdout) == seeds
    assert [instance_seed(7, n) for n in names[:50]] != seeds[:50]  # another sweep seed, other seeds


def test_a_sweeps_seeds_are_stable_across_runs_and_match_script_mode(project: Path) -> None:
    """ductaflow.seed() in a real sweep: the same in a second run, distinct, as recorded, as a script gets."""
    rows = [{"x": 1}, {"x": 2}, {"x": 3}]
    first = ductaflow.run_instances(FLOW, rows, progress=False, jobs=2)
    assert list(first.status) == ["success"] * 3
    runs = project / "runs" / "records_seed"
    seen = {name: _metrics(runs / name)["seed"] for name in first.instance}
    assert len(set(seen.values())) == 3
    for name, seed in seen.items():
        assert seed == instance_seed(0, name) == record(runs / name)["seed"]
        assert SEED_KEY not in record(runs / name)["config"]  # no sweep seed given: configs as before
    again = ductaflow.run_instances(FLOW, rows, progress=False, jobs=2, force=True)
    assert list(again.reason) == ["forced"] * 3
    assert {name: _metrics(runs / name)["seed"] for name in again.instance} == seen
    name = "x=2"  # the same instance name as a plain script with --output-dir
    (project / "x2.json").write_text(json.dumps({"x": 2}))
    command = [sys.executable, str(FLOW), "--config", "x2.json", "--output-dir", f"elsewhere/{name}"]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _metrics(project / "elsewhere" / name)["seed"] == seen[name]


def test_a_given_sweep_seed_is_in_each_config_and_a_script_run_of_that_config_gets_it(project: Path) -> None:
    """seed=7: each config holds ductaflow_seed (its instance's seed); the flow run as a script reads it."""
    frame = ductaflow.run_instances(FLOW, [{"x": 1}, {"x": 2}], seed=7, progress=False, jobs=2)
    run_dir = project / "runs" / "records_seed" / "x=1"
    expected = instance_seed(7, "x=1")
    assert record(run_dir)["config"][SEED_KEY] == expected == record(run_dir)["seed"]
    assert _metrics(run_dir)["seed"] == expected != instance_seed(0, "x=1")
    command = [sys.executable, str(FLOW), "--config", str(run_dir / "config.json"), "--output-dir", "other/a"]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _metrics(project / "other" / "a")["seed"] == expected  # the config's seed, not the folder's
    assert list(frame.status) == ["success"] * 2
    zero = ductaflow.run_instances(FLOW, [{"x": 1}, {"x": 2}], seed=0, progress=False, dry_run=True)
    assert list(zero.reason) == [f"config changed (ductaflow_seed: {instance_seed(7, n)} -> "
                                 f"{instance_seed(0, n)})" for n in ("x=1", "x=2")]  # fmt: skip


def test_seed_outside_a_run_comes_from_the_instance_name_or_default(tmp_path: Path) -> None:
    """A plain script: the config's instance_name names its seed; without one, the seed of 'default'."""
    (tmp_path / "named.json").write_text(json.dumps({"instance_name": "north"}))
    env = {k: v for k, v in os.environ.items() if k != "DUCTAFLOW_RUN_DIR"}
    for args, name in ((["--config", "named.json"], "north"), ([], "default")):
        done = subprocess.run([sys.executable, str(FLOW), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"seed {instance_seed(0, name)}" in done.stdout


def test_a_debug_copy_draws_the_seed_of_its_instance(tmp_path: Path) -> None:
    """In runs/<step>/.debug-<instance>/ (a debug notebook's folder), seed() is the instance's seed."""
    from ductaflow.debug import debug_dir

    env = {**os.environ, "DUCTAFLOW_RUN_DIR": str(debug_dir(tmp_path / "runs" / "s" / "north"))}
    code = "import ductaflow; print(ductaflow.seed())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(done.stdout) == instance_seed(0, "north")


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with 2 rows x 3 replicates of the seed flow, run from a config file (config_source)."""
    root = tmp_path_factory.mktemp("replicated")
    (root / "config").mkdir()
    (root / "config" / "base.json").write_text(json.dumps({"x": 0}))
    frame = ductaflow.sweep(FLOW, grid={"x": [10, 20]}, config_file=root / "config" / "base.json",
                            replicates=3, project_root=root, progress=False, jobs=3)  # fmt: skip
    assert list(frame.instance) == [f"x={x}-r{i}" for x in (10, 20) for i in range(3)]
    assert list(frame.status) == ["success"] * 6
    return root


def test_replicates_are_collected_with_their_row_and_differ_only_by_seed(replicated: Path) -> None:
    """collect: replicate 0-2 and replicate_of per row, distinct seeds, the same config but for nothing."""
    frame = ductaflow.collect(replicated / "runs").set_index("instance")
    assert list(frame.loc[[f"x=10-r{i}" for i in range(3)], "replicate"]) == [0, 1, 2]
    assert set(frame.replicate_of) == {"x=10", "x=20"}
    assert frame.loc["x=20-r1", "replicate_of"] == "x=20" and frame.loc["x=20-r1", "config.x"] == 20
    assert frame.seed.nunique() == 6 and (frame.seed == frame["metric.seed"]).all()
    runs = replicated / "runs" / "records_seed"
    configs = {json.dumps(record(runs / f"x=10-r{i}")["config"]) for i in range(3)}
    assert len(configs) == 1  # no sweep seed given: the replicates' configs are the same


def test_aggregate_replicates_gives_mean_std_and_n_per_row(replicated: Path) -> None:
    """aggregate_replicates: one row per replicated row, the metric's mean, sample std and count."""
    frame = ductaflow.collect(replicated / "runs")
    summary = ductaflow.aggregate_replicates(frame).set_index("replicate_of")
    scores = list(frame[frame.replicate_of == "x=10"]["metric.score"])
    assert summary.loc["x=10", "metric.score.mean"] == pytest.approx(statistics.fmean(scores))
    assert summary.loc["x=10", "metric.score.std"] == pytest.approx(statistics.stdev(scores))
    assert summary.loc["x=10", "metric.score.n"] == 3 and summary.loc["x=10", "succeeded"] == 3
    assert summary.loc["x=20", "config.x"] == 20
    from_path = ductaflow.aggregate_replicates(replicated / "runs").set_index("replicate_of")
    assert from_path.loc["x=20", "metric.score.mean"] == summary.loc["x=20", "metric.score.mean"]


def test_the_report_shows_each_rows_replicate_aggregate(replicated: Path, browser) -> None:
    """The report page of a replicated step has a table of mean ± std (n) per row."""
    ductaflow.build_report(replicated / "runs")
    frame = ductaflow.collect(replicated / "runs")
    scores = list(frame[frame.replicate_of == "x=20"]["metric.score"])
    page = browser.new_page()
    page.goto((replicated / "runs" / "index.html").as_uri())
    cell = page.locator("table.replicates tr[data-row='x=20'] td[data-metric='metric.score']")
    mean, std = statistics.fmean(scores), statistics.stdev(scores)
    assert cell.inner_text() == f"{float(f'{mean:.6g}'):g} ± {float(f'{std:.6g}'):g} (n=3)"
    assert page.locator("table.replicates tr.replicate-row").count() == 2


def test_a_replicated_sweep_is_up_to_date_in_status_and_a_second_run(replicated: Path) -> None:
    """status rebuilds the replicated sweep from its record; running it again runs nothing."""
    checks = ductaflow.check_instances([replicated / "runs"])
    assert list(checks.reason) == ["up to date"] * 6
    again = ductaflow.sweep(FLOW, grid={"x": [10, 20]}, config_file=replicated / "config" / "base.json",
                            replicates=3, project_root=replicated, progress=False, dry_run=True)  # fmt: skip
    assert list(again.status) == ["skipped"] * 6


def test_a_seeded_sweep_is_up_to_date_and_a_changed_seed_reruns(project: Path) -> None:
    """sweep(seed=5): status says up to date; the same sweep with seed=6 would run each instance again."""
    (project / "base.json").write_text(json.dumps({"x": 0}))
    options = {"grid": {"x": [1, 2]}, "config_file": "base.json", "progress": False}
    assert list(ductaflow.sweep(FLOW, seed=5, **options).status) == ["success"] * 2
    assert list(ductaflow.check_instances(["runs"]).reason) == ["up to date"] * 2
    assert list(ductaflow.sweep(FLOW, seed=5, dry_run=True, **options).status) == ["skipped"] * 2
    other = ductaflow.sweep(FLOW, seed=6, dry_run=True, **options)
    assert all(reason.startswith("config changed (ductaflow_seed:") for reason in other.reason)


def test_replicates_and_seeds_in_the_rebuilt_configs_match_the_plan(project: Path) -> None:
    """rebuild_configs gives the names and configs (seeds included) that the conductor plans."""
    (project / "base.json").write_text(json.dumps({"x": 0}))
    source = {"config_file": "base.json", "grid": {"x": [1, 2]}, "replicates": 2, "seed": 3}
    rebuilt = rebuild_configs(source, project)
    planned = planned_instances([{"x": 1}, {"x": 2}], base_config={"x": 0}, replicates=2, seed=3)
    assert rebuilt == {p.name: p.config for p in planned}
    assert rebuilt["x=2-r1"] == {"x": 2, SEED_KEY: instance_seed(3, "x=2-r1")}


BAD = {
    "zero replicates": ({"replicates": 0}, "replicates must be a whole number, 1 or more"),
    "replicates as text": ({"replicates": "3"}, "replicates must be a whole number"),
    "a float seed": ({"seed": 1.5}, "seed must be a whole number"),
    "a bool seed": ({"seed": True}, "seed must be a whole number"),
}


@pytest.mark.parametrize(("given", "message"), BAD.values(), ids=BAD.keys())
def test_bad_replicates_or_seed_are_refused_before_anything_runs(project: Path, given: dict,
                                                                 message: str) -> None:  # fmt: skip
    """replicates and seed must be whole numbers: a ConfigError naming the argument, nothing written."""
    with pytest.raises(ConfigError, match=message):
        ductaflow.run_instances(FLOW, [{"x": 1}], progress=False, **given)
    assert not (project / "runs").exists()


def test_a_replicate_name_too_long_for_a_folder_is_refused(project: Path) -> None:
    """A 199-character row name would make a 202-character replicate folder: refused, nothing written."""
    rows = [{"instance_name": "a" * 199, "x": 1}]
    with pytest.raises(ductaflow.UnsafeNameError, match="replicate's instance name"):
        ductaflow.run_instances(FLOW, rows, replicates=2, progress=False)
    assert not (project / "runs").exists()


def test_cli_seed_and_replicates(project: Path) -> None:
    """ductaflow run --replicates 2 --seed 4: two instances, each config with its own seed."""
    command = [sys.executable, "-m", "ductaflow", "run", str(FLOW), "-o", "x=1", "--replicates", "2",
               "--seed", "4", "--no-html"]  # fmt: skip
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for i in range(2):
        run_dir = project / "runs" / "records_seed" / f"default-r{i}"
        assert record(run_dir)["replicate"] == i and record(run_dir)["replicate_of"] == "default"
        assert _metrics(run_dir)["seed"] == instance_seed(4, f"default-r{i}")
    again = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "success:" not in again.stdout  # up to date: nothing ran


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_numpy_would_refuse_is_refused_before_anything_runs(seed: int) -> None:
    """ductaflow_seed must lie in [0, 2**32), what numpy's generators take."""
    from ductaflow.exceptions import ConfigError
    from ductaflow.parameters import check_config, read_parameters

    with pytest.raises(ConfigError, match=r"'ductaflow_seed' of flow/x.py is .*from 0 to 4294967295"):
        check_config(read_parameters("config = {}"), {"ductaflow_seed": seed}, "flow/x.py")
    check_config(read_parameters("config = {}"), {"ductaflow_seed": 2**32 - 1}, "flow/x.py")
