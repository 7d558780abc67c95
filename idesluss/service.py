"""Service functions shared by the command line and the HTTP API.

A :class:`Service` owns one open store, the encoder (loaded once, on first use) and the
in-memory index (built from the store on first use, appended to on ingest).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from idesluss.errors import Conflict, NotFound
from idesluss.settings import Settings
from idesluss.themes_service import ThemeMixin
from matcher.collection import Collection, Item
from matcher.hybrid import FusionConfig, Hit, HybridMatcher
from matcher.swedish import Analyzer
from models.encoder import TextEncoder
from pipelines.embed import embed_missing
from pipelines.ingest import IngestReport, ingest_file
from pipelines.masking import mask
from store import Record, Store
from store import feedback as fb
from store.keys import audit

log = logging.getLogger(__name__)


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


@dataclass
class Query:
    """A search: a free text or a stored record id."""

    text: str | None = None
    id: str | None = None


class Service(ThemeMixin):
    """The service behind the CLI and the API.

    Args:
        settings: the service settings.
        store: an open store (opened from ``settings.db`` when omitted).
        encoder: an encoder (loaded from ``settings.model`` on first use when omitted).
    """

    def __init__(self, settings: Settings, store: Store | None = None, encoder: TextEncoder | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings.db)
        self._encoder: Any = encoder
        self._owns_encoder = False
        self._theme_encoder: TextEncoder | None = None
        self._collections: dict[str, Collection] | None = None
        self._lock = threading.RLock()
        self._compaction_due = False
        self._generation = 0  # moves on with every write; answers cached per theme run and generation
        self._cache: dict[str, tuple[tuple[int | None, int], Any]] = {}
        self.matcher_config = FusionConfig(
            method=settings.fusion_method,
            dense_weight=settings.dense_weight,
            lexical_weight=settings.lexical_weight,
            char_weight=settings.char_weight,
        )

    # -- resources ------------------------------------------------------------------------
    @property
    def encoder(self) -> TextEncoder:
        """The encoder, loaded once."""
        if self._encoder is None:
            from models.batching import MicroBatcher
            from models.registry import load_encoder

            # concurrent requests' query encodings share forward passes (a wait of at most 2 ms)
            self._owns_encoder = True
            self._encoder = MicroBatcher(
                load_encoder(
                    self.settings.model,
                    self.settings.cache_dir,
                    batch_size=self.settings.batch_size,
                    threads=self.settings.threads,
                    precision=self.settings.precision,
                    engine=self.settings.engine,
                )
            )
        return self._encoder

    @property
    def theme_encoder(self) -> TextEncoder:
        """The encoder whose vectors the nightly themes use: the service's, or its static model."""
        if self.settings.theme_model == "same":
            return self.encoder
        if self._theme_encoder is None:
            from models.registry import load_static_encoder

            self._theme_encoder = load_static_encoder(self.encoder, self.settings.cache_dir)  # type: ignore[arg-type]
        return self._theme_encoder

    def matcher(self, fusion: FusionConfig | None = None) -> HybridMatcher:
        """A hybrid matcher with the configured (or the given) fusion."""
        return HybridMatcher(self.encoder, fusion or self.matcher_config)

    def close(self) -> None:
        """Close the store (and stop the encoder's batching thread, when there is one)."""
        if self._owns_encoder and self._encoder is not None:
            self._encoder.close()
        self.store.close()

    def collections(self) -> dict[str, Collection]:
        """The in-memory index, built from the store on first use."""
        with self._lock:
            if self._collections is None:
                self._collections = self._build_index()
            return self._collections

    def _build_index(self) -> dict[str, Collection]:
        embed_missing(self.store, self.encoder)
        texts = [r.text for kind in ("ideas", "needs") for r in self.store.records(kind)]
        analyzer = Analyzer()
        analyzer.learn(texts)
        out = {}
        for kind in ("ideas", "needs"):
            threshold = self.settings.duplicate_threshold if kind == "ideas" else None
            coll = Collection(self.encoder.dim, analyzer, duplicate_threshold=threshold)
            self._add_to(coll, kind, self.store.records(kind), whole_kind=True)
            mode = self.settings.dense_index
            if mode == "hnsw" or (mode == "auto" and len(coll) >= self.settings.ann_min_items):
                from matcher.ann import make_index

                coll.use_dense_index(make_index("hnsw", self.encoder.dim))
            out[kind] = coll
        return out

    def _add_to(self, coll: Collection, kind: str, records: Sequence[Record], whole_kind: bool = False) -> None:
        """Append records that have a stored vector to ``coll`` (under its write lock).

        Vectors are fetched by the records' hashes; only the start-up build, which takes every
        record of the kind, reads the kind's vectors in one scan.
        """
        model_id = self.encoder.model_id
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

    # -- ingest ---------------------------------------------------------------------------
    def ingest(self, kind: str, path: str | Path, actor: str = "cli", shown_path: str | None = None) -> IngestReport:
        """Ingest a file, embed what is new, and update a built index in place (audited: counts only)."""
        report = ingest_file(
            self.store,
            kind,
            path,
            encoder=self.encoder,
            max_bytes=self.settings.max_file_bytes,
            allowed_attributes=self.settings.allowed_attributes,
            shown_path=shown_path,
        )
        audit(self.store, actor, f"ingest ({report.stored} stored, {len(report.errors)} rejected)", kind)
        self._changed()
        with self._lock:
            if self._collections is not None and report.ids:
                self._add_to(self._collections[kind], kind, self.store.records(kind, report.ids))
        return report

    # -- search ---------------------------------------------------------------------------
    def _record(self, kind: str, record_id: str) -> Record:
        rec = self.store.get_record(kind, record_id)
        if rec is None:
            raise NotFound(f"no {kind[:-1]} with id {record_id!r}")
        return rec

    def similar(
        self, queries: Sequence[Query], k: int = 10, filters: dict[str, Any] | None = None, all_duplicates: bool = False
    ) -> list[list[Hit]]:
        """Similar earlier ideas for each query (never the query idea itself)."""
        return self._search("ideas", "ideas", queries, k, filters, collapse=not all_duplicates)

    def needs_for(
        self, queries: Sequence[Query], k: int = 10, filters: dict[str, Any] | None = None
    ) -> list[list[Hit]]:
        """Citizen needs each idea (or draft) answers; confirmed links first, rejected ones never."""
        return self._search("ideas", "needs", queries, k, filters, collapse=False)

    def ideas_for_need(
        self, queries: Sequence[Query], k: int = 10, filters: dict[str, Any] | None = None
    ) -> list[list[Hit]]:
        """Ideas that answer each need."""
        return self._search("needs", "ideas", queries, k, filters, collapse=True)

    def _search(
        self,
        query_kind: str,
        target_kind: str,
        queries: Sequence[Query],
        k: int,
        filters: dict[str, Any] | None,
        collapse: bool,
    ) -> list[list[Hit]]:
        texts, excludes, pins = [], [], []
        for q in queries:
            if q.id is not None:
                rec = self._record(query_kind, q.id)
                texts.append(Item(id=rec.id, text=rec.text, title=rec.title).full_text)
                exclude = {rec.id} if query_kind == target_kind else set()
                exclude |= fb.rejected_targets(self.store, query_kind, rec.id, target_kind)
                pin: set[str] = set()
                if {query_kind, target_kind} == {"ideas", "needs"}:
                    key = (lambda pair: pair[1]) if query_kind == "ideas" else (lambda pair: pair[0])
                    found = (
                        fb.links(self.store, idea_id=rec.id)
                        if query_kind == "ideas"
                        else fb.links(self.store, need_id=rec.id)
                    )
                    exclude |= {key(p) for p, s in found.items() if s == "rejected"}
                    pin = {key(p) for p, s in found.items() if s == "confirmed"}
                excludes.append(exclude)
                pins.append(pin)
            else:
                text = (q.text or "").strip()
                if not text:
                    raise ValueError("the search text is empty")
                texts.append(mask(text).text)
                excludes.append(set())
                pins.append(set())
        coll = self.collections()[target_kind]
        # encoded outside the lock: a write never waits for the model
        vectors = self.encoder.encode_queries(texts) if self.matcher_config.dense_weight > 0 else None
        with coll.lock.reading():
            return self.matcher().search_batch(
                coll,
                texts,
                k=k,
                vectors=vectors,
                filters=filters,
                exclude=excludes,
                pinned=pins,
                collapse_duplicates=collapse,
            )

    # -- feedback -------------------------------------------------------------------------
    def feedback(
        self, query_kind: str, query_id: str, target_kind: str, target_id: str, verdict: str, actor: str
    ) -> int:
        """Store a coach's verdict on a suggestion (``query_kind`` "draft" for an unsaved text)."""
        if query_kind != "draft":
            self._record(query_kind, query_id)
        else:  # a draft's id is whatever the client sent: masked like any free text
            query_id = mask(query_id).text
        self._record(target_kind, target_id)
        fid = fb.add_feedback(self.store, query_kind, query_id, target_kind, target_id, verdict, actor)
        self._changed()
        audit(self.store, actor, f"feedback {verdict}", target_kind, target_id)
        return fid

    def set_link(self, idea_id: str, need_id: str, state: str, actor: str) -> None:
        """Confirm or reject an idea-need link (audited)."""
        self._record("ideas", idea_id)
        self._record("needs", need_id)
        fb.set_need_link(self.store, idea_id, need_id, state, actor)
        self._changed()
        audit(self.store, actor, f"link {state} need {need_id}", "ideas", idea_id)

    # -- erasure --------------------------------------------------------------------------
    def erase(self, kind: str, item_id: str, actor: str) -> None:
        """Erase one record everywhere: store, vectors, links, index, and the bytes of every file.

        The rows go in one transaction (audited by id only); then the database is compacted so no
        free block or WAL keeps the text. A compaction that fails does not fail the erasure: it
        is retried by the next write or erasure (:meth:`compact_if_due`) and logged.

        Raises:
            NotFound: no such record (a repeated erasure of the same id lands here).
        """
        from store.erase import erase_record

        if not erase_record(self.store, kind, item_id, actor):
            raise NotFound(f"no {kind[:-1]} with id {item_id!r} (already erased, or never stored)")
        with self._lock:
            if self._collections is not None:
                coll = self._collections[kind]
                with coll.lock.writing():
                    coll.remove(item_id)
            self._compaction_due = True
        self._changed()
        self.compact_if_due()

    def backup(self, target: str | Path, actor: str = "cli") -> Path:
        """A consistent copy of the database, taken while the service keeps serving (audited)."""
        dest = self.store.backup(target)
        audit(self.store, actor, "backup")
        return dest

    def restore(self, source: str | Path, actor: str = "cli") -> None:
        """Bring back a backup: the database is replaced and the index rebuilt from it (audited)."""
        self.store.restore_from(source)
        with self._lock:
            if self._collections is not None:
                self._collections = self._build_index()
        self._changed()
        audit(self.store, actor, "restore")

    def compact_if_due(self) -> bool:
        """Compact the database when an erasure asked for it; True when nothing is left to do."""
        with self._lock:
            if not self._compaction_due:
                return True
            try:
                self.store.compact()
            except Exception:  # noqa: BLE001 - retried on the next write; the erasure itself is committed
                log.exception("compaction after erasure failed; it will be retried")
                return False
            self._compaction_due = False
            return True

    # -- coach suggestions ----------------------------------------------------------------
    def suggest(
        self,
        text: str,
        title: str | None = None,
        k: int = 5,
        filters: dict[str, Any] | None = None,
        exclude_id: str | None = None,
    ) -> dict[str, Any]:
        """Similar ideas, needs, likely duplicates and the theme for one text, encoding it once."""
        from store import themes as sql

        masked = mask(text.strip()).text
        if not masked:
            raise ValueError("text: the idea text is empty")
        full = Item(id="", text=masked, title=mask(title).text if title else None).full_text
        vec = self.encoder.encode_queries([full])
        matcher = self.matcher()
        colls = self.collections()
        exclude = [{exclude_id}] if exclude_id else None
        with colls["ideas"].lock.reading():
            similar = matcher.search_batch(
                colls["ideas"], [full], k=k, vectors=vec, filters=filters, exclude=exclude, collapse_duplicates=True
            )[0]
            near = matcher.search_batch(colls["ideas"], [full], k=10, vectors=vec, exclude=exclude)[0]
        with colls["needs"].lock.reading():
            needs = matcher.search_batch(colls["needs"], [full], k=k, vectors=vec)[0]
        threshold = self.settings.duplicate_threshold
        duplicates = [h.id for h in near if h.dense >= threshold]
        theme = None
        if exclude_id:
            tid = sql.theme_of(self.store, "ideas", exclude_id)
            if tid:
                label = next((t.label for t in sql.current_themes(self.store) if t.theme_id == tid), tid)
                theme = {"id": tid, "label": label, "provisional": False, "similarity": None}
        if theme is None:
            same_space = self.settings.theme_model == "same"
            theme = self.provisional_theme(text=None if same_space else full, vector=vec[0] if same_space else None)
        return {"similar": similar, "needs": needs, "duplicates": duplicates, "theme": theme}

    def add_idea(self, row: dict[str, Any], actor: str) -> Record:
        """Validate, mask, store and index one new idea (audited).

        Raises:
            Conflict: an idea with this id exists (change it with :meth:`update_idea`).
        """
        from pipelines.records import validate_row

        rec = validate_row(row, allowed_attributes=self.settings.allowed_attributes)
        if self.store.get_record("ideas", rec.id) is not None:
            raise Conflict(f"an idea with id {rec.id!r} exists; send PATCH /ideas/{{id}} to change it")
        return self._store_idea(rec, actor, "create")

    def update_idea(self, idea_id: str, changes: dict[str, Any], actor: str) -> Record:
        """Change the given fields of a stored idea (the rest are kept); masked and audited.

        Raises:
            NotFound: no such idea.
        """
        from pipelines.records import validate_row

        old = self._record("ideas", idea_id)
        row = {**old.public(), **old.attributes, "contact_ref": old.contact_ref, **changes, "id": idea_id}
        rec = validate_row(row, allowed_attributes=self.settings.allowed_attributes)
        return self._store_idea(rec, actor, f"update {','.join(sorted(changes))}")

    def _store_idea(self, rec: Record, actor: str, action: str) -> Record:
        self.store.upsert_records("ideas", [rec])
        audit(self.store, actor, action, "ideas", rec.id)
        embed_missing(self.store, self.encoder, records=[rec])
        with self._lock:
            if self._collections is not None:
                self._add_to(self._collections["ideas"], "ideas", [rec])
        self.compact_if_due()
        return rec

    def page(self, kind: str, page: int, page_size: int) -> tuple[list[Record], int]:
        """One page of records, ordered by id, and the total (both cut and counted by the database)."""
        return self.store.page(kind, page_size, (page - 1) * page_size), self.store.count(kind)

    def _changed(self) -> None:
        """Something was written: cached answers are stale."""
        self._generation += 1

    def cached(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, remembered until the theme run changes or anything is written."""
        from store import themes as sql

        key = (sql.current_run_id(self.store), self._generation)
        hit = self._cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = compute()
        self._cache[name] = (key, value)
        return value
