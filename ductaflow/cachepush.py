"""Fill a cache from successes already made: ``ductaflow cache push`` and :func:`push_runs`.

A conductor call given a cache pushes each success it runs. The successes
made before (a study run on the cluster before the team set a cache up) are
pushed by :func:`push_runs`: each under the fingerprint its record holds,
which is what a later lookup for the same flow, config and inputs asks for.
An instance the cache already holds, one whose attempt is running, and one
that did not succeed are left alone and counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .cache import cache_url, open_cache, push_instance
from .exceptions import CacheEntryError, ConfigError, InstanceBusyError
from .project import find_project_root
from .rundir import find_instances, lock_instance
from .runrecord import RunStatus, read_record
from .settings import project_settings


def push_runs(
    paths: Iterable[str | os.PathLike[str]] = ("runs",),
    cache: str | os.PathLike[str] | None = None,
) -> dict[str, list[str]]:
    """Push every success under ``paths`` (runs folders, step folders, instance folders) to ``cache``.

    ``cache`` defaults to ``cache`` in the project's ``ductaflow.toml``;
    without either, :class:`ConfigError`. Returns the instances (``step/instance``)
    by outcome: ``pushed``, ``present`` (the cache holds that fingerprint
    already), ``busy`` (an attempt is running), ``not success`` and ``failed``
    (the push failed; said on stderr).
    """
    folders = find_instances(paths)
    url = cache_url(cache, Path.cwd()) if cache is not None else _project_cache(folders)
    store = open_cache(url)
    outcome: dict[str, list[str]] = {"pushed": [], "present": [], "busy": [], "not success": [], "failed": []}
    for run_dir in folders:
        name = f"{run_dir.parent.name}/{run_dir.name}"
        try:
            with lock_instance(run_dir):
                outcome[_push_one(store, run_dir)].append(name)
        except InstanceBusyError:
            outcome["busy"].append(name)
    return outcome


def _push_one(store: Any, run_dir: Path) -> str:
    record = read_record(run_dir)
    if record is None or record.get("status") != RunStatus.SUCCESS or not record.get("fingerprint"):
        return "not success"
    try:
        if store.lookup(str(record["fingerprint"])) is not None:
            return "present"
    except CacheEntryError:  # a spoiled entry: this success replaces it
        pass
    return "pushed" if push_instance(store.url, run_dir) is not None else "failed"


def _project_cache(folders: list[Path]) -> str:
    """The cache ``ductaflow.toml`` names for the project holding the first of ``folders``."""
    start = folders[0] if folders else Path.cwd()
    settings = project_settings(find_project_root(start))
    if settings.cache is None or settings.path is None:
        raise ConfigError("no cache given: pass --cache URL (a folder or an fsspec URL such as "
                          "s3://bucket/cache), or set cache = \"...\" in the project's ductaflow.toml.",
                          key="cache")  # fmt: skip
    url = cache_url(settings.cache, settings.path.parent, "cache in ductaflow.toml")
    assert url is not None
    return url
