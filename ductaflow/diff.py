"""``diff_runs``: what differs between two instances, read from their folders.

Everything comes from the two instance directories as they are on disk:
``run.json`` (status, fingerprint parts), ``config.json``,
``environment.json`` (every installed distribution, when recorded),
``metrics.json`` and the executed notebook. Nothing is executed or hashed
again; the runs may come from different flows, machines or times.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .celldiff import CellDiff, compare_cells, parameters_diff, read_cells
from .config import closest, flatten
from .environment import read_environment
from .exceptions import RunDirectoryError
from .files import read_json, shown_path
from .metrics import read_metrics
from .rundir import CONFIG_NAME, current_status
from .runrecord import RECORD_NAME, error_line, is_record

#: How each fingerprint part is named in a difference; ``config_hash`` is left to the config's own keys.
_PARTS = {"flow_sha256": "flow", "kernel": "kernel", "inputs": "input", "code": "code",
          "upstream": "upstream"}  # fmt: skip
_ABSENT = object()


@dataclass(frozen=True)
class Change:
    """One named value in both runs: ``changed``, ``added`` (only in B), ``removed`` (only in A) or ``same``.

    ``a``/``b`` are the values (``None`` on the side that lacks the name).
    """

    name: str
    a: Any
    b: Any
    state: str

    def as_dict(self) -> dict[str, Any]:
        """The change as JSON-native data."""
        return {"name": self.name, "a": self.a, "b": self.b, "state": self.state}


@dataclass(frozen=True)
class RunSide:
    """Which instance one side of a comparison is: its folder, names, status and start."""

    run_dir: Path
    step: str
    instance: str
    status: str
    started_at: str | None
    flow: str | None
    error: str | None  # the first line of the error of a run that did not succeed

    @property
    def name(self) -> str:
        """``step/instance``."""
        return f"{self.step}/{self.instance}"


@dataclass(frozen=True)
class RunDiff:
    """What differs between two instances (see :func:`diff_runs`).

    ``config``, ``fingerprint`` and ``packages`` hold only what differs;
    ``metrics`` holds every metric of either run (``state`` ``same`` when
    equal); ``cells`` the code cells whose outputs differ; ``parameters`` the
    unified diff of the injected config cell, which follows the config and is
    not counted as an output difference; ``notes`` what could not be
    compared, and why.
    """

    a: RunSide
    b: RunSide
    config: list[Change] = field(default_factory=list)
    fingerprint: list[Change] = field(default_factory=list)
    python: tuple[str | None, str | None] = (None, None)
    packages: list[Change] = field(default_factory=list)
    metrics: list[Change] = field(default_factory=list)
    cells: list[CellDiff] = field(default_factory=list)
    cells_compared: int = 0
    parameters: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        """True when nothing differs: config, fingerprint, Python, packages, metrics and outputs."""
        changed_metrics = [m for m in self.metrics if m.state != "same"]
        return not (self.config or self.fingerprint or self.packages or changed_metrics or self.cells
                    or self.python[0] != self.python[1])  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """The comparison as JSON-native data (what ``ductaflow diff --json`` prints)."""
        sides = {key: {"run_dir": str(side.run_dir), "step": side.step, "instance": side.instance,
                       "status": side.status, "started_at": side.started_at, "flow": side.flow,
                       "error": side.error}
                 for key, side in (("a", self.a), ("b", self.b))}  # fmt: skip
        return {**sides, "same": self.same, "config": [c.as_dict() for c in self.config],
                "fingerprint": [c.as_dict() for c in self.fingerprint],
                "python": {"a": self.python[0], "b": self.python[1]},
                "packages": [c.as_dict() for c in self.packages],
                "metrics": [c.as_dict() for c in self.metrics],
                "cells": [c.as_dict() for c in self.cells], "cells_compared": self.cells_compared,
                "parameters": self.parameters, "notes": self.notes}  # fmt: skip


@dataclass(frozen=True)
class _Run:
    """One instance as read from its folder."""

    side: RunSide
    record: dict[str, Any]
    config: dict[str, Any]
    environment: dict[str, Any] | None


def diff_runs(
    a: str | os.PathLike[str], b: str | os.PathLike[str], *, runs_dir: str | os.PathLike[str] = "runs"
) -> RunDiff:
    """Compare two instances: config, fingerprint parts, Python and packages, metrics, cell outputs.

    ``a`` and ``b`` are instance directories (``runs/fit/a``) or
    ``step/instance`` names looked up in ``runs_dir``. Raises
    :class:`RunDirectoryError` naming the folder when one is not an instance.

    >>> d = diff_runs("make_data/seed=1", "make_data/seed=2")
    >>> [(c.name, c.a, c.b) for c in d.config], d.same
    ([('seed', 1, 2)], False)
    >>> [(c.index_b, c.first_line, c.html, [i.state for i in c.images]) for c in d.cells]
    [(2, 'from ductaflow import ...', 'changed', []), (3, 'import numpy as np', 'changed', []),
     (4, 'import matplotlib', None, ['changed'])]
    """
    run_a, run_b = _read(instance_dir(a, runs_dir)), _read(instance_dir(b, runs_dir))
    labels = (run_a.side.name, run_b.side.name)
    if labels[0] == labels[1]:
        labels = (f"A {labels[0]}", f"B {labels[1]}")
    python, packages, notes = _environment(run_a, run_b)
    cells, compared, parameters = _cells(run_a, run_b, labels, notes)
    config = changes(dict(flatten(run_a.config)), dict(flatten(run_b.config)))
    metrics = _metrics(run_a.side.run_dir, run_b.side.run_dir)
    fingerprint = _fingerprint(run_a.record, run_b.record)
    return RunDiff(run_a.side, run_b.side, config=config, fingerprint=fingerprint,
                   python=python, packages=packages, metrics=metrics, cells=cells, cells_compared=compared,
                   parameters=parameters, notes=notes)  # fmt: skip


def instance_dir(path: str | os.PathLike[str], runs_dir: str | os.PathLike[str] = "runs") -> Path:
    """The instance directory ``path`` names: itself, or ``runs_dir/path`` for a ``step/instance`` name."""
    given = Path(path)
    tried = [given] if given.is_absolute() else [given, Path(runs_dir) / given]
    for folder in tried:
        if (folder / RECORD_NAME).is_file():
            return folder
    where = " nor in ".join(shown_path(folder) for folder in dict.fromkeys(tried))
    raise RunDirectoryError(f"{str(path)!r} is not an instance: no {RECORD_NAME} in {where}. Give an "
                            "instance directory such as runs/<step>/<instance>, or <step>/<instance> with "
                            f"--runs-dir naming the runs folder.{_hint(tried)}",
                            run_dir=str(path))  # fmt: skip


def _hint(tried: list[Path]) -> str:
    """Instances of the step folder a wrong name points into, the closest first."""
    for folder in tried:
        if folder.parent.is_dir() and folder.name:
            names = sorted(p.name for p in folder.parent.iterdir() if (p / RECORD_NAME).is_file())
            if names:
                near = closest(folder.name, names) or names
                shown = ", ".join(shown_path(folder.parent / name) for name in near[:3])
                more = ", ..." if len(near) > 3 else ""
                return f" Instances of {shown_path(folder.parent)}: {shown}{more}."
    return ""


def _read(run_dir: Path) -> _Run:
    record, problem = read_json(run_dir / RECORD_NAME)
    if not is_record(record):
        problem = problem or "is not a ductaflow run record"
        raise RunDirectoryError(f"{shown_path(run_dir / RECORD_NAME)} {problem}: ductaflow cannot tell what "
                                "this instance ran. Run it again, or compare another instance.",
                                run_dir=str(run_dir))  # fmt: skip
    config = record.get("config")
    if not isinstance(config, dict):  # script-mode records keep the config in config.json only
        config, _ = read_json(run_dir / CONFIG_NAME)
    status = current_status(record, run_dir)
    side = RunSide(run_dir.absolute(), str(record.get("step", run_dir.parent.name)),
                   str(record.get("instance", run_dir.name)), str(status), record.get("started_at"),
                   record.get("flow"), error_line(record))  # fmt: skip
    return _Run(side, record, config if isinstance(config, dict) else {}, read_environment(run_dir))


def changes(a: Mapping[str, Any], b: Mapping[str, Any], *, keep_same: bool = False) -> list[Change]:
    """Key by key, how ``b`` differs from ``a`` (A's keys in order, then B's own); ``same`` ones on request.

    >>> [c.as_dict() for c in changes({"x": 1, "y": 2}, {"x": 1, "y": 3, "z": 0})]
    [{'name': 'y', 'a': 2, 'b': 3, 'state': 'changed'}, {'name': 'z', 'a': None, 'b': 0, 'state': 'added'}]
    """
    found = []
    for key in dict.fromkeys([*a, *b]):
        before, after = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if before is _ABSENT or after is _ABSENT:
            state = "added" if before is _ABSENT else "removed"
        else:
            state = "same" if _equal(before, after) else "changed"
        if state != "same" or keep_same:
            found.append(Change(str(key), None if before is _ABSENT else before,
                                None if after is _ABSENT else after, state))  # fmt: skip
    return found


def _equal(a: Any, b: Any) -> bool:
    """Equal as JSON text, as the fingerprint compares configs: ``1`` is not ``1.0``, nor ``True``."""
    return a == b and json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _fingerprint(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    """The fingerprint parts that differ: flow, kernel, each input, module and upstream instance."""
    parts_a, parts_b = (_mapping(r.get("fingerprint_parts")) for r in (a, b))
    found: list[Change] = []
    for part in dict.fromkeys([*_PARTS, *parts_a, *parts_b]):
        if part == "config_hash":
            continue
        label = _PARTS.get(part, part)
        value_a, value_b = parts_a.get(part), parts_b.get(part)
        if part in ("inputs", "code", "upstream") or any(isinstance(v, Mapping) for v in (value_a, value_b)):
            found += [Change(f"{label} {c.name}", c.a, c.b, c.state)
                      for c in changes(_mapping(value_a), _mapping(value_b))]  # fmt: skip
        else:  # a part one run has: compared whole
            found += changes({label: value_a} if part in parts_a else {},
                             {label: value_b} if part in parts_b else {})  # fmt: skip
    return found


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _environment(a: _Run, b: _Run) -> tuple[tuple[str | None, str | None], list[Change], list[str]]:
    """Python of each run, the packages whose versions differ, and notes on what was not recorded."""
    python = (_python(a), _python(b))
    if a.environment is not None and b.environment is not None:
        return python, changes(_mapping(a.environment.get("distributions")),
                               _mapping(b.environment.get("distributions"))), []  # fmt: skip
    missing = [f"{label} ({run.side.name})" for label, run in (("A", a), ("B", b)) if run.environment is None]
    note = (f"no environment recorded for {' and '.join(missing)}: only the versions run.json "
            "lists are compared")  # fmt: skip
    versions = [_mapping(run.record.get("versions")) for run in (a, b)]
    for listed in versions:
        listed.pop("python", None)
    return python, changes(*versions), [note]


def _python(run: _Run) -> str | None:
    if run.environment is not None and run.environment.get("python_version"):
        return str(run.environment["python_version"])
    for entry in (run.record.get("environment"), run.record.get("versions")):
        if isinstance(entry, Mapping) and entry.get("python"):
            return str(entry["python"])
    return None


def _metrics(a: Path, b: Path) -> list[Change]:
    """Every metric of either run, side by side, ``same`` or how it differs."""
    return changes(dict(flatten(read_metrics(a))), dict(flatten(read_metrics(b))), keep_same=True)


def _cells(
    a: _Run, b: _Run, labels: tuple[str, str], notes: list[str]
) -> tuple[list[CellDiff], int, list[str]]:
    """The differing code cells, how many cells were compared, the injected cell's diff."""
    read = []
    for label, run in (("A", a), ("B", b)):
        name = _mapping(run.record.get("outputs")).get("notebook")
        if not isinstance(name, str) or not name:
            notes.append(f"no executed notebook recorded for {label} ({run.side.name}): cell outputs not "
                         "compared")  # fmt: skip
            return [], 0, []
        try:
            read.append(read_cells(run.side.run_dir / name))
        except (OSError, ValueError) as exc:
            notes.append(f"{shown_path(run.side.run_dir / name)} cannot be read ({type(exc).__name__}): "
                         "cell outputs not compared")  # fmt: skip
            return [], 0, []
    (cells_a, injected_a), (cells_b, injected_b) = read
    compared = max(len(cells_a), len(cells_b))
    return compare_cells(cells_a, cells_b, labels), compared, parameters_diff(injected_a, injected_b, labels)
