"""The store-free stages of the theme job: vectors and item lists in, themes and memberships out.

reduce -> cluster -> assign -> label -> map -> outcome. Each stage has one responsibility and
explicit inputs and outputs, so the job (``pipelines.themes.job``) reads as the list of its stages,
and the stages could run on another engine: only the job's first stages (embed, load) and its
last (write) touch the store. Every random choice is seeded, so the same inputs give the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from matcher.swedish import Analyzer
from pipelines.themes import align as aligner
from pipelines.themes import stages
from pipelines.themes.config import ThemeJobConfig
from pipelines.themes.history import History, apply_curation, keep_previous
from pipelines.themes.labels import Encode, label_themes
from store.themes import MemberRow, ThemeRow

MAX_LABEL_DOCS = 2_000  # texts per theme for keywords: enough for c-TF-IDF, bounded cost


@dataclass
class Items:
    """The items of a run, row-aligned: key ("kind:id"), kind, id, text and query vector."""

    keys: list[str]
    kinds: list[str]
    ids: list[str]
    texts: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class Fit:
    """What the reduce stage gives: the rows clustering is fitted on and their reduced vectors."""

    rows: np.ndarray
    reduced: np.ndarray


@dataclass
class Placement:
    """What the assign stage gives: every row's final cluster and how it got there.

    Attributes:
        labels: cluster number of each row, -1 for none.
        how: "clustered", "kept", "assigned", "moved", "pinned" or "unassigned" for each row.
        ids: cluster number -> theme id (kept from last night where the themes match).
        names: theme id -> the name staff gave it.
        pinned: rows staff pinned to their theme (shown first among its representatives).
        events: births, deaths, splits and merges against last night's themes.
    """

    labels: np.ndarray
    how: np.ndarray
    ids: dict[int, str]
    names: dict[str, str]
    pinned: set[int]
    events: list[dict]


@dataclass
class Labelled:
    """What the label stage gives: the themes, cluster number -> theme id, and the final events."""

    themes: list[ThemeRow]
    theme_of: dict[int, str]
    events: list[dict]


@dataclass
class Outcome:
    """Everything a run writes, computed without the store."""

    themes: list[ThemeRow]
    members: list[MemberRow]
    share_unassigned: float
    quality: float | None
    events: list[dict]


# -- reduce and cluster -------------------------------------------------------------------------
def fit_sample(n: int, limit: int) -> np.ndarray:
    """All rows, or a seeded sample of ``limit`` rows (sorted) when there are more."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(42).choice(n, limit, replace=False))


def reduce_vectors(x: np.ndarray, config: ThemeJobConfig) -> np.ndarray:
    """Centre, then reduce with the configured reducer."""
    if not len(x):
        return x
    return stages.make(stages.REDUCERS, config.reducer, **config.reducer_params).fit_transform(stages.center(x))


def cluster_reduced(reduced: np.ndarray, config: ThemeJobConfig) -> np.ndarray:
    """Cluster numbers (-1 for noise) with the configured clusterer."""
    if not len(reduced):
        return np.zeros(0, dtype=int)
    return stages.make(stages.CLUSTERERS, config.clusterer, **config.clusterer_params).fit_predict(reduced)


def reduce(x: np.ndarray, config: ThemeJobConfig) -> Fit:
    """Stage "reduce": pick the fit rows (a seeded sample above ``max_fit_items``) and reduce them."""
    rows = fit_sample(len(x), config.max_fit_items)
    return Fit(rows, reduce_vectors(x[rows], config))


def cluster(fit: Fit, n: int, config: ThemeJobConfig) -> np.ndarray:
    """Stage "cluster": a cluster number for each of the ``n`` rows (-1: noise or not in the fit)."""
    labels = np.full(n, -1, dtype=int)
    labels[fit.rows] = cluster_reduced(fit.reduced, config)
    return labels


