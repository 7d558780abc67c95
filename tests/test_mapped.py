"""Large arrays in unnamed file mappings: same answers, growth without a copy, erasure in the file's bytes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from matcher.ann import make_index
from matcher.collection import Collection
from matcher.mapped import MappedArray, is_mapped
from matcher.ngrams import CharNgramIndex
from matcher.swedish import Analyzer
from tests.test_snapshots import DIM, _items, _unit


def _file_bytes(mapped: MappedArray, row: int) -> bytes:
    """A row's bytes as the file holds them (read with pread, not through the mapping)."""
    return os.pread(mapped._fd, mapped.row_bytes, row * mapped.row_bytes)


def test_a_mapped_array_has_no_name_grows_without_a_copy_and_old_views_see_writes(tmp_path: Path) -> None:
    src = np.arange(40, dtype=np.float16).reshape(10, 4)
    m = MappedArray(tmp_path, src, capacity=12)
    assert list(tmp_path.iterdir()) == []  # unlinked at once: nothing to open, nothing left after a crash
    old = m.array
    assert is_mapped(old) and not is_mapped(src) and old.shape == (12, 4)  # the capacity asked for
    np.testing.assert_array_equal(old[:10], src)
    grown = m.grow(1000)
    assert grown.shape == (1000, 4) and not grown[10:].any()  # new rows read as zeros
    grown[3] = 7.0  # written through the new mapping ...
    assert (old[3] == 7.0).all()  # ... seen through the old one: both map the same file
    assert _file_bytes(m, 3) == np.full(4, 7.0, np.float16).tobytes()
    assert MappedArray(tmp_path, np.zeros((0, 4), np.float32)).array.shape == (0, 4)


def test_a_full_disk_is_an_error_when_the_array_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space"):
        MappedArray(tmp_path, np.zeros((5, 4), np.float32))


def test_dense_index_mapped_answers_the_same_and_erases_in_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vecs = _unit(rng, 300)
    plain, mapped = (make_index("hnsw", DIM, rescore_dtype="float16") for _ in range(2))
    for index in (plain, mapped):
        index.add(np.arange(200), vecs[:200])
    mapped.map_into(tmp_path)
    assert mapped.mapped and not plain.mapped and is_mapped(mapped.matrix(200))
    queries = vecs[250:260]
    for index in (plain, mapped):
        index.add(np.arange(200, 250), vecs[200:250])  # past the capacity: the file grows
    assert is_mapped(mapped.matrix(250))
    rows_p, scores_p = plain.search(queries, 10)
    rows_m, scores_m = mapped.search(queries, 10)
    np.testing.assert_array_equal(rows_p, rows_m)
    np.testing.assert_allclose(scores_p, scores_m)
    assert _file_bytes(mapped._mapped, 7) != bytes(mapped._mapped.row_bytes)
    mapped.remove(np.asarray([7]))
    assert _file_bytes(mapped._mapped, 7) == bytes(mapped._mapped.row_bytes)  # the erased vector is gone from the file
    assert 7 not in mapped.search(vecs[7:8], 250)[0]


def test_char_ngrams_mapped_score_the_same_and_erase_a_row_in_the_file(tmp_path: Path) -> None:
    texts = [f"cykelväg nummer {i} till skolan i byn {i % 7}" for i in range(60)]
    plain, mapped = CharNgramIndex(), CharNgramIndex()
    for index in (plain, mapped):
        index.by_rows()
        index.add(texts[:50])
    mapped.map_into(tmp_path)
    base = mapped.view.segments[0].matrix
    assert is_mapped(base.indices) and is_mapped(base.data) and list(tmp_path.iterdir()) == []
    rows = np.arange(0, 50, 3)
    np.testing.assert_allclose(
        plain.view.scores_at("cykelväg skolan", rows), mapped.view.scores_at("cykelväg skolan", rows)
    )
    a, b = base.indptr[4], base.indptr[5]
    assert base.data[a:b].any()
    mapped.forget(4)
    assert not base.data[a:b].any() and not base.indices[a:b].any()
    assert mapped.view.scores_at("cykelväg nummer 4", np.asarray([4]))[0] == 0.0


def test_a_full_merge_maps_its_new_segment(tmp_path: Path) -> None:
    index = CharNgramIndex()
    index.by_rows()
    index.add([f"text nummer {i}" for i in range(20)])
    index.map_into(tmp_path)
    first = index.view.segments[0].matrix
    index.add([f"ny text {i}" for i in range(3000)])  # more than a tenth: one full merge
    assert len(index.view.segments) == 1
    merged = index.view.segments[0].matrix
    assert merged is not first and is_mapped(merged.indices) and merged.shape[0] == 3020


