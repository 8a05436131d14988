"""Starting the kernel engine's kernel: launch it, wait for its answer, replace one that stays silent.

A kernel may exit before it answers or, alive, never answer: an ipykernel
whose IOPub port another kernel took meanwhile hangs in its exit handler
(the default kernel avoids ports altogether, see :mod:`.kernels`; another
kernel still uses TCP). Such a kernel is shut down and a new one, with
newly chosen ports, takes its place: each kernel but the last gets
``ANSWER_WITHIN`` seconds, the last whatever remains of the start-up limit.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from ..flowpath import kernel_code
from .base import Execution, Outcome
from .kernels import CURRENT_PYTHON, kernel_manager

#: For IPython kernels: no history database, and low-level output (subprocesses, C code) written
#: straight to the run's log rather than also forwarded, which would log it twice.
_IPYTHON_ARGUMENTS = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.capture_fd_output=False"]
#: Seconds a kernel gets to answer before it is replaced. Sixteen kernels started at once on a busy
#: 2-core machine (8 conductors with 2 jobs each) answered within 2.8 to 6.2 s, median 3.2 to 5 s;
#: a merely slow kernel replaced by mistake costs a start, as the last kernel waits the full limit.
ANSWER_WITHIN = 10.0
#: Kernels that may be replaced during one start.
REPLACEMENTS = 2


class KernelExited(RuntimeError):
    """The kernel process ended before answering (for example: a port taken meanwhile)."""


class KernelSilent(TimeoutError):
    """The kernel process is alive but did not answer in time."""


async def start_kernel(
    client: Any, job: Execution, outcome: Outcome, note: Callable[[str], None]
) -> dict[str, Any]:
    """Start ``client``'s kernel in ``job.cwd``; return its kernel_info reply once it answers.

    A kernel that exits or stays silent is replaced (``outcome.restarts``
    counts it, ``note`` tells it); raises the last kernel's error when none
    answered within ``job.startup_timeout``.
    """
    env = _environment(client.km, job)
    deadline = time.monotonic() + job.startup_timeout
    for replaced in range(REPLACEMENTS + 1):
        last = replaced == REPLACEMENTS
        within = max(0.0, deadline - time.monotonic())
        if not last:
            within = min(ANSWER_WITHIN, within)
        try:
            return await _start_once(client, job, env, within)
        except (KernelExited, KernelSilent) as exc:
            if last or time.monotonic() >= deadline:
                if isinstance(exc, KernelSilent):
                    exc = KernelSilent(f"no kernel answered within {job.startup_timeout:.3g} s")
                raise type(exc)(f"{exc} ({replaced + 1} kernels started)") from None
            outcome.restarts += 1
            note(f"kernel replaced: {exc}")
            await discard(client)
            client.km = kernel_manager(job.kernel_name)
    raise AssertionError("unreachable")  # pragma: no cover


def _environment(km: Any, job: Execution) -> dict[str, str]:
    env = dict(job.env)
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    folder = job.flow_dir
    if folder is not None and not is_ipykernel(km, job.kernel_name):  # as before: first
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH")) if p)
    return env


async def _start_once(client: Any, job: Execution, env: dict[str, str], within: float) -> dict[str, Any]:
    km = client.km
    arguments = _IPYTHON_ARGUMENTS if is_ipykernel(km, job.kernel_name) else []
    if arguments and job.flow_dir is not None:  # once started: a flow named types.py cannot break it
        arguments = [*arguments, f"--IPKernelApp.exec_lines={kernel_code(str(job.flow_dir))}"]
    await km.start_kernel(
        cwd=str(job.cwd), env=env, stdout=job.log, stderr=job.log, extra_arguments=arguments
    )
    client.kc = km.client()
    await ensure_awaited(client.kc.start_channels())
    client.kc.allow_stdin = False
    return await wait_ready(km, client.kc, within)


async def wait_ready(km: Any, kc: Any, within: float) -> dict[str, Any]:
    """Wait for the kernel's kernel_info reply and a live IOPub subscription; return the reply.

    jupyter_client's ``wait_for_ready`` also drains IOPub until a 0.2 s read
    times out, a fixed 0.2 s per kernel; execution filters IOPub messages by
    their parent anyway, so stale status messages do no harm.
    """
    from queue import Empty

    deadline = time.monotonic() + within
    while True:
        msg_id = kc.kernel_info()
        reply = None
        while reply is None:
            if time.monotonic() > deadline:
                raise KernelSilent(f"the kernel did not answer within {within:.3g} s")
            try:
                msg = await kc.shell_channel.get_msg(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            except Empty:
                if not await km.is_alive():
                    raise KernelExited("the kernel process exited before it was ready") from None
                continue
            if msg["msg_type"] == "kernel_info_reply" and msg["parent_header"].get("msg_id") == msg_id:
                reply = msg
        try:  # any IOPub message (welcome, status) proves the subscription is live
            await kc.iopub_channel.get_msg(timeout=1.0)
            return reply
        except Empty:
            continue


def is_ipykernel(km: Any, kernel_name: str | None) -> bool:
    """Whether the kernel is an IPython kernel (ipykernel), which takes IPython's options."""
    if kernel_name is CURRENT_PYTHON or km.ipykernel:
        return True
    try:
        return any("ipykernel" in str(part) for part in km.kernel_spec.argv)  # another Python's ipykernel
    except Exception:  # no readable spec: leave the kernel's arguments alone
        return False


async def discard(client: Any) -> None:
    """Stop ``client``'s channels and kill its kernel at once."""
    if client.kc is not None:
        client.kc.stop_channels()
        client.kc = None
    if client.km.has_kernel:
        await client.km.shutdown_kernel(now=True)


async def ensure_awaited(value: Any) -> Any:
    """``value``, awaited first when it is a coroutine or future (jupyter_client's sync-or-async calls)."""
    return await value if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future) else value
