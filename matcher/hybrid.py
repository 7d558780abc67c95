"""Hybrid retrieval: dense cosine fused with Swedish BM25, with explanations a coach can read.

The matcher is handed an encoder and the rows to index; it never runs SQL or loads a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from matcher.collection import Collection, Item, Snapshot
from matcher.swedish import shared_words
from models.encoder import TextEncoder


@dataclass(frozen=True)
class FusionConfig:
    """How dense and lexical evidence are combined.

    Attributes:
        method: "zscore" (weighted sum of per-query z-scores) or "rrf" (reciprocal rank fusion).
        dense_weight: weight of the dense part (0 switches it off).
        lexical_weight: weight of Swedish BM25 (0 switches it off).
        char_weight: weight of character n-gram TF-IDF (0 switches it off).
        rrf_k: the RRF constant.
        pool: rows considered when normalising scores (top of each ranker).
    """

    method: Literal["zscore", "rrf"] = "zscore"
    dense_weight: float = 1.0
    lexical_weight: float = 0.3
    char_weight: float = 0.3
    rrf_k: int = 60
    pool: int = 200

    def __post_init__(self) -> None:
        if self.method not in ("zscore", "rrf"):
            raise ValueError(f"unknown fusion method {self.method!r}; use 'zscore' or 'rrf'")
        weights = (self.dense_weight, self.lexical_weight, self.char_weight)
        if min(weights) < 0 or sum(weights) == 0:
            raise ValueError("fusion weights must be >= 0 and not all 0")


@dataclass
class Hit:
    """One ranked suggestion with its evidence."""

    id: str
    score: float
    dense: float
    lexical: float
    shared_terms: list[str]
    why: str
    item: Item
    duplicate_group: list[str] = field(default_factory=list)
    pinned: bool = False
    tenant: str | None = None  # the municipality of a result from another tenant (a shared idea)

    def as_dict(self, snippet_chars: int = 220) -> dict[str, Any]:
        """JSON-ready result (DESIGN.md output shape)."""
        it = self.item
        text = it.text if len(it.text) <= snippet_chars else it.text[: snippet_chars - 1].rsplit(" ", 1)[0] + "…"
        return {
            "id": self.id,
            "score": round(self.score, 4),
            "title": it.title,
            "snippet": text,
            "department": it.department,
            "created_at": it.created_at.date().isoformat() if it.created_at else None,
            "status": it.status,
            "outcome": it.outcome,
            "source": it.source,
            "dense": round(self.dense, 4),
            "lexical": round(self.lexical, 4),
            "shared_terms": self.shared_terms,
            "why": self.why,
            "duplicate_group": self.duplicate_group,
            "confirmed": self.pinned,
            **({"tenant": self.tenant} if self.tenant else {}),
        }


def _zscore(x: np.ndarray) -> np.ndarray:
    std = float(x.std())
    return (x - float(x.mean())) / (std if std > 1e-9 else 1.0)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k highest finite scores (unordered)."""
    rows = np.argpartition(-scores, k - 1)[:k] if 0 < k < len(scores) else np.arange(len(scores))
    return rows[np.isfinite(scores[rows])].astype(np.int64)


