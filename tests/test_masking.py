from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.masking import luhn_ok, mask

MUST_MASK = [
    ("Mitt personnummer är 811228-9874.", "[personnummer]"),
    ("pnr 19811228-9874 tack", "[personnummer]"),
    ("198112289874", "[personnummer]"),
    ("8112289874", "[personnummer]"),
    ("samordningsnummer 701063-2391", "[samordningsnummer]"),
    ("född 001219-3421", "[personnummer]"),
    ("över hundra: 121212+1212", "[personnummer]"),
    ("ring 070-123 45 67", "[telefonnummer]"),
    ("ring 0701234567", "[telefonnummer]"),
    ("mobil +46 70 123 45 67", "[telefonnummer]"),
    ("växel 0911-69 60 00", "[telefonnummer]"),
    ("Stockholm 08-123 456 78", "[telefonnummer]"),
    ("mejla anna.svensson@pitea.se snarast", "[e-post]"),
    ("K.Lind+idé@exempel.kommun.se", "[e-post]"),
]

MUST_KEEP = [
    "fel kontrollsiffra 811228-9875",
    "ogiltigt datum 811328-9874",
    "Dnr 2023-1234",
    "kostar 1 500 000 kr",
    "Box 941 85 Piteå",
    "mellan 2020-2023 ökade det",
    "version 1.2.3 av appen",
    "klockan 07.40 från Norrmalm",
]


@pytest.mark.parametrize(("text", "placeholder"), MUST_MASK)
def test_masks_personal_data_with_typed_placeholder(text: str, placeholder: str) -> None:
    out = mask(text)
    assert placeholder in out.text
    assert out.changed
    digits_left = "".join(ch for ch in out.text if ch.isdigit())
    assert len(digits_left) < 6, out.text


@pytest.mark.parametrize("text", MUST_KEEP)
def test_leaves_look_alikes(text: str) -> None:
    out = mask(text)
    assert out.text == text
    assert not out.changed


def test_sentence_still_reads() -> None:
    out = mask("Hej, jag heter Per (811228-9874) och nås på 070-123 45 67.")
    assert out.text == "Hej, jag heter Per ([personnummer]) och nås på [telefonnummer]."


def test_luhn() -> None:
    assert luhn_ok("8112289874")
    assert not luhn_ok("8112289875")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_masking_is_idempotent_and_total(text: str) -> None:
    once = mask(text).text
    assert mask(once).text == once


@settings(max_examples=200, deadline=None)
@given(st.dates(), st.integers(0, 999))
def test_every_valid_personnummer_is_masked(day, serial) -> None:
    body = f"{day:%y%m%d}{serial:03d}"
    check = next(c for c in "0123456789" if luhn_ok(body + c))
    text = f"nr {day:%y%m%d}-{serial:03d}{check} slut"
    assert mask(text).text == "nr [personnummer] slut"
