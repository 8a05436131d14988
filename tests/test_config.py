"""Config normalisation, canonical hashing, config files and key=value overrides."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ductaflow
from ductaflow import ConfigError
from ductaflow.config import apply_overrides, config_hash, load_config_file, normalise_config


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.int64(7), 7),
        (np.float64(2.5), 2.5),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (np.str_("a"), "a"),
        (float("nan"), None),
        (np.float64("nan"), None),
        (pd.NA, None),
        (pd.NaT, None),
        (np.datetime64("NaT"), None),
        (pd.Timestamp("2024-03-01 12:30"), "2024-03-01T12:30:00"),
        (pd.Timestamp("2024-03-01", tz="UTC"), "2024-03-01T00:00:00+00:00"),
        (np.datetime64("2024-03-01T10:00"), "2024-03-01T10:00"),
        (dt.date(2024, 3, 1), "2024-03-01"),
        (dt.datetime(2024, 3, 1, 8, 0), "2024-03-01T08:00:00"),
        (Path("data") / "x.csv", str(Path("data") / "x.csv")),
        ((1, np.int32(2)), [1, 2]),
        (np.array([1.5, np.nan]), [1.5, None]),
        ({"nested": {"k": np.int16(3)}}, {"nested": {"k": 3}}),
    ],
    ids=lambda v: type(v).__name__,
)
def test_values_become_json_native(value, expected):
    """numpy/pandas/date/path values are normalised to their JSON-native equivalent."""
    normalised = normalise_config({"key": value})
    assert normalised == {"key": expected}
    assert type(normalised["key"]) is type(expected)
    assert json.loads(json.dumps(normalised)) == normalised


def test_dataframe_row_normalises():
    """A row taken from a DataFrame (numpy scalars, NaN, Timestamp) becomes plain JSON values."""
    frame = pd.DataFrame(
        {"n": [1, 2], "x": [0.5, np.nan], "when": pd.to_datetime(["2024-01-01", "2024-01-02"])}
    )
    row = frame.to_dict("records")[1]
    assert normalise_config(row) == {"n": 2, "x": None, "when": "2024-01-02T00:00:00"}


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"model": {"f": object()}}, "model.f"),
        ({"xs": [1, {2, 3}]}, "xs[1]"),
        ({"t": dt.timedelta(seconds=3)}, "t"),
        ({"big": float("inf")}, "big"),
        ({"frame": pd.DataFrame({"a": [1]})}, "frame"),
    ],
    ids=["object", "set-in-list", "timedelta", "inf", "dataframe"],
)
def test_unserialisable_value_names_its_key(config, key):
    """A value that cannot become JSON is refused with an error naming its dotted key."""
    with pytest.raises(ConfigError) as info:
        normalise_config(config)
    assert repr(key) in str(info.value)
    assert info.value.key == key


def test_non_string_key_is_refused():
    """Dict keys must be strings; the error says how to rename."""
    with pytest.raises(ConfigError, match="keys must be strings"):
        normalise_config({"a": {1: "x"}})


def test_config_must_be_a_mapping():
    """A list passed as config is a clear error."""
    with pytest.raises(ConfigError, match="must be a dict"):
        normalise_config([1, 2])  # type: ignore[arg-type]


def test_hash_ignores_key_order_and_numpy_types():
    """The config hash depends on content only, not on key order or numpy types."""
    a = normalise_config({"x": np.int64(1), "y": {"b": 2.0, "a": "s"}})
    b = normalise_config({"y": {"a": "s", "b": 2.0}, "x": 1})
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(normalise_config({"x": 2, "y": {"a": "s", "b": 2.0}}))


def test_overrides_parse_json_and_reach_nested_keys():
    """-o values are JSON when they parse, strings otherwise; dotted keys set nested entries."""
    base = {"n": 1, "name": "a", "model": {"alpha": 0.1, "layers": [1]}, "flag": False}
    result = apply_overrides(
        base, ["n=200", "name=hello world", "model.alpha=0.5", "model.layers=[2,3]", "flag=true"]
    )
    assert result == {
        "n": 200,
        "name": "hello world",
        "model": {"alpha": 0.5, "layers": [2, 3]},
        "flag": True,
    }
    assert base["n"] == 1  # the original is untouched


def test_unknown_override_key_lists_close_matches():
    """Overriding a key that does not exist is an error that suggests the close matches."""
    with pytest.raises(ConfigError) as info:
        apply_overrides({"processing": {"param1": 1, "param2": 2}}, ["processing.parm1=3"])
    message = str(info.value)
    assert "processing.parm1" in message
    assert "processing.param1" in message


def test_override_into_a_scalar_is_refused():
    """A dotted key that walks into a non-dict value is an unknown key."""
    with pytest.raises(ConfigError, match="does not exist"):
        apply_overrides({"n": 1}, ["n.sub=2"])


def test_malformed_override_is_refused():
    """An override without '=' names the expected form."""
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({"n": 1}, ["n"])


def test_config_file_errors_name_the_file(tmp_path):
    """Missing, malformed and non-object config files give errors naming the file and the problem."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }')
    with pytest.raises(ConfigError, match=r"bad\.json.*line 2, column 7"):
        load_config_file(bad)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not an object"):
        load_config_file(listed)


def test_load_config_applies_overrides_to_a_file(tmp_path):
    """load_config: a file with overrides applied; a key the file lacks is refused with close matches."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"n": 1, "model": {"alpha": 0.1}}))
    assert ductaflow.load_config(path, ["model.alpha=0.5", "n=2"]) == {"n": 2, "model": {"alpha": 0.5}}
    with pytest.raises(ConfigError, match=r"Did you mean model\.alpha"):
        ductaflow.load_config(path, ["model.alpah=1"])


def test_load_config_without_a_file_builds_the_config_from_overrides():
    """Without a file, overrides make the config (dotted keys nest); a value used as a section is refused."""
    built = ductaflow.load_config(None, ["a.b=1", "a.c=[1,2]", "d=text"])
    assert built == {"a": {"b": 1, "c": [1, 2]}, "d": "text"}
    assert ductaflow.load_config() == {}
    with pytest.raises(ConfigError, match=r"'a', which holds a value"):
        ductaflow.load_config(None, ["a=1", "a.b=2"])
