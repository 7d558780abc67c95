"""Character n-gram TF-IDF (3-5 grams within word boundaries), hashed, with incremental appends.

It catches what word stems miss: spelling variants, typos ("hemtjänsen"), inflections the stemmer
does not fold, and compounds whose parts no lexicon knows. Vectors are hashed into a fixed space so
new documents never change the feature set; idf comes from running document frequencies. New
documents go to a small buffer (their norms computed with the idf of the moment) that is folded
into the main matrix, with all norms recomputed, once it has grown by a tenth.

The matrix is column-ordered (postings), which ranks every document sharing an n-gram with a
query. A large collection only scores its fusion pool with the n-grams (:meth:`CharNgramView.scores_at`);
its index is turned row-ordered (:meth:`CharNgramIndex.by_rows`), so that scoring 200 rows reads
those rows' own n-grams instead of searching hundreds of postings that grow with the corpus.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

from matcher import segments as seg
from matcher.mapped import MappedArray, is_mapped

log = logging.getLogger(__name__)
N_FEATURES = 1 << 20


# 1 + log(count), the sublinear tf of a stored count (0 stays 0)
SUBLINEAR = np.concatenate([[0.0], 1.0 + np.log(np.arange(1, seg.COUNT_MAX + 1))]).astype(np.float32)


class _Hasher:
    """The n-gram hasher of one n-gram range, shared by every index that uses it, with the last query
    it hashed: a suggestion asks the ideas' and the needs' n-grams about the same text, and hashing
    it is most of a short query's n-gram cost."""

    def __init__(self, ngram_range: tuple[int, int]) -> None:
        self.vectorizer = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=ngram_range,
            n_features=N_FEATURES,
            alternate_sign=False,
            norm=None,
            lowercase=True,
        )
        self._last = seg.LastAnswer()

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Hashed n-gram counts of ``texts`` (rows: texts)."""
        return self.vectorizer.transform(texts)

    def query(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(columns ascending, counts) of one text's n-grams (read-only; the last text's are kept)."""
        return self._last.get(text, self._hash_one)

    def _hash_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        # the hasher's own output (duplicates summed, columns sorted); the bulk path's conversion
        # to column-ordered uint8 costs 20x more than the hashing for a single row
        q = self.vectorizer.transform([text])
        if not q.has_canonical_format:
            q.sum_duplicates()  # row-ordered scoring looks the stored columns up in these, sorted
        return q.indices.astype(np.int64), np.minimum(q.data, seg.COUNT_MAX).astype(np.int64)


@functools.cache
def _hasher(ngram_range: tuple[int, int]) -> _Hasher:
    return _Hasher(ngram_range)


def _idf(df: np.ndarray, size: int) -> np.ndarray:
    return (np.log((1.0 + size) / (1.0 + df)) + 1.0).astype(np.float32)


