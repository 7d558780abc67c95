"""One writer, many readers: snapshots, segments, sparse lexical scoring and the saved index.

Unit tests on synthetic vectors (no model): the matcher is handed query vectors directly.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from matcher import segments
from matcher.ann import make_index
from matcher.collection import Collection, Item
from matcher.hybrid import HybridMatcher
from matcher.lexical import BM25Index
from matcher.ngrams import CharNgramIndex
from matcher.swedish import Analyzer

DIM = 16
WORDS = [
    "cykel",
    "bana",
    "skola",
    "bibliotek",
    "park",
    "lampa",
    "gata",
    "snö",
    "buss",
    "hemtjänst",
    "äldre",
    "lekplats",
    "bad",
    "ungdom",
]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _items(rng: np.random.Generator, start: int, n: int) -> list[Item]:
    out = []
    for i in range(start, start + n):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9))))
        out.append(
            Item(
                id=f"I{i}",
                text=text,
                department=str(rng.choice(["Kultur", "Teknik", None])),
                status=str(rng.choice(["ny", "klar"])),
                created_at=datetime(2024, 1 + i % 12, 1),
                embed_hash=f"h{i}",
            )
        )
    return out


class _NoEncoder:
    dim = DIM

    def encode_queries(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - vectors are always given
        raise AssertionError("the tests hand the matcher its query vectors")


def _search(coll: Collection | object, text: str, vec: np.ndarray, k: int = 5) -> list[str]:
    hits = HybridMatcher(_NoEncoder()).search_batch(coll, [text], k=k, vectors=vec[None, :])  # type: ignore[arg-type]
    return [h.id for h in hits[0]]


def test_a_snapshot_answers_as_of_its_moment_while_the_writer_goes_on() -> None:
    rng = np.random.default_rng(0)
    coll = Collection(DIM, Analyzer())
    coll.add(_items(rng, 0, 300), _unit(rng, 300))
    snap = coll.snapshot
    q = _unit(rng, 1)[0]
    before = _search(snap, "cykel bana", q, k=20)
    coll.add(_items(rng, 300, 3000), _unit(rng, 3000))  # crosses several segment merges
    for i in range(0, 300, 3):
        coll.remove(f"I{i}")
    # rows erased after the snapshot come back blank and are skipped, never as another row's data;
    # the rest keep their order, and nothing added later shows
    kept = [i for i in before if int(i[1:]) % 3 != 0]
    got = _search(snap, "cykel bana", q, k=20)
    assert got[: len(kept)] == kept and len(kept) < len(before)
    assert all(int(i[1:]) < 300 and int(i[1:]) % 3 != 0 for i in got)
    assert len(snap) == 300 and len(coll.snapshot) == 3300
    assert coll.snapshot.lexical.size == 3300 and snap.lexical.size == 300


def test_appended_segments_score_as_one_index() -> None:
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 12)))) for _ in range(5000)]
    whole, parts = BM25Index(Analyzer()), BM25Index(Analyzer())
    whole.add(texts)
    chars_whole, chars_parts = CharNgramIndex(), CharNgramIndex()
    chars_whole.add(texts)
    start = 0
    while start < len(texts):
        step = int(rng.integers(1, 400))
        parts.add(texts[start : start + step])
        chars_parts.add(texts[start : start + step])
        start += step
    assert len(parts.view.segments) <= segments.SMALL_SEGMENTS + 1
    for q in ("cykel bana vid skolan", "äldre i hemtjänsten", "okänt ord"):
        np.testing.assert_allclose(whole.scores(q), parts.scores(q), rtol=1e-5)
        rows, vals = parts.view.sparse_scores(q)
        dense = parts.scores(q)
        assert set(rows.tolist()) == set(np.nonzero(dense)[0].tolist())
        np.testing.assert_allclose(dense[rows], vals, rtol=1e-6)
        # norms of unmerged rows use the idf of their moment: close, not equal
        np.testing.assert_allclose(chars_whole.scores(q), chars_parts.scores(q), rtol=5e-2, atol=1e-3)


def test_a_full_merge_drops_erased_rows_and_their_words() -> None:
    index = BM25Index(Analyzer())
    index.add(["gemensam cykelbana", "gemensam lekplats", "hemligtord gemensam"])
    dead = np.array([False, False, True])
    arrays, terms = index.export(dead)
    assert not any("hemlig" in t for t in terms)
    assert any(t.startswith("gemensam") for t in terms)
    restored = BM25Index.restore(Analyzer(), arrays, terms)
    assert restored.scores("hemligtord")[2] == 0.0
    assert restored.scores("lekplats")[1] > 0


def test_filters_are_vectorised_and_agree_with_reading_each_item() -> None:
    rng = np.random.default_rng(2)
    coll = Collection(DIM, Analyzer())
    items = _items(rng, 0, 500)
    coll.add(items, _unit(rng, 500))
    coll.remove("I7")
    filters = {"department": ["kultur", "TEKNIK"], "status": "ny", "date_from": datetime(2024, 3, 1)}
    mask = coll.snapshot.filter_mask(filters)
    want = np.array(
        [
            it.id != "I7"
            and (it.department or "").lower() in {"kultur", "teknik"}
            and it.status == "ny"
            and it.created_at is not None
            and it.created_at >= datetime(2024, 3, 1)
            for it in items
        ]
    )
    assert (mask == want).all() and 0 < mask.sum() < len(items)
    assert not coll.snapshot.filter_mask({"department": "Finns inte"}).any()


@pytest.mark.parametrize("with_index", [False, True])
def test_duplicate_groups_join_and_survive_erasure(with_index: bool) -> None:
    rng = np.random.default_rng(3)
    coll = Collection(DIM, Analyzer(), duplicate_threshold=0.95)
    if with_index:
        coll.use_dense_index(make_index("exact", DIM))
    base = _unit(rng, 50)
    coll.add(_items(rng, 0, 50), base)
    twins = base[:3] + 0.01 * _unit(rng, 3)
    twins /= np.linalg.norm(twins, axis=1, keepdims=True)
    coll.add([Item(id=f"T{i}", text="kopia") for i in range(3)], twins)
    snap = coll.snapshot
    for i in range(3):
        group = {snap.items[r].id for r in snap.group(snap.row_of[f"I{i}"])}
        assert group == {f"I{i}", f"T{i}"}
    assert snap.group(snap.row_of["I10"]) == [snap.row_of["I10"]]
    coll.remove("T0")
    after = coll.snapshot
    assert [after.items[r].id for r in after.group(after.row_of["I0"])] == ["I0"]


def test_readers_never_see_a_half_applied_write() -> None:
    rng = np.random.default_rng(4)
    coll = Collection(DIM, Analyzer(), duplicate_threshold=0.99)
    coll.add(_items(rng, 0, 200), _unit(rng, 200))
    stop = threading.Event()
    errors: list[BaseException] = []
    queries = _unit(rng, 8)

    writes = [0]  # writer steps done (the readers go on until enough of them met their reads)

    def writer() -> None:
        wr = np.random.default_rng(5)
        n = 200
        while not stop.is_set():
            batch = int(wr.integers(1, 50))
            coll.add(_items(wr, n, batch), _unit(wr, batch))
            coll.remove(f"I{int(wr.integers(0, n))}")
            n += batch
            writes[0] += 1

    def reader(seed: int) -> None:
        try:
            i = 0
            # at least 150 reads each, and on until the writer has made 20 steps: the test does not
            # depend on which of them is faster on the machine at hand
            while i < 150 or (writes[0] < 20 and w.is_alive()):
                i += 1
                snap = coll.snapshot
                assert len(snap.vectors) == len(snap) == len(snap.alive) == snap.lexical.size == snap.chars.size
                hits = HybridMatcher(_NoEncoder()).search_batch(  # type: ignore[arg-type]
                    snap, ["cykel bana äldre"], k=10, vectors=queries[i % 8][None, :], filters={"status": "ny"}
                )[0]
                for h in hits:
                    assert np.isfinite(h.score) and h.item.status == "ny" and h.id
        except BaseException as exc:  # noqa: BLE001 - collected for the main thread
            errors.append(exc)

    w = threading.Thread(target=writer)
    readers = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    w.start()
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    stop.set()
    w.join()
    assert not errors, errors[0]
    assert writes[0] >= 20 and len(coll) >= 200  # the reads met 20 or more real writes (each adds one or more)


def test_a_saved_index_loads_and_catches_up_with_the_store(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    coll = Collection(DIM, Analyzer(), duplicate_threshold=0.95)
    coll.use_dense_index(make_index("hnsw", DIM))
    items = _items(rng, 0, 400)
    vecs = _unit(rng, 400)
    coll.add(items, vecs)
    coll.add([Item(id="SECRET", text="zyxwvutsord cykel", embed_hash="hs")], _unit(rng, 1))
    coll.remove("SECRET")
    coll.save(tmp_path / "ideas")
    for f in (tmp_path / "ideas").rglob("*"):
        if f.is_file():
            assert b"zyxwvutsord" not in f.read_bytes() and b"SECRET" not in f.read_bytes(), f
    now = {it.id: it for it in items}
    now.pop("I5")  # erased since the save
    now["I6"] = Item(id="I6", text="ny text om bibliotek", embed_hash="changed")
    now["NEW"] = Item(id="NEW", text="helt ny idé om bad", embed_hash="n")
    loaded = Collection.load(tmp_path / "ideas", Analyzer(), now, 0.95)
    assert loaded is not None
    again, missing = loaded
    assert {it.id for it in missing} == {"I6", "NEW"}
    assert again.snapshot.row("I5") is None and again.snapshot.row("I6") is None
    q = vecs[10]
    assert _search(again, "cykel", q)[0] == "I10"
    assert _search(again, "cykel", q) == [i for i in _search(coll, "cykel", q) if i not in ("I5", "I6")][:5]
    assert Collection.load(tmp_path / "ideas", Analyzer(), now, None) is None  # other settings: rebuild
    assert Collection.load(tmp_path / "nothing", Analyzer(), now, 0.95) is None
