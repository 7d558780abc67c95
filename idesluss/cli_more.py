"""Further commands (model, cluster, themes, curate, serve, keys, delete, evaluate, bench)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from idesluss.cli import _service, _settings, call_service
from idesluss.errors import EXIT_LOCKED, EXIT_OK, CliError


def cmd_model(args: argparse.Namespace) -> int:
    from models.registry import load_encoder, resolve_model_path

    settings = _settings(args)
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


def cmd_cluster(args: argparse.Namespace) -> int:
    from pipelines.themes.job import ThemeJobRunning
    from store import StoreLockedError

    try:
        svc = _service(args)
    except CliError as exc:
        if exc.code != EXIT_LOCKED:
            raise
        from api.remote import run_job_on_server

        return run_job_on_server(_settings(args))
    try:
        record = svc.cluster(show_bar=None)
    except ThemeJobRunning as exc:
        raise CliError(str(exc), EXIT_LOCKED) from exc
    except StoreLockedError as exc:  # pragma: no cover - opened above
        raise CliError(str(exc), EXIT_LOCKED) from exc
    finally:
        svc.close()
    summary = {k: record[k] for k in ("run_id", "n_themes", "share_unassigned", "quality", "timings")}
    summary["events"] = len(record["events"])
    print(json.dumps(summary, ensure_ascii=False, indent=1, default=str))
    return EXIT_OK


def cmd_themes(args: argparse.Namespace) -> int:
    svc = _service(args)
    try:
        themes = svc.themes(with_members=args.members)
    finally:
        svc.close()
    if args.json:
        keys = ["id", "label", "keywords", "size"] + (["members"] if args.members else [])
        print(json.dumps([{k: t[k] for k in keys} for t in themes], ensure_ascii=False))
        return EXIT_OK
    if not themes:
        print("Inga teman ännu: kör `idesluss cluster`.")
    for t in themes:
        growth = "" if t["growth"] is None else f", tillväxt {t['growth']:+.0%}"
        flag = "  [otillgodosedda behov]" if t["unmet_needs"] else ""
        print(f"{t['id']}  {t['label']}  ({t['ideas']} idéer, {t['needs']} behov{growth}){flag}")
        print(f"    nyckelord: {', '.join(t['keywords'])}")
        if args.members:
            print(f"    idéer: {', '.join(t['members'])}")
    return EXIT_OK


def cmd_curate(args: argparse.Namespace) -> int:
    cid = call_service(
        args,
        lambda svc: svc.curate(
            args.action,
            args.actor,
            args.theme,
            other_theme_id=args.into,
            kind=args.kind,
            item_id=args.item,
            name=args.name,
        ),
    )
    print(f"curation {cid} stored")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from evaluation.report import run_evaluation

    settings = _settings(args)
    report = run_evaluation(
        settings,
        out_dir=args.out,
        swefaq=args.swefaq,
        sweparaphrase=args.sweparaphrase,
        topic_files=args.topics,
        db=args.feedback_db,
        stability=not args.no_stability,
        variants=not args.no_variants,
    )
    if args.json:
        print(json.dumps(report, ensure_ascii=False, default=str))
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from evaluation.bench import run_bench

    report = run_bench(
        _settings(args), out_dir=args.out, sizes=args.sizes, theme_sizes=args.theme_sizes, quick=args.quick
    )
    if args.json:
        print(json.dumps(report, ensure_ascii=False, default=str))
    return EXIT_OK


def _add(sub: Any, name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text)
    p.set_defaults(func=func)
    return p


def register(sub: Any) -> None:
    """Add the further commands to the subparsers object."""
    p = _add(sub, "model", "build (once) and check the configured embedding model", cmd_model)
    p.add_argument("action", choices=["build"], nargs="?", default="build")
    p.add_argument("--check", action="store_true", help="also load it and embed one sentence")
    p.add_argument(
        "--static",
        action="store_true",
        help="also distil the static model for IDESLUSS_THEME_MODEL=static (about two minutes, once)",
    )

    _add(sub, "cluster", "run the nightly theme job now", cmd_cluster)

    p = _add(sub, "themes", "list the current themes", cmd_themes)
    p.add_argument("--json", action="store_true")
    p.add_argument("--members", action="store_true")

    p = _add(sub, "curate", "rename, merge, move or pin (respected by later runs)", cmd_curate)
    p.add_argument("action", choices=["rename", "merge", "move", "pin"])
    p.add_argument("theme", help="theme id")
    p.add_argument("--name", help="new name (rename)")
    p.add_argument("--into", help="target theme id (merge)")
    p.add_argument("--kind", choices=["ideas", "needs"], default="ideas")
    p.add_argument("--item", help="idea or need id (move, pin)")
    p.add_argument("--actor", default="cli")

    p = _add(sub, "evaluate", "quality figures against baselines; writes a Markdown report with plots", cmd_evaluate)
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
    p.add_argument("--json", action="store_true")

    p = _add(sub, "bench", "speed and memory against baselines measured in the same run", cmd_bench)
    p.add_argument("--out", default="reports/bench")
    p.add_argument("--sizes", nargs="*", type=int, default=[10_000, 100_000])
    p.add_argument("--theme-sizes", nargs="*", type=int, default=[10_000, 50_000, 100_000])
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--json", action="store_true")

    try:
        from api import cli as api_cli
    except ImportError:  # pragma: no cover - the API package is part of the install
        print("idesluss: the API package is missing", file=sys.stderr)
        return
    api_cli.register(sub)
