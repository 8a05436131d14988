"""Jupyter kernels for the kernel engine: which kernel, how it starts, and the client that streams it.

The default kernel is an ipykernel on the interpreter ductaflow runs in
(whatever ``python3`` kernelspec the user has installed), started without
debugpy; any installed kernel can be asked for by name.

On POSIX the default kernel talks over Unix sockets with names of its own
rather than TCP ports: a port is picked free in one process and bound later
by the kernel, so processes starting kernels at once sometimes give two
kernels one port, and an ipykernel whose IOPub port is taken neither exits
nor answers (ipykernel 7 hangs in its exit handler).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable
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
            ductaflow_note: Callable[[str], None]

            async def _async_poll_for_reply(self, msg_id: str, cell: Any, timeout: Any, output: Any,
                                            alive: Any) -> Any:  # fmt: skip
                """nbclient's wait for a cell's reply, noting when its last output did not follow in time."""
                reply = await super()._async_poll_for_reply(msg_id, cell, timeout, output, alive)
                if output.cancelled():  # nbclient waited iopub_timeout after the reply, then went on
                    index = next((i for i, c in enumerate(self.nb.cells) if c is cell), None)
                    self.ductaflow_note(
                        f"cell {index}: the kernel's reply came but not the end of its output (its 'idle' "
                        f"message) within {self.iopub_timeout} s; going on with the output received"
                    )
                return reply

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
    """A new kernel manager for ``kernel_name``; each call chooses new ports (or socket paths)."""
    from jupyter_client.manager import AsyncKernelManager

    kwargs: dict[str, Any] = {}
    if "transport_encryption" in AsyncKernelManager.class_trait_names() and _has_curve():
        kwargs["transport_encryption"] = "auto"  # encrypt where the kernel supports it (ipykernel >= 7)
    if kernel_name is not CURRENT_PYTHON:
        km = AsyncKernelManager(kernel_name=kernel_name, **kwargs)
    else:
        prefix = _ipc_prefix()
        if prefix is not None:
            kwargs.update(transport="ipc", ip=prefix)
        km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_current_python_specs(), **kwargs)
    km.client_factory = _kernel_client_class()
    return km


#: Longest socket path prefix used: a Unix socket's path is limited to 104 bytes (macOS), 108 (Linux).
_MAX_IPC_PREFIX = 90


def _ipc_prefix() -> str | None:
    """A new path prefix for one kernel's Unix sockets in Jupyter's runtime folder; None: use TCP."""
    if os.name != "posix":
        return None
    from jupyter_core.paths import jupyter_runtime_dir

    folder = jupyter_runtime_dir()
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return None
    if folder not in _SWEPT:
        _SWEPT.add(folder)
        _remove_stale_sockets(folder)
    prefix = os.path.join(folder, f"ductaflow-{uuid.uuid4().hex[:16]}")
    return prefix if len(prefix) <= _MAX_IPC_PREFIX else None


#: Runtime folders already rid of stale sockets by this process.
_SWEPT: set[str] = set()
#: Age past which a socket nobody listens on is stale, seconds (a kernel listens as it binds).
_STALE_AFTER = 60


def _remove_stale_sockets(folder: str) -> None:
    """Remove the sockets of kernels killed with their conductor (kill -9): old, and nobody listening."""
    import socket

    now = time.time()
    for entry in os.scandir(folder):
        if not entry.name.startswith("ductaflow-"):
            continue
        try:
            if now - entry.stat().st_mtime < _STALE_AFTER:
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(entry.path)
        except ConnectionRefusedError:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        except OSError:  # gone meanwhile, not a socket, or not ours to probe
            continue


#: How long one wait on a kernel's socket lasts before its state is read again, seconds.
READ_SLICE = 0.25
_KERNEL_CLIENT_CLASS: type | None = None


def _kernel_client_class() -> type:
    """jupyter_client's asyncio kernel client, reading its shell and IOPub channels in slices (built once).

    nbclient's stand-in for an ipywidgets ``Output`` sends on the shell socket
    while a reply is awaited on it; the send can consume the wake-up that
    the reply's arrival gave, and the wait, without a cell timeout, never
    ends although the reply is there. A wait of at most ``READ_SLICE`` ends
    by reading the socket's state, which finds the reply.
    """
    global _KERNEL_CLIENT_CLASS
    if _KERNEL_CLIENT_CLASS is None:
        from jupyter_client.asynchronous import AsyncKernelClient
        from jupyter_client.channels import AsyncZMQSocketChannel
        from traitlets import Type

        class SlicedChannel(AsyncZMQSocketChannel):  # type: ignore[misc]
            async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
                """The next message, waiting at most ``timeout`` seconds (None: no limit)."""
                from queue import Empty

                deadline = None if timeout is None else time.monotonic() + timeout
                while True:
                    left = READ_SLICE if deadline is None else max(0.0, deadline - time.monotonic())
                    try:
                        return await super().get_msg(timeout=min(READ_SLICE, left))
                    except Empty:
                        if deadline is not None and time.monotonic() >= deadline:
                            raise

        class SlicedKernelClient(AsyncKernelClient):  # type: ignore[misc]
            shell_channel_class = Type(SlicedChannel)
            iopub_channel_class = Type(SlicedChannel)

        _KERNEL_CLIENT_CLASS = SlicedKernelClient
    return _KERNEL_CLIENT_CLASS


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
