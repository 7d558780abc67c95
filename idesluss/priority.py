"""Bulk work gives way to the requests being served: it runs on threads of lower CPU priority.

An upload's parsing, masking and encoding, and the suggestions precomputed for its ideas, are
bulk work: nobody waits for one row of it. Coaches wait for every search. On a machine with two
cores, an upload's encoding used to take a whole core from the searches for as long as it ran.

Linux gives each thread its own nice value, and a thread inherits it from the thread that starts
it (so the worker threads of torch's pool that a bulk thread starts run at its priority too).
An unprivileged process cannot raise a priority it has lowered, so a thread is lowered only when
it does bulk work and nothing else: the bulk threads that uploads run on, and the inbox's worker.
Elsewhere (another system, or where the call is refused) the work runs as before.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

BULK_NICE = 10  # CFS weight 110 against 1024 at nice 0: about a tenth of a core when searches want it


_search_slots = threading.BoundedSemaphore(1)
_this_thread = threading.local()  # .bulk: this thread does bulk work at a lower priority


def set_search_slots(slots: int) -> None:
    """How many searches may run at once in this process (see :func:`searching`)."""
    global _search_slots
    if slots < 1:
        raise ValueError(f"search slots must be >= 1, got {slots}")
    _search_slots = threading.BoundedSemaphore(slots)  # a thread inside keeps releasing the one it took


@contextmanager
def searching() -> Iterator[None]:
    """Run a search's scoring in one of the process's few search slots, waiting in turn for one.

    A search is mostly small numpy steps between Python, so it holds the interpreter lock most of
    its time, and eight searches at once take turns on that lock step by step, each finishing late.
    One at a time finishes each sooner. With the encoder in the same process this also left the
    encoder its turns (in-process, eight threads: 262 searches/s and the encoder 154 queries/s with
    one slot, against 210 and 76 with none); with the encoder in its own process, the server's load
    figures with one slot and with 64 were within one run's noise of each other.
    Not reentrant: take it once per request. A bulk thread (:func:`lower_this_thread`) takes no slot.
    """
    if getattr(_this_thread, "bulk", False):  # bulk work paces itself; a slot held at nice 10 would
        yield  # keep the coaches' searches waiting behind a thread that gets a tenth of a core
        return
    slots = _search_slots
    with slots:
        yield


def thread_nice() -> int | None:
    """The calling thread's nice value (None where threads have none of their own)."""
    if sys.platform != "linux":
        return None
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except OSError:
        return None


def lower_this_thread(nice: int = BULK_NICE) -> bool:
    """Lower the calling thread's CPU priority to ``nice`` (never raise it); True when it is now that low.

    Irreversible without privileges: call it only on a thread that does bulk work alone.
    """
    _this_thread.bulk = True  # bulk work whatever the system allows: it takes no search slot
    current = thread_nice()
    if current is None:
        return False
    if current >= nice:
        return True
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        return False
    return True


class Pacer:
    """Paces bulk work done in steps: after a step, it rests for as long as the step took times
    ``(1 - share) / share``, so the work takes at most about ``share`` of one core's time.

    A lower priority (above) does not cover everything: the parts of bulk work that hold Python's
    interpreter lock (masking, Python between torch calls) delay the searches whatever their
    priority. With ``activity`` (a counter of the requests served, e.g. the query batcher's) it
    rests only when requests were served during the step: an upload on an idle server runs at
    full speed.

    Args:
        share: the share of the time the work may take while it paces (0 < share <= 1).
        activity: a counter that moves on with every request served (None: always pace).
        sleep: how to rest (replaced in tests).
    """

    def __init__(
        self, share: float = 0.5, activity: Callable[[], int] | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.share = share
        self._activity = activity
        self._sleep = sleep
        self._began = time.perf_counter()
        self._seen = activity() if activity is not None else 0
        self.rested = 0.0  # seconds rested so far

    def __call__(self) -> None:
        """A step ended: rest if the pace asks for it; the next step starts when this returns."""
        took = time.perf_counter() - self._began
        busy = True
        if self._activity is not None:
            now = self._activity()
            busy, self._seen = now != self._seen, now
        if busy and self.share < 1:
            rest = took * (1 - self.share) / self.share
            self._sleep(rest)
            self.rested += rest
        self._began = time.perf_counter()


_bulk: ThreadPoolExecutor | None = None
_bulk_lock = threading.Lock()


def as_bulk(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a bulk thread (lowered priority); its result, or its exception raised here.

    The bulk threads live as long as the process (two, so a second upload need not wait for the
    first): each keeps its own database cursor and torch threads instead of making new ones per call.
    """
    global _bulk
    with _bulk_lock:
        if _bulk is None:
            _bulk = ThreadPoolExecutor(max_workers=2, thread_name_prefix="idesluss-bulk", initializer=lower_this_thread)
    return _bulk.submit(fn, *args, **kwargs).result()
