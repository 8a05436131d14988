"""What every ``ductaflow`` command shares: exit codes, click settings and the ``--debug`` flag."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEBUG = "ductaflow.debug"  # ctx.meta key: --debug was given


def debug_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--debug`` (show the traceback of errors) to a command; the group reads it."""
    option = click.option("--debug", is_flag=True, expose_value=False, help="Show the traceback of errors.")
    return option(function)
