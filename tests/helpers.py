"""Builders for test databases with known vectors (no model needed)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs

from pipelines.embed import vector_key
from pipelines.records import embed_text, text_hash
from store import Record, Store

WORDS = [
    ["cykelbana", "cykelvägar", "cyklister"],
    ["gatubelysning", "lampor", "mörkt"],
    ["snöröjning", "plogning", "halka"],
    ["bibliotek", "böcker", "läsning"],
    ["hemtjänst", "äldreomsorg", "personal"],
    ["busslinje", "hållplats", "kollektivtrafik"],
]


def blob_records(
    n_per: int = 60, centers: int = 6, dim: int = 32, seed: int = 0, start: int = 0
) -> tuple[list[Record], np.ndarray, np.ndarray]:
    """Ideas in ``centers`` well-separated blobs, with topic words matching their blob."""
    x, y = make_blobs(
        n_samples=n_per * centers,
        centers=centers,
        n_features=dim,
        cluster_std=1.0,
        center_box=(-10, 10),
        random_state=seed,
    )
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    records = []
    base = datetime(2025, 1, 1)
    for i, label in enumerate(y):
        words = WORDS[label % len(WORDS)]
        text = f"Förslag om {words[i % 3]} och {words[(i + 1) % 3]} nummer {start + i}"
        records.append(
            Record(
                id=f"X{start + i:05d}",
                text=text,
                embed_hash=text_hash(embed_text(None, text)),
                created_at=base + timedelta(days=int(i % 700)),
                department=f"Förvaltning {label}",
            )
        )
    return records, x, y


def store_with_vectors(
    path: Path, records: list[Record], vectors: np.ndarray, model_id: str, kind: str = "ideas"
) -> Store:
    """A store holding the records and their vectors under both prompts."""
    store = Store(path)
    store.upsert_records(kind, records)
    hashes = [r.embed_hash for r in records]
    store.put_embeddings(model_id, hashes, vectors)
    store.put_embeddings(vector_key(model_id, "query"), hashes, vectors)
    return store
