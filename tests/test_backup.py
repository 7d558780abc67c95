"""Backup while writes run, then restore: the same answers and the same theme run come back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from idesluss.service import Query, Service
from idesluss.settings import Settings
from pipelines.themes.job import run_theme_job
from tests.fakes import KeywordEncoder

REPO = Path(__file__).resolve().parents[1]
QUERIES = ["cykelväg till skolan", "snöröjning på gångvägar", "bibliotekets öppettider"]


def _answers(svc: Service) -> list[list[str]]:
    return [[h.id for h in hits] for hits in svc.similar([Query(text=q) for q in QUERIES], k=5)]


def test_backup_under_writes_restores_the_same_answers_and_theme_run(tmp_path: Path) -> None:
    svc = Service(Settings(db=tmp_path / "live.duckdb"), encoder=KeywordEncoder())
    svc.ingest("ideas", REPO / "demo" / "ideas.csv")
    svc.ingest("needs", REPO / "demo" / "needs.jsonl")
    run_theme_job(svc.store, svc.encoder, show_bar=False)
    svc.collections()
    stop = threading.Event()
    written: list[str] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            svc.add_idea({"id": f"W{i}", "text": f"Bänkar vid hållplats nummer {i}"}, actor="t")
            written.append(f"W{i}")
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    (tmp_path / "backup").mkdir()
    try:
        while len(written) < 3:  # the backup is taken while writes are landing
            threading.Event().wait(0.01)
        dest = svc.backup(tmp_path / "backup" / "copy.duckdb")
    finally:
        stop.set()
        t.join()
    with pytest.raises(FileExistsError):
        svc.backup(dest)
    # the copy is consistent: every demo idea, and the concurrent writes up to some point, in order
    other = Service(Settings(db=tmp_path / "restored.duckdb"), encoder=KeywordEncoder())
    other.restore(dest)
    ids = {r.id for r in other.store.records("ideas")}
    writes = sorted((w for w in ids if w.startswith("W")), key=lambda w: int(w[1:]))
    assert writes == written[: len(writes)] and len(writes) >= 3
    assert ids - set(writes) == {r.id for r in svc.store.records("ideas") if not r.id.startswith("W")}
    # restoring into the serving service swaps its file and index in place: both now answer alike
    svc.restore(dest)
    assert {r.id for r in svc.store.records("ideas")} == ids
    assert _answers(svc) == _answers(other)
    assert other.store.themes.current_run_id() == svc.store.themes.current_run_id() is not None
    assert [t.label for t in other.store.themes.current_themes()] == [
        t.label for t in svc.store.themes.current_themes()
    ]
    with pytest.raises(ValueError, match="no such file"):
        svc.restore(tmp_path / "nothing.duckdb")
    (tmp_path / "not.duckdb").write_text("hej")
    with pytest.raises(ValueError, match="not a DuckDB database"):
        svc.restore(tmp_path / "not.duckdb")
    assert _answers(svc) == _answers(other)  # a refused restore changed nothing
    svc.close()
    other.close()
