"""The two statistics ``idesluss learn`` reports: a bootstrap interval of a mean and a paired test.

Kept in the service (``evaluation/`` is never imported at run time); ``evaluation.metrics`` imports
them from here, so the evaluation and ``learn`` report the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_RESAMPLES = 1000
SEED = 20240601


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-query ``values`` (queries resampled).

    Returns:
        (low, high); (nan, nan) for no values.
    """
    x = np.asarray(values, dtype=float)
    if not len(x):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_resamples, len(x)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_test(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> dict[str, float]:
    """Mean of ``a - b`` over the same queries, its bootstrap 95 % interval and a sign-flip p-value.

    Returns:
        {"diff", "diff_low", "diff_high", "p"}; identical systems give diff 0 and p 1.

    Raises:
        ValueError: no queries.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.shape[0] == 0:
        raise ValueError("paired_test needs at least one query")
    lo, hi = bootstrap_ci(d, n_resamples, seed)
    rng = np.random.default_rng(seed + 1)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_resamples, len(d)))
    flipped = np.abs((signs * d).mean(axis=1))
    # the observed assignment counts as one permutation; a tolerance keeps exact ties as ties
    p = (1 + int((flipped >= abs(d.mean()) - 1e-12).sum())) / (n_resamples + 1)
    return {"diff": float(d.mean()), "diff_low": lo, "diff_high": hi, "p": float(p)}
