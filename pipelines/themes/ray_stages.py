"""The assign and label stages of the theme job, with their per-item work spread over Ray.

They give the local stages' answer (``pipelines.themes.compute.assign`` / ``label``) on the same
inputs: the small, global steps (alignment with last night, keeping previous members, staff
curation, c-TF-IDF scoring) run on the driver with the project's own functions; what grows with
the number of items (centroid sums, each item's cosine to the centroids, outlier assignment, the
word and term counts of the labels) runs as ``map_batches`` passes over the exported items.
Centroid sums are added in another order than numpy's, so a cosine can differ in the seventh
decimal; an item exactly on a threshold could then land differently.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np

from matcher.swedish import Analyzer
from pipelines.themes import compute, ray_ops
from pipelines.themes.compute import MAX_LABEL_DOCS, Items, Labelled, Placement
from pipelines.themes.config import ThemeJobConfig
from pipelines.themes.history import History
from pipelines.themes.labels import Encode, labels_from_counts

# runs one map_batches pass: (stage name, function, its keyword arguments) -> output batches
PassRunner = Callable[[str, Callable[..., Any], dict[str, Any]], Iterator[dict[str, np.ndarray]]]


def _indices(labels: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Cluster numbers as indices 0..k-1 (-1 stays -1), and the sorted cluster numbers."""
    numbers = sorted(int(c) for c in np.unique(labels) if c >= 0)
    idx = np.full(len(labels), -1, dtype=np.int64)
    mask = labels >= 0
    idx[mask] = np.searchsorted(np.asarray(numbers), labels[mask])
    return idx, numbers


