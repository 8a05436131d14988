"""A cache of successful instances by fingerprint, on any fsspec location: a shared disk, S3, GCS...

This module is the store: where entries live, how they are read, checked and
written. What a conductor's task does with it (restore before running, push
after a success) is :mod:`ductaflow.caching`.

An entry is one instance's success, keyed by its fingerprint and its step
and instance names (replicates share a fingerprint and differ by name: their
seeds derive from it). It is two objects under
``<URL>/v1/<fingerprint[:2]>/<fingerprint>/<step>/<instance>/``::

    <host>-<pid>-<random>.tar.gz   the instance's folder (gzip level 1)
    entry.json                     the marker, written last: the archive's
                                   name, size and sha256, who pushed it, when

An entry is visible only once its marker exists, so a push cut short (a
crash, a lost connection) leaves an archive no reader looks at. A reader
checks the marker's fields, the archive's size and sha256, its members
(nothing may land outside the instance folder) and the record inside (a
success of that fingerprint, step and instance) before anything is placed.

fsspec is imported when a cache is used; its cloud backends (``s3fs``,
``gcsfs``...) are the user's to install. Their options come from fsspec's
own configuration (``FSSPEC_S3_ENDPOINT_URL``, ``~/.config/fsspec/``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .exceptions import CacheEntryError, ConfigError, DuctaflowError
from .files import file_sha256, link_inside, no_space, write_atomic
from .placing import place_instance, staged_record
from .rundir import disk_full, new_staging
from .runrecord import now_iso

FORMAT = "v1"
MARKER = "entry.json"
_FIELDS = ("fingerprint", "archive", "size", "sha256", "host", "pushed_at", "step", "instance")
_JOURNAL = ".metrics.jsonl"  # folded into metrics.json when an attempt ends: never part of a success


@dataclass(frozen=True)
class CacheEntry:
    """A published cache entry, as its marker describes it."""

    fingerprint: str
    archive: str  # the archive's name, beside the marker
    size: int
    sha256: str
    host: str  # who pushed it, and when (ISO, UTC)
    pushed_at: str
    step: str
    instance: str
    environment: str | None = None  # the sha256 of the environment it ran in (environment.json)

    @property
    def origin(self) -> str:
        """``host, 2026-12-03 14:02``: where and when the entry was made, as a reason shows it."""
        return f"{self.host}, {self.pushed_at[:16].replace('T', ' ')} UTC"


class CacheUnreachable(CacheEntryError):
    """The store could not be asked (the network, its permissions): not the entry's fault."""


def _well_formed(entry: CacheEntry) -> bool:
    """Whether a marker's fields have the types and shapes a pushed entry gives them."""
    texts = (entry.host, entry.pushed_at, entry.step, entry.instance, entry.archive)
    return (all(isinstance(t, str) for t in texts) and isinstance(entry.size, int) and entry.size >= 0
            and isinstance(entry.sha256, str) and re.fullmatch(r"[0-9a-f]{64}", entry.sha256) is not None
            and re.fullmatch(r"[\w.-]+\.tar\.gz", entry.archive) is not None
            and (entry.environment is None or isinstance(entry.environment, str)))  # fmt: skip


class ArchiveGone(CacheEntryError):
    """The archive a marker names is not there: a push replaced the entry meanwhile, or it was deleted."""


