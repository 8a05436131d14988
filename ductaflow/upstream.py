"""Steps that depend on steps: which upstream instances an instance reads, and whether they are current.

A flow reads another step's results with :func:`ductaflow.output_of`
(``prep = output_of("prep")``: the instance of step ``prep`` named like this
one). The conductor reads those calls in the flow's code, so the common case
needs no declaration at all; ``upstream=`` on :func:`run_instances` declares
the rest, or overrides what was read: ``upstream="prep"`` (the instance of the
same name), ``upstream={"prep": "{dataset}"}`` (the instance named by the
row's ``dataset`` key), ``upstream={"prep": ["a", "b"]}`` (two fixed ones).

An instance's fingerprint holds the fingerprint of each upstream instance's
last success, so re-running an upstream instance makes its downstream ones
``upstream changed (prep/a)``. Before a downstream instance runs, each of its
upstream instances must exist, have succeeded and be up to date (its flow,
project code, inputs and own upstream unchanged); :class:`Upstreams` tells,
following the chain, once per upstream instance per call.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import flatten
from .exceptions import ConfigError, FlowError, UpstreamError
from .fingerprint import InputHasher, part_changes
from .flow import Flow, read_flow
from .names import check_name
from .projectcode import flow_code
from .rundir import current_status
from .runrecord import RECORD_NAME, RunStatus, is_record, read_record

_FIELD = re.compile(r"\{([^{}]*)\}")
_MAGIC = re.compile(r"^\s*[%!]")
_INSTANCE = "{instance}"
_DIR_FD = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")
_NAME = "ductaflow_instance"  # the name column of the tables upstream instances are run again from


@dataclass(frozen=True)
class UpstreamState:
    """An upstream instance as a downstream one sees it."""

    key: str  # "<step>/<instance>"
    fingerprint: str | None  # its last success's fingerprint
    problem: str | None  # why it cannot be read from ("does not exist", "is out of date: ..."), or None
    record: dict[str, Any] | None = None  # its record, when it has one: --with-upstream runs it from it


_CYCLE = UpstreamState("", None, None)


def upstream_templates(flow: Flow, given: Any = None) -> dict[str, list[str]]:
    """Step -> instance-name templates: read from the flow's ``output_of`` calls, then ``given`` over them.

    ``given`` is ``None``, a step name (``"prep"``), a list of step names or
    ``"step/template"`` strings, or a mapping of step to a template or a
    list of them. A template is an instance name with ``{instance}`` (the
    downstream instance's name) and ``{key}`` (a config value, dotted for
    nested keys) filled in per instance.

    >>> flow = read_flow("flow/make_data.py")
    >>> upstream_templates(flow, {"prep": "{region}-v2"})
    {'prep': ['{region}-v2']}
    """
    found = _from_code(flow)
    explicit = _normalised(given)
    unknown = [step for step, templates in found.items() if templates is None and step not in explicit]
    if unknown:
        raise FlowError(
            f"{flow.path} calls output_of({unknown[0]!r}, ...) with an instance ductaflow cannot read from "
            f"the code. Declare it: upstream={{{unknown[0]!r}: '{{key}}'}} (a config key naming the "
            f"instance), or --upstream {unknown[0]}/NAME.",
            flow=str(flow.path),
        )
    merged = {step: templates for step, templates in found.items() if templates is not None}
    merged.update(explicit)
    return merged


def resolve(templates: Mapping[str, list[str]], instance: str, config: Mapping[str, Any]) -> list[str]:
    """The upstream instances (``"step/instance"``) of one instance, its templates filled in."""
    flat: dict[str, Any] | None = None
    keys = []
    for step, names in templates.items():
        for text in names:
            if text == _INSTANCE:  # the common case: the instance of the same name, already checked
                keys.append(f"{step}/{instance}")
                continue
            flat = dict(flatten(config)) if flat is None else flat
            name = _FIELD.sub(lambda m, t=text, s=step, f=flat: _field(m.group(1), instance, f, t, s), text)
            check_name(name, f"upstream instance name {text!r} of step {step!r} (instance {instance!r})")
            keys.append(f"{step}/{name}")
    return list(dict.fromkeys(keys))


class Upstreams:
    """The states of upstream instances under one runs folder, each worked out once (chains followed)."""

    def __init__(self, runs_dir: Path, root: Path, hasher: InputHasher) -> None:
        self.runs_dir, self.root, self.hasher = runs_dir, root, hasher
        self.runs_text = str(runs_dir)
        self.dirs: dict[str, int] = {}  # step -> its folder, opened (-1: none)
        self.paths: dict[tuple[str, str], Path] = {}  # a record's (project root, flow) -> the flow's file
        self.states: dict[str, UpstreamState] = {}
        self.codes: dict[Path, dict[str, str] | None] = {}
        self.shas: dict[Path, str | None] = {}

    def state(self, key: str) -> UpstreamState:
        """The state of ``key`` (``"step/instance"``)."""
        found = self.states.get(key)
        if found is None:
            self.states[key] = _CYCLE  # asked for again while being worked out: steps read each other
            found = self.states[key] = self._state(key)
        elif found is _CYCLE:
            return UpstreamState(key, None, "is part of a cycle of steps")
        return found

    def _state(self, key: str) -> UpstreamState:
        record = self._read(key)  # strings, no Path: this runs once per upstream instance
        if record is None:
            folder = os.path.join(self.runs_text, key)
            there = "has no readable run record" if os.path.exists(folder) else "does not exist"
            return UpstreamState(key, None, there)
        if record.get("status") != RunStatus.SUCCESS:
            status = current_status(record, Path(self.runs_text, key))  # a stale 'running' is crashed
            if status is RunStatus.RUNNING:
                return UpstreamState(key, None, "is running", record)
            return UpstreamState(key, None, f"did not succeed (last attempt {status})", record)
        # a script run's record has no fingerprint: its flow and config hashes stand for one
        digest = record.get("fingerprint") or f"{record.get('flow_sha256')}:{record.get('config_hash')}"
        changes = self.changes(record)
        problem = f"is out of date ({'; '.join(changes)})" if changes else None
        # the record is kept only to run it again: thousands of current ones would only weigh on memory
        return UpstreamState(key, digest, problem, record if problem else None)

    def _read(self, key: str) -> dict[str, Any] | None:
        """The record of ``key``, read relative to its step folder, opened once: half the cost of a
        path walked from the root for each of thousands of instances."""
        step, _, name = key.partition("/")
        if not _DIR_FD:
            return read_record(os.path.join(self.runs_text, key))
        if step not in self.dirs:
            try:
                self.dirs[step] = os.open(os.path.join(self.runs_text, step), os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                self.dirs[step] = -1
        if self.dirs[step] < 0:
            return None
        try:
            fd = os.open(f"{name}/{RECORD_NAME}", os.O_RDONLY, dir_fd=self.dirs[step])
        except OSError:
            return None
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            value = json.loads(b"".join(chunks))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        return value if is_record(value) else None

    def close(self) -> None:
        """Close the step folders opened to read records (the states stay)."""
        for fd in self.dirs.values():
            if fd >= 0:
                os.close(fd)
        self.dirs.clear()

    def __enter__(self) -> Upstreams:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def changes(self, record: Mapping[str, Any]) -> list[str]:
        """What changed since ``record``'s success: its flow, project code, inputs, upstream instances."""
        parts = record.get("fingerprint_parts") or {"flow_sha256": record.get("flow_sha256")}  # script runs
        flow, base = str(record.get("flow")), str(record.get("project_root") or self.root)
        if (base, flow) not in self.paths:  # relative to the root it ran in (a script: its working dir)
            root = Path(base) if Path(base).is_dir() else self.root
            self.paths[(base, flow)] = Path(flow) if Path(flow).is_absolute() else root / flow
        path = self.paths[(base, flow)]
        changes: list[str] = []
        sha = self._sha(path)
        if sha is None:
            return [f"flow missing ({flow})"]
        if sha != parts.get("flow_sha256"):
            changes.append(f"flow changed ({flow})")
        code = self.code_of(path)
        if code is not None and code != (parts.get("code") or {}):
            changes += part_changes("code", parts.get("code") or {}, code)
        changes += [text for text, changed in self.hasher.compare(parts.get("inputs") or {}) if changed]
        changes += self.upstream_changes(parts.get("upstream") or {})
        return changes

    def upstream_changes(self, recorded: Mapping[str, str]) -> list[str]:
        """How recorded upstream fingerprints compare with today's upstream instances."""
        out = []
        for key, digest in recorded.items():
            state = self.state(key)
            if state.problem is not None:
                out.append(f"upstream {key} {state.problem}")
            elif state.fingerprint != digest:
                out.append(f"upstream changed ({key})")
        return out

    def _sha(self, path: Path) -> str | None:
        if path not in self.shas:
            try:
                self.shas[path] = read_flow(path).sha256
            except FlowError:
                self.shas[path] = None
        return self.shas[path]

    def code_of(self, path: Path) -> dict[str, str] | None:
        """The project code the flow at ``path`` imports today (``None``: the flow cannot be read)."""
        if path not in self.codes:
            try:
                self.codes[path] = flow_code(read_flow(path).notebook, path, self.root)
            except FlowError:
                self.codes[path] = None
        return self.codes[path]


