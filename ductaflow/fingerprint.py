"""Fingerprints: what decides whether an instance is up to date, and why it is not.

An instance's fingerprint covers the flow source, the normalised config, the
content of its declared inputs, the project modules the flow imports
(:mod:`ductaflow.projectcode`), the fingerprints of the upstream instances
it reads (:mod:`ductaflow.upstream`) and the options that change results
(the kernel). Its parts are stored in ``run.json`` so a later run can say
what changed: ``flow changed``, ``config changed (param1: 100 -> 200)``,
``input changed (data/x.csv)``, ``code changed (src/mylib/model.py)``,
``upstream changed (prep/a)``...
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import canonical_json, flatten
from .config import config_hash as hash_config
from .exceptions import ConfigError
from .files import file_sha256, shown_path
from .runrecord import RunStatus

_GLOB_CHARS = set("*?[")
_SHOWN_CHANGES = 3


@dataclass(frozen=True)
class Fingerprint:
    """The parts that decide whether an instance must run again, and their digest."""

    flow_sha256: str
    config_hash: str
    inputs: dict[str, str] = field(default_factory=dict)  # input path -> content hash
    kernel: str = "ductaflow-python"
    code: dict[str, str] = field(default_factory=dict)  # project module path -> content hash
    upstream: dict[str, str] = field(default_factory=dict)  # "step/instance" -> its fingerprint

    @property
    def parts(self) -> dict[str, Any]:
        """The parts as stored in ``run.json`` under ``fingerprint_parts``.

        ``code`` and ``upstream`` appear only when not empty, so a flow that
        imports no project module and reads no other step keeps the
        fingerprint it had before they were parts.
        """
        parts = {"flow_sha256": self.flow_sha256, "config_hash": self.config_hash, "inputs": self.inputs,
                 "kernel": self.kernel}  # fmt: skip
        if self.code:
            parts["code"] = self.code
        if self.upstream:
            parts["upstream"] = self.upstream
        return parts

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the canonical JSON of the parts (stored as ``fingerprint``)."""
        return hashlib.sha256(canonical_json(self.parts).encode()).hexdigest()