class RunCache:
    """One cache location. Thread-safe: the conductor's tasks share it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = shown_url(url)
        try:
            import fsspec.core
        except ImportError:  # pragma: no cover - fsspec is a dependency
            raise ConfigError("a cache needs fsspec: pip install fsspec", key="cache") from None
        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise ConfigError(
                f"cache {self.shown!r}: fsspec cannot open it ({exc}). Install the package for that kind "
                "of location (such as s3fs for s3://, gcsfs for gs://) or fix the URL.",
                key="cache",
            ) from None
        self.root = root.rstrip("/")
        self.local = "file" in _protocols(self.fs)

    def folder(self, fingerprint: str, step: str, instance: str) -> str:
        """Where the entry of ``step/instance`` with ``fingerprint`` lives (its marker and archives)."""
        if not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
            raise ValueError(f"not a fingerprint: {fingerprint!r}")
        for name in (step, instance):
            if not name or "/" in name or name in (".", "..") or name.startswith("."):
                raise ValueError(f"not a step or instance name: {name!r}")
        return f"{self.root}/{FORMAT}/{fingerprint[:2]}/{fingerprint}/{step}/{instance}"

    def lookup(self, fingerprint: str, step: str, instance: str) -> CacheEntry | None:
        """The published entry of ``step/instance`` with ``fingerprint``, ``None`` when there is none;
        :class:`CacheEntryError` when its marker cannot be read or makes no sense."""
        entry = self.read_marker(f"{self.folder(fingerprint, step, instance)}/{MARKER}")
        if entry is not None and (entry.fingerprint, entry.step, entry.instance) != (
            fingerprint,
            step,
            instance,
        ):
            raise CacheEntryError(f"its marker {MARKER} names another entry")
        return entry

    def read_marker(self, key: str) -> CacheEntry | None:
        """The entry the marker ``key`` describes; ``None`` when there is none; :class:`CacheEntryError`
        when it is not a cache entry, :class:`CacheUnreachable` when the store cannot be read."""
        try:
            text = self.fs.cat_file(key)
        except FileNotFoundError:
            return None
        except Exception as exc:  # the network, the store's permissions: whatever the backend raises
            raise CacheUnreachable(f"its marker cannot be read ({type(exc).__name__}: {exc})") from None
        try:
            data = json.loads(text)
            entry = CacheEntry(**{name: data[name] for name in _FIELDS}, environment=data.get("environment"))
        except (ValueError, KeyError, TypeError) as exc:
            raise CacheEntryError(
                f"its marker {MARKER} is not a cache entry ({type(exc).__name__})"
            ) from None
        if not _well_formed(entry):
            raise CacheEntryError(f"its marker {MARKER} is not a cache entry (a field of the wrong type)")
        return entry

    def restore(self, entry: CacheEntry, run_dir: Path, *, project_root: Path, runs_dir: Path,
                html: bool = False, **facts: Any) -> dict[str, Any]:  # fmt: skip
        """Put ``entry``'s instance in place as ``run_dir``'s attempt; return its record.

        Checked before anything is placed: the archive's size and sha256, its
        members (none may land outside the folder), and its record (a success
        of ``entry``'s fingerprint, step and instance; with ``html``, one
        that has its HTML page). Raises :class:`CacheEntryError` when a check
        fails, leaving ``run_dir`` as it was, and :class:`DiskFullError` when
        this machine's disk is. ``facts`` go in the record as
        :func:`ductaflow.placing.place_instance` says. Call with the instance
        lock held.
        """
        try:
            return self._restore(entry, run_dir, project_root, runs_dir, html, facts)
        except OSError as exc:
            if no_space(exc):  # the conductor starts no further instance: they would find no room either
                raise disk_full(exc, run_dir) from None
            raise

    def _restore(self, entry: CacheEntry, run_dir: Path, project_root: Path, runs_dir: Path, html: bool,
                 facts: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        work = new_staging(run_dir)
        try:
            archive = work / "entry.tar.gz"
            self._download(entry, archive)
            staged = work / "instance"
            _extract(archive, staged)
            try:
                record = staged_record(staged, entry.fingerprint)
            except DuctaflowError as exc:
                raise CacheEntryError(str(exc)) from None
            if (record.get("step"), record.get("instance")) != (entry.step, entry.instance):
                raise CacheEntryError(f"its record is of {record.get('step')}/{record.get('instance')}")
            if html and not (record.get("outputs") or {}).get("html"):
                raise CacheEntryError("it was made without the HTML page this call asks for", quiet=True)
            return place_instance(staged, run_dir, record, project_root=project_root, runs_dir=runs_dir,
                                  **facts)  # fmt: skip
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _download(self, entry: CacheEntry, archive: Path) -> None:
        key = f"{self.folder(entry.fingerprint, entry.step, entry.instance)}/{entry.archive}"
        try:
            self.fs.get_file(key, str(archive))
        except FileNotFoundError:
            raise ArchiveGone(f"its archive {entry.archive} is missing") from None
        except Exception as exc:  # the network, the store's permissions; a full disk here is not the entry's
            if no_space(exc):
                raise
            raise CacheUnreachable(f"its archive cannot be fetched ({type(exc).__name__}: {exc})") from None
        size = archive.stat().st_size
        if size != entry.size:
            raise CacheEntryError(f"its archive is {size:,} bytes, the marker says {entry.size:,}")
        if file_sha256(archive) != entry.sha256:
            raise CacheEntryError("its archive's sha256 differs from the marker's")

    def push(self, run_dir: Path, record: dict[str, Any]) -> CacheEntry:
        """Publish the success in ``run_dir`` (its ``record``) under its fingerprint and folder names;
        return the entry.

        The archive is written under a name of its own, then the marker: a
        push cut short publishes nothing. An entry already published there is
        replaced. Call with the instance lock held.
        """
        fingerprint, step, instance = str(record["fingerprint"]), run_dir.parent.name, run_dir.name
        folder = self.folder(fingerprint, step, instance)
        work = _work_folder(run_dir)
        try:
            archive = work / "entry.tar.gz"
            _pack(run_dir, archive)
            host = socket.gethostname()
            name = f"{_safe(host)}-{os.getpid()}-{uuid.uuid4().hex[:12]}.tar.gz"
            ran_in = (record.get("environment") or {}).get("sha256")
            size, sha256 = archive.stat().st_size, file_sha256(archive)
            entry = CacheEntry(fingerprint, name, size, sha256, host, now_iso(), step, instance, ran_in)
            self.fs.makedirs(folder, exist_ok=True)
            replaced = None
            with contextlib.suppress(CacheEntryError):
                replaced = self.lookup(fingerprint, step, instance)
            self.fs.put_file(str(archive), f"{folder}/{name}")
            self._publish(folder, entry)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if replaced is not None and replaced.archive != name:  # best effort: a reader fetching it looks again
            with contextlib.suppress(Exception):
                self.fs.rm_file(f"{folder}/{replaced.archive}")
        return entry

    def _publish(self, folder: str, entry: CacheEntry) -> None:
        """Write the marker whole or not at all: a rename on a local disk, one object elsewhere."""
        data = (json.dumps({"ductaflow_cache": 1, **entry.__dict__}, indent=2) + "\n").encode()
        if not self.local:
            self.fs.pipe_file(f"{folder}/{MARKER}", data)
            return
        write_atomic(Path(folder) / MARKER, data, durable=True)


@functools.lru_cache(maxsize=16)
def open_cache(url: str) -> RunCache:
    """The :class:`RunCache` of ``url``, one per process (:class:`ConfigError` when fsspec cannot open it)."""
    return RunCache(url)


def shown_url(url: str) -> str:
    """``url`` without the user and password it may carry."""
    return re.sub(r"^([a-zA-Z][\w+.-]*://)[^/@]*@", r"\1", url)


def _work_folder(run_dir: Path) -> Path:
    """A new folder for a push's archive: in the step's staging folder, or, where the runs folder
    cannot be written (pushing from a read-only copy), in the system's temporary folder."""
    try:
        return new_staging(run_dir)
    except OSError:
        return Path(tempfile.mkdtemp(prefix="ductaflow-push-"))


