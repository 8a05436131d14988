"""What one instance becomes in MLflow: params, metrics, tags and artifacts, kept within MLflow's limits.

Plain values only (no MLflow import): :mod:`ductaflow.mlflowexport` logs
them. The config's leaves are params (dotted keys, lists as JSON, values cut
at 6,000 characters); recorded numbers are metrics at step 0 and recorded
series (lists of numbers) are a metric's history with the position as its
step, its length in the tag ``ductaflow.series.<metric>.length``; recorded
text is a tag ``result.<name>``. A key MLflow refuses (a
character it does not take, longer than 250 characters) is renamed and the
renaming is kept in the tag ``ductaflow.renamed``; the cut params are listed
in ``ductaflow.cut``. The whole config is in the ``config.json`` artifact.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import config_hash, flatten
from .files import file_sha256, read_json
from .metrics import METRICS_NAME, read_metrics
from .rundir import CONFIG_NAME
from .runrecord import RECORD_NAME, RunStatus, error_line

KEY_LIMIT, PARAM_LIMIT, TAG_LIMIT = 250, 6000, 8000  # MLflow's limits (mlflow.utils.validation)
#: The run's state in MLflow for each concluded state of an instance; a running one is not exported.
MLFLOW_STATUS = {RunStatus.SUCCESS: "FINISHED", RunStatus.FAILED: "FAILED", RunStatus.INTERRUPTED: "KILLED",
                 RunStatus.CRASHED: "KILLED"}  # fmt: skip
#: Tags that find a run again: the same step, instance and fingerprint are the same MLflow run.
STEP_TAG, INSTANCE_TAG, FINGERPRINT_TAG = "ductaflow.step", "ductaflow.instance", "ductaflow.fingerprint"
DIGEST_TAG = "ductaflow.export_digest"  # what was exported (complete once the run is no longer RUNNING)
INCLUDED_TAG = "ductaflow.included_digest"  # the files an export's include globs added, set with it
LATEST_TAG = "ductaflow.latest"  # "true" on the run of the instance's attempt exported last
SERIES_TAG = "ductaflow.series.{}.length"  # points past it: an earlier, longer attempt's
_WHERE_TAGS = ("ductaflow.run_dir", LATEST_TAG)  # say where or when it was exported, not what
_RECORD_TAGS = ("reason", "started_at", "ended_at", "duration_s", "attempt", "seed", "host", "run_dir",
                "flow")  # fmt: skip
_BAD_CHARACTER = re.compile(r"[^/\w.\- :]")
_CUT_NOTE = " …[cut by ductaflow: {n} characters; the whole config is in the config.json artifact]"


@dataclasses.dataclass(frozen=True)
class RunContent:
    """Everything one instance's MLflow run holds; ``digest`` changes when any of it does.

    ``included`` is the digest of the files the ``include`` globs added (``None`` without globs): an
    export without them leaves the files logged before alone; ``unmatched`` the globs matching no file here.
    """

    run_dir: Path
    step: str
    instance: str
    fingerprint: str
    status: str  # MLflow's: FINISHED, FAILED or KILLED
    start_ms: int | None
    end_ms: int | None
    timestamp: int  # of every metric point: when the attempt ended
    params: dict[str, str]
    metrics: dict[str, list[tuple[int, float]]]  # key -> [(step, value)]
    tags: dict[str, str]
    artifacts: tuple[Path, ...]  # files of the instance directory, at their place relative to it
    digest: str
    included: str | None
    unmatched: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``step/instance``: the run's name in MLflow."""
        return f"{self.step}/{self.instance}"

    @property
    def key(self) -> tuple[str, str, str]:
        """What finds the run again: step, instance and fingerprint."""
        return (self.step, self.instance, self.fingerprint)


