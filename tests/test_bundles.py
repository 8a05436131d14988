"""Run bundles: real sweeps packed, unpacked in another checkout and skipped there; bad archives refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import ductaflow
from ductaflow import BundleError, unbundle
from ductaflow.cli import cli
from ductaflow.runrecord import read_record

FIT = """\
# %% tags=["parameters"]
config = {"x": 1}

# %%
import ductaflow
from shapes import scale

y = scale(config["x"]) + len(ductaflow.project_path("data/input.txt").read_text())
ductaflow.record(y=y)
open("out.txt", "w").write(str(y))
"""

SHAPES = "def scale(x):\n    return 10 * x\n"

SUMMARY = """\
# %% tags=["parameters"]
config = {"x": 1}

# %%
import ductaflow
ductaflow.record(z=config["x"] * 100)
"""

FRAGILE = """\
# %% tags=["parameters"]
config = {"x": 1}

# %%
if config["x"] == 2:
    raise ValueError("x=2 is refused")
"""

VERDICT = """\
# %% tags=["parameters"]
config = {"x": 1}

# %%
import ductaflow
fit = ductaflow.output_of("fit")
open("verdict.txt", "w").write("fit says " + (fit / "out.txt").read_text())
"""

STEPS = {"fit": ["data/input.txt"], "summary": [], "fragile": [], "verdict": []}
PACKED = [("fit", "x=1"), ("fit", "x=2"), ("fragile", "x=1"), ("summary", "x=1"), ("summary", "x=2"),
          ("verdict", "x=1"), ("verdict", "x=2")]  # fmt: skip


def _sweep(root: Path, step: str, **kwargs) -> dict[str, tuple[str, str]]:
    """Sweep ``step``'s flow over the project's table; return {instance: (status, reason)}."""
    frame = ductaflow.sweep(
        root / "flow" / f"{step}.py",
        root / "table.csv",
        inputs=STEPS[step],
        project_root=root,
        progress=False,
        export_html=False,
        **kwargs,
    )
    return {row.instance: (row.status, row.reason) for row in frame.itertuples()}


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Project A: four steps swept over a two-row table (fragile/x=2 fails, verdict reads fit), packed."""
    root = tmp_path_factory.mktemp("bundles") / "a"
    for folder in ("flow", "data"):
        (root / folder).mkdir(parents=True)
    (root / "ductaflow.toml").write_text("")
    (root / "table.csv").write_text("x\n1\n2\n")
    (root / "data" / "input.txt").write_text("four")
    (root / "flow" / "shapes.py").write_text(SHAPES)
    for step, text in (("fit", FIT), ("summary", SUMMARY), ("fragile", FRAGILE), ("verdict", VERDICT)):
        (root / "flow" / f"{step}.py").write_text(text)
    swept = {step: _sweep(root, step) for step in STEPS}
    assert swept["fragile"]["x=2"][0] == "failed" and swept["fit"]["x=2"][0] == "success", swept
    bundle = root.parent / "results.tar.gz"
    summary = ductaflow.pack_runs([root / "runs"], bundle)
    return SimpleNamespace(root=root, bundle=bundle, summary=summary)


def _checkout(source: Path, target: Path) -> Path:
    """A fresh checkout of ``source``'s code and data at ``target``: everything but its runs folder."""
    shutil.copytree(source, target, ignore=lambda folder, names: ["runs"] if Path(folder) == source else [])
    return target


def _tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a file's sha256, ``dir``, or where a link points (links not followed)."""
    found = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "link -> " + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_pack_holds_the_successes_their_sources_and_a_manifest_of_checksums(packed):
    """The bundle has each success's every file, the flows and module they name, checksums that hold."""
    summary = packed.summary
    assert summary["instances"] == 7 and summary["notes"] == []
    assert [(Path(d).relative_to(packed.root).as_posix(), why) for d, why in summary["skipped"]] == [
        ("runs/fragile/x=2", "its last attempt is failed: only successes are packed")
    ]
    with tarfile.open(packed.bundle) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
        for name in names:
            member = tar.getmember(name)
            assert member.isreg() and not name.startswith(("/", "..")), name
    listed = {
        f"runs/{i['step']}/{i['instance']}/{rel}": e
        for i in manifest["instances"]
        for rel, e in i["files"].items()
    } | {f"sources/{rel}": e for rel, e in manifest["sources"].items()}
    assert set(names) == set(listed) | {"manifest.json"}
    for step, name in PACKED:
        held = {n.split("/", 3)[3] for n in names if n.startswith(f"runs/{step}/{name}/")}
        assert held == {p.name for p in (packed.root / "runs" / step / name).iterdir()}
    assert set(manifest["sources"]) == {
        "flow/fit.py",
        "flow/shapes.py",
        "flow/summary.py",
        "flow/fragile.py",
        "flow/verdict.py",
        "table.csv",
    }
    out = packed.root / "runs" / "fit" / "x=1" / "out.txt"
    assert listed["runs/fit/x=1/out.txt"] == {
        "size": out.stat().st_size,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }
    entry = next(i for i in manifest["instances"] if (i["step"], i["instance"]) == ("fit", "x=1"))
    assert entry["fingerprint"] == read_record(out.parent)["fingerprint"] and entry["status"] == "success"
    assert set(manifest) == {
        "ductaflow_bundle",
        "ductaflow_version",
        "created_at",
        "host",
        "project_root",
        "runs_dir",
        "instances",
        "sources",
    }
    assert manifest["ductaflow_bundle"] == 1 and manifest["runs_dir"] == "runs"
    assert manifest["ductaflow_version"] == ductaflow.__version__
    assert [p.name for p in packed.bundle.parent.iterdir() if p.name.endswith(".partial")] == []


