"""The report's chart in a real browser: every label inside it, readable ticks, a default pair that varies."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import FLOWS

import ductaflow

LONG = "a-method-whose-name-is-long-enough-to-crowd-its-neighbours"
METHODS = ["alpha", LONG, "gamma", LONG + "-again", "delta"]

# Where every text and point of a chart lies, and its tick labels, in the page's own coordinates.
GEOMETRY = """svg => {
  const box = svg.getBoundingClientRect(), width = document.documentElement.clientWidth;
  const inside = r => r.width > 0 && r.left >= Math.max(box.left, 0) - 0.5 && r.top >= box.top - 0.5
    && r.right <= Math.min(box.right, width) + 0.5 && r.bottom <= box.bottom + 0.5;
  const name = s => s.tagName === "circle" ? "point " + s.querySelector("title").textContent : s.textContent;
  const ticks = axis => [...svg.querySelectorAll("text.tick-" + axis)].map(t => {
    const r = t.getBoundingClientRect();
    return {text: t.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom};
  });
  return {outside: [...svg.querySelectorAll("text, circle")].filter(s => !inside(s.getBoundingClientRect()))
            .map(name),
          texts: svg.querySelectorAll("text").length, points: svg.querySelectorAll("circle").length,
          x: ticks("x"), y: ticks("y")};
}"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder of real instances recording tiny, huge, negative and constant metrics.

    Step ``magnitudes`` has five instances (``size`` 1 to 5, a constant
    ``seed``, string ``method``s, some long); step ``single`` has one.
    """
    root = tmp_path_factory.mktemp("chart")
    rows = [{"instance_name": f"size{size}", "seed": 7, "size": size, "method": method}
            for size, method in zip(range(1, 6), METHODS, strict=True)]  # fmt: skip
    options: dict[str, Any] = {"project_root": root, "progress": False, "jobs": 2, "export_html": False}
    flow = FLOWS / "records_magnitudes.py"
    frame = ductaflow.run_instances(flow, rows, step_name="magnitudes", **options)
    assert list(frame.status) == ["success"] * 5
    frame = ductaflow.run_instances(
        flow, [{"instance_name": "only", "size": 2}], step_name="single", **options
    )
    assert list(frame.status) == ["success"]
    ductaflow.build_report(root / "runs")
    return root / "runs"


def options(section: Any, axis: str) -> list[str]:
    """The values the chart's select for ``axis`` offers."""
    return [o.get_attribute("value") for o in section.locator(f"select.chart-{axis} option").all()]


def assert_ticks_readable(ticks: list[dict], values: list[Any], where: str) -> None:
    """Tick labels do not overlap, and on a numeric axis they are short numbers spanning the values."""
    for a, b in itertools.pairwise(ticks):
        assert a["right"] <= b["left"] or a["bottom"] <= b["top"] or b["bottom"] <= a["top"], (where, a, b)
    numbers = [v for v in values if isinstance(v, (int, float))]
    if len(numbers) < len(values):  # categories: each label is (the start of) one of them
        assert all(any(str(v).startswith(t["text"].rstrip("…")) for v in values) for t in ticks), where
        return
    labels = [t["text"] for t in ticks]
    assert all(len(label) <= 12 for label in labels), (where, labels)  # no 0.30000000000000004
    shown = [float(label) for label in labels]
    if min(numbers) == max(numbers):
        assert len(shown) == 1 and math.isclose(shown[0], numbers[0], rel_tol=1e-6), (where, labels)
    else:
        assert min(shown) <= min(numbers) and max(shown) >= max(numbers), (where, labels, numbers)
        assert len(shown) >= 2, (where, labels)


@pytest.mark.parametrize("width", [1280, 480], ids=["wide", "narrow"])
def test_every_label_and_point_of_every_chart_lies_inside_it(runs: Path, browser, width: int) -> None:
    """Any pair of axes, any magnitude, one point or five: texts and points lie inside the SVG and window."""
    page = browser.new_page(viewport={"width": width, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((runs / "index.html").as_uri())
    for step, count in (("magnitudes", 5), ("single", 1)):
        frame = ductaflow.collect(runs, step=step)
        section = page.locator(f"section[data-step={step}]")
        svg = section.locator("svg.chart")
        for y in options(section, "y"):
            section.locator("select.chart-y").select_option(y)
            for x in options(section, "x"):
                section.locator("select.chart-x").select_option(x)
                where = f"{step}: {y} against {x}"
                drawn = svg.evaluate(GEOMETRY)
                assert drawn["outside"] == [], where
                assert drawn["points"] == count and drawn["texts"] >= 4, (where, drawn)
                assert_ticks_readable(drawn["x"], list(frame[x]), where + " (x)")
                assert_ticks_readable(drawn["y"][::-1], list(frame[y]), where + " (y)")
    assert errors == []


def test_the_constant_metric_reads_whole_on_its_axis(runs: Path, browser) -> None:
    """A metric that never changes is labelled with its full value (0.092741, not a clipped 92741)."""
    page = browser.new_page()
    page.goto((runs / "index.html").as_uri())
    section = page.locator("section[data-step=magnitudes]")
    section.locator("select.chart-y").select_option("metric.constant")
    assert [t["text"] for t in section.locator("svg.chart").evaluate(GEOMETRY)["y"]] == ["0.092741"]


def test_default_axes_are_a_metric_and_a_config_column_that_vary(runs: Path, browser) -> None:
    """Not the constant metric recorded first nor the constant seed; with one instance, the first of each."""
    page = browser.new_page()
    page.goto((runs / "index.html").as_uri())
    section = page.locator("section[data-step=magnitudes]")
    assert section.locator("select.chart-y").input_value() == "metric.tiny"
    assert section.locator("select.chart-x").input_value() == "config.size"
    assert "metric.verdict" not in options(section, "y")  # a string metric cannot be a y axis
    assert {"config.seed", "config.method"} <= set(options(section, "x"))  # the user may still pick them
    single = page.locator("section[data-step=single]")
    assert single.locator("select.chart-y").input_value() == "metric.constant"
    assert single.locator("select.chart-x").input_value() == "config.size"
