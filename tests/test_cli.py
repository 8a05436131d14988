"""The ductaflow command: exit codes, output, files written.

Most tests drive the command in this process through click's CliRunner, in
the current directory (the ``project`` fixture's): the command group itself
maps results and errors to exit codes and messages, so this gives what the
real command gives. Real processes are kept where a process is under test:
the installed console script, ``python -m ductaflow run`` end to end, a
failing run's exit code, a terminal (pty), Ctrl-C and SIGTERM, and the
scaffolded project's ``python conductor.py``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import listing, record, run_in_terminal

import ductaflow.cli

COMMANDS = ["run", "sweep", "status", "why", "open", "new", "report"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``ductaflow ARGS`` in this process and the current directory, output captured as from a pipe.

    An exception the command does not handle is raised here, where the real
    command would print its traceback and exit 1.
    """
    done = CliRunner().invoke(ductaflow.cli.cli, args, catch_exceptions=False)
    return subprocess.CompletedProcess(["ductaflow", *args], done.exit_code, done.stdout, done.stderr)


def process(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m ductaflow ARGS`` as a real process in ``cwd`` with piped output."""
    return subprocess.run([sys.executable, "-m", "ductaflow", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture
def proj(project: Path, flows: Path) -> Path:
    """A project with the test flows in flow/ and a config file in config/ok.json."""
    (project / "flow").mkdir()
    for name in ("ok.py", "broken.py", "slow.py"):
        shutil.copy(flows / name, project / "flow" / name)
    (project / "config").mkdir()
    (project / "config" / "ok.json").write_text(
        json.dumps({"n": 1, "label": "base", "model": {"alpha": 0.1}})
    )
    return project


def seen(run_dir: Path) -> dict:
    """What the ok flow saw when it ran in ``run_dir``."""
    return json.loads((run_dir / "seen.json").read_text())


def test_version_and_help_of_every_command_show_a_real_example(project: Path) -> None:
    """--version prints the version; --help of the group and of every command shows an example."""
    import ductaflow

    version = cli("--version")
    assert version.returncode == 0 and ductaflow.__version__ in version.stdout
    assert "Examples:" in cli("--help").stdout
    for command in COMMANDS:
        shown = cli(command, "--help")
        assert shown.returncode == 0, shown.stderr
        assert f"ductaflow {command} " in shown.stdout.split("Examples:")[1], command


def test_console_script_is_installed(project: Path) -> None:
    """The `ductaflow` console script sits beside the interpreter and runs."""
    script = Path(sys.executable).parent / "ductaflow"
    done = subprocess.run([str(script), "--version"], cwd=project, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "ductaflow" in done.stdout


def test_in_process_the_command_installs_no_signal_handler(proj: Path) -> None:
    """In this process (CliRunner or run_cli) the command leaves SIGTERM alone: only main() handles it."""
    before = signal.getsignal(signal.SIGTERM)
    assert cli("status").returncode == 0
    assert ductaflow.cli.run_cli(["status", "--json"]) == 0
    assert signal.getsignal(signal.SIGTERM) == before


def test_run_executes_once_then_skips_until_forced(proj: Path) -> None:
    """run names the instance after its config file, applies overrides, skips unchanged; --force re-runs."""
    first = process(
        "run", "flow/ok.py", "--config", "config/ok.json", "-o", "n=3", "-o", "model.alpha=0.5", cwd=proj
    )
    assert first.returncode == 0, first.stderr
    run_dir = proj / "runs" / "ok" / "ok"
    assert "success: runs/ok/ok" in first.stdout
    assert seen(run_dir)["config"] == {"n": 3, "label": "base", "model": {"alpha": 0.5}}
    assert (run_dir / "ok.html").exists() and record(run_dir)["status"] == "success"
    started = record(run_dir)["started_at"]

    again = cli("run", "flow/ok.py", "--config", "config/ok.json", "-o", "n=3", "-o", "model.alpha=0.5")
    assert again.returncode == 0 and "1 skipped" in again.stdout
    assert record(run_dir)["started_at"] == started

    forced = cli("run", "flow/ok.py", "--config", "config/ok.json", "-o", "n=3", "-o", "model.alpha=0.5",
                 "--force")  # fmt: skip
    assert forced.returncode == 0 and "(forced)" in forced.stdout
    assert record(run_dir)["started_at"] != started


def test_run_options_name_step_runs_dir_and_html(proj: Path) -> None:
    """--instance, --step, --runs-dir and --no-html decide where the run goes and what it writes."""
    done = cli("run", "flow/ok.py", "-o", "n=2", "--instance", "trial", "--step", "checks",
               "--runs-dir", "out", "--no-html", "--timeout", "60", "--instance-timeout", "600",
               "--max-memory", "2GB")  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_dir = proj / "out" / "checks" / "trial"
    assert seen(run_dir)["config"] == {"n": 2}
    assert not (run_dir / "ok.html").exists()
    assert record(run_dir)["options"] == {"timeout": 60.0, "instance_timeout": 600.0, "max_memory": 2**31,
                                          "export_html": False, "preload": []}  # fmt: skip
    assert not (proj / "runs").exists()


def test_run_of_a_failing_flow_exits_1_and_keeps_the_evidence(proj: Path) -> None:
    """A flow that raises: exit code 1, the error on the terminal, the record and report on disk."""
    done = process("run", "flow/broken.py", cwd=proj)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "KeyError" in done.stdout and "failed: runs/broken/default" in done.stdout
    run_dir = proj / "runs" / "broken" / "default"
    assert record(run_dir)["status"] == "failed" and (run_dir / "broken.html").exists()


BAD_INPUT = {
    "missing flow": (["run", "flow/nope.py"], "flow/nope.py"),
    "missing config": (["run", "flow/ok.py", "--config", "config/nope.json"], "config/nope.json"),
    "malformed config": (["run", "flow/ok.py", "--config", "config/bad.json"], "config/bad.json"),
    "override without =": (["run", "flow/ok.py", "--config", "config/ok.json", "-o", "n3"], "key=value"),
    "unknown override key": (
        ["run", "flow/ok.py", "--config", "config/ok.json", "-o", "nn=3"],
        "Did you mean n",
    ),
    "unsafe instance": (["run", "flow/ok.py", "--instance", "../escape"], "../escape"),
    "unsafe step": (["run", "flow/ok.py", "--step", "a/b"], "a/b"),
    "unknown kernel": (["run", "flow/ok.py", "--kernel", "no-such-kernel"], "no-such-kernel"),
    "missing table": (["sweep", "flow/ok.py", "--table", "nope.csv"], "nope.csv"),
    "malformed table": (["sweep", "flow/ok.py", "--table", "bad.csv"], "bad.csv"),
    "unreadable table type": (["sweep", "flow/ok.py", "--table", "table.txt"], ".csv, .json"),
    "duplicate names": (["sweep", "flow/ok.py", "--table", "twins.csv"], "twin"),
    "bad grid": (["sweep", "flow/ok.py", "--grid", "seed"], "--grid"),
    "grid unclosed bracket": (["sweep", "flow/ok.py", "--grid", "n=[1,2"], "unclosed bracket"),
    "grid empty value": (["sweep", "flow/ok.py", "--grid", "n=1,"], "empty value"),
    "grid value twice": (["sweep", "flow/ok.py", "--grid", "n=1,1"], "lists a value twice"),
    "grid key not in config": (
        ["sweep", "flow/ok.py", "--config", "config/ok.json", "--grid", "nn=1,2"],
        "grid key 'nn' is not in config/ok.json",
    ),
    "semicolon table": (["sweep", "flow/ok.py", "--table", "semi.csv"], "';'"),
    "missing name column": (
        ["sweep", "flow/ok.py", "--table", "twins.csv", "--name-column", "Scenario"],
        "'Scenario'",
    ),
    "runs dir is a file": (["run", "flow/ok.py", "--runs-dir", "table.txt"], "table.txt"),
    "unsafe name from config file": (["run", "flow/ok.py", "--config", "config/con.json"], "--instance"),
    "no table or grid": (["sweep", "flow/ok.py"], "--table"),
    "zero jobs": (["sweep", "flow/ok.py", "--grid", "n=1,2", "--jobs", "0"], "--jobs"),
    "missing input": (["run", "flow/ok.py", "--input", "data/none.csv"], "data/none.csv"),
    "unknown command": (["frobnicate"], "frobnicate"),
    "status of nothing": (["status", "nowhere"], "nowhere"),
    "why of a non-instance": (["why", "config"], "config"),
    "open of a non-instance": (["open", "config"], "config"),
}


@pytest.mark.parametrize("args, named", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_user_errors_exit_2_with_one_clear_message_and_write_nothing(proj: Path, args: list[str],
                                                                     named: str) -> None:  # fmt: skip
    """Each user error: exit 2, a message naming the file or argument, no traceback, no runs/ written."""
    (proj / "config" / "bad.json").write_text('{"n": 1,}')
    (proj / "bad.csv").write_text('instance_name,n\na,1\n"b,2\n')
    (proj / "table.txt").write_text("n\n1\n")
    (proj / "twins.csv").write_text("instance_name,n\ntwin,1\ntwin,2\n")
    (proj / "semi.csv").write_text("instance_name;n\na;1\n")
    (proj / "config" / "con.json").write_text("{}")
    done = cli(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert not (proj / "runs").exists()


def test_debug_flag_shows_the_traceback(proj: Path) -> None:
    """--debug adds the traceback to a user error's message, and the exit code stays 2."""
    done = cli("run", "flow/nope.py", "--debug")
    assert done.returncode == 2
    assert "Traceback" in done.stderr and "flow/nope.py" in done.stderr


def test_sweep_table_with_dotted_columns_over_a_base_config(proj: Path) -> None:
    """A CSV table: one instance per row, named by its column, dotted columns nested over --config."""
    pd.DataFrame({"instance_name": ["a", "b"], "n": [5, 6], "model.alpha": [0.2, None]}).to_csv(
        proj / "scenarios.csv", index=False
    )
    done = cli("sweep", "flow/ok.py", "--config", "config/ok.json", "--table", "scenarios.csv", "-j", "2",
               "--report", "-o", "label=swept")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert seen(proj / "runs/ok/a")["config"] == {"n": 5, "label": "swept", "model": {"alpha": 0.2}}
    assert '"base":"./ok/","reports":["ok.html"]' in (proj / "runs" / "index.html").read_text()  # --report
    assert seen(proj / "runs/ok/b")["config"] == {"n": 6, "label": "swept", "model": {"alpha": 0.1}}


def test_sweep_grid_takes_every_combination(proj: Path) -> None:
    """Two --grid options give their cartesian product; values parse as JSON, names show what varies."""
    done = cli("sweep", "flow/ok.py", "--grid", "n=1,2", "--grid", "label=x,[1,2]", "--no-html")
    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(p.name for p in (proj / "runs" / "ok").iterdir() if not p.name.startswith("."))
    assert names == sorted(["n=1,label=x", "n=1,label=[1,2]", "n=2,label=x", "n=2,label=[1,2]"])
    assert seen(proj / "runs/ok/n=2,label=[1,2]")["config"] == {"n": 2, "label": [1, 2]}
    listed = cli("sweep", "flow/ok.py", "--grid", "n=[1,2]", "--grid", "label=x,[1,2]", "--dry-run")
    assert listed.stdout.count(" skip ") == 4
    quoted = cli("sweep", "flow/ok.py", "--grid", 'city=Val d\'Or,"Oslo, Norway",Quebec', "--dry-run")
    assert [line.split("  ")[0] for line in quoted.stdout.splitlines()[2:]] == [
        "city=Val_d'Or", "city=Oslo,_Norway", "city=Quebec"]  # fmt: skip


def test_sweep_named_table_times_grid_names_each_combination(proj: Path) -> None:
    """A named table times a grid: each instance is the row's name plus the grid values."""
    (proj / "named.csv").write_text("instance_name,n\nnorth,1\nsouth,2\n")
    done = cli("sweep", "flow/ok.py", "--table", "named.csv", "--grid", "label=a,b", "--dry-run")
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()[2:]]
    assert names == ["north,label=a", "north,label=b", "south,label=a", "south,label=b"]


