"""Theme quality: agreement with topic labels, unassigned share, label hygiene and stability.

Our pipeline (query-prompt vectors, centred, UMAP 5-d, HDBSCAN with 1 % minimum size, outlier
assignment) is run beside a BERTopic-style baseline with BERTopic's defaults on the same model
(passage vectors, UMAP 5-d with 15 neighbours, HDBSCAN min_cluster_size 10, no assignment,
c-TF-IDF keywords without a stop-word list).
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.datasets import DemoCorpus
from matcher.swedish import STOP_WORDS, Analyzer, words
from models.encoder import TextEncoder
from pipelines.themes import stages
from pipelines.themes.job import ThemeJobConfig, themes_for_vectors
from pipelines.themes.labels import label_themes


def agreement(gold: Sequence[str], labels: np.ndarray) -> dict[str, float]:
    """NMI, ARI and V-measure (noise counted as one more cluster), share unassigned, theme count."""
    from sklearn import metrics

    return {
        "nmi": float(metrics.normalized_mutual_info_score(gold, labels)),
        "ari": float(metrics.adjusted_rand_score(gold, labels)),
        "v_measure": float(metrics.v_measure_score(gold, labels)),
        "unassigned": float((labels < 0).mean()),
        "themes": int(len(set(labels.tolist()) - {-1})),
    }


def _baseline_keywords(texts: Sequence[str], labels: np.ndarray, n: int = 8) -> list[list[str]]:
    """BERTopic's default representation: c-TF-IDF over plain word counts, no stop-word list."""
    out = []
    classes = sorted(set(labels.tolist()) - {-1})
    counts = [Counter(w for i in np.nonzero(labels == c)[0] for w in words(texts[int(i)])) for c in classes]
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    avg = sum(sum(c.values()) for c in counts) / max(len(counts), 1)
    for c in counts:
        size = max(sum(c.values()), 1)
        ranked = sorted(c, key=lambda w: -(c[w] / size) * math.log(1 + avg / total[w]))
        out.append(ranked[:n])
    return out


def reducer_comparison(encoder: TextEncoder, texts: Sequence[str], gold: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The job's pipeline with each reduction stage (UMAP, PCA, none) on the same vectors."""
    q = encoder.encode_queries(list(texts))
    out = {}
    for name, params in (
        ("umap", {"n_components": 5, "n_neighbors": 15, "random_state": 42}),
        ("pca", {"n_components": 10, "random_state": 42}),
        ("none", {}),
    ):
        final, raw = themes_for_vectors(q, ThemeJobConfig(reducer=name, reducer_params=params))
        out[name] = {**agreement(gold, final), "unassigned_before_assignment": float((raw < 0).mean())}
    return out


def stop_word_rate(keyword_lists: Sequence[Sequence[str]]) -> float:
    """Share of keywords that are Swedish stop-words."""
    flat = [w for kws in keyword_lists for kw in kws for w in kw.split()]
    return sum(w.lower() in STOP_WORDS for w in flat) / max(len(flat), 1)


def topic_file(encoder: TextEncoder, texts: Sequence[str], gold: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Ours vs the BERTopic-style baseline on one labelled set."""
    q = encoder.encode_queries(list(texts))
    ours, ours_raw = themes_for_vectors(q)
    p = encoder.encode_passages(list(texts))
    base_reducer = stages.UMAPReducer(n_components=5, n_neighbors=15, random_state=42)
    base = stages.HDBSCANClusterer(min_cluster_size=10, min_samples=10).fit_predict(base_reducer.fit_transform(p))
    analyzer = Analyzer(split_known_words=False)
    analyzer.learn(texts)
    ours_kw = [
        t.keywords
        for t in label_themes(
            analyzer, [[texts[int(i)] for i in np.nonzero(ours == c)[0]] for c in sorted(set(ours.tolist()) - {-1})]
        )
    ]
    return {
        "ours": {
            **agreement(gold, ours),
            "unassigned_before_assignment": float((ours_raw < 0).mean()),
            "stop_word_rate": stop_word_rate(ours_kw),
        },
        "BERTopic defaults (anchor)": {
            **agreement(gold, base),
            "stop_word_rate": stop_word_rate(_baseline_keywords(texts, base)),
        },
    }


def stability(encoder: TextEncoder, corpus: DemoCorpus, added_share: float = 0.05, seed: int = 7) -> dict[str, float]:
    """Run the real job, add ``added_share`` new ideas, run it again: how many old items keep their theme id."""
    import csv
    import json

    from pipelines.ingest import ingest_file
    from pipelines.themes.job import run_theme_job
    from store import Store
    from store import themes as sql

    rng = np.random.default_rng(seed)
    ideas = list(corpus.ideas)
    late = set(rng.choice(len(ideas), int(round(added_share * len(ideas))), replace=False).tolist())
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        fields = list(ideas[0].keys())

        def write(rows: list[dict], name: str) -> Path:
            path = d / name
            with path.open("w", encoding="utf-8", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=fields, delimiter=";")
                w.writeheader()
                w.writerows(rows)
            return path

        needs = d / "needs.jsonl"
        needs.write_text("".join(json.dumps(n, ensure_ascii=False) + "\n" for n in corpus.needs), encoding="utf-8")
        with Store(d / "s.duckdb") as store:
            ingest_file(store, "ideas", write([r for i, r in enumerate(ideas) if i not in late], "a.csv"), encoder)
            ingest_file(store, "needs", needs, encoder)
            run_theme_job(store, encoder, show_bar=False)
            before = {(m["kind"], m["item_id"]): m["theme_id"] for m in sql.memberships(store)}
            ingest_file(store, "ideas", write([r for i, r in enumerate(ideas) if i in late], "b.csv"), encoder)
            record = run_theme_job(store, encoder, show_bar=False)
            after = {(m["kind"], m["item_id"]): m["theme_id"] for m in sql.memberships(store)}
    old_ideas = [k for k, v in before.items() if k[0] == "ideas" and v]
    same = sum(after.get(k) == before[k] for k in old_ideas)
    return {
        "old_ideas_same_theme": same / max(len(old_ideas), 1),
        "old_ideas_in_a_theme": len(old_ideas),
        "added": len(late),
        "events": len(record["events"]),
    }


def demo_themes(encoder: TextEncoder, corpus: DemoCorpus) -> dict[str, dict[str, Any]]:
    """Topic agreement on the demo corpus (ideas and needs together)."""
    texts = [f"{r['title']}. {r['text']}" if r.get("title") else r["text"] for r in corpus.ideas] + [
        r["text"] for r in corpus.needs
    ]
    gold = [corpus.gold["themes"]["ideas"][r["id"]] for r in corpus.ideas] + [
        corpus.gold["themes"]["needs"][r["id"]] for r in corpus.needs
    ]
    return topic_file(encoder, texts, gold)


__all__ = [
    "ThemeJobConfig",
    "agreement",
    "demo_themes",
    "reducer_comparison",
    "stability",
    "stop_word_rate",
    "topic_file",
]
