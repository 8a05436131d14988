"""Instances on a Dask cluster: a real LocalCluster of worker processes, and the CLI's --scheduler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest
from conftest import conductor_script, record, result_rows, run, run_in_terminal, tally

import ductaflow
from ductaflow import SchedulerError, dask_client

RUNS = Path("runs") / "tally"


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes, shared by the tests of this module."""
    with dask_client("local:2") as c:
        yield c


@pytest.fixture
def workers(client):
    """The cluster with both workers up (a test may have killed one); their pids."""
    client.wait_for_workers(2, timeout=60)
    return set(client.run(os.getpid).values())


def wait_until(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sweep_on_the_cluster_fails_one_and_skips_on_rerun(project, tally_flow, client, workers):
    """Instances run in the workers' kernels; a failure stays one instance's; a re-run skips the rest."""
    rows = [{"instance_name": f"i{i}", "fail": "on purpose" if i == 1 else 0} for i in range(5)]
    first = run(tally_flow, rows, project, executor=client)
    assert dict(zip(first.instance, first.status, strict=True)) == {
        "i0": "success", "i1": "failed", "i2": "success", "i3": "success", "i4": "success",
    }  # fmt: skip
    assert first.error[1] == "RuntimeError: asked to fail: on purpose"
    ran_on = {record(project / RUNS / f"i{i}")["pid"] for i in range(5)}
    assert ran_on <= workers and os.getpid() not in ran_on
    assert set(client.run(os.getpid).values()) == workers  # no worker was lost to the failure
    again = run(tally_flow, rows, project, executor=client)
    assert dict(zip(again.instance, again.reason, strict=True)) == {
        "i0": "unchanged", "i1": "previous attempt failed", "i2": "unchanged", "i3": "unchanged",
        "i4": "unchanged",
    }  # fmt: skip
    assert sorted(tally(project)) == sorted(["i0", "i1", "i1", "i2", "i3", "i4"])


def test_a_worker_killed_mid_instance_leaves_it_crashed_and_a_rerun_picks_it_up(
    project, tally_flow, client, workers
):
    """SIGKILL to the worker running an instance: not retried in that sweep, crashed, re-run next time."""
    hold = project / "hold"
    hold.write_text("")
    rows = [{"instance_name": "victim", "hold": str(hold)}, {"instance_name": "bystander"}]
    result = {}
    sweep = threading.Thread(target=lambda: result.update(frame=run(tally_flow, rows, project,
                                                                      executor=client)))  # fmt: skip
    sweep.start()
    victim = project / RUNS / "victim"
    wait_until(lambda: (victim / "run.json").exists() and "victim" in tally(project))
    os.kill(record(victim)["pid"], signal.SIGKILL)
    sweep.join(timeout=120)
    frame = result["frame"]
    statuses = dict(zip(frame.instance, frame.status, strict=True))
    assert statuses == {"victim": "failed", "bystander": "success"}
    assert "died mid-instance" in frame.error[0]
    assert ductaflow.check_instance(victim).status == "crashed"
    assert tally(project).count("victim") == 1  # the executor's retry did not run it again
    hold.unlink()
    client.wait_for_workers(2, timeout=60)
    again = run(tally_flow, rows, project, executor=client)
    assert dict(zip(again.instance, again.reason, strict=True)) == {
        "victim": "previous attempt crashed", "bystander": "unchanged"
    }  # fmt: skip
    assert list(again.status) == ["success", "skipped"]
    assert record(victim)["status"] == "success" and (victim / "done.txt").exists()


@pytest.mark.parametrize("engine", ["fork", "kernel"])
def test_a_worker_sigtermed_mid_instance_records_it_interrupted(project, tally_flow, client, workers, engine):
    """A batch system's SIGTERM to the worker (wall time up): the instance is interrupted, not crashed."""
    hold = project / "hold"
    hold.write_text("")
    rows = [{"instance_name": f"victim-{engine}", "hold": str(hold)}]
    result = {}
    sweep = threading.Thread(target=lambda: result.update(
        frame=run(tally_flow, rows, project, executor=client, engine=engine)))  # fmt: skip
    sweep.start()
    victim = project / RUNS / f"victim-{engine}"
    wait_until(lambda: (victim / "run.json").exists() and f"victim-{engine}" in tally(project))
    worker = record(victim)["pid"]
    os.kill(worker, signal.SIGTERM)
    wait_until(lambda: record(victim)["status"] != "running")
    sweep.join(timeout=120)
    assert record(victim)["status"] == "interrupted"
    assert ductaflow.check_instance(victim).status == "interrupted"
    assert result["frame"].status[0] in {"interrupted", "failed"}  # the worker is gone: so may be its answer
    hold.unlink()
    client.wait_for_workers(2, timeout=60)
    again = run(tally_flow, rows, project, executor=client, engine=engine)
    assert list(again.reason) == ["previous attempt interrupted"] and list(again.status) == ["success"]


def test_a_local_and_a_cluster_sweep_at_once_run_each_instance_once(project, tally_flow, client, workers):
    """A local conductor process and a cluster sweep share the instance locks in the runs folder."""
    rows = [{"instance_name": f"i{i}", "sleep": 2} for i in range(6)]
    script = conductor_script(project, tally_flow, rows, jobs=2, progress=False)
    local = subprocess.Popen([sys.executable, "-c", script], cwd=project, stdout=subprocess.PIPE, text=True)
    on_cluster = run(tally_flow, rows, project, executor=client)
    out, _ = local.communicate(timeout=300)
    assert local.returncode == 0
    assert sorted(tally(project)) == [f"i{i}" for i in range(6)]
    ran = [r["instance"] for r in result_rows(out) if r["status"] == "success"]
    ran += list(on_cluster.instance[on_cluster.status == "success"])
    assert sorted(ran) == [f"i{i}" for i in range(6)]
    assert (on_cluster.status == "success").any() and len(ran) > (on_cluster.status == "success").sum()
    assert set(on_cluster.status) | {r["status"] for r in result_rows(out)} <= {"success", "skipped"}


def test_any_concurrent_futures_executor_runs_instances(project, tally_flow, tmp_path):
    """A ProcessPoolExecutor whose workers work elsewhere, given a relative flow path; it stays usable."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project / "flow" / "helper.py").write_text("ANSWER = 42\n")
    flow = project / "flow" / "tally.py"
    flow.write_text(flow.read_text() + "\n# %%\nimport helper\nassert helper.ANSWER == 42\n")
    rows = [{"instance_name": "a"}, {"instance_name": "b", "fail": "yes"}]
    context = get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context, initializer=os.chdir, initargs=(elsewhere,)) as pool:
        frame = run(Path("flow/tally.py"), rows, project, executor=pool)
        assert pool.submit(os.getpid).result() != os.getpid()
    assert list(frame.status) == ["success", "failed"], frame.error
    assert record(project / RUNS / "a")["pid"] != os.getpid()
    assert record(project / RUNS / "a")["flow"] == "flow/tally.py"
    assert ductaflow.check_instance(project / RUNS / "a").outdated is not True  # the flow is found
    assert list(elsewhere.iterdir()) == []


class _UnsharedExecutor(ThreadPoolExecutor.__base__):  # an Executor whose "workers" do not see runs/
    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(2)

    def submit(self, fn, /, *args, **kwargs):
        for marker in Path("runs").glob("*/.ductaflow/sweep-*"):
            marker.unlink()
        return self.pool.submit(fn, *args, **kwargs)


def test_a_worker_that_does_not_share_the_runs_folder_fails_its_instances(project, tally_flow, monkeypatch):
    """A worker that cannot see the conductor's marker says so, and writes no instance."""
    from ductaflow import tasks

    monkeypatch.setattr(tasks, "SHARE_WAIT_S", 1.0)  # instead of waiting 30 s for a slow filesystem
    frame = run(tally_flow, [{"instance_name": "a"}], project, executor=_UnsharedExecutor())
    assert list(frame.status) == ["failed"]
    assert "cannot see" in frame.error[0] and "shared by the conductor and every worker" in frame.error[0]
    assert not (project / RUNS / "a").exists() and tally(project) == []


def test_a_retried_task_reports_the_attempt_it_already_made(project, tally_flow):
    """An executor retrying a finished task (its worker died on the way back) gets the first outcome."""
    from ductaflow.conductor import _Conductor
    from ductaflow.tasks import run_task

    conductor = _Conductor(tally_flow, None, None, False, project, None, {"export_html": False})
    table = [{"instance_name": "a", "tally": str(project / "tally.txt"), "fail": "once"}]
    (task,) = conductor.plan(table, "instance_name", None, False, [])
    first = run_task(task, threading.Event())
    again = run_task(task, threading.Event())
    assert (first.status, again.status) == ("failed", "failed")
    assert again.error == "RuntimeError: asked to fail: once"
    assert tally(project) == ["a"]


def test_instance_locks_hold_between_threads_of_one_process(project):
    """Two sweeps sharing a worker process: its threads exclude each other whatever the filesystem."""
    from ductaflow import InstanceBusyError
    from ductaflow.rundir import current_status, lock_instance

    run_dir = project / RUNS / "a"
    errors = []
    with lock_instance(run_dir):
        thread = threading.Thread(target=lambda: errors.append(_try_lock(lock_instance, run_dir)))
        thread.start()
        thread.join()
        assert isinstance(errors[0], InstanceBusyError)
        assert current_status({"status": "running"}, run_dir) == "running"
    assert current_status({"status": "running"}, run_dir) == "crashed"
    with lock_instance(run_dir):
        pass


def _try_lock(lock_instance, run_dir):
    try:
        with lock_instance(run_dir):
            return None
    except Exception as exc:
        return exc


def test_executor_must_be_an_executor_or_a_client(project, tally_flow):
    with pytest.raises(TypeError, match=r"concurrent\.futures\.Executor or a dask\.distributed\.Client"):
        run(tally_flow, [{"instance_name": "a"}], project, executor="local:2")


def test_cli_sweep_on_a_local_cluster(project, tally_flow):
    """`ductaflow sweep --scheduler local:2` runs the table in two worker processes and skips on re-run."""
    table = project / "table.csv"
    table.write_text("instance_name,tally\n" + "".join(f"c{i},{project / 'tally.txt'}\n" for i in range(3)))
    cmd = [sys.executable, "-m", "ductaflow", "sweep", str(tally_flow), "--table", str(table), "--no-html"]
    proc = subprocess.Popen([*cmd, "--scheduler", "local:2"], cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert "3 success" in out
    pids = {record(project / RUNS / f"c{i}")["pid"] for i in range(3)}
    assert len(pids) <= 2 and proc.pid not in pids  # ran in the cluster's workers, not the command
    again = subprocess.run([*cmd, "--scheduler", "local:2"], cwd=project, capture_output=True, text=True,
                           timeout=240)  # fmt: skip
    assert again.returncode == 0 and "3 skipped" in again.stdout


def test_cli_cluster_sweep_on_a_terminal_shows_the_bar_and_the_summary(project, tally_flow):
    """On a terminal the live bar counts instances in flight on the cluster; the summary follows."""
    cmd = [sys.executable, "-m", "ductaflow", "sweep", str(tally_flow), "--grid", "p=1,2", "--no-html",
           "-o", f"tally={project / 'tally.txt'}", "--scheduler", "local:2"]  # fmt: skip
    status, text = run_in_terminal(cmd, cwd=project, timeout=240)
    assert status == 0, text
    assert "2/2" in text and "in flight" in text and "failed 0" in text
    assert "tally: 2 instances in" in text and "2 success" in text


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        ("local:0", "at least 1"),
        ("local:two", "whole number"),
        ("tcp://127.0.0.1:9", "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
        ("udp://127.0.0.1:9", "is not a Dask scheduler address"),
        ("tcp://127.0.0.1:port", "is not a Dask scheduler address"),
    ],
)
def test_cli_scheduler_errors_name_the_fix(project, tally_flow, scheduler, message):
    proc = subprocess.run(
        [sys.executable, "-m", "ductaflow", "sweep", str(tally_flow), "--grid", "p=1,2", "--scheduler",
         scheduler],
        cwd=project, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (project / "runs").exists()


def test_without_distributed_a_scheduler_names_the_extra(project, tally_flow):
    """With distributed not importable, --scheduler says which extra to install and runs nothing."""
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from ductaflow.cli import main\n"
        f"main(['sweep', {str(tally_flow)!r}, '--grid', 'p=1,2', '--scheduler', 'local:2'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert "pip install 'ductaflow[dask]'" in proc.stderr
    assert not (project / "runs").exists()
    with pytest.raises(SchedulerError, match="not an address"), dask_client("no such host"):
        pass


def test_ctrl_c_cancels_queued_work_and_stops_running_instances(project, tally_flow):
    """Ctrl-C in the terminal (SIGINT to the whole process group) during a cluster sweep."""
    hold = project / "hold"
    hold.write_text("")
    table = project / "table.csv"
    table.write_text(
        "instance_name,tally,hold\n" + "".join(f"h{i},{project / 'tally.txt'},{hold}\n" for i in range(5))
    )
    cmd = [sys.executable, "-m", "ductaflow", "sweep", str(tally_flow), "--table", str(table), "--no-html",
           "--scheduler", "local:2"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    wait_until(lambda: len(tally(project)) == 2)
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert time.monotonic() - sent < 30
    started = sorted(tally(project))
    for name in started:
        assert record(project / RUNS / name)["status"] == "interrupted"
    for name in {f"h{i}" for i in range(5)} - set(started):
        assert not (project / RUNS / name).exists()
    assert "5 interrupted" in out
    assert len(list((project / RUNS / ".ductaflow").glob("stop-*"))) == 1  # kept for tasks still in flight
    hold.unlink()
    again = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0 and "5 success" in again.stdout


def test_ctrl_c_with_a_process_pool_records_interrupted_not_failed(project, tally_flow):
    """Ctrl-C reaches the pool's processes too and breaks the pool: instances still read interrupted."""
    hold = project / "hold"
    hold.write_text("")
    rows = [{"instance_name": f"p{i}", "hold": str(hold)} for i in range(3)]
    table = [{"tally": str(project / "tally.txt"), **row} for row in rows]
    script = (
        "import multiprocessing\nfrom concurrent.futures import ProcessPoolExecutor\nimport ductaflow\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context('spawn'))\n"
        f"    frame = ductaflow.run_instances({str(tally_flow)!r}, {table!r}, export_html=False,\n"
        "                                    progress=False, executor=pool)\n"
        "    print('RESULT', frame.to_json(orient='records'))\n"
    )
    (project / "conduct.py").write_text(script)
    proc = subprocess.Popen([sys.executable, "conduct.py"], cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    wait_until(lambda: len(tally(project)) == 2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    statuses = {r["instance"]: r["status"] for r in result_rows(out)}
    assert set(statuses.values()) == {"interrupted"}, (statuses, err)
    for name in tally(project):
        assert record(project / RUNS / name)["status"] in {"interrupted", "running"}


def test_a_script_without_a_main_guard_is_told_why_its_cluster_did_not_start(project):
    """Each worker process imports the script again: the error names the guard it needs."""
    script = project / "no_guard.py"
    script.write_text("import ductaflow\nwith ductaflow.dask_client('local:1'):\n    pass\n")
    proc = subprocess.run([sys.executable, str(script)], cwd=project, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 1
    assert "SchedulerError: could not start a local Dask cluster" in proc.stderr
    assert 'if __name__ == "__main__":' in proc.stderr
