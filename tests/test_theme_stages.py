"""The theme job's store-free stages one by one, on make_blobs data (no model, no store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from pipelines.themes import compute, stages
from pipelines.themes.align import Previous
from pipelines.themes.config import ThemeJobConfig
from pipelines.themes.history import History
from pipelines.themes.job import run_theme_job
from tests.fakes import KeywordEncoder
from tests.helpers import WORDS, blob_records, store_with_vectors

PCA = ThemeJobConfig(reducer="pca", reducer_params={"n_components": 10})
STAGES = [
    ("embed", 0.3),
    ("load", 0.35),
    ("reduce", 0.6),
    ("cluster", 0.7),
    ("assign", 0.75),
    ("label", 0.85),
    ("map", 0.95),
    ("write", 1.0),
]


@pytest.fixture(scope="module")
def blobs() -> tuple[compute.Items, np.ndarray]:
    records, x, y = blob_records(dim=32)
    keys = [f"ideas:{r.id}" for r in records]
    items = compute.Items(keys, ["ideas"] * len(records), [r.id for r in records], [r.text for r in records], x)
    return items, y


def _clustered(items: compute.Items, config: ThemeJobConfig = PCA) -> np.ndarray:
    return compute.cluster(compute.reduce(items.vectors, config), len(items), config)


def test_reduce_and_cluster_find_the_blobs(blobs) -> None:
    items, y = blobs
    labels = _clustered(items)
    assert len(set(labels[labels >= 0].tolist())) == 6
    clustered = labels >= 0
    assert clustered.mean() >= 0.8
    assert normalized_mutual_info_score(y[clustered], labels[clustered]) >= 0.95


def test_a_sampled_fit_leaves_the_other_rows_to_the_assign_stage(blobs) -> None:
    items, _ = blobs
    config = ThemeJobConfig(reducer="pca", reducer_params={"n_components": 10}, max_fit_items=200)
    fit = compute.reduce(items.vectors, config)
    assert len(fit.rows) == len(fit.reduced) == 200 and list(fit.rows) == sorted(set(fit.rows.tolist()))
    labels = compute.cluster(fit, len(items), config)
    outside = np.setdiff1d(np.arange(len(items)), fit.rows)
    assert (labels[outside] == -1).all()
    assert (labels[fit.rows] >= 0).any()


def test_assign_stage_admits_only_rows_as_close_as_the_themes_own_members(blobs) -> None:
    items, _ = blobs
    labels = _clustered(items)
    x = items.vectors
    # make every tenth row noise, and one row a point between two blobs that belongs to neither
    labels[::10] = -1
    between = x[labels == 0].mean(axis=0) + x[labels == 1].mean(axis=0)
    x = x.copy()
    x[5] = between / np.linalg.norm(between)
    labels[5] = -1
    items = compute.Items(items.keys, items.kinds, items.ids, items.texts, x)
    cents, numbers = stages.centroids(x, labels)
    thresholds = stages.member_thresholds(x, labels, cents, numbers, PCA.keep_quantile)

    placed = compute.assign(items, labels, History(), PCA)

    assigned = np.nonzero(placed.how == "assigned")[0]
    assert len(assigned) > 0
    for row in assigned:
        k = numbers.index(int(placed.labels[row]))
        assert float(x[row] @ cents[k]) >= thresholds[k]
    assert placed.labels[5] == -1 and placed.how[5] == "unassigned"
    assert set(placed.how[labels >= 0]) == {"clustered"}
    assert all(e["event"] == "birth" for e in placed.events) and len(placed.events) == len(numbers)


def test_assign_stage_keeps_last_nights_ids_and_applies_curation(blobs) -> None:
    items, _ = blobs
    labels = _clustered(items)
    cents, numbers = stages.centroids(items.vectors, labels)
    previous = [
        Previous(f"OLD{c}", {items.keys[i] for i in np.nonzero(labels == c)[0]}, cents[k])
        for k, c in enumerate(numbers)
    ]
    moved = int(np.nonzero(labels == numbers[0])[0][0])
    pinned = int(np.nonzero(labels == numbers[2])[0][-1])
    curations = [
        {"action": "rename", "theme_id": "OLD1", "name": "Cykling"},
        {"action": "move", "theme_id": "OLD1", "kind": "ideas", "item_id": items.ids[moved]},
        {"action": "pin", "theme_id": "OLD2", "kind": "ideas", "item_id": items.ids[pinned]},
        {"action": "merge", "theme_id": "OLD3", "other_theme_id": "OLD4"},
    ]

    placed = compute.assign(items, labels, History(previous, curations), PCA)

    assert placed.events == []  # every theme matched its predecessor: no births, deaths, splits, merges
    assert sorted(placed.ids.values()) == ["OLD0", "OLD1", "OLD2", "OLD4", "OLD5"]  # OLD3 merged away
    by_id = {t: c for c, t in placed.ids.items()}
    assert placed.labels[moved] == by_id["OLD1"] and placed.how[moved] == "moved"
    assert placed.labels[pinned] == by_id["OLD2"] and placed.how[pinned] == "pinned"
    assert placed.pinned == {pinned}
    assert not (placed.labels == numbers[3]).any()
    assert placed.names == {"OLD1": "Cykling"}


def test_label_stage_gives_one_labelled_theme_per_cluster(blobs) -> None:
    items, _ = blobs
    placed = compute.assign(items, _clustered(items), History(), PCA)
    pinned = int(np.nonzero(placed.labels == 0)[0][-1])
    placed.pinned = {pinned}
    placed.names = {placed.ids[0]: "Staff name"}

    labelled = compute.label(items, placed, PCA)

    numbers = sorted(set(placed.labels[placed.labels >= 0].tolist()))
    assert len(labelled.themes) == len(numbers) == len(labelled.theme_of)
    assert [t.theme_id for t in labelled.themes] == [placed.ids[c] for c in numbers]
    topics = {w for words in WORDS for w in words}
    for theme, c in zip(labelled.themes, numbers):
        assert theme.size == int((placed.labels == c).sum())
        assert len(theme.representatives) == PCA.representatives
        assert set(theme.keywords) & topics  # its blob's topic words, not "förslag" or "nummer"
    first = labelled.themes[0]
    assert first.label == "Staff name"
    assert first.representatives[0] == {"kind": "ideas", "id": items.ids[pinned]}
    assert len({t.label for t in labelled.themes[1:]}) == len(numbers) - 1


def test_outcome_has_one_membership_per_item(blobs) -> None:
    items, _ = blobs
    config = ThemeJobConfig(reducer="pca", reducer_params={"n_components": 10}, map_max_points=100)
    fit = compute.reduce(items.vectors, config)
    placed = compute.assign(items, compute.cluster(fit, len(items), config), History(), config)
    labelled = compute.label(items, placed, config)
    coords = compute.map_2d(items.vectors, config.map_max_points)

    out = compute.outcome(items, fit, placed, labelled, coords)

    assert len(coords) == 100
    assert [m.item_id for m in out.members] == items.ids
    assert sum(m.x is not None for m in out.members) == 100
    none = [m for m in out.members if m.theme_id == ""]
    assert all(m.how == "unassigned" for m in none)
    assert out.share_unassigned == pytest.approx(len(none) / len(items))
    assert out.quality is not None and out.quality > 0.5


def test_the_job_reports_its_stages_in_order(tmp_path: Path) -> None:
    records, x, _ = blob_records(dim=32)
    enc = KeywordEncoder(dim=32, model_id="blobs")
    reported: list[tuple[str, float]] = []
    with store_with_vectors(tmp_path / "s.duckdb", records, x, enc.model_id) as store:
        record = run_theme_job(store, enc, PCA, progress=lambda s, f: reported.append((s, f)), show_bar=False)
    assert reported == STAGES
    assert list(record["timings"]) == [name for name, _ in STAGES]
