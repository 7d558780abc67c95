"""Fuzz the API from its own OpenAPI schema: no 5xx, responses match the schema, keys are enforced."""

from __future__ import annotations

from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from api.app import create_app  # noqa: E402
from idesluss.service import Service  # noqa: E402
from idesluss.settings import Settings  # noqa: E402
from pipelines.themes.job import run_theme_job  # noqa: E402
from tests.fakes import KeywordEncoder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _app():
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="fuzz-"))
    cfg = Settings(db=tmp / "fuzz.duckdb", rate_limit_per_minute=100_000)
    svc = Service(cfg, encoder=KeywordEncoder())
    svc.ingest("ideas", REPO / "demo" / "ideas.csv")
    svc.ingest("needs", REPO / "demo" / "needs.jsonl")
    run_theme_job(svc.store, svc.encoder, show_bar=False)
    key = svc.store.keys.create_key("admin", "fuzzer")[1]
    return create_app(cfg, service=svc), key


APP, ADMIN_KEY = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_with_a_valid_key(case) -> None:
    if case.method == "DELETE" and case.path == "/admin/keys/{key_id}":
        case.path_parameters = {"key_id": "not-a-key"}  # never revoke the fuzzer's own key
    # Every check but "schema-valid data is accepted": the service rightly refuses some schema-valid
    # values on meaning (a date in the future, an id that exists nowhere) with a 400 or 404.
    case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, excluded_checks=[positive_data_acceptance])


@schema.parametrize()
@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_without_a_key_is_refused(case) -> None:
    response = case.call()
    if case.path == "/health":
        assert response.status_code in (200, 405)  # public; 405 for a method it lacks
    else:
        # refused: 401 for a well-formed request, or a 4xx for a malformed one; never served, never 5xx
        assert 400 <= response.status_code < 500, (case.method, case.path, response.status_code)
        assert response.status_code != 403
