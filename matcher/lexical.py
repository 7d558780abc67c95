"""BM25 over Swedish terms (stems plus compound parts), in memory, with incremental appends.

Documents are kept as term-frequency segments (:mod:`matcher.segments`). Every append publishes
a new immutable :class:`BM25View`; searches read a view and never see a half-done append. A
query reads the postings of its own terms only.

A large collection reads fewer: there the query's terms nominate rows for the fusion pool rarest
first, until their postings would pass :data:`NOMINATION_BUDGET` entries. A common term beyond the
budget (its posting grows with the corpus, and a row that holds only such terms scores little)
still scores every row of the pool (:meth:`BM25View.scores_at`), so a pooled row's BM25 is exact.
The idea is the "cutoff frequency" of classic search engines: high-frequency terms only score
documents that the rarer terms (here also the dense ranker) already found. A query whose terms'
postings hold at most 20,000 entries together nominates as before; one whose every term is past the
budget on its own nominates nothing (the pool is then the other rankers', each row with its BM25).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from matcher import segments as seg
from matcher.swedish import Analyzer

NOMINATION_BUDGET = 20_000  # with a dense index: posting entries read to nominate, rarest terms first


@dataclass(frozen=True)
class BM25View:
    """The index as it was after one append (immutable; cheap to make)."""

    analyzer: Analyzer
    vocab: dict[str, int]  # append-only, shared with the writer; ids past len(df) are newer than the view
    segments: tuple[seg.Segment, ...]
    df: np.ndarray
    lengths: np.ndarray
    avgdl: float
    k1: float
    b: float
    _last: seg.LastAnswer = field(default_factory=seg.LastAnswer, compare=False, repr=False)
    _rare: seg.LastAnswer = field(default_factory=seg.LastAnswer, compare=False, repr=False)

    @property
    def size(self) -> int:
        """Number of indexed documents."""
        return len(self.lengths)

    def idf(self, term_ids: np.ndarray) -> np.ndarray:
        """BM25 idf of the given term ids (never negative)."""
        n = max(self.size, 1)
        df = self.df[term_ids]
        return np.log1p((n - df + 0.5) / (df + 0.5))

    def _ids(self, terms: Sequence[str]) -> list[int]:
        known = len(self.df)
        return [i for i in (self.vocab.get(t) for t in terms) if i is not None and i < known]

    def query_terms(self, text: str) -> list[str]:
        """Analysed terms of a query that exist in the index."""
        known = len(self.df)
        terms = dict.fromkeys(self.analyzer.terms(text))
        return [t for t in terms if self.vocab.get(t, known) < known]

    def sparse_scores(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the documents sharing a term with ``text`` (all others score 0; read-only)."""
        return self._last.get(text, self._sparse_scores)

    def _term_ids(self, text: str) -> np.ndarray:
        return np.asarray(self._ids(list(dict.fromkeys(self.analyzer.terms(text)))), dtype=np.int64)

    def _sparse_scores(self, text: str, rare_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        ids = self._term_ids(text)
        if rare_only:  # the rarest terms whose postings fit the budget together
            ids = ids[np.argsort(self.df[ids], kind="stable")]
            ids = ids[np.cumsum(self.df[ids]) <= NOMINATION_BUDGET]
        if not len(ids) or not self.size:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        weights = self.idf(ids).astype(np.float32)
        rows, which, tf = seg.postings(self.segments, ids)
        return seg.sum_by_row(rows, self._saturate(weights[which], tf, rows), self.size)

    def _saturate(self, idf: np.ndarray, tf: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """BM25's contribution of counts ``tf`` in ``rows`` for terms of weight ``idf`` (0 where tf is 0)."""
        norm = self.k1 * (1 - self.b + self.b * self.lengths[rows] / self.avgdl)
        return idf * tf * (self.k1 + 1) / (tf + norm)

    def nominees(self, text: str, k: int) -> np.ndarray:
        """Up to ``k`` rows with the highest BM25 over the query's rarest terms (those whose postings fit
        :data:`NOMINATION_BUDGET` together): a large collection's lexical candidates for the fusion pool.
        """
        found = self._rare.get(text, lambda t: self._sparse_scores(t, rare_only=True))
        rows, vals = found
        top = rows[np.argpartition(-vals, k - 1)[:k]] if len(rows) > k > 0 else rows
        return top.astype(np.int64)

    def scores_at(self, text: str, rows: np.ndarray) -> np.ndarray:
        """BM25 of the given rows (ascending) over all of the query's terms, at a cost that does not
        grow with the corpus (each term's posting is searched for the rows, :func:`segments.counts_at`)."""
        out = np.zeros(len(rows), np.float32)
        ids = self._term_ids(text)
        if not len(ids) or not len(rows) or not self.size:
            return out
        idf = self.idf(ids).astype(np.float32)
        for part in self.segments:
            lo, hi = np.searchsorted(rows, [part.start, part.start + part.rows])
            if lo == hi:
                continue
            tf = seg.counts_at(part.matrix, ids, rows[lo:hi] - part.start).astype(np.float32)
            out[lo:hi] = self._saturate(idf[None, :], tf, rows[lo:hi, None]).sum(axis=1)
        return out

    def scores(self, text: str) -> np.ndarray:
        """BM25 score of every document for ``text`` (zeros where no term is shared)."""
        out = np.zeros(self.size, dtype=np.float32)
        rows, vals = self.sparse_scores(text)
        out[rows] = vals
        return out


class BM25Index:
    """BM25 (Robertson / Sparck Jones idf, k1, b) over analysed terms; one writer, many readers.

    Args:
        analyzer: Swedish analyzer used for documents and queries.
        k1: term-frequency saturation.
        b: length normalisation.
    """

    def __init__(self, analyzer: Analyzer, k1: float = 1.2, b: float = 0.75) -> None:
        self.analyzer = analyzer
        self.k1 = k1
        self.b = b
        self.vocab: dict[str, int] = {}
        self._n_terms = 0  # term ids are never reused (a restored vocabulary may have gaps)
        self._segments: tuple[seg.Segment, ...] = ()
        self._lengths = np.zeros(0, dtype=np.float32)
        self._n = 0
        self._total_length = 0.0
        self.view = self._make_view(np.zeros(0, dtype=np.float64))

    def _make_view(self, df: np.ndarray) -> BM25View:
        avgdl = (self._total_length / self._n) if self._n else 1.0
        return BM25View(
            self.analyzer, self.vocab, self._segments, df, self._lengths[: self._n], avgdl or 1.0, self.k1, self.b
        )

    @property
    def size(self) -> int:
        """Number of indexed documents."""
        return self._n

    def add(self, texts: Sequence[str], dead: np.ndarray | None = None) -> None:
        """Append documents (rows follow the order of insertion) and publish a new view.

        Args:
            texts: the documents.
            dead: optional mask of erased rows; a full merge of the segments drops their postings.
        """
        if not texts:
            return
        rows, cols, lengths = [], [], []
        for r, text in enumerate(texts):
            terms = self.analyzer.terms(text)
            lengths.append(len(terms))
            for t in terms:
                idx = self.vocab.get(t)
                if idx is None:
                    idx = self.vocab[t] = self._n_terms
                    self._n_terms += 1
                rows.append(r)
                cols.append(idx)
        shape = (len(texts), self._n_terms)
        block = seg.counts(sp.coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape))
        df = np.zeros(self._n_terms, dtype=np.float64)
        old = self.view.df
        df[: len(old)] = old
        df += np.diff(block.indptr)  # documents per term; a new array: views that hold the old one are unchanged
        self._segments, _ = seg.append(self._segments, block, dead)
        self._lengths = seg.grown(self._lengths, self._n, np.asarray(lengths, dtype=np.float32))
        self._n += len(texts)
        self._total_length += float(sum(lengths))
        self.view = self._make_view(df)

    # Reading through the index reads its latest view.
    def idf(self, term_ids: np.ndarray) -> np.ndarray:
        """See :meth:`BM25View.idf`."""
        return self.view.idf(term_ids)

    def query_terms(self, text: str) -> list[str]:
        """See :meth:`BM25View.query_terms`."""
        return self.view.query_terms(text)

    def scores(self, text: str) -> np.ndarray:
        """See :meth:`BM25View.scores`."""
        return self.view.scores(text)

    def export(self, dead: np.ndarray) -> tuple[dict[str, np.ndarray], list[str]]:
        """Arrays and vocabulary to save, without the postings of ``dead`` rows.

        A term that only erased rows held is written as "" (its id stays reserved), so no word of
        an erased text reaches the file.
        """
        m = seg.merge(self._segments, dead).matrix if self._segments else sp.csc_matrix((0, 0), dtype=np.uint8)
        m = seg.widen(m, self._n_terms)
        df = np.diff(m.indptr).astype(np.float64)
        terms = [""] * self._n_terms
        for t, i in self.vocab.items():
            if df[i] > 0:
                terms[i] = t
        lengths = self._lengths[: self._n].copy()
        lengths[dead[: self._n]] = 0
        arrays = {"data": m.data, "indices": m.indices, "indptr": m.indptr, "lengths": lengths, "df": df}
        return arrays, terms

    @classmethod
    def restore(
        cls, analyzer: Analyzer, arrays: dict[str, np.ndarray], terms: list[str], k1: float = 1.2, b: float = 0.75
    ) -> BM25Index:
        """An index from :meth:`export`'s output (the rows it held, in the same order)."""
        index = cls(analyzer, k1=k1, b=b)
        index.vocab.update({t: i for i, t in enumerate(terms) if t})
        index._n_terms = len(terms)
        lengths = np.asarray(arrays["lengths"], dtype=np.float32)
        index._n = len(lengths)
        shape = (index._n, len(terms))
        m = sp.csc_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        index._segments = (seg.Segment(0, m),) if index._n else ()
        index._lengths = lengths
        index._total_length = float(lengths.sum())
        index.view = index._make_view(np.asarray(arrays["df"], dtype=np.float64))
        return index