class InputHasher:
    """Content hashes of input files, directories and globs.

    A file's hash is cached by (path, size, mtime_ns) and a spec's expansion by
    its text, for the hasher's lifetime, so many instances sharing one large
    input hash it once.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[tuple[str, int, int], str] = {}
        self._specs: dict[str, list[tuple[str, str]]] = {}  # spec -> [(shown path, hash)]

    def hash_inputs(self, specs: Iterable[str | os.PathLike[str]], where: str = "") -> dict[str, str]:
        """Map each input (files of directories and globs expanded) to its content hash.

        A spec is expanded and hashed once per hasher: use one hasher per
        decision (a conductor call), in which inputs are taken not to change.
        """
        hashes: dict[str, str] = {}
        for spec in map(str, specs):
            if spec not in self._specs:
                expanded = self._expand(spec, where)
                self._specs[spec] = [(shown_path(p, self.root), self._hash(p)) for p in expanded]
            hashes.update(self._specs[spec])
        return hashes

    def compare(self, recorded: Mapping[str, str]) -> list[tuple[str, bool]]:
        """Each recorded input (shown path -> hash) against today's file: ``(what, changed)``, as
        ``input changed (p)``, ``input removed (p)`` or ``p unchanged``."""
        out = []
        for path, old in recorded.items():
            try:
                new = self.hash_inputs([path]).get(path)
            except (ConfigError, OSError):
                out.append((f"input removed ({path})", True))
                continue
            out.append((f"input changed ({path})", True) if new != old else (f"{path} unchanged", False))
        return out

    def _expand(self, spec: str, where: str) -> list[Path]:
        path = Path(spec) if Path(spec).is_absolute() else self.root / spec
        if _GLOB_CHARS & set(spec):
            anchor = Path(path.anchor)
            matches = sorted(anchor.glob(str(path.relative_to(anchor))))
            if not matches:
                raise ConfigError(f"input glob {spec!r}{where} matches no file under {self.root}.", key=spec)
            return matches
        if not path.exists():
            raise ConfigError(
                f"input {spec!r}{where} does not exist (paths are relative to {self.root}). "
                "Create it first or fix the path.",
                key=spec,
            )
        return [path]

    def _hash(self, path: Path) -> str:
        if not path.is_dir():
            return self._hash_file(path)
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{child.relative_to(path).as_posix()}\0{self._hash_file(child)}\n".encode())
        return digest.hexdigest()

    def _hash_file(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._files:
            self._files[key] = file_sha256(path)
        return self._files[key]


def why_run(
    record: Mapping[str, Any] | None,
    status: str | None,
    fingerprint: Fingerprint,
    old_config: Mapping[str, Any] | None = None,
    new_config: Mapping[str, Any] | None = None,
) -> str | None:
    """Why an instance must run, or ``None`` when its last success has the same fingerprint.

    ``status`` is the instance's current state (``crashed`` for a stale
    ``running`` record); ``old_config``/``new_config`` let a config change be
    described key by key.
    """
    if record is None:
        return "new"
    if status != RunStatus.SUCCESS:
        return f"previous attempt {status}"
    if record.get("fingerprint") == fingerprint.digest:
        return None
    old = record.get("fingerprint_parts")
    if not isinstance(old, Mapping):
        return "recorded without a fingerprint"
    changes = []
    if old.get("flow_sha256") != fingerprint.flow_sha256:
        changes.append("flow changed")
    if old.get("config_hash") != fingerprint.config_hash:
        changes.append(config_changes(old_config, new_config))
    for part, key in (("input", "inputs"), ("code", "code"), ("upstream", "upstream")):
        changes += part_changes(part, old.get(key) or {}, getattr(fingerprint, key))
    if old.get("kernel") != fingerprint.kernel:
        changes.append(f"kernel changed ({old.get('kernel')} -> {fingerprint.kernel})")
    return "; ".join(changes) or "fingerprint changed"


def why_run_again(
    record: Mapping[str, Any] | None,
    status: str | None,
    flow_sha256: str,
    config: Mapping[str, Any],
    old_config: Mapping[str, Any] | None = None,
) -> str:
    """Why an attempt asked for directly runs (a script run with ``--output-dir``), from any record.

    What changed since the last success (the flow, the config, described key
    by key from ``old_config``, else the record's), the previous attempt's
    status, ``new``, or ``unchanged, run again``.
    """
    if record is None:
        return "new"
    if status != RunStatus.SUCCESS:
        return f"previous attempt {status}"
    changes = ["flow changed"] if record.get("flow_sha256") != flow_sha256 else []
    if record.get("config_hash") != hash_config(config):
        before = old_config if isinstance(old_config, Mapping) else record.get("config")
        changes.append(config_changes(before, config))
    return "; ".join(changes) or "unchanged, run again"


def config_changes(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, limit: int | None = _SHOWN_CHANGES
) -> str:
    """Describe how ``new`` differs from ``old`` key by key, showing at most ``limit`` changes."""
    if old is None or new is None:
        return "config changed"
    before, after = dict(flatten(old)), dict(flatten(new))
    diffs = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            diffs.append(f"{key} removed")
        elif key not in before:
            diffs.append(f"{key}={_short(after[key])} added")
        elif before[key] != after[key]:
            diffs.append(f"{key}: {_short(before[key])} -> {_short(after[key])}")
    shown = diffs if limit is None else diffs[:limit]
    more = f", +{len(diffs) - len(shown)} more" if len(diffs) > len(shown) else ""
    return f"config changed ({', '.join(shown)}{more})"


def part_changes(part: str, old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """How a part held as ``{name: hash}`` changed: ``input changed (data/x.csv)``, ``code added (...)``,
    ``upstream removed (...)``, at most three of each, then ``+N more <part> changes``."""
    changed = [p for p in new if p in old and old[p] != new[p]]
    added = [p for p in new if p not in old]
    removed = [p for p in old if p not in new]
    out = [f"{part} changed ({p})" for p in changed[:_SHOWN_CHANGES]]
    out += [f"{part} added ({p})" for p in added[:_SHOWN_CHANGES]]
    out += [f"{part} removed ({p})" for p in removed[:_SHOWN_CHANGES]]
    hidden = len(changed) + len(added) + len(removed) - len(out)
    return out + ([f"+{hidden} more {part} change{'s' * (hidden > 1)}"] if hidden > 0 else [])


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def row_inputs(specs: Sequence[Any], config: Mapping[str, Any], where: str) -> list[str]:
    """Paths for one row: an entry naming a config key stands for the path(s) it holds.

    A key holding null or an empty string declares no input for that row.
    """
    paths: list[str] = []
    for spec in specs:
        value = _dotted(config, spec) if isinstance(spec, str) else _ABSENT
        if value is _ABSENT:
            paths.append(os.fspath(spec))
        elif value is None or value == "":
            continue
        elif isinstance(value, str):
            paths.append(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            paths.extend(value)
        else:
            raise ConfigError(
                f"input key {spec!r}{where} holds {value!r}, not a path or list of paths.", key=spec
            )
    return paths


_ABSENT = object()


def _dotted(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node
