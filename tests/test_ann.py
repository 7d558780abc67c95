"""Dense indexes: one contract suite over every backend, then HNSW's recall against the exact reference."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from evaluation.bench_scale import clustered_unit_vectors
from matcher.ann import _PLACEHOLDER_KEYS, DenseIndex, ExactIndex, HnswIndex, make_index

DIM = 32
N = 600

# HNSW never choosing the exact scan, so that the graph path answers even these small indexes and masks;
# built on one thread, so that the graph (and each answer) is the same on every run.
BACKENDS = [("exact", {}), ("hnsw", {"exact_rows": 0, "scan_cost_ratio": 0.0, "add_threads": 1})]


def _unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=BACKENDS, ids=[kind for kind, _ in BACKENDS])
def backend(request: pytest.FixtureRequest) -> tuple[str, dict]:
    return request.param


@pytest.fixture
def data() -> np.ndarray:
    return _unit(np.random.default_rng(0), N)


@pytest.fixture
def filled(backend: tuple[str, dict], data: np.ndarray) -> DenseIndex:
    kind, params = backend
    index = make_index(kind, DIM, **params)
    index.add(np.arange(N), data)
    return index


def _queries(data: np.ndarray, n: int = 20, seed: int = 1) -> np.ndarray:
    """Stored vectors with noise: each query's true neighbourhood is known to be non-trivial."""
    rng = np.random.default_rng(seed)
    q = data[:n] + 0.3 * _unit(rng, n)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _brute(data: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    scores = queries @ data.T
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def _floor(index: DenseIndex) -> float:
    """The recall the contract asks of a backend: all of it from the exact one; HNSW's own bar is pinned below."""
    return 1.0 if isinstance(index, ExactIndex) else 0.9


# --- the contract: every backend ---


def test_search_ranks_by_exact_cosine(filled: DenseIndex, data: np.ndarray) -> None:
    queries = _queries(data)
    rows, scores = filled.search(queries, 10)
    assert rows.shape == scores.shape == (20, 10)
    assert rows.dtype == np.int64 and scores.dtype == np.float32
    expected = np.einsum("qkd,qd->qk", data[rows], queries)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert rows[:, 0].tolist() == list(range(20))  # each query's own noisy source is its best match
    assert _recall(rows, _brute(data, queries, 10)) >= _floor(filled)
    np.testing.assert_allclose(filled.score_rows(queries[:1], rows[0]), scores[:1], atol=1e-6)


def test_vectors_and_queries_are_normalised(filled: DenseIndex, data: np.ndarray) -> None:
    rows, scores = filled.search(3.0 * data[:2], 1)
    assert rows[:, 0].tolist() == [0, 1]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_adding_a_row_again_replaces_its_vector(filled: DenseIndex, data: np.ndarray) -> None:
    filled.add(np.array([5]), data[7:8])
    assert len(filled) == N
    rows, scores = filled.search(data[7:8], 2)
    assert set(rows[0]) == {5, 7}
    np.testing.assert_allclose(scores[0], 1.0, atol=1e-5)
    assert 5 not in filled.search(data[5:6], 5)[0][0]


def test_removed_rows_never_come_back(filled: DenseIndex, data: np.ndarray) -> None:
    queries = _queries(data)
    before = filled.search(queries, 10)[0]
    gone = np.unique(before[:, :3])
    assert filled.remove(gone) == len(gone)
    assert filled.remove(gone) == 0  # already removed, and unknown rows, are ignored
    assert filled.remove(np.array([N + 100])) == 0
    assert len(filled) == N - len(gone)
    after = filled.search(queries, 10)[0]
    assert not set(after.ravel()) & set(gone.tolist())
    assert np.isneginf(filled.score_rows(queries[:1], gone)).all()
    alive = np.ones(N, bool)
    alive[gone] = False
    assert _recall(after, _brute(data, queries, 10, alive)) >= _floor(filled)


def test_allowed_mask_is_respected(filled: DenseIndex, data: np.ndarray) -> None:
    queries = _queries(data)
    rng = np.random.default_rng(2)
    for share in (0.5, 0.1, 0.02):
        allowed = rng.random(N) < share
        rows, scores = filled.search(queries, 10, allowed)
        assert rows.shape == (20, min(10, int(allowed.sum())))
        assert allowed[rows].all()
        assert _recall(rows, _brute(data, queries, rows.shape[1], allowed)) >= _floor(filled)
    three = np.zeros(N, bool)
    three[[3, 30, 300]] = True
    rows, _ = filled.search(queries, 10, three)
    assert rows.shape == (20, 3) and set(rows.ravel()) == {3, 30, 300}
    assert filled.search(queries, 10, np.zeros(N, bool))[0].shape == (20, 0)
    short = np.ones(N // 2, bool)  # a reader's view older than the index: later rows are not allowed
    rows, _ = filled.search(queries, 10, short)
    assert rows.shape == (20, 10) and (rows < N // 2).all()
    with pytest.raises(ValueError, match="allowed"):
        filled.search(queries, 10, np.ones((2, N), bool))


def test_k_larger_than_the_index_returns_every_row(backend: tuple[str, dict], data: np.ndarray) -> None:
    index = make_index(backend[0], DIM, **backend[1])
    index.add(np.arange(5), data[:5])
    rows, scores = index.search(data[:2], 50)
    assert rows.shape == (2, 5)
    assert sorted(rows[0].tolist()) == [0, 1, 2, 3, 4]
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_empty_index(backend: tuple[str, dict], data: np.ndarray) -> None:
    index = make_index(backend[0], DIM, **backend[1])
    assert len(index) == 0
    rows, scores = index.search(data[:3], 10)
    assert rows.shape == scores.shape == (3, 0)
    index.add(np.arange(2), data[:2])
    index.remove(np.arange(2))
    assert index.search(data[:3], 10)[0].shape == (3, 0)


def test_bad_input_is_refused(filled: DenseIndex, data: np.ndarray) -> None:
    with pytest.raises(ValueError, match="shape"):
        filled.search(data[:1, :5], 3)
    with pytest.raises(ValueError, match="unique"):
        filled.add(np.array([1, 1]), data[:2])
    with pytest.raises(ValueError, match="rows"):
        filled.add(np.array([-1]), data[:1])
    with pytest.raises(ValueError, match="finite"):
        filled.add(np.array([1]), np.full((1, DIM), np.nan, np.float32))


def test_save_and_load_give_the_same_answers(filled: DenseIndex, data: np.ndarray, tmp_path: Path) -> None:
    filled.remove(np.arange(0, N, 7))
    queries = _queries(data)
    allowed = np.random.default_rng(3).random(N) < 0.3
    expected = [filled.search(queries, 10), filled.search(queries, 10, allowed)]
    filled.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl")) and (tmp_path / "config.json").exists()
    for mmap in (False, True):
        loaded = DenseIndex.load(tmp_path, mmap=mmap)
        assert type(loaded) is type(filled) and len(loaded) == len(filled)
        assert loaded.params() == filled.params()
        for (rows, scores), got in zip(expected, [loaded.search(queries, 10), loaded.search(queries, 10, allowed)]):
            assert got[0].tolist() == rows.tolist()
            np.testing.assert_array_equal(got[1], scores)
    loaded = type(filled).load(tmp_path)
    loaded.add(np.array([N]), data[:1])  # an index read into memory takes writes
    assert len(loaded) == len(filled) + 1
    viewed = DenseIndex.load(tmp_path, mmap=True)
    with pytest.raises(RuntimeError, match="read-only"):
        viewed.add(np.array([N]), data[:1])
    with pytest.raises(RuntimeError, match="read-only"):
        viewed.remove(np.array([1]))
    other = HnswIndex if type(filled) is ExactIndex else ExactIndex
    with pytest.raises(ValueError, match="holds"):
        other.load(tmp_path)


def test_an_erased_vector_leaves_no_bytes_in_a_saved_index(
    filled: DenseIndex, data: np.ndarray, tmp_path: Path
) -> None:
    """The privacy promise (README): an erased row's vector is overwritten in memory, graph included."""
    gone = [11, 12, 400]
    needles = [filled._vectors[r].tobytes() for r in gone]  # the bytes as stored, after normalising
    if isinstance(filled, HnswIndex):  # the graph keeps its own (i8) copy of each vector
        needles += [filled._graph.get(r, dtype=np.int8).tobytes() for r in gone]
    kept = filled._vectors[13].tobytes()
    filled.remove(np.array(gone[:2]))
    filled.add(np.array([N]), data[N - 1 : N])  # writes in between must not bring a freed slot back
    filled.remove(np.array(gone[2:]))
    filled.save(tmp_path)
    blob = b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()))
    assert kept in blob  # the search is not blind
    assert not [n for n in needles if n in blob]


# --- the factory and HNSW itself ---


def test_factory_is_keyed_by_name() -> None:
    assert isinstance(make_index("exact", 8), ExactIndex)
    index = make_index("hnsw", 8, connectivity=8, rescore_dtype="float16")
    assert isinstance(index, HnswIndex)
    assert index.params()["connectivity"] == 8 and index.params()["rescore_dtype"] == "float16"
    with pytest.raises(ValueError, match="exact, hnsw"):
        make_index("faiss", 8)
    with pytest.raises(ValueError, match="float32, float16"):
        make_index("hnsw", 8, rescore_dtype="float64")


def test_selective_masks_are_scanned_exactly() -> None:
    index = HnswIndex(DIM, exact_rows=50)  # scan_cost_ratio 4: a fetched candidate costs 4 scanned rows
    index.add(np.arange(10_000), _unit(np.random.default_rng(4), 10_000))
    assert index.fetch_for(10, 10_000) == 74 and index.fetch_for(100, 10_000) == 200
    assert index.fetch_for(10, 1_000) == 740  # a tenth of the rows allowed: ten times the candidates
    assert index.route(10, 10_000) == "graph"
    assert index.route(10, 5_000) == "graph"  # 148 candidates cost 592 rows < 5,000
    assert index.route(10, 1_000) == "scan"  # 740 candidates cost 2,960 rows > 1,000
    assert index.route(10, 40) == "scan"  # at or below exact_rows
    rows = index.search(_unit(np.random.default_rng(5), 3), 10, np.arange(10_000) < 1_000)[0]
    assert rows.shape == (3, 10) and (rows < 1_000).all()


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """20,000 clustered unit vectors (make_blobs, seeded), dim 384, and 200 held-out queries."""
    v = clustered_unit_vectors(20_200, 384, seed=7)
    return v[:20_000], v[20_000:]


@pytest.fixture(scope="module")
def hnsw_20k(blobs: tuple[np.ndarray, np.ndarray]) -> HnswIndex:
    index = HnswIndex(384, add_threads=1)  # the default parameters, built on one thread: the same graph every run
    index.add(np.arange(20_000), blobs[0])
    return index


def test_hnsw_recall_at_10_against_exact(blobs: tuple[np.ndarray, np.ndarray], hnsw_20k: HnswIndex) -> None:
    data, queries = blobs
    exact = ExactIndex(384)
    exact.add(np.arange(20_000), data)
    truth = exact.search(queries, 10)[0]
    assert hnsw_20k.route(10, 20_000) == "graph"
    assert _recall(hnsw_20k.search(queries, 10)[0], truth) >= 0.98
    allowed = np.random.default_rng(5).random(20_000) < 0.2  # filtered through the over-fetching graph walk
    assert hnsw_20k.route(10, int(allowed.sum())) == "graph"
    assert _recall(hnsw_20k.search(queries, 10, allowed)[0], exact.search(queries, 10, allowed)[0]) >= 0.98


def test_concurrent_searches_agree_with_sequential_ones(
    blobs: tuple[np.ndarray, np.ndarray], hnsw_20k: HnswIndex
) -> None:
    queries = blobs[1]
    expected = [hnsw_20k.search(q[None], 10)[0].tolist() for q in queries]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda q: hnsw_20k.search(q[None], 10)[0].tolist(), queries))
    assert got == expected


