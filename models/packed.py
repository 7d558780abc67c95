"""A padding-free forward pass for BERT-style encoders (the default model's architecture).

sentence-transformers runs a batch as a rectangle: every text is padded to the longest one, and the
dense layers (four projections and the feed-forward block, ~95 % of the FLOPs) multiply the padding
too. Here the tokens of a batch are packed into one ``[tokens, hidden]`` matrix, so every dense layer
is a single large matrix product over useful tokens only; attention, the one step that needs the
sequences apart, scatters the packed rows into a padded ``[batch, heads, length, head_dim]`` view,
runs ``scaled_dot_product_attention`` with a key-padding mask, and gathers them back.

Batches are formed by length: texts are sorted by token count and cut into groups under a token
budget, so the attention padding is small and each matrix product has thousands of rows (large
products run near the machine's peak; small ones do not).

Weights are copied once from a loaded Hugging Face ``BertModel`` into fused tensors (query, key and
value in one matrix) in the chosen dtype: float32, or bfloat16 where the CPU has bfloat16 matrix
instructions (AMX / AVX-512 BF16), with layer norms and pooling accumulated in float32. The output
is the mean of the last hidden states over each text's tokens, L2-normalised: the same vector
sentence-transformers' mean pooling + Normalize gives (parity is tested in tests/test_model.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class _Layer:
    qkv_w: Any
    qkv_b: Any
    out_w: Any
    out_b: Any
    ln1: tuple[Any, Any]
    up_w: Any
    up_b: Any
    down_w: Any
    down_b: Any
    ln2: tuple[Any, Any]


def length_batches(lengths: Sequence[int], token_budget: int, max_texts: int = 256) -> list[list[int]]:
    """Indices grouped by length: sorted by token count, cut so a group's padded size stays in budget.

    A group's padded size is ``len(group) * longest``; every index appears exactly once; a text
    longer than the budget gets a group of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[i]  # sorted ascending: the newest is the longest
        if current and ((len(current) + 1) * longest > token_budget or len(current) >= max_texts):
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


