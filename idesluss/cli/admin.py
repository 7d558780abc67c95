"""Running and administering the service: serve, keys, delete, backup, restore."""

from __future__ import annotations

import argparse
import threading
from typing import Any

from idesluss.cli.common import call_service, service_for, settings_for
from idesluss.errors import EXIT_USAGE, CliError, NotFound


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    settings = settings_for(args)
    settings.host, settings.port = args.host or settings.host, args.port or settings.port
    if args.demo_keys:
        _print_demo_keys(args)
    base = f"http://{settings.host}:{settings.port}"
    print("Idéslussen startar (modellen och indexet laddas) ...", flush=True)
    threading.Thread(target=_announce_when_up, args=(base,), name="announce", daemon=True).start()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    return 0


def _announce_when_up(base: str, timeout_s: float = 900.0) -> None:
    """Print the page addresses once /health answers (not before: a user would open a dead page)."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as res:  # noqa: S310 (our own loopback)
                if res.status == 200:
                    print(
                        f"Idéslussen är igång: coach {base}/coach  ledning {base}/leadership  "
                        f"admin {base}/admin  API {base}/docs",
                        flush=True,
                    )
                    return
        except OSError:
            pass
        time.sleep(0.3)


def _print_demo_keys(args: argparse.Namespace) -> None:
    svc = service_for(args)
    try:
        for role in ("coach", "leadership", "admin"):
            _, key = svc.create_key(role, f"demo-{role}")
            print(f"demo key ({role}): {key}")
    finally:
        svc.close()


def cmd_keys(args: argparse.Namespace) -> int:
    svc = service_for(args, create_tenant=args.action == "create")  # a first key adds the tenant
    try:
        if args.action == "create":
            if not args.role or not args.name:
                raise CliError("keys create needs --role and --name", EXIT_USAGE)
            region = [t.strip() for t in (args.tenants or "").split(",") if t.strip()] or None
            try:
                key_id, key = svc.create_key(args.role, args.name, actor="cli", region=region)
            except ValueError as exc:
                raise CliError(str(exc), EXIT_USAGE) from exc
            where = f"region {', '.join(region)}" if region else f"tenant {svc.tenant}"
            print(f"created key {key_id} for {args.name} ({args.role}, {where}); it is shown only now:")
            print(key)
        elif args.action == "list":
            for k in svc.list_keys():
                spans = f"  region {','.join(k['region'])}" if k.get("region") else ""
                state = "revoked" if k["revoked_at"] else "active"
                print(f"{k['key_id']}  {k['role']:<10} {k['name']}  {state}{spans}")
        else:
            if not args.key_id or not svc.revoke_key(args.key_id):
                raise CliError(f"no live key {args.key_id!r}", EXIT_USAGE)
            print(f"revoked {args.key_id}")
    finally:
        svc.close()
    return 0


def cmd_tenants(args: argparse.Namespace) -> int:
    """List the tenants, add the ``--tenant`` one, or set its default for sharing ideas."""
    if args.action == "add":
        svc = service_for(args, create_tenant=True)
        try:
            if args.share_by_default:
                svc.set_shared_default(True)
            print(
                f"tenant {svc.tenant} is ready ({'shares' if args.share_by_default else 'keeps'} its ideas by default)"
            )
        finally:
            svc.close()
        return 0
    svc = service_for(args)
    try:
        if args.action == "share-default":
            if args.value is None:
                raise CliError("tenants share-default needs true or false", EXIT_USAGE)
            svc.set_shared_default(args.value == "true")
            print(
                f"tenant {svc.tenant}: ideas are {'shared' if args.value == 'true' else 'not shared'} unless an idea says otherwise"
            )
        else:
            for t in svc.tenants():
                print(f"{t['name']:<20} {'shares by default' if t['shared_default'] else 'own by default'}")
    finally:
        svc.close()
    return 0


def cmd_delete(args: argparse.Namespace) -> int:

    svc = service_for(args)
    try:
        svc.erase(args.kind, args.id, actor=args.actor)
        svc.checkpoint()
    except NotFound as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    finally:
        svc.close()
    print(f"erased {args.kind[:-1]} {args.id}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:

    dest = call_service(args, lambda svc: svc.backup(args.path))
    print(f"backup written to {dest}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:

    call_service(args, lambda svc: svc.restore(args.path))
    print(f"restored the database from {args.path}")
    return 0


def register(sub: Any) -> None:
    """Add serve, keys, delete, backup and restore."""
    p = sub.add_parser("backup", help="write a consistent copy of the database (works while serving)")
    p.add_argument("path", help="the new file (never overwritten)")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="replace the database by a backup (works while serving)")
    p.add_argument("path", help="a file written by `idesluss backup`")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("serve", help="start the HTTP API and pages")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--demo-keys", action="store_true", help="create and print one key per role (demo only)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("keys", help="manage API keys")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("--role", choices=["coach", "leadership", "admin", "region"])
    p.add_argument("--name")
    p.add_argument("--key-id")
    p.add_argument("--tenants", help="a region key's tenants, comma-separated (its overview spans their shared ideas)")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser(
        "tenants", help="the municipalities of this installation (add one with --tenant NAME tenants add)"
    )
    p.add_argument("action", choices=["list", "add", "share-default"])
    p.add_argument("value", nargs="?", choices=["true", "false"], help="share-default: true or false")
    p.add_argument(
        "--share-by-default", action="store_true", help="add: share the new tenant's ideas unless marked otherwise"
    )
    p.set_defaults(func=cmd_tenants)

    p = sub.add_parser("delete", help="erase an idea or need everywhere (audited)")
    p.add_argument("kind", choices=["ideas", "needs"])
    p.add_argument("id")
    p.add_argument("--actor", default="cli")
    p.set_defaults(func=cmd_delete)
