"""A run bundle's archive read and checked whole, before anything of it is written.

:func:`read_bundle` streams through the archive once and refuses it at its
first fault: a member whose name is absolute, holds ``..``, is not
normalised or lies outside ``runs/`` and ``sources/``; a hard link, a
device or FIFO; a symbolic link outside an instance folder, pointing out of
its instance folder, or with a member below it; a name met twice; an
instance's files not together; a manifest that is missing, does not parse,
is of a newer format, names a runs folder that is absolute, escapes or is
hidden (``.git/...``), or does not list exactly the files there, each of
the size and sha256 (a link: the target) it gives; an instance's record that
is not a success of the fingerprint the manifest gives; a source that no
record in the bundle names.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle import (
    BUNDLE_FORMAT,
    MANIFEST_NAME,
    RUNS_PREFIX,
    SOURCES_PREFIX,
    record_sources,
    safe_relative,
    safe_runs_dir,
)
from .exceptions import BundleError, UnsafeNameError
from .files import link_inside, shown_path
from .names import check_name
from .runrecord import RECORD_NAME, RunStatus, is_record

_KEPT = 64 << 20  # the most of a run.json or the manifest read into memory


@dataclass
class Bundle:
    """A run bundle whose every member and checksum was found sound (:func:`read_bundle`)."""

    path: Path
    manifest: dict[str, Any]
    instances: list[dict[str, Any]]  # the manifest's entries: step, instance, fingerprint, files...
    sources: dict[str, dict[str, Any]]  # path relative to the project root -> {"size", "sha256"}


def listed_as(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a manifest's file entry says a member is: ``("link", target)`` or ``(size, sha256)``."""
    return ("link", entry["link"]) if "link" in entry else (entry["size"], entry["sha256"])


def read_bundle(archive: str | os.PathLike[str]) -> Bundle:
    """Read and check the whole of ``archive``; :class:`BundleError` at its first fault. Writes nothing."""
    path = Path(archive)
    if not path.is_file():
        what = "it is a folder" if path.is_dir() else "no such file"
        raise BundleError(f"no run bundle at {shown_path(path)} ({what}): give the .tar.gz that "
                          "`ductaflow pack` wrote.", path=str(path))  # fmt: skip
    try:
        found, kept = _scan(path)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BundleError(f"{shown_path(path)} is not a readable tar.gz run bundle ({type(exc).__name__}: "
                          f"{exc}); nothing was written. Ask for the bundle again, or write one with "
                          "`ductaflow pack`.", path=str(path)) from None  # fmt: skip
    except OSError as exc:
        raise BundleError(f"cannot read {shown_path(path)} ({exc.strerror or exc}): make it readable.",
                          path=str(path)) from None  # fmt: skip
    if MANIFEST_NAME not in kept:
        _refuse(path, f"it holds no {MANIFEST_NAME}: it is not a ductaflow run bundle")
    manifest = _manifest(path, kept[MANIFEST_NAME])
    expected = _expected(path, manifest)
    for name in found.keys() - expected.keys() - {MANIFEST_NAME}:
        _refuse(path, f"member {name!r} is not listed in its {MANIFEST_NAME}")
    for name, entry in expected.items():
        if name not in found:
            _refuse(path, f"its {MANIFEST_NAME} lists {name!r}, which the archive lacks")
        if found[name] != listed_as(entry):
            what = "target" if "link" in entry or found[name][0] == "link" else "size and sha256"
            _refuse(path, f"{name!r} does not match its {what} in the {MANIFEST_NAME}: the archive is "
                    "corrupt or was changed")  # fmt: skip
    named: set[str] = set()
    for entry in manifest["instances"]:
        record = _check_record(path, entry, kept[f"{RUNS_PREFIX}/{entry['step']}/{entry['instance']}/"
                                                 f"{RECORD_NAME}"])  # fmt: skip
        named.update(record_sources(record))
    for rel in sorted(manifest["sources"].keys() - named):
        _refuse(path, f"its {MANIFEST_NAME} lists the source {rel!r}, which no record in the bundle names "
                "(its flow, project modules, config file or table)")  # fmt: skip
    return Bundle(path, manifest, manifest["instances"], manifest["sources"])