def test_float16_rescoring_halves_the_matrix_and_keeps_the_ranking(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    data, queries = blobs[0][:5000], blobs[1]
    full = HnswIndex(384, exact_rows=0, add_threads=1)
    half = HnswIndex(384, exact_rows=0, add_threads=1, rescore_dtype="float16")
    for index in (full, half):
        index.add(np.arange(5000), data)
    assert half._vectors.nbytes * 2 == full._vectors.nbytes
    rows, scores = half.search(queries, 10)
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", data[rows], queries), atol=2e-3)
    assert _recall(rows, full.search(queries, 10)[0]) >= 0.98


def test_an_edit_puts_its_new_vector_where_the_old_one_was_and_leaves_no_old_bytes(
    data: np.ndarray, tmp_path: Path
) -> None:
    """``replace`` (an edited text) writes the new vector into the freed slot: no placeholder node."""
    index = HnswIndex(DIM, graph_dtype="f32")
    index.add(np.arange(200), data[:200])
    nodes = index._graph.size
    needles = [index._graph.get(r, dtype=np.float32).tobytes() for r in (7, 8, 9)]
    needles += [index._vectors[r].tobytes() for r in (7, 8, 9)]
    index.replace(np.array([200]), data[200:201], gone=np.array([7]))
    assert index._graph.size == nodes and index._next_placeholder == _PLACEHOLDER_KEYS  # one in, one out
    assert 7 not in index.search(data[7:8], 5)[0][0].tolist()
    assert index.search(data[200:201], 1)[0][0][0] == 200
    index.replace(np.array([201]), data[201:202], gone=np.array([8, 9]))  # two out, one in: one placeholder
    assert index._graph.size == nodes and index._next_placeholder == _PLACEHOLDER_KEYS + 1
    index.save(tmp_path)
    blob = b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()))
    assert index._vectors[10].tobytes() in blob  # the search is not blind
    assert not [n for n in needles if n in blob]


