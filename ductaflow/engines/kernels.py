"""Jupyter kernels for the kernel engine: which kernel, how it starts, and the client that streams it.

The default kernel is an ipykernel on the interpreter ductaflow runs in
(whatever ``python3`` kernelspec the user has installed), started without
debugpy; any installed kernel can be asked for by name.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from ..exceptions import KernelNotFoundError

#: Default kernel: the interpreter ductaflow itself runs in.
CURRENT_PYTHON = None
#: How records and fingerprints name the default kernel.
CURRENT_PYTHON_LABEL = "ductaflow-python"


def check_kernel(kernel_name: str | None) -> None:
    """Raise :class:`KernelNotFoundError` when ``kernel_name`` is not installed."""
    if kernel_name is CURRENT_PYTHON:
        return
    from jupyter_client.kernelspec import KernelSpecManager

    available = sorted(KernelSpecManager().find_kernel_specs())
    if kernel_name not in available:
        raise KernelNotFoundError(
            f"kernel {kernel_name!r} is not installed. "
            f"Installed kernels: {', '.join(available) or '(none)'}. "
            "Leave kernel_name unset to use the Python ductaflow runs in.",
            kernel_name=kernel_name,
            available=available,
        )


#: ipykernel's launcher, minus the import of debugpy (about 0.1 s of every kernel start): the
#: frontend debugger it serves is never attached to a batch run. Flows can still import debugpy.
_LAUNCHER = """\
import sys
if sys.path and sys.path[0] == "":
    del sys.path[0]
sys.modules["debugpy"] = None
try:
    import ipykernel.debugger
except Exception:
    pass
finally:
    del sys.modules["debugpy"]
from ipykernel import kernelapp
kernelapp.launch_new_instance()
"""

_CLIENT_CLASS: type | None = None
_SPEC_MANAGER: Any = None


def client_class() -> type:
    """The nbclient client that also streams outputs to the run's log (built once)."""
    global _CLIENT_CLASS
    if _CLIENT_CLASS is None:
        from nbclient import NotebookClient

        class StreamingClient(NotebookClient):  # type: ignore[misc]
            ductaflow_log: IO[str]
            ductaflow_echo: bool

            def output(self, outs: list, msg: dict, display_id: str, cell_index: int) -> Any:
                if msg["msg_type"] == "stream":
                    text = msg["content"].get("text", "")
                    self.ductaflow_log.write(text)
                    self.ductaflow_log.flush()
                    if self.ductaflow_echo:
                        stream = sys.stderr if msg["content"].get("name") == "stderr" else sys.stdout
                        stream.write(text)
                        stream.flush()
                return super().output(outs, msg, display_id, cell_index)

        _CLIENT_CLASS = StreamingClient
    return _CLIENT_CLASS


def kernel_manager(kernel_name: str | None) -> Any:
    from jupyter_client.manager import AsyncKernelManager

    kwargs: dict[str, Any] = {}
    if "transport_encryption" in AsyncKernelManager.class_trait_names() and _has_curve():
        kwargs["transport_encryption"] = "auto"  # encrypt where the kernel supports it (ipykernel >= 7)
    if kernel_name is not CURRENT_PYTHON:
        return AsyncKernelManager(kernel_name=kernel_name, **kwargs)
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_current_python_specs(), **kwargs)


def _has_curve() -> bool:
    import zmq

    return bool(zmq.has("curve"))


def _current_python_specs() -> Any:
    """A kernelspec manager whose every spec is an ipykernel on ``sys.executable``."""
    global _SPEC_MANAGER
    if _SPEC_MANAGER is None:
        from ipykernel.kernelspec import RESOURCES, get_kernel_dict
        from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

        spec_dict = get_kernel_dict()
        spec_dict["argv"] = [sys.executable, "-c", _LAUNCHER, "-f", "{connection_file}"]
        spec_dict["metadata"] = {**spec_dict.get("metadata", {}), "debugger": False}
        spec = KernelSpec(resource_dir=RESOURCES, **spec_dict)

        class CurrentPythonSpecs(KernelSpecManager):  # type: ignore[misc]
            def get_kernel_spec(self, kernel_name: str, *args: Any, **kwargs: Any) -> Any:
                return spec

        _SPEC_MANAGER = CurrentPythonSpecs()
    return _SPEC_MANAGER
