"""The environment a flow ran in: every installed distribution, the Python, the machine.

Each attempt records the environment of the Python that executes its flow in
``environment.json`` (see :mod:`ductaflow.envprobe` for what it holds), and
``run.json`` names it under ``environment``: ``{"sha256", "file", "python",
"packages"}``. The file's bytes are canonical (sorted keys), so equal
environments have equal digests, and ``sha256sum environment.json`` gives the
recorded digest.

Capture costs once per process and interpreter: the Python ductaflow runs in
(the default kernel, the fork engine, script mode) is asked in this process;
a named kernel's interpreter runs the probe once in a subprocess. A cached
answer is taken again while the folders on that interpreter's search path
keep their modification times (installing or removing a distribution changes
its folder's), so a long-lived process that installs a package meanwhile
records the new environment.

Storage is deduplicated: the file is kept once per step in
``runs/<step>/.ductaflow/environments/<sha256>.json`` (read-only), and each
instance directory gets a hard link to it, or a copy where a link cannot be
made (a file system without them, too many links).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import envprobe
from .files import no_space, overwrite_in_place, read_json, rename, write_atomic

ENVIRONMENT_NAME = "environment.json"
#: The folder of a step's state folder that keeps one file per environment.
STORE_NAME = "environments"
#: Changes named in a reason before ``+N more``.
SHOWN_CHANGES = 3
#: Seconds another kernel's interpreter gets to describe itself.
PROBE_TIMEOUT = 120


@dataclass(frozen=True)
class Environment:
    """One captured environment: its fields, the canonical bytes of ``environment.json``, their sha256."""

    data: dict[str, Any]
    content: bytes
    sha256: str

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Environment:
        """The environment holding ``data`` (what :func:`ductaflow.envprobe.probe` returns)."""
        content = (json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
        return cls(dict(data), content, hashlib.sha256(content).hexdigest())

    @property
    def summary(self) -> dict[str, Any]:
        """What ``run.json`` holds under ``environment``."""
        return {"sha256": self.sha256, "file": ENVIRONMENT_NAME, "python": self.data.get("python_version"),
                "packages": len(self.data.get("distributions") or {})}  # fmt: skip


# (interpreter, what shapes its search path) -> (environment or why none, search path, its folders' stamps)
_CACHE: dict[tuple[str, ...], tuple[Environment | str, tuple[str, ...], tuple[int, ...]]] = {}
_GUARD = threading.Lock()
_THIS_PYTHON = "this python"


def kernel_environment(kernel_name: str | None = None) -> Environment | str:
    """The environment of the Python that runs flows for ``kernel_name``, or why it cannot be told.

    ``None`` is the Python ductaflow runs in (the default kernel, the fork
    engine), asked in this process. A named kernel's interpreter (its
    kernelspec's ``argv[0]`` with its ``env``, as Jupyter starts it) runs the
    probe once in a subprocess. A kernel that is not installed, not Python,
    or whose interpreter fails returns a sentence saying so (cached too).
    """
    if kernel_name is None:
        paths = envprobe.search_path()
        return _cached((_THIS_PYTHON, *paths), lambda: (Environment.of(envprobe.probe(paths)), paths))
    command = _kernel_command(kernel_name)
    if isinstance(command, str):
        return command
    argv, env = command
    key = (*argv, *(f"{k}={v}" for k, v in sorted(env.items()) if k.startswith("PYTHON")))
    return _cached(key, lambda: _ask(kernel_name, argv, env))


def _cached(key: tuple[str, ...], capture: Any) -> Environment | str:
    with _GUARD:
        found = _CACHE.get(key)
        if found is not None and _stamps(found[1]) == found[2]:
            return found[0]
        environment, paths = capture()
        _CACHE[key] = (environment, tuple(paths), _stamps(paths))
        return environment


def _stamps(paths: Any) -> tuple[int, ...]:
    """Each folder's modification time (ns), ``-1`` for one missing: what an install or removal changes."""
    stamps = []
    for path in paths:
        try:
            stamps.append(os.stat(path).st_mtime_ns)
        except OSError:
            stamps.append(-1)
    return tuple(stamps)


