"""The nightly job and its themes: cluster, themes, curate."""

from __future__ import annotations

import argparse
import json
from typing import Any

from idesluss.cli.common import call_service, service_for, settings_for
from idesluss.errors import EXIT_ERROR, EXIT_LOCKED, EXIT_OK, EXIT_USAGE, CliError


def cmd_cluster(args: argparse.Namespace) -> int:
    from pipelines.themes.job import ThemeJobRunning
    from store import StoreLockedError

    on_ray = getattr(args, "engine", "local") == "ray"
    if on_ray:
        from pipelines.themes.ray_engine import INSTALL_HINT, ray_available

        if not ray_available():
            raise CliError(INSTALL_HINT, EXIT_USAGE)
    try:
        svc = service_for(args)
    except CliError as exc:
        if exc.code != EXIT_LOCKED:
            raise
        from idesluss.cli.remote import run_job_on_server

        # the server runs the job (on Ray too) and writes the result through its single writer
        engine = "ray" if on_ray else "local"
        return run_job_on_server(
            settings_for(args),
            engine=engine,
            ray_address=getattr(args, "ray_address", None),
            all_tenants=getattr(args, "all_tenants", False),
        )
    if getattr(args, "all_tenants", False):
        try:
            engine = "ray" if on_ray else "local"
            records = svc.cluster_tenants(engine=engine, ray_address=args.ray_address, show_bar=None)
        finally:
            svc.close()
        keep = ("run_id", "n_themes", "share_unassigned", "quality")
        out = {t: r if "error" in r else {k: r[k] for k in keep} for t, r in records.items()}
        print(json.dumps(out, ensure_ascii=False, indent=1, default=str))
        return EXIT_ERROR if any("error" in r for r in records.values()) else EXIT_OK
    try:
        record = _run_on_ray(args, svc) if on_ray else svc.cluster(show_bar=None)
    except ThemeJobRunning as exc:
        raise CliError(str(exc), EXIT_LOCKED) from exc
    except StoreLockedError as exc:  # pragma: no cover - opened above
        raise CliError(str(exc), EXIT_LOCKED) from exc
    finally:
        svc.close()
    summary = {k: record[k] for k in ("run_id", "n_themes", "share_unassigned", "quality", "timings")}
    if on_ray:
        summary["nodes"] = {stage: len(ids) for stage, ids in record["params"]["nodes"].items()}
    summary["events"] = len(record["events"])
    print(json.dumps(summary, ensure_ascii=False, indent=1, default=str))
    return EXIT_OK


def _run_on_ray(args: argparse.Namespace, svc: Any) -> dict[str, Any]:
    """The job on a Ray cluster: each encoder actor builds the service's encoder from the settings."""
    from idesluss.themes_service import ray_options
    from pipelines.themes.job import run_theme_job
    from pipelines.themes.ray_engine import RayJobFailed

    options = ray_options(settings_for(args), args.ray_address, args.ray_scratch)
    try:
        return run_theme_job(svc.store, svc.theme_encoder, engine="ray", ray=options, show_bar=None)
    except RayJobFailed as exc:
        raise CliError(f"{exc} (the last good themes stay current)", EXIT_ERROR) from exc


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
        if t["growth"] is not None:
            growth = f", tillväxt {t['growth']:+.0%}"
        else:  # too few items to compare the quarters: the counts, as the pages show them
            growth = f", nya senaste kvartalet {t['last_quarter_count']}, kvartalet före {t['previous_quarter_count']}"
        flag = "  [otillgodosedda behov]" if t["unmet_needs"] else ""
        print(f"{t['id']}  {t['label']}  ({t['ideas']} idéer, {t['needs']} behov{growth}){flag}")
        if t.get("representative_title"):
            print(f"    idé: {t['representative_title']}")
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
    p = add_command(sub, "cluster", "run the nightly theme job now", cmd_cluster)
    p.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="where the job runs (ray: optional extra [scale])"
    )
    p.add_argument(
        "--all-tenants",
        action="store_true",
        help="every tenant: one after the other here, at the same time on Ray (--engine ray)",
    )
    p.add_argument("--ray-address", help="Ray cluster HOST:PORT (default: RAY_ADDRESS, else a private local instance)")
    p.add_argument("--ray-scratch", help="folder for the job's private export (shared storage on a multi-node cluster)")

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
