"""The fork engine gives the notebooks the kernel engine gives: same outcomes, same outputs, cell by cell.

Every notebook of the conformance corpus, the example flows (make_data then
analyse, with the configs in config/) and a probe of the kinds of output run
through both engines, each engine in a copy of one project. The executed
notebooks are compared code cell by code cell once volatile text is
normalised (the project's path, times, memory addresses, PNG bytes, how a
stream's text is split into outputs). A difference that is not in
:data:`ALLOWED` fails the test, and so does an allowed one that went away.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import pytest
from conftest import REPO

import ductaflow

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork engine needs os.fork")

#: Configs of the corpus files that have a parameters cell (as in test_corpus). The others get a
#: parameters cell ``x = 0`` put first in a copy of them, and ``{"x": 1}``.
CORPUS_CONFIGS = {
    "papermill/simple_execute.ipynb": {"msg": "Hello"},
    "papermill/nb_version_4.4.ipynb": {"var": 2},
    "papermill/report_mode_test.ipynb": {"a": 0},
    "papermill/result_no_exec.ipynb": {"foo": 1},
    "papermill/complex_parameters.ipynb": {"x": 1},
    "jupytext/nteract_with_parameter.py": {"param": 10},
    "jupytext/hydrogen.py": {"x": 1},
    "jupytext/Notebook with metadata and long cells.py": {"x": 1},
}
#: Per-cell timeouts: keyboard_interrupt.ipynb sleeps 60 s.
TIMEOUTS = {"papermill/keyboard_interrupt.ipynb": 1.0}

#: What a flow's code meets in an engine: environment, warnings, displays, reprs, figures, magics.
PROBE = """\
# %% tags=["parameters"]
config = {"label": "probe"}

# %%
import os
import sys

print(sys.path)
{key: os.environ.get(key) for key in ("TERM", "CLICOLOR", "FORCE_COLOR", "PAGER", "GIT_PAGER", "MPLBACKEND")}

# %%
import sys
import warnings

print("to stdout")
sys.stdout.flush()
print("to stderr", file=sys.stderr)
warnings.warn("a warning from the flow")

# %%
from IPython.display import HTML, Markdown, clear_output, display

display(HTML("<b>bold</b>"), metadata={"isolated": True})
handle = display(Markdown("first"), display_id=True)
handle.update(Markdown("updated"))
print("gone")
clear_output()
print("kept")

# %%
print("replaced")
clear_output(wait=True)
display({"text/plain": "raw"}, raw=True)
print("after the wait")


# %%
class Rich:
    def _repr_html_(self):
        return "<i>rich</i>"

    def _repr_markdown_(self):
        return "*rich*"


Rich()

# %%
object()

# %%
%matplotlib inline
import matplotlib.pyplot as plt

plt.plot([1, 2, 3])

# %%
!echo from a shell command
_ = 1

# %%
_ = os.system("echo from os.system")

# %%
import asyncio


async def answer():
    return 42


try:
    print(asyncio.run(answer()))
except RuntimeError as exc:
    print("RuntimeError:", exc)

# %%
try:
    input("name? ")
except Exception as exc:
    print(type(exc).__name__, exc)

# %%
# %%time
sum(range(10))

# %%
import multiprocessing
import time

start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # fork() in a process with threads (3.12+)
    with multiprocessing.get_context("fork").Pool(2) as pool:  # processes the flow forks do not stall it
        print(pool.map(abs, [-1, -2]))
print("quick:", time.perf_counter() - start < 5)


# %%
def fails(x):
    return 1 / x


