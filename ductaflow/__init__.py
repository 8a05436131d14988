"""ductaflow: run notebook-style flows as isolated, recorded instances.

Only the names in ``__all__`` are public. Importing ductaflow is light: the
execution stack (nbclient, jupytext, nbconvert) loads when a flow first runs.
"""

from __future__ import annotations

from . import flowpath  # noqa: F401  first: a script's folder goes behind the standard library
from .config import load_config
from .exceptions import (
    BundleError,
    ConfigError,
    DiskFullError,
    DuctaflowError,
    FlowError,
    FlowExecutionError,
    InstanceBusyError,
    InstancesFailedError,
    KernelNotFoundError,
    MetricError,
    RunDirectoryError,
    SchedulerError,
    UnsafeNameError,
    UpstreamError,
)
from .inflow import display_config_summary, is_notebook_execution, seed
from .metrics import record, recorded
from .project import output_of, project_path, project_root
from .script import load_cli_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .bundle import pack_runs
    from .caching import clean_cache, push_runs
    from .clean import clean_runs
    from .conductor import run_instances
    from .configkeys import config_keys
    from .debug import debug_notebook
    from .diff import RunDiff, diff_runs
    from .executors import dask_client
    from .freshness import InstanceCheck, check_instance, check_instances
    from .instance import RunResult, run_notebook, run_step_flow
    from .mlflowexport import export_mlflow
    from .report import build_report
    from .results import aggregate_replicates, collect, refresh_index
    from .runrecord import RunStatus
    from .scaffold import new_project
    from .serve import serve_runs
    from .spaces import log_uniform, uniform
    from .sweeps import sweep
    from .table import read_table
    from .unbundle import unpack_runs

__version__ = "0.1.0"

_LAZY = {
    "RunResult": "instance",
    "run_notebook": "instance",
    "run_step_flow": "instance",
    "run_instances": "conductor",
    "config_keys": "configkeys",
    "sweep": "sweeps",
    "dask_client": "executors",
    "RunStatus": "runrecord",
    "refresh_index": "results",
    "serve_runs": "serve",
    "read_table": "table",
    "InstanceCheck": "freshness",
    "check_instance": "freshness",
    "check_instances": "freshness",
    "debug_notebook": "debug",
    "RunDiff": "diff",
    "diff_runs": "diff",
    "clean_runs": "clean",
    "new_project": "scaffold",
    "collect": "results",
    "aggregate_replicates": "results",
    "uniform": "spaces",
    "log_uniform": "spaces",
    "build_report": "report",
    "push_runs": "caching",
    "clean_cache": "caching",
    "export_mlflow": "mlflowexport",
    "pack_runs": "bundle",
    "unpack_runs": "unbundle",
}


def __getattr__(name: str) -> object:
    """Load the execution API on first use, so flows that import ductaflow start fast."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ductaflow' has no attribute {name!r}")


__all__ = [
    "BundleError",
    "ConfigError",
    "DiskFullError",
    "DuctaflowError",
    "FlowError",
    "FlowExecutionError",
    "InstanceBusyError",
    "InstanceCheck",
    "InstancesFailedError",
    "KernelNotFoundError",
    "MetricError",
    "RunDiff",
    "RunDirectoryError",
    "RunResult",
    "RunStatus",
    "SchedulerError",
    "UnsafeNameError",
    "UpstreamError",
    "__version__",
    "aggregate_replicates",
    "build_report",
    "check_instance",
    "check_instances",
    "clean_cache",
    "clean_runs",
    "collect",
    "config_keys",
    "dask_client",
    "debug_notebook",
    "diff_runs",
    "display_config_summary",
    "export_mlflow",
    "is_notebook_execution",
    "load_cli_config",
    "load_config",
    "log_uniform",
    "new_project",
    "output_of",
    "pack_runs",
    "project_path",
    "project_root",
    "push_runs",
    "read_table",
    "record",
    "recorded",
    "refresh_index",
    "run_instances",
    "run_notebook",
    "run_step_flow",
    "seed",
    "serve_runs",
    "sweep",
    "uniform",
    "unpack_runs",
]
