"""What recording the environment costs: its capture, and its share of each instance's directory.

Run: ``python bench/bench_environment.py [--rounds R] [--n N]`` (defaults 7 and 500). Everything is
written into a temporary directory. Rounds interleave the approaches, their order reversed every
other round; the tables give medians.

1. Capture in this process: ductaflow's probe (each distribution's METADATA header), the same with
   ``importlib.metadata``'s parsed metadata (``dist.metadata["Name"]``, ``dist.version``), and a
   cached ``kernel_environment()`` (a stat per folder on the search path).
2. Capture through another interpreter, as for a named kernel: ``kernel_environment("bench")``
   uncached (a kernelspec on this venv's Python), beside a bare ``python -c pass``.
3. Per instance: ``rundir.open_attempt`` of N fresh instance directories with the record's
   ``environment`` field and the hard-linked ``environment.json``, against the same without them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _importlib_capture() -> dict[str, str]:
    from importlib import metadata

    from ductaflow.envprobe import normalise_name, search_path

    found: dict[str, str] = {}
    for dist in metadata.distributions(path=search_path()):
        found.setdefault(normalise_name(dist.metadata["Name"]), dist.version)
    return found


def _rounds(approaches: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in approaches}
    for r in range(rounds):
        order = list(approaches) if r % 2 == 0 else list(reversed(approaches))
        for name in order:
            start = time.perf_counter()
            approaches[name]()
            times[name].append(time.perf_counter() - start)
    return times


def _table(title: str, times: dict[str, list[float]], unit: float, label: str) -> dict[str, float]:
    print(f"\n{title}")
    medians = {name: statistics.median(values) / unit for name, values in times.items()}
    for name, value in medians.items():
        print(f"  {name:<42} {value:10.3f} {label}")
    return medians


def capture_here(rounds: int) -> None:
    """In-process capture: ductaflow's probe, importlib's parsed metadata, the cached call."""
    from ductaflow import envprobe
    from ductaflow.environment import forget_captures, kernel_environment

    def uncached() -> None:
        forget_captures()
        kernel_environment()

    kernel_environment()
    assert envprobe.probe(envprobe.search_path())["distributions"] == _importlib_capture()
    times = _rounds({"kernel_environment() uncached": uncached,
                     "importlib.metadata parsed (dist.version)": _importlib_capture,
                     "kernel_environment() cached": kernel_environment}, rounds)  # fmt: skip
    medians = _table("capture in this process (ms):", times, 1e-3, "ms")
    packages = len(envprobe.probe(envprobe.search_path())["distributions"])
    ratio = medians["importlib.metadata parsed (dist.version)"] / medians["kernel_environment() uncached"]
    print(f"  {packages} distributions; the header read is x{ratio:.1f} faster than importlib's parse")


def capture_elsewhere(rounds: int, tmp: Path) -> None:
    """A named kernel's interpreter: the subprocess probe against a bare interpreter start."""
    from ductaflow.environment import forget_captures, kernel_environment

    spec = tmp / "jupyter" / "kernels" / "bench"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernelspec = {"argv": argv, "display_name": "bench", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernelspec))
    os.environ["JUPYTER_PATH"] = str(tmp / "jupyter")

    def uncached() -> None:
        forget_captures()
        assert not isinstance(kernel_environment("bench"), str)

    times = _rounds({"kernel_environment('bench') uncached": uncached,
                     "python -c pass": lambda: subprocess.run([sys.executable, "-c", "pass"], check=True),
                     "kernel_environment('bench') cached": lambda: kernel_environment("bench")},
                    rounds)  # fmt: skip
    _table("capture through another interpreter (ms):", times, 1e-3, "ms")


def per_instance(rounds: int, n: int, tmp: Path) -> None:
    """open_attempt of N instances with and without the environment."""
    from ductaflow import rundir
    from ductaflow.environment import kernel_environment, store_environment
    from ductaflow.runrecord import base_record

    environment = kernel_environment()
    assert not isinstance(environment, str)
    config = {"n": 1}
    made = iter(range(10**9))
    linked: list[Path] = []

    def batch(with_environment: bool) -> None:
        step = tmp / "runs" / f"step{next(made)}"
        if with_environment:
            linked.append(step)
        for i in range(n):
            record = base_record(step=step.name, instance=f"i{i}", config=config)
            if with_environment:
                record["environment"] = environment.summary
            rundir.open_attempt(step / f"i{i}", config, record,
                                environment=environment if with_environment else None)  # fmt: skip

    def link_only() -> None:
        folder = tmp / "links" / str(next(made))
        for i in range(n):
            (folder / str(i)).mkdir(parents=True)
            store_environment(environment, folder / str(i), folder / "store")

    times = _rounds({"open_attempt with environment": lambda: batch(True),
                     "open_attempt without": lambda: batch(False),
                     "store_environment alone (its link)": link_only}, rounds)  # fmt: skip
    medians = _table(f"per instance, {n} instances a round (ms per instance):", times, 1e-3 * n, "ms")
    extra = medians["open_attempt with environment"] - medians["open_attempt without"]
    ratio = medians["open_attempt with environment"] / medians["open_attempt without"]
    print(
        f"  the environment adds {extra:.3f} ms an instance (x{ratio:.2f} of the directory's assembly; "
        "its fsyncs make most of the spread)"
    )
    links = os.stat(linked[0] / "i0" / "environment.json").st_nlink
    print(f"  one stored file per step, linked {links - 1} times")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        capture_here(args.rounds)
        capture_elsewhere(args.rounds, Path(tmp))
        per_instance(args.rounds, args.n, Path(tmp))


if __name__ == "__main__":
    main()