def _refuse(path: Path, problem: str) -> None:
    raise BundleError(f"{shown_path(path)} is refused, nothing was written: {problem}. A bundle written by "
                      "`ductaflow pack` has none of this: ask for it again.", path=str(path))  # fmt: skip


def _scan(path: Path) -> tuple[dict[str, tuple[Any, ...]], dict[str, bytes]]:
    """Every file member's ``(size, sha256)`` (a link's ``("link", target)``) by name, and the bytes of the
    manifest and the records."""
    found: dict[str, tuple[Any, ...]] = {}
    kept: dict[str, bytes] = {}
    folders: set[str] = set()
    above: set[str] = set()  # every folder a member lies in: none may be a link
    links: set[str] = set()
    done: set[str] = set()  # instances whose members have ended: one must not start again
    current = None
    with tarfile.open(path, mode="r:gz") as tar:
        for member in tar:
            name = _checked_name(path, member)
            if name in found or name in folders:
                _refuse(path, f"member {name!r} appears twice")
            parts = name.split("/")
            ancestors = {"/".join(parts[:i]) for i in range(1, len(parts))}
            if ancestors & links or (member.issym() and name in above):
                _refuse(path, f"member {name!r} lies below a symbolic link of the archive, or is one with "
                        "members below it")  # fmt: skip
            above |= ancestors
            if member.isdir():
                folders.add(name)
                continue
            key = "/".join(parts[1:3]) if parts[0] == RUNS_PREFIX else None
            if key != current:
                done.add(current or "")
                if key in done:
                    _refuse(path, f"the files of instance {key} are not together in the archive")
                current = key
            keep = name == MANIFEST_NAME or (key is not None and len(parts) == 4 and parts[3] == RECORD_NAME)
            if keep and member.size > _KEPT:
                _refuse(path, f"{name!r} is {member.size} bytes, too large to be ductaflow's")
            if member.issym():
                if keep:
                    _refuse(path, f"member {name!r} is a symbolic link, not a run record")
                links.add(name)
                found[name] = ("link", member.linkname)
                continue
            found[name], data = _digest(tar, member, keep)
            if keep:
                kept[name] = data
    return found, kept


def _checked_name(path: Path, member: tarfile.TarInfo) -> str:
    name = member.name
    if not safe_relative(name):
        _refuse(path, f"member {name!r} is not a plain relative path (an absolute path, '..', or a path "
                "that is not normalised)")  # fmt: skip
    parts = name.split("/")
    if member.islnk():
        _refuse(path, f"member {name!r} is a hard link (to {member.linkname!r})")
    if member.issym() and (parts[0] != RUNS_PREFIX or len(parts) < 4):
        _refuse(path, f"member {name!r} is a symbolic link (to {member.linkname!r}) outside an instance "
                "folder")  # fmt: skip
    if member.issym() and not link_inside("/".join(parts[3:]), member.linkname):
        _refuse(path, f"member {name!r} is a symbolic link pointing outside its instance folder (to "
                f"{member.linkname!r})")  # fmt: skip
    if not (member.isreg() or member.isdir() or member.issym()):
        _refuse(path, f"member {name!r} is a device, FIFO or other special file")
    if name != MANIFEST_NAME and parts[0] not in (RUNS_PREFIX, SOURCES_PREFIX):
        _refuse(path, f"member {name!r} is outside {RUNS_PREFIX}/ and {SOURCES_PREFIX}/")
    if parts[0] == RUNS_PREFIX and member.isreg() and len(parts) < 4:
        _refuse(path, f"member {name!r} is not in an instance folder ({RUNS_PREFIX}/<step>/<instance>/)")
    return name


