"""The recorded environment: every distribution of the kernel's Python, stored once per step, compared."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import record, run, tally
from test_cli import cli

import ductaflow
from ductaflow.environment import (
    ENVIRONMENT_NAME,
    Environment,
    environment_changes,
    environment_detail,
    kernel_environment,
    read_environment,
    shortened,
)

ENV_FLOW = """\
# %% tags=["parameters"]
config = {}

# %%
import json
import os
from importlib import metadata

try:
    fake = metadata.version("ductaflow-fake-pkg")
except metadata.PackageNotFoundError:
    fake = None
with open(config["tally"], "a") as fh:
    fh.write(os.path.basename(os.getcwd()) + "\\n")
with open("seen.json", "w") as fh:
    json.dump({"fake": fake, "ipykernel": metadata.version("ipykernel")}, fh)
if config.get("write_environment"):
    with open("environment.json", "w") as fh:
        fh.write("the flow's own")
"""

#: What the venv's Python reports with importlib.metadata, names normalised, the first found winning.
PROBE = """
import json, re
from importlib import metadata
found = {}
for dist in metadata.distributions():
    found.setdefault(re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(), dist.version)
print(json.dumps(found))
"""


@pytest.fixture
def env_flow(project: Path) -> Path:
    """flow/envflow.py: notes each execution, saves the fake package's version the kernel sees."""
    (project / "flow").mkdir()
    path = project / "flow" / "envflow.py"
    path.write_text(ENV_FLOW)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_environment_json_lists_what_the_venv_python_reports(project: Path, env_flow: Path, tmp_path: Path):
    """environment.json holds every distribution importlib.metadata reports in a fresh venv Python."""
    frame = run(env_flow, [{"instance_name": "a"}, {"instance_name": "b"}], project)
    assert list(frame.status) == ["success", "success"]
    run_dir = project / "runs" / "envflow" / "a"
    environment = json.loads((run_dir / ENVIRONMENT_NAME).read_text())
    fresh = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True,
                           check=True)  # fmt: skip
    assert environment["distributions"] == json.loads(fresh.stdout)
    seen = json.loads((run_dir / "seen.json").read_text())
    assert environment["distributions"]["ipykernel"] == seen["ipykernel"]  # as the flow's kernel saw it
    asked = "[platform.python_version(), sys.executable, os.cpu_count(), platform.machine()]"
    code = f"import json, os, platform, sys; print(json.dumps({asked}))"
    facts = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert [environment[k] for k in ("python_version", "python_executable", "cpu_count", "machine")] == (
        json.loads(facts.stdout)
    )
    summary = record(run_dir)["environment"]
    assert summary == {"sha256": _sha(run_dir / ENVIRONMENT_NAME), "file": ENVIRONMENT_NAME,
                       "python": environment["python_version"],
                       "packages": len(environment["distributions"])}  # fmt: skip
    assert read_environment(run_dir) == environment
    assert record(run_dir)["versions"]["python"] == environment["python_version"]  # kept beside it


def test_instances_of_a_step_share_one_stored_file(project: Path, env_flow: Path):
    """Each instance's environment.json is a hard link to the step's one copy, named by its digest."""
    run(env_flow, [{"instance_name": "a"}, {"instance_name": "b"}], project, engine="kernel")
    step = project / "runs" / "envflow"
    digest = record(step / "a")["environment"]["sha256"]
    stored = step / ".ductaflow" / "environments" / f"{digest}.json"
    a, b, kept = (os.stat(p) for p in (step / "a" / ENVIRONMENT_NAME, step / "b" / ENVIRONMENT_NAME, stored))
    assert a.st_ino == b.st_ino == kept.st_ino
    assert kept.st_nlink >= 3
    assert _sha(stored) == digest == record(step / "b")["environment"]["sha256"]
    assert list(stored.parent.iterdir()) == [stored]
    assert ductaflow.check_instances(["runs"]).instance.tolist() == ["a", "b"]  # runs/ is read as before


def test_a_store_that_cannot_be_written_gives_a_copy(project: Path, env_flow: Path):
    """Where the step's store cannot be made, each instance gets its own copy of the same content."""
    store = project / "runs" / "envflow" / ".ductaflow" / "environments"
    store.parent.mkdir(parents=True)
    store.write_text("a file where the store's folder would go")
    run(env_flow, [{"instance_name": "a"}, {"instance_name": "b"}], project)
    for name in "ab":
        path = project / "runs" / "envflow" / name / ENVIRONMENT_NAME
        assert os.stat(path).st_nlink == 1
        assert _sha(path) == record(path.parent)["environment"]["sha256"]


