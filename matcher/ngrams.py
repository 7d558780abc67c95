"""Character n-gram TF-IDF (3-5 grams within word boundaries), hashed, with incremental appends.

It catches what word stems miss: spelling variants, typos ("hemtjänsen"), inflections the stemmer
does not fold, and compounds whose parts no lexicon knows. Vectors are hashed into a fixed space so
new documents never change the feature set; idf comes from running document frequencies. New
documents go to a small buffer (their norms computed with the idf of the moment) that is folded
into the main column-ordered matrix, with all norms recomputed, once it has grown by a tenth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

from matcher import segments as seg

N_FEATURES = 1 << 20


# 1 + log(count), the sublinear tf of a stored count (0 stays 0)
SUBLINEAR = np.concatenate([[0.0], 1.0 + np.log(np.arange(1, seg.COUNT_MAX + 1))]).astype(np.float32)


def _idf(df: np.ndarray, size: int) -> np.ndarray:
    return (np.log((1.0 + size) / (1.0 + df)) + 1.0).astype(np.float32)


@dataclass(frozen=True)
class CharNgramView:
    """The index as it was after one append (immutable)."""

    hasher: HashingVectorizer
    segments: tuple[seg.Segment, ...]
    df: np.ndarray
    norms: np.ndarray
    # the last text's answer: /suggest asks the same view twice for one text (its similar ideas and
    # its duplicates), and this ranker's cost grows with the corpus (common n-grams have long postings)
    _last: list[tuple[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=list, compare=False, repr=False)

    @property
    def size(self) -> int:
        """Number of indexed documents."""
        return len(self.norms)

    def sparse_scores(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine) of the documents sharing an n-gram with ``text`` (read-only arrays)."""
        last = self._last[-1] if self._last else None  # one read: another thread may replace it
        if last is not None and last[0] == text:
            return last[1]
        dense = self.scores(text)
        rows = np.flatnonzero(dense)
        found = (rows, dense[rows])
        for arr in found:
            arr.flags.writeable = False  # shared by the callers that ask for the same text
        self._last[:] = [(text, found)]
        return found

    def scores(self, text: str) -> np.ndarray:
        """Cosine of every document with ``text`` (a sparse product over the query's n-gram columns)."""
        if not self.size:
            return np.zeros(0, np.float32)
        q = _counts(self.hasher, [text])
        cols, qtf = q.indices.astype(np.int64), SUBLINEAR[q.data]
        if not len(cols):
            return np.zeros(self.size, np.float32)
        idf = _idf(self.df[cols], self.size)
        qw = qtf * idf
        qnorm = float(np.sqrt((qw**2).sum())) + 1e-9
        dots = seg.dot_columns(self.segments, cols, (qw * idf).astype(np.float32), self.size, SUBLINEAR)
        return dots / (self.norms * qnorm)


def _counts(hasher: HashingVectorizer, texts: Sequence[str]) -> sp.csr_matrix:
    """Hashed n-gram counts of ``texts`` as uint8 (rows: texts)."""
    return seg.counts(hasher.transform(texts)).tocsr()


def _row_norms(x: sp.spmatrix, idf: np.ndarray) -> np.ndarray:
    """Norms of the rows of ``x`` (counts) weighted as sublinear tf x idf."""
    w = sp.csr_matrix(x)
    w = sp.csr_matrix((SUBLINEAR[w.data] * idf[w.indices], w.indices, w.indptr), shape=w.shape)
    return np.sqrt(np.asarray(w.multiply(w).sum(axis=1)).ravel()).astype(np.float32) + 1e-9


class CharNgramIndex:
    """Cosine over sublinear-tf, idf-weighted character n-grams; one writer, many readers.

    Args:
        ngram_range: n-gram lengths.
    """

    def __init__(self, ngram_range: tuple[int, int] = (3, 5)) -> None:
        self._hasher = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=ngram_range,
            n_features=N_FEATURES,
            alternate_sign=False,
            norm=None,
            lowercase=True,
        )
        self._segments: tuple[seg.Segment, ...] = ()
        self._norms = np.zeros(0, dtype=np.float32)
        self.size = 0
        self.view = CharNgramView(self._hasher, self._segments, np.zeros(N_FEATURES, np.float32), self._norms)

    def add(self, texts: Sequence[str], dead: np.ndarray | None = None) -> None:
        """Append documents and publish a new view (``dead``: erased rows, dropped by a full merge)."""
        if not texts:
            return
        x = _counts(self._hasher, texts)
        df = self.view.df.copy()  # views that hold the old array are unchanged
        np.add.at(df, x.indices, 1.0)
        size = self.size + x.shape[0]
        self._segments, merged = seg.append(self._segments, x.tocsc(), dead)
        if merged:
            self._norms = _row_norms(self._segments[0].matrix.tocsr(), _idf(df, size))
        else:
            self._norms = seg.grown(self._norms, self.size, _row_norms(x, _idf(df, size)))
        self.size = size
        self.view = CharNgramView(self._hasher, self._segments, df, self._norms[:size])

    def scores(self, text: str) -> np.ndarray:
        """See :meth:`CharNgramView.scores`."""
        return self.view.scores(text)

    def export(self, dead: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays to save, without the n-grams of ``dead`` rows (document frequencies recounted)."""
        if self._segments:
            m = seg.widen(seg.merge(self._segments, dead).matrix, N_FEATURES)
        else:
            m = sp.csc_matrix((0, N_FEATURES), dtype=np.uint8)
        df = np.diff(m.indptr).astype(np.float32)
        norms = _row_norms(m.tocsr(), _idf(df, self.size)) if self.size else self._norms[:0]
        return {"data": m.data, "indices": m.indices, "indptr": m.indptr, "df": df, "norms": norms}

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], ngram_range: tuple[int, int] = (3, 5)) -> CharNgramIndex:
        """An index from :meth:`export`'s output."""
        index = cls(ngram_range)
        norms = np.asarray(arrays["norms"], dtype=np.float32)
        index.size = len(norms)
        m = sp.csc_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=(index.size, N_FEATURES))
        index._segments = (seg.Segment(0, m),) if index.size else ()
        index._norms = norms
        df = np.asarray(arrays["df"], dtype=np.float32)
        index.view = CharNgramView(index._hasher, index._segments, df, norms)
        return index