def test_unpacked_in_a_fresh_checkout_every_instance_is_up_to_date_and_skipped(packed, tmp_path):
    """Unpacked elsewhere, the instances read like A's with B's paths, and the same sweeps skip them all."""
    b = _checkout(packed.root, tmp_path / "b")
    result = ductaflow.unpack_runs(packed.bundle, project_root=b)
    assert [(i["step"], i["instance"], i["action"]) for i in result["instances"]] == [
        (s, n, "placed") for s, n in PACKED
    ]
    assert {s["state"] for s in result["sources"]} == {"same"} and result["runs_dir"] == b / "runs"
    status = ductaflow.check_instances([b / "runs"])
    assert status.outdated.tolist() == [False] * 7 and set(status.reason) == {"up to date"}
    for step in ("fit", "summary", "verdict"):
        assert _sweep(b, step) == {"x=1": ("skipped", "unchanged"), "x=2": ("skipped", "unchanged")}
        mine, theirs = ductaflow.collect(b / "runs" / step), ductaflow.collect(packed.root / "runs" / step)
        assert mine.drop(columns="run_dir").equals(theirs.drop(columns="run_dir"))
        assert all(Path(d).parent.parent == b / "runs" for d in mine.run_dir)
    record = read_record(b / "runs" / "fit" / "x=1")
    assert record["run_dir"] == str(b / "runs" / "fit" / "x=1") and record["project_root"] == str(b)
    assert record["unpacked"]["from"] == "results.tar.gz" and record["unpacked"]["packed_at"]
    assert not (b / "runs" / "fragile" / "x=2").exists()


def test_a_changed_flow_makes_exactly_its_instances_outdated(packed, tmp_path):
    """A flow edited in the checkout: its instances say `flow changed`, the other step's stay up to date."""
    b = _checkout(packed.root, tmp_path / "b")
    with open(b / "flow" / "summary.py", "a") as fh:
        fh.write("print('edited here')\n")
    result = ductaflow.unpack_runs(packed.bundle, project_root=b)
    assert {s["path"]: s["state"] for s in result["sources"]}["flow/summary.py"] == "differs"
    status = ductaflow.check_instances([b / "runs"])
    reasons = {f"{r.step}/{r.instance}": r.reason for r in status.itertuples()}
    assert reasons == {
        "fit/x=1": "up to date",
        "fit/x=2": "up to date",
        "fragile/x=1": "up to date",
        "summary/x=1": "flow changed (flow/summary.py)",
        "summary/x=2": "flow changed (flow/summary.py)",
        "verdict/x=1": "up to date",
        "verdict/x=2": "up to date",
    }
    why = CliRunner().invoke(cli, ["why", str(b / "runs" / "summary" / "x=1")])
    assert why.exit_code == 0 and "flow changed (flow/summary.py)" in why.stdout, why.output
    assert _sweep(b, "fit") == {"x=1": ("skipped", "unchanged"), "x=2": ("skipped", "unchanged")}
    assert {n: s for n, (s, _) in _sweep(b, "summary", dry_run=True).items()} == {
        "x=1": "pending",
        "x=2": "pending",
    }


