"""Config files in YAML and TOML beside JSON: the same config, the same hash, errors naming file and line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import listing, record

import ductaflow
import ductaflow.cli
from ductaflow import ConfigError
from ductaflow.config import config_hash, load_config_file

# One set of settings written in each format; every one must read as SETTINGS.
SETTINGS = {
    "label": "north",
    "n": 3,
    "ratio": 0.5,
    "enabled": True,
    "start": "2025-01-01",
    "tags": ["a", "b"],
    "model": {"alpha": 0.1, "layers": [16, 8]},
}
WRITTEN = {
    "json": json.dumps(SETTINGS),
    "yaml": (
        "# the same settings as the JSON file\n"
        "label: north\nn: 3\nratio: 0.5\nenabled: true\nstart: 2025-01-01\n"
        "tags: [a, b]\nmodel:\n  alpha: 0.1\n  layers:\n    - 16\n    - 8\n"
    ),
    "yml": (
        "model: {layers: [16, 8], alpha: 0.1}\nstart: '2025-01-01'\ntags:\n  - a\n  - b\n"
        'enabled: yes\nratio: 5.0e-1\nn: 0x3\nlabel: "north"\n'
    ),
    "toml": (
        'label = "north"\nn = 3\nratio = 0.5\nenabled = true\nstart = 2025-01-01\n'
        'tags = ["a", "b"]\n\n[model]\nalpha = 0.1\nlayers = [16, 8]\n'
    ),
}


def write(folder: Path, name: str, text: str) -> Path:
    """Write ``text`` to ``folder/name`` and return the path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", list(WRITTEN))
def test_every_format_reads_as_the_same_config_and_hash(tmp_path, suffix):
    """The same settings as .json, .yaml, .yml or .toml give one normalised config and one hash."""
    config = load_config_file(write(tmp_path, f"settings.{suffix}", WRITTEN[suffix]))
    assert config == SETTINGS
    assert config_hash(config) == config_hash(SETTINGS)


def test_suffix_case_does_not_matter(tmp_path):
    """A .YAML or .Toml file is read as YAML or TOML."""
    assert load_config_file(write(tmp_path, "A.YAML", "n: 1\nwhen: 2025-01-01\n")) == {
        "n": 1,
        "when": "2025-01-01",
    }
    assert load_config_file(write(tmp_path, "b.Toml", "n = 1\n")) == {"n": 1}


def test_dates_and_times_become_iso_strings(tmp_path):
    """YAML and TOML dates, datetimes and times become ISO-8601 strings, as normalise_config makes them."""
    yaml_file = write(
        tmp_path, "d.yaml", "day: 2025-01-02\nat: 2025-01-02 10:30:00\nutc: 2025-01-02T10:30:00Z\n"
    )
    assert load_config_file(yaml_file) == {
        "day": "2025-01-02", "at": "2025-01-02T10:30:00", "utc": "2025-01-02T10:30:00+00:00",
    }  # fmt: skip
    toml_file = write(tmp_path, "d.toml", "day = 2025-01-02\nat = 2025-01-02T10:30:00\n"
                      "utc = 2025-01-02T10:30:00Z\nclock = 07:45:00\n")  # fmt: skip
    assert load_config_file(toml_file) == {
        "day": "2025-01-02", "at": "2025-01-02T10:30:00", "utc": "2025-01-02T10:30:00+00:00",
        "clock": "07:45:00",
    }  # fmt: skip


def test_yaml_anchors_aliases_and_merge_keys(tmp_path):
    """Anchors, aliases and merge keys (<<: *base) work; the config holds plain copies."""
    text = "base: &b {alpha: 1, beta: 2}\nrun:\n  <<: *b\n  beta: 3\ncopy: *b\nlist: &l [1, 2]\nagain: *l\n"
    config = load_config_file(write(tmp_path, "a.yaml", text))
    assert config == {"base": {"alpha": 1, "beta": 2}, "run": {"alpha": 1, "beta": 3},
                      "copy": {"alpha": 1, "beta": 2}, "list": [1, 2], "again": [1, 2]}  # fmt: skip
    config["copy"]["alpha"] = 9
    assert config["base"]["alpha"] == 1  # not the same object


