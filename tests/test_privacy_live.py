"""Privacy by bytes on a live server: personal data sent through every write path is found in no file of
the database folder; erasure under concurrent reads and writes answers 204 every time and leaves no byte.

Each needle has a control: a harmless marker written through the same path, in the same field, that the
byte search must find. Without it a search that cannot see DuckDB's storage would pass vacuously.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.live import cli

pytestmark = pytest.mark.slow

# Personal data in the forms the service must mask, each unique to this test.
PNR, PNR_TYPO, PHONE, EMAIL = "811228-9874", "790314-2383", "070-987 65 43", "zq.privat@exempel.se"
SECRETS = [PNR, PNR_TYPO, PHONE, EMAIL, "zq.kontakt@exempel.se", "0739-11 22 33", "19650505-5555"]


def _folder_bytes(db: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in db.parent.iterdir() if p.is_file()}


def _found(db: Path, needle: str) -> list[str]:
    raw = needle.encode("utf-8")
    return [p.name for p, blob in _folder_bytes(db).items() if raw in blob]


def test_no_personal_data_reaches_any_file_through_any_write_path(live_server, tmp_path: Path) -> None:
    url, db = live_server.url, live_server.db
    coach = {"Authorization": f"Bearer {live_server.keys['coach']}"}
    admin = {"Authorization": f"Bearer {live_server.keys['admin']}"}
    inputs = tmp_path  # the files we upload live outside the database folder
    with httpx.Client(base_url=url, timeout=120) as c:
        # 1. API create: every field carries personal data, next to a control marker
        body = {
            "id": "PRIV-1",
            "title": f"Kontrollord Qwxtitel från {EMAIL}",
            "text": f"Kontrollord Qwxtext: ring {PHONE} eller pnr {PNR}, skrivfel {PNR_TYPO}.",
            "department": f"Qwxavdelning {EMAIL}",
            "status": f"Qwxstatus {PHONE}",
            "outcome": f"Qwxutfall {PNR}",
            "source": f"Qwxkalla {EMAIL}",
            "contact_ref": "zq.kontakt@exempel.se",
        }
        assert c.post("/ideas", json=body, headers=coach).status_code == 201
        # a second create with the same id is refused, not an overwrite
        assert c.post("/ideas", json={**body, "text": "skrivs över?"}, headers=coach).status_code == 409
        # 2. API update
        r = c.patch("/ideas/PRIV-1", json={"status": "Qwxuppdaterad 0739-11 22 33"}, headers=coach)
        assert r.status_code == 200 and r.json()["status"] == "Qwxuppdaterad [telefonnummer]"
        # 3. uploads with extra columns, in all three formats
        csv = inputs / "upload.csv"
        csv.write_text(
            f"id;text;personnummer;epost;telefon\nPRIV-CSV;Qwxcsv om snöröjning;19650505-5555;{EMAIL};{PHONE}\n",
            encoding="utf-8",
        )
        jsonl = inputs / "upload.jsonl"
        jsonl.write_text(
            json.dumps({"id": "PRIV-JSONL", "text": f"Qwxjsonl {PNR}", "personnummer": PNR, "telefon": PHONE}) + "\n",
            encoding="utf-8",
        )
        arr = inputs / "upload.json"
        arr.write_text(json.dumps([{"id": "PRIV-JSON", "text": f"Qwxjson {EMAIL}", "epost": EMAIL}]), encoding="utf-8")
        for path in (csv, jsonl, arr):
            with path.open("rb") as fh:
                r = c.post("/admin/ingest/ideas", files={"file": (path.name, fh)}, headers=admin)
            assert r.status_code == 200, r.text
            assert r.json()["inserted"] == 1
        # 4. feedback on a draft whose id is free text
        r = c.post(
            "/feedback",
            json={
                "query_kind": "draft",
                "query_id": f"utkast {EMAIL}",
                "target_kind": "ideas",
                "target_id": "PRIV-1",
                "verdict": "useful",
            },
            headers=coach,
        )
        assert r.status_code == 201, r.text
    # 5. the CLI beside the running server (forwarded to it)
    cli_file = inputs / "cli.csv"
    cli_file.write_text(f"id;text;telefon\nPRIV-CLI;Qwxcli {PHONE} {PNR};{PHONE}\n", encoding="utf-8")
    proc = cli(db, "ingest", "ideas", str(cli_file), env=live_server.env, check=False)
    assert proc.returncode == 0, proc.stderr

    for control in ("Qwxtext", "Qwxtitel", "Qwxavdelning", "Qwxutfall", "Qwxkalla", "Qwxuppdaterad"):
        assert _found(db, control), f"control {control} not visible in the files: the byte search is blind"
    for control in ("Qwxcsv", "Qwxjsonl", "Qwxjson", "Qwxcli"):
        assert _found(db, control), control
    leaks = {s: _found(db, s) for s in SECRETS if _found(db, s)}
    assert not leaks, f"personal data on disk: {leaks}"
    # the folder's files are private to the service's user
    for p in db.parent.iterdir():
        if p.name.startswith(db.name):
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, f"{p.name} is {oct(p.stat().st_mode)}"


def test_erasure_under_concurrent_reads_and_writes(live_server) -> None:
    url, db = live_server.url, live_server.db
    coach = {"Authorization": f"Bearer {live_server.keys['coach']}"}
    lead = {"Authorization": f"Bearer {live_server.keys['leadership']}"}
    admin = {"Authorization": f"Bearer {live_server.keys['admin']}"}
    n = 8
    with httpx.Client(base_url=url, timeout=120) as c:
        for i in range(n):
            body = {"id": f"ERASE/{i}", "text": f"Raderas{i}xq om belysning i parken vid skolan", "k": 1}
            assert c.post("/ideas", json=body, headers=coach).status_code == 201
    statuses: list[int] = []
    problems: list[str] = []
    stop = threading.Event()

    def read(i: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while not stop.is_set():
                if i % 3 == 0:
                    r = client.post("/suggest", json={"text": f"belysning i parken {i}"}, headers=coach)
                elif i % 3 == 1:
                    r = client.get("/ideas/I0001/similar", headers=coach)
                else:
                    r = client.get("/overview", headers=lead)
                statuses.append(r.status_code)
                if r.status_code != 200:
                    problems.append(f"{r.request.url.path}: {r.text[:300]}")

    def write() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            for j in range(n):
                r = client.post(
                    "/ideas", json={"id": f"KEEP-{j}", "text": f"Behållsxq{j} om gatubelysning"}, headers=coach
                )
                statuses.append(r.status_code)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)] + [threading.Thread(target=write)]
    for t in threads:
        t.start()
    erased: list[int] = []
    again: list[int] = []
    try:
        with httpx.Client(base_url=url, timeout=120) as c:
            for i in range(n):
                erased.append(c.delete(f"/admin/ideas/ERASE/{i}", headers=admin).status_code)
            again = [c.delete(f"/admin/ideas/ERASE/{i}", headers=admin).status_code for i in range(2)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert erased == [204] * n
    assert again == [404, 404]  # idempotent: a repeated erasure says there is nothing to erase
    assert statuses and not [s for s in statuses if s >= 500], sorted(set(statuses))
    assert set(statuses) <= {200, 201}, (sorted(set(statuses)), problems[:5])
    assert _found(db, "Behållsxq0"), "control: a kept idea must be visible to the byte search"
    for i in range(n):
        assert not _found(db, f"Raderas{i}xq"), f"erased idea {i} still on disk"
    with httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/ideas/ERASE/0", headers=coach).status_code == 404
        hits = c.post("/suggest", json={"text": "Raderas0xq belysning i parken vid skolan", "k": 20}, headers=coach)
        assert not [h for h in hits.json()["similar"] if h["id"].startswith("ERASE/")]
        log = c.get("/admin/audit?limit=1000", headers=admin).json()
        actions = {(e["action"], e["item_id"]) for e in log}
        assert ("delete", "ERASE/0") in actions and ("create", "KEEP-0") in actions
        assert "Raderas" not in json.dumps(log)


def test_delete_through_the_cli_beside_the_server(live_server) -> None:
    coach = {"Authorization": f"Bearer {live_server.keys['coach']}"}
    r = httpx.post(
        live_server.url + "/ideas", json={"id": "CLI-DEL", "text": "Clidelxq om lekplatsen"}, headers=coach, timeout=60
    )
    assert r.status_code == 201

    def delete() -> subprocess.CompletedProcess:
        env = {**live_server.env, "PYTHONWARNINGS": "ignore"}
        return cli(live_server.db, "delete", "ideas", "CLI-DEL", env=env, check=False)

    first, second = delete(), delete()
    backup = live_server.db.parent.parent / f"{live_server.db.stem}-backup.duckdb"
    proc = cli(live_server.db, "backup", str(backup), env=live_server.env, check=False)
    assert proc.returncode == 0 and backup.is_file(), proc.stderr
    assert b"Clidelxq" not in backup.read_bytes()
    assert first.returncode == 0 and "erased idea CLI-DEL" in first.stdout, first.stderr
    assert second.returncode == 2 and "no idea with id 'CLI-DEL'" in second.stderr
    assert not _found(live_server.db, "Clidelxq")
    assert os.path.exists(str(live_server.db) + ".serve.json")
