"""What a Python interpreter says about itself: version, platform, and every installed distribution.

Standard library only, and no import of ductaflow: :mod:`ductaflow.environment`
calls :func:`probe` in this process for the Python ductaflow runs in, and runs
this file's source with another kernel's interpreter (``python -c``), which
prints the same as JSON. Either way one function decides what is recorded.

A distribution's name and version are read from the header of its
``METADATA`` (or ``PKG-INFO``) file, as :mod:`importlib.metadata` reports
them, without parsing the whole file (a long description): seven times
faster. Names are normalised as PEP 503 says (``Jinja2`` -> ``jinja2``,
``typing_extensions`` -> ``typing-extensions``); where a name is installed
twice along the search path, the first wins, as it does for ``import``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from importlib import metadata
from typing import Any

_SEPARATORS = re.compile(r"[-_.]+")


def normalise_name(name: str) -> str:
    """A distribution's name as PEP 503 compares it: lower case, runs of ``-_.`` as one ``-``.

    >>> normalise_name("Typing_Extensions"), normalise_name("zope.interface")
    ('typing-extensions', 'zope-interface')
    """
    return _SEPARATORS.sub("-", name).lower()


def probe(paths: list[str]) -> dict[str, Any]:
    """This interpreter's environment, with the distributions found along ``paths`` (a ``sys.path``)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions(path=paths):
        name, version = _header(dist)
        if name and version is not None:
            found.setdefault(normalise_name(name), version)
    return {
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "distributions": dict(sorted(found.items())),
    }


def search_path() -> list[str]:
    """``sys.path`` as a kernel started now would have it: no script folder or ``''``, PYTHONPATH first."""
    first = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    here = os.getcwd()
    rest = [p for p in sys.path if p and p != here]
    return list(dict.fromkeys([*first, *rest]))


def _header(dist: Any) -> tuple[str | None, str | None]:
    """``Name`` and ``Version`` from the metadata file's header (the lines before the first empty one)."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    name = version = None
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "name" and name is None:
            name = value.strip()
        elif key == "version" and version is None:
            version = value.strip()
    return name, version


if __name__ == "__main__":  # python -c "<this source>": another kernel's interpreter
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    json.dump({"environment": probe(list(sys.path)), "path": list(sys.path)}, sys.stdout)
