"""Dependencies: the service, the caller's key and role, and the per-key rate limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from idesluss.service import Service
from store import keys as keystore


def get_service(request: Request) -> Service:
    """The one service of this app (built in the lifespan)."""
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def current_user(request: Request, service: ServiceDep) -> dict[str, Any]:
    """The caller's key record, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401, "send an API key as 'Authorization: Bearer KEY'", headers={"WWW-Authenticate": "Bearer"}
        )
    user = keystore.verify_key(service.store, token.strip())
    if user is None:
        raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return user


CurrentUser = Annotated[dict[str, Any], Depends(current_user)]


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


def rate_limited(request: Request, user: Coach) -> dict[str, Any]:
    """Coach routes that run the model are rate limited per key (429 with Retry-After)."""
    wait = request.app.state.limiter.take(user["key_id"])
    if wait is not None:
        raise HTTPException(
            429,
            f"too many requests for this key; retry in {wait:.1f} s",
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )
    return user


LimitedCoach = Annotated[dict[str, Any], Depends(rate_limited)]
