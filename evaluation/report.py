"""`idesluss evaluate`: every quality figure beside its anchor, as a table, JSON, Markdown and PNG plots."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import matching
from evaluation import themes as theme_eval
from evaluation.datasets import SHARED_DATA, load_demo, load_topic_file


def _default(path: str | None, relative: str) -> str | None:
    if path:
        return path
    candidate = SHARED_DATA / relative
    return str(candidate) if candidate.is_file() else None


def _table(title: str, rows: dict[str, dict[str, Any]], columns: list[str]) -> str:
    head = f"| {title} | " + " | ".join(columns) + " |"
    sep = "|---" * (len(columns) + 1) + "|"
    lines = [head, sep]
    for name, vals in rows.items():
        cells = []
        for c in columns:
            v, ci = vals.get(c), vals.get(f"{c}_ci")
            if isinstance(v, float) and ci:
                cells.append(f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
            else:
                cells.append(f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ci(values: dict[str, Any], key: str, percent: bool = False) -> str:
    ci = values.get(f"{key}_ci")
    if not ci:
        return ""
    return f"[{ci[0]:.1%}, {ci[1]:.1%}]" if percent else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def feedback_eval(db: str, settings: Any) -> dict[str, Any]:
    """Where the items coaches marked useful (or duplicate) rank in today's answers."""
    from evaluation.metrics import ranking_report
    from idesluss.service import Query, Service

    svc = Service(settings.model_copy(update={"db": Path(db)}))
    try:
        rows = svc.store.feedback.export_feedback()
        wanted: dict[tuple[str, str, str], set[str]] = {}
        for r in rows:
            if r["verdict"] in ("useful", "duplicate", "confirmed_need_link"):
                wanted.setdefault((r["query_kind"], r["query_id"], r["target_kind"]), set()).add(r["target_id"])
        rankings, relevant = [], []
        for (qk, qid, tk), targets in wanted.items():
            if qk != "ideas":
                continue
            method = svc.similar if tk == "ideas" else svc.needs_for
            hits = method([Query(id=qid)], k=10)[0]
            rankings.append([h.id for h in hits])
            relevant.append(targets)
        return {"feedback_rows": len(rows), **ranking_report(rankings, relevant)}
    finally:
        svc.close()


PAIRED = "ours minus anchor"  # evaluation.themes.topic_file's paired row
LABELS_PER_SET = 5  # four sets: twenty labels to read in the report


def theme_labels(encoder: Any, per_set: int = LABELS_PER_SET) -> dict[str, Any]:
    """The largest themes' labels, as the nightly job gives them, on each set that is present.

    Per set: the label figures over all its themes (coverage, topic hit, identifiable: see
    :mod:`evaluation.show_labels`) and the ``per_set`` largest themes (label, size, most
    representative title, majority topic, the label's adjective-only terms).
    """
    from evaluation.show_labels import SETS, demo_kinds, load_set, set_labels

    out: dict[str, Any] = {}
    for name in SETS:
        try:
            texts, titles, topics = load_set(name, SHARED_DATA)
        except FileNotFoundError as exc:
            out[name] = {"missing": str(exc)}
            continue
        vectors = encoder.encode_queries(texts)
        themes = set_labels(
            texts, titles, topics, vectors, encoder.encode_queries, demo_kinds() if name == "demo" else None
        )
        out[name] = {
            "themes": len(themes),
            **{
                k: float(np.mean([t[k] for t in themes])) if themes else 0.0
                for k in ("coverage", "topic_hit", "identifiable")
            },
            "largest": [
                {
                    "label": t["label"],
                    "size": t["size"],
                    "title": t["title"],
                    "topic": t["topic"],
                    "adjective_terms": t["adjective_terms"],
                }
                for t in themes[:per_set]
            ],
        }
    return out


