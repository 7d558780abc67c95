"""MicroBatcher: same rows as direct calls, real batching, errors to every caller, clean shutdown.

A fake inner encoder records every batch it sees, can sleep to stand in for a forward pass, can
block on an event, and can raise. No test asserts on durations: counts and results only.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from models.batching import MicroBatcher

JOIN = 10.0  # seconds a test waits for a thread before calling it hung


def vector(text: str, dim: int = 8) -> np.ndarray:
    """A unit vector that depends on the text only."""
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class RecordingEncoder:
    """Fake inner encoder: records batches, optionally sleeps, blocks on ``gate`` or raises."""

    def __init__(self, sleep: float = 0.0, fail: Callable[[list[str]], BaseException | None] | None = None) -> None:
        self.model_id = "fake-recording"
        self.dim = 8
        self.engine = "fake-engine"
        self.sleep = sleep
        self.fail = fail
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.batches: list[list[str]] = []
        self.passage_batches: list[list[str]] = []

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        self.batches.append(texts)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(JOIN)
        if self.sleep:
            time.sleep(self.sleep)
        if self.fail is not None and (exc := self.fail(texts)) is not None:
            raise exc
        return np.stack([vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.passage_batches.append(list(texts))
        return np.stack([vector("passage " + t) for t in texts])


def run_callers(batcher: MicroBatcher, requests: list[list[str]]) -> tuple[list[object], list[threading.Thread]]:
    """Call ``encode_queries`` once per request, all threads released together; results or exceptions."""
    results: list[object] = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def call(i: int) -> None:
        barrier.wait(JOIN)
        try:
            results[i] = batcher.encode_queries(requests[i])
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    return results, threads


def expected(texts: list[str]) -> np.ndarray:
    return np.stack([vector(t) for t in texts])


WORDS = [
    "cykelväg",
    "öjebyn",
    "trygghet",
    "belysning",
    "skolgård",
    "lekplats",
    "busslinje",
    "parkering",
    "bibliotek",
    "äldreboende",
]


def random_texts(rng: random.Random) -> list[str]:
    n = rng.choice([1, 1, 1, 2, 3, 7])
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 6))) + f" {rng.random():.6f}" for _ in range(n)]


def test_results_match_direct_calls_under_concurrency() -> None:
    rng = random.Random(7)
    inner = RecordingEncoder(sleep=0.003)
    with MicroBatcher(inner, max_batch=16) as batcher:
        for _ in range(3):
            requests = [random_texts(rng) for _ in range(16)]
            results, _ = run_callers(batcher, requests)
            for texts, got in zip(requests, results):
                assert isinstance(got, np.ndarray), got
                assert got.dtype == np.float32 and got.shape == (len(texts), inner.dim)
                np.testing.assert_array_equal(got, expected(texts))
    assert batcher.stats.requests == 48
    assert batcher.stats.texts == sum(len(b) for b in inner.batches)


def test_concurrent_callers_share_forward_passes() -> None:
    inner = RecordingEncoder(sleep=0.02)  # a forward pass of ~20 ms
    with MicroBatcher(inner) as batcher:  # default wait bound
        results, _ = run_callers(batcher, [[f"idé {i}"] for i in range(8)])
    assert all(isinstance(r, np.ndarray) for r in results)
    assert len(inner.batches) < 8
    assert batcher.stats.batches == len(inner.batches)
    assert batcher.stats.requests == 8 and batcher.stats.texts == 8
    assert batcher.stats.mean_batch_size > 1


def test_size_bound_closes_the_batch() -> None:
    inner = RecordingEncoder()
    # A wait bound far longer than the test: only reaching max_batch texts can start the batch.
    with MicroBatcher(inner, max_wait=60, max_batch=8) as batcher:
        results, _ = run_callers(batcher, [[f"idé {i}"] for i in range(8)])
    assert len(inner.batches) == 1 and sorted(inner.batches[0]) == sorted(f"idé {i}" for i in range(8))
    assert batcher.stats.largest_batch == 8 and batcher.stats.mean_batch_size == 8
    for i, got in enumerate(results):
        np.testing.assert_array_equal(got, expected([f"idé {i}"]))


def test_inner_exception_reaches_every_caller_of_the_batch() -> None:
    inner = RecordingEncoder(fail=lambda texts: ValueError("trasig modell") if "boom" in texts else None)
    with MicroBatcher(inner, max_wait=60, max_batch=6) as batcher:
        results, _ = run_callers(batcher, [["boom"]] + [[f"idé {i}"] for i in range(5)])
        assert len(inner.batches) == 1
        assert all(isinstance(r, ValueError) and str(r) == "trasig modell" for r in results), results
        assert batcher.stats.failed_batches == 1
        # The worker survives a failed batch (six texts fill the batch: no waiting for the bound).
        after = [f"efteråt {i}" for i in range(6)]
        np.testing.assert_array_equal(batcher.encode_queries(after), expected(after))
        assert batcher.stats.batches == 2 and batcher.stats.failed_batches == 1


def test_inner_timeout_error_is_raised_not_waited_on() -> None:
    # TimeoutError is what a timed wait raises too; the caller must still get the inner one.
    inner = RecordingEncoder(fail=lambda texts: TimeoutError("inre timeout"))
    with MicroBatcher(inner) as batcher:
        (result,), _ = run_callers(batcher, [["en fråga"]])
    assert isinstance(result, TimeoutError) and str(result) == "inre timeout"


def test_lone_caller_gets_its_answer() -> None:
    inner = RecordingEncoder()
    with MicroBatcher(inner) as batcher:
        got = batcher.encode_queries(["cykelväg från Öjebyn", "belysning i parken"])
    np.testing.assert_array_equal(got, expected(["cykelväg från Öjebyn", "belysning i parken"]))
    assert inner.batches == [["cykelväg från Öjebyn", "belysning i parken"]]
    assert batcher.stats.batches == 1 and batcher.stats.mean_batch_size == 2


def test_large_callers_are_never_split() -> None:
    inner = RecordingEncoder(sleep=0.005)
    big = [f"lång {i}" for i in range(10)]
    requests = [big] + [[f"a {i}", f"b {i}", f"c {i}"] for i in range(6)]
    with MicroBatcher(inner, max_wait=0.01, max_batch=4) as batcher:
        results, _ = run_callers(batcher, requests)
    for texts, got in zip(requests, results):
        np.testing.assert_array_equal(got, expected(texts))
    # Every request's texts sit together, in order, in exactly one batch.
    for texts in requests:
        holders = [b for b in inner.batches if texts[0] in b]
        assert len(holders) == 1
        start = holders[0].index(texts[0])
        assert holders[0][start : start + len(texts)] == texts
    # Three-text requests cannot share a batch of at most four; the ten-text one runs alone.
    assert [b for b in inner.batches if len(b) > 4] == [big]
    assert all(len(b) == 3 for b in inner.batches if b != big)
    assert batcher.stats.batches == 7 and batcher.stats.largest_batch == 10


def test_passages_bypass_batching() -> None:
    inner = RecordingEncoder()
    batcher = MicroBatcher(inner)
    got = batcher.encode_passages(["ett förslag", "ett behov"])
    np.testing.assert_array_equal(got, inner.encode_passages(["ett förslag", "ett behov"]))
    assert inner.batches == [] and batcher.stats.batches == 0
    assert not batcher.running  # no worker started for passages
    batcher.close()


def test_empty_query_list_does_not_start_a_batch() -> None:
    inner = RecordingEncoder()
    batcher = MicroBatcher(inner)
    assert batcher.encode_queries([]).shape == (0, inner.dim)
    assert batcher.stats.batches == 0 and not batcher.running
    batcher.close()


def test_close_stops_the_worker_and_refuses_later_queries() -> None:
    inner = RecordingEncoder()
    batcher = MicroBatcher(inner)
    batcher.encode_queries(["första"])
    thread = batcher._thread
    assert thread is not None and thread.is_alive() and batcher.running
    batcher.close()
    assert not thread.is_alive() and not batcher.running
    with pytest.raises(RuntimeError, match="closed"):
        batcher.encode_queries(["för sent"])
    batcher.close()  # idempotent


def test_close_serves_requests_already_queued() -> None:
    inner = RecordingEncoder()
    inner.gate = threading.Event()
    batcher = MicroBatcher(inner, max_wait=0, max_batch=1)
    results: dict[str, object] = {}

    def call(text: str) -> None:
        results[text] = batcher.encode_queries([text])

    first = threading.Thread(target=call, args=("först",), daemon=True)
    first.start()
    assert inner.entered.wait(JOIN)  # the worker is inside the first forward pass
    queued = [threading.Thread(target=call, args=(t,), daemon=True) for t in ("andra", "tredje")]
    for t in queued:
        t.start()
    deadline = time.monotonic() + JOIN
    while batcher._queue.qsize() < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    closer = threading.Thread(target=batcher.close, daemon=True)
    closer.start()
    inner.gate.set()
    for t in [first, *queued, closer]:
        t.join(JOIN)
        assert not t.is_alive()
    for text in ("först", "andra", "tredje"):
        np.testing.assert_array_equal(results[text], expected([text]))
    assert not batcher.running


def test_other_attributes_pass_through() -> None:
    inner = RecordingEncoder()
    batcher = MicroBatcher(inner)
    assert (batcher.model_id, batcher.dim, batcher.engine) == ("fake-recording", 8, "fake-engine")
    assert batcher.inner is inner
    assert getattr(batcher, "no_such_attribute", None) is None
    with pytest.raises(AttributeError):
        _ = batcher.no_such_attribute


@pytest.mark.parametrize("kwargs", [{"max_wait": -0.001}, {"max_batch": 0}])
def test_bad_bounds_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(RecordingEncoder(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
def test_real_model_rows_match_direct_calls(real_encoder) -> None:
    """Against the real encoder: batched rows equal direct ones up to float rounding of the batch."""
    texts = [
        "Cykelväg från Öjebyn till centrum",
        "Bättre belysning i parken",
        "Fler soptunnor vid badplatsen",
        "Lekplats för de minsta barnen i Norrfjärden",
        "Gratis wifi på biblioteket",
        "Trygg skolväg",
    ]
    direct = [real_encoder.encode_queries([t])[0] for t in texts]
    with MicroBatcher(real_encoder, max_wait=60, max_batch=len(texts)) as batcher:
        results, _ = run_callers(batcher, [[t] for t in texts])
        assert batcher.stats.batches == 1
    for got, want in zip(results, direct):
        assert isinstance(got, np.ndarray) and got.shape == (1, real_encoder.dim)
        np.testing.assert_allclose(got[0], want, atol=1e-5)
