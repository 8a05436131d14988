"""The report's charts and table in a real browser, from file:// with the network blocked, small and large."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FLOWS

import ductaflow
from ductaflow.charts import MAX_BARS, MAX_POINTS

CHARTS = ("metric", "series", "parallel", "timeline")
# What each chart of a step drew: marks counted in plotly's SVG, and what the parallel coordinates hold.
DRAWN = """node => {
  const box = kind => node.querySelector(`.df-chart-${kind}`);
  const plot = kind => box(kind).querySelector(".js-plotly-plot");
  const dims = plot("parallel") && plot("parallel").data[0].dimensions;
  return {points: box("metric").querySelectorAll(".scatterlayer .point").length,
          errorbars: box("metric").querySelectorAll(".errorbar").length,
          x: [...box("metric").querySelectorAll(".xtick text")].map(t => t.textContent),
          xtitle: box("metric").querySelector(".xtitle").textContent,
          ytitle: box("metric").querySelector(".ytitle").textContent,
          y: plot("metric").data.map(trace => trace.y),
          lines: box("series") && box("series").querySelectorAll(".scatterlayer .js-line").length,
          axes: dims && dims.map(d => d.label), lines_parallel: dims && dims[0].values.length,
          parallel_svg: box("parallel") && box("parallel").querySelectorAll(".parcoords .y-axis").length,
          bars: box("timeline").querySelectorAll(".barlayer .point").length,
          notes: [...node.querySelectorAll(".df-note")].map(p => p.textContent).join(" ")};
}"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Step ``train``: six instances recording a loss per epoch and one failing after recording;
    step ``rep``: two rows, three replicates each. The report is built."""
    root = tmp_path_factory.mktemp("report_charts")
    options: dict[str, Any] = {"project_root": root, "progress": False, "jobs": 3, "export_html": False}
    flow = FLOWS / "records_series.py"
    rows = [{"instance_name": f"{method}-{lr}", "lr": lr, "method": method, "epochs": 4 + int(10 * lr)}
            for method in ("adam", "sgd") for lr in (0.1, 0.2, 0.4)]  # fmt: skip
    rows.append({"instance_name": "diverged", "lr": 0.3, "method": "adam", "fail": True})
    ductaflow.run_instances(flow, rows, step_name="train", **options)
    rows = [{"instance_name": f"lr{lr}", "lr": lr} for lr in (0.1, 0.5)]
    ductaflow.run_instances(flow, rows, step_name="rep", replicates=3, **options)
    ductaflow.build_report(root / "runs")
    return root / "runs"


def open_offline(browser, report: Path, wait_until: str = "load") -> tuple[Any, list[str], list[str]]:
    """The report opened from file:// with every other request aborted; those attempted, and page errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    attempted: list[str] = []
    errors: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith("file:"):
            request_route.continue_()
        else:
            attempted.append(url)
            request_route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(report.as_uri(), wait_until=wait_until)
    return page, attempted, errors


def charts_of(page: Any, step: str, kinds: tuple[str, ...] = CHARTS) -> Any:
    """The step's charts, scrolled into view and drawn (plotly's SVG in every chart of ``kinds``)."""
    node = page.locator(f"section[data-step='{step}'] .step-charts")
    node.scroll_into_view_if_needed()
    for kind in kinds:
        node.locator(f".df-chart-{kind} .main-svg").first.wait_for()
    return node


