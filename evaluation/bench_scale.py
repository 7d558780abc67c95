"""`python -m evaluation.bench_scale`: dense search at 10k to 1M rows, exact numpy against HNSW (usearch).

The vectors are SYNTHETIC: clustered unit vectors (see :func:`clustered_unit_vectors`), dim 384 like
the default encoder's, not real idea embeddings. The queries come from the same distribution and are
not in the index. For each size it measures, in one process:

* build time and memory: bytes of the index's own structures and the process RSS (VmRSS) after the build;
* recall@10 (and @200, the hybrid's pool) of HNSW against the exact top-k;
* single-query latency p50/p95 (one query per call, one search thread, one BLAS thread as in the
  service) of the exact scan and of HNSW, and HNSW's p95 over its p95 at the smallest size;
* precision variants: graph i8 or f16, re-scoring matrix float32 or float16 (memory, recall, score error);
* filtered search: for masks allowing a share of the rows, the exact scan over the allowed rows
  against the over-fetching graph walk, and which one ``HnswIndex`` picks.

Figures are as measured on the machine that runs it; on a small shared machine they move by several
per cent from run to run.
"""

from __future__ import annotations

import os

# As the service and the tests: one BLAS thread. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

from matcher.ann import DenseIndex, ExactIndex, HnswIndex  # noqa: E402

DIM = 384
SHARES = (0.5, 0.1, 0.02, 0.005, 0.001)
REPEATS = 3


def clustered_unit_vectors(
    n: int, dim: int = DIM, *, latent: int = 64, noise: float = 0.5, seed: int = 0, block: int = 100_000
) -> np.ndarray:
    """``n`` synthetic float32 unit vectors in clusters.

    sklearn's ``make_blobs`` in a ``latent``-d space (one centre per 1,000 rows, at least 20), a fixed
    random projection to ``dim`` and isotropic noise, then normalised: clusters with a lower
    intrinsic dimension than ``dim``, as text embeddings have. Draw queries in the same call as the
    rows (and split them off), or they come from other clusters.
    """
    from sklearn.datasets import make_blobs

    x, _ = make_blobs(
        n_samples=n, n_features=latent, centers=max(20, n // 1000), center_box=(-4.0, 4.0), random_state=seed
    )
    rng = np.random.default_rng(seed + 1)
    projection = rng.standard_normal((latent, dim), dtype=np.float32) / np.float32(np.sqrt(latent))
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, block):
        v = x[start : start + block].astype(np.float32) @ projection
        v += noise * rng.standard_normal(v.shape, dtype=np.float32)
        out[start : start + block] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def rss_bytes() -> int:
    """The process's resident set (VmRSS of /proc/self/status), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top-k found in its returned top-k."""
    return float(np.mean(per_query_recall(found, truth)))


