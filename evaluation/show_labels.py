"""Print the theme labels the nightly job gives on the dev sets and the demo, for reading.

    python -m evaluation.show_labels [--data DIR] [--sets argumentation,sib200,swefaq,demo] [--no-rerank]

Each set is themed by the job's own stages (query vectors, reduce, cluster, outliers) and labelled by
``compute.label`` exactly as the nightly job does, with the encoder's ``encode_queries`` for the
candidates; each line shows the label, the theme's size, its most representative title (the
record's title, else the start of its text), its keywords and, where the set has topics, the
theme's majority topic. Each set's heading gives the label figures of docs/themes.md: coverage
(share of a theme's texts holding a label word), topic hit (the label holds the first five letters
of the majority topic; meaningful for argumentation and the demo) and identifiability (the embedded
label is nearest its own centroid). The data are read where they lie (``--data``), never copied.
"""

from __future__ import annotations

import argparse
import json
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.datasets import SHARED_DATA, load_demo, load_swefaq, load_topic_file
from matcher.swedish import Analyzer, stem
from pipelines.themes import compute
from pipelines.themes.config import ThemeJobConfig
from pipelines.themes.labels import CorpusWords, adjective_only, representative_title, theme_term_counts

SETS = ("argumentation", "sib200", "swefaq", "demo")


def load_set(name: str, data: Path) -> tuple[list[str], list[str | None], list[str]]:
    """(texts as the job embeds them, titles or None, topic of each text) of one set (the demo's
    ideas first, then its needs: :func:`demo_kinds`)."""
    if name == "argumentation":
        texts, topics = load_topic_file(data / "argumentation-sentences" / "argumentation-sentences_dev.jsonl")
        return texts, [None] * len(texts), topics
    if name == "sib200":
        texts, topics = load_topic_file(data / "sib200-swe" / "dev.tsv")
        return texts, [None] * len(texts), topics
    if name == "swefaq":
        questions, answers, gold = load_swefaq(data / "swefaq" / "swefaq_dev.jsonl")
        return questions + answers, [None] * (len(questions) + len(answers)), ["?"] * (len(questions) + len(answers))
    if name == "demo":
        corpus = load_demo()
        texts = [f"{r['title']}. {r['text']}" if r.get("title") else r["text"] for r in corpus.ideas]
        texts += [r["text"] for r in corpus.needs]
        titles = [r.get("title") or None for r in corpus.ideas] + [r.get("title") or None for r in corpus.needs]
        topics = [corpus.gold["themes"]["ideas"][r["id"]] for r in corpus.ideas]
        topics += [corpus.gold["themes"]["needs"][r["id"]] for r in corpus.needs]
        return texts, titles, topics
    raise ValueError(f"unknown set {name!r}; choose from {list(SETS)}")


def demo_kinds() -> list[str]:
    """The kind ("ideas" / "needs") of each demo text, in :func:`load_set`'s order."""
    corpus = load_demo()
    return ["ideas"] * len(corpus.ideas) + ["needs"] * len(corpus.needs)


