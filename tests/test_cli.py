"""The command line end to end: real DuckDB file, real model, subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MODEL_CACHE, REPO

pytestmark = pytest.mark.slow


def run(db: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IDESLUSS_CACHE_DIR": str(MODEL_CACHE), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "idesluss", "--db", str(db), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory, real_encoder) -> Path:
    db = tmp_path_factory.mktemp("cli") / "demo.duckdb"
    for kind, path in (("ideas", "demo/ideas.csv"), ("needs", "demo/needs.jsonl")):
        proc = run(db, "ingest", kind, path)
        assert proc.returncode == 0, proc.stderr
    return db


def test_similar_json_shape_and_history(demo_db: Path) -> None:
    proc = run(demo_db, "similar", "Vi behöver en säker cykelväg från Öjebyn in till stan", "--k", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["query"].startswith("Vi behöver")
    assert len(out["results"]) == 3
    top = out["results"][0]
    assert {"id", "score", "title", "status", "outcome", "why", "department"} <= set(top)
    assert "cykel" in (top["title"] + top["snippet"]).lower()


def test_similar_for_a_stored_idea_never_returns_itself(demo_db: Path) -> None:
    proc = run(demo_db, "similar", "--idea", "I0068", "--k", "5", "--json")
    ids = [r["id"] for r in json.loads(proc.stdout)["results"]]
    assert "I0068" not in ids and "I0069" in ids  # its paraphrase partner


def test_queries_batch_writes_one_line_per_query(demo_db: Path, tmp_path: Path) -> None:
    q = tmp_path / "q.jsonl"
    q.write_text(
        '{"id": "q1", "text": "gatlampor som är trasiga"}\n{"id": "q2", "text": "bokbuss till byarna"}\n',
        encoding="utf-8",
    )
    proc = run(demo_db, "needs", "--queries", str(q), "--k", "4")
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [x["query_id"] for x in lines] == ["q1", "q2"]
    assert all(len(x["results"]) == 4 for x in lines)
    assert lines[1]["results"][0]["id"].startswith("B")


def test_ingest_reports_bad_rows_and_keeps_good_ones(demo_db: Path, tmp_path: Path) -> None:
    f = tmp_path / "nya.csv"
    f.write_text(
        "id;text;created_at\nX1;Fler bänkar i parken;2025-01-01\nX2;;2025-01-01\nX3;Ok;imorgon\n", encoding="utf-8"
    )
    proc = run(demo_db, "ingest", "ideas", str(f))
    assert proc.returncode == 3
    assert "line 3 (id X2): text is empty" in proc.stdout
    assert "line 4 (id X3)" in proc.stdout
    assert "1 ideas accepted" in proc.stdout


def test_bad_arguments_exit_with_a_message(demo_db: Path) -> None:
    proc = run(demo_db, "similar", "--idea", "finns-inte")
    assert proc.returncode == 2 and "no idea with id 'finns-inte'" in proc.stderr
    proc = run(demo_db, "similar", "x", "--k", "0")
    assert proc.returncode == 2 and "--k must be between 1 and 100" in proc.stderr
    assert "Traceback" not in proc.stderr
