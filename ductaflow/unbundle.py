"""Unpacking a run bundle: its instances placed in this checkout's runs folder, as if they ran here.

The whole archive is read and checked first, writing nothing
(:func:`ductaflow.bundlefile.read_bundle`); any fault refuses it. Then each
instance is compared with what its place holds: nothing, or an unsuccessful
attempt (placed over it); a success of the same fingerprint (left as it is:
already here); another success, files ductaflow did not write, or an
attempt running now: refused, for every instance, before one is placed
(``replace=True`` puts the bundle's in place of another success). Each
instance is then taken under its lock and compared again: one that became
a success of the same fingerprint meanwhile (another unpack, a sweep) is
left as it is (already here); one that can no longer be placed stops the
unpack there, the instances before it placed, none after. Otherwise it is
extracted (tarfile's ``data`` filter) into its step's staging folder, its
files checked again against the manifest, and installed in one rename
(:func:`ductaflow.placing.place_instance`); its record says where it came
from under ``unpacked``.

The flows' and modules' sources in the bundle never overwrite the checkout's
files: each is reported ``same``, ``differs`` or ``missing``, and a missing
one is written only when asked (``with_sources=True``), checked again
against the manifest as it is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle import RUNS_PREFIX, SOURCES_PREFIX
from .bundlefile import Bundle, listed_as, read_bundle
from .exceptions import BundleError, InstanceBusyError, RunDirectoryError
from .files import file_sha256, shown_path, write_atomic
from .placing import place_instance, staged_record
from .project import find_project_root
from .rundir import (
    check_run_dir,
    current_status,
    is_locked,
    lock_instance,
    new_staging,
    unreadable_record,
)
from .runrecord import RunStatus, now_iso, read_record


@dataclass
class _Placing:
    """One instance of the bundle and what happens to it here."""

    entry: dict[str, Any]
    run_dir: Path
    action: str = ""  # placed | replaced | already here
    note: str = ""
    problem: str | None = None  # why it cannot be placed
    placed: bool = False  # installed by this call

    @property
    def key(self) -> str:
        return f"{self.entry['step']}/{self.entry['instance']}"

    def decide(self, replace: bool, lock_held: bool = False) -> None:
        """Compare the instance with what its place holds now: the action, or the problem."""
        self.action, self.note, self.problem = "placed", "", None
        if not lock_held and is_locked(self.run_dir):
            running = read_record(self.run_dir) or {}
            where = f" (pid {running.get('pid')} on {running.get('host')})" if running.get("pid") else ""
            self.problem = f"an attempt is running there now{where}: unpack again once it has finished"
            return
        if not self.run_dir.exists() and not self.run_dir.is_symlink():
            return
        try:
            check_run_dir(self.run_dir)
        except RunDirectoryError as exc:
            self.problem = str(exc)
            return
        record = read_record(self.run_dir)
        status = current_status(record, self.run_dir, lock_held=lock_held)
        if record is None:
            self.note = "over an interrupted attempt, kept in .ductaflow/attempts/" if unreadable_record(
                self.run_dir) else ""  # fmt: skip
        elif status != RunStatus.SUCCESS:
            self.note = f"over its {status} attempt (removed)"
        elif record.get("fingerprint") == self.entry["fingerprint"]:
            self.action = "already here"
        elif replace:
            self.action, self.note = "replaced", "its success of another fingerprint is gone"
        else:
            self.problem = ("it holds a success of another fingerprint, kept: add --replace "
                            "(replace=True) to put the bundle's in its place")  # fmt: skip


def unpack_runs(
    archive: str | os.PathLike[str],
    *,
    project_root: str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    replace: bool = False,
    with_sources: bool = False,
) -> dict[str, Any]:
    """Place the instances of the run bundle ``archive`` in this checkout's runs folder; return what happened.

    ``project_root`` defaults to the one found from the working directory
    (:func:`ductaflow.project.find_project_root`); ``runs_dir`` (relative to
    it) to the runs folder's name in the bundle, usually ``runs``. The
    archive is checked whole before anything is written, and every instance
    is compared with what its place holds (see the module's docstring): any
    fault, or an instance that cannot be placed, raises :class:`BundleError`
    and writes nothing. ``replace=True`` puts the bundle's instance in place
    of a local success of another fingerprint; ``with_sources=True`` writes
    the bundle's flows, config files, tables and modules that the checkout
    lacks (never one it has).

    Returns ``{"archive", "project_root", "runs_dir", "instances", "sources"}``:
    ``instances`` a list of ``{"step", "instance", "run_dir", "action", "note"}``
    (action ``placed``, ``replaced`` or ``already here``), ``sources`` a list
    of ``{"path", "state"}`` (``same``, ``differs``, ``missing`` or ``written``).
    """
    bundle = read_bundle(archive)
    root = Path(project_root).absolute() if project_root is not None else find_project_root(Path.cwd())
    runs = root / (runs_dir if runs_dir is not None else bundle.manifest.get("runs_dir", RUNS_PREFIX))
    if runs.exists() and not runs.is_dir():
        raise BundleError(f"the runs folder {shown_path(runs)} is a file: give another (--runs-dir).",
                          path=str(runs))  # fmt: skip
    placings = [_Placing(e, runs / e["step"] / e["instance"]) for e in bundle.instances]
    for placing in placings:
        placing.decide(replace)
    refused = [p for p in placings if p.problem]
    if refused:
        lines = "\n".join(f"  {p.key}: {p.problem}" for p in refused)
        raise BundleError(f"{shown_path(bundle.path)}: {len(refused)} of its {len(placings)} instances "
                          f"cannot be placed in {shown_path(runs)}, so none was:\n{lines}",
                          path=str(runs))  # fmt: skip
    sources = {rel: _source_state(root, rel, entry) for rel, entry in bundle.sources.items()}
    facts = {"from": bundle.path.name, "host": bundle.manifest.get("host"),
             "packed_at": bundle.manifest.get("created_at"), "unpacked_at": now_iso()}  # fmt: skip
    writes = {rel for rel, state in sources.items() if with_sources and state == "missing"}
    todo = [p for p in placings if p.action != "already here"]
    try:
        written = _extract(bundle, todo, writes, root, runs, replace, facts)
    except _Late as late:
        placed = [p.key for p in todo if p.placed]
        done = f"{len(placed)} of the {len(todo)} to place were placed before it ({_few(placed)})" if (
            placed) else f"none of the {len(todo)} to place was placed"  # fmt: skip
        sources = f"the sources {_few(sorted(late.written))} were" if late.written else "no source was"
        raise BundleError(f"{shown_path(bundle.path)}: {late.placing.key} cannot be placed in "
                          f"{shown_path(late.placing.run_dir)} after all, its place changed while unpacking: "
                          f"{late.placing.problem}. {done}; it and the instances after it were not, and "
                          f"{sources} written. Unpack again once it is settled.",
                          path=str(late.placing.run_dir)) from None  # fmt: skip
    except OSError as exc:
        done = sum(p.placed for p in todo)
        why = f"{type(exc).__name__}: {exc.strerror or exc}, {shown_path(exc.filename or runs)}"
        raise BundleError(f"cannot write into {shown_path(runs)} ({why}): make it writable or give another "
                          f"project root or runs folder; {done} of {len(todo)} instances were placed "
                          "before.", path=str(runs)) from None  # fmt: skip
    sources.update({rel: "written" for rel in written})
    return {"archive": bundle.path, "project_root": root, "runs_dir": runs,
            "instances": [{"step": p.entry["step"], "instance": p.entry["instance"], "run_dir": p.run_dir,
                           "action": p.action, "note": p.note} for p in placings],
            "sources": [{"path": rel, "state": state} for rel, state in sorted(sources.items())]}  # fmt: skip


class _Late(Exception):
    """An instance found, under its lock, to be no longer placeable: its place changed since it was read."""

    def __init__(self, placing: _Placing) -> None:
        super().__init__(placing.key)
        self.placing = placing
        self.written: set[str] = set()  # the sources written before


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def _source_state(root: Path, rel: str, entry: Mapping[str, Any]) -> str:
    """``same``, ``differs`` or ``missing``: ``root / rel`` against the bundle's sha256 of it."""
    target = root / rel
    if not target.is_file():
        return "missing"
    return "same" if file_sha256(target) == entry["sha256"] else "differs"


def _extract(bundle: Bundle, placings: list[_Placing], writes: set[str], root: Path, runs: Path,
             replace: bool, facts: dict[str, Any]) -> set[str]:  # fmt: skip
    """One pass over the archive: each instance staged, checked and placed under its lock; the sources in
    ``writes`` written, returned."""
    written: set[str] = set()
    if not placings and not writes:
        return written
    by_key = {p.key: p for p in placings}
    current: tuple[_Placing, Path, contextlib.ExitStack] | None = None
    looked = ""  # the instance whose members are being read
    try:
        with tarfile.open(bundle.path, mode="r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if member.isdir():
                    continue
                rel = "/".join(parts[1:])
                if parts[0] == SOURCES_PREFIX and rel in writes and _write_source(
                        tar, member, root / rel, bundle.sources[rel]):  # fmt: skip
                    written.add(rel)
                if parts[0] != RUNS_PREFIX:
                    continue
                key = "/".join(parts[1:3])
                if current is not None and current[0].key != key:
                    _finish(*current, root, runs, facts)
                    current = None
                if key != looked and key in by_key:
                    current = _start(by_key[key], replace)  # None: already here after all
                looked = key
                if current is not None:
                    inside = member.replace(name="/".join(parts[3:]), deep=False)
                    tar.extract(inside, current[1], filter="data")
            if current is not None:
                _finish(*current, root, runs, facts)
                current = None
    except _Late as late:
        late.written = written
        raise
    finally:
        if current is not None:
            current[2].close()
    return written


def _start(placing: _Placing, replace: bool) -> tuple[_Placing, Path, contextlib.ExitStack] | None:
    """Take the instance's lock and decide again; its staging folder, or ``None`` when it is already here.

    Raises :class:`_Late` when it can no longer be placed.
    """
    stack = contextlib.ExitStack()
    try:
        try:
            stack.enter_context(lock_instance(placing.run_dir))
        except InstanceBusyError:
            placing.problem = "an attempt is running there now"
            raise _Late(placing) from None
        placing.decide(replace, lock_held=True)  # again, under the lock
        if placing.problem:
            raise _Late(placing)
        if placing.action == "already here":  # placed meanwhile by another unpack, or run here
            stack.close()
            return None
        staged = new_staging(placing.run_dir)
        stack.callback(shutil.rmtree, staged, ignore_errors=True)  # gone once placed
    except BaseException:
        stack.close()
        raise
    return placing, staged, stack


def _finish(placing: _Placing, staged: Path, stack: contextlib.ExitStack, root: Path, runs: Path,
            facts: dict[str, Any]) -> None:  # fmt: skip
    """Check the staged files against the manifest, then install them as the instance, and let go of it."""
    with stack:
        files = placing.entry["files"]
        for rel, entry in files.items():
            target = staged / rel
            if "link" in entry:
                wrong = not target.is_symlink() or os.readlink(target) != entry["link"]
            else:
                wrong = target.is_symlink() or not target.is_file() or target.stat().st_size != entry["size"]
                wrong = wrong or _source_state(staged, rel, entry) != "same"
            if wrong:
                raise BundleError(f"{placing.key}: {rel} did not extract as its manifest says (the archive "
                                  "changed while it was read, or the disk failed); the instance was not "
                                  "placed.", path=str(staged / rel))  # fmt: skip
        record = staged_record(staged, placing.entry["fingerprint"])
        place_instance(staged, placing.run_dir, record, project_root=root, runs_dir=runs, unpacked=facts)
        placing.placed = True


def _write_source(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path,
                  entry: Mapping[str, Any]) -> bool:  # fmt: skip
    """Write a source the checkout lacks, checked again against its manifest ``entry``; never over a file
    that appeared meanwhile. True when written."""
    reader = tar.extractfile(member)
    assert reader is not None  # a regular file
    data = reader.read()
    if (len(data), hashlib.sha256(data).hexdigest()) != listed_as(entry):
        raise BundleError(f"source {member.name.split('/', 1)[1]} did not read as its manifest says (the "
                          "archive changed while it was read, or the disk failed): not written. Unpack again "
                          "from a sound copy.", path=str(target))  # fmt: skip
    if target.exists() or target.is_symlink():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data, durable=True)
    return True
