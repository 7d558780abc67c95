"""Security headers on every kind of response, self-hosted API docs, and pages free of inline script."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import security
from api.app import create_app, plotly_js
from idesluss.service import Service
from idesluss.settings import Settings
from tests.fakes import KeywordEncoder

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((REPO / "api" / "templates").glob("*.html"))
SCRIPTS = sorted((REPO / "api" / "static").glob("*.js"))
FIXED = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    settings = Settings(db=tmp_path_factory.mktemp("sec") / "sec.duckdb", max_body_bytes=1024)
    svc = Service(settings, encoder=KeywordEncoder())
    svc.ingest("ideas", REPO / "demo" / "ideas.csv")
    key = svc.store.keys.create_key("coach", "test-coach")[1]
    app = create_app(settings, service=svc)

    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, {"Authorization": f"Bearer {key}"}
    svc.close()


def assert_secure(r, csp: str = security.CSP) -> None:
    assert r.headers["Content-Security-Policy"] == csp, r.request.url
    for name, value in FIXED.items():
        assert r.headers[name] == value, (r.request.url, name)


def test_policy_forbids_inline_and_eval_script() -> None:
    for policy in (security.CSP, security.REDOC_CSP):
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["script-src"] == "'self'"
        assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
        assert "http" not in policy and "*" not in policy
    assert "'unsafe-inline'" not in dict(d.strip().split(" ", 1) for d in security.CSP.split(";"))["style-src"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/ideas?page_size=2", 200),
        ("GET", "/health", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/leadership", 200),
        ("GET", "/", 200),
        ("GET", "/docs", 200),
        ("GET", "/ideas", 401),  # no key
        ("GET", "/no/such/route", 404),
        ("DELETE", "/health", 405),
        ("GET", "/boom", 500),  # answered by Starlette's outermost ServerErrorMiddleware
    ],
)
def test_every_response_has_the_headers_and_no_store(env, method, path, status) -> None:
    client, coach = env
    r = client.request(method, path, headers=coach if status == 200 else {})
    assert r.status_code == status
    assert_secure(r)
    assert r.headers["Cache-Control"] == "no-store"


def test_a_body_refused_by_the_size_limit_has_the_headers(env) -> None:
    client, coach = env  # the 413 comes from a middleware that create_app adds after security.install
    r = client.post("/suggest", content=b"x" * 2000, headers={**coach, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert_secure(r)
    assert r.headers["Cache-Control"] == "no-store"


def test_redoc_alone_gets_its_looser_style_policy(env) -> None:
    client, _ = env
    r = client.get("/redoc")
    assert r.status_code == 200 and "<redoc" in r.text
    assert_secure(r, security.REDOC_CSP)
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/static/app.js", "/static/style.css", "/vendor/plotly.min.js"])
def test_assets_have_the_headers_and_may_be_cached(env, path) -> None:
    client, _ = env
    r = client.get(path)
    assert r.status_code == 200
    assert_secure(r)
    assert "no-store" not in r.headers["Cache-Control"]
    assert r.headers["Cache-Control"] == (
        "public, max-age=86400" if path.startswith("/vendor/") else "public, no-cache"
    )


def urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|spec-url|data-openapi-url)=["']([^"']+)["']""", html)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_load_everything_from_this_origin(env, path) -> None:
    client, _ = env
    html = client.get(path).text
    found = urls(html)
    assert len(found) >= 2, found
    assert "http" not in html.lower() and "//" not in "".join(found)
    for url in found:
        r = client.get(url)
        assert r.status_code == 200, url
        assert_secure(r)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script in the docs page"
    assert "openapi" in "".join(found)


def test_swagger_init_reads_its_settings_from_the_page(env) -> None:
    client, _ = env
    html = client.get("/docs").text
    assert "/static/swagger-init.js" in urls(html)
    assert 'data-params="{&#34;dom_id&#34;: &#34;#swagger-ui&#34;' in html  # JSON, attribute-escaped


def test_streamed_bodies_pass_through_unbuffered() -> None:
    seen: list[dict] = []

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        assert [m.get("body") for m in seen] == [None, b"first"], "the first chunk was held back"
        await send({"type": "http.response.body", "body": b"second"})

    async def send(message) -> None:
        seen.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": "/stream", "root_path": "", "headers": []}
    asyncio.run(security.SecurityHeaders(app)(scope, receive, send))
    headers = dict(seen[0]["headers"])
    assert headers[b"content-security-policy"] == security.CSP.encode()
    assert headers[b"cache-control"] == b"no-store"
    assert [m.get("body") for m in seen[1:]] == [b"first", b"second"]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_templates_have_no_inline_script_or_handlers(template) -> None:
    html = template.read_text(encoding="utf-8")
    for attrs, body in re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S | re.I):
        assert "src=" in attrs and not body.strip(), f"inline script in {template.name}: {body[:80]!r}"
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I), f"an inline event handler in {template.name}"
    assert "javascript:" not in html.lower()
    assert not re.search(r"\sstyle\s*=", html, flags=re.I), f"an inline style attribute in {template.name}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_write_data_as_text_never_as_markup(script) -> None:
    code = re.sub(r"//[^\n]*", "", script.read_text(encoding="utf-8"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in code, f"{script.name} uses {sink}"


def test_leadership_page_opts_out_of_every_style_plotly_would_inject() -> None:
    """plotly.js skips injecting a <style> when an element with its id exists; an upgrade may change ids."""
    bundle = plotly_js().read_text(encoding="utf-8")
    ids = set(re.findall(r'getElementById\("([0-9a-f]{64})"\)\)\{var \w+=document\.createElement\("style"\)', bundle))
    assert ids, "the pattern no longer finds plotly's injected <style>: check /leadership in Chromium"
    page = (REPO / "api" / "templates" / "leadership.html").read_text(encoding="utf-8")
    assert all(f'id="{i}"' in page for i in ids), ids
