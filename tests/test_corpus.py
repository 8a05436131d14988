"""Execute notebooks and percent scripts from papermill's and jupytext's own test inputs.

Expected outcomes come from the corpus README (what papermill's tests expect), adapted
to ductaflow: a flow needs a cell tagged 'parameters', so the corpus files without one
are refused before anything runs.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from conftest import listing, record

import ductaflow

#: (file, outcome, detail): outcome is success, failed (detail = error name) or refused.
CASES = [
    ("papermill/simple_execute.ipynb", "success", None),
    ("papermill/nb_version_4.4.ipynb", "success", None),
    ("papermill/report_mode_test.ipynb", "success", None),
    ("papermill/result_no_exec.ipynb", "success", None),
    ("papermill/complex_parameters.ipynb", "failed", "SyntaxError"),
    ("papermill/no_parameters.ipynb", "refused", None),
    ("papermill/sysexit0.ipynb", "refused", None),
    ("jupytext/nteract_with_parameter.py", "success", None),
    ("jupytext/hydrogen.py", "success", None),
    ("jupytext/Notebook with metadata and long cells.py", "success", None),
    ("jupytext/text_outputs_and_images.py", "refused", None),
]


@pytest.mark.parametrize(("name", "outcome", "detail"), CASES, ids=[c[0] for c in CASES])
def test_corpus_outcomes(project, corpus, name, outcome, detail):
    """Each corpus file succeeds, fails with the expected error, or is refused before writing."""
    flow = corpus / name
    if outcome == "refused":
        with pytest.raises(ductaflow.FlowError, match="no cell tagged 'parameters'"):
            ductaflow.run_step_flow(flow, "corpus", "case", {"x": 1})
        assert listing(project) == []
        return
    if outcome == "failed":
        with pytest.raises(ductaflow.FlowExecutionError) as info:
            ductaflow.run_step_flow(flow, "corpus", "case", {"x": 1})
        assert info.value.error_name == detail
        assert record(project / "runs/corpus/case")["status"] == "failed"
        return
    result = ductaflow.run_step_flow(flow, "corpus", "case", {"x": 1})
    executed = nbformat.read(result.notebook, as_version=4)
    nbformat.validate(executed)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "config = {'x': 1}" in injected[0].source
    assert result.html is not None and result.html.stat().st_size > 0


def test_nteract_parameters_still_work_beside_config(project, corpus):
    """A flow's own parameters cell runs first; the injected config follows it and can be used."""
    result = ductaflow.run_step_flow(
        corpus / "jupytext/nteract_with_parameter.py", "corpus", "p", {"param": 10}
    )
    executed = nbformat.read(result.notebook, as_version=4)
    parameters = next(i for i, c in enumerate(executed.cells) if "parameters" in c.metadata.get("tags", []))
    assert "injected-parameters" in executed.cells[parameters + 1].metadata["tags"]
    assert json.loads((result.run_dir / "config.json").read_text()) == {"param": 10}
