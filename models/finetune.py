"""Fine-tuning the encoder on text pairs, and the learned versions of the default model.

A learned version is a sentence-transformers directory under ``<cache_dir>/learned/<name>/`` with a
``manifest.json`` (its model id, the version it replaced, the fusion weights learned with it and
the held-out figures that justified it). ``<cache_dir>/learned/current`` names the version in use
("default" or absent: the embedded default model). Both are written atomically, so a reader sees
the old or the new version, never half of one; no database change is involved: vectors are keyed
by model id, and a new id simply has none yet.

This module knows text pairs, not ideas or needs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LEARNED_DIR = "learned"
POINTER = "current"
MANIFEST = "manifest.json"
BASE = "default"  # the pointer's value for the embedded default model
N_LAYERS = 12  # transformer layers of e5-small


@dataclass(frozen=True)
class TrainPair:
    """One training example: a query text, a text that answers it, and texts a coach rejected for it."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class LearnedVersion:
    """A learned model on disk."""

    name: str
    path: Path
    manifest: dict[str, Any] = field(hash=False)

    @property
    def model_id(self) -> str:
        """The id its vectors are stored under."""
        return str(self.manifest["model_id"])

    @property
    def previous(self) -> str:
        """The version it replaced ("default" for the embedded model)."""
        return str(self.manifest.get("previous") or BASE)

    @property
    def fusion(self) -> dict[str, float] | None:
        """Fusion weights learned with it (None when it carries none)."""
        return self.manifest.get("fusion")


def learned_root(cache_dir: Path) -> Path:
    """Where learned versions live."""
    return Path(cache_dir) / LEARNED_DIR


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_version(cache_dir: Path, name: str) -> LearnedVersion:
    """The version ``name``.

    Raises:
        ValueError: no such version, or its manifest is unreadable.
    """
    path = learned_root(cache_dir) / name
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"learned model version {name!r} under {path.parent} is missing or damaged ({exc})") from None
    return LearnedVersion(name, path, manifest)