@dataclass(frozen=True)
class CharNgramView:
    """The index as it was after one append (immutable)."""

    hasher: _Hasher
    segments: tuple[seg.Segment, ...]
    df: np.ndarray
    norms: np.ndarray
    _last: seg.LastAnswer = field(default_factory=seg.LastAnswer, compare=False, repr=False)

    @property
    def size(self) -> int:
        """Number of indexed documents."""
        return len(self.norms)

    def sparse_scores(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine) of the documents sharing an n-gram with ``text`` (read-only arrays)."""
        return self._last.get(text, self._sparse_scores)

    def _sparse_scores(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        dense = self.scores(text)
        rows = np.flatnonzero(dense)
        return rows, dense[rows]

    def _query(self, text: str) -> tuple[np.ndarray, np.ndarray, float]:
        """The query's n-gram columns, the weight each gives a document's sublinear tf, and its norm."""
        cols, counts = self.hasher.query(text)
        qtf = SUBLINEAR[counts]
        idf = _idf(self.df[cols], self.size)
        qw = qtf * idf
        return cols, (qw * idf).astype(np.float32), float(np.sqrt((qw**2).sum())) + 1e-9

    def scores(self, text: str) -> np.ndarray:
        """Cosine of every document with ``text`` (a sparse product over the query's n-gram columns)."""
        if not self.size:
            return np.zeros(0, np.float32)
        cols, weights, qnorm = self._query(text)
        if not len(cols):
            return np.zeros(self.size, np.float32)
        dots = seg.dot_columns(self.segments, cols, weights, self.size, SUBLINEAR)
        return dots / (self.norms * qnorm)

    def scores_at(self, text: str, rows: np.ndarray) -> np.ndarray:
        """Cosine of the given documents (ascending rows) with ``text``, at a cost that does not grow with the corpus.

        Row-ordered segments (a large collection's, see :meth:`CharNgramIndex.by_rows`) read the
        rows' own n-grams and look them up among the query's. Column-ordered ones binary-search each
        query n-gram's posting for the rows instead of reading it whole. It is what a large
        collection uses to score a fusion pool: :meth:`sparse_scores` reads every posting of the
        query, and common n-grams' postings grow with the corpus.
        """
        out = np.zeros(len(rows), np.float32)
        if not self.size or not len(rows):
            return out
        cols, weights, qnorm = self._query(text)
        for part in self.segments:
            lo, hi = np.searchsorted(rows, [part.start, part.start + part.rows])
            if lo == hi:
                continue
            local = rows[lo:hi] - part.start
            dot = seg.dot_stored_rows if part.matrix.format == "csr" else seg.dot_rows
            out[lo:hi] = dot(part.matrix, cols, weights, local, SUBLINEAR)
        return out / (self.norms[rows] * qnorm)


def _counts(hasher: _Hasher, texts: Sequence[str]) -> sp.csr_matrix:
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
        self._hasher = _hasher(ngram_range)
        self._segments: tuple[seg.Segment, ...] = ()
        self._norms = np.zeros(0, dtype=np.float32)
        self.size = 0
        self.rows_ordered = False
        self._map_dir: Path | None = None
        self.view = CharNgramView(self._hasher, self._segments, np.zeros(N_FEATURES, np.float32), self._norms)

    def map_into(self, directory: str | Path) -> None:
        """Keep the n-grams of the first (largest) segment in file mappings from now on (:mod:`matcher.mapped`),
        and those of each segment a full merge makes. Publishes a new view; calling it again does nothing."""
        self._map_dir = Path(directory)
        self._segments = self._with_mapped_base(self._segments)
        self.view = CharNgramView(self._hasher, self._segments, self.view.df, self._norms[: self.size])

    def _with_mapped_base(self, segments: tuple[seg.Segment, ...]) -> tuple[seg.Segment, ...]:
        if self._map_dir is None or not segments or is_mapped(segments[0].matrix.indices):
            return segments
        first = segments[0]
        m = first.matrix
        try:
            data = MappedArray(self._map_dir, m.data).array
            indices = MappedArray(self._map_dir, m.indices).array
        except OSError as exc:  # a full disk: the segment stays in memory, the index stays whole
            log.warning("character n-grams kept in memory: no file mapping in %s (%s)", self._map_dir, exc)
            return segments
        layout = sp.csr_matrix if m.format == "csr" else sp.csc_matrix
        return (seg.Segment(first.start, layout((data, indices, m.indptr), shape=m.shape)), *segments[1:])

    def forget(self, row: int) -> None:
        """Overwrite an erased row's n-grams (count 0 in column 0) where they are stored row by row.

        A row-ordered segment holds a row's entries in one slice, overwritten in place (in the file
        too, where the segment is mapped); readers see the row blank, and it is no longer shown
        anyway. Column-ordered entries wait for the next full merge, which drops erased rows.
        """
        for part in self._segments:
            if part.start <= row < part.start + part.rows and part.matrix.format == "csr":
                a, b = part.matrix.indptr[row - part.start], part.matrix.indptr[row - part.start + 1]
                part.matrix.data[a:b] = 0
                part.matrix.indices[a:b] = 0

    def by_rows(self) -> None:
        """Keep the n-grams row-ordered from now on (for a collection that scores given rows only).

        :meth:`CharNgramView.scores_at` then costs the given rows' own n-grams; a full ranking
        (:meth:`CharNgramView.scores`) still works, at the cost of reading every row. The bytes held
        are the same. Publishes a new view; views taken before keep their segments.
        """
        if self.rows_ordered:
            return
        self._segments = tuple(seg.Segment(s.start, s.matrix.tocsr()) for s in self._segments)
        self.rows_ordered = True
        self.view = CharNgramView(self._hasher, self._segments, self.view.df, self._norms[: self.size])

    def add(self, texts: Sequence[str], dead: np.ndarray | None = None) -> None:
        """Append documents and publish a new view (``dead``: erased rows, dropped by a full merge)."""
        if not texts:
            return
        x = _counts(self._hasher, texts)
        df = self.view.df.copy()  # views that hold the old array are unchanged
        np.add.at(df, x.indices, 1.0)
        size = self.size + x.shape[0]
        self._segments, merged = seg.append(self._segments, x if self.rows_ordered else x.tocsc(), dead)
        if merged:
            self._segments = self._with_mapped_base(self._segments)
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
        if self.rows_ordered:
            m = m.tocsr()
            df = np.bincount(m.indices, minlength=N_FEATURES).astype(np.float32)
        else:
            df = np.diff(m.indptr).astype(np.float32)
        norms = _row_norms(m.tocsr(), _idf(df, self.size)) if self.size else self._norms[:0]
        arrays = {"data": m.data, "indices": m.indices, "indptr": m.indptr, "df": df, "norms": norms}
        return {**arrays, "rows_ordered": np.asarray(self.rows_ordered)}

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], ngram_range: tuple[int, int] = (3, 5)) -> CharNgramIndex:
        """An index from :meth:`export`'s output."""
        index = cls(ngram_range)
        norms = np.asarray(arrays["norms"], dtype=np.float32)
        index.size = len(norms)
        index.rows_ordered = bool(arrays.get("rows_ordered", False))
        layout = sp.csr_matrix if index.rows_ordered else sp.csc_matrix
        m = layout((arrays["data"], arrays["indices"], arrays["indptr"]), shape=(index.size, N_FEATURES))
        index._segments = (seg.Segment(0, m),) if index.size else ()
        index._norms = norms
        df = np.asarray(arrays["df"], dtype=np.float32)
        index.view = CharNgramView(index._hasher, index._segments, df, norms)
        return index
