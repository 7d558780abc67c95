"""The FastAPI application: built once per process; the model and index load in the lifespan."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api import errors, security
from api.deps import RateLimiter, checked_key_user
from api.jobs import JobRunner
from api.limits import BodyGuard, local_token_ok
from idesluss import __version__, priority
from idesluss.cli.remote import sidecar_path
from idesluss.service import Service
from idesluss.settings import Settings

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


PLOTLY_JS = HERE / "static" / "vendor" / "plotly.min.js"
PLOTLY_MISSING = (
    f"plotly.js is missing ({PLOTLY_JS}): the leadership pages draw no charts. "
    "`make install` fetches it, or: python requirements/fetch_plotly_js.py (docs/install.md)"
)


def plotly_js() -> Path:
    """The plotly.js bundle served by the app (no CDN), fetched at install time (docs/install.md).

    Raises:
        FileNotFoundError: the bundle was not fetched (the message says how).
    """
    if not PLOTLY_JS.is_file():
        raise FileNotFoundError(PLOTLY_MISSING)
    return PLOTLY_JS


def _write_sidecar(settings: Settings, token: str) -> Path:
    path = sidecar_path(settings.db)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"host": settings.host, "port": settings.port, "pid": os.getpid(), "token": token}, fh)
    return path


def one_blas_thread_per_request() -> None:
    """Run numpy's BLAS on one thread in the server process.

    Concurrent requests are the parallelism here: each request's matrix products are small (a
    query against the rows of a collection), and a BLAS pool per product spins its threads against
    the other requests' (and the encoder's). Measured on the 2-core host with other work running:
    a 10,000 x 384 float32 product with a vector took 17 ms on OpenBLAS's two threads and 1.2 ms on
    one. The encoder's own thread pool (torch) is not affected.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    """Build the app; the service (store, model, index) is created in the lifespan unless given."""
    settings = settings or Settings()

    def attach(app: FastAPI, svc: Service) -> None:
        app.state.service = svc
        app.state.jobs = JobRunner(svc)
        app.state.limiter = RateLimiter(settings.rate_limit_per_minute)
        app.state.local_token = secrets.token_urlsafe(32)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service is None:
            one_blas_thread_per_request()
            priority.set_search_slots(settings.search_slots)
            # the server encodes in a process of its own unless told otherwise (models/process_encoder.py)
            own = (
                settings
                if "encoder_process" in settings.model_fields_set
                else settings.model_copy(update={"encoder_process": True})
            )
            svc = Service(own)
            svc.collections()  # load the model and build the index before the first request
            attach(app, svc)
        svc = app.state.service
        sidecar = _write_sidecar(settings, app.state.local_token) if service is None else None
        stop = threading.Event()
        if settings.nightly_at:
            from api.schedule import nightly_loop

            threading.Thread(
                target=nightly_loop, args=(settings.nightly_at, app.state.jobs, stop), name="nightly", daemon=True
            ).start()
        try:
            yield
        finally:
            stop.set()
            app.state.jobs.wait(timeout=600)
            if sidecar is not None:
                sidecar.unlink(missing_ok=True)
            if service is None:
                svc.close()

    app = FastAPI(
        title="Idéslussen matcher",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Förslag till idécoacher, teman till ledningen. Alla texter maskeras "
        "(personnummer, telefon, e-post) innan de lagras.",
    )
    if service is not None:  # a given service (tests, embedding) is usable without running the lifespan
        attach(app, service)
    errors.install(app)
    security.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )

    app.add_middleware(
        BodyGuard, body_limit=settings.max_body_bytes, upload_limit=settings.max_file_bytes, verify=checked_key_user
    )

    from api import routes_admin, routes_coach, routes_leadership, routes_region

    app.include_router(routes_coach.router)
    app.include_router(routes_leadership.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_region.router)
    _pages(app)
    _internal(app)
    return app


def _pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    if not PLOTLY_JS.is_file():
        log.warning(PLOTLY_MISSING)  # the service still starts: only the charts need it

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_bundle() -> FileResponse:
        if not PLOTLY_JS.is_file():
            raise HTTPException(503, PLOTLY_MISSING)
        return FileResponse(
            PLOTLY_JS, media_type="application/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    @app.get("/health", tags=["service"], summary="Lever tjänsten?", responses=errors.PROBLEM_RESPONSES)
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for name, title in (
        ("index", "Idéslussen"),
        ("coach", "Idécoach"),
        ("leadership", "Ledningens översikt"),
        ("admin", "Administration"),
    ):
        _page(app, name, title)


def _page(app: FastAPI, name: str, title: str) -> None:
    route = "/" if name == "index" else f"/{name}"

    @app.get(route, response_class=HTMLResponse, include_in_schema=False, name=f"page_{name}")
    def page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, f"{name}.html", {"title": title})


def _internal(app: FastAPI) -> None:
    """Routes for `idesluss cluster` on the same machine, authorised by the sidecar file's token."""

    def check(token: str | None, request: Request) -> None:
        if not local_token_ok(token, request.app.state.local_token):
            raise HTTPException(403, "a local token from the sidecar file is required")

    @app.post("/internal/jobs/cluster", include_in_schema=False, status_code=202)
    def start(
        request: Request,
        body: dict[str, str | None] | None = None,
        x_idesluss_local_token: str | None = Header(None),
    ) -> JSONResponse:
        from pipelines.themes.job import ThemeJobRunning
        from store import UnknownTenant

        check(x_idesluss_local_token, request)
        body = body or {}
        tenant, engine = body.get("tenant", "default"), body.get("engine", "local")  # tenant null: all of them
        if engine not in ("local", "ray"):
            raise HTTPException(422, f"engine must be 'local' or 'ray', got {engine!r}")
        try:
            if tenant is not None:
                request.app.state.service.for_tenant(tenant)
        except (UnknownTenant, ValueError) as exc:
            raise HTTPException(404, str(exc)) from exc
        try:
            job = request.app.state.jobs.start(
                actor="cli", tenant=tenant, engine=engine, ray_address=body.get("ray_address")
            )
            return JSONResponse(job, status_code=202)
        except ThemeJobRunning as exc:
            raise HTTPException(409, str(exc)) from exc
        except ValueError as exc:  # Ray is not installed in the server's environment
            raise HTTPException(400, str(exc)) from exc

    @app.post("/internal/cli", include_in_schema=False)
    def forwarded(
        body: dict[str, list[str]], request: Request, x_idesluss_local_token: str | None = Header(None)
    ) -> JSONResponse:
        from idesluss.cli import run_borrowed

        check(x_idesluss_local_token, request)
        argv = body.get("argv")
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise HTTPException(422, "argv must be a list of strings")
        code, out, err = run_borrowed(request.app.state.service, argv)
        return JSONResponse({"code": code, "stdout": out, "stderr": err})

    @app.get("/internal/jobs/{job_id}", include_in_schema=False)
    def status(job_id: str, request: Request, x_idesluss_local_token: str | None = Header(None)) -> JSONResponse:
        check(x_idesluss_local_token, request)
        job = request.app.state.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return JSONResponse(job)