def _pack(run_dir: Path, archive: Path) -> None:
    """Write ``run_dir``'s files to ``archive``; :class:`CacheEntryError` for a link pointing outside it,
    which no other machine could follow (a reader would refuse the entry)."""
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for entry in sorted(os.scandir(run_dir), key=lambda e: e.name):
            if entry.name != _JOURNAL:
                tar.add(entry.path, arcname=entry.name, filter=_inside)


def _inside(member: tarfile.TarInfo) -> tarfile.TarInfo:
    if member.issym() and not link_inside(member.name, member.linkname):
        raise CacheEntryError(f"its folder holds a link pointing outside it: {member.name} -> "
                              f"{member.linkname}")  # fmt: skip
    return member


def _extract(archive: Path, staged: Path) -> None:
    """Extract ``archive`` into the new folder ``staged``, refusing what would land outside it.

    tarfile's ``data`` filter refuses absolute names, ``..``, links pointing
    outside, devices and FIFOs; the caller removes ``staged`` on any error.
    """
    staged.mkdir()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staged, filter="data")
    except Exception as exc:
        if no_space(exc):
            raise  # this machine's own trouble, not the entry's
        raise CacheEntryError(f"its archive cannot be read ({type(exc).__name__}: {exc})") from None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:40] or "host"


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
