"""The encoder in a child process (models/process_encoder.py), with fake encoders: no model is loaded.

The child is a real process (``spawn``) building its encoder from an importable factory; these
tests check that it answers like the encoder would in-process, under concurrent callers, and that
its failures and its death reach the caller as clear errors instead of a hang.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from models.process_encoder import EncoderProcess, EncoderProcessDied, EncoderProcessError
from tests.fakes import KeywordEncoder

FAKE = "tests.fakes:KeywordEncoder"


class PickyEncoder(KeywordEncoder):
    """A keyword encoder that refuses some texts, and can report the priority of the thread that encodes."""

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        if "dö" in texts:  # the child dies on this text
            os._exit(3)
        if "fel" in texts:
            raise ValueError("text 'fel' is refused")
        if "krasch" in texts:
            raise KeyError("an internal fault")
        for text in texts:  # "hold:PATH": say so in PATH.in, and answer only once the file PATH is gone
            if text.startswith("hold:"):
                open(text[5:] + ".in", "w").close()
                while os.path.exists(text[5:]):
                    time.sleep(0.02)
                return np.zeros((len(texts), self.dim), np.float32)
        if "nice?" in texts:
            return np.full(
                (len(texts), self.dim), os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), np.float32
            )
        return super().encode_queries(texts)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_queries(texts)


def broken_factory() -> KeywordEncoder:
    raise RuntimeError("no model in the cache")


@pytest.fixture(scope="module")
def child():
    proc = EncoderProcess(f"{__name__}:PickyEncoder", {"dim": 64}, bulk_setup="idesluss.priority:lower_this_thread")
    yield proc
    proc.close()


def test_the_child_answers_as_the_encoder_does_in_process(child) -> None:
    local = KeywordEncoder(dim=64)
    texts = ["cykelbana vid skolan", "snöröjning på gångvägar", "fler bänkar"]
    assert child.model_id == "fake-keywords" and child.dim == 64 and child.pid != os.getpid()
    np.testing.assert_array_equal(child.encode_queries(texts), local.encode_queries(texts))
    np.testing.assert_array_equal(child.encode_passages(texts), local.encode_passages(texts))
    np.testing.assert_array_equal(child.bulk_queries(texts[:1]), local.encode_queries(texts[:1]))
    assert child.encode_queries([]).shape == (0, 64)


def test_concurrent_callers_each_get_their_own_rows(child) -> None:
    local = KeywordEncoder(dim=64)
    words = ["cykel", "skola", "snö", "bänk", "park", "buss", "lampa", "bad"]
    failures: list[str] = []

    def caller(i: int) -> None:
        for n in range(30):
            texts = [f"{words[(i + n) % 8]} {words[(i * n) % 8]} {n}", words[i % 8]]
            call = (child.encode_queries, child.encode_passages, child.bulk_queries)[(i + n) % 3]
            if not np.array_equal(call(texts), local.encode_queries(texts)):
                failures.append(f"caller {i}, call {n}")

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_bulk_work_runs_at_a_lower_priority_in_the_child_and_queries_do_not(child) -> None:
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert child.encode_queries(["nice?"])[0, 0] == mine  # the child starts at the server's priority
    assert child.encode_passages(["nice?"])[0, 0] >= 10
    assert child.bulk_queries(["nice?"])[0, 0] >= 10


def test_a_refused_text_is_a_value_error_and_an_internal_fault_names_itself(child) -> None:
    with pytest.raises(ValueError, match="'fel' is refused"):
        child.encode_queries(["fel"])
    with pytest.raises(EncoderProcessError, match="KeyError: 'an internal fault'"):
        child.encode_passages(["krasch"])
    assert child.encode_queries(["cykel"]).shape == (1, 64)  # the child goes on serving


def test_a_factory_that_fails_is_reported_at_start() -> None:
    with pytest.raises(EncoderProcessError, match="could not start: RuntimeError: no model in the cache"):
        EncoderProcess(f"{__name__}:broken_factory")


def _held(proc: EncoderProcess, call: str, hold: Path, answers: list[object]) -> threading.Thread:
    """A call that the child holds until ``hold`` is removed, started and seen inside the child."""
    hold.touch()

    def run() -> None:
        try:
            answers.append(getattr(proc, call)([f"hold:{hold}"]))
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            answers.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not Path(f"{hold}.in").exists():  # the call has reached the child
        assert time.monotonic() < deadline, "the held call never reached the child"
        time.sleep(0.01)
    return thread


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # gone (reaped), perhaps between opening and reading
        return False


def test_a_dead_child_is_replaced_once_and_every_call_waiting_on_it_is_tried_again(tmp_path: Path) -> None:
    proc = EncoderProcess(f"{__name__}:PickyEncoder", {"dim": 8})
    try:
        first = proc.pid
        answers: list[object] = []
        held = [  # one call on each connection, both inside the child when it dies
            _held(proc, "encode_queries", tmp_path / "q", answers),
            _held(proc, "encode_passages", tmp_path / "p", answers),
        ]
        for hold in ("q", "p"):
            Path(f"{tmp_path / hold}.in").unlink()
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _running(first):  # dead before the holds go: neither call can be answered by it
            assert time.monotonic() < deadline, "the killed child is still running"
            time.sleep(0.01)
        (tmp_path / "q").unlink()  # the new child answers both at once (it marks them .in again)
        (tmp_path / "p").unlink()
        for thread in held:
            thread.join(60)
            assert not thread.is_alive()  # no hang
        assert len(answers) == 2 and all(isinstance(a, np.ndarray) and a.shape == (1, 8) for a in answers), answers
        assert proc.pid != first and proc.alive and proc.restarts == 1  # replaced once, not per call
        np.testing.assert_array_equal(proc.encode_queries(["cykel"]), KeywordEncoder(dim=8).encode_queries(["cykel"]))
    finally:
        proc.close()
    proc.close()  # twice is fine
    with pytest.raises(EncoderProcessError, match="closed"):
        proc.encode_queries(["cykel"])


def test_a_hung_child_is_replaced_after_the_call_timeout(tmp_path: Path) -> None:
    proc = EncoderProcess(f"{__name__}:PickyEncoder", {"dim": 8}, call_timeout=1.0)
    try:
        first = proc.pid
        (tmp_path / "h").touch()  # never removed: the call hangs in every child
        with pytest.raises(EncoderProcessDied, match="took over 1 s"):
            proc.encode_passages([f"hold:{tmp_path / 'h'}"])
        assert proc.encode_queries(["cykel"]).shape == (1, 8)  # a new child serves the next call
        assert proc.pid != first and proc.restarts == 2  # the hung one, and the retry's hung one
    finally:
        proc.close()


def failing_setup() -> None:
    raise RuntimeError("no priority for you")


def test_a_bulk_setup_that_fails_leaves_the_bulk_connection_serving() -> None:
    proc = EncoderProcess(FAKE, {"dim": 8}, bulk_setup=f"{__name__}:failing_setup")
    try:
        assert proc.encode_passages(["cykel"]).shape == (1, 8)
    finally:
        proc.close()


def test_a_child_that_dies_twice_on_one_call_fails_it_with_a_clear_error(tmp_path) -> None:
    proc = EncoderProcess(f"{__name__}:PickyEncoder", {"dim": 8})
    try:
        failed: list[BaseException] = []

        def waiting() -> None:
            try:
                proc.encode_queries(["dö"])
            except BaseException as exc:  # noqa: BLE001 - the test reads it
                failed.append(exc)

        caller = threading.Thread(target=waiting)
        caller.start()
        caller.join(60)
        assert not caller.is_alive()
        assert len(failed) == 1 and isinstance(failed[0], EncoderProcessError) and "stopped" in str(failed[0])
        assert proc.restarts == 1
        assert proc.encode_queries(["cykel"]).shape == (1, 8)  # and the next call gets a working child
    finally:
        proc.close()


def test_closing_stops_the_child() -> None:
    proc = EncoderProcess(FAKE, {"dim": 8})
    pid = proc.pid
    proc.close()
    assert not proc.alive
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_the_load_bench_finds_the_encoder_process_and_counts_its_cpu(child) -> None:
    from evaluation.load import cpu_seconds, server_processes

    found = server_processes(os.getpid())
    assert found["server"] == os.getpid()
    assert found.get("encoder") == child.pid  # the encoder's process, not the resource tracker
    before = cpu_seconds(found["encoder"])
    for _ in range(300):
        child.encode_queries(["cykelbana längs älven"] * 64)
    assert cpu_seconds(found["encoder"]) > before  # the child's own CPU, not this process's
    assert math.isnan(cpu_seconds(2**22 + 12345))  # no such process


def test_the_load_bench_bounds_what_the_cores_allow() -> None:
    from evaluation.load import cpu_bounds

    # 10 ms of CPU per request on 2 cores: at most 200 requests/s, 4x a 1-client rate of 50/s;
    # 8 clients at 200/s wait 40 ms on average, 2x a 1-client p50 of 20 ms
    b = cpu_bounds({"server": 4.0, "encoder": 5.0, "load generator": 1.0}, 50.0, 20.0, 8, 2)
    assert b["cpu_ms_per_request"] == 10.0
    assert b["throughput_ceiling_ratio"] == pytest.approx(4.0)
    assert b["mean_latency_floor_over_p50_1"] == pytest.approx(2.0)
    # without the generator's 1 ms: 9 ms, 222 requests/s
    assert b["cpu_ms_per_request_without_generator"] == 9.0
    assert b["throughput_ceiling_ratio_without_generator"] == pytest.approx(2000 / 9 / 50)
    assert b["mean_latency_floor_over_p50_1_without_generator"] == pytest.approx(8 / (2000 / 9) * 1000 / 20)
    # twice the CPU per request: half the ceiling, twice the floor
    b2 = cpu_bounds({"server": 20.0}, 50.0, 20.0, 8, 2)
    assert b2["throughput_ceiling_ratio"] == pytest.approx(2.0)
    assert b2["mean_latency_floor_over_p50_1"] == pytest.approx(4.0)
    assert cpu_bounds({"server": float("nan")}, 50.0, 20.0, 8, 2) == {}  # a process that vanished: no bound
    assert cpu_bounds({}, 50.0, 20.0, 8, 2) == {}
