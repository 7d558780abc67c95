"""Matching quality: demo gold, SweFAQ (pooled), SweParaphrase, with baselines and ablations.

Every system is run on the same texts in the same process: dense only, lexical only (our Swedish
BM25 with compound splitting), fused (the service's configuration), and the anchors BM25 with
Snowball stems only and character 3-gram TF-IDF (what trigram matching amounts to).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.datasets import DemoCorpus
from evaluation.metrics import (
    bootstrap_statistic_ci,
    calibrate_threshold,
    paired_test,
    per_query_ranking,
    precision_recall_at_threshold,
    spearman,
    with_intervals,
)
from matcher.collection import Collection, Item
from matcher.hybrid import FusionConfig, HybridMatcher
from matcher.swedish import Analyzer
from models.encoder import TextEncoder

Ranker = Callable[[Sequence[str], np.ndarray | None, int], list[list[str]]]


@dataclass
class System:
    """A named way to rank: a fusion configuration, or a baseline ranker."""

    name: str
    fusion: FusionConfig | None = None
    split_compounds: bool = True
    char_ngrams: bool = False
    compounds: str = "corpus"
    large: bool = False  # the service's large-collection mode: HNSW (float16 re-scoring), n-grams score the pool


SERVICE = FusionConfig()
SYSTEMS = [
    System("fused (service)", SERVICE),
    System("dense only", FusionConfig(dense_weight=1.0, lexical_weight=0.0, char_weight=0.0)),
    System("lexical only (BM25 + n-grams)", FusionConfig(dense_weight=0.0, lexical_weight=1.0, char_weight=1.0)),
    System("dense + BM25", FusionConfig(lexical_weight=0.3, char_weight=0.0)),
    System("dense + n-grams", FusionConfig(lexical_weight=0.0, char_weight=0.3)),
    System("fused, rrf", FusionConfig(method="rrf", lexical_weight=0.5, char_weight=0.5)),
    System("fused, large-collection mode", SERVICE, large=True),
    System("fused, no compound split", SERVICE, split_compounds=False),
    System("fused, Hunspell compound split", SERVICE, compounds="hunspell"),
    System(
        "BM25 Snowball (anchor)",
        FusionConfig(dense_weight=0.0, lexical_weight=1.0, char_weight=0.0),
        split_compounds=False,
    ),
    System("char 3-gram TF-IDF (anchor)", None, char_ngrams=True),
]


class _Embeddings:
    """Encode each distinct text once per kind and reuse the vectors across systems."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def get(self, texts: Sequence[str], kind: str) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if (kind, t) not in self._cache))
        if missing:
            enc = self.encoder.encode_queries if kind == "query" else self.encoder.encode_passages
            for t, v in zip(missing, enc(missing)):
                self._cache[(kind, t)] = v
        return np.stack([self._cache[(kind, t)] for t in texts]) if texts else np.zeros((0, self.encoder.dim))


def _char_ngram_ranker(docs: Sequence[Item]) -> Callable[[str, int], list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 3), lowercase=True, sublinear_tf=True)
    matrix = vec.fit_transform([d.full_text for d in docs])
    ids = [d.id for d in docs]

    def rank(text: str, k: int) -> list[str]:
        scores = (matrix @ vec.transform([text]).T).toarray().ravel()
        return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]

    return rank


def rank_all(
    system: System,
    encoder: TextEncoder,
    emb: _Embeddings,
    docs: Sequence[Item],
    queries: Sequence[str],
    k: int,
    query_kind: str = "query",
    exclude: Sequence[set[str]] | None = None,
    lexicon_texts: Sequence[str] = (),
) -> list[list[str]]:
    """Rank ``docs`` for each query with one system; returns ranked id lists."""
    if system.char_ngrams:
        ranker = _char_ngram_ranker(docs)
        out = []
        for i, q in enumerate(queries):
            ranked = ranker(q, k + 1)
            out.append([r for r in ranked if not exclude or r not in exclude[i]][:k])
        return out
    assert system.fusion is not None
    analyzer = Analyzer(split_compounds=system.split_compounds, compounds=system.compounds)
    analyzer.learn([d.full_text for d in docs] + list(lexicon_texts))
    coll = Collection(encoder.dim, analyzer)
    if system.large:  # what the service builds from ``ann_min_items`` rows of a kind
        from matcher.ann import make_index

        coll.use_dense_index(make_index("hnsw", encoder.dim, rescore_dtype="float16"))
    coll.add(list(docs), emb.get([d.full_text for d in docs], "passage"))
    matcher = HybridMatcher(encoder, system.fusion)
    qvecs = emb.get(list(queries), query_kind)
    hits = matcher.search_batch(coll, list(queries), k=k, vectors=qvecs, exclude=exclude)
    return [[h.id for h in hs] for hs in hits]


