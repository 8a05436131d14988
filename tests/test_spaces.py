"""Random and paired sweeps: draws reproducible from a seed, zipped lists taken together, bad specs fail."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import FLOWS, record

import ductaflow
from ductaflow import ConfigError
from ductaflow.cli.spaces import parse_paired, parse_space
from ductaflow.spaces import check_space, draws, paired_rows

FLOW = FLOWS / "records_seed.py"
SPACE = {"lr": ductaflow.log_uniform(1e-4, 1e-1), "layers": [1, 2, 3], "dropout": ductaflow.uniform(0, 0.5),
         "width": ductaflow.uniform(8, 12)}  # fmt: skip


@pytest.fixture
def base(project: Path) -> Path:
    """A config file holding every key the sweeps here vary."""
    path = project / "base.json"
    path.write_text(json.dumps({"x": 0, "lr": 0.1, "layers": 1, "dropout": 0.0, "width": 8, "a": 0, "b": ""}))
    return path


def _configs(frame, project: Path) -> dict[str, dict]:
    return {name: record(project / "runs" / "records_seed" / name)["config"] for name in frame.instance}


def test_draws_are_reproducible_from_the_seed_and_stay_in_their_space() -> None:
    """The same seed gives the same rows; another seed others; ints stay ints, each value in its range."""
    space = check_space(SPACE)
    rows = draws(400, space, 7)
    assert rows == draws(400, check_space(SPACE), 7) and rows != draws(400, space, 8)
    assert all(1e-4 <= r["lr"] <= 1e-1 and 0 <= r["dropout"] <= 0.5 for r in rows)
    assert {r["layers"] for r in rows} == {1, 2, 3} and {r["width"] for r in rows} == {8, 9, 10, 11, 12}
    assert all(type(r["width"]) is int and type(r["dropout"]) is float for r in rows)
    below = sum(r["lr"] < 1e-2 for r in rows) / len(rows)  # log scale: two decades of three
    assert 0.58 < below < 0.75
    assert sum(r["dropout"] < 0.25 for r in rows) / len(rows) == pytest.approx(0.5, abs=0.08)


def test_only_random_is_used_so_python_versions_draw_alike() -> None:
    """A draw is computed from random.Random(seed).random() alone, as Python promises to keep it."""
    rng = random.Random(3)
    expected = math.exp(math.log(1e-4) + rng.random() * (math.log(1e-1) - math.log(1e-4)))
    assert draws(1, check_space({"lr": ductaflow.log_uniform(1e-4, 1e-1)}), 3) == [{"lr": expected}]


def test_a_random_sweep_runs_reproducibly_and_is_then_up_to_date(base: Path, project: Path) -> None:
    """sweep(random=4, seed=7): readable names; status and a second run say up to date; seed 8 differs."""
    options = {"config_file": base, "progress": False, "jobs": 2}
    space = {"lr": ductaflow.log_uniform(1e-4, 1e-1), "layers": [1, 2, 3]}
    frame = ductaflow.sweep(FLOW, random=4, space=space, seed=7, **options)
    assert list(frame.status) == ["success"] * 4
    expected = draws(4, check_space(space), 7)
    configs = _configs(frame, project)
    assert [{k: c[k] for k in ("lr", "layers")} for c in configs.values()] == expected
    for name, row in zip(frame.instance, expected, strict=True):
        short = float(format(row["lr"], ".4g"))  # 4 significant digits
        assert name == f"lr={short},layers={row['layers']}" and short != row["lr"]
    assert record(project / "runs" / "records_seed" / frame.instance[0])["config_source"]["space"] == {
        "lr": {"log_uniform": [1e-4, 1e-1]}, "layers": [1, 2, 3]}  # fmt: skip
    assert list(ductaflow.check_instances(["runs"]).reason) == ["up to date"] * 4
    details = dict(ductaflow.check_instance(project / "runs" / "records_seed" / frame.instance[0]).details)
    assert details["config"].endswith(" + 4 random draws (seed 7))")
    again = ductaflow.sweep(FLOW, random=4, space=space, seed=7, dry_run=True, **options)
    assert list(again.instance) == list(frame.instance) and list(again.status) == ["skipped"] * 4
    other = ductaflow.sweep(FLOW, random=4, space=space, seed=8, dry_run=True, **options)
    assert not set(other.instance) & set(frame.instance) and list(other.reason) == ["new"] * 4


def test_repeated_draws_get_distinct_names(project: Path) -> None:
    """Draws from a small list repeat: a repeat's name gets its draw's index, so every name is distinct."""
    frame = ductaflow.sweep(FLOW, random=6, space={"x": [1, 2]}, seed=1, dry_run=True, progress=False)
    names = list(frame.instance)
    drawn = draws(6, check_space({"x": [1, 2]}), 1)
    assert len(set(names)) == 6 and sorted(n for n in names if ",draw=" not in n) == ["x=1", "x=2"]
    for at, name in enumerate(names):
        value, _, index = name.partition(",draw=")
        assert value == f"x={drawn[at]['x']}" and index in ("", str(at))


def test_zip_pairs_values_and_is_then_up_to_date(base: Path, project: Path) -> None:
    """paired lists give one instance per position, not a product; status says up to date afterwards."""
    options = {"config_file": base, "progress": False, "jobs": 3}
    frame = ductaflow.sweep(FLOW, paired={"a": [1, 2, 3], "b": ["x", "y", "z"]}, **options)
    assert list(frame.instance) == ["a=1,b=x", "a=2,b=y", "a=3,b=z"]
    assert [(c["a"], c["b"]) for c in _configs(frame, project).values()] == [(1, "x"), (2, "y"), (3, "z")]
    assert list(ductaflow.check_instances(["runs"]).reason) == ["up to date"] * 3
    details = dict(ductaflow.check_instance(project / "runs" / "records_seed" / "a=1,b=x").details)
    assert details["config"].endswith(" + paired a, b)")
    again = ductaflow.sweep(FLOW, paired={"a": [1, 2, 3], "b": ["x", "y", "z"]}, dry_run=True, **options)
    assert list(again.status) == ["skipped"] * 3
    grid = ductaflow.sweep(FLOW, paired={"a": [1, 2]}, grid={"x": [5, 6]}, dry_run=True, **options)
    assert list(grid.instance) == ["x=5,a=1", "x=5,a=2", "x=6,a=1", "x=6,a=2"]  # grid times pairs


def test_unequal_zip_is_refused_naming_the_keys_and_lengths(base: Path, project: Path) -> None:
    """Paired lists of different lengths: a ConfigError naming each key and its length; nothing written."""
    with pytest.raises(ConfigError, match=r"'a' has 3, 'b' has 2"):
        ductaflow.sweep(FLOW, paired={"a": [1, 2, 3], "b": ["x", "y"]}, config_file=base, progress=False)
    assert not (project / "runs").exists()
    done = subprocess.run([sys.executable, "-m", "ductaflow", "sweep", str(FLOW), "--config", str(base),
                           "--zip", "a=1,2", "--zip", "b=x"], cwd=project, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2 and "'a' has 2, 'b' has 1" in done.stderr and "Traceback" not in done.stderr


BAD_SPACES = {
    "log from zero": ({"lr": {"log_uniform": [0, 1]}}, "needs low > 0"),
    "empty list": ({"lr": []}, "space key 'lr' holds []"),
    "reversed range": ({"lr": {"uniform": [1, 0]}}, "needs low < high"),
    "text": ({"lr": "0.1"}, "space key 'lr' holds '0.1'"),
    "not a dict": ([1, 2], "space must be a non-empty dict"),
}


@pytest.mark.parametrize(("space", "message"), BAD_SPACES.values(), ids=BAD_SPACES.keys())
def test_bad_spaces_are_refused_naming_the_key(project: Path, space: object, message: str) -> None:
    """A space key holding something that cannot be drawn from is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        ductaflow.sweep(FLOW, random=2, space=space, progress=False)
    assert not (project / "runs").exists()


