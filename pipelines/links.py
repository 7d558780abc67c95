"""Bulk import of past idea-need decisions (``idesluss ingest links FILE``).

A file (.csv, .jsonl or .json) has the columns ``idea_id``, ``need_id`` and ``state``
(``confirmed`` or ``rejected``). Each row is validated on its own: ids as for ideas and needs
(text, at most 200 characters, no control characters, no personal data), the state, and that the
idea and the need are stored. Rows that fail are reported with their line and reason and not
stored; the valid rows are stored together in one transaction, so a failure leaves nothing
half-written. A later decision on the same pair replaces an earlier one, as a coach's does.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.masking import mask
from pipelines.records import DEFAULT_MAX_FILE_BYTES, MAX_ID_CHARS, FileRejected, RowError, read_rows
from store import Store
from store.feedback import LINK_STATES, _set_link

LINK_COLUMNS = ("idea_id", "need_id", "state")


@dataclass(frozen=True)
class Link:
    """One valid decision from a file."""

    line: int
    idea_id: str
    need_id: str
    state: str


@dataclass
class LinksReport:
    """Summary of one links import."""

    path: str
    stored: int = 0
    confirmed: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for a terminal."""
        lines = [
            f"{self.path}: {self.stored} links accepted ({self.confirmed} confirmed, {self.rejected} rejected), "
            f"{len(self.errors)} rejected rows"
        ]
        lines += [f"  rejected {e}" for e in self.errors]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": "links",
            "path": self.path,
            "stored": self.stored,
            "confirmed": self.confirmed,
            "rejected": self.rejected,
            "errors": [{"line": e.line, "id": e.id, "reason": e.reason} for e in self.errors],
        }


def check_id(value: Any, name: str) -> str:
    """An id as ideas and needs have them: text or a whole number, trimmed, bounded, no personal data.

    Raises:
        ValueError: naming the field and the problem (never echoing personal data).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{name} is missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        raise ValueError(f"{name} is not valid UTF-8")
    if len(text) > MAX_ID_CHARS:
        raise ValueError(f"{name} is {len(text)} characters, over the limit of {MAX_ID_CHARS}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValueError(f"{name} contains a control character")
    masked = mask(text)
    if masked.changed:
        found = ", ".join(k for k, n in masked.counts.items() if n)
        raise ValueError(f"{name} contains personal data ({found}); use the opaque id of the source system")
    return text


def check_state(value: Any) -> str:
    """``confirmed`` or ``rejected`` (case and surrounding spaces ignored)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("state is missing")
    state = str(value).strip().lower()
    if state not in LINK_STATES:
        raise ValueError(f"state must be one of {', '.join(LINK_STATES)}, got {mask(str(value)[:40]).text!r}")
    return state


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) pairs of a links .csv (``,``, ``;`` or tab, found from the header)."""
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        text = fh.read()
    lines = text.splitlines(keepends=True)
    if not lines or not lines[0].strip():
        raise FileRejected(f"{path}: the file is empty (no header row)")
    delimiter = max((";", ",", "\t"), key=lines[0].count)
    header = [h.strip().lower() for h in next(csv.reader(io.StringIO(lines[0]), delimiter=delimiter))]
    missing = [c for c in LINK_COLUMNS if c not in header]
    if missing:
        raise FileRejected(f"{path}: missing required column(s) {', '.join(missing)}; the header has {header}")
    reader = csv.reader(io.StringIO("".join(lines[1:])), delimiter=delimiter)
    start = 2
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, {"__error__": f"unreadable CSV row ({exc})"}
            start = reader.line_num + 2
            continue
        line, start = start, reader.line_num + 2
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(header):
            yield line, {"__error__": f"{len(values)} fields but the header has {len(header)}"}
            continue
        yield line, dict(zip(header, values))


def parse_links(path: str | Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Iterator[Link | RowError]:
    """Validated links and row errors in file order (ids not yet checked against the store).

    A pair repeated in the file is an error on its later line, as a repeated id is for ideas.

    Raises:
        FileRejected: the file as a whole cannot be read.
    """
    p = Path(path)
    if p.suffix.lower() == ".csv":
        if not p.is_file():
            raise FileRejected(f"{p}: no such file")
        if p.stat().st_size > max_bytes:
            raise FileRejected(f"{p}: {p.stat().st_size:,} bytes is over the limit of {max_bytes:,} bytes")
        rows = _csv_rows(p)
    else:
        rows = read_rows(p, max_bytes)  # .jsonl / .json, and the same errors for anything else
    seen: dict[tuple[str, str], int] = {}
    for line, row in rows:
        if isinstance(row, dict) and "__error__" in row:
            yield RowError(line, mask(str(row["__error__"])).text)
            continue
        if not isinstance(row, dict):
            yield RowError(line, f"a link must be an object, got {type(row).__name__}")
            continue
        try:
            idea_id = check_id(row.get("idea_id"), "idea_id")
            need_id = check_id(row.get("need_id"), "need_id")
            state = check_state(row.get("state"))
        except ValueError as exc:
            yield RowError(line, mask(str(exc)).text)
            continue
        if (idea_id, need_id) in seen:
            first = seen[(idea_id, need_id)]
            yield RowError(line, f"duplicate link {idea_id!r} -> {need_id!r} (first on line {first})", idea_id)
            continue
        seen[(idea_id, need_id)] = line
        yield Link(line, idea_id, need_id, state)


def _stored_ids(store: Store, kind: str, ids: set[str], chunk: int = 5000) -> set[str]:
    found: set[str] = set()
    ordered = sorted(ids)
    for start in range(0, len(ordered), chunk):
        found |= {r.id for r in store.records(kind, ordered[start : start + chunk])}
    return found


def ingest_links(
    store: Store,
    path: str | Path,
    actor: str = "cli",
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    shown_path: str | None = None,
) -> LinksReport:
    """Store the valid decisions of a file in one transaction; report every rejected row.

    Args:
        store: the open store.
        path: a .csv, .jsonl or .json file with idea_id, need_id, state.
        actor: recorded with each link and in the audit log (counts only).
        max_bytes: the file size limit.
        shown_path: the name reported for the file.

    Raises:
        FileRejected: the file as a whole cannot be read (nothing is stored).
    """
    report = LinksReport(path=mask(shown_path or str(path)).text)
    links: list[Link] = []
    for item in parse_links(path, max_bytes):
        if isinstance(item, RowError):
            report.errors.append(item)
        else:
            links.append(item)
    ideas = _stored_ids(store, "ideas", {link.idea_id for link in links})
    needs = _stored_ids(store, "needs", {link.need_id for link in links})
    valid: list[Link] = []
    for link in links:
        if link.idea_id not in ideas:
            report.errors.append(RowError(link.line, f"idea_id {link.idea_id!r} is not a stored idea", link.idea_id))
        elif link.need_id not in needs:
            report.errors.append(RowError(link.line, f"need_id {link.need_id!r} is not a stored need", link.idea_id))
        else:
            valid.append(link)
    report.errors.sort(key=lambda e: e.line)
    run_id = store.start_run("ingest", {"kind": "links", "path": report.path})
    if valid:
        with store.transaction() as con:  # all valid rows or none
            for link in valid:
                _set_link(con, link.idea_id, link.need_id, link.state, actor)
    report.stored = len(valid)
    report.confirmed = sum(link.state == "confirmed" for link in valid)
    report.rejected = report.stored - report.confirmed
    store.finish_run(run_id, "ok" if not report.errors else "partial", report.as_dict())
    store.audit.record(actor, f"ingest links: {report.stored} stored, {len(report.errors)} rejected", "links")
    return report