def _items(rows: Sequence[dict]) -> list[Item]:
    return [Item(id=r["id"], text=r["text"], title=r.get("title") or None) for r in rows]


def demo_matching(
    encoder: TextEncoder, corpus: DemoCorpus, systems: Sequence[System] = SYSTEMS, query_kind: str = "query"
) -> dict[str, dict[str, float]]:
    """Paraphrase-partner retrieval and idea-to-need retrieval on the demo gold set.

    Args:
        query_kind: how the querying idea is encoded ("query", what the service does: a stored
            idea used as a search is encoded with the query prompt; "passage": its stored vector).
    """
    emb = _Embeddings(encoder)
    ideas, needs = _items(corpus.ideas), _items(corpus.needs)
    by_id = {i.id: i for i in ideas}
    pair_q, pair_rel, pair_ex = [], [], []
    for p in corpus.gold["pairs"]:
        for a, b in ((p["a"], p["b"]), (p["b"], p["a"])):
            pair_q.append(by_id[a].full_text)
            pair_rel.append({b})
            pair_ex.append({a})
    links: dict[str, set[str]] = {}
    for link in corpus.gold["need_links"]:
        links.setdefault(link["idea"], set()).add(link["need"])
    need_q = [by_id[i].full_text for i in links]
    need_rel = list(links.values())
    out = {}
    for system in systems:
        ranked = rank_all(system, encoder, emb, ideas, pair_q, 10, query_kind, pair_ex)
        para = with_intervals(per_query_ranking(ranked, pair_rel))
        ranked_n = rank_all(
            system, encoder, emb, needs, need_q, 10, query_kind, lexicon_texts=[i.full_text for i in ideas]
        )
        nd = with_intervals(per_query_ranking(ranked_n, need_rel))
        row: dict[str, float] = {}
        for key, src, metric in (
            ("paraphrase_top5", para, "recall@5"),
            ("paraphrase_mrr", para, "mrr"),
            ("needs_recall@10", nd, "recall@10"),
            ("needs_mrr", nd, "mrr"),
            ("needs_ndcg@10", nd, "ndcg@10"),
        ):
            row[key], row[f"{key}_ci"] = src[metric], src[f"{metric}_ci"]
        out[system.name] = row
    return out


ANCHORS = ("dense only", "BM25 Snowball (anchor)", "char 3-gram TF-IDF (anchor)")


def swefaq(encoder: TextEncoder, path: str, systems: Sequence[System] = SYSTEMS) -> dict[str, dict[str, float]]:
    """Pooled SweFAQ: every question ranks all gold answers of the file (answers stored as needs).

    Each figure has its bootstrap 95 % interval beside it (``<metric>_ci``, questions resampled).
    """
    return {name: with_intervals(pq) for name, pq in swefaq_per_query(encoder, path, systems).items()}


def swefaq_per_query(
    encoder: TextEncoder, path: str, systems: Sequence[System] = SYSTEMS
) -> dict[str, dict[str, np.ndarray]]:
    """Per-question metric values of each system on pooled SweFAQ."""
    from evaluation.datasets import load_swefaq

    questions, answers, gold = load_swefaq(Path(path))
    docs = [Item(id=str(i), text=a) for i, a in enumerate(answers)]
    emb = _Embeddings(encoder)
    relevant = [{str(g)} for g in gold]
    return {s.name: per_query_ranking(rank_all(s, encoder, emb, docs, questions, 10), relevant) for s in systems}


def paired_tests(
    per_query: dict[str, dict[str, np.ndarray]],
    service: str = "fused (service)",
    metrics: Sequence[str] = ("mrr", "recall@1"),
) -> dict[str, dict[str, float]]:
    """The service against every other system on the same queries (paired bootstrap + sign-flip test).

    Returns:
        "<other> / <metric>" -> {"diff", "diff_low", "diff_high", "p"} (diff = service - other).
    """
    out = {}
    for other, vals in per_query.items():
        if other == service:
            continue
        for m in metrics:
            out[f"{other} / {m}"] = paired_test(per_query[service][m], vals[m])
    return out


