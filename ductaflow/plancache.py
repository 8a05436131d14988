"""The conductor's decision at scale: what runs, read from the run index, and unchanged sweeps not rebuilt.

:func:`decide_plans` decides each planned instance: an instance whose index
row (kept true to its files a moment before) is a success with the planned
fingerprint is skipped without reading its record; any other is decided
from its ``run.json`` as before.

A sweep whose table and base config did not change since the last call
plans the same instances with the same fingerprints. After a full plan,
:func:`remember_plan` keeps each instance's fingerprint in the index, keyed
by everything the plan depends on (the flow's source, its project code, the
kernel, the table's and base config's content, the options that shape
configs; calls with inputs or upstream steps are not remembered: their
files change on their own).
:func:`skip_all` then answers the next such call without building a single
config, when every instance is still a success with that fingerprint; any
other outcome falls back to the full plan.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .indexstore import SCHEMA
from .runindex import RunIndex
from .runrecord import RunStatus, read_record
from .tasks import Task, attempt_id, decide, last_attempt_failed


class Skip(NamedTuple):
    """An instance a cached plan skips: what the conductor's run and dry run read of a :class:`Task`."""

    name: str
    run_dir: str
    seen: str | None
    reason: str = ""
    skip_reason: str = "unchanged"


def plan_key(table: Any, base: Any, parts: Mapping[str, Any]) -> tuple[str, str]:
    """``(key, "")`` of a plan of ``table`` over ``base``: their content, hashed, and ``parts``.

    ``parts``: the flow's hash, project code, kernel and the options that
    shape the configs and the decision. Values are hashed with their type
    (``1`` and ``"1"`` and ``numpy.int64(1)`` differ), as configs would.
    """
    digest = hashlib.sha256(json.dumps(["plan", SCHEMA, dict(parts)], default=_typed).encode())
    if hasattr(table, "to_dict") and hasattr(table, "columns"):  # a DataFrame: its values as rows
        table = table.to_dict("records")
    digest.update(json.dumps([base, list(table)], default=_typed, allow_nan=True).encode())
    return "plan:" + digest.hexdigest(), ""


def _typed(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}:{value!r}"


def skip_all(index: RunIndex, step: str, key: tuple[str, str], step_dir: Path) -> list[Skip] | None:
    """Every instance of the remembered plan, when each is still a success with its fingerprint."""
    remembered = index.source_hashes(*key)
    if not remembered:
        return None
    glances = index.glances(step)
    skips = []
    base = os.path.join(step_dir, "")
    for name, digest in remembered.items():
        raw, fingerprint, seen = glances.get(name, ("", None, None))
        if raw != RunStatus.SUCCESS or fingerprint != digest:
            return None
        skips.append(Skip(name, base + name, seen))
    return skips


def remember_plan(index: RunIndex, key: tuple[str, str] | None, plans: list[Task]) -> None:
    """Keep the fingerprints of a full plan for :func:`skip_all`."""
    if key is not None and plans:
        index.keep_source_hashes(*key, {p.name: p.fingerprint.digest for p in plans})


def decide_plans(plans: list[Task], index: RunIndex, step: str, *, force: bool, only_failed: bool,
                 environment: Any, waiting: Mapping[str, str]) -> None:  # fmt: skip
    """Set each plan's ``reason`` (empty: skipped) and ``seen``, reading ``run.json`` only when needed."""
    glances = index.glances(step) if plans else {}
    for plan in plans:
        raw, fingerprint, seen = glances.get(plan.name, ("", None, None))
        if (
            raw == RunStatus.SUCCESS
            and fingerprint == plan.fingerprint.digest
            and not (force or only_failed or environment is not None or plan.name in waiting)
        ):  # up to date by the index, which matched the files' signatures a moment ago
            plan.seen, plan.reason = seen, ""
            continue
        record = read_record(plan.run_dir)
        plan.seen = attempt_id(record)
        plan.reason = decide(record, plan.run_dir, plan.fingerprint, plan.config, force=force,
                             lock_held=False, environment=environment) or ""  # fmt: skip
        if only_failed and plan.reason and not last_attempt_failed(record, plan.run_dir):
            plan.reason, plan.skip_reason = "", "last attempt did not fail (only_failed)"
        if plan.name in waiting:  # a dry run with_upstream: its upstream instances would run first
            plan.reason = f"after upstream {waiting[plan.name]}"
