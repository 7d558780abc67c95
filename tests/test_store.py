from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.embed import embed_missing
from pipelines.ingest import ingest_file
from store import Store, StoreLockedError
from store.migrations import LATEST


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("id;text\n" + "".join(f"{i};{t}\n" for i, t in rows), encoding="utf-8")
    return path


def test_migrations_from_empty_and_from_an_older_version(tmp_path: Path) -> None:
    with Store(tmp_path / "new.duckdb") as s:
        assert s.schema_version() == LATEST
    old = tmp_path / "v1.duckdb"
    with Store(old, migrate=False) as v1:  # a file as the first released version wrote it
        assert v1.migrate(target=1) == 1
        v1.write(
            "INSERT INTO ideas (id, text, embed_hash, ingested_at, updated_at) VALUES ('x', 'kvar', 'h', now(), now())"
        )
        tables = {r[0] for r in v1.read("SELECT table_name FROM information_schema.tables")}
        assert "feedback" not in tables
    with Store(old) as migrated:
        assert migrated.schema_version() == LATEST
        assert migrated.get_record("ideas", "x").text == "kvar"
        assert migrated.read_one("SELECT count(*) FROM feedback") == (0,)


def test_unchanged_text_is_never_reembedded_and_a_change_reembeds_one(tmp_path: Path, fake_encoder) -> None:
    f = _write(tmp_path / "a.csv", [("1", "cykelbana i centrum"), ("2", "snöröjning på gatan")])
    with Store(tmp_path / "s.duckdb") as store:
        first = ingest_file(store, "ideas", f, encoder=fake_encoder)
        assert (first.inserted, first.embedded, fake_encoder.calls) == (2, 2, 2)
        again = ingest_file(store, "ideas", f, encoder=fake_encoder)
        assert (again.unchanged, again.embedded, fake_encoder.calls) == (2, 0, 2)
        _write(f, [("1", "cykelbana i centrum"), ("2", "snöröjning på torget")])
        changed = ingest_file(store, "ideas", f, encoder=fake_encoder)
        assert (changed.updated, changed.unchanged, changed.embedded, fake_encoder.calls) == (1, 1, 1, 3)
        ids, vecs = store.vectors("ideas", fake_encoder.model_id)
        assert ids == ["1", "2"] and vecs.shape == (2, fake_encoder.dim)
        np.testing.assert_allclose(vecs[1], fake_encoder.encode_passages(["snöröjning på torget"])[0], atol=1e-6)


def test_model_id_is_part_of_the_cache_key(tmp_path: Path, fake_encoder) -> None:
    from tests.fakes import KeywordEncoder

    f = _write(tmp_path / "a.csv", [("1", "bibliotek")])
    with Store(tmp_path / "s.duckdb") as store:
        ingest_file(store, "ideas", f, encoder=fake_encoder)
        other = KeywordEncoder(dim=32, model_id="another-model")
        assert embed_missing(store, other) == 1
        assert store.vectors("ideas", "another-model")[1].shape == (1, 32)
        assert store.vectors("ideas", fake_encoder.model_id)[1].shape == (1, fake_encoder.dim)


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(RuntimeError), store.transaction() as con:
            con.execute("INSERT INTO runs (kind, started_at, status) VALUES ('x', now(), 'running')")
            raise RuntimeError("boom")
        assert store.runs() == []