def sweparaphrase(encoder: TextEncoder, path: str) -> dict[str, Any]:
    """Spearman correlation of cosine similarity with the gold 0-5 scores.

    Sentence similarity is symmetric, so both sides get the query prompt (e5's own advice for
    symmetric tasks); the passage/passage figure is reported beside it.
    """
    from evaluation.datasets import load_sweparaphrase

    a, b, y = load_sweparaphrase(Path(path))
    qa, qb = encoder.encode_queries(a), encoder.encode_queries(b)
    pa, pb = encoder.encode_passages(a), encoder.encode_passages(b)
    qs, ps, gold = (qa * qb).sum(1), (pa * pb).sum(1), np.asarray(y)
    return {
        "spearman": spearman(qs, y),
        "spearman_ci": list(bootstrap_statistic_ci(lambda i: spearman(qs[i], gold[i]), len(y))),
        "spearman_passage": spearman(ps, y),
        "spearman_passage_ci": list(bootstrap_statistic_ci(lambda i: spearman(ps[i], gold[i]), len(y))),
        "pairs": len(y),
    }


def duplicate_holdout(encoder: TextEncoder, path: str, threshold: float, min_gold: float = 4.0) -> dict[str, Any]:
    """The demo-calibrated duplicate threshold applied, unchanged, to SweParaphrase dev (never tuned there).

    A pair counts as a near-duplicate when its gold similarity is at least ``min_gold`` (4 of 5: the same
    meaning with minor differences); both sides get the passage prompt, as stored ideas do.
    """
    from evaluation.datasets import load_sweparaphrase

    a, b, y = load_sweparaphrase(Path(path))
    scores = (encoder.encode_passages(a) * encoder.encode_passages(b)).sum(1)
    labels = np.asarray(y) >= min_gold

    def pr(i: np.ndarray) -> tuple[float, float]:
        return precision_recall_at_threshold(scores[i], labels[i], threshold)

    precision, recall = pr(np.arange(len(y)))
    return {
        "threshold": threshold,
        "precision": precision,
        "precision_ci": list(bootstrap_statistic_ci(lambda i: pr(i)[0], len(y))),
        "recall": recall,
        "recall_ci": list(bootstrap_statistic_ci(lambda i: pr(i)[1], len(y))),
        "positive_pairs": int(labels.sum()),
        "pairs_scored": len(y),
        "min_gold": min_gold,
    }


def duplicate_calibration(encoder: TextEncoder, corpus: DemoCorpus, min_precision: float = 0.95) -> dict[str, float]:
    """Calibrate the near-duplicate cosine threshold on the demo gold pairs.

    Every unordered pair of demo ideas is scored by dense cosine; a pair is positive when the two
    ideas are in the same gold group (paraphrase or resubmission, joined transitively). The
    threshold is the lowest one at which precision, from the top down, never drops below
    ``min_precision`` (0.95, a margin over the 0.9 required).
    """
    ideas = _items(corpus.ideas)
    vecs = encoder.encode_passages([i.full_text for i in ideas])
    groups = corpus.pair_groups()
    sims = vecs @ vecs.T
    iu = np.triu_indices(len(ideas), 1)
    scores = sims[iu]
    g = np.array([groups.get(i.id, -1 - n) for n, i in enumerate(ideas)])
    labels = g[iu[0]] == g[iu[1]]
    threshold, precision, recall = calibrate_threshold(scores, labels, min_precision)
    dup_only = {frozenset((p["a"], p["b"])) for p in corpus.gold["pairs"] if p["type"] == "duplicate"}
    ids = [i.id for i in ideas]
    flagged = {frozenset((ids[a], ids[b])) for a, b, s in zip(*iu, scores) if s >= threshold}
    return {
        "threshold": round(threshold, 4),
        "precision": precision,
        "recall": recall,
        "resubmissions_found": len(dup_only & flagged) / max(len(dup_only), 1),
        "positive_pairs": int(labels.sum()),
        "pairs_scored": int(len(scores)),
    }
