"""``export_mlflow``: each instance of a runs folder as a run in MLflow, exported again without duplicates.

One instance is one MLflow run, found again by its tags (step, instance and
fingerprint): exporting again logs nothing for an instance whose export is
unchanged (the tag ``ductaflow.export_digest`` says what was exported; a
run stays RUNNING until all of it is logged, so an export cut short is
completed the next time); a new attempt of the same fingerprint updates that run: a metric whose
points differ from the ones logged last (its points with the newest timestamp) is logged again whole,
newer than any point the run holds, so that MLflow's latest point of each step is the attempt's; a new
fingerprint (the config or the code changed) is a new run, since MLflow never changes a
param, and the instance's earlier runs get ``ductaflow.latest=false``. What
a run holds is :mod:`ductaflow.mlflowrun`'s. Only ``MlflowClient`` is used:
no active run, no global tracking URI, no environment variable is set.
MLflow is imported when called (``pip install 'ductaflow[mlflow]'``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .exceptions import ConfigError, DuctaflowError
from .mlflowrun import DIGEST_TAG as DIGEST
from .mlflowrun import FINGERPRINT_TAG as FINGERPRINT
from .mlflowrun import INCLUDED_TAG as INCLUDED
from .mlflowrun import INSTANCE_TAG as INSTANCE
from .mlflowrun import LATEST_TAG as LATEST
from .mlflowrun import MLFLOW_STATUS, RunContent, run_content
from .mlflowrun import STEP_TAG as STEP
from .rundir import current_status
from .runfolders import find_instances
from .runrecord import read_record

MISSING_MLFLOW = "exporting to MLflow needs the MLflow client: pip install 'ductaflow[mlflow]'"
DEFAULT_EXPERIMENT = "{project}/{step}"
ARTIFACTS_FOLDER = "mlartifacts"  # beside a SQLite store's database, as `mlflow server` keeps them
_DATABASES = ("postgresql", "mysql", "mssql")  # stores whose default artifact root is ./mlruns of the cwd
_BATCH_METRICS, _BATCH_PARAMS_TAGS = 1000, 100  # MLflow's log_batch limits


@dataclasses.dataclass
class MlflowExport:
    """What :func:`export_mlflow` did; ``str()`` is its one-line summary.

    Instances are named ``step/instance``: ``new`` got a run, ``updated``
    had one that changed, ``unchanged`` had one that was up to date;
    ``skipped`` and ``failed`` map an instance to why (running, MLflow's
    refusal). ``runs`` maps each exported instance to its MLflow run id,
    ``experiments`` each experiment name to its id; ``superseded`` counts
    earlier runs newly tagged ``ductaflow.latest=false``; ``unmatched`` lists the
    ``include`` globs that matched no file in any exported instance.
    """

    tracking_uri: str
    experiments: dict[str, str] = dataclasses.field(default_factory=dict)
    runs: dict[str, str] = dataclasses.field(default_factory=dict)
    new: list[str] = dataclasses.field(default_factory=list)
    updated: list[str] = dataclasses.field(default_factory=list)
    unchanged: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    superseded: int = 0
    unmatched: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        where = f"experiment{'s' if len(self.experiments) > 1 else ''} {', '.join(self.experiments) or '-'}"
        line = (f"exported {len(self.new)} new, {len(self.updated)} updated, {len(self.unchanged)} unchanged "
                f"to {self.tracking_uri} ({where})")  # fmt: skip
        extra = [f"{self.superseded} earlier run(s) now {LATEST}=false"] if self.superseded else []
        extra += [f"skipped {len(self.skipped)}"] if self.skipped else []
        extra += [f"{len(self.failed)} failed"] if self.failed else []
        extra += [f"include {pattern!r} matched no file" for pattern in self.unmatched]
        return "; ".join([line, *extra])


@dataclasses.dataclass
class _Known:
    """A ductaflow run already in the experiment: what a new export compares with."""

    run_id: str
    status: str  # RUNNING while an export writes it: one cut short is completed the next time
    tags: dict[str, str]
    params: dict[str, str]

    @property
    def key(self) -> tuple[str, str, str]:
        """Step, instance and fingerprint: :attr:`RunContent.key` of the instance it was exported from."""
        return (self.tags.get(STEP, ""), self.tags.get(INSTANCE, ""), self.tags.get(FINGERPRINT, ""))


def export_mlflow(
    path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] = "runs",
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    artifact_location: str | None = None,
    include: Sequence[str] = (),
) -> MlflowExport:
    """Log each concluded instance under ``path`` as an MLflow run; return what was done.

    ``path``: a runs folder, a step folder, an instance directory, or a list
    of them. ``tracking_uri``: MLflow's own default when not given (the
    ``MLFLOW_TRACKING_URI`` environment variable, else ``sqlite:///mlflow.db``
    in the current directory). ``experiment``: the experiment's name, where
    ``{step}`` and ``{project}`` (the project folder's name) are filled in;
    default ``{project}/{step}``, one experiment per step (runs are found again
    within it: machines exporting to one server should name the same one);
    it is created when missing, with its artifacts in ``artifact_location``, by default in
    ``mlartifacts/<experiment>`` beside a SQLite store's database (a server
    chooses its own; a PostgreSQL/MySQL store needs ``artifact_location``).

    A run is named ``step/instance`` and holds the flattened config as params,
    the recorded metrics (a series as the metric's history, its position as
    the step), tags (``ductaflow.step``, ``ductaflow.instance``,
    ``ductaflow.fingerprint``, ``ductaflow.status``, the git commit...),
    its status (success FINISHED, failed FAILED, interrupted or crashed
    KILLED), start and end times, and as artifacts ``run.json``,
    ``config.json``, ``metrics.json``, ``environment.json``, the notebook,
    the HTML page and ``log.txt``, and the instance's files matching the
    globs in ``include`` (``["*.png"]``; a folder matched is every file
    under it). A running instance is skipped. A metric's points differing from the ones
    logged last are logged again, newer; a series that got shorter keeps the
    points of the longer one past its end (MLflow deletes no point): its tag
    ``ductaflow.series.<metric>.length`` says where the attempt's series ends.
    """
    mlflow = _mlflow()
    for pattern in include:
        if not pattern or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise ConfigError(f"include {pattern!r}: give a glob relative to each instance directory and "
                              "inside it, e.g. '*.png' or 'out/**'.", key="include")  # fmt: skip
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    instances = find_instances(paths)
    if not instances:
        shown = ", ".join(map(str, paths)) or "(no path)"
        raise ConfigError(f"no instances found under {shown}: nothing to export. Give a runs folder, a step "
                          "folder (runs/<step>) or an instance directory holding a run.json.",
                          path=shown)  # fmt: skip
    client, uri, errors = _client(mlflow, tracking_uri)
    summary = MlflowExport(tracking_uri=uri)
    groups: dict[str, list[RunContent]] = {}
    for run_dir in instances:
        record = read_record(run_dir)
        status = current_status(record, run_dir)
        if record is None or status not in MLFLOW_STATUS:
            why = "run.json is missing or unreadable" if record is None else f"it is {status}"
            summary.skipped[f"{run_dir.parent.name}/{run_dir.name}"] = why
            continue
        content = run_content(run_dir, record, status, include)  # type: ignore[arg-type]
        groups.setdefault(_experiment_name(experiment, run_dir, record, content.step), []).append(content)
    every = [content for contents in groups.values() for content in contents]
    summary.unmatched = [p for p in dict.fromkeys(include) if every and all(p in c.unmatched for c in every)]
    for name, contents in groups.items():
        summary.experiments[name] = experiment_id = _experiment(client, uri, name, artifact_location, errors)
        _Exporter(client, experiment_id, summary, errors).export(contents)
    return summary


def _experiment_name(template: str | None, run_dir: Path, record: dict[str, Any], step: str) -> str:
    """``template`` (default ``{project}/{step}``) for one instance: its step and project folder's name."""
    project = Path(record.get("project_root") or run_dir.parent.parent.parent).name
    return (template or DEFAULT_EXPERIMENT).replace("{project}", project).replace("{step}", step)


