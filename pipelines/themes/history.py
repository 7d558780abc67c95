"""What earlier nights and staff left behind, and how tonight's clustering honours it.

Store-free: the job's load stage reads the history once; these functions take it as plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.themes.align import Previous


@dataclass
class History:
    """Last night's themes (with their members) and every staff curation, oldest first."""

    previous: list[Previous] = field(default_factory=list)
    curations: list[dict[str, Any]] = field(default_factory=list)


def keep_previous(
    labels: np.ndarray,
    keys: list[str],
    ids: dict[int, str],
    previous: list[Previous],
    x: np.ndarray,
    cents: np.ndarray,
    numbers: list[int],
    stay_quantile: float,
    min_size: int,
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Let items stay in last night's theme unless tonight's evidence clearly says otherwise.

    Each previous theme is re-centred on today's vectors of its previous members. A member stays
    when tonight's clustering left it as noise (no evidence against its place), when it is still
    typical of the old theme (its ``stay_quantile`` threshold), or when it is no closer to the
    centroid of the cluster it fell into. A theme that found no partner cluster tonight lives on
    with the members that stay, if they are at least ``min_size``.

    Args:
        labels: tonight's cluster number of each row (-1 for noise).
        keys: "kind:id" of each row.
        ids: cluster number -> theme id from the alignment.
        previous: last night's themes.
        x: the rows' unit vectors.
        cents: tonight's unit centroids, in the order of ``numbers``.
        numbers: tonight's cluster numbers.
        stay_quantile: the quantile of a previous theme's own members an item must reach to stay.
        min_size: the least members for a theme without a partner cluster to live on.

    Returns:
        (labels, mask of rows kept, cluster number -> theme id including revived themes).
    """
    labels = labels.copy()
    ids = dict(ids)
    kept = np.zeros(len(labels), dtype=bool)
    number_of = {tid: c for c, tid in ids.items()}
    index_of = {c: k for k, c in enumerate(numbers)}
    row_of = {key: i for i, key in enumerate(keys)}
    next_number = max(numbers, default=-1) + 1
    for p in previous:
        rows = np.array(sorted(row_of[k] for k in p.members if k in row_of), dtype=int)
        if not len(rows):
            continue
        centre = x[rows].mean(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        sims = x[rows] @ centre
        threshold = float(np.quantile(sims, stay_quantile))
        target = number_of.get(p.theme_id)
        stay = []
        for row, old_sim in zip(rows, sims):
            now = int(labels[row])
            if target is not None and now == target:
                continue
            new_sim = float(x[row] @ cents[index_of[now]]) if now >= 0 else -1.0
            if now < 0 or old_sim >= threshold or old_sim >= new_sim:
                stay.append(row)
        if target is None:
            if len(stay) < min_size:  # the rows that stay are the theme's members left
                continue
            target = next_number
            next_number += 1
            ids[target] = p.theme_id
        for row in stay:
            labels[row] = target
            kept[row] = True
    return labels, kept, ids


def apply_curation(
    labels: np.ndarray, ids: dict[int, str], keys: list[str], curations: list[dict[str, Any]]
) -> tuple[np.ndarray, dict[int, str], dict[str, str], dict[int, str]]:
    """Apply staff merges, moves and pins (in place on ``labels`` and ``ids``).

    Args:
        labels: cluster number of each row.
        ids: cluster number -> theme id.
        keys: "kind:id" of each row.
        curations: staff corrections, oldest first (as ``store.themes.curations`` gives them).

    Returns:
        (labels, ids, theme id -> staff name, row -> "moved" / "pinned").
    """
    names: dict[str, str] = {}
    how: dict[int, str] = {}
    row_of = {k: i for i, k in enumerate(keys)}
    by_id = {t: n for n, t in ids.items()}
    for c in curations:
        if c["action"] == "rename" and c["theme_id"]:
            names[c["theme_id"]] = c["name"]
        elif c["action"] == "merge" and c["theme_id"] in by_id:
            src = by_id.pop(c["theme_id"])
            if c["other_theme_id"] in by_id:
                labels[labels == src] = by_id[c["other_theme_id"]]
                del ids[src]
            else:  # the target is gone tonight: the merged theme carries the target's id on
                ids[src] = c["other_theme_id"]
                by_id[c["other_theme_id"]] = src
        elif c["action"] in ("move", "pin") and c["theme_id"] in by_id:
            row = row_of.get(f"{c['kind']}:{c['item_id']}")
            if row is not None:
                labels[row] = by_id[c["theme_id"]]
                how[row] = "pinned" if c["action"] == "pin" else "moved"
    return labels, ids, names, how
