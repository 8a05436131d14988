"""The project root, and ``project_path``: one path to a project file that holds in every mode.

A flow runs in three places: in place (``python flow/x.py``, working
directory wherever it was launched), in an output or instance directory
(``--output-dir``, ``ductaflow run``), and as an open notebook (VS Code or
Jupyter, working directory the flow's folder or the workspace). A path
relative to the working directory names a different file in each. A path
relative to the *project root* names the same one.

The project root is, in this order:

1. the ``DUCTAFLOW_PROJECT_ROOT`` environment variable, when set (ductaflow
   sets it for every flow it executes or supervises, so the flow sees the
   root of the flow file it came from even from its instance directory);
2. the nearest folder, from the flow file's folder upwards, holding one of
   :data:`MARKERS` (``ductaflow.toml``, ``pyproject.toml``, ``setup.py``,
   ``setup.cfg``, ``.git``, ``conductor.py``, or a ``config`` folder);
3. the flow file's own folder, when no folder above it has a marker.

The flow file is the script being run (``python flow/x.py``), the notebook
VS Code or Jupyter has open, or, when neither is known, the working
directory stands in for it. Light imports only: flows import this.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .runrecord import RunStatus

ROOT_ENV = "DUCTAFLOW_PROJECT_ROOT"
#: Files or folders whose presence marks a project root (``config`` counts only as a folder).
MARKERS = ("ductaflow.toml", "pyproject.toml", "setup.py", "setup.cfg", ".git", "conductor.py", "config")


def project_path(*parts: str | os.PathLike[str]) -> Path:
    """Return ``parts`` joined onto the project root: the same file in every way a flow runs.

    Use it for every input a flow reads by a relative path, from its config
    or its code; an absolute path is returned unchanged.

    >>> project_path("data", "input.csv") == project_root() / "data" / "input.csv"
    True
    >>> project_path("/srv/shared/input.csv")  # absolute: as it is
    PosixPath('/srv/shared/input.csv')
    """
    return project_root().joinpath(*parts)


def project_root() -> Path:
    """Return the project root (absolute), found as the module docstring says."""
    given = os.environ.get(ROOT_ENV)
    if given:
        return Path(given).absolute()
    current = _current_flow_file()
    return find_project_root(current if current is not None else Path.cwd())


def find_project_root(start: str | os.PathLike[str]) -> Path:
    """The nearest folder holding a :data:`MARKERS` entry, from ``start`` (a file or folder) upwards.

    Without one, ``start``'s own folder (``start`` itself when it is a folder).

    >>> find_project_root("flow/make_data.py") == Path.cwd()  # it holds config/
    True
    """
    path = Path(start).absolute()
    folder = path if path.is_dir() else path.parent
    for base in (folder, *folder.parents):
        if any(_marks(base / marker) for marker in MARKERS):
            return base
    return folder


def _marks(candidate: Path) -> bool:
    return candidate.is_dir() if candidate.name == "config" else candidate.exists()


def _current_flow_file() -> Path | None:
    """The file of the flow running here: the script, or the notebook an editor has open."""
    shell = _ipython()
    if shell is not None:
        for variable in ("__vsc_ipynb_file__", "__session__"):  # VS Code; Jupyter (ipykernel >= 6.10)
            value = shell.user_ns.get(variable)
            if isinstance(value, str) and value and Path(value).is_file():
                return Path(value)
        session = os.environ.get("JPY_SESSION_NAME")  # Jupyter server >= 2: the open notebook's path
        return Path(session) if session and Path(session).is_file() else None
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    return Path(main) if main and Path(main).is_file() else None


def _ipython() -> object | None:
    if "IPython" not in sys.modules:
        return None
    return sys.modules["IPython"].get_ipython()  # type: ignore[no-any-return]


def output_of(step: str, instance: str | None = None) -> Path:
    """The folder of instance ``instance`` of step ``step``: the results of an upstream step, to read.

    Without ``instance``, the instance of ``step`` named like the one running
    (``runs/fit/a`` reads ``runs/prep/a``). The folder is looked for in the
    runs folder of the running instance (ductaflow runs and ``--output-dir``),
    else in the project's ``runs`` folder. A conductor reads these calls in the
    flow's code: the upstream instance is then part of this one's
    fingerprint and must be up to date before it runs.

    Raises ``FileNotFoundError`` naming the folder when the upstream instance
    does not exist or its last attempt did not succeed.
    """
    here = os.environ.get("DUCTAFLOW_RUN_DIR")
    if instance is None:
        if not here:
            raise FileNotFoundError(
                f"output_of({step!r}) reads the instance named like the running one, and no instance "
                "is running here (not run by ductaflow or with --output-dir): name it, "
                f"output_of({step!r}, NAME)."
            )
        instance = Path(here).name
    runs = Path(here).absolute().parent.parent if here else project_root() / "runs"
    folder = runs / step / instance
    status = _recorded_status(folder)
    if status != RunStatus.SUCCESS:
        found = "does not exist" if not folder.is_dir() else f"holds no successful run (status: {status})"
        raise FileNotFoundError(f"upstream instance {folder} {found}: run step {step!r} for it first.")
    return folder


def _recorded_status(folder: Path) -> str | None:
    import json

    try:
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record.get("status") if isinstance(record, dict) else None
