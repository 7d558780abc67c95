"""Memory at scale: one copy of the vectors, postings as uint8 counts, a bounded DuckDB buffer pool.

Unit tests on synthetic vectors and texts (no model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from matcher import segments
from matcher.ann import make_index
from matcher.collection import Collection, Item
from matcher.lexical import BM25Index
from matcher.ngrams import CharNgramIndex
from matcher.swedish import Analyzer
from tests.test_snapshots import DIM, WORDS, _items, _search, _unit


def test_with_a_dense_index_the_collection_keeps_no_vectors_of_its_own() -> None:
    rng = np.random.default_rng(10)
    coll = Collection(DIM, Analyzer(), duplicate_threshold=0.95)
    coll.add(_items(rng, 0, 50), _unit(rng, 50))  # before the index: the collection's own float32 matrix
    index = make_index("hnsw", DIM, rescore_dtype="float16")
    coll.use_dense_index(index)
    vecs = _unit(rng, 300)
    coll.add(_items(rng, 50, 300), vecs)
    snap = coll.snapshot
    assert coll._vectors.size == 0
    assert snap.vectors.dtype == np.float16 and snap.vectors.shape == (350, DIM)
    assert np.shares_memory(snap.vectors, index._vectors)  # a view, not a copy
    assert not snap.vectors.flags.writeable
    np.testing.assert_allclose(snap.vectors[50:].astype(np.float32), vecs, atol=1e-3)
    assert _search(coll, "cykel", vecs[7])[0] == "I57"
    coll.remove("I57")
    assert not snap.vectors[57].any()  # erased: zero in every view, old snapshots included
    assert coll.nbytes < snap.vectors.nbytes + sum(s.matrix.data.nbytes * 8 for s in snap.chars.segments)


def test_a_saved_index_with_a_dense_index_holds_one_copy_and_loads_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    coll = Collection(DIM, Analyzer(), duplicate_threshold=0.95)
    coll.use_dense_index(make_index("hnsw", DIM, rescore_dtype="float16"))
    items, vecs = _items(rng, 0, 200), _unit(rng, 200)
    coll.add(items, vecs)
    coll.remove("I199")  # the last row dead: the loaded index must still cover every row
    coll.save(tmp_path / "ideas")
    assert not (tmp_path / "ideas" / "vectors.npy").exists()
    assert (tmp_path / "ideas" / "dense" / "vectors.npy").exists()
    loaded = Collection.load(tmp_path / "ideas", Analyzer(), {it.id: it for it in items[:199]}, 0.95)
    assert loaded is not None
    again, missing = loaded
    assert missing == []
    assert again.snapshot.vectors.shape == (200, DIM) and np.shares_memory(
        again.snapshot.vectors, again.dense_index._vectors
    )
    assert _search(again, "park", vecs[3]) == _search(coll, "park", vecs[3])
    again.add([Item(id="NEW", text="ny idé om bad", embed_hash="n")], vecs[:1])
    assert again.snapshot.row("NEW") == 200
    assert set(_search(again, "bad", vecs[0])[:2]) == {"I0", "NEW"}  # the same vector: both on top


def test_postings_are_uint8_counts_and_score_as_float_tf() -> None:
    rng = np.random.default_rng(12)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 12)))) for _ in range(800)]
    texts.append("cykel " * 300)  # a count past 255 is stored as 255
    bm25, chars = BM25Index(Analyzer()), CharNgramIndex()
    bm25.add(texts)
    chars.add(texts)
    for view in (bm25.view, chars.view):
        assert all(s.matrix.dtype == np.uint8 for s in view.segments)
    assert bm25.view.segments[0].matrix.max() == segments.COUNT_MAX
    # the n-gram cosine against one computed directly in float: sublinear tf x idf, cosine
    hashed = chars._hasher.transform(texts[:800]).tocsr().astype(np.float64)
    hashed.data = 1 + np.log(hashed.data)
    df = np.asarray((hashed > 0).sum(axis=0)).ravel()
    df[np.asarray(chars._hasher.transform(texts[800:]).nonzero()[1])] += 1
    idf = np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0
    docs = hashed.multiply(idf).tocsr()
    q = chars._hasher.transform(["cykelbanor vid skolan"]).tocsr().astype(np.float64)
    q.data = 1 + np.log(q.data)
    q = q.multiply(idf)
    want = (docs @ q.T).toarray().ravel() / (sp.linalg.norm(docs, axis=1) * sp.linalg.norm(q) + 1e-12)
    np.testing.assert_allclose(chars.scores("cykelbanor vid skolan")[:800], want, rtol=1e-4, atol=1e-6)


def test_the_store_bounds_duckdbs_buffer_pool(tmp_path: Path) -> None:
    from store import Store

    with Store(tmp_path / "a.duckdb", memory_limit="300MB") as store:
        limit = store._con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit.replace(" ", "").upper() in ("286.1MIB", "300.0MB", "300MB")
    with Store(tmp_path / "b.duckdb") as store:
        default = store._con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert default != limit


def test_releasing_duckdbs_memory_keeps_its_limit_and_its_data(tmp_path: Path) -> None:
    from pipelines.records import validate_row
    from store import Store

    with Store(tmp_path / "a.duckdb", memory_limit="300MB") as store:
        store.upsert_records("ideas", [validate_row({"id": f"i{n}", "text": f"idé nummer {n}"}) for n in range(500)])
        before = store._con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert len(store.records("ideas")) == 500
        store.release_memory()
        after = store._con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert after == before and len(store.records("ideas")) == 500


@pytest.mark.parametrize("limit", ["256MB", None])
def test_the_service_opens_its_store_with_the_configured_limit(
    limit: str | None, tmp_path: Path, fake_encoder: object
) -> None:
    from idesluss.service import Service
    from idesluss.settings import Settings

    service = Service(Settings(db=tmp_path / "x.duckdb", duckdb_memory_limit=limit), encoder=fake_encoder)  # type: ignore[arg-type]
    try:
        got = service.store._con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    finally:
        service.close()
    assert ("256" in got or "244" in got) == (limit is not None), got


def test_embed_missing_reads_only_the_records_without_a_vector(tmp_path: Path, fake_encoder: object) -> None:
    from pipelines.embed import embed_missing, vector_key
    from store import Record, Store

    def rec(i: int, text: str) -> Record:
        from pipelines.records import embed_text, text_hash

        return Record(id=f"I{i}", text=text, embed_hash=text_hash(embed_text(None, text)))

    with Store(tmp_path / "e.duckdb") as store:
        store.upsert_records("ideas", [rec(i, f"cykelbana nummer {i}") for i in range(5)])
        key = vector_key(fake_encoder.model_id)  # type: ignore[attr-defined]
        assert [r.id for r in store.records_without_vector("ideas", key)] == [f"I{i}" for i in range(5)]
        assert embed_missing(store, fake_encoder, kinds=("ideas",)) == 5  # type: ignore[arg-type]
        assert store.records_without_vector("ideas", key) == []
        store.upsert_records("ideas", [rec(2, "en ny text om bibliotek"), rec(9, "snöröjning")])
        assert [r.id for r in store.records_without_vector("ideas", key)] == ["I2", "I9"]
        assert embed_missing(store, fake_encoder, kinds=("ideas",)) == 2  # type: ignore[arg-type]
        assert store.records_without_vector("ideas", key) == []


def test_learning_the_lexicon_in_chunks_counts_as_word_by_word() -> None:
    from collections import Counter

    from matcher.swedish import _MIN_PART, is_stop, words

    rng = np.random.default_rng(13)
    vocab = [*WORDS, "gång-och", "e-tjänst", "cykel-bana", "12-3", "x-y-", "Ärende-hantering", "och", "att", "är"]
    texts = [" ".join(rng.choice(vocab, size=int(rng.integers(1, 12)))) for _ in range(12_000)]
    counts = Counter(w for t in texts for w in words(t) if not is_stop(w) and len(w) >= _MIN_PART)
    want = {w for w, c in counts.items() if c >= 2}
    analyzer = Analyzer()
    analyzer.learn(texts)
    assert analyzer.lexicon == want
    assert {"tjänst", "hantering", "bana", "ärende"} <= analyzer.lexicon and "och" not in analyzer.lexicon
    assert words("Gång-och cykelväg, e-tjänst") == ["gång", "och", "cykelväg", "e", "tjänst"]


@pytest.mark.parametrize("mode", ["exact", "hnsw"])
def test_the_start_up_build_in_bounded_pieces_answers_as_one_piece(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from idesluss import index as index_module
    from idesluss.service import Query, Service
    from idesluss.settings import Settings
    from tests.fakes import KeywordEncoder
    from tests.test_ann_service import QUERIES, _service

    _service(tmp_path, mode).close()  # the data, and a saved index (removed: the start below builds)
    db = tmp_path / f"{mode}.duckdb"
    answers, sizes = [], []
    real_add = Collection.add
    for rows in (index_module.ADD_ROWS, 7):
        shutil.rmtree(f"{db}.index", ignore_errors=True)
        monkeypatch.setattr(index_module, "ADD_ROWS", rows)
        calls: list[int] = []

        def counting_add(self: Collection, items: list[Item], vectors: np.ndarray, calls: list[int] = calls) -> None:
            calls.append(len(items))
            real_add(self, items, vectors)

        monkeypatch.setattr(Collection, "add", counting_add)
        svc = Service(Settings(db=db, dense_index=mode), encoder=KeywordEncoder())
        try:
            answers.append([[h.id for h in svc.similar([Query(text=q)], k=10)[0]] for q in QUERIES])
        finally:
            svc.close()
        sizes.append(max(calls))
    # not equal: rows appended in pieces keep n-gram norms from the idf of their moment until a full
    # merge (matcher/ngrams.py), and a duplicate group may show another representative
    overlap = sum(len(set(a) & set(b)) for a, b in zip(*answers)) / sum(len(a) for a in answers[0])
    assert overlap >= 0.9, answers
    assert sizes[1] == 7 and sizes[0] > 7  # the pieces were bounded


def test_a_page_cut_by_ids_first_is_the_page_of_the_ordered_records(tmp_path: Path) -> None:
    from store import Record, Store

    rng = np.random.default_rng(14)
    ids = [f"I{i:05d}" for i in rng.permutation(500)]
    with Store(tmp_path / "p.duckdb") as store:
        store.upsert_records("ideas", [Record(id=i, text=f"text {i}", embed_hash=i) for i in ids])
        everything = [r.id for r in store.records("ideas")]
        assert everything == sorted(ids)
        for offset in (0, 20, 480, 495, 500):
            assert [r.id for r in store.page("ideas", 20, offset)] == everything[offset : offset + 20]


@pytest.mark.parametrize("kind", ["ngrams", "bm25"])
def test_a_sparse_view_answers_a_repeated_text_once_and_a_new_view_afresh(kind: str) -> None:
    index = CharNgramIndex() if kind == "ngrams" else BM25Index(Analyzer())
    index.add(["cykelbana vid skolan", "snöröjning på gångvägar", "cykelväg till skolan"])
    view = index.view
    first = view.sparse_scores("cykel skolan")
    assert view.sparse_scores("cykel skolan") is first  # the same text on the same view: computed once
    assert not first[1].flags.writeable
    other = view.sparse_scores("snöröjning")
    assert other is not first and set(other[0].tolist()) == {1}
    np.testing.assert_allclose(view.sparse_scores("cykel skolan")[1], first[1])
    index.add(["cykelparkering vid skolan"])
    fresh = index.view.sparse_scores("cykel skolan")
    assert fresh is not first and 3 in fresh[0].tolist()


def test_ngram_scores_are_the_cosine_of_sublinear_tf_idf_vectors() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = ["cykelbana vid skolan", "snöröjning på gångvägar", "cykelväg till skolan", "Snöröjningen i Öjebyn"]
    index = CharNgramIndex()
    index.add(docs)  # one append (a later small append keeps earlier rows' norms until a merge)
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit(docs)
    m = reference.transform(docs)
    for q in (docs[3], docs[0]):  # texts whose n-grams the reference vocabulary knows
        expected = (m @ reference.transform([q]).T).toarray().ravel()
        np.testing.assert_allclose(index.view.scores(q), expected, atol=1e-5)


def test_ngram_scores_of_a_pool_equal_the_full_scores_at_those_rows() -> None:
    rng = np.random.default_rng(3)
    words = ["cykelbana", "skolan", "snöröjning", "gångväg", "belysning", "bibliotek", "lekplats", "hemtjänst"]
    texts = [" ".join(rng.choice(words, 4)) + f" nr {i}" for i in range(3000)]
    index = CharNgramIndex()
    index.add(texts[:2600])
    index.add(texts[2600:2900])  # small segments beside the big one
    index.add(texts[2900:])
    assert len(index.view.segments) > 1
    old = segments.SHORT_POSTING
    for short in (old, 0):  # postings read whole, and every posting binary-searched
        segments.SHORT_POSTING = short
        try:
            for q in ("cykelbana vid skolan", "snöröjningen på gångvägarna", "okänt ord"):
                rows = np.unique(rng.choice(len(texts), 150, replace=False))
                np.testing.assert_allclose(index.view.scores_at(q, rows), index.view.scores(q)[rows], atol=1e-6)
        finally:
            segments.SHORT_POSTING = old
    assert index.view.scores_at("cykel", np.zeros(0, np.int64)).shape == (0,)


def test_row_ordered_ngrams_score_a_pool_as_the_column_ordered_ones_and_survive_a_save() -> None:
    rng = np.random.default_rng(4)
    words = ["cykelbana", "skolan", "snöröjning", "gångväg", "belysning", "bibliotek", "lekplats", "hemtjänst"]
    texts = [" ".join(rng.choice(words, 4)) + f" nr {i}" for i in range(3000)]
    columns, rows_first = CharNgramIndex(), CharNgramIndex()
    for index in (columns, rows_first):
        index.add(texts[:2600])
        index.add(texts[2600:2800])
    rows_first.by_rows()
    assert rows_first.rows_ordered and all(s.matrix.format == "csr" for s in rows_first.view.segments)
    for index in (columns, rows_first):
        index.add(texts[2800:])  # appended after the switch: row-ordered too
    assert {s.matrix.format for s in rows_first.view.segments} == {"csr"}
    assert len(rows_first.view.segments) > 1
    queries = ("cykelbana vid skolan", "snöröjningen på gångvägarna nr 12", "okänt ord")
    for q in queries:
        pool = np.unique(rng.choice(len(texts), 150, replace=False))
        expected = columns.view.scores(q)
        assert expected[pool].max() > 0 or q == "okänt ord"
        np.testing.assert_allclose(rows_first.view.scores_at(q, pool), expected[pool], atol=1e-6)
        np.testing.assert_allclose(rows_first.view.scores(q), expected, atol=1e-6)  # the slow full ranking
    dead = np.zeros(len(texts), bool)
    dead[[5, 2900]] = True  # erased rows: their n-grams leave the saved arrays
    saved = rows_first.export(dead)
    restored = CharNgramIndex.restore(saved)
    assert restored.rows_ordered and restored.view.segments[0].matrix.format == "csr"
    np.testing.assert_array_equal(saved["df"], columns.export(dead)["df"])
    assert restored.view.segments[0].matrix[[5, 2900]].nnz == 0
    pool = np.arange(0, 3000, 7)
    np.testing.assert_allclose(
        restored.view.scores_at(queries[1], pool),
        CharNgramIndex.restore(columns.export(dead)).view.scores(queries[1])[pool],
        atol=1e-6,
    )


def test_bm25_of_a_pool_is_exact_and_common_terms_do_not_nominate(monkeypatch: pytest.MonkeyPatch) -> None:
    from matcher import lexical

    monkeypatch.setattr(lexical, "NOMINATION_BUDGET", 200)  # as a million rows would make it, for 1,500

    rng = np.random.default_rng(5)
    texts = [f"cykelbana skolan {rng.choice(WORDS)} {rng.choice(WORDS)}" for _ in range(1500)]
    texts[100] = "belysning vid ridhuset"  # the only row with "ridhus"
    index = BM25Index(Analyzer())
    index.add(texts[:1200])
    index.add(texts[1200:])  # a second segment
    view = index.view
    for q in ("cykelbana vid ridhuset", "skolan", "okänt"):
        rows = np.unique(np.concatenate([rng.choice(1500, 120, replace=False), [100]]))
        np.testing.assert_allclose(view.scores_at(q, rows), view.scores(q)[rows], rtol=1e-5, atol=1e-6)
    # "cykelbana" is in nearly every row: past the budget, it scores the pool but nominates nothing
    assert set(view.nominees("cykelbana vid ridhuset", 10).tolist()) == {100}
    assert len(view.nominees("cykelbana skolan", 10)) == 0
    full = view.scores("cykelbana skolan")
    assert (full > 0).sum() == 1499  # the common terms do score every row that holds them
    monkeypatch.setattr(lexical, "NOMINATION_BUDGET", 10**9)  # within the budget: BM25's own top rows
    view = index.view  # its last answer is for another text, so this one is computed afresh
    scores = view.scores("cykelbana vid ridhuset")
    picked = view.nominees("cykelbana vid ridhuset", 10)
    assert len(picked) == 10 and 100 in picked.tolist()
    np.testing.assert_allclose(np.sort(scores[picked]), np.sort(scores)[-10:])


def test_two_ngram_indexes_hash_a_repeated_query_once(monkeypatch: pytest.MonkeyPatch) -> None:
    ideas, needs = CharNgramIndex(), CharNgramIndex()
    ideas.add(["cykelbana vid skolan", "snöröjning på gångvägar"])
    needs.add(["säkrare skolvägar", "plogade cykelbanor"])
    vectorizer = ideas._hasher.vectorizer
    assert needs._hasher is ideas._hasher
    calls = []
    real = vectorizer.transform
    monkeypatch.setattr(vectorizer, "transform", lambda texts: calls.append(list(texts)) or real(texts))
    first = ideas.view.scores("cykelbanor vid skolan")
    second = needs.view.scores("cykelbanor vid skolan")
    assert calls == [["cykelbanor vid skolan"]]  # hashed once for both views
    assert first[0] > first[1] and second[1] > 0
    needs.view.scores("snöröjning")
    assert len(calls) == 2


def test_items_share_repeated_field_values_up_to_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each record read from the database brings its own copy of a department or a date; items keep one."""
    from datetime import datetime

    from idesluss import index as index_module
    from store import Record

    monkeypatch.setattr(index_module, "_interned", {})
    monkeypatch.setattr(index_module, "INTERN_LIMIT", 3)

    def record(n: int, dept: str) -> Record:
        # "".join builds a new string object per call, as the database driver does per row
        return Record(
            id=f"i{n}",
            text="t",
            embed_hash="h",
            department="".join(dept),
            status="".join("ny"),
            created_at=datetime(2026, 1, 1 + n % 2),
        )

    a, b = index_module.record_to_item(record(0, "Kultur")), index_module.record_to_item(record(2, "Kultur"))
    assert a.department == "Kultur" and a.department is b.department and a.status is b.status
    assert a.created_at is b.created_at  # equal dates: one object
    # the table is full (Kultur, ny, one date): a new value is kept as it comes, an old one still shared
    c, d = index_module.record_to_item(record(4, "Skola")), index_module.record_to_item(record(6, "Skola"))
    assert c.department == d.department == "Skola" and c.department is not d.department
    assert c.status is a.status and len(index_module._interned) == 3
