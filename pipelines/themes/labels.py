"""Swedish theme labels a leader reads at a glance.

Three steps (docs/themes.md has the rule, what tuned it, and its limits):

1. **Candidates by class-based TF-IDF** over content-word stems, compound parts and two-word phrases.
   A phrase is two content words written next to each other inside one clause ("trasiga lampor"),
   never two words that only met because the stop-words between them were dropped. Every candidate
   is shown as a whole word or phrase written in the theme's texts, never as a stem or as a bare
   compound part ("skol"): a stem is shown in its most common standalone form, and a compound part
   that never stands alone in the theme is shown as the compound it came from.
2. **KeyBERT-inspired re-ranking** (when the caller hands an encoder and the theme centroids): the
   candidates are embedded with the project's own encoder (one call for every theme); relevance is
   the cosine to the theme's centroid (both centred on their means) blended with the c-TF-IDF
   weight, and maximal marginal relevance (MMR) orders them so that near-synonyms do not fill the
   list. Without an encoder the c-TF-IDF order stands.
3. **No adjective-only labels.** The label is the first :data:`LABEL_TERMS` candidates that are not
   made of adjectives only (:func:`is_adjective_like`: suffixes, comparatives, copulas and the
   word's inflections seen in the corpus; no tagger and nothing downloaded) and that repeat no word
   of an earlier one in another form. The keywords keep adjectives ("trasiga", "mörkt" describe a
   theme well); the label does not lead with them.

No stop-word can be a keyword: stop-words never become terms in the first place.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from matcher.swedish import Analyzer, is_stop, stem, words

# Texts -> unit vectors in the space of the theme centroids (the nightly job passes its encoder's
# ``encode_queries``: the items' vectors are query vectors, so the candidates must be too).
Encode = Callable[[list[str]], np.ndarray]

N_CANDIDATES = 20  # c-TF-IDF candidates re-ranked per theme (tuned on argumentation + SweFAQ dev)
DIVERSITY = 0.3  # MMR weight of "unlike what is already chosen" (tuned on argumentation + SweFAQ dev)
TFIDF_SHARE = 0.5  # weight of the c-TF-IDF score in a candidate's relevance (tuned on argumentation + SweFAQ dev)
CENTRE = True  # centre candidates and centroids on their means before the cosine (see _rerank)
LABEL_TERMS = 3  # candidates joined into the label ("A, B och C")

# Words after which Swedish puts a predicative adjective ("eleverna blir trötta", "ventilationen är
# usel", "helt mörk"); Swedish grammar, not read off any corpus. "så", "för", "mycket", "mer" and
# "lite" are left out: nouns follow them as often ("så barnen", "mycket snö", "mer pengar").
COPULAS = frozenset(
    ["är", "var", "vara", "varit", "blir", "blev", "bli", "blivit", "känns", "kändes", "verkar", "verkade"]
    + ["väldigt", "ganska", "helt", "riktigt", "otroligt", "alltför"]
)
# The key, in a theme's surface forms, of the words seen after a copula (never a term: terms are
# alphabetic), so the statistic travels and merges with the forms (the Ray engine's shards too).
PREDICATIVE = "#predicative"
PREDICATIVE_SHARE = 0.2  # a word is predicative when at least this share of its uses follow a copula
# A finite verb stands right after a subject pronoun ("de känner", "vi vill") or right before a
# reflexive one ("känner sig", "oroar mig"); Swedish grammar again. "den" and "det" are left out
# (articles before nouns as often), and "er" (a verb ending too).
SUBJECTS = frozenset(["jag", "du", "han", "hon", "vi", "ni", "de", "dom", "man"])
REFLEXIVES = frozenset(["sig", "mig", "dig", "oss"])
FINITE = "#finite"  # the key of the words seen in such a place (as PREDICATIVE)
FINITE_SHARE = 0.5  # a verb when at least half its uses are there (a noun after "har vi" must not pass)

_CLAUSE = re.compile(r"[.!?;:,()\[\]{}\"'”“«»/\n\t]+|\s[-–—]\s")


@dataclass
class ThemeLabel:
    """Keywords (whole words or phrases from the theme's texts, best first) and a short label."""

    keywords: list[str]
    label: str


# -- candidates ---------------------------------------------------------------------------------
def _content(word: str) -> bool:
    return len(word) > 2 and word.isalpha() and not is_stop(word)


def _terms_with_forms(analyzer: Analyzer, text: str) -> list[tuple[str, str]]:
    """(term, surface form) pairs: content-word stems, compound parts, and adjacent content words;
    plus (:data:`PREDICATIVE`, word) for a word right after a copula or degree word, and
    (:data:`FINITE`, word) for a word right after a subject pronoun or before a reflexive one."""
    out: list[tuple[str, str]] = []
    for clause in _CLAUSE.split(text):
        tokens = words(clause)
        for i, w in enumerate(tokens):
            if not _content(w):
                continue
            out.append((stem(w), w))
            if i and tokens[i - 1] in COPULAS:
                out.append((PREDICATIVE, w))
            if (i and tokens[i - 1] in SUBJECTS) or (i + 1 < len(tokens) and tokens[i + 1] in REFLEXIVES):
                out.append((FINITE, w))
            for part in analyzer.split(w):
                # only parts that are words on their own ("belysning", not "gatu" or "stads"); the form
                # is the compound itself, so a part is shown as a word of the text, never cut out of one
                if len(part) > 3 and _content(part) and part in analyzer.lexicon:
                    out.append((stem(part), w))
        for a, b in zip(tokens, tokens[1:]):
            if _content(a) and _content(b):
                out.append((f"{stem(a)} {stem(b)}", f"{a} {b}"))
    return out


def theme_term_counts(analyzer: Analyzer, docs: Sequence[str]) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """One theme's term statistics: documents per term, and the surface forms seen for each term.

    Counts of several parts of one theme add up (``Counter`` sums), so the statistics can be
    gathered in parallel over shards of the texts and merged (the Ray engine does).
    """
    c: Counter[str] = Counter()
    f: dict[str, Counter[str]] = {}
    for text in docs:
        seen = set()
        for term, form in _terms_with_forms(analyzer, text):
            f.setdefault(term, Counter())[form] += 1
            if term not in seen and term not in (PREDICATIVE, FINITE):  # documents, not repetitions
                c[term] += 1
                seen.add(term)
    return c, f


def surface(term: str, forms: Counter[str]) -> str:
    """How a term is shown: its most common form that stems to the term itself (a standalone word
    or phrase), else its most common form (a compound that holds the term as a part)."""
    own = [(n, form) for form, n in forms.items() if " ".join(stem(w) for w in form.split()) == term]
    pool = own or [(n, form) for form, n in forms.items()]
    return max(pool, key=lambda p: (p[0], -len(p[1]), p[1]))[1] if pool else term


def _ranked_terms(c: Counter[str], total: Counter[str], avg: float, n_texts: int) -> list[tuple[str, float]]:
    """A theme's (term, c-TF-IDF weight), best first (a term in one text only is dropped above 3 texts)."""
    size = max(sum(c.values()), 1)
    scored = []
    for term, n in c.items():
        if n < 2 and n_texts > 3:
            continue
        weight = (n / size) * math.log(1 + avg / total[term])
        if " " in term:
            weight *= 1.2 if n >= 3 else 0.5
        scored.append((weight, term))
    scored.sort(key=lambda p: (-p[0], p[1]))
    return [(t, w) for w, t in scored]


def candidates(
    ranked: Iterable[tuple[str, float]], forms: Mapping[str, Counter[str]], limit: int = N_CANDIDATES
) -> list[tuple[str, float]]:
    """The first ``limit`` (surface form, weight) of the ranked terms; a single word whose stem an
    earlier candidate already holds, and a repeated surface, are skipped."""
    out: list[tuple[str, float]] = []
    shown_before: set[str] = set()
    used_stems: set[str] = set()
    for term, weight in ranked:
        parts = set(term.split())
        if parts & used_stems and " " not in term:
            continue
        shown = surface(term, forms[term])
        if shown in shown_before:
            continue
        out.append((shown, weight))
        shown_before.add(shown)
        used_stems |= parts
        if len(out) == limit:
            break
    return out


# -- re-ranking ---------------------------------------------------------------------------------
def mmr_order(
    vectors: np.ndarray, centroid: np.ndarray, diversity: float = DIVERSITY, prior: np.ndarray | None = None
) -> list[int]:
    """Maximal marginal relevance: indices of ``vectors`` in the order MMR picks them.

    Relevance is the cosine to ``centroid``, blended with ``prior`` (the c-TF-IDF weights) when
    given: both are scaled to [0, 1] within the pool and mixed ``1 - TFIDF_SHARE : TFIDF_SHARE``.
    The first pick is the most relevant; each next one maximises
    ``(1 - diversity) * relevance - diversity * max cos(candidate, chosen)``.
    """
    n = len(vectors)
    if n == 0:
        return []
    v = _unit(np.asarray(vectors, dtype=np.float64))
    relevance = _scaled(v @ _unit(np.asarray(centroid, dtype=np.float64)))
    if prior is not None:
        relevance = (1 - TFIDF_SHARE) * relevance + TFIDF_SHARE * _scaled(np.asarray(prior, dtype=np.float64))
    pairwise = v @ v.T
    chosen = [int(np.argmax(relevance))]
    left = [i for i in range(n) if i != chosen[0]]
    while left:
        redundancy = pairwise[np.ix_(left, chosen)].max(axis=1)
        score = (1 - diversity) * relevance[left] - diversity * redundancy
        best = left[int(np.argmax(score))]
        chosen.append(best)
        left.remove(best)
    return chosen


def _scaled(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min() if len(x) else 0.0
    return (x - x.min()) / span if span > 0 else np.ones_like(x)


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


# -- adjectives ---------------------------------------------------------------------------------
# Derivational suffixes that make adjectives (viktig, tillgänglig, politisk, långsam, hållbar,
# nervös), each followed by an inflection or comparison ending.
ADJECTIVE_SUFFIXES = ("lig", "ig", "isk", "sam", "bar", "ös")
# Comparatives and superlatives that no rule derives (Swedish grammar, not read off any corpus).
# Short, frequent adjectives (all their forms) that the paradigm rule's four-letter minimum misses.
SHORT_ADJECTIVES = frozenset(
    ["ny", "nya", "nytt", "bra", "fin", "fint", "fina", "god", "gott", "goda", "hög", "högt", "höga", "låg", "lågt"]
    + ["låga", "stor", "stort", "stora", "liten", "litet", "lilla", "små", "ung", "ungt", "unga", "gammal", "gammalt"]
    + ["gamla", "ren", "rent", "rena", "fri", "fritt", "fria", "ful", "fult", "fula", "dyr", "dyrt", "dyra"]
)
IRREGULAR_COMPARISON = frozenset(
    [
        "bättre",
        "bäst",
        "bästa",
        "sämre",
        "sämst",
        "sämsta",
        "större",
        "störst",
        "största",
        "mindre",
        "minst",
        "minsta",
        "fler",
        "flera",
        "flest",
        "färre",
        "högre",
        "högst",
        "högsta",
        "lägre",
        "lägst",
        "lägsta",
        "längre",
        "längst",
        "längsta",
        "yngre",
        "yngst",
        "yngsta",
        "äldre",
        "äldst",
        "äldsta",
        "tyngre",
        "tyngst",
        "tyngsta",
    ]
)
# Endings that show a base is a noun or a verb, not an adjective: definite forms, plurals, the
# present and past tenses and the passive (risken, riskerna, lampor, områden, läser, utförde,
# betalas); no adjective form ends so.
_NOT_ADJECTIVE = ("en", "et", "ar", "or", "er", "arna", "erna", "orna", "ens", "ets", "ns", "n", "na") + (
    "de",
    "te",
    "des",
    "tes",
    "as",
    "es",
    "s",
)


_VOWELS = "aeiouyåäöé"


def _bases(word: str) -> set[str]:
    """The base forms ``word`` may be an inflection or comparison of."""
    out = {word}
    for ending in ("aste", "are", "ast", "tt", "t", "a", "e"):
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            base = word[: -len(ending)]
            out.add(base)
            if base[-1] in "lnr" and base[-2] not in _VOWELS:
                out.add(base[:-1] + "e" + base[-1])  # säkra -> säker, usla -> usel, öppna -> öppen
            if base.endswith("mm"):
                out.add(base[:-1])  # långsamma -> långsam, tomma -> tom
    return out


def _paradigm(base: str) -> set[str]:
    """The forms an adjective with this base takes (trött|a, mörk|t, stängd -> stängt, ny|tt|a, usel -> usla).

    A base ending in a vowel takes -tt (nytt, fritt): its -t form would be a noun's definite form
    (område -> området, arbete -> arbetet), so it is not counted.
    """
    if len(base) > 3 and base.endswith(("el", "en", "er")):
        # vacker -> vackert, vackra; öppen -> öppet, öppna: a base in -en whose -a form keeps the e
        # ("områden" -> "områdena") is a noun's plural
        short = base[:-2] + base[-1]
        return {base, base[:-1] + "t" if base.endswith("en") else base + "t", short + "a", short + "are"}
    return _plain_paradigm(base)


def _plain_paradigm(base: str) -> set[str]:
    forms = {base, base + "a", base + "are", base + "ast"}
    if base[-1:] in _VOWELS:
        forms.add(base + "tt")
    elif base.endswith("d"):
        forms.add(base[:-1] + "t")
    else:
        forms.add(base + "t")
    return forms


@dataclass
class CorpusWords:
    """What the adjective rule reads from the corpus: its words, and how often each follows a copula.

    Attributes:
        vocabulary: every content word seen (the more text, the more inflections the rule sees).
        predicative: word -> share of its uses right after a copula or degree word ("blir trötta").
        uses: word -> times seen standalone.
        attributive: word -> times seen right before another content word ("äldre personer").
        finite: word -> share of its uses right after a subject pronoun or before a reflexive one
            ("de känner", "känner sig"): a finite verb.
    """

    vocabulary: frozenset[str] = frozenset()
    predicative: Mapping[str, float] = field(default_factory=dict)
    uses: Mapping[str, int] = field(default_factory=dict)
    attributive: Mapping[str, int] = field(default_factory=dict)
    finite: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_forms(cls, forms: Sequence[Mapping[str, Counter[str]]]) -> CorpusWords:
        """From the themes' surface forms (:func:`theme_term_counts`), so sharded counts serve too."""
        after: Counter[str] = Counter()
        verb: Counter[str] = Counter()
        uses: Counter[str] = Counter()
        before: Counter[str] = Counter()
        vocabulary: set[str] = set()
        for f in forms:
            for term, seen in f.items():
                if term in (PREDICATIVE, FINITE):
                    (after if term == PREDICATIVE else verb).update(seen)
                    continue
                for form, n in seen.items():
                    ws = form.split()
                    vocabulary.update(ws)
                    if len(ws) == 2:
                        before[ws[0]] += n
                    elif stem(form) == term:
                        uses[form] += n
        shares = {w: n / max(uses[w], n) for w, n in after.items()}
        finite = {w: n / max(uses[w], n) for w, n in verb.items()}
        return cls(frozenset(vocabulary), shares, dict(uses), dict(before), finite)


def is_adjective_like(word: str, corpus: CorpusWords | None = None) -> bool:
    """True when ``word`` reads as an adjective (any form), by rules that need no tagger.

    In order: an irregular comparative (bättre, större, äldre) or a short frequent adjective (ny,
    stor, gammal) is one; a word the corpus shows as a
    noun or verb (word or base + en/et/ar/er/or/arna/erna/orna/ns: "risken", "läser"), or a compound
    whose head is a known word and whose tail shows a noun form ("kärnkraftsrisk"), is not; a word
    that follows a copula or degree word in at least :data:`PREDICATIVE_SHARE` of its uses ("blir
    trötta", "är usel", "helt mörk") is one, unless it is longer than eight letters ("är
    cykelvägen"), a plural in -ar/-or ("är föräldrar") or an agent noun in -are ("är tränare"); so is a word whose base (the word less an inflection
    or comparison ending) ends in an adjective suffix (-lig, -ig, -isk, -sam, -bar, -ös; five letters
    or more), or has two of its adjective forms in the corpus (mörk + mörkt, trött + trötta; a base
    of four letters or more).

    An adjective the corpus uses as a noun for a group of people ("äldre", "unga", "anhöriga") is
    not adjective-like (see :func:`_used_as_noun`).

    Limits: an adjective seen once, in one form, never after a copula and without a suffix, is
    missed; a word that is both (ljus, öppen) counts as a noun when the corpus holds a noun form of
    it; an infinitive whose supine is also seen and whose present tense is not ("läsa", "läst") reads
    as an adjective, and is kept out of the label too.

    Args:
        word: a lower-case word.
        corpus: the corpus's words and predicative shares (none: the suffix rules only).
    """
    corpus = corpus or CorpusWords()
    w = word.lower()
    return _adjective_form(w, corpus) and not _used_as_noun(w, corpus)


def _used_as_noun(w: str, corpus: CorpusWords) -> bool:
    """An adjective the corpus uses as a noun for a group of people ("äldre som bor ensamma", "för
    unga", "anhöriga kan"): a plural or comparative form (-a, -e) seen at least twice, mostly
    neither before a content word ("äldre personer") nor after a copula ("är trötta")."""
    n = corpus.uses.get(w, 0)
    if n < 2 or not w.endswith(("a", "e")):
        return False
    before_noun = corpus.attributive.get(w, 0) / n
    return before_noun < 0.5 and corpus.predicative.get(w, 0.0) < PREDICATIVE_SHARE


def _adjective_form(w: str, corpus: CorpusWords) -> bool:
    vocabulary = corpus.vocabulary
    if w in IRREGULAR_COMPARISON or w in SHORT_ADJECTIVES:
        return True
    if len(w) < 3 or _shows_noun(w, vocabulary) or _noun_compound(w, vocabulary):
        return False
    if corpus.predicative.get(w, 0.0) >= PREDICATIVE_SHARE and _may_be_predicative(w):
        return True
    for base in _bases(w):
        if _shows_noun(base, vocabulary):
            continue
        if len(base) >= 5 and base.endswith(ADJECTIVE_SUFFIXES) and (w.endswith("are") or not w.endswith("e")):
            return True
        seen = _paradigm(base) & (vocabulary | {w})
        syncopated = base.endswith(("el", "en", "er")) and len(base) > 3
        if syncopated and not {base[:-2] + base[-1] + "a", base[:-2] + base[-1] + "are"} & seen:
            continue  # "områden" + "området" is a noun; "öppen" shows itself by "öppna"
        if len(base) >= 4 and len(seen) >= 2:
            return True
    return False


def _may_be_predicative(word: str) -> bool:
    """Whether a word after a copula may be an adjective: not a long compound ("det är cykelvägen
    som ..."; long adjectives carry a suffix the other rules see), a plural ("är föräldrar"; "klar"
    and "rar" are short) or an agent noun ("är tränare")."""
    plural = len(word) >= 6 and word.endswith(("ar", "or"))
    return len(word) <= 8 and not plural and not word.endswith("are")


def _shows_noun(base: str, vocabulary: frozenset[str] | set[str]) -> bool:
    return any(base + ending in vocabulary for ending in _NOT_ADJECTIVE)


def _noun_compound(word: str, vocabulary: frozenset[str] | set[str]) -> bool:
    """A compound whose head is a known word and whose tail (4+ letters) shows a noun form."""
    for i in range(3, len(word) - 3):
        head, tail = word[:i], word[i:]
        known_head = head in vocabulary or (head.endswith("s") and head[:-1] in vocabulary)
        if known_head and _shows_noun(tail, vocabulary):
            return True
    return False


def adjective_only(phrase: str, corpus: CorpusWords | None = None) -> bool:
    """True when every word of ``phrase`` is adjective-like ("trötta", "mörkt", "helt ny")."""
    ws = phrase.lower().split()
    return bool(ws) and all(is_adjective_like(w, corpus) for w in ws)


def is_verb_like(word: str, corpus: CorpusWords | None = None) -> bool:
    """True when the corpus uses ``word`` as a finite verb: at least :data:`FINITE_SHARE` of its uses
    right after a subject pronoun or right before a reflexive one ("de känner sig otrygga").

    Limits: a verb never seen in such a place (an infinitive, a verb after a noun subject: "bussen
    går") is missed; a noun right after a pronoun in an inverted clause ("då har vi problem") counts
    against it, so a noun is taken for a verb only when most of its uses are of that kind.
    """
    if corpus is None:
        return False
    return corpus.finite.get(word.lower(), 0.0) >= FINITE_SHARE


def not_a_noun_phrase(phrase: str, corpus: CorpusWords | None = None) -> bool:
    """True when ``phrase`` cannot name what a theme is about: every word adjective-like ("trötta",
    "helt ny"), or a finite verb among its words ("känner", "känner otrygga": a noun phrase holds none)."""
    ws = phrase.lower().split()
    return adjective_only(phrase, corpus) or any(is_verb_like(w, corpus) for w in ws)


# -- labels -------------------------------------------------------------------------------------
def label_themes(
    analyzer: Analyzer,
    docs_by_theme: Sequence[Sequence[str]],
    n_keywords: int = 8,
    centroids: np.ndarray | None = None,
    encode: Encode | None = None,
) -> list[ThemeLabel]:
    """Keywords and a label for each theme.

    Args:
        analyzer: the Swedish analyzer (for compound splitting).
        docs_by_theme: the texts of each theme.
        n_keywords: keywords per theme.
        centroids: unit centroid of each theme (rows in the order of ``docs_by_theme``), in the
            space of ``encode``; with ``encode``, the candidates are re-ranked by MMR.
        encode: texts -> vectors, the encoder that made the centroids (``encode_queries``).
    """
    stats = [theme_term_counts(analyzer, docs) for docs in docs_by_theme]
    return labels_from_counts(
        [c for c, _ in stats],
        [f for _, f in stats],
        [len(d) for d in docs_by_theme],
        n_keywords,
        centroids=centroids,
        encode=encode,
    )


def labels_from_counts(
    counts: Sequence[Counter[str]],
    forms: Sequence[dict[str, Counter[str]]],
    n_docs: Sequence[int],
    n_keywords: int = 8,
    centroids: np.ndarray | None = None,
    encode: Encode | None = None,
) -> list[ThemeLabel]:
    """Score every theme's terms by c-TF-IDF, re-rank them, and pick keywords and a label.

    Args:
        counts: per theme, documents per term (from :func:`theme_term_counts`).
        forms: per theme, the surface forms of each term.
        n_docs: per theme, how many texts were counted.
        n_keywords: keywords per theme.
        centroids: unit centroid of each theme (row k for theme k), in the space of ``encode``.
        encode: texts -> vectors with the encoder of the centroids; when both are given the
            candidates are re-ranked by cosine to the centroid with MMR (one call for all themes).

    Raises:
        ValueError: when only one of ``centroids`` and ``encode`` is given, or the centroids do not
            match the themes.
    """
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    avg = sum(sum(c.values()) for c in counts) / max(len(counts), 1)
    corpus = CorpusWords.from_forms(forms)
    scored = [
        candidates(_ranked_terms(c, total, avg, n_texts), f, max(N_CANDIDATES, n_keywords))
        for c, f, n_texts in zip(counts, forms, n_docs)
    ]
    if (encode is None) != (centroids is None) or (centroids is not None and len(centroids) != len(scored)):
        raise ValueError("re-ranking needs both encode and one centroid per theme")
    if encode is not None and centroids is not None:
        pools = _rerank(scored, np.asarray(centroids), encode)
    else:
        pools = [[c for c, _ in pool] for pool in scored]
    return [ThemeLabel(pool[:n_keywords], _readable(label_terms(pool, corpus))) for pool in pools]


def _rerank(scored: list[list[tuple[str, float]]], centroids: np.ndarray, encode: Encode) -> list[list[str]]:
    """Each pool in MMR order against its theme's centroid (the candidates embedded in one call)."""
    pools = [[c for c, _ in pool] for pool in scored]
    flat = sorted({c for pool in pools for c in pool})
    if not flat:
        return pools
    embedded = _unit(np.asarray(encode(flat), dtype=np.float64))
    centroids = _unit(np.asarray(centroids, dtype=np.float64))
    if CENTRE and len(centroids) > 1:
        # what sets a theme apart, as c-TF-IDF does: without this, words every text is near (the
        # encoder's common direction: "vissa", "därefter") rank high in every theme
        embedded = embedded - embedded.mean(axis=0)
        centroids = centroids - centroids.mean(axis=0)
    vectors = dict(zip(flat, embedded))
    out = []
    for pool, weights, centroid in zip(pools, scored, centroids):
        prior = np.array([w for _, w in weights])
        order = mmr_order(np.stack([vectors[c] for c in pool]), centroid, DIVERSITY, prior) if pool else []
        out.append([pool[i] for i in order])
    return out


def label_terms(ranked: Sequence[str], corpus: CorpusWords | None = None) -> list[str]:
    """The first :data:`LABEL_TERMS` candidates that are noun phrases (:func:`not_a_noun_phrase`) and repeat no
    word of an earlier one in another form ("skolan" after "skolor", "elcykel" after "elcyklar")."""
    out: list[str] = []
    for cand in ranked:
        if not_a_noun_phrase(cand, corpus) or any(
            _same_word(a, b) for c in out for a in c.split() for b in cand.split()
        ):
            continue
        out.append(cand)
        if len(out) == LABEL_TERMS:
            break
    return out


def _same_word(a: str, b: str) -> bool:
    """Two forms of one word: equal stems, one stem (4+ letters) starting the other and at most two
    letters shorter (skol, skolan; not klon, kloning), or the same consonants (elcykl, elcykel)."""
    sa, sb = stem(a.lower()), stem(b.lower())
    short, long_ = sorted((sa, sb), key=len)
    inflected = len(short) >= 4 and long_.startswith(short) and len(long_) - len(short) <= 2
    return sa == sb or inflected or _skeleton(sa) == _skeleton(sb)


def _skeleton(word: str) -> str:
    """The first letter and the consonants after it, doubled ones once (elcykel -> elckl)."""
    out = word[:1]
    for ch in word[1:]:
        if ch not in _VOWELS and not out.endswith(ch):
            out += ch
    return out


def _readable(keywords: list[str]) -> str:
    if not keywords:
        return "Övrigt"
    top = keywords[:LABEL_TERMS]
    text = top[0] if len(top) == 1 else ", ".join(top[:-1]) + " och " + top[-1]
    return text[0].upper() + text[1:]


# -- the representative title -------------------------------------------------------------------
def representative_title(
    representatives: Sequence[Mapping[str, str]],
    title_of: Callable[[str, str], str | None],
    max_chars: int = 80,
) -> str | None:
    """The title of a theme's most representative idea, to show beside its label.

    The representatives come closest to the centroid first (staff-pinned ones before them). The
    first idea wins; a theme of needs only shows its first need. A record without a title shows
    the start of its text, cut at a word and marked with "…".

    Args:
        representatives: ``[{"kind": "ideas"|"needs", "id": ...}, ...]`` as stored with the theme.
        title_of: ``(kind, id) -> title or text`` (None when the record is gone, e.g. erased).
        max_chars: longest title shown.
    """
    ordered = [r for r in representatives if r.get("kind") == "ideas"] + [
        r for r in representatives if r.get("kind") != "ideas"
    ]
    for r in ordered:
        text = title_of(r["kind"], r["id"])
        if text and text.strip():
            return shorten(text.strip(), max_chars)
    return None


def shorten(text: str, max_chars: int = 80) -> str:
    """``text`` on one line, cut at the last whole word within ``max_chars`` ("…" marks a cut)."""
    one = " ".join(text.split())
    if len(one) <= max_chars:
        return one
    cut = one[: max_chars - 1]
    if one[max_chars - 1] != " ":  # the cut fell inside a word: drop that word
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"
