"""Helpers shared by the benchmark scripts: the trivial flow, and its notebook for papermill."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat

FLOW_STEM = "trivial"


def write_flow(project: Path, source: str) -> Path:
    """Write a percent-format flow named ``trivial.py`` into ``project/flow/`` and return its path."""
    flow_dir = project / "flow"
    flow_dir.mkdir(parents=True)
    flow = flow_dir / f"{FLOW_STEM}.py"
    flow.write_text(source, encoding="utf-8")
    return flow


def convert_for_papermill(flow: Path, out_dir: Path) -> Path:
    """Convert ``flow`` to ``out_dir/<its stem>.ipynb`` with a python3 kernelspec (papermill, ploomber)."""
    nb = jupytext.read(flow)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    ipynb = out_dir / f"{flow.stem}.ipynb"
    nbformat.write(nb, str(ipynb))
    return ipynb
