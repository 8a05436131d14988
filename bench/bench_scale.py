"""Every view at 1,000, 10,000 and 100,000 instances of one step: the run index against reading the files.

For each size, in a fresh temporary project, one real instance of a tiny
flow runs (``ductaflow.sweep`` over a one-row table: two config columns over
a config file, metrics recorded with ``ductaflow.record``, one of them a
series, ``loss`` per epoch). The table then gets N rows and the other N - 1
instances are fabricated as fast fabricators do: a folder each, every file
of the real instance hard-linked into it except ``run.json``,
``config.json`` and ``metrics.json``, which are written per instance (its
config from the table, the fingerprint the conductor computes for it, its
seed, start and duration). The step is then a valid, up-to-date sweep of
the table: the decision over it skips all N, which the script checks.

Each measurement runs in a fresh interpreter (a cold process, as a user's
command is) that imports ductaflow and pandas, then times only the call and
reports it with its peak memory (``VmHWM``: ``ru_maxrss`` would also count
the pages of the process that started it), with the index and with
``DUCTAFLOW_INDEX=off`` (every file read, as before the index):

- ``collect``: ``ductaflow.collect("runs")``;
- ``status``: ``ductaflow.check_instances(["runs"])``, what ``ductaflow status`` computes;
- ``decision``: ``ductaflow.sweep(flow, table, ..., dry_run=True)`` over the unchanged table;
- ``report build``: ``ductaflow.build_report("runs")``;
- ``serve``, when the ``serve`` command exists: ``python -m ductaflow serve RUNS --port 0``
  started, the time until it prints its URL, then the page loaded in
  Debian's chromium (Playwright) and timed from navigation until the
  instances table's first row is painted (measured in the page: the
  animation frame after the row is inserted) and until a check from outside
  sees it (the page answers), and the server's peak memory;
- the report page built by ``build_report``, opened from ``file://`` and
  timed the same way (one page: the same with or without the index).

Each call is made once over a one-instance project first, untimed, in the
same process (imports and one-time setup). Rounds are interleaved (the two
modes alternate which goes first) and medians are printed, with the ratio
files / index and each round's seconds. Timed once on their own before the
rounds: the first build of the index (its file missing), then the first
``status`` and the first decision, which keep the table's config hashes
and the sweep's plan in the index. Memory is the peak of
each measuring process minus that of a process that only imports
ductaflow and pandas (printed). The issue's targets are printed beside the
numbers: at 100,000 instances ``collect`` <= 2 s, ``status`` <= 1 s, the
decision <= 3 s, the report page's first paint <= 2 s; at 10,000 each view
at least 3x faster than reading the files. For a target missed at 100,000
a cProfile of that view (index on) follows, top 15 lines. Each size's
temporary folder is deleted before the next.

Run: ``python bench/bench_scale.py [--sizes 1000,10000,100000] [--rounds 3]
[--large-rounds R] [--dir DIR]`` (about 12 minutes on a quiet 2-core machine). Projects go
to /dev/shm when it is a tmpfs with room (about 1.2 GB at 100,000; the real
instance's 270 KB HTML page is linked, not copied), else ``--dir`` or the
system's temporary folder.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import json
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STEP = "fit"
FLOW = """# %% tags=["parameters"]
config = {"lr": 0.1, "depth": 2, "kind": "a"}

# %%
import ductaflow

