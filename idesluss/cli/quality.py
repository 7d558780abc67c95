"""The model and the measurements: model, evaluate, bench."""

from __future__ import annotations

import argparse
import json
from typing import Any

from idesluss.cli.common import settings_for
from idesluss.cli.themes import add_command
from idesluss.errors import EXIT_OK


def cmd_model(args: argparse.Namespace) -> int:
    from models.registry import load_encoder, resolve_model_path

    settings = settings_for(args)
    path, model_id = resolve_model_path(settings.model, settings.cache_dir)
    print(f"model {model_id} ready at {path}")
    if args.check or args.static:
        enc = load_encoder(settings.model, settings.cache_dir, precision=settings.precision, engine=settings.engine)
        vec = enc.encode_passages(["Gatubelysningen på Storgatan är trasig."])
        print(
            f"dimension {enc.dim}, norm {float((vec**2).sum()) ** 0.5:.4f}, engine {enc.engine}, "
            f"precision {enc.precision}"
        )
        if args.static:
            from models.registry import load_static_encoder

            static = load_static_encoder(enc, settings.cache_dir)
            print(f"static model {static.model_id} ready ({static.dim} dimensions; use IDESLUSS_THEME_MODEL=static)")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from evaluation.report import run_evaluation

    settings = settings_for(args)
    report = run_evaluation(
        settings,
        out_dir=args.out,
        swefaq=args.swefaq,
        sweparaphrase=args.sweparaphrase,
        topic_files=args.topics,
        db=args.feedback_db,
        stability=not args.no_stability,
        variants=not args.no_variants,
        learning=not args.no_learning,
        show_labels=not args.no_labels,
    )
    if args.json:
        print(json.dumps(report, ensure_ascii=False, default=str))
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from evaluation.bench import run_bench

    report = run_bench(
        settings_for(args),
        out_dir=args.out,
        sizes=args.sizes,
        theme_sizes=args.theme_sizes,
        quick=args.quick,
        sections=_csv(args.only, str),
        scale_sizes=_csv(args.scale_sizes, int),
        load_items=args.load_items,
        load_seconds=args.load_seconds,
        route_sizes=_csv(args.route_sizes, int),
        route_requests=args.route_requests,
    )
    if args.json:
        print(json.dumps(report, ensure_ascii=False, default=str))
    return EXIT_OK


def _csv(value: str | None, kind: Any) -> list[Any] | None:
    """'a,b' as a list (None when not given); sizes may be written 1_000_000."""
    if value is None:
        return None
    return [kind(v.strip().replace("_", "")) for v in value.split(",") if v.strip()]


def register(sub: Any) -> None:
    """Add model, evaluate and bench."""
    p = add_command(sub, "model", "build (once) and check the configured embedding model", cmd_model)
    p.add_argument("action", choices=["build"], nargs="?", default="build")
    p.add_argument("--check", action="store_true", help="also load it and embed one sentence")
    p.add_argument(
        "--static",
        action="store_true",
        help="also distil the static model for IDESLUSS_THEME_MODEL=static (about two minutes, once)",
    )

    p = add_command(
        sub, "evaluate", "quality figures against baselines; writes a Markdown report with plots", cmd_evaluate
    )
    p.add_argument("--out", default="reports/latest")
    p.add_argument("--swefaq", help="SweFAQ .jsonl (default: ../shared/data/swefaq/swefaq_dev.jsonl if present)")
    p.add_argument("--sweparaphrase", help="SweParaphrase .jsonl")
    p.add_argument("--topics", nargs="*", help="topic-labelled files (.jsonl argumentation or .tsv SIB-200)")
    p.add_argument("--feedback-db", help="a service database whose coach feedback to evaluate")
    p.add_argument("--no-stability", action="store_true", help="skip the two-run stability check")
    p.add_argument(
        "--no-variants",
        action="store_true",
        help="skip the encoder variants (ONNX, int8, static; their first build takes about 3 minutes)",
    )
    p.add_argument(
        "--no-learning",
        action="store_true",
        help="skip the learning-from-coaches measurement (a real `learn` run on SweFAQ dev, about five minutes)",
    )
    p.add_argument("--no-labels", action="store_true", help="skip the theme labels of the dev sets and the demo")
    p.add_argument("--json", action="store_true")

    p = add_command(sub, "bench", "speed and memory against baselines measured in the same run", cmd_bench)
    p.add_argument("--out", default="reports/bench")
    p.add_argument(
        "--only",
        help="comma-separated sections to run: encoder, search, themes, scale (dense index at scale), "
        "load (1 vs 8 clients), routes (every route as the corpus grows); default: all",
    )
    p.add_argument("--sizes", nargs="*", type=int, default=None, help="search items (default 10000 100000)")
    p.add_argument(
        "--theme-sizes", nargs="*", type=int, default=None, help="theme-job items (default 10000 50000 100000)"
    )
    p.add_argument("--scale-sizes", help="dense-index rows (default 10000,100000,1000000; synthetic vectors)")
    p.add_argument("--load-items", type=int, default=None, help="ideas for the load section (default 10000)")
    p.add_argument("--load-seconds", type=float, default=None, help="seconds per load phase (default 20)")
    p.add_argument("--route-sizes", help="ideas for the route section, e.g. 10000,100000 (the default)")
    p.add_argument("--route-requests", type=int, default=None, help="timed requests per route (default 100)")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--json", action="store_true")
