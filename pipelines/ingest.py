"""Ingest a file of ideas or needs: validate, mask, store in batches, embed what is new."""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from models.encoder import TextEncoder
from pipelines.embed import Write, _direct, encode_missing, vector_key, with_late_vectors
from pipelines.masking import mask
from pipelines.records import DEFAULT_MAX_FILE_BYTES, RowError, parse_file
from store import Record, Store
from store.db import UpsertResult


@dataclass
class IngestReport:
    """Summary of one ingest."""

    kind: str
    path: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    embedded: int = 0
    errors: list[RowError] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    @property
    def stored(self) -> int:
        """Rows accepted (inserted, updated or unchanged)."""
        return self.inserted + self.updated + self.unchanged

    def summary(self) -> str:
        """One paragraph for a terminal."""
        lines = [
            f"{self.path}: {self.stored} {self.kind} accepted ({self.inserted} new, {self.updated} updated, "
            f"{self.unchanged} unchanged), {len(self.errors)} rejected, {self.embedded} texts embedded"
        ]
        lines += [f"  rejected {e}" for e in self.errors]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "path": self.path,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "embedded": self.embedded,
            "errors": [{"line": e.line, "id": e.id, "reason": e.reason} for e in self.errors],
        }


def _store_batch(
    store: Store,
    kind: str,
    records: Sequence[Record],
    key: str,
    vectors: tuple[list[str], np.ndarray],
    on_stored: Callable[[Sequence[Record]], None] | None,
    encoder: TextEncoder | None = None,
) -> UpsertResult:
    """One batch's write step: its rows, its new vectors, and the index told."""
    if encoder is not None:
        vectors = with_late_vectors(store, encoder, records, vectors)
    res = store.upsert_records(kind, records)
    hashes, matrix = vectors
    if hashes:
        store.put_embeddings(key, hashes, matrix)
    if on_stored is not None:
        on_stored(records)
    return res


def ingest_file(
    store: Store,
    kind: str,
    path: str | Path,
    encoder: TextEncoder | None = None,
    batch_size: int = 256,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    today: date | None = None,
    allowed_attributes: Collection[str] = (),
    shown_path: str | None = None,
    write: Write = _direct,
    on_stored: Callable[[Sequence[Record]], None] | None = None,
    show_bar: bool | None = None,
    pace: Callable[[], None] | None = None,
) -> IngestReport:
    """Store the valid rows of a file batch by batch, each with the vectors of its new or changed texts.

    Each batch is parsed, masked and encoded here, then handed to ``write`` as one short step:
    its rows and vectors stored (one transaction each) and ``on_stored`` told (the service adds
    them to its index there, so a batch shows in searches whole or not at all). A file
    interrupted midway keeps the batches it finished.

    Args:
        store: the open store.
        kind: "ideas" or "needs".
        path: a .csv, .jsonl or .json file.
        encoder: when given, new and changed texts are embedded after storing.
        batch_size: rows per transaction.
        max_bytes: file size limit.
        today: the date after which created_at is "in the future" (tests).
        allowed_attributes: extra columns to keep (masked); every other unknown column is dropped.
        shown_path: the name reported and recorded for the file (an upload's own name, not a temp path).
        write: runs each batch's store step (the service's single writer; a direct call by default).
        on_stored: called with each stored batch, inside its write step.
        show_bar: a progress bar of rows read and stored (default: when stderr is a terminal).
        pace: called after each stored batch (a server rests there while coaches' searches run).

    Raises:
        pipelines.records.FileRejected: when the file as a whole cannot be read.
    """
    report = IngestReport(kind=kind, path=mask(shown_path or str(path)).text)
    pending: list[Record] = []

    key = vector_key(encoder.model_id) if encoder is not None else ""
    no_vectors: tuple[list[str], np.ndarray] = ([], np.zeros((0, 0), np.float32))

    def flush() -> None:
        if pending:
            vectors = encode_missing(store, encoder, pending) if encoder is not None else no_vectors
            res = write(_store_batch, store, kind, list(pending), key, vectors, on_stored, encoder)
            report.embedded += len(vectors[0])
            report.inserted += res.inserted
            report.updated += res.updated
            report.unchanged += res.unchanged
            report.ids.extend(r.id for r in pending)
            pending.clear()
            if pace is not None:
                pace()

    bar = None
    if show_bar if show_bar is not None else sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(desc=f"inläsning av {kind}", unit=" rader", file=sys.stderr)
    for item in parse_file(path, max_bytes=max_bytes, today=today, allowed_attributes=allowed_attributes):
        if bar is not None:
            bar.update(1)
        if isinstance(item, RowError):
            report.errors.append(item)
            continue
        pending.append(item)
        if len(pending) >= batch_size:
            flush()
    flush()
    if bar is not None:
        bar.close()
    run_id = write(store.start_run, "ingest", {"kind": kind, "path": report.path})
    write(store.finish_run, run_id, "ok" if not report.errors else "partial", report.as_dict())
    return report
