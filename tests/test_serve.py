"""``ductaflow serve`` as a real server process: its API, token, files route, and that it writes nothing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import FLOWS

import ductaflow
from ductaflow.cli import cli
from ductaflow.serve import MISSING_STACK
from ductaflow.serve.views import eta_seconds

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # this machine, never a proxy


@contextlib.contextmanager
def served(runs: Path, *args: str, stop: int = signal.SIGINT) -> Iterator[str]:
    """``python -m ductaflow serve RUNS --port 0 ARGS`` running; yields the URL it printed once listening.

    At the end it gets ``stop`` (Ctrl-C) and must end as an interrupted command does (exit 130).
    """
    command = [sys.executable, "-m", "ductaflow", "serve", str(runs), "--port", "0", *args]
    env = {k: v for k, v in os.environ.items() if k != "DUCTAFLOW_SERVE_TOKEN"}
    pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": env}
    with subprocess.Popen(command, **pipes) as proc:
        try:
            line = proc.stdout.readline()  # the URL comes once the server accepts requests
            found = re.search(r"http://\S+", line)
            if found is None:
                proc.wait(timeout=60)
                raise AssertionError(f"no URL printed: {line!r}; stderr: {proc.stderr.read()!r}")
            yield found.group(0)
        finally:
            if proc.poll() is None:
                proc.send_signal(stop)
            try:
                _, err = proc.communicate(timeout=60)
            finally:
                proc.kill()  # a no-op once it has ended
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """Status, headers and body of a GET of ``url`` (an HTTP error is an answer too)."""
    try:
        with _OPENER.open(urllib.request.Request(url, headers=headers or {}), timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def api(url: str, path: str, **params: Any) -> Any:
    """The JSON answer of the API route ``path`` with query ``params`` (which must succeed)."""
    status, _, body = get(url + path + ("?" + urllib.parse.urlencode(params) if params else ""))
    assert status == 200, (path, params, body)
    return json.loads(body)


def fabricate(runs: Path, step: str, n: int, *, failed_every: int = 0) -> None:
    """Write ``n`` finished instances of ``step`` directly (records and metrics, as a sweep leaves them).

    Instance ``i<k>`` has config ``k`` and ``group`` (``a`` for even ``k``, else
    ``b``), metric ``score`` = k / n, host ``node<k % 4>``; every
    ``failed_every``-th failed (k = 0, failed_every, ...).
    """
    for k in range(n):
        run_dir = runs / step / f"i{k:05d}"
        run_dir.mkdir(parents=True)
        failed = bool(failed_every) and k % failed_every == 0
        record = {"ductaflow_record": 1, "status": "failed" if failed else "success", "step": step,
                  "instance": run_dir.name, "reason": "new", "started_at": "2026-11-23T10:00:00+00:00",
                  "ended_at": "2026-11-23T10:00:05+00:00", "duration_s": 1.0 + k % 7, "host": f"node{k % 4}",
                  "config": {"k": k, "group": "ab"[k % 2]},
                  "error": {"name": "ValueError", "message": f"bad k {k}"} if failed else None}  # fmt: skip
        (run_dir / "run.json").write_text(json.dumps(record))
        (run_dir / "metrics.json").write_text(json.dumps({"score": k / n}))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` (the index's WAL files included) with its mtime and size."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files, ""]:
            path = Path(folder, name)
            found[str(path.relative_to(root))] = (path.lstat().st_mtime_ns, path.lstat().st_size)
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder of real instances: step ``fit`` (three successes recording metrics, one failure)."""
    root = tmp_path_factory.mktemp("serve")
    rows = [{"instance_name": f"x{x}", "x": x, "loops": 3} for x in (1, 2, 3)]
    rows.append({"instance_name": "bad", "x": 9, "loops": 3, "fail": True})
    frame = ductaflow.run_instances(FLOWS / "metrics.py", rows, step_name="fit", project_root=root,
                                    progress=False, jobs=2)  # fmt: skip
    assert sorted(frame.status) == ["failed", "success", "success", "success"]
    return root / "runs"