# %%
fails(0)
"""

#: Code cells whose outputs differ for a reason given: (file, cell index in the executed notebook).
ALLOWED: dict[tuple[str, int], str] = {
    ("papermill/keyboard_interrupt.ipynb", 3): (
        "per-cell timeout: the fork engine stops the cell with SIGINT, so the cell keeps the "
        "KeyboardInterrupt traceback showing where it was; nbclient stops waiting and the kernel is "
        "shut down without an interrupt, so the cell has no output"
    ),
    ("probe.py", 11): (
        "output written to file descriptors 1 and 2 by C code, os.system and subprocesses: the fork engine "
        "puts it in the notebook and the log; the kernel engine starts its kernel with capture_fd_output "
        "off, so it goes to the log only"
    ),
    ("probe.py", 12): (
        "a kernel runs each cell inside its running asyncio event loop, the fork engine's shell does not: "
        "asyncio.run() works in the fork engine and raises RuntimeError in a kernel (top-level await "
        "works in both)"
    ),
}


def _corpus_files(corpus: Path) -> list[str]:
    found = [p for p in corpus.glob("*/*") if p.suffix in (".py", ".ipynb")]
    return sorted(p.relative_to(corpus).as_posix() for p in found)


def _copy_with_parameters(source: Path, target: Path) -> None:
    """Copy a corpus notebook; one without a parameters cell gets ``x = 0`` as its first cell."""
    nb = jupytext.read(source)
    if any("parameters" in cell.metadata.get("tags", []) for cell in nb.cells):
        shutil.copy(source, target)
        return
    cell = nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]})
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):
        del cell["id"]  # cell ids came with nbformat 4.5
    nb.cells.insert(0, cell)
    jupytext.write(nb, target, fmt="ipynb" if source.suffix == ".ipynb" else "py:percent")


def _project(root: Path, corpus: Path) -> list[tuple[str, Path, str, dict, float | None]]:
    """Write the project both engines run; return its cases: (name, flow, instance, config, timeout)."""
    for name in ("flow", "config"):
        shutil.copytree(REPO / name, root / name)
    shutil.copytree(corpus / "LICENSES", root / "corpus" / "LICENSES")  # the licences stay beside
    cases = []
    for number, name in enumerate(_corpus_files(corpus)):
        target = root / "corpus" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_with_parameters(corpus / name, target)
        config = CORPUS_CONFIGS.get(name, {"x": 1})
        cases.append((name, target, f"case{number}", config, TIMEOUTS.get(name)))
    (root / "probe.py").write_text(PROBE)
    cases.append(("probe.py", root / "probe.py", "probe", {"label": "probe"}, None))
    invalid = Path(shutil.copy(REPO / "tests" / "flows" / "invalid_output.py", root / "invalid_output.py"))
    cases.append(("tests/flows/invalid_output.py", invalid, "out", {}, None))
    for step in ("make_data", "analyse"):
        config = json.loads((root / "config" / f"{step}.json").read_text())
        cases.append((f"flow/{step}.py", root / "flow" / f"{step}.py", "baseline", config, None))
    return cases


def _run_all(engine: str, root: Path, cases: list) -> dict[str, tuple[tuple, Any]]:
    """Run every case with ``engine``, in order; ``{name: (outcome, executed notebook)}``."""
    results = {}
    for name, flow, instance, config, timeout in cases:
        step = flow.stem.replace(" ", "_").replace(".", "_")
        try:
            result = ductaflow.run_step_flow(flow, step, instance, config, project_root=root, timeout=timeout,
                                             export_html=False, engine=engine)  # fmt: skip
            outcome: tuple = ("success",)
            path = result.notebook
        except ductaflow.FlowExecutionError as exc:
            outcome = ("failed", exc.error_name, _normal(str(exc.error_message), root))
            path = exc.notebook
        results[name] = (outcome, nbformat.read(path, as_version=4))
    return results


_TIME = re.compile(r"\d+(\.\d+)?\s?(ns|µs|μs|us|ms|s)\b")


def _normal(text: str, root: Path) -> str:
    text = text.replace(str(root), "<project>")
    text = re.sub(r"ipykernel_\d+", "ipykernel_<pid>", text)
    text = re.sub(r"0x[0-9a-fA-F]+", "0x<address>", text)
    return _TIME.sub("<time>", text)


def _outputs(cell: Any, root: Path) -> str:
    """A code cell's execution count and outputs as normalised text; streams of one name are merged."""
    merged: list[dict] = []
    for output in cell.get("outputs", []):
        output = json.loads(json.dumps(output))
        if output["output_type"] == "stream" and merged and merged[-1].get("name") == output["name"]:
            merged[-1]["text"] += output["text"]
            continue
        if "image/png" in output.get("data", {}):
            output["data"]["image/png"] = "<png>"
        merged.append(output)
    shown = {"execution_count": cell.get("execution_count"), "outputs": merged}
    return _normal(json.dumps(shown, indent=1, sort_keys=True, ensure_ascii=False), root)


def _compare(results: dict[str, Any], roots: dict[str, Path]) -> tuple[int, dict[tuple[str, int], str]]:
    """How many code cells were compared, and the differing ones with both engines' outputs."""
    compared, differing = 0, {}
    for name, (_, kernel_nb) in results["kernel"].items():
        fork_nb = results["fork"][name][1]
        assert [c.source for c in kernel_nb.cells] == [c.source for c in fork_nb.cells], name
        for index, (ours, theirs) in enumerate(zip(kernel_nb.cells, fork_nb.cells, strict=True)):
            if ours.cell_type != "code":
                continue
            compared += 1
            expected, got = _outputs(ours, roots["kernel"]), _outputs(theirs, roots["fork"])
            if expected != got:
                differing[(name, index)] = f"kernel:\n{expected}\nfork:\n{got}"
    return compared, differing


def test_the_fork_engine_gives_the_notebooks_the_kernel_engine_gives(tmp_path, corpus, monkeypatch):
    """Same outcome for every flow; at least 95% of code cells identical; the others exactly ALLOWED.

    One test, so that one pytest-xdist worker runs it: the two engines run at
    once, each in its own copy of the project.
    """
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("DUCTAFLOW_INJECTED", raising=False)
    roots = {engine: tmp_path / engine for engine in ("kernel", "fork")}
    cases = {}
    for engine, root in roots.items():
        root.mkdir()
        cases[engine] = _project(root, corpus)
    # the kernel engine's cases in two lanes, make_data then analyse in one; the fork engine's in one
    examples = [case for case in cases["kernel"] if case[0].startswith("flow/")]
    others = [case for case in cases["kernel"] if case not in examples]
    lanes = [("kernel", others[0::2] + examples), ("kernel", others[1::2]), ("fork", cases["fork"])]
    results: dict[str, dict] = {"kernel": {}, "fork": {}}
    with ThreadPoolExecutor(len(lanes)) as pool:
        futures = [(engine, pool.submit(_run_all, engine, roots[engine], lane)) for engine, lane in lanes]
        for engine, future in futures:
            results[engine].update(future.result())

    outcomes = {name: (results["kernel"][name][0], results["fork"][name][0]) for name in results["kernel"]}
    assert {name: pair for name, pair in outcomes.items() if pair[0] != pair[1]} == {}
    assert {pair[0][0] for pair in outcomes.values()} == {"success", "failed"}

    compared, differing = _compare(results, roots)
    identical = compared - len(differing)
    assert identical >= 0.95 * compared, f"{identical} of {compared} code cells identical"
    unexpected = {key: shown for key, shown in differing.items() if key not in ALLOWED}
    assert unexpected == {}, "\n\n".join(f"{key}:\n{shown}" for key, shown in unexpected.items())
    gone = sorted(set(ALLOWED) - set(differing))
    assert gone == [], f"no longer different, remove from ALLOWED: {gone}"