def test_sweep_keys_must_be_config_keys_and_given_once(base: Path) -> None:
    """A misspelt space or zip key is refused naming the config file; a key both zipped and drawn too."""
    with pytest.raises(ConfigError, match=r"space key 'lrr' is not in base.json .*Did you mean lr\?"):
        ductaflow.sweep(FLOW, random=2, space={"lrr": [1]}, config_file=base, dry_run=True)
    with pytest.raises(ConfigError, match=r"paired key 'bb'"):
        ductaflow.sweep(FLOW, paired={"bb": [1]}, config_file=base, dry_run=True)
    with pytest.raises(ConfigError, match="key 'a' is both a paired key and a space key"):
        ductaflow.sweep(FLOW, paired={"a": [1]}, random=1, space={"a": [2]}, config_file=base, dry_run=True)
    with pytest.raises(ConfigError, match="needs both random and space; space"):
        ductaflow.sweep(FLOW, random=3, config_file=base, dry_run=True)


def test_paired_rows_in_order() -> None:
    """paired_rows: position by position, values normalised."""
    assert paired_rows({"a": [1, 2], "b": [(1, 2), None]}) == [{"a": 1, "b": [1, 2]}, {"a": 2, "b": None}]


def test_cli_space_syntax() -> None:
    """--space: log:LOW:HIGH, range:LOW:HIGH, V1,V2 (JSON when it parses), in the order given."""
    space = parse_space(["lr=log:1e-4:1e-1", "layers=1,2,3", "dropout=range:0:0.5", "mode=fast,slow"])
    assert space == {"lr": ductaflow.log_uniform(1e-4, 0.1), "layers": [1, 2, 3],
                     "dropout": ductaflow.uniform(0, 0.5), "mode": ["fast", "slow"]}  # fmt: skip
    assert list(space) == ["lr", "layers", "dropout", "mode"]
    assert parse_paired(["a=1,2", "b=x,y"]) == {"a": [1, 2], "b": ["x", "y"]}