loss = [round(1.0 / (epoch + 1) + config["lr"] * config["depth"], 6) for epoch in range(10)]
ductaflow.record(loss=loss, rmse=loss[-1], n=len(loss))
print(config, loss[-1])
"""
WRITTEN = ("run.json", "config.json", "metrics.json")  # per instance; every other file is linked
VIEWS = ("collect", "status", "decision", "report build")
MODES = ("index", "files")
SERVE_LINES = ("serve: URL printed", "serve: first rows", "serve: page answers")
TARGETS_S = {"collect": 2.0, "status": 1.0, "decision": 3.0, "report page": 2.0}  # index on, at 100,000
SPEEDUP = 3.0  # at 10,000: each view at least this many times faster than reading the files
CHROMIUM = "/usr/bin/chromium"
PAGE_TIMEOUT_S = 300
RACY_S = 2.5  # the index reads again files changed in the last 2 s (indexstore.RACY_NS): wait that out
HERE = Path(__file__).resolve()
FIRST_CALLS = {"status": "the config hashes of its table not kept yet",
               "decision": "no plan of the table kept yet"}  # fmt: skip
BIG, WARM = "big", "warm"  # each size's project, and a one-instance copy each measurement warms up on


# -- the project -------------------------------------------------------------------------------------


def name_of(k: int) -> str:
    return f"r{k:06d}"


def table_text(n: int) -> str:
    """A table of N rows: two config columns varying independently."""
    rows = (f"{name_of(k)},{(k % 1000 + 1) / 1000},{1 + k % 8}" for k in range(n))
    return "instance_name,lr,depth\n" + "\n".join(rows) + "\n"


def run_real(project: Path) -> float:
    """Write the flow, config file and a one-row table; run that instance for real; return its seconds."""
    (project / "flow").mkdir(parents=True)
    (project / "flow" / f"{STEP}.py").write_text(FLOW)
    (project / "config").mkdir()
    (project / "config" / "base.json").write_text(json.dumps({"lr": 0.1, "depth": 2, "kind": "a"}))
    (project / "table.csv").write_text(table_text(1))
    code = (
        "import ductaflow; f = ductaflow.sweep('flow/fit.py', 'table.csv', config_file='config/base.json', "
        "project_root='.', progress=False); assert (f.status == 'success').all(), f.to_dict('records')"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=project, check=True, capture_output=True)
    return time.perf_counter() - start


LINKS_PER_FILE = 50_000  # ext4 allows 65,000 hard links to one file: a spare copy for each 50,000 instances
_JOB: dict[str, Any] = {}  # what the fabricating processes share (set before they fork)


def fabricate(project: Path, n: int, processes: int = 2) -> float:
    """Grow the table to N rows and fabricate its N - 1 other instances in parallel; return the seconds."""
    import multiprocessing

    from ductaflow.config import canonical_json
    from ductaflow.seeds import config_seed
    from ductaflow.sources import rebuild_configs

    start = time.perf_counter()
    step = project / "runs" / STEP
    real = step / name_of(0)
    template = json.loads((real / "run.json").read_text())
    (project / "table.csv").write_text(table_text(n))
    configs = rebuild_configs(template["config_source"], project)
    parts = template["fingerprint_parts"]
    digest = hashlib.sha256(canonical_json(parts).encode()).hexdigest()
    assert digest == template["fingerprint"] and configs[name_of(0)] == template["config"], "not the sweep's"
    assert template["seed"] == config_seed(template["config"], name_of(0)), "not the sweep's seed"
    linked = sorted(p.name for p in real.iterdir() if p.is_file() and p.name not in WRITTEN)
    sources = [{name: real / name for name in linked}]
    for c in range(1, (n - 1) // LINKS_PER_FILE + 1):  # a spare copy of each file per 50,000 links
        (project / "spares" / str(c)).mkdir(parents=True)
        sources.append({name: shutil.copy2(real / name, project / "spares" / str(c)) for name in linked})
    variable = ("instance", "run_dir", "config", "config_hash", "fingerprint_parts", "fingerprint", "seed",
                "pid", "duration_s", "started_at", "ended_at")  # fmt: skip
    text = json.dumps({**template, **{k: f"@@{k}@@" for k in variable}}, indent=2, ensure_ascii=False)
    _JOB.update(step=step, configs=configs, parts=parts, template=template, sources=sources,
                pieces=re.split(r'"@@(\w+)@@"', text))  # fmt: skip
    bounds = [1 + (n - 1) * i // processes for i in range(processes + 1)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.starmap(_fabricate_range, itertools.pairwise(bounds))
    _JOB.clear()
    return time.perf_counter() - start


def _fabricate_range(first: int, stop: int) -> None:
    """Fabricate instances ``first`` to ``stop - 1`` (in a forked process, from :data:`_JOB`)."""
    from ductaflow.config import canonical_json, config_hash
    from ductaflow.seeds import config_seed

    step, configs, parts, template = _JOB["step"], _JOB["configs"], _JOB["parts"], _JOB["template"]
    pieces, sources = _JOB["pieces"], _JOB["sources"]
    began = datetime.datetime.fromisoformat(template["started_at"]).timestamp()
    for k in range(first, stop):
        name = name_of(k)
        config = configs[name]
        these = {**parts, "config_hash": config_hash(config)}
        duration = round(0.4 + (k % 13) * 0.05, 3)
        start_s = began + (k // 2) * 0.7  # two workers, one instance after another
        values = {"instance": name, "run_dir": str(step / name), "config": config,
                  "config_hash": these["config_hash"], "fingerprint_parts": these,
                  "fingerprint": hashlib.sha256(canonical_json(these).encode()).hexdigest(),
                  "seed": config_seed(config, name), "pid": template["pid"] + k % 2, "duration_s": duration,
                  "started_at": _iso(start_s), "ended_at": _iso(start_s + duration)}  # fmt: skip
        record = "".join(p if i % 2 == 0 else json.dumps(values[p], ensure_ascii=False)
                         for i, p in enumerate(pieces))  # fmt: skip
        loss = [round(1.0 / (epoch + 1) + config["lr"] * config["depth"], 6) for epoch in range(10)]
        folder = os.path.join(step, name)
        os.mkdir(folder)
        for file, source in sources[(k - 1) // LINKS_PER_FILE].items():
            os.link(source, os.path.join(folder, file))
        _write(os.path.join(folder, "config.json"), json.dumps(config, indent=2))
        metrics = {"loss": loss, "rmse": loss[-1], "n": 10}
        _write(os.path.join(folder, "metrics.json"), json.dumps(metrics, indent=1))
        _write(os.path.join(folder, "run.json"), record)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds")


# -- one measurement, in a fresh interpreter ---------------------------------------------------------


def call_of(view: str, project: Path) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """``(function, args, kwargs)``: the public call ``view`` makes over ``project``."""
    import ductaflow

    runs = project / "runs"
    calls = {
        "collect": (ductaflow.collect, (runs,), {}),
        "status": (ductaflow.check_instances, ([runs],), {}),
        "decision": (ductaflow.sweep, (project / "flow" / f"{STEP}.py", project / "table.csv"),
                     {"config_file": project / "config" / "base.json", "project_root": project,
                      "dry_run": True, "progress": False}),
        "report build": (ductaflow.build_report, (runs,), {}),
    }  # fmt: skip
    return calls[view]


def worker(view: str, project: Path, profile: bool) -> None:
    """Time one view's call in this fresh process; print seconds and peak memory.

    The same call over the one-instance project ``warm`` beside ``project``
    runs first, untimed: what the call imports and sets up once per process
    is not counted, only its work over the N instances.
    """
    import importlib

    # what every measurement imports first; for the serve baseline, what `ductaflow serve` imports
    modules = ["ductaflow", "pandas"] if view != "serve baseline" else [
        "ductaflow.cli", "ductaflow.runindex", "ductaflow.serve.app", "starlette", "uvicorn"]  # fmt: skip
    for module in modules:
        importlib.import_module(module)
    n = len((project / "table.csv").read_text().splitlines()) - 1
    if view in ("baseline", "serve baseline"):
        print(json.dumps({"seconds": 0.0, "peak_kb": peak_kb()}))
        return
    function, args, kwargs = call_of(view, project.parent / WARM)
    function(*args, **kwargs)
    function, args, kwargs = call_of(view, project)
    before = peak_kb()
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(function, *args, **kwargs)
        for order in ("cumulative", "tottime"):
            print(f"--- {view}, sorted by {order}, top 15")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats(order).print_stats(15)
        return
    start = time.perf_counter()
    result = function(*args, **kwargs)
    took = time.perf_counter() - start
    peak = peak_kb()
    if view == "collect":
        assert len(result) == n and (result.status == "success").all() and "metric.loss" in result, result
    elif view == "status":
        assert len(result) == n and (result.outdated == False).all(), result[result.outdated != False]  # noqa: E712
    elif view == "decision":
        assert len(result) == n and (result.status == "skipped").all(), result[result.status != "skipped"]
    print(json.dumps({"seconds": took, "peak_kb": peak, "before_kb": before}))


def peak_kb(pid: int | str = "self") -> int:
    """A process's peak resident memory in KB: ``VmHWM``, else ``ru_maxrss`` (of this process).

    On Linux ``ru_maxrss`` survives ``execve``: a child started from a big
    parent reports at least the parent's size, so ``VmHWM`` (this program's
    own pages only) is read first.
    """
    try:
        found = re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        found = None
    return int(found.group(1)) if found else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def environment(mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DUCTAFLOW_INDEX"}
    if mode == "files":
        env["DUCTAFLOW_INDEX"] = "off"
    return env


def measure(view: str, project: Path, mode: str, *, profile: bool = False) -> dict[str, Any]:
    """Run :func:`worker` in a fresh interpreter; its numbers (or its profile's text).

    A call that fails is reported (its last error line) and counts as NaN.
    """
    command = [sys.executable, str(HERE), "--measure", view, "--project", str(project)]
    done = subprocess.run(command + (["--profile"] if profile else []), cwd=project, env=environment(mode),
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        print(f"  {view} ({mode}) FAILED (exit {done.returncode}): {lines[-1]}", flush=True)
        return {"seconds": math.nan, "peak_kb": math.nan, "text": done.stderr}
    if profile:
        return {"text": done.stdout}
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- pages in the browser ----------------------------------------------------------------------------


def serve_available() -> bool:
    """Whether ``python -m ductaflow serve`` is a command here (and its web stack installed)."""
    done = subprocess.run([sys.executable, "-m", "ductaflow", "serve", "--help"], capture_output=True)
    return done.returncode == 0


# Runs in the page before its own scripts: notes when the first row is in the table (performance.now(),
# milliseconds since navigation began), and the animation frame after it, when the browser paints it.
WATCH_ROWS = """(selector => {
  window.__rows = null;
  const seen = () => {
    if (window.__rows !== null || !document.querySelector(selector)) return false;
    window.__rows = {inserted: performance.now(), painted: null};
    requestAnimationFrame(() => { window.__rows.painted = performance.now(); });
    return true;
  };
  new MutationObserver((_, observer) => { if (seen()) observer.disconnect(); })
    .observe(document, {childList: true, subtree: true});
})(%s);"""


def first_rows(browser: Any, url: str, selector: str) -> dict[str, float]:
    """When ``selector``'s first row is painted, when the page answers, DOMContentLoaded: seconds.

    ``painted`` is measured in the page (the animation frame after the row
    is inserted); ``answers`` is when Playwright, polling from outside,
    first sees the row, which waits for the page's scripts to let go of
    its main thread. All NaN when no row shows within :data:`PAGE_TIMEOUT_S`.
    """
    from playwright.sync_api import TimeoutError as PageTimeout

    context = browser.new_context()
    context.add_init_script(WATCH_ROWS % json.dumps(selector))
    try:
        page = context.new_page()
        start = time.perf_counter()
        try:
            page.goto(url, wait_until="commit", timeout=PAGE_TIMEOUT_S * 1000)
            page.wait_for_selector(selector, timeout=PAGE_TIMEOUT_S * 1000)
            answers = time.perf_counter() - start
            page.wait_for_function("window.__rows && window.__rows.painted !== null", timeout=10_000)
        except PageTimeout:
            print(f"  no {selector!r} in {url} after {PAGE_TIMEOUT_S} s", flush=True)
            return {"painted": math.nan, "answers": math.nan, "loaded": math.nan}
        painted = page.evaluate("window.__rows.painted")
        loaded = page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
        return {"painted": painted / 1000, "answers": answers, "loaded": loaded / 1000}
    finally:
        context.close()


def serve_paint(browser: Any, project: Path, mode: str) -> dict[str, Any]:
    """Start ``ductaflow serve``; the seconds until its URL, the page's first rows, its peak memory."""
    command = [sys.executable, "-m", "ductaflow", "serve", "runs", "--port", "0"]
    start = time.perf_counter()
    server = subprocess.Popen(command, cwd=project, env=environment(mode), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        for line in server.stdout:
            found = re.search(r"https?://\S+", line)
            if found:
                break
        else:
            raise SystemExit(f"ductaflow serve ({mode}) exited with {server.wait()} before printing its URL")
        startup = time.perf_counter() - start
        page = first_rows(browser, found.group(0).split("#")[0] + f"#step={STEP}", "#rows tbody tr")
        return {"startup": startup, **page, "peak_kb": peak_kb(server.pid)}
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# -- one size ----------------------------------------------------------------------------------------


def run_size(n: int, rounds: int, browser: Any, serving: bool, where: str | None,
             missed: set[str]) -> dict[str, Any]:  # fmt: skip
    """Fabricate N instances in a temporary project, measure every view, delete the project.

    At 100,000 and above, a view missing its target there, or named in
    ``missed`` (its speed-up at 10,000), is profiled.
    """
    out: dict[str, Any] = {"n": n, "rounds": rounds, "times": {}, "memory": {}, "before": {}, "profiles": {}}
    with tempfile.TemporaryDirectory(prefix=f"ductaflow-scale-{n}-", dir=where) as tmp:
        project = Path(tmp) / BIG
        out["real"] = run_real(project)
        run_real(Path(tmp) / WARM)
        out["fabricate"] = fabricate(project, n)
        print(f"\n{n:,} instances of one step: the real one ran in {out['real']:.1f} s, "
              f"the other {n - 1:,} fabricated in {out['fabricate']:.1f} s", flush=True)  # fmt: skip
        time.sleep(RACY_S)  # files written a moment ago are read again by the index's next refresh too
        (project / "runs" / ".ductaflow-index.sqlite").unlink()
        for suffix in ("-wal", "-shm"):
            (project / "runs" / f".ductaflow-index.sqlite{suffix}").unlink(missing_ok=True)
        out["first build"] = measure("collect", project, "index")["seconds"]
        print(f"  first build of the index from files (collect, index missing): {out['first build']:.2f} s")
        for view in FIRST_CALLS:  # they fill caches kept in the index; the rounds then measure them filled
            took = out[f"first {view}"] = measure(view, project, "index")["seconds"]
            print(f"  first {view} after that ({FIRST_CALLS[view]}): {took:.2f} s", flush=True)
        out["baseline_kb"] = measure("baseline", project, "index")["peak_kb"]
        if serving:
            out["serve_baseline_kb"] = measure("serve baseline", project, "index")["peak_kb"]
        samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in range(rounds):
            order = MODES if r % 2 == 0 else MODES[::-1]
            for view in VIEWS:
                for mode in order:
                    samples.setdefault((view, mode), []).append(measure(view, project, mode))
            if serving and browser is not None:
                for mode in order:
                    got = serve_paint(browser, project, mode)
                    samples.setdefault(("serve: URL printed", mode), []).append({"seconds": got["startup"]})
                    samples.setdefault(("serve: first rows", mode), []).append(
                        {"seconds": got["painted"], "peak_kb": got["peak_kb"]})  # fmt: skip
                    samples.setdefault(("serve: page answers", mode), []).append({"seconds": got["answers"]})
            if browser is not None:
                page = first_rows(browser, (project / "runs" / "index.html").as_uri(),
                                  "table.instances tbody tr.row")  # fmt: skip
                samples.setdefault(("report page", "page"), []).append({"seconds": page["painted"], **page})
            print(f"  round {r + 1}/{rounds} done", flush=True)
        out["page_mb"] = (project / "runs" / "index.html").stat().st_size / 2**20
        out["rounds_s"] = {key: [s["seconds"] for s in got] for key, got in samples.items()}
        for key, got in samples.items():
            out["times"][key] = median(s["seconds"] for s in got)
            if "peak_kb" in got[0]:
                out["memory"][key] = median(s["peak_kb"] for s in got)
            if "before_kb" in got[0]:
                out["before"][key] = median(s["before_kb"] for s in got)
            if "loaded" in got[0]:
                out["page_loaded"] = median(s["loaded"] for s in got)
                out["page_answers"] = median(s["answers"] for s in got)
        if n >= 100_000:
            for view in VIEWS:
                if view in missed or out["times"][(view, "index")] > TARGETS_S.get(view, float("inf")):
                    out["profiles"][view] = measure(view, project, "index", profile=True)["text"]
        print_size(out, serving)
        print(f"  deleting {n:,} instances...", flush=True)
    return out


# -- printing ----------------------------------------------------------------------------------------


def median(values: Any) -> float:
    """The median of the values that are not NaN (failed calls); NaN when every call failed."""
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def print_size(out: dict[str, Any], serving: bool) -> None:
    """One size's table: medians, ratios, memory over the baseline, targets."""
    times, memory, n, base = out["times"], out["memory"], out["n"], out["baseline_kb"]
    print(f"  medians of {out['rounds']} rounds; memory: peak of the measuring process minus "
          f"{base / 1024:.0f} MB (a process importing ductaflow and pandas)")  # fmt: skip
    head = f"{'index s':>9}{'files s':>9}{'files/index':>13}{'index MB':>10}{'files MB':>10}"
    print(f"  {'view':<22}{head}  target")
    rows = [*VIEWS, *(SERVE_LINES if serving else [])]
    for view in rows:
        if (view, "index") not in times:
            continue
        index, files = times[(view, "index")], times[(view, "files")]
        zero = out.get("serve_baseline_kb", 0) if view.startswith("serve") else base
        mem = "".join(f"{(memory[(view, m)] - zero) / 1024:>10.1f}" if (view, m) in memory else " " * 10
                      for m in MODES)  # fmt: skip
        print(f"  {view:<22}{index:>9.3f}{files:>9.3f}{files / index:>12.1f}x{mem}  {verdict(view, out)}")
    if ("report page", "page") in times:
        page = times[("report page", "page")]
        print(f"  {'report page':<22}{page:>9.3f}{'(one page, ' + format(out['page_mb'], '.1f') + ' MB)':>32}"
              f"{'':>20}  {verdict('report page', out)}")  # fmt: skip
        print(f"  (report page: first rows painted, as measured in the page; DOMContentLoaded at "
              f"{out['page_loaded']:.3f} s; the page answers at {out['page_answers']:.3f} s)")  # fmt: skip
    print("  each round, seconds (index | files):")
    for view in rows:
        if (view, "index") in out["rounds_s"]:
            each = [" ".join(f"{s:.2f}" for s in out["rounds_s"][(view, m)]) for m in MODES]
            print(f"    {view:<20}{each[0]}  |  {each[1]}")
    print("  memory, MB: the process's peak / its peak just before the call (imports, the warm-up call)")
    for view in VIEWS:
        peaks = [(m, memory.get((view, m), math.nan), out["before"].get((view, m), math.nan)) for m in MODES]
        got = [f"{m} {peak / 1024:.0f} / {before / 1024:.0f}" for m, peak, before in peaks]
        print(f"    {view:<20}" + "   ".join(got))
    if "serve_baseline_kb" in out:
        print(f"  (serve memory: the server's peak minus {out['serve_baseline_kb'] / 1024:.0f} MB, a process "
              "importing its modules; first rows: painted, from the page's navigation; page answers: when "
              "a script from outside first sees them)")  # fmt: skip
    for view, text in out["profiles"].items():
        print(f"\n  {view} at {n:,} misses a target: cProfile, index on\n{text}")


def verdict(view: str, out: dict[str, Any]) -> str:
    """The issue's target for ``view`` at this size, and whether it is met."""
    n, times = out["n"], out["times"]
    key = "report page" if view == "report page" else view
    if n == 100_000 and key in TARGETS_S:
        took = times[(key, "page" if key == "report page" else "index")]
        limit = TARGETS_S[key]
        if math.isnan(took):
            return "failed"
        return f"<= {limit:.0f} s: " + ("met" if took <= limit else f"MISSED by {took - limit:.2f} s "
                                                                       f"(x{took / limit:.1f})")  # fmt: skip
    if n == 10_000 and view in VIEWS:
        ratio = times[(view, "files")] / times[(view, "index")]
        if math.isnan(ratio):
            return "failed"
        return f">= {SPEEDUP:.0f}x files: " + ("met" if ratio >= SPEEDUP else f"MISSED (x{ratio:.2f})")
    return ""


def print_summary(results: list[dict[str, Any]]) -> None:
    """Every size side by side: index and files seconds and their ratio per view."""
    print("\nside by side (seconds, medians; files/index):")
    print(f"  {'view':<22}" + "".join(f"{format(r['n'], ','):>28}" for r in results))
    print(f"  {'':<22}" + "".join(f"{'index':>10}{'files':>9}{'ratio':>9}" for r in results))
    lines = ["first build", *[f"first {v}" for v in FIRST_CALLS], *VIEWS, *SERVE_LINES, "report page",
             "report page answers"]  # fmt: skip
    for view in lines:
        cells = []
        for r in results:
            times = r["times"]
            if view.startswith("first "):
                cells.append(f"{r[view]:>10.2f}{'':>18}")
            elif view == "report page" and (view, "page") in times:
                cells.append(f"{times[(view, 'page')]:>10.2f}{'':>18}")
            elif view == "report page answers" and "page_answers" in r:
                cells.append(f"{r['page_answers']:>10.2f}{'':>18}")
            elif (view, "index") in times:
                index, files = times[(view, "index")], times[(view, "files")]
                cells.append(f"{index:>10.3f}{files:>9.3f}{files / index:>8.1f}x")
            else:
                cells.append(f"{'-':>28}")
        print(f"  {view:<22}" + "".join(cells))
    made = "".join(f"{format(r['fabricate'], '.1f') + ' s':>28}" for r in results)
    print(f"  {'fabricating':<22}{made}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated instance counts")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement")
    parser.add_argument("--large-rounds", type=int, help="rounds at 100,000 and above (default: --rounds)")
    parser.add_argument("--dir", help="where the temporary projects go (default: /dev/shm when it is a tmpfs "
                        "with room, else the system's temporary folder)")  # fmt: skip
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        worker(args.measure, args.project, args.profile)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still deletes the temporary folders
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    serving = serve_available()
    where = args.dir or default_dir(max(sizes))
    load = os.getloadavg()
    print(tree())
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {load[0]:.2f}; "
          f"serve: {'yes' if serving else 'not here (no serve command or web stack)'}")  # fmt: skip
    print(f"projects in {where or tempfile.gettempdir()} ({filesystem(where or tempfile.gettempdir())})")
    results = []
    with _browser() as browser:
        for n in sizes:
            rounds = args.large_rounds if n >= 100_000 and args.large_rounds else args.rounds
            missed = {v for r in results if r["n"] == 10_000 for v in VIEWS if "MISSED" in verdict(v, r)}
            results.append(run_size(n, rounds, browser, serving, where, missed))
    print_summary(results)
    print(f"load at the end {os.getloadavg()[0]:.2f}")


def tree() -> str:
    """The commit measured, and the package's files changed since (other work in the tree)."""
    git = ["git", "-C", str(HERE.parent.parent)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    head = head.strip()
    changed = subprocess.run([*git, "status", "--porcelain", "--", "ductaflow"], capture_output=True,
                             text=True).stdout.split("\n")  # fmt: skip
    files = [line[3:] for line in changed if line.strip()]
    return f"commit {head or '?'}" + (f", with changes to {', '.join(files)}" if files else "")


def default_dir(n: int) -> str | None:
    """/dev/shm when it is a tmpfs with room for N instances (about 16 KB each), else ``None``.

    Creating a folder or a file costs 0.5 to 1 ms on some virtual disks
    (deleting one, more), so 100,000 instances would take minutes to make
    and to delete there; the views read files from the page cache either way.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir() or filesystem(str(shm)) != "tmpfs":
        return None
    room = shutil.disk_usage(shm).free
    return str(shm) if room > n * 16_384 + 2**30 else None


def filesystem(path: str) -> str:
    from ductaflow.indexstore import filesystem_type

    return filesystem_type(Path(path)) or "unknown filesystem"


class _browser:
    """Debian's chromium under Playwright, or ``None`` (the page timings are then left out)."""

    def __enter__(self) -> Any:
        self.playwright = self.browser = None
        if not Path(CHROMIUM).exists():
            print(f"no {CHROMIUM}: page timings left out")
            return None
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            print("playwright is not installed: page timings left out")
            return None
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        return self.browser

    def __exit__(self, *exc: object) -> None:
        if self.browser is not None:
            self.browser.close()
        if self.playwright is not None:
            self.playwright.stop()


if __name__ == "__main__":
    main()
