"""The Swedish analyzer: the package stop list, the documented domain words, compound splitting."""

from __future__ import annotations

import pytest

from matcher.stopwords import DOMAIN_STOP_WORDS, KEPT_WORDS, package_stop_words
from matcher.swedish import STOP_WORDS, Analyzer, is_stop


def test_package_words_are_removed() -> None:
    pkg = package_stop_words()
    assert len(pkg) > 300  # the stop-words package's Swedish list, not a hand-made one
    for w in ("och", "att", "eftersom", "nödvändigtvis"):
        assert w in pkg and is_stop(w)
    assert Analyzer().terms("och eftersom det är nödvändigtvis så") == []


def test_domain_words_are_documented_and_behave_as_documented() -> None:
    for word, reason in DOMAIN_STOP_WORDS.items():
        assert reason.strip(), word
        assert word in STOP_WORDS
    assert "kommunen" not in package_stop_words()  # a domain addition, not from the package
    assert Analyzer().terms("Kommunen ska ha ett förslag om simhallen") == ["simhall"]
    assert not set(KEPT_WORDS) & STOP_WORDS


def test_no_word_list_is_built_in_splitting_comes_from_the_indexed_texts() -> None:
    a = Analyzer()
    assert a.split("cykelvägar") == ()  # nothing learned yet: no built-in lexicon
    a.learn(["cykel och väg", "en cykel på en väg"])
    assert a.split("cykelvägar") == ("cykel", "vägar")
    assert {"cykel", "väg"} <= set(a.terms("cykelvägar"))
    assert Analyzer(split_compounds=False).split("cykelvägar") == ()
    with pytest.raises(ValueError):
        Analyzer(compounds="demo")


def test_hunspell_lexicon_splits_without_learning() -> None:
    pytest.importorskip("spylls", reason="the Hunspell comparison needs the eval extra (spylls, hunspell-sv)")
    try:
        a = Analyzer(compounds="hunspell")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    assert a.split("busshållplatsen") == ("buss", "hållplatsen")
    assert a.split("skolmaten") == ("skol", "maten")  # a linking form from the dictionary
    assert a.split("information") == ()