def test_a_failed_or_refused_write_still_overwrites_what_it_freed(
    data: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = HnswIndex(DIM, graph_dtype="f32")
    index.add(np.arange(100), data[:100])
    bad = data[100:101].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):  # refused before anything is removed
        index.replace(np.array([100]), bad, gone=np.array([5]))
    assert index.search(data[5:6], 1)[0][0][0] == 5 and index._freed == 0
    needle = index._graph.get(6, dtype=np.float32).tobytes()
    real_add, calls = index._graph.add, []

    def add_once_failing(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the graph refused the add")
        return real_add(*args, **kwargs)

    monkeypatch.setattr(index._graph, "add", add_once_failing)
    with pytest.raises(RuntimeError, match="refused"):
        index.replace(np.array([100]), data[100:101], gone=np.array([6]))
    assert index._freed == 0 and len(calls) == 2  # the freed slot got its placeholder anyway
    index.save(tmp_path)
    assert needle not in b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()))


def test_a_loaded_graph_fills_the_slots_its_save_left_free(data: np.ndarray, tmp_path: Path) -> None:
    index = HnswIndex(DIM, graph_dtype="f32")
    index.add(np.arange(50), data[:50])
    index._remove_extra(np.array([3, 4]))  # as a write that died before it settled
    index.save(tmp_path)
    loaded = DenseIndex.load(tmp_path)
    assert isinstance(loaded, HnswIndex) and loaded._freed == 0
    assert loaded._graph.stats.nodes == len(loaded._graph) == 50  # two placeholders took the free slots
    viewed = DenseIndex.load(tmp_path, mmap=True)  # read-only: left as it is, and never written
    assert isinstance(viewed, HnswIndex) and viewed._graph.stats.nodes == 50
