"""The Swedish stop-word list: a maintained package list plus a short, documented domain list.

The general list is the Swedish list that the ``stop-words`` package ships inside its wheel (no
download at run time). The domain list below is kept apart so that each addition is visible and
argued; it was written from knowledge of the genre (submitted ideas and citizens' needs in a
Swedish municipality), not read off any corpus, and the demo corpus in particular played no part.
"""

from __future__ import annotations

from functools import lru_cache

# word -> why it carries no signal in this service (one line each)
DOMAIN_STOP_WORDS: dict[str, str] = {
    "kommun": "every idea and need in the service concerns the municipality; it separates nothing",
    "kommunen": "definite form of 'kommun', same reason",
    "idé": "the genre word of every submission ('min idé är ...'), not its subject",
    "idén": "definite form of 'idé', same reason",
    "förslag": "the genre word of every submission ('mitt förslag ...'), not its subject",
    "förslaget": "definite form of 'förslag', same reason",
    "föreslår": "the verb of the genre ('jag föreslår att ...'), not the subject",
}

# Words of the package list that the service keeps as content words: none today. A word goes here,
# with its reason, only when a measurement on a dev set shows that dropping it hurts.
KEPT_WORDS: dict[str, str] = {}


@lru_cache(maxsize=1)
def package_stop_words() -> frozenset[str]:
    """The Swedish list of the ``stop-words`` package, lower-cased."""
    try:
        from stop_words import get_stop_words
    except ImportError as exc:  # a dependency of the project: a clear hint rather than an empty list
        raise ImportError("the Swedish stop-word list needs the 'stop-words' package: pip install stop-words") from exc
    return frozenset(w.strip().lower() for w in get_stop_words("swedish") if w.strip())


@lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    """Package list plus the domain words, less the kept words."""
    return (package_stop_words() | frozenset(DOMAIN_STOP_WORDS)) - frozenset(KEPT_WORDS)
