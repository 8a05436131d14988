"""Flows: read a text notebook or an ``.ipynb``, find its parameters cell, inject a config.

A flow is any notebook jupytext reads for Python: a ``.py`` script in the
percent or light format (or another one jupytext recognises), a Markdown or
MyST notebook (``.md``, ``.myst``...), an R Markdown notebook (``.Rmd``), or
an ``.ipynb``.

Conversion happens in memory (jupytext); no temporary notebook is written
beside the source. A parsed flow is cached per process by the sha256 of its
source, so executing hundreds of instances of one flow parses it once.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import closest
from .exceptions import FlowError
from .parameters import Parameters, injected_source, read_parameters

SUPPORTED_SUFFIXES = (".py", ".ipynb", ".md", ".markdown", ".myst", ".mystnb", ".mnb", ".Rmd")
INJECTED_TAG = "injected-parameters"
_DEFAULT_KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
_PARAMETERS_CELL_PY = '# %% tags=["parameters"]\nconfig = {}'


@dataclass(frozen=True)
class Flow:
    """A flow read from disk: its path, source hash and parsed notebook."""

    path: Path
    sha256: str
    notebook: Any  # nbformat.NotebookNode, shared: use :meth:`with_config` for a private copy
    parameters_index: int
    parameters: Parameters  # what the parameters cell declares

    @property
    def stem(self) -> str:
        """The file name without its suffix, used as the default step name."""
        return self.path.stem

    def with_config(self, config: dict[str, Any]) -> Any:
        """Return a fresh notebook with ``config`` injected after the parameters cell."""
        nb = copy.deepcopy(self.notebook)
        cell = _new_code_cell(injected_source(self.parameters, config))
        cell.metadata["tags"] = [INJECTED_TAG]
        nb.cells.insert(self.parameters_index + 1, cell)
        return nb


def read_flow(path: str | Path) -> Flow:
    """Read and validate a flow file.

    Raises :class:`FlowError` when the file is missing, has an unsupported
    suffix, cannot be parsed, or has no cell tagged ``parameters``.
    """
    p = Path(path)
    if p.suffix not in SUPPORTED_SUFFIXES:
        raise FlowError(
            f"flow {str(p)!r} has suffix {p.suffix!r}; ductaflow runs {', '.join(SUPPORTED_SUFFIXES)} "
            "files (a script or text notebook jupytext reads, or a notebook).",
            flow=str(p),
        )
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise FlowError(f"flow file {str(p)!r} does not exist.{_did_you_mean(p)}", flow=str(p)) from None
    except OSError as exc:
        raise FlowError(f"flow file {str(p)!r} cannot be read: {exc}.", flow=str(p)) from None
    sha = hashlib.sha256(data).hexdigest()
    key = (sha, p.suffix, str(p))
    if key not in _PARSED:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = _parse(data, p.suffix, str(p))
    notebook, index = _PARSED[key]
    parameters = read_parameters(notebook.cells[index].source)
    return Flow(path=p, sha256=sha, notebook=notebook, parameters_index=index, parameters=parameters)


def _did_you_mean(path: Path) -> str:
    """A hint naming the flows beside ``path`` whose names are close, or what the folder holds."""
    folder = path.parent
    if not folder.is_dir():
        return f" Its folder {str(folder)!r} does not exist either (paths are relative to {Path.cwd()})."
    flows = sorted(f.name for f in folder.iterdir() if f.suffix in SUPPORTED_SUFFIXES and f.is_file())
    close = closest(path.name, flows, cutoff=0.6)
    if close:
        return f" Did you mean {', '.join(repr(str(folder / c)) for c in close)}?"
    shown = ", ".join(flows[:10]) + (" ..." if len(flows) > 10 else "")
    return f" {str(folder)!r} holds: {shown}." if flows else f" {str(folder)!r} holds no flow files."


_PARSED: dict[tuple[str, str, str], tuple[Any, int]] = {}
_PARSED_MAX = 64


def _parse(data: bytes, suffix: str, name: str) -> tuple[Any, int]:
    try:
        text = data.decode("utf-8")
        nb = _reads(text, suffix)
    except Exception as exc:  # any parser error is the flow's fault
        raise FlowError(
            f"flow {name!r} cannot be read as a {'notebook' if suffix == '.ipynb' else 'text notebook'}: "
            f"{type(exc).__name__}: {exc}",
            flow=name,
        ) from None
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.setdefault("kernelspec", dict(_DEFAULT_KERNELSPEC))
    return nb, _parameters_index(nb, name, suffix)


def _reads(text: str, suffix: str) -> Any:
    import nbformat

    if suffix == ".ipynb":
        nb = nbformat.reads(text, as_version=4)
        if nb.nbformat_minor < 5:  # give every cell an id, as injected cells have one
            from nbformat.v4.convert import upgrade

            nb = upgrade(nb, from_version=4, from_minor=nb.nbformat_minor)
        return nb
    import jupytext

    return jupytext.reads(text, fmt=suffix.lstrip("."))  # the format (percent, light, MyST...) is detected


def _parameters_index(nb: Any, name: str, suffix: str) -> int:
    for index, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return index
    how = (
        f"Add this cell near the top of the script:\n\n{_PARAMETERS_CELL_PY}\n"
        if suffix == ".py"
        else "Tag a code cell holding `config = {}` with 'parameters' "
        "(Jupyter: View > Cell Toolbar > Tags; VS Code: 'Add Cell Tag')."
    )
    raise FlowError(f"flow {name!r} has no cell tagged 'parameters'. {how}", flow=name)


def _new_code_cell(source: str) -> Any:
    import nbformat

    return nbformat.v4.new_code_cell(source)
