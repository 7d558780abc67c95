"""Parsing and validation of idea and need files (.csv, .jsonl, .json).

Rows are streamed; each is validated on its own and either becomes a :class:`store.Record`
(text masked) or a :class:`RowError` naming its line and the reason. A file-level problem
(unknown format, too large, missing columns) raises :class:`FileRejected` before any row is read.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipelines.masking import mask
from store import Record

KNOWN_FIELDS = (
    "id",
    "text",
    "title",
    "created_at",
    "department",
    "status",
    "outcome",
    "source",
    "contact_ref",
    "shared",
)
META_FIELDS = ("department", "status", "outcome", "source", "contact_ref")
REQUIRED = ("id", "text")
MAX_TEXT_CHARS = 20_000
MAX_TITLE_CHARS = 500
MAX_ID_CHARS = 200
MAX_ATTRIBUTE_CHARS = 2_000
DEFAULT_MAX_FILE_BYTES = 200 * 1024 * 1024


class FileRejected(ValueError):
    """The whole file cannot be read (format, size, encoding of the header, missing columns)."""


@dataclass(frozen=True)
class RowError:
    """A rejected row: where and why."""

    line: int
    reason: str
    id: str | None = None

    def __str__(self) -> str:
        who = f" (id {self.id})" if self.id else ""
        return f"line {self.line}{who}: {self.reason}"


def embed_text(title: str | None, text: str) -> str:
    """The text that is embedded and indexed for a record: its title, then its text."""
    if title and not text.startswith(title):
        return f"{title}. {text}"
    return text


def text_hash(text: str) -> str:
    """Stable hash of an embedded text (the embedding cache key together with the model id)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_date(value: Any, today: date | None = None) -> datetime | None:
    """Parse an ISO 8601 date or date-time; reject unparseable values and dates in the future.

    Raises:
        ValueError: naming the problem.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValueError(f"created_at must be an ISO 8601 date string, got {type(value).__name__}")
    raw = value.strip()
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"created_at {mask(raw[:60]).text!r} is not an ISO 8601 date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    limit = today or datetime.now(UTC).date()
    if parsed.date() > limit:
        raise ValueError(f"created_at {parsed.date().isoformat()} is in the future")
    return parsed


def _clean_str(row: dict[str, Any], key: str, limit: int) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise ValueError(f"{key} must be text, got {type(value).__name__}")
    text = str(value).strip()
    if max(text, default="") >= "\udc80" and any("\udc80" <= ch <= "\udcff" for ch in text):
        raise ValueError(f"{key} is not valid UTF-8")
    if len(text) > limit:
        raise ValueError(f"{key} is {len(text)} characters, over the limit of {limit}")
    return text or None


_TRUE = {"true", "1", "yes", "ja", "sant"}
_FALSE = {"false", "0", "no", "nej", "falskt"}


def parse_shared(value: Any) -> bool | None:
    """The ``shared`` field: true/false (also 1/0, yes/no, ja/nej; JSON booleans); empty means the tenant's default.

    Raises:
        ValueError: any other value, named.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text == "":
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    shown = str(value)[:20] if isinstance(value, (str, int)) else type(value).__name__
    raise ValueError(f"shared must be true or false, got {shown!r}")


def _masked(value: str | None) -> str | None:
    return mask(value).text if value else value


def _attributes(row: dict[str, Any], allowed: Collection[str]) -> dict[str, str]:
    """Allow-listed extra columns only, each as masked text; every other column is dropped unread."""
    out: dict[str, str] = {}
    for key in allowed:
        value = row.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, (dict, list)):
            raise ValueError(f"{key} must be text or a number, got {type(value).__name__}")
        text = _clean_str({key: str(value)}, key, MAX_ATTRIBUTE_CHARS)
        if text:
            out[key] = mask(text).text
    return out


