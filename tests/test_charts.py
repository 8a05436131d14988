"""chart_data over real runs and over fabricated large steps: what each chart gets, and what it leaves out."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FLOWS, record

import ductaflow
from ductaflow.charts import (
    MAX_BARS,
    MAX_CATEGORIES,
    MAX_LINE_POINTS,
    MAX_LINES,
    MAX_POINTS,
    chart_data,
    charts_js,
    pack_lanes,
    plotly_js,
)
from ductaflow.results import aggregate_rows, collect_rows

ROWS = [{"instance_name": f"{method}-{lr}", "lr": lr, "method": method, "epochs": 4 + int(10 * lr)}
        for method in ("adam", "sgd") for lr in (0.1, 0.2, 0.4)]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Step ``train``: six instances recording a loss per epoch, and one that fails after recording.

    Step ``rep``: two rows, three replicates each.
    """
    root = tmp_path_factory.mktemp("charts")
    options: dict[str, Any] = {"project_root": root, "progress": False, "jobs": 3, "export_html": False}
    flow = FLOWS / "records_series.py"
    rows = [*ROWS, {"instance_name": "diverged", "lr": 0.3, "method": "adam", "fail": True}]
    frame = ductaflow.run_instances(flow, rows, step_name="train", **options)
    assert sorted(frame.status) == ["failed"] + ["success"] * 6
    rows = [{"instance_name": f"lr{lr}", "lr": lr} for lr in (0.1, 0.5)]
    ductaflow.run_instances(flow, rows, step_name="rep", replicates=3, **options)
    return root / "runs"


def metrics_of(run_dir: str) -> dict[str, Any]:
    """What the instance recorded, read from its metrics.json."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def test_columns_defaults_and_sample_of_a_real_sweep(runs: Path) -> None:
    """Config columns, scalar metrics and series told apart; the default axes vary; every instance sampled."""
    rows = collect_rows(runs, "train")
    data = chart_data(rows)
    assert set(data["configs"]) == {"config.lr", "config.method", "config.epochs", "config.fail"}
    assert data["metrics"] == ["metric.score", "metric.epochs"] and data["series"] == ["metric.loss"]
    assert {"config.lr", "config.epochs"} <= set(data["numeric"]) and "config.method" not in data["numeric"]
    assert (data["x"], data["y"]) == ("config.lr", "metric.score")
    sample = data["sample"]
    assert sample["of"] == sample["shown"] == 7
    by_name = dict(zip(sample["columns"]["instance"], sample["columns"]["metric.score"], strict=True))
    assert by_name == {row["instance"]: metrics_of(row["run_dir"])["score"] for row in rows}
    assert json.loads(json.dumps(data, allow_nan=False)) == data  # plain JSON


def test_categories_hold_the_mean_and_spread_of_successes(runs: Path) -> None:
    """A text column: per category, mean ± sample std and n of each metric over its successful instances."""
    rows = collect_rows(runs, "train")
    method = chart_data(rows)["categories"]["config.method"]
    assert method["labels"] == ["adam", "sgd"] and method["count"] == [4, 3] and method["dropped"] == 0
    for i, label in enumerate(method["labels"]):
        scores = [metrics_of(r["run_dir"])["score"] for r in rows
                  if r["config.method"] == label and r["status"] == "success"]  # fmt: skip
        stats = method["stats"]["metric.score"]
        assert stats["n"][i] == 3 and math.isclose(stats["mean"][i], statistics.fmean(scores))
        assert math.isclose(stats["std"][i], statistics.stdev(scores))


def test_series_are_the_recorded_lists(runs: Path) -> None:
    """Each instance's loss per epoch, as recorded, failed instance included."""
    rows = collect_rows(runs, "train")
    lines = chart_data(rows)["lines"]["metric.loss"]
    assert lines["of"] == lines["shown"] == 7 and not lines["thinned"]
    for name, xs, ys in zip(lines["instance"], lines["x"], lines["y"], strict=True):
        loss = metrics_of(str(runs / "train" / name))["loss"]
        assert ys == loss and xs == list(range(len(loss)))


