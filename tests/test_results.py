"""record() in every mode, collect() over a real sweep, and the HTML report in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FLOWS

import ductaflow


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a finished sweep of the metrics flow: three successes, one failure, one corrupt dir."""
    root = tmp_path_factory.mktemp("swept")
    rows = [{"instance_name": "low", "x": 1, "label": "alpha"},
            {"instance_name": "mid", "x": 5, "label": "beta"},
            {"instance_name": "high", "x": 3, "label": "gamma"},
            {"instance_name": "broken", "x": 2, "label": "delta", "fail": True}]  # fmt: skip
    frame = ductaflow.run_instances(FLOWS / "metrics.py", rows, project_root=root, progress=False, jobs=2,
                                    base_config={"loops": 200}, new_keys=True, report=True)  # fmt: skip
    assert list(frame.status) == ["success", "success", "success", "failed"]
    corrupt = root / "runs" / "metrics" / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.json").write_text("{truncated")
    return root


def test_record_in_a_kernel_writes_metrics_json_even_when_the_flow_fails(swept: Path) -> None:
    """Executed by ductaflow: every recorded value lands in metrics.json, also when the flow failed later."""
    for name, x in (("low", 1), ("broken", 2)):
        metrics = json.loads((swept / "runs" / "metrics" / name / "metrics.json").read_text())
        assert metrics == {
            "score": 2 * x,
            "n": 3,
            "label": metrics["label"],
            "nested": {"depth": 2},
            "loop": 199,
        }


def test_record_in_script_mode_writes_into_the_output_dir(tmp_path: Path) -> None:
    """As a script with --output-dir, record() writes metrics.json beside config.json."""
    (tmp_path / "c.json").write_text(json.dumps({"x": 4, "loops": 10}))
    command = [sys.executable, str(FLOWS / "metrics.py"), "--config", "c.json", "--output-dir",
               "runs/metrics/script"]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "runs/metrics/script/metrics.json").read_text())
    assert metrics["score"] == 8 and metrics["loop"] == 9


def _python(code: str, cwd: Path, run_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DUCTAFLOW_RUN_DIR"}
    if run_dir is not None:
        env["DUCTAFLOW_RUN_DIR"] = str(run_dir)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_record_interactively_keeps_values_in_memory_and_says_so(tmp_path: Path) -> None:
    """Outside a run, record() keeps values in memory, says so once, and writes no file."""
    code = "import ductaflow\nductaflow.record('a', 1)\nductaflow.record(a=2, b=[1, 2])\n"
    code += "print(ductaflow.recorded())"
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'a': 2, 'b': [1, 2]}"
    assert done.stderr.count("kept in memory") == 1
    assert list(tmp_path.iterdir()) == []


def test_record_refuses_values_it_cannot_store_and_keeps_the_rest(tmp_path: Path) -> None:
    """A non-serialisable or huge value is a MetricError naming it; numpy values are converted; last wins."""
    code = (
        "import numpy as np, ductaflow\n"
        "ductaflow.record('n', np.int64(3))\n"
        "ductaflow.record('n', np.float32(0.5))\n"
        "for bad in ({'obj': object()}, {'big': 'x' * 200000}, {'fit': {'r2': 0.9, 'model': object()}}):\n"
        "    try:\n"
        "        ductaflow.record(**bad)\n"
        "    except ductaflow.MetricError as exc:\n"
        "        print(exc)\n"
        "import os; os._exit(0)  # killed at once: no exit handler, no timer ran\n"
    )
    done = _python(code, tmp_path, run_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "metric 'obj' cannot be stored" in lines[0] and "builtins.object" in lines[0]
    assert "metric 'big' is 200002 characters" in lines[1]
    assert "metric 'fit' cannot be stored" in lines[2] and "'fit.model'" in lines[2]
    later = _python("import ductaflow; print(ductaflow.recorded())", tmp_path, run_dir=tmp_path)
    assert later.stdout.strip() == "{'n': 0.5}"  # nothing recorded before the kill was lost


def test_record_from_several_processes_of_one_run_keeps_every_value(tmp_path: Path) -> None:
    """A flow and a script it starts both record into the run: metrics.json holds all their values."""
    code = (
        "import subprocess, sys, ductaflow\n"
        "ductaflow.record(parent_a=1)\n"
        "child = 'import ductaflow; ductaflow.record(child_b=2)'\n"
        "subprocess.run([sys.executable, '-c', child], check=True)\n"
        "ductaflow.record(parent_c=3)\n"
    )
    done = _python(code, tmp_path, run_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"parent_a": 1, "child_b": 2, "parent_c": 3}


def test_collect_gives_one_row_per_instance_with_config_and_metrics(swept: Path) -> None:
    """collect: status, config.* and metric.* columns, the failure's error, the corrupt dir as unknown."""
    frame = ductaflow.collect(swept / "runs").set_index("instance")
    assert sorted(frame.index) == ["broken", "corrupt", "high", "low", "mid"]
    assert frame.loc["mid", "status"] == "success" and frame.loc["mid", "metric.score"] == 10
    assert frame.loc["mid", "config.label"] == "beta" and frame.loc["mid", "metric.nested.depth"] == 2
    assert frame.loc["broken", "status"] == "failed"
    assert frame.loc["broken", "error"] == "ValueError: failed after recording"
    assert frame.loc["corrupt", "status"] == "unknown" and "unreadable" in frame.loc["corrupt", "note"]
    assert frame.loc["low", "duration"] > 0 and frame.loc["low", "run_dir"].endswith("runs/metrics/low")
    assert list(ductaflow.collect(swept / "runs", step="nothing").columns)[:3] == [
        "step",
        "instance",
        "status",
    ]
    assert len(ductaflow.collect(swept / "runs", step="metrics")) == 5


def test_report_command_and_self_contained_page(swept: Path, tmp_path: Path) -> None:
    """`ductaflow report` writes one file with no external resources; run_instances(report=True) did too."""
    assert (swept / "runs" / "index.html").exists()
    out = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "ductaflow", "report", "runs", "--output", str(out)],
                          cwd=swept, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    start = page.index('<script type="text/plain" id="ductaflow-plotly">')  # plotly.js, inlined, run later
    ours = page[:start] + page[page.index("</script>", start) :]
    assert "http://" not in ours.replace("http://www.w3.org/2000/svg", "") and "https://" not in ours
    assert "<link" not in page and " src=" not in page


