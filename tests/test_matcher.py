from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from matcher.collection import Collection, Item
from matcher.hybrid import FusionConfig, HybridMatcher
from matcher.lexical import BM25Index
from matcher.swedish import STOP_WORDS, Analyzer
from tests.fakes import KeywordEncoder

ITEMS = [
    Item(
        "a",
        "Bygg en cykelbana längs älven",
        title=None,
        department="Samhällsbyggnad",
        status="genomförd",
        created_at=datetime(2024, 5, 1),
    ),
    Item(
        "b",
        "Fler gatlampor på Storgatan",
        department="Samhällsbyggnad",
        status="avslag",
        created_at=datetime(2025, 1, 1),
    ),
    Item(
        "c",
        "Snöröjning av trottoarer tidigt på morgonen",
        department="Teknik",
        status="ny",
        created_at=datetime(2026, 1, 1),
    ),
    Item(
        "d",
        "Hemtjänstpersonalen behöver elcyklar",
        department="Social",
        status="pågår",
        created_at=datetime(2025, 6, 1),
    ),
]


def _collection(encoder: KeywordEncoder, items=ITEMS, threshold=None) -> Collection:
    analyzer = Analyzer()
    analyzer.learn([i.full_text for i in items] + LEXICON_TEXTS)
    coll = Collection(encoder.dim, analyzer, duplicate_threshold=threshold)
    coll.add(items, encoder.encode_passages([i.full_text for i in items]))
    return coll


# Standalone words a real index would have seen (the lexicon is learned from the indexed texts; no
# word list is built into the code).
LEXICON_TEXTS = ["cykel bana väg", "gata lampa belysning", "hemtjänst personal"] * 2


def test_compounds_meet_their_parts_and_each_other() -> None:
    a = Analyzer()
    a.learn(LEXICON_TEXTS * 2)
    assert set(a.terms("cykelbana")) & set(a.terms("cykelvägar")) == {"cykel"}
    assert "gat" in set(a.terms("gatlampa")) & set(a.terms("gatubelysning"))
    assert {"hemtjänst", "personal"} <= set(a.terms("hemtjänstpersonalen"))
    assert not set(a.terms("och att det är som"))


def test_lexical_only_ranks_by_shared_compound_parts(fake_encoder) -> None:
    coll = _collection(fake_encoder)
    m = HybridMatcher(fake_encoder, FusionConfig(dense_weight=0, lexical_weight=1, char_weight=0))
    hits = m.search(coll, "nya cykelvägar", k=2)
    assert hits[0].id == "a"
    assert "cykel (i cykelbana)" in hits[0].shared_terms
    assert "Delar orden" in hits[0].why


def test_hits_without_explanations_rank_and_score_the_same(fake_encoder) -> None:
    coll = _collection(fake_encoder)
    m = HybridMatcher(fake_encoder)
    full = m.search(coll, "nya cykelvägar", k=4)
    bare = m.search(coll, "nya cykelvägar", k=4, explain=False)
    assert [(h.id, h.score, h.dense, h.lexical) for h in bare] == [(h.id, h.score, h.dense, h.lexical) for h in full]
    assert full[0].shared_terms and full[0].why
    assert all(not h.shared_terms and h.why == "" for h in bare)


def test_dense_only_ranks_by_vector(fake_encoder) -> None:
    coll = _collection(fake_encoder)
    m = HybridMatcher(fake_encoder, FusionConfig(dense_weight=1, lexical_weight=0, char_weight=0))
    hits = m.search(coll, "snöröjning trottoarer", k=4)
    assert hits[0].id == "c"
    assert hits[0].dense > hits[1].dense


def test_filters_exclusions_and_pins(fake_encoder) -> None:
    coll = _collection(fake_encoder)
    m = HybridMatcher(fake_encoder)
    only = m.search_batch(coll, ["cykelbana"], k=4, filters={"status": "avslag"})[0]
    assert [h.id for h in only] == ["b"]
    dated = m.search_batch(coll, ["cykelbana"], k=4, filters={"date_from": datetime(2025, 3, 1)})[0]
    assert {h.id for h in dated} == {"c", "d"}
    ex = m.search_batch(coll, ["cykelbana"], k=4, exclude=[{"a"}])[0]
    assert "a" not in {h.id for h in ex}
    pinned = m.search_batch(coll, ["cykelbana"], k=4, pinned=[{"d"}])[0]
    assert pinned[0].id == "d" and pinned[0].pinned and "Bekräftad" in pinned[0].why


def test_duplicate_groups_collapse_to_one_representative(fake_encoder) -> None:
    items = [*ITEMS, Item("a2", "Bygg en cykelbana längs älven!"), Item("a3", "bygg EN cykelbana längs älven")]
    coll = _collection(fake_encoder, items, threshold=0.99)
    m = HybridMatcher(fake_encoder)
    collapsed = m.search_batch(coll, ["cykelbana längs älven"], k=3, collapse_duplicates=True)[0]
    assert [h.id for h in collapsed].count("a") + [h.id for h in collapsed].count("a2") + [
        h.id for h in collapsed
    ].count("a3") == 1
    assert sorted(collapsed[0].duplicate_group) == ["a", "a2", "a3"]
    every = m.search_batch(coll, ["cykelbana längs älven"], k=3, collapse_duplicates=False)[0]
    assert {h.id for h in every} == {"a", "a2", "a3"}