def test_the_api_pages_sorts_filters_and_shows_one_instance(runs: Path) -> None:
    """Steps with counts, a sorted and filtered page of rows, one failed instance with its error and files."""
    with served(runs) as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        (step,) = api(url, "api/steps")["steps"]
        assert (step["step"], step["total"], step["counts"]) == ("fit", 4, {"failed": 1, "success": 3})
        page = api(url, "api/rows", step="fit", sort="metric.score", desc=1)
        assert [r["instance"] for r in page["rows"]] == ["bad", "x3", "x2", "x1"]
        assert {"status", "reason", "duration", "host", "started", "metric.score", "config.x"} <= set(
            page["columns"]
        )
        page = api(url, "api/rows", step="fit", where="x>=2", status="success")
        assert (page["total"], [r["instance"] for r in page["rows"]]) == (2, ["x2", "x3"])
        status, _, body = get(url + "api/rows?" + urllib.parse.urlencode({"step": "fit", "where": ">2"}))
        assert status == 400 and "'>2'" in json.loads(body)["error"]
        bad = api(url, "api/instance", step="fit", instance="bad")
        assert bad["row"]["status"] == "failed" and "failed after recording" in bad["error"]
        assert "ValueError" in bad["error"] and "raise ValueError" in bad["error"]  # the cell and traceback
        assert set(bad["links"]) == {"notebook", "config", "log"}
        status, headers, body = get(url + bad["links"]["notebook"])
        assert status == 200 and headers["content-type"].startswith("text/html") and b"ValueError" in body
        assert "sandbox" in headers["content-security-policy"]  # the notebook's scripts get no origin
        assert json.loads(get(url + bad["links"]["config"])[2])["fail"] is True
        assert get(url + "api/instance?step=fit&instance=nobody")[0] == 404
        assert get(url + "api/instance?step=..&instance=..")[0] == 404


def test_files_outside_the_runs_folder_are_refused(runs: Path, tmp_path: Path) -> None:
    """``..``, encoded ``..``, absolute paths and links leading out of the runs folder get 404."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    (runs / "fit" / "x1" / "escape.txt").symlink_to(secret)
    try:
        with served(runs) as url:
            assert get(url + "files/fit/x1/config.json")[0] == 200
            outside = f"files/../{os.path.relpath(secret, runs)}"
            for path in (outside, outside.replace("..", "%2e%2e"), f"files/{secret}", f"files//{secret}",
                         "files/fit/x1/escape.txt", "files/fit/x1/../../../" + secret.name):  # fmt: skip
                status, _, body = get(url + path)
                assert status in (403, 404) and b"not for the web" not in body, path
    finally:
        (runs / "fit" / "x1" / "escape.txt").unlink()


@pytest.mark.parametrize("with_index", [True, False], ids=["database", "no-database"])
def test_serving_writes_nothing_into_the_runs_folder(tmp_path: Path, runs: Path, with_index: bool) -> None:
    """Every route read, refreshes passed: no file or folder under RUNS was made or changed."""
    if with_index:
        folder = runs
    else:
        folder = tmp_path / "runs"
        fabricate(folder, "made", 30, failed_every=7)
    before = snapshot(folder)
    with served(folder) as url:
        for step in api(url, "api/steps")["steps"]:
            page = api(url, "api/rows", step=step["step"], sort="duration", where="status~s")
            for row in page["rows"]:
                shown = api(url, "api/instance", step=step["step"], instance=row["instance"])
                for link in shown["links"].values():
                    assert get(url + link)[0] == 200
            api(url, "api/charts", step=step["step"])
        assert get(url)[0] == 200 and get(url + "static/serve.js")[0] == 200
        seen = api(url, "api/version")["refreshed_at"]
        while api(url, "api/version")["refreshed_at"] == seen:  # a background refresh has passed
            pass
    assert snapshot(folder) == before


def test_a_token_is_needed_by_every_request_when_one_is_set(runs: Path) -> None:
    """Another address needs --token: without it 403; ?token= once sets a cookie; a header also works."""
    with served(runs, "--host", "0.0.0.0", "--token", "auto") as url:
        found = re.fullmatch(r"http://[^/]+:(\d+)/\?token=([\w-]+)", url)
        assert found is not None, url
        base, token = f"http://127.0.0.1:{found.group(1)}/", found.group(2)
        assert get(base + "api/steps")[0] == 403
        assert get(base + "api/steps?token=" + token[:-1] + "x")[0] == 403
        assert get(base + "files/fit/x1/config.json")[0] == 403
        status, headers, _ = get(base + "?token=" + token)
        assert status == 200
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and cookie == f"ductaflow_token={token}"
        assert get(base + "api/steps", {"Cookie": cookie})[0] == 200
        assert get(base + "api/steps", {"X-Ductaflow-Token": token})[0] == 200
        assert get(base + "api/steps", {"Authorization": f"Bearer {token}"})[0] == 200


def test_without_a_token_only_this_machine_s_names_are_answered(runs: Path) -> None:
    """A request naming another host (a rebound DNS name) is refused by a loopback server without token."""
    with served(runs) as url:
        assert get(url + "api/steps", {"Host": "localhost"})[0] == 200
        assert get(url + "api/steps", {"Host": "evil.example"})[0] == 400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "--host 0.0.0.0 lets other machines reach the runs folder, so it needs"),
        (["--host", "0.0.0.0", "--token", "short"], "--token is 5 characters long; give at least 16"),
    ],
    ids=["no-token", "short-token"],
)
def test_binding_another_address_needs_a_token(runs: Path, args: list[str], message: str) -> None:
    """Without a (long enough) token the command refuses before listening: exit 2 and the fix."""
    result = CliRunner().invoke(cli, ["serve", str(runs), *args], env={"DUCTAFLOW_SERVE_TOKEN": None})
    assert result.exit_code == 2, result.output
    assert message in result.output and "--token auto" in result.output


def test_a_missing_runs_folder_is_a_clear_error(tmp_path: Path) -> None:
    """RUNS that does not exist, or is a file: exit 2 naming it."""
    (tmp_path / "file.txt").write_text("")
    for path, what in ((tmp_path / "nowhere", "does not exist"), (tmp_path / "file.txt", "is not a folder")):
        result = CliRunner().invoke(cli, ["serve", str(path)])
        assert result.exit_code == 2
        assert f"error: the runs folder {str(path)!r} {what}" in result.output


def test_a_port_in_use_is_named_with_the_fix(runs: Path) -> None:
    """A second server on the same port: exit 2 naming the port and --port 0."""
    with served(runs) as url:
        port = urllib.parse.urlsplit(url).port
        result = CliRunner().invoke(cli, ["serve", str(runs), "--port", str(port)])
        assert result.exit_code == 2
        assert f"port {port} on 127.0.0.1 is already in use" in result.output and "--port 0" in result.output


def test_sigterm_stops_it_as_ctrl_c_does(runs: Path) -> None:
    """A scheduler's SIGTERM ends the server cleanly with the interrupted exit code."""
    with served(runs, stop=signal.SIGTERM) as url:
        assert get(url + "api/version")[0] == 200


