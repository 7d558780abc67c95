"""A fake keyword encoder for unit tests: exact, fast, and with a known geometry."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from matcher.swedish import stem, words


class KeywordEncoder:
    """Bag of stemmed words hashed into ``dim`` buckets, L2-normalised.

    Two texts sharing no stem are orthogonal (up to hash collisions, avoided by the tests' word
    choice); queries and passages are encoded alike. ``calls`` counts encoded texts, ``seen`` keeps them.
    """

    def __init__(self, dim: int = 256, model_id: str = "fake-keywords") -> None:
        self.dim = dim
        self.model_id = model_id
        self.calls = 0
        self.seen: list[str] = []  # every text encoded, in order

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for w in words(text):
            h = int(hashlib.md5(stem(w).encode()).hexdigest(), 16) % self.dim
            v[h] += 1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += len(texts)
        self.seen.extend(texts)
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_queries(texts)
