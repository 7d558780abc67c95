"""ONNX Runtime variants of the default encoder, for the comparison in ``idesluss bench`` / ``evaluate``.

The export, optimisation and int8 quantisation live in :mod:`models.onnx_engine` (the int8 file is
also the service's optional ``onnx-int8`` engine); this module adds the fp32 file as a variant. The
service's default does not use them: docs/engines.md has the measured speed and quality.
ONNX Runtime runs rectangles, so texts are batched by length to keep padding small.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.packed import length_batches


def ensure_onnx(encoder: Any, cache_dir: Path) -> Path:
    """Export, optimise and quantise the encoder's transformer into the cache (once; models/onnx_engine.py)."""
    from models.onnx_engine import ensure_onnx as export

    return export(encoder._hf_model(), encoder.base_model_id, cache_dir)


class OnnxEncoder:
    """The encoder's tokenisation and pooling around an ONNX Runtime session (texts within one window)."""

    def __init__(self, encoder: Any, model_path: Path, threads: int | None = None, token_budget: int = 2048) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.base = encoder
        self.dim = encoder.dim
        self.model_id = f"{encoder.base_model_id}+onnx:{Path(model_path).stem}"
        self.token_budget = token_budget
        self.pad = encoder.model.tokenizer.pad_token_id

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.base._token_ids(list(texts), "query"))

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.base._token_ids(list(texts), "document"))

    def _encode(self, ids: list[list[int]]) -> np.ndarray:
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        limit = self.base.max_len
        ids = [s if len(s) <= limit else [*s[: limit - 1], s[-1]] for s in ids]  # cut: comparison only
        for group in length_batches([len(s) for s in ids], self.token_budget):
            longest = max(len(ids[i]) for i in group)
            x = np.full((len(group), longest), self.pad, dtype=np.int64)
            mask = np.zeros((len(group), longest), dtype=np.int64)
            for row, i in enumerate(group):
                x[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            hidden = self.session.run(None, {"input_ids": x, "attention_mask": mask})[0]
            means = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            out[group] = means / np.linalg.norm(means, axis=1, keepdims=True)
        return out
