"""Dense nearest-neighbour search behind one interface: exact (numpy) or approximate (HNSW, usearch).

Every backend stores the unit vectors of its rows beside whatever structure it searches, and the
final ranking is always an exact cosine over those stored vectors: an approximate backend only
proposes candidates. A row is a non-negative int64 (the collection's row number); a removed row is
never returned and its stored vector is overwritten before the write that removed it returns
(failed or not), in the graph too (see :meth:`HnswIndex._forget`), so an erased idea leaves no
vector in memory or in a saved index.

Why usearch for the graph (checked against the installed version, 2.26.6), not faiss or hnswlib:

* maintained; a wheel per platform with its SIMD kernels (usearch plus numkong, ~55 MB installed)
  linking neither BLAS nor OpenMP, so no third thread pool to fight torch's and numpy's on 2 cores;
* graph vectors stored as i8 or f16: at 1M an i8 graph is a third smaller than an f16 one (and was
  the faster walk in a 20k trial); every candidate is re-scored exactly, so recall is the same;
* ``save`` to one file, and ``restore(view=True)`` memory-maps it (``load(..., mmap=True)``);
* ``remove`` of single keys, and a removed slot is reused by the next ``add``, which is what lets
  us overwrite an erased vector (faiss' HNSW has no removal; hnswlib marks a node deleted).

What 2.26.6 does *not* offer, so this module works around it:

* No filtered search from Python: the predicate search of the C++ core is not bound
  (``Index.search`` takes no filter). An ``allowed`` mask is applied to over-fetched candidates
  instead, the over-fetch growing with how selective the mask is; a mask that allows few rows is
  answered by an exact scan over just those rows (``exact_rows`` / ``scan_cost_ratio``, measured,
  see below), and a query whose candidates hold fewer than k allowed rows falls back to that scan too.
* A viewed (memory-mapped) index segfaults on ``add`` or ``remove``: a view is read-only here, and
  both raise before reaching usearch.
* ``search`` releases the GIL, and the binding hands every single-threaded call the same thread
  slot (0); whether two calls may share a slot is not documented, so calls on one graph are
  serialised by a lock. It is insurance: 6,000 concurrent searches without it gave the same answers,
  and a search costs well under a millisecond.

Measured with ``python -m evaluation.bench_scale`` on this project's shared 2-core host (synthetic
clustered unit vectors, dim 384, 200 held-out queries; the figures move by some per cent per run):

* defaults M=32, efConstruction=128, ef=96, graph i8, over-fetch ``max(2k, k + 64)``: recall@10
  vs exact 0.999 / 1.000 / 1.000 at 10k / 100k / 1M, worst query 0.9. M=16 with ef=64 was 10-20%
  faster at 1M, but in 2 of 3 builds 1 to 3 of 200 queries got recall 0 (the walk stayed in a wrong
  cluster); M=32 with ef=96 left no query below 0.9 in 4 builds. 1M rows build in 2 to 5 minutes
  on 2 cores;
* single-query p95: 0.09 ms at 10k, 0.28 ms at 100k, 0.37 ms at 1M (exact: 0.24, 5.7, 54 ms).
  The 1M graph and matrix (2.6 GB) live in DRAM where the 10k ones fit the 32 MB L3, so most
  visited nodes cost a cache miss; the parameters only trade that against recall;
* the re-scoring matrix is 1,536 MB per 1M x 384 as float32, 768 MB as float16; an exact top 10
  over float16 vectors keeps 0.999 of the float32 one (near-ties swap), scores move by < 1e-4:
  the class's default stays float32, and the service builds its index with ``rescore_dtype="float16"``
  (``idesluss/index.py``: SweFAQ dev MRR -0.0018, p = 0.50, ``evaluation.precision``);
* filters: a fetched candidate costs the walk 3 to 6 times what one row costs the exact scan
  (3.3x at 10k, 3.5x at 100k, 5 to 6x at 1M), hence ``scan_cost_ratio=4``: with m of the rows allowed,
  the scan is taken when m < 4 x the candidates the walk would need. At 1M: 5,000 allowed rows
  scan in 0.9 ms (the walk: 30 ms), 100,000 walk in 0.8 ms (the scan: 23 ms); at 20,000 both take
  about 6 ms.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from matcher.mapped import MappedArray
from store.locks import ReadWriteLock

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_CONFIG, _VECTORS, _PRESENT, _GRAPH = "config.json", "vectors.npy", "present.npy", "graph.usearch"
_PLACEHOLDER_KEYS = 1 << 62  # graph keys from here on hold the zeroed slots of removed rows, never a row
_RESCORE_DTYPES: dict[str, type[np.floating[Any]]] = {"float32": np.float32, "float16": np.float16}
_GRAPH_DTYPES = ("i8", "f16", "f32")
_BLOCK_ROWS = 16384  # rows scored at a time by the exact scan (bounds the float32 copy of a float16 block)


def _unit_rows(x: np.ndarray, dim: int, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} must be finite")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)


def _as_rows(rows: np.ndarray) -> np.ndarray:
    arr = np.asarray(rows)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError("rows must be a 1-d array of integers")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= _PLACEHOLDER_KEYS):
        raise ValueError(f"rows must lie in [0, {_PLACEHOLDER_KEYS})")
    return arr


def _empty(n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n_queries, 0), np.int64), np.zeros((n_queries, 0), np.float32)


def _best(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (rows, scores) along the last axis, by score descending, ties by row ascending."""
    if scores.shape[-1] > k:
        part = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
        rows, scores = np.take_along_axis(rows, part, -1), np.take_along_axis(scores, part, -1)
    order = np.lexsort((rows, -scores), axis=-1)
    return np.take_along_axis(rows, order, -1), np.take_along_axis(scores, order, -1)


