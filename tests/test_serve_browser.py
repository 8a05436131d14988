"""``ductaflow serve`` in a browser: a sweep seen live, no reload; a 10,000-row step sorted and filtered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_serve import fabricate, served

GATED = """# %% tags=["parameters"]
config = {}

# %%
import pathlib
import time

print("waiting for the gate", flush=True)
if config.get("fail"):
    raise RuntimeError("the bad instance fails on purpose")
gate = pathlib.Path(config["gate"])
while not gate.exists():
    time.sleep(0.05)
print("through the gate")
"""
KERNEL = 60_000  # ms: what a browser assertion waits for when a kernel must start first


@pytest.fixture
def expect():
    """Playwright's auto-waiting assertions."""
    from playwright.sync_api import expect

    return expect


def test_a_sweep_in_another_process_shows_live(tmp_path: Path, browser, expect) -> None:
    """An instance goes from running (with its log) to success, and a failure appears with its error."""
    (tmp_path / "flow").mkdir()
    flow = tmp_path / "flow" / "gated.py"
    flow.write_text(GATED)
    gate, runs = tmp_path / "gate", tmp_path / "runs"
    runs.mkdir()
    rows = [{"instance_name": "slow", "gate": str(gate)}, {"instance_name": "bad", "fail": True}]
    options = {"project_root": str(tmp_path), "jobs": 2, "progress": False}
    code = f"import ductaflow\nductaflow.run_instances({str(flow)!r}, {rows!r}, **{options!r})\n"
    with served(runs) as url:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        expect(page.locator("#no-steps")).to_be_visible()
        page.evaluate("window.sameDocument = true")  # gone if the page reloaded
        sweep = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        try:
            slow = page.locator('#rows tr[data-instance="slow"] td[data-column="status"]')
            expect(slow).to_have_text("running", timeout=KERNEL)
            expect(page.locator('#steps [data-step="gated"] .count-running')).to_be_visible()
            slow.click()
            expect(page.locator("#log")).to_contain_text("waiting for the gate", timeout=KERNEL)
            expect(page.locator("#log-live")).to_be_visible()

            bad = page.locator('#rows tr[data-instance="bad"] td[data-column="status"]')
            expect(bad).to_contain_text("RuntimeError: the bad instance fails on purpose", timeout=KERNEL)
            bad.click()
            expect(page.locator("#detail")).to_have_attribute("data-status", "failed")
            expect(page.locator("#detail-error")).to_contain_text('raise RuntimeError("the bad instance')
            notebook = page.locator("#detail-links a.link-notebook")
            expect(notebook).to_have_attribute("href", "files/gated/bad/gated.html", timeout=KERNEL)
            answer = page.request.get(url + "files/gated/bad/gated.html")
            assert answer.ok and "the bad instance fails on purpose" in answer.text()

            gate.touch()
            expect(slow).to_have_text("success", timeout=KERNEL)
            counts = page.locator('#steps [data-step="gated"]')
            expect(counts.locator(".count-success")).to_contain_text("1")
            expect(counts.locator(".count-failed")).to_contain_text("1")
            expect(counts.locator(".count-running")).to_have_count(0)
            assert sweep.wait(timeout=120) == 0, sweep.stderr.read() if sweep.stderr else ""
        finally:
            sweep.kill()  # a no-op once it has ended
            sweep.communicate()
        assert page.evaluate("window.sameDocument") is True
        assert errors == []


def test_a_10000_row_step_sorts_filters_and_pages_on_the_server(tmp_path: Path, browser, expect) -> None:
    """Click a header to sort, type a filter, pick a status: the right rows and counts, 50 rows at most.

    The step's charts are drawn too, with plotly.js from the app: the page asks nothing of any other server.
    """
    runs = tmp_path / "runs"
    fabricate(runs, "big", 10_000, failed_every=1000)
    fabricate(runs, "small", 3)
    with served(runs) as url:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        page.goto(url)
        card = page.locator('#steps [data-step="big"]')
        expect(card.locator(".count-success")).to_contain_text("9990")
        expect(card.locator(".count-failed")).to_contain_text("10")
        card.click()
        rows = page.locator("#rows tbody tr")
        expect(page.locator("#matching")).to_have_text("10000 of 10000 instances")
        expect(rows).to_have_count(50)
        expect(rows.first).to_have_attribute("data-instance", "i00000")
        charts = page.locator("#charts")  # drawn once the table is on screen
        expect(charts.locator(".df-chart-metric .main-svg").first).to_be_visible(timeout=30_000)
        expect(charts.locator(".df-chart-timeline .main-svg").first).to_be_visible(timeout=30_000)
        assert {a.split("?")[0] for a in asked} >= {url + "static/plotly.min.js", url + "static/charts.js"}

        header = page.locator('#rows th[data-column="config.k"]')
        header.click()
        expect(page.locator('#rows th[data-column="config.k"]')).to_have_class("sorted-asc")
        page.locator('#rows th[data-column="config.k"]').click()
        expect(page.locator('#rows th[data-column="config.k"]')).to_have_class("sorted-desc")
        expect(rows.first).to_have_attribute("data-instance", "i09999")
        expect(rows.nth(1)).to_have_attribute("data-instance", "i09998")
        page.locator("#next").click()
        expect(page.locator("#page")).to_have_text("51–100")
        expect(rows.first).to_have_attribute("data-instance", "i09949")

        page.locator("#where").fill("config.k>=9990 group=b")
        expect(page.locator("#matching")).to_have_text("5 of 10000 instances")
        instances = [f"i{k:05d}" for k in (9999, 9997, 9995, 9993, 9991)]
        expect(page.locator("#rows tbody tr")).to_have_count(5)
        assert [r.get_attribute("data-instance") for r in rows.all()] == instances
        expect(page.locator("#page")).to_have_text("1–5")

        page.locator("#where").fill(">5")
        expect(page.locator("#where-error")).to_contain_text("names no column")
        page.locator("#where").fill("")
        page.locator("#status").select_option("failed")
        expect(page.locator("#matching")).to_have_text("10 of 10000 instances")
        expect(rows).to_have_count(10)
        expect(rows.first).to_have_attribute("data-instance", "i09000")
        expect(rows.first.locator('td[data-column="status"]')).to_contain_text("ValueError: bad k 9000")

        assert [a for a in asked if not a.startswith(url)] == []
        assert errors == []