def plan_upstream(
    flow: Flow,
    given: Any,
    instances: list[tuple[str, dict[str, Any]]],
    runs_dir: Path,
    hasher: InputHasher,
    *,
    with_upstream: bool,
    dry_run: bool,
    run_first: Callable[[list[dict[str, Any]]], None],
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Each instance's upstream fingerprints, and (dry runs ``with_upstream``) the ones waiting for one.

    Upstream instances that are missing, failed or out of date raise an
    :class:`UpstreamError`. With ``with_upstream``, the ones that exist are
    run again first: ``run_first`` gets the ``run_instances`` arguments
    (:func:`rerun_arguments`) and runs them; a dry run only says so, in the
    returned ``{instance: "prep/a (is out of date (...))"}``.
    """
    templates = upstream_templates(flow, given)
    if not templates:
        return {name: {} for name, _ in instances}, {}
    keys = {name: resolve(templates, name, config) for name, config in instances}
    states, problems = _states(keys, Upstreams(runs_dir, hasher.root, hasher))
    waiting: dict[str, str] = {}
    if problems and with_upstream and all(state.record is not None for _, state in problems):
        if dry_run:
            waiting = {name: f"{state.key} ({state.problem})" for name, state in problems}
        else:
            run_first(rerun_arguments([state for _, state in problems], hasher.root))
            states, problems = _states(keys, Upstreams(runs_dir, hasher.root, InputHasher(hasher.root)))
    if problems and not waiting:
        raise upstream_error(problems, with_upstream)
    return {name: {k: states[k].fingerprint or "" for k in ks} for name, ks in keys.items()}, waiting


_Problems = list[tuple[str, UpstreamState]]  # (instance, the state of an upstream instance it cannot read)


def _states(keys: Mapping[str, list[str]], lineage: Upstreams) -> tuple[dict[str, UpstreamState], _Problems]:
    """Each upstream instance's state, and the (instance, state) pairs that cannot be read from."""
    with lineage:
        states = {k: lineage.state(k) for ks in keys.values() for k in ks}
    return states, [(name, states[k]) for name, ks in keys.items() for k in ks if states[k].problem]


def rerun_arguments(states: list[UpstreamState], root: Path) -> list[dict[str, Any]]:
    """``run_instances`` arguments that run ``states``' instances again as their records say they ran.

    Each group of instances of one flow and step, with the same inputs,
    config origin and upstream steps, runs in one call: its flow as recorded,
    each instance's recorded config, its recorded upstream instances.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for state in {s.key: s for s in states}.values():
        record = state.record or {}
        parts = record.get("fingerprint_parts") or {}
        how = {"flow": str(record.get("flow")), "step_name": state.key.split("/")[0],
               "inputs": sorted(parts.get("inputs") or {}), "config_source": record.get("config_source"),
               "upstream": sorted(parts.get("upstream") or {})}  # fmt: skip
        row = {_NAME: state.key.split("/", 1)[1], **dict(record.get("config") or {})}
        groups.setdefault(json.dumps(how, sort_keys=True, default=str), []).append(row)
    runs = []
    for text, table in groups.items():
        how = json.loads(text)
        declared: dict[str, list[str]] = {}
        for key in how["upstream"]:
            step, _, name = key.partition("/")
            declared.setdefault(step, []).append(name)
        flow = Path(how["flow"])
        runs.append({**how, "flow": flow if flow.is_absolute() else root / flow, "table": table,
                     "name_column": _NAME, "upstream": declared or None})  # fmt: skip
    return runs


def upstream_error(problems: list[tuple[str, UpstreamState]], with_upstream: bool) -> UpstreamError:
    """The error for instances whose upstream instances cannot be read from (``(instance, state)`` pairs)."""
    lines = [f"  {state.key} (read by {name}) {state.problem}" for name, state in problems[:20]]
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    missing = any(state.record is None for _, state in problems)
    if with_upstream:
        fix = ("--with-upstream runs again upstream instances that exist; create the missing ones by "
               "running their step first (ductaflow run/sweep of its flow).")  # fmt: skip
    else:
        fix = ("Run the upstream step first, or pass --with-upstream (with_upstream=True) to run again "
               "the upstream instances that exist" + (" (missing ones must be created by their step)."
                                                       if missing else "."))  # fmt: skip
    return UpstreamError(
        f"{len(problems)} upstream instance{'s' * (len(problems) > 1)} cannot be used:\n"
        + "\n".join(lines)
        + more
        + f"\n{fix}",
        upstream=[state.key for _, state in problems],
    )


def _field(name: str, instance: str, flat: Mapping[str, Any], template: str, step: str) -> str:
    if name == "instance":
        return instance
    if name not in flat:
        raise ConfigError(
            f"upstream template {template!r} of step {step!r} names {{{name}}}, which is not a config key of "
            f"instance {instance!r}. Use {{instance}} or a config key.",
            key=name,
        )
    return str(flat[name])


def _normalised(given: Any) -> dict[str, list[str]]:
    if given is None:
        return {}
    if isinstance(given, str):
        given = [given]
    if isinstance(given, Mapping):
        out: dict[str, list[str]] = {}
        for step, names in given.items():
            listed = [names] if isinstance(names, str) else list(names)
            if not listed or not all(isinstance(n, str) and n for n in listed):
                raise ConfigError(f"upstream {step!r} must name instances (a template or a list of them), "
                                  f"got {names!r}.", key=str(step))  # fmt: skip
            out[check_name(str(step), "upstream step name")] = listed
        return out
    out = {}
    for item in given:
        if not isinstance(item, str) or not item.strip("/"):
            raise ConfigError(f"upstream entry {item!r} is not STEP or STEP/INSTANCE.", key=str(item))
        step, _, template = item.partition("/")
        out.setdefault(check_name(step, "upstream step name"), []).append(template or _INSTANCE)
    return out


def _from_code(flow: Flow) -> dict[str, list[str] | None]:
    """Steps the flow's ``output_of`` calls read, with their templates (``None``: not readable)."""
    source = "\n".join(c.source for c in flow.notebook.cells if c.get("cell_type") == "code")
    if "output_of" not in source:
        return {}
    code = "\n".join("" if _MAGIC.match(line) else line for line in source.splitlines())
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return {}
    found: dict[str, list[str] | None] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _names_output_of(node.func) and node.args):
            continue
        step = node.args[0]
        if not (isinstance(step, ast.Constant) and isinstance(step.value, str)):
            continue
        instance = node.args[1] if len(node.args) > 1 else next(
            (k.value for k in node.keywords if k.arg == "instance"), None)  # fmt: skip
        template = _template(instance)
        if template is None or found.get(step.value, []) is None:
            found[step.value] = None
        else:
            found[step.value] = list(dict.fromkeys([*(found.get(step.value) or []), template]))
    return found


def _names_output_of(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id == "output_of") or (
        isinstance(func, ast.Attribute) and func.attr == "output_of")  # fmt: skip


def _template(node: ast.expr | None) -> str | None:
    """``{instance}`` for no argument, the text of a literal, ``{key}`` for ``config["key"]``."""
    if node is None:
        return _INSTANCE
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    keys: list[str] = []
    while isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        keys.insert(0, str(node.slice.value))
        node = node.value
    getter = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
    if getter and node.args and isinstance(node.args[0], ast.Constant):
        keys.insert(0, str(node.args[0].value))
        node = node.func.value
    if isinstance(node, ast.Name) and node.id == "config" and keys:
        return "{" + ".".join(keys) + "}"
    return None