def test_a_flow_writing_environment_json_keeps_its_file_aside(project: Path, env_flow: Path):
    """A flow's own environment.json becomes environment.flow.json; every instance's file stays right."""
    run(env_flow, [{"instance_name": "a"}], project)
    frame = run(env_flow, [{"instance_name": "b", "write_environment": True}], project)
    step = project / "runs" / "envflow"
    if os.geteuid() != 0:  # the linked file is read-only: the flow is told so
        assert frame.status[0] == "failed" and "PermissionError" in frame.error[0]
        return
    assert frame.status[0] == "success"
    assert (step / "b" / "environment.flow.json").read_text() == "the flow's own"
    assert (
        "the flow wrote environment.json, a name ductaflow uses: kept as environment.flow.json"
        in (record(step / "b")["warnings"])
    )
    for name in "ab":
        assert _sha(step / name / ENVIRONMENT_NAME) == record(step / name)["environment"]["sha256"]


def _kernel_with_extra_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install kernelspec 'envtest': this venv's Python with a folder on its PYTHONPATH; return the folder."""
    extra = tmp_path / "extra"
    extra.mkdir()
    spec = tmp_path / "jupyter" / "kernels" / "envtest"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernelspec = {
        "argv": argv,
        "display_name": "envtest",
        "language": "python",
        "env": {"PYTHONPATH": str(extra)},
    }
    (spec / "kernel.json").write_text(json.dumps(kernelspec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return extra


def _install_fake(folder: Path) -> None:
    """A distribution's metadata, as pip leaves it: importlib.metadata finds it along the search path."""
    info = folder / "ductaflow_fake_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ductaflow_fake_pkg\nVersion: 1.0\n\nText.\n")


def test_a_changed_environment_is_reported_and_reruns_only_when_asked(
    project: Path, env_flow: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A package added to the kernel's path: why names it, a plain sweep skips, --rerun-on-env-change runs."""
    extra = _kernel_with_extra_path(tmp_path, monkeypatch)
    sweep = ["sweep", "flow/envflow.py", "--grid", "n=1,2", "-o", f"tally={project / 'tally.txt'}",
             "--kernel", "envtest", "--no-html"]  # fmt: skip
    assert cli(*sweep).returncode == 0
    step = project / "runs" / "envflow"
    before = record(step / "n=1")["environment"]["sha256"]
    assert "ductaflow-fake-pkg" not in read_environment(step / "n=1")["distributions"]
    _install_fake(extra)

    said = cli("why", "runs/envflow/n=1")
    assert said.returncode == 0, said.stderr
    assert "packages changed (ductaflow-fake-pkg 1.0 added)" in said.stdout
    assert "up to date" in said.stdout  # shown, not a reason to run
    assert cli(*sweep).returncode == 0
    assert sorted(tally(project)) == ["n=1", "n=2"]  # skipped: the environment alone does not re-run

    plan = cli(*sweep, "--rerun-on-env-change", "--dry-run")
    assert "environment changed (ductaflow-fake-pkg 1.0 added)" in plan.stdout
    assert cli(*sweep, "--rerun-on-env-change").returncode == 0
    assert sorted(tally(project)) == ["n=1", "n=1", "n=2", "n=2"]
    for name in ("n=1", "n=2"):
        assert record(step / name)["reason"] == "environment changed (ductaflow-fake-pkg 1.0 added)"
        assert json.loads((step / name / "seen.json").read_text())["fake"] == "1.0"  # the kernel had it
        assert read_environment(step / name)["distributions"]["ductaflow-fake-pkg"] == "1.0"
    assert record(step / "n=1")["environment"]["sha256"] != before
    assert len(list((step / ".ductaflow" / "environments").iterdir())) == 2
    assert cli(*sweep, "--rerun-on-env-change").returncode == 0
    assert len(tally(project)) == 4  # the same environment again: up to date
    assert "packages unchanged" in cli("why", "runs/envflow/n=2").stdout


def test_a_record_without_environment_reruns_only_when_asked(project: Path, tally_flow: Path):
    """A success recorded before environments were (no 'environment' field) runs again with the option."""
    run(tally_flow, [{"instance_name": "a"}], project)
    run_dir = project / "runs" / "tally" / "a"
    older = record(run_dir)
    del older["environment"]
    (run_dir / "run.json").write_text(json.dumps(older))
    assert run(tally_flow, [{"instance_name": "a"}], project).status[0] == "skipped"
    frame = run(tally_flow, [{"instance_name": "a"}], project, rerun_on_env_change=True)
    assert (frame.status[0], frame.reason[0]) == ("success", "environment not recorded")
    assert tally(project) == ["a", "a"]
    assert "sha256" in record(run_dir)["environment"]


def test_script_mode_records_the_environment(project: Path, flows: Path):
    """python flow.py --output-dir DIR links the same environment.json as ductaflow's own runs."""
    (project / "config").mkdir()
    (project / "config" / "header.json").write_text("{}")
    (project / "flow").mkdir()
    script = project / "flow" / "header.py"
    script.write_text((flows / "header.py").read_text())
    for name in ("a", "b"):
        done = subprocess.run([sys.executable, str(script), "--output-dir", f"runs/header/{name}"],
                              cwd=project, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
    step = project / "runs" / "header"
    assert os.stat(step / "a" / ENVIRONMENT_NAME).st_ino == os.stat(step / "b" / ENVIRONMENT_NAME).st_ino
    assert record(step / "a")["environment"]["sha256"] == _sha(step / "a" / ENVIRONMENT_NAME)
    current = kernel_environment()
    assert isinstance(current, Environment)
    assert read_environment(step / "a")["distributions"] == current.data["distributions"]


def test_a_script_writing_environment_json_keeps_its_file_aside(project: Path, flows: Path):
    """In script mode too, a flow's own environment.json becomes environment.flow.json, the record's stays."""
    (project / "config").mkdir()
    (project / "config" / "header.json").write_text("{}")
    (project / "flow").mkdir()
    script = project / "flow" / "header.py"
    script.write_text((flows / "header.py").read_text() + '\nopen("environment.json", "w").write("mine")\n')
    done = subprocess.run([sys.executable, str(script), "--output-dir", "runs/header/a"],
                          cwd=project, capture_output=True, text=True, timeout=120)  # fmt: skip
    run_dir = project / "runs" / "header" / "a"
    if os.geteuid() != 0:  # the linked file is read-only: the script is told so
        assert done.returncode != 0 and "PermissionError" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    assert (run_dir / "environment.flow.json").read_text() == "mine"
    assert _sha(run_dir / ENVIRONMENT_NAME) == record(run_dir)["environment"]["sha256"]
    assert any("kept as environment.flow.json" in w for w in record(run_dir)["warnings"])


def test_a_full_disk_while_storing_is_a_no_room_error(tmp_path: Path):
    """Storing an environment where writes find no room raises that error, leaving no file, not a copy."""
    code = textwrap.dedent(f"""
        import errno, resource, signal
        from pathlib import Path
        from ductaflow.environment import kernel_environment, store_environment
        environment = kernel_environment()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        try:
            store_environment(environment, Path({str(tmp_path)!r}), Path({str(tmp_path / "store")!r}))
        except OSError as exc:
            print("raised", errno.errorcode[exc.errno])
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["raised", "EFBIG"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["store"]


def test_changes_name_packages_first_then_python_and_the_machine():
    """environment_changes lists packages changed, added, removed, then Python; reasons cut at three."""
    old = {"python_version": "3.11.7", "cpu_count": 2,
           "distributions": {"numpy": "1.26.4", "pytz": "2024.1", "a": "1", "b": "1"}}  # fmt: skip
    new = {"python_version": "3.12.1", "cpu_count": 8,
           "distributions": {"numpy": "2.0.0", "scipy": "1.13.0", "a": "2", "b": "2"}}  # fmt: skip
    assert environment_changes(old, new) == ["a 1 -> 2", "b 1 -> 2", "numpy 1.26.4 -> 2.0.0", "pytz removed",
                                             "scipy 1.13.0 added", "python 3.11.7 -> 3.12.1",
                                             "cpu_count 2 -> 8"]  # fmt: skip
    assert environment_changes(old, old) == []
    assert shortened(environment_changes(old, new)) == "a 1 -> 2, b 1 -> 2, numpy 1.26.4 -> 2.0.0, +4 more"


def test_why_detail_for_each_case(tmp_path: Path):
    """environment_detail: unchanged, packages changed, only the machine changed, not recorded, not known."""
    old = Environment.of({"python_version": "3.11.7", "cpu_count": 2, "distributions": {"numpy": "1.26.4"}})
    (tmp_path / ENVIRONMENT_NAME).write_bytes(old.content)
    recorded = {"environment": old.summary}
    assert environment_detail(recorded, tmp_path, old) == "packages unchanged"
    upgraded = Environment.of({**old.data, "distributions": {"numpy": "2.0.0"}})
    assert environment_detail(recorded, tmp_path, upgraded) == "packages changed (numpy 1.26.4 -> 2.0.0)"
    bigger = Environment.of({**old.data, "cpu_count": 8})
    assert environment_detail(recorded, tmp_path, bigger) == "environment changed (cpu_count 2 -> 8)"
    assert environment_detail({}, tmp_path, old) == "environment not recorded"
    said = environment_detail(recorded, tmp_path, "kernel 'ir' runs R, not Python")
    assert said == "environment not compared: kernel 'ir' runs R, not Python"


def test_a_kernel_that_is_not_python_or_not_installed_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """kernel_environment of an R kernelspec or a missing kernel is a sentence, not an environment."""
    spec = tmp_path / "jupyter" / "kernels" / "rlang"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["R", "--slave"], "display_name": "R",
                                                  "language": "R"}))  # fmt: skip
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    assert kernel_environment("rlang") == "kernel 'rlang' runs R, not Python"
    assert kernel_environment("no-such-kernel") == "kernel 'no-such-kernel' is not installed"