def current_name(cache_dir: Path) -> str:
    """The name in the ``current`` pointer ("default" when there is none)."""
    try:
        name = (learned_root(cache_dir) / POINTER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return BASE
    return name or BASE


def current_version(cache_dir: Path) -> LearnedVersion | None:
    """The learned version in use, or None for the embedded default model.

    Raises:
        ValueError: the pointer names a version that is missing or damaged (never a silent fallback:
            falling back would change the model id and re-embed everything); ``idesluss learn
            --rollback`` moves the pointer back.
    """
    name = current_name(cache_dir)
    return None if name == BASE else load_version(cache_dir, name)


def switch_to(cache_dir: Path, name: str) -> None:
    """Point ``current`` at version ``name`` (or "default"), atomically."""
    if name != BASE:
        load_version(cache_dir, name)  # refuse to point at nothing
    _atomic_write(learned_root(cache_dir) / POINTER, name + "\n")


def rollback(cache_dir: Path) -> str:
    """Return to the version the current one replaced; returns the name now in use.

    A pointer to a missing or damaged version is reset to the default model.

    Raises:
        ValueError: the default model is already in use (nothing to roll back).
    """
    name = current_name(cache_dir)
    if name == BASE:
        raise ValueError("nothing to roll back: the embedded default model is in use")
    try:
        previous = load_version(cache_dir, name).previous
        if previous != BASE:
            load_version(cache_dir, previous)
    except ValueError:
        log.warning("learned version %s or its predecessor is damaged; returning to the default model", name)
        previous = BASE
    switch_to(cache_dir, previous)
    return previous


def next_version_name(cache_dir: Path) -> str:
    """``v001``, ``v002``, ... (one more than the highest on disk)."""
    root = learned_root(cache_dir)
    numbers = [int(p.name[1:]) for p in root.glob("v[0-9][0-9][0-9]*") if p.is_dir() and p.name[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1:03d}"


def weights_digest(model_dir: Path) -> str:
    """A short digest of a model directory's weight files (part of the model id)."""
    digest = hashlib.sha256()
    files = sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin"))
    for f in files or sorted(p for p in model_dir.iterdir() if p.is_file()):
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:10]


def save_version(
    cache_dir: Path, model_dir: Path, root_model_id: str, previous: str, extra: dict[str, Any]
) -> LearnedVersion:
    """Move a trained model directory in as the next version, with its manifest (not switched to).

    Args:
        model_dir: a finished sentence-transformers directory (moved, not copied).
        root_model_id: the id of the model the chain of versions started from.
        previous: the version in use when this one was trained ("default" for the embedded model).
        extra: more manifest fields (fusion weights, training and held-out figures).
    """
    from models.atomic import building

    name = next_version_name(cache_dir)
    manifest = {
        "version": name,
        "model_id": f"{root_model_id}+learned-{name}-{weights_digest(model_dir)}",
        "root_model_id": root_model_id,
        "previous": previous,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
    target = learned_root(cache_dir) / name
    with building(target) as tmp:
        for item in Path(model_dir).iterdir():
            os.replace(item, tmp / item.name)
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return load_version(cache_dir, name)


# -- training ------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """How the encoder is fine-tuned (defaults chosen on SweFAQ dev's training half, docs/learning.md).

    Attributes:
        epochs: passes over the pairs.
        batch_size: pairs per step; the other pairs' positives are each query's in-batch negatives.
        lr: AdamW learning rate (linear warm-up over the first tenth, then linear decay).
        max_seq_length: tokens per text during training (longer texts are cut, as e5 was trained).
        scale: inverse temperature of the in-batch softmax.
        freeze_embeddings: keep the 250k-row word embedding fixed (3/4 of the weights: faster steps
            and less forgetting of words the feedback never shows).
        train_layers: how many of the top transformer layers are tuned (None: all); the layers below
            stay fixed, so the backward pass stops early (CPU time) and less is forgotten.
        seed: shuffling and dropout.
    """

    epochs: int = 1
    batch_size: int = 16
    lr: float = 3e-5
    max_seq_length: int = 128
    scale: float = 20.0
    freeze_embeddings: bool = True
    train_layers: int | None = 6
    seed: int = 0


def _batches(pairs: Sequence[TrainPair], size: int, rng: random.Random) -> list[list[TrainPair]]:
    """Shuffled batches in which no two pairs share a positive (it would be a false in-batch negative)."""
    order = list(pairs)
    rng.shuffle(order)
    batches: list[list[TrainPair]] = []
    open_: list[tuple[list[TrainPair], set[str]]] = []
    for pair in order:
        for batch, seen in open_:
            if pair.positive not in seen and len(batch) < size:
                batch.append(pair)
                seen.add(pair.positive)
                break
        else:
            open_.append(([pair], {pair.positive}))
        full = [b for b in open_ if len(b[0]) >= size]
        batches += [b for b, _ in full]
        open_ = [b for b in open_ if len(b[0]) < size]
    batches += [b for b, _ in open_ if len(b) > 1]  # a batch of one has no in-batch negative
    rng.shuffle(batches)
    return batches


def _negative(pair: TrainPair, pool: Sequence[str], rng: random.Random) -> str:
    """The pair's hard negative (a rejected text), else a random passage that is not its positive."""
    if pair.negatives:
        return rng.choice(pair.negatives)
    for _ in range(10):
        other = rng.choice(pool)
        if other != pair.positive:
            return other
    return pool[0]


def _frozen(name: str, cfg: TrainConfig) -> bool:
    """Whether the parameter ``name`` stays fixed under ``cfg``."""
    if cfg.train_layers is None:
        return cfg.freeze_embeddings and "word_embeddings" in name
    if ".embeddings." in f".{name}":
        return True  # every layer below the tuned ones is fixed, so the embeddings are too
    match = re.search(r"encoder\.layer\.(\d+)\.", name)
    return match is not None and int(match.group(1)) < N_LAYERS - cfg.train_layers


def fine_tune(
    model_dir: str | Path,
    pairs: Sequence[TrainPair],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune a sentence-transformers model on (query, positive, hard negatives) and save it.

    The loss is sentence-transformers' MultipleNegativesRankingLoss: for each query, its positive
    against every other passage of the batch (the other pairs' positives and every pair's hard
    negative). The model's own prompts ("query: " / "passage: " for e5) are put before the texts,
    so training sees what the encoder sees at run time.

    Args:
        model_dir: the model to start from.
        pairs: at least two pairs.
        out_dir: where the tuned model is saved (created).
        progress: called with (step, steps, loss) after each step.

    Returns:
        {"pairs", "steps", "seconds", "final_loss", "config"}.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    cfg = config or TrainConfig()
    if len(pairs) < 2:
        raise ValueError("fine-tuning needs at least two pairs (in-batch negatives)")
    started = time.perf_counter()
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = SentenceTransformer(str(model_dir), device="cpu")
    window = model.max_seq_length  # the model's own window: training cuts texts, the saved model does not
    model.max_seq_length = min(int(window or cfg.max_seq_length), cfg.max_seq_length)
    q_prompt = model.prompts.get("query") or ""
    p_prompt = model.prompts.get("document") or ""
    for name, param in model.named_parameters():
        if _frozen(name, cfg):
            param.requires_grad_(False)
    loss_fn = MultipleNegativesRankingLoss(model, scale=cfg.scale)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    plan = [_batches(pairs, cfg.batch_size, rng) for _ in range(cfg.epochs)]
    steps = sum(len(b) for b in plan)
    if steps == 0:
        raise ValueError("no batch of two pairs with different positives could be formed")
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup))
    )
    pool = sorted({p.positive for p in pairs} | {n for p in pairs for n in p.negatives})
    model.train()
    step, last = 0, float("nan")
    for epoch in plan:
        for batch in epoch:
            columns = [
                [q_prompt + p.query for p in batch],
                [p_prompt + p.positive for p in batch],
                [p_prompt + _negative(p, pool, rng) for p in batch],
            ]
            features = [model.tokenize(texts) for texts in columns]
            loss = loss_fn(features, None)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            last = float(loss.detach())
            if progress is not None:
                progress(step, steps, last)
    model.eval()
    model.max_seq_length = window  # saved with a cut window, a long need would be read in averaged pieces
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return {
        "pairs": len(pairs),
        "steps": steps,
        "seconds": round(time.perf_counter() - started, 2),
        "final_loss": last,
        "config": cfg.__dict__.copy(),
    }
