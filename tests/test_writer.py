"""The single writer and the saved index, on a real DuckDB file (fake encoder: unit tests).

* every write runs on the writer's one thread, in order, and its exception reaches the caller;
* two changes of different fields of one idea, sent at once, both hold (merged on the writer);
* the same new id sent twice at once: one is stored, the other is a Conflict;
* the index is saved beside the database, loaded at the next start (only the change since is
  added), and an erasure deletes the save at once (its bytes held the erased row).
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from idesluss.errors import Conflict
from idesluss.service import Query, Service
from idesluss.settings import Settings
from idesluss.writer import Writer
from tests.fakes import KeywordEncoder

REPO = Path(__file__).resolve().parents[1]


def _service(path: Path, encoder: KeywordEncoder | None = None) -> Service:
    return Service(Settings(db=path), encoder=encoder or KeywordEncoder())


def test_the_writer_applies_writes_in_order_on_one_thread() -> None:
    writer = Writer()
    seen: list[tuple[int, int]] = []

    def step(i: int) -> int:
        seen.append((i, threading.get_ident()))
        if i == 3:
            raise ValueError("bad step 3")
        return i * 2

    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(writer.run, step, i) for i in range(8)]
            results = []
            for f in futures:
                try:
                    results.append(f.result())
                except ValueError as exc:
                    results.append(str(exc))
        assert results == [0, 2, 4, "bad step 3", 8, 10, 12, 14]
        assert len({t for _, t in seen}) == 1 and seen[0][1] != threading.get_ident()
        assert writer.run(lambda: writer.run(lambda: 7)) == 7  # a write may call the writer again
        assert writer.applied == 9
    finally:
        writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.run(lambda: 1)


def test_changes_of_different_fields_sent_at_once_both_hold(tmp_path: Path) -> None:
    svc = _service(tmp_path / "w.duckdb")
    try:
        svc.add_idea({"id": "A1", "text": "Belysning längs cykelbanan"}, actor="t")
        barrier = threading.Barrier(2)

        def change(field: str, value: str) -> None:
            barrier.wait()
            svc.update_idea("A1", {field: value}, actor="t")

        threads = [
            threading.Thread(target=change, args=("status", "under arbete")),
            threading.Thread(target=change, args=("outcome", "genomförd")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rec = svc.record("ideas", "A1")
        assert (rec.status, rec.outcome) == ("under arbete", "genomförd")
    finally:
        svc.close()


def test_one_new_id_sent_twice_at_once_is_stored_once(tmp_path: Path) -> None:
    svc = _service(tmp_path / "w.duckdb")
    try:
        barrier = threading.Barrier(4)

        def create(i: int) -> str:
            barrier.wait()
            try:
                svc.add_idea({"id": "SAME", "text": f"Idé nummer {i} om lekplatser"}, actor="t")
                return "stored"
            except Conflict:
                return "conflict"

        with ThreadPoolExecutor(4) as pool:
            outcomes = sorted(pool.map(create, range(4)))
        assert outcomes == ["conflict", "conflict", "conflict", "stored"]
        assert svc.page("ideas", 1, 10)[1] == 1
        assert [h.id for h in svc.similar([Query(text="lekplatser")], k=5)[0]] == ["SAME"]
    finally:
        svc.close()


def test_the_saved_index_loads_at_start_and_erasure_deletes_it(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    enc = KeywordEncoder()
    svc = _service(db, enc)
    svc.ingest("ideas", REPO / "demo" / "ideas.csv")
    svc.ingest("needs", REPO / "demo" / "needs.jsonl")
    before = [h.id for h in svc.similar([Query(text="snöröjning cykelbana")], k=8)[0]]
    svc.close()
    saved = Path(f"{db}.index")
    assert any(saved.rglob("meta.json")), "a clean stop saves the index"

    svc = _service(db, enc)
    try:
        coll = svc.collections()["ideas"]
        live = {kind: len(c.row_of) for kind, c in svc.collections().items()}
        assert svc._index.loaded_rows == live and live["ideas"] == 404
        assert [h.id for h in svc.similar([Query(text="snöröjning cykelbana")], k=8)[0]] == before
        svc.add_idea({"id": "NY1", "text": "Snöröjning av cykelbanan före sju"}, actor="t")
        assert coll.snapshot.row("NY1") is not None
        victim = before[0]
        svc.erase("ideas", victim, actor="t")
        assert not saved.exists(), "an erasure deletes the saved index with the erased row in it"
        assert victim not in [h.id for h in svc.similar([Query(text="snöröjning cykelbana")], k=9)[0]]
    finally:
        svc.close()
    assert any(saved.rglob("meta.json"))
    svc = _service(db, enc)
    try:
        live = len(svc.collections()["ideas"].row_of)
        assert svc._index.loaded_rows["ideas"] == live == 404  # one erased, one added: all from the save
        after = [h.id for h in svc.similar([Query(text="snöröjning cykelbana")], k=9)[0]]
        assert victim not in after and "NY1" in after
    finally:
        svc.close()


@pytest.mark.skipif(sys.platform != "linux", reason="threads have their own nice value on Linux only")
def test_an_upload_is_encoded_on_a_thread_of_lower_priority_and_searches_are_not(tmp_path: Path) -> None:
    from idesluss.priority import BULK_NICE, thread_nice

    seen: dict[str, list[int | None]] = {"passages": [], "queries": []}

    class Watching(KeywordEncoder):
        def encode_passages(self, texts):  # type: ignore[no-untyped-def]
            seen["passages"].append(thread_nice())
            return super().encode_passages(texts)

        def encode_queries(self, texts):  # type: ignore[no-untyped-def]
            seen["queries"].append(thread_nice())
            return super().encode_queries(texts)

    upload = tmp_path / "ideas.csv"
    upload.write_text("id;text\n" + "".join(f"U{i};Cykelbana vid skolan nummer {i}\n" for i in range(40)))
    svc = _service(tmp_path / "p.duckdb", Watching())
    try:
        before = thread_nice()
        report = svc.ingest("ideas", upload)
        assert report.stored == 40
        assert seen["passages"] and all(n is not None and n >= BULK_NICE for n in seen["passages"])
        assert thread_nice() == before  # the caller's own thread is untouched
        svc.similar([Query(text="cykelbana")], k=3)
        assert seen["queries"][-1] == before  # a search encodes at the caller's priority
        bad = tmp_path / "bad.csv"
        bad.write_text("id;text\nB1;\n")
        assert svc.ingest("ideas", bad).errors  # a row error still reaches the caller as a report
    finally:
        svc.close()


def test_the_pacer_rests_in_proportion_to_the_work_and_only_while_requests_are_served() -> None:
    import time as _time

    from idesluss.priority import Pacer

    served = [0]
    rests: list[float] = []
    pace = Pacer(0.25, activity=lambda: served[0], sleep=rests.append)
    _time.sleep(0.02)
    pace()  # nobody searched during the step: no rest
    assert rests == []
    served[0] += 3
    _time.sleep(0.02)
    pace()
    assert len(rests) == 1 and 0.02 * 3 <= rests[0] < 1.0  # three times the step at a quarter share
    always = Pacer(0.5, sleep=rests.append)
    always()
    assert len(rests) == 2 and rests[1] >= 0
    with pytest.raises(ValueError, match="share"):
        Pacer(0)


def test_searches_score_one_at_a_time_in_the_given_slots_and_the_service_waits_its_turn(tmp_path: Path) -> None:
    from idesluss import priority
    from matcher.hybrid import HybridMatcher

    inside, most, target = [0], [0], [0]
    changed = threading.Condition()
    search_batch = HybridMatcher.search_batch

    def watched(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with changed:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            changed.notify_all()
            # with several slots, the first searches wait until that many are inside together once
            changed.wait_for(lambda: most[0] >= target[0], timeout=10)
        try:
            threading.Event().wait(0.002)  # a moment in which another search could come in
            return search_batch(self, *args, **kwargs)
        finally:
            with changed:
                inside[0] -= 1

    svc = _service(tmp_path / "s.duckdb")
    try:
        svc.add_idea({"id": "I1", "text": "Cykelbana vid skolan"}, actor="test")
        for slots in (1, 3):
            priority.set_search_slots(slots)
            most[0], target[0] = 0, slots
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(HybridMatcher, "search_batch", watched)
                with ThreadPoolExecutor(6) as pool:
                    results = list(pool.map(lambda i: svc.suggest(f"cykelbana {i}", k=3), range(12)))
            assert all(r["similar"][0].id == "I1" for r in results)
            assert most[0] == slots  # never more at once than the slots, and all of them used
    finally:
        priority.set_search_slots(1)
        svc.close()
    with pytest.raises(ValueError, match="search slots"):
        priority.set_search_slots(0)


def test_a_bulk_thread_takes_no_search_slot_so_coaches_never_wait_behind_it() -> None:
    from idesluss import priority

    priority.set_search_slots(1)
    entered: list[str] = []

    def search(kind: str) -> None:
        if kind == "bulk":
            priority.lower_this_thread()
        with priority.searching():
            entered.append(kind)

    with priority.searching():  # a coach's search holds the only slot
        bulk = threading.Thread(target=search, args=("bulk",))
        bulk.start()
        bulk.join(30)
        coach = threading.Thread(target=search, args=("coach",))
        coach.start()
        coach.join(0.2)
        assert entered == ["bulk"] and coach.is_alive()  # the bulk search went on, the coach's waits
    coach.join(30)
    assert entered == ["bulk", "coach"]


def test_a_stored_ideas_search_uses_its_cached_query_vector_and_a_draft_is_encoded(tmp_path: Path) -> None:
    encoded: list[str] = []

    class Counting(KeywordEncoder):
        def encode_queries(self, texts):  # type: ignore[no-untyped-def]
            encoded.extend(texts)
            return super().encode_queries(texts)

    upload = tmp_path / "ideas.csv"
    words = ["cykelbana", "snöröjning", "belysning", "lekplats"]
    upload.write_text("id;text\n" + "".join(f"U{i};{words[i % 4]} vid skolan nummer {i}\n" for i in range(24)))
    svc = _service(tmp_path / "q.duckdb", Counting())
    try:
        svc.ingest("ideas", upload)
        before = [h.id for h in svc.similar([Query(id="U1")], k=5)[0]]
        assert any("nummer 1" in t for t in encoded)  # no cached query vector yet: encoded
        svc.cluster(show_bar=False)  # the nightly job caches every text's query vector
        encoded.clear()
        after = [h.id for h in svc.similar([Query(id="U1")], k=5)[0]]
        assert not any("nummer 1" in t for t in encoded)  # read from the store, not encoded
        assert after == before and "U1" not in after
        svc.similar([Query(text="cykelbana nära skolan")], k=5)
        assert encoded[-1] == "cykelbana nära skolan"  # a draft is encoded as before
    finally:
        svc.close()


def test_the_index_build_loads_the_model_beside_the_records_and_fails_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model loads on a thread of its own while the records are read; its failure is the build's."""
    from idesluss.resources import Resources

    svc = Service(Settings(db=tmp_path / "x.duckdb"), encoder=KeywordEncoder())
    seen: list[str] = []

    def broken(self: Resources) -> None:
        seen.append(threading.current_thread().name)
        raise RuntimeError("the model directory is damaged")

    monkeypatch.setattr(Resources, "encoder", property(broken))
    with pytest.raises(RuntimeError, match="damaged"):
        svc.collections()
    assert seen == ["idesluss-model"]
    monkeypatch.undo()
    assert set(svc.collections()) == {"ideas", "needs"}  # a later build, with the model, works
    svc.close()


