"""`idesluss bench`: speed and memory, each figure beside a baseline or ceiling measured in the same run.

* encoder: texts/s and useful (unpadded) tokens/s for plain sentence-transformers ``encode`` and for
  the service's Encoder, fp32, int8 dynamic quantisation and bf16, against the machine's measured
  float32 matmul peak and the model's FLOPs per token;
* search: p50/p95/p99 latency of a free-text search (query embedding included) at 10k and 100k
  items, against brute-force numpy dense search in the same run; index memory;
* themes: the nightly job by stage at 10k/50k/100k items (cached vectors), peak memory, in a
  fresh process per size.

Items for the large sizes are synthesised from the demo corpus: texts recombined, vectors mixed
from the demo vectors with small noise.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.datasets import load_demo

H, LAYERS, FFN = 384, 12, 1536


def flops_per_token(seq_len: int) -> float:
    """Forward FLOPs per token of a 12-layer, 384-wide, 1536-FFN encoder at ``seq_len`` (attention included)."""
    dense = LAYERS * 2 * (4 * H * H + 2 * H * FFN)
    attention = LAYERS * 2 * 2 * seq_len * H
    return float(dense + attention)


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    """Measured float32 GFLOP/s of numpy matmul on this machine with every core (best of ``repeats``).

    The service gives numpy's BLAS one thread (see idesluss/__init__.py), and OpenBLAS fixes its
    pool when it loads, so the ceiling is measured in a fresh process without that limit.
    """
    import os

    code = (
        "import numpy as np, time\n"
        f"n={size}\nr=np.random.default_rng(0)\n"
        "a=r.standard_normal((n,n),dtype=np.float32); b=r.standard_normal((n,n),dtype=np.float32); a@b\n"
        "best=1e9\n"
        f"for _ in range({repeats}):\n    t=time.perf_counter(); a@b; best=min(best, time.perf_counter()-t)\n"
        "print(2*n**3/best/1e9)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip())


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _texts() -> list[str]:
    demo = load_demo()
    return [f"{r['title']}. {r['text']}" for r in demo.ideas] + [r["text"] for r in demo.needs]


def synthesise(n: int, texts: list[str], vectors: np.ndarray, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``n`` texts and unit vectors recombined from the demo corpus."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(texts), n), rng.integers(0, len(texts), n)
    w = rng.uniform(0.6, 1.0, (n, 1)).astype(np.float32)
    v = w * vectors[a] + (1 - w) * vectors[b] + 0.02 * rng.standard_normal((n, vectors.shape[1])).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    out = [f"{texts[i]} {texts[j].split('.')[0]}" for i, j in zip(a, b)]
    return out, v.astype(np.float32)


def padding_share(lengths: list[int], batch_size: int = 32) -> float:
    """Share of a rectangle-batched run's token slots that are padding (texts sorted by length first,
    as sentence-transformers does)."""
    ordered = sorted(lengths, reverse=True)
    slots = sum(len(b) * max(b) for b in (ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)))
    return 1 - sum(lengths) / slots


def encoder_bench(encoder: Any, texts: list[str], peak: float, cache_dir: Path) -> dict[str, Any]:
    """Throughput of every encoder variant on the same texts, each against the baseline and the peak."""
    import torch

    from evaluation.variants import BASELINE, STATIC, variant_builders
    from models.encoder import Encoder

    counts = encoder.token_counts(texts)
    useful = sum(counts)
    mean_len = useful / len(texts)
    fpt = flops_per_token(int(mean_len))
    rows: dict[str, dict[str, Any]] = {}
    ref: np.ndarray | None = None

    def record(name: str, enc: Any, threads: int | None = None) -> None:
        nonlocal ref
        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            enc.encode_passages(texts[:64])  # warm-up
            seconds = _timed(lambda: enc.encode_passages(texts))
            out = enc.encode_passages(texts[:200])
        finally:
            torch.set_num_threads(previous)
        if ref is None:
            ref = out
        agree = float((out * ref).sum(1).mean()) if out.shape == ref.shape else None
        rows[name] = {
            "texts_per_s": len(texts) / seconds,
            "useful_tokens_per_s": useful / seconds,
            "share_of_matmul_peak": None if name == STATIC else useful / seconds * fpt / (peak * 1e9),
            "cosine_to_baseline": agree,
        }

    for name, build in variant_builders(encoder, cache_dir).items():
        record(name, build())
        if name == "packed fp32":
            record("packed fp32, 1 thread", Encoder(encoder.model, encoder.model_id, engine="packed"), threads=1)
    base = rows[BASELINE]["useful_tokens_per_s"]
    for r in rows.values():
        r["speed_vs_baseline"] = r["useful_tokens_per_s"] / base
    return {
        "texts": len(texts),
        "mean_tokens": mean_len,
        "flops_per_token": fpt,
        "variants": rows,
        "padding_share_rectangles": padding_share(counts),
        "padding_share_packed_dense": 0.0,
    }


def search_bench(
    encoder: Any, texts: list[str], vectors: np.ndarray, sizes: list[int], queries: int = 200
) -> dict[int, Any]:
    """Latency of the hybrid search (query embedding included) against brute-force numpy dense search."""
    from matcher.collection import Collection, Item
    from matcher.hybrid import HybridMatcher
    from matcher.swedish import Analyzer

    rng = np.random.default_rng(1)
    qtexts = [texts[i][:200] for i in rng.integers(0, len(texts), queries)]
    out = {}
    for n in sizes:
        stexts, svecs = synthesise(n, texts, vectors)
        analyzer = Analyzer()
        analyzer.learn(stexts[:5000])
        t = time.perf_counter()
        coll = Collection(encoder.dim, analyzer)
        coll.add([Item(id=str(i), text=s) for i, s in enumerate(stexts)], svecs)
        build = time.perf_counter() - t
        matcher = HybridMatcher(encoder)
        ours, base = [], []
        for q in qtexts:
            t = time.perf_counter()
            matcher.search(coll, q, k=10)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            v = encoder.encode_queries([q])[0]
            scores = svecs @ v
            top = np.argpartition(-scores, 10)[:10]
            top[np.argsort(-scores[top])]
            base.append(time.perf_counter() - t)
        memory = coll.nbytes
        out[n] = {
            "hybrid_ms": _percentiles(ours),
            "dense_numpy_ms": _percentiles(base),
            "p95_ratio_vs_numpy": float(np.percentile(ours, 95) / np.percentile(base, 95)),
            "index_build_s": build,
            "index_mb": memory / 2**20,
        }
    return out


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
    }


class _CachedOnly:
    """An encoder stand-in for runs whose vectors are all cached: encoding an item's text is a bug.

    The label stage embeds a few candidate words per theme (one or two words each); those get a
    fixed pseudo-random unit vector per word, so the stage runs its re-ranking. The real encoder's
    cost for them (about 20 short strings a theme) is not part of these timings.
    """

    model_id = "bench-synthetic"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode_queries(self, texts: Any) -> np.ndarray:
        texts = list(texts)
        if any(len(t.split()) > 2 for t in texts):
            raise AssertionError("the benchmark's vectors are all cached: only label words may be encoded")
        out = (
            np.stack([np.random.default_rng(zlib.crc32(t.encode("utf-8"))).standard_normal(self.dim) for t in texts])
            if texts
            else np.zeros((0, self.dim))
        )
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(1e-9)
        return out.astype(np.float32)

    encode_passages = encode_queries


def theme_size_run(n: int, vectors_path: str) -> dict[str, Any]:
    """One theme-job size in this process (see :func:`theme_bench`)."""
    from pipelines.embed import vector_key
    from pipelines.records import embed_text, text_hash
    from pipelines.themes.job import run_theme_job
    from store import Record, Store

    base = np.load(vectors_path)
    texts = _texts()
    stexts, svecs = synthesise(n, texts, base, seed=n)
    enc = _CachedOnly(dim=svecs.shape[1])
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "b.duckdb") as store:
        records = [
            Record(id=f"S{i:06d}", text=t, embed_hash=text_hash(embed_text(None, t))) for i, t in enumerate(stexts)
        ]
        for start in range(0, n, 20_000):
            store.upsert_records("ideas", records[start : start + 20_000])
        hashes = [r.embed_hash for r in records]
        store.put_embeddings(vector_key(enc.model_id, "query"), hashes, svecs)
        t = time.perf_counter()
        rec = run_theme_job(store, enc, show_bar=False)
        total = time.perf_counter() - t
    return {
        "n": n,
        "seconds": total,
        "timings": rec["timings"],
        "themes": rec["n_themes"],
        "share_unassigned": rec["share_unassigned"],
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    ``/proc/self/status`` VmHWM, not ``getrusage``: ru_maxrss survives exec, so a child started from
    a large parent would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def theme_bench(sizes: list[int], vectors_path: str) -> dict[int, Any]:
    """All sizes, smallest first, in one fresh process (JIT compilation paid once, at the first size).

    The peak memory is the process's running maximum: with sizes ascending it is each size's own
    peak wherever memory grows with the size.
    """
    code = (
        "import json; from evaluation.bench import theme_size_run\n"
        f"for n in {sorted(sizes)!r}:\n    print(json.dumps(theme_size_run(n, {vectors_path!r})), flush=True)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    if proc.returncode != 0:
        raise RuntimeError(f"theme bench failed: {proc.stderr[-2000:]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {row["n"]: row for row in rows}


SECTIONS = ("encoder", "search", "themes", "scale", "load", "routes")
REPO = Path(__file__).resolve().parents[1]


def _module_json(module: str, args: list[str], out: Path) -> dict[str, Any]:
    """Run ``python -m module args --out out`` in a fresh process (its own BLAS threads, its own memory)
    and return the JSON it wrote; its progress goes to this process's stderr."""
    proc = subprocess.run([sys.executable, "-m", module, *args, "--out", str(out)], cwd=REPO, stdout=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed with exit status {proc.returncode}")
    return json.loads(out.read_text(encoding="utf-8"))


def scale_bench(sizes: list[int], out: Path) -> dict[str, Any]:
    """The dense index at each size (``evaluation.bench_scale``, synthetic vectors), as the service builds it:
    an i8 graph, float16 re-scoring (``idesluss/index.py``)."""
    return _module_json("evaluation.bench_scale", ["--sizes", *map(str, sizes), "--variants", "i8/float16"], out)


def load_bench(items: int, seconds: float, out: Path, upload_rows: int = 2000) -> dict[str, Any]:
    """``/suggest`` from 1 client, then 8, on a live server (``evaluation.load --scaling``)."""
    args = ["--items", str(items), "--seconds", str(seconds), "--scaling", "--upload-rows", str(upload_rows)]
    return _module_json("evaluation.load", args, out)


def routes_bench(sizes: list[int], requests: int, out: Path) -> dict[str, Any]:
    """Every route's p95 at each size on a live server (``evaluation.bench_routes``)."""
    args = ["--sizes", ",".join(map(str, sizes)), "--requests", str(requests)]
    return _module_json("evaluation.bench_routes", args, out)


def run_bench(
    settings: Any,
    out_dir: str = "reports/bench",
    sizes: list[int] | None = None,
    theme_sizes: list[int] | None = None,
    quick: bool = False,
    sections: list[str] | None = None,
    scale_sizes: list[int] | None = None,
    load_items: int | None = None,
    load_seconds: float | None = None,
    route_sizes: list[int] | None = None,
    route_requests: int | None = None,
) -> dict[str, Any]:
    """Run the chosen sections (all by default), print the figures, write bench.json and bench.md.

    Args:
        sections: any of :data:`SECTIONS`; an unknown name is an error.
        quick: small sizes everywhere, for a smoke run; explicit sizes still win.
    """
    chosen = list(SECTIONS) if sections is None else sections
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown bench section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    if "encoder" in chosen:  # the ONNX variants; checked before anything runs
        from evaluation.extras import require_extra

        require_extra("bench", "bench")
    sizes = sizes or ([2_000] if quick else [10_000, 100_000])
    theme_sizes = theme_sizes or ([2_000] if quick else [10_000, 50_000, 100_000])
    scale_sizes = scale_sizes or ([10_000] if quick else [10_000, 100_000, 1_000_000])  # synthetic vectors: minutes
    load_items = load_items or (1_000 if quick else 10_000)
    load_seconds = load_seconds or (3.0 if quick else 20.0)
    route_sizes = route_sizes or ([500, 2_000] if quick else [10_000, 100_000])
    route_requests = route_requests or (10 if quick else 100)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections_s: dict[str, float] = {}
    started = time.perf_counter()
    report: dict[str, Any] = {"sections": chosen}
    if {"encoder", "search", "themes"} & set(chosen):
        from models.registry import load_encoder

        encoder = load_encoder(settings.model, settings.cache_dir, precision=settings.precision, engine=settings.engine)
        texts = _texts()
        if "encoder" in chosen:
            t = time.perf_counter()
            report["matmul_peak_gflops"] = matmul_peak()
            report["encoder"] = encoder_bench(
                encoder, texts[:200] if quick else texts, report["matmul_peak_gflops"], Path(settings.cache_dir)
            )
            sections_s["encoder"] = time.perf_counter() - t
        vectors = encoder.encode_queries(texts)
        if "search" in chosen:
            t = time.perf_counter()
            report["search"] = search_bench(encoder, texts, vectors, sizes, queries=50 if quick else 200)
            sections_s["search"] = time.perf_counter() - t
        if "themes" in chosen:
            vpath = out / "demo_query_vectors.npy"
            np.save(vpath, vectors)
            t = time.perf_counter()
            try:
                report["themes"] = theme_bench(theme_sizes, str(vpath))
            finally:
                vpath.unlink()
            sections_s["themes"] = time.perf_counter() - t
    for name, run in (
        ("scale", lambda: scale_bench(scale_sizes, out / "scale.json")),
        ("load", lambda: load_bench(load_items, load_seconds, out / "load.json", upload_rows=200 if quick else 2000)),
        ("routes", lambda: routes_bench(route_sizes, route_requests, out / "routes.json")),
    ):
        if name in chosen:
            t = time.perf_counter()
            report[name] = run()
            sections_s[name] = time.perf_counter() - t
    sections_s["total"] = time.perf_counter() - started
    report["sections_s"] = sections_s
    (out / "bench.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    md = _markdown(report)
    (out / "bench.md").write_text(md, encoding="utf-8")
    print(md)
    return report


def _markdown(r: dict[str, Any]) -> str:
    lines = ["# Benchmarks", ""]
    for name, part in (
        ("encoder", _encoder_md),
        ("search", _search_md),
        ("themes", _themes_md),
        ("scale", _scale_md),
        ("load", _load_md),
        ("routes", _routes_md),
    ):
        if name in r:
            lines += part(r) + [""]
    if "sections_s" in r:
        lines.append("Wall time by section (s): " + ", ".join(f"{k} {v:.0f}" for k, v in r["sections_s"].items()) + ".")
    return "\n".join(lines) + "\n"


def _encoder_md(r: dict[str, Any]) -> list[str]:
    lines = [
        f"numpy float32 matmul peak: **{r['matmul_peak_gflops']:.0f} GFLOP/s**; model "
        f"{r['encoder']['flops_per_token'] / 1e6:.1f} MFLOP per token at the mean length "
        f"{r['encoder']['mean_tokens']:.0f} tokens.",
        "",
        f"Padding in sentence-transformers' length-sorted batches of 32: "
        f"{r['encoder']['padding_share_rectangles']:.1%} of token slots; the packed engine's dense layers: 0 %.",
        "",
        "| encoder | texts/s | useful tokens/s | share of matmul peak | vs baseline | cosine to baseline |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in r["encoder"]["variants"].items():
        share = "n/a" if v["share_of_matmul_peak"] is None else f"{v['share_of_matmul_peak']:.0%}"
        cos = "n/a (other space)" if v["cosine_to_baseline"] is None else f"{v['cosine_to_baseline']:.4f}"
        lines.append(
            f"| {name} | {v['texts_per_s']:.1f} | {v['useful_tokens_per_s']:.0f} | "
            f"{share} | {v['speed_vs_baseline']:.2f}x | {cos} |"
        )
    return lines


def _search_md(r: dict[str, Any]) -> list[str]:
    lines = [
        "| items | hybrid p50 / p95 / p99 ms | numpy dense p50 / p95 / p99 ms | p95 ratio | index MB | index build s |",
        "|---|---|---|---|---|---|",
    ]
    for n, v in r["search"].items():
        h, d = v["hybrid_ms"], v["dense_numpy_ms"]
        lines.append(
            f"| {n} | {h['p50']:.1f} / {h['p95']:.1f} / {h['p99']:.1f} | {d['p50']:.1f} / {d['p95']:.1f} / "
            f"{d['p99']:.1f} | {v['p95_ratio_vs_numpy']:.2f} | {v['index_mb']:.0f} | "
            f"{v['index_build_s']:.1f} |"
        )
    return lines


def _themes_md(r: dict[str, Any]) -> list[str]:
    lines = [
        "| items | job s | reduce | cluster | assign | label | map | write | themes | unassigned | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, v in r["themes"].items():
        t = v["timings"]
        lines.append(
            f"| {n} | {v['seconds']:.1f} | {t['reduce']:.1f} | {t['cluster']:.1f} | {t['assign']:.1f} | "
            f"{t['label']:.1f} | {t['map']:.1f} | {t['write']:.1f} | {v['themes']} | "
            f"{v['share_unassigned']:.1%} | {v['peak_rss_mb']:.0f} |"
        )
    return lines


def _scale_md(r: dict[str, Any]) -> list[str]:
    """The dense index at scale: bench_scale's main table (its first block)."""
    main = r["scale"]["markdown"].split("\n\nPrecision")[0]
    return ["## Dense index at scale (`python -m evaluation.bench_scale`)", "", main]


def _load_md(r: dict[str, Any]) -> list[str]:
    s = r["load"]["scaling"]
    return [
        f"## Load: 1 vs {s['clients']} clients on `POST /suggest` (`python -m evaluation.load --scaling`, "
        f"{r['load']['items']:,} items, {r['load']['seconds']:g} s per phase, a write every second, "
        f"a {r['load']['upload_rows']:,}-row upload in the second phase)",
        "",
        "| measure | figure |",
        "|---|---|",
        f"| 1 client | {s['rps_1']:.1f} requests/s, p50 {s['p50_1_ms']:.0f} ms |",
        f"| {s['clients']} clients | {s['rps_n']:.1f} requests/s (**{s['throughput_ratio']:.2f}x** the 1-client rate), "
        f"p95 {s['p95_n_ms']:.0f} ms (**{s['p95_n_over_p50_1']:.1f}x** the 1-client p50) |",
        f"| errors | {s['errors']} |",
        f"| `/health` during both phases | p99 {s['health_p99_ms']:.0f} ms, max {s['health_max_ms']:.0f} ms |",
        *(
            f"| CPU ms per request, {label} (everything in the phase) | "
            + ", ".join(f"{name} {ms:.1f}" for name, ms in s[key].items())
            + " |"
            for key, label in (
                ("cpu_ms_per_request_1", "1 client"),
                ("cpu_ms_per_request_n", f"{s['clients']} clients"),
            )
            if s.get(key)
        ),
        *(
            [
                f"| what {b['cores']} cores allow at {b['cpu_ms_per_request']:.1f} ms of CPU per request, all "
                f"processes (`cpu_bounds`) | at most **{b['throughput_ceiling_ratio']:.2f}x** the 1-client rate; "
                f"a mean latency of at least **{b['mean_latency_floor_over_p50_1']:.1f}x** the 1-client p50 |",
                f"| the same without the load generator ({b['cpu_ms_per_request_without_generator']:.1f} ms: "
                f"clients elsewhere) | at most {b['throughput_ceiling_ratio_without_generator']:.2f}x; mean latency "
                f"at least {b['mean_latency_floor_over_p50_1_without_generator']:.1f}x |",
            ]
            if (b := s.get("cpu_bounds_n"))
            else []
        ),
    ]


def _routes_md(r: dict[str, Any]) -> list[str]:
    from evaluation.bench_routes import table

    return ["## Every route as the corpus grows (`python -m evaluation.bench_routes`)", "", table(r["routes"])]
