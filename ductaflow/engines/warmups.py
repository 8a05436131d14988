"""Warm-ups the fork engine's zygote runs for well-known preloaded libraries, once, before any fork.

Importing a library is not all its first use costs: pandas imports its
formatters and builds its group-by machinery on the first ``groupby``,
``to_csv`` and HTML repr; matplotlib loads its fonts and renderer on the
first figure drawn. A child forked from a zygote that never did these pays
them again in every instance (about 15 ms for a pandas groupby). So after
preloading, for each library below that is loaded (named in ``preload`` or
imported by a module that is), the zygote does once what a flow's first use
would, on throwaway objects, leaving nothing a flow can see: no figure stays
open, no option changes. A warm-up that fails is skipped; it never stops the
zygote.

Users can warm up anything else the same way: a module of their own in
``preload`` runs its code at import, in the zygote.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable


def _pandas() -> None:
    import pandas as pd

    frame = pd.DataFrame({"group": [i % 3 for i in range(30)], "value": range(30)})
    summary = frame.groupby("group")["value"].agg(["count", "mean", "sum"])
    summary.to_csv(io.StringIO())
    summary._repr_html_()
    repr(summary)
    frame.describe()


def _pyplot() -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    try:
        ax.plot([0, 1, 2], [0, 1, 4])
        ax.set_title("warm-up")
        fig.savefig(io.BytesIO(), format="png", dpi=40)
    finally:
        plt.close(fig)


#: Module whose presence calls for a warm-up -> the warm-up.
WARM_UPS: dict[str, Callable[[], None]] = {"pandas": _pandas, "matplotlib.pyplot": _pyplot}


def warm_up_loaded() -> None:
    """Run the warm-up of each library loaded in this process (one that fails is skipped)."""
    for module, warm_up in WARM_UPS.items():
        if module in sys.modules:
            with contextlib.suppress(Exception):
                warm_up()
