"""An in-memory collection of one kind (ideas or needs): vectors, BM25 terms and metadata.

One writer, many readers. The writer (:class:`Collection`) appends and erases; after each change
it publishes a new :class:`Snapshot` by assigning one attribute. A search takes the snapshot once
and reads only it, so it never sees a half-applied write and never waits for one. A snapshot is
cheap: it holds views of append-only buffers (rows past its length are invisible to it), the
lexical indexes' immutable views, and its own copy of the alive mask.

Erasure hides a row from the next snapshot and overwrites its text and vector in memory at once
(a search already running may find the row blank, and skips it).

The vectors are held once: by the collection itself (float32) until a dense index is attached,
and from then on by that index only (in its re-scoring precision); a snapshot's ``vectors`` is then
a read-only view of the index's matrix.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from matcher import segments as seg
from matcher.ann import DenseIndex
from matcher.lexical import BM25Index, BM25View
from matcher.mapped import load_npz
from matcher.ngrams import CharNgramIndex, CharNgramView
from matcher.swedish import Analyzer
from store.locks import ReadWriteLock

SAVE_FORMAT = 2
FILTER_FIELDS = ("department", "status", "source", "outcome", "shared")
NO_DATE = np.iinfo(np.int64).min


def _stamp(when: datetime | None) -> int:
    """Microseconds since the epoch (naive times read as UTC); NO_DATE for None."""
    if when is None:
        return int(NO_DATE)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1_000_000)


@dataclass(frozen=True, slots=True)  # slots: no per-item __dict__ (a million items are held)
class Item:
    """What the matcher needs to know of a stored idea or need."""

    id: str
    text: str
    title: str | None = None
    created_at: datetime | None = None
    department: str | None = None
    status: str | None = None
    outcome: str | None = None
    source: str | None = None
    embed_hash: str | None = None  # the stored text's version: a saved index is reused only where it matches
    shared: str | None = None  # "true" / "false": shared with other municipalities; None: the tenant's default

    @property
    def full_text(self) -> str:
        """Title and text, as embedded and indexed."""
        if self.title and not self.text.startswith(self.title):
            return f"{self.title}. {self.text}"
        return self.text


@dataclass(frozen=True)
class Snapshot:
    """A consistent, read-only view of a collection at one moment.

    Attributes:
        items: the writer's item list (rows below ``size`` belong to the view).
        row_of: the writer's id -> row map (a row at or past ``size`` is newer than the view).
        vectors: (size, dim) unit vectors (the dense index's view, float16 or float32, when there is one).
        alive: rows not erased when the view was made.
    """

    size: int
    items: list[Item]
    row_of: dict[str, int]
    vectors: np.ndarray
    alive: np.ndarray
    lexical: BM25View
    chars: CharNgramView
    dense_index: DenseIndex | None
    duplicate_threshold: float | None
    codes: dict[str, np.ndarray]
    code_of: dict[str, dict[str, int]]
    dates: np.ndarray
    group_of: np.ndarray
    members: dict[int, np.ndarray] = field(repr=False)  # group label -> its rows, sorted (never changed in place)

    def __len__(self) -> int:
        return self.size

    def row(self, item_id: str) -> int | None:
        """Row of an id in this view (None when absent, erased or newer)."""
        r = self.row_of.get(item_id)
        return r if r is not None and r < self.size and self.alive[r] else None

    def _group_rows(self, row: int) -> np.ndarray:
        """The alive rows of ``row``'s group in this view, sorted, ``row`` itself always among them."""
        members = self.members.get(int(self.group_of[row]))
        if members is None:
            return np.asarray([row], dtype=np.int64)
        members = members[members < self.size]
        members = members[self.alive[members]]
        at = int(np.searchsorted(members, row))
        if at == len(members) or members[at] != row:  # a row erased after this view was taken
            members = np.insert(members, at, row)
        return members

    def group_and_size(self, row: int, limit: int | None = None) -> tuple[list[int], int]:
        """The rows of ``row``'s near-duplicate group (alive ones, itself always included) in row order,
        at most ``limit`` of them (``row`` kept among them), and how many the group has in all.

        One read of the group, so the list and the size agree even while the writer joins groups.
        A group of thousands is named by its first rows and its size; the vectorised read costs
        microseconds even then.
        """
        rows = self._group_rows(row)
        size = len(rows)
        if limit is not None and size > limit:
            first = rows[:limit]
            rows = first if row in first else np.sort(np.append(first[: limit - 1], row))
        return [int(r) for r in rows], size

    def group(self, row: int, limit: int | None = None) -> list[int]:
        """Rows in the same near-duplicate group as ``row`` (see :meth:`group_and_size`)."""
        return self.group_and_size(row, limit)[0]

    def group_size(self, row: int) -> int:
        """How many alive rows the near-duplicate group of ``row`` has (itself included)."""
        return len(self._group_rows(row))

    def group_key(self, row: int) -> int:
        """Identifier of the duplicate group of a row."""
        return int(self.group_of[row])

    def filter_mask(self, filters: dict[str, Any] | None) -> np.ndarray:
        """Rows that are alive and pass department / status / source / outcome / date filters.

        Every field is held as one integer code per row, so a filter costs a vectorised compare.
        """
        mask = self.alive.copy()
        if not filters:
            return mask
        for key in FILTER_FIELDS:
            wanted = filters.get(key)
            if wanted:
                values = [wanted] if isinstance(wanted, str) else list(wanted)
                known = self.code_of[key]
                codes = [known[v.lower()] for v in values if v.lower() in known]
                mask &= np.isin(self.codes[key], codes)
        since, until = filters.get("date_from"), filters.get("date_to")
        if since or until:
            mask &= self.dates != NO_DATE
            if since:
                mask &= self.dates >= _stamp(since)
            if until:
                mask &= self.dates <= _stamp(until)
        return mask


class Collection:
    """The writer's side of a collection: rows of one kind with vectors, lexical indexes and duplicate groups.

    Only one thread may write (the service's writer); any number may read :attr:`snapshot`.

    Args:
        dim: vector dimension.
        analyzer: the Swedish analyzer shared with queries.
        duplicate_threshold: cosine at or above which two rows are near-duplicates (None: off).
    """

    def __init__(self, dim: int, analyzer: Analyzer, duplicate_threshold: float | None = None) -> None:
        self.dim = dim
        self.items: list[Item] = []
        self.row_of: dict[str, int] = {}
        self._n = 0
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._alive = np.zeros(0, dtype=bool)
        self.lexical = BM25Index(analyzer)
        self.chars = CharNgramIndex()
        self.duplicate_threshold = duplicate_threshold
        self._codes = {k: np.zeros(0, dtype=np.int32) for k in FILTER_FIELDS}
        self._code_of: dict[str, dict[str, int]] = {k: {} for k in FILTER_FIELDS}
        self._dates = np.zeros(0, dtype=np.int64)
        self._group_of = np.zeros(0, dtype=np.int64)
        self._members: dict[int, np.ndarray] = {}
        self.lock = ReadWriteLock()  # serialises writers; readers take snapshots and need no lock
        self.dense_index: DenseIndex | None = None
        self.snapshot = self._publish()

    def _publish(self) -> Snapshot:
        n = self._n
        snap = Snapshot(
            size=n,
            items=self.items,
            row_of=self.row_of,
            vectors=self.dense_index.matrix(n) if self.dense_index is not None else self._vectors[:n],
            alive=self._alive,
            lexical=self.lexical.view,
            chars=self.chars.view,
            dense_index=self.dense_index,
            duplicate_threshold=self.duplicate_threshold,
            codes={k: v[:n] for k, v in self._codes.items()},
            code_of=self._code_of,
            dates=self._dates[:n],
            group_of=self._group_of,
            members=self._members,
        )
        self.snapshot = snap
        return snap

    def use_dense_index(self, index: DenseIndex) -> None:
        """Answer dense queries from ``index`` (approximate candidates, exact scores) from now on.

        The index is filled with every live row now and kept in step by :meth:`add` and :meth:`remove`;
        it holds the only copy of the vectors from now on. The character n-grams, which then score
        the fusion pool only, are kept row-ordered (:meth:`CharNgramIndex.by_rows`).
        """
        rows = np.nonzero(self._alive)[0].astype(np.int64)
        for start in range(0, len(rows), 4096):  # bounded pieces: searches wait at most one piece
            part = rows[start : start + 4096]
            index.add(part, self._vectors[part])
        index.reserve(self._n)
        self.dense_index = index
        self.chars.by_rows()
        self._publish()
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)

    def map_into(self, directory: str | Path) -> None:
        """Keep the large arrays in file mappings from now on (:mod:`matcher.mapped`): the dense index's
        vectors and the character n-grams. Only resident where searches read them; for a large
        collection (one with a dense index), where they are most of the memory.

        Raises:
            ValueError: no dense index is attached (:meth:`use_dense_index`).
        """
        if self.dense_index is None:
            raise ValueError("map_into is for a collection with a dense index")
        self.dense_index.map_into(directory)
        self.chars.map_into(directory)
        self._publish()

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes of the collection's own vectors and the lexical segments (the dense index's structures excluded)."""
        snap = self.snapshot
        segs = (*snap.lexical.segments, *snap.chars.segments)
        own = snap.vectors.nbytes if self.dense_index is None else 0
        return int(own + sum(s.matrix.data.nbytes + s.matrix.indices.nbytes for s in segs))

    @property
    def vectors(self) -> np.ndarray:
        """The (rows, dim) matrix of unit vectors of the latest snapshot."""
        return self.snapshot.vectors

    @property
    def alive(self) -> np.ndarray:
        """Rows not erased, as of the latest snapshot."""
        return self.snapshot.alive

    def group(self, row: int, limit: int | None = None) -> list[int]:
        """See :meth:`Snapshot.group`."""
        return self.snapshot.group(row, limit)

    def group_and_size(self, row: int, limit: int | None = None) -> tuple[list[int], int]:
        """See :meth:`Snapshot.group_and_size`."""
        return self.snapshot.group_and_size(row, limit)

    def group_size(self, row: int) -> int:
        """See :meth:`Snapshot.group_size`."""
        return self.snapshot.group_size(row)

    def group_key(self, row: int) -> int:
        """See :meth:`Snapshot.group_key`."""
        return self.snapshot.group_key(row)

    def filter_mask(self, filters: dict[str, Any] | None) -> np.ndarray:
        """See :meth:`Snapshot.filter_mask`."""
        return self.snapshot.filter_mask(filters)

    def _code(self, key: str, value: str | None) -> int:
        known = self._code_of[key]
        text = (value or "").lower()
        code = known.get(text)
        if code is None:
            code = known[text] = len(known)
        return code

    def add(self, items: Sequence[Item], vectors: np.ndarray) -> None:
        """Append items (or replace those whose id is already present) with their unit vectors.

        One new snapshot is published at the end: readers see all of the batch or none of it.
        """
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
        fresh_items: list[Item] = []
        fresh_vecs = []
        replaced = []
        for item, vec in zip(items, vectors):
            if item.id in self.row_of:
                replaced.append(self.row_of[item.id])
            fresh_items.append(item)
            fresh_vecs.append(vec)
        if not fresh_items:
            return
        start, count = self._n, len(fresh_items)
        need = start + count
        alive = np.concatenate([self._alive, np.ones(count, dtype=bool)])
        if replaced:
            alive[replaced] = False
        fresh = np.asarray(fresh_vecs, dtype=np.float32)
        if self.dense_index is None:
            self._vectors = seg.grown(self._vectors, start, fresh)
        for key in FILTER_FIELDS:
            codes = np.asarray([self._code(key, getattr(i, key)) for i in fresh_items], dtype=np.int32)
            self._codes[key] = seg.grown(self._codes[key], start, codes)
        stamps = np.asarray([_stamp(i.created_at) for i in fresh_items], dtype=np.int64)
        self._dates = seg.grown(self._dates, start, stamps)
        self._group_of = seg.grown(self._group_of, start, np.arange(start, need, dtype=np.int64))
        self.items.extend(fresh_items)
        texts = [i.full_text for i in fresh_items]
        self.lexical.add(texts, ~alive)
        self.chars.add(texts, ~alive)
        if self.dense_index is not None:
            # the replaced rows go out beside the new ones, as many per piece: in a graph the new
            # vectors take their places (the last piece takes what is left)
            gone = np.asarray(replaced, dtype=np.int64)
            pieces = range(start, need, 4096)
            for n, a in enumerate(pieces):
                b = min(a + 4096, need)
                out = gone[n * 4096 :] if n == len(pieces) - 1 else gone[n * 4096 : (n + 1) * 4096]
                self.dense_index.replace(np.arange(a, b, dtype=np.int64), fresh[a - start : b - start], out)
        self._n = need
        self._alive = alive
        for offset, item in enumerate(fresh_items):
            self.row_of[item.id] = start + offset
        if self.duplicate_threshold is not None:
            self._link_duplicates(start, need, fresh)
        self._publish()
        for row in replaced:
            self._forget(row)

    def remove(self, item_id: str) -> bool:
        """Hide a row from every answer (a new snapshot) and overwrite it in memory; False for an unknown id."""
        row = self.row_of.pop(item_id, None)
        if row is None:
            return False
        alive = self._alive.copy()
        alive[row] = False
        self._alive = alive
        if self.dense_index is not None:
            self.dense_index.remove(np.asarray([row], dtype=np.int64))
        self._publish()
        self._forget(row)
        return True

    def _forget(self, row: int) -> None:
        """Overwrite a row that no new snapshot shows: an erased text is kept nowhere, memory included."""
        self.items[row] = Item(id="", text="")
        self.chars.forget(row)
        if self.dense_index is None:  # the index overwrote its copy when the row was removed from it
            self._vectors[row] = 0.0
        group = int(self._group_of[row])
        members = self._members.get(group)
        if members is not None:
            rest = members[members != row]  # a new array: a reader may still hold the old one
            if len(rest) > 1:
                self._members[group] = rest
            else:
                self._members.pop(group, None)

    def _union(self, a: int, b: int) -> None:
        """Join the groups of rows a and b (the smaller group is relabelled)."""
        ga, gb = int(self._group_of[a]), int(self._group_of[b])
        if ga == gb:
            return
        ma = self._members.get(ga, np.asarray([a], dtype=np.int64))
        mb = self._members.get(gb, np.asarray([b], dtype=np.int64))
        if len(ma) < len(mb):
            ga, gb, ma, mb = gb, ga, mb, ma
        self._members[ga] = np.union1d(ma, mb)  # readers may see the joined group before the relabel
        self._group_of[mb] = ga
        self._members.pop(gb, None)

    def _link_duplicates(self, start: int, stop: int, fresh: np.ndarray, block: int = 2048) -> None:
        """Join new rows to the duplicate groups of rows at or above the threshold.

        With a dense index, each new row asks it for its nearest rows (cost per row independent
        of the collection's size); without one, new rows are compared with every row.
        """
        assert self.duplicate_threshold is not None
        if self.dense_index is not None:
            found, scores = self.dense_index.search(fresh, 32, allowed=self._alive)
            for i in range(stop - start):
                r = start + i
                for c, s in zip(found[i], scores[i]):
                    if s >= self.duplicate_threshold and c != r:
                        self._union(r, int(c))
            return
        vecs = self._vectors
        for a in range(start, stop, block):
            b = min(a + block, stop)
            sims = vecs[a:b] @ vecs[:b].T
            hits_r, hits_c = np.nonzero(sims >= self.duplicate_threshold)
            for r, c in zip((hits_r + a).tolist(), hits_c.tolist()):
                if c < r and self._alive[c]:
                    self._union(r, c)

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write the index (no text: ids, vectors, postings, duplicate groups, the dense index).

        Erased rows are written as holes: no vector, no postings, and a term only they held is
        left out of the vocabulary. The directory is replaced whole (written beside it, then
        renamed), and meta.json, written last, marks a complete save.
        """
        target = Path(directory)
        tmp = target.with_name(target.name + ".writing")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        n = self._n
        dead = ~self._alive[:n]
        if self.dense_index is None:  # else the dense index saves the only copy
            vectors = self._vectors[:n].copy()
            vectors[dead] = 0.0
            np.save(tmp / "vectors.npy", vectors, allow_pickle=False)
        np.save(tmp / "groups.npy", self._group_of[:n], allow_pickle=False)
        bm25, terms = self.lexical.export(dead)
        np.savez(tmp / "bm25.npz", allow_pickle=False, **bm25)
        np.savez(tmp / "chars.npz", allow_pickle=False, **self.chars.export(dead))
        if self.dense_index is not None:
            self.dense_index.save(tmp / "dense")
        meta = {
            "format": SAVE_FORMAT,
            "dim": self.dim,
            "duplicate_threshold": self.duplicate_threshold,
            "ids": [it.id if alive else "" for it, alive in zip(self.items[:n], self._alive[:n])],
            "hashes": [it.embed_hash if alive else None for it, alive in zip(self.items[:n], self._alive[:n])],
            "terms": terms,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        analyzer: Analyzer,
        items: Mapping[str, Item],
        duplicate_threshold: float | None,
        map_into: str | Path | None = None,
    ) -> tuple[Collection, list[Item]] | None:
        """A collection from :meth:`save`, brought up to date with ``items`` (the store's rows now).

        A saved row is kept where its id is still in ``items`` with the same ``embed_hash`` (its
        metadata is taken from ``items``); the others become holes. Returns the collection and
        the items it still lacks (new or changed since the save: add them), or None when there
        is no complete save of this shape. ``map_into``: where a dense index was saved, its vectors
        and the n-grams go straight from the files into file mappings there (:meth:`map_into`).
        """
        path = Path(directory)
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        if meta.get("format") != SAVE_FORMAT or meta.get("duplicate_threshold") != duplicate_threshold:
            return None
        ids, hashes = meta["ids"], meta["hashes"]
        n, dim = len(ids), int(meta.get("dim") or 0)
        index, vectors = None, None
        if (path / "dense").is_dir():  # the dense index holds the only copy of the vectors
            from matcher.ann import DenseIndex as _Dense

            index = _Dense.load(path / "dense", map_into=map_into)
            if index.dim != dim:
                return None
        else:
            vectors = np.load(path / "vectors.npy", allow_pickle=False)
            if vectors.shape != (n, dim):
                return None
        coll = cls(dim, analyzer, duplicate_threshold)
        kept = np.asarray(
            [bool(i) and i in items and items[i].embed_hash == h for i, h in zip(ids, hashes)], dtype=bool
        )
        with np.load(path / "bm25.npz", allow_pickle=False) as f:
            coll.lexical = BM25Index.restore(analyzer, dict(f), meta["terms"])
        if map_into is not None and index is not None:  # the n-grams straight into the mapping, too
            coll.chars = CharNgramIndex.restore(load_npz(path / "chars.npz", ("data", "indices"), map_into))
            coll.chars.map_into(map_into)
        else:
            with np.load(path / "chars.npz", allow_pickle=False) as f:
                coll.chars = CharNgramIndex.restore(dict(f))
        blank = Item(id="", text="")
        coll.items = [items[i] if k else blank for i, k in zip(ids, kept)]
        coll.row_of = {i: r for r, (i, k) in enumerate(zip(ids, kept)) if k}
        coll._n = n
        if vectors is not None:
            coll._vectors = vectors
            coll._vectors[~kept] = 0.0
        coll._alive = kept
        for key in FILTER_FIELDS:
            coll._codes[key] = np.asarray([coll._code(key, getattr(it, key)) for it in coll.items], dtype=np.int32)
        coll._dates = np.asarray([_stamp(it.created_at) for it in coll.items], dtype=np.int64)
        groups = np.load(path / "groups.npy", allow_pickle=False).astype(np.int64)
        coll._group_of = groups if len(groups) == n else np.arange(n, dtype=np.int64)
        live = np.nonzero(kept)[0]
        order = live[np.argsort(coll._group_of[live], kind="stable")]
        labels, starts = np.unique(coll._group_of[order], return_index=True)
        for label, rows in zip(labels, np.split(order, starts[1:])):
            if len(rows) > 1:
                coll._members[int(label)] = np.sort(rows).astype(np.int64)
        if index is not None:
            gone = np.nonzero(~kept)[0]
            if len(gone):
                index.remove(gone.astype(np.int64))
            index.reserve(n)
            coll.dense_index = index
            coll.chars.by_rows()  # a save made before the index existed is column-ordered
            for row in gone.tolist():  # an edited text's old n-grams: overwritten, in the mapping too
                coll.chars.forget(row)
        coll._publish()
        known = set(coll.row_of)
        return coll, [it for i, it in items.items() if i not in known]