def _sparse_part(found: tuple[np.ndarray, np.ndarray], n: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """A sparse ranker's (rows, scores) as a dense array, and its top ``pool`` rows."""
    rows, vals = found
    out = np.zeros(n, np.float32)
    out[rows] = vals
    top = rows[np.argpartition(-vals, pool - 1)[:pool]] if len(rows) > pool > 0 else rows
    return out, top.astype(np.int64)


def _fmt(x: float) -> str:
    return f"{x:.2f}".replace(".", ",")


class HybridMatcher:
    """Dense + lexical search over a :class:`Collection`.

    Args:
        encoder: turns query texts into vectors.
        fusion: the fusion configuration.
    """

    def __init__(self, encoder: TextEncoder, fusion: FusionConfig | None = None) -> None:
        self.encoder = encoder
        self.fusion = fusion or FusionConfig()

    def search(self, collection: Collection | Snapshot, text: str, k: int = 10, **kw: Any) -> list[Hit]:
        """Top-k hits for one text (see :meth:`search_batch`)."""
        return self.search_batch(collection, [text], k=k, **kw)[0]

    def search_batch(
        self,
        collection: Collection | Snapshot,
        texts: Sequence[str],
        k: int = 10,
        vectors: np.ndarray | None = None,
        filters: dict[str, Any] | None = None,
        exclude: Sequence[set[str]] | None = None,
        pinned: Sequence[set[str]] | None = None,
        collapse_duplicates: bool = False,
    ) -> list[list[Hit]]:
        """Top-k hits for each text.

        Args:
            collection: what to search.
            texts: query texts (coach drafts or stored texts).
            k: results per query.
            vectors: precomputed query vectors (for stored items); encoded as queries otherwise.
            filters: department / status / source / outcome / date_from / date_to.
            exclude: per query, ids never to return (the query itself, rejected suggestions).
            pinned: per query, ids confirmed by a coach: always ranked first.
            collapse_duplicates: return one representative per near-duplicate group.
        """
        if not texts:
            return []
        if vectors is None and self.fusion.dense_weight > 0:
            vectors = self.encoder.encode_queries(list(texts))
        snap = collection.snapshot if isinstance(collection, Collection) else collection  # one view throughout
        base_mask = snap.filter_mask(filters)
        out = []
        for i, text in enumerate(texts):
            mask = base_mask.copy()
            for ex in exclude[i] if exclude else ():
                row = snap.row(ex)
                if row is not None:
                    mask[row] = False
            qvec = vectors[i] if vectors is not None else None
            out.append(self._rank(snap, text, qvec, mask, k, pinned[i] if pinned else set(), collapse_duplicates))
        return out

    def scores(
        self, collection: Collection | Snapshot, text: str, qvec: np.ndarray | None, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, ...]:
        """(fused, dense, lexical) scores of every row for one query.

        "lexical" is the BM25 part; the character n-gram part enters the fused score only. The
        fusion pool is the top ``pool`` rows of each ranker: by dense cosine among the rows ``mask``
        allows, by each lexical score among the rows that share a term with the query (read from
        the query terms' postings). Scores are normalised over the pool, and rows outside it get
        -inf. With a dense index (large collections) the dense ranker's top rows come from the
        index and dense cosines are computed for the pool only; otherwise by a scan of all rows.
        With one ranker alone, its raw scores are returned for every row.
        """
        snap = collection.snapshot if isinstance(collection, Collection) else collection
        n = len(snap)
        f = self.fusion
        pool = min(f.pool, n)
        zeros = np.zeros(n, np.float32)
        want_dense = qvec is not None and f.dense_weight > 0
        use_index = want_dense and snap.dense_index is not None
        tops = []
        if use_index:
            assert snap.dense_index is not None and qvec is not None
            dense = zeros.copy()
            tops.append(snap.dense_index.search(qvec[None, :], pool, allowed=mask)[0][0].astype(np.int64))
        elif want_dense:
            assert qvec is not None
            dense = snap.vectors @ qvec
            tops.append(_top(dense if mask is None else np.where(mask, dense, -np.inf), pool))
        else:
            dense = zeros
        lexical, chars = zeros, zeros
        if f.lexical_weight > 0:
            lexical, top = _sparse_part(snap.lexical.sparse_scores(text), n, pool)
            tops.append(top)
        if f.char_weight > 0:
            chars, top = _sparse_part(snap.chars.sparse_scores(text), n, pool)
            tops.append(top)
        parts = [
            (w, p) for w, p in ((f.dense_weight, dense), (f.lexical_weight, lexical), (f.char_weight, chars)) if w > 0
        ]
        if len(parts) == 1 and not use_index:
            return parts[0][1].astype(np.float64), dense, lexical
        pool_idx = np.unique(np.concatenate(tops)).astype(np.int64)
        fused = np.full(n, -np.inf)
        if not len(pool_idx):
            return fused, dense, lexical
        if use_index:
            assert snap.dense_index is not None and qvec is not None
            dense[pool_idx] = np.maximum(snap.dense_index.score_rows(qvec[None, :], pool_idx)[0], -1.0)
        fused[pool_idx] = 0.0
        if f.method == "zscore":
            for weight, part in parts:
                fused[pool_idx] += weight * _zscore(part[pool_idx])
        else:
            for weight, part in parts:
                order = np.argsort(-part[pool_idx])
                ranks = np.empty(len(pool_idx))
                ranks[order] = np.arange(1, len(pool_idx) + 1)
                fused[pool_idx] += weight / (f.rrf_k + ranks)
        return fused, dense, lexical

    def _rank(
        self,
        collection: Snapshot,
        text: str,
        qvec: np.ndarray | None,
        mask: np.ndarray,
        k: int,
        pinned: set[str],
        collapse: bool,
    ) -> list[Hit]:
        n = len(collection)
        if n == 0 or not mask.any():
            return []
        fused, dense, lexical = self.scores(collection, text, qvec, mask)
        fused = np.where(mask, fused, -np.inf)
        pin_rows = [r for r in (collection.row(p) for p in pinned) if r is not None and mask[r]]
        want = min(n, max(4 * k, k + 20))
        top = np.argpartition(-fused, want - 1)[:want] if want < n else np.arange(n)
        top = top[np.argsort(-fused[top], kind="stable")]
        for r in pin_rows:  # a confirmed row outside the fusion pool still needs its evidence
            if not np.isfinite(fused[r]):
                if collection.dense_index is not None and qvec is not None:
                    dense[r] = float(collection.dense_index.score_rows(qvec[None, :], np.asarray([r]))[0, 0])
                fused[r] = 0.0
        ordered = pin_rows + [int(r) for r in top if np.isfinite(fused[r]) and int(r) not in pin_rows]
        ordered = [r for r in ordered if collection.items[r].id]  # a row erased while this search ran
        query_terms = set(collection.lexical.query_terms(text))
        hits: list[Hit] = []
        seen_groups: set[int] = set()
        for row in ordered:
            if collapse:
                key = collection.group_key(row)
                if key in seen_groups:
                    continue
                seen_groups.add(key)
            hits.append(self._hit(collection, row, fused[row], dense[row], lexical[row], query_terms, row in pin_rows))
            if len(hits) == k:
                break
        return hits

    def _hit(
        self,
        collection: Snapshot,
        row: int,
        fused: float,
        dense: float,
        lexical: float,
        query_terms: set[str],
        pinned: bool,
    ) -> Hit:
        item = collection.items[row]
        words = shared_words(collection.lexical.analyzer, item.full_text, query_terms)
        group = [collection.items[r].id for r in collection.group(row)] if collection.duplicate_threshold else []
        return Hit(
            id=item.id,
            score=float(fused),
            dense=float(dense),
            lexical=float(lexical),
            shared_terms=words,
            why=self._explain(dense, lexical, words, pinned),
            item=item,
            duplicate_group=group if len(group) > 1 else [],
            pinned=pinned,
        )

    def _explain(self, dense: float, lexical: float, words: list[str], pinned: bool) -> str:
        parts = []
        if pinned:
            parts.append("Bekräftad av en idécoach.")
        if self.fusion.dense_weight > 0:
            level = (
                "mycket lika"
                if dense >= 0.9
                else "lika"
                if dense >= 0.85
                else "delvis lika"
                if dense >= 0.8
                else "svagt lika"
            )
            parts.append(f"Innebörden är {level} (semantisk likhet {_fmt(dense)}).")
        if words:
            parts.append(f"Delar orden: {', '.join(words)} (ordmatchning {_fmt(lexical)}).")
        elif self.fusion.lexical_weight > 0:
            parts.append("Inga gemensamma nyckelord: träffen bygger på innebörden.")
        return " ".join(parts)