def set_labels(
    texts: list[str],
    titles: list[str | None],
    topics: list[str],
    vectors: np.ndarray,
    encode: Callable[[list[str]], np.ndarray] | None,
    kinds: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The themes of one set, largest first, as the job labels them."""
    config = ThemeJobConfig()
    final, _ = compute.themes_for_vectors(vectors, config)
    n = len(texts)
    kinds = kinds or ["ideas"] * n
    ids = [str(i) for i in range(n)]
    items = compute.Items([f"{k}:{i}" for k, i in zip(kinds, ids)], kinds, ids, texts, vectors)
    how = np.array(["clustered" if c >= 0 else "unassigned" for c in final], dtype=object)
    placed = compute.Placement(final, how, {}, {}, set(), [])
    labelled = compute.label(items, placed, config, encode=encode)
    identified = identifiable(
        [t.label for t in labelled.themes], np.stack([t.centroid for t in labelled.themes]), encode
    )

    corpus = corpus_words(texts)

    def title_of(kind: str, rid: str) -> str | None:
        return titles[int(rid)] or texts[int(rid)]

    out = []
    for k, theme in enumerate(labelled.themes):
        rows = [int(r) for r in np.nonzero(final == _number(labelled.theme_of, theme.theme_id))[0]]
        top = Counter(topics[r] for r in rows).most_common(1)[0]
        out.append(
            {
                "label": theme.label,
                "size": theme.size,
                "title": representative_title(theme.representatives, title_of),
                "keywords": theme.keywords,
                "topic": f"{top[0]} ({top[1]}/{len(rows)})",
                "coverage": coverage(theme.label, [texts[r] for r in rows]),
                "topic_hit": _fold(top[0])[:5] in _fold(theme.label),
                "identifiable": identified[k],
                "adjective_terms": adjective_terms(theme.label, corpus),
            }
        )
    return sorted(out, key=lambda t: -t["size"])


def label_terms_of(label: str) -> list[str]:
    """The terms of a label ("A, B och C" -> [a, b, c])."""
    return [p.strip() for p in label.lower().replace(" och ", ", ").split(",") if p.strip()]


def adjective_terms(label: str, corpus: CorpusWords | None = None) -> list[str]:
    """The terms of a label that are adjective-only by the labeller's own rules, which a label
    should never hold. ``corpus``: the set's words (:func:`corpus_words`), as the job reads them
    ("äldre" used as a noun is no adjective); without it the suffix and comparative rules alone."""
    return [term for term in label_terms_of(label) if adjective_only(term, corpus)]


def corpus_words(texts: list[str]) -> CorpusWords:
    """What the adjective rule reads from a set's texts, as the job's labelling does."""
    analyzer = Analyzer(split_known_words=False)
    analyzer.learn(texts)
    return CorpusWords.from_forms([theme_term_counts(analyzer, texts)[1]])


def coverage(label: str, texts: list[str]) -> float:
    """Share of ``texts`` that hold the stem of some word of the label (accents folded)."""
    stems = [_fold(stem(w)) for term in label_terms_of(label) for w in term.split()]
    if not stems or not texts:
        return 0.0
    return float(np.mean([any(s in _fold(t) for s in stems) for t in texts]))


def identifiable(
    labels: list[str], centroids: np.ndarray, encode: Callable[[list[str]], np.ndarray] | None
) -> list[bool]:
    """Whether each label, embedded, is nearest to its own theme's centroid (both centred; needs the
    encoder, so it favours labels the encoder re-ranked)."""
    if encode is None or len(labels) < 2:
        return [False] * len(labels)
    v = encode(labels)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    c, v = centroids - centroids.mean(axis=0), v - v.mean(axis=0)
    return [bool(i) for i in np.argmax(v @ c.T, axis=1) == np.arange(len(labels))]


def _fold(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFD", text.lower()) if not unicodedata.combining(ch))


def _number(theme_of: dict[int, str], theme_id: str) -> int:
    return next(c for c, t in theme_of.items() if t == theme_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="folder of the dev sets (read, never copied)")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--no-rerank", action="store_true", help="c-TF-IDF order only (no candidate embeddings)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: IDESLUSS_CACHE_DIR)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from idesluss.settings import Settings
    from models.registry import load_encoder

    cache_dir = args.cache_dir or Settings().cache_dir
    encoder = load_encoder(args.model, cache_dir)
    report: dict[str, list[dict[str, Any]]] = {}
    for name in args.sets.split(","):
        texts, titles, topics = load_set(name, args.data)
        vectors = encoder.encode_queries(texts)
        encode = None if args.no_rerank else encoder.encode_queries
        kinds = demo_kinds() if name == "demo" else None
        report[name] = set_labels(texts, titles, topics, vectors, encode, kinds)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
        return 0
    for name, themes in report.items():
        cov = np.mean([t["coverage"] for t in themes]) if themes else 0.0
        hit = np.mean([t["topic_hit"] for t in themes]) if themes else 0.0
        ident = np.mean([t["identifiable"] for t in themes]) if themes else 0.0
        print(f"\n## {name}: {len(themes)} themes; coverage {cov:.3f}, topic hit {hit:.2f}, identifiable {ident:.2f}")
        for t in themes:
            bad = t["adjective_terms"]
            flag = f"  [adjective-only: {', '.join(bad)}]" if bad else ""
            print(f"- {t['label']}  ({t['size']}; majority topic {t['topic']}){flag}")
            print(f"    idé: {t['title']}")
            print(f"    nyckelord: {', '.join(t['keywords'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
