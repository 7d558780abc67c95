"""Masking of Swedish personal data before anything is embedded, indexed, clustered or shown.

Detected:

* personnummer and samordningsnummer: a real calendar date (YYMMDD or YYYYMMDD, day + 60 for
  samordningsnummer) followed by an optional ``-``/``+`` and four digits. The Luhn check digit is
  *not* required: a number with a typo still identifies a person. It only decides, for a bare
  ten-digit string that also reads as a phone number (``0701234567``), which placeholder is used.
* Swedish phone numbers: mobile 07x and area-code numbers written with ``0``, ``+46``, ``0046``,
  ``+46 (0)`` or ``(070)``, grouped with spaces, dashes or dots.
* e-mail addresses, also obfuscated: ``anna(at)example.se``, ``anna [at] example [dot] se``,
  ``anna at example.se``, ``anna(a)example.se``, ``anna snabel-a example punkt se``.

Real text is messy, so matching runs on a normalised copy: dash variants read as ``-``, no-break
and other wide spaces as a space, full-width digits as digits, zero-width characters and soft
hyphens are skipped, and a line break may split a number. Matches are mapped back to the original
offsets, so everything outside a match stays byte-identical. Case numbers (``Dnr 2023-1234``),
amounts, postcodes, years, dates, times, versions and organisationsnummer (month 20 or more) do not
read as any of the above and are left alone. Where in doubt it masks: ten digits whose first six
are a date (an invoice number, say) read as a personnummer, and "word at domain.tld" as an e-mail.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

PLACEHOLDERS = {
    "personnummer": "[personnummer]",
    "samordningsnummer": "[samordningsnummer]",
    "telefon": "[telefonnummer]",
    "epost": "[e-post]",
}

# ---------------------------------------------------------------------------------------------
# Normalisation: same-width substitutions plus dropped invisible characters, with an index map.

_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_SPACES = "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_FULL_WIDTH = {chr(0xFF10 + i): str(i) for i in range(10)} | {"\uff0b": "+", "\uff20": "@"}
_SAME_WIDTH = str.maketrans({ch: "-" for ch in _DASHES} | {ch: " " for ch in _SPACES} | _FULL_WIDTH)
_ODD = re.compile("[" + _DASHES + _SPACES + _INVISIBLE + "".join(_FULL_WIDTH) + "]")
_HAS_INVISIBLE = re.compile("[" + _INVISIBLE + "]")

# Cheap gates (mask runs on every field of every row): without a digit, an @, "(at)"/"[a]" or a
# bare " at "/"snabel" there is nothing to find. Character classes and `in` keep this to a scan.
_DIGIT_OR_AT = re.compile(r"[0-9@\uff10-\uff20]")  # U+FF10..FF20: full-width digits to @
_BRACKETED_A = re.compile(r"[(\[{<] ?[aA][tT]? ?[)\]}>]")
_BARE_AT = (" at ", " AT ", " At ", "nabel", "NABEL")
_DIGIT = re.compile(r"[0-9]")

# ---------------------------------------------------------------------------------------------
# Patterns, all run on the normalised text.

_BREAK = r"(?:[ \t]*\r?\n[ \t]*)"  # a line break may split a number
_G = _BREAK + "?"  # optional break between two digits

_EMAIL_AT = r"(?:[ ]?@[ ]?|[ ]?[(\[{<][ ]?(?:at|a|snabel-?a)[ ]?[)\]}>][ ]?|[ ](?:at|snabel-?a)[ ])"
_EMAIL_DOT = r"(?:\.|[ ]?[(\[{<][ ]?(?:dot|punkt)[ ]?[)\]}>][ ]?|[ ](?:dot|punkt)[ ])"
_EMAIL_LABEL = r"[^\W_](?:[\w-]*[^\W_])?"
_EMAIL = re.compile(
    rf"(?<![\w.+-])[\w.+-]*\w{_EMAIL_AT}(?:{_EMAIL_LABEL}{_EMAIL_DOT})+[a-z]{{2,24}}(?![\w-])",
    re.IGNORECASE,
)

# Letters may be glued in front ("nr811218-9876", "pnr:8112189876"); a digit may not, nor a digit
# and number punctuation ("2023-05-17"), so part of a longer number is not read as one.
_NOT_INSIDE_A_NUMBER = r"(?<![\d+])(?<!\d[-.,/])"
# Each number pattern starts with a lookahead on its first character: without it the engine
# would run the lookbehinds at every position of the text (six times slower).
_PNR = re.compile(
    r"(?=[0-9])"
    rf"{_NOT_INSIDE_A_NUMBER}"
    rf"(?P<date>(?:(?:1{_G}[89]|2{_G}0){_G})?"  # century
    rf"\d{_G}\d{_G}"  # year
    rf"(?:0{_G}[1-9]|1{_G}[0-2]){_G}"  # month
    rf"(?:[0-26-8]{_G}\d|[39]{_G}[01]))"  # day, +60 for samordningsnummer
    rf"(?P<sep>{_G}[ ]?[-+]?[ ]?{_G})"
    rf"(?P<serial>\d{_G}\d{_G}\d{_G}\d)"
    r"(?!\d|[-.,/]\d)",
    re.ASCII,
)


def _subscriber(low: int, high: int) -> str:
    """Subscriber digits, first one 1-9, grouped by one kind of separator (space, dash or dot)."""
    reps = f"{{{low - 1},{high - 1}}}"
    seps = (rf"(?:[ ]|{_BREAK})?", rf"(?:-?{_G})", rf"(?:\.?{_G})")
    return "(?:" + "|".join(rf"[1-9](?:{sep}\d){reps}" for sep in seps) + ")"


_AREA_SEP = rf"{_G}(?:[ ]?-[ ]?|[ .])?{_G}"
_PHONE = re.compile(
    r"(?=[+0(])"
    rf"{_NOT_INSIDE_A_NUMBER}"
    r"(?!\d{1,2}(?P<ds>[-./])\d{1,2}(?P=ds)\d{2,4}(?![-.]?\d))"  # a date such as 08-12-2023
    r"(?:(?:\+|00)46[ ]?(?:-[ ]?)?(?:\(0\)[ ]?)?|\(?0)"  # +46, 0046, +46 (0), (0, 0
    # Area code (without its 0) and subscriber number: 7 to 9 digits in all.
    rf"(?:8\)?{_AREA_SEP}{_subscriber(6, 8)}"
    rf"|[1-9]\d\)?{_AREA_SEP}{_subscriber(5, 7)}"
    rf"|[1-9]\d\d\)?{_AREA_SEP}{_subscriber(5, 6)})"
    r"(?!\d|[-.,/]\d)",
    re.ASCII,
)

# Overlapping candidates are resolved by rank: an e-mail address first, then a personnummer
# that is certainly one, then a phone number, then a date + four digits with a wrong check digit.
_RANK_EPOST, _RANK_ID, _RANK_PHONE, _RANK_ID_TYPO = range(4)


class _Hit(NamedTuple):
    rank: int
    start: int
    end: int
    kind: str


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


def _valid_date(century: str | None, yy: str, mm: str, day: int) -> bool:
    years = [int(century + yy)] if century else [1800 + int(yy), 1900 + int(yy), 2000 + int(yy)]
    for year in years:
        try:
            date(year, int(mm), day)
            return True
        except ValueError:
            continue
    return False


def classify_id_number(digits: str) -> str | None:
    """Read ten (YYMMDDNNNN) or twelve (YYYYMMDDNNNN) digits as an identity number.

    The check digit is not verified: see :func:`luhn_ok`.

    Args:
        digits: the digits only, without separator.

    Returns:
        'personnummer', 'samordningsnummer' (day + 60), or None when the date part is no date.
    """
    if len(digits) == 12 and digits[:2] in ("18", "19", "20"):
        century, rest = digits[:2], digits[2:]
    elif len(digits) == 10:
        century, rest = None, digits
    else:
        return None
    day, kind = int(rest[4:6]), "personnummer"
    if day > 60:
        day, kind = day - 60, "samordningsnummer"
    return kind if _valid_date(century, rest[:2], rest[2:4], day) else None


def _normalise(text: str) -> tuple[str, list[int] | None]:
    """The text to match on, and for each of its characters the offset in ``text``.

    The map is None when the two have the same offsets (nothing was dropped).
    """
    if not _ODD.search(text):
        return text, None
    same = text.translate(_SAME_WIDTH)
    if not _HAS_INVISIBLE.search(same):
        return same, None
    keep = [i for i, ch in enumerate(same) if ch not in _INVISIBLE]
    return "".join(same[i] for i in keep), keep


def _wrapped_once_at_most(m: re.Match[str]) -> bool:
    # A number wrapped by the line length breaks once; digits on many lines are a column or a list.
    return m.group().count("\n") <= 1


def _id_hits(norm: str) -> Iterator[_Hit]:
    for m in _PNR.finditer(norm):
        if not _wrapped_once_at_most(m):
            continue
        digits = "".join(ch for ch in m["date"] + m["serial"] if ch.isdigit())
        kind = classify_id_number(digits)
        if kind is None:
            continue
        # Written YYMMDD-NNNN, or a right check digit: certainly an identity number.
        certain = "-" in m["sep"] or "+" in m["sep"] or luhn_ok(digits[-10:])
        yield _Hit(_RANK_ID if certain else _RANK_ID_TYPO, m.start(), m.end(), kind)


def _phone_hits(norm: str) -> Iterator[_Hit]:
    for m in _PHONE.finditer(norm):
        if _wrapped_once_at_most(m):
            yield _Hit(_RANK_PHONE, m.start(), m.end(), "telefon")


def _may_hold_obfuscated_at(text: str) -> bool:
    return _BRACKETED_A.search(text) is not None or any(word in text for word in _BARE_AT)


def _candidates(norm: str) -> list[_Hit]:
    hits: list[_Hit] = []
    if "@" in norm or _may_hold_obfuscated_at(norm):
        hits += (_Hit(_RANK_EPOST, m.start(), m.end(), "epost") for m in _EMAIL.finditer(norm))
    if _DIGIT.search(norm):
        hits += _id_hits(norm)
        hits += _phone_hits(norm)
    return hits


def _select(hits: list[_Hit]) -> list[_Hit]:
    """Best-ranked hits that do not overlap a better one, in text order."""
    chosen: list[_Hit] = []
    for hit in sorted(hits):
        if all(hit.end <= c.start or hit.start >= c.end for c in chosen):
            chosen.append(hit)
    return sorted(chosen, key=lambda h: h.start)


def _splice(text: str, offsets: list[int] | None, hits: list[_Hit]) -> str:
    """Replace the original-text spans of ``hits`` (normalised offsets) by their placeholders."""
    parts: list[str] = []
    last = 0
    for hit in hits:
        start, end = (hit.start, hit.end) if offsets is None else (offsets[hit.start], offsets[hit.end - 1] + 1)
        parts += (text[last:start], PLACEHOLDERS[hit.kind])
        last = end
    parts.append(text[last:])
    return "".join(parts)


def mask(text: str) -> MaskResult:
    """Replace personal data in ``text`` by typed placeholders.

    Args:
        text: any text.

    Returns:
        The masked text (unchanged outside the masked spans) and counts per kind.
    """
    counts = dict.fromkeys(PLACEHOLDERS, 0)
    if not _DIGIT_OR_AT.search(text) and not _may_hold_obfuscated_at(text):
        return MaskResult(text, counts)
    norm, offsets = _normalise(text)
    hits = _select(_candidates(norm))
    if not hits:
        return MaskResult(text, counts)
    for hit in hits:
        counts[hit.kind] += 1
    return MaskResult(_splice(text, offsets, hits), counts)
