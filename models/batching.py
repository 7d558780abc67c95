"""Dynamic micro-batching of concurrent query encodings.

The HTTP server answers each search in its own thread, and each search encodes one query. Run as
is, eight concurrent searches are eight forward passes of batch size one that fight over the same
cores (each one spreading over torch's intra-op pool), so eight clients get less total throughput
than one. :class:`MicroBatcher` gathers the queries that arrive together into one forward pass.

Design: one worker thread fed by a queue, rather than a leader/follower scheme in the callers'
threads, because

* the inner encoder is only ever called from one thread, one batch at a time: torch's thread pool is
  never oversubscribed by parallel forwards, and the encoder's own state (its counters, the packed
  engine's budget) needs no locking;
* batches form for free while a forward runs: the queue fills up, and because the wait bound counts
  from each batch's first *arrival* (not from when the worker picks it up), a backlog is taken at
  once without waiting again;
* the wait bound, the size bound and shutdown are one short loop that is easy to reason about; a
  leader/follower scheme needs a hand-over of leadership and a run lock for the same guarantees.

The cost is one thread hand-over per call (tens of microseconds, against a forward pass of
milliseconds) and a lifecycle: the thread starts on the first query and stops on :meth:`close`
(or when the batcher is garbage collected; it is a daemon thread, so it never blocks exit).
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.encoder import TextEncoder


@dataclass
class BatchStats:
    """Counters kept by the worker (its only writer): cheap enough to leave on in production.

    Attributes:
        batches: forward passes run (calls to the inner ``encode_queries``).
        requests: ``encode_queries`` calls served through those batches.
        texts: texts encoded in them.
        failed_batches: batches whose inner call raised.
        largest_batch: most texts in one batch.
    """

    batches: int = 0
    requests: int = 0
    texts: int = 0
    failed_batches: int = 0
    largest_batch: int = 0

    @property
    def mean_batch_size(self) -> float:
        """Texts per forward pass (0.0 before the first batch)."""
        return self.texts / self.batches if self.batches else 0.0


@dataclass
class _Request:
    texts: list[str]
    future: Future[np.ndarray] = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


_STOP: Any = object()


class MicroBatcher:
    """A :class:`~models.encoder.TextEncoder` that gathers concurrent ``encode_queries`` calls.

    The first query of a batch waits at most ``max_wait`` seconds for companions, or until
    ``max_batch`` texts are queued; then the worker runs all of them in one inner call and hands
    every caller its own rows, in its own order. A caller's texts are never split across batches:
    a call with more than ``max_batch`` texts runs as a batch of its own (the inner encoder batches
    it further). An exception from the inner encoder is raised in every caller of that batch.
    ``encode_passages`` (bulk ingest, already batched) goes straight to the inner encoder, as does
    any other attribute (``engine``, ``precision``, ``model``, ...).

    Args:
        inner: the encoder to wrap.
        max_wait: seconds the first query of a batch waits for companions (0 batches only what is
            already queued, e.g. what arrived during the previous forward pass).
        max_batch: texts that end the wait early; a batch holds at most this many, unless a single
            call brings more.

    Both bounds are read when the worker starts (on the first query); ``stats`` counts batches,
    requests and texts from then on.
    """

    def __init__(self, inner: TextEncoder, max_wait: float = 0.002, max_batch: int = 32) -> None:
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.max_wait = max_wait
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- TextEncoder ------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode queries, batched with those of concurrent callers; same rows as the inner encoder.

        Raises:
            RuntimeError: the batcher is closed.
        """
        texts = list(texts)
        if not texts:
            return self.inner.encode_queries(texts)
        request = _Request(texts)
        with self._lock:  # closed-check and enqueue together, so close() cannot strand a request
            if self._closed:
                raise RuntimeError("MicroBatcher is closed")
            self._start()
            self._queue.put(request)
            thread = self._thread
        # Wait in slices, so a worker that died cannot leave the caller hanging. (Not result(timeout)
        # in a try: the inner encoder's own TimeoutError would look like a slice running out.)
        while not wait([request.future], timeout=1.0).done:
            if thread is None or not thread.is_alive():
                if request.future.done():
                    break
                raise RuntimeError("MicroBatcher worker stopped before answering")
        return request.future.result()

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Encode stored texts directly: bulk ingest comes in batches already."""
        return self.inner.encode_passages(texts)

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found normally; dunders (copy, pickle) are not forwarded,
        # and "inner" is looked up in __dict__ so a half-built instance cannot recurse.
        if name.startswith("__") or "inner" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["inner"], name)

    # -- lifecycle --------------------------------------------------------------------------
    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the worker after the batches already queued; later queries raise RuntimeError.

        Args:
            timeout: seconds to wait for the worker to finish its current batch.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        """Start the worker on first use (called under the lock)."""
        if self._thread is not None:
            return
        # The worker holds no reference to self, so an unclosed batcher can still be collected;
        # the finaliser then stops its worker.
        self._thread = threading.Thread(
            target=_work,
            args=(self._queue, self.inner, self.stats, self.max_wait, self.max_batch),
            name=f"MicroBatcher({self.model_id})",
            daemon=True,
        )
        self._thread.start()
        weakref.finalize(self, self._queue.put, _STOP)


def _work(q: queue.SimpleQueue[Any], inner: TextEncoder, stats: BatchStats, max_wait: float, max_batch: int) -> None:
    """The worker loop: gather a batch, run it, repeat until the stop marker."""
    carry: _Request | None = None
    while True:
        first = carry if carry is not None else q.get()
        if first is _STOP:
            return
        batch, carry, stopping = _gather(q, first, max_wait, max_batch)
        _run(inner, batch, stats)
        if stopping:  # the marker comes after every request queued before close(): all are served
            return


def _gather(
    q: queue.SimpleQueue[Any], first: _Request, max_wait: float, max_batch: int
) -> tuple[list[_Request], _Request | None, bool]:
    """Requests for one batch: ``first`` plus what arrives before its deadline, up to ``max_batch`` texts.

    Returns:
        the batch, a request held over for the next batch (it would overflow this one), and whether
        the stop marker was seen.
    """
    batch = [first]
    size = len(first.texts)
    deadline = first.arrived + max_wait
    while size < max_batch:
        remaining = deadline - time.monotonic()
        try:
            item = q.get(timeout=remaining) if remaining > 0 else q.get_nowait()
        except queue.Empty:
            break
        if item is _STOP:
            return batch, None, True
        if size + len(item.texts) > max_batch:
            return batch, item, False
        batch.append(item)
        size += len(item.texts)
    return batch, None, False


def _run(inner: TextEncoder, batch: list[_Request], stats: BatchStats) -> None:
    """One inner call for the whole batch; every caller gets its rows or the exception."""
    texts = [t for request in batch for t in request.texts]
    stats.batches += 1
    stats.requests += len(batch)
    stats.texts += len(texts)
    stats.largest_batch = max(stats.largest_batch, len(texts))
    try:
        out = inner.encode_queries(texts)
        if out.shape[0] != len(texts):
            raise ValueError(f"inner encoder returned {out.shape[0]} rows for {len(texts)} texts")
    except BaseException as exc:  # noqa: BLE001 - every caller must hear of it, whatever it is
        stats.failed_batches += 1
        for request in batch:
            request.future.set_exception(exc)
        return
    start = 0
    for request in batch:
        stop = start + len(request.texts)
        request.future.set_result(out[start:stop].copy())  # a copy: one caller's writes stay its own
        start = stop
