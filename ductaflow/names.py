"""Step and instance names: single, safe path components."""

from __future__ import annotations

import unicodedata

from .exceptions import UnsafeNameError

#: The prefix of a debug copy, ``runs/<step>/.debug-<instance>``: instance names never start with a dot.
DEBUG_PREFIX = ".debug-"
_MAX_LENGTH = 200
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(1, 10)}


def check_name(name: object, what: str = "instance name") -> str:
    """Return ``name`` if it is a safe single path component, else raise.

    Refused: non-strings, empty names, ``.`` and ``..``, names starting with
    ``.`` (hidden; ductaflow keeps its own state there), path separators,
    drive letters (``C:``), control characters, trailing spaces or dots,
    reserved Windows device names, and names longer than 200 characters.
    """
    problem = _problem(name)
    if problem:
        raise UnsafeNameError(
            f"{what} {name!r} is not allowed: {problem}. Use a single folder name made of "
            "letters, digits and characters such as - _ = , + (e.g. 'param1=100,mode=A').",
            name=name,
        )
    return name  # type: ignore[return-value]


def _problem(name: object) -> str | None:
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    if not name.strip():
        return "it is empty"
    if name in (".", ".."):
        return "it refers to a directory, not a name"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if name.startswith("."):
        return "it starts with '.' (hidden names are reserved)"
    if len(name) >= 2 and name[1] == ":":
        return "it looks like a drive or absolute path"
    if not (name.isascii() and name.isprintable()) and any(  # printable ASCII holds none of them
        unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name
    ):
        return "it contains control characters"
    if name != name.rstrip(" ."):
        return "it ends with a space or a dot"
    if name.split(".")[0].lower() in _WINDOWS_RESERVED:
        return "it is a reserved device name on Windows"
    if len(name) > _MAX_LENGTH:
        return f"it is longer than {_MAX_LENGTH} characters"
    return None
