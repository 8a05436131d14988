"""A full disk: the instance is recorded failed with a clear error, nothing half-written stays, a rerun works.

The runs folder is a real tmpfs of a few MB, mounted in a private mount
namespace (``unshare -rm``) that lives as long as one shell script: the
script runs ductaflow, copies the runs folder out, frees space, runs again and
copies it out again, all inside the namespace. On a machine that does not
allow mounting (no user namespaces), the same scenario runs with
``RLIMIT_FSIZE`` on the writing processes, which makes writes past the limit
fail with EFBIG ("File too large"), a write error ductaflow treats like a full disk.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FILL = """\
# %% tags=["parameters"]
config = {}

# %%
import os
print("before the disk fills", flush=True)
if os.path.exists(config["flag"]):
    chunk = b"x" * 65536
    with open("filler.bin", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            print("the flow filled the disk:", exc.strerror, flush=True)

# %%
for i in range(2000):
    print(f"line {i} of output that the notebook and the log must hold " * 2)

# %%
with open("done.txt", "w") as fh:
    fh.write("finished")
"""


def _can_mount_tmpfs(tmp: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {tmp}"],
                           capture_output=True)  # fmt: skip
    return probe.returncode == 0


def _run_on_small_disk(project: Path, steps: str) -> str:
    """Run ``steps`` (shell) with ``runs/`` on a 4 MB disk; return which kind of disk it was.

    The flow fills whatever is left; the size only has to hold, once it is
    freed, three instances' outputs and the run index.
    """
    (project / "runs").mkdir()
    if _can_mount_tmpfs(project / "runs"):
        script = f"mount -t tmpfs -o size=4m tmpfs runs && {steps}"
        command, kind = ["unshare", "-rm", "sh", "-c", script], "tmpfs"
    else:  # no namespaces here: a file-size limit on the writing processes gives EFBIG instead
        command = ["sh", "-c", f"trap '' XFSZ; ulimit -f 4096; {steps}"]
        kind = "RLIMIT_FSIZE"
    subprocess.run(command, cwd=project, check=True, timeout=600)
    return kind


def _state(snapshot: Path) -> dict:
    """What a copy of the runs folder holds: records by instance, leftover temporary files."""
    records = {p.parent.name: json.loads(p.read_text()) for p in snapshot.glob("*/*/run.json")}
    leftovers = [str(p.relative_to(snapshot)) for p in snapshot.rglob("*")
                 if p.name.endswith(".tmp") or p.parent.name == "staging"]  # fmt: skip
    return {"records": records, "leftovers": leftovers}


@pytest.mark.parametrize("engine", ["fork", "kernel"])
def test_a_full_disk_fails_the_instance_clearly_and_a_rerun_completes(project, engine):
    """The flow fills the disk: failed with 'the disk is full', exit 1, one line, no temporary file left."""
    (project / "flow").mkdir()
    (project / "flow" / "fill.py").write_text(FILL)
    (project / "flag").write_text("")
    run = (f"{sys.executable} -m ductaflow run flow/fill.py -o flag={project / 'flag'} --instance a "
           f"--engine {engine}")  # fmt: skip
    steps = (
        textwrap.dedent(f"""\
        {run} > out1.txt 2> err1.txt; echo $? > code1.txt
        cp -a runs snap1
        rm flag
        {run} > out2.txt 2> err2.txt; echo $? > code2.txt
        cp -a runs snap2
    """)
        .replace("\n", "; ")
        .rstrip("; ")
    )
    kind = _run_on_small_disk(project, steps)

    said = (project / "out1.txt").read_text() + (project / "err1.txt").read_text()
    assert (project / "code1.txt").read_text().strip() == "1", said
    assert "Traceback" not in said, said
    assert "disk is full" in said, said
    first = _state(project / "snap1")
    assert first["leftovers"] == [], (kind, first["leftovers"])
    rec = first["records"]["a"]
    assert rec["status"] == "failed", (kind, rec)
    assert rec["error"]["name"] == "DiskFullError", (kind, rec["error"])
    assert "runs/fill" in rec["error"]["message"] and "free space" in rec["error"]["message"]

    err2 = (project / "err2.txt").read_text()
    assert (project / "code2.txt").read_text().strip() == "0", err2
    second = _state(project / "snap2")
    assert second["leftovers"] == []
    assert second["records"]["a"]["status"] == "success"
    run_dir = project / "snap2" / "fill" / "a"
    assert (run_dir / "done.txt").read_text() == "finished"
    notebook = json.loads((run_dir / "fill.ipynb").read_text())
    assert "line 1999 of output" in json.dumps(notebook)
    assert "line 1999 of output" in (run_dir / "log.txt").read_text()


def test_a_sweep_stops_starting_instances_once_the_disk_is_full(project):
    """Of three instances the first fills the disk: it fails, the others are not started; all run later."""
    (project / "flow").mkdir()
    (project / "flow" / "fill.py").write_text(FILL)
    (project / "flag").write_text("")
    (project / "table.csv").write_text("instance_name,flag\na,{0}\nb,{0}\nc,{0}\n".format(project / "flag"))
    sweep = f"{sys.executable} -m ductaflow sweep flow/fill.py --table table.csv -j 1"
    steps = (f"{sweep} > out1.txt 2> err1.txt; echo $? > code1.txt; cp -a runs snap1; rm flag; "
             f"{sweep} > out2.txt 2> err2.txt; echo $? > code2.txt; cp -a runs snap2")  # fmt: skip
    kind = _run_on_small_disk(project, steps)

    out1, err1 = (project / "out1.txt").read_text(), (project / "err1.txt").read_text()
    assert (project / "code1.txt").read_text().strip() == "1", out1 + err1
    assert "Traceback" not in out1 + err1
    assert "disk is full" in out1 + err1
    first = _state(project / "snap1")
    assert first["leftovers"] == [], (kind, first["leftovers"])
    assert first["records"]["a"]["status"] == "failed"
    assert set(first["records"]) == {"a"}, "b and c were not started on a full disk"
    assert (project / "code2.txt").read_text().strip() == "0", (project / "err2.txt").read_text()
    second = _state(project / "snap2")
    assert {name: r["status"] for name, r in second["records"].items()} == dict.fromkeys("abc", "success")
    assert second["leftovers"] == []
