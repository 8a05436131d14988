"""One instance end to end: check the input, prepare its directory, execute the flow, conclude.

:func:`run_step_flow` and :func:`run_notebook` run one instance in this
process; a conductor's tasks run theirs through :func:`prepare_attempt`,
which checks everything a user can get wrong before the first byte is
written and returns the :class:`~ductaflow.attempt.Attempt` that does the rest.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import rundir
from .attempt import UNKNOWN, Attempt, RunResult
from .config import config_hash, normalise_config
from .engines import get_engine
from .files import shown_path
from .fingerprint import Fingerprint
from .flow import Flow, read_flow
from .names import check_name
from .options import RunOptions, make_options
from .parameters import check_config
from .projectcode import flow_code

__all__ = ["RunResult", "prepare_attempt", "run_notebook", "run_step_flow"]


def run_step_flow(
    notebook_file: str | os.PathLike[str],
    step_name: str,
    instance_name: str,
    config: Mapping[str, Any] | None = None,
    *,
    project_root: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
    export_html: bool = True,
    log_output: bool = False,
    runs_dir: str | os.PathLike[str] | None = None,
    config_source: Mapping[str, Any] | None = None,
    engine: str | None = None,
    preload: Sequence[str] | None = None,
    instance_timeout: float | None = None,
    max_memory: int | str | None = None,
    check_config: bool = True,
) -> RunResult:
    """Execute a flow with ``config`` into ``runs/<step_name>/<instance_name>/``.

    ``runs/`` lives under ``project_root`` (default: the current directory);
    ``runs_dir`` puts the step folders elsewhere (relative paths are taken
    from ``project_root``). ``config_source`` says where the config came from
    (``{"config_file": "config/x.json", "overrides": ["n=3"]}``, paths relative
    to the project root); it is recorded so :func:`check_instance` can tell
    when that file changed.
    The flow runs in a new kernel whose working directory is the instance
    directory; ``kernel_name`` picks an installed kernel instead of the Python
    ductaflow runs in; ``timeout`` limits each cell (seconds);
    ``export_html=False`` skips the HTML report; ``log_output=True`` also
    echoes the flow's output to this process's stdout/stderr. ``engine``
    names how the notebook executes (``"kernel"``, the default) and
    ``preload`` the modules an engine may import once for many notebooks
    (dotted names, such as ``["pandas", "matplotlib.pyplot"]``); either one
    left ``None`` comes from the project's ``ductaflow.toml`` when it sets it.
    ``instance_timeout`` limits the whole execution (seconds) and
    ``max_memory`` what the flow's process may allocate (``"2GB"``, or
    bytes): an instance stopped by either fails with an error naming the
    limit (``InstanceTimeoutError``, ``MemoryLimitError``).
    ``check_config=False`` runs a config with keys the flow's parameters
    cell does not declare, or values of other types than its defaults.

    Returns a :class:`RunResult`. Raises :class:`FlowExecutionError` when the
    flow fails (after saving the notebook, HTML and record), and ductaflow
    errors for bad input before anything is written.

    >>> config = load_config("config/make_data.json", ["n_days=60"])
    >>> result = run_step_flow("flow/make_data.py", "make_data", "short", config)
    >>> result.status, result.run_dir.relative_to(Path.cwd()).as_posix()
    (<RunStatus.SUCCESS: 'success'>, 'runs/make_data/short')
    """
    options = make_options(project_root, kernel_name, timeout, export_html, log_output, runs_dir,
                           config_source, engine, preload, instance_timeout=instance_timeout,
                           max_memory=max_memory, check_config=check_config)  # fmt: skip
    check_name(step_name, "step name")
    check_name(instance_name, "instance name")
    run_dir = options.runs_dir / step_name / instance_name
    return _run(notebook_file, config, run_dir, step_name, instance_name, options)


def run_notebook(
    notebook_file: str | os.PathLike[str],
    config: Mapping[str, Any] | None = None,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    project_root: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
    export_html: bool = True,
    log_output: bool = False,
    runs_dir: str | os.PathLike[str] | None = None,
    config_source: Mapping[str, Any] | None = None,
    engine: str | None = None,
    preload: Sequence[str] | None = None,
    instance_timeout: float | None = None,
    max_memory: int | str | None = None,
    check_config: bool = True,
) -> RunResult:
    """Execute a flow with ``config`` into ``output_dir``.

    Without ``output_dir`` the run goes to ``runs/<flow stem>/<instance>/``
    under ``project_root``, where the instance is ``config["instance_name"]``
    when present, else a 12-character hash of the config (the same config
    always lands in the same directory). Options as in :func:`run_step_flow`.

    >>> config = load_config("config/make_data.json", ["n_days=60"])
    >>> run_notebook("flow/make_data.py", config, output_dir="runs/make_data/try1").status
    <RunStatus.SUCCESS: 'success'>
    """
    options = make_options(project_root, kernel_name, timeout, export_html, log_output, runs_dir,
                           config_source, engine, preload, instance_timeout=instance_timeout,
                           max_memory=max_memory, check_config=check_config)  # fmt: skip
    if output_dir is not None:
        run_dir = Path(output_dir).absolute()
        check_name(run_dir.name, "output directory name")
        return _run(notebook_file, config, run_dir, run_dir.parent.name, run_dir.name, options)
    normalised = normalise_config(config)
    instance = normalised.get("instance_name") or config_hash(normalised)[:12]
    check_name(instance, "instance name (config['instance_name'])")
    step = check_name(Path(notebook_file).stem, "step name (the flow's file name)")
    run_dir = options.runs_dir / step / instance
    return _run(notebook_file, normalised, run_dir, step, instance, options)


def _run(
    notebook_file: Any,
    config: Mapping[str, Any] | None,
    run_dir: Path,
    step: str,
    instance: str,
    options: RunOptions,
) -> RunResult:
    attempt = prepare_attempt(notebook_file, config, run_dir, step, instance, options)
    with rundir.lock_instance(run_dir):
        return attempt.run()


def prepare_attempt(
    notebook_file: Any,
    config: Mapping[str, Any] | None,
    run_dir: Path,
    step: str,
    instance: str,
    options: RunOptions,
    *,
    flow: Flow | None = None,
    fingerprint: Fingerprint | None = None,
    stop: threading.Event | None = None,
    git: Any = UNKNOWN,
    sweep_id: str | None = None,
) -> Attempt:
    """Check everything a user can get wrong and return the attempt, writing nothing.

    ``flow`` and ``fingerprint`` may be given when already computed (a
    conductor reads the flow once for all its instances), and so may ``git``,
    the project's git state. ``stop`` interrupts the attempt when set.
    ``sweep_id``, recorded as is, names the conductor call that started it.
    """
    normalised = normalise_config(config)
    if flow is None:
        flow = read_flow(notebook_file)
        get_engine(options.engine).check(options.kernel_name)
    check_config(flow.parameters, normalised, shown_path(flow.path, options.project_root),
                 strict=options.check_config)  # fmt: skip
    rundir.check_run_dir(run_dir)
    if fingerprint is None:
        code = flow_code(flow.notebook, flow.path, options.project_root)
        fingerprint = Fingerprint(flow.sha256, config_hash(normalised), {}, options.kernel_label, code)
    attempt = Attempt(flow, normalised, run_dir, step, instance, options, fingerprint, stop)
    attempt.git = git
    attempt.sweep_id = sweep_id
    return attempt
