"""Engines: how a notebook executes. The interface is in :mod:`.base`; each engine is one module.

Engines are found by name in a registry filled lazily: the module of an
engine is imported when a run first asks for it. There are two: ``kernel``
(:mod:`.kernel`: a Jupyter kernel per instance, through nbclient) and
``fork`` (:mod:`.fork`: a child per instance forked from a warm zygote,
:mod:`.zygote`, :mod:`.forkchild`). A new engine is one new module
defining a class with the :class:`Engine` interface, plus one entry in
:data:`ENGINES` (or a :func:`register_engine` call).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from ..exceptions import ConfigError
from .base import Engine, Execution, ExecutionError, Outcome

DEFAULT_ENGINE = "kernel"  # single runs (run_step_flow, run_notebook)
#: Many instances (run_instances, sweep, the CLI): each in a fork of a warm process where fork exists.
DEFAULT_MANY_ENGINE = "fork" if sys.platform.startswith("linux") and hasattr(os, "fork") else "kernel"
#: Engine name -> ``"module:Class"`` (imported on first use), or a factory given to register_engine.
ENGINES: dict[str, str | Callable[[], Engine]] = {
    "kernel": "ductaflow.engines.kernel:KernelEngine",
    "fork": "ductaflow.engines.fork:ForkEngine",
}
_LOADED: dict[str, Engine] = {}


def register_engine(name: str, factory: str | Callable[[], Engine]) -> None:
    """Make ``name`` select the engine ``factory`` builds (a callable, or ``"module:Class"``)."""
    ENGINES[name] = factory
    _LOADED.pop(name, None)


def get_engine(name: str) -> Engine:
    """The engine registered as ``name``; :class:`ConfigError` listing the known names otherwise."""
    if name not in _LOADED:
        factory = ENGINES.get(name) if isinstance(name, str) else None
        if factory is None:
            raise ConfigError(f"engine {name!r} is not known. Choose one of: {', '.join(sorted(ENGINES))}.",
                              key="engine")  # fmt: skip
        if isinstance(factory, str):
            module, _, attribute = factory.partition(":")
            factory = getattr(importlib.import_module(module), attribute)
        _LOADED[name] = factory()
    return _LOADED[name]


__all__ = ["DEFAULT_ENGINE", "DEFAULT_MANY_ENGINE", "ENGINES", "Engine", "Execution", "ExecutionError",
           "Outcome", "get_engine", "register_engine"]  # fmt: skip