def run_evaluation(
    settings: Any,
    out_dir: str = "reports/latest",
    swefaq: str | None = None,
    sweparaphrase: str | None = None,
    topic_files: list[str] | None = None,
    db: str | None = None,
    stability: bool = True,
    variants: bool = True,
    learning: bool = True,
    show_labels: bool = True,
) -> dict[str, Any]:
    """Run every evaluation, print the tables, write report.md, results.json and plots to ``out_dir``.

    ``learning``: the learning-from-coaches measurement (:mod:`evaluation.learning`, about five
    minutes: a real ``learn`` job on SweFAQ dev plus the 1,000-pair timing run); ``show_labels``: the
    first labels of each dev set's themes and the demo's (:mod:`evaluation.show_labels`).
    """
    from evaluation.extras import EXTRAS, require_extra
    from models.registry import load_encoder

    # before the model loads: the encoder variants need the ONNX part of the extra, the rest always
    require_extra("eval", "evaluate", None if variants else [p for p in EXTRAS["eval"] if p not in EXTRAS["onnx"]])

    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(settings.model, settings.cache_dir, precision=settings.precision, engine=settings.engine)
    corpus = load_demo()
    report: dict[str, Any] = {"model": encoder.model_id}
    report["demo_matching"] = matching.demo_matching(encoder, corpus)
    report["duplicates"] = matching.duplicate_calibration(encoder, corpus)
    faq = _default(swefaq, "swefaq/swefaq_dev.jsonl")
    if faq:
        from evaluation.metrics import with_intervals

        per_query = matching.swefaq_per_query(encoder, faq)
        report["swefaq"] = {name: with_intervals(pq) for name, pq in per_query.items()}
        report["swefaq_paired"] = matching.paired_tests(per_query)
    para = _default(sweparaphrase, "sweparaphrase/sweparaphrase_dev.jsonl")
    if para:
        report["sweparaphrase"] = matching.sweparaphrase(encoder, para)
        report["duplicates_holdout"] = matching.duplicate_holdout(encoder, para, report["duplicates"]["threshold"])
    report["themes"] = {"demo": theme_eval.demo_themes(encoder, corpus)}
    topics = (
        topic_files
        if topic_files is not None
        else [
            p
            for p in (
                _default(None, "argumentation-sentences/argumentation-sentences_dev.jsonl"),
                _default(None, "sib200-swe/dev.tsv"),
            )
            if p
        ]
    )
    for i, path in enumerate(topics):
        texts, labels = load_topic_file(Path(path))
        name = Path(path).parent.name or Path(path).stem
        report["themes"][name] = theme_eval.topic_file(encoder, texts, labels)
        if i == 0:
            report["reducers"] = {"data": name, **theme_eval.reducer_comparison(encoder, texts, labels)}
    if stability:
        report["stability"] = theme_eval.stability(encoder, corpus)
    if variants:
        from evaluation.variants import STATIC, quality, variant_builders

        builders = variant_builders(encoder, Path(settings.cache_dir))
        demo_texts = [f"{r['title']}. {r['text']}" for r in corpus.ideas][:200]
        report["encoders"] = quality(builders, faq, para, demo_texts)
        if topics:
            texts, labels = load_topic_file(Path(topics[0]))
            static = theme_eval.topic_file(builders[STATIC](), texts, labels)["ours"]
            report["encoders"][STATIC]["themes_nmi"] = static["nmi"]
            report["encoders"][STATIC]["themes_data"] = Path(topics[0]).parent.name
            report["encoders"][STATIC]["themes_nmi_transformer"] = report["themes"][Path(topics[0]).parent.name][
                "ours"
            ]["nmi"]
    if show_labels:
        report["labels"] = theme_labels(encoder)
    if learning and faq and para:
        from evaluation import learning as learning_eval

        report["learning"] = learning_eval.run(Path(faq), Path(para), Path(settings.cache_dir))
    if db:
        report["feedback"] = feedback_eval(db, settings)
    report["seconds"] = round(time.perf_counter() - started, 1)
    _write(report, out)
    return report


