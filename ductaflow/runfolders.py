"""Where instance folders are: under a runs folder, a step folder, or an instance folder given itself.

Every view that takes paths from the user (``collect``, ``status``,
``pack``, ``export mlflow``, ``cache push``) turns them into instance
folders here, the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .exceptions import ConfigError
from .rundir import STATE_DIR
from .runrecord import RECORD_NAME


def find_instances(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Instance directories under each path: itself, a step folder's children, or a runs folder's.

    Raises :class:`ConfigError` for a path that is not a directory.
    """
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            raise ConfigError(f"{str(path)!r} is not a directory. Give a runs folder, a step folder "
                              "(runs/<step>) or an instance directory (runs/<step>/<instance>).",
                              path=str(path))  # fmt: skip
        if (path / RECORD_NAME).exists():
            found.append(path)
        elif is_step_folder(path):
            found += _children(path)
        else:
            for step in _children(path):
                found += _children(step)
    return list(dict.fromkeys(p.absolute() for p in found))


def is_step_folder(path: Path) -> bool:
    """True for ``runs/<step>``: it holds ductaflow's state folder or an instance directory."""
    return (path / STATE_DIR).is_dir() or any((child / RECORD_NAME).exists() for child in _children(path))


def _children(path: Path) -> list[Path]:
    """Sub-directories not starting with a dot, by name (``os.scandir``: no stat per entry)."""
    with os.scandir(path) as entries:
        names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
    return [path / name for name in names]
