"""Errors raised by ductaflow.

Every error a user can cause derives from :class:`DuctaflowError`, names the
file or key at fault and says what to do. Errors carry structured fields and
survive pickling, because they cross process boundaries when instances run in
worker processes.
"""

from __future__ import annotations

from typing import Any


class DuctaflowError(Exception):
    """Base class of every ductaflow error."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for name, value in fields.items():
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fields))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[DuctaflowError], message: str, fields: dict[str, Any]) -> DuctaflowError:
    error = cls.__new__(cls)
    DuctaflowError.__init__(error, message, **fields)
    return error


class ConfigError(DuctaflowError, ValueError):
    """A config file, config value or override is invalid (fields: ``key``, ``path``)."""


class UnsafeNameError(DuctaflowError, ValueError):
    """A step or instance name is not a single safe path component (field: ``name``)."""


class FlowError(DuctaflowError, ValueError):
    """A flow file is missing, unreadable or has no ``parameters`` cell (field: ``flow``)."""


class KernelNotFoundError(DuctaflowError, LookupError):
    """The requested Jupyter kernel is not installed (fields: ``kernel_name``, ``available``)."""


class InstanceBusyError(DuctaflowError, RuntimeError):
    """Another process is executing the same instance (field: ``run_dir``)."""


class RunDirectoryError(DuctaflowError, RuntimeError):
    """The output directory cannot be used for a run (field: ``run_dir``)."""


class DiskFullError(DuctaflowError, OSError):
    """The disk holding the runs folder is full (or a quota or file-size limit was hit) (field: ``path``).

    Raised once what the attempt produced is recorded as far as the disk allows.
    """


class FlowExecutionError(DuctaflowError, RuntimeError):
    """A flow failed while executing.

    Fields: ``instance``, ``step``, ``run_dir``, ``cell_index`` (0-based index
    of the failing cell in the flow, ``None`` when no cell was running),
    ``error_name``, ``error_message``, ``notebook`` and ``html`` (paths of the
    saved evidence, ``None`` when not written) and ``status`` (``failed`` or
    ``interrupted``).
    """


class MetricError(DuctaflowError, ValueError):
    """A value given to ``record()`` cannot be stored in ``metrics.json`` (field: ``metric``)."""


class InstancesFailedError(DuctaflowError, RuntimeError):
    """Instances of a conductor run failed (fields: ``step``, ``failed``, the failed instance names)."""


class SchedulerError(DuctaflowError, RuntimeError):
    """A Dask scheduler could not be used: a bad address, none listening, or no ``distributed``."""


class UpstreamError(DuctaflowError, RuntimeError):
    """Upstream instances an instance reads are missing, failed or out of date (field: ``upstream``)."""


class CacheEntryError(DuctaflowError, RuntimeError):
    """A cache entry cannot be restored: partial, corrupt, or of another instance (field: ``fingerprint``)."""


class BundleError(DuctaflowError, ValueError):
    """A run bundle cannot be packed or unpacked: not a tar.gz, no or a bad manifest, a checksum that does
    not match, an unsafe member, an instance that differs or is running where it goes (field: ``path``)."""