CLI_BAD = {
    "no value": (["lr="], "is not KEY=SPEC"),
    "misspelt kind": (["lr=lg:1e-4:1e-1"], "'lg' is not a kind of range"),
    "one end": (["lr=log:1e-4"], "is not log:LOW:HIGH with two numbers"),
    "text end": (["lr=range:a:1"], "is not range:LOW:HIGH with two numbers"),
    "log of zero": (["lr=log:0:1"], "needs low > 0"),
    "twice": (["lr=1,2", "lr=log:1:2"], "given twice"),
    "empty choice": (["lr=1,,2"], "has an empty value"),
}


@pytest.mark.parametrize(("items", "message"), CLI_BAD.values(), ids=CLI_BAD.keys())
def test_cli_bad_space_names_the_option(items: list[str], message: str) -> None:
    """A bad --space is a BadParameter naming --space and what is wrong."""
    with pytest.raises(click.BadParameter, match=message) as caught:
        parse_space(items)
    assert caught.value.param_hint == "--space"


def test_cli_random_sweep_with_seed(base: Path, project: Path) -> None:
    """ductaflow sweep --random 3 --space ... --seed 7 runs the draws sweep(random=3, seed=7) makes."""
    command = [sys.executable, "-m", "ductaflow", "sweep", str(FLOW), "--config", str(base), "--random",
               "3", "--space", "lr=log:1e-4:1e-1", "--space", "layers=1,2,3", "--seed", "7",
               "--no-html"]  # fmt: skip
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    space = {"lr": ductaflow.log_uniform(1e-4, 1e-1), "layers": [1, 2, 3]}
    frame = ductaflow.sweep(FLOW, random=3, space=space, seed=7, config_file=base, dry_run=True)
    assert list(frame.status) == ["skipped"] * 3
    alone = subprocess.run([*command[:7], "--random", "3"], cwd=project, capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert alone.returncode == 2 and "--random N and --space KEY=SPEC go together" in alone.stderr