def test_a_mapped_collection_answers_as_before_and_forgets_erased_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    items = _items(rng, 0, 120)
    vecs = _unit(rng, 120)
    plain, mapped = (Collection(DIM, Analyzer(), duplicate_threshold=0.99) for _ in range(2))
    for coll in (plain, mapped):
        coll.add(items[:100], vecs[:100])
        coll.use_dense_index(make_index("hnsw", DIM, rescore_dtype="float16"))
    mapped.map_into(tmp_path)
    for coll in (plain, mapped):
        coll.add(items[100:], vecs[100:])
        coll.remove(items[3].id)
    assert is_mapped(mapped.vectors) and is_mapped(mapped.snapshot.chars.segments[0].matrix.indices)
    np.testing.assert_array_equal(plain.vectors, mapped.vectors)
    assert not mapped.vectors[3].any()
    with pytest.raises(ValueError, match="dense index"):
        Collection(DIM, Analyzer()).map_into(tmp_path)


def test_a_saved_collection_loads_its_vectors_straight_into_a_mapping(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    items = _items(rng, 0, 80)
    vecs = _unit(rng, 80)
    coll = Collection(DIM, Analyzer(), duplicate_threshold=None)
    coll.add(items, vecs)
    coll.use_dense_index(make_index("hnsw", DIM, rescore_dtype="float16"))
    coll.save(tmp_path / "saved")
    by_id = {it.id: it for it in items if it.id != items[5].id}  # one erased since the save
    loaded = Collection.load(tmp_path / "saved", Analyzer(), by_id, None, map_into=tmp_path / "maps")
    assert loaded is not None
    again, missing = loaded
    assert missing == [] and again.dense_index is not None and again.dense_index.mapped
    assert not again.vectors[5].any()  # the hole is overwritten in the mapping, not in the saved file
    base = again.snapshot.chars.segments[0].matrix
    assert is_mapped(base.indices) and is_mapped(base.data)  # read from the saved file into the mapping
    np.testing.assert_allclose(
        again.snapshot.chars.scores_at("cykel skola", np.arange(6, 80)),
        coll.snapshot.chars.scores_at("cykel skola", np.arange(6, 80)),
    )
    a, b = base.indptr[5], base.indptr[6]
    assert b > a and not base.data[a:b].any() and not base.indices[a:b].any()  # its n-grams too
    np.testing.assert_array_equal(again.vectors[6:], coll.vectors[6:])
    assert list((tmp_path / "maps").iterdir()) == []


def test_a_full_ranking_of_row_ordered_ngrams_equals_the_column_ordered_one() -> None:
    texts = [f"snöröjning på gata {i} i {['byn', 'stan', 'parken'][i % 3]}" for i in range(40)]
    cols, rows = CharNgramIndex(), CharNgramIndex()
    rows.by_rows()
    for index in (cols, rows):
        index.add(texts)
    np.testing.assert_allclose(cols.scores("snöröjning i byn"), rows.scores("snöröjning i byn"), rtol=1e-6)
    rows.forget(3)
    assert rows.scores("snöröjning på gata 3 i byn")[3] == 0.0  # read once per entry: blank, not torn


def test_a_full_disk_while_growing_keeps_the_index_whole_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(9)
    items, vecs = _items(rng, 0, 2300), _unit(rng, 2300)
    coll = Collection(DIM, Analyzer(), duplicate_threshold=None)
    coll.add(items[:100], vecs[:100])
    coll.use_dense_index(make_index("hnsw", DIM, rescore_dtype="float16"))
    coll.map_into(tmp_path)

    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    coll.add(items[100:], vecs[100:])  # past the vectors' capacity, and (over 2,048 rows) a full merge of the n-grams
    assert coll.dense_index is not None and not coll.dense_index.mapped and len(coll) == 2300
    assert not is_mapped(coll.snapshot.chars.segments[0].matrix.indices)
    np.testing.assert_allclose(coll.vectors[100:], vecs[100:], atol=1e-3)
    # every part holds the same rows: nothing was half-added
    assert coll.chars.size == coll.lexical.view.size == len(coll.items[:2300]) == 2300
    assert len(coll.snapshot.chars.segments) == 1 and coll.row_of[items[2299].id] == 2299


def test_an_npz_member_streams_into_a_mapping_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    from matcher.mapped import load_npz

    big = np.arange(200_000, dtype=np.int32)
    np.savez(tmp_path / "a.npz", big=big, small=np.arange(3, dtype=np.float32))
    got = load_npz(tmp_path / "a.npz", ("big",), tmp_path / "maps")
    assert is_mapped(got["big"]) and not is_mapped(got["small"])
    np.testing.assert_array_equal(got["big"], big)
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((3, 2))))
    with open(tmp_path / "f.npy", "rb") as fh, pytest.raises(ValueError, match="C-ordered"):
        MappedArray.from_npy(tmp_path, fh)
