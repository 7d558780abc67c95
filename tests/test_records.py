from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.records import FileRejected, RowError, parse_file, validate_row
from store import Record

TODAY = date(2026, 11, 29)


def _parse(path: Path) -> tuple[list[Record], list[RowError]]:
    items = list(parse_file(path, today=TODAY))
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, RowError)]


def test_semicolon_csv_with_bom_and_attributes(tmp_path: Path) -> None:
    p = tmp_path / "ideer.csv"
    p.write_text("\ufeffid;title;text;created_at;kontakt\n1;Cykel;Bygg cykelbana;2025-03-01;Kim\n", encoding="utf-8")
    recs, errs = _parse(p)
    assert not errs
    assert recs[0].id == "1" and recs[0].title == "Cykel" and recs[0].attributes == {"kontakt": "Kim"}
    assert recs[0].created_at.year == 2025


def test_comma_csv_with_quoted_multiline_field_reports_right_lines(tmp_path: Path) -> None:
    p = tmp_path / "ideer.csv"
    p.write_text('id,text\n1,"rad ett\nfortsätter"\n2,\n3,ok\n', encoding="utf-8")
    recs, errs = _parse(p)
    assert [r.id for r in recs] == ["1", "3"]
    assert recs[0].text == "rad ett\nfortsätter"
    assert errs == [RowError(4, "text is empty", "2")]


def test_bad_rows_named_and_valid_rows_kept(tmp_path: Path) -> None:
    p = tmp_path / "ideer.jsonl"
    lines = [
        {"id": "a", "text": "bra idé"},
        {"id": "b", "text": "   "},
        {"text": "saknar id"},
        {"id": "c", "text": "datum", "created_at": "igår"},
        {"id": "d", "text": "framtid", "created_at": "2030-01-01"},
        {"id": "a", "text": "dubblett"},
        {"id": "e", "text": 5},
        {"id": "f", "text": "x" * 20_001},
    ]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n{trasig json\n", encoding="utf-8")
    recs, errs = _parse(p)
    assert [r.id for r in recs] == ["a"]
    reasons = {e.line: e.reason for e in errs}
    assert reasons[2] == "text is empty"
    assert reasons[3] == "id is missing"
    assert "not an ISO 8601 date" in reasons[4]
    assert "in the future" in reasons[5]
    assert reasons[6] == "duplicate id 'a' (first on line 1)"
    assert "text must be a string" in reasons[7]
    assert "over the limit of 20000" in reasons[8]
    assert "malformed JSON" in reasons[9]


def test_invalid_utf8_line_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "ideer.jsonl"
    p.write_bytes(b'{"id": "1", "text": "ok"}\n{"id": "2", "text": "\xff\xfe fel"}\n')
    recs, errs = _parse(p)
    assert [r.id for r in recs] == ["1"]
    assert errs[0].line == 2 and "UTF-8" in errs[0].reason


def test_missing_and_misspelled_columns_are_named(tmp_path: Path) -> None:
    p = tmp_path / "ideer.csv"
    p.write_text("id;txt;title\n1;a;b\n", encoding="utf-8")
    with pytest.raises(FileRejected) as exc:
        list(parse_file(p))
    assert "'text'" in str(exc.value) and "'txt'" in str(exc.value)


def test_file_size_limit_refuses_before_reading(tmp_path: Path) -> None:
    p = tmp_path / "stor.jsonl"
    with p.open("wb") as fh:
        fh.truncate(5_000_000)
    with pytest.raises(FileRejected, match="over the limit"):
        list(parse_file(p, max_bytes=1_000_000))


def test_json_array_and_unknown_extension(tmp_path: Path) -> None:
    p = tmp_path / "ideer.json"
    p.write_text(json.dumps([{"id": 1, "text": "hej"}, {"id": 2}]), encoding="utf-8")
    recs, errs = _parse(p)
    assert [r.id for r in recs] == ["1"] and errs[0].line == 2
    xlsx = tmp_path / "x.xlsx"
    xlsx.write_bytes(b"PK")
    with pytest.raises(FileRejected, match="unknown file type"):
        list(parse_file(xlsx))


def test_personal_data_masked_and_original_kept_apart() -> None:
    rec = validate_row({"id": "1", "text": "Ring 070-123 45 67"}, TODAY)
    assert rec.text == "Ring [telefonnummer]"
    assert rec.original_text == "Ring 070-123 45 67"
    plain = validate_row({"id": "2", "text": "Inget känsligt"}, TODAY)
    assert plain.original_text is None


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "text", "title", "created_at", "department", "x"]),
        st.one_of(st.text(max_size=40), st.integers(), st.none(), st.lists(st.integers())),
    )
)
def test_validate_row_accepts_or_names_the_problem(row: dict) -> None:
    try:
        rec = validate_row(row, TODAY)
    except ValueError as exc:
        assert str(exc)
    else:
        assert rec.id and rec.text.strip()
