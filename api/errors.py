"""Consistent problem+json errors: type, title, status, detail and, where known, the field."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from idesluss.errors import Conflict, NotFound
from models.process_encoder import EncoderProcessDied

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
    },
}
PROBLEM_RESPONSES: dict[int | str, dict] = {
    code: {"description": text, "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}}
    for code, text in (
        (400, "Felaktig begäran"),
        (401, "Nyckel saknas eller är okänd"),
        (403, "Fel roll"),
        (404, "Okänt id"),
        (409, "Finns redan, eller ett jobb körs redan"),
        (413, "För stor"),
        (415, "Filtypen tas inte emot"),
        (422, "Ogiltigt fält"),
        (429, "För många anrop"),
        (500, "Internt fel"),
    )
}


def problem(
    status: int, title: str, detail: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A problem+json response."""
    body = {"type": f"https://idesluss.local/problems/{status}", "title": title, "status": status, "detail": detail}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", []) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        msg = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            return problem(400, "Malformed JSON", "the request body is not valid JSON")
        return problem(422, "Invalid request", f"{field}: {msg}" if field else msg, field)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        titles = {
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not found",
            405: "Method not allowed",
            413: "Request too large",
            429: "Too many requests",
        }
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # list every method of the path, not only the first route's
            methods = set()
            for route in request.app.routes:
                regex = getattr(route, "path_regex", None)
                if regex is not None and regex.match(request.url.path):
                    methods |= set(getattr(route, "methods", None) or ())
            headers["Allow"] = ", ".join(sorted(methods))
        return problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail), headers=headers)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem(404, "Not found", str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return problem(409, "Conflict", str(exc))

    @app.exception_handler(EncoderProcessDied)
    async def _encoder_down(request: Request, exc: EncoderProcessDied) -> JSONResponse:
        # a passing failure (the encoder process stopped twice during one call): worth a retry; a
        # failure the child reports (every time the same) stays a 500, logged with its traceback
        log.warning("encoding failed on %s %s: %s", request.method, request.url.path, exc)
        return problem(
            503,
            "Service unavailable",
            "the encoder stopped while answering; it starts again on the next request: try again",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        return problem(400, "Bad request", "the JSON body is nested too deeply; a request is a flat object")

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError) -> JSONResponse:
        return problem(400, "Bad request", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "an unexpected error occurred; it has been logged")