def themes_for_vectors(x: np.ndarray, config: ThemeJobConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The job's clustering without a store: (labels after outlier assignment, labels before)."""
    config = config or ThemeJobConfig()
    raw = cluster_reduced(reduce_vectors(x, config), config)
    final, _ = _assign_outliers(x, raw, config.keep_quantile)
    return final, raw


# -- assign -------------------------------------------------------------------------------------
OutlierStep = Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray]]


def assign(
    items: Items,
    labels: np.ndarray,
    history: History,
    config: ThemeJobConfig,
    assign_outliers: OutlierStep | None = None,
) -> Placement:
    """Stage "assign": stable theme ids, last night's members, outliers, then staff curation.

    Args:
        items: the run's items.
        labels: the cluster stage's numbers.
        history: last night's themes and the staff curations.
        config: the job's parameters (``stay_quantile``, ``keep_quantile``, minimum cluster size).
        assign_outliers: how noise rows join their nearest theme, ``(labels, keep_quantile) ->
            (labels, joined mask)``; the vectors in memory by default (the Ray engine passes its
            parallel version).
    """
    x = items.vectors
    if assign_outliers is None:
        assign_outliers = partial(_assign_outliers, x)
    previous = [p for p in history.previous if len(p.centroid) == x.shape[1]]  # same model only
    fitted = np.nonzero(labels >= 0)[0]
    cents, numbers = stages.centroids(x[fitted], labels[fitted])
    members = {c: {items.keys[i] for i in fitted[labels[fitted] == c]} for c in numbers}
    alignment = aligner.align(members, cents, numbers, previous)
    how = np.array(["clustered" if c >= 0 else "unassigned" for c in labels], dtype=object)
    min_size = config.clusterer_params.get("min_cluster_size") or max(5, len(items) // 100)
    labels, kept, ids = keep_previous(
        labels, items.keys, alignment.ids, previous, x, cents, numbers, config.stay_quantile, min_size
    )
    how[kept] = "kept"
    revived = set(ids.values()) - set(alignment.ids.values())
    events = [e for e in alignment.events if not (e["event"] == "death" and e["theme_id"] in revived)]
    labels, assigned = assign_outliers(labels, config.keep_quantile)
    how[assigned] = "assigned"
    labels, ids, names, overrides = apply_curation(labels, dict(ids), items.keys, history.curations)
    for row, h in overrides.items():
        how[row] = h
    pinned = {r for r, h in overrides.items() if h == "pinned"}
    return Placement(labels, how, ids, names, pinned, events)


def _assign_outliers(x: np.ndarray, labels: np.ndarray, keep_quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """Noise rows join their nearest theme when as close as its own members (mask of those that did)."""
    cents, numbers = stages.centroids(x, labels)
    thresholds = stages.member_thresholds(x, labels, cents, numbers, keep_quantile)
    return stages.assign_outliers(x, labels, cents, numbers, thresholds)


# -- label --------------------------------------------------------------------------------------
def label(items: Items, placed: Placement, config: ThemeJobConfig, encode: Encode | None = None) -> Labelled:
    """Stage "label": keywords, label, representatives, centroid and threshold per theme.

    Args:
        items: the run's items.
        placed: the assign stage's answer.
        config: the job's parameters.
        encode: texts -> vectors in the space of ``items.vectors`` (the job's ``encoder.encode_queries``);
            with it the c-TF-IDF candidates are re-ranked by similarity to each theme's centroid
            with diversity (``pipelines.themes.labels``); without it the c-TF-IDF order stands.
    """
    x, labels = items.vectors, placed.labels
    cents, numbers = stages.centroids(x, labels)
    thresholds = stages.member_thresholds(x, labels, cents, numbers, config.keep_quantile)
    analyzer = Analyzer(split_known_words=False)
    analyzer.learn(items.texts)
    docs = _theme_docs(labels, numbers, items.texts)
    theme_labels = label_themes(analyzer, docs, centroids=None if encode is None else cents, encode=encode)
    reps = [
        _representatives(np.nonzero(labels == c)[0], x, cents[k], placed.pinned)[: config.representatives]
        for k, c in enumerate(numbers)
    ]
    return theme_rows(items, placed, numbers, cents, thresholds, theme_labels, reps)


def theme_rows(
    items: Items,
    placed: Placement,
    numbers: list[int],
    cents: np.ndarray,
    thresholds: np.ndarray,
    theme_labels: list[Any],
    representatives: list[list[int]],
) -> Labelled:
    """The themes as written (id, label, keywords, representatives, size, centroid, threshold), in
    cluster order; a birth whose theme did not survive curation is dropped from the events."""
    labels = placed.labels
    themes = []
    for k, c in enumerate(numbers):
        rows = np.nonzero(labels == c)[0]
        reps = representatives[k]
        tid = placed.ids.get(c) or aligner.new_theme_id()
        themes.append(
            ThemeRow(
                theme_id=tid,
                label=placed.names.get(tid, theme_labels[k].label),
                keywords=theme_labels[k].keywords,
                representatives=[{"kind": items.kinds[r], "id": items.ids[r]} for r in reps],
                size=len(rows),
                centroid=cents[k],
                assign_threshold=float(thresholds[k]),
            )
        )
    theme_of = {c: themes[k].theme_id for k, c in enumerate(numbers)}
    alive = set(theme_of.values())
    events = [e for e in placed.events if e["event"] != "birth" or e["theme_id"] in alive]
    return Labelled(themes, theme_of, events)


def _theme_docs(labels: np.ndarray, numbers: list[int], texts: list[str]) -> list[list[str]]:
    """The texts of each theme, a seeded sample of ``MAX_LABEL_DOCS`` where there are more."""
    rng = np.random.default_rng(42)
    docs = []
    for c in numbers:
        rows = np.nonzero(labels == c)[0]
        if len(rows) > MAX_LABEL_DOCS:
            rows = rng.choice(rows, MAX_LABEL_DOCS, replace=False)
        docs.append([texts[i] for i in rows])
    return docs


def _representatives(rows: np.ndarray, x: np.ndarray, centroid: np.ndarray, pinned: set[int]) -> list[int]:
    """A theme's rows, pinned first, each group closest to the centroid first."""
    order = rows[np.argsort(-(x[rows] @ centroid))]
    return [r for r in order if r in pinned] + [r for r in order if r not in pinned]


# -- map and outcome ----------------------------------------------------------------------------
def map_2d(x: np.ndarray, max_points: int) -> dict[int, tuple[float, float]]:
    """Stage "map": 2-D coordinates of every row, or of a seeded sample of ``max_points`` rows."""
    if len(x) < 3:
        return {}
    rng = np.random.default_rng(42)
    rows = np.arange(len(x)) if len(x) <= max_points else np.sort(rng.choice(len(x), max_points, replace=False))
    xy = stages.UMAPReducer(n_components=2, n_neighbors=15, random_state=42).fit_transform(stages.center(x[rows]))
    return {int(r): (float(a), float(b)) for r, (a, b) in zip(rows, xy)}


def outcome(
    items: Items, fit: Fit, placed: Placement, labelled: Labelled, coords: dict[int, tuple[float, float]]
) -> Outcome:
    """What the write stage stores: themes, one membership per item, share unassigned and quality."""
    labels = placed.labels
    members = [
        MemberRow(
            items.kinds[i],
            items.ids[i],
            labelled.theme_of.get(int(labels[i]), ""),
            str(placed.how[i]) if labels[i] >= 0 else "unassigned",
            *(coords.get(i, (None, None))),
        )
        for i in range(len(items))
    ]
    share = float((labels < 0).mean()) if len(items) else 0.0
    quality = silhouette(fit.reduced, labels[fit.rows])
    return Outcome(labelled.themes, members, share, quality, labelled.events)


def silhouette(reduced: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette of the clustered points in the reduced space (a sample of at most 5,000)."""
    from sklearn.metrics import silhouette_score

    mask = labels >= 0
    if mask.sum() < 10 or len(set(labels[mask].tolist())) < 2:
        return None
    return float(silhouette_score(reduced[mask], labels[mask], sample_size=min(5000, int(mask.sum())), random_state=42))
