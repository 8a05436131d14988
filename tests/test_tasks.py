"""What a worker runs for one instance: a failure of ductaflow itself keeps its traceback."""

from __future__ import annotations

from conftest import run


def test_an_internal_error_keeps_its_traceback_in_the_row_and_the_log(project, tally_flow, monkeypatch):
    """A bug in ductaflow (not the flow's error) fails only its instance, with the full traceback shown."""
    from ductaflow import rundir

    def broken_close(run_dir, record, status, started):
        if run_dir.name == "b":
            raise RuntimeError("a bug while closing the attempt")
        return original(run_dir, record, status, started)

    original = rundir.close_attempt
    monkeypatch.setattr(rundir, "close_attempt", broken_close)
    frame = run(tally_flow, [{"instance_name": "a"}, {"instance_name": "b"}], project, jobs=1)
    assert list(frame.status) == ["success", "failed"]
    error = frame.error[1]
    assert error.startswith("internal error in ductaflow, please report it: RuntimeError: a bug while")
    assert "Traceback (most recent call last)" in error
    assert "in _conclude" in error and "broken_close" in error
    log = (project / "runs" / "tally" / "b" / "log.txt").read_text()
    assert "[ductaflow] internal error, please report it" in log and "in _conclude" in log
