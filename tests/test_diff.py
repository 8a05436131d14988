"""ductaflow diff and diff_runs on real instances: exactly what differs, in the terminal, as JSON and HTML."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import FLOWS, run_in_terminal
from test_cli import cli

import ductaflow
from ductaflow.diff import Change

FLOW = FLOWS / "scaled_plot.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder of real runs of scaled_plot: ``one`` and ``again`` (scale 1), ``two`` (scale 2), and
    ``fails`` (scale 1, its last cell raising).

    Only the cell that prints the scaled total and draws the scaled plot (beside a fixed one) differs with
    the scale; the flow records ``total`` (6 times the scale) and ``constant``.
    """
    root = tmp_path_factory.mktemp("diff")
    rows = [{"instance_name": "one", "scale": 1}, {"instance_name": "again", "scale": 1},
            {"instance_name": "two", "scale": 2},
            {"instance_name": "fails", "scale": 1, "fail": True}]  # fmt: skip
    frame = ductaflow.run_instances(FLOW, rows, project_root=root, progress=False, jobs=4, export_html=False)
    assert list(frame.status) == ["success"] * 3 + ["failed"]
    return root / "runs"


def test_diff_runs_reports_exactly_the_key_the_cell_and_the_metric_that_differ(runs: Path) -> None:
    """Two runs differing in one config value: that key, that one cell (text and image), that metric."""
    found = ductaflow.diff_runs(runs / "scaled_plot" / "one", runs / "scaled_plot" / "two")
    assert found.config == [Change("scale", 1, 2, "changed")]
    assert found.fingerprint == [] and found.packages == [] and found.python[0] == found.python[1]
    assert [(m.name, m.a, m.b, m.state) for m in found.metrics] == [
        ("total", 6, 12, "changed"), ("constant", 1, 1, "same")]  # fmt: skip
    assert [(c.index_a, c.index_b, c.first_line, c.state) for c in found.cells] == [
        (3, 3, "import matplotlib.pyplot as plt", "changed")]  # fmt: skip
    cell = found.cells[0]
    assert [line for line in cell.text if line[:1] in "+-" and line[:3] not in ("---", "+++")] == [
        "-scaled total: 6", "+scaled total: 12"]  # fmt: skip
    assert [(i.mime, i.state) for i in cell.images] == [("image/png", "changed"), ("image/png", "unchanged")]
    assert cell.html is None and cell.source == []
    assert "-config = {'scale': 1}" in found.parameters and "+config = {'scale': 2}" in found.parameters
    assert found.cells_compared == 4 and found.notes == [] and not found.same
    images = json.loads(json.dumps(found.as_dict()))["cells"][0]["images"]
    assert images == [{"mime": "image/png", "state": "changed"}, {"mime": "image/png", "state": "unchanged"}]


def test_two_runs_of_one_config_are_the_same(runs: Path) -> None:
    """Two executions of the same config differ in nothing: no key, part, package, metric nor cell."""
    found = ductaflow.diff_runs("scaled_plot/one", "scaled_plot/again", runs_dir=runs)
    assert (found.config, found.fingerprint, found.packages, found.cells, found.parameters) == ([],) * 5
    assert all(m.state == "same" for m in found.metrics) and len(found.metrics) == 2
    assert found.same and found.as_dict()["same"] is True


