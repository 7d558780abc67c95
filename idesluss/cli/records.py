"""Commands on ideas and needs: ingest, similar, needs, feedback."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from idesluss.cli.common import call_service, service_for
from idesluss.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, CliError


def _date(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {value!r}") from None


def _k(value: str) -> int:
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k must be a whole number, got {value!r}") from None
    if not 1 <= k <= 100:
        raise argparse.ArgumentTypeError(f"--k must be between 1 and 100, got {k}")
    return k


def _read_queries(path: str) -> list[tuple[str, str]]:
    out = []
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{path}: no such file", EXIT_USAGE)
    with p.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CliError(f"{path} line {number}: malformed JSON ({exc.msg})", EXIT_USAGE) from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not obj["text"].strip():
                raise CliError(f'{path} line {number}: each line needs a non-empty "text"', EXIT_USAGE)
            out.append((str(obj.get("id", number)), obj["text"]))
    return out


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        k: v
        for k, v in {
            "department": args.department,
            "status": args.status,
            "source": args.source,
            "date_from": args.date_from,
            "date_to": args.date_to,
        }.items()
        if v
    }


def _print_hits(query: str, hits: Sequence[Any]) -> None:
    print(f"Förslag för: {query[:100]}")
    if not hits:
        print("  (inga träffar)")
    for rank, h in enumerate(hits, start=1):
        d = h.as_dict()
        meta = ", ".join(
            x
            for x in (
                f"kommun {d['tenant']}" if d.get("tenant") else None,
                d["department"],
                d["created_at"],
                d["status"],
                d["outcome"],
            )
            if x
        )
        print(f"{rank:>3}. [{d['id']}] {d['title'] or d['snippet'][:60]}  ({d['score']:.2f})")
        if meta:
            print(f"     {meta}")
        print(f"     Varför: {d['why']}")
        if d["duplicate_group"]:
            more = d.get("duplicate_count", 0) - len(d["duplicate_group"])
            print(f"     Dubblettgrupp: {', '.join(d['duplicate_group'])}" + (f" och {more} till" if more > 0 else ""))


def cmd_ingest(args: argparse.Namespace) -> int:
    from pipelines.records import FileRejected

    svc = service_for(args, create_tenant=args.kind != "links")  # a first upload adds the tenant
    try:
        ingest = svc.ingest_links if args.kind == "links" else partial(svc.ingest, args.kind)  # links: past decisions
        report = ingest(args.path)
    except FileRejected as exc:
        raise CliError(f"file rejected: {exc}", EXIT_USAGE) from exc
    finally:
        svc.close()
    print(json.dumps(report.as_dict(), ensure_ascii=False, indent=1) if args.json else report.summary())
    return EXIT_PARTIAL if report.errors else EXIT_OK


def _cmd_search(args: argparse.Namespace, method: str, query_kind: str) -> int:
    from idesluss.service import NotFound, Query

    svc = service_for(args)
    kw = {"all_duplicates": args.all_duplicates, "scope": args.scope} if method == "similar" else {}
    try:
        if args.queries:
            batch = _read_queries(args.queries)
            results = getattr(svc, method)([Query(text=t) for _, t in batch], k=args.k, filters=_filters(args), **kw)
            for (qid, _), hits in zip(batch, results):
                print(json.dumps({"query_id": qid, "results": [h.as_dict() for h in hits]}, ensure_ascii=False))
            return EXIT_OK
        if args.idea is not None:
            query, label = Query(id=args.idea), args.idea
        elif args.text:
            query, label = Query(text=args.text), args.text
        else:
            raise CliError("give a TEXT, --idea ID or --queries FILE", EXIT_USAGE)
        hits = getattr(svc, method)([query], k=args.k, filters=_filters(args), **kw)[0]
    except NotFound as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    finally:
        svc.close()
    if args.json:
        print(json.dumps({"query": label, "results": [h.as_dict() for h in hits]}, ensure_ascii=False))
    else:
        _print_hits(label, hits)
    return EXIT_OK


def cmd_similar(args: argparse.Namespace) -> int:
    return _cmd_search(args, "similar", "ideas")


def cmd_needs(args: argparse.Namespace) -> int:
    return _cmd_search(args, "needs_for", "ideas")


def cmd_feedback(args: argparse.Namespace) -> int:
    fid = call_service(
        args,
        lambda svc: svc.feedback(
            args.query_kind, args.query_id, args.target_kind, args.target_id, args.verdict, args.actor
        ),
    )
    print(f"feedback {fid} stored")
    return EXIT_OK


def _search_parser(sub: Any, name: str, help_text: str, func: Any, with_dups: bool) -> None:
    p = sub.add_parser(name, help=help_text)
    p.add_argument("text", nargs="?", help="a drafted idea text")
    p.add_argument("--idea", help="id of a stored idea")
    p.add_argument("--queries", help='JSONL file of {"id", "text"} lines (model loaded once)')
    p.add_argument("--k", type=_k, default=10)
    p.add_argument("--json", action="store_true")
    p.add_argument("--department")
    p.add_argument("--status")
    p.add_argument("--source")
    p.add_argument("--date-from", type=_date)
    p.add_argument("--date-to", type=_date)
    if with_dups:
        p.add_argument("--all-duplicates", action="store_true", help="show every member of a duplicate group")
        p.add_argument(
            "--scope",
            choices=["own", "shared"],
            default="own",
            help="own: this municipality's ideas; shared: ideas other municipalities share (each with its tenant)",
        )
    p.set_defaults(func=func)


def register(sub: Any) -> None:
    """Add ingest, similar, needs and feedback."""
    p = sub.add_parser("ingest", help="load ideas, needs or past link decisions from .csv, .jsonl or .json")
    p.add_argument("kind", choices=["ideas", "needs", "links"])
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ingest)

    _search_parser(sub, "similar", "similar earlier ideas", cmd_similar, True)
    _search_parser(sub, "needs", "citizen needs an idea answers", cmd_needs, False)

    p = sub.add_parser("feedback", help="record a verdict on a suggestion")
    p.add_argument("query_id")
    p.add_argument("target_id")
    p.add_argument(
        "verdict", choices=["useful", "not_useful", "duplicate", "confirmed_need_link", "rejected_need_link"]
    )
    p.add_argument("--query-kind", default="ideas", choices=["ideas", "needs"])
    p.add_argument("--target-kind", default="ideas", choices=["ideas", "needs"])
    p.add_argument("--actor", default="cli")
    p.set_defaults(func=cmd_feedback)
