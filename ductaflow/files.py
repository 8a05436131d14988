"""Small file helpers every module shares: atomic writes, tolerant JSON reads, paths as shown.

Standard library only, so the light in-flow modules (``record()``) can use it.

A file written with :func:`write_atomic` is whole or absent: the bytes go to
a temporary file in the same directory (unique to the writing process and
thread), and :func:`rename` puts it in place in one step, so a reader never
sees half a file and two writers never share a temporary file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
import threading
from pathlib import Path
from typing import Any


def rename(source: Path, target: Path) -> None:
    """Move ``source`` (a file or a directory) to ``target`` in one step, replacing a file there."""
    os.replace(source, target)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of ``path``'s bytes, read a megabyte at a time (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def link_inside(name: str, target: str) -> bool:
    """True when a link at ``name`` (a relative path in a folder) pointing to ``target`` stays in that folder.

    >>> [link_inside("a/b", t) for t in ("c", "../c", "../../c", "/etc/passwd", "", "../..")]
    [True, True, False, False, False, False]
    """
    if not target or "\\" in target or "\x00" in target or target.startswith("/"):
        return False
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    return resolved != ".." and not resolved.startswith("../")


def write_atomic(path: Path, data: str | bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` whole or not at all; ``durable`` also waits until it is on disk.

    The temporary file is removed when the write fails (a full disk, Ctrl-C).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    content = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as fh:
            fh.write(content)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        rename(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)):  # name the file a user knows
            exc.filename = str(path)
        raise


#: Write errors that mean "no room": a full disk, a quota, a file-size limit (RLIMIT_FSIZE).
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def no_space(exc: BaseException) -> bool:
    """True when ``exc`` is a write that failed for lack of room (:data:`NO_SPACE`)."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def overwrite_in_place(path: Path, data: str) -> None:
    """Replace the content of the existing file ``path`` by writing over it, then fsync.

    For a full disk only: the new content reuses the old file's blocks, where
    the temporary file of :func:`write_atomic` needs new ones. Not atomic: a
    reader may meet a half-written file meanwhile.
    """
    content = data.encode("utf-8")
    with open(path, "r+b") as fh:
        fh.write(content)
        fh.truncate(len(content))
        fh.flush()
        os.fsync(fh.fileno())


def write_json_atomic(path: Path, data: Any, *, indent: int | None = 2, durable: bool = False) -> None:
    """Write ``data`` as UTF-8 JSON (non-ASCII kept as is, a final newline) with :func:`write_atomic`."""
    write_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n", durable=durable)


def read_json(path: str | os.PathLike[str]) -> tuple[Any, str | None]:
    """Return ``(value, None)``, or ``(None, problem)`` when the file is missing, unreadable or not JSON.

    ``problem`` completes a sentence naming the file: ``is missing`` or
    ``is unreadable (JSONDecodeError)``.
    """
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read()), None
    except FileNotFoundError:
        return None, "is missing"
    except (OSError, ValueError) as exc:
        return None, f"is unreadable ({type(exc).__name__})"


def shown_path(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> str:
    """``path`` as a person reads it: relative to ``base`` (default: the working directory) when
    inside it, else absolute."""
    absolute = Path(path).absolute()
    try:
        return absolute.relative_to(Path(base).absolute() if base is not None else Path.cwd()).as_posix()
    except ValueError:
        return str(absolute)
