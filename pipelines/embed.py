"""Incremental embedding: only texts with no stored vector for the current model are encoded."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Literal

from models.encoder import TextEncoder
from pipelines.records import embed_text
from store import KINDS, Record, Store

Progress = Callable[[int, int], None]
Prompt = Literal["document", "query"]


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
) -> int:
    """Encode and store vectors for records that have none for ``encoder.model_id`` (and ``prompt``).

    Vectors are written batch by batch, so an interrupted run keeps what it finished and the
    next run continues from there.

    Args:
        records: only these records (a new idea: the work follows the write, not the corpus);
            every record of ``kinds`` when omitted.

    Returns:
        The number of texts encoded.
    """
    todo: dict[str, str] = {}
    chosen = records if records is not None else [rec for kind in kinds for rec in store.records(kind)]
    for rec in chosen:
        todo.setdefault(rec.embed_hash, embed_text(rec.title, rec.text))
    key = vector_key(encoder.model_id, prompt)
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
        store.put_embeddings(key, hashes, vectors)
        done += len(hashes)
        if bar is not None:
            bar.update(len(hashes))
        if progress is not None:
            progress(done, len(missing))
    if bar is not None:
        bar.close()
    return done
