"""What every command shares: settings at the edge, the service (own or borrowed from a server), errors."""

from __future__ import annotations

import argparse
import contextvars
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from idesluss.errors import EXIT_LOCKED, EXIT_USAGE, CliError

# Inside a running server, a forwarded command borrows the server's service instead of opening the file.
BORROWED: contextvars.ContextVar[Any] = contextvars.ContextVar("idesluss_borrowed_service", default=None)
# Commands that never go through a running server: they own no data (model, evaluate, bench), start
# the server itself, or have their own handoff (cluster follows the job's progress).
LOCAL_ONLY = {"serve", "model", "evaluate", "bench", "cluster"}


def settings_for(args: argparse.Namespace) -> Any:
    """The settings of the environment, with ``--db`` applied."""
    from idesluss.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        raise CliError(f"invalid setting: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", EXIT_USAGE) from exc
    if getattr(args, "db", None):
        settings.db = Path(args.db)
    if getattr(args, "tenant", None):
        from store.base import check_tenant

        try:
            settings.tenant = check_tenant(args.tenant)
        except ValueError as exc:
            raise CliError(f"--tenant: {exc}", EXIT_USAGE) from exc
    return settings


class _Borrowed:
    """The server's service, lent to one forwarded command: everything but ``close``."""

    def __init__(self, service: Any) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def close(self) -> None:
        """The server keeps its service open."""


def service_for(args: argparse.Namespace, create_tenant: bool = False) -> Any:
    """The service of the command's tenant (``--tenant``): the server's when the command runs inside
    it, else one on the file.

    Args:
        create_tenant: add the tenant when it does not exist yet (commands that write: ingest, keys
            create, tenants add); any other command on an unknown tenant exits 2 naming the tenants.
    """
    from idesluss.service import Service
    from store import StoreLockedError, UnknownTenant

    settings = settings_for(args)
    borrowed = BORROWED.get()
    try:
        if borrowed is not None:
            return _Borrowed(borrowed.for_tenant(settings.tenant, create=create_tenant))
        return Service(settings, create_tenant=create_tenant)
    except StoreLockedError as exc:
        raise CliError(str(exc), EXIT_LOCKED) from exc
    except UnknownTenant as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def call_service(args: argparse.Namespace, fn: Any) -> Any:
    """Open the service, call ``fn(service)``, close it; unknown ids and bad values exit 2 with a message."""
    from idesluss.errors import NotFound

    svc = service_for(args)
    try:
        return fn(svc)
    except (NotFound, ValueError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    finally:
        svc.close()
