"""Service functions shared by the command line and the HTTP API.

A :class:`Service` owns one open store, the encoder (loaded once, on first use) and the
in-memory index (built from the store on first use, appended to on ingest). It is a facade: the
work is done by its parts, each about one thing, and every public method delegates to one of them.

==============================  ============================================================
part (module)                   does
==============================  ============================================================
``Resources`` (resources.py)    the encoder, the theme encoder, the fusion and the matcher
``Index`` (index.py)            the in-memory collections: build, add, remove, rebuild
``RecordService`` (records.py)  ingest, new and changed ideas, pages, feedback, links
``Search`` (search.py)          similar ideas, needs for an idea, ideas for a need, suggest
``ThemeService``                the theme job, themes, theme detail, curation, overview,
(themes_service.py)             provisional themes, run history
``Admin`` (admin.py)            erasure and compaction, backup, restore, keys, audit log
``AnswerCache`` (cache.py)      answers remembered until the theme run or the data changes
==============================  ============================================================

The writes all go through ``RecordService`` (ingest, add / update idea, feedback, set link),
``Admin`` (erase, restore, keys) and ``ThemeService`` (cluster, curate), and each of them hands
its store-and-index step to the one :class:`~idesluss.writer.Writer`: writes are applied one at
a time, in order, on one thread, while searches read the collections' last published snapshots
and never wait for a write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from idesluss.admin import Admin
from idesluss.cache import AnswerCache
from idesluss.errors import Conflict, NotFound
from idesluss.inbox import Inbox
from idesluss.index import Index, record_to_item
from idesluss.records import RecordService
from idesluss.resources import Resources
from idesluss.search import Query, Search
from idesluss.settings import Settings
from idesluss.themes_service import ThemeService
from idesluss.writer import Writer
from matcher.collection import Collection
from matcher.hybrid import FusionConfig, Hit, HybridMatcher
from models.encoder import TextEncoder
from pipelines.ingest import IngestReport
from store import Record, Store

__all__ = ["Conflict", "NotFound", "Query", "Service", "record_to_item"]


class Service:
    """The service behind the CLI and the API.

    Args:
        settings: the service settings.
        store: an open store (opened from ``settings.db`` when omitted).
        encoder: an encoder (loaded from ``settings.model`` on first use when omitted).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        encoder: TextEncoder | None = None,
        *,
        tenant: str | None = None,
        create_tenant: bool = False,
        parent: Service | None = None,
    ) -> None:
        self.settings = settings
        self.tenant = tenant or settings.tenant
        if parent is None:
            root_store = store or Store(settings.db, memory_limit=settings.duckdb_memory_limit)
            # one lock guards the index's collections and the compaction flag (erasure changes both at once)
            self._lock = threading.RLock()
            self._resources = Resources(settings, encoder)
            self._writer = Writer()
            self._family: dict[str, Service] = {}  # the service of every tenant opened so far (shared parts)
        else:
            root_store = parent.store
            self._lock, self._resources = parent._lock, parent._resources
            self._writer, self._family = parent._writer, parent._family
        self._root: Service = parent._root if parent is not None else self
        self.store: Store
        try:
            self.store = root_store.for_tenant(self.tenant, create=create_tenant)
        except BaseException:
            if parent is None and store is None:
                root_store.close()
            raise
        self._answers = AnswerCache(self.store)
        write = self._writer.run
        changed = self._answers.changed
        self._index = Index(settings, self.store, self._resources, self._lock, write)
        self._admin = Admin(self.store, self._index, self._lock, changed)
        self._themes = ThemeService(self.store, self._resources, changed)
        self._records = RecordService(
            settings, self.store, self._resources, self._index, self._admin.compact_if_due, changed, write
        )
        self._search = Search(settings, self.store, self._resources, self._index, self._themes, self._shared_sources)
        self._inbox = Inbox(self)  # the coach's inbox, idea view and needs view (idesluss/inbox.py)
        # last: a request that finds the tenant open (opened_tenant, unlocked) gets a whole service
        self._family.setdefault(self.tenant, self)

    # -- tenants --------------------------------------------------------------------------
    def opened_tenant(self, name: str) -> Service | None:
        """The service of a tenant when it is open already (a dict lookup: no database read), else None."""
        return self._family.get(name)

    def for_tenant(self, name: str, create: bool = False) -> Service:
        """The service of one tenant (municipality): its own store schema, index, caches and inbox;
        the encoder, the writer and the file are shared.

        Raises:
            UnknownTenant: no such tenant and ``create`` is false.
        """
        svc = self._family.get(name)
        if svc is not None:
            return svc
        with self._lock:
            svc = self._family.get(name)
            if svc is None:
                svc = Service(self.settings, tenant=name, create_tenant=create, parent=self._root)
            return svc

    def tenants(self) -> list[dict[str, Any]]:
        """Every tenant of the installation with its sharing default."""
        return self.store.tenants.describe()

    def set_shared_default(self, shared: bool, actor: str = "cli") -> None:
        """Whether this tenant's ideas are shared with the other municipalities unless an idea says otherwise."""

        def write() -> None:
            self.store.tenants.set_shared_default(self.tenant, shared)
            self.store.audit.record(actor, "set_shared_default" if shared else "unset_shared_default")

        self._writer.run(write)

    def region_overview(self, tenants: list[str]) -> dict[str, Any]:
        """Themes that recur across ``tenants``, from their shared ideas only (idesluss/region.py)."""
        from idesluss.region import region_overview

        return region_overview(self, tenants, self.settings.theme_assign_threshold)

    def _shared_sources(self) -> list[tuple[str, Any, list[str]]]:
        """The other tenants that share ideas: (tenant, its search part, the ``shared`` codes that mean shared)."""
        out = []
        for info in self.store.tenants.describe():
            name = info["name"]
            if name == self.tenant:
                continue
            other = self.for_tenant(name)
            if not other.store.shares_anything(info["shared_default"]):
                continue
            codes = ["true", ""] if info["shared_default"] else ["true"]
            out.append((name, other._search, codes))
        return out

    # -- resources ------------------------------------------------------------------------
    @property
    def encoder(self) -> TextEncoder:
        """The encoder, loaded once."""
        return self._resources.encoder

    @property
    def theme_encoder(self) -> TextEncoder:
        """The encoder whose vectors the nightly themes use: the service's, or its static model."""
        return self._resources.theme_encoder

    def bulk_queries(self, texts: list[str]) -> Any:
        """Query vectors encoded on the calling thread, outside the requests' batches (bulk work)."""
        return self._resources.bulk_queries(texts)

    def requests_served(self) -> Callable[[], int] | None:
        """See :meth:`Resources.requests_served` (background work paces itself by it)."""
        return self._resources.requests_served()

    @property
    def matcher_config(self) -> FusionConfig:
        """The fusion the searches use (from the settings)."""
        return self._resources.matcher_config

    @matcher_config.setter
    def matcher_config(self, value: FusionConfig) -> None:
        self._resources.matcher_config = value

    def matcher(self, fusion: FusionConfig | None = None) -> HybridMatcher:
        """A hybrid matcher with the configured (or the given) fusion."""
        return self._resources.matcher(fusion)

    @property
    def writer(self) -> Writer:
        """The single writer every change goes through."""
        return self._writer

    def close(self) -> None:
        """Finish queued writes, save each tenant's index when it changed, close the store and the encoder.

        Only the service that opened the file closes it; a tenant's service got from it by
        :meth:`for_tenant` is closed with it (its own ``close`` does nothing).
        """
        if self._root is not self:
            return
        family = list(self._family.values())
        for svc in family:
            svc._inbox.close()
        self._writer.close()
        try:
            for svc in family:
                svc._index.save()
        finally:
            self._resources.close()
            self.store.close()

    @property
    def inbox(self) -> Inbox:
        """The coach's inbox, idea view and needs view (idesluss/inbox.py)."""
        return self._inbox

    def collections(self) -> dict[str, Collection]:
        """The in-memory index, built (or loaded from its save) on first use."""
        return self._index.collections()

    def save_index(self) -> bool:
        """Save the index now when it changed since the last save (on the writer); True when saved."""
        return self._writer.run(self._index.save)

    # -- records (writes: ingest, add_idea, update_idea, feedback, set_link) ----------------
    def ingest(self, kind: str, path: str | Path, actor: str = "cli", shown_path: str | None = None) -> IngestReport:
        """Ingest a file, embed what is new, and update a built index in place (audited: counts only)."""
        report = self._records.ingest(kind, path, actor=actor, shown_path=shown_path)
        if kind == "ideas":
            self._inbox.precompute_later(report.ids)  # inbox: precompute on arrival, off the upload's thread
        return report

    def record(self, kind: str, record_id: str) -> Record:
        """One stored idea or need (:class:`NotFound` when there is none)."""
        return self._records.record(kind, record_id)

    def add_idea(self, row: dict[str, Any], actor: str) -> Record:
        """Validate, mask, store and index one new idea (audited); :class:`Conflict` when the id exists."""
        rec = self._records.add_idea(row, actor)
        self._inbox.precompute([rec.id])  # inbox: precompute on arrival
        return rec

    def update_idea(self, idea_id: str, changes: dict[str, Any], actor: str) -> Record:
        """Change the given fields of a stored idea (the rest are kept); masked and audited."""
        return self._records.update_idea(idea_id, changes, actor)

    def page(self, kind: str, page: int, page_size: int, after: str | None = None) -> tuple[list[Record], int]:
        """One page of records, ordered by id, and the total (see :meth:`Records.page`)."""
        return self._records.page(kind, page, page_size, after)

    def feedback(
        self, query_kind: str, query_id: str, target_kind: str, target_id: str, verdict: str, actor: str
    ) -> int:
        """Store a coach's verdict on a suggestion (``query_kind`` "draft" for an unsaved text)."""
        return self._records.feedback(query_kind, query_id, target_kind, target_id, verdict, actor)

    def set_link(self, idea_id: str, need_id: str, state: str, actor: str) -> None:
        """Confirm or reject an idea-need link (audited)."""
        self._records.set_link(idea_id, need_id, state, actor)

    def ingest_links(self, path: str | Path, actor: str = "cli") -> Any:
        """Import past idea-need decisions from a file (all valid rows in one write; bad rows reported)."""
        from pipelines.links import ingest_links

        def write() -> Any:
            report = ingest_links(self.store, path, actor=actor, max_bytes=self.settings.max_file_bytes)
            self._answers.changed()  # links decide the unmet needs the overview shows
            return report

        return self._writer.run(write)

    # -- search ---------------------------------------------------------------------------
    def similar(
        self,
        queries: Sequence[Query],
        k: int = 10,
        filters: dict[str, Any] | None = None,
        all_duplicates: bool = False,
        scope: str = "own",
    ) -> list[list[Hit]]:
        """Similar earlier ideas for each query (never the query idea itself); ``scope="shared"``: the
        ideas other municipalities share, each hit carrying its tenant."""
        return self._search.similar(queries, k, filters, all_duplicates, scope)

    def needs_for(
        self, queries: Sequence[Query], k: int = 10, filters: dict[str, Any] | None = None
    ) -> list[list[Hit]]:
        """Citizen needs each idea (or draft) answers; confirmed links first, rejected ones never."""
        return self._search.needs_for(queries, k, filters)

    def ideas_for_need(
        self, queries: Sequence[Query], k: int = 10, filters: dict[str, Any] | None = None
    ) -> list[list[Hit]]:
        """Ideas that answer each need."""
        return self._search.ideas_for_need(queries, k, filters)

    def suggest(
        self,
        text: str,
        title: str | None = None,
        k: int = 5,
        filters: dict[str, Any] | None = None,
        exclude_id: str | None = None,
        scope: str = "own",
        vector: Any = None,
    ) -> dict[str, Any]:
        """Similar ideas, needs, likely duplicates and the theme for one text, encoding it once
        (``scope="shared"``: similar ideas from the other municipalities' shared ones; ``vector``:
        the query vector of :meth:`~idesluss.search.Search.query_text`, when already encoded)."""
        return self._search.suggest(text, title, k, filters, exclude_id, scope, vector)

    # -- themes (writes: cluster, curate) -------------------------------------------------
    def cluster(
        self,
        progress: Any = None,
        show_bar: bool | None = None,
        engine: str = "local",
        ray_address: str | None = None,
        ray_scratch: str | None = None,
        ray: Any = None,
    ) -> dict[str, Any]:
        """Run the nightly theme job for this tenant now, here or on a Ray cluster (``engine="ray"``;
        ``ray``: the engine's options, default from the settings)."""
        return self._themes.cluster(progress, show_bar, engine, ray_address, ray_scratch, ray)

    def cluster_tenants(
        self,
        tenants: Sequence[str] | None = None,
        engine: str = "local",
        ray_address: str | None = None,
        progress: Any = None,
        show_bar: bool | None = None,
        ray: Any = None,
    ) -> dict[str, dict[str, Any]]:
        """The nightly job for several tenants (None: all): one after the other here, or at the same
        time on Ray (one connection to the cluster, one job per tenant; Ray spreads their tasks).

        Returns:
            Per tenant, its run record, or ``{"error": "..."}`` when its job failed (the others go on;
            a failed tenant keeps its last good themes).
        """
        from concurrent.futures import ThreadPoolExecutor

        names = list(tenants) if tenants else [t["name"] for t in self.tenants()]

        def one(name: str) -> dict[str, Any]:
            try:
                return self.for_tenant(name).cluster(progress, show_bar, engine, ray_address, ray=ray)
            except Exception as exc:  # noqa: BLE001 - reported per tenant; the other tenants' jobs go on
                return {"error": f"{type(exc).__name__}: {exc}"}

        if engine != "ray" or len(names) < 2:
            return {name: one(name) for name in names}
        from idesluss.themes_service import ray_options
        from pipelines.themes.ray_engine import _connected

        with _connected(ray or ray_options(self.settings, ray_address)), ThreadPoolExecutor(len(names)) as pool:
            return dict(zip(names, pool.map(one, names)))

    def themes(self, with_members: bool = False) -> list[dict[str, Any]]:
        """The current themes, largest first (DESIGN.md shape), with trend summaries."""
        return self._themes.themes(with_members)

    def theme_detail(self, theme_id: str) -> dict[str, Any]:
        """One theme: keywords, representatives (masked texts), trend and members."""
        return self._themes.theme_detail(theme_id, self.theme_trends())

    def theme_trends(self) -> dict[str, dict[str, Any]]:
        """Every current theme's trend, computed once per theme run and write (a pass over its members)."""
        return self.cached("theme-trends", self.store.trends.theme_trends)

    def theme_page(self, theme_id: str) -> dict[str, Any]:
        """One theme's page: its summary row, its detail and its needs that no idea is confirmed to answer,
        all of one theme run (read again when a run was switched in between).

        Raises:
            NotFound: no such theme in the current run.
        """
        for _ in range(3):
            run = self.store.themes.current_run_id()
            detail = self._themes.theme_detail(theme_id, self.theme_trends(), idea_members=False)
            row = next((t for t in self.cached("themes", self.themes) if t["id"] == theme_id), None)
            if self.store.themes.current_run_id() == run:
                break
        if row is None:
            raise NotFound(f"no theme with id {theme_id!r} in the current run")
        answered = self.store.feedback.confirmed_needs(detail["need_members"])
        open_needs = [n for n in detail["need_members"] if n not in answered]
        records = {r.id: r for r in self.store.records("needs", open_needs)}
        unmet = [{"id": i, "title": records[i].title or records[i].text[:120]} for i in open_needs if i in records]
        return {"row": row, "detail": detail, "unmet": unmet}

    def curate(
        self,
        action: str,
        actor: str,
        theme_id: str,
        other_theme_id: str | None = None,
        kind: str | None = None,
        item_id: str | None = None,
        name: str | None = None,
    ) -> str:
        """Rename, merge, move or pin; applied now and respected by every later run."""
        return self._writer.run(self._themes.curate, action, actor, theme_id, other_theme_id, kind, item_id, name)

    def overview(self) -> dict[str, Any]:
        """Everything the leadership overview draws, for the current run (aggregates and titles only)."""
        return self._themes.overview()

    def provisional_theme(self, text: str | None = None, vector: Any = None) -> dict[str, Any] | None:
        """Nearest current theme for a new text, when it clears that theme's threshold."""
        return self._themes.provisional_theme(text=text, vector=vector)

    def theme_runs(self, page: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
        """One page of theme-run records, newest first, and how many runs there are."""
        return self._themes.theme_runs(page, page_size)

    # -- administration (writes: erase, restore, keys) ------------------------------------
    def erase(self, kind: str, item_id: str, actor: str) -> None:
        """Erase one record everywhere (store, vectors, links, index, saved index, file bytes); :class:`NotFound` if none."""
        if kind == "ideas":
            self._inbox.forget(item_id)  # inbox: its precomputed row goes before the erasure's compaction
        self._writer.run(self._admin.erase, kind, item_id, actor)

    def compact_if_due(self) -> bool:
        """Compact the database when an erasure asked for it; True when nothing is left to do."""
        return self._writer.run(self._admin.compact_if_due)

    def checkpoint(self) -> None:
        """Fold the database's WAL into its file."""
        self._admin.checkpoint()

    def backup(self, target: str | Path, actor: str = "cli") -> Path:
        """A consistent copy of the database, taken while the service keeps serving (audited)."""
        return self._writer.run(self._admin.backup, target, actor=actor)

    def restore(self, source: str | Path, actor: str = "cli") -> None:
        """Bring back a backup: the database (every tenant's schema) is replaced and each tenant's open
        index rebuilt from it (audited in this tenant)."""

        def write() -> None:
            self._admin.restore(source, actor=actor)
            for svc in list(self._family.values()):
                if svc is not self:
                    svc._index.rebuild_if_built()
                    svc._answers.changed()

        self._writer.run(write)

    def create_key(
        self, role: str, name: str, actor: str | None = None, region: list[str] | None = None
    ) -> tuple[str, str]:
        """Create an API key of this tenant; returns (key id, the full key). Audited when ``actor`` is given.
        A ``region`` key names the tenants whose shared ideas its overview spans."""
        return self._writer.run(self._admin.create_key, role, name, actor=actor, region=region)

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key, oldest first, without secrets or hashes."""
        return self._admin.list_keys()

    def revoke_key(self, key_id: str, actor: str | None = None) -> bool:
        """Revoke a key; False when there is no live key with that id. Audited when ``actor`` is given."""
        return self._writer.run(self._admin.revoke_key, key_id, actor=actor)

    def verify_key(self, presented: str, read: bool = True) -> Any:
        """The key's id, name and role when ``presented`` is a live key, else None (``read`` False:
        ``store.keys.NOT_REMEMBERED`` for a key not remembered, instead of reading its row)."""
        return self._admin.verify_key(presented, read)

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest audit entries (who did what to which id, never content)."""
        return self._admin.audit_log(limit)

    # -- cached answers -------------------------------------------------------------------
    def cached(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, remembered until the theme run changes or anything is written."""
        return self._answers.cached(name, compute)
