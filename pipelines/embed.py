"""Incremental embedding: only texts with no stored vector for the current model are encoded."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from models.encoder import TextEncoder
from pipelines.records import embed_text
from store import KINDS, Store

Progress = Callable[[int, int], None]


def embed_missing(store: Store, encoder: TextEncoder, kinds: Sequence[str] = KINDS, batch: int = 256,
                  progress: Progress | None = None, show_bar: bool | None = None) -> int:
    """Encode and store vectors for records that have none for ``encoder.model_id``.

    Vectors are written batch by batch, so an interrupted run keeps what it finished and the
    next run continues from there.

    Returns:
        The number of texts encoded.
    """
    todo: dict[str, str] = {}
    for kind in kinds:
        for rec in store.records(kind):
            todo.setdefault(rec.embed_hash, embed_text(rec.title, rec.text))
    missing = store.missing_hashes(encoder.model_id, todo)
    if not missing:
        return 0
    bar = None
    if show_bar if show_bar is not None else (sys.stderr.isatty() and len(missing) > batch):
        from tqdm import tqdm

        bar = tqdm(total=len(missing), desc="embedding", unit="text")
    done = 0
    for start in range(0, len(missing), batch):
        hashes = missing[start : start + batch]
        vectors = encoder.encode_passages([todo[h] for h in hashes])
        store.put_embeddings(encoder.model_id, hashes, vectors)
        done += len(hashes)
        if bar is not None:
            bar.update(len(hashes))
        if progress is not None:
            progress(done, len(missing))
    if bar is not None:
        bar.close()
    return done
