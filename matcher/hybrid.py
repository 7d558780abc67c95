"""Hybrid retrieval: dense cosine fused with Swedish BM25, with explanations a coach can read.

The matcher is handed an encoder and the rows to index; it never runs SQL or loads a model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from matcher.collection import Collection, Item, Snapshot
from matcher.swedish import shared_words
from models.encoder import TextEncoder

GROUP_SHOWN = 20  # a hit names at most this many ids of its near-duplicate group; duplicate_count has its size


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
    duplicate_group: list[str] = field(default_factory=list)  # at most GROUP_SHOWN ids, this one's included
    pinned: bool = False
    tenant: str | None = None  # the municipality of a result from another tenant (a shared idea)
    duplicate_count: int = 0  # the whole near-duplicate group's size (0: no group)

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
            "duplicate_count": self.duplicate_count,
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


def _sparse_top(found: tuple[np.ndarray, np.ndarray], pool: int) -> np.ndarray:
    """The top ``pool`` rows of a sparse ranker's (rows, scores)."""
    rows, vals = found
    top = rows[np.argpartition(-vals, pool - 1)[:pool]] if len(rows) > pool > 0 else rows
    return top.astype(np.int64)


def _spread(found: tuple[np.ndarray, np.ndarray] | None, n: int) -> np.ndarray:
    """A sparse ranker's (rows, scores) as a dense array over all ``n`` rows."""
    out = np.zeros(n, np.float32)
    if found is not None:
        out[found[0]] = found[1]
    return out


def _at(found: tuple[np.ndarray, np.ndarray] | None, rows: np.ndarray) -> np.ndarray:
    """A sparse ranker's scores at ``rows`` (0 where it has none); its rows are in ascending order."""
    out = np.zeros(len(rows), np.float32)
    if found is None or not len(found[0]) or not len(rows):
        return out
    have, vals = found
    pos = np.minimum(np.searchsorted(have, rows), len(have) - 1)
    hit = have[pos] == rows
    out[hit] = vals[pos[hit]]
    return out


