"""The lean model (models/lean.py): the server's encoder process reads the model without
sentence-transformers or transformers, and gives the very same vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.encoder import Encoder
from models.lean import LeanModel, load_lean_model, release_file_pages
from models.registry import cpu_has_bf16, resolve_model_path

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "Hur söker jag bygglov för en altan?",
    "Belysning längs cykelbanan i Öjebyn, ring 070-123 45 67",
    "Snöröjning",
    " ".join(["Ett långt förslag om skolskjuts och busshållplatser på landsbygden."] * 90),  # windows
]


def test_the_lean_model_gives_the_same_tokens_and_vectors_as_sentence_transformers(real_encoder, model_cache) -> None:
    location, model_id = resolve_model_path("default", model_cache)
    lean = load_lean_model(location)
    assert isinstance(lean, LeanModel)
    precisions = ["fp32", *(["bf16"] if cpu_has_bf16() else [])]
    for precision in precisions:
        full = real_encoder if precision == "fp32" else Encoder(real_encoder.model, model_id, precision="bf16")
        ours = Encoder(lean, model_id, precision=precision, engine="packed")
        assert ours.max_len == full.max_len and ours.dim == full.dim and ours.engine == "packed"
        assert ours.prompt("query") == full.prompt("query") and ours.prompt("document") == full.prompt("document")
        assert ours.token_counts(TEXTS, "query") == full.token_counts(TEXTS, "query")
        assert ours.token_counts(TEXTS)[-1] > ours.max_len  # the long text goes through the windows
        np.testing.assert_array_equal(ours.encode_queries(TEXTS), full.encode_queries(TEXTS))
        np.testing.assert_array_equal(ours.encode_passages(TEXTS), full.encode_passages(TEXTS))


def test_the_encoder_process_loads_neither_sentence_transformers_nor_transformers(model_cache) -> None:
    code = (
        "import sys; from pathlib import Path; from models.registry import load_encoder; "
        f"e = load_encoder('default', Path({str(model_cache)!r}), precision='auto', threads=1, lean=True); "
        "e.encode_queries(['Fler bänkar i parken']); "
        "print(type(e.model).__name__, 'transformers' in sys.modules, 'sentence_transformers' in sys.modules)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=True)
    assert out.stdout.split() == ["LeanModel", "False", "False"]


def test_a_directory_that_is_not_a_plain_bert_is_left_to_sentence_transformers(tmp_path: Path, model_cache) -> None:
    location, _ = resolve_model_path("default", model_cache)
    for name in ("modules.json", "config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((Path(location) / name).read_bytes())
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls"}))
    assert load_lean_model(tmp_path) is None  # CLS pooling
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "mean"}))
    assert load_lean_model(tmp_path) is None  # no model.safetensors
    (tmp_path / "model.safetensors").symlink_to(Path(location) / "model.safetensors")
    assert isinstance(load_lean_model(tmp_path), LeanModel)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    assert load_lean_model(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"do_lower_case": True}))
    assert load_lean_model(tmp_path) is None  # sentence-transformers would lowercase the texts
    (tmp_path / "sentence_bert_config.json").unlink()
    assert load_lean_model(tmp_path / "absent") is None
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"cls_token": "[NOT-A-TOKEN]"}))
    assert load_lean_model(tmp_path) is None  # a file not as expected: loaded the usual way instead


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads /proc/self/smaps (Linux)")
def test_released_file_pages_read_back_the_same_and_a_written_mapping_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    data = np.arange(4 * 1024 * 1024, dtype=np.float32)
    data.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r")
    assert float(mapped.sum()) == float(data.sum())  # every page read: resident
    assert release_file_pages(path) >= data.nbytes
    np.testing.assert_array_equal(mapped[::4096], data[::4096])  # read again from the file
    del mapped
    written = np.memmap(path, dtype=np.float32, mode="c")  # private: a write stays in this process
    written[0] = -1.0
    assert release_file_pages(path) == 0  # dropping that page would lose the write
    assert written[0] == -1.0


def test_a_directory_saved_by_sentence_transformers_reads_lean_as_a_learned_version_would(
    real_encoder, tmp_path: Path
) -> None:
    """`idesluss learn` saves its versions with sentence-transformers' own save: they read lean too."""
    real_encoder.model.save(str(tmp_path / "version"))
    lean = load_lean_model(tmp_path / "version")
    assert isinstance(lean, LeanModel)
    ours = Encoder(lean, real_encoder.model_id, engine="packed")
    np.testing.assert_array_equal(ours.encode_queries(TEXTS[:3]), real_encoder.encode_queries(TEXTS[:3]))
