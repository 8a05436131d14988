"""Every example in the package's docstrings runs as written and shows what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import shutil
from pathlib import Path

import pytest
from conftest import REPO

import ductaflow

# The modules whose docstrings hold examples, in the order they run: later examples use the runs
# that earlier ones made (the step make_data of the example project), as a reader would.
IN_ORDER = ["config", "settings", "options", "project", "configtypes", "parameters", "configkeys", "seeds",
            "spaces", "inflow", "projectcode", "instance", "upstream", "conductor", "sweeps", "freshness",
            "results", "report", "diff", "debug", "clean", "scaffold", "executors", "envprobe",
            "environment", "serve.views", "placing", "bundle", "files"]  # fmt: skip


def _modules() -> dict[str, object]:
    names = [m.name for m in pkgutil.walk_packages(ductaflow.__path__, "ductaflow.")]
    return {name.removeprefix("ductaflow."): importlib.import_module(name) for name in names}


@pytest.fixture
def example_project(project: Path) -> Path:
    """The project with the example flow and config of this repository."""
    for folder, name in (("flow", "make_data.py"), ("config", "make_data.json")):
        (project / folder).mkdir(exist_ok=True)
        shutil.copy(REPO / folder / name, project / folder / name)
    return project


def test_no_example_is_skipped() -> None:
    """No docstring example opts out of running (no ``+SKIP``), and every module with examples is run."""
    finder = doctest.DocTestFinder()
    with_examples = set()
    for name, module in _modules().items():
        tests = finder.find(module, module.__name__)
        assert not any(doctest.SKIP in ex.options for t in tests for ex in t.examples), name
        if any(t.examples for t in tests):
            with_examples.add(name)
    assert with_examples == set(IN_ORDER)


def test_every_docstring_example_runs(example_project: Path) -> None:
    """Each module's examples run in an example project, in order, and print what they show."""
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    modules = _modules()
    report: list[str] = []
    for name in IN_ORDER:
        module = modules[name]
        globs = {**{n: getattr(ductaflow, n) for n in ductaflow.__all__}, **vars(module), "Path": Path}
        for test in sorted(finder.find(module, module.__name__, globs=globs), key=lambda t: t.lineno or 0):
            runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
    assert runner.tries >= 25