def test_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "s.duckdb"
    with Store(db):
        code = (
            "import sys\nfrom store import Store, StoreLockedError\ntry:\n    Store(sys.argv[1])\n"
            "except StoreLockedError as e:\n    print(e)\n    sys.exit(4)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, str(db)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
    assert proc.returncode == 4, proc.stderr
    assert "in use by another process" in proc.stdout
    assert StoreLockedError  # the type the CLI maps to exit code 4


def test_bulk_upsert_keeps_row_semantics(tmp_path: Path) -> None:
    from datetime import datetime

    from store import Record

    def rec(i: str, text: str, **kw) -> Record:
        return Record(id=i, text=text, embed_hash=f"h-{text}", **kw)

    with Store(tmp_path / "u.duckdb") as s:
        first = s.upsert_records(
            "ideas",
            [
                rec("A", "ett", created_at=datetime(2024, 3, 1, 8, 30), attributes={"ort": "Öjebyn"}),
                rec("B", "två"),
                rec("A", "ett igen"),
            ],
        )
        assert (first.inserted, first.updated, first.unchanged) == (2, 1, 0)
        a = s.get_record("ideas", "A")
        assert a is not None and a.text == "ett igen" and a.created_at is None  # the later row wins whole
        again = s.upsert_records("ideas", [rec("B", "två"), rec("C", "tre", created_at=datetime(2023, 1, 2))])
        assert (again.inserted, again.updated, again.unchanged) == (1, 0, 1)
        c = s.get_record("ideas", "C")
        assert c is not None and c.created_at == datetime(2023, 1, 2) and s.count("ideas") == 3


def test_read_write_lock_reentry_and_exclusion() -> None:
    import threading

    from store.locks import ReadWriteLock

    lock = ReadWriteLock()
    order: list[str] = []
    with lock.writing(), lock.reading(), lock.writing():  # the writer may read and write again
        order.append("nested")
    with lock.reading():
        with lock.reading():
            order.append("reentrant read")
        with pytest.raises(RuntimeError), lock.writing():
            pass
    entered = threading.Event()
    release = threading.Event()

    def reader() -> None:
        with lock.reading():
            entered.set()
            release.wait(10)
            order.append("reader done")

    t = threading.Thread(target=reader)
    t.start()
    entered.wait(10)
    w = threading.Thread(target=lambda: (lock.writing().__enter__(), order.append("writer in")))
    w.start()
    w.join(0.2)
    assert "writer in" not in order  # the writer waits for the reader
    release.set()
    t.join(10)
    w.join(10)
    assert order == ["nested", "reentrant read", "reader done", "writer in"]


def test_the_event_loops_key_check_never_reads_and_says_when_it_does_not_know(tmp_path: Path) -> None:
    from store.keys import NOT_REMEMBERED

    with Store(tmp_path / "k.duckdb") as store:
        key_id, key = store.keys.create_key("coach", "coach 1")
        reads = []
        store.keys._live_row = lambda k, read=store.keys._live_row: reads.append(k) or read(k)  # count row reads
        assert store.keys.verify_key(key, read=False) is NOT_REMEMBERED and reads == []
        assert store.keys.verify_key("not a key", read=False) is None  # malformed: refused without a read
        assert store.keys.verify_key(key)["key_id"] == key_id and reads == [key_id]
        assert store.keys.verify_key(key, read=False)["key_id"] == key_id and reads == [key_id]
        wrong = key[:-1] + ("x" if key[-1] != "x" else "y")
        assert store.keys.verify_key(wrong, read=False) is None  # remembered, but the secret is still compared
        assert store.keys.revoke_key(key_id)
        assert store.keys.verify_key(key, read=False) is NOT_REMEMBERED  # forgotten at once: read it again
        assert store.keys.verify_key(key) is None


def test_a_revoked_key_is_refused_at_once_though_live_keys_are_remembered(tmp_path: Path) -> None:
    import threading

    with Store(tmp_path / "k.duckdb") as store:
        key_id, key = store.keys.create_key("coach", "coach 1")
        _, other = store.keys.create_key("coach", "coach 2")
        assert store.keys.verify_key(key)["key_id"] == key_id
        reads = []
        store.keys._live_row = lambda k, read=store.keys._live_row: reads.append(k) or read(k)  # count row reads
        assert store.keys.verify_key(key)["key_id"] == key_id
        assert reads == []  # a live key verified before is not read again
        assert store.keys.verify_key(key[:-1] + ("x" if key[-1] != "x" else "y")) is None  # the secret is compared
        refused_after: list[bool] = []
        stop = threading.Event()
        revoked = threading.Event()

        def check() -> None:
            while not stop.is_set():
                was_revoked = revoked.is_set()  # read before the check: a check after the revocation returned
                if store.keys.verify_key(key) is not None and was_revoked:
                    refused_after.append(False)

        threads = [threading.Thread(target=check) for _ in range(3)]
        for t in threads:
            t.start()
        assert store.keys.revoke_key(key_id)
        revoked.set()
        stop.wait(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert refused_after == []  # no check that began after the revocation returned let the key in
        assert store.keys.verify_key(key) is None
        assert store.keys.verify_key(other) is not None
        store.backup(tmp_path / "before.duckdb")
        _, later = store.keys.create_key("coach", "made after the backup")
        assert store.keys.verify_key(later) is not None
        store.restore_from(tmp_path / "before.duckdb")
        assert store.keys.verify_key(later) is None  # the restored file has no such key
        assert store.keys.verify_key(other) is not None


def test_vectors_are_found_by_hash_through_an_index_and_only_for_their_model(tmp_path: Path) -> None:
    with Store(tmp_path / "v.duckdb") as store:
        pitea = store.for_tenant("pitea", create=True)
        indexed = {
            r[0]
            for r in store.read("SELECT schema_name FROM duckdb_indexes() WHERE index_name = 'embeddings_text_hash'")
        }
        assert indexed == {"main", "tenant_pitea"}  # every tenant's schema, by the same migration
        a, b = np.eye(3, dtype=np.float32)[:1], np.eye(3, dtype=np.float32)[1:2]
        store.put_embeddings("m1", ["h1"], a)
        store.put_embeddings("m2", ["h1"], b)  # the same text under another model
        assert set(store.vectors_for("m1", ["h1", "h2"])) == {"h1"}
        np.testing.assert_array_equal(store.vectors_for("m2", ["h1"])["h1"], b[0])
        assert store.missing_hashes("m1", ["h2", "h1", "h2"]) == ["h2"]
        assert store.missing_hashes("m3", ["h1"]) == ["h1"]
        assert pitea.missing_hashes("m1", ["h1"]) == ["h1"]  # another tenant's vectors are its own
        many = [f"x{i}" for i in range(600)] + ["h1"]  # past the lookups: one read of the table
        assert store.missing_hashes("m1", many) == many[:-1]
        assert set(store.vectors_for("m2", many)) == {"h1"}
