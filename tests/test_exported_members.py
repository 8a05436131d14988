"""The public API is exactly what the README documents."""

import subprocess
import sys

import ductaflow

DOCUMENTED = {
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
}


def test_all_is_the_documented_api():
    """__all__ lists exactly the documented public names, and each resolves."""
    assert set(ductaflow.__all__) == DOCUMENTED
    for name in ductaflow.__all__:
        assert getattr(ductaflow, name) is not None


def test_documented_names_appear_in_readme():
    """Every public function and class is described in the README."""
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    missing = [n for n in DOCUMENTED if n != "__version__" and n not in readme]
    assert missing == []


def test_import_is_light():
    """Importing ductaflow loads none of the heavy execution or data libraries."""
    heavy = [
        "pandas",
        "numpy",
        "nbconvert",
        "papermill",
        "nbclient",
        "jupytext",
        "nbformat",
        "asyncio",
        "zmq",
    ]
    code = f"import sys, ductaflow; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error():
    """A misspelt name raises AttributeError naming it."""
    try:
        ductaflow.run_notebok  # noqa: B018
    except AttributeError as exc:
        assert "run_notebok" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_public_names_stay_functions_after_every_module_is_imported():
    """No submodule shadows a public name: after importing them all, each name is still the API object."""
    code = (
        "import importlib, pkgutil, types, ductaflow\n"
        "for m in pkgutil.iter_modules(ductaflow.__path__):\n"
        "    importlib.import_module('ductaflow.' + m.name)\n"
        "print([n for n in ductaflow.__all__ if isinstance(getattr(ductaflow, n), types.ModuleType)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
