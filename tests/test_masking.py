from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.masking import PLACEHOLDERS, classify_id_number, luhn_ok, mask

PNR, SAMORD, PHONE, EMAIL = "personnummer", "samordningsnummer", "telefon", "epost"

# (text before, personal data, text after, kind). Nothing else in the row holds a digit.
MUST_MASK = [
    # personnummer / samordningsnummer
    ("Mitt personnummer är ", "811228-9874", ".", PNR),
    ("pnr ", "19811228-9874", " tack", PNR),
    ("", "198112289874", "", PNR),
    ("", "8112289874", "", PNR),
    ("född ", "001219-3421", "", PNR),
    ("över hundra: ", "121212+1212", "", PNR),
    ("med mellanslag ", "811228 - 9874", "", PNR),
    ("samordningsnummer ", "701063-2391", "", SAMORD),
    ("fel kontrollsiffra ", "811228-9875", "", PNR),
    ("fel kontrollsiffra utan bindestreck ", "8112289875", " slut", PNR),
    ("fel kontrollsiffra ", "701063-2392", "", SAMORD),
    ("nr", "811218-9876", "", PNR),
    ("pnr:", "8112189876", "", PNR),
    ("personnr ", "811228\u20139874", " (tankstreck)", PNR),
    ("personnr ", "811228\u20119874", " (hårt bindestreck)", PNR),
    ("personnr ", "811228\u22129874", " (minus)", PNR),
    ("personnr ", "811228\u20129874", " (siffertankstreck)", PNR),
    ("personnr ", "811228\u00a0-\u00a09874", "", PNR),
    ("personnr ", "8112\u200b28-98\u200d74", "", PNR),
    ("personnr ", "811228\u00ad-9874", "", PNR),
    ("personnr ", "\uff18\uff11\uff11\uff12\uff12\uff18-\uff19\uff18\uff17\uff14", "", PNR),
    ("personnr ", "811228-\n9874", "", PNR),
    ("personnr ", "8112\r\n28-9874", "", PNR),
    # phone numbers
    ("ring ", "070-123 45 67", "", PHONE),
    ("ring ", "0701234567", "", PHONE),
    ("ring ", "070-1234567", "", PHONE),
    ("mobil ", "+46 70 123 45 67", "", PHONE),
    ("mobil ", "+46 (0)70-123 45 67", "", PHONE),
    ("mobil ", "+46701234567", "", PHONE),
    ("mobil ", "0046 70 123 45 67", "", PHONE),
    ("ring ", "(070) 123 45 67", " efter lunch", PHONE),
    ("ring ", "070.123.45.67", ".", PHONE),
    ("växel ", "0911-69 60 00", "", PHONE),
    ("Stockholm ", "08-123 456 78", "", PHONE),
    ("Stockholm ", "+46 8 123 456 78", "", PHONE),
    ("Göteborg ", "031-12 34 56", "", PHONE),
    ("tel:", "0771-123 456", "", PHONE),
    ("tel", "0701234567", "", PHONE),
    ("tel.", "070-123 45 67", "", PHONE),
    ("Kontakt:\n\u2013", "070-123 45 67", "", PHONE),
    ("ring ", "070-123\n45 67", " i kväll", PHONE),
    ("ring ", "070-\r\n123 45 67", "", PHONE),
    ("ring ", "070\u2013123\u00a045\u00a067", "", PHONE),
    ("ring ", "08\u2011123\u202f456\u202f78", "", PHONE),
    ("ring ", "070-123\u200b 45 67", "", PHONE),
    ("ring ", "\uff10\uff17\uff10-\uff11\uff12\uff13 \uff14\uff15 \uff16\uff17", "", PHONE),
    # e-mail
    ("mejla ", "anna.svensson@pitea.se", " snarast", EMAIL),
    ("", "K.Lind+idé@exempel.kommun.se", "", EMAIL),
    ("mejla ", "anna(at)example.se", "", EMAIL),
    ("mejla ", "anna [at] example.se", "", EMAIL),
    ("mejla ", "ANNA (AT) EXAMPLE.SE", "", EMAIL),
    ("mejla ", "anna at example.se", "", EMAIL),
    ("mejla ", "anna at example dot se", ".", EMAIL),
    ("mejla ", "anna [at] example [dot] se", "", EMAIL),
    ("mejla ", "anna(a)example.se", "", EMAIL),
    ("mejla ", "anna snabel-a example punkt se", "", EMAIL),
    ("mejla ", "anna @ example.se", "", EMAIL),
    ("mejla ", "anna\uff20example.se", "", EMAIL),
    ("mejla ", "anna.svensson(at)pitea(dot)se", "", EMAIL),
]

