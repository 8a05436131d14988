"""Debug copies: an instance's flow with its config, ready to run cell by cell in VS Code or Jupyter.

A debug copy of ``runs/<step>/<instance>`` lives beside it, in
``runs/<step>/.debug-<instance>/``: a folder of its own at the instance's
depth, so paths the flow reads relative to its working directory (an
upstream step's ``../../<step>/<instance>/file``, the project root three
levels up) name the same files. It holds the debug notebook, the instance's
``config.json`` and a marker saying whose copy it is. Running the notebook
writes there, never into the recorded instance; a re-run of the instance
leaves it alone; ``status``, ``collect`` and the report never list it
(hidden folders are not instances); :func:`ductaflow.clean` removes it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .exceptions import FlowError, InstanceBusyError, RunDirectoryError
from .files import read_json, write_json_atomic
from .flow import read_flow
from .names import DEBUG_PREFIX
from .notebook import save_notebook
from .project import ROOT_ENV, find_project_root
from .rundir import CONFIG_NAME, current_status, layout_root
from .runrecord import RECORD_NAME, RunStatus, now_iso, read_record

DEBUG_TAG = "ductaflow-debug"
MARKER_NAME = ".ductaflow-debug.json"  # in a debug copy: the instance it copies


def debug_dir(run_dir: Path) -> Path:
    """The debug copy's folder of the instance ``run_dir``: ``runs/<step>/.debug-<instance>``."""
    return run_dir.parent / f"{DEBUG_PREFIX}{run_dir.name}"


def is_debug_copy(folder: Path) -> bool:
    """True when ``folder`` is a debug copy ductaflow wrote (its marker names the instance beside it)."""
    marker, _ = read_json(folder / MARKER_NAME)
    return (
        folder.name.startswith(DEBUG_PREFIX)
        and isinstance(marker, dict)
        and marker.get("instance") == folder.name.removeprefix(DEBUG_PREFIX)
    )


def debug_notebook(run_dir: str | os.PathLike[str]) -> Path:
    """Write the debug copy of an instance and return the path of its notebook, ``debug_<flow>.ipynb``.

    The copy is the folder ``runs/<step>/.debug-<instance>/``, beside the
    instance: it holds the notebook and the instance's ``config.json``. The
    notebook holds today's flow with the instance's recorded config injected
    after the parameters cell, and a first cell that makes the kernel work as
    the run did, but from the debug copy's folder: with the flow's folder
    importable, the project root the run had, :func:`is_notebook_execution`
    true and :func:`record` writing there. Running it cell by cell reproduces
    the run and leaves the recorded instance as it is; a re-run of the
    instance leaves the copy. Opening the instance again rewrites the
    notebook and ``config.json`` and keeps what the cells wrote. Raises
    :class:`RunDirectoryError` when ``run_dir`` holds no run record or the
    copy's folder holds files ductaflow did not write, :class:`FlowError`
    when the flow file is gone, :class:`InstanceBusyError` while the
    instance runs.

    >>> notebook = debug_notebook("runs/make_data/short")
    >>> notebook.relative_to(Path.cwd())
    PosixPath('runs/make_data/.debug-short/debug_make_data.ipynb')
    >>> sorted(p.name for p in notebook.parent.iterdir())
    ['.ductaflow-debug.json', 'config.json', 'debug_make_data.ipynb']
    """
    path = Path(run_dir).absolute()
    record = read_record(path)
    if record is None:
        raise RunDirectoryError(f"{run_dir} holds no ductaflow run record ({RECORD_NAME}). Give an instance "
                                "directory such as runs/<step>/<instance>.", run_dir=str(path))  # fmt: skip
    if current_status(record, path) is RunStatus.RUNNING:
        raise InstanceBusyError(f"instance {path.name!r} is running now; open it when it has finished.",
                                run_dir=str(path))  # fmt: skip
    flow_path = _flow_path(record, path)
    flow = read_flow(flow_path)
    config = record.get("config")
    if config is None:  # a script-mode record: the config is in config.json
        config = _config_file(path)
    nb = flow.with_config(config)
    kernel = str(record.get("kernel") or "ductaflow-python")
    if kernel != "ductaflow-python":  # the run asked for a kernel: so does the notebook
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    folder = _debug_folder(path, record, flow_path)
    write_json_atomic(folder / CONFIG_NAME, config)
    changed = flow.sha256 != record.get("flow_sha256")
    nb.cells[:0] = _intro_cells(record, path, folder, flow_path, changed=changed)
    target = folder / f"debug_{flow.stem}.ipynb"
    save_notebook(nb, target)
    return target


