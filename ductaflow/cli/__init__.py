"""The ``ductaflow`` command: parses arguments, calls the public API, prints, sets the exit code.

Exit codes: 0 every instance succeeded or was up to date; 1 an instance
failed; 2 a usage or input error (a message names the file or argument and
the fix; ``--debug`` adds the traceback); 130 interrupted (Ctrl-C, SIGTERM).
The group maps what a command returns or raises to these codes and messages
itself, so ``click.testing.CliRunner().invoke(cli, args)`` gives what the
real command gives; only :func:`main`, a process of its own, handles SIGTERM.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

import ductaflow

from .bundles import pack, unpack
from .caching import cache
from .common import (
    CONTEXT,
    DEBUG,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
)
from .diffing import diff
from .exporting import export
from .inspecting import index, report, status, why
from .project import clean, new, open_
from .running import run, sweep
from .serving import serve

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "cli", "main", "run_cli"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit with its code (the ``ductaflow`` console script).

    SIGTERM (a scheduler cancelling the job) stops the command like Ctrl-C;
    the SIGTERM handler that was there before is put back when it returns,
    for a caller that runs ``main`` from Python and catches its ``SystemExit``.
    """
    previous = None
    if hasattr(signal, "SIGTERM") and _in_main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        code = run_cli(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:  # a Ctrl-C just after the command returned: the exit code still says it
        code = EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    sys.exit(code)


def run_cli(args: Sequence[str]) -> int:
    """Run the command line with ``args`` in this process; return the exit code."""
    try:
        cli.main(list(args), prog_name="ductaflow")
    except SystemExit as exit_:
        return EXIT_OK if exit_.code is None else exit_.code if isinstance(exit_.code, int) else EXIT_FAILED
    return EXIT_OK


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class _Ductaflow(click.Group):
    """The command group: turns a command's return value or exception into its exit code and message."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[DEBUG] = "--debug" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            code = super().invoke(ctx)
        except click.exceptions.Abort:
            raise click.exceptions.Exit(_interrupted()) from None
        except (KeyboardInterrupt, EOFError):  # as click's own main: a blank line ends the terminal's ^C
            click.echo(err=True)
            raise click.exceptions.Exit(_interrupted()) from None
        except ductaflow.DuctaflowError as exc:
            _error(exc, ctx.meta.get(DEBUG, False))
            raise click.exceptions.Exit(EXIT_USAGE) from None
        except OSError as exc:  # a folder that cannot be read or written, a full disk: say which
            if exc.errno == errno.EPIPE:  # `ductaflow status | head`: the reader left, nothing more to say
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None
            _error(exc, ctx.meta.get(DEBUG, False))
            raise click.exceptions.Exit(EXIT_USAGE) from None
        raise click.exceptions.Exit(code if isinstance(code, int) else EXIT_OK)


def _interrupted() -> int:
    click.echo("interrupted", err=True)
    return EXIT_INTERRUPTED


def _error(exc: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"error: {exc}", err=True)
    if not debug:
        click.echo("(add --debug to see the traceback)", err=True)


@click.group(name="ductaflow", cls=_Ductaflow, context_settings=CONTEXT)
@click.version_option(ductaflow.__version__, "-V", "--version", prog_name="ductaflow")
def cli() -> None:
    """Run notebook-style flows as recorded instances in runs/<step>/<instance>/.

    \b
    Examples:
      ductaflow new my-study && cd my-study && python conductor.py
      ductaflow run flow/simulate.py --config config/simulate.json -o drift=0.3
      ductaflow sweep flow/simulate.py --config config/simulate.json --grid seed=1,2,3
      ductaflow status
    """


for _command in (run, sweep, status, why, diff, report, serve, index, cache, export, pack, unpack, open_,
                 clean, new):  # fmt: skip
    cli.add_command(_command)