def test_sweep_dry_run_against_a_partly_run_table(proj: Path) -> None:
    """--dry-run lists every instance with what would run and why, and runs nothing."""
    table = pd.DataFrame({"instance_name": ["keep", "change"], "n": [1, 2]})
    table.to_csv(proj / "t.csv", index=False)
    assert cli("sweep", "flow/ok.py", "--table", "t.csv", "--no-html").returncode == 0
    before = listing(proj / "runs")
    pd.DataFrame({"instance_name": ["keep", "change", "added"], "n": [1, 3, 4]}).to_csv(
        proj / "t.csv", index=False
    )
    done = cli("sweep", "flow/ok.py", "--table", "t.csv", "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()[2:]}
    assert " skip " in lines["keep"] and "unchanged" in lines["keep"]
    assert " run " in lines["change"] and "config changed (n: 2 -> 3)" in lines["change"]
    assert " run " in lines["added"] and " new " in lines["added"]
    assert done.stdout.splitlines()[0] == "3 instances, 2 would run"
    assert listing(proj / "runs") == before


def test_sweep_reads_json_excel_and_parquet_tables(proj: Path) -> None:
    """JSON (a list of objects), .tsv, .xlsx and .parquet tables give the instances a CSV would."""
    rows = [{"instance_name": "x", "n": 7, "label": "a"}, {"instance_name": "y", "n": 8}]
    (proj / "t.json").write_text(json.dumps(rows))
    frame = pd.DataFrame(rows)
    frame.to_excel(proj / "t.xlsx", index=False)
    frame.to_parquet(proj / "t.parquet", index=False)
    frame.to_csv(proj / "t.tsv", sep="\t", index=False)
    for table in ("t.json", "t.tsv", "t.xlsx", "t.parquet"):
        done = cli("sweep", "flow/ok.py", "--table", table, "--dry-run")
        assert done.returncode == 0, done.stderr
        assert [line.split()[0] for line in done.stdout.splitlines()[2:]] == ["x", "y"], table
    done = cli("sweep", "flow/ok.py", "--table", "t.xlsx", "--no-html")
    assert done.returncode == 0, done.stderr
    assert seen(proj / "runs/ok/x")["config"] == {"n": 7, "label": "a"}
    assert seen(proj / "runs/ok/y")["config"] == {"n": 8}  # an empty cell is not given


def test_sweep_refuses_a_table_column_the_config_lacks_unless_new_keys(proj: Path) -> None:
    """A misspelt column is refused as -o and --grid are, naming the file and the closest key; --new-keys
    lets a table add keys, and status, rebuilding the configs, honours it."""
    (proj / "typo.csv").write_text("instance_name,nn,model.alhpa\na,2,0.3\n")
    refused = cli("sweep", "flow/ok.py", "--config", "config/ok.json", "--table", "typo.csv")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "table file 'typo.csv': columns 'nn' (did you mean 'n'?), 'model.alhpa' (did you mean " in (
        refused.stderr
    )
    assert "'model.alpha'" in refused.stderr and "config/ok.json" in refused.stderr
    assert "--new-keys" in refused.stderr and "Traceback" not in refused.stderr
    assert not (proj / "runs").exists()

    (proj / "added.csv").write_text("instance_name,n,extra\na,2,x\nb,3,y\n")
    args = ["sweep", "flow/ok.py", "--config", "config/ok.json", "--table", "added.csv", "--no-html"]
    assert cli(*args).returncode == 2 and not (proj / "runs").exists()
    done = cli(*args, "--new-keys")
    assert done.returncode == 0, done.stdout + done.stderr
    assert seen(proj / "runs/ok/b")["config"] == {"n": 3, "label": "base", "model": {"alpha": 0.1},
                                                  "extra": "y"}  # fmt: skip
    assert record(proj / "runs/ok/b")["config_source"]["new_keys"] is True
    status = {r["instance"]: r for r in json.loads(cli("status", "--json").stdout)}
    assert {k: (r["outdated"], r["reason"]) for k, r in status.items()} == {
        "a": (False, "up to date"),
        "b": (False, "up to date"),
    }


def test_sweep_refuses_a_ragged_csv_naming_the_line(proj: Path) -> None:
    """A row with more fields than the header: exit 2 naming the file and line, nothing run or written."""
    (proj / "ragged.csv").write_text("instance_name,n\na,1\nb,2,3\n")
    done = cli("sweep", "flow/ok.py", "--table", "ragged.csv")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "ragged.csv': line 3 has 3 fields but the header has 2 (instance_name, n)" in done.stderr
    assert not (proj / "runs").exists()


def test_run_without_instance_refuses_to_replace_another_configs_run(proj: Path) -> None:
    """Another -o value under the same implicit name is refused, writing nothing; --instance keeps both,
    --replace replaces; an edited config file with the same overrides re-runs as usual."""
    base = ["run", "flow/ok.py", "--config", "config/ok.json", "--no-html"]
    assert cli(*base, "-o", "n=3").returncode == 0
    before = listing(proj / "runs")
    refused = cli(*base, "-o", "n=5")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = refused.stderr
    assert "instance 'ok' (runs/ok/ok) holds the run of another config: n: 3 -> 5" in message
    assert "named after the config file 'config/ok.json'" in message
    assert "--instance n=5" in message and "--replace" in message
    assert cli(*base, "-o", "n=5", "--dry-run").returncode == 2
    assert listing(proj / "runs") == before

    assert cli(*base, "-o", "n=5", "--instance", "n=5").returncode == 0  # both kept
    assert seen(proj / "runs/ok/ok")["config"]["n"] == 3 and seen(proj / "runs/ok/n=5")["config"]["n"] == 5
    config = json.loads((proj / "config" / "ok.json").read_text())
    (proj / "config" / "ok.json").write_text(json.dumps({**config, "label": "edited"}))
    edited = cli(*base, "-o", "n=3")  # the same experiment, its file edited: re-runs as it always did
    assert edited.returncode == 0 and "config changed (label: base -> edited)" in edited.stdout
    replaced = cli(*base, "-o", "n=5", "--replace")
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert seen(proj / "runs/ok/ok")["config"] == {"n": 5, "label": "edited", "model": {"alpha": 0.1}}

    assert cli("run", "flow/ok.py", "--no-html").returncode == 0  # named default
    assert cli("run", "flow/ok.py", "--no-html", "-o", "n=2").returncode == 2
    again = cli("run", "flow/ok.py", "--no-html", "-o", "n=2", "--instance", "ok")  # named: runs
    assert again.returncode == 0 and "config changed" in again.stdout


def test_status_lists_instances_and_what_made_them_outdated(proj: Path) -> None:
    """status: a row per instance; a changed flow, config file or table row shows as outdated with why."""
    pd.DataFrame({"instance_name": ["a", "b"], "n": [1, 2]}).to_csv(proj / "t.csv", index=False)
    assert cli("sweep", "flow/ok.py", "--table", "t.csv", "--no-html").returncode == 0
    assert cli("run", "flow/ok.py", "--config", "config/ok.json", "--no-html").returncode == 0
    assert cli("run", "flow/broken.py", "--no-html").returncode == 1
    fresh = {r["instance"]: r for r in json.loads(cli("status", "--json").stdout)}
    assert {k: (r["status"], r["outdated"]) for k, r in fresh.items()} == {
        "a": ("success", False),
        "b": ("success", False),
        "ok": ("success", False),
        "default": ("failed", True),
    }
    assert "KeyError" in fresh["default"]["error"]

    pd.DataFrame({"instance_name": ["a", "b"], "n": [1, 5]}).to_csv(proj / "t.csv", index=False)
    (proj / "config" / "ok.json").write_text(json.dumps({"n": 1, "label": "new", "model": {"alpha": 0.1}}))
    later = {r["instance"]: r for r in json.loads(cli("status", "--json", "runs/ok").stdout)}
    assert later["a"]["outdated"] is False
    assert later["b"]["reason"] == "config changed (n: 2 -> 5)"
    assert later["ok"]["reason"] == "config changed (label: base -> new)"
    assert "default" not in later

    (proj / "t.csv").write_text(
        "instance_name,n\na,1\nb/c,2\n"
    )  # an unsafe name: those rows cannot be rebuilt
    spoiled = cli("status", "--json", "runs/ok")
    assert spoiled.returncode == 0, spoiled.stderr
    rows = {r["instance"]: r for r in json.loads(spoiled.stdout)}
    assert rows["a"]["outdated"] is True and "config cannot be rebuilt" in rows["a"]["reason"]
    assert rows["ok"]["outdated"] is True and rows["ok"]["reason"] == "config changed (label: base -> new)"
    pd.DataFrame({"instance_name": ["a", "b"], "n": [1, 5]}).to_csv(proj / "t.csv", index=False)

    (proj / "flow" / "ok.py").write_text((proj / "flow" / "ok.py").read_text() + "\n# edited\n")
    plain = cli("status")
    assert plain.returncode == 0 and "\x1b[" not in plain.stdout
    assert plain.stdout.splitlines()[0] == "4 instances: 3 success, 1 failed"
    row_a = next(line for line in plain.stdout.splitlines() if line.startswith("ok ") and " a " in line)
    assert " yes " in row_a and "flow changed (flow/ok.py)" in row_a
    only = cli("status", "--outdated", "--json")
    assert len(json.loads(only.stdout)) == 4


def test_status_without_runs_says_so(proj: Path) -> None:
    """status where nothing has run yet: a message and exit code 0; --json gives an empty list."""
    done = cli("status")
    assert done.returncode == 0 and "no instances" in done.stdout and "runs" in done.stdout
    assert json.loads(cli("status", "--json").stdout) == []


def test_status_shows_a_corrupt_record_as_unknown(proj: Path) -> None:
    """An instance directory whose run.json is corrupt is listed as unknown with a note, not a crash."""
    assert cli("run", "flow/ok.py", "--instance", "fine", "--no-html").returncode == 0
    broken = proj / "runs" / "ok" / "hurt"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    rows = {r["instance"]: r for r in json.loads(cli("status", "--json").stdout)}
    assert rows["hurt"]["status"] == "unknown" and rows["hurt"]["outdated"] is None
    assert "unreadable" in rows["hurt"]["reason"] and rows["fine"]["status"] == "success"


def test_status_on_a_terminal_draws_a_rich_table(proj: Path) -> None:
    """With a terminal attached, status prints a rich table (box drawing), not plain columns."""
    assert cli("run", "flow/ok.py", "--instance", "tty", "--no-html").returncode == 0
    code, text = run_in_terminal([sys.executable, "-m", "ductaflow", "status"], cwd=proj)
    assert code == 0, text
    assert "━" in text and "tty" in text and "success" in text


def test_why_explains_each_part_and_compares_with_the_last_success(proj: Path) -> None:
    """why: up to date part by part; then an input change; after a failure, the kept success is compared."""
    (proj / "data.csv").write_text("x\n1\n")
    args = ["run", "flow/ok.py", "--config", "config/ok.json", "--input", "data.csv", "--no-html"]
    assert cli(*args).returncode == 0
    fresh = cli("why", "runs/ok/ok")
    assert fresh.returncode == 0
    assert "up to date: nothing changed" in fresh.stdout and "data.csv unchanged" in fresh.stdout
    assert "flow/ok.py unchanged" in fresh.stdout

    (proj / "data.csv").write_text("x\n2\n")
    changed = json.loads(cli("why", "runs/ok/ok", "--json").stdout)
    assert changed["outdated"] is True and changed["reason"] == "input changed (data.csv)"

    assert cli(*args, "-o", 'n={"a": 1}', "--replace").returncode == 1  # n * 2 fails for a dict
    failed = cli("why", "runs/ok/ok").stdout
    assert "last error: TypeError" in failed
    assert "outdated, it would run again: last attempt failed; input changed (data.csv)" in failed
    assert "kept in runs/ok/.ductaflow/previous/ok" in failed


def test_new_scaffolds_a_project_whose_conductor_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """new: a project that `python conductor.py` runs at once; a second `new` into it is refused."""
    monkeypatch.chdir(tmp_path)
    made = cli("new", "study")
    assert made.returncode == 0, made.stderr
    study = tmp_path / "study"
    assert "runs/" in (study / ".gitignore").read_text().split()
    conducted = subprocess.run([sys.executable, "conductor.py"], cwd=study, capture_output=True, text=True,
                               timeout=300)  # fmt: skip
    assert conducted.returncode == 0, conducted.stdout + conducted.stderr
    for name in ("calm", "wild", "falling"):
        assert record(study / "runs" / "simulate" / name)["status"] == "success"
    monkeypatch.chdir(study)
    status = json.loads(cli("status", "--json").stdout)
    assert [r["outdated"] for r in status] == [False, False, False]
    config = json.loads((study / "config" / "simulate.json").read_text())
    (study / "config" / "simulate.json").write_text(json.dumps({**config, "n_steps": 20}))
    status = json.loads(cli("status", "--json").stdout)
    assert {r["reason"] for r in status} == {f"config changed (n_steps: {config['n_steps']} -> 20)"}

    command = [sys.executable, "flow/simulate.py", "--config", "config/simulate.json", "--output-dir",
               "runs/simulate/by_hand"]  # fmt: skip
    script = subprocess.run(command, cwd=study, capture_output=True, text=True, timeout=120)
    assert script.returncode == 0, script.stderr
    why = cli("why", "runs/simulate/by_hand")
    assert "flow/simulate.py unchanged" in why.stdout and "cannot tell" in why.stdout
    assert cli("open", "runs/simulate/by_hand").returncode == 0
    debug = json.loads((study / "runs/simulate/.debug-by_hand/debug_simulate.ipynb").read_text())
    injected = next(c for c in debug["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert "'n_steps': 20" in "".join(injected["source"])  # the script run's config, from config.json
    monkeypatch.chdir(tmp_path)
    refused = cli("new", "study")
    assert refused.returncode == 2 and "not an empty folder" in refused.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupting_a_run_exits_130_and_records_it(proj: Path, sig: signal.Signals) -> None:
    """Ctrl-C or SIGTERM while a flow runs: exit code 130, the instance recorded as interrupted."""
    proc = subprocess.Popen([sys.executable, "-m", "ductaflow", "run", "flow/slow.py", "--no-html"], cwd=proj,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    run_dir = proj / "runs" / "slow" / "default"
    deadline = time.monotonic() + 60
    while "first cell done" not in (
        (run_dir / "log.txt").read_text() if (run_dir / "log.txt").exists() else ""
    ):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert record(run_dir)["status"] == "interrupted"
