"""Stored-vector precision: float32 against float16 and int8 on the dev sets.

The service keeps document vectors in memory and in the dense index's re-scoring matrix. At a
million rows float32 costs 1.5 GB; float16 halves it and int8 (one scale per vector) quarters it.
This measures what each costs in quality: SweFAQ dev MRR (dense only: questions as queries,
the pooled answers as documents stored at the given precision) and SweParaphrase dev Spearman
(one side stored at the precision), with bootstrap 95 % intervals and a paired test against
float32.

    python -m evaluation.precision [--swefaq PATH] [--sweparaphrase PATH] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from evaluation.datasets import load_swefaq, load_sweparaphrase
from evaluation.metrics import bootstrap_ci, bootstrap_statistic_ci, paired_test, spearman

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def as_float16(x: np.ndarray) -> np.ndarray:
    """Vectors rounded to float16 (then read back as float32, as the re-scoring does)."""
    return x.astype(np.float16).astype(np.float32)


def as_int8(x: np.ndarray) -> np.ndarray:
    """Vectors quantised to int8 with one symmetric scale per vector, read back as float32."""
    scale = np.abs(x).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return (np.round(x / scale).clip(-127, 127).astype(np.int8).astype(np.float32)) * scale


PRECISIONS = {"float32": lambda x: x, "float16": as_float16, "int8": as_int8}


def reciprocal_ranks(queries: np.ndarray, docs: np.ndarray, gold: list[int]) -> np.ndarray:
    """1 / rank of each query's gold document by cosine (docs re-normalised after rounding)."""
    d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    scores = queries @ d.T
    gold_scores = scores[np.arange(len(gold)), gold]
    ranks = 1 + (scores > gold_scores[:, None]).sum(axis=1)
    return 1.0 / ranks


def run(swefaq: Path, sweparaphrase: Path) -> dict:
    from idesluss.resources import Resources
    from idesluss.settings import Settings

    encoder = Resources(Settings()).encoder
    out: dict = {"model": encoder.model_id}
    questions, answers, gold = load_swefaq(swefaq)
    q = encoder.encode_queries(questions)
    a = encoder.encode_passages(answers)
    base = reciprocal_ranks(q, a, gold)
    out["swefaq"] = {}
    for name, cast in PRECISIONS.items():
        rr = reciprocal_ranks(q, cast(a), gold)
        out["swefaq"][name] = {"mrr": float(rr.mean()), "mrr_ci": list(bootstrap_ci(rr)), "questions": len(rr)}
        if name != "float32":
            out["swefaq"][name]["vs_float32"] = paired_test(rr, base)
    s1, s2, y = load_sweparaphrase(sweparaphrase)
    e1, e2, gold_sim = encoder.encode_queries(s1), encoder.encode_queries(s2), np.asarray(y)
    out["sweparaphrase"] = {}
    for name, cast in PRECISIONS.items():
        stored = cast(e2)
        stored /= np.linalg.norm(stored, axis=1, keepdims=True)
        sims = (e1 * stored).sum(1)
        out["sweparaphrase"][name] = {
            "spearman": spearman(sims, y),
            "spearman_ci": list(bootstrap_statistic_ci(lambda i, s=sims: spearman(s[i], gold_sim[i]), len(y))),
        }
    dim = a.shape[1]
    out["bytes_per_million"] = {"float32": 4 * dim * 10**6, "float16": 2 * dim * 10**6, "int8": (dim + 4) * 10**6}
    return out


def table(report: dict) -> str:
    """Markdown: one row per precision."""
    lines = [
        "| stored as | SweFAQ dev MRR [95 %] | vs float32 (paired) | SweParaphrase dev Spearman [95 %] | MB per 1M vectors |",
        "|---|---|---|---|---:|",
    ]
    for name in PRECISIONS:
        f, p = report["swefaq"][name], report["sweparaphrase"][name]
        vs = f.get("vs_float32")
        paired = f"{vs['diff']:+.4f} [{vs['diff_low']:+.4f}, {vs['diff_high']:+.4f}], p = {vs['p']:.2f}" if vs else "-"
        lines.append(
            f"| {name} | {f['mrr']:.4f} [{f['mrr_ci'][0]:.3f}, {f['mrr_ci'][1]:.3f}] | {paired} "
            f"| {p['spearman']:.4f} [{p['spearman_ci'][0]:.3f}, {p['spearman_ci'][1]:.3f}] "
            f"| {report['bytes_per_million'][name] / 2**20:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swefaq", default=str(SHARED / "swefaq" / "swefaq_dev.jsonl"))
    ap.add_argument("--sweparaphrase", default=str(SHARED / "sweparaphrase" / "sweparaphrase_dev.jsonl"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    for path in (args.swefaq, args.sweparaphrase):
        if not Path(path).exists():
            sys.exit(f"{path} is missing (the public dev sets live in ../shared/data)")
    report = run(Path(args.swefaq), Path(args.sweparaphrase))
    print(table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
