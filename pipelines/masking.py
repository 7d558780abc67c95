"""Masking of Swedish personal data before anything is embedded, indexed, clustered or shown.

Detected: personnummer and samordningsnummer (YYMMDD-NNNC, YYMMDD+NNNC, YYYYMMDDNNNC, with or
without separator; a real calendar date, day + 60 for samordningsnummer, and a valid Luhn check
digit), Swedish phone numbers (mobile 07x and area-code numbers, written with 0, +46 or 0046, with
spaces or dashes) and e-mail addresses. Each is replaced by a typed placeholder so the sentence
still reads. A digit string that reads as a phone number is masked even when it also looks like
an (invalid) personnummer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

PLACEHOLDERS = {
    "personnummer": "[personnummer]",
    "samordningsnummer": "[samordningsnummer]",
    "telefon": "[telefonnummer]",
    "epost": "[e-post]",
}

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}(?![\w-])")
_PNR = re.compile(r"(?<![\w-])(\d{2})?(\d{2})(\d{2})(\d{2})\s?([-+])?\s?(\d{3})(\d)(?![\w-])")
_PHONE = re.compile(r"(?<![\w+])(?:\+46|0046|0)[\s-]?\(?0?\)?[\s-]?[1-9](?:[\s-]?\d){5,9}(?![\w])")


@dataclass(frozen=True)
class MaskResult:
    """Masked text and how many of each kind were found."""

    text: str
    counts: dict[str, int]

    @property
    def changed(self) -> bool:
        """True when anything was masked."""
        return any(self.counts.values())


def luhn_ok(digits: str) -> bool:
    """Luhn check over the ten digits YYMMDDNNNC."""
    total = 0
    for i, ch in enumerate(digits):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _valid_date(century: str | None, yy: str, mm: str, dd: str) -> bool:
    years = [int(century + yy)] if century else [1900 + int(yy), 2000 + int(yy)]
    for year in years:
        try:
            date(year, int(mm), int(dd))
            return True
        except ValueError:
            continue
    return False


def classify_id_number(match: re.Match[str]) -> str | None:
    """'personnummer', 'samordningsnummer' or None for a candidate match of ``_PNR``."""
    century, yy, mm, dd, _sep, serial, check = match.groups()
    if century and century not in ("18", "19", "20"):
        return None
    day = int(dd)
    kind = "personnummer"
    if day > 60:
        day -= 60
        kind = "samordningsnummer"
    if not _valid_date(century, yy, mm, f"{day:02d}"):
        return None
    if not luhn_ok(f"{yy}{mm}{dd}{serial}{check}"):
        return None
    return kind


def mask(text: str) -> MaskResult:
    """Replace personal data in ``text`` by typed placeholders.

    Args:
        text: any text.

    Returns:
        The masked text and counts per kind.
    """
    counts = {k: 0 for k in PLACEHOLDERS}

    def _email(m: re.Match[str]) -> str:
        counts["epost"] += 1
        return PLACEHOLDERS["epost"]

    def _pnr(m: re.Match[str]) -> str:
        kind = classify_id_number(m)
        if kind is None:
            return m.group(0)
        counts[kind] += 1
        return PLACEHOLDERS[kind]

    def _phone(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        national = digits[2:] if digits.startswith("46") else digits[4:] if digits.startswith("0046") else digits[1:]
        if not 7 <= len(national) <= 9:
            return m.group(0)
        counts["telefon"] += 1
        return PLACEHOLDERS["telefon"]

    out = _EMAIL.sub(_email, text)
    out = _PNR.sub(_pnr, out)
    out = _PHONE.sub(_phone, out)
    return MaskResult(out, counts)
