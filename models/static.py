"""A static embedding model distilled from the default transformer: the opt-in fast path.

The recipe is model2vec's (Tulkens and van Dongen, 2024): run every vocabulary token through the
transformer on its own, keep the mean of its output states as that token's vector, reduce the
vectors with PCA, and weight each by ``sif / (sif + p(token))`` with a Zipf estimate of the token's
probability from its rank in the vocabulary (a SentencePiece vocabulary is ordered by score), so
frequent tokens count less. A text's vector is then the mean of its tokens' vectors, normalised: no
attention, no matrix products per text: tens of times faster than the transformer and noticeably
less accurate (the README's encoder table has both figures).

The forward passes run through :class:`models.packed.PackedBert` in bfloat16 where the CPU has it
(each input is three tokens, so nothing is padded). The result is saved in model2vec's layout
(``model.safetensors`` with an ``embeddings`` tensor, ``tokenizer.json``, ``config.json``) through a
temporary directory and a rename, with a completion marker, like the default model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.atomic import building, path_safe

log = logging.getLogger(__name__)

STATIC_SUFFIX = "-static"
MARKER = "idesluss-static.json"


def static_dir(cache_dir: Path, base_model_id: str, dims: int) -> Path:
    return Path(cache_dir) / f"{path_safe(base_model_id)}{STATIC_SUFFIX}{dims}"


def token_vectors(encoder: Any, ids: Sequence[int], batch_tokens: int = 1024) -> np.ndarray:
    """Mean output state of ``[CLS] token [SEP]`` for every token id (the packed engine's batches)."""
    tok = encoder.model.tokenizer
    seqs = [[tok.cls_token_id, int(i), tok.sep_token_id] for i in ids]
    packed = encoder.packed
    saved, packed.token_budget = packed.token_budget, batch_tokens
    try:  # three tokens each: nothing to pad, so one large batch per forward pass
        return packed.encode_ids(seqs, normalize=False, max_texts=batch_tokens // 3)
    finally:
        packed.token_budget = saved


def sif_weights(n: int, first_rank: int, sif: float = 1e-4) -> np.ndarray:
    """``sif / (sif + p)`` with ``p`` a Zipf probability from each token's rank (ids in score order)."""
    ranks = np.arange(n, dtype=np.float64) - first_rank
    ranks = np.maximum(ranks, 0) + 1
    p = (1 / ranks) / (1 / ranks).sum()
    return (sif / (sif + p)).astype(np.float32)


def distill(encoder: Any, target: Path, dims: int = 256, sif: float = 1e-4, limit: int | None = None) -> Path:
    """Distil ``encoder`` (which must run the packed engine) into a static model at ``target``."""
    from safetensors.numpy import save_file
    from sklearn.decomposition import PCA

    if getattr(encoder, "packed", None) is None:
        raise ValueError("static distillation needs a BERT model the packed engine runs (the default does)")
    tok = encoder.model.tokenizer
    vocab_size = len(tok) if limit is None else min(limit, len(tok))
    special = set(tok.all_special_ids)
    started = time.perf_counter()
    vectors = token_vectors(encoder, range(vocab_size))
    log.info("static model: %d token vectors in %.0f s", vocab_size, time.perf_counter() - started)
    dims = min(dims, vectors.shape[1])
    pca = PCA(n_components=dims, svd_solver="randomized", random_state=0)
    reduced = pca.fit_transform(vectors).astype(np.float32)
    first = max(special) + 1 if special else 0
    reduced *= sif_weights(vocab_size, first, sif)[:, None]
    reduced[sorted(i for i in special if i < vocab_size)] = 0.0
    with building(target) as tmp:
        save_file({"embeddings": reduced}, str(tmp / "model.safetensors"))
        tok.backend_tokenizer.save(str(tmp / "tokenizer.json"))
        (tmp / "config.json").write_text(
            json.dumps(
                {
                    "model_type": "model2vec",
                    "architectures": ["StaticModel"],
                    "hidden_dim": dims,
                    "normalize": True,
                    "base_model": encoder.model_id,
                    "apply_pca": dims,
                    "sif_coefficient": sif,
                    "tokenizer_name": encoder.model_id,
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        (tmp / MARKER).write_text(
            json.dumps(
                {
                    "base_model": encoder.model_id,
                    "dims": dims,
                    "vocab": vocab_size,
                    "seconds": round(time.perf_counter() - started, 1),
                }
            ),
            encoding="utf-8",
        )
    return target


class StaticEncoder:
    """Mean of static token vectors: the same interface as :class:`models.encoder.Encoder`.

    There is no query/passage prompt: a static model sees a bag of tokens.
    """

    def __init__(self, path: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = Path(path)
        if not (path / MARKER).is_file():
            raise ValueError(f"{path} is not a complete static model (no {MARKER}); rebuild it")
        self.vectors = load_file(str(path / "model.safetensors"))["embeddings"].astype(np.float32)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        meta = json.loads((path / MARKER).read_text(encoding="utf-8"))
        self.dim = int(self.vectors.shape[1])
        self.model_id = f"{meta['base_model']}{STATIC_SUFFIX}{self.dim}"

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        encs = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encs]
        ids = [i[i < len(self.vectors)] for i in ids]
        lengths = np.array([len(i) for i in ids])
        nonempty = np.flatnonzero(lengths)
        if len(nonempty):
            flat = np.concatenate([ids[i] for i in nonempty])
            starts = np.concatenate([[0], np.cumsum(lengths[nonempty])[:-1]])
            out[nonempty] = np.add.reduceat(self.vectors[flat], starts, axis=0) / lengths[nonempty, None]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def ensure_static_model(encoder: Any, cache_dir: Path, dims: int = 256) -> Path:
    """The static model distilled from ``encoder``, built into the cache on first use (about a minute)."""
    target = static_dir(cache_dir, encoder.model_id, dims)
    if not (target / MARKER).is_file():
        log.info("distilling a static model from %s into %s", encoder.model_id, target)
        distill(encoder, target, dims=dims)
    return target