def run_content(run_dir: Path, record: Mapping[str, Any], status: RunStatus,
                include: Sequence[str] = ()) -> RunContent:  # fmt: skip
    """What the concluded instance in ``run_dir`` (its ``record``, its current ``status``) logs to MLflow.

    ``include``: globs of more files of the instance directory to log as artifacts (``*.png``, ``out/**``).
    """
    folder = os.fspath(run_dir)
    config = record.get("config")
    if not isinstance(config, dict):  # script-mode records keep the config in config.json only
        config, _ = read_json(os.path.join(folder, CONFIG_NAME))
        config = config if isinstance(config, dict) else {}
    step = str(record.get("step") or run_dir.parent.name)
    instance = str(record.get("instance") or run_dir.name)
    fingerprint = str(record.get("fingerprint") or f"config-{config_hash(config)}")
    names = _Keys()
    params, cut = {}, []
    for dotted, value in flatten(config):
        text = _text(value)
        if len(text) > PARAM_LIMIT:
            cut.append(dotted)
            note = _CUT_NOTE.format(n=len(text))
            text = text[: PARAM_LIMIT - len(note)] + note
        params[names.key(dotted, "param")] = text
    metrics, results = _metrics(read_metrics(folder, journal=status is RunStatus.CRASHED), names)
    start, end = _ms(record.get("started_at")), _ms(record.get("ended_at"))
    if end is None:  # a crashed attempt recorded no end: its files' last change is the best guess
        end = max((int(p.stat().st_mtime * 1000) for p in run_dir.iterdir() if p.is_file()), default=start)
    tags = _tags(record, status, step, instance, fingerprint) | results
    if names.renamed:
        tags["ductaflow.renamed"] = json.dumps(names.renamed, ensure_ascii=False)
    if cut:
        tags["ductaflow.cut"] = json.dumps(cut, ensure_ascii=False)
    tags = {k: _cut(v) for k, v in tags.items()}
    standard = _files(run_dir, [run_dir / n for n in _artifact_names(record)])
    matches = {pattern: _files(run_dir, _included_paths(run_dir, pattern)) for pattern in include}
    extra = tuple(dict.fromkeys(p for found in matches.values() for p in found if p not in standard))
    content = {"params": params, "metrics": metrics, "status": MLFLOW_STATUS[status], "start": start,
               "end": end, "tags": {k: v for k, v in tags.items() if k not in _WHERE_TAGS},
               "files": _digests(run_dir, [p for p in standard if p != run_dir / RECORD_NAME])}  # fmt: skip
    return RunContent(run_dir, step, instance, fingerprint, MLFLOW_STATUS[status], start, end,
                      end or start or 0, params, metrics, tags, standard + extra, _digest(content),
                      _digest(_digests(run_dir, extra)) if include else None,
                      tuple(pattern for pattern, found in matches.items() if not found))  # fmt: skip


def _included_paths(run_dir: Path, pattern: str) -> list[Path]:
    """The paths ``pattern`` matches in ``run_dir``, a matched folder as every path under it.

    ``out/**`` matches only folders on Python 3.11 and 3.12, folders and files on later ones: the same
    files either way.
    """
    found = []
    for path in sorted(run_dir.glob(pattern)):
        found.append(path)
        if path.is_dir() and not path.is_symlink():
            found.extend(sorted(path.rglob("*")))
    return found


class _Keys:
    """MLflow keys for ductaflow's names, each used once per run; remembers what it renamed."""

    def __init__(self) -> None:
        self.used: set[tuple[str, str]] = set()
        self.renamed: dict[str, str] = {}

    def key(self, name: str, kind: str) -> str:
        """The key of ``name`` as a ``kind`` (param, metric, tag): valid in MLflow and not used before."""
        key = _BAD_CHARACTER.sub("_", name) or "_"
        if posixpath.normpath(key) != key or key.startswith((".", "/")):  # MLflow refuses path-like names
            key = "_" + key.replace("/", "_")
        if len(key) > KEY_LIMIT or (kind, key) in self.used:
            key = f"{key[: KEY_LIMIT - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
        self.used.add((kind, key))
        if key != name:
            self.renamed[key] = name
        return key