def test_the_id_order_keeps_the_database_order_through_inserts_merges_and_removals() -> None:
    from idesluss.index import IdOrder

    order = IdOrder(["b", "d"])
    order.add(["c", "a", "d"])  # few: inserted in place, an id already there left alone
    assert [order.at(i) for i in range(len(order))] == ["a", "b", "c", "d"]
    many = [f"m{i:03d}" for i in range(IdOrder.BATCH + 5)][::-1]
    order.add([*many, "b"])  # many: one merge
    assert len(order) == 4 + len(many) and order.at(4) == "m000" and order.at(len(order) - 1) == "m036"
    order.remove("c")
    order.remove("zz")  # not there: nothing happens
    assert [order.at(i) for i in range(3)] == ["a", "b", "d"] and order.at(len(order)) is None
    assert order.at(-1) is None
    order.add(["Ö", "Å", "é"])  # code point order, as DuckDB sorts UTF-8 bytes
    assert [order.at(i) for i in range(len(order) - 3, len(order))] == ["Å", "Ö", "é"]


def test_a_page_by_number_from_the_index_equals_the_database_offset_page(tmp_path: Path) -> None:
    svc = _service(tmp_path / "p.duckdb")
    try:
        svc.ingest("ideas", REPO / "demo" / "ideas.csv")
        svc.collections()  # the index is built: pages take their first id from it
        assert svc._index.id_at("ideas", 0) == svc.store.page("ideas", 1, 0)[0].id

        def both(page: int, size: int) -> tuple[list[str], list[str]]:
            by_index, total = svc.page("ideas", page, size)
            assert total == svc.store.count("ideas")
            by_offset = svc.store.page("ideas", size, (page - 1) * size)
            return [r.id for r in by_index], [r.id for r in by_offset]

        for page, size in ((1, 20), (7, 20), (21, 20), (3, 100), (41, 10), (50, 10)):
            got, want = both(page, size)
            assert got == want, (page, size)
        svc.add_idea({"id": "0-FIRST", "text": "Fler bänkar vid busshållplatsen"}, actor="t")
        svc.add_idea({"id": "ZZZ-LAST", "text": "Gratis simskola för alla barn"}, actor="t")
        first_ids = [r.id for r in svc.page("ideas", 1, 3)[0]]
        assert first_ids[0] == "0-FIRST" and both(1, 3)[0] == both(1, 3)[1]
        svc.erase("ideas", first_ids[1], actor="t")
        for page, size in ((1, 20), (5, 20), (21, 20), (41, 10)):
            got, want = both(page, size)
            assert got == want, (page, size)
        total = svc.store.count("ideas")
        assert [r.id for r in svc.page("ideas", total, 1)[0]] == ["ZZZ-LAST"]
        assert svc.page("ideas", total + 1, 1)[0] == []
        svc._index._orders["ideas"].remove("ZZZ-LAST")  # as if indexing had failed after the store
        got, want = both(21, 20)
        assert got == want and [r.id for r in svc.page("ideas", total, 1)[0]] == ["ZZZ-LAST"]  # OFFSET
    finally:
        svc.close()


def test_an_upload_and_its_precomputed_suggestions_pace_at_the_configured_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from idesluss import inbox

    svc = Service(Settings(db=tmp_path / "b.duckdb", bulk_share=0.2), encoder=KeywordEncoder())
    try:
        assert svc._records._upload_pace() is None  # no batcher serves requests here: full speed
        served = [0]
        monkeypatch.setattr(svc._resources, "requests_served", lambda: lambda: served[0])
        pace = svc._records._upload_pace()
        assert pace is not None and pace.share == 0.2
        shares: list[float] = []
        real = inbox.Pacer
        monkeypatch.setattr(inbox, "Pacer", lambda share, **kw: shares.append(share) or real(share, **kw))
        svc.add_idea({"id": "P1", "text": "Fler papperskorgar i parken"}, actor="t")
        svc._inbox._precompute_logged(["P1"])
        assert shares == [0.1]  # the speculative part: half the upload's share
    finally:
        svc.close()
    for bad in (0, 1.5):
        with pytest.raises(ValidationError, match="bulk_share"):
            Settings(bulk_share=bad)
