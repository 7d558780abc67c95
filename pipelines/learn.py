"""Learning from coaches: tune the encoder and the fusion on stored feedback, switch only when better.

``idesluss learn`` runs :func:`learn`:

1. every stored decision becomes an example per query: confirmed / rejected idea-need links, and
   verdicts on suggestions (useful and duplicate are positives, not useful is a hard negative);
2. the queries are split, seeded, into a training part and a held-out part (by query, so no
   query's decisions are on both sides);
3. the encoder in use is fine-tuned on the training part (``models.finetune``: in-batch negatives
   plus the rejected texts as hard negatives, e5 prompts kept), and the fusion weights are chosen
   on the training part by a small grid;
4. both the model in use (with the fusion in use) and the candidate (with its fusion) rank the
   held-out queries' candidates; MRR@10 before and after, with bootstrap intervals and a paired test;
5. only when the candidate's held-out MRR is higher outside the noise (the lower end of the paired
   bootstrap 95 % interval of the gain above ``min_gain``) is it saved as a new version and switched in
   (``models.finetune``: a directory per version, a ``current`` pointer); the vectors for its new
   model id are then embedded incrementally (what is missing only; the next start or the nightly job
   would do the same).

The held-out part is used for the decision only, never to choose anything.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matcher.collection import Collection, Item
from matcher.hybrid import FusionConfig, HybridMatcher
from matcher.swedish import Analyzer
from models.encoder import TextEncoder
from models.finetune import TrainConfig, TrainPair
from pipelines.learn_stats import bootstrap_ci, paired_test
from pipelines.records import embed_text
from store import KINDS, Record, Store

log = logging.getLogger(__name__)

POSITIVE = {"useful", "duplicate", "confirmed_need_link", "confirmed"}
NEGATIVE = {"not_useful", "rejected_need_link", "rejected"}
# dense weight fixed at 1: only the lexical parts' relative weights are chosen
FUSION_GRID = (0.0, 0.15, 0.3, 0.5, 0.8)
SEED = 20240601
# fine-tuning settings of learn_config (docs/learning.md says what chose them)
EPOCHS = 4  # at most
MIN_STEPS = 12
BATCH = 16
LR = 3e-5
TRAIN_LAYERS = 3
KEEP_VERSIONS = 2  # the version in use and the one it replaced (for --rollback); older ones are deleted


class NotEnoughFeedback(ValueError):
    """Too few queries with a positive decision to train and hold some out."""


@dataclass
class Example:
    """The decisions stored for one query (an idea, or a need) on one kind of target."""

    query_kind: str
    query_id: str
    query: str
    target_kind: str
    positives: dict[str, str] = field(default_factory=dict)  # target id -> embedded text
    negatives: dict[str, str] = field(default_factory=dict)

    def pairs(self) -> list[TrainPair]:
        """One training pair per positive, with every negative as a hard negative."""
        negs = tuple(self.negatives.values())
        return [TrainPair(self.query, text, negs) for text in self.positives.values()]


def _text(rec: Record) -> str:
    return embed_text(rec.title, rec.text)


def collect_examples(store: Store) -> list[Example]:
    """Every stored decision, grouped by (query, target kind); a later word on a pair wins.

    Link verdicts are taken from the links table (it keeps the latest state of each pair); the
    other verdicts from the feedback log in order. Drafts (unsaved texts) have no stored text and
    are skipped.
    """
    decisions: dict[tuple[str, str, str], dict[str, bool]] = {}
    for row in store.feedback.export_feedback():
        qk, tk, verdict = row["query_kind"], row["target_kind"], row["verdict"]
        if qk not in KINDS or tk not in KINDS or verdict.endswith("need_link"):
            continue
        if verdict in POSITIVE or verdict in NEGATIVE:
            decisions.setdefault((qk, row["query_id"], tk), {})[row["target_id"]] = verdict in POSITIVE
    for (idea_id, need_id), state in store.feedback.links().items():
        decisions.setdefault(("ideas", idea_id, "needs"), {})[need_id] = state in POSITIVE
    wanted: dict[str, set[str]] = {k: set() for k in KINDS}
    for (qk, qid, tk), targets in decisions.items():
        wanted[qk].add(qid)
        wanted[tk] |= set(targets)
    texts = {k: {r.id: _text(r) for r in store.records(k, sorted(ids))} if ids else {} for k, ids in wanted.items()}
    out = []
    for (qk, qid, tk), targets in sorted(decisions.items()):
        if qid not in texts[qk]:
            continue  # erased since
        ex = Example(qk, qid, texts[qk][qid], tk)
        for tid, positive in sorted(targets.items()):
            if tid in texts[tk] and not (qk == tk and tid == qid):
                (ex.positives if positive else ex.negatives)[tid] = texts[tk][tid]
        if ex.positives or ex.negatives:
            out.append(ex)
    return out


def split_examples(
    examples: Sequence[Example], holdout: float = 0.2, seed: int = SEED
) -> tuple[list[Example], list[Example]]:
    """(training, held out), by query, seeded; only queries with a positive can be held out.

    Raises:
        NotEnoughFeedback: fewer than two queries with a positive.
    """
    if not 0 < holdout < 1:
        raise ValueError(f"the held-out share must be between 0 and 1, got {holdout}")
    scorable = sorted({(e.query_kind, e.query_id) for e in examples if e.positives})
    if len(scorable) < 2:
        raise NotEnoughFeedback(
            f"{len(scorable)} queries have a confirmed link or a useful verdict; learning needs at least "
            "2 (one to train on, one to hold out), and gives reliable answers from about 50"
        )
    order = np.random.default_rng(seed).permutation(len(scorable))
    n_hold = min(len(scorable) - 1, max(1, math.ceil(holdout * len(scorable))))
    held = {scorable[i] for i in order[:n_hold]}
    train = [e for e in examples if (e.query_kind, e.query_id) not in held]
    return train, [e for e in examples if (e.query_kind, e.query_id) in held]


class Ranker:
    """The candidates of each target kind, indexed once for one encoder; ranks queries under any fusion.

    Args:
        store: where the candidates (every stored record of the kind) and any stored vectors come from.
        encoder: the encoder; stored vectors are used where its model id has them, the rest encoded.
        kinds: the target kinds needed.
    """

    def __init__(self, store: Store, encoder: TextEncoder, kinds: Sequence[str]) -> None:
        self.encoder = encoder
        self.collections: dict[str, Collection] = {}
        self._qvecs: dict[str, np.ndarray] = {}
        for kind in kinds:
            records = store.records(kind)
            stored = store.vectors_for(encoder.model_id, [r.embed_hash for r in records])
            todo = [r for r in records if r.embed_hash not in stored]
            fresh = encoder.encode_passages([_text(r) for r in todo]) if todo else np.zeros((0, encoder.dim))
            stored.update({r.embed_hash: v for r, v in zip(todo, fresh)})
            analyzer = Analyzer()
            analyzer.learn([_text(r) for r in records])
            coll = Collection(encoder.dim, analyzer)
            items = [Item(id=r.id, text=r.text, title=r.title) for r in records]
            if items:
                coll.add(items, np.stack([stored[r.embed_hash] for r in records]).astype(np.float32))
            self.collections[kind] = coll

    def _query_vectors(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._qvecs))
        if missing:
            self._qvecs.update(zip(missing, self.encoder.encode_queries(missing)))
        return np.stack([self._qvecs[t] for t in texts])

    def reciprocal_ranks(self, examples: Sequence[Example], fusion: FusionConfig, k: int = 10) -> np.ndarray:
        """Per query with a positive: 1 / rank of its first positive in the top ``k`` (0 beyond)."""
        scored = [e for e in examples if e.positives]
        out = np.zeros(len(scored))
        matcher = HybridMatcher(self.encoder, fusion)
        for kind in sorted({e.target_kind for e in scored}):
            rows = [i for i, e in enumerate(scored) if e.target_kind == kind]
            group = [scored[i] for i in rows]
            texts = [e.query for e in group]
            exclude = [{e.query_id} if e.query_kind == kind else set() for e in group]
            hits = matcher.search_batch(
                self.collections[kind], texts, k=k, vectors=self._query_vectors(texts), exclude=exclude
            )
            for i, e, hs in zip(rows, group, hits):
                rank = next((n for n, h in enumerate(hs, start=1) if h.id in e.positives), None)
                out[i] = 1.0 / rank if rank else 0.0
        return out


def fusion_weights(fusion: FusionConfig) -> dict[str, float]:
    """The weights of a fusion as a plain dict (what a version's manifest carries)."""
    return {
        "dense_weight": fusion.dense_weight,
        "lexical_weight": fusion.lexical_weight,
        "char_weight": fusion.char_weight,
    }


def choose_fusion(ranker: Ranker, examples: Sequence[Example], current: FusionConfig) -> tuple[FusionConfig, float]:
    """The grid point with the best mean reciprocal rank on ``examples``, if it is better outside the noise.

    The grid point is taken only when the lower end of the bootstrap 95 % interval of its paired gain
    over the current fusion is above 0; otherwise the current fusion stays. The examples are the
    ones the candidate was just trained on, where 25 grid points always find one that looks better
    by a question or two; on a split of SweFAQ dev's training half the weights picked that way
    ranked the other queries worse than the weights in use (docs/learning.md).

    Returns:
        (the fusion, its mean reciprocal rank on ``examples``).
    """
    base = ranker.reciprocal_ranks(examples, current)
    best, best_rr = current, base
    for lexical in FUSION_GRID:
        for char in FUSION_GRID:
            cand = FusionConfig(method=current.method, dense_weight=1.0, lexical_weight=lexical, char_weight=char)
            rr = ranker.reciprocal_ranks(examples, cand)
            if rr.mean() > best_rr.mean() + 1e-9:
                best, best_rr = cand, rr
    if best is not current and paired_test(best_rr, base)["diff_low"] <= 0:
        best, best_rr = current, base
    return best, float(best_rr.mean()) if len(best_rr) else 0.0


def default_load(path: Path, model_id: str) -> TextEncoder:
    """A sentence-transformers directory as an :class:`~models.encoder.Encoder` (fp32, for a fair comparison)."""
    import transformers
    from sentence_transformers import SentenceTransformer

    from models.encoder import Encoder

    transformers.utils.logging.set_verbosity_error()
    model = SentenceTransformer(str(path), device="cpu")
    model.eval()
    return Encoder(model, model_id=model_id, precision="fp32")


def learn_config(seed: int = SEED, epochs: int | None = None, pairs: int = 0) -> TrainConfig:
    """The fine-tuning settings of ``idesluss learn`` (docs/learning.md says what chose them).

    The top three layers are tuned (bfloat16 where the CPU has it: :func:`train_model`). Epochs (when not
    given): enough passes for about :data:`MIN_STEPS` steps on little feedback, at most
    :data:`EPOCHS`; one pass once the feedback fills that many batches, so time grows with the pairs,
    not faster.
    """
    if epochs is None:
        per_epoch = max(1, pairs // BATCH)
        epochs = min(EPOCHS, max(1, math.ceil(MIN_STEPS / per_epoch)))
    return TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, max_seq_length=128, train_layers=TRAIN_LAYERS, seed=seed)


def train_model(
    src: Path, pairs: list[TrainPair], out: Path, config: TrainConfig, bf16: bool | None = None
) -> dict[str, Any]:
    """Fine-tune ``src`` into ``out`` (``models.finetune.fine_tune``), faster where the CPU allows.

    Matrix products run in bfloat16 (autocast; weights, optimiser and the saved model stay float32)
    where the CPU has bfloat16 instructions (``bf16`` None: decided here, at run time). The saved
    model keeps the start model's token window: training cuts texts to ``config.max_seq_length``,
    but the service must encode a long need the same way before and after learning (a 128-token
    window would split it into averaged pieces).

    Returns:
        fine_tune's stats plus "bf16".
    """
    import torch

    from models import finetune
    from models.registry import cpu_has_bf16

    use_bf16 = cpu_has_bf16() if bf16 is None else bf16
    with torch.autocast("cpu", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext():
        stats = finetune.fine_tune(src, pairs, out, config)  # saves the start model's window
    return {**stats, "bf16": use_bf16}


def prune_versions(cache_dir: Path, keep: int = KEEP_VERSIONS) -> list[str]:
    """Delete learned versions other than the one in use and those it replaced (``keep`` in all).

    Returns:
        the names deleted.
    """
    import shutil

    from models import finetune

    kept: list[str] = []
    name = finetune.current_name(cache_dir)
    while name != finetune.BASE and len(kept) < keep:
        kept.append(name)
        try:
            name = finetune.load_version(cache_dir, name).previous
        except ValueError:
            break
    root = finetune.learned_root(cache_dir)
    gone = []
    for path in sorted(root.glob("v[0-9]*")):
        if path.is_dir() and path.name[1:].isdigit() and path.name not in kept:
            shutil.rmtree(path)
            gone.append(path.name)
    return gone


Train = Callable[[Path, list[TrainPair], Path], dict[str, Any]]
Load = Callable[[Path, str], TextEncoder]


@dataclass
class LearnReport:
    """What one ``idesluss learn`` did and measured."""

    queries_train: int = 0
    queries_holdout: int = 0
    pairs: int = 0
    hard_negatives: int = 0
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    paired: dict[str, float] = field(default_factory=dict)
    fusion_before: dict[str, float] = field(default_factory=dict)
    fusion_after: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    switched: bool = False
    reason: str = ""
    model_before: str = ""
    model_after: str = ""
    version: str | None = None
    embedded: int = 0
    pruned: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for a terminal."""

        def fig(d: dict[str, Any]) -> str:
            return f"{d['mrr']:.3f} [{d['mrr_ci'][0]:.3f}, {d['mrr_ci'][1]:.3f}]"

        p = self.paired
        lines = [
            f"feedback: {self.queries_train} queries to train on ({self.pairs} pairs, {self.hard_negatives} "
            f"hard negatives), {self.queries_holdout} held out",
            f"training: {self.training.get('steps', 0)} steps in {self.training.get('seconds', 0):.0f} s",
            f"held-out MRR@10 before: {fig(self.before)}  ({self.model_before}, fusion {self.fusion_before})",
            f"held-out MRR@10 after:  {fig(self.after)}  (fusion {self.fusion_after})",
            f"after - before: {p['diff']:+.3f} [{p['diff_low']:+.3f}, {p['diff_high']:+.3f}], p = {p['p']:.3f}",
            self.reason,
        ]
        if self.switched:
            lines.append(f"now in use: {self.model_after} ({self.embedded} texts embedded for it)")
        if self.pruned:
            lines.append(f"older versions deleted (the previous one is kept for --rollback): {', '.join(self.pruned)}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def _figures(rr: np.ndarray) -> dict[str, Any]:
    return {"mrr": float(rr.mean()) if len(rr) else 0.0, "mrr_ci": list(bootstrap_ci(rr)), "queries": len(rr)}


def learn(
    store: Store,
    cache_dir: Path,
    fusion: FusionConfig,
    train: Train | None = None,
    load: Load = default_load,
    holdout: float = 0.2,
    seed: int = SEED,
    min_gain: float = 0.0,
    embed: bool = True,
    config: TrainConfig | None = None,
) -> LearnReport:
    """Tune on the stored feedback; switch the default model to the result only if it is better held out.

    Args:
        store: the open store (feedback, records, vectors).
        cache_dir: the model cache (versions live under ``cache_dir/learned``).
        fusion: the fusion in use (the "before" system, and the tie-break of the grid).
        train: ``(model dir, pairs, out dir) -> stats``; :func:`train_model` with ``config`` by default.
        load: ``(model dir, model id) -> encoder``.
        holdout: share of the queries held out for the decision.
        seed: the split's seed (and the training's, when ``config`` is not given).
        min_gain: what the lower end of the held-out gain's 95 % interval must exceed to switch (0:
            better outside the noise; a negative value lets a change within the noise through).
        embed: embed the stored texts for the new model after a switch (what is missing only).
        config: the fine-tuning settings (default :func:`learn_config`, its epochs sized to the pairs).

    Raises:
        NotEnoughFeedback: too few queries with a positive decision.
    """
    from models import finetune
    from models.registry import DEFAULT, resolve_model_path
    from pipelines.embed import embed_missing

    examples = collect_examples(store)
    train_ex, held = split_examples(examples, holdout, seed)
    pairs = [p for e in train_ex for p in e.pairs()]
    if len(pairs) < 2:
        raise NotEnoughFeedback("fewer than two positive pairs remain to train on after holding out")
    cfg = config or learn_config(seed, pairs=len(pairs))
    train = train or (lambda src, prs, out: train_model(src, prs, out, cfg))
    run_id = store.start_run("learn", {"examples": len(examples)})
    path, model_id = resolve_model_path(DEFAULT, cache_dir)
    report = LearnReport(
        queries_train=sum(1 for e in train_ex if e.positives),
        queries_holdout=len(held),
        pairs=len(pairs),
        hard_negatives=sum(len(p.negatives) for p in pairs),
        model_before=model_id,
        fusion_before=fusion_weights(fusion),
    )
    kinds = sorted({e.target_kind for e in examples})
    before = Ranker(store, load(Path(path), model_id), kinds).reciprocal_ranks(held, fusion)
    root = finetune.learned_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".candidate-", dir=root) as tmp:
        out = Path(tmp) / "model"
        report.training = train(Path(path), pairs, out)
        ranker = Ranker(store, load(out, f"{model_id}+candidate"), kinds)
        new_fusion, train_score = choose_fusion(ranker, train_ex, fusion)
        after = ranker.reciprocal_ranks(held, new_fusion)
        report.before, report.after = _figures(before), _figures(after)
        report.paired = paired_test(after, before)
        report.fusion_after = fusion_weights(new_fusion)
        report.training["fusion_train_mrr"] = train_score
        gain, low = report.paired["diff"], report.paired["diff_low"]
        # outside the noise: a gain of one question in eleven, with none worse, is not a reason to
        # re-embed every stored text (what a switch costs)
        report.switched = low > min_gain
        if report.switched:
            version = finetune.save_version(
                cache_dir,
                out,
                root_model_id=model_id.split("+learned-")[0],
                previous=finetune.current_name(cache_dir),
                extra={
                    "fusion": report.fusion_after,
                    "training": report.training,
                    "holdout": {"before": report.before, "after": report.after, "paired": report.paired},
                },
            )
            finetune.switch_to(cache_dir, version.name)
            report.pruned = prune_versions(cache_dir)
            report.version, report.model_after = version.name, version.model_id
            report.reason = (
                f"switched: held-out MRR rose by {gain:+.3f}, the lower end of its 95 % interval {low:+.3f} "
                f"above {min_gain:+.3f}"
            )
        else:
            report.model_after = model_id
            report.reason = (
                f"not switched: held-out MRR changed by {gain:+.3f}, the lower end of its 95 % interval "
                f"{low:+.3f} (a switch needs a gain whose lower end is above {min_gain:+.3f})"
            )
    if report.switched and embed:
        report.embedded = embed_missing(store, load(Path(version.path), version.model_id))
    store.finish_run(run_id, "switched" if report.switched else "kept", report.as_dict())
    log.info("learn: %s", report.reason)
    return report


def rollback(cache_dir: Path) -> str:
    """Return the default model to the version before the current one; returns the model id now in use."""
    from models import finetune
    from models.registry import DEFAULT, resolve_model_path

    finetune.rollback(cache_dir)
    return resolve_model_path(DEFAULT, cache_dir)[1]
