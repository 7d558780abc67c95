"""The theme job on synthetic blobs: clustering, stability, curation, labels, interruption, lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from matcher.swedish import STOP_WORDS, Analyzer
from pipelines.records import embed_text
from pipelines.themes import stages
from pipelines.themes.job import ThemeJobRunning, job_lock, run_theme_job
from pipelines.themes.labels import label_themes
from tests.fakes import KeywordEncoder
from tests.helpers import blob_records, store_with_vectors

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def blobs(tmp_path: Path):
    records, x, y = blob_records(dim=32)
    enc = KeywordEncoder(dim=32, model_id="blobs")
    store = store_with_vectors(tmp_path / "t.duckdb", records, x, enc.model_id)
    yield store, enc, records, x, y
    store.close()


def _partition(store) -> dict[str, str]:
    return {m["item_id"]: m["theme_id"] for m in store.themes.memberships()}


def test_finds_the_blobs_with_few_unassigned(blobs) -> None:
    store, enc, records, x, y = blobs
    record = run_theme_job(store, enc, show_bar=False)
    stored = {embed_text(r.title, r.text) for r in records}
    assert not stored & set(enc.seen)  # every item's vector came from the store (only label words were encoded)
    part = _partition(store)
    labels = [part[r.id] or "-" for r in records]
    assert normalized_mutual_info_score(y, labels) >= 0.95
    assert record["share_unassigned"] <= 0.10
    assert record["n_themes"] == 6
    assert set(record["timings"]) >= {"embed", "load", "reduce", "cluster", "assign", "label", "map", "write"}
    assert record["quality"] is not None and record["quality"] > 0.5


def test_same_data_same_themes(blobs, tmp_path: Path) -> None:
    store, enc, records, x, _ = blobs
    run_theme_job(store, enc, show_bar=False)
    first = _partition(store)
    other = store_with_vectors(tmp_path / "again.duckdb", records, x, enc.model_id)
    run_theme_job(other, enc, show_bar=False)
    second = _partition(other)
    other.close()
    # ids are fresh per database, so compare the partitions
    assert normalized_mutual_info_score(list(first.values()), [second[k] for k in first]) == pytest.approx(1.0)


def test_ids_survive_five_percent_more_data(blobs) -> None:
    store, enc, records, x, _ = blobs
    run_theme_job(store, enc, show_bar=False)
    before = _partition(store)
    extra, ex, _ = blob_records(n_per=3, seed=0, start=10_000, dim=32)
    store.upsert_records("ideas", extra)
    hashes = [r.embed_hash for r in extra]
    from pipelines.embed import vector_key

    store.put_embeddings(enc.model_id, hashes, ex)
    store.put_embeddings(vector_key(enc.model_id, "query"), hashes, ex)
    record = run_theme_job(store, enc, show_bar=False)
    after = _partition(store)
    kept = sum(after[k] == v for k, v in before.items() if v) / sum(1 for v in before.values() if v)
    assert kept >= 0.9
    assert not [e for e in record["events"] if e["event"] in ("birth", "death")]


def test_curation_survives_the_next_run(blobs) -> None:
    store, enc, records, *_ = blobs
    run_theme_job(store, enc, show_bar=False)
    themes = store.themes.current_themes()
    a, b, c = themes[0].theme_id, themes[1].theme_id, themes[2].theme_id
    store.themes.add_curation("rename", "coach", theme_id=a, name="Vinterväghållning")
    store.themes.add_curation("merge", "coach", theme_id=b, other_theme_id=c)
    moved = next(k for k, v in _partition(store).items() if v == a)
    store.themes.add_curation("move", "coach", theme_id=c, kind="ideas", item_id=moved)
    run_theme_job(store, enc, show_bar=False)
    now = {t.theme_id: t for t in store.themes.current_themes()}
    assert now[a].label == "Vinterväghållning"
    assert b not in now and c in now
    assert _partition(store)[moved] == c
    pinned = next(k for k, v in _partition(store).items() if v == a)
    store.themes.add_curation("pin", "coach", theme_id=a, kind="ideas", item_id=pinned)
    run_theme_job(store, enc, show_bar=False)
    top = {t.theme_id: t for t in store.themes.current_themes()}[a].representatives[0]
    assert top == {"kind": "ideas", "id": pinned}


def test_remembered_themes_follow_every_change_of_the_themes_table(blobs) -> None:
    store, enc, records, *_ = blobs
    run_theme_job(store, enc, show_bar=False)
    first = store.themes.current_themes()
    again = store.themes.current_themes()
    assert again[0] is first[0]  # read once per generation, not once per suggestion
    a, b, c = first[0].theme_id, first[1].theme_id, first[2].theme_id
    store.themes.add_curation("rename", "coach", theme_id=a, name="Vinterväghållning")
    assert {t.theme_id: t.label for t in store.themes.current_themes()}[a] == "Vinterväghållning"
    store.themes.add_curation("merge", "coach", theme_id=b, other_theme_id=c)
    assert b not in {t.theme_id for t in store.themes.current_themes()}
    rep = next(t for t in store.themes.current_themes() if t.representatives).representatives[0]
    store.erasure.erase_record(rep["kind"], rep["id"], "dpo")
    shown = [r for t in store.themes.current_themes() for r in t.representatives]
    assert rep not in shown  # an erased record is no longer named by the remembered themes
    run_theme_job(store, enc, show_bar=False)
    newest = store.themes.current_themes()
    assert store.themes.current_run_id() == store.themes.current_run_id()
    assert newest[0] is not first[0]


def test_remembered_centroids_match_the_themes_and_follow_their_changes(blobs) -> None:
    store, enc, records, *_ = blobs
    run_theme_job(store, enc, show_bar=False)
    themes, matrix = store.themes.current_centroids(enc.dim)
    assert [t.theme_id for t in themes] == [t.theme_id for t in store.themes.current_themes()]
    assert np.array_equal(matrix, np.stack([t.centroid for t in themes]))
    assert store.themes.current_centroids(enc.dim)[1] is matrix  # stacked once per generation
    wrong = store.themes.current_centroids(enc.dim + 1)
    assert wrong[0] == [] and wrong[1].shape == (0, enc.dim + 1)  # no centroid of another model's size
    a, b = themes[0].theme_id, themes[1].theme_id
    store.themes.add_curation("merge", "coach", theme_id=a, other_theme_id=b)
    after, merged = store.themes.current_centroids(enc.dim)
    assert a not in {t.theme_id for t in after} and len(merged) == len(after) == len(themes) - 1
    assert np.array_equal(merged, np.stack([t.centroid for t in after]))


def test_labels_are_surface_words_and_never_stop_words() -> None:
    docs = [
        [
            "Gatubelysningen är trasig och det är mörkt",
            "Fler lampor på gatan, det är så mörkt",
            "Lamporna i parken lyser inte",
        ],
        [
            "Snöröjningen kommer för sent",
            "Plogningen av gatorna är dålig och det är halt",
            "Sanda gångbanorna när det är halt",
        ],
    ]
    labels = label_themes(Analyzer(split_known_words=False), docs)
    for lab in labels:
        assert lab.keywords
        assert not {w for kw in lab.keywords for w in kw.split()} & STOP_WORDS
    assert "mörkt" in labels[0].keywords
    assert any(k.startswith("halt") for k in labels[1].keywords)
    assert labels[0].label[0].isupper()


def test_outliers_join_only_close_themes() -> None:
    x = np.array([[1, 0], [0.99, 0.14], [0.98, 0.2], [0, 1], [0.7, 0.7]], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.array([0, 0, 0, -1, -1])
    cents, numbers = stages.centroids(x, labels)
    thr = stages.member_thresholds(x, labels, cents, numbers)
    out, assigned = stages.assign_outliers(x, labels, cents, numbers, thr)
    assert list(out) == [0, 0, 0, -1, -1]  # neither is as close as the theme's own members
    assert not assigned.any()


def test_unknown_stage_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown stage 'tsne'"):
        stages.make(stages.REDUCERS, "tsne")


def test_second_job_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    with job_lock(db), pytest.raises(ThemeJobRunning, match="already running"), job_lock(db):
        pass


SLOW_JOB = """
import sys, time
from store import Store
from pipelines.themes.job import run_theme_job
from tests.fakes import KeywordEncoder
def progress(stage, frac):
    if stage == "cluster":
        open(sys.argv[2], "w").write("cluster")
        time.sleep(120)
with Store(sys.argv[1]) as s:
    run_theme_job(s, KeywordEncoder(dim=32, model_id="blobs"), progress=progress, show_bar=False)
"""


def test_kill_9_mid_run_keeps_the_last_good_themes(blobs, tmp_path: Path) -> None:
    store, enc, *_ = blobs
    run_theme_job(store, enc, show_bar=False)
    good_run = store.themes.current_run_id()
    good = _partition(store)
    db = store.path
    store.close()
    marker = tmp_path / "reached"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_JOB, str(db), str(marker)], cwd=REPO)
    try:
        deadline = time.time() + 300
        while not marker.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert marker.exists(), "the job never reached the clustering stage"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    from store import Store

    with Store(db) as reopened:
        assert reopened.themes.current_run_id() == good_run
        assert _partition(reopened) == good
        record = run_theme_job(reopened, enc, show_bar=False)  # the lock died with the process
        assert record["run_id"] == good_run + 1
        assert reopened.themes.current_run_id() == good_run + 1