MUST_KEEP = [
    "ogiltigt datum 811328-9874",
    "Dnr 2023-1234",
    "Dnr KS 2021/123",
    "kostar 1 500 000 kr",
    "kostar 1\u00a0500\u00a0000 kr",
    "totalt 12 345,50 kr",
    "941 85 Piteå",
    "Box 941 85 Piteå",
    "mellan 2020-2023 ökade det",
    "mellan 2020\u20132023 ökade det",
    "år 2019",
    "mötet 2023-05-17",
    "mötet 17/5 2023",
    "mötet 2023-05-17 kl 14",
    "den 08.05.2023",
    "den 08-12-2023",
    "version 1.2.3 av appen",
    "version 0.12.3",
    "klockan 07.40 från Norrmalm",
    "kl 08.15-09.30",
    "telefontid 08.00\u201316.30",
    "öppet mån\u2013fre 08\u201312, 13\u201316",
    "öppet 08-12 13-16",
    "organisationsnummer 212000-2742",
    "org.nr 556677-8899",
    "I need 3 st at home",
    "vi ses at home",
    "0,5 procent",
    "IP 192.168.0.1",
    "lista 20200101-20231231",
    "en siffra per rad:\n8\n1\n1\n2\n2\n8\n9\n8\n7\n4",
    "summa 1.070.123,50 kr",
]


def _kinds(counts: dict[str, int]) -> dict[str, int]:
    return {k: n for k, n in counts.items() if n}


@pytest.mark.parametrize(("before", "value", "after", "kind"), MUST_MASK)
def test_masks_personal_data_with_typed_placeholder(before: str, value: str, after: str, kind: str) -> None:
    out = mask(before + value + after)
    assert out.text == before + PLACEHOLDERS[kind] + after
    assert _kinds(out.counts) == {kind: 1}
    assert value not in out.text
    assert not any(ch.isdigit() for ch in out.text), out.text


@pytest.mark.parametrize("text", MUST_KEEP)
def test_leaves_look_alikes(text: str) -> None:
    out = mask(text)
    assert out.text == text
    assert not out.changed


def test_sentence_still_reads() -> None:
    out = mask("Hej, jag heter Per (811228-9874) och nås på 070-123 45 67.")
    assert out.text == "Hej, jag heter Per ([personnummer]) och nås på [telefonnummer]."
    assert _kinds(out.counts) == {PNR: 1, PHONE: 1}


def test_text_around_matches_is_kept_byte_for_byte() -> None:
    parts = [
        "Hej\u00a0du,\u200b Dnr 2023\u20131234 gäller 1\u202f500 kr\u00ad. Ring ",
        "070\u2013123\u00a045 67",
        "\u2060 eller mejla ",
        "anna(at)example.se",
        "\ufeff\r\nmitt pnr är\u2007",
        "８１１２２８-９８７５",
        "\u200c\n(slut\u2011text)",
    ]
    text = "".join(parts)
    expected = "".join([parts[0], "[telefonnummer]", parts[2], "[e-post]", parts[4], "[personnummer]", parts[6]])
    out = mask(text)
    assert out.text == expected
    assert out.text.encode("utf-8") == expected.encode("utf-8")
    assert _kinds(out.counts) == {PHONE: 1, EMAIL: 1, PNR: 1}


def test_two_numbers_side_by_side_are_both_masked() -> None:
    assert mask("070-123 45 67 08-123 456 78").text == "[telefonnummer] [telefonnummer]"
    assert mask("0701234567\n0702345678").text == "[telefonnummer]\n[telefonnummer]"
    assert mask("811228-9874, 701063-2391").text == "[personnummer], [samordningsnummer]"


def test_email_wins_over_digits_inside_it() -> None:
    out = mask("skriv till 8112289874@exempel.se")
    assert out.text == "skriv till [e-post]"
    assert _kinds(out.counts) == {EMAIL: 1}