def test_four_charts_drawn_offline_with_a_mark_per_instance(runs: Path, browser) -> None:
    """No request leaves the page; each chart draws one point, line or bar per instance of the step."""
    page, attempted, errors = open_offline(browser, runs / "index.html")
    drawn = charts_of(page, "train").evaluate(DRAWN)
    frame = ductaflow.collect(runs, step="train")
    assert drawn["points"] == len(frame) == 7  # metric.score against config.lr, the failure included
    assert (drawn["xtitle"], drawn["ytitle"]) == ("config.lr", "metric.score")
    assert drawn["lines"] == 7  # loss per epoch, one line per instance
    assert drawn["axes"] == ["config.lr", "config.method", "config.epochs", "config.fail", "metric.score"]
    assert drawn["lines_parallel"] == 6 and drawn["parallel_svg"] == 5  # "diverged" has no config.epochs
    assert "6 of 7 instances drawn" in drawn["notes"]
    assert drawn["bars"] == 7  # the timeline: one bar per instance
    failed = page.locator(".df-chart-metric .scatterlayer .point").evaluate_all(
        "points => points.filter(p => p.style.fill === 'rgb(192, 57, 43)').length"
    )
    assert failed == 1
    charts_of(page, "rep")
    assert attempted == [] and errors == []


def test_selects_change_what_the_charts_draw(runs: Path, browser) -> None:
    """A text column: one point per category (mean ± std of successes); another metric; another colour."""
    page, attempted, errors = open_offline(browser, runs / "index.html")
    node = charts_of(page, "train")
    node.locator("select.chart-x").select_option("config.method")
    page.wait_for_function("n => n.querySelector('.df-chart-metric .xtitle').textContent === 'config.method'",
                           arg=node.element_handle())  # fmt: skip
    drawn = node.evaluate(DRAWN)
    frame = ductaflow.collect(runs, step="train")
    done = frame[frame.status == "success"]
    assert drawn["points"] == 2 and drawn["errorbars"] == 2 and drawn["x"] == ["adam", "sgd"]
    assert drawn["y"] == [
        [statistics.fmean(done[done["config.method"] == m]["metric.score"]) for m in drawn["x"]]
    ]
    node.locator("select.chart-y").select_option("metric.epochs")
    page.wait_for_function("n => n.querySelector('.df-chart-metric .ytitle').textContent === 'metric.epochs'",
                           arg=node.element_handle())  # fmt: skip
    assert node.evaluate(DRAWN)["y"] == [pytest.approx([19 / 3, 19 / 3])]  # 5, 6 and 8 epochs each
    node.locator("select.chart-colour").select_option("metric.epochs")
    page.wait_for_function("n => n.querySelector('.df-chart-parallel .js-plotly-plot').data[0].dimensions"
                           ".at(-1).label === 'metric.epochs'", arg=node.element_handle())  # fmt: skip
    assert attempted == [] and errors == []


def test_replicates_are_drawn_as_mean_and_spread(runs: Path, browser) -> None:
    """A step with replicates: one point per replicated row at its mean, error bars of its spread."""
    page, attempted, errors = open_offline(browser, runs / "index.html")
    drawn = charts_of(page, "rep").evaluate(DRAWN)
    means = ductaflow.aggregate_replicates(runs, step="rep").set_index("replicate_of")["metric.score.mean"]
    assert drawn["points"] == 2 and drawn["errorbars"] == 2 and drawn["lines"] == 6 and drawn["bars"] == 6
    assert sorted(drawn["y"][0]) == sorted(means)
    assert "mean ± standard deviation over its successful replicates" in drawn["notes"]
    rows = page.locator("section[data-step=rep] tr.replicate-row")
    assert rows.count() == 2 and "(n=3)" in rows.first.locator("td[data-metric='metric.score']").inner_text()
    assert attempted == [] and errors == []


def test_rendering_again_keeps_the_choices(runs: Path, browser) -> None:
    """DuctaflowCharts.render on the same container with new data redraws in place, selects as chosen."""
    page, attempted, errors = open_offline(browser, runs / "index.html")
    node = charts_of(page, "train")
    node.locator("select.chart-x").select_option("config.method")
    kept = node.evaluate("""async n => {
      await DuctaflowCharts.render(n, n.step.charts);
      const fewer = {...n.step.charts, series: [], lines: {}};  // a step recording no series any more
      await DuctaflowCharts.render(n, fewer);
      return {x: n.querySelector("select.chart-x").value, charts: [...n.querySelectorAll(".df-chart")]
              .map(c => c.dataset.chart)};
    }""")
    assert kept == {"x": "config.method", "charts": ["metric", "parallel", "timeline"]}
    assert attempted == [] and errors == []