def test_timeline_bars_are_the_recorded_runs_on_lanes_that_never_overlap(runs: Path) -> None:
    """One bar per instance from started_at to ended_at; a lane's bars never overlap; lanes name the host."""
    rows = collect_rows(runs, "train")
    timeline = chart_data(rows)["timeline"]
    assert timeline["of"] == 7 and not timeline["merged"] and timeline["count"] == [1] * 7
    host = record(Path(rows[0]["run_dir"]))["host"]
    assert all(lane.startswith(f"{host}/") for lane in timeline["lanes"]) and len(timeline["lanes"]) <= 3
    for i, name in enumerate(timeline["label"]):
        run = record(runs / "train" / name)
        start, end = (datetime.fromisoformat(run[k]).timestamp() * 1000 for k in ("started_at", "ended_at"))
        assert math.isclose(timeline["start"][i], start) and math.isclose(timeline["end"][i], end)
        assert timeline["status"][i] == run["status"]
    for lane in range(len(timeline["lanes"])):
        bars = zip(timeline["start"], timeline["end"], timeline["lane"], strict=True)
        spans = sorted((start, end) for start, end, n in bars if n == lane)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_replicates_are_aggregated_per_row(runs: Path) -> None:
    """A step with replicates: each row's shared config value and its metric's mean, std and n."""
    rows = collect_rows(runs, "rep")
    replicates = chart_data(rows)["replicates"]
    columns = replicates["columns"]
    assert replicates["of"] == 2 and sorted(columns["replicate_of"]) == ["lr0.1", "lr0.5"]
    for i, of in enumerate(columns["replicate_of"]):
        scores = [metrics_of(r["run_dir"])["score"] for r in rows if r["replicate_of"] == of]
        assert columns["config.lr"][i] == float(of.removeprefix("lr")) and columns["metric.score.n"][i] == 3
        assert math.isclose(columns["metric.score.mean"][i], statistics.fmean(scores))
        assert math.isclose(columns["metric.score.std"][i], statistics.stdev(scores))
    assert chart_data(rows, now=0, replicates=aggregate_rows(rows)) == chart_data(rows, now=0)  # given or not
    assert chart_data(collect_rows(runs, "train"))["replicates"] is None


