"""What runs on the Ray workers: the encoder actor and the per-batch statistics of the theme job.

Every function here takes one batch of the exported items (a ``pyarrow.Table`` with the columns
``row``, ``text`` and, for the statistics, ``vector``) and returns a small dict of numpy columns;
the driver (``pipelines.themes.ray_engine``) merges the batches. Each output carries the ids of the
node and the worker process that computed it, so a run can tell where its work went. Nothing here touches the store.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matcher.swedish import Analyzer, words
from pipelines.themes.labels import theme_term_counts

TOKEN_BUDGET = 8_192  # tokens per forward pass of an encoder actor (padding included)
TOKENS_PER_TASK = 4 * TOKEN_BUDGET  # estimated tokens per Ray task of the encoders: about four forward passes
TASKS_PER_ACTOR = 4  # at least this many tasks per encoder actor, so a slow actor holds up little


@dataclass(frozen=True)
class EncoderSpec:
    """How a Ray actor builds its own encoder: the service's settings, not a pickled model.

    Calling the spec loads the model (once per actor). Mirrors ``idesluss.resources.Resources``.
    """

    model: str
    cache_dir: str
    theme_model: str = "same"
    batch_size: int = 32
    threads: int | None = 1
    precision: str = "fp32"
    engine: str = "auto"

    def __call__(self) -> Any:
        from models.registry import load_encoder, load_static_encoder

        enc = load_encoder(
            self.model,
            Path(self.cache_dir),
            batch_size=self.batch_size,
            threads=self.threads,
            precision=self.precision,
            engine=self.engine,
        )
        return load_static_encoder(enc, Path(self.cache_dir)) if self.theme_model == "static" else enc


def node_id() -> str:
    """The id of the Ray node this process runs on."""
    import ray

    return str(ray.get_runtime_context().get_node_id())


def worker_id() -> str:
    """This worker process: its node id and process id."""
    return f"{node_id()}:{os.getpid()}"


def resolve(value: Any) -> Any:
    """An object-store reference's value (large arrays are put once and shared by every batch)."""
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def token_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Positions grouped so each group's padded size (rows x longest) stays within ``budget`` tokens.

    Positions are taken shortest first, so texts of like length share a forward pass (the packed
    engine's own grouping, with no cap on the number of texts).
    """
    from models.packed import length_batches

    return length_batches(lengths, budget, max_texts=max(1, len(lengths)))


def estimated_tokens(texts: list[str]) -> list[int]:
    """Tokens per text estimated from its length (about four characters a token, plus the specials).

    The driver cuts the work into tasks with this estimate, without loading a tokenizer; the
    actors cut their forward passes by the tokenizer's own counts.
    """
    return [len(t) // 4 + 2 for t in texts]


def token_shards(lengths: list[int], per_shard: int, min_shards: int) -> list[list[int]]:
    """Positions sorted by length and cut into consecutive shards of about ``per_shard`` tokens.

    Each shard becomes one Ray task of the encoder pool, so the tasks cost about the same whatever
    the texts' lengths, and texts of like length share a task (little padding). The shard size
    shrinks so that there are at least ``min_shards`` shards when there are that many texts.

    Args:
        lengths: estimated tokens per text.
        per_shard: most tokens of a shard (a longer text gets a shard of its own).
        min_shards: fewest shards to aim for (every actor gets several tasks).

    Returns:
        Lists of positions; every position appears in exactly one.
    """
    if not lengths:
        return []
    total = sum(max(n, 1) for n in lengths)
    target = max(min(per_shard, total // max(min_shards, 1)), 1)
    shards: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        n = max(lengths[i], 1)
        if current and size + n > target:
            shards.append(current)
            current, size = [], 0
        current.append(i)
        size += n
    if current:
        shards.append(current)
    return shards


class EncodeBatch:
    """The encoder actor: one model load per actor, then query vectors for every batch it is given.

    Args:
        factory: builds the encoder (an :class:`EncoderSpec`, or any picklable callable).
        budget: tokens per forward pass (batches are sized by tokens, not rows).
    """

    def __init__(self, factory: Callable[[], Any], budget: int = TOKEN_BUDGET) -> None:
        self.encoder = factory()
        self.budget = budget
        self.node = node_id()

    def _lengths(self, texts: list[str]) -> list[int]:
        counter = getattr(self.encoder, "token_counts", None)
        if counter is not None:
            return [int(n) for n in counter(texts, "query")]
        return estimated_tokens(texts)  # encoders without a tokenizer

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        start, cpu = time.perf_counter(), time.process_time()
        texts = batch.column("text").to_pylist()
        out = np.zeros((len(texts), 0), np.float32)
        for group in token_batches(self._lengths(texts), self.budget):
            vecs = np.asarray(self.encoder.encode_queries([texts[i] for i in group]), dtype=np.float32)
            if out.shape[1] == 0:
                out = np.zeros((len(texts), vecs.shape[1]), np.float32)
            out[group] = vecs
        return {
            "hash": np.asarray(batch.column("hash").to_pylist(), dtype=object),
            "vector": out,
            "model_id": np.full(len(texts), self.encoder.model_id, dtype=object),
            "node": np.full(len(texts), self.node, dtype=object),
            "actor": np.full(len(texts), worker_id(), dtype=object),
            # the actor's busy time and CPU time for this batch, shared over its rows: CPU below busy
            # means the actor waited for a core (other processes on the node)
            "busy_s": np.full(len(texts), (time.perf_counter() - start) / max(len(texts), 1)),
            "cpu_s": np.full(len(texts), (time.process_time() - cpu) / max(len(texts), 1)),
        }


def batch_vectors(batch: Any) -> np.ndarray:
    """The ``vector`` column of a batch as a float32 matrix."""
    col = batch.column("vector").combine_chunks()
    dim = col.type.list_size
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(col), dim)


def label_sums(batch: Any, labels: Any, k: int, count_words: bool = False) -> dict[str, np.ndarray]:
    """Per-cluster vector sums and member counts of one batch (``labels`` are indices 0..k-1, -1 none).

    With ``count_words``, also the batch's word counts (for the label analyzer's lexicon), as JSON.
    """
    rows = batch.column("row").to_numpy()
    lab = resolve(labels)[rows]
    x = batch_vectors(batch)
    sums = np.zeros((k, x.shape[1]), np.float64)
    mask = lab >= 0
    np.add.at(sums, lab[mask], x[mask])
    counts = np.bincount(lab[mask], minlength=k)
    out = {
        "sums": sums[None],
        "counts": counts[None],
        "node": np.array([node_id()], dtype=object),
        "worker": np.array([worker_id()], dtype=object),
    }
    if count_words:
        c = Counter(w for t in batch.column("text").to_pylist() for w in words(t))
        out["words"] = np.array([json.dumps(c, ensure_ascii=False)], dtype=object)
    return out


def centroid_sims(batch: Any, labels: Any, cents: Any) -> dict[str, np.ndarray]:
    """Each row's cosine to its own centroid, and for rows in no cluster the nearest one and its cosine."""
    rows = batch.column("row").to_numpy()
    lab = resolve(labels)[rows]
    c = resolve(cents)
    n = len(rows)
    own = np.full(n, -1.0, np.float32)
    best = np.full(n, -1, np.int64)
    best_sim = np.full(n, -1.0, np.float32)
    if len(c):
        sims = batch_vectors(batch) @ c.T
        member = lab >= 0
        own[member] = sims[np.nonzero(member)[0], lab[member]]
        best = sims.argmax(axis=1)
        best_sim = sims[np.arange(n), best]
    return {
        "row": rows,
        "own": own.astype(np.float32),
        "best": best.astype(np.int64),
        "best_sim": best_sim.astype(np.float32),
        "node": np.full(len(rows), node_id(), dtype=object),
        "worker": np.full(len(rows), worker_id(), dtype=object),
    }


def sims_and_terms(batch: Any, labels: Any, cents: Any, doc_theme: Any, analyzer: Analyzer) -> dict[str, np.ndarray]:
    """:func:`centroid_sims` and the c-TF-IDF statistics of the batch's label documents in one pass.

    ``doc_theme`` maps a row to the theme index whose label sample it belongs to (-1: none). The
    statistics (JSON ``{theme: [document counts, surface forms]}``) ride in the ``stats`` column of
    the batch's first row (the others hold ""), so the driver can merge batches in row order and
    the surface-form tie-break matches the local engine's.
    """
    out = centroid_sims(batch, labels, cents)
    rows = out["row"]
    themes = resolve(doc_theme)[rows]
    texts = batch.column("text").to_pylist()
    by_theme: dict[int, list[str]] = {}
    for i in np.nonzero(themes >= 0)[0]:
        by_theme.setdefault(int(themes[i]), []).append(texts[i])
    stats = {k: theme_term_counts(analyzer, docs) for k, docs in by_theme.items()}
    blob = np.full(len(rows), "", dtype=object)
    if len(rows):
        blob[0] = json.dumps({k: [c, f] for k, (c, f) in stats.items()}, ensure_ascii=False)
    out["stats"] = blob
    return out
