"""Freshness: is each instance up to date with today's flow, config and inputs, and if not, why.

What ``ductaflow status`` and ``ductaflow why`` show (:func:`check_instance`,
:func:`check_instances`).

An instance is compared with its last successful run (the instance itself,
or the attempt kept in ``.ductaflow/previous/`` when the latest one failed):
the flow source is hashed again, the config is rebuilt from the config file,
overrides and table it came from (when the run recorded them), and the
recorded inputs are hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .config import config_hash
from .engines.kernels import CURRENT_PYTHON_LABEL
from .environment import environment_detail, kernel_environment
from .exceptions import DuctaflowError
from .fingerprint import InputHasher, config_changes, part_changes
from .indexstore import SCHEMA, file_signature, folders
from .rundir import (
    current_status,
    layout_root,
    previous_attempt_dir,
    unreadable_record,
)
from .runfolders import find_instances, is_step_folder
from .runindex import RunIndex, shared_index
from .runrecord import RECORD_NAME, RunStatus, error_line, read_record
from .sources import rebuild_configs
from .upstream import Upstreams

#: The status of an instance ductaflow made whose run.json cannot be read (an interrupted attempt).
UNREADABLE = "unreadable record"
UNCHECKED_CONFIG = (
    "config not checked: it was given from Python or a script, not read from files by ductaflow"
)
COLUMNS = ["step", "instance", "status", "started_at", "duration_s", "outdated", "orphaned", "reason",
           "error", "run_dir"]  # fmt: skip


@dataclass(frozen=True)
class InstanceCheck:
    """An instance's state and whether it is up to date, part by part."""

    step: str
    instance: str
    run_dir: Path
    status: str  # success | failed | interrupted | crashed | running | unreadable record | unknown
    started_at: str | None
    duration_s: float | None
    outdated: bool | None  # None: cannot tell (running, no readable record, config not from files), orphaned
    reason: str  # what changed, "up to date", or why it cannot tell
    error: str | None = None  # the latest attempt's error line
    details: list[tuple[str, str]] = field(default_factory=list)  # (part, how it compares)
    compared_with: Path | None = None  # the successful run compared against
    orphaned: bool = False  # its table row (or grid value) is gone: the same sweep would not run it


def check_instance(run_dir: str | os.PathLike[str]) -> InstanceCheck:
    """Check one instance directory against today's flow source, config and inputs.

    ``details`` lists each part (flow, config, every input, kernel) and how it
    compares with the last successful run; ``reason`` joins what changed.

    >>> check_instance("runs/make_data/seed=2").reason
    'up to date'
    >>> _ = Path("config/make_data.json").write_text('{"seed": 1, "start": "2025-01-01", "n_days": 730, '
    ...     '"base_level": 100.0, "trend_per_day": 0.05, "season_amplitude": 20.0, "noise": 7.5}')
    >>> check_instance("runs/make_data/seed=2").reason
    'config changed (noise: 5.0 -> 7.5)'
    """
    with _Cache() as cache:
        return _check(Path(run_dir).absolute(), cache)


def _check(path: Path, cache: _Cache) -> InstanceCheck:
    record = read_record(path)
    if record is None and (problem := unreadable_record(path)) is not None:
        reason = f"{problem}: an interrupted attempt; the next run keeps it aside and runs the instance again"
        return InstanceCheck(path.parent.name, path.name, path, UNREADABLE, None, None, True, reason,
                             error=problem)  # fmt: skip
    if record is None:
        note = "run.json is unreadable or not a ductaflow record" if (path / RECORD_NAME).exists() else (
            "no run.json: not a ductaflow instance, or its first attempt never started")  # fmt: skip
        return InstanceCheck(path.parent.name, path.name, path, "unknown", None, None, None, note)
    status = str(current_status(record, path) or "unknown")
    fields = {"step": str(record.get("step", path.parent.name)), "run_dir": path, "status": status,
              "instance": str(record.get("instance", path.name)), "started_at": record.get("started_at"),
              "duration_s": record.get("duration_s"), "error": error_line(record)}  # fmt: skip
    if status == RunStatus.RUNNING:
        where = f"pid {record.get('pid')} on {record.get('host')}"
        return InstanceCheck(**fields, outdated=None, reason=f"running ({where})")
    orphan = _orphaned(record, _root(record, path, cache), fields["instance"], cache)
    if orphan is not None:
        return InstanceCheck(**fields, outdated=None, reason=orphan, orphaned=True)
    succeeded = status == RunStatus.SUCCESS
    basis_dir = path if succeeded else previous_attempt_dir(path)
    basis = record if succeeded else read_record(basis_dir)
    if basis is None or basis.get("status") != RunStatus.SUCCESS:
        return InstanceCheck(**fields, outdated=True, reason=f"last attempt {status}, no successful run")
    details, changes = _compare(
        basis, _root(basis, path, cache), fields["instance"], cache, path.parent.parent
    )
    details.append(("environment", _environment(basis, basis_dir)))  # shown, never makes it outdated
    details += [("origin", origin) for origin in [_origin(basis)] if origin]
    if not succeeded:
        changes.insert(0, f"last attempt {status}")
    outdated, reason = _outcome(changes, ("config", UNCHECKED_CONFIG) in details)
    return InstanceCheck(**fields, outdated=outdated, reason=reason, details=details, compared_with=basis_dir)


