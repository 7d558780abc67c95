"""Large arrays kept in files that only this process can see, mapped into its memory.

A large collection's dense vectors and character n-grams are most of its memory, and a search reads
a few hundred rows of them. Held in anonymous memory they count fully against the server, and the
kernel can only swap them; held in a file mapping, only the pages that searches touch are resident,
and the kernel can drop clean pages under memory pressure and read them again when needed (the
page cache does the caching). Lucene and usearch's ``view`` work this way.

Each :class:`MappedArray` is a file created in the index's directory and unlinked at once: it has
no name, so nothing else can open it, and the kernel frees it when the process ends, a crash
included (no stale file to clean up). Its blocks are reserved with ``posix_fallocate`` before they
are mapped, so a full disk is an ``OSError`` when the array is made or grown, never a ``SIGBUS``
on a later write. The mapping is shared and writable: an erasure that overwrites a row overwrites
it in the file (which is then written back), so the file keeps no erased row either.

Readers that took the array before a :meth:`MappedArray.grow` keep their (older, shorter) mapping
of the same file, and see every write made through the new one: both map the same pages.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import weakref
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import IO

import numpy as np

COPY_ROWS = 65_536  # rows copied at a time (no full temporary copy of the source)
COPY_BYTES = 64 << 20  # bytes read at a time from a stream


class MappedArray:
    """A C-ordered array of rows (``shape[1:]`` fixed) in an unlinked file, growable by rows.

    Args:
        directory: where the file is created (then unlinked at once); the index's own directory.
        source: the initial contents (copied in, in pieces; any array, a memory map included).
        capacity: rows to reserve (at least ``len(source)``; rows past it read as zeros).
    """

    def __init__(self, directory: str | Path, source: np.ndarray, capacity: int | None = None) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=".mapped-", dir=directory)
        os.unlink(path)
        self._fd = fd
        weakref.finalize(self, os.close, fd)  # each mapping keeps its own reference to the file
        self.dtype = np.dtype(source.dtype)
        self.row_shape = tuple(source.shape[1:])
        self.array = self._map(max(len(source), capacity or 0))
        # written to the file, not through the mapping: the pages go to the page cache without
        # becoming this process's resident memory (a search maps in the ones it reads)
        for start in range(0, len(source), COPY_ROWS):
            stop = min(start + COPY_ROWS, len(source))
            chunk = np.ascontiguousarray(source[start:stop], dtype=self.dtype).reshape(-1).view(np.uint8).data
            done = 0
            while done < len(chunk):
                done += os.pwrite(self._fd, chunk[done:], start * self.row_bytes + done)

    @classmethod
    def from_npy(cls, directory: str | Path, stream: IO[bytes]) -> MappedArray:
        """An array read from an open ``.npy`` stream (a member of an ``.npz``, say) straight into the
        file, a piece at a time: never whole in memory.

        Raises:
            ValueError: not a plain C-ordered ``.npy`` array (object arrays and Fortran order are refused).
        """
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
        if fortran or dtype.hasobject or not shape:
            raise ValueError(f"not a plain C-ordered array: shape {shape}, dtype {dtype}, fortran {fortran}")
        out = cls(directory, np.zeros((0, *shape[1:]), dtype=dtype), capacity=shape[0])
        total, done = out.row_bytes * shape[0], 0
        while done < total:
            piece = stream.read(min(COPY_BYTES, total - done))
            if not piece:
                raise ValueError(f"the .npy stream ended after {done} of {total} bytes")
            view = memoryview(piece)
            while view:
                written = os.pwrite(out._fd, view, done)
                done, view = done + written, view[written:]
        return out

    @property
    def row_bytes(self) -> int:
        return int(self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64)))

    def _map(self, rows: int) -> np.ndarray:
        size = max(rows, 1) * max(self.row_bytes, 1)  # a zero-length mapping is an error
        os.posix_fallocate(self._fd, 0, size)
        whole = np.frombuffer(mmap.mmap(self._fd, size), dtype=self.dtype)  # shared and writable
        return whole[: max(rows, 1) * (self.row_bytes // self.dtype.itemsize or 1)].reshape(
            max(rows, 1), *self.row_shape
        )[:rows]

    def grow(self, rows: int) -> np.ndarray:
        """The array with room for ``rows`` rows (new rows zero); the file grows, nothing is copied."""
        if rows > len(self.array):
            self.array = self._map(rows)
        return self.array


def is_mapped(array: np.ndarray) -> bool:
    """Whether ``array`` (or the array it views) lives in a file mapping."""
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


def load_npz(path: str | Path, mapped: Collection[str], directory: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` (``np.savez``); those named in ``mapped`` are read straight
    into file mappings in ``directory`` (:meth:`MappedArray.from_npy`), the others into memory."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            key = name.removesuffix(".npy")
            with archive.open(name) as member:
                if key in mapped:
                    out[key] = MappedArray.from_npy(directory, member).array
                else:
                    out[key] = np.lib.format.read_array(member, allow_pickle=False)
    return out
