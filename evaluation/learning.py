"""Learning from coaches, measured as a municipality would see it (``python -m evaluation.learning``).

SweFAQ dev plays the municipality: its questions are ideas, its pooled answers are needs. The
questions are split, seeded, in two halves. For the training half, each question's gold answer is
a confirmed link and the two best-ranked wrong answers of the service as it ships are rejected
links (what a coach does with wrong suggestions). ``idesluss learn``'s own job
(:func:`pipelines.learn.learn`) then runs on that feedback exactly as in production: its own
held-out share of the training half decides the switch, the fusion is chosen on the rest.
The other half of the questions is never seen by anything above: it only reports MRR@10
before (the shipped model and fusion) and after (whatever ``learn`` switched to), with bootstrap
95 % intervals and a paired test. SweParaphrase dev Spearman before and after checks forgetting.
A separate timing run fine-tunes with ``learn``'s settings on 1,000 pairs (SweFAQ pairs repeated
with their hard negatives), right after the first version's settings (:data:`OLD_CONFIG`, fp32) on
160 of them, and reports the wall times and the ratio per step; the models are thrown away.

Nothing is written to the real model cache: versions go to a temporary cache that links the
embedded default model.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.datasets import load_swefaq, load_sweparaphrase
from evaluation.metrics import bootstrap_statistic_ci, paired_test, spearman, with_intervals
from matcher.hybrid import FusionConfig, HybridMatcher
from models.build import DEFAULT_MODEL_ID, ensure_default_model
from models.finetune import TrainConfig, TrainPair
from pipelines.learn import Example, Ranker, default_load, learn, learn_config, train_model
from pipelines.records import validate_row
from store import Store

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED = 20240601


def _split(n: int, seed: int) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(n)
    half = n // 2
    return sorted(order[:half].tolist()), sorted(order[half:].tolist())


def _store(path: Path, questions: list[str], answers: list[str]) -> Store:
    store = Store(path)
    store.upsert_records("ideas", [validate_row({"id": f"q{i}", "text": q}) for i, q in enumerate(questions)])
    store.upsert_records("needs", [validate_row({"id": f"a{j}", "text": a}) for j, a in enumerate(answers)])
    return store


def _examples(store: Store, idx: list[int], gold: list[int]) -> list[Example]:
    texts = {r.id: r.text for r in store.records("ideas", [f"q{i}" for i in idx])}
    answers = {r.id: r.text for r in store.records("needs")}
    return [
        Example("ideas", f"q{i}", texts[f"q{i}"], "needs", positives={f"a{gold[i]}": answers[f"a{gold[i]}"]})
        for i in idx
    ]


def _sweparaphrase(before: Any, after: Any, path: Path) -> dict[str, Any]:
    a, b, y = load_sweparaphrase(path)
    gold = np.asarray(y)
    s0 = (before.encode_queries(a) * before.encode_queries(b)).sum(1)
    s1 = (after.encode_queries(a) * after.encode_queries(b)).sum(1)
    return {
        "before": spearman(s0, gold),
        "before_ci": list(bootstrap_statistic_ci(lambda i: spearman(s0[i], gold[i]), len(gold))),
        "after": spearman(s1, gold),
        "after_ci": list(bootstrap_statistic_ci(lambda i: spearman(s1[i], gold[i]), len(gold))),
        "diff": spearman(s1, gold) - spearman(s0, gold),
        "diff_ci": list(
            bootstrap_statistic_ci(lambda i: spearman(s1[i], gold[i]) - spearman(s0[i], gold[i]), len(gold))
        ),
        "pairs": len(gold),
    }


# the settings of the first version of `learn` (fp32, top 6 layers, lr 3e-5): the timing baseline
OLD_CONFIG: dict[str, Any] = {"train_layers": 6, "lr": 3e-5, "batch_size": 16, "max_seq_length": 128}


def _train_timed(base: Path, pairs: list[TrainPair], cfg: TrainConfig, bf16: bool | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        stats = train_model(base, pairs, Path(tmp) / "model", cfg, bf16=bf16)
    stats.pop("config", None)
    return stats


def _time_training(base: Path, pairs: list[TrainPair], n: int, seed: int, old_pairs: int = 160) -> dict[str, Any]:
    """Wall time of `learn`'s fine-tuning on ``n`` pairs, and of the old settings on ``old_pairs`` pairs
    right before it (same machine, same minutes), as seconds per step and their ratio."""
    many = [pairs[i % len(pairs)] for i in range(n)]
    out: dict[str, Any] = {"cpus": os.cpu_count()}
    if old_pairs:
        old = _train_timed(base, many[:old_pairs], TrainConfig(epochs=1, seed=seed, **OLD_CONFIG), bf16=False)
        out["old"] = {**old, "seconds_per_step": old["seconds"] / old["steps"]}
    new = _train_timed(base, many, learn_config(seed, pairs=n), bf16=None)
    out.update(new, seconds_per_step=new["seconds"] / new["steps"], load_avg_1min=os.getloadavg()[0])
    if old_pairs:
        out["old"]["seconds_extrapolated"] = out["old"]["seconds_per_step"] * new["steps"]
        out["speed_ratio"] = out["old"]["seconds_per_step"] / out["seconds_per_step"]
    return out


def run(
    swefaq: Path,
    sweparaphrase: Path,
    cache_dir: Path,
    seed: int = SEED,
    epochs: int | None = None,
    time_pairs: int = 1000,
) -> dict[str, Any]:
    """The whole measurement; returns the JSON-ready figures."""
    questions, answers, gold = load_swefaq(swefaq)
    train_idx, test_idx = _split(len(questions), seed)
    base_dir = ensure_default_model(cache_dir)
    shipped = FusionConfig()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        (cache / base_dir.name).symlink_to(base_dir)
        store = _store(Path(tmp) / "db.duckdb", questions, answers)
        base = default_load(base_dir, DEFAULT_MODEL_ID)
        base_ranker = Ranker(store, base, ["needs"])
        # the coaches' feedback on the training half: gold confirmed, the top two wrong suggestions rejected
        train_ex = _examples(store, train_idx, gold)
        texts = [e.query for e in train_ex]
        hits = HybridMatcher(base, shipped).search_batch(base_ranker.collections["needs"], texts, k=3)
        for e, hs in zip(train_ex, hits):
            store.feedback.set_need_link(e.query_id, next(iter(e.positives)), "confirmed", "eval")
            for h in [h for h in hs if h.id not in e.positives][:2]:
                store.feedback.set_need_link(e.query_id, h.id, "rejected", "eval")
        test_ex = _examples(store, test_idx, gold)
        before = base_ranker.reciprocal_ranks(test_ex, shipped)
        cfg = None if epochs is None else learn_config(seed, epochs)
        started = time.perf_counter()
        report = learn(store, cache, shipped, holdout=0.2, seed=seed, embed=False, config=cfg)
        learn_seconds = time.perf_counter() - started
        if report.switched:
            from models.finetune import current_version

            version = current_version(cache)
            assert version is not None
            after_enc = default_load(version.path, version.model_id)
            learned: dict[str, Any] = dict(report.fusion_after)
            fusion = FusionConfig(**learned)
        else:
            after_enc, fusion = base, shipped
        after = Ranker(store, after_enc, ["needs"]).reciprocal_ranks(test_ex, fusion)
        para = _sweparaphrase(base, after_enc, sweparaphrase)
        pairs = [p for e in train_ex for p in e.pairs()]
        timing = _time_training(base_dir, pairs, time_pairs, seed) if time_pairs else {}
        store.close()
    b, a = with_intervals({"mrr": before}), with_intervals({"mrr": after})
    return {
        "seed": seed,
        "questions": {"train_half": len(train_idx), "test_half": len(test_idx), "answers": len(answers)},
        "learn": {**report.as_dict(), "seconds": round(learn_seconds, 1)},
        "test_half_mrr": {
            "before": b["mrr"],
            "before_ci": b["mrr_ci"],
            "after": a["mrr"],
            "after_ci": a["mrr_ci"],
            "paired": paired_test(after, before),
        },
        "sweparaphrase_spearman": para,
        "training_time": {"pairs": time_pairs, **timing},
        "train_config": report.training.get("config"),
    }


def table(res: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    m, s, t, lr = res["test_half_mrr"], res["sweparaphrase_spearman"], res["training_time"], res["learn"]
    p = m["paired"]

    def ci(x: list[float]) -> str:
        return f"[{x[0]:.3f}, {x[1]:.3f}]"

    rows = [
        "| figure | before | after | after - before |",
        "| --- | --- | --- | --- |",
        f"| SweFAQ dev test half, MRR@10 ({res['questions']['test_half']} questions) | {m['before']:.3f} "
        f"{ci(m['before_ci'])} | {m['after']:.3f} {ci(m['after_ci'])} | {p['diff']:+.3f} "
        f"[{p['diff_low']:+.3f}, {p['diff_high']:+.3f}], p = {p['p']:.3f} |",
        f"| SweParaphrase dev Spearman ({s['pairs']} pairs) | {s['before']:.3f} {ci(s['before_ci'])} | "
        f"{s['after']:.3f} {ci(s['after_ci'])} | {s['diff']:+.3f} [{s['diff_ci'][0]:+.3f}, {s['diff_ci'][1]:+.3f}] |",
        f"| learn's own held-out MRR@10 ({lr['queries_holdout']} queries of the training half) | "
        f"{lr['before']['mrr']:.3f} {ci(lr['before']['mrr_ci'])} | {lr['after']['mrr']:.3f} "
        f"{ci(lr['after']['mrr_ci'])} | switched: {lr['switched']} |",
    ]
    lines = ["\n".join(rows), ""]
    lines.append(
        f"learn: {lr['pairs']} pairs, {lr['hard_negatives']} hard negatives, {lr['training'].get('steps')} steps, "
        f"{lr['seconds']:.0f} s in all; fusion before {lr['fusion_before']}, after {lr['fusion_after']}"
    )
    if t.get("seconds") is not None:
        lines.append(
            f"training time, {t['pairs']} pairs: {t['seconds']:.0f} s ({t['steps']} steps) on {t['cpus']} CPUs "
            f"(1-minute load average at the end {t['load_avg_1min']:.1f}; bf16 {t.get('bf16')})"
        )
        if "old" in t:
            o = t["old"]
            lines.append(
                f"old settings in the same run: {o['seconds_per_step']:.1f} s per step ({o['steps']} steps), "
                f"{o['seconds_extrapolated']:.0f} s for the same {t['steps']} steps; "
                f"now {t['seconds_per_step']:.1f} s per step: {t['speed_ratio']:.2f}x faster"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table and write the JSON."""
    ap = argparse.ArgumentParser(prog="python -m evaluation.learning", description=__doc__.splitlines()[0])
    ap.add_argument("--swefaq", type=Path, default=SHARED / "swefaq" / "swefaq_dev.jsonl")
    ap.add_argument("--sweparaphrase", type=Path, default=SHARED / "sweparaphrase" / "sweparaphrase_dev.jsonl")
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("IDESLUSS_CACHE_DIR", ".cache/models")))
    ap.add_argument("--out", type=Path, default=Path("reports/learning.json"))
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--epochs", type=int, default=None, help="default: learn's own (by the number of pairs)")
    ap.add_argument("--time-pairs", type=int, default=1000, help="pairs of the timing run (0: skip it)")
    ap.add_argument(
        "--time-only", action="store_true", help="only the timing run (pairs: question, answer, a wrong answer)"
    )
    args = ap.parse_args(argv)
    if args.time_only:  # the timing run alone (it is the long part)
        questions, answers, gold = load_swefaq(args.swefaq)
        pairs = [TrainPair(q, answers[g], (answers[(g + 1) % len(answers)],)) for q, g in zip(questions, gold)]
        timing = _time_training(ensure_default_model(args.cache_dir), pairs, args.time_pairs, args.seed)
        print(json.dumps({"training_time": {"pairs": args.time_pairs, **timing}}, indent=1))
        return 0
    res = run(args.swefaq, args.sweparaphrase, args.cache_dir, args.seed, args.epochs, args.time_pairs)
    print(table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