def check_instances(paths: Iterable[str | os.PathLike[str]] = ("runs",)) -> Any:
    """Check every instance under ``paths`` (runs folders, step folders, instance dirs); return a DataFrame.

    Columns: step, instance, status, started_at, duration_s, outdated, reason,
    error, run_dir. Raises :class:`ConfigError` for a path that does not exist.
    Successes are read through the run index, and what a sweep's instances
    share (flow, inputs, code, the configs its source makes today) is
    compared once.
    """
    import pandas as pd

    rows: dict[str, dict[str, Any]] = {}
    with _Cache() as cache:
        for runs_dir, step, run_dir in _places(paths):
            if run_dir is not None:
                check = _check(run_dir, cache)
                rows.setdefault(str(run_dir), {c: getattr(check, c) for c in COLUMNS})
                continue
            index, shared = shared_index(runs_dir), {}  # basis text -> _Sweep
            folder = os.path.join(runs_dir, step)
            step_dir, base = Path(folder), folder + os.sep
            for name, status, started, duration, error, basis, recorded in index.successes(step):
                path = base + name
                if path in rows:
                    continue
                if basis is None or status != RunStatus.SUCCESS:
                    check = _check(Path(path), cache)
                    rows[path] = {c: getattr(check, c) for c in COLUMNS}
                    continue
                outdated, orphaned, reason = _verdict(step_dir, name, basis, recorded, shared, cache, index)
                values = [step, name, status, started, duration, outdated, orphaned, reason, error, path]
                rows[path] = dict(zip(COLUMNS, values, strict=True))
    frame = pd.DataFrame(list(rows.values()), columns=COLUMNS)
    frame["run_dir"] = frame["run_dir"].astype(str)
    return frame


def _places(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[Path, str, Path | None]]:
    """``(runs folder, step, None)`` per step under ``paths``; ``(.., .., run_dir)`` per instance dir."""
    for given in paths:
        folder = Path(given).absolute()
        if not folder.is_dir() or (folder / RECORD_NAME).exists():
            for run_dir in find_instances([folder]):  # raises ConfigError for a missing path
                yield run_dir.parent.parent, run_dir.parent.name, run_dir
        elif is_step_folder(folder):
            yield folder.parent, folder.name, None
        else:
            for step in folders(folder):
                yield folder, step, None


class _Sweep(NamedTuple):
    """What the successes of one basis share, compared once (see :func:`_verdict`)."""

    basis: dict[str, Any]
    root: Path
    changes: list[str]  # what changed in the flow, inputs, code, upstream
    unchecked: bool  # the config was not read from files
    at: int  # where a config change goes among the changes (after the flow's)
    hashes: Any  # today's config hash per instance, or the error that prevents building them, or None
    outcome: tuple[bool | None, bool, str]  # the verdict of an instance whose config is unchanged


def _verdict(step_dir: Path, name: str, basis_text: str, recorded: str | None, shared: dict[str, _Sweep],
             cache: _Cache, index: RunIndex) -> tuple[bool | None, bool, str]:  # fmt: skip
    """``(outdated, orphaned, reason)`` of a success in the index; what a sweep shares is compared once."""
    sweep = shared.get(basis_text)
    if sweep is None:
        basis = json.loads(basis_text)
        root = _root(basis, step_dir / name, cache)
        details, changes = _compare(basis, root, None, cache, step_dir.parent)
        at = int(bool(changes) and details[0][1] == changes[0])
        source = basis.get("config_source")
        hashes = cache.hashes(source, root, index) if isinstance(source, Mapping) else None
        unchecked = ("config", UNCHECKED_CONFIG) in details
        outdated, reason = _outcome(changes, unchecked)
        sweep = _Sweep(basis, root, changes, unchecked, at, hashes, (outdated, False, reason))
        shared[basis_text] = sweep
    hashes = sweep.hashes if isinstance(sweep.hashes, dict) else {}
    if recorded is not None and hashes.get(name) == recorded:
        return sweep.outcome  # its config is what its source makes today (the common case)
    if name not in hashes:
        orphan = _orphaned(sweep.basis, sweep.root, name, cache)
        if orphan is not None:
            return None, True, orphan
    changes = list(sweep.changes)
    if not sweep.unchecked:

        def note(_part: str, text: str, changed: bool) -> None:
            if changed:
                changes.insert(sweep.at, text)

        record = {**(read_record(step_dir / name) or {}), "config_source": sweep.basis["config_source"]}
        _compare_config(record, sweep.root, name, cache, note)  # described key by key from the record: rare
    outdated, reason = _outcome(changes, sweep.unchecked)
    return outdated, False, reason