class Passes:
    """The parallel passes over the exported items.

    Args:
        run: runs one ``map_batches`` pass and yields its output batches (see ``ray_engine``).
        put: puts a large value into the object store once (every batch reads it from there).
    """

    def __init__(self, run: PassRunner, put: Callable[[Any], Any]) -> None:
        self.run = run
        self.put = put
        self.words_seen: Counter[str] = Counter()  # every text's words, counted in the first pass

    def centroids(
        self, stage: str, labels: np.ndarray, count_words: bool = False
    ) -> tuple[np.ndarray, list[int], np.ndarray]:
        """Unit centroids (in order of cluster number), the numbers, and the label indices.

        With ``count_words``, the same pass counts every text's words into :attr:`words_seen`.
        """
        idx, numbers = _indices(labels)
        k = len(numbers)
        sums, counts, words_seen = None, np.zeros(k, np.int64), self.words_seen
        kwargs = {"labels": self.put(idx), "k": k, "count_words": count_words}
        for b in self.run(stage, ray_ops.label_sums, kwargs):
            part = b["sums"].sum(axis=0)
            sums = part if sums is None else sums + part
            counts += b["counts"].sum(axis=0)
            for blob in b.get("words", []):
                words_seen.update(json.loads(blob))
        if sums is None or not k:
            return np.zeros((0, 0), np.float32), numbers, idx
        means = sums / np.maximum(counts, 1)[:, None]
        cents = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return cents.astype(np.float32), numbers, idx

    def sims(
        self, stage: str, idx: np.ndarray, cents: np.ndarray, terms: tuple[np.ndarray, Analyzer] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Per row: cosine to its own centroid (-1: none), nearest centroid index and its cosine.

        With ``terms`` (row -> label theme index, the learned analyzer), the same pass gathers the
        c-TF-IDF statistics; they come back as JSON blobs in row order (see ``ray_ops.sims_and_terms``).
        """
        n = len(idx)
        own, best, best_sim = np.full(n, -1.0, np.float32), np.full(n, -1, np.int64), np.full(n, -1.0, np.float32)
        kwargs: dict[str, Any] = {"labels": self.put(idx), "cents": self.put(cents)}
        fn: Callable[..., Any] = ray_ops.centroid_sims
        if terms is not None:
            fn, kwargs["doc_theme"], kwargs["analyzer"] = ray_ops.sims_and_terms, self.put(terms[0]), terms[1]
        blobs: list[tuple[int, str]] = []
        for b in self.run(stage, fn, kwargs):
            own[b["row"]], best[b["row"]], best_sim[b["row"]] = b["own"], b["best"], b["best_sim"]
            blobs += [(int(r), str(s)) for r, s in zip(b["row"], b.get("stats", [])) if s]
        return own, best, best_sim, [s for _, s in sorted(blobs)]


def merge_term_counts(blobs: list[str], k: int) -> tuple[list[Counter[str]], list[dict[str, Counter[str]]]]:
    """Add up the batches' c-TF-IDF statistics (in the order given) into per-theme counts and forms."""
    counts: list[Counter[str]] = [Counter() for _ in range(k)]
    forms: list[dict[str, Counter[str]]] = [{} for _ in range(k)]
    for blob in blobs:
        for key, (c, f) in json.loads(blob).items():
            counts[int(key)].update(c)
            for term, seen in f.items():
                forms[int(key)].setdefault(term, Counter()).update(seen)
    return counts, forms


def thresholds_of(own: np.ndarray, idx: np.ndarray, k: int, quantile: float) -> np.ndarray:
    """Per theme: the ``quantile`` of its members' cosine to the centroid (``stages.member_thresholds``)."""
    return np.array([float(np.quantile(own[idx == i], quantile)) for i in range(k)], dtype=np.float32)


def assign_outliers(passes: Passes, labels: np.ndarray, keep_quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """Noise rows join their nearest theme when as close as its own members (``stages.assign_outliers``)."""
    cents, numbers, idx = passes.centroids("assign", labels, count_words=True)
    assigned = np.zeros(len(labels), dtype=bool)
    if not numbers:
        return labels.copy(), assigned
    own, best, best_sim, _ = passes.sims("assign", idx, cents)
    thresholds = thresholds_of(own, idx, len(numbers), keep_quantile)
    ok = (labels < 0) & (best_sim >= thresholds[np.maximum(best, 0)])
    out = labels.copy()
    out[ok] = np.asarray(numbers)[best[ok]]
    assigned[ok] = True
    return out, assigned


def assign(passes: Passes, items: Items, labels: np.ndarray, history: History, config: ThemeJobConfig) -> Placement:
    """Stage "assign": ``compute.assign``, with the outliers joined by the parallel passes."""
    return compute.assign(items, labels, history, config, assign_outliers=partial(assign_outliers, passes))


def _label_docs(labels: np.ndarray, numbers: list[int]) -> np.ndarray:
    """Row -> index of the theme whose label sample holds it (the local engine's seeded sample)."""
    rng = np.random.default_rng(42)
    doc_theme = np.full(len(labels), -1, dtype=np.int64)
    for k, c in enumerate(numbers):
        rows = np.nonzero(labels == c)[0]
        if len(rows) > MAX_LABEL_DOCS:
            rows = rng.choice(rows, MAX_LABEL_DOCS, replace=False)
        doc_theme[rows] = k
    return doc_theme


def _learned_analyzer(words_seen: Counter[str]) -> Analyzer:
    """The label analyzer with the lexicon ``Analyzer.learn`` would build from every text."""
    analyzer = Analyzer(split_known_words=False)
    # each word given twice when seen at least twice: learn's min_count=2 keeps exactly those
    analyzer.learn([w for w, n in words_seen.items() for _ in range(min(n, 2))])
    return analyzer


def label(
    passes: Passes, items: Items, placed: Placement, config: ThemeJobConfig, encode: Encode | None = None
) -> Labelled:
    """Stage "label" (as ``compute.label``): keywords, label, representatives, centroid and threshold.

    ``encode`` (the driver's encoder, as the local engine's) embeds the few label candidates of each
    theme for the re-ranking against the theme's centroid; without it the c-TF-IDF order stands.
    """
    labels = placed.labels
    if not passes.words_seen:  # the assign stage found no theme, so its pass did not count words
        passes.centroids("label", labels, count_words=True)
    cents, numbers, idx = passes.centroids("label", labels)
    doc_theme = _label_docs(labels, numbers)
    own = np.zeros(0, np.float32)
    counts: list[Counter[str]] = []
    forms: list[dict[str, Counter[str]]] = []
    if numbers:
        analyzer = _learned_analyzer(passes.words_seen)
        own, _, _, blobs = passes.sims("label", idx, cents, terms=(doc_theme, analyzer))
        counts, forms = merge_term_counts(blobs, len(numbers))
    thresholds = thresholds_of(own, idx, len(numbers), config.keep_quantile)
    n_docs = np.bincount(doc_theme[doc_theme >= 0], minlength=len(numbers))
    theme_labels = (
        labels_from_counts(counts, forms, n_docs.tolist(), centroids=None if encode is None else cents, encode=encode)
        if numbers
        else []
    )
    reps = []
    for c in numbers:
        rows = np.nonzero(labels == c)[0]
        order = rows[np.argsort(-own[rows], kind="stable")]
        pinned_first = [r for r in order if r in placed.pinned] + [r for r in order if r not in placed.pinned]
        reps.append(pinned_first[: config.representatives])
    return compute.theme_rows(items, placed, numbers, cents, thresholds, theme_labels, reps)
