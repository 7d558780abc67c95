"""Bootstrap intervals and paired tests on synthetic numbers with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics import bootstrap_ci, bootstrap_statistic_ci, paired_test, per_query_ranking, with_intervals


def test_identical_systems_give_p_one_and_an_interval_around_zero() -> None:
    a = np.random.default_rng(0).random(200)
    t = paired_test(a, a.copy())
    assert t["diff"] == 0.0
    assert t["diff_low"] <= 0.0 <= t["diff_high"]
    assert t["p"] == pytest.approx(1.0)


def test_a_clearly_better_system_is_significant() -> None:
    rng = np.random.default_rng(1)
    b = rng.random(200)
    t = paired_test(b + 0.2 + rng.normal(0, 0.05, 200), b)
    assert t["diff"] == pytest.approx(0.2, abs=0.02)
    assert 0.0 < t["diff_low"] < 0.2 < t["diff_high"]
    assert t["p"] < 0.01


def test_noise_is_not_significant() -> None:
    rng = np.random.default_rng(2)
    b = rng.random(100)
    t = paired_test(b + rng.normal(0, 0.1, 100) - 0.0, b + rng.normal(0, 0.1, 100))
    assert t["p"] > 0.05
    assert t["diff_low"] < 0 < t["diff_high"]


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_queries() -> None:
    rng = np.random.default_rng(3)
    small, large = rng.random(50), rng.random(5000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s
    assert lo_l < 0.5 < hi_l  # the true mean of U(0, 1)
    assert hi_l - lo_l < (hi_s - lo_s) / 3
    assert bootstrap_ci([1.0] * 10) == (1.0, 1.0)
    assert bootstrap_ci(small, seed=5) == bootstrap_ci(small, seed=5)  # fixed seed, same interval


def test_statistic_interval_and_per_query_means() -> None:
    x = np.arange(100, dtype=float)
    lo, hi = bootstrap_statistic_ci(lambda i: float(x[i].mean()), len(x))
    assert lo < 49.5 < hi
    per = per_query_ranking([["a", "b"], ["b", "a"]], [{"a"}, {"a"}], ks=(1,))
    assert per["mrr"].tolist() == [1.0, 0.5]
    rep = with_intervals(per)
    assert rep["mrr"] == 0.75 and rep["queries"] == 2
    assert rep["mrr_ci"][0] >= 0.5 and rep["mrr_ci"][1] <= 1.0


def test_clustering_interval_contains_its_estimate_despite_resampling_bias() -> None:
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(4)
    gold = rng.integers(0, 8, 300)
    labels = np.where(rng.random(300) < 0.5, gold, rng.integers(0, 8, 300))
    nmi = normalized_mutual_info_score(gold, labels)
    lo, hi = bootstrap_statistic_ci(lambda i: normalized_mutual_info_score(gold[i], labels[i]), len(gold), 300)
    assert lo < nmi < hi


def test_the_paired_theme_comparison_favours_the_clustering_closer_to_the_topics() -> None:
    from evaluation.themes import paired_agreement

    rng = np.random.default_rng(3)
    gold = np.repeat(["a", "b", "c"], 40)
    close = np.repeat([0, 1, 2], 40)
    close[rng.choice(120, 6, replace=False)] = -1  # a few unassigned
    noise = rng.integers(0, 3, 120)
    ahead = paired_agreement(gold.tolist(), close, noise)
    assert ahead["nmi"] > 0.5 and ahead["nmi_ci"][0] > 0
    assert ahead["ari"] > 0.5 and ahead["ari_ci"][0] > 0
    behind = paired_agreement(gold.tolist(), noise, close)
    assert behind["nmi"] == pytest.approx(-ahead["nmi"]) and behind["nmi_ci"][1] < 0
    same = paired_agreement(gold.tolist(), close, close.copy())
    assert same["nmi"] == 0.0 and same["nmi_ci"] == [0.0, 0.0]


def test_the_stop_word_rate_counts_frequent_words_the_pipeline_does_not_filter() -> None:
    pytest.importorskip("wordfreq", reason="the stop-word rate needs the eval extra (wordfreq)")
    from evaluation.themes import independent_stop_words, stop_word_rate
    from matcher.stopwords import stop_words

    common = independent_stop_words()
    # the measure can fail for the pipeline: frequent words its own list lets through
    assert len(common - stop_words()) >= 20
    leaked = sorted(common - stop_words())[0]
    assert stop_word_rate([["cykelbana", "snöröjning"]]) == 0.0
    assert stop_word_rate([["cykelbana", leaked]]) == 0.5
    assert stop_word_rate([["och", "snöröjning", "gatubelysning", "att"]]) == 0.5
