"""The engine interface: what an engine receives to execute one notebook, and what it returns.

An engine executes the cells of a notebook (the flow with its config
injected) with the instance directory as working directory, streams the
flow's output to the live log as it happens, calls back after every cell so
the notebook can be saved, and returns an :class:`Outcome`. Everything around
it (the run folder, the record, the HTML report) is the instance's, so an
engine is only this.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol


@dataclass
class ExecutionError:
    """What went wrong: the error's name and message, where, and its traceback."""

    name: str
    message: str
    cell_index: int | None = None  # index in the executed notebook
    execution_count: int | None = None
    traceback: str = ""
    interrupted: bool = False  # Ctrl-C, SIGTERM or Execution.stop
    stop_now: bool = False  # the flow may be busy: stop it at once rather than ask it to exit
    # the flow's process ended by a signal (its name, such as "SIGKILL"), when the engine can tell
    signal: str | None = None
    # a fault of the machinery rather than the flow's own exception: its process died, was killed,
    # did not start or answer, or a time limit stopped it; the conductor may try such an instance again
    fault: bool = False


@dataclass
class Outcome:
    """What executing one notebook gave: the executed notebook and how it ended."""

    notebook: Any = None  # the notebook, executed in place, every output in it
    error: ExecutionError | None = None
    exited_early: bool = False  # the flow called sys.exit(0): a success
    restarts: int = 0  # processes replaced because they did not answer at start (recorded in run.json)
    notes: list[str] = field(default_factory=list)  # what the engine worked around, one line each
    interrupt_received: bool = False  # Ctrl-C reached the caller: re-raise it once recorded


def _nothing(value: Any) -> None:
    pass


@dataclass
class Execution:
    """What an engine receives to execute one notebook."""

    notebook: Any  # an nbformat notebook, executed in place
    cwd: Path  # the flow's working directory: its instance directory
    log: IO[str]  # log.txt, a real file: the flow's output goes there as it happens
    env: dict[str, str]  # the environment of the process executing the flow
    timeout: float | None = None  # limit on each cell, seconds
    startup_timeout: float = 60  # limit on getting ready to execute the first cell, seconds
    kernel_name: str | None = None  # an installed Jupyter kernel; None: the Python ductaflow runs in
    echo: bool = False  # also copy the flow's output to this process's stdout and stderr
    # with the notebook, before the first cell and after each; an engine may coalesce calls that come
    # quicker than a person could look (the fork engine: at most 0.2 s behind, none for a shorter run)
    on_progress: Callable[[Any], None] = _nothing
    on_finish: Callable[[Outcome], None] = _nothing  # once the cells are over, while the engine winds down
    stop: threading.Event | None = field(default=None)  # set from any thread: stop as Ctrl-C would
    flow_dir: Path | None = None  # the flow's folder: its modules importable, after the standard library
    preload: tuple[str, ...] = ()  # modules an engine may import once for many notebooks (the fork engine)
    # wall time of the whole execution, seconds, counted from the call: past it the flow is stopped
    # and the error is InstanceTimeoutError
    instance_timeout: float | None = None
    # bytes the flow's process (and each process it starts) may allocate beyond what it held before the
    # first cell (engines.limits); past it allocations fail: MemoryError, and the error is MemoryLimitError
    max_memory: int | None = None


class Engine(Protocol):
    """How a notebook executes. One module per engine in ``ductaflow/engines/``, one registry entry."""

    name: ClassVar[str]  # the name users select it by, recorded in run.json as ``engine``

    def check(self, kernel_name: str | None) -> None:
        """Raise a ductaflow error for a choice this engine cannot honour, before anything is written."""
        ...

    def label(self, kernel_name: str | None) -> str:
        """What executes the flow, as named in run records and fingerprints (``ductaflow-python``)."""
        ...

    def execute(self, execution: Execution) -> Outcome:
        """Execute ``execution.notebook``; never raises for the flow's own failures.

        Cell errors, timeouts and a flow process that dies or cannot start
        are returned in :attr:`Outcome.error`; so is a Ctrl-C received while
        the cells run (``interrupted=True``, ``interrupt_received``), after
        the flow has been stopped: the caller records it, then re-raises.
        """
        ...