def test_pack_notes_a_changed_source_and_an_upstream_left_out(packed, tmp_path):
    """Packing instances whose flow changed since, or whose upstream stays behind, says so to the user."""
    b = _checkout(packed.root, tmp_path / "b")
    ductaflow.unpack_runs(packed.bundle, project_root=b)
    with open(b / "flow" / "summary.py", "a") as fh:
        fh.write("# edited after the runs\n")
    summary = ductaflow.pack_runs([b / "runs" / "summary", b / "runs" / "verdict"], tmp_path / "two.tar.gz")
    assert summary["notes"] == [
        "flow/summary.py changed since summary/x=1, summary/x=2 ran: the bundle holds it as it is now, and "
        "they are outdated with it",
        "verdict/x=1 reads fit/x=1, which is not in the bundle: pack its step too for them to be up to date "
        "where they are unpacked",
        "verdict/x=2 reads fit/x=2, which is not in the bundle: pack its step too for them to be up to date "
        "where they are unpacked",
    ]
    c = _checkout(packed.root, tmp_path / "c")
    ductaflow.unpack_runs(tmp_path / "two.tar.gz", project_root=c)
    reasons = {
        f"{r.step}/{r.instance}": r.reason for r in ductaflow.check_instances([c / "runs"]).itertuples()
    }
    assert reasons["summary/x=1"] == "up to date"  # c holds the flow the instances ran
    assert reasons["verdict/x=1"] == "upstream fit/x=1 does not exist"


def test_unpacking_again_leaves_what_is_here_and_refuses_another_result_unless_replace(packed, tmp_path):
    """Same fingerprint: already here; another local success is kept, or replaced on request."""
    b = _checkout(packed.root, tmp_path / "b")
    ductaflow.unpack_runs(packed.bundle, project_root=b)
    again = ductaflow.unpack_runs(packed.bundle, project_root=b)
    assert {i["action"] for i in again["instances"]} == {"already here"}
    (b / "data" / "input.txt").write_text("eight chars")  # fit runs again here, with another result
    assert {s for s, _ in _sweep(b, "fit").values()} == {"success"}
    local = read_record(b / "runs" / "fit" / "x=1")["fingerprint"]
    before = _tree(tmp_path)
    with pytest.raises(BundleError) as refused:
        ductaflow.unpack_runs(packed.bundle, project_root=b)
    assert "2 of its 7 instances cannot be placed" in str(refused.value)
    assert "fit/x=1: it holds a success of another fingerprint, kept: add --replace" in str(refused.value)
    assert _tree(tmp_path) == before
    replaced = ductaflow.unpack_runs(packed.bundle, project_root=b, replace=True)
    assert [i["action"] for i in replaced["instances"]] == ["replaced"] * 2 + ["already here"] * 5
    record = read_record(b / "runs" / "fit" / "x=1")
    assert record["fingerprint"] != local and (b / "runs" / "fit" / "x=1" / "out.txt").read_text() == "14"
    assert ductaflow.check_instance(b / "runs" / "fit" / "x=1").reason == "input changed (data/input.txt)"
    upstream = "upstream fit/x=1 is out of date (input changed (data/input.txt))"  # the chain is named
    assert ductaflow.check_instance(b / "runs" / "verdict" / "x=1").reason == upstream


def test_missing_sources_are_written_only_when_asked_and_never_over_a_file(packed, tmp_path):
    """A flow the checkout lacks is reported; --with-sources writes it and leaves the other files alone."""
    b = _checkout(packed.root, tmp_path / "b")
    (b / "flow" / "summary.py").unlink()
    (b / "table.csv").write_text("x\n1\n2\n3\n")
    states = {s["path"]: s["state"] for s in ductaflow.unpack_runs(packed.bundle, project_root=b)["sources"]}
    assert (states["flow/summary.py"], states["table.csv"]) == ("missing", "differs")
    assert not (b / "flow" / "summary.py").exists()
    assert ductaflow.check_instance(b / "runs" / "summary" / "x=1").reason == "flow missing (flow/summary.py)"
    states = {
        s["path"]: s["state"]
        for s in ductaflow.unpack_runs(packed.bundle, project_root=b, with_sources=True)["sources"]
    }
    assert (states["flow/summary.py"], states["table.csv"]) == ("written", "differs")
    assert (b / "flow" / "summary.py").read_text() == SUMMARY
    assert (b / "table.csv").read_text() == "x\n1\n2\n3\n"
    assert ductaflow.check_instance(b / "runs" / "summary" / "x=1").reason == "up to date"


