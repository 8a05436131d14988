"""Shared fixtures: test flows, the conformance corpus, helpers to read instance directories."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ductaflow

FLOWS = Path(__file__).parent / "flows"
REPO = Path(__file__).parent.parent
CHROMIUM = Path("/usr/bin/chromium")  # Debian's: playwright drives it, nothing is downloaded


def corpus_dir() -> Path | None:
    """The shared conformance corpus: $DUCTAFLOW_CORPUS, or shared/corpus beside the repository."""
    candidates = [os.environ.get("DUCTAFLOW_CORPUS"), REPO.parent / "shared" / "corpus"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Give SIGINT back its default when a shell started pytest in the background with it ignored.

    An ignored SIGINT is inherited: the children that the Ctrl-C tests
    interrupt would ignore it too and run to their end.
    """
    import signal

    config.addinivalue_line("markers", "slow: takes many minutes; runs only with DUCTAFLOW_SLOW=1")
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def flows() -> Path:
    """The directory of the tiny test flows."""
    return FLOWS


@pytest.fixture
def corpus() -> Path:
    """The corpus of papermill and jupytext test inputs (skips when it is not available)."""
    found = corpus_dir()
    if found is None:
        pytest.skip("corpus not found: set DUCTAFLOW_CORPUS to the shared/corpus directory")
    return found


@pytest.fixture
def browser():
    """Debian's chromium driven by playwright (skips with how to enable it when chromium is missing)."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium: apt-get install chromium (.ci/run does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, made the current directory, outside any git work tree."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("DUCTAFLOW_INJECTED", raising=False)
    return root


def record(run_dir: Path) -> dict[str, Any]:
    """The run record of an instance directory."""
    return json.loads((run_dir / "run.json").read_text())


def listing(root: Path) -> list[str]:
    """Every file and directory under ``root``, as sorted relative paths."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def interrupt_when(
    code: str, cwd: Path, moment: Callable[[str, str], bool], timeout: float = 120
) -> tuple[str, str]:
    """Run ``code`` in a fresh interpreter and send it SIGINT at ``moment``; return its stdout, stderr.

    ``moment(stdout, stderr)`` is asked every 10 ms with the child's output so
    far (it may also look at files) until it holds; the child must not end
    before. A child that has ended by then gets no signal; one still running
    a minute after it is killed.
    """
    import signal
    import subprocess
    import threading

    out: list[str] = []
    err: list[str] = []

    def read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    with subprocess.Popen([sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:  # fmt: skip
        readers = [
            threading.Thread(target=read, args=pair) for pair in ((proc.stdout, out), (proc.stderr, err))
        ]
        for reader in readers:
            reader.start()
        try:
            _await(lambda: moment("".join(out), "".join(err)), proc, readers, timeout)
            proc.send_signal(signal.SIGINT)  # a no-op once the child has ended
            proc.wait(timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; stdout: {''.join(out)!r}; stderr: {''.join(err)!r}") from None
        finally:
            proc.kill()  # a no-op once the child has ended
        for reader in readers:
            reader.join(timeout=60)
    return "".join(out), "".join(err)


def _await(moment: Callable[[], bool], proc: Any, readers: list[Any], timeout: float) -> None:
    """Return once ``moment()`` holds; fail if the child ``proc`` ends first or ``timeout`` passes."""
    import time

    deadline = time.monotonic() + timeout
    while not moment():
        if proc.poll() is not None:  # ended: take all it wrote, then ask once more
            for reader in readers:
                reader.join()
            assert moment(), "the child ended before the moment"
            return
        assert time.monotonic() < deadline, f"the moment did not come in {timeout} s"
        time.sleep(0.01)


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run ``args`` on a pseudo-terminal (stdout and stderr, 120 columns); return exit code and output."""
    import pty
    import subprocess

    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.Popen(args, cwd=cwd, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process has gone
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return proc.wait(timeout=timeout), output.decode(errors="replace")


@pytest.fixture
def tally_flow(project, flows) -> Path:
    """A copy of the tally flow inside the project (so tests may edit it)."""
    (project / "flow").mkdir()
    return Path(shutil.copy(flows / "tally.py", project / "flow" / "tally.py"))


def tally(project: Path) -> list[str]:
    """The instances executed so far, one entry per execution."""
    path = project / "tally.txt"
    return path.read_text().split() if path.exists() else []


def run(flow: Path, rows: list[dict], project: Path, **kwargs) -> Any:
    """run_instances with the tally file filled in and the output silenced."""
    table = [{"tally": str(project / "tally.txt"), **row} for row in rows]
    kwargs.setdefault("progress", False)
    kwargs.setdefault("export_html", False)
    return ductaflow.run_instances(flow, table, **kwargs)


def conductor_script(project: Path, flow: Path, rows: list[dict], **kwargs) -> str:
    """Python code running ``run_instances`` on ``rows`` (tally filled in) and printing its frame."""
    table = [{"tally": str(project / "tally.txt"), **row} for row in rows]
    return (
        "import ductaflow\n"
        f"frame = ductaflow.run_instances({str(flow)!r}, {table!r}, export_html=False, **{kwargs!r})\n"
        "print('RESULT', frame.to_json(orient='records'))\n"
    )


def result_rows(stdout: str) -> list[dict]:
    """The frame printed by :func:`conductor_script`'s code."""
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def gone(pid: int) -> bool:
    """Whether process ``pid`` no longer exists (it ended and was reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
