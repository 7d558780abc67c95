"""The ``idesluss`` command line: thin adapters from arguments to :class:`idesluss.service.Service`.

One module per command group (records, themes, admin, quality); this module builds the parser and
runs a command, on the file or, while ``idesluss serve`` owns it, through the server.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from idesluss.cli import admin, learn, quality, records, remote, themes
from idesluss.cli.common import BORROWED, LOCAL_ONLY, settings_for
from idesluss.errors import EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, CliError
from models.optional import MissingExtra

__all__ = ["EXIT_LOCKED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "CliError", "build_parser", "main", "run_borrowed"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="idesluss", description="Idéslussen matcher")
    parser.add_argument("--db", help="DuckDB file (else IDESLUSS_DB, else ./idesluss.duckdb)")
    parser.add_argument(
        "--tenant", help="the municipality to work on (else IDESLUSS_TENANT, else 'default'); see `idesluss tenants`"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (records, themes, admin, quality, learn):
        group.register(sub)
    return parser


def run_borrowed(service: Any, argv: Sequence[str]) -> tuple[int, str, str]:
    """Run one command line inside the server on its own service; returns (exit code, stdout, stderr).

    Called by the server for a command forwarded from ``idesluss`` beside it: the same parser and
    the same command functions run, so the user sees the same output and exit code.
    """
    from idesluss import capture

    token = BORROWED.set(service)
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
        BORROWED.reset(token)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"idesluss: error: {exc}", file=sys.stderr)
        return exc.code
    except MissingExtra as exc:  # an optional engine chosen in the settings without its extra
        print(f"idesluss: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``idesluss`` console script.

    A command that finds the database held by a running ``idesluss serve`` is sent to that server
    (through its token file) and runs there; its output and exit code are the same.
    """
    import os

    os.umask(0o077)  # every file a command creates is private (see store.db.private_files)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        forwardable = args.command not in LOCAL_ONLY and BORROWED.get() is None
        if forwardable and (answer := remote.forward_if_served(settings_for(args), _absolute_paths(argv, args))):
            return answer.code  # a server owns the file: it ran the command, no model loaded here
        try:
            return int(args.func(args))
        except CliError as exc:
            if exc.code != EXIT_LOCKED or not forwardable:
                raise
            return remote.forward_to_server(settings_for(args), _absolute_paths(argv, args))
    except CliError as exc:
        print(f"idesluss: error: {exc}", file=sys.stderr)
        return exc.code
    except MissingExtra as exc:
        print(f"idesluss: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("idesluss: interrupted", file=sys.stderr)
        return 130


def _absolute_paths(argv: list[str], args: argparse.Namespace) -> list[str]:
    """The command line with its file arguments made absolute (the server has another working directory)."""
    files = {v for v in (getattr(args, "path", None), getattr(args, "queries", None)) if v}
    out = [str(Path(a).resolve()) if a in files else a for a in argv]
    if not getattr(args, "tenant", None):  # a tenant chosen by IDESLUSS_TENANT travels as the option
        out = ["--tenant", settings_for(args).tenant, *out]
    return out