def _kernel_command(kernel_name: str) -> tuple[list[str], dict[str, str]] | str:
    """The interpreter (with its options) and environment variables the kernelspec starts, or why not."""
    import shutil
    import string

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        return f"kernel {kernel_name!r} is not installed"
    if (spec.language or "").lower() != "python" or not spec.argv:
        return f"kernel {kernel_name!r} runs {spec.language or 'an unknown language'}, not Python"
    env = dict(os.environ)
    env.update({k: string.Template(str(v)).safe_substitute(env) for k, v in (spec.env or {}).items()})
    program = spec.argv[0]
    if program in {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}:
        program = sys.executable  # as jupyter_client starts it
    elif not os.path.isabs(program):
        program = shutil.which(program, path=env.get("PATH")) or program
    return [program, *_interpreter_options(spec.argv[1:])], env


def _interpreter_options(args: list[str]) -> list[str]:
    """The options before ``-m``/``-c``/the script that change the search path (``-s``, ``-E``, ``-I``...)."""
    options: list[str] = []
    taking = False
    for arg in args:
        if taking:
            options.append(arg)
            taking = False
        elif arg in ("-m", "-c") or not arg.startswith("-"):
            break
        else:
            options.append(arg)
            taking = arg in ("-X", "-W")
    return options


def _ask(kernel_name: str, argv: list[str], env: dict[str, str]) -> tuple[Environment | str, list[str]]:
    """Run the probe with another interpreter: its environment and search path, or why it failed."""
    import subprocess

    source = Path(envprobe.__file__).read_text(encoding="utf-8")
    try:
        done = subprocess.run([*argv, "-c", source], env=env, capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT, check=False)  # fmt: skip
        answer = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return f"kernel {kernel_name!r}: {argv[0]} could not be asked ({type(exc).__name__}: {exc})", []
    if not isinstance(answer, dict) or not isinstance(answer.get("environment"), dict):
        last = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"kernel {kernel_name!r}: {argv[0]} could not be asked ({last})", []
    return Environment.of(answer["environment"]), [str(p) for p in answer.get("path") or []]


def store_environment(environment: Environment, directory: Path, store: Path) -> None:
    """Give ``directory`` its ``environment.json``: a hard link to ``store/<sha256>.json``, else a copy.

    The store's file is written (atomically, read-only) when missing. A full
    disk raises; any other reason a link cannot be made gives a copy.
    """
    target = directory / ENVIRONMENT_NAME
    if not _link(environment, store / f"{environment.sha256}.json", target):
        write_atomic(target, environment.content, durable=True)


def _link(environment: Environment, kept: Path, target: Path) -> bool:
    """Link ``target`` to the store's file ``kept``, writing that first when missing or damaged."""
    for again in (False, True):
        try:
            os.link(kept, target)
        except FileNotFoundError:  # the step's first instance in this environment, or the store cleared
            if again or not _keep(environment, kept):
                return False
            continue
        except OSError as exc:
            if no_space(exc):
                raise
            return False  # no hard links on this file system, or too many to one file
        if os.stat(target).st_size == len(environment.content):
            return True
        target.unlink()  # the kept file was written over: keep it anew
        if again or not _keep(environment, kept, replace=True):
            return False
    return False


