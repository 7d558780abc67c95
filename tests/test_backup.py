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


@pytest.mark.slow
def test_a_backup_taken_through_a_live_server_under_load_restores_while_it_serves(live_server, tmp_path: Path) -> None:
    """The CLI's backup and restore go through a running server while searches and new ideas land.

    The copy is consistent (the new ideas in it are a prefix of those acknowledged, at least those
    acknowledged before it began); restored into the serving process, it answers exactly as a server
    started on the backup file does, with the theme run the server had.
    """
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.live import cli, serve

    base = tmp_path / "base.duckdb"
    cli(live_server.db, "backup", str(base), env=live_server.env)  # the shared server's data, copied live
    work = tmp_path / "work.duckdb"
    shutil.copy(base, work)
    one = serve(work, live_server.keys, live_server.env, tmp_path / "one.log")
    coach = {"Authorization": f"Bearer {live_server.keys['coach']}"}
    lead = {"Authorization": f"Bearer {live_server.keys['leadership']}"}

    def answers(url: str) -> list[list[str]]:
        with httpx.Client(base_url=url, headers=coach, timeout=120) as c:
            return [[h["id"] for h in c.get("/search", params={"q": q, "k": 5}).json()] for q in QUERIES]

    def themes(url: str) -> list[tuple[str, str]]:
        r = httpx.get(url + "/themes?page_size=100", headers=lead, timeout=120).json()["items"]
        return [(t["id"], t["label"]) for t in r]

    try:
        themes_before = themes(one.url)
        stop = threading.Event()  # the writer stops at it
        stop_reading = threading.Event()  # the readers go on through the restore
        acknowledged: list[str] = []
        failures: list[str] = []

        def write() -> None:
            with httpx.Client(base_url=one.url, headers=coach, timeout=120) as c:
                i = 0
                while not stop.is_set():
                    r = c.post("/ideas", json={"id": f"W{i}", "text": f"Bänkar vid hållplats nummer {i}"})
                    if r.status_code != 201:
                        failures.append(f"write {r.status_code}")
                    else:
                        acknowledged.append(f"W{i}")
                    i += 1

        def read() -> None:
            with httpx.Client(base_url=one.url, headers=coach, timeout=120) as c:
                while not stop_reading.is_set():
                    for q in QUERIES:
                        r = c.get("/search", params={"q": q, "k": 5})
                        if r.status_code != 200:
                            failures.append(f"search {r.status_code}")

        with ThreadPoolExecutor(4) as pool:
            writing = pool.submit(write)
            reading = [pool.submit(read) for _ in range(3)]
            while len(acknowledged) < 3 and not failures and not writing.done():
                stop.wait(0.02)
            before_backup = list(acknowledged)
            copy = tmp_path / "copy.duckdb"
            made = cli(work, "backup", str(copy), env=live_server.env, check=False)
            late = httpx.post(
                one.url + "/ideas", json={"id": "LATE", "text": "Efter kopian"}, headers=coach, timeout=60
            )
            stop.set()
            writing.result()
            # restored through the same server while it serves: the readers are still searching
            restored = cli(work, "restore", str(copy), env=live_server.env, check=False)
            stop_reading.set()
            for f in reading:
                f.result()
        assert made.returncode == 0, made.stderr
        assert restored.returncode == 0, restored.stderr
        assert not failures, failures[:5]  # every search answered 200, through the backup and the restore
        with httpx.Client(base_url=one.url, headers=coach, timeout=120) as c:
            in_copy = [w for w in acknowledged if c.get(f"/ideas/{w}").status_code == 200]
        # a prefix of what was acknowledged, holding at least what was acknowledged before it began
        assert in_copy == acknowledged[: len(in_copy)] and len(in_copy) >= len(before_backup) >= 3
        assert late.status_code == 201
        assert httpx.get(one.url + "/ideas/LATE", headers=coach, timeout=60).status_code == 404  # written after it
        assert themes(one.url) == themes_before  # the same theme run, ids and labels
        fresh_db = tmp_path / "fresh.duckdb"
        shutil.copy(copy, fresh_db)
        two = serve(fresh_db, live_server.keys, live_server.env, tmp_path / "two.log")
        try:
            assert answers(one.url) == answers(two.url)
            assert themes(two.url) == themes_before
        finally:
            two.stop()
        assert httpx.get(one.url + "/health", timeout=30).status_code == 200  # still serving, and writable
        assert (
            httpx.post(
                one.url + "/ideas", json={"id": "AFTER", "text": "Ny idé"}, headers=coach, timeout=60
            ).status_code
            == 201
        )
    finally:
        one.stop()
