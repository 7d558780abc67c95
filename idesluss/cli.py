"""The ``idesluss`` command line: a thin adapter from arguments to :class:`idesluss.service.Service`."""

from __future__ import annotations

import argparse
import contextvars
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from idesluss.errors import EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, CliError

__all__ = ["EXIT_LOCKED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "CliError", "main"]


def _settings(args: argparse.Namespace):  # -> Settings
    from idesluss.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        raise CliError(f"invalid setting: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", EXIT_USAGE) from exc
    if getattr(args, "db", None):
        settings.db = Path(args.db)
    return settings


# Inside a running server, a forwarded command borrows the server's service instead of opening the file.
_BORROWED: contextvars.ContextVar[Any] = contextvars.ContextVar("idesluss_borrowed_service", default=None)
# Commands that never go through a running server: they own no data (model, evaluate, bench), start
# the server itself, or have their own handoff (cluster follows the job's progress).
LOCAL_ONLY = {"serve", "model", "evaluate", "bench", "cluster"}


class _Borrowed:
    """The server's service, lent to one forwarded command: everything but ``close``."""

    def __init__(self, service: Any) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def close(self) -> None:
        """The server keeps its service open."""


def _service(args: argparse.Namespace):  # -> Service
    from idesluss.service import Service
    from store import StoreLockedError

    borrowed = _BORROWED.get()
    if borrowed is not None:
        return _Borrowed(borrowed)
    try:
        return Service(_settings(args))
    except StoreLockedError as exc:
        raise CliError(str(exc), EXIT_LOCKED) from exc


def run_borrowed(service: Any, argv: Sequence[str]) -> tuple[int, str, str]:
    """Run one command line inside the server on its own service; returns (exit code, stdout, stderr).

    Called by the server for a command forwarded from ``idesluss`` beside it: the same parser and
    the same command functions run, so the user sees the same output and exit code.
    """
    from idesluss import capture

    token = _BORROWED.set(service)
    try:
        with capture.thread_output() as (out, err):
            try:
                args = build_parser().parse_args(list(argv))
            except SystemExit as exc:  # argparse has printed the usage error
                return int(exc.code or 0), out.getvalue(), err.getvalue()
            if args.command in LOCAL_ONLY:
                return EXIT_USAGE, "", f"idesluss: error: {args.command} does not run through the server\n"
            code = _run(args)
            return code, out.getvalue(), err.getvalue()
    finally:
        _BORROWED.reset(token)


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
        meta = ", ".join(x for x in (d["department"], d["created_at"], d["status"], d["outcome"]) if x)
        print(f"{rank:>3}. [{d['id']}] {d['title'] or d['snippet'][:60]}  ({d['score']:.2f})")
        if meta:
            print(f"     {meta}")
        print(f"     Varför: {d['why']}")
        if d["duplicate_group"]:
            print(f"     Dubblettgrupp: {', '.join(d['duplicate_group'])}")


def cmd_ingest(args: argparse.Namespace) -> int:
    from pipelines.records import FileRejected

    svc = _service(args)
    try:
        report = svc.ingest(args.kind, args.path)
    except FileRejected as exc:
        raise CliError(f"file rejected: {exc}", EXIT_USAGE) from exc
    finally:
        svc.close()
    print(json.dumps(report.as_dict(), ensure_ascii=False, indent=1) if args.json else report.summary())
    return EXIT_PARTIAL if report.errors else EXIT_OK


def _cmd_search(args: argparse.Namespace, method: str, query_kind: str) -> int:
    from idesluss.service import NotFound, Query

    svc = _service(args)
    try:
        if args.queries:
            batch = _read_queries(args.queries)
            results = getattr(svc, method)([Query(text=t) for _, t in batch], k=args.k, filters=_filters(args))
            for (qid, _), hits in zip(batch, results):
                print(json.dumps({"query_id": qid, "results": [h.as_dict() for h in hits]}, ensure_ascii=False))
            return EXIT_OK
        if args.idea is not None:
            query, label = Query(id=args.idea), args.idea
        elif args.text:
            query, label = Query(text=args.text), args.text
        else:
            raise CliError("give a TEXT, --idea ID or --queries FILE", EXIT_USAGE)
        kw = {"all_duplicates": args.all_duplicates} if method == "similar" else {}
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


def call_service(args: argparse.Namespace, fn: Any) -> Any:
    """Open the service, call ``fn(service)``, close it; unknown ids and bad values exit 2 with a message."""
    from idesluss.errors import NotFound

    svc = _service(args)
    try:
        return fn(svc)
    except (NotFound, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    finally:
        svc.close()


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
    p.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="idesluss", description="Idéslussen matcher")
    parser.add_argument("--db", help="DuckDB file (else IDESLUSS_DB, else ./idesluss.duckdb)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="load ideas or needs from .csv, .jsonl or .json")
    p.add_argument("kind", choices=["ideas", "needs"])
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

    _register_more(sub)
    return parser


def _register_more(sub: Any) -> None:
    """Commands that live in their own modules (themes, serve, keys, evaluate, bench)."""
    from idesluss import cli_more

    cli_more.register(sub)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"idesluss: error: {exc}", file=sys.stderr)
        return exc.code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``idesluss`` console script.

    A command that finds the database held by a running ``idesluss serve`` is sent to that server
    (through its token file) and runs there; its output and exit code are the same.
    """
    from store.db import private_files

    private_files()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        try:
            return int(args.func(args))
        except CliError as exc:
            if exc.code != EXIT_LOCKED or args.command in LOCAL_ONLY:
                raise
            from api.remote import forward_to_server

            return forward_to_server(_settings(args), _absolute_paths(argv, args))
    except CliError as exc:
        print(f"idesluss: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("idesluss: interrupted", file=sys.stderr)
        return 130


def _absolute_paths(argv: list[str], args: argparse.Namespace) -> list[str]:
    """The command line with its file arguments made absolute (the server has another working directory)."""
    files = {v for v in (getattr(args, "path", None), getattr(args, "queries", None)) if v}
    return [str(Path(a).resolve()) if a in files else a for a in argv]
