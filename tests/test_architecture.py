"""The package's shape: no import cycle, no module past 450 lines, one os.replace, one engines package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "ductaflow"
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "templates" in path.parts:
            continue
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere, functions included (TYPE_CHECKING aside)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name and not name.startswith(candidate + "."):
                targets.add(candidate)
    return targets


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_even_through_deferred_imports() -> None:
    """Modules import only modules below them: no cycle, counting imports inside functions."""
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert {"ductaflow.rundir", "ductaflow.engines"} <= graph["ductaflow.instance"]  # imports are seen
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a two-module circle is reported."""
    assert _cycle({"a": {"b"}, "b": {"a"}, "c": set()}) == ["a", "b", "a"]


def test_modules_stay_readable_in_one_sitting() -> None:
    """No module of the package is longer than 450 lines."""
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_one_way_to_replace_a_file_and_statuses_through_the_enum() -> None:
    """os.replace is called in one place (files.rename); statuses are never compared as bare strings."""
    sources = {name: path.read_text(encoding="utf-8") for name, path in _modules().items()}
    replacing = [name for name, text in sources.items() for _ in re.finditer(r"os\.replace\(", text)]
    assert replacing == ["ductaflow.files"]
    literal = re.compile(r"""[=!]=\s*["'](success|failed|crashed|interrupted|running|skipped|pending)["']""")
    assert [name for name, text in sources.items() if literal.search(text)] == []


def test_engines_live_in_their_package() -> None:
    """The kernel engine is a module of ductaflow/engines/, registered by name."""
    from ductaflow.engines import ENGINES, get_engine

    assert (PACKAGE / "engines" / "kernel.py").is_file()
    assert get_engine("kernel").name == "kernel" and "kernel" in ENGINES