def test_nan_is_none_in_yaml_and_toml(tmp_path):
    """NaN in YAML (.nan) and TOML (nan) becomes None, as in a JSON file."""
    assert load_config_file(write(tmp_path, "n.yaml", "x: .nan\n")) == {"x": None}
    assert load_config_file(write(tmp_path, "n.toml", "x = nan\n")) == {"x": None}
    assert load_config_file(write(tmp_path, "n.json", '{"x": NaN}')) == {"x": None}


def test_an_empty_toml_file_is_an_empty_config(tmp_path):
    """TOML has no other way to write a config without settings: an empty .toml file reads as {}."""
    assert load_config_file(write(tmp_path, "e.toml", "# nothing yet\n")) == {}
    assert load_config_file(write(tmp_path, "e.yaml", "{}\n")) == {}


BAD = [
    ("malformed.yaml", "a: 1\nb: [1, 2\nc: 3\n",
     ["not valid YAML", "expected ',' or ']'", "line 3, column 2", "started at line 2, column 4",
      "Fix the file"]),
    ("indent.yml", "a:\n  b: 1\n c: 2\n", ["not valid YAML", "line 3, column 2", "param1: 100"]),
    ("tab.yaml", "a:\n\tb: 1\n", ["not valid YAML", "'\\t'", "line 2, column 1"]),
    ("two-docs.yaml", "a: 1\n---\nb: 2\n", ["more than one YAML document", "line 2, column 1", "--- line"]),
    ("list.yaml", "- 1\n- 2\n", ["holds a YAML list, not a mapping", "key: value"]),
    ("scalar.yaml", "just text\n", ["holds a YAML string, not a mapping"]),
    ("empty.yaml", "", ["holds no settings", "empty or only comments", "{}"]),
    ("comments.yaml", "# to do\n", ["holds no settings"]),
    ("int-key.yaml", "model:\n  1: x\n",
     ["the key 1 at line 2, column 3", "the number 1", 'Quote it ("1": ...)']),
    ("bool-key.yaml", "true: y\n", ["the key true at line 1, column 1", "the boolean True", '("true": ...)']),
    ("yes-key.yaml", "a: 1\nyes: y\n", ["the key yes at line 2, column 1", "the boolean True"]),
    ("null-key.yaml", "~: y\n", ["the key ~", "reads as null"]),
    ("date-key.yaml", "2025-01-01: y\n", ["the key 2025-01-01", "the date 2025-01-01"]),
    ("list-key.yaml", "[a, b]: 1\n", ["a key that is a list at line 1, column 1", "keys must be strings"]),
    ("python-tag.yaml", "a: !!python/object/apply:os.system [echo]\n",
     ["YAML tag '!!python/object/apply:os.system'", "line 1, column 4", "Remove the tag", "safe_load"]),
    ("local-tag.yaml", "a: 1\nb: !env HOME\n", ["YAML tag '!env'", "line 2, column 4", "Remove the tag"]),
    ("loop.yaml", "a: &x [1, *x]\n", ["the alias *x at line 1, column 11", "inside the node &x"]),
    ("undefined-alias.yaml", "a: *nope\n", ["undefined alias 'nope'", "line 1, column 4"]),
    ("binary.yaml", "a:\n  b: !!binary aGVsbG8=\n", ["config key 'a.b' holds a builtins.bytes"]),
    ("inf.yaml", "x: .inf\n", ["config key 'x' is inf"]),
    ("bad.toml", "a = 1\nb = \n", ["not valid TOML", "(at line 2, column 5)", "key = value"]),
    ("twice.toml", "[x]\ny = 1\n[x]\n", ["not valid TOML", "twice", "line 3"]),
    ("inf.toml", "x = inf\n", ["config key 'x' is inf"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "fragments"), BAD, ids=[case[0] for case in BAD])
def test_bad_files_are_refused_naming_the_file_the_place_and_the_fix(tmp_path, name, text, fragments):
    """Each broken YAML or TOML file raises ConfigError naming the file, where (when known) and the fix."""
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    message = str(info.value)
    assert message.startswith(f"config file {str(path)!r}")
    assert info.value.path == str(path)
    for fragment in fragments:
        assert fragment in message
    assert "read as JSON" not in message


def test_a_yaml_python_tag_runs_nothing(tmp_path):
    """A tag that would call a function is refused before anything is called."""
    marker = tmp_path / "called"
    path = write(tmp_path, "evil.yaml", f"a: !!python/object/apply:os.mkdir [{str(marker)!r}]\n")
    with pytest.raises(ConfigError, match="Remove the tag"):
        load_config_file(path)
    assert not marker.exists()


def test_missing_and_unreadable_files_list_the_formats(tmp_path):
    """A missing file's error lists the supported suffixes; a folder is 'cannot be read' in its format."""
    with pytest.raises(ConfigError, match=r"missing\.yaml.*does not exist.*\.json, \.yaml, \.yml or \.toml"):
        load_config_file(tmp_path / "missing.yaml")
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(ConfigError, match=r"folder\.toml.*cannot be read.*readable UTF-8 TOML file"):
        load_config_file(tmp_path / "folder.toml")


def test_another_suffix_is_read_as_json_and_says_so_when_it_fails(tmp_path):
    """A file whose suffix is none of ours is read as JSON, as before; if that fails, the error says why."""
    assert load_config_file(write(tmp_path, "settings.cfg", '{"n": 1}')) == {"n": 1}
    assert load_config_file(write(tmp_path, "settings", '{"n": 2}')) == {"n": 2}
    with pytest.raises(ConfigError) as info:
        load_config_file(write(tmp_path, "x.conf", "n: 1\n"))
    assert "not valid JSON" in str(info.value) and "read as JSON because it has '.conf'" in str(info.value)
    assert ".json, .yaml, .yml or .toml" in str(info.value) and "rename it" in str(info.value)
    with pytest.raises(ConfigError, match=r"holds a JSON list, .*because it has no suffix"):
        load_config_file(write(tmp_path, "listed", "[1]"))


def test_json_messages_are_unchanged(tmp_path):
    """A broken .json file keeps its message: line and column, the fix, nothing about suffixes."""
    with pytest.raises(ConfigError) as info:
        load_config_file(write(tmp_path, "bad.json", '{"a": 1,\n "b": }'))
    assert str(info.value) == (
        f"config file {str(tmp_path / 'bad.json')!r} is not valid JSON: Expecting value at line 2, column 7. "
        'Fix the file (a JSON object such as {"param1": 100}).'
    )


@pytest.mark.parametrize("suffix", ["yaml", "toml"])
def test_load_config_applies_overrides_to_yaml_and_toml(tmp_path, suffix):
    """load_config works on YAML and TOML files: overrides replace keys, a typo lists the close ones."""
    path = write(tmp_path, f"c.{suffix}", WRITTEN[suffix])
    config = ductaflow.load_config(path, ["model.alpha=0.5", "n=4"])
    assert config == {**SETTINGS, "n": 4, "model": {"alpha": 0.5, "layers": [16, 8]}}
    with pytest.raises(ConfigError, match=r"Did you mean model\.alpha"):
        ductaflow.load_config(path, ["model.alpah=1"])


def test_yaml_is_imported_only_to_read_a_yaml_file(tmp_path):
    """import ductaflow and reading a JSON config leave PyYAML unloaded; a YAML config loads it."""
    write(tmp_path, "c.json", '{"n": 1}')
    write(tmp_path, "c.yaml", "n: 1\n")
    code = ("import sys, ductaflow\nfrom ductaflow.config import load_config_file\n"
            "load_config_file('c.json'); print('yaml' in sys.modules)\n"
            "load_config_file('c.yaml'); print('yaml' in sys.modules)\n")  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True"]


# --- end to end: real flows --------------------------------------------------------------------


@pytest.fixture
def ok_project(project, flows) -> Path:
    """A project with flow/ok.py and the same settings in config/settings.{json,yaml,toml}."""
    (project / "flow").mkdir()
    shutil.copy(flows / "ok.py", project / "flow" / "ok.py")
    (project / "config").mkdir()
    for suffix in ("json", "yaml", "toml"):
        write(project / "config", f"settings.{suffix}", WRITTEN[suffix])
    return project


def test_json_and_yaml_with_equal_content_record_the_same_hash(ok_project):
    """Sweeps from a JSON and a YAML file with equal content record one config hash and one fingerprint."""
    for suffix in ("json", "yaml"):
        frame = ductaflow.sweep("flow/ok.py", config_file=f"config/settings.{suffix}", instance_name=suffix,
                                progress=False, export_html=False)  # fmt: skip
        assert list(frame["status"]) == ["success"]
    from_json, from_yaml = (record(ok_project / "runs" / "ok" / name) for name in ("json", "yaml"))
    assert from_yaml["config"] == from_json["config"] == SETTINGS
    assert from_yaml["config_hash"] == from_json["config_hash"] == config_hash(SETTINGS)
    assert from_yaml["fingerprint"] == from_json["fingerprint"]
    assert from_yaml["config_source"]["config_file"] == "config/settings.yaml"
    seen = json.loads((ok_project / "runs" / "ok" / "yaml" / "seen.json").read_text())
    assert seen["config"] == SETTINGS  # what the flow received
    again = ductaflow.sweep("flow/ok.py", config_file="config/settings.toml", instance_name="json",
                            progress=False, export_html=False)  # fmt: skip
    assert list(again["status"]) == ["skipped"]  # the same config from TOML: up to date


def test_freshness_reads_todays_yaml_file(ok_project):
    """status/why rebuild the config from today's YAML file: an edit shows as a config change."""
    ductaflow.sweep("flow/ok.py", config_file="config/settings.yaml", progress=False, export_html=False)
    run_dir = ok_project / "runs" / "ok" / "settings"
    assert ductaflow.check_instance(run_dir).reason == "up to date"
    path = ok_project / "config" / "settings.yaml"
    path.write_text(path.read_text().replace("n: 3", "n: 4"))
    assert ductaflow.check_instance(run_dir).reason == "config changed (n: 3 -> 4)"
    path.write_text("n: [\n")
    check = ductaflow.check_instance(run_dir)
    assert check.outdated is True and "settings.yaml" in check.reason and "line 2" in check.reason


def test_the_command_runs_a_toml_config(ok_project):
    """ductaflow run --config x.toml runs the flow with the TOML settings; a broken one exits 2 naming it."""
    args = ["run", "flow/ok.py", "--config", "config/settings.toml", "-o", "n=5", "--no-html"]
    done = CliRunner().invoke(ductaflow.cli.cli, args, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert record(ok_project / "runs" / "ok" / "settings")["config"] == {**SETTINGS, "n": 5}
    write(ok_project / "config", "broken.toml", "n = \n")
    before = listing(ok_project)
    done = CliRunner().invoke(ductaflow.cli.cli, ["run", "flow/ok.py", "--config", "config/broken.toml"],
                              catch_exceptions=False)  # fmt: skip
    assert done.exit_code == 2
    assert "broken.toml" in done.stderr and "not valid TOML" in done.stderr and "line 1" in done.stderr
    assert listing(ok_project) == before


@pytest.fixture
def script_project(project, flows) -> Path:
    """A project with flow/header.py (the README header) and its settings as YAML."""
    (project / "flow").mkdir()
    shutil.copy(flows / "header.py", project / "flow" / "header.py")
    (project / "config").mkdir()
    write(
        project / "config", "header.yaml", "action: none\nlabel: from yaml\nmodel: {alpha: 0.1, layers: 2}\n"
    )
    return project


def script(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in a real subprocess, without ductaflow's own environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTAFLOW_")}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def test_script_mode_reads_a_yaml_config(script_project):
    """python flow.py --config x.yaml --output-dir DIR runs with the YAML settings and records them."""
    out = script(["flow/header.py", "--config", "config/header.yaml", "--output-dir", "runs/header/y",
                  "-o", "model.alpha=0.5"], script_project)  # fmt: skip
    assert out.returncode == 0, out.stderr
    expected = {"action": "none", "label": "from yaml", "model": {"alpha": 0.5, "layers": 2}}
    run_dir = script_project / "runs" / "header" / "y"
    assert json.loads((run_dir / "config.json").read_text()) == expected
    assert json.loads((run_dir / "out.json").read_text())["config"] == expected
    assert record(run_dir)["status"] == "success"


def test_script_mode_refuses_a_broken_yaml_config_with_status_2(script_project):
    """A YAML config with a non-string key exits 2 with the file, line and fix; nothing is written."""
    write(script_project / "config", "bad.yaml", "label: x\n1: y\n")
    before = listing(script_project)
    out = script(["flow/header.py", "--config", "config/bad.yaml", "--output-dir", "runs/header/b"],
                 script_project)  # fmt: skip
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert (
        "config/bad.yaml" in out.stderr and "line 2, column 1" in out.stderr and 'Quote it ("1"' in out.stderr
    )
    assert listing(script_project) == before
