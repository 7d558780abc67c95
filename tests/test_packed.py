"""The packed (padding-free) engine against the plain transformers forward, on a small random BERT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.packed import PackedBert, length_batches


@given(st.lists(st.integers(1, 600), max_size=200), st.integers(1, 5000))
@settings(max_examples=200, deadline=None)
def test_length_batches_cover_every_index_once_within_budget(lengths: list[int], budget: int) -> None:
    groups = length_batches(lengths, budget, max_texts=64)
    flat = [i for g in groups for i in g]
    assert sorted(flat) == list(range(len(lengths)))
    for g in groups:
        assert len(g) <= 64
        padded = len(g) * max(lengths[i] for i in g)
        assert padded <= budget or len(g) == 1  # only a lone over-long text may exceed the budget
    # sorted by length: every group's texts are no longer than the next group's
    for a, b in zip(groups, groups[1:]):
        assert max(lengths[i] for i in a) <= min(lengths[i] for i in b)


@pytest.fixture(scope="module")
def tiny_bert():
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=120,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=80,
        hidden_act="gelu",
    )
    return BertModel(cfg).eval()


def _reference(model, seqs: list[list[int]], normalize: bool = True) -> np.ndarray:
    import torch

    longest = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), longest), dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
    with torch.inference_mode():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    means = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    if normalize:
        means = torch.nn.functional.normalize(means, dim=1)
    return means.numpy()


def _seqs(n: int, seed: int = 0, longest: int = 80) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[1, *rng.integers(5, 120, int(rng.integers(0, longest - 1))).tolist(), 2] for _ in range(n)]


def test_packed_fp32_equals_the_padded_forward(tiny_bert) -> None:
    seqs = _seqs(57)
    ours = PackedBert(tiny_bert, "fp32", token_budget=300).encode_ids(seqs)
    ref = _reference(tiny_bert, seqs)
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    raw = PackedBert(tiny_bert, "fp32").encode_ids(seqs[:5], normalize=False)
    np.testing.assert_allclose(raw, _reference(tiny_bert, seqs[:5], normalize=False), atol=2e-5)


def test_packed_order_and_batching_do_not_change_vectors(tiny_bert) -> None:
    seqs = _seqs(40, seed=3)
    small = PackedBert(tiny_bert, "fp32", token_budget=90).encode_ids(seqs)
    large = PackedBert(tiny_bert, "fp32", token_budget=10_000).encode_ids(seqs[::-1])[::-1]
    np.testing.assert_allclose(small, large, atol=2e-5)


def test_packed_bf16_stays_close(tiny_bert) -> None:
    seqs = _seqs(30, seed=5)
    ours = PackedBert(tiny_bert, "bf16").encode_ids(seqs)
    cos = (ours * _reference(tiny_bert, seqs)).sum(1)
    assert cos.min() > 0.995, cos.min()
    assert np.isfinite(ours).all()


def test_packed_refuses_what_it_cannot_run(tiny_bert) -> None:
    with pytest.raises(ValueError, match="limit is 80"):
        PackedBert(tiny_bert).encode_ids([[1] * 81])
    with pytest.raises(ValueError, match="unknown dtype"):
        PackedBert(tiny_bert, "int4")
    assert PackedBert(tiny_bert).encode_ids([]).shape == (0, 48)
