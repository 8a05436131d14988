"""Run bundles: finished instances with their provenance in one ``.tar.gz``, to hand over.

A bundle holds::

    runs/<step>/<instance>/...   each instance directory, every file of it (a link pointing
                                 inside it as a link; one pointing outside is left out)
    sources/<path>               the flows, config files, tables and project modules the
                                 instances' records name, at their paths relative to the
                                 project root, as they are when packed
    manifest.json                the format, ductaflow's version, when and where it was packed,
                                 and per instance its step, name, fingerprint, status and every
                                 file's size and sha256 (the sources' too), or a link's target

:func:`pack_runs` writes one; :func:`ductaflow.unbundle.unpack_runs` places
its instances in another checkout's runs folder, as if they ran there. Only
successes are packed, each read under its instance lock, so one running now
is left out (and said so), and none starts while it is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import socket
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import __version__
from .exceptions import BundleError, DiskFullError, InstanceBusyError
from .files import link_inside, no_space, rename, shown_path
from .rundir import current_status, layout_root, lock_if_writable
from .runfolders import find_instances
from .runrecord import RunStatus, now_iso, read_record

MANIFEST_NAME = "manifest.json"
BUNDLE_FORMAT = 1  # manifest.json's "ductaflow_bundle": a reader refuses a newer one
RUNS_PREFIX = "runs"
SOURCES_PREFIX = "sources"


def safe_relative(path: object) -> bool:
    """True when ``path`` is a relative POSIX path, normalised, that stays below where it is joined.

    >>> [safe_relative(p) for p in ("flow/fit.py", "../x", "/etc/passwd", "a//b", "a/./b", "a\\\\b", "")]
    [True, False, False, False, False, False, False]
    """
    if not isinstance(path, str) or not path or "\\" in path or "\x00" in path or path.startswith("/"):
        return False
    parts = path.split("/")
    return posixpath.normpath(path) == path and not {"", ".", ".."} & set(parts) and ":" not in parts[0]


def safe_runs_dir(path: object) -> bool:
    """True for a runs folder a bundle may name: :func:`safe_relative`, no part hidden (``.git``, ``.venv``).

    >>> [safe_runs_dir(p) for p in ("runs", "study/runs", ".git/runs", "a/.venv", "../runs")]
    [True, True, False, False, False]
    """
    return safe_relative(path) and not any(part.startswith(".") for part in str(path).split("/"))


def record_sources(record: Mapping[str, Any]) -> dict[str, str | None]:
    """The files a run record names, relative to its project root where they are in it: its flow, the
    project modules in its fingerprint and the config file and table it came from, each with the sha256
    the record gives (``None``: none given)."""
    parts, source = _mapping(record.get("fingerprint_parts")), _mapping(record.get("config_source"))
    named = {str(record["flow"]): parts.get("flow_sha256") or record.get("flow_sha256")} if record.get(
        "flow") else {}  # fmt: skip
    named.update({str(path): sha for path, sha in _mapping(parts.get("code")).items()})
    named.update({str(source[key]): None for key in ("config_file", "table") if source.get(key)})
    return named


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def pack_runs(paths: Iterable[str | os.PathLike[str]], output: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the successful instances under ``paths`` to the run bundle ``output`` (a ``.tar.gz``).

    ``paths`` are a runs folder, step folders (``runs/<step>``) or instance
    directories, of one runs folder. Each instance directory goes in whole,
    with the sources its record names (flow, config file, table, project
    modules) and a manifest of every file's size and sha256 (see the module's
    docstring). The archive is written under a temporary name and renamed
    when complete: an interruption or a full disk never leaves half a bundle
    under ``output``; an ``output`` already there is replaced.

    Returns ``{"archive", "instances", "files", "bytes", "skipped", "notes"}``:
    ``skipped`` lists ``(run_dir, why)`` of the instances left out (running,
    not a success, no readable record); ``notes`` what the receiver should
    know (a source changed since its instances ran, one outside the project
    and so left out, an upstream instance not in the bundle, a link pointing
    outside its instance, left out). Raises :class:`BundleError` when
    nothing can be packed.
    """
    given = list(paths)
    run_dirs = find_instances(given)
    runs = _one_runs_folder(run_dirs, given)
    target = Path(os.path.abspath(output))
    if any(target.is_relative_to(run_dir) for run_dir in run_dirs):
        raise BundleError(f"the bundle {shown_path(target)} would be inside an instance it packs: write it "
                          "elsewhere (-o).", path=str(target))  # fmt: skip
    packer = _Packer(runs, {run_dir.relative_to(runs).as_posix() for run_dir in run_dirs})
    with _atomic_archive(target) as tar:
        for run_dir in run_dirs:
            packer.add_instance(tar, run_dir)
        if not packer.instances:
            why = "; ".join(f"{shown_path(d)}: {w}" for d, w in packer.skipped) or "no instance under them"
            raise BundleError(f"nothing to pack in {', '.join(map(shown_path, given))} ({why}).",
                              path=str(given[0]))  # fmt: skip
        packer.add_sources(tar)
        _add_bytes(tar, MANIFEST_NAME, json.dumps(packer.manifest(), indent=1, ensure_ascii=False).encode())
    return {"archive": target, "instances": len(packer.instances), "bytes": target.stat().st_size,
            "files": sum(len(i["files"]) for i in packer.instances) + len(packer.sources),
            "skipped": packer.skipped, "notes": packer.notes()}  # fmt: skip