def test_report_in_a_real_browser(swept: Path, browser) -> None:
    """From file://: no failed request, counts match, sorting and filters change rows, links open reports."""
    ductaflow.build_report(swept / "runs")  # now with the corrupt directory
    page = browser.new_page()
    failed, errors = [], []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((swept / "runs" / "index.html").as_uri())
    section = page.locator("section[data-step=metrics]")
    counts = {c.get_attribute("data-status"): c.inner_text() for c in section.locator(".counts .count").all()}
    assert counts == {"success": "success 3", "failed": "failed 1", "unknown": "unknown 1"}

    def instances() -> list[str]:
        return [r.get_attribute("data-instance") for r in section.locator("tr.row").all()]

    assert instances() == ["broken", "corrupt", "high", "low", "mid"]
    section.locator("th[data-column='metric.score']").click()
    assert instances()[:4] == ["low", "broken", "high", "mid"]
    section.locator("th[data-column='metric.score']").click()
    assert instances()[:4] == ["mid", "high", "broken", "low"]
    section.locator("input.filter").fill("gamma")
    page.wait_for_timeout(400)  # the filter waits for typing to pause
    assert instances() == ["high"]
    section.locator("input.filter").fill(
        "metrics"
    )  # the step's name is in every link, but links are not searched
    page.wait_for_timeout(400)
    assert instances() == []
    section.locator("input.filter").fill("")
    page.wait_for_timeout(400)
    section.locator("select.status-filter").select_option("failed")
    assert instances() == ["broken"]
    assert "ValueError: failed after recording" in section.locator("tr.error-row").inner_text()
    points = section.locator(".df-chart-metric .scatterlayer .point")  # metric.score against config.x
    points.nth(3).wait_for()
    assert points.count() == 4
    section.locator("select.status-filter").select_option("")
    section.locator("tr.row[data-instance=mid] a.link-report").click()
    page.wait_for_load_state()
    assert page.url.endswith("runs/metrics/mid/metrics.html")
    assert "failed after recording" in page.content()  # the flow's source, rendered in its report
    assert failed == [] and errors == []


def test_report_of_a_copied_runs_folder_keeps_working(swept: Path, tmp_path: Path, browser) -> None:
    """The runs folder moved elsewhere (a share): the page and its relative links still work."""
    copy = tmp_path / "share" / "runs"
    shutil.copytree(swept / "runs", copy)
    page = browser.new_page()
    page.goto((copy / "index.html").as_uri())
    page.locator("tr.row[data-instance=low] a.link-config").click()
    page.wait_for_load_state()
    assert json.loads(page.locator("body").inner_text())["label"] == "alpha"


def test_report_survives_awkward_names_and_values(tmp_path: Path, browser) -> None:
    """Names with '#' and '%', a value holding '<!--<script>', a tiny number: shown as is, links work."""
    rows = [{"instance_name": "a#1", "note": "<!--<script>", "tol": 1e-12},
            {"instance_name": "50%20off", "note": "</script><b>", "tol": 2.5}]  # fmt: skip
    ductaflow.run_instances(FLOWS / "ok.py", rows, project_root=tmp_path, progress=False, jobs=1)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(ductaflow.build_report(tmp_path / "runs").as_uri())
    row = page.locator("tr.row[data-instance='a#1']")
    assert "<!--<script>" in row.inner_text() and "1e-12" in row.inner_text()
    assert "</script><b>" in page.locator("tr.row[data-instance='50%20off']").inner_text()
    page.locator("tr.row[data-instance='50%20off'] a.link-report").click()
    page.wait_for_load_state()
    assert page.url.endswith("/runs/ok/50%2520off/ok.html") and "stdout line" in page.content()
    page.go_back()
    page.locator("tr.row[data-instance='a#1'] a.link-config").click()
    page.wait_for_load_state()
    assert json.loads(page.locator("body").inner_text())["tol"] == 1e-12
    assert errors == []
