"""Sources: table columns over a base config must be its keys, unless the table adds keys on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import ductaflow
from ductaflow import ConfigError
from ductaflow.sources import instances_from_table, rebuild_configs

BASE = {"seed": 1, "volatility": 0.2, "model": {"alpha": 0.1, "layers": 3}}

TYPOS = {
    "misspelt key": ("volatilty", "'volatility'"),
    "misspelt nested key": ("model.alhpa", "'model.alpha'"),
    "misspelt section": ("modle.alpha", "'model.alpha'"),
    "key under a value": ("seed.x", "'seed'"),
}


@pytest.mark.parametrize(("column", "closest"), TYPOS.values(), ids=TYPOS.keys())
def test_a_column_the_base_config_lacks_is_refused_naming_the_closest_key(column: str, closest: str) -> None:
    """Every part of a dotted column must exist; the message names the column, the closest key, the opt-in."""
    rows = [{"instance_name": "a", column: 1.0}]
    with pytest.raises(ConfigError) as caught:
        instances_from_table(rows, base_config=BASE)
    message = str(caught.value)
    assert f"column {column!r} is not a key of base_config (did you mean {closest}" in message
    assert "new_keys=True" in message and caught.value.key == column
    named = dict(instances_from_table(rows, base_config=BASE, new_keys=True))  # the opt-in: added
    assert named["a"]["volatility"] == BASE["volatility"]
    assert column.split(".")[0] in named["a"]


def test_an_empty_misspelt_column_is_refused_and_the_name_column_is_not_a_key() -> None:
    """A DataFrame column left empty is still checked; the name column need not be a config key."""
    table = pd.DataFrame({"scenario": ["a", "b"], "seed": [1, 2], "volatilty": [None, None]})
    with pytest.raises(ConfigError, match="column 'volatilty' is not a key"):
        instances_from_table(table, name_column="scenario", base_config=BASE)
    named = dict(
        instances_from_table(table.drop(columns="volatilty"), name_column="scenario", base_config=BASE)
    )
    assert named["b"] == {**BASE, "seed": 2}
    assert dict(instances_from_table([{"anything": 1}])) == {
        "anything=1": {"anything": 1}
    }  # no base: no check


def test_run_instances_refuses_a_misspelt_column_before_writing(project: Path, flows: Path) -> None:
    """run_instances over base_config: a typo is refused before any instance runs or any file is written."""
    rows = [{"instance_name": "a", "volatility": 0.3}, {"instance_name": "b", "volatilty": 0.5}]
    with pytest.raises(
        ConfigError, match=r"'volatilty' is not a key of base_config \(did you mean 'volatility'"
    ):
        ductaflow.run_instances(flows / "ok.py", rows, base_config=BASE, progress=False)
    assert not (project / "runs").exists()


def test_rebuilt_configs_honour_the_recorded_opt_in(project: Path) -> None:
    """status rebuilds a sweep as it ran: refused without new_keys, built with it or from an older record."""
    (project / "config").mkdir()
    (project / "config" / "base.json").write_text(json.dumps(BASE))
    (project / "t.csv").write_text("instance_name,seed,extra\na,2,x\n")
    source = {"config_file": "config/base.json", "overrides": [], "table": "t.csv", "grid": None,
              "instance_name": None, "name_column": "instance_name"}  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        rebuild_configs({**source, "new_keys": False}, project)
    assert str(caught.value).startswith(
        "table file 't.csv': column 'extra' is not a key of the config file 'config/base.json'."
    )
    expected = {"a": {**BASE, "seed": 2, "extra": "x"}}
    assert rebuild_configs({**source, "new_keys": True}, project) == expected
    assert rebuild_configs(source, project) == expected  # recorded before the check existed: as it ran