def test_without_the_web_stack_it_says_what_to_install(runs: Path) -> None:
    """starlette or uvicorn missing: one line naming ``pip install 'ductaflow[serve]'``, exit 2."""
    code = ("import sys\nsys.modules['uvicorn'] = None\nfrom ductaflow.cli import main\n"
            f"main(['serve', {str(runs)!r}])\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == f"error: {MISSING_STACK}\n"
    assert MISSING_STACK.endswith("pip install 'ductaflow[serve]'")


def test_importing_the_command_leaves_the_web_stack_unloaded() -> None:
    """``import ductaflow.cli`` (every command) does not import starlette or uvicorn."""
    code = "import sys, ductaflow.cli\nprint(sorted(m for m in ('starlette', 'uvicorn') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize(
    ("step", "started", "eta"),
    [
        ({"running": 2, "mean_success_s": 10.0, "counts": {}}, ["12:00:00", "12:00:06"], 6.0),
        ({"running": 2, "mean_success_s": 10.0, "counts": {"pending": 4}}, ["12:00:00", "12:00:06"], 23.0),
        ({"running": 1, "mean_success_s": 10.0, "counts": {}}, ["11:00:00"], 0.0),
        ({"running": 4, "mean_success_s": 10.0, "counts": {}}, ["12:00:10"], 10.0),
        ({"running": 2, "mean_success_s": None, "counts": {}}, ["12:00:00"], None),
        ({"running": 0, "mean_success_s": 10.0, "counts": {"pending": 3}}, [], None),
    ],
    ids=["running", "pending", "overdue", "unseen", "no-success-yet", "none-running"],
)
def test_the_eta_divides_the_work_left_among_the_running(step: dict, started: list[str], eta: Any) -> None:
    """Work left (each running one's mean minus elapsed, a mean per pending one) over the number running."""
    now = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    assert eta_seconds(step, [f"2026-01-01T{t}+00:00" for t in started], now) == eta
