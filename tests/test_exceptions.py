"""ductaflow errors keep their message and fields across pickling (process boundaries)."""

import pickle

import pytest

import ductaflow
from ductaflow import exceptions


@pytest.mark.parametrize(
    "cls",
    [getattr(exceptions, n) for n in ductaflow.__all__ if n.endswith("Error")],
    ids=lambda c: c.__name__,
)
def test_errors_survive_pickling(cls):
    """Message, class and structured fields survive a pickle round trip."""
    error = cls("instance 'a' failed in cell 2", instance="a", cell_index=2)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == "instance 'a' failed in cell 2"
    assert copy.instance == "a"
    assert copy.cell_index == 2
    assert isinstance(copy, ductaflow.DuctaflowError)