def _markdown(report: dict[str, Any]) -> str:
    parts = [f"# Evaluation ({report['model']})", ""]
    parts += [
        "## Demo gold: paraphrase partner and needs (ablation and anchors)",
        "",
        _table(
            "system",
            report["demo_matching"],
            ["paraphrase_top5", "paraphrase_mrr", "needs_recall@10", "needs_mrr", "needs_ndcg@10"],
        ),
        "",
    ]
    d = report["duplicates"]
    parts += [
        f"Near-duplicate threshold (dense cosine, calibrated for precision >= 0.95 on the demo gold; this is the "
        f"calibration set, so these figures are in-sample): "
        f"**{d['threshold']}**, precision {d['precision']:.3f}, recall {d['recall']:.3f} of all gold "
        f"pairs (paraphrases included), resubmissions found {d['resubmissions_found']:.0%}.",
        "",
    ]
    if "swefaq" in report:
        parts += [
            "## SweFAQ dev, pooled (answers stored as needs, questions as queries)",
            "",
            "Reference figures (README of the data): dense 0.709 MRR / 0.582 R@1, BM25 0.647, "
            "char 3-gram 0.659, z(dense)+0.3 z(BM25) 0.749 / 0.636.",
            "",
            "Each figure: mean over questions [bootstrap 95 % interval, 1,000 resamples of the questions, fixed seed].",
            "",
            _table("system", report["swefaq"], ["recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"]),
            "",
        ]
    if "swefaq_paired" in report:
        rows = {
            k: {
                "service minus other": v["diff"],
                "service minus other_ci": [v["diff_low"], v["diff_high"]],
                "p": v["p"],
            }
            for k, v in report["swefaq_paired"].items()
        }
        parts += [
            "Paired comparison of the service with every other system on the same questions "
            "(difference of means, paired bootstrap 95 % interval; p from a two-sided sign-flip permutation "
            "test, 1,000 permutations):",
            "",
            _table("other system / metric", rows, ["service minus other", "p"]),
            "",
        ]
    if "sweparaphrase" in report:
        s = report["sweparaphrase"]
        parts += [
            f"## SweParaphrase dev: Spearman {s['spearman']:.3f} {_ci(s, 'spearman')} (query prompt on both "
            f"sides; passage prompt {s['spearman_passage']:.3f} {_ci(s, 'spearman_passage')}; reference 0.832)",
            "",
        ]
    if "duplicates_holdout" in report:
        h = report["duplicates_holdout"]
        parts += [
            f"Duplicate threshold **{h['threshold']}**, calibrated on the demo gold only, applied unchanged to "
            f"SweParaphrase dev (never tuned there; a pair is a near-duplicate when its gold score is >= "
            f"{h['min_gold']}: {h['positive_pairs']} of {h['pairs_scored']} pairs): precision {h['precision']:.3f} "
            f"{_ci(h, 'precision')}, recall {h['recall']:.3f} {_ci(h, 'recall')}.",
            "",
        ]
    parts += [
        "## Themes",
        "",
        "The anchor is the real BERTopic (documented defaults, UMAP random_state fixed) on the same model's "
        f"passage vectors. stop_word_rate: share of keywords among wordfreq's {theme_eval.INDEPENDENT_STOP_TOP_N} "
        "most frequent Swedish words, a list the pipeline does not filter with. "
        "Intervals: items resampled, clustering fixed.",
        "",
    ]
    for name, res in report["themes"].items():
        rows = {k: v for k, v in res.items() if "missing" not in v and k != PAIRED}
        parts += [
            f"### {name}",
            "",
            _table("pipeline", rows, ["nmi", "ari", "v_measure", "unassigned", "themes", "stop_word_rate"]),
            "",
        ]
        if PAIRED in res:
            d = res[PAIRED]
            parts += [
                f"Ours minus the anchor, same items (paired bootstrap 95 % interval): NMI {d['nmi']:+.3f} "
                f"[{d['nmi_ci'][0]:+.3f}, {d['nmi_ci'][1]:+.3f}]; ARI {d['ari']:+.3f} "
                f"[{d['ari_ci'][0]:+.3f}, {d['ari_ci'][1]:+.3f}].",
                "",
            ]
        parts += [f"{k}: not run ({v['missing']})." for k, v in res.items() if "missing" in v] + [""]
    if "reducers" in report:
        red = {k: v for k, v in report["reducers"].items() if k != "data"}
        parts += [
            f"### Reduction stage compared ({report['reducers']['data']}, same vectors, same clustering)",
            "",
            _table("reducer", red, ["nmi", "ari", "unassigned_before_assignment", "unassigned", "themes"]),
            "",
        ]
    if "stability" in report:
        st = report["stability"]
        parts += [
            f"Stability: after adding {st['added']} ideas (5 %) and re-running, "
            f"**{st['old_ideas_same_theme']:.1%}** {_ci(st, 'old_ideas_same_theme', percent=True)} of the ideas that had a theme "
            "keep the same theme id (interval: ideas resampled, the two runs fixed).",
            "",
        ]
    if "encoders" in report:
        parts += [
            "## Encoder variants (dense only; the speed of each is in `idesluss bench`)",
            "",
            "A variant may be the default only if it loses at most 1 point of SweFAQ MRR and of "
            "SweParaphrase Spearman against the baseline.",
            "",
            _table(
                "encoder",
                report["encoders"],
                [
                    "swefaq_mrr",
                    "swefaq_recall@1",
                    "spearman",
                    "swefaq_mrr_points_lost",
                    "spearman_points_lost",
                    "cosine_to_baseline",
                    "within_one_point",
                ],
            ),
            "",
        ]
        static = next((v for v in report["encoders"].values() if "themes_nmi" in v), None)
        if static:
            parts += [
                f"Themes from the static model's vectors ({static['themes_data']}): NMI "
                f"{static['themes_nmi']:.3f} (transformer {static['themes_nmi_transformer']:.3f}).",
                "",
            ]
    if "labels" in report:
        parts += _labels_md(report["labels"])
    if "learning" in report:
        from evaluation.learning import table as learning_table

        parts += [
            "## Learning from coaches (`idesluss learn` on SweFAQ dev; `evaluation/learning.py`)",
            "",
            "The training half's gold answers are confirmed links and its two best-ranked wrong answers "
            "rejected ones; `learn` runs on that store (its own held-out share decides the switch); the test "
            "half is scored before and after only. MRR@10 with bootstrap 95 % intervals, paired test.",
            "",
            learning_table(report["learning"]),
            "",
        ]
    if "feedback" in report:
        parts += ["## Coach feedback", "", json.dumps(report["feedback"], indent=1), ""]
    parts += ["![recall@k](recall_at_k.png)", "", "![theme sizes](theme_sizes.png)", ""]
    return "\n".join(parts)