def test_the_command_prints_the_differences_and_exits_0(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ductaflow diff prints the key, the cell's text diff and images, the metrics side by side; exit 0."""
    monkeypatch.chdir(runs.parent)
    done = cli("diff", "runs/scaled_plot/one", "scaled_plot/two")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    for expected in ("config: 1 key differs", "  ~ scale: 1 -> 2",
                     "fingerprint: no part differs but the config",
                     "cells: 1 of 4 code cells differs in their outputs",
                     "  cell 3 (In [4]): import matplotlib.pyplot as plt", "      -scaled total: 6",
                     "      +scaled total: 12", "    image 1 (image/png): changed",
                     "    image 2 (image/png): unchanged", "    -config = {'scale': 1}"):  # fmt: skip
        assert expected in out, expected
    metrics = out[out.index("metrics: 1 of 2 differs") + 1 :][:3]
    assert [line.split() for line in metrics] == [["metric", "A", "B"], ["total", "6", "12", "changed"],
                                                  ["constant", "1", "1"]]  # fmt: skip
    assert "the same in every run" not in done.stdout and "\x1b[" not in done.stdout  # piped: no colour

    as_json = cli("diff", "scaled_plot/one", "scaled_plot/two", "--json")
    assert as_json.returncode == 0
    expected = ductaflow.diff_runs("scaled_plot/one", "scaled_plot/two").as_dict()
    assert json.loads(as_json.stdout) == json.loads(json.dumps(expected))
    same = cli("diff", "scaled_plot/one", "scaled_plot/again")
    assert same.returncode == 0 and "cells: 0 of 4 code cells differ in their outputs" in same.stdout


def test_on_a_terminal_the_differences_are_coloured(runs: Path) -> None:
    """On a terminal, removed lines are red and added ones green (ANSI colours from rich)."""
    code, output = run_in_terminal([sys.executable, "-m", "ductaflow", "diff", "scaled_plot/one",
                                    "scaled_plot/two", "--runs-dir", str(runs)], cwd=runs.parent)  # fmt: skip
    assert code == 0, output
    assert "\x1b[31m      -scaled total: 6" in output and "\x1b[32m      +scaled total: 12" in output


def test_the_html_page_shows_the_differences_in_a_browser(runs: Path, tmp_path: Path, browser) -> None:
    """--html writes a page whose visible text holds the key, the cell's diff, and both images drawn."""
    target = tmp_path / "pages" / "diff.html"
    done = cli("diff", str(runs / "scaled_plot" / "one"), str(runs / "scaled_plot" / "two"), "--html",
               str(target))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"wrote {target}" and "+scaled total: 12" in done.stdout
    page = browser.new_page()
    page.goto(target.as_uri())
    for text in ("~ scale: 1 -> 2", "-scaled total: 6", "+scaled total: 12", "image 1 (image/png): changed",
                 "image 2 (image/png): unchanged", "total  6  12  changed"):  # fmt: skip
        assert page.get_by_text(text, exact=True).is_visible(), text
    drawn = page.evaluate("[...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
    assert drawn == [["A", True], ["B", True]]  # the changed image, side by side; the unchanged one not


def test_packages_and_python_that_differ_are_listed(runs: Path, tmp_path: Path) -> None:
    """A run recorded with another environment: Python and each package version that differs, by name."""
    other = tmp_path / "runs" / "scaled_plot" / "one"
    shutil.copytree(runs / "scaled_plot" / "one", other)
    environment = json.loads((other / "environment.json").read_text())
    distributions = environment["distributions"]
    assert "click" in distributions and len(distributions) > 20  # the whole environment was recorded
    old_click = distributions["click"]
    distributions.update(click="0.1", **{"only-here": "1.0"})
    environment["python_version"] = "3.99.0"
    (other / "environment.json").unlink()  # shared with the other instances' by a hard link
    (other / "environment.json").write_text(json.dumps(environment))
    found = ductaflow.diff_runs(runs / "scaled_plot" / "one", other)
    assert found.packages == [Change("click", old_click, "0.1", "changed"),
                              Change("only-here", None, "1.0", "added")]  # fmt: skip
    assert found.python[1] == "3.99.0" and found.python[0] not in (None, "3.99.0")
    assert found.config == [] and found.cells == [] and not found.same
    printed = cli("diff", str(runs / "scaled_plot" / "one"), str(other)).stdout
    assert f"  ~ click: {old_click} -> 0.1" in printed and "  + only-here = 1.0  (only in B)" in printed
    assert f"environment: Python {found.python[0]} -> 3.99.0; 2 package versions differ" in printed

    (other / "environment.json").unlink()
    found = ductaflow.diff_runs(runs / "scaled_plot" / "one", other)
    assert found.notes == ["no environment recorded for B (scaled_plot/one): only the versions run.json "
                           "lists are compared"]  # fmt: skip
    assert found.packages == [] and found.python[0] == found.python[1]


def test_an_edited_flow_aligns_cells_by_source(project: Path) -> None:
    """A cell inserted between two runs is reported as added; the cells around it pair and do not differ."""
    flow = project / "flow" / "scaled_plot.py"
    flow.parent.mkdir()
    shutil.copy(FLOW, flow)
    options = {"progress": False, "export_html": False}
    ductaflow.run_instances(flow, [{"instance_name": "before", "scale": 1}], **options)
    source = flow.read_text()
    flow.write_text(source.replace('# %%\nprint("the end")', '# %%\nprint("<i>not markup</i>")\n\n# %%\n'
                                                             'print("the end")'))  # fmt: skip
    ductaflow.run_instances(flow, [{"instance_name": "after", "scale": 1}], **options)
    found = ductaflow.diff_runs("scaled_plot/before", "scaled_plot/after")
    assert [(c.index_a, c.index_b, c.first_line, c.state) for c in found.cells] == [
        (None, 4, 'print("<i>not markup</i>")', "added")]  # fmt: skip
    assert [c.name for c in found.fingerprint] == ["flow"] and found.config == [] and found.parameters == []
    assert found.cells_compared == 5

    done = cli("diff", "scaled_plot/before", "scaled_plot/after", "--html", "page.html")
    assert done.returncode == 0, done.stderr
    assert '  cell 4 (In [5]): print("<i>not markup</i>")  (only in B)' in done.stdout.splitlines()
    page = (project / "page.html").read_text()
    assert "print(&quot;&lt;i&gt;not markup&lt;/i&gt;&quot;)" in page and "<i>" not in page


def test_a_failed_run_shows_its_error_in_the_cell_that_raised(runs: Path) -> None:
    """A failed run beside a successful one: its error in the header, the traceback in its last cell."""
    found = ductaflow.diff_runs("scaled_plot/one", "scaled_plot/fails", runs_dir=runs)
    assert found.b.status == "failed" and found.b.error == "ValueError: asked to fail"
    assert found.a.status == "success" and found.a.error is None
    assert found.config == [Change("fail", None, True, "added")]
    assert [(c.index_a, c.index_b, c.first_line) for c in found.cells] == [(4, 4, 'print("the end")')]
    added = [line for line in found.cells[0].text if line.startswith("+")]
    assert "+ValueError: asked to fail" in added and not any("\x1b" in line for line in added)
    assert [m.state for m in found.metrics] == ["same", "same"]


PREP = """\
# %% tags=["parameters"]
config = {"rows": 3}

# %%
open("data.txt", "w").write("x" * config["rows"])
"""
FIT = """\
# %% tags=["parameters"]
config = {}

# %%
from model import scale

rows = len(open("../../prep/a/data.txt").read())
print(f"fitted {scale(rows)}")
"""


def test_project_code_and_upstream_instances_that_differ_are_named(project: Path) -> None:
    """A run kept from before a project module and its upstream instance changed: both parts, by name."""
    (project / "ductaflow.toml").write_text("")
    (project / "flow").mkdir()
    model = project / "flow" / "model.py"  # a module of the project beside the flows
    model.write_text("def scale(x):\n    return x * 2\n")
    (project / "flow" / "prep.py").write_text(PREP)
    (project / "flow" / "fit.py").write_text(FIT)
    options = {"progress": False, "export_html": False}

    def chain(rows: int) -> None:
        for step, row, upstream in (("prep", {"instance_name": "a", "rows": rows}, None),
                                    ("fit", {"instance_name": "a"}, "prep")):  # fmt: skip
            flow = project / "flow" / f"{step}.py"
            frame = ductaflow.run_instances(flow, [row], upstream=upstream, **options)
            assert list(frame.status) == ["success"], frame.error

    chain(3)
    shutil.copytree(project / "runs" / "fit" / "a", project / "kept" / "fit" / "a")
    model.write_text("def scale(x):\n    return x * 10\n")
    chain(4)
    found = ductaflow.diff_runs("kept/fit/a", "fit/a")
    assert [(c.name, c.state) for c in found.fingerprint] == [("code flow/model.py", "changed"),
                                                              ("upstream prep/a", "changed")]  # fmt: skip
    assert found.config == [] and [c.text[-2:] for c in found.cells] == [["-fitted 6", "+fitted 40"]]
    printed = cli("diff", "kept/fit/a", "fit/a").stdout.splitlines()
    code_a, code_b = (found.fingerprint[0].a[:12], found.fingerprint[0].b[:12])
    assert f"  ~ code flow/model.py: {code_a} -> {code_b}" in printed


@pytest.mark.parametrize(
    ("argument", "said"),
    [
        ("nowhere", "'nowhere' is not an instance: no run.json in nowhere nor in runs/nowhere."),
        ("runs/scaled_plot", "'runs/scaled_plot' is not an instance: no run.json in runs/scaled_plot"),
        ("scaled_plot/onne", "Instances of runs/scaled_plot: runs/scaled_plot/one"),
        ("broken", "broken/run.json is unreadable (JSONDecodeError): ductaflow cannot tell what this"),
    ],
    ids=["missing", "step-folder", "misspelt", "corrupt-record"],
)
def test_a_folder_that_is_not_an_instance_exits_2(
    runs: Path, monkeypatch: pytest.MonkeyPatch, argument: str, said: str
) -> None:
    """A path that names no instance (or one whose record is unreadable): exit 2, a message and the fix."""
    monkeypatch.chdir(runs.parent)
    (runs.parent / "broken").mkdir(exist_ok=True)
    (runs.parent / "broken" / "run.json").write_text("{not json")
    done = cli("diff", argument, "scaled_plot/one")
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert done.stdout == ""
    if argument != "broken":
        assert "Give an instance directory such as runs/<step>/<instance>" in done.stderr


def test_help_says_differences_do_not_change_the_exit_code(project: Path) -> None:
    """diff --help shows examples and that the exit code is 0 whatever differs, 2 for a bad path."""
    shown = cli("diff", "--help")
    assert shown.returncode == 0
    assert "ductaflow diff runs/fit/a runs/fit/b" in shown.stdout.split("Examples:")[1]
    assert "Differences do not change the exit code" in " ".join(shown.stdout.split())
    assert "diff" in cli("--help").stdout.split("Commands:")[1]
