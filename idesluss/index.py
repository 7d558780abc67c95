"""The in-memory index: one :class:`~matcher.collection.Collection` per record kind, built from the store.

Built on first use (every record that has a stored vector), then appended to by ingest and new
ideas, pruned by erasure and rebuilt by a restore. These are the only places that change the
collections.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from idesluss.resources import Resources
from idesluss.settings import Settings
from matcher.collection import Collection, Item
from matcher.swedish import Analyzer
from pipelines.embed import embed_missing
from store import Record, Store


def record_to_item(rec: Record) -> Item:
    """The matcher's view of a stored record."""
    return Item(
        id=rec.id,
        text=rec.text,
        title=rec.title,
        created_at=rec.created_at,
        department=rec.department,
        status=rec.status,
        outcome=rec.outcome,
        source=rec.source,
    )


class Index:
    """The collections of ideas and needs the searches run on.

    Args:
        settings: the service settings (duplicate threshold, dense index choice).
        store: the open store the collections are built from.
        resources: the service's encoders.
        lock: the service's lock; it guards the collections dict (and, in the admin part, the
            compaction flag), so erasure can change both under one hold.
        changed: called after every change (cached answers are stale).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        resources: Resources,
        lock: threading.RLock,
        changed: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.store = store
        self._resources = resources
        self._lock = lock
        self._changed = changed
        self._collections: dict[str, Collection] | None = None

    def collections(self) -> dict[str, Collection]:
        """The in-memory index, built from the store on first use."""
        with self._lock:
            if self._collections is None:
                self._collections = self._build_index()
            return self._collections

    def add_stored(self, kind: str, ids: Sequence[str]) -> None:
        """Add the stored records ``ids`` to a built index (nothing to do before it is built)."""
        with self._lock:
            if self._collections is not None and ids:
                self._add_to(self._collections[kind], kind, self.store.records(kind, ids))

    def add_records(self, kind: str, records: Sequence[Record]) -> None:
        """Add records (already stored and embedded) to a built index."""
        with self._lock:
            if self._collections is not None:
                self._add_to(self._collections[kind], kind, records)

    def remove(self, kind: str, item_id: str) -> None:
        """Take one record out of a built index (erasure)."""
        with self._lock:
            if self._collections is not None:
                coll = self._collections[kind]
                with coll.lock.writing():
                    coll.remove(item_id)

    def rebuild_if_built(self) -> None:
        """Build a built index again from the store (after a restore replaced the database)."""
        with self._lock:
            if self._collections is not None:
                self._collections = self._build_index()

    def _build_index(self) -> dict[str, Collection]:
        encoder = self._resources.encoder
        embed_missing(self.store, encoder)
        texts = [r.text for kind in ("ideas", "needs") for r in self.store.records(kind)]
        analyzer = Analyzer()
        analyzer.learn(texts)
        out = {}
        for kind in ("ideas", "needs"):
            threshold = self.settings.duplicate_threshold if kind == "ideas" else None
            coll = Collection(encoder.dim, analyzer, duplicate_threshold=threshold)
            self._add_to(coll, kind, self.store.records(kind), whole_kind=True)
            mode = self.settings.dense_index
            if mode == "hnsw" or (mode == "auto" and len(coll) >= self.settings.ann_min_items):
                from matcher.ann import make_index

                coll.use_dense_index(make_index("hnsw", encoder.dim))
            out[kind] = coll
        return out

    def _add_to(self, coll: Collection, kind: str, records: Sequence[Record], whole_kind: bool = False) -> None:
        """Append records that have a stored vector to ``coll`` (under its write lock).

        Vectors are fetched by the records' hashes; only the start-up build, which takes every
        record of the kind, reads the kind's vectors in one scan.
        """
        model_id = self._resources.encoder.model_id
        if whole_kind:
            ids, matrix = self.store.vectors(kind, model_id)
            row = {i: n for n, i in enumerate(ids)}
            have = [r for r in records if r.id in row]
            vectors = matrix[[row[r.id] for r in have]] if have else None
        else:
            by_hash = self.store.vectors_for(model_id, [r.embed_hash for r in records])
            have = [r for r in records if r.embed_hash in by_hash]
            vectors = np.stack([by_hash[r.embed_hash] for r in have]) if have else None
        if have and vectors is not None:
            items = [record_to_item(r) for r in have]
            with coll.lock.writing():
                coll.add(items, vectors)
        self._changed()
