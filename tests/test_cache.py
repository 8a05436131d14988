"""The shared cache: checkouts restore each other's successes by fingerprint, on a folder or fsspec memory."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from conftest import record

import ductaflow
from ductaflow.cache import FORMAT, MARKER, open_cache

FLOW = """\
# %% tags=["parameters"]
config = {"x": 1}
# %%
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
import ductaflow
if config["x"] < 0:
    raise ValueError("x must not be negative")
y = config["x"] ** 2
ductaflow.record(y=y, series=[1, 2, y])
Path("out.json").write_text(json.dumps({"y": y, "ran_in": str(Path.cwd())}))
"""
GRID = {"x": [1, 2, 3]}


@pytest.fixture(params=["folder", "memory"])
def cache(request, tmp_path: Path) -> str:
    """A cache location: a local folder, or fsspec's in-memory filesystem (one per test)."""
    if request.param == "folder":
        yield str(tmp_path / "shared-cache")
        return
    url = f"memory://ductaflow-test-{uuid.uuid4().hex}"
    yield url
    if open_cache(url).fs.exists(url):
        open_cache(url).fs.rm(url, recursive=True)


def checkout(tmp_path: Path, name: str, flow: str = FLOW) -> Path:
    """A project checkout of its own at ``tmp_path/name``, holding the flow ``flow/sq.py``."""
    root = tmp_path / name
    (root / "flow").mkdir(parents=True)
    (root / "flow" / "sq.py").write_text(flow)
    return root


def sweep(root: Path, cache: str | bool | None, grid=GRID, **kwargs):
    """``ductaflow.sweep`` of the flow in checkout ``root`` (a grid, so status can check configs)."""
    kwargs.setdefault("progress", False)
    return ductaflow.sweep(root / "flow" / "sq.py", grid=grid, project_root=root, cache=cache, **kwargs)


def entries(cache: str) -> dict[str, dict]:
    """Every published entry's marker in ``cache``, by fingerprint."""
    fs = open_cache(cache).fs
    root = open_cache(cache).root
    found = fs.glob(f"{root}/{FORMAT}/*/*/*/*/{MARKER}")
    return {path.split("/")[-4]: json.loads(fs.cat_file(path)) for path in found}


def archive_of(cache: str, fingerprint: str) -> str:
    """The key of the archive ``fingerprint``'s marker names."""
    marker = entries(cache)[fingerprint]
    folder = open_cache(cache).folder(fingerprint, marker["step"], marker["instance"])
    return f"{folder}/{marker['archive']}"


def ran_in(run_dir: Path) -> str:
    """The instance folder the flow's own code ran in, as it wrote it."""
    return json.loads((run_dir / "out.json").read_text())["ran_in"]


def comparable(frame) -> list[dict]:
    """``collect``'s rows without what differs by place: the instance folder."""
    return frame.drop(columns=["run_dir"]).to_dict(orient="records")


def test_a_second_checkout_runs_nothing_the_first_finished_and_its_views_read_as_local(tmp_path, cache):
    """A second checkout restores every instance the first finished and runs only new ones;
    ``collect``, ``status``, ``why`` and the report read the restored instances like local ones."""
    first, second = checkout(tmp_path, "laptop"), checkout(tmp_path, "cluster")
    made = sweep(first, cache)
    assert list(made.reason) == ["new"] * 3
    assert len(entries(cache)) == 3  # each success pushed

    frame = sweep(second, cache)
    assert all(r.startswith("restored from cache (") for r in frame.reason), list(frame.reason)
    assert set(frame.status) == {"success"}
    for name in ("x=1", "x=2", "x=3"):  # their flow never ran in the second checkout
        run_dir = second / "runs" / "sq" / name
        assert ran_in(run_dir) == str(first / "runs" / "sq" / name)
        placed = record(run_dir)
        assert placed["run_dir"] == str(run_dir) and placed["project_root"] == str(second)
        assert placed["restored"]["from"] == cache
        assert placed["fingerprint"] == record(first / "runs" / "sq" / name)["fingerprint"]

    here, there = ductaflow.collect(first / "runs"), ductaflow.collect(second / "runs")
    assert comparable(there) == comparable(here)
    checked = ductaflow.check_instances([second / "runs"])
    assert list(checked.outdated) == [False] * 3, checked[["instance", "reason"]]
    assert list(checked.reason) == list(ductaflow.check_instances([first / "runs"]).reason)
    why = subprocess.run([sys.executable, "-m", "ductaflow", "why", "runs/sq/x=1"], cwd=second,
                         capture_output=True, text=True)  # fmt: skip
    assert "up to date" in why.stdout and f"restored from cache {cache}" in why.stdout, why.stdout
    assert report_data(second / "runs") == report_data(first / "runs")  # its links are relative

    frame = sweep(second, cache, grid={"x": [1, 2, 3, 4]})
    assert list(frame.reason) == ["unchanged"] * 3 + ["new"]
    assert len(entries(cache)) == 4  # the new success was pushed too


