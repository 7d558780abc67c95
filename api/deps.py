"""Dependencies: the service, the caller's key and role, and the per-key rate limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from idesluss.service import Service


def key_user(app: Any, token: str) -> dict[str, Any] | None:
    """The live key record for a presented token, or None (used before a body is read, too)."""
    return app.state.service.verify_key(token)


def current_user(request: Request) -> dict[str, Any]:
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
    user = key_user(request.app, token.strip())
    if user is None:
        raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return user


CurrentUser = Annotated[dict[str, Any], Depends(current_user)]


def get_service(request: Request, user: CurrentUser) -> Service:
    """The service of the caller's tenant: every route that reads or writes data sees that tenant only
    (an id of another tenant is simply not there: 404)."""
    return request.app.state.service.for_tenant(user["tenant"])


ServiceDep = Annotated[Service, Depends(get_service)]


def require(*roles: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A dependency that admits only ``roles`` (403 otherwise)."""

    def check(user: CurrentUser) -> dict[str, Any]:
        if user["role"] not in roles:
            raise HTTPException(403, f"this route is for {' or '.join(roles)}; your key has the role {user['role']}")
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


def limited(*roles: str) -> Callable[..., dict[str, Any]]:
    """A dependency for routes that run the model or scan the corpus: ``roles`` only, and a per-key
    rate limit (429 with Retry-After) shared by every such route."""
    allowed = require(*roles)

    def check(request: Request, user: CurrentUser) -> dict[str, Any]:
        allowed(user)
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
