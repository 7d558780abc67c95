"""Dependencies: the service, the caller's key and role, and the per-key rate limit.

They are ``async``: FastAPI runs a plain ``def`` dependency on a worker thread, one hand-over there
and back per dependency, and each of these is microseconds of work (a remembered key, a dict
lookup, a token bucket). Whatever may read the database (a key not yet remembered, a tenant's
first request) goes to a worker thread as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request

from idesluss.service import Service
from store.keys import NOT_REMEMBERED


def key_user(app: Any, token: str) -> dict[str, Any] | None:
    """The live key record for a presented token, or None (used before a body is read, too).

    Blocking where the key is not remembered yet (it reads the key's row): call it on a worker thread.
    """
    return app.state.service.verify_key(token)  # type: ignore[no-any-return]


async def checked_key_user(app: Any, token: str) -> dict[str, Any] | None:
    """:func:`key_user` without blocking the event loop: a remembered key is checked here (a hash and a
    constant-time compare), any other on a worker thread."""
    user = app.state.service.verify_key(token, read=False)
    if user is NOT_REMEMBERED:
        user = await anyio.to_thread.run_sync(key_user, app, token)
    return user  # type: ignore[no-any-return]


async def current_user(request: Request) -> dict[str, Any]:
    """The caller's key record, or 401 (already checked by the body guard where a body was sent)."""
    checked = getattr(request.state, "user", None)
    if checked is not None:
        return checked
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401, "send an API key as 'Authorization: Bearer KEY'", headers={"WWW-Authenticate": "Bearer"}
        )
    user = await checked_key_user(request.app, token.strip())
    if user is None:
        raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return user


CurrentUser = Annotated[dict[str, Any], Depends(current_user)]


async def get_service(request: Request, user: CurrentUser) -> Service:
    """The service of the caller's tenant: every route that reads or writes data sees that tenant only
    (an id of another tenant is simply not there: 404)."""
    root: Service = request.app.state.service
    opened = root.opened_tenant(user["tenant"])
    if opened is not None:
        return opened
    return await anyio.to_thread.run_sync(root.for_tenant, user["tenant"])  # its first request opens it


ServiceDep = Annotated[Service, Depends(get_service)]


def _admit(user: dict[str, Any], roles: tuple[str, ...]) -> None:
    if user["role"] not in roles:
        raise HTTPException(403, f"this route is for {' or '.join(roles)}; your key has the role {user['role']}")


def require(*roles: str) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """A dependency that admits only ``roles`` (403 otherwise)."""

    async def check(user: CurrentUser) -> dict[str, Any]:
        _admit(user, roles)
        return user

    return check


Coach = Annotated[dict[str, Any], Depends(require("coach", "admin"))]
Leader = Annotated[dict[str, Any], Depends(require("leadership", "coach", "admin"))]
Admin = Annotated[dict[str, Any], Depends(require("admin"))]
Region = Annotated[dict[str, Any], Depends(require("region"))]


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float | None:
        """None when admitted, else seconds to wait."""
        now = time.monotonic()
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / rate
            self._buckets[key] = (tokens - 1.0, now)
            return None


def limited(*roles: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    """A dependency for routes that run the model or scan the corpus: ``roles`` only, and a per-key
    rate limit (429 with Retry-After) shared by every such route."""

    async def check(request: Request, user: CurrentUser) -> dict[str, Any]:
        _admit(user, roles)
        wait = request.app.state.limiter.take(user["key_id"])
        if wait is not None:
            raise HTTPException(
                429,
                f"too many requests for this key; retry in {wait:.1f} s",
                headers={"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        return user

    return check


LimitedCoach = Annotated[dict[str, Any], Depends(limited("coach", "admin"))]
LimitedLeader = Annotated[dict[str, Any], Depends(limited("leadership", "coach", "admin"))]
LimitedAdmin = Annotated[dict[str, Any], Depends(limited("admin"))]