def per_query_recall(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Each query's share of its true top-k found in its returned top-k."""
    return np.array([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


def latency_ms(
    index: DenseIndex, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, repeats: int = REPEATS
) -> tuple[float, ...]:
    """p50 and p95 milliseconds of one-query searches.

    Each query is timed ``repeats`` times in separate rounds and its fastest time kept: other
    processes on a small shared machine preempt a single run at random, which would otherwise
    decide the p95. The spread across queries, which the p95 is about, stays.
    """
    for q in queries[:5]:  # warm-up
        index.search(q[None], k, allowed)
    times = np.full(len(queries), np.inf)
    for _ in range(repeats):
        for i, q in enumerate(queries):
            start = time.perf_counter()
            index.search(q[None], k, allowed)
            times[i] = min(times[i], time.perf_counter() - start)
    return tuple(float(np.percentile(times, p) * 1e3) for p in (50, 95))


@dataclass
class SizeRow:
    n: int
    build_s: float
    index_bytes: int
    rss_bytes: int
    recall10: float
    worst10: float
    recall200: float
    exact_ms: tuple[float, ...]
    hnsw_ms: tuple[float, ...]


@dataclass
class PrecisionRow:
    n: int
    graph: str
    rescore: str
    build_s: float
    index_bytes: int
    matrix_bytes: int
    recall10: float
    max_score_error: float


@dataclass
class FilterRow:
    n: int
    share: float
    allowed: int
    picked: str
    ms: dict[str, tuple[float, ...]] = field(default_factory=dict)
    recall10: dict[str, float] = field(default_factory=dict)


def float16_scan(data: np.ndarray, queries: np.ndarray, k: int = 10, block: int = 65_536) -> np.ndarray:
    """Exact top-k over the vectors rounded to float16: what a float16 matrix alone costs in ranking."""
    best_rows = np.zeros((len(queries), 0), np.int64)
    best = np.zeros((len(queries), 0), np.float32)
    for start in range(0, len(data), block):
        scores = queries @ data[start : start + block].astype(np.float16).astype(np.float32).T
        rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        rows, scores = np.concatenate([best_rows, rows], 1), np.concatenate([best, scores], 1)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_rows, best = np.take_along_axis(rows, top, 1), np.take_along_axis(scores, top, 1)
    return best_rows


def build(n: int, data: np.ndarray, graph: str, rescore: str) -> tuple[HnswIndex, float]:
    index = HnswIndex(data.shape[1], graph_dtype=graph, rescore_dtype=rescore)
    start = time.perf_counter()
    index.add(np.arange(n), data)
    return index, time.perf_counter() - start


def filtered(
    n: int, hnsw: HnswIndex, exact: ExactIndex, queries: np.ndarray, rng: np.random.Generator
) -> list[FilterRow]:
    """Each route forced in turn (by its parameters) and the default choice, per allowed share."""
    rows = []
    defaults = (hnsw.exact_rows, hnsw.scan_cost_ratio)
    forced = {"scan": (n, defaults[1]), "graph": (0, 0.0), "auto": defaults}
    for share in SHARES:
        allowed = rng.random(n) < share
        m = int(allowed.sum())
        if m < 10:
            continue
        truth = exact.search(queries, 10, allowed)[0]
        row = FilterRow(n, share, m, hnsw.route(10, m))
        for name, (exact_rows, ratio) in forced.items():
            hnsw.exact_rows, hnsw.scan_cost_ratio = exact_rows, ratio
            row.ms[name] = latency_ms(hnsw, queries, 10, allowed)
            row.recall10[name] = recall(hnsw.search(queries, 10, allowed)[0], truth)
        hnsw.exact_rows, hnsw.scan_cost_ratio = defaults
        rows.append(row)
        print(f"  filter {share:g}: {row}", flush=True)
    return rows


def run_size(
    n: int, n_queries: int, variants: list[tuple[str, str]], filter_queries: int, seed: int
) -> tuple[SizeRow, list[PrecisionRow], list[FilterRow]]:
    """All measurements at one size."""
    vectors = clustered_unit_vectors(n + n_queries, seed=seed)
    data, queries = vectors[:n], vectors[n:]
    del vectors
    exact = ExactIndex(DIM)
    exact.add(np.arange(n), data)
    truth10 = exact.search(queries, 10)[0]
    truth200 = exact.search(queries, min(200, n))[0]
    exact_ms = latency_ms(exact, queries, 10)
    print(f"{n}: exact p50/p95 {exact_ms}", flush=True)
    size_row: SizeRow | None = None
    precision, filters = [], []
    half = float16_scan(data, queries)
    precision.append(PrecisionRow(n, "none (exact scan)", "float16", 0.0, 0, n * DIM * 2, recall(half, truth10), 0.0))
    for graph, rescore in variants:
        hnsw, build_s = build(n, data, graph, rescore)
        found, scores = hnsw.search(queries, 10)
        matrix = n * DIM * np.dtype(rescore).itemsize
        error = float(np.max(np.abs(scores - np.einsum("qkd,qd->qk", data[found], queries))))
        precision.append(PrecisionRow(n, graph, rescore, build_s, hnsw.nbytes, matrix, recall(found, truth10), error))
        print(f"  {precision[-1]}", flush=True)
        if size_row is None:  # the first variant is the default one
            size_row = SizeRow(
                n,
                build_s,
                hnsw.nbytes,
                rss_bytes(),
                recall(found, truth10),
                float(per_query_recall(found, truth10).min()),
                recall(hnsw.search(queries, min(200, n))[0], truth200),
                exact_ms,
                latency_ms(hnsw, queries, 10),
            )
            print(f"  {size_row}", flush=True)
            rng = np.random.default_rng(seed + 2)
            filters = filtered(n, hnsw, exact, queries[:filter_queries], rng)
        del hnsw
        gc.collect()
    assert size_row is not None
    return size_row, precision, filters


def _mb(b: float) -> str:
    return f"{b / 1e6:,.0f}"


def tables(
    sizes: list[SizeRow],
    precision: list[PrecisionRow],
    filters: list[FilterRow],
    n_queries: int,
    main: tuple[str, str] = ("i8", "float16"),
) -> str:
    """The Markdown report; ``main``: the (graph, re-scoring) dtypes of the main table's index."""
    base = sizes[0]
    p = HnswIndex(DIM, graph_dtype=main[0], rescore_dtype=main[1]).params()
    out = [
        f"SYNTHETIC clustered unit vectors, dim {DIM} (make_blobs in 64-d, projected, noise 0.5), not embeddings; "
        f"{n_queries} held-out queries; k=10; HNSW M={p['connectivity']}, efConstruction={p['expansion_add']}, "
        f"ef={p['expansion_search']}, over-fetch max({p['fetch_factor']}k, k+{p['fetch_extra']}), "
        f"graph {p['graph_dtype']}, exact re-scoring {p['rescore_dtype']}; {os.cpu_count()} CPUs, one search thread, "
        f"one BLAS thread; latency: one query per call, each timed {REPEATS} times, fastest kept.",
        "",
        "| rows | HNSW build s | index MB | RSS MB | recall@10 | worst query | recall@200 | exact p50 ms | exact p95 ms "
        f"| HNSW p50 ms | HNSW p95 ms | HNSW p95 / p95 at {base.n:,} | HNSW p95 / exact p95 at {base.n:,} |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sizes:
        out.append(
            f"| {r.n:,} | {r.build_s:.1f} | {_mb(r.index_bytes)} | {_mb(r.rss_bytes)} | {r.recall10:.4f} | {r.worst10:.1f} "
            f"| {r.recall200:.4f} | {r.exact_ms[0]:.2f} | {r.exact_ms[1]:.2f} | {r.hnsw_ms[0]:.3f} | {r.hnsw_ms[1]:.3f} "
            f"| {r.hnsw_ms[1] / base.hnsw_ms[1]:.2f} | {r.hnsw_ms[1] / base.exact_ms[1]:.2f} |"
        )
    out += [
        "",
        "Precision (graph storage for the walk, matrix for the exact re-scoring; matrix MB per 1M x 384 = "
        f"{1e6 * DIM * 4 / 1e6:,.0f} float32, {1e6 * DIM * 2 / 1e6:,.0f} float16). Each HNSW row is its own build "
        "(multi-threaded builds differ), so the exact-scan row isolates float16's own effect on the top 10:",
        "",
        "| rows | graph | re-scoring | build s | index MB | matrix MB | recall@10 | max abs score error |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for v in precision:
        out.append(
            f"| {v.n:,} | {v.graph} | {v.rescore} | {v.build_s:.1f} | {_mb(v.index_bytes)} | {_mb(v.matrix_bytes)} "
            f"| {v.recall10:.4f} | {v.max_score_error:.1e} |"
            if v.build_s
            else f"| {v.n:,} | {v.graph} | {v.rescore} | - | - | {_mb(v.matrix_bytes)} | {v.recall10:.4f} | - |"
        )
    out += [
        "",
        "Filtered search (random masks; p50 / p95 ms of one query, recall@10 against the exact filtered top 10):",
        "",
        "| rows | allowed share | allowed rows | default picks | scan ms | graph ms | default ms | graph recall@10 "
        "| default recall@10 |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for f in filters:
        ms = {k: f"{v[0]:.2f} / {v[1]:.2f}" for k, v in f.ms.items()}
        out.append(
            f"| {f.n:,} | {f.share:g} | {f.allowed:,} | {f.picked} | {ms['scan']} | {ms['graph']} | {ms['auto']} "
            f"| {f.recall10['graph']:.4f} | {f.recall10['auto']:.4f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200, help="held-out queries per size")
    parser.add_argument("--filter-queries", type=int, default=50, help="queries per filtered configuration")
    parser.add_argument(
        "--variants",
        default="i8/float16,i8/float32,f16/float32",
        help="graph/re-scoring dtypes, comma-separated; the first is the main table's: by default the service's "
        "own (i8 graph, float16 re-scoring, idesluss/index.py)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the rows and the Markdown tables to this JSON file")
    args = parser.parse_args(argv)
    variants = [tuple(v.split("/")) for v in args.variants.split(",") if v]
    sizes, precision, filters = [], [], []
    for n in sorted(args.sizes):
        s, p, f = run_size(n, args.queries, variants, args.filter_queries, args.seed)  # type: ignore[arg-type]
        sizes.append(s)
        precision += p
        filters += f
        gc.collect()
    md = tables(sizes, precision, filters, args.queries, variants[0])  # type: ignore[arg-type]
    print()
    print(md)
    if args.out:
        import json
        from dataclasses import asdict

        report = {
            "sizes": [asdict(r) for r in sizes],
            "precision": [asdict(r) for r in precision],
            "filters": [asdict(r) for r in filters],
            "queries": args.queries,
            "markdown": md,
        }
        with open(args.out, "w", encoding="utf-8") as out_file:
            json.dump(report, out_file, indent=1)


if __name__ == "__main__":
    main()
