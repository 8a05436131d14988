"""The fork engine's streams: a child's stdout and stderr pipes, read in the engine's own process.

The child hands the read ends of the pipes behind its file descriptors 1 and
2 to the engine (over the Unix socket), so what the flow wrote is read by a
process that outlives it: a flow that prints and then segfaults leaves its
last lines in the notebook. Before every message whose place among the
outputs matters (a cell's start, a display, a result, a traceback, a cell's
end), the child writes :data:`MARK` to both descriptors; the engine reads each
pipe up to that mark before it handles the message, so text lands in the
cell, and in the order, it was written in.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import selectors
from collections.abc import Callable

#: Written by the child to fds 1 and 2 before each ordered message (atomic: shorter than PIPE_BUF).
MARK = b"\x00ductaflow:sync\x00"
#: Seconds to wait for a mark the child wrote before its message (it is normally there already).
_SETTLE_WAIT = 2.0


class Streams:
    """The two pipes of one child: text up to each mark goes out as it comes, in order with messages."""

    def __init__(self, selector: selectors.BaseSelector, emit: Callable[[str, str], None]) -> None:
        self.selector, self.emit = selector, emit
        self.names: dict[int, str] = {}  # open pipe fd -> "stdout" | "stderr"
        self.buffers: dict[int, bytes] = {}
        self.decoders = {name: codecs.getincrementaldecoder("utf-8")(errors="replace")
                         for name in ("stdout", "stderr")}  # fmt: skip

    def adopt(self, fds: list[int]) -> None:
        """Take the child's pipes (stdout's, then stderr's) and watch them."""
        for fd, name in zip(fds, ("stdout", "stderr"), strict=False):
            os.set_blocking(fd, False)
            self.names[fd], self.buffers[fd] = name, b""
            self.selector.register(fd, selectors.EVENT_READ, name)

    def readable(self, fd: int) -> None:
        """Read what a pipe holds and send out the text before its next mark."""
        self._read(fd)
        self._emit_ready(fd)

    def settle(self) -> None:
        """Before an ordered message: each pipe's text up to its next mark is out, and the mark dropped."""
        for fd in list(self.names):
            waited = selectors.DefaultSelector()
            waited.register(fd, selectors.EVENT_READ)
            with waited:
                while fd in self.names and MARK not in self.buffers[fd]:
                    if not waited.select(_SETTLE_WAIT) or not self._read(fd):
                        break
            if fd in self.names:
                self._emit_ready(fd)
                self.buffers[fd] = self.buffers[fd].replace(MARK, b"", 1)

    def after_message(self) -> None:
        """After an ordered message: text written since its mark goes out, now in its right place."""
        for fd in list(self.names):
            self._emit_ready(fd)

    def close(self) -> None:
        """Take what the pipes hold now (a subprocess left running may keep them open), then close them."""
        for fd in list(self.names):
            while self._read(fd):
                pass
            if fd not in self.names:  # the pipe ended while being read: already emitted and closed
                continue
            self.buffers[fd] = self.buffers[fd].replace(MARK, b"")
            self._emit_ready(fd, final=True)
            self._forget(fd)

    def _read(self, fd: int) -> bool:
        """Read once; False at the end of the pipe (then closed) or when nothing is there."""
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:  # every writer is gone: what is left goes out, marks or not
            self.buffers[fd] = self.buffers[fd].replace(MARK, b"")
            self._emit_ready(fd, final=True)
            self._forget(fd)
            return False
        self.buffers[fd] += data
        return True

    def _emit_ready(self, fd: int, final: bool = False) -> None:
        if fd not in self.names:
            return
        buffer = self.buffers[fd]
        end = buffer.find(MARK)
        if end < 0:
            end = len(buffer) if final else len(buffer) - _partial_mark(buffer)
        if end <= 0:
            return
        name = self.names[fd]
        text = self.decoders[name].decode(buffer[:end], final=final)
        self.buffers[fd] = buffer[end:]
        if text:
            self.emit(name, text)

    def _forget(self, fd: int) -> None:
        if fd in self.names:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fd)
            os.close(fd)
            del self.names[fd], self.buffers[fd]


def _partial_mark(data: bytes) -> int:
    """How many bytes at the end of ``data`` could begin a mark split across two reads."""
    for size in range(min(len(MARK) - 1, len(data)), 0, -1):
        if MARK.startswith(data[-size:]):
            return size
    return 0
