"""Random and paired sweeps: draws from a space of values, and lists taken together rather than multiplied.

A **space** maps config keys (dotted keys reach into sections) to what a
draw takes for them: a list (one of its values, each as likely),
:func:`uniform` (a number between two ends; two whole-number ends give
whole numbers, both ends included) or :func:`log_uniform` (the same on a
log scale, for learning rates and other scales). ``random=n`` draws ``n``
rows from it with ``random.Random(seed)`` of the standard library, using
only ``random()``, whose sequence Python keeps the same across versions: the
same seed gives the same rows on every machine.

**Paired** lists (``paired={"a": [1, 2], "b": ["x", "y"]}``, ``--zip`` on
the command line) give one row per position: ``a=1,b=x`` and ``a=2,b=y``,
not every combination as a grid does. Their lengths must be equal.

A space is recorded in ``run.json`` in its JSON form (:func:`space_record`):
a list stays a list, a range is ``{"uniform": [low, high]}`` or
``{"log_uniform": [low, high]}``; that form is also accepted as a space.
Light imports only.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import canonical_json, normalise_config
from .exceptions import ConfigError
from .seeds import DEFAULT_SWEEP_SEED, check_sweep_seed


@dataclass(frozen=True)
class Uniform:
    """Numbers between ``low`` and ``high``, each as likely (whole numbers when both ends are ints)."""

    low: float
    high: float
    log: bool = False

    @property
    def whole(self) -> bool:
        """Both ends are ints: draws are ints, both ends included."""
        return isinstance(self.low, int) and isinstance(self.high, int)

    def draw(self, rng: random.Random) -> float | int:
        """One value, from ``rng.random()`` only."""
        r = rng.random()
        if self.whole:
            lo, hi = (math.log(self.low), math.log(self.high + 1)) if self.log else (self.low, self.high + 1)
            value = math.exp(lo + r * (hi - lo)) if self.log else lo + r * (hi - lo)
            return min(math.floor(value), int(self.high))
        if self.log:
            return math.exp(math.log(self.low) + r * (math.log(self.high) - math.log(self.low)))
        return self.low + r * (self.high - self.low)

    def as_record(self) -> dict[str, list[float]]:
        """The JSON form: ``{"uniform": [low, high]}`` or ``{"log_uniform": [low, high]}``."""
        return {"log_uniform" if self.log else "uniform": [self.low, self.high]}


def uniform(low: float, high: float) -> Uniform:
    """A range for a random sweep's space: numbers from ``low`` to ``high``, each as likely.

    Two ints give ints, both ends included (``uniform(1, 3)``: 1, 2 or 3).

    >>> uniform(0, 0.5)
    Uniform(low=0, high=0.5, log=False)
    """
    return Uniform(*_ends(low, high, log=False), log=False)


def log_uniform(low: float, high: float) -> Uniform:
    """A range on a log scale: as likely between 1e-4 and 1e-3 as between 1e-3 and 1e-2. ``low`` > 0.

    >>> log_uniform(1e-4, 1e-1).as_record()
    {'log_uniform': [0.0001, 0.1]}
    """
    return Uniform(*_ends(low, high, log=True), log=True)


def _ends(low: Any, high: Any, *, log: bool, key: str | None = None) -> tuple[Any, Any]:
    where = f"space key {key!r}: " if key else ""
    name = "log_uniform" if log else "uniform"
    for end in (low, high):
        if isinstance(end, bool) or not isinstance(end, (int, float)) or not math.isfinite(end):
            raise ConfigError(f"{where}{name}({low!r}, {high!r}) needs two finite numbers.", key=key)
    if not low < high:
        raise ConfigError(f"{where}{name}({low!r}, {high!r}) needs low < high; for one value, give a list "
                          f"of it ([{low!r}]).", key=key)  # fmt: skip
    if log and low <= 0:
        raise ConfigError(f"{where}log_uniform({low!r}, {high!r}) needs low > 0 (a log scale).", key=key)
    return low, high


def check_space(space: Any, what: str = "space") -> dict[str, list[Any] | Uniform]:
    """The space with each key's values checked: a non-empty list, a range, or a range's JSON form.

    Raises :class:`ConfigError` naming the key and what it holds.
    """
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(f"{what} must be a non-empty dict of config key -> list of values, uniform(low, "
                          f"high) or log_uniform(low, high); got {space!r}.", key=what)  # fmt: skip
    checked: dict[str, list[Any] | Uniform] = {}
    for key, values in space.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{what} key {key!r} is not a config key (a non-empty string).", key=what)
        checked[key] = _spec(key, values)
    return checked


def _spec(key: str, values: Any) -> list[Any] | Uniform:
    if isinstance(values, Uniform):
        return Uniform(*_ends(values.low, values.high, log=values.log, key=key), log=values.log)
    if isinstance(values, Mapping) and len(values) == 1 and set(values) <= {"uniform", "log_uniform"}:
        [(kind, ends)] = values.items()
        if isinstance(ends, Sequence) and not isinstance(ends, str) and len(ends) == 2:
            log = kind == "log_uniform"
            return Uniform(*_ends(ends[0], ends[1], log=log, key=key), log=log)
    if isinstance(values, Sequence) and not isinstance(values, (str, bytes)) and values:
        return list(normalise_config({key: list(values)})[key])
    raise ConfigError(
        f"space key {key!r} holds {values!r}: give a non-empty list of values, uniform(low, high) or "
        "log_uniform(low, high).",
        key=key,
    )


def space_record(space: Mapping[str, list[Any] | Uniform]) -> dict[str, Any]:
    """The JSON form of a checked space, as ``run.json`` records it."""
    return {key: spec.as_record() if isinstance(spec, Uniform) else list(spec) for key, spec in space.items()}


def draws(n: int, space: Mapping[str, list[Any] | Uniform], seed: int) -> list[dict[str, Any]]:
    """``n`` rows drawn from a checked ``space`` with ``random.Random(seed)``: the same for the same seed.

    >>> draws(2, check_space({"layers": [1, 2, 3], "lr": log_uniform(1e-4, 1e-1)}), 7) == draws(
    ...     2, check_space({"layers": [1, 2, 3], "lr": log_uniform(1e-4, 1e-1)}), 7)
    True
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"random must be the number of draws, 1 or more, got {n!r}.", key="random")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        row = {}
        for key, spec in space.items():
            if isinstance(spec, Uniform):
                row[key] = spec.draw(rng)
            else:
                row[key] = spec[min(int(rng.random() * len(spec)), len(spec) - 1)]
        rows.append(row)
    return rows