def fabricate(runs: Path, source: Path, count: int) -> None:
    """``count`` instances like ``source``: its files hard-linked; record, config and metrics written each."""
    record = json.loads((source / "run.json").read_text())
    start = datetime.fromisoformat(record["started_at"])
    shared = [p.name for p in source.iterdir() if p.name not in ("run.json", "config.json", "metrics.json")]
    for i in range(count):
        folder = runs / "big" / f"i{i}"
        folder.mkdir(parents=True)
        for name in shared:
            os.link(source / name, folder / name)
        config = {"lr": round(0.001 * (i % 500), 3), "method": ("adam", "sgd", "rmsprop")[i % 3]}
        began = start + timedelta(seconds=i // 8)
        ended = began + timedelta(seconds=0.8)
        record.update(step="big", instance=f"i{i}", run_dir=str(folder), config=config,
                      started_at=began.isoformat(), ended_at=ended.isoformat())  # fmt: skip
        (folder / "run.json").write_text(json.dumps(record))
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "metrics.json").write_text(
            json.dumps({"score": (i * 7919 % 10007) / 10007, "loss": [1, 0.5]})
        )


def test_a_10000_row_step_opens_on_its_first_page(tmp_path: Path, browser) -> None:
    """10,000 instances: page 1 of 100 rows shows quickly; paging, sorting and filtering cover every row."""
    root = tmp_path / "project"
    flow = FLOWS / "records_series.py"
    ductaflow.run_instances(
        flow, [{"instance_name": "seed"}], step_name="one", project_root=root, progress=False
    )
    fabricate(root / "runs", root / "runs" / "one" / "seed", 10_000)
    shutil.rmtree(root / "runs" / "one")
    began = time.perf_counter()
    report = ductaflow.build_report(root / "runs")
    built = time.perf_counter() - began
    began = time.perf_counter()
    page, attempted, errors = open_offline(browser, report, wait_until="commit")
    page.locator("tr.row").first.wait_for()
    shown = time.perf_counter() - began
    table = page.evaluate("performance.getEntriesByName('ductaflow-table')[0].startTime")
    size = report.stat().st_size / 1e6
    print(f"\n10,000 rows: report built in {built:.2f} s, {size:.1f} MB; first page of rows after "
          f"{shown:.2f} s (table drawn {table / 1000:.2f} s after navigation)")  # fmt: skip
    assert shown < 30  # a loose bound: the bench measures it
    section = page.locator("section[data-step=big]")
    info = section.locator(".page-info").first
    assert info.get_attribute("data-page") == "1" and info.get_attribute("data-total") == "10000"
    assert section.locator("tr.row").count() == 100
    assert section.locator("tr.row").nth(0).get_attribute("data-instance") == "i0"
    section.locator(".pager button.next").first.click()
    assert info.get_attribute("data-page") == "2"
    assert section.locator("tr.row").nth(0).get_attribute("data-instance") == "i100"
    section.locator("th[data-column='metric.score']").click()
    assert info.get_attribute("data-page") == "1"
    assert section.locator("tr.row").nth(0).get_attribute("data-instance") == "i0"  # score 0, the least
    section.locator("th[data-column='metric.score']").click()
    top = max(range(10_000), key=lambda i: i * 7919 % 10007)
    assert section.locator("tr.row").nth(0).get_attribute("data-instance") == f"i{top}"
    section.locator("input.filter").fill("rmsprop")
    page.wait_for_function("n => n.dataset.total === '3333'", arg=info.element_handle())
    node = charts_of(page, "big")
    drawn = node.evaluate(DRAWN)
    assert MAX_POINTS <= drawn["points"] <= MAX_POINTS + 2 and "a sample of" in drawn["notes"]
    assert 0 < drawn["bars"] <= MAX_BARS
    assert attempted == [] and errors == []
