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

#: (file, outcome, detail, config): outcome is success, failed (detail = error name) or refused. A
#: papermill-style parameters cell (variables, no ``config``) gets the config keys naming its variables.
CASES = [
    ("papermill/simple_execute.ipynb", "success", None, {"msg": "Hello"}),
    ("papermill/nb_version_4.4.ipynb", "success", None, {"var": 2}),
    ("papermill/report_mode_test.ipynb", "success", None, {"a": 0}),
    ("papermill/result_no_exec.ipynb", "success", None, {"foo": 1}),
    ("papermill/complex_parameters.ipynb", "failed", "SyntaxError", {"x": 1}),
    ("papermill/no_parameters.ipynb", "refused", None, {"x": 1}),
    ("papermill/sysexit0.ipynb", "refused", None, {"x": 1}),
    ("jupytext/nteract_with_parameter.py", "success", None, {"param": 10}),
    ("jupytext/hydrogen.py", "success", None, {"x": 1}),
    ("jupytext/Notebook with metadata and long cells.py", "success", None, {"x": 1}),
    ("jupytext/text_outputs_and_images.py", "refused", None, {"x": 1}),
]


@pytest.mark.parametrize(("name", "outcome", "detail", "config"), CASES, ids=[c[0] for c in CASES])
def test_corpus_outcomes(project, corpus, name, outcome, detail, config):
    """Each corpus file succeeds, fails with the expected error, or is refused before writing."""
    flow = corpus / name
    if outcome == "refused":
        with pytest.raises(ductaflow.FlowError, match="no cell tagged 'parameters'"):
            ductaflow.run_step_flow(flow, "corpus", "case", config)
        assert listing(project) == []
        return
    if outcome == "failed":
        with pytest.raises(ductaflow.FlowExecutionError) as info:
            ductaflow.run_step_flow(flow, "corpus", "case", config)
        assert info.value.error_name == detail
        assert record(project / "runs/corpus/case")["status"] == "failed"
        return
    result = ductaflow.run_step_flow(flow, "corpus", "case", config)
    executed = nbformat.read(result.notebook, as_version=4)
    nbformat.validate(executed)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and f"config = {config!r}" in injected[0].source
    assert result.html is not None and result.html.stat().st_size > 0


def test_papermill_style_parameters_are_injected_as_variables(project, corpus):
    """nteract_with_parameter.py assigns `param = 4`: param=10 is set as the variable, as papermill does."""
    result = ductaflow.run_step_flow(
        corpus / "jupytext/nteract_with_parameter.py", "corpus", "p", {"param": 10}
    )
    executed = nbformat.read(result.notebook, as_version=4)
    parameters = next(i for i, c in enumerate(executed.cells) if "parameters" in c.metadata.get("tags", []))
    injected = executed.cells[parameters + 1]
    assert "injected-parameters" in injected.metadata["tags"]
    assert injected.source.splitlines()[1:] == ["param = 10", "config = {'param': 10}"]
    frame = next(c for c in executed.cells if c.source.startswith("df = pd.DataFrame"))
    assert "13" in frame.outputs[0]["data"]["text/plain"]  # 3 + param, the corpus's expected value
    assert json.loads((result.run_dir / "config.json").read_text()) == {"param": 10}


def test_a_key_that_is_not_a_papermill_parameter_is_refused(project, corpus):
    """`parm` for `param`: refused before anything is written, naming the parameter and the convention."""
    with pytest.raises(ductaflow.ConfigError, match=r"'parm' is not a parameter .* Did you mean 'param'"):
        ductaflow.run_step_flow(corpus / "jupytext/nteract_with_parameter.py", "corpus", "p", {"parm": 10})
    assert listing(project) == []
