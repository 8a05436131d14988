"""Steps that depend on steps, and project code in the fingerprint: real chains of flows, really edited."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import record

import ductaflow
from ductaflow import UpstreamError
from ductaflow.cli import cli
from ductaflow.runrecord import read_record

PREP = """\
# %% tags=["parameters"]
config = {"source": "data/a.txt"}

# %%
import ductaflow
text = ductaflow.project_path(config["source"]).read_text()
open("data.txt", "w").write(text.upper())
"""

FIT = """\
# %% tags=["parameters"]
config = {}

# %%
import ductaflow
if not ductaflow.is_notebook_execution():
    config = ductaflow.load_cli_config()
prep = ductaflow.output_of("prep")
open("fit.txt", "w").write("fit of " + (prep / "data.txt").read_text())
"""

EVALUATE = """\
# %% tags=["parameters"]
config = {}

# %%
import ductaflow
fit = ductaflow.output_of("fit")
open("eval.txt", "w").write("evaluated " + (fit / "fit.txt").read_text())
"""

NAMES = ["a", "b"]


@pytest.fixture
def chain(project: Path) -> Path:
    """A project with three flows, prep -> fit -> evaluate, and one data file per instance."""
    (project / "flow").mkdir()
    (project / "data").mkdir()
    (project / "ductaflow.toml").write_text("")  # marks the project root for project_path()
    for name, text in (("prep", PREP), ("fit", FIT), ("evaluate", EVALUATE)):
        (project / "flow" / f"{name}.py").write_text(text)
    for name in NAMES:
        (project / "data" / f"{name}.txt").write_text(f"rows of {name}")
    return project


def _run(project: Path, step: str, **kwargs) -> dict[str, tuple[str, str]]:
    """Run a step for instances a and b; return {instance: (status, reason)}."""
    rows = [{"instance_name": n, **({"source": f"data/{n}.txt"} if step == "prep" else {})} for n in NAMES]
    kwargs.setdefault("inputs", ["source"] if step == "prep" else [])
    frame = ductaflow.run_instances(project / "flow" / f"{step}.py", rows, progress=False, export_html=False,
                                    **kwargs)  # fmt: skip
    return {row.instance: (row.status, row.reason) for row in frame.itertuples()}


def _run_chain(project: Path) -> list[dict[str, tuple[str, str]]]:
    return [_run(project, step) for step in ("prep", "fit", "evaluate")]


def test_an_input_change_upstream_reruns_exactly_the_instances_downstream_of_it(chain):
    first = _run_chain(chain)
    assert all(status == "success" for outcome in first for status, _ in outcome.values())
    assert (chain / "runs/evaluate/a/eval.txt").read_text() == "evaluated fit of ROWS OF A"
    assert record(chain / "runs/fit/a")["upstream"] == [
        {"step": "prep", "instance": "a", "run_dir": "runs/prep/a",
         "fingerprint": record(chain / "runs/prep/a")["fingerprint"]}]  # fmt: skip

    (chain / "data" / "a.txt").write_text("new rows of a")
    prep, fit, evaluate = _run_chain(chain)
    assert prep == {"a": ("success", "input changed (data/a.txt)"), "b": ("skipped", "unchanged")}
    assert fit == {"a": ("success", "upstream changed (prep/a)"), "b": ("skipped", "unchanged")}
    assert evaluate == {"a": ("success", "upstream changed (fit/a)"), "b": ("skipped", "unchanged")}
    assert (chain / "runs/evaluate/a/eval.txt").read_text() == "evaluated fit of NEW ROWS OF A"


def test_an_edited_upstream_flow_stops_downstream_runs_and_why_names_the_chain(chain):
    _run_chain(chain)
    flow = chain / "flow" / "prep.py"
    flow.write_text(flow.read_text().replace("text.upper()", "text.title()"))

    with pytest.raises(UpstreamError) as raised:
        _run(chain, "evaluate")
    message = str(raised.value)
    assert "fit/a (read by a) is out of date" in message and "upstream prep/a is out of date" in message
    assert "flow changed (flow/prep.py)" in message and "--with-upstream" in message
    assert not (chain / "runs/evaluate/a/.ductaflow").exists()  # nothing was written for it

    check = ductaflow.check_instance(chain / "runs" / "evaluate" / "a")
    assert check.outdated is True
    assert check.reason == ("upstream fit/a is out of date (upstream prep/a is out of date "
                            "(flow changed (flow/prep.py)))")  # fmt: skip
    assert ("upstream", check.reason) in check.details

    result = CliRunner().invoke(cli, ["run", "flow/evaluate.py", "--instance", "a"])
    assert result.exit_code == 2, result.output
    assert "prep/a is out of date" in result.output and "Traceback" not in result.output
    why = CliRunner().invoke(cli, ["why", "runs/evaluate/a"])
    assert why.exit_code == 0 and "flow changed (flow/prep.py)" in why.output, why.output

    result = CliRunner().invoke(cli, ["run", "flow/evaluate.py", "--instance", "a", "--with-upstream"])
    assert result.exit_code == 0, result.output
    assert record(chain / "runs/fit/a")["reason"] == "upstream changed (prep/a)"
    assert record(chain / "runs/evaluate/a")["reason"] == "upstream changed (fit/a)"
    assert record(chain / "runs/fit/b")["reason"] == "new"  # not read by evaluate/a: left as it was


def test_with_upstream_runs_the_chain_first_in_order(chain):
    _run_chain(chain)
    flow = chain / "flow" / "prep.py"
    flow.write_text(flow.read_text().replace("text.upper()", "text.title()"))

    dry = _run(chain, "fit", with_upstream=True, dry_run=True)
    assert dry["a"][0] == "pending" and dry["a"][1].startswith("after upstream prep/a (is out of date")
    assert record(chain / "runs/prep/a")["fingerprint_parts"]["flow_sha256"] != ductaflow.flow.read_flow(
        flow).sha256  # a dry run ran nothing  # fmt: skip

    evaluate = _run(chain, "evaluate", with_upstream=True)
    assert evaluate == {n: ("success", f"upstream changed (fit/{n})") for n in NAMES}
    for name in NAMES:
        assert record(chain / f"runs/prep/{name}")["reason"] == "flow changed"
        assert record(chain / f"runs/fit/{name}")["reason"] == f"upstream changed (prep/{name})"
        assert (
            chain / f"runs/evaluate/{name}/eval.txt"
        ).read_text() == f"evaluated fit of Rows Of {name.upper()}"
    assert _run(chain, "evaluate") == {n: ("skipped", "unchanged") for n in NAMES}


def test_a_missing_or_failed_upstream_is_an_error_naming_it(chain):
    with pytest.raises(UpstreamError, match=r"prep/a \(read by a\) does not exist"):
        _run(chain, "fit")
    with pytest.raises(UpstreamError, match="create the missing ones by running their step first"):
        _run(chain, "fit", with_upstream=True)

    (chain / "data" / "b.txt").unlink()
    (chain / "data" / "b.txt").mkdir()  # prep/b fails: a folder is not a text file
    prep = _run(chain, "prep", inputs=[])
    assert prep["b"][0] == "failed"
    with pytest.raises(UpstreamError, match=r"prep/b \(read by b\) did not succeed \(last attempt failed\)"):
        _run(chain, "fit")
    assert (chain / "runs/fit/a").exists() is False  # the call ran nothing

    (chain / "data" / "b.txt").rmdir()
    (chain / "data" / "b.txt").write_text("rows of b")
    fit = _run(chain, "fit", with_upstream=True)
    assert fit == {"a": ("success", "new"), "b": ("success", "new")}
    assert record(chain / "runs/prep/b")["status"] == "success"


def test_declared_upstream_templates_fill_in_config_keys(chain):
    _run(chain, "prep")
    flow = chain / "flow" / "report.py"
    flow.write_text('# %% tags=["parameters"]\nconfig = {"region": "a"}\n\n# %%\nimport ductaflow\n'
                    'text = (ductaflow.output_of("prep", config["region"]) / "data.txt").read_text()\n'
                    'open("out.txt", "w").write(text)\n')  # fmt: skip
    frame = ductaflow.run_instances(flow, [{"instance_name": "north", "region": "a"},
                                           {"instance_name": "south", "region": "b"}],
                                    progress=False, export_html=False)  # fmt: skip
    assert list(frame.status) == ["success", "success"]
    assert record(chain / "runs/report/south")["upstream"][0]["instance"] == "b"
    assert (chain / "runs/report/south/out.txt").read_text() == "ROWS OF B"

    # a flow that reads another step's folder by a path in its config: its upstream is declared
    summary = chain / "flow" / "summary.py"
    reads = 'print(ductaflow.project_path(config["fit_dir"], "fit.txt").read_text())\n'
    summary.write_text(
        '# %% tags=["parameters"]\nconfig = {"fit_dir": ""}\n\n# %%\nimport ductaflow\n' + reads
    )
    one = [{"instance_name": "x", "fit_dir": "runs/fit/a"}]
    with pytest.raises(UpstreamError, match=r"fit/a \(read by x\) does not exist"):
        ductaflow.run_instances(summary, one, upstream={"fit": "a"}, progress=False, dry_run=True)
    _run(chain, "fit")
    frame = ductaflow.run_instances(summary, one, upstream={"fit": "a"}, progress=False, export_html=False)
    assert list(frame.status) == ["success"]
    assert [u["instance"] for u in record(chain / "runs/summary/x")["upstream"]] == ["a"]


def test_output_of_works_the_same_in_a_script_run(chain):
    _run(chain, "prep")
    out = subprocess.run([sys.executable, "flow/fit.py", "--output-dir", "runs/fit/a"], cwd=chain,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (chain / "runs/fit/a/fit.txt").read_text() == "fit of ROWS OF A"
    out = subprocess.run([sys.executable, "flow/fit.py", "--output-dir", "runs/fit/zzz"], cwd=chain,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode != 0 and "runs/prep/zzz does not exist: run step 'prep' for it first" in out.stderr

    # a conductor reads an instance a script run made: current until the script runs it again
    evaluate = [{"instance_name": "a"}]
    frame = ductaflow.run_instances(chain / "flow/evaluate.py", evaluate, progress=False, export_html=False)
    assert list(frame.status) == ["success"]
    assert (chain / "runs/evaluate/a/eval.txt").read_text() == "evaluated fit of ROWS OF A"
    frame = ductaflow.run_instances(chain / "flow/evaluate.py", evaluate, progress=False, export_html=False)
    assert list(frame.reason) == ["unchanged"]


MODEL = "def scale(x):\n    return x * 2\n"
USES_LIB = """\
# %% tags=["parameters"]
config = {"x": 1}

