"""Project code in the fingerprint: the project's own modules a flow imports.

A flow's results depend on the code it runs, and that is more than the flow
file: ``from mylib.model import fit`` runs ``src/mylib/model.py``. The
modules are found by reading the imports of the flow's code cells (every
``import`` and ``from ... import`` statement, also inside functions and
``try`` blocks), resolving each to a file under the project root, and reading
that file's imports in turn (relative imports included), transitively, within
the project. A module is looked for beside the flow (its folder is importable
when it runs), at the project root, in its ``src/`` folder and in the entries
of ``sys.path`` that lie inside the project.

Files of installed packages are never part of it (the run record lists their
versions instead), nor are files in a virtual environment inside the project.
Nothing is imported or executed: the files are only parsed, and a file that
does not parse is hashed all the same, with no imports followed.
"""

from __future__ import annotations

import ast
import hashlib
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_MAGIC = re.compile(r"^\s*[%!]")
_INSTALLED = {"site-packages", "dist-packages", "__pypackages__", "node_modules"}


def flow_code(notebook: Any, flow_path: Path, root: Path) -> dict[str, str]:
    """The project modules a flow imports, transitively: ``{path relative to root: sha256}``, sorted.

    ``notebook`` is the flow's parsed notebook (:class:`ductaflow.flow.Flow`
    ``.notebook``); ``flow_path`` its file (its folder is where imports are
    first looked for); ``root`` the project root.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "src" / "mylib").mkdir(parents=True)
    >>> _ = (root / "src" / "mylib" / "__init__.py").write_text("")
    >>> _ = (root / "src" / "mylib" / "model.py").write_text("from . import util")
    >>> _ = (root / "src" / "mylib" / "util.py").write_text("import json")
    >>> from ductaflow.flow import read_flow
    >>> flow = root / "x.py"
    >>> _ = flow.write_text('# %% tags=["parameters"]\\nconfig = {}\\n# %%\\nimport mylib.model\\n')
    >>> sorted(flow_code(read_flow(flow).notebook, flow, root))
    ['src/mylib/__init__.py', 'src/mylib/model.py', 'src/mylib/util.py']
    """
    root = root.absolute()
    finder = _Finder(flow_path.absolute().parent, root)
    found: dict[Path, str] = {}
    todo = [path for imported in _imports(_flow_source(notebook)) for path in finder.files(*imported)]
    while todo:
        path = todo.pop()
        if path in found or path == flow_path.absolute():
            continue
        digest, imports = _scanned(path)
        found[path] = digest
        package = _package_of(path, finder)
        todo += [p for imported in imports for p in finder.files(*_absolute(imported, package))]
    return {path.relative_to(root).as_posix(): found[path] for path in sorted(found)}


def _flow_source(notebook: Any) -> str:
    cells = [c.source for c in notebook.cells if c.get("cell_type") == "code"]
    return "\n".join(cells)


#: An import as found: (level of a relative import, dotted module or "", names imported from it).
_Import = tuple[int, str, tuple[str, ...]]


def _imports(source: str) -> list[tuple[str, tuple[str, ...]]]:
    """``(dotted module, names)`` for each absolute import of ``source`` (a flow: no relative ones)."""
    return [(module, names) for level, module, names in _parse_imports(source) if level == 0]


def _parse_imports(source: str) -> list[_Import]:
    code = "\n".join("" if _MAGIC.match(line) else line for line in source.splitlines())
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return _per_chunk(code)
    return list(_walk(tree))


def _per_chunk(code: str) -> list[_Import]:
    """The imports of the parts that parse, when the whole does not (a cell with a stray magic)."""
    found: list[_Import] = []
    for chunk in re.split(r"\n(?=\S)", code):
        try:
            found += _walk(ast.parse(chunk))
        except (SyntaxError, ValueError):
            continue
    return found


def _walk(tree: ast.AST) -> Iterator[_Import]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield 0, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or "", tuple(a.name for a in node.names if a.name != "*")


_SCANNED: dict[tuple[str, int, int], tuple[str, list[_Import]]] = {}


def _scanned(path: Path) -> tuple[str, list[_Import]]:
    """A module file's sha256 and imports, cached by (path, size, mtime) for the process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SCANNED:
        data = path.read_bytes()
        try:
            imports = _parse_imports(data.decode("utf-8"))
        except UnicodeDecodeError:
            imports = []
        _SCANNED[key] = (hashlib.sha256(data).hexdigest(), imports)
    return _SCANNED[key]


def _absolute(found: _Import, package: str | None) -> tuple[str, tuple[str, ...]]:
    level, module, names = found
    if level == 0:
        return module, names
    if package is None:  # a relative import outside a package: nothing to follow
        return "", ()
    parts = package.split(".") if package else []
    base = parts[: len(parts) - (level - 1)] if level - 1 <= len(parts) else []
    return ".".join([*base, *([module] if module else [])]), names


def _package_of(path: Path, finder: _Finder) -> str | None:
    """The dotted package holding the module file ``path``, as seen from the base it was found under."""
    for base in finder.bases:
        try:
            relative = path.relative_to(base)
        except ValueError:
            continue
        return ".".join(relative.with_suffix("").parts[:-1])  # pkg/__init__.py and pkg/mod.py: pkg
    return None


class _Finder:
    """Resolves dotted module names to files under the project root, never importing anything."""

    def __init__(self, flow_dir: Path, root: Path) -> None:
        candidates = [flow_dir, root, root / "src"]
        candidates += [Path(p).absolute() for p in sys.path if p]
        self.root = root
        self.bases = [b for b in dict.fromkeys(candidates) if self._inside(b) and b.is_dir()]

    def files(self, module: str, names: Iterable[str]) -> list[Path]:
        """The files ``from module import names`` (or ``import module``) runs, inside the project."""
        if not module:
            return []
        parts = module.split(".")
        for base in self.bases:
            if not (base / parts[0]).is_dir() and not (base / f"{parts[0]}.py").is_file():
                continue
            out: list[Path] = []
            for depth in range(1, len(parts) + 1):
                found = self._module_file(base, parts[:depth])
                if found is not None:
                    out.append(found)
            package = base.joinpath(*parts)
            if package.is_dir():  # from package import submodule
                out += [f for name in names if (f := self._module_file(base, [*parts, name])) is not None]
            return [f for f in out if self._inside(f)]
        return []

    @staticmethod
    def _module_file(base: Path, parts: list[str]) -> Path | None:
        path = base.joinpath(*parts)
        for candidate in (path / "__init__.py", path.with_name(path.name + ".py")):
            if candidate.is_file():
                return candidate
        return None

    def _inside(self, path: Path) -> bool:
        """Under the project root and not in an installed-packages folder or a virtual environment."""
        try:
            relative = path.relative_to(self.root)
        except ValueError:
            return False
        if _INSTALLED & set(relative.parts):
            return False
        top = self.root / relative.parts[0] if relative.parts else None
        return top is None or not (top / "pyvenv.cfg").exists()
