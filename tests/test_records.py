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


def test_semicolon_csv_with_bom_unknown_columns_dropped_allowed_ones_masked(tmp_path: Path) -> None:
    p = tmp_path / "ideer.csv"
    p.write_text(
        "\ufeffid;title;text;created_at;kontakt;ort\n1;Cykel;Bygg cykelbana;2025-03-01;kim@exempel.se;Öjebyn\n",
        encoding="utf-8",
    )
    recs, errs = _parse(p)
    assert not errs
    assert recs[0].id == "1" and recs[0].title == "Cykel" and recs[0].attributes == {}
    assert recs[0].created_at.year == 2025
    allowed = [i for i in parse_file(p, today=TODAY, allowed_attributes=["kontakt", "ort"]) if isinstance(i, Record)]
    assert allowed[0].attributes == {"kontakt": "[e-post]", "ort": "Öjebyn"}


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


def test_every_text_field_is_masked_and_no_original_is_kept() -> None:
    row = {
        "id": "1",
        "text": "Ring 070-123 45 67",
        "title": "Från anna@exempel.se",
        "department": "kontakt 070-111 22 33",
        "status": "väntar på 811228-9874",
        "outcome": "svar till bo@exempel.se",
        "source": "e-post lisa@exempel.se",
        "contact_ref": "kalle@exempel.se",
    }
    rec = validate_row(row, TODAY)
    assert rec.text == "Ring [telefonnummer]"
    stored = " ".join(str(v) for v in vars(rec).values())
    for secret in ("070-123 45 67", "anna@", "070-111 22 33", "811228-9874", "bo@", "lisa@", "kalle@"):
        assert secret not in stored
    assert not hasattr(rec, "original_text")
    assert rec.contact_ref == "[e-post]"


def test_an_id_holding_personal_data_is_refused_without_echoing_it(tmp_path: Path) -> None:
    p = tmp_path / "ideer.csv"
    p.write_text("id;text\n811228-9874;Bra idé\nOK1;Också bra\n", encoding="utf-8")
    recs, errs = _parse(p)
    assert [r.id for r in recs] == ["OK1"]
    assert errs[0].line == 2 and "personal data" in errs[0].reason
    assert "811228" not in str(errs[0])


def test_huge_csv_field_and_deep_json_are_row_errors_and_valid_rows_stay(tmp_path: Path) -> None:
    p = tmp_path / "stor.csv"
    p.write_text(f"id;text\nA;Först\nB;{'x' * 200_000}\nC;Sist\n", encoding="utf-8")
    recs, errs = _parse(p)
    assert [r.id for r in recs] == ["A", "C"]
    assert errs[0].line == 3 and "over the limit" in errs[0].reason
    deep = tmp_path / "djup.jsonl"
    deep.write_text(
        json.dumps({"id": "A", "text": "Först"})
        + "\n"
        + "[" * 100_000
        + "]" * 100_000
        + "\n"
        + json.dumps({"id": "C", "text": "Sist"})
        + "\n",
        encoding="utf-8",
    )
    recs, errs = _parse(deep)
    assert [r.id for r in recs] == ["A", "C"] and errs[0].line == 2 and "nested too deeply" in errs[0].reason
    arr = tmp_path / "djup.json"
    arr.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(FileRejected, match="nested too deeply"):
        list(parse_file(arr, today=TODAY))


def test_row_errors_never_echo_personal_data(tmp_path: Path) -> None:
    p = tmp_path / "ideer.jsonl"
    p.write_text(json.dumps({"id": "A", "text": "x", "created_at": "ring 070-123 45 67"}) + "\n", encoding="utf-8")
    _, errs = _parse(p)
    assert "070-123" not in str(errs[0]) and "[telefonnummer]" in errs[0].reason


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