def report_data(runs: Path) -> dict:
    """What the static report of ``runs`` embeds: every step's table, links and charts (not its date)."""
    page = ductaflow.build_report(runs).read_text()
    data = json.loads(page[page.index('id="ductaflow-data">') :].split("</script>")[0].split(">", 1)[1])
    for step in data["steps"]:
        step["charts"]["timeline"].pop("now")  # when the page was made
    return data


def test_an_entry_truncated_halfway_is_skipped_with_a_warning_run_and_replaced(tmp_path, cache, capfd):
    """A cache archive cut short is never restored: its instance runs, says why, and its success
    replaces the entry, which the next checkout restores."""
    sweep(checkout(tmp_path, "a"), cache)
    fingerprint = record(tmp_path / "a" / "runs" / "sq" / "x=2")["fingerprint"]
    fs, key = open_cache(cache).fs, archive_of(cache, fingerprint)
    whole = fs.cat_file(key)
    fs.pipe_file(key, whole[: len(whole) // 2])
    capfd.readouterr()

    second = checkout(tmp_path, "b")
    frame = sweep(second, cache).set_index("instance")
    assert frame.loc["x=2", "status"] == "success"
    assert frame.loc["x=2", "reason"].startswith("new; cache entry skipped (its archive is ")
    assert ran_in(second / "runs" / "sq" / "x=2") == str(second / "runs" / "sq" / "x=2")
    assert record(second / "runs" / "sq" / "x=2")["reason"] == frame.loc["x=2", "reason"]
    assert "skipped: its archive is" in capfd.readouterr().err
    assert all(frame.loc[n, "reason"].startswith("restored from cache") for n in ("x=1", "x=3"))
    assert fs.cat_file(archive_of(cache, fingerprint)) != whole[: len(whole) // 2]  # replaced
    if not cache.startswith("memory://"):
        assert not fs.exists(key)  # the corrupt archive is gone

    third = checkout(tmp_path, "c")
    assert all(r.startswith("restored from cache") for r in sweep(third, cache).reason)


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(
            lambda fs, marker, archive: fs.pipe_file(marker, b'{"fingerprint": '), id="marker-not-json"
        ),
        pytest.param(lambda fs, marker, archive: fs.rm_file(archive), id="archive-missing"),
        pytest.param(
            lambda fs, marker, archive: fs.pipe_file(archive, fs.cat_file(archive)[:-1] + b"!"),
            id="archive-changed",
        ),
    ],
)
def test_a_spoiled_entry_is_never_restored(tmp_path, cache, spoil):
    """A marker that is not JSON, an archive gone or one changed byte: the instance runs here instead."""
    sweep(checkout(tmp_path, "a"), cache, grid={"x": [5]})
    [fingerprint] = entries(cache)
    key = archive_of(cache, fingerprint)
    spoil(open_cache(cache).fs, f"{key.rsplit('/', 1)[0]}/{MARKER}", key)
    second = checkout(tmp_path, "b")
    frame = sweep(second, cache, grid={"x": [5]})
    assert frame.reason[0].startswith("new; cache entry skipped ("), frame.reason[0]
    assert ran_in(second / "runs" / "sq" / "x=5") == str(second / "runs" / "sq" / "x=5")


def test_an_upload_without_its_marker_is_invisible(tmp_path, cache):
    """A push cut short before its marker (the archive alone) is no entry: a miss, no warning."""
    sweep(checkout(tmp_path, "a"), cache, grid={"x": [6]})
    [fingerprint] = entries(cache)
    fs = open_cache(cache).fs
    fs.rm_file(archive_of(cache, fingerprint).rsplit("/", 1)[0] + f"/{MARKER}")
    frame = sweep(checkout(tmp_path, "b"), cache, grid={"x": [6]})
    assert list(frame.reason) == ["new"]


def test_a_malicious_entry_writes_nothing_outside(tmp_path, cache):
    """An archive whose member climbs out of the instance folder is refused, even with a matching sha256."""
    sweep(checkout(tmp_path, "a"), cache, grid={"x": [7]})
    [fingerprint] = entries(cache)
    fs, key = open_cache(cache).fs, archive_of(cache, fingerprint)
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload.txt"
    payload.write_text("pwned")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../../../escaped.txt")
    data = evil.read_bytes()
    fs.pipe_file(key, data)
    marker = {**entries(cache)[fingerprint], "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    fs.pipe_file(key.rsplit("/", 1)[0] + f"/{MARKER}", json.dumps(marker).encode())
    second = checkout(tmp_path, "b")
    frame = sweep(second, cache, grid={"x": [7]})
    assert "cache entry skipped" in frame.reason[0] and frame.status[0] == "success"
    assert not list(tmp_path.rglob("escaped.txt"))


def test_failures_are_not_pushed_and_a_forced_run_replaces_its_entry(tmp_path, cache):
    """Only successes reach the cache; ``force`` runs without looking it up and pushes the new success."""
    root = checkout(tmp_path, "a")
    frame = sweep(root, cache, grid={"x": [-1, 8]})
    assert list(frame.status) == ["failed", "success"]
    assert [m["instance"] for m in entries(cache).values()] == ["x=8"]
    before = entries(cache)
    forced = sweep(checkout(tmp_path, "b"), cache, grid={"x": [8]}, force=True)
    assert list(forced.reason) == ["forced"]
    after = entries(cache)
    assert (
        after.keys() == before.keys()
        and next(iter(after.values()))["archive"] != next(iter(before.values()))["archive"]
    )


def test_a_push_that_fails_keeps_the_result_and_says_so(tmp_path, capfd):
    """A cache that cannot be written (a file where its folder should be) loses no result."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    root = checkout(tmp_path, "a")
    frame = sweep(root, str(blocked / "cache"), grid={"x": [9]})
    assert list(frame.status) == ["success"]
    assert record(root / "runs" / "sq" / "x=9")["status"] == "success"
    assert "could not push sq/x=9 to the cache" in capfd.readouterr().err


def test_the_project_setting_names_the_cache_and_false_turns_it_off(tmp_path):
    """``cache`` in ductaflow.toml (a folder relative to the file) is used; ``cache=False`` ignores it."""
    first, second = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    for root in (first, second):
        (root / "ductaflow.toml").write_text('cache = "../team-cache"\n')
    sweep(first, None, grid={"x": [10]})
    assert (tmp_path / "team-cache" / FORMAT).is_dir()
    assert list(sweep(second, False, grid={"x": [10]}).reason) == ["new"]
    third = checkout(tmp_path, "c")
    (third / "ductaflow.toml").write_text('cache = "../team-cache"\n')
    assert sweep(third, None, grid={"x": [10]}).reason[0].startswith("restored from cache")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("cache = 5", "cache must be a folder or URL in quotes"),
        ('cache = ""', "cache must be a folder or URL in quotes"),
        ('cache = "nosuchprotocol://x"', "fsspec cannot open it"),
    ],
)
def test_a_bad_cache_setting_is_refused_before_anything_runs(tmp_path, setting, message):
    """A cache setting of the wrong type, or a location fsspec cannot open, names the fix; nothing runs."""
    root = checkout(tmp_path, "a")
    (root / "ductaflow.toml").write_text(setting + "\n")
    with pytest.raises(ductaflow.ConfigError, match=message):
        sweep(root, None, grid={"x": [11]})
    assert not (root / "runs" / "sq").exists()


def test_two_checkouts_pushing_at_once_leave_valid_entries(tmp_path):
    """Two processes sweeping the same table into one cache at once: every entry restores."""
    cache = str(tmp_path / "cache")
    code = (
        "import sys, ductaflow\n"
        "ductaflow.sweep('flow/sq.py', grid={'x': list(range(12, 18))}, cache=sys.argv[1], progress=False,\n"
        "                export_html=False, jobs=2)\n"
    )
    roots = [checkout(tmp_path, name) for name in ("a", "b")]
    procs = [subprocess.Popen([sys.executable, "-c", code, cache], cwd=root) for root in roots]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert len(entries(cache)) == 6
    third = checkout(tmp_path, "c")
    frame = sweep(third, cache, grid={"x": list(range(12, 18))}, export_html=False)
    assert all(r.startswith("restored from cache") for r in frame.reason), list(frame.reason)


def test_the_cli_takes_cache_and_no_cache(tmp_path):
    """``ductaflow sweep --cache DIR`` restores and says how many; ``--no-cache`` with it is refused."""
    cache = tmp_path / "cache"
    first, second = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    args = [sys.executable, "-m", "ductaflow", "sweep", "flow/sq.py", "--grid", "x=1,2", "--no-html"]
    assert subprocess.run([*args, "--cache", str(cache)], cwd=first, capture_output=True).returncode == 0
    done = subprocess.run([*args, "--cache", str(cache)], cwd=second, capture_output=True, text=True)
    assert done.returncode == 0 and "2 success (2 restored from cache)" in done.stdout, done.stdout
    both = subprocess.run(
        [*args, "--cache", str(cache), "--no-cache"], cwd=second, capture_output=True, text=True
    )
    assert both.returncode == 2 and "--cache and --no-cache" in both.stderr


def test_a_restored_instance_replaces_a_failed_attempt(tmp_path, cache):
    """An instance whose last attempt here failed is restored from a success elsewhere; the failure goes."""
    broken = FLOW.replace('if config["x"] < 0:', 'if config["x"] < 0 or Path("../../../fail").exists():')
    first, second = checkout(tmp_path, "a", broken), checkout(tmp_path, "b", broken)
    (second / "fail").write_text("")
    assert list(sweep(second, False, grid={"x": [20]}).status) == ["failed"]
    sweep(first, cache, grid={"x": [20]})
    frame = sweep(second, cache, grid={"x": [20]})
    assert frame.reason[0].startswith("restored from cache") and frame.status[0] == "success"
    assert record(second / "runs" / "sq" / "x=20")["status"] == "success"
    assert not (second / "runs" / "sq" / ".ductaflow" / "previous" / "x=20").exists()


def test_rerun_on_env_change_restores_only_an_entry_made_in_this_environment(tmp_path, cache):
    """With ``rerun_on_env_change``, an entry recorded in another environment is a miss: the instance runs."""
    sweep(checkout(tmp_path, "a"), cache, grid={"x": [21]})
    same = checkout(tmp_path, "b")
    assert sweep(same, cache, grid={"x": [21]}, rerun_on_env_change=True).reason[0].startswith("restored")
    [fingerprint] = entries(cache)
    fs, key = open_cache(cache).fs, archive_of(cache, fingerprint).rsplit("/", 1)[0] + f"/{MARKER}"
    fs.pipe_file(key, json.dumps({**entries(cache)[fingerprint], "environment": "0" * 64}).encode())
    elsewhere = checkout(tmp_path, "c")
    frame = sweep(elsewhere, cache, grid={"x": [21]}, rerun_on_env_change=True)
    assert list(frame.reason) == ["new"]
    assert ran_in(elsewhere / "runs" / "sq" / "x=21") == str(elsewhere / "runs" / "sq" / "x=21")


def test_cluster_workers_push_and_restore(tmp_path):
    """Instances on a Dask cluster's worker processes push their successes, and restore them elsewhere."""
    cache = str(tmp_path / "cache")
    first, second = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    with ductaflow.dask_client("local:2") as client:
        made = sweep(first, cache, grid={"x": [30, 31]}, executor=client, export_html=False)
        assert list(made.reason) == ["new", "new"]
        assert {record(first / "runs" / "sq" / n)["pid"] for n in ("x=30", "x=31")} <= set(
            client.run(os.getpid).values()
        )
        frame = sweep(second, cache, grid={"x": [30, 31]}, executor=client, export_html=False)
    assert all(r.startswith("restored from cache") for r in frame.reason), list(frame.reason)
    assert ran_in(second / "runs" / "sq" / "x=30") == str(first / "runs" / "sq" / "x=30")


LINKS = (
    FLOW
    + """
import os
import shutil
os.symlink("out.json", "latest.json")
if config["x"] == 51:
    os.symlink(os.path.abspath("../../../flow/sq.py"), "flow-used.py")
"""
)


def test_links_inside_travel_and_a_link_outside_is_not_pushed(tmp_path, cache, capfd):
    """A link to a file of the instance is restored as a link; an instance linking outside is not pushed."""
    first = checkout(tmp_path, "a", LINKS)
    sweep(first, cache, grid={"x": [50, 51]}, export_html=False)
    assert [m["instance"] for m in entries(cache).values()] == ["x=50"]
    assert "could not push sq/x=51 to the cache" in capfd.readouterr().err
    second = checkout(tmp_path, "b", LINKS)
    frame = sweep(second, cache, grid={"x": [50, 51]}, export_html=False)
    assert frame.reason[0].startswith("restored from cache") and frame.reason[1] == "new"
    link = second / "runs" / "sq" / "x=50" / "latest.json"
    assert link.is_symlink() and os.readlink(link) == "out.json" and json.loads(link.read_text())["y"] == 2500


BIG = (
    FLOW
    + """
if config["x"] == 60:
    Path("big.bin").write_bytes(os.urandom(6 * 2**20))
"""
)


def test_a_restore_that_finds_the_disk_full_fails_clearly_and_leaves_nothing(tmp_path):
    """A cache entry bigger than the disk left: the instance fails as a full disk, no further instance
    starts, and no half-restored folder stays behind."""
    from test_disk_full import _run_on_small_disk, _state

    cache = tmp_path / "cache"
    sweep(checkout(tmp_path, "a", BIG.replace("import json", "import json, os")), str(cache),
          grid={"x": [60, 61]}, export_html=False)  # fmt: skip
    second = checkout(tmp_path, "b", BIG.replace("import json", "import json, os"))
    code = ("import json, ductaflow\n"
            f"frame = ductaflow.sweep('flow/sq.py', grid={{'x': [60, 61]}}, cache={str(cache)!r}, jobs=1,\n"
            "                        progress=False, export_html=False)\n"
            "open('../rows.json', 'w').write(frame.to_json(orient='records'))\n")  # fmt: skip
    (second / "go.py").write_text(code)
    _run_on_small_disk(second, f"{sys.executable} go.py && cp -r runs ../after")
    rows = {r["instance"]: r for r in json.loads((tmp_path / "rows.json").read_text())}
    assert rows["x=60"]["status"] == "failed" and "the disk is full" in rows["x=60"]["error"], rows
    assert rows["x=61"]["reason"] == "not started"
    state = _state(tmp_path / "after")
    assert state["leftovers"] == [] and state["records"] == {}


def test_replicates_each_restore_their_own_entry(tmp_path, cache):
    """Replicates share a fingerprint and differ by name (their seed): each restores its own result."""
    first, second = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    made = sweep(first, cache, grid={"x": [70]}, replicates=3, export_html=False)
    assert len(entries(cache)) == 1 and len(list_markers(cache)) == 3
    frame = sweep(second, cache, grid={"x": [70]}, replicates=3, export_html=False)
    assert all(r.startswith("restored from cache") for r in frame.reason), list(frame.reason)
    names = list(made.instance)
    for name in names:
        here, there = record(first / "runs" / "sq" / name), record(second / "runs" / "sq" / name)
        assert there["instance"] == name and there["seed"] == here["seed"]
    assert len({record(second / "runs" / "sq" / n)["seed"] for n in names}) == 3
    assert sorted(ductaflow.collect(second / "runs").instance) == sorted(names)


def list_markers(cache: str) -> list[str]:
    """Every marker in ``cache``: one per entry (fingerprint, step, instance)."""
    store = open_cache(cache)
    return store.fs.glob(f"{store.root}/{FORMAT}/*/*/*/*/{MARKER}")


def test_a_restored_instance_says_how_this_checkout_asked_for_it(tmp_path, cache):
    """Pushed from a sweep of a table, restored by a sweep of a grid: the record keeps this call's
    config source, so status checks the config against today's grid and calls it up to date."""
    first, second = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    (first / "table.csv").write_text("x\n80\n81\n")
    ductaflow.sweep(first / "flow" / "sq.py", first / "table.csv", project_root=first, cache=cache,
                    progress=False, export_html=False)  # fmt: skip
    frame = sweep(second, cache, grid={"x": [80, 81]}, export_html=False)
    assert all(r.startswith("restored from cache") for r in frame.reason), list(frame.reason)
    placed = record(second / "runs" / "sq" / "x=80")
    assert placed["config_source"]["grid"] == {"x": [80, 81]} and placed["config_source"]["table"] is None
    checked = ductaflow.check_instances([second / "runs"])
    assert list(checked.outdated) == [False, False], list(checked.reason)
    assert set(checked.reason) == {"up to date"}


def test_a_poisoned_entry_is_skipped_and_replaced_not_failed_forever(tmp_path, cache, capfd):
    """An archive whose members clash (a file and a folder of one name) or a marker with a field of the
    wrong type is skipped with a warning; the instance runs and its push replaces the entry."""
    sweep(checkout(tmp_path, "a"), cache, grid={"x": [90, 91]}, export_html=False)
    fs = open_cache(cache).fs
    by_instance = {m["instance"]: (fp, m) for fp, m in entries(cache).items()}
    fingerprint, marker = by_instance["x=90"]
    clash = tmp_path / "clash.tar.gz"
    with tarfile.open(clash, "w:gz") as tar:
        for name in ("out.json", "out.json/x"):
            info = tarfile.TarInfo(name)
            tar.addfile(info, io.BytesIO(b""))
    data = clash.read_bytes()
    key = archive_of(cache, fingerprint)
    fs.pipe_file(key, data)
    spoiled = {**marker, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    fs.pipe_file(key.rsplit("/", 1)[0] + f"/{MARKER}", json.dumps(spoiled).encode())
    fingerprint, marker = by_instance["x=91"]
    bad = archive_of(cache, fingerprint).rsplit("/", 1)[0] + f"/{MARKER}"
    fs.pipe_file(bad, json.dumps({**marker, "pushed_at": 5}).encode())
    capfd.readouterr()
    second = checkout(tmp_path, "b")
    frame = sweep(second, cache, grid={"x": [90, 91]}, export_html=False)
    assert list(frame.status) == ["success", "success"]
    assert all("cache entry skipped" in r for r in frame.reason), list(frame.reason)
    assert capfd.readouterr().err.count("skipped:") == 2
    third = sweep(checkout(tmp_path, "c"), cache, grid={"x": [90, 91]}, export_html=False)
    assert all(r.startswith("restored from cache") for r in third.reason), list(third.reason)


def test_an_entry_without_the_html_page_asked_for_is_a_quiet_miss(tmp_path, cache, capfd):
    """A success pushed by a call without HTML is not restored by one that asks for the page: it runs
    (no warning), and its success, page included, replaces the entry."""
    sweep(checkout(tmp_path, "a"), cache, grid={"x": [100]}, export_html=False)
    capfd.readouterr()
    second = checkout(tmp_path, "b")
    frame = sweep(second, cache, grid={"x": [100]})
    assert (
        frame.reason[0] == "new; cache entry skipped (it was made without the HTML page this call asks for)"
    )
    assert "skipped" not in capfd.readouterr().err
    assert (second / "runs" / "sq" / "x=100" / "sq.html").exists()
    assert sweep(checkout(tmp_path, "c"), cache, grid={"x": [100]}).reason[0].startswith("restored")


def test_a_reader_overlapping_a_push_restores_the_new_entry(tmp_path, cache, monkeypatch):
    """A push replaces the entry (and deletes its archive) between a reader's lookup and its download:
    the reader looks again and restores the new entry instead of running."""
    from ductaflow.cache import RunCache

    first, other = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    sweep(first, cache, grid={"x": [110]}, export_html=False)
    sweep(other, False, grid={"x": [110]}, export_html=False)
    download = RunCache._download
    pushed = []

    def push_first(self, entry, archive):  # the other machine's push lands now, once
        if not pushed:
            pushed.append(self.push(other / "runs" / "sq" / "x=110", record(other / "runs" / "sq" / "x=110")))
        return download(self, entry, archive)

    monkeypatch.setattr(RunCache, "_download", push_first)
    third = checkout(tmp_path, "c")
    frame = sweep(third, cache, grid={"x": [110]}, export_html=False)
    assert pushed and frame.reason[0].startswith("restored from cache"), frame.reason[0]
    assert ran_in(third / "runs" / "sq" / "x=110") == str(other / "runs" / "sq" / "x=110")


def test_a_failing_store_is_left_alone_after_failures_in_a_row(tmp_path, capfd):
    """A store that cannot be read (a file where its folder should be) is asked a few times, then left
    alone for the rest of the sweep, said once; every instance succeeds."""
    from ductaflow.caching import FAILURES_IN_A_ROW

    blocked = tmp_path / "blocked"
    blocked.write_text("")
    frame = sweep(checkout(tmp_path, "a"), str(blocked / "cache"), grid={"x": list(range(120, 130))},
                  export_html=False, jobs=1)  # fmt: skip
    assert set(frame.status) == {"success"}
    err = capfd.readouterr().err
    assert err.count(f"failed {FAILURES_IN_A_ROW} times in a row") == 1, err
    assert err.count("ductaflow:") == FAILURES_IN_A_ROW + 1, err


def test_cache_clean_removes_orphans_once_old_and_entries_past_an_age(tmp_path):
    """``cache clean`` removes archives no marker names once an hour old (a young one may be a push in
    flight), markers that are not entries, and with ``--older-than`` whole entries; a dry run removes
    nothing; what stays still restores."""
    cache = str(tmp_path / "cache")
    first = checkout(tmp_path, "a")
    sweep(first, cache, grid={"x": [140, 141]}, export_html=False)
    store = open_cache(cache)
    by_instance = {m["instance"]: fp for fp, m in entries(cache).items()}
    kept = store.folder(by_instance["x=140"], "sq", "x=140")
    old_orphan, young_orphan = (
        Path(kept) / "vm-1-aaaaaaaaaaaa.tar.gz",
        Path(kept) / "vm-2-bbbbbbbbbbbb.tar.gz",
    )
    for orphan in (old_orphan, young_orphan):
        orphan.write_bytes(b"x" * 1000)
    hours_ago = time.time() - 2 * 3600
    os.utime(old_orphan, (hours_ago, hours_ago))
    spoiled = Path(store.folder(by_instance["x=141"], "sq", "x=141")) / MARKER
    spoiled.write_text("{")
    os.utime(spoiled, (hours_ago, hours_ago))
    args = [sys.executable, "-m", "ductaflow", "cache", "clean", "--cache", cache]
    dry = subprocess.run([*args, "--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0 and f"would remove {old_orphan}" in dry.stdout, dry.stdout
    assert old_orphan.exists() and spoiled.exists()
    done = ductaflow.clean_cache(cache)
    assert sorted(done["removed"]) == sorted([str(old_orphan), str(spoiled)]) and done["entries"] == 0
    assert not old_orphan.exists() and young_orphan.exists() and not spoiled.exists()
    frame = sweep(checkout(tmp_path, "b"), cache, grid={"x": [140, 141]}, export_html=False)
    assert frame.reason[0].startswith("restored from cache") and frame.reason[1] == "new"
    everything = ductaflow.clean_cache(cache, older_than_days=0)
    assert everything["entries"] == 2 and entries(cache) == {}


def test_cache_push_works_where_no_lock_can_be_made(tmp_path):
    """A runs folder where ductaflow cannot write its state (a file stands where its folder goes, as on a
    read-only copy) is pushed without locks, its archives staged elsewhere."""
    cache = str(tmp_path / "cache")
    first = checkout(tmp_path, "a")
    sweep(first, False, grid={"x": [150]}, export_html=False)
    state = first / "runs" / "sq" / ".ductaflow"
    shutil.rmtree(state)
    state.write_text("not a folder")
    assert ductaflow.push_runs([first / "runs" / "sq"], cache)["pushed"] == ["sq/x=150"]
    frame = sweep(checkout(tmp_path, "b"), cache, grid={"x": [150]}, export_html=False)
    assert frame.reason[0].startswith("restored from cache")