def _digest(tar: tarfile.TarFile, member: tarfile.TarInfo, keep: bool) -> tuple[tuple[int, str], bytes]:
    digest, size, chunks = hashlib.sha256(), 0, []
    reader = tar.extractfile(member)
    assert reader is not None  # a regular file
    while chunk := reader.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
        if keep:
            chunks.append(chunk)
    return (size, digest.hexdigest()), b"".join(chunks)


def _manifest(path: Path, data: bytes) -> dict[str, Any]:
    """The parsed manifest, its instances' names and every listed path checked."""
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        _refuse(path, f"its {MANIFEST_NAME} is not JSON ({exc})")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("ductaflow_bundle"), int):
        _refuse(path, f"its {MANIFEST_NAME} is not a ductaflow bundle manifest")
    if manifest["ductaflow_bundle"] > BUNDLE_FORMAT:
        raise BundleError(f"{shown_path(path)} was packed by a newer ductaflow (bundle format "
                          f"{manifest['ductaflow_bundle']}, this one reads {BUNDLE_FORMAT}): upgrade "
                          "ductaflow to unpack it.", path=str(path))  # fmt: skip
    manifest.setdefault("sources", {})  # a bundle of instances whose records name no source
    if not isinstance(manifest.get("instances"), list) or not isinstance(manifest["sources"], dict):
        _refuse(path, f"its {MANIFEST_NAME} lacks its list of instances or of sources")
    if not safe_runs_dir(manifest.get("runs_dir", RUNS_PREFIX)):
        _refuse(path, f"its {MANIFEST_NAME} names the runs folder {manifest.get('runs_dir')!r}: not a plain "
                "relative path, or inside a hidden folder (.git, .venv...)")  # fmt: skip
    return manifest


def _expected(path: Path, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Member name -> ``{"size", "sha256"}`` of every file the manifest lists."""
    expected: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for entry in manifest["instances"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict):
            _refuse(path, f"an instance of its {MANIFEST_NAME} is not an object with its files")
        try:
            key = f"{check_name(entry.get('step'), 'step name')}/{check_name(entry.get('instance'))}"
        except UnsafeNameError as exc:
            _refuse(path, f"its {MANIFEST_NAME} names an unsafe instance ({exc})")
        if key in seen:
            _refuse(path, f"its {MANIFEST_NAME} lists instance {key} twice")
        if not isinstance(entry.get("fingerprint"), str):
            _refuse(path, f"instance {key} of its {MANIFEST_NAME} has no fingerprint")
        seen.add(key)
        if RECORD_NAME not in entry["files"]:
            _refuse(path, f"instance {key} has no {RECORD_NAME}")
        expected.update(_listed(path, f"{RUNS_PREFIX}/{key}", entry["files"], links=True))
    expected.update(_listed(path, SOURCES_PREFIX, manifest["sources"], links=False))
    return expected


def _listed(path: Path, prefix: str, files: Mapping[str, Any], links: bool) -> dict[str, dict[str, Any]]:
    out = {}
    for rel, entry in files.items():
        sized = isinstance(entry, dict) and isinstance(entry.get("size"), int)
        link = links and isinstance(entry, dict) and isinstance(entry.get("link"), str)
        if not safe_relative(rel) or not (link or (sized and isinstance(entry.get("sha256"), str))):
            _refuse(path, f"its {MANIFEST_NAME} lists {prefix}/{rel!r} without a plain relative path, size "
                    "and sha256" + " (or link target)" * links)  # fmt: skip
        out[f"{prefix}/{rel}"] = entry
    return out


def _check_record(path: Path, entry: dict[str, Any], data: bytes) -> dict[str, Any]:
    key = f"{entry['step']}/{entry['instance']}"
    try:
        record = json.loads(data)
    except ValueError:
        record = None
    if not is_record(record):
        _refuse(path, f"the {RECORD_NAME} of {key} is not a ductaflow run record")
    if record.get("status") != RunStatus.SUCCESS or record.get("fingerprint") != entry.get("fingerprint"):
        _refuse(path, f"the {RECORD_NAME} of {key} is not a success of the fingerprint its manifest gives")
    return record
