"""A readers-writer lock: many readers at once, or one writer; reads re-enter, writers are not starved."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Many readers or one writer.

    A waiting writer holds new readers back (no writer starvation), except a thread that already
    reads: its nested read goes straight through (otherwise it would wait for a writer that waits
    for it). The writing thread may read and write again inside its block. Taking the write side
    while reading is a programming error and raises.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._waiting_writers = 0
        self._depth = threading.local()
        self._writer: int | None = None

    def _held(self) -> int:
        return getattr(self._depth, "n", 0)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the read side for the block."""
        if self._writer == threading.get_ident():
            yield
            return
        if self._held():
            self._depth.n += 1
            try:
                yield
            finally:
                self._depth.n -= 1
            return
        with self._cond:
            while self._writing or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        self._depth.n = 1
        try:
            yield
        finally:
            self._depth.n = 0
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the write side for the block."""
        me = threading.get_ident()
        if self._writer == me:
            yield
            return
        if self._held():
            raise RuntimeError("a thread that reads cannot take the write side (it would wait for itself)")
        with self._cond:
            self._waiting_writers += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._waiting_writers -= 1
            self._writing = True
            self._writer = me
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._writer = None
                self._cond.notify_all()
