"""ONNX Runtime variants of the default encoder, for the comparison in ``idesluss bench`` / ``evaluate``.

The transformer is exported once (``torch.onnx.export``, eager attention so the graph is plain
operators), simplified with ONNX Runtime's transformer optimiser (fused GELU and skip layer norms),
and quantised with dynamic int8 quantisation (per-channel weights, int8 matrix products on VNNI).
The files live in ``<cache>/onnx/`` behind a completion marker, so later runs reuse them.

The service does not use these: they were measured slower than the packed bfloat16 engine on this
machine (the README has the table). ONNX Runtime runs rectangles, so texts are batched by length
to keep padding small.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.atomic import building, path_safe
from models.packed import length_batches

MARKER = "idesluss-onnx.json"


def ensure_onnx(encoder: Any, cache_dir: Path) -> Path:
    """Export, optimise and quantise the encoder's transformer into the cache (once)."""
    target = Path(cache_dir) / "onnx" / path_safe(encoder.model_id)
    if (target / MARKER).is_file():
        return target
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    started = time.perf_counter()
    with building(target) as tmp:
        hf = encoder._hf_model()
        previous = hf.config._attn_implementation
        hf.set_attn_implementation("eager")

        class Hidden(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        example = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
        axes = {
            "input_ids": {0: "batch", 1: "length"},
            "attention_mask": {0: "batch", 1: "length"},
            "hidden": {0: "batch", 1: "length"},
        }
        try:
            torch.onnx.export(
                Hidden(hf).eval(),
                example,
                str(tmp / "raw.onnx"),
                input_names=list(axes)[:2],
                output_names=["hidden"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        finally:
            hf.set_attn_implementation(previous)
        cfg = hf.config
        opt = optimizer.optimize_model(
            str(tmp / "raw.onnx"),
            model_type="bert",
            num_heads=cfg.num_attention_heads,
            hidden_size=cfg.hidden_size,
            opt_level=1,
        )
        opt.save_model_to_file(str(tmp / "fp32.onnx"))
        (tmp / "raw.onnx").unlink()
        quantize_dynamic(
            str(tmp / "fp32.onnx"),
            str(tmp / "int8.onnx"),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1},
        )
        (tmp / MARKER).write_text(
            json.dumps({"model": encoder.model_id, "seconds": round(time.perf_counter() - started, 1)})
        )
    return target


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
        self.model_id = f"{encoder.model_id}+onnx:{Path(model_path).stem}"
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