def _holding_lock(run_dir: Path) -> subprocess.Popen[str]:
    """Another process holding ``run_dir``'s instance lock until its stdin closes (returned once it holds)."""
    code = (
        "import sys\nfrom pathlib import Path\nfrom ductaflow.rundir import lock_instance\n"
        f"with lock_instance(Path({str(run_dir)!r})):\n"
        "    print('held', flush=True)\n    sys.stdin.read()\n"
    )
    pipe = subprocess.PIPE
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=pipe, stdout=pipe, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_an_instance_locked_by_another_process_is_left_out_of_a_pack_and_refuses_an_unpack(packed, tmp_path):
    """A running instance is never packed half written, and never placed over: its lock is respected."""
    holder = _holding_lock(packed.root / "runs" / "fit" / "x=1")
    try:
        summary = ductaflow.pack_runs([packed.root / "runs" / "fit"], tmp_path / "fit.tar.gz")
    finally:
        holder.communicate("")
    assert summary["instances"] == 1
    assert [(Path(d).name, why) for d, why in summary["skipped"]] == [
        ("x=1", "running now: pack it once it has finished")
    ]
    b = _checkout(packed.root, tmp_path / "b")
    holder = _holding_lock(b / "runs" / "summary" / "x=2")
    try:
        before = _tree(tmp_path)
        with pytest.raises(BundleError, match=r"summary/x=2: an attempt is running there now: unpack again"):
            ductaflow.unpack_runs(packed.bundle, project_root=b)
        assert _tree(tmp_path) == before
    finally:
        holder.communicate("")
    assert len(ductaflow.unpack_runs(packed.bundle, project_root=b)["instances"]) == 7


