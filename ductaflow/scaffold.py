"""``new_project``: a ductaflow project that runs at once (``cd DIR && python conductor.py``)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from .exceptions import RunDirectoryError

_RENAMED = {"gitignore": ".gitignore"}  # packaged without the dot


def new_project(directory: str | os.PathLike[str]) -> Path:
    """Create a project in ``directory`` and return its path.

    It holds ``flow/simulate.py`` (an example flow), ``config/simulate.json``,
    ``scenarios.csv`` (three scenarios), ``conductor.py`` (runs them with
    :func:`sweep`), a ``README.md`` and a ``.gitignore`` that keeps ``runs/``
    out of git. Raises
    :class:`RunDirectoryError` when ``directory`` exists and is not empty, or
    cannot be created; nothing is overwritten.

    >>> new_project("my-study")
    PosixPath('my-study')
    >>> sorted(p.name for p in Path("my-study").iterdir())
    ['.gitignore', 'README.md', 'conductor.py', 'config', 'data', 'flow', 'scenarios.csv']
    """
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RunDirectoryError(f"{str(target)!r} already exists and is not an empty folder. "
                                "Pick a new folder name; ductaflow new never overwrites files.",
                                run_dir=str(target))  # fmt: skip
    try:
        _copy(resources.files("ductaflow") / "templates" / "project", target)
    except OSError as exc:
        raise RunDirectoryError(f"cannot create the project in {str(target)!r}: {exc}.",
                                run_dir=str(target)) from None  # fmt: skip
    return target


def _copy(source: Any, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(source.iterdir(), key=lambda t: t.name):
        if item.name.startswith((".", "__")):
            continue
        destination = target / _RENAMED.get(item.name, item.name)
        if item.is_dir():
            _copy(item, destination)
        else:
            destination.write_bytes(item.read_bytes())
