"""Swedish text analysis for lexical matching and theme labels.

Tokens are lower-cased words; stop-words (matcher/stopwords.py) are dropped; each word is
Snowball-stemmed, and a compound ("cykelvägar", "hemtjänstpersonal") may also be split into its
parts ("cykel" + "väg", "hemtjänst" + "personal") so that compounds meet their parts. Splitting is
lexicon-driven: a split point is accepted only where both sides are known words, with the Swedish
linking letters (-s-, -u-, -e-, -a-, -o-) allowed between them. The known words are those seen
standalone in the indexed texts ("corpus"), optionally with the stems of the Swedish Hunspell
dictionary ("hunspell"); no word list is built into the code.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import snowballstemmer

from matcher.stopwords import stop_words

# The stop list: the ``stop-words`` package's Swedish list plus a short, documented domain list
# (matcher/stopwords.py). Kept as a module constant for callers that test membership.
STOP_WORDS = stop_words()

# Where a compound may be split: "corpus" accepts a split point where both sides occur standalone in
# the indexed texts; "hunspell" also accepts stems of the Swedish Hunspell dictionary (hunspell-sv,
# read with spylls); "none" never splits.
LEXICONS = ("none", "corpus", "hunspell")

_WORD = re.compile(r"[a-zåäöéüæø0-9]+(?:-[a-zåäöéüæø0-9]+)*", re.IGNORECASE)
_LINKS = ("s", "u", "e", "a", "o")
_MIN_PART = 3

_stemmer = snowballstemmer.stemmer("swedish")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Snowball stem of a lower-case word."""
    return _stemmer.stemWord(word)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (hyphenated words split, numbers kept)."""
    out: list[str] = []
    for token in _WORD.findall(text.lower()):  # findall: the scan and the strings in C
        if "-" in token:
            out.extend(p for p in token.split("-") if p)
        else:
            out.append(token)
    return out


def is_stop(word: str) -> bool:
    """True for a Swedish stop-word (or a token too short to carry meaning)."""
    return word in STOP_WORDS or len(word) < 2 or word.isdigit()


@dataclass
class Analyzer:
    """Turns text into stemmed terms with compound parts.

    Args:
        lexicon: known standalone words used to accept compound split points (grown by ``learn``).
        split_compounds: switch compound splitting off (same as ``compounds="none"``).
        split_known_words: also split words that occur on their own (matching wants "cykelbana"
            to meet "cykelväg"; labels do not want "centrum" read as "cent" + "rum").
        compounds: which words may form a compound's parts: "corpus" (words seen standalone in the
            indexed texts), "hunspell" (those plus the Swedish Hunspell dictionary's stems) or "none".
    """

    lexicon: set[str] = field(default_factory=set)
    split_compounds: bool = True
    split_known_words: bool = True
    compounds: str = "corpus"

    def __post_init__(self) -> None:
        if self.compounds not in LEXICONS:
            raise ValueError(f"unknown compound lexicon {self.compounds!r}; expected one of {LEXICONS}")
        if self.compounds == "none":
            self.split_compounds = False
        self._stems = {stem(w) for w in self.lexicon} | set(self.lexicon)
        self._base: frozenset[str] = hunspell_stems() if self.compounds == "hunspell" else frozenset()
        self._cache: dict[str, tuple[str, ...]] = {}

    def learn(self, texts: Iterable[str], min_count: int = 2) -> None:
        """Add words that occur standalone at least ``min_count`` times to the lexicon."""
        counts: Counter[str] = Counter()
        chunk: list[str] = []
        for text in texts:  # thousands of texts per regex scan and count, both in C (a million texts: 181 s before)
            chunk.append(text)
            if len(chunk) == 5000:
                counts.update(_WORD.findall("\n".join(chunk).lower()))
                chunk = []
        counts.update(_WORD.findall("\n".join(chunk).lower()))
        for token in [t for t in counts if "-" in t]:  # as words(): a hyphenated word counts as its parts
            n = counts.pop(token)
            for part in token.split("-"):
                if part:
                    counts[part] += n
        fresh = {
            w
            for w, c in counts.items()
            if c >= min_count and not is_stop(w) and len(w) >= _MIN_PART and w not in self.lexicon
        }
        if fresh:
            self.lexicon |= fresh
            self._stems |= fresh | {stem(w) for w in fresh}
            self._cache.clear()

    def _known(self, part: str) -> bool:
        s = stem(part)
        return part in self._stems or s in self._stems or part in self._base or s in self._base

    def split(self, word: str, depth: int = 2) -> tuple[str, ...]:
        """Compound parts of ``word`` (empty when it is not a recognised compound)."""
        if not self.split_compounds or len(word) < 2 * _MIN_PART or depth == 0:
            return ()
        if depth == 2 and not self.split_known_words and word in self.lexicon:
            return ()
        cached = self._cache.get(word) if depth == 2 else None
        if cached is not None:
            return cached
        best: tuple[str, ...] = self._balanced_split(word) if self._base else ()
        for i in range(len(word) - _MIN_PART, _MIN_PART - 1, -1):
            if best:
                break
            left, right = word[:i], word[i:]
            lefts = [left] + [left[:-1] for link in _LINKS if left.endswith(link) and len(left) > _MIN_PART]
            head = next((cand for cand in lefts if self._known(cand)), None)
            if head is None:
                continue
            if self._known(right):
                best = (head, right)
                break
            tail = self.split(right, depth - 1)
            if tail:
                best = (head, *tail)
                break
        if depth == 2:
            self._cache[word] = best
        return best

    def _balanced_split(self, word: str) -> tuple[str, ...]:
        """The two-part split whose shorter part is longest (with a dictionary lexicon, the greedy
        longest-head rule reads suffix-like tails such as "ning" or "ten" as words)."""
        best: tuple[str, ...] = ()
        best_len = 0
        for i in range(_MIN_PART, len(word) - _MIN_PART + 1):
            left, right = word[:i], word[i:]
            lefts = [left] + [left[:-1] for link in _LINKS if left.endswith(link) and len(left) > _MIN_PART]
            head = next((cand for cand in lefts if self._known(cand)), None)
            if head is not None and min(len(head), len(right)) > best_len and self._known(right):
                best, best_len = (head, right), min(len(head), len(right))
        return best

    def terms(self, text: str) -> list[str]:
        """Stemmed terms of ``text``: each content word's stem, plus the stems of its parts."""
        out: list[str] = []
        for w in words(text):
            if is_stop(w):
                continue
            out.append(stem(w))
            for part in self.split(w):
                s = _part_stem(part)
                if s != out[-1]:
                    out.append(s)
        return out

    def surface_forms(self, text: str) -> dict[str, Counter[str]]:
        """Term -> counts of the surface words that produced it (for readable explanations)."""
        forms: dict[str, Counter[str]] = {}
        for w in words(text):
            if is_stop(w):
                continue
            forms.setdefault(stem(w), Counter())[w] += 1
            for part in self.split(w):
                forms.setdefault(_part_stem(part), Counter())[part] += 1
        return forms


def _hunspell_base() -> Path:
    """sv_SE.dic / sv_SE.aff as the ``hunspell-sv`` package installs them (under the prefix's share/)."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, sysconfig.get_path("data"))):
        base = Path(prefix) / "share" / "hunspell" / "sv_SE"
        if base.with_suffix(".dic").is_file():
            return base
    raise FileNotFoundError(
        "the Swedish Hunspell dictionary is missing: pip install hunspell-sv spylls (it installs share/hunspell/sv_SE.dic)"
    )


@lru_cache(maxsize=1)
def hunspell_stems() -> frozenset[str]:
    """Lower-cased dictionary words of hunspell-sv (and their Snowball stems), read with spylls."""
    try:
        from spylls.hunspell import Dictionary
    except ImportError as exc:
        raise ImportError("compound splitting with the Hunspell lexicon needs spylls: pip install spylls") from exc
    dictionary = Dictionary.from_files(str(_hunspell_base()))
    forbidden = dictionary.aff.FORBIDDENWORD
    out: set[str] = set()
    for entry in dictionary.dic.words:
        w = entry.stem.lower()
        if len(w) < _MIN_PART or (forbidden and forbidden in entry.flags) or not w.isalpha():
            continue
        out.add(w)
        out.add(stem(w))
    return frozenset(out)


def _part_stem(part: str) -> str:
    s = stem(part)
    # A first part written with its linking vowel ("gatu-", "skol-") stems like the word itself.
    for link in ("u", "e", "a", "o"):
        if s.endswith(link) and len(s) > _MIN_PART:
            return s[:-1]
    return s


def shared_words(analyzer: Analyzer, doc_text: str, query_terms: set[str], limit: int = 8) -> list[str]:
    """Readable words a document shares with a query, for explanations.

    A whole word is shown as written ("öjebyn"); a match through a compound part is shown with its
    word ("cykel (i cykelbana)"), unless the whole word matched too (so "centrum" never shows as
    "cent" and "rum").
    """
    whole: list[str] = []
    parts: list[str] = []
    seen: set[str] = set()
    for w in words(doc_text):
        if is_stop(w):
            continue
        full = stem(w)
        if full in query_terms:
            if full not in seen:
                whole.append(w)
                seen.add(full)
            continue
        for part in analyzer.split(w):
            ps = _part_stem(part)
            if ps in query_terms and ps not in seen:
                parts.append(f"{part} (i {w})")
                seen.add(ps)
    return (whole + parts)[:limit]
