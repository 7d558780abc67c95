"""The in-memory index: one :class:`~matcher.collection.Collection` per record kind, built from the store.

Built on first use (every record that has a stored vector), then appended to by ingest and new
ideas, pruned by erasure and rebuilt by a restore. These are the only places that change the
collections, and they run on the service's single writer; searches read the collections'
snapshots and take no lock.

The index is saved beside the database (``<db>.index/<key>/<kind>``: ids, vectors, postings,
duplicate groups, the HNSW graph; no text) when the service closes and after a fresh build, and
loaded at the next start: rows whose id and text are unchanged are taken from the save, the
rest are added as new. An erasure deletes the saved index at once (its bytes held the erased
row), and a restore does too; the next close saves it again. The key names the model and the
analyzer's code, so a change of either builds afresh.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import gc
import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from idesluss.resources import Resources
from idesluss.settings import Settings
from matcher import collection as collection_module
from matcher import swedish
from matcher.collection import Collection, Item
from matcher.swedish import Analyzer
from pipelines.embed import Write, _direct, embed_missing
from store import DEFAULT_TENANT, Record, Store

log = logging.getLogger(__name__)
ADD_ROWS = 100_000  # rows per append while building (see Index._add_to)


INTERN_LIMIT = 10_000  # distinct values shared (see _shared)
_interned: dict[object, object] = {}
_T = TypeVar("_T")


def _shared(value: _T) -> _T:
    """One object per distinct value of a field that repeats (a department, a status, a date).

    Each record read from the database carries its own copy of such values: at a million ideas
    the copies of departments, statuses and dates held some 200 MB. Values past
    :data:`INTERN_LIMIT` distinct ones are kept as they come (a file of unique departments must
    not grow this table without bound). ``setdefault`` is atomic, so threads may share it.
    """
    if value is None or len(_interned) >= INTERN_LIMIT and value not in _interned:
        return value
    return _interned.setdefault(value, value)  # type: ignore[return-value]


def record_to_item(rec: Record) -> Item:
    """The matcher's view of a stored record (repeated field values shared: :func:`_shared`)."""
    return Item(
        id=rec.id,
        text=rec.text,
        title=rec.title,
        created_at=_shared(rec.created_at),
        department=_shared(rec.department),
        status=_shared(rec.status),
        outcome=_shared(rec.outcome),
        source=_shared(rec.source),
        embed_hash=rec.embed_hash,
        shared=None if rec.shared is None else ("true" if rec.shared else "false"),
    )


def _release_freed_memory() -> None:
    """Hand back to the system what the build's reads have freed.

    Arrow's memory pool (mimalloc) keeps the pages of freed tables for reuse: after the start-up
    read of every vector that is the size of the vectors as float32 (150 MB at 100k rows, 1.5 GB
    at 1M), held for nothing while the server runs.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only: the heap's freed top goes back too
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - a dependency of the store
        return
    pa.default_memory_pool().release_unused()


class IdOrder:
    """The ids of one kind in the database's order, kept by the writer: a page's first id by position.

    A page cut by OFFSET makes the database sort and step over every earlier id (at a million
    ideas, the page route cost 2.8 times what it costs at 10,000). With the id at the page's
    position known, the database reads the page from that id on, as it reads a page after a
    cursor. Python orders ``str`` by code point, which is the byte order of UTF-8 that DuckDB
    sorts ``VARCHAR`` by. Readers take no lock: the writer inserts one id in place (a list's
    insert is atomic) and replaces the whole list for a batch.
    """

    BATCH = 32  # more new ids than this in one add: one merge instead of an insert each

    def __init__(self, ids: Sequence[str] = ()) -> None:
        self._ids: list[str] = sorted(ids)  # already in order from the database: one linear pass

    def __len__(self) -> int:
        return len(self._ids)

    def at(self, position: int) -> str | None:
        """The id at ``position`` (0 is the first), or None past the end."""
        if position < 0:
            return None
        try:  # not a length check first: the writer may take an id out in between
            return self._ids[position]
        except IndexError:
            return None

    def _has(self, ids: list[str], item_id: str) -> bool:
        pos = bisect.bisect_left(ids, item_id)
        return pos < len(ids) and ids[pos] == item_id

    def add(self, new_ids: Sequence[str]) -> None:
        """Take ids in (those already here are left alone: a changed record keeps its place)."""
        ids = self._ids
        fresh = sorted({i for i in new_ids if not self._has(ids, i)})
        if len(fresh) > self.BATCH:
            self._ids = sorted(ids + fresh)  # two sorted runs: a linear merge
            return
        for item_id in fresh:
            bisect.insort(ids, item_id)

    def remove(self, item_id: str) -> None:
        """Let an id go (an erasure)."""
        ids = self._ids
        pos = bisect.bisect_left(ids, item_id)
        if pos < len(ids) and ids[pos] == item_id:
            del ids[pos]


class _Steps:
    """Seconds per step of the index build (logged at INFO: where a slow start goes)."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.steps: list[tuple[str, float]] = []

    def step(self, name: str) -> None:
        now = time.perf_counter()
        self.steps.append((name, now - self._last))
        self._last = now
        log.info("index build: %s %.1f s", name, self.steps[-1][1])

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.steps)


