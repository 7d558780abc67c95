"""Ranking and clustering metrics (plain numpy; no service imports)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def first_relevant_rank(ranked: Sequence[str], relevant: set[str]) -> int | None:
    """1-based rank of the first relevant id, or None."""
    for i, rid in enumerate(ranked, start=1):
        if rid in relevant:
            return i
    return None


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the relevant ids found in the top k."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """Binary-relevance nDCG@k."""
    dcg = sum(1 / math.log2(i + 1) for i, rid in enumerate(ranked[:k], start=1) if rid in relevant)
    ideal = sum(1 / math.log2(i + 1) for i in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal if ideal else 0.0


def ranking_report(
    rankings: Sequence[Sequence[str]], relevants: Sequence[set[str]], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Mean recall@k (hit-based for single answers), MRR and nDCG@10 over queries."""
    out: dict[str, float] = {}
    n = len(rankings)
    if not n:
        return {"queries": 0}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean([recall_at(r, rel, k) for r, rel in zip(rankings, relevants)]))
    ranks = [first_relevant_rank(r, rel) for r, rel in zip(rankings, relevants)]
    out["mrr"] = float(np.mean([1 / r if r else 0.0 for r in ranks]))
    out["ndcg@10"] = float(np.mean([ndcg_at(r, rel, 10) for r, rel in zip(rankings, relevants)]))
    out["queries"] = n
    return out


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def precision_recall_at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Precision and recall of ``scores >= threshold`` against boolean labels."""
    flagged = scores >= threshold
    tp = int((flagged & labels).sum())
    precision = tp / int(flagged.sum()) if flagged.any() else 1.0
    recall = tp / int(labels.sum()) if labels.any() else 0.0
    return precision, recall


def calibrate_threshold(scores: np.ndarray, labels: np.ndarray, min_precision: float) -> tuple[float, float, float]:
    """Lowest threshold whose precision (and that of every higher threshold) is >= ``min_precision``.

    Returns:
        (threshold, precision, recall) at that threshold.
    """
    order = np.argsort(-scores)
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    prec = tp / np.arange(1, len(y) + 1)
    # the precision of every prefix from the top down to i must hold (a monotone guarantee)
    ok = np.minimum.accumulate(prec) >= min_precision
    if not ok.any():
        return float(s[0]) + 1e-6, 1.0, 0.0
    last = int(np.nonzero(ok)[0].max())
    threshold = float(s[last])
    p, r = precision_recall_at_threshold(scores, labels, threshold)
    return threshold, p, r


# ----- uncertainty: bootstrap intervals over queries and paired tests between systems -----

# the mean's interval and the paired test live in the service (``idesluss learn`` reports them too);
# one copy, imported here
from pipelines.learn_stats import N_RESAMPLES, SEED, bootstrap_ci, paired_test  # noqa: E402, F401  (re-exported)


def bootstrap_statistic_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Bias-corrected percentile bootstrap interval of any statistic of ``n`` items, ``statistic(indices)``.

    Used where the figure is not a mean of per-item values (Spearman, NMI, ARI, precision). A resample
    repeats items, and repeated items raise NMI by themselves, so the whole bootstrap distribution
    sits above the estimate; the percentiles are shifted back by the bootstrap bias
    (mean of the resamples minus the full-sample estimate).
    """
    if n < 2:
        return float("nan"), float("nan")
    estimate = float(statistic(np.arange(n)))
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(n_resamples)], dtype=float)
    stats = stats[np.isfinite(stats)]
    bias = float(stats.mean()) - estimate
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail]) - bias
    return float(lo), float(hi)


def per_query_ranking(
    rankings: Sequence[Sequence[str]], relevants: Sequence[set[str]], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, np.ndarray]:
    """Per-query values of each ranking metric (their means are ``ranking_report``)."""
    out = {f"recall@{k}": np.array([recall_at(r, rel, k) for r, rel in zip(rankings, relevants)]) for k in ks}
    ranks = [first_relevant_rank(r, rel) for r, rel in zip(rankings, relevants)]
    out["mrr"] = np.array([1 / r if r else 0.0 for r in ranks])
    out["ndcg@10"] = np.array([ndcg_at(r, rel, 10) for r, rel in zip(rankings, relevants)])
    return out


def with_intervals(per_query: dict[str, np.ndarray], n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict:
    """Means of per-query metrics with ``<metric>_ci`` = [low, high] beside each, plus ``queries``."""
    out: dict = {}
    for name, vals in per_query.items():
        out[name] = float(np.mean(vals)) if len(vals) else 0.0
        out[f"{name}_ci"] = list(bootstrap_ci(vals, n_resamples, seed))
    out["queries"] = int(len(next(iter(per_query.values())))) if per_query else 0
    return out
