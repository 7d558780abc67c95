"""The route benchmark at a tiny size against a real `idesluss serve` (no timed assertions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODEL_CACHE

# Every route the issue names, as the benchmark labels it.
REQUIRED = {
    "GET /health",
    "GET /admin/keys (key check)",
    "POST /ideas",
    "PATCH /ideas/{id}",
    "GET /ideas?page=",
    "GET /ideas?after=",
    "GET /ideas/{id}",
    "GET /ideas/{id}/similar",
    "POST /suggest",
    "GET /themes",
    "GET /overview",
    "GET /themes/{id}/page",
    "GET /admin/runs",
    "GET /admin/audit",
    "GET /themes (after a write)",
    "GET /overview (after a write)",
}


@pytest.mark.slow
def test_route_bench_reports_every_route_and_the_server_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evaluation.bench_routes import run, synthetic_texts, table

    monkeypatch.setenv("IDESLUSS_CACHE_DIR", str(MODEL_CACHE))
    out = tmp_path / "routes.json"
    run([300], requests=3, out=str(out), workdir=str(tmp_path))
    report = json.loads(out.read_text())
    (size,) = report["results"]
    assert size["n"] == 300
    assert set(size["routes"]) >= REQUIRED
    for name, route in size["routes"].items():
        assert route["requests"] == 3, name
        assert math.isfinite(route["p95_ms"]) and route["p95_ms"] > 0, name
        assert route["errors"] == 0, (name, route["statuses"])
    for figure in ("memory_after_start_mb", "memory_end_mb"):
        assert size[figure]["VmRSS"] > 50, figure  # a Python process with the model loaded: far above 50 MB
    assert size["start_s"] > 0 and size["theme_job_s"] > 0
    assert 0 < size["cli_query_s"]["median"] <= size["cli_query_s"]["max"]
    assert "CLI query beside the server" in table(report)
    assert set(report["ratios"]) == set(size["routes"])
    assert not list(tmp_path.glob("**/routes-300.duckdb")), "the benchmark database is removed after the run"
    # the synthetic texts are drawn from the vocabulary with repeats, so postings are long
    words = " ".join(synthetic_texts(200, np.random.default_rng(0))).lower().split()
    assert len(set(words)) < len(words) / 10