@dataclass(frozen=True)
class Pool:
    """One query's fusion pool: its rows (ascending) with their fused, dense and BM25 scores.

    ``rows`` is None when one ranker alone scored every row (the arrays then cover all rows).
    """

    rows: np.ndarray | None
    fused: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    dense_all: np.ndarray | None = None  # every row's cosine, when the dense part was a scan
    lexical_found: tuple[np.ndarray, np.ndarray] | None = None  # BM25's (rows, scores)


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
        # each thread's last fusion pool: a suggestion searches the same ideas for the same text
        # twice (its similar ideas, and the near ones its duplicates come from)
        self._local = threading.local()

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
        explain: bool = True,
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
            explain: find the shared words and write the explanation of each hit (False: scores only,
                ``shared_terms`` and ``duplicate_group`` empty and ``why`` blank, for a caller that reads
                the scores alone).
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
            pin = pinned[i] if pinned else set()
            out.append(self._rank(snap, text, qvec, mask, k, pin, collapse_duplicates, explain))
        return out

    def scores(
        self, collection: Collection | Snapshot, text: str, qvec: np.ndarray | None, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, ...]:
        """(fused, dense, lexical) scores of every row for one query (see :meth:`pool_scores`).

        Rows outside the fusion pool get fused -inf and dense / lexical 0. With one ranker alone,
        its raw scores are returned for every row.
        """
        snap = collection.snapshot if isinstance(collection, Collection) else collection
        n = len(snap)
        pool = self.pool_scores(snap, text, qvec, mask)
        if pool.rows is None:
            return pool.fused, pool.dense, pool.lexical
        fused, dense, lexical = np.full(n, -np.inf), np.zeros(n, np.float32), np.zeros(n, np.float32)
        fused[pool.rows], dense[pool.rows], lexical[pool.rows] = pool.fused, pool.dense, pool.lexical
        return fused, dense, lexical

    def pool_scores(self, snap: Snapshot, text: str, qvec: np.ndarray | None, mask: np.ndarray | None = None) -> Pool:
        """The fused, dense and lexical scores of the fusion pool for one query.

        "lexical" is the BM25 part; the character n-gram part enters the fused score only. The
        fusion pool is the top ``pool`` rows of each ranker: by dense cosine among the rows ``mask``
        allows, by each lexical score among the rows that share a term with the query (read from
        the query terms' postings). Scores are normalised over the pool. With a dense index (large
        collections) the dense ranker's top rows come from the index and dense cosines are computed
        for the pool only, the n-gram ranker scores the pool without adding to it, and BM25's
        candidates come from the query's uncommon terms (every term still scores the pool); otherwise
        dense cosines come from a scan of all rows. Only the pool's rows are scored and
        fused, so beyond the rankers themselves a query costs what its pool costs, not the corpus.
        With one ranker alone (no pool), its raw scores for every row are returned (``rows`` None).
        """
        n = len(snap)
        f = self.fusion
        pool = min(f.pool, n)
        want_dense = qvec is not None and f.dense_weight > 0
        use_index = want_dense and snap.dense_index is not None
        tops = []
        dense_all = None
        if use_index:
            assert snap.dense_index is not None and qvec is not None
            tops.append(snap.dense_index.search(qvec[None, :], pool, allowed=mask)[0][0].astype(np.int64))
        elif want_dense:
            assert qvec is not None
            dense_all = (snap.vectors @ qvec).astype(np.float32, copy=False)
            tops.append(_top(dense_all if mask is None else np.where(mask, dense_all, -np.inf), pool))
        lexical_found = None
        if f.lexical_weight > 0 and use_index:  # common terms score the pool without nominating (lexical.py)
            tops.append(snap.lexical.nominees(text, pool))
        elif f.lexical_weight > 0:
            lexical_found = snap.lexical.sparse_scores(text)
            tops.append(_sparse_top(lexical_found, pool))
        # with a dense index (a large collection) the n-grams score the pool instead of adding to it:
        # their postings grow with the corpus, and reading them whole cost 10x the rest of a search
        # at a million rows (SweFAQ dev: no loss, see the README, "Large collections")
        chars_found = snap.chars.sparse_scores(text) if f.char_weight > 0 and not use_index else None
        if chars_found is not None:
            tops.append(_sparse_top(chars_found, pool))
        weights = (f.dense_weight, f.lexical_weight, f.char_weight)
        if sum(w > 0 for w in weights) == 1 and not use_index:  # one ranker: its raw scores, every row
            dense = dense_all if dense_all is not None else np.zeros(n, np.float32)
            lexical = _spread(lexical_found, n)
            only = dense if f.dense_weight > 0 else lexical if f.lexical_weight > 0 else _spread(chars_found, n)
            return Pool(None, only.astype(np.float64), dense, lexical, dense_all, lexical_found)
        rows = np.unique(np.concatenate(tops)).astype(np.int64) if tops else np.zeros(0, np.int64)
        if use_index:
            assert snap.dense_index is not None and qvec is not None
            dense = np.maximum(snap.dense_index.score_rows(qvec[None, :], rows)[0], -1.0).astype(np.float32)
        else:
            dense = dense_all[rows] if dense_all is not None else np.zeros(len(rows), np.float32)
        lexical = snap.lexical.scores_at(text, rows) if use_index and f.lexical_weight else _at(lexical_found, rows)
        chars = (
            _at(chars_found, rows) if chars_found is not None or not f.char_weight else snap.chars.scores_at(text, rows)
        )
        parts = [
            (w, p) for w, p in ((f.dense_weight, dense), (f.lexical_weight, lexical), (f.char_weight, chars)) if w > 0
        ]
        fused = np.zeros(len(rows))
        if f.method == "zscore":
            for weight, part in parts:
                fused += weight * _zscore(part)
        else:
            for weight, part in parts:
                order = np.argsort(-part)
                ranks = np.empty(len(rows))
                ranks[order] = np.arange(1, len(rows) + 1)
                fused += weight / (f.rrf_k + ranks)
        return Pool(rows, fused, dense, lexical, dense_all, lexical_found)

    def _pool(self, snap: Snapshot, text: str, qvec: np.ndarray | None, mask: np.ndarray) -> Pool:
        """:meth:`pool_scores`, or this thread's last pool when it was for the same view, query and rows."""
        qkey = qvec.tobytes() if qvec is not None else b""
        last = getattr(self._local, "last", None)
        if (
            last is not None
            and last[0] is snap
            and last[1] == text
            and last[2] == qkey
            and np.array_equal(last[3], mask)
        ):
            return last[4]  # type: ignore[no-any-return]
        pool = self.pool_scores(snap, text, qvec, mask)
        self._local.last = (snap, text, qkey, mask, pool)
        return pool

    def _rank(
        self,
        collection: Snapshot,
        text: str,
        qvec: np.ndarray | None,
        mask: np.ndarray,
        k: int,
        pinned: set[str],
        collapse: bool,
        explain: bool = True,
    ) -> list[Hit]:
        n = len(collection)
        if n == 0 or not mask.any():
            return []
        pool = self._pool(collection, text, qvec, mask)
        rows = pool.rows if pool.rows is not None else np.arange(n, dtype=np.int64)
        keep = mask[rows] & np.isfinite(pool.fused)
        rows, fused = rows[keep], pool.fused[keep]
        dense = dict(zip(rows.tolist(), pool.dense[keep].tolist()))
        lexical = dict(zip(rows.tolist(), pool.lexical[keep].tolist()))
        score = dict(zip(rows.tolist(), fused.tolist()))
        pin_rows = [r for r in (collection.row(p) for p in pinned) if r is not None and mask[r]]
        want = min(len(rows), max(4 * k, k + 20))
        top = np.argpartition(-fused, want - 1)[:want] if 0 < want < len(rows) else np.arange(len(rows))
        top = top[np.lexsort((rows[top], -fused[top]))]  # ties: the lower row first
        for r in pin_rows:  # a confirmed row outside the fusion pool still needs its evidence
            if r not in score:
                if collection.dense_index is not None and qvec is not None:
                    dense[r] = float(collection.dense_index.score_rows(qvec[None, :], np.asarray([r]))[0, 0])
                elif pool.dense_all is not None:
                    dense[r] = float(pool.dense_all[r])
                one = np.asarray([r])
                large = pool.lexical_found is None and self.fusion.lexical_weight > 0  # BM25 scored the pool only
                lexical[r] = float(
                    (collection.lexical.scores_at(text, one) if large else _at(pool.lexical_found, one))[0]
                )
                score[r] = 0.0
        ordered = pin_rows + [int(rows[i]) for i in top if int(rows[i]) not in pin_rows]
        query_terms = set(collection.lexical.query_terms(text)) if explain else None
        hits: list[Hit] = []
        seen_groups: set[int] = set()
        for row in ordered:
            if not collection.items[row].id:  # a row erased while this search ran
                continue
            if collapse:
                key = collection.group_key(row)
                if key in seen_groups:
                    continue
                seen_groups.add(key)
            hit = self._hit(
                collection, row, score[row], dense.get(row, 0.0), lexical.get(row, 0.0), query_terms, row in pin_rows
            )
            if not hit.id:  # erased between the check above and the read in _hit
                continue
            hits.append(hit)
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
        query_terms: set[str] | None,
        pinned: bool,
    ) -> Hit:
        item = collection.items[row]
        words = shared_words(collection.lexical.analyzer, item.full_text, query_terms) if query_terms else []
        # the group is evidence too: a caller that reads the scores alone (explain False) gets none
        rows, size = (
            collection.group_and_size(row, GROUP_SHOWN)
            if collection.duplicate_threshold and query_terms is not None
            else ([], 0)
        )
        group = [collection.items[r].id for r in rows] if size > 1 else []
        return Hit(
            id=item.id,
            score=float(fused),
            dense=float(dense),
            lexical=float(lexical),
            shared_terms=words,
            why=self._explain(dense, lexical, words, pinned) if query_terms is not None else "",
            item=item,
            duplicate_group=group,
            duplicate_count=size if size > 1 else 0,
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
