"""Incremental embedding: only texts with no stored vector for the current model are encoded."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from models.encoder import TextEncoder
from pipelines.records import embed_text
from store import KINDS, Record, Store

Progress = Callable[[int, int], None]
Prompt = Literal["document", "query"]
Write = Callable[..., Any]  # runs a function that writes (the service's writer, or a direct call)


def _direct(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def encode_missing(store: Store, encoder: TextEncoder, records: Sequence[Record]) -> tuple[list[str], np.ndarray]:
    """(hashes, vectors) of the records' texts that have no stored document vector yet; writes nothing.

    The CPU-heavy half of embedding, done before a write is handed to the writer.
    """
    todo: dict[str, str] = {}
    for rec in records:
        todo.setdefault(rec.embed_hash, embed_text(rec.title, rec.text))
    missing = store.missing_hashes(vector_key(encoder.model_id), todo)
    if not missing:
        return [], np.zeros((0, encoder.dim), dtype=np.float32)
    return missing, encoder.encode_passages([todo[h] for h in missing])


def with_late_vectors(
    store: Store, encoder: TextEncoder, records: Sequence[Record], vectors: tuple[list[str], np.ndarray]
) -> tuple[list[str], np.ndarray]:
    """On the writer, just before ``records`` are stored: ``vectors`` (from :func:`encode_missing`)
    plus those of any of their texts whose stored vector went since (another record with the same
    text was edited or erased in between), encoded here. Rare; without it such a record would be
    stored with no vector, and left out of every search until the next start."""
    hashes, matrix = vectors
    have = set(hashes)
    late = [r for r in records if r.embed_hash not in have]
    if not late:
        return vectors
    more_hashes, more = encode_missing(store, encoder, late)
    if not more_hashes:
        return vectors
    if not hashes:
        return more_hashes, more
    return [*hashes, *more_hashes], np.concatenate([matrix, more])


def vector_key(model_id: str, prompt: Prompt = "document") -> str:
    """The model id under which vectors are cached: stored texts as documents, "|query" for query vectors.

    The theme job clusters query-prompt vectors (e5's advice for symmetric tasks, and measured
    better); they are cached beside the document vectors so each text is encoded once per prompt.
    """
    return model_id if prompt == "document" else f"{model_id}|{prompt}"


def embed_missing(
    store: Store,
    encoder: TextEncoder,
    kinds: Sequence[str] = KINDS,
    batch: int = 256,
    progress: Progress | None = None,
    show_bar: bool | None = None,
    prompt: Prompt = "document",
    records: Sequence[Record] | None = None,
    write: Write = _direct,
) -> int:
    """Encode and store vectors for records that have none for ``encoder.model_id`` (and ``prompt``).

    Vectors are written batch by batch, so an interrupted run keeps what it finished and the
    next run continues from there.

    Args:
        records: only these records (a new idea: the work follows the write, not the corpus);
            every record of ``kinds`` when omitted.
        write: runs each batch's store write (the service passes its writer; encoding stays here).

    Returns:
        The number of texts encoded.
    """
    todo: dict[str, str] = {}
    key = vector_key(encoder.model_id, prompt)
    # every record: the database names those without a vector (at 1M records, loading them all took 97 s)
    chosen = records if records is not None else [r for kind in kinds for r in store.records_without_vector(kind, key)]
    for rec in chosen:
        todo.setdefault(rec.embed_hash, embed_text(rec.title, rec.text))
    encode = encoder.encode_passages if prompt == "document" else encoder.encode_queries
    missing = store.missing_hashes(key, todo)
    if not missing:
        return 0
    bar = None
    if show_bar if show_bar is not None else (sys.stderr.isatty() and len(missing) > batch):
        from tqdm import tqdm

        bar = tqdm(total=len(missing), desc=f"embedding ({prompt})", unit="text")
    done = 0
    for start in range(0, len(missing), batch):
        hashes = missing[start : start + batch]
        vectors = encode([todo[h] for h in hashes])
        write(store.put_embeddings, key, hashes, vectors, only_stored=True)
        done += len(hashes)
        if bar is not None:
            bar.update(len(hashes))
        if progress is not None:
            progress(done, len(missing))
    if bar is not None:
        bar.close()
    return done