def _members(bundle: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(bundle) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"evil") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def _listed_too(members, info_data):
    """``members`` with ``info_data`` added before the manifest, and listed in it as an instance file."""
    info, data = info_data
    *files, (manifest_info, manifest) = members
    content = json.loads(manifest)
    rel = info.name.split("/", 3)[3]
    content["instances"][0]["files"][rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    new = json.dumps(content).encode()
    manifest_info = tarfile.TarInfo("manifest.json")
    manifest_info.size = len(new)
    return [*files, (info, data), (manifest_info, new)]


def _after_instances(members, info_data):
    """``members`` with ``info_data`` added right after the last instance's files."""
    at = next(i for i, (info, _) in enumerate(members) if not info.name.startswith("runs/"))
    return [*members[:at], info_data, *members[at:]]


def _changed(members, name: str, change: Callable[[bytes], bytes]):
    out = []
    for info, data in members:
        if info.name == name:
            data = change(data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
        out.append((info, data))
    return out


def _in_manifest(members, change: Callable[[dict], None], *added: tuple[tarfile.TarInfo, bytes | None]):
    """``members`` with ``added`` before the manifest, and the manifest as ``change`` leaves it."""
    *files, (_, manifest) = members
    content = json.loads(manifest)
    change(content)
    return [*files, *added, _file("manifest.json", json.dumps(content).encode())]


CONFTEST = b"import os\nprint('conftest from a bundle runs in your pytest')\n"


def _source_named_by_no_record(content: dict) -> None:
    content["sources"]["conftest.py"] = {
        "size": len(CONFTEST),
        "sha256": hashlib.sha256(CONFTEST).hexdigest(),
    }


def _runs_dir(name: str) -> Callable[[dict], None]:
    return lambda content: content.update(runs_dir=name)


def _link_listed(name: str, target: str) -> Callable:
    """A symbolic link in verdict/x=2 (the last instance), listed in the manifest with its target."""
    link = _special(f"runs/verdict/x=2/{name}", tarfile.SYMTYPE, target)
    return lambda m, t: _in_manifest(
        _after_instances(m, link), lambda c: c["instances"][-1]["files"].update({name: {"link": target}})
    )


BAD = {
    "dotdot": (lambda m, t: [*m[:1], _file("../evil.txt"), *m[1:]], "is not a plain relative path"),
    "dotdot-inside": (lambda m, t: [_file("runs/fit/../../evil.txt"), *m], "is not a plain relative path"),
    "absolute": (lambda m, t: [_file(str(t / "evil.txt")), *m], "is not a plain relative path"),
    "symlink-out": (
        lambda m, t: [_special("runs/fit/x=1/data", tarfile.SYMTYPE, "../../../../.."), *m],
        "is a symbolic link",
    ),
    "hard-link": (
        lambda m, t: [*m[:-1], _special("runs/fit/x=1/passwd", tarfile.LNKTYPE, "/etc/passwd"), m[-1]],
        "is a hard link",
    ),
    "device": (lambda m, t: [_special("runs/fit/x=1/null", tarfile.CHRTYPE), *m], "device, FIFO"),
    "fifo": (lambda m, t: [_special("runs/fit/x=1/pipe", tarfile.FIFOTYPE), *m], "device, FIFO"),
    "outside-prefixes": (lambda m, t: [_file("flow/fit.py"), *m], "is outside runs/ and sources/"),
    "not-in-manifest": (
        lambda m, t: _after_instances(m, _file("runs/verdict/x=2/extra.txt")),
        "'runs/verdict/x=2/extra.txt' is not listed in its manifest.json",
    ),
    "instance-not-in-manifest": (
        lambda m, t: [*m[:-1], _file("runs/summary/x=3/run.json"), m[-1]],
        "'runs/summary/x=3/run.json' is not listed in its manifest.json",
    ),
    "instance-scattered": (
        lambda m, t: [*m[:-1], _file("runs/fit/x=1/late.txt"), m[-1]],
        "the files of instance fit/x=1 are not together",
    ),
    "checksum": (
        lambda m, t: _changed(m, "runs/fit/x=2/out.txt", lambda d: d[::-1] + b"0"),
        "'runs/fit/x=2/out.txt' does not match its size and sha256",
    ),
    "same-size-corruption": (
        lambda m, t: _changed(m, "runs/fit/x=2/config.json", lambda d: d.upper()),
        "'runs/fit/x=2/config.json' does not match its size and sha256",
    ),
    "listed-but-lacking": (
        lambda m, t: [x for x in m if x[0].name != "runs/summary/x=1/metrics.json"],
        "lists 'runs/summary/x=1/metrics.json', which the archive lacks",
    ),
    "no-manifest": (lambda m, t: m[:-1], "holds no manifest.json"),
    "manifest-not-json": (lambda m, t: _changed(m, "manifest.json", lambda d: d[:-20]), "is not JSON"),
    "newer-format": (
        lambda m, t: _changed(
            m, "manifest.json", lambda d: d.replace(b'"ductaflow_bundle": 1', b'"ductaflow_bundle": 9')
        ),
        "packed by a newer ductaflow",
    ),
    "listed-link-file": (
        lambda m, t: _listed_too(m, _file("runs/fit/x=1/sub/../../../x=2/out.txt")),
        "is not a plain relative path",
    ),
    "duplicate": (lambda m, t: [*m[:-1], _file("runs/fit/x=1/out.txt", b"99"), m[-1]], "appears twice"),
    "source-named-by-no-record": (
        lambda m, t: _in_manifest(m, _source_named_by_no_record, _file("sources/conftest.py", CONFTEST)),
        "lists the source 'conftest.py', which no record in the bundle names",
    ),
    "no-sources-listed": (
        lambda m, t: _in_manifest(m, lambda manifest: manifest.pop("sources")),
        "is not listed in its manifest.json",
    ),
    "instance-without-fingerprint": (
        lambda m, t: _in_manifest(m, lambda manifest: manifest["instances"][0].pop("fingerprint")),
        "has no fingerprint",
    ),
    "runs-dir-in-git": (
        lambda m, t: _in_manifest(m, _runs_dir(".git/ductaflow-runs")),
        "inside a hidden folder",
    ),
    "runs-dir-in-venv": (lambda m, t: _in_manifest(m, _runs_dir("env/.venv/runs")), "names the runs folder"),
    "runs-dir-absolute": (lambda m, t: _in_manifest(m, _runs_dir(str(t / "runs"))), "names the runs folder"),
    "runs-dir-escapes": (lambda m, t: _in_manifest(m, _runs_dir("../runs")), "names the runs folder"),
    "link-listed-pointing-out": (
        _link_listed("up", "../x=1/out.txt"),
        "'runs/verdict/x=2/up' is a symbolic link pointing outside its instance folder",
    ),
    "link-absolute": (_link_listed("passwd", "/etc/passwd"), "pointing outside its instance folder"),
    "link-in-sources": (
        lambda m, t: [*m[:-1], _special("sources/flow/x.py", tarfile.SYMTYPE, "fit.py"), m[-1]],
        "is a symbolic link (to 'fit.py') outside an instance folder",
    ),
    "member-below-a-link": (
        lambda m, t: _in_manifest(
            _after_instances(m, _special("runs/verdict/x=2/d", tarfile.SYMTYPE, ".")),
            lambda c: c["instances"][-1]["files"].update({"d": {"link": "."}}),
            _file("runs/verdict/x=2/d/config.json"),
        ),
        "lies below a symbolic link",
    ),
    "record-as-link": (
        lambda m, t: [_special("runs/aaa/x=1/run.json", tarfile.SYMTYPE, "config.json"), *m],
        "is a symbolic link, not a run record",
    ),
    "link-listed-as-file": (
        lambda m, t: _in_manifest(
            _after_instances(m, _special("runs/verdict/x=2/same", tarfile.SYMTYPE, "out.txt")),
            lambda c: c["instances"][-1]["files"].update({"same": {"size": 0, "sha256": "0" * 64}}),
        ),
        "'runs/verdict/x=2/same' does not match its target",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_archive_is_refused_whole_and_writes_nothing(packed, tmp_path, case):
    """Each unsafe or corrupt archive is refused with a message naming the fault; the target is unchanged."""
    mutate, message = BAD[case]
    members = _members(packed.bundle)
    assert members[-1][0].name == "manifest.json"
    archive = _write(tmp_path / "bad.tar.gz", mutate(members, tmp_path))
    b = _checkout(packed.root, tmp_path / "b")
    ductaflow.unpack_runs(packed.bundle, project_root=b, runs_dir="earlier")  # a target that holds runs
    before = _tree(tmp_path)
    with pytest.raises(BundleError, match=r"refused, nothing was written|newer ductaflow") as refused:
        ductaflow.unpack_runs(archive, project_root=b, with_sources=True)
    assert message in str(refused.value)
    assert _tree(tmp_path) == before
    assert not (tmp_path / "evil.txt").exists() and not Path("/evil.txt").exists()


def test_what_is_not_a_bundle_is_refused_with_the_fix(packed, tmp_path):
    """A missing file, a folder and a file that is not a tar.gz each get a message saying what to give."""
    (tmp_path / "notes.txt").write_text("not an archive")
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(packed.root / "table.csv", arcname="table.csv")
    for given, expected in (
        (tmp_path / "nope.tar.gz", "no such file"),
        (tmp_path, "it is a folder"),
        (tmp_path / "notes.txt", "is not a readable tar.gz"),
        (plain, "is not a readable tar.gz"),
    ):
        with pytest.raises(BundleError, match=expected):
            ductaflow.unpack_runs(given, project_root=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "plain.tar"]


def test_pack_writes_nothing_when_the_disk_fills(packed, tmp_path):
    """A write that finds no room (a file-size limit) leaves no bundle and no partial file, and says so."""
    out = tmp_path / "results.tar.gz"
    code = f"import ductaflow\nductaflow.pack_runs([{str(packed.root / 'runs')!r}], {str(out)!r})\n"
    done = subprocess.run(
        ["sh", "-c", f"trap '' XFSZ; ulimit -f 8; exec {sys.executable} -c \"$0\"", code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "BundleError: cannot write the bundle" in done.stderr, done.stderr
    assert "nothing was written there" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_pack_refuses_what_it_cannot_pack(packed, tmp_path):
    """No instance, two runs folders, or the bundle inside an instance: a clear error and no file."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no ductaflow instance under"):
        ductaflow.pack_runs([tmp_path / "empty"], tmp_path / "x.tar.gz")
    with pytest.raises(BundleError, match=r"nothing to pack .* its last attempt is failed"):
        ductaflow.pack_runs([packed.root / "runs" / "fragile" / "x=2"], tmp_path / "x.tar.gz")
    other = _checkout(packed.root, tmp_path / "b")
    ductaflow.unpack_runs(packed.bundle, project_root=other)
    with pytest.raises(BundleError, match="come from 2 runs folders"):
        ductaflow.pack_runs([packed.root / "runs" / "fit", other / "runs" / "fit"], tmp_path / "x.tar.gz")
    with pytest.raises(BundleError, match="inside an instance it packs"):
        ductaflow.pack_runs([other / "runs" / "fit" / "x=1"], other / "runs" / "fit" / "x=1" / "b.tar.gz")
    assert not list(tmp_path.glob("*.tar.gz")) and not list(tmp_path.glob(".*partial"))


def test_the_commands_end_to_end(packed, tmp_path, monkeypatch):
    """pack and unpack through the command line: summaries, exit codes 0 and 2, no traceback."""
    b = _checkout(packed.root, tmp_path / "b")
    monkeypatch.chdir(b)
    out = tmp_path / "cli.tar.gz"
    assert ductaflow.cli.run_cli(["pack", str(packed.root / "runs"), "-o", str(out)]) == 0
    done = CliRunner().invoke(cli, ["pack", str(packed.root / "runs"), "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert "left out " in done.stdout and "fragile/x=2: its last attempt is failed" in done.stdout
    assert f"wrote {out}: 7 instances, {packed.summary['files']} files, " in done.stdout
    (b / "flow" / "summary.py").write_text(SUMMARY + "# edited\n")
    done = CliRunner().invoke(cli, ["unpack", str(out)])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0].endswith("-> runs: 7 placed")
    assert any(line.split()[:3] == ["fit/x=1", "placed", "up"] for line in lines), done.stdout
    assert any("summary/x=2" in line and "flow changed (flow/summary.py)" in line for line in lines)
    assert "source flow/summary.py: differs from the bundle's" in done.stdout
    done = CliRunner().invoke(cli, ["unpack", str(out)])
    assert done.exit_code == 0 and done.stdout.splitlines()[0].endswith("7 already here"), done.output
    bad = _write(tmp_path / "bad.tar.gz", [_file("../evil.txt"), *_members(out)])
    failing = [
        (["unpack", str(bad)], "is refused, nothing was written: member '../evil.txt'"),
        (["unpack", str(tmp_path / "nope.tar.gz")], "no such file"),
        (["pack", str(tmp_path / "nowhere"), "-o", "x.tar.gz"], "is not a directory"),
    ]
    for args, expected in failing:
        done = CliRunner().invoke(cli, args)
        assert done.exit_code == 2 and expected in done.stderr, (args, done.output)
        assert "Traceback" not in done.output


def _instances(runs: Path) -> dict[str, str]:
    """Every entry of the instance folders under ``runs`` (ductaflow's own state folders left aside)."""
    return {rel: what for rel, what in _tree(runs).items() if ".ductaflow" not in Path(rel).parts}


def _between_reading_and_placing(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]) -> None:
    """Run ``meanwhile`` once unpack_runs has read the bundle and compared each instance with its place,
    right before it places the first: the interleaving of two processes, made certain."""
    extract = unbundle._extract

    def interleaved(*args, **kwargs):
        meanwhile()
        return extract(*args, **kwargs)

    monkeypatch.setattr(unbundle, "_extract", interleaved)


def test_an_instance_placed_meanwhile_by_another_unpack_is_left_as_it_is(packed, tmp_path, monkeypatch):
    """Two unpacks racing: what the other process placed first stays, reported `already here`."""
    b = _checkout(packed.root, tmp_path / "b")
    seen = {}

    def other_process() -> None:
        code = f"import ductaflow\nductaflow.unpack_runs({str(packed.bundle)!r}, project_root={str(b)!r})\n"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
        seen["tree"] = _instances(b / "runs")

    _between_reading_and_placing(monkeypatch, other_process)
    result = ductaflow.unpack_runs(packed.bundle, project_root=b)
    assert [i["action"] for i in result["instances"]] == ["already here"] * 7
    assert _instances(b / "runs") == seen["tree"]  # records and files as the other process placed them
    assert not list((b / "runs").glob("*/.ductaflow/previous/*"))


def test_a_place_taken_meanwhile_by_another_result_stops_the_unpack_there(packed, tmp_path, monkeypatch):
    """A success of another fingerprint found under the lock refuses that instance and those after it;
    the message says which were placed before."""
    b = _checkout(packed.root, tmp_path / "b")
    seen = {}

    def local_sweep() -> None:
        (b / "flow" / "summary.py").write_text(SUMMARY + "# edited here\n")
        assert {s for s, _ in _sweep(b, "summary").values()} == {"success"}
        seen["summary"] = _tree(b / "runs" / "summary")

    _between_reading_and_placing(monkeypatch, local_sweep)
    with pytest.raises(BundleError) as refused:
        ductaflow.unpack_runs(packed.bundle, project_root=b, with_sources=True)
    message = str(refused.value)
    assert "summary/x=1 cannot be placed in runs/summary/x=1 after all" in message.replace(str(b) + "/", "")
    assert "it holds a success of another fingerprint, kept: add --replace" in message
    assert "3 of the 7 to place were placed before it (fit/x=1, fit/x=2, fragile/x=1)" in message
    assert "it and the instances after it were not, and no source was written" in message
    assert _tree(b / "runs" / "summary") == seen["summary"]
    assert not (b / "runs" / "verdict").exists()
    assert [read_record(b / "runs" / s / n)["unpacked"]["from"] for s, n in PACKED[:3]] == [
        "results.tar.gz"
    ] * 3


def test_a_source_is_checked_again_as_it_is_written(packed, tmp_path, monkeypatch):
    """--with-sources writes a source only as the manifest gives it: one changed since is refused."""
    b = _checkout(packed.root, tmp_path / "b")
    (b / "flow" / "summary.py").unlink()
    archive = tmp_path / "changing.tar.gz"
    shutil.copy(packed.bundle, archive)
    tampered = _changed(_members(archive), "sources/flow/summary.py", lambda d: d.replace(b"100", b"999"))
    _between_reading_and_placing(monkeypatch, lambda: _write(archive, tampered))
    with pytest.raises(BundleError, match=r"source flow/summary.py did not read as its manifest says"):
        ductaflow.unpack_runs(archive, project_root=b, with_sources=True)
    assert not (b / "flow" / "summary.py").exists()


def test_a_crafted_bundle_writing_a_conftest_into_git_is_refused_and_writes_nothing(packed, tmp_path):
    """A source no record names (a conftest.py), a runs folder under .git: refused whole, nothing written."""
    evil = _in_manifest(
        _members(packed.bundle),
        lambda c: (_source_named_by_no_record(c), _runs_dir(".git/ductaflow-runs")(c)),
        _file("sources/conftest.py", CONFTEST),
    )
    archive = _write(tmp_path / "evil.tar.gz", evil)
    b = _checkout(packed.root, tmp_path / "b")
    before = _tree(tmp_path)
    with pytest.raises(
        BundleError, match=r"refused, nothing was written: .* runs folder '.git/ductaflow-runs'"
    ):
        ductaflow.unpack_runs(archive, project_root=b, with_sources=True)
    only_sources = _in_manifest(
        _members(packed.bundle), _source_named_by_no_record, _file("sources/conftest.py", CONFTEST)
    )
    with pytest.raises(BundleError, match=r"refused, nothing was written: .* 'conftest.py', which no record"):
        ductaflow.unpack_runs(
            _write(tmp_path / "evil2.tar.gz", only_sources), project_root=b, with_sources=True
        )
    (tmp_path / "evil2.tar.gz").unlink()
    assert _tree(tmp_path) == before and not (b / "conftest.py").exists() and not (b / ".git").exists()


def test_links_inside_an_instance_travel_as_links_and_links_out_are_left_out(packed, tmp_path):
    """A link to a file or folder of its own instance is packed and unpacked as a link; one out is noted."""
    b = _checkout(packed.root, tmp_path / "b")
    ductaflow.unpack_runs(packed.bundle, project_root=b)
    fit = b / "runs" / "fit" / "x=1"
    (fit / "sub").mkdir()
    (fit / "sub" / "latest.txt").symlink_to("../out.txt")
    (fit / "here").symlink_to("sub")
    (fit / "table").symlink_to(b / "table.csv")
    (fit / "sibling").symlink_to("../x=2/out.txt")
    summary = ductaflow.pack_runs([b / "runs" / "fit"], tmp_path / "links.tar.gz")
    assert sorted(summary["notes"]) == [
        f"{fit / name} is a link pointing outside its instance folder: not packed"
        for name in ("sibling", "table")
    ]
    with tarfile.open(tmp_path / "links.tar.gz") as tar:
        links = {m.name: m.linkname for m in tar.getmembers() if m.issym()}
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert links == {"runs/fit/x=1/here": "sub", "runs/fit/x=1/sub/latest.txt": "../out.txt"}
    files = manifest["instances"][0]["files"]
    assert (files["here"], files["sub/latest.txt"]) == ({"link": "sub"}, {"link": "../out.txt"})
    c = _checkout(packed.root, tmp_path / "c")
    ductaflow.unpack_runs(tmp_path / "links.tar.gz", project_root=c)
    placed = c / "runs" / "fit" / "x=1"
    assert (
        os.readlink(placed / "here") == "sub" and os.readlink(placed / "sub" / "latest.txt") == "../out.txt"
    )
    assert (placed / "here" / "latest.txt").read_text() == (placed / "out.txt").read_text() == "14"
    assert not (placed / "table").exists() and not (placed / "sibling").is_symlink()
    assert ductaflow.check_instance(placed).reason == "up to date"


def test_pack_notes_a_source_outside_the_project(packed, tmp_path):
    """A table outside the project is left out of the bundle, and pack says which and why."""
    b = _checkout(packed.root, tmp_path / "b")
    (tmp_path / "elsewhere.csv").write_text("x\n3\n")
    ductaflow.sweep(b / "flow" / "summary.py", tmp_path / "elsewhere.csv", project_root=b, progress=False)
    summary = ductaflow.pack_runs([b / "runs"], tmp_path / "out.tar.gz")
    assert summary["notes"] == [
        f"{tmp_path / 'elsewhere.csv'} is not in the bundle: summary/x=3 names it outside the project, where "
        "another checkout does not hold it"
    ]
    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        assert set(json.loads(tar.extractfile("manifest.json").read())["sources"]) == {"flow/summary.py"}


def test_pack_removes_the_partial_bundle_a_killed_pack_left(packed, tmp_path):
    """A pack killed (SIGKILL) leaves its partial file; the next pack to the same output removes it, not
    the partial of a pack still running."""
    out = tmp_path / "results.tar.gz"
    code = (
        "import os, signal\nimport ductaflow.bundle as bundle\n"
        "bundle._add_bytes = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # before the manifest\n"
        f"bundle.pack_runs([{str(packed.root / 'runs' / 'fit')!r}], {str(out)!r})\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert killed.returncode == -9
    partials = list(tmp_path.glob(".results.tar.gz.*.partial"))
    assert len(partials) == 1
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    running = tmp_path / f".results.tar.gz.{alive.pid}@{socket.gethostname()}.partial"
    elsewhere = tmp_path / f".results.tar.gz.{killed_pid(partials[0])}@another-host.partial"
    try:
        running.write_bytes(b"being written")
        elsewhere.write_bytes(b"being written on another host")
        ductaflow.pack_runs([packed.root / "runs" / "fit"], out)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, running.name, elsewhere.name])
    finally:
        alive.communicate(b"")


def killed_pid(partial: Path) -> int:
    """The pid in the name of a partial bundle (``.<name>.<pid>@<host>.partial``)."""
    return int(partial.name.split(".")[-2].split("@")[0])
