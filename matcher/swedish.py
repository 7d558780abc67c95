"""Swedish text analysis for lexical matching and theme labels.

Tokens are lower-cased words; stop-words are dropped; each word is Snowball-stemmed, and a
compound ("gatubelysning", "cykelvägar", "hemtjänstpersonal") is also split into its parts
("gat" + "belysning", "cykel" + "väg", "hemtjänst" + "personal") so that compounds meet their
parts and each other. Splitting is lexicon-driven: a split point is accepted only where both
sides are known words (from a small built-in list of municipal vocabulary plus the words seen
standalone in the indexed texts), with the Swedish linking letters (-s-, -u-, -e-, -a-, -o-)
allowed between them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import snowballstemmer

# Function words of Swedish (pronouns, articles, prepositions, conjunctions, auxiliaries,
# common adverbs) and the most frequent filler words of submitted ideas.
STOP_WORDS = frozenset(
    [
        "alla",
        "allt",
        "alltid",
        "andra",
        "annan",
        "annat",
        "att",
        "av",
        "bara",
        "bli",
        "blir",
        "blev",
        "blivit",
        "borde",
        "bra",
        "de",
        "dem",
        "den",
        "denna",
        "deras",
        "dess",
        "dessa",
        "det",
        "detta",
        "dig",
        "din",
        "dina",
        "ditt",
        "du",
        "där",
        "då",
        "efter",
        "eftersom",
        "ej",
        "eller",
        "en",
        "ens",
        "er",
        "era",
        "ert",
        "ett",
        "fast",
        "fler",
        "flera",
        "finns",
        "fick",
        "få",
        "får",
        "fått",
        "för",
        "före",
        "från",
        "genom",
        "ha",
        "hade",
        "har",
        "hela",
        "helt",
        "hen",
        "henne",
        "hennes",
        "hit",
        "hon",
        "honom",
        "hos",
        "hur",
        "här",
        "i",
        "icke",
        "igen",
        "ingen",
        "inget",
        "inga",
        "inom",
        "inte",
        "ju",
        "jag",
        "kan",
        "kanske",
        "kommer",
        "kunde",
        "kunna",
        "man",
        "med",
        "mellan",
        "men",
        "mer",
        "mest",
        "mig",
        "min",
        "mina",
        "mitt",
        "mot",
        "mycket",
        "många",
        "ni",
        "nu",
        "när",
        "någon",
        "något",
        "några",
        "och",
        "också",
        "om",
        "oss",
        "samma",
        "sedan",
        "sig",
        "sin",
        "sina",
        "sitt",
        "ska",
        "skall",
        "skulle",
        "som",
        "så",
        "sådan",
        "sådana",
        "till",
        "tills",
        "typ",
        "under",
        "upp",
        "ut",
        "utan",
        "vad",
        "var",
        "vara",
        "varför",
        "varit",
        "varje",
        "vart",
        "vem",
        "vi",
        "vid",
        "vilka",
        "vilken",
        "vilket",
        "vill",
        "vår",
        "våra",
        "vårt",
        "än",
        "är",
        "åt",
        "över",
        "även",
        "ännu",
        "ha",
        "sen",
        "iaf",
        "dvs",
        "osv",
        "bl.a",
        "t.ex.",
        "mm",
        "tex",
        "pga",
        "väldigt",
        "jätte",
        "jättebra",
        "lite",
        "liten",
        "lilla",
        "stor",
        "stora",
        "tycker",
        "tror",
        "behöver",
        "behövs",
        "göra",
        "gör",
        "gjort",
        "kommunen",
        "kommun",
        "idé",
        "idéer",
        "förslag",
        "föreslår",
        "förslaget",
        "tack",
        "hej",
        "saknar",
        "saknas",
        "svårt",
        "sätt",
        "går",
        "gå",
        "bort",
        "fram",
        "ute",
        "inne",
        "direkt",
        "oftare",
        "längs",
        "finns",
        "fanns",
        "hjälp",
        "visar",
        "håller",
        "slutar",
        "bättre",
        "sämre",
        "fler",
        "färre",
        "nya",
        "nytt",
        "ny",
        "gamla",
        "gammal",
        "enkelt",
        "enkel",
        "istället",
        "exempel",
    ]
)

# Word parts common in Swedish municipal texts; the corpus adds its own standalone words.
BASE_LEXICON = frozenset(
    [
        "gata",
        "gatu",
        "gat",
        "väg",
        "vägar",
        "cykel",
        "bana",
        "banor",
        "cykelbana",
        "lampa",
        "lampor",
        "belysning",
        "ljus",
        "plats",
        "platser",
        "skola",
        "skol",
        "elev",
        "elever",
        "lärare",
        "förskola",
        "barn",
        "ungdom",
        "ungdomar",
        "äldre",
        "omsorg",
        "boende",
        "hem",
        "tjänst",
        "hemtjänst",
        "personal",
        "vård",
        "vårdare",
        "snö",
        "röjning",
        "plogning",
        "is",
        "halka",
        "sand",
        "sopning",
        "buss",
        "hållplats",
        "tåg",
        "trafik",
        "kollektivtrafik",
        "resa",
        "biljett",
        "app",
        "tjänst",
        "tjänster",
        "digital",
        "e-tjänst",
        "webb",
        "sida",
        "återvinning",
        "station",
        "sopor",
        "avfall",
        "miljö",
        "sortering",
        "kompost",
        "bibliotek",
        "bok",
        "böcker",
        "läsning",
        "idrott",
        "hall",
        "plan",
        "fotboll",
        "simhall",
        "bad",
        "park",
        "lekplats",
        "lek",
        "trygghet",
        "kamera",
        "brott",
        "polis",
        "natt",
        "integration",
        "språk",
        "nyanlända",
        "svenska",
        "praktik",
        "jobb",
        "arbete",
        "arbetsplats",
        "möte",
        "rum",
        "hus",
        "bostad",
        "matsal",
        "mat",
        "lunch",
        "kök",
        "vatten",
        "ledning",
        "skylt",
        "skyltar",
        "trottoar",
        "övergång",
        "ställe",
        "parkering",
        "bil",
        "bilar",
        "cykelställ",
        "cykelparkering",
        "stråk",
        "motion",
        "spår",
        "skid",
        "skidspår",
        "fritid",
        "gård",
        "center",
        "centrum",
        "kultur",
        "musik",
        "konst",
        "museum",
        "fest",
        "kvarter",
        "område",
        "stad",
        "by",
        "bygd",
        "landsbygd",
        "information",
    ]
)

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
    for m in _WORD.finditer(text.lower()):
        out.extend(p for p in m.group(0).split("-") if p)
    return out


def is_stop(word: str) -> bool:
    """True for a Swedish stop-word (or a token too short to carry meaning)."""
    return word in STOP_WORDS or len(word) < 2 or word.isdigit()


@dataclass
class Analyzer:
    """Turns text into stemmed terms with compound parts.

    Args:
        lexicon: known standalone words used to accept compound split points.
        split_compounds: switch compound splitting off for ablation.
        split_known_words: also split words that occur on their own (matching wants "cykelbana"
            to meet "cykelväg"; labels do not want "centrum" read as "cent" + "rum").
    """

    lexicon: set[str] = field(default_factory=lambda: set(BASE_LEXICON))
    split_compounds: bool = True
    split_known_words: bool = True

    def __post_init__(self) -> None:
        self._stems = {stem(w) for w in self.lexicon} | set(self.lexicon)
        self._cache: dict[str, tuple[str, ...]] = {}

    def learn(self, texts: Iterable[str], min_count: int = 2) -> None:
        """Add words that occur standalone at least ``min_count`` times to the lexicon."""
        counts = Counter(w for t in texts for w in words(t) if not is_stop(w) and len(w) >= _MIN_PART)
        fresh = {w for w, c in counts.items() if c >= min_count and w not in self.lexicon}
        if fresh:
            self.lexicon |= fresh
            self._stems |= fresh | {stem(w) for w in fresh}
            self._cache.clear()

    def _known(self, part: str) -> bool:
        return part in self._stems or stem(part) in self._stems

    def split(self, word: str, depth: int = 2) -> tuple[str, ...]:
        """Compound parts of ``word`` (empty when it is not a recognised compound)."""
        if not self.split_compounds or len(word) < 2 * _MIN_PART or depth == 0:
            return ()
        if depth == 2 and not self.split_known_words and word in self.lexicon:
            return ()
        cached = self._cache.get(word) if depth == 2 else None
        if cached is not None:
            return cached
        best: tuple[str, ...] = ()
        for i in range(len(word) - _MIN_PART, _MIN_PART - 1, -1):
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