def _outcome(changes: list[str], unchecked: bool) -> tuple[bool | None, str]:
    """``(outdated, reason)`` from what changed; ``unchecked``: the config was not read from files."""
    if changes:
        return True, "; ".join(changes)
    return (None, "flow and inputs unchanged; " + UNCHECKED_CONFIG) if unchecked else (False, "up to date")


class _Cache:
    """What many checks share: flow hashes, input hashes, rebuilt sweeps."""

    def __init__(self) -> None:
        self.flows: dict[Path, str | None] = {}
        self.hashers: dict[Path, InputHasher] = {}
        self.sweeps: dict[str, Any] = {}
        self.keys: dict[tuple[int, Path], tuple[Any, str]] = {}  # (id(source), root) -> (source, its key)
        self.lineages: dict[tuple[Path, Path], Upstreams] = {}
        self.roots: dict[str, Path | None] = {}  # recorded project root -> that directory, if it exists

    def flow_sha(self, path: Path) -> str | None:
        if path not in self.flows:
            try:
                self.flows[path] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                self.flows[path] = None
        return self.flows[path]

    def hasher(self, root: Path) -> InputHasher:
        return self.hashers.setdefault(root, InputHasher(root))

    def __enter__(self) -> _Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        for lineage in self.lineages.values():  # the step folders they opened
            lineage.close()

    def hashes(self, source: Mapping[str, Any], root: Path, index: RunIndex) -> Any:
        """Today's config hash of each instance ``source`` makes (kept in the index while its files stay
        unchanged), or the error that prevents building them."""
        key = json.dumps([str(root), source, SCHEMA], default=str)  # unsorted: a space's order matters
        files = "".join(file_signature(root, source.get(name)) for name in ("config_file", "table"))
        found = index.source_hashes(key, files)
        if found is not None:
            return found
        built = self.configs(source, root)
        if isinstance(built, DuctaflowError):
            return built
        hashes = {name: config_hash(config) for name, config in built.items()}
        index.keep_source_hashes(key, files, hashes)
        return hashes

    def lineage(self, runs_dir: Path, root: Path) -> Upstreams:
        """Upstream instances' states and flows' project code under ``runs_dir``, worked out once."""
        if (runs_dir, root) not in self.lineages:
            self.lineages[(runs_dir, root)] = Upstreams(runs_dir, root, self.hasher(root))
        return self.lineages[(runs_dir, root)]

    def configs(self, source: Mapping[str, Any], root: Path) -> Any:
        """Today's configs by instance name from ``source``, or the error that prevents building them."""
        known = self.keys.get((id(source), root))  # a sweep's instances share one source object
        if known is not None and known[0] is source:
            key = known[1]
        else:
            key = json.dumps([str(root), source], sort_keys=True, default=str)
            self.keys[(id(source), root)] = (source, key)
        if key not in self.sweeps:
            try:
                self.sweeps[key] = rebuild_configs(source, root)
            except DuctaflowError as exc:  # a bad row or file spoils only the instances it produces
                self.sweeps[key] = exc
        return self.sweeps[key]


def _origin(record: Mapping[str, Any]) -> str | None:
    """Where a success made elsewhere came from: a cache, a run bundle (``None``: it ran here)."""
    for key, how in (("restored", "restored from cache"), ("unpacked", "unpacked from")):
        came = record.get(key)
        if isinstance(came, Mapping):
            ran = str(record.get("started_at") or "")[:16].replace("T", " ")
            return f"{how} {came.get('from')}, made on {came.get('host')} (ran {ran} UTC)"
    return None


def _root(record: Mapping[str, Any], run_dir: Path, cache: _Cache) -> Path:
    recorded = str(record.get("project_root") or "")
    if recorded not in cache.roots:
        path = Path(recorded)
        cache.roots[recorded] = path if recorded and path.is_absolute() and path.is_dir() else None
    found = cache.roots[recorded]
    if found is not None:
        return found
    return layout_root(run_dir)


