"""Reading flows: percent scripts and notebooks, the parameters cell, config injection."""

from __future__ import annotations

import shutil

import pytest

from ductaflow import FlowError
from ductaflow.flow import INJECTED_TAG, read_flow

#: jupytext corpus scripts with a cell tagged "parameters" (from the corpus README).
JUPYTEXT_WITH_PARAMETERS = {
    "hydrogen.py",
    "nteract_with_parameter.py",
    "Notebook with metadata and long cells.py",
}


def test_percent_flow_is_converted_in_memory(tmp_path, flows):
    """Reading a .py flow writes nothing beside it and finds the parameters cell."""
    flow_file = tmp_path / "ok.py"
    shutil.copy(flows / "ok.py", flow_file)
    flow = read_flow(flow_file)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.py"]
    assert flow.notebook.cells[flow.parameters_index].source.strip() == "config = {}"
    assert len(flow.sha256) == 64


def test_config_is_injected_after_the_parameters_cell(flows):
    """The injected cell follows the parameters cell, is tagged, and assigns the config literally."""
    flow = read_flow(flows / "ok.py")
    nb = flow.with_config({"n": 3, "flag": True, "none": None, "nested": {"s": "it's"}})
    injected = nb.cells[flow.parameters_index + 1]
    assert injected.metadata["tags"] == [INJECTED_TAG]
    scope: dict = {}
    exec(injected.source, scope)
    assert scope["config"] == {"n": 3, "flag": True, "none": None, "nested": {"s": "it's"}}
    assert len(flow.notebook.cells) == len(nb.cells) - 1  # the cached flow is untouched


def test_missing_parameters_cell_shows_the_cell_to_add(flows):
    """A flow without a parameters cell is an error naming the file and showing the cell."""
    with pytest.raises(FlowError) as info:
        read_flow(flows / "no_parameters.py")
    message = str(info.value)
    assert "no_parameters.py" in message
    assert '# %% tags=["parameters"]' in message
    assert "config = {}" in message


def test_missing_and_unsupported_files(tmp_path):
    """A missing flow and an unsupported suffix are clear errors naming the file."""
    with pytest.raises(FlowError, match="does not exist"):
        read_flow(tmp_path / "nope.py")
    other = tmp_path / "flow.txt"
    other.write_text("x")
    with pytest.raises(FlowError, match=r"flow\.txt.*\.py, \.ipynb, \.md"):
        read_flow(other)


def test_unreadable_notebook_is_a_flow_error(tmp_path):
    """A corrupt .ipynb is reported as a flow error, not a JSON traceback."""
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(FlowError, match=r"bad\.ipynb.*cannot be read"):
        read_flow(bad)


def test_stale_injected_cells_are_replaced(tmp_path, flows):
    """Re-running an executed notebook injects once: the old injected cell is dropped."""
    import nbformat

    flow = read_flow(flows / "ok.py")
    executed = tmp_path / "executed.ipynb"
    nbformat.write(flow.with_config({"n": 1}), executed)
    again = read_flow(executed).with_config({"n": 2})
    injected = [c for c in again.cells if INJECTED_TAG in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert "'n': 2" in injected[0].source


def test_every_jupytext_corpus_script_reads_as_percent(corpus):
    """All corpus percent scripts parse; those without a parameters cell are refused clearly."""
    scripts = sorted((corpus / "jupytext").glob("*.py"))
    assert len(scripts) == 11
    for script in scripts:
        if script.name in JUPYTEXT_WITH_PARAMETERS:
            flow = read_flow(script)
            assert "parameters" in flow.notebook.cells[flow.parameters_index].metadata["tags"]
        else:
            with pytest.raises(FlowError, match="no cell tagged 'parameters'"):
                read_flow(script)


def test_commented_cell_magic_is_not_a_cell_marker(corpus):
    """'# %%time' inside a cell does not split it (jupytext's percent rules apply)."""
    import jupytext

    script = corpus / "jupytext" / "convert_to_py_then_test_with_update83.py"
    nb = jupytext.reads(script.read_text(), fmt="py:percent")
    assert any("%%time" in cell.source for cell in nb.cells)
