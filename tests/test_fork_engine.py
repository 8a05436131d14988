"""The fork engine keeps the instance contract: outputs, records, failures, timeouts, Ctrl-C and isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import interrupt_when, record

import ductaflow

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork engine needs os.fork")

OUTPUTS = """\
# %% tags=["parameters"]
config = {}

# %%
import os, subprocess, sys
from ductaflow import is_notebook_execution
print("python", config["n"], is_notebook_execution())
sys.stdout.flush()
os.system("echo from-os-system")
subprocess.run(["sh", "-c", "echo from-a-subprocess 1>&2"])
print("to stderr", file=sys.stderr)
6 * 7

# %%
from IPython.display import HTML, clear_output, display
handle = display(HTML("<b>first</b>"), display_id=True)
handle.update(HTML("<b>updated</b>"))
display("gone")
clear_output()
display("kept")

# %%
import matplotlib.pyplot as plt
plt.plot([1, 2, 3])

# %%
import ductaflow
ductaflow.record(n=config["n"])
_ = open("out.txt", "w").write(os.getcwd())
"""


def flow(project: Path, name: str, source: str) -> Path:
    """Write the flow ``name``.py into ``project``."""
    path = project / f"{name}.py"
    path.write_text(source)
    return path


def cell(source: str) -> str:
    """A flow whose one cell after the parameters is ``source``."""
    return f'# %% tags=["parameters"]\nconfig = {{}}\n\n# %%\n{source}\n'


def fork(path: Path, instance: str, config: dict | None = None, **options) -> ductaflow.RunResult:
    """Run ``path`` as ``instance`` with the fork engine, no HTML unless asked."""
    options.setdefault("export_html", False)
    return ductaflow.run_step_flow(path, path.stem, instance, config or {}, engine="fork", **options)


def failure(path: Path, instance: str, **options) -> ductaflow.FlowExecutionError:
    """Run ``path`` with the fork engine, expecting it to fail; the error."""
    with pytest.raises(ductaflow.FlowExecutionError) as caught:
        fork(path, instance, **options)
    return caught.value


def outputs(result: ductaflow.RunResult) -> list[list[dict]]:
    """The outputs of each code cell of the executed notebook."""
    nb = nbformat.read(result.notebook, as_version=4)
    return [c.outputs for c in nb.cells if c.cell_type == "code"]


def test_every_kind_of_output_lands_in_the_notebook_and_the_log(project: Path) -> None:
    """Streams (also from C level and subprocesses), results, display updates, clear_output, figures."""
    result = fork(flow(project, "outputs", OUTPUTS), "a", {"n": 3}, export_html=True)
    assert result.status == ductaflow.RunStatus.SUCCESS
    first, displays, figure, last = outputs(result)[2:]
    streams = {o["name"]: o["text"] for o in first if o["output_type"] == "stream"}
    assert streams["stdout"] == "python 3 True\nfrom-os-system\n"
    assert "from-a-subprocess\n" in streams["stderr"] and "to stderr\n" in streams["stderr"]
    assert first[-1]["output_type"] == "execute_result" and first[-1]["data"]["text/plain"] == "42"
    assert [o["data"]["text/plain"] for o in displays] == ["'kept'"]  # cleared, then displayed
    assert any("image/png" in o.get("data", {}) for o in figure)
    assert last == [] and (result.run_dir / "out.txt").read_text() == str(result.run_dir)
    assert json.loads((result.run_dir / "metrics.json").read_text()) == {"n": 3}
    log = (result.run_dir / "log.txt").read_text()
    for text in ("python 3 True", "from-os-system", "from-a-subprocess", "to stderr"):
        assert text in log
    assert record(result.run_dir)["engine"] == "fork"
    assert result.html is not None and "from-os-system" in result.html.read_text()


def test_a_display_updated_later_shows_its_last_value(project: Path) -> None:
    """display_id updates reach the output where the display was made, even from a later cell."""
    source = OUTPUTS.split("# %%\nimport matplotlib")[0].replace('display("gone")\nclear_output()\n', "")
    source += '\n# %%\nhandle.update(HTML("<b>from a later cell</b>"))\n'
    result = fork(flow(project, "updates", source), "a", {"n": 1})
    html = [o["data"]["text/html"] for o in outputs(result)[3] if "text/html" in o.get("data", {})]
    assert html == ["<b>from a later cell</b>"]


def test_a_failing_cell_is_named_and_the_next_cells_do_not_run(project: Path) -> None:
    """An exception fails the instance naming the cell; the traceback is in the notebook and the record."""
    path = flow(project, "fails", cell("x = 1\nraise ValueError('bad value')") + "\n# %%\nprint('never')\n")
    error = failure(path, "a")
    assert error.error_name == "ValueError" and error.cell_index == 1
    rec = record(path.parent / "runs/fails/a")
    assert rec["status"] == "failed" and rec["error"]["name"] == "ValueError"
    assert "bad value" in rec["error"]["message"]
    nb = nbformat.read(error.notebook, as_version=4)
    assert any(o["output_type"] == "error" for c in nb.cells for o in c.get("outputs", []))
    assert "never" not in (path.parent / "runs/fails/a/log.txt").read_text()


@pytest.mark.parametrize(("code", "status"), [("sys.exit(0)", "success"), ("sys.exit()", "success"),
                                              ("sys.exit(3)", "failed")])  # fmt: skip
def test_sys_exit_ends_the_flow_as_the_kernel_engine_does(project: Path, code: str, status: str) -> None:
    """sys.exit(0) is an early success; sys.exit(3) a failure; the cells after it do not run."""
    path = flow(project, "exits", cell(f"import sys\n{code}") + "\n# %%\nopen('after', 'w')\n")
    if status == "success":
        assert fork(path, "a").status == ductaflow.RunStatus.SUCCESS
    else:
        assert failure(path, "a").error_name == "SystemExit"
    assert not (path.parent / "runs/exits/a/after").exists()


DEATHS = [("os._exit(5)", "exited with status 5"), ("os.kill(os.getpid(), signal.SIGSEGV)", "SIGSEGV")]


@pytest.mark.parametrize(("code", "death"), DEATHS)
def test_a_process_that_dies_fails_only_its_instance(project: Path, code: str, death: str) -> None:
    """os._exit and a segfault fail the instance naming the death; the output before it is kept."""
    path = flow(project, "dies", cell(f"import os, signal\nprint('before', flush=True)\n{code}"))
    error = failure(path, "a")
    assert error.error_name == "DeadProcessError" and death in error.error_message
    assert error.cell_index == 1
    nb = nbformat.read(error.notebook, as_version=4)
    assert "before" in "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert record(path.parent / "runs/dies/a")["status"] == "failed"
    after = fork(flow(project, "fine", cell("print('fine')")), "b")  # the zygote serves on
    assert after.status == ductaflow.RunStatus.SUCCESS


def test_instances_do_not_share_globals_environment_path_or_directory(project: Path) -> None:
    """What one flow changes in its process is gone for the next one."""
    leaky = cell("import os, sys\nLEAKED = 1\nos.environ['LEAK'] = '1'\nsys.path.insert(0, '/leak')\n"
                 "os.chdir('/')\nimport json")  # fmt: skip
    fork(flow(project, "leaky", leaky), "a")
    probe = cell(
        "import json, os, sys\nopen('seen.json', 'w').write(json.dumps({'global': 'LEAKED' in "
        "globals(), 'env': 'LEAK' in os.environ, 'path': '/leak' in sys.path, 'cwd': os.getcwd()}))"
    )
    result = fork(flow(project, "probe", probe), "b")
    seen = json.loads((result.run_dir / "seen.json").read_text())
    assert seen == {"global": False, "env": False, "path": False, "cwd": str(result.run_dir)}


def test_the_per_cell_timeout_stops_a_sleeping_and_a_deaf_cell(project: Path) -> None:
    """A cell past the timeout is interrupted (SIGINT), or killed when it ignores SIGINT."""
    sleeping = flow(project, "sleeps", cell("import time\ntime.sleep(60)"))
    started = time.monotonic()
    error = failure(sleeping, "a", timeout=1)
    assert error.error_name == "CellTimeoutError" and error.cell_index == 1
    deaf = flow(project, "deaf", cell("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                      "time.sleep(60)"))  # fmt: skip
    error = failure(deaf, "a", timeout=1)
    assert error.error_name == "CellTimeoutError"
    assert time.monotonic() - started < 30  # not the 120 s the two cells would sleep
    assert record(deaf.parent / "runs/deaf/a")["status"] == "failed"


def test_a_named_kernel_is_refused_before_anything_is_written(project: Path) -> None:
    """engine='fork' runs in ductaflow's own Python: a kernel name is a clear error naming the fix."""
    path = flow(project, "plain", cell("print(1)"))
    with pytest.raises(ductaflow.ConfigError, match="engine='kernel'"):
        fork(path, "a", kernel_name="python3")
    assert not (project / "runs").exists()


