"""Append-only, immutable storage for the lexical indexes: term-by-row matrices in segments.

A lexical index is a sparse (rows x terms) matrix that only ever grows by rows. Each append adds
a small column-ordered segment; segments are merged now and then (a few small ones into one,
and everything into one once the small ones hold a tenth of the rows). Nothing is changed in
place: an append or a merge makes a new tuple of segments, so a reader that took the tuple
before keeps a complete, consistent view while the writer goes on (the writer publishes the new
tuple by assigning one attribute).

Scoring reads only the columns of the query's terms (their postings): its cost follows the
query's terms and how common they are, not the number of rows. An index that only ever scores a
few given rows (the character n-grams of a large collection, which score the fusion pool) keeps
its segments row-ordered instead: a row's entries are then one contiguous slice, and scoring 200
rows reads those rows, whatever the length of the postings (:func:`dot_stored_rows`).

Entries are term counts stored as uint8 (:func:`counts`): 5 bytes per posting with the int32 row
index instead of 8 as float32, which at a million n-gram-indexed rows is some 700 MB. A scorer that
weighs counts (BM25's saturation, the n-grams' sublinear tf) maps them at scoring time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

SMALL_SEGMENTS = 8  # more small segments than this are merged into one
MERGE_SHARE = 10  # everything is merged into one segment once the rest holds 1/10 of the rows
MIN_MERGE_ROWS = 2048
COUNT_MAX = 255  # a term counted more often in one text is stored as 255 (every scorer saturates long before)


def counts(m: sp.spmatrix) -> sp.csc_matrix:
    """``m`` (term counts, duplicates summed) as a column-ordered matrix of uint8 counts."""
    out = sp.csc_matrix(m, dtype=np.float32)
    out.sum_duplicates()
    return sp.csc_matrix((np.minimum(out.data, COUNT_MAX).astype(np.uint8), out.indices, out.indptr), shape=out.shape)


@dataclass(frozen=True)
class Segment:
    """Rows ``start .. start + matrix.shape[0]`` of a term-by-row matrix (column- or row-ordered)."""

    start: int
    matrix: sp.csc_matrix

    @property
    def rows(self) -> int:
        return int(self.matrix.shape[0])


def widen(m: sp.csc_matrix | sp.csr_matrix, cols: int) -> sp.csc_matrix | sp.csr_matrix:
    """The same matrix with ``cols`` columns (new columns empty)."""
    if m.shape[1] >= cols:
        return m
    if m.format == "csr":  # a row-ordered matrix only gets a wider shape
        return sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], cols))
    indptr = np.concatenate([m.indptr, np.full(cols - m.shape[1], m.indptr[-1], dtype=m.indptr.dtype)])
    return sp.csc_matrix((m.data, m.indices, indptr), shape=(m.shape[0], cols))


def merge(segments: Sequence[Segment], dead: np.ndarray | None = None) -> Segment:
    """One segment holding the rows of consecutive ``segments`` (in the first one's order); entries of
    ``dead`` rows are dropped."""
    cols = max(s.matrix.shape[1] for s in segments)
    dtype, layout = segments[0].matrix.dtype, segments[0].matrix.format
    stacked = sp.vstack([widen(s.matrix, cols) for s in segments], format=layout, dtype=dtype)
    start = segments[0].start
    if dead is not None:
        gone = dead[start : start + stacked.shape[0]]
        if gone.any():
            coo = stacked.tocoo()
            keep = ~gone[coo.row]
            stacked = sp.coo_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=stacked.shape)
    return Segment(start, stacked.asformat(layout).astype(dtype, copy=False))


def append(
    segments: tuple[Segment, ...], block: sp.spmatrix, dead: np.ndarray | None = None
) -> tuple[tuple[Segment, ...], bool]:
    """Segments with ``block``'s rows appended (merging as the policy says), and whether all were merged.

    ``dead`` marks erased rows; a full merge leaves their entries out. A row-ordered ``block`` stays
    row-ordered; anything else is stored column-ordered.
    """
    start = segments[-1].start + segments[-1].rows if segments else 0
    out = (*segments, Segment(start, block if block.format in ("csc", "csr") else sp.csc_matrix(block)))
    if len(out) == 1:
        return out, True
    rest = sum(s.rows for s in out[1:])
    if rest > max(MIN_MERGE_ROWS, out[0].rows // MERGE_SHARE):
        return (merge(out, dead),), True
    if len(out) > SMALL_SEGMENTS + 1:
        out = (out[0], merge(out[1:]))
    return out, False


def _gather(m: sp.csc_matrix | sp.csr_matrix, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored entries of ``m``'s columns ``cols`` (its rows, when ``m`` is row-ordered):
    (positions in ``m.indices``/``m.data``, their column's place in ``cols``, posting lengths), read
    straight from the column pointers.

    scipy's column indexing builds a new matrix with its checks (about 0.1 ms a call, most of a short
    query's cost); this is one repeat and one arange over the postings.
    """
    starts = m.indptr[cols].astype(np.int64)
    lengths = m.indptr[cols + 1].astype(np.int64) - starts
    total = int(lengths.sum())
    which = np.repeat(np.arange(len(cols)), lengths)
    # position of each entry: its column's start plus its offset within the column
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return starts[which] + offsets, which, lengths


def postings(segments: tuple[Segment, ...], cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every stored entry in the given columns: (rows, position of the column in ``cols``, values)."""
    rows, which, values = [], [], []
    for seg in segments:
        present = np.nonzero(cols < seg.matrix.shape[1])[0]
        if not len(present):
            continue
        pos, col, _ = _gather(seg.matrix, cols[present])
        rows.append(seg.matrix.indices[pos].astype(np.int64) + seg.start)
        which.append(present[col])
        values.append(seg.matrix.data[pos])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(rows), np.concatenate(which), np.concatenate(values).astype(np.float32)


def sum_by_row(rows: np.ndarray, values: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(unique rows, summed values): a sparse score vector from per-posting contributions.

    Few postings are grouped by sorting them; many (a tenth of the rows or more) are added into
    a dense array, which costs less than the sort.
    """
    if not len(rows):
        return rows, values
    if len(rows) * 10 >= n_rows:
        dense = np.bincount(rows, weights=values, minlength=n_rows)
        hit = np.flatnonzero(dense)
        return hit, dense[hit].astype(np.float32)
    unique, inverse = np.unique(rows, return_inverse=True)
    return unique, np.bincount(inverse, weights=values, minlength=len(unique)).astype(np.float32)


def dot_columns(
    segments: tuple[Segment, ...],
    cols: np.ndarray,
    weights: np.ndarray,
    n_rows: int,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Every row's weighted sum over the given columns (a sparse product per segment; dense result).

    ``values``, when given, maps each stored count to the value that is summed (``values[count]``).
    A query of hundreds of n-grams reads long postings: scipy's column copy and product beat
    gathering the entries by hand (:func:`_gather`, which wins for BM25's few terms) by 3x to 4x.
    """
    out = np.zeros(n_rows, dtype=np.float32)
    for seg in segments:
        present = np.nonzero(cols < seg.matrix.shape[1])[0]
        if len(present) and seg.matrix.format == "csr":
            out[seg.start : seg.start + seg.rows] += _dot_all_rows(seg.matrix, cols[present], weights[present], values)
        elif len(present):
            sub = seg.matrix[:, cols[present]]  # a copy: mapping its entries leaves the segment as it is
            if values is not None:
                sub.data = values[sub.data]
            out[seg.start : seg.start + seg.rows] += sub @ weights[present]
    return out


def _dot_all_rows(m: sp.csr_matrix, cols: np.ndarray, weights: np.ndarray, values: np.ndarray | None) -> np.ndarray:
    """:func:`dot_columns` for one row-ordered segment, reading each stored entry once.

    scipy's column indexing counts the matching entries in one pass and copies them in a second:
    an erasure that overwrites a row in place between the two (:meth:`CharNgramIndex.forget`)
    would make the second pass write past the buffer the first one sized. Here each entry is read
    once, so a row overwritten meanwhile scores as before or as blank, never out of bounds.
    """
    weight_of = np.zeros(m.shape[1], np.float32)
    weight_of[cols] = weights
    pos = np.flatnonzero(weight_of[m.indices])
    contrib = weight_of[m.indices[pos]] * (values[m.data[pos]] if values is not None else m.data[pos])
    rows = np.searchsorted(m.indptr, pos, side="right") - 1
    return np.bincount(rows, weights=contrib, minlength=m.shape[0]).astype(np.float32)


SHORT_POSTING = 1024  # postings up to this long are read whole for :func:`dot_rows`; longer ones searched


def counts_at(m: sp.csc_matrix, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The stored counts of the given ``rows`` (ascending, local to ``m``) in ``cols``: a (rows, cols)
    array, 0 where nothing is stored, at a cost that does not grow with the postings.

    Short postings are read whole in one vectorised pass (each entry looked up among the rows);
    long ones are binary-searched for the rows, one column at a time.
    """
    out = np.zeros((len(rows), len(cols)), m.dtype)
    inside = np.flatnonzero(cols < m.shape[1])
    if not len(rows) or not len(inside):
        return out
    indptr, indices, data = m.indptr, m.indices, m.data
    rows = rows.astype(indices.dtype)
    lengths = indptr[cols[inside] + 1] - indptr[cols[inside]]
    short = inside[lengths <= SHORT_POSTING]
    pos, which, _ = _gather(m, cols[short])
    found = indices[pos]
    at = np.minimum(np.searchsorted(rows, found), len(rows) - 1)
    hit = rows[at] == found
    out[at[hit], short[which[hit]]] = data[pos[hit]]
    for j in inside[lengths > SHORT_POSTING].tolist():
        a, b = int(indptr[cols[j]]), int(indptr[cols[j] + 1])
        posting = indices[a:b]
        at = np.minimum(np.searchsorted(posting, rows), b - a - 1)
        hit = posting[at] == rows
        out[hit, j] = data[a + at[hit]]
    return out


def dot_rows(
    m: sp.csc_matrix, cols: np.ndarray, weights: np.ndarray, rows: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Like :func:`dot_columns` for a few ``rows`` (ascending, local to ``m``), at a cost that does not
    grow with the postings (:func:`counts_at`). ``values`` maps stored counts to what is summed
    (``values[0]`` must be 0)."""
    return (values[counts_at(m, cols, rows)] @ weights.astype(np.float32)).astype(np.float32)


def dot_stored_rows(
    m: sp.csr_matrix, cols: np.ndarray, weights: np.ndarray, rows: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """:func:`dot_rows` for a row-ordered ``m``: the given rows' entries are read (one slice each) and
    looked up among the query's ``cols`` (ascending), so the cost is the rows' own entries, whatever
    the length of the postings. ``values`` maps stored counts to what is summed."""
    if not len(rows) or not len(cols):
        return np.zeros(len(rows), np.float32)
    pos, which, _ = _gather(m, rows)
    found = m.indices[pos]
    at = np.minimum(np.searchsorted(cols, found), len(cols) - 1)
    hit = cols[at] == found
    summed = np.bincount(which[hit], weights=weights[at[hit]] * values[m.data[pos[hit]]], minlength=len(rows))
    return summed.astype(np.float32)


class LastAnswer:
    """A view's answer for the text it was asked last (one entry; safe to share between threads).

    /suggest asks one view the same text up to three times (its similar ideas, its duplicates, and
    with the same analyser its needs), and a sparse ranker's cost grows with how common the
    query's terms are. The arrays handed out are read-only: every caller gets the same ones.
    """

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[str, tuple[np.ndarray, np.ndarray]] | None = None

    def get(self, text: str, compute: Callable[[str], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """``compute(text)``, or the stored answer when ``text`` was the last one asked."""
        entry = self._entry  # one read: another thread may replace it
        if entry is not None and entry[0] == text:
            return entry[1]
        found = compute(text)
        for arr in found:
            arr.flags.writeable = False
        self._entry = (text, found)
        return found


def grown(buffer: np.ndarray, used: int, extra: np.ndarray) -> np.ndarray:
    """``buffer`` with ``extra`` written after its first ``used`` entries (a new buffer when full).

    Readers hold views of the first ``used`` entries; writing past them never changes a view, and
    a full buffer is copied into a larger one (old views keep the old one).
    """
    need = used + len(extra)
    if need > len(buffer):
        bigger = np.zeros((max(need, 2 * len(buffer), 64), *buffer.shape[1:]), dtype=buffer.dtype)
        bigger[:used] = buffer[:used]
        buffer = bigger
    buffer[used:need] = extra
    return buffer
