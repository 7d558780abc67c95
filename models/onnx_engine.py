"""The ONNX Runtime int8 engine: the default model's transformer, exported once and quantised.

The transformer is exported (``torch.onnx.export``, eager attention so the graph is plain
operators), simplified with ONNX Runtime's transformer optimiser (fused GELU and skip layer norms),
and quantised with dynamic int8 quantisation (per-channel int8 weights, activations quantised per
call; int8 products on AVX2 / AVX-512 VNNI). The files live in ``<cache>/onnx/<model>/`` behind a
completion marker, so later runs reuse them.

ONNX Runtime and the ``onnx`` package are optional: they are imported only when this engine is
chosen, and a missing one is named in the error. ONNX Runtime runs rectangles, so texts are batched
by length (:func:`models.packed.length_batches`) to keep the padding small.
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
from models.optional import require
from models.packed import length_batches

MARKER = "idesluss-onnx.json"
EXPORT_VERSION = 1


def onnx_dir(cache_dir: Path, model_id: str) -> Path:
    """Where the exported files of ``model_id`` live."""
    return Path(cache_dir) / "onnx" / path_safe(model_id)


def ensure_onnx(hf_model: Any, model_id: str, cache_dir: Path) -> Path:
    """Export, optimise and quantise ``hf_model`` (a ``transformers`` BERT) into the cache, once.

    Returns:
        The directory holding ``fp32.onnx`` and ``int8.onnx``.
    """
    target = onnx_dir(cache_dir, model_id)
    try:
        if json.loads((target / MARKER).read_text()).get("version") == EXPORT_VERSION:
            return target
    except (OSError, ValueError):
        pass
    require("onnx", "onnx-int8")
    require("onnxruntime", "onnx-int8")
    started = time.perf_counter()
    with building(target) as tmp:
        _export(hf_model, tmp / "raw.onnx")
        _optimise_and_quantise(hf_model.config, tmp)
        meta = {"version": EXPORT_VERSION, "model": model_id, "seconds": round(time.perf_counter() - started, 1)}
        (tmp / MARKER).write_text(json.dumps(meta))
    return target


def _export(hf_model: Any, path: Path) -> None:
    import torch

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
    previous = hf_model.config._attn_implementation
    hf_model.set_attn_implementation("eager")  # plain operators, which the optimiser understands
    try:
        torch.onnx.export(
            Hidden(hf_model).eval(),
            example,
            str(path),
            input_names=list(axes)[:2],
            output_names=["hidden"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    finally:
        hf_model.set_attn_implementation(previous)


def _optimise_and_quantise(cfg: Any, tmp: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

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


class OnnxBert:
    """Mean-pooled sentence vectors from an exported transformer (the packed engine's interface).

    Args:
        model_path: an ``.onnx`` file from :func:`ensure_onnx` (input ids and mask -> hidden states).
        pad_id: the tokenizer's padding id.
        max_len: the model's window in tokens.
        threads: intra-op threads (all cores when None).
        token_budget: padded tokens per run.
    """

    def __init__(
        self, model_path: Path, pad_id: int, max_len: int, threads: int | None = None, token_budget: int = 2048
    ) -> None:
        ort = require("onnxruntime", "onnx-int8")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle threads sleep instead of spinning: the service shares its cores with the database,
        # the HTTP server and torch's own pool
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.pad_id = pad_id
        self.max_len = max_len
        self.token_budget = token_budget

    def encode_ids(self, seqs: Sequence[Sequence[int]], normalize: bool = True) -> np.ndarray:
        """Vectors for token-id sequences (special tokens included, each at most ``max_len`` long)."""
        out: np.ndarray | None = None
        for group in length_batches([len(s) for s in seqs], self.token_budget):
            longest = max(len(seqs[i]) for i in group)
            if longest > self.max_len:
                raise ValueError(f"a sequence has {longest} tokens; the model's limit is {self.max_len}")
            ids = np.full((len(group), longest), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(group), longest), dtype=np.int64)
            for row, i in enumerate(group):
                ids[row, : len(seqs[i])] = seqs[i]
                mask[row, : len(seqs[i])] = 1
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            means = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            if normalize:
                means = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
            if out is None:
                out = np.zeros((len(seqs), means.shape[1]), dtype=np.float32)
            out[group] = means
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)
