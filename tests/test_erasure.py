"""Erasure leaves nothing of the record in the database file, and the service keeps working."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from idesluss.service import Query, Service
from idesluss.settings import Settings
from pipelines.themes.job import run_theme_job
from tests.fakes import KeywordEncoder

MARKER = "Zyxwvutsmarkör"
DEMO = Path(__file__).resolve().parents[1] / "demo"


def _bytes_in_db(db: Path, needle: str) -> bool:
    blob = b""
    for p in (db, Path(str(db) + ".wal")):
        if p.exists():
            blob += p.read_bytes()
    return needle.encode("utf-8") in blob


def test_delete_removes_text_vectors_links_feedback_and_memberships(tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    svc = Service(Settings(db=db), encoder=KeywordEncoder())
    f = tmp_path / "ideas.csv"
    rows = [f"E{i};Cykelbana och belysning nummer {i}" for i in range(40)]
    f.write_text(
        "id;text\n" + "\n".join(rows) + f"\nSECRET;{MARKER} vill ha en cykelbana, ring 070-123 45 67\n",
        encoding="utf-8",
    )
    svc.ingest("ideas", f)
    run_theme_job(svc.store, svc.encoder, show_bar=False)
    svc.feedback("ideas", "E1", "ideas", "SECRET", "useful", "coach")
    svc.feedback("ideas", "SECRET", "ideas", "E1", "duplicate", "coach")
    before_fb = svc.store.feedback.count_feedback()
    svc.store.checkpoint()
    assert _bytes_in_db(db, MARKER)
    svc.collections()
    svc.erase("ideas", "SECRET", actor="admin")
    assert svc.store.get_record("ideas", "SECRET") is None
    assert svc.store.feedback.count_feedback() == before_fb - 2
    assert all(m["item_id"] != "SECRET" for m in svc.store.themes.memberships())
    hits = svc.similar([Query(text=f"{MARKER} cykelbana")], k=50)[0]
    assert "SECRET" not in {h.id for h in hits}
    log = svc.store.audit.log()
    assert log[0]["action"] == "delete" and log[0]["item_id"] == "SECRET" and MARKER not in str(log)
    # the store is usable after compaction: sequences continue, nothing collides
    assert svc.feedback("ideas", "E1", "ideas", "E2", "useful", "coach") > 0
    svc.store.checkpoint()
    svc.close()
    assert not _bytes_in_db(db, MARKER)
    assert not _bytes_in_db(db, "070-123 45 67")


def test_an_edited_ideas_earlier_vectors_go_with_the_edit_and_none_outlive_its_erasure(tmp_path: Path) -> None:
    svc = Service(Settings(db=tmp_path / "v.duckdb"), encoder=KeywordEncoder())
    try:

        def vectors_of(text_hash: str) -> int:
            row = svc.store.read_one("SELECT count(*) FROM embeddings WHERE text_hash = ?", [text_hash])
            return int(row[0]) if row else 0

        svc.add_idea({"id": "ED1", "text": "Belysning vid skolans cykelställ"}, actor="t")
        svc.add_idea({"id": "TWIN", "text": "Fler soptunnor i parken"}, actor="t")
        svc.add_idea({"id": "ED2", "text": "Fler soptunnor i parken"}, actor="t")  # the same text as TWIN
        first = svc.record("ideas", "ED1").embed_hash
        shared_text = svc.record("ideas", "ED2").embed_hash
        assert vectors_of(first) >= 1 and vectors_of(shared_text) >= 1
        svc.update_idea("ED1", {"status": "under arbete"}, actor="t")  # same text: its vectors stay
        assert vectors_of(first) >= 1
        svc.update_idea("ED1", {"text": "Belysning vid skolans cykelställ och vid entrén"}, actor="t")
        second = svc.record("ideas", "ED1").embed_hash
        assert second != first and vectors_of(first) == 0 and vectors_of(second) >= 1
        svc.update_idea("ED2", {"text": "Fler soptunnor och bänkar i parken"}, actor="t")
        assert vectors_of(shared_text) >= 1  # TWIN still has that text
        f = tmp_path / "again.csv"  # a file that changes a stored idea's text does the same
        f.write_text("id;text\nED1;Belysning vid skolans cykelställ, entrén och parkeringen\n", encoding="utf-8")
        svc.ingest("ideas", f)
        third = svc.record("ideas", "ED1").embed_hash
        assert vectors_of(second) == 0 and vectors_of(third) >= 1
        svc.erase("ideas", "ED1", actor="admin")
        assert [vectors_of(h) for h in (first, second, third)] == [0, 0, 0]
    finally:
        svc.close()


def test_a_text_that_lost_its_vector_while_a_record_was_encoded_is_encoded_on_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from idesluss import records

    svc = Service(Settings(db=tmp_path / "r.duckdb"), encoder=KeywordEncoder())
    try:
        svc.add_idea({"id": "B", "text": "Fler soptunnor i parken"}, actor="t")
        svc.collections()
        real = records.encode_missing
        edited: list[str] = []

        def encode_then_edit(*args: object, **kwargs: object) -> object:
            found = real(*args, **kwargs)  # nothing to encode: B's text has its vector
            if not edited:  # ...until B is edited before the new idea reaches the writer
                edited.append("B")
                svc.update_idea("B", {"text": "Fler bänkar i parken"}, actor="t")
            return found

        monkeypatch.setattr(records, "encode_missing", encode_then_edit)
        svc.add_idea({"id": "NEW", "text": "Fler soptunnor i parken"}, actor="t")
        text_hash = svc.record("ideas", "NEW").embed_hash
        row = svc.store.read_one("SELECT count(*) FROM embeddings WHERE text_hash = ?", [text_hash])
        assert edited and row is not None and row[0] >= 1
        assert svc.collections()["ideas"].snapshot.row("NEW") is not None  # searchable, not left out
        # vectors written long after their texts were read keep only those still stored
        svc.store.put_embeddings("other-model", [text_hash, "gone-hash"], np.ones((2, 4), np.float32), only_stored=True)
        kept = svc.store.read("SELECT text_hash FROM embeddings WHERE model_id = 'other-model'")
        assert [r[0] for r in kept] == [text_hash]
    finally:
        svc.close()


def test_a_record_erased_while_the_theme_job_runs_does_not_come_back_in_the_new_run(tmp_path: Path) -> None:
    """The job reads every item first and writes its run minutes later: an erasure in between must
    hold (no membership, no place among a theme's representatives), and the other items keep theirs."""
    svc = Service(Settings(db=tmp_path / "j.duckdb"), encoder=KeywordEncoder())
    svc.ingest("ideas", DEMO / "ideas.csv")
    svc.cluster(show_bar=False)
    # a representative of the first run: the next run, read before the erasure, would pick it again
    victim = svc.store.themes.current_themes()[0].representatives[0]
    assert victim["kind"] == "ideas"
    text = svc.store.get_record("ideas", victim["id"]).text
    others = {m["item_id"] for m in svc.store.themes.memberships()} - {victim["id"]}
    erased: list[str] = []

    def progress(stage: str, fraction: float) -> None:
        if stage == "assign" and not erased:  # after the job has read the items, before it writes
            svc.erase("ideas", victim["id"], actor="admin")
            erased.append(victim["id"])

    svc.cluster(progress=progress, show_bar=False)
    assert erased and svc.store.get_record("ideas", victim["id"]) is None
    members = {m["item_id"] for m in svc.store.themes.memberships()}
    assert victim["id"] not in members
    assert members == others  # everyone else keeps a place
    reps = [r["id"] for t in svc.store.themes.current_themes() for r in t.representatives]
    assert reps and victim["id"] not in reps
    svc.close()
    assert not _bytes_in_db(tmp_path / "j.duckdb", text)  # the erased text is in no byte of the file
