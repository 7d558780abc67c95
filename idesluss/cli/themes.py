"""The nightly job and its themes: cluster, themes, curate."""

from __future__ import annotations

import argparse
import json
from typing import Any

from idesluss.cli.common import call_service, service_for, settings_for
from idesluss.errors import EXIT_LOCKED, EXIT_OK, CliError


def cmd_cluster(args: argparse.Namespace) -> int:
    from pipelines.themes.job import ThemeJobRunning
    from store import StoreLockedError

    try:
        svc = service_for(args)
    except CliError as exc:
        if exc.code != EXIT_LOCKED:
            raise
        from idesluss.cli.remote import run_job_on_server

        return run_job_on_server(settings_for(args))
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
    svc = service_for(args)
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


def add_command(sub: Any, name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text)
    p.set_defaults(func=func)
    return p


def register(sub: Any) -> None:
    """Add cluster, themes and curate."""
    add_command(sub, "cluster", "run the nightly theme job now", cmd_cluster)

    p = add_command(sub, "themes", "list the current themes", cmd_themes)
    p.add_argument("--json", action="store_true")
    p.add_argument("--members", action="store_true")

    p = add_command(sub, "curate", "rename, merge, move or pin (respected by later runs)", cmd_curate)
    p.add_argument("action", choices=["rename", "merge", "move", "pin"])
    p.add_argument("theme", help="theme id")
    p.add_argument("--name", help="new name (rename)")
    p.add_argument("--into", help="target theme id (merge)")
    p.add_argument("--kind", choices=["ideas", "needs"], default="ideas")
    p.add_argument("--item", help="idea or need id (move, pin)")
    p.add_argument("--actor", default="cli")