def test_bare_ten_digits_read_as_phone_unless_check_digit_is_right() -> None:
    phone = "0701234567"
    assert not luhn_ok(phone)
    assert mask(phone).text == "[telefonnummer]"
    # the same digits written as YYMMDD-NNNN are an identity number
    assert mask("070123-4567").text == "[personnummer]"


def test_text_without_digits_or_at_is_returned_as_is() -> None:
    text = "Belysning vid busshållplatsen och fler bänkar i parken. " * 20
    out = mask(text)
    assert out.text is text
    assert not out.changed


def test_luhn() -> None:
    assert luhn_ok("8112289874")
    assert not luhn_ok("8112289875")


def test_classify_id_number() -> None:
    assert classify_id_number("8112289875") == PNR
    assert classify_id_number("198112289874") == PNR
    assert classify_id_number("7010632391") == SAMORD
    assert classify_id_number("2120002742") is None  # organisationsnummer: month 20
    assert classify_id_number("8102299874") is None  # 29 February 1981 / 2081 did not exist
    assert classify_id_number("0002299874") == PNR  # 29 February 2000 did


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_masking_is_idempotent_and_total(text: str) -> None:
    once = mask(text).text
    assert mask(once).text == once


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789 -+.()@\n\u2013\u00a0\u200b\uff10at.se", max_size=60))
def test_masking_is_idempotent_on_digit_heavy_text(text: str) -> None:
    once = mask(text).text
    assert mask(once).text == once


@settings(max_examples=300, deadline=None)
@given(st.dates(), st.integers(0, 999), st.integers(0, 9), st.sampled_from(["-", "+", ""]))
def test_every_dated_id_number_is_masked_whatever_the_check_digit(day, serial, check, sep) -> None:
    digits = f"{day:%y%m%d}{serial:03d}{check}"
    out = mask(f"nr {day:%y%m%d}{sep}{serial:03d}{check} slut").text
    if sep or not digits.startswith("0") or luhn_ok(digits):
        assert out == "nr [personnummer] slut"
    else:  # ten bare digits starting with 0 and a wrong check digit: as likely a phone number
        assert out in ("nr [personnummer] slut", "nr [telefonnummer] slut")


@settings(max_examples=200, deadline=None)
@given(st.dates(date(1900, 1, 1), date(2099, 12, 31)), st.integers(0, 999))
def test_every_valid_personnummer_is_masked(day, serial) -> None:
    body = f"{day:%y%m%d}{serial:03d}"
    check = next(c for c in "0123456789" if luhn_ok(body + c))
    assert mask(f"nr {day:%y%m%d}-{serial:03d}{check} slut").text == "nr [personnummer] slut"
    assert mask(f"nr {day:%Y%m%d}{serial:03d}{check} slut").text == "nr [personnummer] slut"


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["70", "72", "73", "76", "79"]),
    st.integers(1_000_000, 9_999_999),
    st.sampled_from(["0{a}-{s3} {s2a} {s2b}", "0{a}{s}", "+46 {a} {s3} {s2a} {s2b}", "+46{a}{s}", "(0{a}) {s}"]),
    st.sampled_from(["ring ", "mobil: ", "tel"]),
    st.sampled_from(["", ".", " i kväll", "\n"]),
)
def test_every_mobile_number_is_masked(area, sub, template, before, after) -> None:
    s = str(sub)
    number = template.format(a=area, s=s, s3=s[:3], s2a=s[3:5], s2b=s[5:])
    kind = PHONE
    if number.isdigit() and luhn_ok(number):  # bare ten digits with a right check digit and a date
        kind = classify_id_number(number) or PHONE
    assert mask(before + number + after).text == before + PLACEHOLDERS[kind] + after


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="abcåäö ,.:;()\u00a0\u200b\n", max_size=20),
    st.sampled_from(["811228-9874", "070-123 45 67", "anna@example.se", "701063-2392"]),
    st.text(alphabet="abcåäö ,.:;()\u00a0\u200b\n", max_size=20),
)
def test_surroundings_survive_unchanged(before, value, after) -> None:
    out = mask(f"{before} {value} {after}").text
    assert out.startswith(before + " ") and out.endswith(" " + after)
    assert not any(ch.isdigit() for ch in out)