def _labels_md(labels: dict[str, Any]) -> list[str]:
    parts = [
        "## Theme labels (the largest themes of each set, as the nightly job labels them)",
        "",
        "coverage: share of a theme's texts holding a label word; topic hit: the label names the theme's "
        "majority topic (meaningful for argumentation and the demo); identifiable: the embedded label is "
        "nearest its own theme's centroid. Means over all of a set's themes.",
        "",
    ]
    for name, res in labels.items():
        if "missing" in res:
            parts += [f"### {name}: not run ({res['missing']})", ""]
            continue
        parts += [
            f"### {name}: {res['themes']} themes; coverage {res['coverage']:.2f}, topic hit "
            f"{res['topic_hit']:.2f}, identifiable {res['identifiable']:.2f}",
            "",
            "| label | size | most representative idea | majority topic |",
            "|---|---|---|---|",
        ]
        for t in res["largest"]:
            flag = f" (adjective-only: {', '.join(t['adjective_terms'])})" if t.get("adjective_terms") else ""
            title = (t["title"] or "").replace("|", "/")[:90]
            topic = "(no topics)" if t["topic"].startswith("? (") else t["topic"]
            parts.append(f"| {t['label']}{flag} | {t['size']} | {title} | {topic} |")
        parts.append("")
    return parts


def _write(report: dict[str, Any], out: Path) -> None:
    (out / "results.json").write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    md = _markdown(report)
    (out / "report.md").write_text(md, encoding="utf-8")
    print(md)
    _plots(report, out)


def _plots(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    source = report.get("swefaq") or {}
    for name, vals in source.items():
        ks = [1, 5, 10]
        ax.plot(ks, [vals[f"recall@{k}"] for k in ks], marker="o", label=name)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_title("SweFAQ dev (pooled)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "recall_at_k.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(report["themes"])
    ax.bar(names, [report["themes"][n]["ours"]["themes"] for n in names], label="ours")
    ax.bar(
        names,
        [report["themes"][n].get(theme_eval.ANCHOR, {}).get("themes", 0) for n in names],
        alpha=0.6,
        label="BERTopic defaults",
    )
    ax.set_ylabel("themes found")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "theme_sizes.png", dpi=110)
    plt.close(fig)
    _ = np  # numpy kept for callers that extend the plots