def _one_runs_folder(run_dirs: list[Path], given: list[Any]) -> Path:
    folders = sorted({str(run_dir.parent.parent) for run_dir in run_dirs})
    if not folders:
        raise BundleError(f"no ductaflow instance under {', '.join(map(shown_path, given))}: give a runs "
                          "folder, step folders (runs/<step>) or instance directories.",
                          path=str(given[0]) if given else "")  # fmt: skip
    if len(folders) > 1:
        raise BundleError(f"the instances come from {len(folders)} runs folders ({', '.join(folders)}): "
                          "pack one runs folder at a time.", path=folders[0])  # fmt: skip
    return Path(folders[0])


class _Packer:
    """What goes in one bundle: the instances packed, the sources they name, what to tell the receiver."""

    def __init__(self, runs: Path, packed: set[str]) -> None:
        self.runs, self.packed = runs, packed  # packed: "step/instance" of every instance asked for
        self.instances: list[dict[str, Any]] = []
        self.sources: dict[str, dict[str, Any]] = {}
        self.wanted: dict[str, tuple[Path, dict[str, str]]] = {}  # source -> (file, {instance: sha run})
        self.skipped: list[tuple[Path, str]] = []
        self.upstream_missing: dict[str, list[str]] = {}
        self.missing: list[str] = []  # sources named but not found
        self.outside: dict[str, list[str]] = {}  # sources named by an absolute path -> the instances
        self.changed: dict[str, list[str]] = {}  # source -> the instances that ran another version
        self.links: list[Path] = []  # links in instance directories pointing outside them: left out
        self.root: Path | None = None

    def add_instance(self, tar: tarfile.TarFile, run_dir: Path) -> None:
        """Pack ``run_dir`` under its lock, or note why it is left out."""
        try:
            lock = lock_if_writable(run_dir)  # a read-only runs folder: no lock, nothing runs in it
        except InstanceBusyError:
            self.skipped.append((run_dir, "running now: pack it once it has finished"))
            return
        with lock:
            record = read_record(run_dir)
            status = current_status(record, run_dir, lock_held=True)
            if record is None or status != RunStatus.SUCCESS:
                found = "no readable run.json" if record is None else f"its last attempt is {status}"
                self.skipped.append((run_dir, f"{found}: only successes are packed"))
                return
            name = run_dir.relative_to(self.runs).as_posix()
            found, links = _files(run_dir)
            files = {rel: _add_file(tar, path, f"{RUNS_PREFIX}/{name}/{rel}") for rel, path in found}
            for rel, path in links:
                if _points_inside(run_dir, rel, path):
                    files[rel] = _add_link(tar, path, f"{RUNS_PREFIX}/{name}/{rel}")
                else:
                    self.links.append(path)
        self.instances.append({"step": run_dir.parent.name, "instance": run_dir.name,
                               "fingerprint": record.get("fingerprint"), "status": str(status),
                               "flow": record.get("flow"), "started_at": record.get("started_at"),
                               "files": files})  # fmt: skip
        self._note_sources(record, run_dir, name)

    def _note_sources(self, record: Mapping[str, Any], run_dir: Path, name: str) -> None:
        recorded = str(record.get("project_root") or "")
        root = Path(recorded) if recorded and Path(recorded).is_dir() else layout_root(run_dir)
        self.root = self.root or root
        for path, sha in record_sources(record).items():
            if safe_relative(path):
                self.wanted.setdefault(path, (root / path, {}))[1][name] = sha
            else:  # outside the project (an absolute path): no other checkout holds it there
                self.outside.setdefault(path, []).append(name)
        for key in (record.get("fingerprint_parts") or {}).get("upstream") or {}:
            if key not in self.packed:
                self.upstream_missing.setdefault(str(key), []).append(name)

    def add_sources(self, tar: tarfile.TarFile) -> None:
        """Pack each source the packed instances name, as it is now; note those missing or changed."""
        for path, (file, ran) in sorted(self.wanted.items()):
            if not file.is_file():
                self.missing.append(path)
                continue
            entry = _add_file(tar, file, f"{SOURCES_PREFIX}/{path}")
            self.sources[path] = entry
            stale = sorted(name for name, sha in ran.items() if sha is not None and sha != entry["sha256"])
            if stale:
                self.changed[path] = stale

    def manifest(self) -> dict[str, Any]:
        """The bundle's ``manifest.json``."""
        runs = shown_path(self.runs, self.root) if self.root else RUNS_PREFIX
        return {"ductaflow_bundle": BUNDLE_FORMAT, "ductaflow_version": __version__, "created_at": now_iso(),
                "host": socket.gethostname(), "project_root": str(self.root),
                "runs_dir": runs if safe_runs_dir(runs) else RUNS_PREFIX,
                "instances": self.instances, "sources": self.sources}  # fmt: skip

    def notes(self) -> list[str]:
        """What the receiver of the bundle should know, one sentence each."""
        out = [f"{path} is not in the bundle: it is missing here" for path in self.missing]
        for path, names in sorted(self.outside.items()):
            out.append(f"{path} is not in the bundle: {_some(names)} name{'s' * (len(names) == 1)} it "
                       "outside the project, where another checkout does not hold it")  # fmt: skip
        for path, names in self.changed.items():
            out.append(f"{path} changed since {_some(names)} ran: the bundle holds it as it is now, and "
                       "they are outdated with it")  # fmt: skip
        for key, names in sorted(self.upstream_missing.items()):
            out.append(f"{_some(names)} read{'s' * (len(names) == 1)} {key}, which is not in the bundle: "
                       "pack its step too for them to be up to date where they are unpacked")  # fmt: skip
        out += [f"{shown_path(path)} is a link pointing outside its instance folder: not packed"
                for path in self.links]  # fmt: skip
        return out


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _files(run_dir: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """``(path relative to run_dir, path)`` of every regular file under ``run_dir``, sorted; and of its links.

    Links are not followed (one could name any file on the machine).
    """
    found, links = [], []
    for folder, dirs, names in os.walk(run_dir):
        dirs.sort()  # in place: the walk goes down in this order
        for name, is_dir in [(d, True) for d in dirs] + [(n, False) for n in sorted(names)]:
            path = Path(folder, name)
            if path.is_symlink():
                links.append((path.relative_to(run_dir).as_posix(), path))
            elif not is_dir and path.is_file():
                found.append((path.relative_to(run_dir).as_posix(), path))
    return found, links


def _points_inside(run_dir: Path, rel: str, path: Path) -> bool:
    """True when the link ``path`` (``rel`` in ``run_dir``) points inside ``run_dir``, as written and as
    resolved (through other links)."""
    target = os.readlink(path)
    real = Path(os.path.realpath(path))
    return link_inside(rel, target) and real.is_relative_to(os.path.realpath(run_dir))


class _Hashing:
    """A file read through, its sha256 and size taken on the way."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.sha256, self.size = raw, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.raw.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def _add_file(tar: tarfile.TarFile, path: Path, name: str) -> dict[str, Any]:
    """Add the file ``path`` as the member ``name``; return its ``{"size", "sha256"}``."""
    with open(path, "rb") as raw:
        stat = os.fstat(raw.fileno())
        info = _member(name, stat.st_size, int(stat.st_mtime), 0o755 if stat.st_mode & 0o100 else 0o644)
        reader = _Hashing(raw)
        tar.addfile(info, reader)
    return {"size": reader.size, "sha256": reader.sha256.hexdigest()}


def _add_link(tar: tarfile.TarFile, path: Path, name: str) -> dict[str, Any]:
    """Add the link ``path`` as the symbolic link member ``name``; return its ``{"link": target}``."""
    info = _member(name, 0, int(path.lstat().st_mtime), 0o777)
    info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
    tar.addfile(info)
    return {"link": info.linkname}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import time

    tar.addfile(_member(name, len(data), int(time.time()), 0o644), io.BytesIO(data))


def _member(name: str, size: int, mtime: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, mode, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


@contextlib.contextmanager
def _atomic_archive(target: Path) -> Any:
    """A tar.gz written to a temporary name beside ``target``, renamed to it when the block ends well."""
    if target.is_dir():
        raise BundleError(f"{shown_path(target)} is a folder: give the bundle's file name "
                          "(-o results.tar.gz).", path=str(target))  # fmt: skip
    _remove_stale_partials(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}@{socket.gethostname()}.partial")
    try:
        with open(tmp, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) as tar:
                yield tar
            raw.flush()
            os.fsync(raw.fileno())
        rename(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if not isinstance(exc, OSError) or isinstance(exc, DiskFullError):
            raise
        if exc.filename not in (None, str(tmp)) and not no_space(exc):  # an instance's file
            raise BundleError(f"cannot read {shown_path(exc.filename)} ({type(exc).__name__}: "
                              f"{exc.strerror or exc}): make it readable, or leave its instance out; "
                              "no bundle was written.", path=str(exc.filename)) from None  # fmt: skip
        why = "the disk is full" if no_space(exc) else f"{type(exc).__name__}: {exc.strerror or exc}"
        raise BundleError(f"cannot write the bundle {shown_path(target)} ({why}): free space or choose "
                          "a writable place (-o); nothing was written there.",
                          path=str(target)) from None  # fmt: skip


def _remove_stale_partials(target: Path) -> None:
    """Remove the partial archives beside ``target`` left by a pack killed on this host (its pid is gone)."""
    start, host = f".{target.name}.", socket.gethostname()
    with contextlib.suppress(OSError):
        for path in target.parent.iterdir():
            pid, _, where = path.name[len(start) : -len(".partial")].partition("@")
            if path.name.startswith(start) and path.name.endswith(".partial") and where == host and (
                    pid.isdigit() and not _alive(int(pid))):  # fmt: skip
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True