# %%
from mylib.model import scale
open("out.txt", "w").write(str(scale(config["x"])))
"""
PLAIN = '# %% tags=["parameters"]\nconfig = {"x": 1}\n\n# %%\nimport json\nprint(json.dumps(config))\n'


@pytest.mark.parametrize("engine", ["kernel", "fork"])
def test_editing_a_project_module_reruns_exactly_its_importers(project, monkeypatch, engine):
    lib = project / "src" / "mylib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "model.py").write_text("from . import helpers\n" + MODEL)
    (lib / "helpers.py").write_text("import os\n")
    (project / "pyproject.toml").write_text("[project]\nname = 'study'\n")
    (project / "flow").mkdir()
    (project / "flow" / "uses_lib.py").write_text(USES_LIB)
    (project / "flow" / "plain.py").write_text(PLAIN)
    rows = [{"x": 1}, {"x": 2}]

    def sweep(name: str) -> list[tuple[str, str]]:
        frame = ductaflow.run_instances(project / "flow" / f"{name}.py", rows, progress=False,
                                        export_html=False, engine=engine)  # fmt: skip
        return list(zip(frame.status, frame.reason, strict=True))

    assert sweep("plain") == [("success", "new")] * 2  # this process's fork zygote starts here
    # the flow imports mylib as if installed, through a PYTHONPATH set after that
    monkeypatch.setenv("PYTHONPATH", str(project / "src"))
    assert sweep("uses_lib") == [("success", "new")] * 2
    parts = record(project / "runs/uses_lib/x=1")["fingerprint_parts"]
    assert sorted(parts["code"]) == ["src/mylib/__init__.py", "src/mylib/helpers.py", "src/mylib/model.py"]
    assert "code" not in record(project / "runs/plain/x=1")["fingerprint_parts"]

    (lib / "helpers.py").write_text("import os  # edited\n")  # reached only through model.py
    assert sweep("uses_lib") == [("success", "code changed (src/mylib/helpers.py)")] * 2
    assert sweep("plain") == [("skipped", "unchanged")] * 2
    (lib / "model.py").write_text("from . import helpers\n" + MODEL.replace("* 2", "* 3"))
    check = ductaflow.check_instance(project / "runs/uses_lib/x=2")
    assert check.reason == "code changed (src/mylib/model.py)"
    assert sweep("uses_lib") == [("success", "code changed (src/mylib/model.py)")] * 2
    assert (project / "runs/uses_lib/x=2/out.txt").read_text() == "6"


def test_the_report_links_each_instance_to_the_upstream_reports_it_read(chain, browser):
    for step in ("prep", "fit", "evaluate"):
        rows = [{"instance_name": "a", **({"source": "data/a.txt"} if step == "prep" else {})}]
        ductaflow.run_instances(chain / "flow" / f"{step}.py", rows, progress=False)
    report = ductaflow.build_report(chain / "runs")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(report.as_uri())
    link = page.locator("section[data-step=evaluate] tr[data-instance=a] a", has_text="upstream fit/a")
    assert link.count() == 1
    link.click()
    page.wait_for_url("**/runs/fit/a/fit.html")
    assert "fit of" in page.content() and errors == []
    page.close()


def test_ctrl_c_while_upstream_runs_first_stops_the_call(chain):
    _run_chain(chain)
    flow = chain / "flow" / "prep.py"  # edited: prep/a is out of date, and now waits for a file
    flow.write_text(
        flow.read_text() + "\nimport os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.05)\n"
    )
    code = ("import sys\nfrom ductaflow.cli import run_cli\n"
            "sys.exit(run_cli(['run', 'flow/fit.py', '--instance', 'a', '--with-upstream']))\n")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=chain)
    try:
        deadline = time.monotonic() + 120
        # prep/a runs again first; between the old attempt set aside and the new one in place, no record
        while (read_record(chain / "runs/prep/a") or {}).get("status") != "running":
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    finally:
        proc.kill()  # a no-op once it has ended
    assert record(chain / "runs/prep/a")["status"] == "interrupted"
    assert record(chain / "runs/fit/a")["reason"] == "new"  # fit/a did not run again


def test_steps_that_read_each_other_are_a_cycle_not_a_recursion_error(chain):
    """Records edited by hand (or by two flows edited in turn) can name each other: that is reported."""
    _run(chain, "prep")
    _run(chain, "fit")
    for here, there in (("prep/a", "fit/a"), ("fit/a", "prep/a")):
        data = record(chain / "runs" / here)
        data["fingerprint_parts"]["upstream"] = {there: "0" * 64}
        (chain / "runs" / here / "run.json").write_text(json.dumps(data))
    cycle = r"prep/a is out of date \(upstream fit/a is part of a cycle of steps\)"
    with pytest.raises(UpstreamError, match=cycle):
        _run(chain, "evaluate")
