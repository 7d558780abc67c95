"""Per-thread capture of stdout and stderr, for commands that run inside the server on behalf of the CLI.

``contextlib.redirect_stdout`` swaps ``sys.stdout`` for the whole process; in a server that answers
several requests at once, one command's output would land in another's. Here ``sys.stdout`` and
``sys.stderr`` are replaced once by routers that write to the calling thread's buffer when it has
one, and to the real stream otherwise.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

_local = threading.local()
_install_lock = threading.Lock()


class _Router(io.TextIOBase):
    def __init__(self, real: TextIO, slot: str) -> None:
        self.real = real
        self.slot = slot

    def _target(self) -> Any:
        return getattr(_local, self.slot, None) or self.real

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        target = self._target()
        return target is self.real and self.real.isatty()

    def fileno(self) -> int:
        return self.real.fileno()


def _install() -> None:
    with _install_lock:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout, "out")
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr, "err")


@contextmanager
def thread_output() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Collect what this thread prints (stdout, stderr) while the block runs."""
    _install()
    out, err = io.StringIO(), io.StringIO()
    _local.out, _local.err = out, err
    try:
        yield out, err
    finally:
        _local.out = _local.err = None