def _metrics(values: Mapping[str, Any], names: _Keys) -> tuple[dict[str, list[tuple[int, float]]], dict]:
    """Recorded values as metric points ``{key: [(step, value)]}``; text and series' lengths as tags."""
    metrics: dict[str, list[tuple[int, float]]] = {}
    results: dict[str, str] = {}
    for name, value in flatten(values):
        points = list(_points(value))
        if points:
            metrics[key := names.key(name, "metric")] = points
            if isinstance(value, list):
                results[names.key(SERIES_TAG.format(key), "tag")] = str(len(value))
        elif value is not None and value != [] and value != {}:  # text, or a list not of numbers
            results[names.key(f"result.{name}", "tag")] = _text(value)
    return metrics, results


def _points(value: Any) -> Iterator[tuple[int, float]]:
    """A number as one point at step 0; a list of numbers as one point per position (nulls are gaps)."""
    if _number(value):
        yield 0, float(value)
    elif isinstance(value, list) and value and all(_number(v) or v is None for v in value):
        yield from ((step, float(v)) for step, v in enumerate(value) if v is not None)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)  # booleans too: 1.0 and 0.0


def _tags(record: Mapping[str, Any], status: RunStatus, step: str, instance: str, fingerprint: str) -> dict:
    git = record.get("git") if isinstance(record.get("git"), dict) else {}
    tags = {STEP_TAG: step, INSTANCE_TAG: instance, FINGERPRINT_TAG: fingerprint, "ductaflow.status": status,
            "ductaflow.error": error_line(record), "mlflow.source.type": "LOCAL",
            "mlflow.source.name": record.get("flow"), "mlflow.user": record.get("user"),
            "mlflow.source.git.commit": git.get("commit"), "mlflow.source.git.branch": git.get("branch"),
            "ductaflow.git_commit": git.get("commit"), "ductaflow.git_branch": git.get("branch"),
            "ductaflow.git_dirty": git.get("dirty")}  # fmt: skip
    for field in _RECORD_TAGS:
        tags[f"ductaflow.{field}"] = record.get(field)
    if status is not RunStatus.SUCCESS:  # the run's description in MLflow's page
        tags["mlflow.note.content"] = f"{status}: {error_line(record) or 'no error recorded'}"
    return {k: json.dumps(v) if isinstance(v, bool) else str(v) for k, v in tags.items() if v is not None}


def _artifact_names(record: Mapping[str, Any]) -> list[str]:
    """The instance's record, config, metrics, environment, notebook, HTML page and log."""
    outputs = record.get("outputs") if isinstance(record.get("outputs"), dict) else {}
    environment = record.get("environment") if isinstance(record.get("environment"), dict) else {}
    names = [RECORD_NAME, CONFIG_NAME, METRICS_NAME, environment.get("file"),
             *(outputs.get(k) for k in ("notebook", "html", "log"))]  # fmt: skip
    return list(dict.fromkeys(n for n in names if isinstance(n, str) and Path(n).name == n))


def _files(run_dir: Path, paths: list[Path]) -> tuple[Path, ...]:
    """The files among ``paths`` that are there, are no link and lie inside ``run_dir``."""
    inside = run_dir.resolve()
    return tuple(dict.fromkeys(p for p in paths if p.is_file() and not p.is_symlink()
                               and p.resolve().is_relative_to(inside)))  # fmt: skip


def _digests(run_dir: Path, paths: Iterable[Path]) -> dict[str, str]:
    return {p.relative_to(run_dir).as_posix(): file_sha256(p) for p in paths}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _text(value: Any) -> str:
    """A param's or tag's text: text as it is, lists and mappings as JSON, anything else as ``str()``."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False) if isinstance(
        value, list | dict) else str(value)  # fmt: skip


def _cut(value: str) -> str:
    return value if len(value) <= TAG_LIMIT else value[: TAG_LIMIT - 20] + " …[cut by ductaflow]"


def _ms(iso: Any) -> int | None:
    """Milliseconds since the epoch of an ISO-8601 time (``None`` when absent or not a time)."""
    try:
        return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)
    except (TypeError, ValueError):
        return None
