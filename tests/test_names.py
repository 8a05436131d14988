"""Step and instance names are single, safe path components."""

import pytest

from ductaflow import UnsafeNameError
from ductaflow.names import check_name

UNSAFE = {
    "empty": "",
    "blank": "   ",
    "dot": ".",
    "dotdot": "..",
    "parent-traversal": "../escape",
    "slash": "a/b",
    "backslash": "a\\b",
    "absolute": "/etc",
    "drive": "C:stuff",
    "newline": "a\nb",
    "nul": "a\x00b",
    "hidden": ".hidden",
    "trailing-dot": "name.",
    "trailing-space": "name ",
    "device": "CON",
    "too-long": "x" * 201,
    "not-a-string": 5,
}


@pytest.mark.parametrize("name", UNSAFE.values(), ids=UNSAFE.keys())
def test_unsafe_names_are_refused(name):
    """Each unsafe name raises UnsafeNameError naming it and the rule."""
    with pytest.raises(UnsafeNameError) as info:
        check_name(name)
    assert repr(name) in str(info.value)
    assert info.value.name == name


@pytest.mark.parametrize("name", ["baseline", "param1=100,mode=A", "run_2024-01-01", "été", "a.b"])
def test_safe_names_pass(name):
    """Ordinary names, including '=' ',' and unicode letters, are accepted unchanged."""
    assert check_name(name) == name