def _compare(basis: Mapping[str, Any], root: Path, instance: str | None, cache: _Cache,
             runs_dir: Path) -> tuple[list[tuple[str, str]], list[str]]:  # fmt: skip
    """Each part's comparison for ``details``, and the changes that make the instance outdated.

    ``instance=None`` leaves the config to the caller (unless it was not read from files).
    """
    parts = basis.get("fingerprint_parts") or {}
    details: list[tuple[str, str]] = []
    changes: list[str] = []

    def note(part: str, text: str, changed: bool) -> None:
        details.append((part, text))
        if changed:
            changes.append(text)

    flow = str(basis.get("flow"))
    sha = cache.flow_sha(Path(flow) if Path(flow).is_absolute() else root / flow)
    recorded_sha = parts.get("flow_sha256") or basis.get("flow_sha256")  # script-mode records: no parts
    if sha is None:
        note("flow", f"flow missing ({flow})", True)
    else:
        note(
            "flow",
            f"flow changed ({flow})" if sha != recorded_sha else f"{flow} unchanged",
            sha != recorded_sha,
        )
    if instance is not None:
        _compare_config(basis, root, instance, cache, note)
    elif not isinstance(basis.get("config_source"), Mapping):
        note("config", UNCHECKED_CONFIG, False)
    for text, changed in cache.hasher(root).compare(parts.get("inputs") or {}):
        note("input", text, changed)
    lineage = cache.lineage(runs_dir, root)
    code = lineage.code_of(Path(flow) if Path(flow).is_absolute() else root / flow)
    if code is not None and (code or parts.get("code")):
        changed_code = part_changes("code", parts.get("code") or {}, code)
        note(
            "code",
            "; ".join(changed_code) or f"project code unchanged ({len(code)} modules)",
            bool(changed_code),
        )
    for key, digest in (parts.get("upstream") or {}).items():
        change = lineage.upstream_changes({key: digest})
        note("upstream", change[0] if change else f"upstream {key} unchanged", bool(change))
    kernel = parts.get("kernel") or basis.get("kernel") or f"none ({basis.get('mode', 'unknown')} mode)"
    details.append(("kernel", str(kernel)))
    return details, changes


def _environment(basis: Mapping[str, Any], basis_dir: Path) -> str:
    """``packages unchanged``, or what differs from the environment its kernel has today."""
    kernel = (basis.get("fingerprint_parts") or {}).get("kernel") or basis.get("kernel")
    name = None if kernel in (None, CURRENT_PYTHON_LABEL) else str(kernel)
    return environment_detail(basis, basis_dir, kernel_environment(name))


def _orphaned(record: Mapping[str, Any], root: Path, instance: str, cache: _Cache) -> str | None:
    """Why the sweep the instance came from would no longer run it, or ``None`` when it would."""
    source = record.get("config_source")
    if not isinstance(source, Mapping):
        return None
    built = cache.configs(source, root)
    if isinstance(built, DuctaflowError) or instance in built:
        return None
    if source.get("table"):
        return f"orphaned: no longer a row of {source['table']}, so a sweep of that table would not run it"
    if source.get("grid"):
        return "orphaned: no longer a combination of the sweep's grid, so the same sweep would not run it"
    given = source.get("config_file") or "its config"
    return f"orphaned: {given} now names another instance, so the same run would not run this one"


def _compare_config(basis: Mapping[str, Any], root: Path, instance: str, cache: _Cache, note: Any) -> None:
    source = basis.get("config_source")
    if not isinstance(source, Mapping):
        note("config", UNCHECKED_CONFIG, False)
        return
    built = cache.configs(source, root)
    now = built if isinstance(built, DuctaflowError) else built.get(instance)
    if now is None:  # the latest attempt's source still makes it, the last success's does not
        note("config", f"config changed: {_describe(source)} no longer makes this instance", True)
    elif isinstance(now, DuctaflowError):
        note("config", f"config cannot be rebuilt: {now}", True)
    elif config_hash(now) != (basis.get("fingerprint_parts") or {}).get("config_hash"):
        note("config", config_changes(basis.get("config"), now, limit=None), True)
    else:
        note("config", f"config unchanged ({_describe(source)})", False)


def _describe(source: Mapping[str, Any]) -> str:
    bits = [source.get("config_file") or "no config file"]
    if source.get("overrides"):
        bits.append(f"{len(source['overrides'])} override{'s' * (len(source['overrides']) > 1)}")
    if source.get("table"):
        bits.append(f"table {source['table']}")
    if source.get("grid"):
        bits.append(f"grid over {', '.join(source['grid'])}")
    if source.get("paired"):
        bits.append(f"paired {', '.join(source['paired'])}")
    if source.get("random"):
        bits.append(f"{source['random']} random draws (seed {source.get('seed') or 0})")
    return " + ".join(bits)