def _keep(environment: Environment, kept: Path, *, replace: bool = False) -> bool:
    """Write the store's file (``replace``: over a damaged one); False when that cannot be done there.

    Made by linking a finished temporary file: of attempts keeping it at once,
    the first one's stays and every instance links to that one.
    """
    made = kept.with_name(f".{kept.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(made, environment.content, durable=True)
        if os.name == "posix":  # read-only: a flow writing its environment.json would write every instance's
            os.chmod(made, 0o444)
        if replace:
            rename(made, kept)
        else:
            with contextlib.suppress(FileExistsError):  # kept meanwhile by another attempt: the same bytes
                os.link(made, kept)
    except OSError as exc:
        if no_space(exc):
            raise
        return False
    finally:
        made.unlink(missing_ok=True)
    return True


def keep_flow_file(environment: Environment, directory: Path, store: Path) -> str | None:
    """After the flow ran: an ``environment.json`` the flow wrote is kept as ``environment.flow.json``.

    Ours is put back. A flow that wrote into the linked file itself (file
    permissions do not stop root) wrote every linked instance's: the right
    content goes back into that file. Returns a warning for the record, or
    ``None`` when the file is ours.
    """
    target = directory / ENVIRONMENT_NAME
    try:
        written = target.read_bytes()
    except FileNotFoundError:  # removed by the flow: put back, as config.json is
        store_environment(environment, directory, store)
        return None
    if written == environment.content:
        return None
    kept_as = target.with_suffix(".flow.json")
    if _same_file(target, store / f"{environment.sha256}.json"):
        write_atomic(kept_as, written)
        overwrite_in_place(target, environment.content.decode("utf-8"))
    else:
        rename(target, kept_as)
        store_environment(environment, directory, store)
    return f"the flow wrote {ENVIRONMENT_NAME}, a name ductaflow uses: kept as {kept_as.name}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def read_environment(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The environment recorded in ``run_dir/environment.json``, or ``None`` when absent or unreadable."""
    data, _ = read_json(Path(run_dir) / ENVIRONMENT_NAME)
    return data if isinstance(data, dict) and isinstance(data.get("distributions"), dict) else None


def environment_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """How ``new`` differs from ``old``: packages first, then Python and the machine.

    >>> environment_changes(
    ...     {"python_version": "3.11.7", "distributions": {"numpy": "1.26.4", "pytz": "2024.1"}},
    ...     {"python_version": "3.12.1", "distributions": {"numpy": "2.0.0", "scipy": "1.13.0"}})
    ['numpy 1.26.4 -> 2.0.0', 'pytz removed', 'scipy 1.13.0 added', 'python 3.11.7 -> 3.12.1']
    """
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return []
    changes = package_changes(old, new)
    for key in ("python_version", "implementation", "python_executable", "platform", "machine", "cpu_count"):
        if old.get(key) != new.get(key):
            changes.append(f"{key.removesuffix('_version')} {old.get(key)} -> {new.get(key)}")
    return changes


def package_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The distributions added, removed or at another version, by name."""
    before, after = _distributions(old), _distributions(new)
    changes = []
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            changes.append(f"{name} removed")
        elif name not in before:
            changes.append(f"{name} {after[name]} added")
        elif before[name] != after[name]:
            changes.append(f"{name} {before[name]} -> {after[name]}")
    return changes


def _distributions(environment: Mapping[str, Any]) -> dict[str, Any]:
    found = environment.get("distributions")
    return dict(found) if isinstance(found, Mapping) else {}


def shortened(changes: list[str], limit: int = SHOWN_CHANGES) -> str:
    """``a, b, c, +2 more``."""
    more = f", +{len(changes) - limit} more" if len(changes) > limit else ""
    return ", ".join(changes[:limit]) + more


def environment_reason(record: Mapping[str, Any], run_dir: Path, current: Environment) -> str | None:
    """Why a success recorded in ``run_dir`` ran in another environment than ``current``, or ``None``.

    A record without an environment (made before ductaflow recorded one, or
    by a kernel it could not ask) counts as another environment. Costs a
    comparison of digests; ``environment.json`` is read only when they differ.
    """
    recorded = record.get("environment")
    if not isinstance(recorded, Mapping) or not recorded.get("sha256"):
        return "environment not recorded"
    if recorded["sha256"] == current.sha256:
        return None
    changes = environment_changes(read_environment(run_dir), current.data)
    return f"environment changed ({shortened(changes)})" if changes else "environment changed"


def environment_detail(record: Mapping[str, Any], run_dir: Path, current: Environment | str) -> str:
    """How the recorded environment compares with ``current``, for ``why``: ``packages unchanged``..."""
    recorded = record.get("environment")
    if not isinstance(recorded, Mapping) or not recorded.get("sha256"):
        return "environment not recorded"
    if isinstance(current, str):
        return f"environment not compared: {current}"
    if recorded["sha256"] == current.sha256:
        return "packages unchanged"
    old = read_environment(run_dir)
    if old is None:
        return f"environment changed ({ENVIRONMENT_NAME} missing or unreadable)"
    packages = package_changes(old, current.data)
    others = environment_changes(old, current.data)[len(packages) :]
    if packages:
        return f"packages changed ({shortened(packages + others)})"
    return f"environment changed ({shortened(others)})" if others else "packages unchanged"


def forget_captures() -> None:
    """Drop the environments this process captured: the next call asks again (for measurements)."""
    with _GUARD:
        _CACHE.clear()
