"""The nightly theme job.

Heavy work (embedding, reduction, clustering, labelling) happens outside any write transaction;
the result is written in one short transaction that also switches the new run in, so an
interrupted run (even kill -9) leaves the last good themes in place. A file lock next to the
database keeps two runs from overlapping.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matcher.swedish import Analyzer
from models.encoder import TextEncoder
from pipelines.embed import embed_missing, vector_key
from pipelines.records import embed_text
from pipelines.themes import align as aligner
from pipelines.themes import stages
from pipelines.themes.labels import label_themes
from store import KINDS, Store
from store import themes as sql

Progress = Callable[[str, float], None]


class ThemeJobRunning(RuntimeError):
    """Another theme job holds the lock for this database."""


@dataclass
class ThemeJobConfig:
    """Parameters of the theme pipeline (recorded with every run).

    Attributes:
        reducer: "umap", "pca" or "none".
        reducer_params: passed to the reducer.
        clusterer: "hdbscan".
        clusterer_params: passed to the clusterer.
        keep_quantile: a theme's assignment threshold is this quantile of its own members' cosine
            to the centroid (outliers and new items must be at least as close to join).
        stay_quantile: the looser quantile an item of last night's theme must reach to stay in it
            (hysteresis: themes do not flicker from night to night).
        map_max_points: items placed on the 2-D map (a seeded sample above this).
        max_fit_items: above this many items, reduction and clustering run on a seeded sample of
            this size and every other item joins its nearest theme under the same thresholds as
            outliers (UMAP's cost grows faster than linearly: measured 276 s for 100,000 items on
            two cores, against about a minute for the sample).
        representatives: items shown per theme.
    """

    reducer: str = "umap"
    reducer_params: dict[str, Any] = field(
        default_factory=lambda: {"n_components": 5, "n_neighbors": 15, "random_state": 42}
    )
    clusterer: str = "hdbscan"
    clusterer_params: dict[str, Any] = field(default_factory=lambda: {"min_samples": 3})
    keep_quantile: float = 0.05
    stay_quantile: float = 0.02
    map_max_points: int = 5_000
    max_fit_items: int = 20_000
    representatives: int = 5


@contextmanager
def job_lock(db_path: Path) -> Iterator[None]:
    """Hold the theme-job lock of a database, or raise :class:`ThemeJobRunning`."""
    lock_path = Path(str(db_path) + ".theme-job.lock")
    fh = open(lock_path, "a+")  # noqa: SIM115 - held for the duration of the job
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ThemeJobRunning(
                f"a theme job is already running for {db_path} ({holder}); wait for it to finish"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        yield
    finally:
        fh.close()


@dataclass
class _Items:
    keys: list[str]
    kinds: list[str]
    ids: list[str]
    texts: list[str]
    vectors: np.ndarray


def _load(store: Store, encoder: TextEncoder) -> _Items:
    keys, kinds, ids, texts, vecs = [], [], [], [], []
    qkey = vector_key(encoder.model_id, "query")
    for kind in KINDS:
        records = {r.id: r for r in store.records(kind)}
        vid, v = store.vectors(kind, qkey)
        for i, rid in enumerate(vid):
            rec = records[rid]
            keys.append(f"{kind}:{rid}")
            kinds.append(kind)
            ids.append(rid)
            texts.append(embed_text(rec.title, rec.text))
            vecs.append(v[i])
    matrix = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, encoder.dim), np.float32)
    return _Items(keys, kinds, ids, texts, matrix)


def _apply_curation(
    labels: np.ndarray, ids: dict[int, str], items: _Items, store: Store
) -> tuple[np.ndarray, dict[int, str], dict[str, str], dict[int, str]]:
    """Apply staff merges, moves and pins; returns labels, ids, names and per-row 'how' overrides."""
    names: dict[str, str] = {}
    how: dict[int, str] = {}
    row_of = {k: i for i, k in enumerate(items.keys)}
    by_id = {t: n for n, t in ids.items()}
    for c in sql.curations(store):
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


def run_theme_job(
    store: Store,
    encoder: TextEncoder,
    config: ThemeJobConfig | None = None,
    progress: Progress | None = None,
    show_bar: bool | None = None,
) -> dict[str, Any]:
    """Run the whole job and switch the new themes in. Returns the run record.

    Raises:
        ThemeJobRunning: when another run holds the lock.
    """
    config = config or ThemeJobConfig()
    with job_lock(store.path):
        return _run(store, encoder, config, progress or (lambda stage, frac: None), show_bar)


def _run(
    store: Store, encoder: TextEncoder, config: ThemeJobConfig, progress: Progress, show_bar: bool | None
) -> dict[str, Any]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def stage(name: str, fraction: float) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[name] = round(now - t0, 3)
        t0 = now
        progress(name, fraction)

    embed_missing(
        store,
        encoder,
        prompt="query",
        show_bar=show_bar,
        progress=lambda done, total: progress("embed", 0.3 * done / max(total, 1)),
    )
    stage("embed", 0.3)
    items = _load(store, encoder)
    stage("load", 0.35)
    x = items.vectors
    n = len(x)
    fit_rows = _fit_sample(n, config.max_fit_items)
    reduced = reduce_vectors(x[fit_rows], config)
    stage("reduce", 0.6)
    labels = np.full(n, -1, dtype=int)
    labels[fit_rows] = cluster_reduced(reduced, config)
    stage("cluster", 0.7)

    cents, numbers = stages.centroids(x, labels)
    thresholds = stages.member_thresholds(x, labels, cents, numbers, config.keep_quantile)
    members = {c: {items.keys[i] for i in np.nonzero(labels == c)[0]} for c in numbers}
    previous_rows = sql.current_themes(store)
    previous_members = sql.current_members(store)
    previous = [
        aligner.Previous(t.theme_id, previous_members.get(t.theme_id, set()), t.centroid)
        for t in previous_rows
        if len(t.centroid) == x.shape[1]
    ]
    alignment = aligner.align(members, cents, numbers, previous)
    how = np.array(["clustered" if c >= 0 else "unassigned" for c in labels], dtype=object)
    min_size = config.clusterer_params.get("min_cluster_size") or max(5, n // 100)
    labels, kept, kept_ids = _keep_previous(
        labels, items, alignment.ids, previous, x, cents, numbers, config.stay_quantile, min_size
    )
    how[kept] = "kept"
    revived = set(kept_ids.values()) - set(alignment.ids.values())
    alignment.events = [e for e in alignment.events if not (e["event"] == "death" and e["theme_id"] in revived)]
    alignment.ids = kept_ids
    cents, numbers = stages.centroids(x, labels)
    thresholds = stages.member_thresholds(x, labels, cents, numbers, config.keep_quantile)
    labels, assigned = stages.assign_outliers(x, labels, cents, numbers, thresholds)
    how[assigned] = "assigned"
    labels, ids, names, overrides = _apply_curation(labels, dict(alignment.ids), items, store)
    for row, h in overrides.items():
        how[row] = h
    stage("assign", 0.75)

    final_cents, final_numbers = stages.centroids(x, labels)
    final_thresholds = stages.member_thresholds(x, labels, final_cents, final_numbers, config.keep_quantile)
    analyzer = Analyzer(split_known_words=False)
    analyzer.learn(items.texts)
    rng = np.random.default_rng(42)
    docs = []
    for c in final_numbers:  # keywords from at most 2,000 texts per theme: enough for c-TF-IDF, bounded cost
        rows = np.nonzero(labels == c)[0]
        if len(rows) > 2000:
            rows = rng.choice(rows, 2000, replace=False)
        docs.append([items.texts[i] for i in rows])
    theme_labels = label_themes(analyzer, docs)
    pinned_rows = {r for r, h in overrides.items() if h == "pinned"}
    themes = []
    for k, c in enumerate(final_numbers):
        rows = np.nonzero(labels == c)[0]
        order = rows[np.argsort(-(x[rows] @ final_cents[k]))]
        reps = [r for r in order if r in pinned_rows] + [r for r in order if r not in pinned_rows]
        tid = ids.get(c) or aligner.new_theme_id()
        themes.append(
            sql.ThemeRow(
                theme_id=tid,
                label=names.get(tid, theme_labels[k].label),
                keywords=theme_labels[k].keywords,
                representatives=[{"kind": items.kinds[r], "id": items.ids[r]} for r in reps[: config.representatives]],
                size=len(rows),
                centroid=final_cents[k],
                assign_threshold=float(final_thresholds[k]),
            )
        )
    theme_of_number = {c: themes[k].theme_id for k, c in enumerate(final_numbers)}
    alive = set(theme_of_number.values())
    alignment.events = [e for e in alignment.events if e["event"] != "birth" or e["theme_id"] in alive]
    stage("label", 0.85)

    coords = _map_2d(x, config.map_max_points)
    stage("map", 0.95)
    member_rows = [
        sql.MemberRow(
            items.kinds[i],
            items.ids[i],
            theme_of_number.get(int(labels[i]), ""),
            str(how[i]) if labels[i] >= 0 else "unassigned",
            *(coords.get(i, (None, None))),
        )
        for i in range(n)
    ]
    quality = _quality(reduced, labels[fit_rows])
    run_id = sql.next_run_id(store)
    record = {
        "run_id": run_id,
        "params": {"config": asdict(config), "model_id": encoder.model_id, "items": n},
        "timings": timings,
        "n_themes": len(themes),
        "share_unassigned": float((labels < 0).mean()) if n else 0.0,
        "quality": quality,
        "events": alignment.events,
    }
    sql.write_run(store, run_id, record, themes, member_rows)
    stage("write", 1.0)
    record["timings"] = timings
    return record


def _fit_sample(n: int, limit: int) -> np.ndarray:
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


def themes_for_vectors(x: np.ndarray, config: ThemeJobConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The job's clustering without a store: (labels after outlier assignment, labels before)."""
    config = config or ThemeJobConfig()
    raw = cluster_reduced(reduce_vectors(x, config), config)
    cents, numbers = stages.centroids(x, raw)
    thresholds = stages.member_thresholds(x, raw, cents, numbers, config.keep_quantile)
    final, _ = stages.assign_outliers(x, raw, cents, numbers, thresholds)
    return final, raw