def test_a_preload_that_fails_names_the_module(project: Path) -> None:
    """A module that cannot be preloaded fails the instance naming it, and the fix."""
    path = flow(project, "plain", cell("print(1)"))
    error = failure(path, "a", preload=["no_such_module_anywhere"])
    assert error.error_name == "EngineStartError"
    assert "no_such_module_anywhere" in error.error_message and "preload" in error.error_message


def test_preloaded_modules_are_already_imported_in_the_flow(project: Path) -> None:
    """preload=['pandas']: the flow finds pandas imported before its first cell."""
    path = flow(
        project, "preloaded", cell("import sys\nopen('had', 'w').write(str('pandas' in sys.modules))")
    )
    result = fork(path, "a", preload=["pandas"])
    assert (result.run_dir / "had").read_text() == "True"


WARMED = """\
import json
import matplotlib, matplotlib.pyplot as plt, pandas as pd
state = {
    "figures": plt.get_fignums(),
    # "interactive": on from the first cell with pyplot preloaded, at the first figure in a kernel (README)
    "rc": {k: repr(v) for k, v in matplotlib.rcParams.items() if k not in ("backend", "interactive")},
    "pandas": {o: repr(pd.get_option(o)) for o in ("display.max_rows", "display.precision", "display.width")},
    "names": sorted(n for n in globals() if not n.startswith("_")),
}
fig = plt.figure()
state["first_figure_number"] = fig.number
plt.close(fig)
json.dump(state, open("state.json", "w"))
"""