class PackedBert:
    """Mean-pooled, normalised sentence vectors from a BERT encoder without computing padding.

    Args:
        hf_model: a loaded ``transformers`` BertModel (absolute positions, GELU, post-layer-norm).
        dtype: "fp32" or "bf16" (weights stored and multiplied in bfloat16, float32 accumulation).
        token_budget: padded tokens per forward pass.
    """

    def __init__(self, hf_model: Any, dtype: str = "fp32", token_budget: int = 4096) -> None:
        import torch

        if dtype not in ("fp32", "bf16"):
            raise ValueError(f"unknown dtype {dtype!r}; use 'fp32' or 'bf16'")
        cfg = hf_model.config
        if getattr(cfg, "model_type", "") != "bert" or getattr(cfg, "hidden_act", "") != "gelu":
            raise ValueError(
                "PackedBert supports BERT encoders with GELU (the default model); "
                f"got {cfg.model_type!r} / {getattr(cfg, 'hidden_act', '?')!r}"
            )
        self.heads = int(cfg.num_attention_heads)
        self.hidden = int(cfg.hidden_size)
        self.eps = float(cfg.layer_norm_eps)
        self.max_len = int(cfg.max_position_embeddings)
        self.token_budget = token_budget
        self.dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
        wt = self.dtype

        def t(x: Any, dt: Any = wt) -> Any:
            return x.detach().to(dt).contiguous()

        emb = hf_model.embeddings
        self.word = t(emb.word_embeddings.weight, torch.float32)
        self.pos = t(emb.position_embeddings.weight, torch.float32)
        self.type0 = t(emb.token_type_embeddings.weight[0], torch.float32)
        self.emb_ln = (t(emb.LayerNorm.weight, torch.float32), t(emb.LayerNorm.bias, torch.float32))
        self.layers: list[_Layer] = []
        for layer in hf_model.encoder.layer:
            att = layer.attention
            q, k, v = att.self.query, att.self.key, att.self.value
            self.layers.append(
                _Layer(
                    qkv_w=t(torch.cat([q.weight, k.weight, v.weight])),
                    qkv_b=t(torch.cat([q.bias, k.bias, v.bias])),
                    out_w=t(att.output.dense.weight),
                    out_b=t(att.output.dense.bias),
                    ln1=(t(att.output.LayerNorm.weight), t(att.output.LayerNorm.bias)),
                    up_w=t(layer.intermediate.dense.weight),
                    up_b=t(layer.intermediate.dense.bias),
                    down_w=t(layer.output.dense.weight),
                    down_b=t(layer.output.dense.bias),
                    ln2=(t(layer.output.LayerNorm.weight), t(layer.output.LayerNorm.bias)),
                )
            )

    def encode_ids(self, seqs: Sequence[Sequence[int]], normalize: bool = True, max_texts: int = 256) -> np.ndarray:
        """Vectors for token-id sequences (special tokens included, each at most ``max_len`` long).

        With ``normalize=False`` the raw token means are returned (the long-text windows combine them).
        """
        out = np.zeros((len(seqs), self.hidden), dtype=np.float32)
        if not seqs:
            return out
        lengths = [len(s) for s in seqs]
        if max(lengths) > self.max_len:
            raise ValueError(f"a sequence has {max(lengths)} tokens; the model's limit is {self.max_len}")
        for group in length_batches(lengths, self.token_budget, max_texts):
            out[group] = self._forward([seqs[i] for i in group], normalize)
        return out

    def _forward(self, seqs: list[Sequence[int]], normalize: bool) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        lengths = torch.tensor([len(s) for s in seqs])
        batch, longest = len(seqs), int(lengths.max())
        ids = torch.tensor([i for s in seqs for i in s], dtype=torch.long)
        positions = torch.cat([torch.arange(n) for n in lengths.tolist()])
        # row of each packed token in the padded [batch * longest] layout
        slots = torch.cat([b * longest + torch.arange(n) for b, n in enumerate(lengths.tolist())])
        # additive key-padding mask, one row per (text, head) score matrix
        key_bias = torch.zeros((batch, longest), dtype=self.dtype).masked_fill_(
            torch.arange(longest)[None, :] >= lengths[:, None], float("-inf")
        )
        key_bias = key_bias[:, None, None, :].expand(batch, self.heads, 1, longest).reshape(-1, 1, longest)
        h, d, eps = self.hidden, self.hidden // self.heads, self.eps
        with torch.inference_mode():
            x = self.word[ids] + self.pos[positions] + self.type0
            x = F.layer_norm(x, (h,), *self.emb_ln, eps).to(self.dtype)
            for L in self.layers:
                qkv = F.linear(x, L.qkv_w, L.qkv_b)
                padded = qkv.new_zeros((batch * longest, 3 * h))
                padded[slots] = qkv
                q, k, v = (
                    part.reshape(batch * self.heads, longest, d)
                    for part in padded.view(batch, longest, 3, self.heads, d).permute(2, 0, 3, 1, 4).unbind(0)
                )
                # plain batched products: faster here than the fused kernel for short texts
                scores = torch.baddbmm(key_bias, q, k.transpose(1, 2), alpha=d**-0.5)
                # softmax in float32: more exact, and on this CPU faster than the bfloat16 kernel
                weights = torch.softmax(scores, -1, dtype=torch.float32).to(self.dtype)
                ctx = torch.bmm(weights, v).view(batch, self.heads, longest, d)
                ctx = ctx.transpose(1, 2).reshape(batch * longest, h)[slots]
                x = F.layer_norm(F.linear(ctx, L.out_w, L.out_b) + x, (h,), *L.ln1, eps)
                up = F.gelu(F.linear(x, L.up_w, L.up_b))
                x = F.layer_norm(F.linear(up, L.down_w, L.down_b) + x, (h,), *L.ln2, eps)
            owner = torch.repeat_interleave(torch.arange(batch), lengths)
            sums = torch.zeros((batch, h), dtype=torch.float32).index_add_(0, owner, x.float())
            means = sums / lengths[:, None]
            return (F.normalize(means, dim=1) if normalize else means).numpy()