def _debug_folder(run_dir: Path, record: dict[str, Any], flow_path: Path) -> Path:
    """The debug copy's folder, made and marked; one holding files ductaflow did not write is refused."""
    folder = debug_dir(run_dir)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise RunDirectoryError(f"{folder} is not a folder ductaflow made; move it away to debug "
                                f"{run_dir.name!r}.", run_dir=str(run_dir))  # fmt: skip
    if folder.is_dir() and any(folder.iterdir()) and not is_debug_copy(folder):
        raise RunDirectoryError(f"{folder} holds files ductaflow did not write; move them away to debug "
                                f"{run_dir.name!r}.", run_dir=str(run_dir))  # fmt: skip
    folder.mkdir(exist_ok=True)
    marker = {"instance": run_dir.name, "step": run_dir.parent.name, "instance_dir": str(run_dir),
              "flow": str(flow_path), "run_started_at": record.get("started_at"),
              "written_at": now_iso()}  # fmt: skip
    write_json_atomic(folder / MARKER_NAME, marker)
    return folder


def _config_file(run_dir: Path) -> dict[str, Any]:
    config, problem = read_json(run_dir / CONFIG_NAME)
    if problem is not None:
        raise RunDirectoryError(f"{run_dir}: the run record holds no config and {CONFIG_NAME} {problem}.",
                                run_dir=str(run_dir))  # fmt: skip
    return config if isinstance(config, dict) else {}


def _flow_path(record: dict[str, Any], run_dir: Path) -> Path:
    flow = Path(str(record.get("flow")))
    implied = layout_root(run_dir)
    root = Path(str(record.get("project_root") or implied))
    candidates = [flow] if flow.is_absolute() else [root / flow, implied / flow]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FlowError(f"the flow of {run_dir} ({record.get('flow')}) no longer exists at {candidates[0]}. "
                    "Restore it to debug this instance.", flow=str(candidates[0]))  # fmt: skip


def _intro_cells(
    record: dict[str, Any], run_dir: Path, folder: Path, flow_path: Path, changed: bool
) -> list[Any]:
    import nbformat

    status = record.get("status")
    error = record.get("error") or {}
    lines = [f"# Debug: instance `{record.get('instance')}` of step `{record.get('step')}`",
             f"Last run: **{status}** at {record.get('started_at')}."]  # fmt: skip
    if error:
        message = (str(error.get("message") or "").splitlines() or [""])[0]
        lines.append(f"It failed in flow cell {error.get('cell_index')}: `{error.get('name')}: {message}`.")
    if changed:
        lines.append(
            f"**The flow has changed since this run**: this notebook holds today's `{flow_path.name}`."
        )
    lines.append(f"Run the cells in order. The flow works in this debug copy, `{folder}`, which holds the "
                 f"instance's `config.json`: what it writes stays here, and the recorded instance "
                 f"`{run_dir}` is left as it is.")  # fmt: skip
    intro = nbformat.v4.new_markdown_cell("\n\n".join(lines))
    setup = nbformat.v4.new_code_cell(
        "# ductaflow: work as the run did, from this debug copy, with the flow's folder importable\n"
        "import os\nimport sys\n\nfrom ductaflow.flowpath import after_stdlib\n\n"
        f"os.chdir({str(folder)!r})\n"
        f"after_stdlib({str(flow_path.absolute().parent)!r}, sys.path)  # siblings importable, stdlib first\n"
        'os.environ["DUCTAFLOW_INJECTED"] = "1"\n'
        f'os.environ["DUCTAFLOW_RUN_DIR"] = {str(folder)!r}\n'
        f"os.environ[{ROOT_ENV!r}] = {str(find_project_root(flow_path))!r}"
    )
    for cell in (intro, setup):
        cell.metadata["tags"] = [DEBUG_TAG]
        cell.id = hashlib.sha256(f"{DEBUG_TAG}{cell.cell_type}".encode()).hexdigest()[:8]
    return [intro, setup]
