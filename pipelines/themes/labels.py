"""Swedish theme labels by class-based TF-IDF over stems, compound parts and bigrams.

Keywords are shown in their most common surface form in the theme (never a bare stem), and no
stop-word can be a keyword: stop-words never become terms in the first place.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from matcher.swedish import Analyzer, is_stop, stem, words


@dataclass
class ThemeLabel:
    """Keywords (surface forms, best first) and a short label."""

    keywords: list[str]
    label: str


def _terms_with_forms(analyzer: Analyzer, text: str) -> list[tuple[str, str]]:
    """(term, surface form) pairs: content-word stems, compound parts, and bigrams of content words."""
    out: list[tuple[str, str]] = []
    content = [w for w in words(text) if not is_stop(w) and len(w) > 2]
    for w in content:
        out.append((stem(w), w))
        for part in analyzer.split(w):
            # only parts that are words on their own ("belysning", not "gatu" or "stads")
            if len(part) > 3 and not is_stop(part) and part in analyzer.lexicon:
                out.append((stem(part), part))
    for a, b in zip(content, content[1:]):
        out.append((f"{stem(a)} {stem(b)}", f"{a} {b}"))
    return out


def label_themes(analyzer: Analyzer, docs_by_theme: Sequence[Sequence[str]], n_keywords: int = 8) -> list[ThemeLabel]:
    """c-TF-IDF keywords and a label for each theme.

    Args:
        analyzer: the Swedish analyzer (for compound splitting).
        docs_by_theme: the texts of each theme.
        n_keywords: keywords per theme.
    """
    stats = [theme_term_counts(analyzer, docs) for docs in docs_by_theme]
    return labels_from_counts([c for c, _ in stats], [f for _, f in stats], [len(d) for d in docs_by_theme], n_keywords)


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
            if term not in seen:  # count documents, not repetitions, within a theme
                c[term] += 1
                seen.add(term)
    return c, f


def labels_from_counts(
    counts: Sequence[Counter[str]], forms: Sequence[dict[str, Counter[str]]], n_docs: Sequence[int], n_keywords: int = 8
) -> list[ThemeLabel]:
    """Score every theme's terms by c-TF-IDF and pick keywords and a label.

    Args:
        counts: per theme, documents per term (from :func:`theme_term_counts`).
        forms: per theme, the surface forms of each term.
        n_docs: per theme, how many texts were counted.
        n_keywords: keywords per theme.
    """
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    avg = sum(sum(c.values()) for c in counts) / max(len(counts), 1)
    labels = []
    for c, f, n_texts in zip(counts, forms, n_docs):
        size = max(sum(c.values()), 1)
        scored = []
        for term, n in c.items():
            if n < 2 and n_texts > 3:
                continue
            weight = (n / size) * math.log(1 + avg / total[term])
            if " " in term:
                weight *= 1.2 if n >= 3 else 0.5
            scored.append((weight, term))
        scored.sort(reverse=True)
        keywords: list[str] = []
        used_stems: set[str] = set()
        for _, term in scored:
            parts = set(term.split())
            if parts & used_stems and " " not in term:
                continue
            surface = f[term].most_common(1)[0][0]
            if surface in keywords:
                continue
            keywords.append(surface)
            used_stems |= parts
            if len(keywords) == n_keywords:
                break
        labels.append(ThemeLabel(keywords, _readable(keywords)))
    return labels


def _readable(keywords: list[str]) -> str:
    if not keywords:
        return "Övrigt"
    top = keywords[:3]
    text = top[0] if len(top) == 1 else ", ".join(top[:-1]) + " och " + top[-1]
    return text[0].upper() + text[1:]
