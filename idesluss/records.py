"""Records and coaches' verdicts: ingest, new and changed ideas, pages, feedback, idea-need links.

Every write here is audited, tells the answer cache (``changed``) and, where it adds records,
updates a built index. The store-and-index half of each write runs on the service's single
writer (``write``); parsing, masking and encoding happen before, on the caller's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from idesluss.errors import Conflict, NotFound
from idesluss.index import Index
from idesluss.priority import Pacer, as_bulk
from idesluss.resources import Resources
from idesluss.settings import Settings
from pipelines.embed import Write, encode_missing, vector_key, with_late_vectors
from pipelines.ingest import IngestReport, ingest_file
from pipelines.masking import mask
from store import Record, Store

# the fields of an idea that the cached theme answers show (titles, departments, monthly trends)
SHOWN_IN_THEMES = frozenset({"title", "text", "department", "created_at"})


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
        write: runs a write on the service's single writer.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        resources: Resources,
        index: Index,
        compact_if_due: Callable[[], bool],
        changed: Callable[[], None],
        write: Write,
    ) -> None:
        self.settings = settings
        self.store = store
        self._resources = resources
        self._index = index
        self._compact_if_due = compact_if_due
        self._changed = changed
        self._write = write
        self.on_new_ideas: list[Callable[[list[str]], None]] = []  # run on the writer after new ideas land

    def record(self, kind: str, record_id: str) -> Record:
        """One stored idea or need.

        Raises:
            NotFound: no such record.
        """
        return stored_record(self.store, kind, record_id)

    def ingest(self, kind: str, path: str | Path, actor: str = "cli", shown_path: str | None = None) -> IngestReport:
        """Ingest a file batch by batch; each batch is stored and indexed as one write (audited: counts only)."""
        encoder = self._resources.encoder
        # parsing, masking and encoding run on a thread of lower priority: searches come first
        report = as_bulk(
            ingest_file,
            self.store,
            kind,
            path,
            encoder=encoder,
            max_bytes=self.settings.max_file_bytes,
            allowed_attributes=self.settings.allowed_attributes,
            shown_path=shown_path,
            write=self._write,
            on_stored=lambda records: self._stored(kind, records),
            pace=self._upload_pace(),
        )
        self._write(self._audit_ingest, report, actor)
        return report

    def _upload_pace(self) -> Pacer | None:
        """An upload's pace: ``bulk_share`` of one core while coaches' searches run (the batcher counts
        them), full speed otherwise; None where no batcher serves requests (the CLI, on the file).

        Lower priority alone leaves the upload's interpreter-bound parts (parsing, masking) in the
        searches' way; the pace bounds them.
        """
        served = self._resources.requests_served()
        return Pacer(self.settings.bulk_share, activity=served) if served is not None else None

    def _stored(self, kind: str, records: Sequence[Record], keep_cache: bool = False) -> None:
        """On the writer, inside a batch's write: index the batch and tell whoever waits for new ideas.

        Cached answers (themes, overview: one theme run's members) are kept for a new idea (it
        joins a theme at the next run) and a change of fields they do not show (status, outcome);
        a change of what they show (``SHOWN_IN_THEMES``) or a file makes them stale.
        """
        if not keep_cache:
            self._changed()
        self._index.add_records(kind, records)
        if kind == "ideas":
            for hook in self.on_new_ideas:
                hook([r.id for r in records])

    def _audit_ingest(self, report: IngestReport, actor: str) -> None:
        self.store.audit.record(actor, f"ingest ({report.stored} stored, {len(report.errors)} rejected)", report.kind)

    def add_idea(self, row: dict[str, Any], actor: str) -> Record:
        """Validate, mask, store and index one new idea (audited).

        Raises:
            Conflict: an idea with this id exists (change it with :meth:`update_idea`).
        """
        from pipelines.records import validate_row

        rec = validate_row(row, allowed_attributes=self.settings.allowed_attributes)
        if self.store.get_record("ideas", rec.id) is not None:  # early answer; checked again on the writer
            raise Conflict(f"an idea with id {rec.id!r} exists; send PATCH /ideas/{{id}} to change it")
        vectors = encode_missing(self.store, self._resources.encoder, [rec])
        return self._write(self._commit_new, rec, vectors, actor)

    def _commit_new(self, rec: Record, vectors: tuple[list[str], Any], actor: str) -> Record:
        if self.store.get_record("ideas", rec.id) is not None:
            raise Conflict(f"an idea with id {rec.id!r} exists; send PATCH /ideas/{{id}} to change it")
        return self._commit("ideas", rec, vectors, actor, "create", keep_cache=True)

    def update_idea(self, idea_id: str, changes: dict[str, Any], actor: str) -> Record:
        """Change the given fields of a stored idea (the rest are kept); masked and audited.

        The fields are merged with the stored idea on the writer, so two changes of different
        fields sent at the same time both hold.

        Raises:
            NotFound: no such idea.
        """
        draft = self._merged(idea_id, changes)
        vectors = encode_missing(self.store, self._resources.encoder, [draft])
        return self._write(self._commit_update, idea_id, changes, vectors, actor)

    def _merged(self, idea_id: str, changes: dict[str, Any]) -> Record:
        from pipelines.records import validate_row

        old = self.record("ideas", idea_id)
        row = {**old.public(), **old.attributes, "contact_ref": old.contact_ref, **changes, "id": idea_id}
        return validate_row(row, allowed_attributes=self.settings.allowed_attributes)

    def _commit_update(
        self, idea_id: str, changes: dict[str, Any], vectors: tuple[list[str], Any], actor: str
    ) -> Record:
        rec = self._merged(idea_id, changes)  # the text may have changed again since it was encoded
        shown = bool(set(changes) & SHOWN_IN_THEMES)
        return self._commit("ideas", rec, vectors, actor, f"update {','.join(sorted(changes))}", keep_cache=not shown)

    def _commit(
        self,
        kind: str,
        rec: Record,
        vectors: tuple[list[str], Any],
        actor: str,
        action: str,
        keep_cache: bool = False,
    ) -> Record:
        """On the writer: store the record and its vector, audit, index, and compact if an erasure asked."""
        vectors = with_late_vectors(self.store, self._resources.encoder, [rec], vectors)
        self.store.upsert_records(kind, [rec])
        hashes, matrix = vectors
        if hashes:
            self.store.put_embeddings(vector_key(self._resources.encoder.model_id), hashes, matrix)
        self.store.audit.record(actor, action, kind, rec.id)
        self._stored(kind, [rec], keep_cache=keep_cache)
        self._compact_if_due()
        return rec

    def page(self, kind: str, page: int, page_size: int, after: str | None = None) -> tuple[list[Record], int]:
        """One page of records, ordered by id, and the total (both cut and counted by the database).

        With ``after`` (the last id of the previous page) the page is the ``page_size`` records
        after that id, at a cost that does not grow with how far into the list it lies. A page
        number costs the same where the index is built: it knows the id at the page's position
        (:class:`~idesluss.index.IdOrder`).
        """
        if after is not None:
            return self.store.page_after(kind, page_size, after), self.store.count(kind)
        offset = (page - 1) * page_size
        total = self.store.count(kind)
        if self._index.id_count(kind) != total:  # no index in this process (a CLI on the file), or
            # a write between the database and the index: the database counts the offset
            return self.store.page(kind, page_size, offset), total
        # the index knows the page's first id: the database reads from it, skipping nothing
        first = self._index.id_at(kind, offset)
        rows = self.store.page_after(kind, page_size, first, inclusive=True) if first is not None else []
        return rows, total

    def feedback(
        self, query_kind: str, query_id: str, target_kind: str, target_id: str, verdict: str, actor: str
    ) -> int:
        """Store a coach's verdict on a suggestion (``query_kind`` "draft" for an unsaved text)."""
        if query_kind != "draft":
            self.record(query_kind, query_id)
        else:  # a draft's id is whatever the client sent: masked like any free text
            query_id = mask(query_id).text
        self.record(target_kind, target_id)
        return self._write(self._commit_feedback, query_kind, query_id, target_kind, target_id, verdict, actor)

    def _commit_feedback(
        self, query_kind: str, query_id: str, target_kind: str, target_id: str, verdict: str, actor: str
    ) -> int:
        fid = self.store.feedback.add_feedback(query_kind, query_id, target_kind, target_id, verdict, actor)
        self.store.audit.record(actor, f"feedback {verdict}", target_kind, target_id)
        return fid

    def set_link(self, idea_id: str, need_id: str, state: str, actor: str) -> None:
        """Confirm or reject an idea-need link (audited)."""
        self.record("ideas", idea_id)
        self.record("needs", need_id)
        self._write(self._commit_link, idea_id, need_id, state, actor)

    def _commit_link(self, idea_id: str, need_id: str, state: str, actor: str) -> None:
        self.store.feedback.set_need_link(idea_id, need_id, state, actor)
        self._changed()
        self.store.audit.record(actor, f"link {state} need {need_id}", "ideas", idea_id)
