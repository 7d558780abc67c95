"""Character n-gram TF-IDF (3-5 grams within word boundaries), hashed, with incremental appends.

It catches what word stems miss: spelling variants, typos ("hemtjänsen"), inflections the stemmer
does not fold, and compounds whose parts no lexicon knows. Vectors are hashed into a fixed space so
new documents never change the feature set; idf comes from running document frequencies. New
documents go to a small buffer (their norms computed with the idf of the moment) that is folded
into the main column-ordered matrix, with all norms recomputed, once it has grown by a tenth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

N_FEATURES = 1 << 20


class CharNgramIndex:
    """Cosine over sublinear-tf, idf-weighted character n-grams.

    Args:
        ngram_range: n-gram lengths.
    """

    def __init__(self, ngram_range: tuple[int, int] = (3, 5)) -> None:
        self._hasher = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=ngram_range,
            n_features=N_FEATURES,
            alternate_sign=False,
            norm=None,
            lowercase=True,
        )
        self._df = np.zeros(N_FEATURES, dtype=np.float32)
        self._main = sp.csc_matrix((0, N_FEATURES), dtype=np.float32)
        self._delta: list[sp.csr_matrix] = []
        self._norms = np.zeros(0, dtype=np.float32)
        self.size = 0

    def _tf(self, texts: Sequence[str]) -> sp.csr_matrix:
        x = self._hasher.transform(texts).tocsr().astype(np.float32)
        x.data = 1.0 + np.log(x.data)
        return x

    def _idf(self) -> np.ndarray:
        return (np.log((1.0 + self.size) / (1.0 + self._df)) + 1.0).astype(np.float32)

    @staticmethod
    def _row_norms(x: sp.csr_matrix, idf: np.ndarray) -> np.ndarray:
        w = x.copy()
        w.data = w.data * idf[w.indices]
        return np.sqrt(np.asarray(w.multiply(w).sum(axis=1)).ravel()).astype(np.float32) + 1e-9

    def add(self, texts: Sequence[str]) -> None:
        """Append documents."""
        if not texts:
            return
        x = self._tf(texts)
        np.add.at(self._df, x.indices, 1.0)
        self.size += x.shape[0]
        self._norms = np.concatenate([self._norms, self._row_norms(x, self._idf())])
        self._delta.append(x)
        if sum(d.shape[0] for d in self._delta) > max(1000, self._main.shape[0] // 10):
            self._fold()

    def _fold(self) -> None:
        blocks = [self._main.tocsr(), *self._delta] if self._main.shape[0] else list(self._delta)
        merged = sp.vstack(blocks).tocsr()
        self._norms = self._row_norms(merged, self._idf())
        self._main = merged.tocsc()
        self._delta = []

    def scores(self, text: str) -> np.ndarray:
        """Cosine of every document with ``text``."""
        out = np.zeros(self.size, dtype=np.float32)
        if not self.size:
            return out
        idf = self._idf()
        q = self._tf([text])
        cols, qtf = q.indices, q.data
        if not len(cols):
            return out
        qw = qtf * idf[cols]
        qnorm = float(np.sqrt((qw**2).sum())) + 1e-9
        weights = (qw * idf[cols]).astype(np.float32)
        n_main = self._main.shape[0]
        if n_main:
            sub = self._main[:, cols]
            out[:n_main] = sub @ weights
        row = n_main
        for block in self._delta:
            out[row : row + block.shape[0]] = block[:, cols] @ weights
            row += block.shape[0]
        return out / (self._norms * qnorm)