def validate_row(row: dict[str, Any], today: date | None = None, allowed_attributes: Collection[str] = ()) -> Record:
    """Turn one raw row into a :class:`Record` whose every text-bearing field is masked.

    Unknown columns are dropped unless named in ``allowed_attributes`` (then masked too). An id
    that holds personal data is refused rather than masked: two masked ids could collide, and an
    id is shown and logged everywhere.

    Raises:
        ValueError: naming the field and the problem (never echoing personal data).
    """
    if not isinstance(row, dict):
        raise ValueError(f"a record must be an object, got {type(row).__name__}")
    rid = row.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise ValueError("id is missing" if rid is None else f"id must be a string, got {type(rid).__name__}")
    rid = _clean_str({"id": rid}, "id", MAX_ID_CHARS)
    if not rid:
        raise ValueError("id is empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in rid):
        raise ValueError("id contains a control character")
    id_mask = mask(rid)
    if id_mask.changed:
        found = ", ".join(k for k, n in id_mask.counts.items() if n)
        raise ValueError(f"id contains personal data ({found}); use an opaque id from the source system")
    raw_text = row.get("text")
    if raw_text is None:
        raise ValueError("text is missing")
    if not isinstance(raw_text, str):
        raise ValueError(f"text must be a string, got {type(raw_text).__name__}")
    text = _clean_str(row, "text", MAX_TEXT_CHARS)
    if not text:
        raise ValueError("text is empty")
    title = _masked(_clean_str(row, "title", MAX_TITLE_CHARS))
    created = parse_date(row.get("created_at"), today)
    fields = {k: _masked(_clean_str(row, k, MAX_TITLE_CHARS)) for k in META_FIELDS}
    shared = parse_shared(row.get("shared"))
    masked_text = mask(text).text
    return Record(
        id=rid,
        text=masked_text,
        title=title,
        created_at=created,
        shared=shared,
        embed_hash=text_hash(embed_text(title, masked_text)),
        attributes=_attributes(row, allowed_attributes),
        **fields,
    )


class TooDeep(ValueError):
    """JSON nested too deeply to parse (a record is flat; deep nesting is an attack or an error)."""


def loads_bounded(text: str) -> Any:
    """``json.loads`` that turns pathological nesting into :class:`TooDeep` instead of a RecursionError.

    Raises:
        TooDeep: the text nests arrays or objects too deeply to parse.
        json.JSONDecodeError: malformed JSON.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise TooDeep("JSON nested too deeply to read; a record is a flat object") from None


def _decoded_lines(path: Path) -> Iterator[str]:
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        yield from fh


def _csv_rows(path: Path, max_field: int) -> Iterator[tuple[int, dict[str, Any]]]:
    lines = _decoded_lines(path)
    header_line = next(lines, "")
    if not header_line.strip():
        raise FileRejected(f"{path}: the file is empty (no header row)")
    counts = {d: header_line.count(d) for d in (";", ",", "\t")}
    delimiter = max(counts, key=lambda d: counts[d])
    header = next(csv.reader(io.StringIO(header_line), delimiter=delimiter))
    header = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        hints = []
        for col in missing:
            close = difflib.get_close_matches(col, header, n=1, cutoff=0.6)
            hints.append(f"{col!r}" + (f" (did you mean to name {close[0]!r} {col!r}?)" if close else ""))
        raise FileRejected(f"{path}: missing required column(s) {', '.join(hints)}; the header has {header}")
    # A field is bounded by the file limit, not by csv's 131,072 characters: an over-long text is
    # then reported on its own line by validation instead of ending the whole file.
    csv.field_size_limit(max(csv.field_size_limit(), max_field))
    reader = csv.reader(lines, delimiter=delimiter)
    line = 2
    while True:
        start = line
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = reader.line_num + 2
            yield start, {"__error__": f"unreadable CSV row ({exc})"}
            continue
        line = reader.line_num + 2
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(header):
            yield start, {"__error__": f"{len(values)} fields but the header has {len(header)}"}
            continue
        yield start, dict(zip(header, values))


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(_decoded_lines(path), start=1):
        if not line.strip():
            continue
        if any("\udc80" <= ch <= "\udcff" for ch in line):
            yield number, {"__error__": "not valid UTF-8"}
            continue
        try:
            yield number, loads_bounded(line)
        except json.JSONDecodeError as exc:
            yield number, {"__error__": f"malformed JSON ({exc.msg} at column {exc.colno})"}
        except TooDeep as exc:
            yield number, {"__error__": str(exc)}


def _json_rows(path: Path, max_bytes: int) -> Iterator[tuple[int, dict[str, Any]]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise FileRejected(f"{path}: not valid UTF-8 (line {line}); save the file as UTF-8") from None
    try:
        data = loads_bounded(text)
    except json.JSONDecodeError as exc:
        raise FileRejected(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except TooDeep as exc:
        raise FileRejected(f"{path}: {exc}") from None
    if not isinstance(data, list):
        raise FileRejected(f"{path}: a .json file must hold an array of records")
    # Items of a JSON array have no line of their own; the item's position is reported instead.
    yield from enumerate(data, start=1)


def read_rows(path: str | Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream (line number, raw row) pairs from a .csv, .jsonl or .json file.

    Raises:
        FileRejected: unknown extension, missing file, over ``max_bytes``, or a bad header.
    """
    p = Path(path)
    if not p.is_file():
        raise FileRejected(f"{p}: no such file")
    size = p.stat().st_size
    if size > max_bytes:
        raise FileRejected(f"{p}: {size:,} bytes is over the limit of {max_bytes:,} bytes (IDESLUSS_MAX_FILE_BYTES)")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _csv_rows(p, max_bytes)
    if suffix == ".jsonl":
        return _jsonl_rows(p)
    if suffix == ".json":
        json_limit = min(max_bytes, 50 * 1024 * 1024)
        if size > json_limit:
            raise FileRejected(f"{p}: a .json array over {json_limit:,} bytes must be sent as .jsonl")
        return _json_rows(p, json_limit)
    raise FileRejected(f"{p}: unknown file type {suffix!r}; use .csv, .jsonl or .json")


def parse_file(
    path: str | Path,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    today: date | None = None,
    allowed_attributes: Collection[str] = (),
) -> Iterator[Record | RowError]:
    """Validated records and row errors, in file order; duplicate ids after the first are errors.

    A row error never carries personal data: its reason and id pass the same masking as the text.
    """
    seen: dict[str, int] = {}
    for line, row in read_rows(path, max_bytes):
        if isinstance(row, dict) and "__error__" in row:
            yield RowError(line, mask(str(row["__error__"])).text)
            continue
        try:
            rec = validate_row(row, today, allowed_attributes)
        except ValueError as exc:
            rid = row.get("id") if isinstance(row, dict) else None
            shown = (
                mask(str(rid)[:MAX_ID_CHARS]).text
                if isinstance(rid, (str, int)) and not isinstance(rid, bool)
                else None
            )
            yield RowError(line, mask(str(exc)).text, shown)
            continue
        if rec.id in seen:
            yield RowError(line, f"duplicate id {rec.id!r} (first on line {seen[rec.id]})", rec.id)
            continue
        seen[rec.id] = line
        yield rec