def _mlflow() -> Any:
    """The ``mlflow`` package, or a :class:`DuctaflowError` saying how to install it."""
    try:
        import mlflow
        import mlflow.tracking
    except ImportError as exc:
        raise DuctaflowError(MISSING_MLFLOW) from exc
    return mlflow


def _client(mlflow: Any, tracking_uri: str | None) -> tuple[Any, str, tuple[type[BaseException], ...]]:
    """MLflow's client for ``tracking_uri`` (MLflow's default when ``None``), the URI, MLflow's errors."""
    uri = tracking_uri or mlflow.get_tracking_uri()  # reads MLFLOW_TRACKING_URI; sets nothing
    try:
        client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    except Exception as exc:
        raise _store_error(uri, exc) from exc
    return client, uri, (mlflow.exceptions.MlflowException, OSError)


def _store_error(uri: str, exc: BaseException) -> ConfigError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
    missing = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
    hint = ("Give --tracking-uri (tracking_uri=): a database like sqlite:///mlflow.db, or a server like "
            "http://host:5000")  # fmt: skip
    if missing:
        hint = MISSING_MLFLOW if missing in ("sqlalchemy", "alembic") else f"It needs: pip install {missing}"
    return ConfigError(f"MLflow cannot use the tracking URI {uri!r}: {reason}. {hint}", key="tracking_uri")