def test_a_large_duplicate_group_is_named_by_its_first_ids_and_its_size(fake_encoder) -> None:
    copies = [Item(f"k{i:02d}", "Bygg en cykelbana längs älven" + "!" * i) for i in range(30)]
    coll = _collection(fake_encoder, [*ITEMS, *copies], threshold=0.99)
    m = HybridMatcher(fake_encoder)
    hits = m.search_batch(coll, ["cykelbana längs älven"], k=40)[0]
    grouped = {h.id: h for h in hits if h.id in {"a"} | {c.id for c in copies}}
    assert len(grouped) == 31
    for hit in grouped.values():
        assert hit.duplicate_count == 31
        assert len(hit.duplicate_group) == 20 and hit.id in hit.duplicate_group  # itself, even when not first
        assert hit.duplicate_group == sorted(hit.duplicate_group, key=lambda i: coll.snapshot.row(i))
        assert hit.as_dict()["duplicate_count"] == 31
    before = coll.snapshot
    gone = before.row_of["k29"]
    coll.remove("k29")  # an older view asked about a row erased since: still itself, and counted
    rows, size = before.group_and_size(gone, 20)
    assert gone in rows and len(rows) == 20 and size == before.group_size(gone) >= 30
    late = m.search_batch(coll, ["cykelbana längs älven"], k=40)[0]
    assert {h.duplicate_count for h in late if h.id.startswith("k")} == {30}
    bare = m.search_batch(coll, ["cykelbana längs älven"], k=40, explain=False)[0]
    assert all(h.duplicate_group == [] and h.duplicate_count == 0 for h in bare)
    alone = m.search_batch(coll, ["gatlampor"], k=1)[0][0]
    assert alone.id == "b" and alone.duplicate_group == [] and alone.duplicate_count == 0


def test_incremental_add_scores_like_a_full_build(fake_encoder) -> None:
    rng = np.random.default_rng(0)
    vocab = ["cykel", "bana", "lampa", "snö", "skola", "buss", "park", "bibliotek", "hall", "gata"]
    texts = [" ".join(rng.choice(vocab, size=5)) for _ in range(2500)]
    items = [Item(str(i), t) for i, t in enumerate(texts)]
    vecs = fake_encoder.encode_passages(texts)
    whole = Collection(fake_encoder.dim, Analyzer())
    whole.add(items, vecs)
    parts = Collection(fake_encoder.dim, Analyzer())
    for start in range(0, len(items), 300):  # crosses the fold points of both lexical indexes
        parts.add(items[start : start + 300], vecs[start : start + 300])
    m = HybridMatcher(fake_encoder)
    for q in ("cykel bana", "snö skola buss", "bibliotek"):
        np.testing.assert_allclose(whole.lexical.scores(q), parts.lexical.scores(q), rtol=1e-5)
        # n-gram norms of buffered rows use the idf of the moment they arrived: within 1 % until folded
        np.testing.assert_allclose(whole.chars.scores(q), parts.chars.scores(q), rtol=1e-2, atol=1e-6)
        top_whole = [h.score for h in m.search(whole, q, k=5)]
        top_parts = [h.score for h in m.search(parts, q, k=5)]
        np.testing.assert_allclose(top_whole, top_parts, rtol=2e-2)  # many ties: compare scores, not ids


def test_removed_rows_never_come_back(fake_encoder) -> None:
    coll = _collection(fake_encoder)
    assert coll.remove("a")
    hits = HybridMatcher(fake_encoder).search(coll, "cykelbana längs älven", k=4)
    assert "a" not in {h.id for h in hits}


def test_bm25_prefers_rarer_terms() -> None:
    idx = BM25Index(Analyzer())
    idx.add(["skola skola", "skola bibliotek", "skola park"])
    s = idx.scores("bibliotek skola")
    assert s.argmax() == 1


def test_fusion_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown fusion method"):
        FusionConfig(method="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not all 0"):
        FusionConfig(dense_weight=0, lexical_weight=0, char_weight=0)


def test_stop_words_are_lower_case_words() -> None:
    assert all(w == w.lower() for w in STOP_WORDS)
    assert {"och", "att", "det", "som", "är"} <= STOP_WORDS


def test_one_thread_reuses_its_last_pool_only_for_the_same_view_query_and_rows(fake_encoder, monkeypatch) -> None:
    coll = _collection(fake_encoder)
    m = HybridMatcher(fake_encoder)
    computed: list[str] = []
    real = m.pool_scores
    monkeypatch.setattr(m, "pool_scores", lambda snap, text, *a: computed.append(text) or real(snap, text, *a))
    snap = coll.snapshot
    first = m.search_batch(snap, ["cykelbana"], k=4)[0]
    again = m.search_batch(snap, ["cykelbana"], k=2, collapse_duplicates=True)[0]
    assert computed == ["cykelbana"]  # the second search (other k, collapsed) used the same pool
    assert [h.id for h in again] == [h.id for h in first][:2]
    m.search_batch(snap, ["cykelbana"], k=4, exclude=[{"a"}])
    m.search_batch(snap, ["snöröjning"], k=4)
    assert computed == ["cykelbana", "cykelbana", "snöröjning"]  # other rows, other text: computed
    coll.add([Item("e", "Cykelbana till badet")], fake_encoder.encode_passages(["Cykelbana till badet"]))
    after = m.search_batch(coll.snapshot, ["cykelbana"], k=5)[0]
    assert computed[-1] == "cykelbana" and "e" in {h.id for h in after}  # a new view: computed afresh
