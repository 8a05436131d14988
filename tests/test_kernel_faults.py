"""The kernel engine's faults on real kernels: replies not to miss, kernels that never answer, descriptors.

A cell whose reply is in is never waited on past a bound; a kernel that
does not answer at start is replaced by a new one; the default kernel uses
Unix sockets, so kernels started by many processes at once share no port;
instance after instance leaves the number of open file descriptors flat.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path

import jupytext
import pytest
from conftest import FLOWS, gone

import ductaflow
from ductaflow.engines import Execution, Outcome, get_engine
from ductaflow.engines.kernelstart import ANSWER_WITHIN

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")


def notebook(*cells: str) -> object:
    """A notebook of these code cells, as jupytext reads a percent-format flow."""
    return jupytext.reads("".join(f"# %%\n{cell}\n\n" for cell in cells), fmt="py:percent")


def execute(run: Path, nb: object, **options: object) -> Outcome:
    """Execute ``nb`` with the kernel engine in the directory ``run``; the outcome."""
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "log.txt", "w") as log:
        job = Execution(nb, cwd=run, log=log, env=dict(os.environ), **options)  # type: ignore[arg-type]
        return get_engine("kernel").execute(job)


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def test_widget_output_cells_end_at_once(tmp_path: Path) -> None:
    """A flow printing into an ipywidgets Output runs 30 times without a cell timeout, each in seconds."""
    pytest.importorskip("ipywidgets")
    durations = []
    for index in range(30):
        start = time.monotonic()
        result = ductaflow.run_step_flow(
            FLOWS / "widget_output.py", "widgets", f"i{index}", {"lines": 40},
            project_root=tmp_path, engine="kernel", export_html=False,
        )  # fmt: skip
        durations.append(time.monotonic() - start)
        assert result.status == "success"
        nb = json.loads((result.run_dir / "widget_output.ipynb").read_text())
        # one print may come as two stream messages ("after the widget", "\n")
        assert "".join("".join(out["text"]) for out in nb["cells"][-1]["outputs"]) == "after the widget\n"
        assert (result.run_dir / "log.txt").read_text().count("inside the output widget") == 40
    # a reply left unread waited for the cell timeout (here: none) in about 1 run of 3 before
    assert max(durations) < 15, durations


def test_a_cell_whose_last_output_never_comes_is_noted(tmp_path: Path) -> None:
    """A lost 'idle' message costs OUTPUT_GRACE seconds, a note in the outcome and a line in the log."""
    from ductaflow.engines.kernel import OUTPUT_GRACE

    nb = jupytext.read(FLOWS / "drops_idle.py")
    start = time.monotonic()
    outcome = execute(tmp_path / "run", nb)
    took = time.monotonic() - start
    assert outcome.error is None
    assert OUTPUT_GRACE <= took < OUTPUT_GRACE + 20
    [note] = outcome.notes
    assert note.startswith("cell 2: the kernel's reply came but not the end of its output")
    log = (tmp_path / "run" / "log.txt").read_text()
    assert f"[ductaflow] {note}\n" in log
    assert log.index("[ductaflow] cell 2") < log.index("the next cell runs")


#: A kernel launcher that stays alive and silent (as an ipykernel whose IOPub port was taken does)
#: the first ``stalls`` times it is started, then starts a real ipykernel.
STALLING_LAUNCHER = """\
import os, signal, sys
counter, stalls, connection_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(counter, "a") as fh:
    fh.write(f"{os.getpid()}\\n")
with open(counter) as fh:
    started = len(fh.read().split())
if started <= stalls:
    signal.pause()