def _experiment(client: Any, uri: str, name: str, location: str | None, errors: tuple) -> str:
    """The id of the experiment ``name``, created (with its artifact location) when missing."""
    try:
        found = client.get_experiment_by_name(name)
    except Exception as exc:  # the first call that opens the store
        raise _store_error(uri, exc) from exc
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise ConfigError(f"MLflow experiment {name!r} is deleted: restore it (mlflow experiments "
                              "restore) or give another --experiment.", key="experiment")  # fmt: skip
        return str(found.experiment_id)
    location = location or _artifact_root(uri, name)
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except errors as exc:
        raise ConfigError(f"MLflow refused to create the experiment {name!r} in {uri}: {exc}",
                          key="experiment") from exc  # fmt: skip


def _artifact_root(uri: str, name: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite database, else where the store says."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in _DATABASES:
        raise ConfigError(f"a new experiment in the database {uri} needs an artifact location (else MLflow "
                          "writes artifacts to ./mlruns in the current directory): give --artifact-location "
                          "(artifact_location=), e.g. s3://bucket/mlflow.",
                          key="artifact_location")  # fmt: skip
    database = uri[len("sqlite:///") :].split("?", 1)[0] if scheme == "sqlite" else ""
    if database in ("", ":memory:"):
        return None
    parts = [re.sub(r"[^\w.-]", "_", part).strip(".") or "_" for part in name.split("/") if part]
    return Path(database).absolute().parent.joinpath(ARTIFACTS_FOLDER, *parts).as_uri()


class _Exporter:
    """Exports instances into one experiment, comparing with the ductaflow runs already there."""

    def __init__(self, client: Any, experiment_id: str, summary: MlflowExport, errors: tuple) -> None:
        self.client, self.experiment_id, self.summary, self.errors = client, experiment_id, summary, errors
        self.known: dict[tuple[str, str, str], _Known] = {}
        self.siblings: dict[tuple[str, str], list[_Known]] = {}  # every run of one step/instance
        for known in self._search():
            self._remember(known)

    def export(self, contents: list[RunContent]) -> None:
        """Export each of ``contents`` into the summary's lists: new, updated, unchanged or failed."""
        for content in contents:
            try:
                run_id, outcome = self._export(content, self.known.get(content.key))
                self._mark_latest(content, run_id)
            except self.errors as exc:
                self.summary.failed[content.name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
                continue
            getattr(self.summary, outcome).append(content.name)
            self.summary.runs[content.name] = run_id

    def _export(self, content: RunContent, known: _Known | None) -> tuple[str, str]:
        """Create, update or leave the instance's run; the run is RUNNING until all of it is logged."""
        tags = {**content.tags, LATEST: "true", DIGEST: content.digest}
        tags |= {INCLUDED: content.included} if content.included else {}
        if known is None:
            run = self.client.create_run(self.experiment_id, start_time=content.start_ms, tags=tags,
                                         run_name=content.name)  # fmt: skip
            known = _Known(run.info.run_id, "RUNNING", {}, {})
            self._remember(known)
            points = [(k, v, content.timestamp, step) for k, values in content.metrics.items()
                      for step, v in values]  # fmt: skip
            self._log(known, content, content.params, points, {}, tags)
            return known.run_id, "new"
        if known.status == content.status and known.tags.get(DIGEST) == content.digest and (
                content.included in (None, known.tags.get(INCLUDED))):  # fmt: skip
            return known.run_id, "unchanged" if known.tags.get(LATEST) == "true" else "updated"
        self.client.update_run(known.run_id, status="RUNNING")
        known.status = "RUNNING"
        for stale in [k for k in known.tags if k not in content.tags and _exported_tag(k)]:  # a gone error
            self.client.delete_tag(known.run_id, stale)
            del known.tags[stale]
        params = {k: v for k, v in content.params.items() if k not in known.params}  # never changed in MLflow
        stamp = content.timestamp
        points = [p for k, values in content.metrics.items() for p in self._changed(known, k, values, stamp)]
        self._log(known, content, params, points, tags, tags)
        return known.run_id, "updated"

    def _log(self, known: _Known, content: RunContent, params: dict, points: list, tags: dict,
             logged: dict) -> None:  # fmt: skip
        """Log ``params``, ``points`` (key, value, timestamp, step), ``tags`` and the artifacts, then end the
        run with its status."""
        from mlflow.entities import Metric, Param, RunTag

        metrics = [Metric(*point) for point in points]
        entities = [RunTag(k, v) for k, v in tags.items()]
        for batch in _batches(metrics, [Param(k, v) for k, v in params.items()], entities):
            self.client.log_batch(known.run_id, *batch)
        with tempfile.TemporaryDirectory(prefix="ductaflow-mlflow-") as staging:  # one upload per run
            for artifact in content.artifacts:
                _stage(artifact, Path(staging, artifact.relative_to(content.run_dir)))
            self.client.log_artifacts(known.run_id, staging)
        self.client.set_terminated(known.run_id, content.status, content.end_ms)
        known.status = content.status
        known.tags.update(logged)
        known.params.update(params)

    def _changed(self, known: _Known, key: str, values: list[tuple[int, float]],
                 timestamp: int) -> list[tuple[str, float, int, int]]:  # fmt: skip
        """The points of ``key`` to log: none when the ones logged last (the newest) are ``values``, else
        all of ``values``, newer than every point the run holds, so they are each step's latest."""
        held = self.client.get_metric_history(known.run_id, key)
        newest = max((m.timestamp for m in held), default=None)
        if newest is not None and sorted((m.step, m.value) for m in held if m.timestamp == newest) == values:
            return []
        stamp = timestamp if newest is None else max(timestamp, newest + 1)
        return [(key, value, stamp, step) for step, value in values]

    def _mark_latest(self, content: RunContent, run_id: str) -> None:
        """The instance's run for this export is its latest; its other runs in the experiment are not."""
        for sibling in self.siblings.get(content.key[:2], []):
            if sibling.run_id == run_id and sibling.tags.get(LATEST) != "true":
                self.client.set_tag(run_id, LATEST, "true")
                sibling.tags[LATEST] = "true"
            elif sibling.run_id != run_id and sibling.tags.get(LATEST) != "false":
                self.client.set_tag(sibling.run_id, LATEST, "false")
                sibling.tags[LATEST] = "false"
                self.summary.superseded += 1

    def _remember(self, known: _Known) -> None:
        self.known.setdefault(known.key, known)
        self.siblings.setdefault(known.key[:2], []).append(known)

    def _search(self) -> Iterator[_Known]:
        """The experiment's runs exported by ductaflow (deleted runs are left alone)."""
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.`{FINGERPRINT}` != ''",
                                           max_results=10000, page_token=token)  # fmt: skip
            for run in page:
                data = run.data
                yield _Known(run.info.run_id, run.info.status, dict(data.tags), dict(data.params))
            token = page.token
            if not token:
                return


def _stage(source: Path, target: Path) -> None:
    """``source`` at ``target`` in the staging folder: linked when the filesystem allows, else copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _exported_tag(key: str) -> bool:
    """Whether ``key`` is a tag an export sets from the instance (not the export's own bookkeeping)."""
    return key.startswith(("ductaflow.", "result.", "mlflow.note.")) and key not in (LATEST, DIGEST, INCLUDED)


def _batches(metrics: list, params: list, tags: list) -> Iterator[tuple[list, list, list]]:
    """``(metrics, params, tags)`` in chunks ``MlflowClient.log_batch`` takes."""
    while metrics or params or tags:
        some_params, params = params[:_BATCH_PARAMS_TAGS], params[_BATCH_PARAMS_TAGS:]
        some_tags, tags = tags[:_BATCH_PARAMS_TAGS], tags[_BATCH_PARAMS_TAGS:]
        room = _BATCH_METRICS - len(some_params) - len(some_tags)
        some_metrics, metrics = metrics[:room], metrics[room:]
        yield some_metrics, some_params, some_tags
