"""The fork engine's pipe reader, on real pipes: text split by marks, and pipes that end while closing."""

from __future__ import annotations

import os
import selectors

from ductaflow.engines.forkstreams import MARK, Streams


def _streams() -> tuple[Streams, list[tuple[str, str]]]:
    said: list[tuple[str, str]] = []
    return Streams(selectors.DefaultSelector(), lambda name, text: said.append((name, text))), said


def test_close_takes_the_text_of_pipes_whose_writers_are_gone() -> None:
    """Both writers closed before close(): the pipe ends while being drained, and nothing is lost."""
    streams, said = _streams()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    os.write(out_write, b"last words" + MARK + b" after the mark")
    os.write(err_write, "é on stderr".encode())
    os.close(out_write)
    os.close(err_write)
    streams.adopt([out_read, err_read])
    streams.close()
    assert "".join(text for name, text in said if name == "stdout") == "last words after the mark"
    assert said[-1] == ("stderr", "é on stderr")
    assert streams.names == {}
    for fd in (out_read, err_read):  # closed by the reader
        try:
            os.fstat(fd)
        except OSError:
            continue
        raise AssertionError(f"fd {fd} left open")


def test_settle_sends_text_up_to_the_mark_and_keeps_the_rest() -> None:
    """Text before a mark goes out at settle(); a mark split across two writes is not taken for text."""
    streams, said = _streams()
    read, write = os.pipe()
    streams.adopt([read])
    os.write(write, b"first" + MARK[:5])
    streams.readable(read)
    assert said == [("stdout", "first")]
    os.write(write, MARK[5:] + b"second")
    streams.settle()
    streams.after_message()
    assert said == [("stdout", "first"), ("stdout", "second")]
    os.close(write)
    streams.close()
    assert streams.names == {}