class Index:
    """The collections of ideas and needs the searches run on.

    Args:
        settings: the service settings (duplicate threshold, dense index choice).
        store: the open store the collections are built from.
        resources: the service's encoders.
        lock: the service's lock; it guards the collections dict (and, in the admin part, the
            compaction flag), so erasure can change both under one hold.
        write: runs a write on the service's single writer (the start-up build's embedding).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        resources: Resources,
        lock: threading.RLock,
        write: Write = _direct,
    ) -> None:
        self.settings = settings
        self.store = store
        self._resources = resources
        self._lock = lock
        self._write = write
        self._collections: dict[str, Collection] | None = None
        self._unsaved = False  # changes since the last save (or load)
        self.loaded_rows: dict[str, int] = {}  # per kind, rows the last build took from the saved index
        self._orders: dict[str, IdOrder] = {}  # per kind, every stored id in order (built with the index)

    def collections(self) -> dict[str, Collection]:
        """The in-memory index, built (or loaded) on first use; afterwards read without a lock.

        The build runs on the writer, so no write can land between the rows it reads from the
        store and the moment the collections take appends.
        """
        built = self._collections
        if built is not None:
            return built
        return self._write(self._build_once)

    def _build_once(self) -> dict[str, Collection]:
        with self._lock:
            if self._collections is None:
                self._collections = self._build_index()
                self.store.release_memory()  # the start's read of every record, kept by DuckDB's allocator
                _release_freed_memory()
                if self._unsaved and self.saved_root() is not None:
                    threading.Thread(target=self._save_soon, name="idesluss-index-save", daemon=True).start()
            return self._collections

    def _save_soon(self) -> None:
        """Save a fresh build on the writer, so a crash before a clean stop still starts fast."""
        with contextlib.suppress(RuntimeError):  # the service closed first: its close saved
            self._write(self.save)

    @property
    def built(self) -> bool:
        """Whether the collections are in memory."""
        return self._collections is not None

    # -- the saved index ------------------------------------------------------------------
    def saved_root(self) -> Path | None:
        """``<db>.index`` beside a database file, ``<db>.index.<tenant>`` for a tenant other than the
        default (None for an in-memory database)."""
        path = getattr(self.store, "path", None)
        if path is None or str(path) == ":memory:":
            return None
        tenant = getattr(self.store, "tenant_name", DEFAULT_TENANT)
        return Path(f"{path}.index" if tenant == DEFAULT_TENANT else f"{path}.index.{tenant}")

    def _saved_dir(self) -> Path | None:
        root = self.saved_root()
        if root is None:
            return None
        code = hashlib.sha1()
        for module in (swedish, collection_module):
            code.update(Path(module.__file__ or "").read_bytes())
        for sibling in ("stopwords.py", "lexical.py", "ngrams.py", "segments.py"):
            part = Path(swedish.__file__ or "").with_name(sibling)
            if part.exists():
                code.update(part.read_bytes())
        code.update(f"{self._resources.encoder.model_id}|{self.settings.dense_index}".encode())
        return root / code.hexdigest()[:16]

    def save(self) -> bool:
        """Save the built collections when they changed since the last save; True when saved."""
        target = self._saved_dir() if self._collections is not None and self._unsaved else None
        if target is None or self._collections is None:
            return False
        try:
            for kind, coll in self._collections.items():
                coll.save(target / kind)
        except OSError:
            log.exception("saving the index failed; the next start builds it from the database")
            shutil.rmtree(target, ignore_errors=True)
            return False
        for old in target.parent.iterdir():  # saves under other keys are stale
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        self._unsaved = False
        return True

    def forget_saved(self) -> None:
        """Delete the saved index (an erasure or a restore made it wrong); the next save writes it anew."""
        root = self.saved_root()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        self._unsaved = True

    def add_records(self, kind: str, records: Sequence[Record]) -> None:
        """Add records (already stored and embedded) to a built index (on the writer)."""
        with self._lock:
            if self._collections is not None:
                self._orders[kind].add([r.id for r in records])  # stored already, even if indexing fails
                self._add_to(self._collections[kind], kind, records)

    def id_at(self, kind: str, position: int) -> str | None:
        """The id at ``position`` among the kind's stored ids in order (None past the end).

        Raises:
            LookupError: the index is not built (the caller asks the database instead).
        """
        order = self._orders.get(kind) if self._collections is not None else None
        if order is None:
            raise LookupError(kind)
        return order.at(position)

    def id_count(self, kind: str) -> int | None:
        """How many ids the kind's order holds (None when the index is not built)."""
        order = self._orders.get(kind) if self._collections is not None else None
        return None if order is None else len(order)

    def remove(self, kind: str, item_id: str) -> None:
        """Take one record out of a built index and delete the saved index (erasure, on the writer)."""
        with self._lock:
            self.forget_saved()
            if self._collections is not None:
                self._collections[kind].remove(item_id)
                self._orders[kind].remove(item_id)

    def rebuild_if_built(self) -> None:
        """Build a built index again from the store (after a restore replaced the database)."""
        with self._lock:
            self.forget_saved()
            if self._collections is not None:
                self._collections = self._build_index()
                _release_freed_memory()

    def _build_index(self) -> dict[str, Collection]:
        clock = _Steps()
        # the model loads (in the encoder process, for the server) while the records are read and
        # the analyser learns them: neither needs it, and each takes seconds at scale
        model: dict[str, Any] = {}
        loading = threading.Thread(target=self._load_model, args=(model,), name="idesluss-model", daemon=True)
        loading.start()
        records = {kind: self.store.records(kind) for kind in ("ideas", "needs")}
        orders = {kind: IdOrder([r.id for r in rows]) for kind, rows in records.items()}
        clock.step("records")
        analyzer = Analyzer()
        analyzer.learn([r.text for rows in records.values() for r in rows])
        clock.step("analyzer")
        loading.join()
        if "error" in model:
            raise model["error"]
        encoder = model["encoder"]
        clock.step("model (the rest of its load)")
        embed_missing(self.store, encoder, write=self._write)
        clock.step("embed_missing")
        saved = self._saved_dir()
        out = {}
        fresh = False
        for kind, rows in records.items():
            # needs too: the needs view counts a need's near-duplicates as the citizens who raised it
            threshold = self.settings.duplicate_threshold
            items = {r.id: record_to_item(r) for r in rows}
            root = self.saved_root() if self.settings.map_large_index else None
            loaded = Collection.load(saved / kind, analyzer, items, threshold, root) if saved is not None else None
            clock.step(f"{kind}: saved index {'loaded' if loaded is not None else 'absent'}")
            self.loaded_rows[kind] = len(loaded[0].row_of) if loaded is not None else 0
            if loaded is not None:
                coll, missing = loaded
                ids = {it.id for it in missing}
                todo = [r for r in rows if r.id in ids]
                fresh |= bool(todo)
            else:
                coll, todo, fresh = Collection(encoder.dim, analyzer, duplicate_threshold=threshold), list(rows), True
            mode = self.settings.dense_index
            if coll.dense_index is None and (
                mode == "hnsw" or (mode == "auto" and len(rows) >= self.settings.ann_min_items)
            ):
                from matcher.ann import make_index

                # before the rows go in: duplicates are then linked through the index, not all pairs.
                # float16 re-scoring: the index then holds the only copy of the vectors at half the
                # bytes (SweFAQ dev MRR -0.0018, p = 0.50 against float32: evaluation.precision)
                coll.use_dense_index(make_index("hnsw", encoder.dim, rescore_dtype="float16"))
            self._add_to(coll, kind, todo, whole_kind=loaded is None)
            clock.step(f"{kind}: {len(todo)} rows added")
            if coll.dense_index is not None and root is not None:
                coll.map_into(root)  # unnamed files beside the database (matcher.mapped)
                _release_freed_memory()
                clock.step(f"{kind}: mapped")
            out[kind] = coll
        self._unsaved = fresh
        self._orders = orders
        log.info("index built: %s", clock)
        return out

    def _load_model(self, out: dict[str, Any]) -> None:
        """``out["encoder"]``: the service's encoder, loaded (or ``out["error"]``: what stopped it)."""
        try:
            out["encoder"] = self._resources.encoder
        except BaseException as exc:  # re-raised on the building thread
            out["error"] = exc

    def _add_to(self, coll: Collection, kind: str, records: Sequence[Record], whole_kind: bool = False) -> None:
        """Append records that have a stored vector to ``coll`` (under its write lock), ADD_ROWS at a time.

        Vectors are fetched by the records' hashes; only the start-up build, which takes every
        record of the kind, reads the kind's vectors in one scan. Bounded pieces bound what an add
        holds besides the index (the n-gram counts of its texts, its duplicate search): a
        million rows in one add went past 14 GB and was killed for memory.
        """
        model_id = self._resources.encoder.model_id
        if whole_kind:
            ids, matrix = self.store.vectors(kind, model_id)
            row = {i: n for n, i in enumerate(ids)}
            have = [r for r in records if r.id in row]
            where = np.asarray([row[r.id] for r in have], dtype=np.int64)
        else:
            by_hash = self.store.vectors_for(model_id, [r.embed_hash for r in records])
            have = [r for r in records if r.embed_hash in by_hash]
            matrix = np.stack([by_hash[r.embed_hash] for r in have]) if have else np.zeros((0, 0), np.float32)
            where = np.arange(len(have), dtype=np.int64)
        began = time.perf_counter()
        for start in range(0, len(have), ADD_ROWS):
            part = have[start : start + ADD_ROWS]
            coll.add([record_to_item(r) for r in part], matrix[where[start : start + ADD_ROWS]])
            self._unsaved = True
            if len(have) > ADD_ROWS:
                log.info(
                    "%s: %d of %d rows added (%.1f s)", kind, start + len(part), len(have), time.perf_counter() - began
                )