def test_warm_ups_of_preloaded_libraries_leave_nothing_a_flow_sees(project: Path) -> None:
    """The zygote used pandas and pyplot once (engines.warmups); a flow finds them as a kernel does."""
    path = flow(project, "warmed", cell(WARMED))
    forked = fork(path, "fork", preload=["pandas", "matplotlib.pyplot"])
    kernel = ductaflow.run_step_flow(path, "warmed", "kernel", {}, engine="kernel", export_html=False)
    states = [json.loads((r.run_dir / "state.json").read_text()) for r in (forked, kernel)]
    assert states[0]["figures"] == [] and states[0]["first_figure_number"] == 1
    assert states[0] == states[1]


def test_ctrl_c_during_a_cell_records_interrupted(project: Path) -> None:
    """Ctrl-C reaching the conductor stops the child and records the instance interrupted."""
    flow(project, "slow", cell("import time\nprint('started', flush=True)\ntime.sleep(60)"))
    code = ("import ductaflow\n"
            "ductaflow.run_step_flow('slow.py', 'slow', 'a', {}, engine='fork',\n"
            "                        export_html=False)\n")  # fmt: skip
    log = project / "runs/slow/a/log.txt"
    _out, err = interrupt_when(code, project, lambda o, e: log.exists() and "started" in log.read_text())
    assert "KeyboardInterrupt" in err
    assert record(project / "runs/slow/a")["status"] == "interrupted"


def test_the_zygote_ends_with_the_process_that_started_it(project: Path) -> None:
    """A conductor killed with SIGKILL leaves no zygote behind."""
    flow(project, "plain", cell("print(1)"))
    code = ("import ductaflow, os, sys, time\n"
            "from ductaflow.engines.fork import zygote_for\n"
            "ductaflow.run_step_flow('plain.py', 'plain', 'a', {}, engine='fork', export_html=False)\n"
            "print(zygote_for(()).process.pid, flush=True)\n"
            "time.sleep(60)\n")  # fmt: skip
    with subprocess.Popen(
        [sys.executable, "-c", code], cwd=project, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        zygote = int(proc.stdout.readline())
        proc.kill()
    deadline = time.monotonic() + 30
    while _alive(zygote):
        assert time.monotonic() < deadline, "the zygote outlived its parent"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _zygote_pids() -> list[int]:
    from ductaflow.engines import zygote

    return sorted(z.process.pid for z in zygote._ZYGOTES.values())


def test_each_dask_worker_keeps_its_own_zygote(project: Path) -> None:
    """On a cluster of two worker processes, instances run in forks of each worker's own zygote."""
    path = flow(project, "where", cell("import os\nprint(os.getppid())"))
    rows = [{"instance_name": f"i{i}", "i": i} for i in range(6)]
    with ductaflow.dask_client("local:2") as client:
        frame = ductaflow.run_instances(path, rows, executor=client, engine="fork", progress=False,
                                        export_html=False)  # fmt: skip
        zygotes = client.run(_zygote_pids)
    assert list(frame.status) == ["success"] * 6
    per_worker = [pids for pids in zygotes.values() if pids]
    assert all(len(pids) == 1 for pids in per_worker) and len({p[0] for p in per_worker}) == len(per_worker)
    parents = {int((project / "runs/where" / f"i{i}" / "log.txt").read_text().split()[0]) for i in range(6)}
    assert parents <= {pids[0] for pids in per_worker}  # each flow's process is a fork of a zygote


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork engine is the default on Linux")
def test_many_instances_fork_by_default_and_a_single_run_keeps_the_kernel(project: Path) -> None:
    """run_instances and the CLI fork; run_step_flow and a named kernel use the kernel engine."""
    path = flow(project, "default", cell("print(1)"))
    ductaflow.run_instances(path, [{"instance_name": "many"}], progress=False, export_html=False)
    ductaflow.run_instances(path, [{"instance_name": "named"}], progress=False, export_html=False,
                            kernel_name="python3")  # fmt: skip
    ductaflow.run_step_flow(path, "default", "single", {}, export_html=False)
    names = ("many", "named", "single")
    engines = {name: record(project / "runs/default" / name)["engine"] for name in names}
    assert engines == {"many": "fork", "named": "kernel", "single": "kernel"}


def test_a_module_named_like_the_stdlib_beside_the_conductor_cannot_break_the_zygote(project: Path) -> None:
    """json.py in the folder the zygote starts from: it starts (stdlib first) and the flow runs."""
    (project / "json.py").write_text("raise SystemExit('the standard json module was shadowed')\n")
    path = flow(project, "beside", cell("import json\nprint(json.dumps({'a': 1}))"))
    result = fork(path, "a", preload=["csv"])  # a preload set of its own: a zygote started from here
    assert '{"a": 1}' in (result.run_dir / "log.txt").read_text()
