"""Stable theme identities: match this run's clusters to the previous run's themes.

A pair's score is the Jaccard overlap of their members plus a little centroid similarity; the
best one-to-one matching (Hungarian) keeps ids; an unmatched cluster is born, an unmatched theme
dies; a theme whose members went to several clusters split, a cluster drawing from several themes
merged them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Previous:
    """A theme of the previous run."""

    theme_id: str
    members: set[str]
    centroid: np.ndarray


@dataclass
class Alignment:
    """Cluster number -> theme id, and what happened."""

    ids: dict[int, str]
    events: list[dict] = field(default_factory=list)


def new_theme_id() -> str:
    """A fresh, never reused theme id."""
    return "T" + uuid.uuid4().hex[:8]


def align(
    clusters: dict[int, set[str]],
    cents: np.ndarray,
    numbers: Sequence[int],
    previous: Sequence[Previous],
    min_jaccard: float = 0.2,
    share: float = 0.3,
) -> Alignment:
    """Match clusters to previous themes.

    Args:
        clusters: cluster number -> member keys.
        cents: unit centroids in the order of ``numbers``.
        numbers: cluster numbers.
        previous: the previous run's themes.
        min_jaccard: the least overlap for a cluster to keep a theme's id.
        share: the part of a theme (or cluster) that counts for a split (or merge).
    """
    from scipy.optimize import linear_sum_assignment

    ids: dict[int, str] = {}
    events: list[dict] = []
    if previous and numbers:
        jac = np.zeros((len(numbers), len(previous)))
        for i, n in enumerate(numbers):
            for j, p in enumerate(previous):
                inter = len(clusters[n] & p.members)
                if inter:
                    jac[i, j] = inter / len(clusters[n] | p.members)
        cos = cents @ np.stack([p.centroid for p in previous]).T
        score = jac + 0.1 * np.clip(cos, 0, 1)
        rows, cols = linear_sum_assignment(-score)
        for i, j in zip(rows, cols):
            if jac[i, j] >= min_jaccard:
                ids[numbers[i]] = previous[j].theme_id
    for n in numbers:
        if n not in ids:
            ids[n] = new_theme_id()
            events.append({"event": "birth", "theme_id": ids[n], "size": len(clusters[n])})
    kept = set(ids.values())
    for p in previous:
        if p.theme_id not in kept:
            events.append({"event": "death", "theme_id": p.theme_id, "size": len(p.members)})
        targets = [ids[n] for n in numbers if p.members and len(clusters[n] & p.members) >= share * len(p.members)]
        if len(targets) > 1:
            events.append({"event": "split", "theme_id": p.theme_id, "into": targets})
    for n in numbers:
        sources = [
            p.theme_id for p in previous if clusters[n] and len(clusters[n] & p.members) >= share * len(clusters[n])
        ]
        if len(sources) > 1:
            events.append({"event": "merge", "theme_id": ids[n], "from": sources})
    return Alignment(ids, events)
