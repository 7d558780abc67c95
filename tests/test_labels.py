"""Theme labels: whole-word candidates, MMR re-ranking, the adjective rule, the representative title."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from matcher.swedish import Analyzer, stem, words
from pipelines.themes import compute
from pipelines.themes import labels as labels_module
from pipelines.themes.config import ThemeJobConfig
from pipelines.themes.labels import (
    PREDICATIVE,
    CorpusWords,
    adjective_only,
    is_adjective_like,
    is_verb_like,
    label_terms,
    label_themes,
    labels_from_counts,
    mmr_order,
    representative_title,
    shorten,
    theme_term_counts,
)
from tests.fakes import KeywordEncoder

SCHOOL = [
    "Eleverna är trötta och har huvudvärk, ventilationen i skolan är usel.",
    "Ventilationen på Strömbackaskolan är usel: eleverna blir trötta efter lunch.",
    "Dålig ventilation i klassrummen, eleverna blir trötta och får huvudvärk.",
    "Skolbiblioteket har för få böcker, eleverna vill låna fler böcker.",
]
PARKS = [
    "Gungorna på lekplatsen är trasiga och sanden är smutsig.",
    "Lekplatsen i parken behöver nya gungor, de gamla är trasiga.",
    "Fler bänkar i parken och en ny lekplats vid skolan.",
]


def _analyzer(texts: list[str]) -> Analyzer:
    analyzer = Analyzer(split_known_words=False)
    analyzer.learn(texts)
    return analyzer


def _corpus(themes: list[list[str]]) -> CorpusWords:
    analyzer = _analyzer([t for docs in themes for t in docs])
    return CorpusWords.from_forms([theme_term_counts(analyzer, docs)[1] for docs in themes])


# -- candidates are words of the texts ------------------------------------------------------------
def test_every_keyword_is_written_in_the_theme_and_no_phrase_jumps_a_stop_word() -> None:
    themes = [SCHOOL, PARKS]
    labels = label_themes(_analyzer(SCHOOL + PARKS), themes)
    for lab, docs in zip(labels, themes):
        tokens = [words(t) for t in docs]
        for kw in lab.keywords:
            ws = kw.split()
            # a phrase is two words written next to each other, a word is written as shown
            assert any(ws == toks[i : i + len(ws)] for toks in tokens for i in range(len(toks))), kw
    # "eleverna är trötta och har huvudvärk" gives no "trötta huvudvärk": "och har" stood between
    assert "trötta huvudvärk" not in labels[0].keywords


def test_a_compound_part_is_shown_as_the_compound_never_cut_out_of_it() -> None:
    docs = ["Skolgården är full av is", "Skolbiblioteket stänger tidigt", "Skolmaten är god"]
    # a lexicon that knows "skol" as a word of its own, and the compounds' tails
    analyzer = _analyzer(docs + ["skol skol gården gården biblioteket biblioteket maten maten"])
    counts, forms = theme_term_counts(analyzer, docs)
    assert counts[stem("skol")] == 3  # the part is a term: it gathers the three compounds
    assert set(forms[stem("skol")]) == {"skolgården", "skolbiblioteket", "skolmaten"}
    written = {w for d in docs for w in words(d)}
    for kw in label_themes(analyzer, [docs])[0].keywords:
        assert set(kw.split()) <= written, kw


# -- the adjective rule ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "word", ["viktig", "tillgängliga", "politiska", "långsamma", "hållbart", "nervös", "bättre", "störst", "nya"]
)
def test_suffixes_comparatives_and_short_adjectives_need_no_corpus(word: str) -> None:
    assert is_adjective_like(word)


@pytest.mark.parametrize(
    "word", ["skola", "lampor", "huvudvärk", "ventilationen", "biblioteket", "elever", "stig", "risk", "cykelbana"]
)
def test_nouns_are_not_adjectives(word: str) -> None:
    assert not is_adjective_like(word)


def test_the_corpus_shows_adjectives_after_a_copula_and_by_their_forms() -> None:
    corpus = _corpus([SCHOOL, PARKS])
    assert corpus.predicative["trötta"] == 1.0  # "är trötta", "blir trötta" (twice)
    assert is_adjective_like("trötta", corpus)
    assert is_adjective_like("usel", corpus)  # "är usel": no suffix, one form, caught by the copula
    assert is_adjective_like("trasiga", corpus)
    assert not is_adjective_like("huvudvärk", corpus)
    mork = CorpusWords(frozenset({"mörk", "mörkt", "parken"}))
    assert is_adjective_like("mörkt", mork)  # two adjective forms of one base
    assert not is_adjective_like("parken", mork)


def test_noun_forms_in_the_corpus_overrule_the_suffix_and_paradigm_rules() -> None:
    corpus = CorpusWords(frozenset({"kärnkraft", "risken", "riskerna", "område", "området", "områden", "områdena"}))
    assert not is_adjective_like("kärnkraftsrisk", corpus)  # known head + a tail with noun forms
    assert not is_adjective_like("området", corpus)  # område/området: a noun's definite form
    assert not is_adjective_like("områdena", corpus)  # -en plural, not an -en adjective (öppen -> öppna)
    assert is_adjective_like("öppna", CorpusWords(frozenset({"öppen", "öppna"})))


def test_an_adjective_used_for_a_group_of_people_is_a_noun() -> None:
    docs = ["Äldre som bor ensamma behöver sällskap", "Fler träffar för äldre", "Äldre personer vill ha fika"]
    corpus = _corpus([docs])
    assert corpus.uses["äldre"] == 3 and corpus.attributive["äldre"] == 1
    assert not is_adjective_like("äldre", corpus)
    assert is_adjective_like("äldre")  # without the corpus the comparative stands


def test_a_phrase_is_adjective_only_when_every_word_is() -> None:
    assert adjective_only("stora nya")
    assert not adjective_only("trasiga lampor")


def test_the_label_never_leads_with_adjectives_but_the_keywords_keep_them() -> None:
    themes = [SCHOOL[:3], PARKS]
    labels = label_themes(_analyzer(SCHOOL + PARKS), themes)
    corpus = _corpus(themes)
    school = labels[0]
    assert "trötta" in school.keywords  # it describes the theme
    terms = [t.strip() for t in school.label.lower().replace(" och ", ", ").split(",")]
    assert terms and not any(adjective_only(t, corpus) for t in terms)
    assert "ventilationen" in terms


SAFETY = [
    "Många kvinnor känner sig otrygga i parken på kvällen när belysningen är släckt.",
    "De känner sig rädda på kvällen vid gångtunneln, belysningen saknas.",
    "Vi känner oss otrygga i gångtunneln, mer belysning behövs på kvällen.",
    "Tänd belysningen i gångtunneln på kvällen, då har vi problem med mörkret.",
    "Problem med mörkret i parken, belysningen är trasig och problem med skadegörelse.",
]


def test_a_finite_verb_is_read_off_the_corpus_and_kept_out_of_the_label() -> None:
    corpus = _corpus([SAFETY, PARKS])
    assert is_verb_like("känner", corpus)  # "de känner", "känner sig", "känner oss"
    assert corpus.finite["känner"] == 1.0
    # "då har vi problem": one use of three after a pronoun, under the share that makes a verb
    assert 0 < corpus.finite["problem"] < labels_module.FINITE_SHARE and not is_verb_like("problem", corpus)
    assert not is_verb_like("kvällen", corpus) and not is_verb_like("känner")  # no corpus: no verb
    assert label_terms(["känner", "kvällen", "känner otrygga", "belysningen", "gångtunneln"], corpus) == [
        "kvällen",
        "belysningen",
        "gångtunneln",
    ]
    label = label_themes(_analyzer(SAFETY + PARKS), [SAFETY, PARKS])[0].label.lower()
    assert "känner" not in label and "kvällen" in label


def test_label_terms_skip_other_forms_of_a_word_already_in_the_label() -> None:
    assert label_terms(["skolor", "skolan", "elcyklar", "elcykel", "klon", "kloning"]) == ["skolor", "elcyklar", "klon"]


# -- MMR re-ranking -------------------------------------------------------------------------------
def test_mmr_picks_the_most_relevant_first_then_the_least_redundant() -> None:
    centroid = np.array([1.0, 0.0, 0.0])
    vectors = np.array([[0.9, 0.1, 0.0], [0.89, 0.12, 0.0], [0.7, 0.0, 0.7], [0.0, 1.0, 0.0]])
    assert mmr_order(vectors, centroid, diversity=0.0) == [0, 1, 2, 3]  # relevance only
    order = mmr_order(vectors, centroid, diversity=0.5)
    assert order[0] == 0 and order[1] == 2  # the near-copy of the first (1) waits


def test_candidates_are_reranked_towards_the_centroid_in_one_encoder_call(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = KeywordEncoder()
    themes = [SCHOOL, PARKS]
    analyzer = _analyzer(SCHOOL + PARKS)
    plain = label_themes(analyzer, themes)
    # centroids that point at "huvudvärk" (4th by c-TF-IDF in the school theme) and at "bänkar"
    cents = enc.encode_queries(["huvudvärk", "bänkar"])
    calls: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return enc.encode_queries(texts)

    blended = label_themes(analyzer, themes, centroids=cents, encode=encode)
    assert len(calls) == 1  # every theme's candidates in one call
    assert blended[0].keywords.index("huvudvärk") < plain[0].keywords.index("huvudvärk")
    assert blended[1].keywords[0] == "bänkar"
    assert set(blended[0].keywords) <= set(label_themes(analyzer, themes, n_keywords=40)[0].keywords)
    with pytest.raises(ValueError, match="both encode and one centroid per theme"):
        label_themes(analyzer, themes, encode=encode)  # no silent fallback to the c-TF-IDF order
    with pytest.raises(ValueError):
        label_themes(analyzer, themes, centroids=cents[:1], encode=encode)
    monkeypatch.setattr(labels_module, "TFIDF_SHARE", 0.0)  # relevance by the centroid alone
    assert label_themes(analyzer, themes, centroids=cents, encode=encode)[0].keywords[0] == "huvudvärk"


def test_sharded_counts_give_the_same_labels_as_the_whole() -> None:
    """The Ray engine counts shards and adds them up (``ray_stages.merge_term_counts``)."""
    themes = [SCHOOL, PARKS]
    analyzer = _analyzer(SCHOOL + PARKS)
    whole = label_themes(analyzer, themes)
    counts: list[Counter[str]] = []
    forms: list[dict[str, Counter[str]]] = []
    for docs in themes:
        c: Counter[str] = Counter()
        f: dict[str, Counter[str]] = {}
        for shard in (docs[:2], docs[2:]):
            sc, sf = theme_term_counts(analyzer, shard)
            c.update(sc)
            for term, seen in sf.items():
                f.setdefault(term, Counter()).update(seen)
        counts.append(c)
        forms.append(f)
    assert PREDICATIVE in forms[0] and PREDICATIVE not in counts[0]
    assert labels_from_counts(counts, forms, [len(d) for d in themes]) == whole


# -- the job's label stage and the representative title -------------------------------------------
def test_the_label_stage_passes_the_encoder_to_the_labels() -> None:
    enc = KeywordEncoder()
    texts = SCHOOL + PARKS
    items = compute.Items(
        [f"ideas:{i}" for i in range(len(texts))],
        ["ideas"] * len(texts),
        [str(i) for i in range(len(texts))],
        texts,
        enc.encode_queries(texts),
    )
    labels = np.array([0] * len(SCHOOL) + [1] * len(PARKS))
    placed = compute.Placement(labels, np.array(["clustered"] * len(texts), dtype=object), {}, {}, set(), [])
    seen: list[str] = []

    def encode(batch: list[str]) -> np.ndarray:
        seen.extend(batch)
        return enc.encode_queries(batch)

    labelled = compute.label(items, placed, ThemeJobConfig(), encode=encode)
    assert seen and set(labelled.themes[0].keywords) <= set(seen)
    assert compute.label(items, placed, ThemeJobConfig()).themes[0].keywords  # the encoder is optional


def test_representative_title_prefers_the_first_idea_and_shortens_a_text() -> None:
    records = {("needs", "N1"): "Behov först", ("ideas", "I1"): None, ("ideas", "I2"): "Fikaträffar för äldre"}
    reps = [{"kind": "needs", "id": "N1"}, {"kind": "ideas", "id": "I1"}, {"kind": "ideas", "id": "I2"}]
    assert representative_title(reps, lambda k, i: records[(k, i)]) == "Fikaträffar för äldre"
    assert representative_title(reps[:1], lambda k, i: records[(k, i)]) == "Behov först"
    assert representative_title([], lambda k, i: None) is None
    long = "Starta fikaträffar på träffpunkterna en gång i veckan för äldre som bor ensamma hemma"
    assert shorten(long, 40) == "Starta fikaträffar på träffpunkterna en…"
    assert len(shorten(long, 40)) <= 40


def test_the_label_report_flags_adjective_only_terms_as_the_job_reads_them() -> None:
    from evaluation.datasets import load_demo
    from evaluation.show_labels import adjective_terms, corpus_words

    demo = load_demo()
    corpus = corpus_words([r["text"] for r in demo.ideas] + [r["text"] for r in demo.needs])
    assert adjective_terms("Trötta, mörka och sämre", corpus) == ["trötta", "mörka", "sämre"]
    assert adjective_terms("Belysning, lampor och gatubelysningen", corpus) == []
    # the demo uses "äldre" and "anhöriga" as nouns for people: no adjective there
    assert adjective_terms("Äldre, anhöriga och hemtjänsten", corpus) == []
    assert adjective_terms("Äldre, anhöriga och hemtjänsten") == ["äldre", "anhöriga"]  # rules alone
