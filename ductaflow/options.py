"""The options every instance of one call shares, checked once before anything is written.

:func:`make_options` gathers them from the call's arguments and the project's
settings (``ductaflow.toml``, :mod:`ductaflow.settings`, read here once per
call): an argument given wins over the file, and the file over the defaults.
The :class:`RunOptions` it returns travel with every instance, to worker
processes and cluster workers too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import rundir
from .config import normalise_config
from .engines import DEFAULT_ENGINE, get_engine
from .engines.limits import check_max_memory, parse_bytes
from .exceptions import ConfigError, RunDirectoryError
from .files import shown_path
from .project import find_project_root
from .settings import Settings, cache_url, module_names, project_settings


@dataclass(frozen=True)
class RunOptions:
    """The options every instance of one call shares (checked by :func:`make_options`)."""

    kernel_name: str | None
    timeout: float | None
    export_html: bool
    log_output: bool
    project_root: Path
    runs_dir: Path
    config_source: dict[str, Any] | None = None
    engine: str = DEFAULT_ENGINE
    preload: tuple[str, ...] = ()  # modules the engine may import once for many notebooks
    instance_timeout: float | None = None  # wall time of one instance's execution, seconds
    max_memory: int | None = None  # bytes the flow's process may allocate
    check_config: bool = True  # unknown config keys and wrong types are refused (False: let through)
    rerun_on_env_change: bool = False  # a success recorded in another environment runs again
    cache: str | None = None  # where successes are shared by fingerprint (a folder or fsspec URL)

    @property
    def kernel_label(self) -> str:
        """What executes the flows, as records and fingerprints name it (``ductaflow-python``)."""
        return get_engine(self.engine).label(self.kernel_name)


def make_options(
    project_root: Any,
    kernel_name: str | None = None,
    timeout: float | None = None,
    export_html: bool = True,
    log_output: bool = False,
    runs_dir: str | os.PathLike[str] | None = None,
    config_source: Mapping[str, Any] | None = None,
    engine: str | None = None,
    preload: Sequence[str] | None = None,
    default_engine: str = DEFAULT_ENGINE,
    instance_timeout: float | None = None,
    max_memory: int | str | None = None,
    check_config: bool = True,
    rerun_on_env_change: bool = False,
    cache: Any = None,
) -> RunOptions:
    """Check and gather the options every instance of a call shares.

    ``engine`` and ``preload`` left ``None`` come from the project's
    ``ductaflow.toml`` (found from ``project_root`` upwards), else default to
    ``default_engine`` and no modules. A ``kernel_name`` without an engine
    chosen anywhere selects the kernel engine: only it runs named kernels.
    ``check_config=False`` lets configs through with keys the flow's
    parameters cell does not declare, or values of other types.
    ``rerun_on_env_change=True`` runs again an instance whose last success
    recorded another environment (packages, Python, machine) than today's.
    ``cache`` is a folder or fsspec URL (:mod:`ductaflow.cache`); ``None``
    takes the settings file's, ``False`` turns it off.
    """
    for name, seconds in (("timeout", timeout), ("instance_timeout", instance_timeout)):
        if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
            raise ValueError(f"{name} must be a positive number of seconds or None, got {seconds!r}")
    memory = memory_limit(max_memory)
    root = Path(project_root if project_root is not None else os.getcwd()).absolute()
    settings = project_settings(find_project_root(root)) if root.is_dir() else Settings()
    if kernel_name is not None:
        default_engine = DEFAULT_ENGINE
    chosen = _engine(engine, settings, default_engine)
    modules = module_names(preload) if preload is not None else settings.preload or ()
    runs = runs_folder(root, runs_dir)
    source = normalise_config(config_source) if config_source is not None else None
    shared = cache_url(cache, Path.cwd()) if cache is not None else settings.cache
    return RunOptions(kernel_name, timeout, bool(export_html), bool(log_output), root, runs, source, chosen,
                      modules, instance_timeout, memory, check_config=bool(check_config),
                      rerun_on_env_change=bool(rerun_on_env_change), cache=shared)  # fmt: skip


def memory_limit(value: int | str | None) -> int | None:
    """Bytes for ``max_memory`` given as bytes (``2147483648``) or text (``"2GB"``, ``"512MB"``, ``"1.5G"``).

    Units are binary (``1GB`` is 2**30 bytes). Raises ``ValueError`` naming
    the accepted forms for anything else, and :class:`ConfigError` where the
    limit cannot be enforced (off Linux).

    >>> memory_limit("2GB"), memory_limit("512 MB"), memory_limit(None)
    (2147483648, 536870912, None)
    """
    if value is None:
        return None
    size = parse_bytes(value)
    check_max_memory(size)
    return size


def runs_folder(root: Path, runs_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder the step folders go in: ``runs_dir`` (default ``runs``) under ``root``, not a file."""
    runs = root / (runs_dir if runs_dir is not None else rundir.RUNS_DIR)
    if runs.exists() and not runs.is_dir():
        raise RunDirectoryError(f"the runs folder {runs} is a file. Pick another runs folder.",
                                run_dir=str(runs))  # fmt: skip
    return runs


def _engine(given: str | None, settings: Settings, default: str) -> str:
    """The engine's name: the one given, else the settings file's, else the default; refused if unknown."""
    if given is not None or settings.engine is None:
        name = default if given is None else given
        get_engine(name)  # an unknown name is refused here, before anything runs
        return name
    try:
        get_engine(settings.engine)
    except ConfigError as exc:
        shown = shown_path(settings.path) if settings.path else "ductaflow.toml"
        raise ConfigError(f"{exc} It is set in {shown} (engine = \"{settings.engine}\"): fix it there, "
                          "or choose another for this run (engine=..., --engine).", key="engine",
                          path=str(settings.path)) from None  # fmt: skip
    return settings.engine