def _keep_previous(
    labels: np.ndarray,
    items: _Items,
    ids: dict[int, str],
    previous: list[aligner.Previous],
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

    Returns:
        (labels, mask of rows kept, cluster number -> theme id including revived themes).
    """
    labels = labels.copy()
    ids = dict(ids)
    kept = np.zeros(len(labels), dtype=bool)
    number_of = {tid: c for c, tid in ids.items()}
    index_of = {c: k for k, c in enumerate(numbers)}
    row_of = {key: i for i, key in enumerate(items.keys)}
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
            members_left = [r for r in rows if r in set(stay)]
            if len(members_left) < min_size:
                continue
            target = next_number
            next_number += 1
            ids[target] = p.theme_id
        for row in stay:
            labels[row] = target
            kept[row] = True
    return labels, kept, ids


def _map_2d(x: np.ndarray, max_points: int) -> dict[int, tuple[float, float]]:
    if len(x) < 3:
        return {}
    rng = np.random.default_rng(42)
    rows = np.arange(len(x)) if len(x) <= max_points else np.sort(rng.choice(len(x), max_points, replace=False))
    xy = stages.UMAPReducer(n_components=2, n_neighbors=15, random_state=42).fit_transform(stages.center(x[rows]))
    return {int(r): (float(a), float(b)) for r, (a, b) in zip(rows, xy)}


def _quality(reduced: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette of the clustered points in the reduced space (a sample of at most 5,000)."""
    from sklearn.metrics import silhouette_score

    mask = labels >= 0
    if mask.sum() < 10 or len(set(labels[mask].tolist())) < 2:
        return None
    return float(silhouette_score(reduced[mask], labels[mask], sample_size=min(5000, int(mask.sum())), random_state=42))
