"""BM25 over Swedish terms (stems plus compound parts), in memory, with incremental appends.

Documents are kept as a term-frequency matrix in column form for fast scoring of a few query
terms. New documents go to a small row buffer that is folded into the main matrix once it grows;
scoring reads both, so an append never rebuilds the index.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from matcher.swedish import Analyzer


class BM25Index:
    """BM25 (Robertson / Sparck Jones idf, k1, b) over analysed terms.

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
        self._main = sp.csc_matrix((0, 0), dtype=np.float32)
        self._rows: list[Counter[int]] = []
        self._lengths = np.zeros(0, dtype=np.float32)
        self._df = np.zeros(0, dtype=np.float64)
        self._terms: list[list[str]] = []

    @property
    def size(self) -> int:
        """Number of indexed documents."""
        return len(self._lengths)

    def doc_terms(self, row: int) -> list[str]:
        """Analysed terms of an indexed document."""
        return self._terms[row]

    def add(self, texts: Sequence[str]) -> None:
        """Append documents (rows follow the order of insertion)."""
        new_lengths = []
        for text in texts:
            terms = self.analyzer.terms(text)
            self._terms.append(terms)
            counts: Counter[int] = Counter()
            for t in terms:
                idx = self.vocab.setdefault(t, len(self.vocab))
                counts[idx] += 1
            self._rows.append(counts)
            new_lengths.append(len(terms))
            if len(self._df) < len(self.vocab):
                self._df = np.concatenate([self._df, np.zeros(len(self.vocab) - len(self._df) + 1024)])
            for idx in counts:
                self._df[idx] += 1
        self._lengths = np.concatenate([self._lengths, np.asarray(new_lengths, dtype=np.float32)])
        if len(self._rows) > max(1000, self._main.shape[0] // 10):
            self._fold()

    def _fold(self) -> None:
        if not self._rows:
            return
        data, rows, cols = [], [], []
        base = self._main.shape[0]
        for r, counts in enumerate(self._rows):
            for c, v in counts.items():
                rows.append(base + r)
                cols.append(c)
                data.append(v)
        n_rows, n_cols = base + len(self._rows), len(self.vocab)
        extra = sp.csc_matrix((np.asarray(data, np.float32), (rows, cols)), shape=(n_rows, n_cols))
        main = self._main
        if main.shape != (n_rows, n_cols):
            main = (
                sp.csc_matrix(
                    (
                        main.data,
                        main.indices,
                        np.concatenate(
                            [main.indptr, np.full(n_cols - main.shape[1], main.indptr[-1], dtype=main.indptr.dtype)]
                        ),
                    ),
                    shape=(n_rows, n_cols),
                )
                if main.shape[1]
                else sp.csc_matrix((n_rows, n_cols), dtype=np.float32)
            )
        self._main = (main + extra).tocsc()
        self._rows = []

    def idf(self, term_ids: np.ndarray) -> np.ndarray:
        """BM25 idf of the given term ids (never negative)."""
        n = max(self.size, 1)
        df = self._df[term_ids]
        return np.log1p((n - df + 0.5) / (df + 0.5))

    def query_terms(self, text: str) -> list[str]:
        """Analysed terms of a query that exist in the index."""
        return [t for t in dict.fromkeys(self.analyzer.terms(text)) if t in self.vocab]

    def scores(self, text: str) -> np.ndarray:
        """BM25 score of every document for ``text`` (zeros where no term is shared)."""
        out = np.zeros(self.size, dtype=np.float32)
        terms = self.query_terms(text)
        if not terms or not self.size:
            return out
        ids = np.asarray([self.vocab[t] for t in terms])
        weights = self.idf(ids).astype(np.float32)
        avgdl = float(self._lengths.mean()) or 1.0
        norm = self.k1 * (1 - self.b + self.b * self._lengths / avgdl)
        main_rows = self._main.shape[0]
        if main_rows:
            present = ids[ids < self._main.shape[1]]
            w = weights[ids < self._main.shape[1]]
            sub = self._main[:, present].tocoo()
            tf = sub.data
            contrib = w[sub.col] * tf * (self.k1 + 1) / (tf + norm[sub.row])
            np.add.at(out, sub.row, contrib)
        pos = {int(i): float(w) for i, w in zip(ids, weights)}
        for r, counts in enumerate(self._rows):
            row = main_rows + r
            for i, wgt in pos.items():
                tf = counts.get(i)
                if tf:
                    out[row] += wgt * tf * (self.k1 + 1) / (tf + norm[row])
        return out