def paired_rows(paired: Mapping[str, Sequence[Any]], what: str = "paired (--zip)") -> list[dict[str, Any]]:
    """One row per position of the paired lists: ``{"a": [1, 2], "b": ["x", "y"]}`` gives two rows.

    Lists of unequal length are a :class:`ConfigError` naming every key and its length.

    >>> paired_rows({"a": [1, 2], "b": ["x", "y"]})
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    """
    columns = {}
    for key, values in paired.items():
        if not isinstance(values, Sequence) or isinstance(values, (str, bytes)) or not values:
            raise ConfigError(
                f"{what} key {key!r} needs a non-empty list of values, got {values!r}.", key=key
            )
        columns[key] = normalise_config({key: list(values)})[key]
    lengths = {key: len(values) for key, values in columns.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{key!r} has {n}" for key, n in lengths.items())
        raise ConfigError(f"{what} lists must have the same length, one value per instance: {shown}. "
                          "Give every key as many values (for every combination, use a grid).",
                          key=next(iter(lengths)))  # fmt: skip
    count = next(iter(lengths.values()), 0)
    return [{key: values[i] for key, values in columns.items()} for i in range(count)]


def combinations(source: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[int]]:
    """Every grid combination times every paired row times every random draw of a ``config_source``.

    Also returns each combination's draw index (0 without a random sweep).
    Keys given twice (a grid key also paired...) are a :class:`ConfigError`.
    """
    grid, paired = source.get("grid") or {}, source.get("paired") or {}
    count, space = source.get("random"), source.get("space")
    if (count is None) != (space is None):
        missing = "space (the values to draw from)" if space is None else "random (how many draws)"
        raise ConfigError(f"a random sweep needs both random and space; {missing} is missing.",
                          key="space" if space is None else "random")  # fmt: skip
    space = None if space is None else check_space(space)
    seen: dict[str, str] = {}
    for kind, keys in (("grid", grid), ("paired", paired), ("space", space or {})):
        for key in keys:
            if key in seen:
                raise ConfigError(f"key {key!r} is both a {seen[key]} key and a {kind} key; give it in one "
                                  "of them.", key=key)  # fmt: skip
            seen[key] = kind
    if not seen:
        return [], []
    drawn = [{}] if space is None else draws(count, space, _sweep_seed(source))
    pairs = paired_rows(paired) if paired else [{}]
    out, index = [], []
    for combo in grid_combos(grid):
        for pair in pairs:
            for i, draw in enumerate(drawn):
                out.append({**combo, **pair, **draw})
                index.append(i)
    return out, index


def grid_combos(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of a grid's values, each list checked: non-empty, no value twice."""
    for key, values in grid.items():
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            raise ConfigError(f"grid key {key!r} needs a non-empty list of values, got {values!r}.", key=key)
        seen = [canonical_json({"v": v}) for v in normalise_config({key: list(values)})[key]]
        if len(set(seen)) < len(seen):
            raise ConfigError(f"grid key {key!r} lists a value twice ({values!r}); list each value once.",
                              key=key)  # fmt: skip
    return [
        normalise_config(dict(zip(grid, values, strict=True))) for values in itertools.product(*grid.values())
    ]


def _sweep_seed(source: Mapping[str, Any]) -> int:
    """The sweep seed a source records, the default when it records none."""
    seed = check_sweep_seed(source.get("seed"))
    return DEFAULT_SWEEP_SEED if seed is None else seed
