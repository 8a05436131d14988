"""Where a flow's folder goes on ``sys.path``: right after the standard library, so any file name works.

A flow's sibling modules (``flow/helpers.py``) are importable from the flow
in every mode. Python puts a script's folder first on ``sys.path``, ahead of
the standard library, so a flow named ``random.py`` or ``json.py`` (or any
file of its folder named like a standard module) is imported in place of
that module by whatever imports it next: a kernel starting up, or ductaflow
itself. ductaflow puts the folder right after the standard library instead:
siblings still come before installed packages, and the standard library
always wins.

- Executed by ductaflow: the kernel starts without the folder on its path and
  adds it once started (:func:`kernel_code`).
- As a script (``python flow/x.py``, and the child of ``--output-dir``): when
  the script's folder holds a file named like a standard module, the first
  import of ductaflow moves that folder
  (:func:`script_folder_after_stdlib`, run when this module is imported,
  which ``ductaflow/__init__.py`` does first, before ductaflow imports
  anything of the standard library). A flow imports ductaflow before
  anything else, as the README's header does.

Light: flows import this; standard library only.
"""

from __future__ import annotations

import os
import sys


def after_stdlib(folder: str, path: list[str]) -> None:
    """Put ``folder`` on ``path`` (a ``sys.path``) right after the standard library, and only there.

    Entries naming the same folder are removed first; without a standard
    library on ``path`` the folder goes last. Kernels run this function's own
    source (:func:`kernel_code`), so it imports what it needs.
    """
    import os
    import sys

    def real(entry: str) -> str:
        return os.path.normcase(os.path.realpath(entry or os.curdir))

    home = getattr(os, "__file__", None)  # os.py lies in the standard library's folder
    stdlib = real(os.path.dirname(home)) if home else None
    bundled = {f"python{sys.version_info[0]}{sys.version_info[1]}.zip", "dlls"}  # the zip; DLLs on Windows

    def in_stdlib(entry: str) -> bool:
        here = real(entry)
        name = os.path.basename(here)
        if stdlib is None or name in ("site-packages", "dist-packages"):
            return False
        return here == stdlib or here.startswith(stdlib + os.sep) or name in bundled

    target = real(folder)
    path[:] = [entry for entry in path if real(entry) != target]
    last = max((i for i, entry in enumerate(path) if in_stdlib(entry)), default=len(path) - 1)
    path.insert(last + 1, folder)


def kernel_code(folder: str) -> str:
    """One line of Python that, run in a started kernel, puts ``folder`` right after its standard library."""
    import inspect

    source = f"{inspect.getsource(after_stdlib)}\nafter_stdlib({folder!r}, __import__('sys').path)\n"
    return f"exec(compile({source!r}, '<ductaflow: the flow folder>', 'exec'), {{}})"


def script_folder_after_stdlib() -> None:
    """In a script run (``python flow/x.py``), move the script's folder behind the standard library.

    Python put it first. Nothing changes in a kernel, under ``python -m`` or
    ``-c``, or when ``-P`` (``PYTHONSAFEPATH``) kept the folder off the path.
    """
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if not script or getattr(main, "__spec__", None) is not None or not sys.path:
        return
    folder = os.path.dirname(os.path.realpath(script))
    if os.path.realpath(sys.path[0] or os.curdir) == folder and _shadows_stdlib(folder):
        after_stdlib(sys.path[0], sys.path)


def _shadows_stdlib(folder: str) -> bool:
    """True when ``folder`` holds a module or package named like a standard-library module.

    Only then is the script's folder moved: any other script's ``sys.path`` is
    left exactly as Python made it.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    stems = {name[:-3] if name.endswith(".py") else name for name in names}
    return not stems.isdisjoint(sys.stdlib_module_names)


script_folder_after_stdlib()  # the one thing done at import: ductaflow's own imports come next
