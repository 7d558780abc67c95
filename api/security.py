"""Security headers on every response, and API docs served from this origin (no CDN, no inline script)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import swagger_ui_default_parameters
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _policy(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


# plotly.js, verified in Chromium: it creates an EMPTY <style> and fills it through the CSSOM (allowed by
# the hash of the empty string, which admits no <style> with content), and sets a few style attributes
# with setAttribute (style-src-attr; an attribute loads nothing: img-src still governs any url()).
EMPTY_STYLE = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": f"'self' {EMPTY_STYLE}",
    "style-src-attr": "'unsafe-inline'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}
CSP = _policy(DIRECTIVES)
# ReDoc styles itself through styled-components, which writes CSS text into <style> elements, and runs
# its search in a worker made from a blob: URL. Only this page, which shows nothing but our own OpenAPI
# schema, gets both. (Its "API docs by Redocly" logo is an image from a CDN: blocked, as it should be.)
REDOC_CSP = _policy({**DIRECTIVES, "style-src": "'self' 'unsafe-inline'", "worker-src": "'self' blob:"})
PAGE_CSP = {"/redoc": REDOC_CSP}
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
ASSET_PREFIXES = ("/static/", "/vendor/")
DOCS_ASSETS = "/vendor/docs"
_templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class SecurityHeaders:
    """Pure ASGI middleware: edits the response start message only, so streamed bodies pass untouched.

    Every response gets a CSP (`PAGE_CSP` or `CSP`) and `HEADERS`; everything but static assets also gets
    `Cache-Control: no-store` (API answers carry personal data). Assets keep their own Cache-Control, or
    get one that makes the browser revalidate (ETag) before reuse.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        asset = path.startswith(ASSET_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = PAGE_CSP.get(path, CSP)
                for name, value in HEADERS.items():
                    headers[name] = value
                if not asset:
                    headers["Cache-Control"] = "no-store"
                elif "cache-control" not in headers:
                    headers["Cache-Control"] = "public, no-cache"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Put `SecurityHeaders` outside the whole stack and add `/docs` and `/redoc` with self-hosted assets.

    Outermost, not via `add_middleware`: Starlette's ServerErrorMiddleware (the 500 answer) and any
    middleware added after this call (the body-size 413) answer outside user middleware added here.

    Args:
        app: built with `docs_url=None, redoc_url=None`; the docs routes here replace FastAPI's,
            whose page carries an inline script that the CSP forbids.
    """
    build = app.build_middleware_stack

    def build_with_headers() -> ASGIApp:
        return SecurityHeaders(build())

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]
    _docs(app)


def _docs_assets() -> StaticFiles:
    """Swagger UI's and ReDoc's files as the fastapi-offline package ships them (no CDN at run time)."""
    if importlib.util.find_spec("fastapi_offline") is None:
        raise ModuleNotFoundError("the API docs serve fastapi-offline's files: pip install fastapi-offline")
    return StaticFiles(packages=[("fastapi_offline", "static")])


def _docs(app: FastAPI) -> None:
    app.mount(DOCS_ASSETS, _docs_assets(), name="docs-assets")

    def context(request: Request, kind: str) -> dict[str, str]:
        root = request.scope.get("root_path", "")
        return {
            "title": f"{app.title} – {kind}",
            "openapi_url": f"{root}{app.openapi_url}",
            "assets": f"{root}{DOCS_ASSETS}",
            "static": f"{root}/static",
        }

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def swagger_ui(request: Request) -> HTMLResponse:
        # the page has no script of its own: /static/swagger-init.js reads this JSON from a data attribute
        params = {**swagger_ui_default_parameters, "validatorUrl": None, **(app.swagger_ui_parameters or {})}
        ctx = {**context(request, "Swagger UI"), "params": json.dumps(params)}
        return _templates.TemplateResponse(request, "swagger.html", ctx)

    @app.get("/redoc", include_in_schema=False, response_class=HTMLResponse)
    def redoc(request: Request) -> HTMLResponse:
        return _templates.TemplateResponse(request, "redoc.html", context(request, "ReDoc"))
