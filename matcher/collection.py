"""An in-memory collection of one kind (ideas or needs): vectors, BM25 terms and metadata.

Built once from the store at start-up and appended to on ingest; erasure hides a row at once
(the next start-up rebuilds without it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from matcher.ann import DenseIndex
from matcher.lexical import BM25Index
from matcher.ngrams import CharNgramIndex
from matcher.swedish import Analyzer
from store.locks import ReadWriteLock


@dataclass(frozen=True)
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

    @property
    def full_text(self) -> str:
        """Title and text, as embedded and indexed."""
        if self.title and not self.text.startswith(self.title):
            return f"{self.title}. {self.text}"
        return self.text


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self) -> None:
        self.parent.append(len(self.parent))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class Collection:
    """Rows of one kind with dense vectors, a BM25 index and duplicate groups.

    Args:
        dim: vector dimension.
        analyzer: the Swedish analyzer shared with queries.
        duplicate_threshold: cosine at or above which two rows are near-duplicates (None: off).
    """

    def __init__(self, dim: int, analyzer: Analyzer, duplicate_threshold: float | None = None) -> None:
        self.dim = dim
        self.items: list[Item] = []
        self.row_of: dict[str, int] = {}
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self.alive = np.zeros(0, dtype=bool)
        self.lexical = BM25Index(analyzer)
        self.chars = CharNgramIndex()
        self.duplicate_threshold = duplicate_threshold
        self._groups = _UnionFind()
        self._group_members: dict[int, list[int]] | None = None
        self.lock = ReadWriteLock()
        self.dense_index: DenseIndex | None = None

    def use_dense_index(self, index: DenseIndex) -> None:
        """Answer dense queries from ``index`` (approximate candidates, exact scores) from now on.

        The index is filled with every live row now and kept in step by :meth:`add` and :meth:`remove`.
        """
        rows = np.nonzero(self.alive)[0].astype(np.int64)
        if len(rows):
            index.add(rows, self._vectors[rows])
        self.dense_index = index

    def __len__(self) -> int:
        return len(self.items)

    @property
    def vectors(self) -> np.ndarray:
        """The (rows, dim) matrix of unit vectors (a view)."""
        return self._vectors[: len(self.items)]

    def add(self, items: Sequence[Item], vectors: np.ndarray) -> None:
        """Append items (or replace those whose id is already present) with their unit vectors."""
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
        fresh_items, fresh_vecs = [], []
        for item, vec in zip(items, vectors):
            if item.id in self.row_of:
                self.remove(item.id)
            fresh_items.append(item)
            fresh_vecs.append(vec)
        if not fresh_items:
            return
        start = len(self.items)
        need = start + len(fresh_items)
        if need > len(self._vectors):
            grown = np.zeros((max(need, 2 * len(self._vectors), 64), self.dim), dtype=np.float32)
            grown[:start] = self._vectors[:start]
            self._vectors = grown
        self._vectors[start:need] = np.asarray(fresh_vecs, dtype=np.float32)
        for offset, item in enumerate(fresh_items):
            self.row_of[item.id] = start + offset
            self.items.append(item)
            self._groups.add()
        self.alive = np.concatenate([self.alive, np.ones(len(fresh_items), dtype=bool)])
        if self.dense_index is not None:
            self.dense_index.add(np.arange(start, need, dtype=np.int64), self._vectors[start:need])
        texts = [i.full_text for i in fresh_items]
        self.lexical.add(texts)
        self.chars.add(texts)
        if self.duplicate_threshold is not None:
            self._link_duplicates(start, need)
        self._group_members = None

    def remove(self, item_id: str) -> bool:
        """Hide a row from every answer; returns False for an unknown id."""
        row = self.row_of.pop(item_id, None)
        if row is None:
            return False
        self.alive[row] = False
        self.items[row] = Item(id="", text="")  # an erased text is kept nowhere, memory included
        self._vectors[row] = 0.0
        if self.dense_index is not None:
            self.dense_index.remove(np.asarray([row], dtype=np.int64))
        self._group_members = None
        return True

    def _link_duplicates(self, start: int, stop: int, block: int = 2048) -> None:
        assert self.duplicate_threshold is not None
        vecs = self.vectors
        for a in range(start, stop, block):
            b = min(a + block, stop)
            sims = vecs[a:b] @ vecs[:b].T
            rows, cols = np.nonzero(sims >= self.duplicate_threshold)
            for r, c in zip(rows + a, cols):
                if c < r:
                    self._groups.union(int(r), int(c))

    def group(self, row: int) -> list[int]:
        """Rows in the same near-duplicate group as ``row`` (alive ones, including itself)."""
        if self._group_members is None:
            members: dict[int, list[int]] = {}
            for r in range(len(self.items)):
                if self.alive[r]:
                    members.setdefault(self._groups.find(r), []).append(r)
            self._group_members = members
        return self._group_members.get(self._groups.find(row), [row])

    def group_key(self, row: int) -> int:
        """Identifier of the duplicate group of a row (its root row)."""
        return self._groups.find(row)

    def filter_mask(self, filters: dict[str, Any] | None) -> np.ndarray:
        """Rows that are alive and pass department / status / source / date filters."""
        mask = self.alive.copy()
        if not filters:
            return mask
        for key in ("department", "status", "source", "outcome"):
            wanted = filters.get(key)
            if wanted:
                wanted_set = {wanted.lower()} if isinstance(wanted, str) else {w.lower() for w in wanted}
                mask &= np.array([(getattr(i, key) or "").lower() in wanted_set for i in self.items], dtype=bool)
        since, until = filters.get("date_from"), filters.get("date_to")
        if since or until:
            dates = [i.created_at for i in self.items]
            mask &= np.array(
                [d is not None and (not since or d >= since) and (not until or d <= until) for d in dates], dtype=bool
            )
        return mask
