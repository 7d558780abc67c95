"""The one writer: every change to the database and the in-memory index runs on one thread.

Callers hand the writer a function and wait for its result (or its exception). Work that costs
CPU but changes nothing (parsing a file, masking, encoding texts) is done by the caller before it
hands over, so the writer's queue holds only short store-and-publish steps: a new idea waits for
an upload's current batch, never for the whole upload. Readers never go through the writer: they
search the snapshot the writer last published (see :mod:`matcher.collection`).

A function that runs on the writer may itself call :meth:`Writer.run` (it runs at once), so a
write built from other writes needs no care.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Writer:
    """A queue and one thread that applies writes in the order they were handed over."""

    def __init__(self, name: str = "idesluss-writer") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._thread_ident: int | None = None
        self._closed = False
        self.applied = 0  # writes applied so far (tests and /health read it)
        self._pool.submit(self._remember_thread).result()

    def _remember_thread(self) -> None:
        self._thread_ident = threading.get_ident()

    def on_writer(self) -> bool:
        """True on the writer's own thread."""
        return threading.get_ident() == self._thread_ident

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Apply ``fn(*args, **kwargs)`` on the writer and return its result (its exception is raised here)."""
        if self.on_writer():
            return fn(*args, **kwargs)
        if self._closed:
            raise RuntimeError("the service is closed; no more writes")
        return self._pool.submit(self._counted, fn, args, kwargs).result()

    def _counted(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            self.applied += 1

    def close(self) -> None:
        """Finish the queued writes, then stop the thread."""
        self._closed = True
        self._pool.shutdown(wait=True)