def fabricated(count: int, epochs: int = 3, categories: int = 3, failing: int = 7) -> list[dict[str, Any]]:
    """Rows as the run index gives them: ``count`` instances run back to back by four workers.

    One in ``failing`` fails; each records a score and a loss of ``epochs`` values.
    """
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        began = start + timedelta(seconds=i // 4)
        status = "failed" if i % failing == 1 else "success"
        rows.append({"step": "big", "instance": f"i{i}", "status": status,
                     "started": began.isoformat(), "ended": (began + timedelta(seconds=0.9)).isoformat(),
                     "duration": 0.9, "host": "node", "pid": 1, "replicate_of": None,
                     "config.x": i % 100, "config.kind": f"k{i % categories}", "metric.score": math.sin(i),
                     "metric.loss": [1 / (e + 1) for e in range(epochs)]})  # fmt: skip
    return rows


def test_a_large_step_is_drawn_from_a_bounded_sample() -> None:
    """20,000 instances: a few thousand points, MAX_LINES thinned lines, MAX_BARS bars, the extremes kept."""
    rows = fabricated(20_000, epochs=500, categories=150)
    rows[12_345]["metric.score"], rows[6_789]["metric.score"] = 99.0, -99.0  # off the every-k-th grid
    data = chart_data(rows)
    sample = data["sample"]
    assert sample["of"] == 20_000 and MAX_POINTS <= sample["shown"] <= MAX_POINTS + 2
    assert {"i12345", "i6789"} <= set(sample["columns"]["instance"])
    lines = data["lines"]["metric.loss"]
    assert lines["of"] == 20_000 and lines["shown"] == MAX_LINES and lines["thinned"]
    assert all(len(ys) == MAX_LINE_POINTS and xs[0] == 0 and xs[-1] == 499 for xs, ys in
               zip(lines["x"], lines["y"], strict=True))  # fmt: skip
    timeline = data["timeline"]
    assert timeline["merged"] and len(timeline["start"]) <= MAX_BARS and sum(timeline["count"]) == 20_000
    assert timeline["lanes"] == ["node/0", "node/1", "node/2", "node/3"]
    kinds = data["categories"]["config.kind"]
    assert len(kinds["labels"]) == MAX_CATEGORIES and kinds["dropped"] == 50
    assert len(json.dumps(data)) < 1_500_000


def test_alternating_statuses_still_merge_into_mixed_bars() -> None:
    """When failures break every run of successes, bars of any status merge and count each status."""
    rows = fabricated(MAX_BARS * 3, failing=3)  # one in three of each lane
    timeline = chart_data(rows)["timeline"]
    assert len(timeline["start"]) <= MAX_BARS and sum(timeline["count"]) == MAX_BARS * 3
    mixed = timeline["status"].index("mixed")
    assert "success" in timeline["label"][mixed] and "failed" in timeline["label"][mixed]
    assert len(timeline["start"]) > MAX_BARS / 4  # merged no further than needed


def test_lanes_pack_overlapping_runs_of_a_host_greedily() -> None:
    """Each run takes the lowest lane of its host free when it starts; hosts never share a lane."""
    lanes, placed = pack_lanes(
        [("b", 0, 10), ("b", 1, 3), ("b", 4, 6), ("b", 10, 12), ("a", 0, 1), ("b", 2, 5)]
    )
    assert lanes == ["a/0", "b/0", "b/1", "b/2"]
    assert [lanes[p] for p in placed] == ["b/0", "b/1", "b/1", "b/0", "a/0", "b/2"]


def test_nan_and_odd_values_stay_plain_json() -> None:
    """NaN metrics, a list config and a true/false column: finite JSON, labels for categories."""
    rows = fabricated(4)
    rows[0]["metric.score"], rows[1]["metric.loss"] = float("nan"), [1.0, float("nan"), 0.5]
    rows[2]["config.kind"], rows[3]["config.kind"] = [1, 2], True
    data = chart_data(rows)
    json.dumps(data, allow_nan=False)
    assert data["categories"]["config.kind"]["labels"] == ["[1,2]", "k0", "k1", "true"]
    assert data["sample"]["columns"]["metric.score"][0] is None
    assert data["lines"]["metric.loss"]["y"][1] == [1.0, None, 0.5]


def test_plotly_and_the_charts_script_ship_with_the_package() -> None:
    """plotly.min.js is found in the plotly package (read once) and charts.js defines DuctaflowCharts."""
    assert plotly_js().startswith("/**\n* plotly.js v") and plotly_js() is plotly_js()
    assert "</script" not in plotly_js().lower()  # safe to inline
    assert "root.DuctaflowCharts = {render}" in charts_js()


def test_a_series_with_a_nan_is_drawn_with_a_gap(tmp_path: Path) -> None:
    """A NaN recorded in a series (null in metrics.json) leaves a gap; the series is still drawn."""
    flow = tmp_path / "flow.py"
    flow.write_text('# %% tags=["parameters"]\nconfig = {}\n# %%\nimport ductaflow\n'
                    'ductaflow.record(loss=[0.9, float("nan"), 0.3])\n')  # fmt: skip
    ductaflow.run_instances(flow, [{"instance_name": "a"}], project_root=tmp_path, progress=False,
                            export_html=False)  # fmt: skip
    rows = collect_rows(tmp_path / "runs", "flow")
    assert metrics_of(str(tmp_path / "runs" / "flow" / "a"))["loss"] == [0.9, None, 0.3]
    data = chart_data(rows)
    assert data["series"] == ["metric.loss"] and data["lines"]["metric.loss"]["y"] == [[0.9, None, 0.3]]