from ipykernel import kernelapp
sys.argv = [sys.argv[0], "-f", connection_file]
kernelapp.launch_new_instance()
"""


def stalling_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stalls: int) -> Path:
    """Install a kernelspec 'stalls' (this test's JUPYTER_PATH) whose first ``stalls`` kernels never answer.

    Returns the file where each started kernel process writes its pid.
    """
    spec = tmp_path / "jupyter" / "kernels" / "stalls"
    spec.mkdir(parents=True)
    (spec / "launcher.py").write_text(STALLING_LAUNCHER)
    counter = tmp_path / "started.txt"
    argv = [sys.executable, str(spec / "launcher.py"), str(counter), str(stalls), "{connection_file}"]
    kernelspec = {"argv": argv, "display_name": "stalls", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernelspec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return counter


def test_a_kernel_that_never_answers_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel silent for ANSWER_WITHIN seconds is killed and a new one runs the flow; restarts counts it."""
    counter = stalling_kernel(tmp_path, monkeypatch, stalls=1)
    start = time.monotonic()
    outcome = execute(tmp_path / "run", notebook("print('ran')"), kernel_name="stalls")
    assert outcome.error is None
    assert time.monotonic() - start >= ANSWER_WITHIN
    assert outcome.restarts == 1
    assert outcome.notes == [f"kernel replaced: the kernel did not answer within {ANSWER_WITHIN:.3g} s"]
    stalled, answered = (int(pid) for pid in counter.read_text().split())
    assert gone(stalled) and gone(answered)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "[ductaflow] kernel replaced: the kernel did not answer" in log
    assert "ran\n" in log


def test_kernels_that_never_answer_fail_within_the_startup_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When no kernel answers, the start fails at startup_timeout, naming how many kernels were tried."""
    counter = stalling_kernel(tmp_path, monkeypatch, stalls=99)
    startup_timeout = ANSWER_WITHIN + 2
    start = time.monotonic()
    outcome = execute(tmp_path / "run", notebook("print('ran')"), kernel_name="stalls",
                      startup_timeout=startup_timeout)  # fmt: skip
    assert startup_timeout <= time.monotonic() - start < startup_timeout + 20
    assert outcome.error is not None and outcome.error.name == "KernelStartError"
    assert outcome.error.fault
    assert outcome.error.message == (
        f"the kernel could not start: KernelSilent: no kernel answered within {startup_timeout:.3g} s "
        "(2 kernels started)"
    )
    assert outcome.restarts == 1
    assert all(gone(int(pid)) for pid in counter.read_text().split())


def test_the_default_kernel_uses_unix_sockets_it_removes(tmp_path: Path) -> None:
    """The default kernel listens on Unix sockets of its own (no TCP port to collide on); they go with it."""
    cell = (
        "import json\nfrom ipykernel import get_connection_info\n"
        "open('connection.json', 'w').write(get_connection_info())"
    )
    outcome = execute(tmp_path / "run", notebook(cell))
    assert outcome.error is None
    info = json.loads((tmp_path / "run" / "connection.json").read_text())
    assert info["transport"] == "ipc"
    ports = [info[name] for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
    assert not [port for port in ports if Path(f"{info['ip']}-{port}").exists()]


def test_sockets_of_killed_kernels_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel socket left by a killed conductor (old, nobody listening) is removed; a live one stays."""
    import socket
    import tempfile

    runtime = Path(tempfile.mkdtemp(prefix="rt-"))  # short: tmp_path may be too long for a socket's path
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    stale, live = runtime / "ductaflow-0123456789abcdef-1", runtime / "ductaflow-fedcba9876543210-1"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(stale))  # closed without unlinking, as by a kill -9
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(live))
    listening.listen()
    hour_ago = time.time() - 3600
    for path in (stale, live):
        os.utime(path, (hour_ago, hour_ago))
    try:
        assert execute(tmp_path / "run", notebook("print('ran')")).error is None
        assert not stale.exists() and live.exists()
    finally:
        listening.close()
        shutil.rmtree(runtime)


def test_open_file_descriptors_stay_flat_over_60_instances(tmp_path: Path) -> None:
    """Sixty kernel-engine instances in one process (successes, errors, a dead kernel) open no lasting fds."""
    flows = {name: jupytext.read(FLOWS / f"{name}.py") for name in ("ok", "broken", "kills_kernel")}
    counts = []
    for index in range(60):
        name = "broken" if index % 10 == 3 else "kills_kernel" if index == 37 else "ok"
        outcome = execute(tmp_path / f"i{index % 3}", copy.deepcopy(flows[name]))
        assert (outcome.error is None) == (name == "ok")
        counts.append(open_fds())
    warm = counts[4]  # the first instances import and cache what later ones reuse
    assert max(counts[5:]) - warm <= 2, counts


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DUCTAFLOW_SLOW"), reason="2,000 kernels: set DUCTAFLOW_SLOW=1")
@pytest.mark.timeout(3600)
def test_open_file_descriptors_stay_flat_over_2000_instances(tmp_path: Path) -> None:
    """Two thousand kernel-engine instances in one process open no lasting file descriptors."""
    nb = jupytext.read(FLOWS / "ok.py")
    counts = []
    for index in range(2000):
        outcome = execute(tmp_path / f"i{index % 3}", copy.deepcopy(nb))
        assert outcome.error is None
        counts.append(open_fds())
    print("open fds every 100 instances:", counts[::100], "last:", counts[-1])
    assert max(counts[5:]) - counts[4] <= 2, counts[::100]
