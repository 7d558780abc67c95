"""Limits before work: the caller is checked before a body is read, and a body is counted as it streams.

A pure ASGI middleware (no buffering): a request that carries a body must first show a live API
key (or, on ``/internal/``, the local token of the server's token file); a declared
``Content-Length`` over the limit is refused at once; a body without one (chunked) is counted as
it arrives and refused the moment it passes the limit, so neither an anonymous client nor a
chunked upload can make the server read, parse or spool more than the limit.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from api import errors

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_METHODS = {"POST", "PUT", "PATCH"}
# Public GET-only paths: a body sent there is never read (the router answers 405), so no key is asked.
PUBLIC = ("/health", "/static/", "/vendor/", "/docs", "/redoc", "/openapi.json")
PAGES = ("/", "/coach", "/leadership", "/admin")
LOCAL_TOKEN_HEADER = b"x-idesluss-local-token"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (answered 413 by the handlers)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is over the limit of {limit:,} bytes")


def local_token_ok(presented: str | bytes | None, expected: str) -> bool:
    """Constant-time check of the local token; any bytes (non-ASCII included) are simply wrong."""
    if not presented:
        return False
    raw = presented if isinstance(presented, bytes) else presented.encode("utf-8", "surrogateescape")
    return secrets.compare_digest(raw, expected.encode("ascii"))


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


class BodyGuard:
    """Authenticate before the body, and bound the body by its declared and its streamed size.

    Args:
        app: the inner ASGI app.
        body_limit: bytes allowed on ordinary routes.
        upload_limit: bytes allowed under ``upload_prefix``.
        verify: ``await verify(app, token) -> user or None`` (it must not block the event loop).
        upload_prefix: the path prefix of file uploads.
    """

    def __init__(
        self,
        app: ASGIApp,
        body_limit: int,
        upload_limit: int,
        verify: Callable[[Any, str], Awaitable[dict[str, Any] | None]],
        upload_prefix: str = "/admin/ingest",
    ) -> None:
        self.app = app
        self.body_limit = body_limit
        self.upload_limit = upload_limit
        self.verify = verify
        self.upload_prefix = upload_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.upload_limit if path.startswith(self.upload_prefix) else self.body_limit
        refusal = await self._refusal(scope, path, limit)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:  # raised outside a route's handlers (nothing sent yet)
            if started:
                raise
            await errors.problem(413, "Request too large", str(exc.detail))(scope, receive, send)

    async def _refusal(self, scope: Scope, path: str, limit: int) -> Any:
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            if not length.isdigit():
                return errors.problem(400, "Bad request", "Content-Length is not a whole number")
            return errors.problem(413, "Request too large", f"the body is over the limit of {limit:,} bytes")
        app = scope["app"]
        if path in PAGES or path.startswith(PUBLIC):
            return None
        if path.startswith("/internal/"):
            if not local_token_ok(_header(scope, LOCAL_TOKEN_HEADER), app.state.local_token):
                return errors.problem(403, "Forbidden", "a local token from the server's token file is required")
            return None
        header = (_header(scope, b"authorization") or b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return errors.problem(
                401,
                "Unauthorized",
                "send an API key as 'Authorization: Bearer KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        user = await self.verify(app, token.strip())
        if user is None:
            return errors.problem(
                401, "Unauthorized", "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        scope.setdefault("state", {})["user"] = user
        return None
