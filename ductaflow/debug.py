"""Debug notebooks: an instance's flow with its config, ready to run cell by cell in VS Code or Jupyter."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .exceptions import FlowError, InstanceBusyError, RunDirectoryError
from .files import read_json
from .flow import read_flow
from .notebook import save_notebook
from .rundir import CONFIG_NAME, current_status, layout_root
from .runrecord import RECORD_NAME, RunStatus, read_record

DEBUG_TAG = "ductaflow-debug"


def debug_notebook(run_dir: str | os.PathLike[str]) -> Path:
    """Write ``debug_<flow>.ipynb`` into an instance directory and return its path.

    The notebook holds today's flow with the instance's recorded config
    injected after the parameters cell, and a first cell that makes the
    kernel work as the run did: from the instance directory, with the flow's
    folder importable and :func:`is_notebook_execution` true. Running it cell
    by cell reproduces the run. Raises :class:`RunDirectoryError` when
    ``run_dir`` holds no run record, :class:`FlowError` when the flow file is
    gone, :class:`InstanceBusyError` while the instance runs.

    >>> debug_notebook("runs/make_data/short").relative_to(Path.cwd())
    PosixPath('runs/make_data/short/debug_make_data.ipynb')
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
    nb.cells[:0] = _intro_cells(record, path, flow_path, changed=flow.sha256 != record.get("flow_sha256"))
    target = path / f"debug_{flow.stem}.ipynb"
    save_notebook(nb, target)
    return target


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


def _intro_cells(record: dict[str, Any], run_dir: Path, flow_path: Path, changed: bool) -> list[Any]:
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
    lines.append("Run the cells in order; the flow writes into this instance directory, as the run did.")
    intro = nbformat.v4.new_markdown_cell("\n\n".join(lines))
    setup = nbformat.v4.new_code_cell(
        "# ductaflow: work as the run did, from the instance directory, with the flow's folder importable\n"
        "import os\nimport sys\n\n"
        f"os.chdir({str(run_dir)!r})\n"
        f"sys.path.insert(0, {str(flow_path.absolute().parent)!r})\n"
        'os.environ["DUCTAFLOW_INJECTED"] = "1"\n'
        f'os.environ["DUCTAFLOW_RUN_DIR"] = {str(run_dir)!r}'
    )
    for cell in (intro, setup):
        cell.metadata["tags"] = [DEBUG_TAG]
        cell.id = hashlib.sha256(f"{DEBUG_TAG}{cell.cell_type}".encode()).hexdigest()[:8]
    return [intro, setup]