class DenseIndex(ABC):
    """Cosine top-k over rows of unit vectors; the final scores are exact.

    Vectors are normalised on ``add`` and queries on ``search``, so scores are cosines. A row added
    again replaces its vector. Safe for one writer beside many searches: the
    index's own read-write lock keeps them apart (concurrent searches are fine; a write waits for
    running searches, and searches wait for one write, which callers keep short by adding in pieces).

    Args:
        dim: vector dimension.
    """

    kind: ClassVar[str]

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self._vectors = np.zeros((0, dim), dtype=self._vector_dtype())
        self._present = np.zeros(0, dtype=bool)
        self._span = 0  # rows below this have a slot in _vectors
        self._count = 0
        self._read_only = False
        self._mapped: MappedArray | None = None  # the vectors' file mapping, once map_into moved them
        self._rw = ReadWriteLock()

    def params(self) -> dict[str, Any]:
        """Keyword arguments of the constructor, as set (saved with the index; scikit-learn's get_params)."""
        signature = inspect.signature(type(self).__init__)
        return {n: getattr(self, n) for n, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}

    def _vector_dtype(self) -> type[np.floating[Any]]:
        return np.float32

    @abstractmethod
    def _search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, n_allowed: int
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's own structures (vectors, row mask, graph)."""
        return int(self._vectors.nbytes + self._present.nbytes)

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Add (or replace) rows with their vectors.

        Args:
            rows: int64 row numbers, unique, >= 0.
            vectors: float32 (len(rows), dim).
        """
        with self._rw.writing():
            try:
                self._add(rows, vectors)
            finally:  # a write that fails midway still overwrites what it freed
                self._settle()

    def replace(self, rows: np.ndarray, vectors: np.ndarray, gone: np.ndarray) -> None:
        """Remove the rows ``gone`` and add ``rows`` with their vectors, in one step (an edited
        text: its old row out, its new row in). A graph may then put the new vectors where the old
        ones were instead of overwriting those separately (see :meth:`HnswIndex._forget`).
        Bad input is refused before anything is removed."""
        self._check_writable()
        _as_rows(gone)
        if len(_as_rows(rows)) != len(_unit_rows(vectors, self.dim, "vectors")):
            raise ValueError(f"{len(rows)} rows but {len(vectors)} vectors")
        with self._rw.writing():
            try:
                self._remove(gone)
                self._add(rows, vectors)
            finally:
                self._settle()

    def _add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        self._check_writable()
        rows = _as_rows(rows)
        vecs = _unit_rows(vectors, self.dim, "vectors")
        if len(rows) != len(vecs):
            raise ValueError(f"{len(rows)} rows but {len(vecs)} vectors")
        if not len(rows):
            return
        if len(np.unique(rows)) != len(rows):
            raise ValueError("rows must be unique within one add")
        self._remove(rows)
        self._grow(int(rows.max()) + 1)
        self._add_extra(rows, vecs)
        self._vectors[rows] = vecs
        self._present[rows] = True
        self._count += len(rows)

    def remove(self, rows: np.ndarray) -> int:
        """Hide rows from every answer and overwrite their vectors; unknown rows are ignored.

        Returns:
            How many rows were removed.
        """
        with self._rw.writing():
            try:
                return self._remove(rows)
            finally:
                self._settle()

    def _remove(self, rows: np.ndarray) -> int:
        self._check_writable()
        rows = _as_rows(rows)
        rows = np.unique(rows[rows < self._span])
        rows = rows[self._present[rows]]
        if not len(rows):
            return 0
        self._present[rows] = False
        self._vectors[rows] = 0.0  # an erased vector is kept nowhere, memory included
        self._count -= len(rows)
        self._remove_extra(rows)
        return len(rows)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k best rows for each query by exact cosine, best first.

        Args:
            queries: float32 (q, dim).
            k: rows per query.
            allowed: optional bool mask over rows; only rows marked True are returned (rows past
                its end are not allowed: a reader's view may be older than the index).

        Returns:
            (rows int64 (q, k'), scores float32 (q, k')), k' = min(k, rows present and allowed).
        """
        q = _unit_rows(queries, self.dim, "queries")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        with self._rw.reading():
            mask = self._check_mask(allowed)
            # an upper bound when the mask marks removed rows; counting exactly would cost a pass over all rows
            n_allowed = self._count if mask is None else min(self._count, int(np.count_nonzero(mask)))
            if k == 0 or self._count == 0 or n_allowed == 0:
                return _empty(len(q))
            return self._search(q, k, mask, n_allowed)

    def map_into(self, directory: str | Path) -> None:
        """Keep the stored vectors in a file mapping from now on (:mod:`matcher.mapped`).

        Only the rows that searches read are then resident, and the kernel may drop them under
        memory pressure. Growing no longer copies the vectors (the file grows); removing a row
        still overwrites it, in the file. Calling it again does nothing.
        """
        with self._rw.writing():
            self._check_writable()
            if self._mapped is None:
                self._mapped = MappedArray(directory, self._vectors[: self._span], capacity=len(self._vectors))
                self._vectors = self._mapped.array

    @property
    def mapped(self) -> bool:
        """Whether the vectors live in a file mapping (:meth:`map_into`)."""
        return self._mapped is not None

    def reserve(self, size: int) -> None:
        """Make rows ``0 .. size`` addressable (rows not added read as zeros and are not present)."""
        with self._rw.writing():
            self._check_writable()
            self._grow(size)

    def matrix(self, size: int) -> np.ndarray:
        """The stored vectors of rows ``0 .. size`` (zeros where a row is not present), read-only.

        A view of the index's own buffer, in its stored dtype, so a caller that needs the vectors
        (the collection's snapshots) keeps no second copy. Writes past ``size`` never change the
        view; a removal zeroes its row in the view too (an erased vector is kept nowhere). Rows
        past the index's span (never added) read as zeros: a copy is made then.
        """
        with self._rw.reading():
            vectors = self._vectors
            span = self._span
        if size <= span:
            view = vectors[:size]
        else:
            view = np.zeros((size, self.dim), dtype=vectors.dtype)
            view[:span] = vectors[:span]
        view = view.view()
        view.flags.writeable = False
        return view

    def score_rows(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact cosines (q, len(rows)) of given rows; -inf for a row that is not present."""
        q = _unit_rows(queries, self.dim, "queries")
        rows = _as_rows(rows)
        with self._rw.reading():
            known = rows < self._span
            known[known] = self._present[rows[known]]
            out = np.full((len(q), len(rows)), -np.inf, dtype=np.float32)
            out[:, known] = (self._vectors[rows[known]].astype(np.float32, copy=False) @ q.T).T
        return out

    def save(self, directory: str | Path) -> None:
        """Write the index as .npy arrays, the backend's own file and a JSON config (no pickles)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        with self._rw.reading():
            np.save(path / _VECTORS, self._vectors[: self._span], allow_pickle=False)
            np.save(path / _PRESENT, self._present[: self._span], allow_pickle=False)
            state = self._save_extra(path)
        config = {"kind": self.kind, "format": FORMAT_VERSION, "dim": self.dim, "params": self.params(), **state}
        (path / _CONFIG).write_text(json.dumps(config, indent=2) + "\n")  # written last: marks a complete save

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = False, map_into: str | Path | None = None) -> DenseIndex:
        """Read an index written by :meth:`save`; the backend is the one named in its config.

        Args:
            directory: where it was saved.
            mmap: memory-map the vectors (and the graph) instead of reading them; the index is then
                read-only: ``add`` and ``remove`` raise.
            map_into: copy the vectors straight from the saved file into a file mapping in this
                directory (:meth:`map_into`), never whole in memory; the index stays writable.
        """
        path = Path(directory)
        config = json.loads((path / _CONFIG).read_text())
        if config.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: index format {config.get('format')!r}, this code reads {FORMAT_VERSION}")
        target = _kind(config["kind"])
        if cls is not DenseIndex and target is not cls:
            raise ValueError(f"{path} holds a {config['kind']!r} index, not {cls.kind!r}")
        index = target(int(config["dim"]), **config["params"])
        vectors = np.load(path / _VECTORS, mmap_mode="r" if mmap or map_into else None, allow_pickle=False)
        present = np.load(path / _PRESENT, allow_pickle=False)
        if vectors.shape != (len(present), index.dim) or vectors.dtype != index._vectors.dtype:
            raise ValueError(f"{path}: vectors {vectors.shape} {vectors.dtype} do not match the config")
        index._vectors, index._present = vectors, present.astype(bool)
        index._span, index._count = len(present), int(np.count_nonzero(present))
        index._read_only = mmap
        index._load_extra(path, config, mmap)
        if map_into is not None and not mmap:
            index.map_into(map_into)  # from the saved file's pages to the mapping; no longer reads the saved file
        return index

    # Hooks for a backend's own structure.
    def _add_extra(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        return None

    def _remove_extra(self, rows: np.ndarray) -> None:
        return None

    def _settle(self) -> None:
        """At the end of every write: overwrite whatever a removal left of a vector."""
        return None

    def _save_extra(self, path: Path) -> dict[str, Any]:
        return {}

    def _load_extra(self, path: Path, config: dict[str, Any], mmap: bool) -> None:
        return None

    def _check_writable(self) -> None:
        if self._read_only:
            raise RuntimeError("this index is memory-mapped (read-only): load it with mmap=False to add or remove rows")

    def _check_mask(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return None
        mask = np.asarray(allowed)
        if mask.dtype != bool or mask.ndim != 1:
            raise ValueError("allowed must be a 1-d bool array")
        if len(mask) < self._span:
            mask = np.concatenate([mask, np.zeros(self._span - len(mask), dtype=bool)])
        return mask[: self._span]  # may still mark removed rows: each path checks presence itself

    def _grow(self, need: int) -> None:
        if need > len(self._vectors):
            # 1.25x, not 2x: at a million rows a doubling would reserve another 1.5 GB
            cap = max(need, len(self._vectors) + len(self._vectors) // 4, 64)
            grown = None
            if self._mapped is not None:
                try:
                    grown = self._mapped.grow(cap)  # the file grows; readers keep their older mapping of it
                except OSError as exc:  # a full disk: the vectors move to memory, the index stays whole
                    log.warning("dense vectors moved to memory: the mapped file cannot grow (%s)", exc)
                    self._mapped = None
            if grown is None:
                grown = np.zeros((cap, self.dim), dtype=self._vectors.dtype)
                grown[: self._span] = self._vectors[: self._span]
            present = np.zeros(cap, dtype=bool)
            present[: self._span] = self._present[: self._span]
            self._vectors, self._present = grown, present
        self._span = max(self._span, need)

    def _exact(self, queries: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the present (and allowed) rows, in blocks of rows."""
        eligible = self._present[: self._span] if mask is None else mask & self._present[: self._span]
        candidates = np.flatnonzero(eligible)
        k = min(k, len(candidates))
        if k == 0:
            return _empty(len(queries))
        best_rows = np.full((len(queries), 0), -1, dtype=np.int64)
        best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        sparse = 4 * len(candidates) < self._span  # few rows: gather them; many: scan and mask
        stop = len(candidates) if sparse else self._span
        for start in range(0, stop, _BLOCK_ROWS):
            end = min(start + _BLOCK_ROWS, stop)
            rows = candidates[start:end] if sparse else np.arange(start, end)
            block = self._vectors[rows] if sparse else self._vectors[start:end]
            scores = queries @ block.astype(np.float32, copy=False).T  # (q, rows)
            if not sparse:
                scores[:, ~eligible[start:end]] = -np.inf
            rows2d = np.broadcast_to(rows, scores.shape)
            best_rows, best_scores = _best(
                np.concatenate([best_rows, rows2d], axis=1), np.concatenate([best_scores, scores], axis=1), k
            )
        return best_rows, best_scores


class ExactIndex(DenseIndex):
    """Brute force over a float32 matrix: the reference every other backend is measured against."""

    kind = "exact"

    def _search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, n_allowed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._exact(queries, k, allowed)


def _usearch_index() -> Any:
    try:
        from usearch.index import Index
    except ImportError as exc:  # pragma: no cover - the dependency is declared
        raise ImportError("HnswIndex needs usearch: pip install 'usearch==2.26.6'") from exc
    return Index


class HnswIndex(DenseIndex):
    """HNSW candidates (usearch) re-scored exactly against the stored vectors.

    Args:
        dim: vector dimension.
        connectivity: graph links per node ("M").
        expansion_add: beam width while building ("efConstruction").
        expansion_search: beam width while searching ("ef"); a larger fetch widens it.
        graph_dtype: how the graph stores vectors for its walk: "i8", "f16" or "f32".
        rescore_dtype: the exact re-scoring matrix: "float32" or "float16" (half the memory).
        fetch_factor: candidates fetched per query are ``max(fetch_factor * k, k + fetch_extra)``...
        fetch_extra: ...times rows / allowed rows when a mask is given.
        scan_cost_ratio: what a fetched candidate costs the graph walk, in rows of the exact scan; the
            scan over the allowed rows is used when it is the cheaper (0: never, unless too few rows).
        exact_rows: at or below this many allowed rows, an exact scan over them is used.
        add_threads: threads for building (0: every core).
        search_threads: threads for one batch of queries (1: the caller runs queries in parallel).
    """

    kind = "hnsw"

    def __init__(
        self,
        dim: int,
        *,
        connectivity: int = 32,
        expansion_add: int = 128,
        expansion_search: int = 96,
        graph_dtype: str = "i8",
        rescore_dtype: str = "float32",
        fetch_factor: int = 2,
        fetch_extra: int = 64,
        scan_cost_ratio: float = 4.0,
        exact_rows: int = 2000,
        add_threads: int = 0,
        search_threads: int = 1,
    ) -> None:
        if rescore_dtype not in _RESCORE_DTYPES:
            raise ValueError(f"unknown rescore_dtype {rescore_dtype!r}; choose one of: {', '.join(_RESCORE_DTYPES)}")
        if graph_dtype not in _GRAPH_DTYPES:
            raise ValueError(f"unknown graph_dtype {graph_dtype!r}; choose one of: {', '.join(_GRAPH_DTYPES)}")
        if min(connectivity, expansion_add, expansion_search, fetch_factor) < 1 or scan_cost_ratio < 0:
            raise ValueError("connectivity, expansions and fetch_factor must be >= 1, scan_cost_ratio >= 0")
        self.connectivity = connectivity
        self.expansion_add = expansion_add
        self.expansion_search = expansion_search
        self.graph_dtype = graph_dtype
        self.rescore_dtype = rescore_dtype
        self.fetch_factor = fetch_factor
        self.fetch_extra = fetch_extra
        self.scan_cost_ratio = scan_cost_ratio
        self.exact_rows = exact_rows
        self.add_threads = add_threads
        self.search_threads = search_threads
        super().__init__(dim)
        self._lock = threading.Lock()
        self._next_placeholder = _PLACEHOLDER_KEYS
        self._freed = 0  # graph slots removed from and not yet written again (see _forget)
        self._graph = _usearch_index()(
            ndim=dim,
            metric="ip",  # rows and queries are unit vectors
            dtype=graph_dtype,
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )

    def _vector_dtype(self) -> type[np.floating[Any]]:
        return _RESCORE_DTYPES[self.rescore_dtype]

    @property
    def nbytes(self) -> int:
        """Bytes of the re-scoring matrix, the row mask and the graph (as usearch counts it)."""
        return super().nbytes + int(self._graph.memory_usage)

    def fetch_for(self, k: int, n_allowed: int) -> int:
        """Candidates to fetch for k results when ``n_allowed`` of the rows may be returned."""
        fetch = max(self.fetch_factor * k, k + self.fetch_extra)
        return math.ceil(fetch * self._count / max(n_allowed, 1)) if n_allowed < self._count else fetch

    def route(self, k: int, n_allowed: int) -> str:
        """ "scan" (exact over the allowed rows) or "graph" (HNSW candidates, re-scored) for this search."""
        if n_allowed <= self.exact_rows or n_allowed < self.scan_cost_ratio * self.fetch_for(k, n_allowed):
            return "scan"
        return "graph"

    def _search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, n_allowed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.route(k, n_allowed) == "scan":
            return self._exact(queries, k, allowed)
        fetch = self.fetch_for(k, n_allowed)
        with self._lock:
            found = self._graph.search(queries, min(fetch, len(self._graph)), threads=self.search_threads)
        per_query = [found.keys] if len(queries) == 1 else [found[i].keys for i in range(len(queries))]
        rows_out, scores_out = [], []
        for i, keys in enumerate(per_query):
            cand = keys.astype(np.int64)
            cand = cand[cand < self._span]  # drops the placeholders of removed rows
            cand = cand[self._present[cand] if allowed is None else self._present[cand] & allowed[cand]]
            if len(cand) < k:  # the graph's neighbourhood holds too few allowed rows
                rows, scores = self._exact(queries[i : i + 1], k, allowed)
                rows_out.append(rows[0])
                scores_out.append(scores[0])
                continue
            scores = self._vectors[cand].astype(np.float32, copy=False) @ queries[i]
            rows, scores = _best(cand, scores, k)
            rows_out.append(rows)
            scores_out.append(scores)
        return np.stack(rows_out), np.stack(scores_out)

    def _add_extra(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            self._graph.add(rows.astype(np.uint64), vectors, threads=self.add_threads)
            self._freed = max(0, self._freed - len(rows))  # these took the freed slots first

    def _remove_extra(self, rows: np.ndarray) -> None:
        with self._lock:
            self._freed += int(np.sum(self._graph.remove(rows.astype(np.uint64))))

    def _settle(self) -> None:
        self._forget()

    def _forget(self) -> None:
        """Overwrite the vectors of removed rows that the write did not replace.

        usearch only marks a removed node and keeps its vector bytes, but the next ``add`` reuses
        a freed slot first. So the vectors a write adds take the slots its removals freed (an
        edited text's new vector goes where its old one was), and every slot still free when the
        write ends, or fails, gets a zero vector under a placeholder key at once: no other slot is
        free between writes (a loaded graph's free slots are filled on loading), so no removed
        vector survives in memory or in a saved graph. Placeholders
        are never returned (their keys are not rows) and cost one node each until the index is
        rebuilt; an edit adds none, so the graph does not grow with edits. Writing into a freed
        slot is usearch's slow kind of insertion (at a million rows about 29 ms against 1 ms for a
        new slot, measured ad hoc), which an erasure and an edit each pay once.
        """
        with self._lock:
            if self._freed:
                keys = np.arange(self._next_placeholder, self._next_placeholder + self._freed, dtype=np.uint64)
                self._next_placeholder += self._freed
                self._graph.add(keys, np.zeros((self._freed, self.dim), np.float32), threads=self.add_threads)
                self._freed = 0

    def _save_extra(self, path: Path) -> dict[str, Any]:
        with self._lock:
            self._graph.save(str(path / _GRAPH))
        return {"next_placeholder": self._next_placeholder}

    def _load_extra(self, path: Path, config: dict[str, Any], mmap: bool) -> None:
        graph = _usearch_index().restore(str(path / _GRAPH), view=mmap)
        if graph is None or graph.ndim != self.dim:
            raise ValueError(f"{path / _GRAPH} is missing or does not match the config")
        graph.expansion_search = self.expansion_search
        self._graph = graph
        self._next_placeholder = int(config.get("next_placeholder", _PLACEHOLDER_KEYS))
        self._freed = int(graph.stats.nodes) - len(graph)  # slots left free by a save from a failed write
        if self._freed and not mmap:
            self._forget()


_REGISTRY: dict[str, type[DenseIndex]] = {"exact": ExactIndex, "hnsw": HnswIndex}


def _kind(kind: str) -> type[DenseIndex]:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown dense index {kind!r}; choose one of: {', '.join(sorted(_REGISTRY))}") from None


def make_index(kind: str, dim: int, **params: Any) -> DenseIndex:
    """A new, empty dense index of the named kind ("exact" or "hnsw") with its parameters."""
    return _kind(kind)(dim, **params)
