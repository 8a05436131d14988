"""Seeds and replicates: every instance has a seed, derived from the sweep seed and its name.

An instance's seed is a stable hash of the sweep seed and the instance name,
an int in ``[0, 2**32)`` (what ``numpy.random.default_rng``,
``numpy.random.RandomState`` and ``random.seed`` accept): the same on every
re-run and machine, different between instances. A flow reads it with
:func:`ductaflow.seed`. When a sweep seed is given explicitly (``seed=`` on
:func:`ductaflow.run_instances` and :func:`ductaflow.sweep`, ``--seed`` on
the command line) the conductor also puts it in each config, under the
reserved key ``ductaflow_seed``, so the flow run as a plain script with that
config gets it too. Without one, configs stay as they are and the seed is
derived from sweep seed 0, which gives the same number as ``seed=0``.

Replicates (``replicates=N``) are N instances per row, named
``<row>-r0 … -r{N-1}``: their configs are the same, their names, so their
seeds, differ. Light imports only: flows use this through ``ductaflow.seed``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .exceptions import ConfigError
from .names import check_name

#: The reserved config key holding the instance's seed when the sweep seed was given.
SEED_KEY = "ductaflow_seed"
#: The sweep seed used when none is given.
DEFAULT_SWEEP_SEED = 0
#: Seeds are below this: numpy's RandomState accepts them.
SEED_LIMIT = 2**32


class NamedConfig(NamedTuple):
    """One instance to plan: its name and config, and which replicate of which row it is."""

    name: str
    config: dict[str, Any]
    replicate: int | None = None  # 0 .. N-1 with replicates=N; None otherwise
    replicate_of: str | None = None  # the row's own name, which the replicate's name extends


def instance_seed(sweep_seed: int, name: str) -> int:
    """The seed of instance ``name`` in a sweep seeded with ``sweep_seed``: an int in ``[0, 2**32)``.

    >>> instance_seed(0, "noise=1.0") == instance_seed(0, "noise=1.0")
    True
    >>> instance_seed(0, "a") != instance_seed(0, "b") and instance_seed(0, "a") != instance_seed(1, "a")
    True
    """
    text = json.dumps(["ductaflow seed", int(sweep_seed), str(name)], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")


def config_seed(config: Mapping[str, Any] | None, name: str) -> int:
    """The seed of an instance: its config's ``ductaflow_seed``, else derived from sweep seed 0."""
    given = (config or {}).get(SEED_KEY)
    if isinstance(given, int) and not isinstance(given, bool):
        return given
    return instance_seed(DEFAULT_SWEEP_SEED, name)


def check_sweep_seed(seed: Any, what: str = "seed") -> int | None:
    """``seed`` as an int (``None`` stays ``None``); anything but a whole number is a :class:`ConfigError`."""
    if seed is None:
        return None
    if hasattr(seed, "item") and not isinstance(seed, (int, float)):  # a numpy integer
        seed = seed.item()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{what} must be a whole number (the sweep seed), got {seed!r}.", key=what)
    return seed


def check_replicates(replicates: Any) -> int | None:
    """``replicates`` as an int of 1 or more (``None``: no replicates), else a :class:`ConfigError`."""
    if replicates is None:
        return None
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise ConfigError(
            f"replicates must be a whole number, 1 or more (instances per row), got {replicates!r}.",
            key="replicates",
        )
    return replicates


def replicated(
    instances: Sequence[tuple[str, dict[str, Any]]], replicates: int | None, seed: int | None
) -> list[NamedConfig]:
    """Each ``(name, config)`` as ``replicates`` instances ``<name>-r<i>``; with ``seed``, seeds in configs.

    Without ``replicates`` each instance stays as it is. With a sweep
    ``seed``, every config gets ``ductaflow_seed`` (its instance's seed);
    without one, configs are left untouched.

    >>> [(i.name, i.config) for i in replicated([("a", {"x": 1})], 2, None)]
    [('a-r0', {'x': 1}), ('a-r1', {'x': 1})]
    >>> replicated([("a", {"x": 1})], None, 7)[0].config == {"x": 1, "ductaflow_seed": instance_seed(7, "a")}
    True
    """
    replicates, seed = check_replicates(replicates), check_sweep_seed(seed)
    out = []
    for name, config in instances:
        copies = (
            [(name, None)]
            if replicates is None
            else [(check_name(f"{name}-r{i}", "replicate's instance name"), i) for i in range(replicates)]
        )
        for copy_name, index in copies:
            own = copy.deepcopy(config) if replicates is not None else dict(config)  # shares no nested dict
            seeded = own if seed is None else {**own, SEED_KEY: instance_seed(seed, copy_name)}
            out.append(NamedConfig(copy_name, seeded, index, None if index is None else name))
    return out
