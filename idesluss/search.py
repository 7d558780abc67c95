"""Searches for coaches: similar ideas, needs an idea answers, ideas for a need, and suggestions for a text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from idesluss import priority
from idesluss.index import Index
from idesluss.records import stored_record
from idesluss.resources import Resources
from idesluss.settings import Settings
from idesluss.themes_service import ThemeService
from matcher.collection import Item
from matcher.hybrid import Hit
from pipelines.embed import vector_key
from pipelines.masking import mask
from store import Store


@dataclass
class Query:
    """A search: a free text or a stored record id."""

    text: str | None = None
    id: str | None = None


class Search:
    """Read-only searches over the in-memory index, with coaches' verdicts applied.

    Args:
        settings: the service settings (duplicate threshold, theme model).
        store: the open store (query records, verdicts, current themes).
        resources: the service's encoders and fusion.
        index: the in-memory index searched.
        themes: the theme part (provisional themes of a new text).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        resources: Resources,
        index: Index,
        themes: ThemeService,
        shared_sources: Callable[[], list[tuple[str, Search, list[str]]]] = list,
    ) -> None:
        self.settings = settings
        self.store = store
        self._resources = resources
        self._index = index
        self._themes = themes
        self._shared_sources = shared_sources

    def similar(
        self,
        queries: Sequence[Query],
        k: int = 10,
        filters: dict[str, Any] | None = None,
        all_duplicates: bool = False,
        scope: str = "own",
    ) -> list[list[Hit]]:
        """Similar earlier ideas for each query (never the query idea itself).

        ``scope="shared"`` searches the ideas other municipalities share instead of the tenant's own.
        """
        if scope == "shared":
            texts = [self._query_text("ideas", q) for q in queries]
            vectors = self._resources.encoder.encode_queries(texts)
            targets = self._shared_targets(filters)
            with priority.searching():
                return [self._shared_similar(targets, t, vectors[i : i + 1], k) for i, t in enumerate(texts)]
        if scope != "own":
            raise ValueError(f"scope must be 'own' or 'shared', got {scope!r}")
        return self._search("ideas", "ideas", queries, k, filters, collapse=not all_duplicates)

    def _query_text(self, kind: str, q: Query) -> str:
        if q.id is not None:
            rec = stored_record(self.store, kind, q.id)
            return Item(id=rec.id, text=rec.text, title=rec.title).full_text
        text = (q.text or "").strip()
        if not text:
            raise ValueError("the search text is empty")
        return mask(text).text

    def _shared_targets(self, filters: dict[str, Any] | None) -> list[tuple[str, Any, dict[str, Any]]]:
        """(tenant, ideas snapshot, filters with its shared rows) of each tenant that shares ideas.

        Read before a search takes its slot: the first read of another tenant's index builds it.
        """
        out = []
        for tenant, search, codes in self._shared_sources():
            snapshot = search._index.collections()["ideas"].snapshot
            out.append((tenant, snapshot, {**(filters or {}), "shared": codes}))
        return out

    def _shared_similar(
        self, targets: list[tuple[str, Any, dict[str, Any]]], text: str, vector: Any, k: int
    ) -> list[Hit]:
        """The ideas other tenants share that are most like ``text``, each hit carrying its tenant.

        Each sharing tenant (``targets``, :meth:`_shared_targets`) is searched in its own index with
        only its shared rows allowed (the filter is applied before ranking, so an unshared idea is
        never a candidate, nor counted). Fused scores are relative to one collection, so the
        tenants' top hits are merged by their dense similarity, which is on one scale for all.
        Duplicate groups are not shown: they could name ideas the other tenant does not share.
        """
        matcher = self._resources.matcher()
        merged: list[Hit] = []
        for tenant, snapshot, allowed in targets:
            for hit in matcher.search_batch(snapshot, [text], k=k, vectors=vector, filters=allowed)[0]:
                hit.tenant = tenant
                hit.duplicate_group, hit.duplicate_count = [], 0  # its size would count unshared ideas too
                hit.pinned = False
                merged.append(hit)
        merged.sort(key=lambda h: (-h.dense, h.tenant or "", h.id))
        return merged[:k]

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
        hashes: list[str | None] = []  # a stored record's text hash (its cached query vector), None for a draft
        for q in queries:
            if q.id is not None:
                rec = stored_record(self.store, query_kind, q.id)
                texts.append(Item(id=rec.id, text=rec.text, title=rec.title).full_text)
                hashes.append(rec.embed_hash)
                exclude = {rec.id} if query_kind == target_kind else set()
                exclude |= self.store.feedback.rejected_targets(query_kind, rec.id, target_kind)
                pin: set[str] = set()
                if {query_kind, target_kind} == {"ideas", "needs"}:
                    key = (lambda pair: pair[1]) if query_kind == "ideas" else (lambda pair: pair[0])
                    found = (
                        self.store.feedback.links(idea_id=rec.id)
                        if query_kind == "ideas"
                        else self.store.feedback.links(need_id=rec.id)
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
                hashes.append(None)
        coll = self._index.collections()[target_kind]
        vectors = self._query_vectors(texts, hashes) if self._resources.matcher_config.dense_weight > 0 else None
        # the snapshot published last: no lock, and no write can change it under the search
        with priority.searching():
            return self._resources.matcher().search_batch(
                coll.snapshot,
                texts,
                k=k,
                vectors=vectors,
                filters=filters,
                exclude=excludes,
                pinned=pins,
                collapse_duplicates=collapse,
            )

    def _query_vectors(self, texts: list[str], hashes: list[str | None]) -> np.ndarray:
        """Query vectors of the texts: a stored record's from the store when the nightly job cached
        it (its query-prompt vector of the same text, by the text's hash), the rest encoded here."""
        encoder = self._resources.encoder
        known = [h for h in hashes if h is not None]
        stored = self.store.vectors_for(vector_key(encoder.model_id, "query"), known) if known else {}
        todo = [i for i, h in enumerate(hashes) if h not in stored]
        out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
        if todo:
            out[todo] = encoder.encode_queries([texts[i] for i in todo])
        for i, h in enumerate(hashes):
            if h is not None and h in stored:
                out[i] = stored[h]
        return out

    @staticmethod
    def query_text(text: str, title: str | None = None) -> str:
        """What a suggestion encodes and searches for a text and its title (masked).

        Raises:
            ValueError: nothing is left of the text.
        """
        masked = mask(text.strip()).text
        if not masked:
            raise ValueError("text: the idea text is empty")
        return Item(id="", text=masked, title=mask(title).text if title else None).full_text

    def suggest(
        self,
        text: str,
        title: str | None = None,
        k: int = 5,
        filters: dict[str, Any] | None = None,
        exclude_id: str | None = None,
        scope: str = "own",
        vector: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Similar ideas, needs, likely duplicates and the theme for one text, encoding it once.

        ``vector``: the query vector of :meth:`query_text` when the caller encoded it already.

        With ``scope="shared"`` the similar ideas are those other municipalities share (each with its
        tenant); needs, duplicates and the theme stay the tenant's own.
        """
        if scope not in ("own", "shared"):
            raise ValueError(f"scope must be 'own' or 'shared', got {scope!r}")
        full = self.query_text(text, title)
        vec = self._resources.encoder.encode_queries([full]) if vector is None else vector.reshape(1, -1)
        matcher = self._resources.matcher()
        colls = self._index.collections()
        exclude = [{exclude_id}] if exclude_id else None
        ideas = colls["ideas"].snapshot  # both idea searches read the same moment
        targets = self._shared_targets(filters) if scope == "shared" else []
        with priority.searching():
            if scope == "shared":
                similar = self._shared_similar(targets, full, vec, k)
            else:
                similar = matcher.search_batch(
                    ideas, [full], k=k, vectors=vec, filters=filters, exclude=exclude, collapse_duplicates=True
                )[0]
            # the near ones are read for their scores alone (duplicates)
            near = matcher.search_batch(ideas, [full], k=10, vectors=vec, exclude=exclude, explain=False)[0]
            needs = matcher.search_batch(colls["needs"].snapshot, [full], k=k, vectors=vec)[0]
        threshold = self.settings.duplicate_threshold
        duplicates = [h.id for h in near if h.dense >= threshold]
        theme = None
        if exclude_id:
            tid = self.store.themes.theme_of("ideas", exclude_id)
            if tid:
                label = next((t.label for t in self.store.themes.current_themes() if t.theme_id == tid), tid)
                theme = {"id": tid, "label": label, "provisional": False, "similarity": None}
        if theme is None:
            same_space = self.settings.theme_model == "same"
            theme = self._themes.provisional_theme(
                text=None if same_space else full, vector=vec[0] if same_space else None
            )
        return {"similar": similar, "needs": needs, "duplicates": duplicates, "theme": theme}
