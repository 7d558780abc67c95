"""Records and coaches' verdicts: ingest, new and changed ideas, pages, feedback, idea-need links.

Every write here is audited, tells the answer cache (``changed``) and, where it adds records,
updates a built index.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from idesluss.errors import Conflict, NotFound
from idesluss.index import Index
from idesluss.resources import Resources
from idesluss.settings import Settings
from pipelines.embed import embed_missing
from pipelines.ingest import IngestReport, ingest_file
from pipelines.masking import mask
from store import Record, Store


def stored_record(store: Store, kind: str, record_id: str) -> Record:
    """One stored record, or :class:`NotFound`."""
    rec = store.get_record(kind, record_id)
    if rec is None:
        raise NotFound(f"no {kind[:-1]} with id {record_id!r}")
    return rec


class RecordService:
    """Ideas and needs as coaches and files bring them in, and the verdicts coaches give.

    Args:
        settings: the service settings (file size limit, allow-listed attributes).
        store: the open store.
        resources: the service's encoders.
        index: the in-memory index, updated in place.
        compact_if_due: the admin part's compaction retry, run after a new or changed idea.
        changed: called after every write (cached answers are stale).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        resources: Resources,
        index: Index,
        compact_if_due: Callable[[], bool],
        changed: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.store = store
        self._resources = resources
        self._index = index
        self._compact_if_due = compact_if_due
        self._changed = changed

    def record(self, kind: str, record_id: str) -> Record:
        """One stored idea or need.

        Raises:
            NotFound: no such record.
        """
        return stored_record(self.store, kind, record_id)

    def ingest(self, kind: str, path: str | Path, actor: str = "cli", shown_path: str | None = None) -> IngestReport:
        """Ingest a file, embed what is new, and update a built index in place (audited: counts only)."""
        report = ingest_file(
            self.store,
            kind,
            path,
            encoder=self._resources.encoder,
            max_bytes=self.settings.max_file_bytes,
            allowed_attributes=self.settings.allowed_attributes,
            shown_path=shown_path,
        )
        self.store.audit.record(actor, f"ingest ({report.stored} stored, {len(report.errors)} rejected)", kind)
        self._changed()
        self._index.add_stored(kind, report.ids)
        return report

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

        old = self.record("ideas", idea_id)
        row = {**old.public(), **old.attributes, "contact_ref": old.contact_ref, **changes, "id": idea_id}
        rec = validate_row(row, allowed_attributes=self.settings.allowed_attributes)
        return self._store_idea(rec, actor, f"update {','.join(sorted(changes))}")

    def _store_idea(self, rec: Record, actor: str, action: str) -> Record:
        self.store.upsert_records("ideas", [rec])
        self.store.audit.record(actor, action, "ideas", rec.id)
        embed_missing(self.store, self._resources.encoder, records=[rec])
        self._index.add_records("ideas", [rec])
        self._compact_if_due()
        return rec

    def page(self, kind: str, page: int, page_size: int) -> tuple[list[Record], int]:
        """One page of records, ordered by id, and the total (both cut and counted by the database)."""
        return self.store.page(kind, page_size, (page - 1) * page_size), self.store.count(kind)

    def feedback(
        self, query_kind: str, query_id: str, target_kind: str, target_id: str, verdict: str, actor: str
    ) -> int:
        """Store a coach's verdict on a suggestion (``query_kind`` "draft" for an unsaved text)."""
        if query_kind != "draft":
            self.record(query_kind, query_id)
        else:  # a draft's id is whatever the client sent: masked like any free text
            query_id = mask(query_id).text
        self.record(target_kind, target_id)
        fid = self.store.feedback.add_feedback(query_kind, query_id, target_kind, target_id, verdict, actor)
        self._changed()
        self.store.audit.record(actor, f"feedback {verdict}", target_kind, target_id)
        return fid

    def set_link(self, idea_id: str, need_id: str, state: str, actor: str) -> None:
        """Confirm or reject an idea-need link (audited)."""
        self.record("ideas", idea_id)
        self.record("needs", need_id)
        self.store.feedback.set_need_link(idea_id, need_id, state, actor)
        self._changed()
        self.store.audit.record(actor, f"link {state} need {need_id}", "ideas", idea_id)
