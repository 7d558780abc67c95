"""The live server stays responsive while it works: /health during an upload, CLI commands beside it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.live import REPO, cli

pytestmark = pytest.mark.slow


def test_health_answers_throughout_a_2000_row_upload(live_server, tmp_path: Path) -> None:
    admin = {"Authorization": f"Bearer {live_server.keys['admin']}"}
    rows = "\n".join(f"UP{i};Förslag {i} om bättre snöröjning och belysning på gångväg {i % 37}" for i in range(2000))
    upload = tmp_path / "stor.csv"
    upload.write_text("id;text\n" + rows + "\n", encoding="utf-8")
    result: dict[str, object] = {}

    def send() -> None:
        with upload.open("rb") as fh, httpx.Client(base_url=live_server.url, timeout=900) as c:
            result["response"] = c.post("/admin/ingest/ideas", files={"file": ("stor.csv", fh)}, headers=admin)

    coach = {"Authorization": f"Bearer {live_server.keys['coach']}"}
    lead = {"Authorization": f"Bearer {live_server.keys['leadership']}"}
    theme = httpx.get(live_server.url + "/themes", headers=lead, timeout=60).json()["items"][0]["id"]
    t = threading.Thread(target=send)
    t.start()
    latencies: list[float] = []
    codes: list[int] = []
    pages: list[list[str]] = []  # pages by number read while the upload's batches land
    with httpx.Client(base_url=live_server.url, timeout=60) as c:
        while t.is_alive():
            start = time.perf_counter()
            codes.append(c.get("/health").status_code)
            latencies.append(time.perf_counter() - start)
            # the leadership views: each upload batch makes their cached answers stale
            codes.append(c.get("/overview", headers=lead).status_code)
            codes.append(c.get(f"/themes/{theme}/page", headers=lead).status_code)
            page = c.get("/ideas", params={"page": 1 + len(pages) % 5, "page_size": 20}, headers=coach)
            codes.append(page.status_code)
            pages.append([i["id"] for i in page.json()["items"]] if page.status_code == 200 else [])
            time.sleep(0.05)
    t.join()
    response = result["response"]
    assert isinstance(response, httpx.Response) and response.status_code == 200, response
    assert response.json()["inserted"] == 2000
    assert len(codes) > 5 and set(codes) == {200}
    assert all(ids == sorted(set(ids)) and len(ids) == 20 for ids in pages)  # whole pages, in order, no repeats
    with httpx.Client(base_url=live_server.url, timeout=60, headers=coach) as c:  # after it: numbers = cursor
        by_number = [
            i["id"] for n in (1, 2, 3) for i in c.get("/ideas", params={"page": n, "page_size": 20}).json()["items"]
        ]
        first = c.get("/ideas", params={"page_size": 40}).json()
        after = c.get("/ideas", params={"after": first["items"][-1]["id"], "page_size": 20}).json()
        assert by_number == [i["id"] for i in first["items"] + after["items"]]
    latencies.sort()
    # a figure, not an assertion (shared machines are noisy): printed for the bench and the notes
    print(
        f"\n/health during a 2,000-row upload: {len(latencies)} probes, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )


def _cli(server, *args: str) -> subprocess.CompletedProcess:
    return cli(server.db, *args, env=server.env, check=False)


def test_every_cli_command_works_beside_the_server(live_server, tmp_path: Path) -> None:
    sim = _cli(live_server, "similar", "Säker cykelväg till skolan", "--k", "3", "--json")
    assert sim.returncode == 0, sim.stderr
    out = json.loads(sim.stdout)
    assert out["query"] == "Säker cykelväg till skolan" and len(out["results"]) == 3
    needs = _cli(live_server, "needs", "--idea", "I0001", "--k", "2", "--json")
    assert needs.returncode == 0 and len(json.loads(needs.stdout)["results"]) == 2, needs.stderr
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "a", "text": "snöröjning"}\n{"id": "b", "text": "bibliotek"}\n', encoding="utf-8")
    batch = _cli(live_server, "similar", "--queries", str(queries), "--k", "2")
    assert [json.loads(line)["query_id"] for line in batch.stdout.splitlines()] == ["a", "b"], batch.stderr
    themes = _cli(live_server, "themes", "--json")
    assert themes.returncode == 0 and json.loads(themes.stdout), themes.stderr
    key = _cli(live_server, "keys", "create", "--role", "coach", "--name", "cli-bredvid")
    assert key.returncode == 0 and key.stdout.strip().splitlines()[-1].startswith("idk_")
    r = httpx.get(
        live_server.url + "/ideas?page_size=1",
        headers={"Authorization": f"Bearer {key.stdout.strip().splitlines()[-1]}"},
        timeout=30,
    )
    assert r.status_code == 200  # the key made through the server works at once
    fb = _cli(live_server, "feedback", "I0001", "I0002", "useful")
    assert fb.returncode == 0 and "stored" in fb.stdout, fb.stderr
    missing = _cli(live_server, "similar", "--idea", "FINNS-INTE")
    assert missing.returncode == 2 and "FINNS-INTE" in missing.stderr
    bad = _cli(live_server, "ingest", "ideas", str(tmp_path / "saknas.csv"))
    assert bad.returncode == 2 and "saknas.csv" in bad.stderr
    rows = tmp_path / "nya.csv"
    rows.write_text("id;text\nCLI-1;Fler bänkar längs älvpromenaden\nCLI-2;\n", encoding="utf-8")
    ing = _cli(live_server, "ingest", "ideas", str(rows))
    assert ing.returncode == 3, ing.stderr  # one row stored, one rejected with its line
    assert "line 3 (id CLI-2)" in ing.stdout + ing.stderr, ing.stdout + ing.stderr
    coach = {"Authorization": f"Bearer {live_server.keys['coach']}"}
    assert httpx.get(live_server.url + "/ideas/CLI-1", headers=coach, timeout=30).status_code == 200
    assert httpx.get(live_server.url + "/ideas/CLI-2", headers=coach, timeout=30).status_code == 404


def test_a_cli_query_beside_the_server_loads_no_model(live_server) -> None:
    """The command goes to the server: the CLI's own process imports neither torch nor transformers."""
    probe = (
        "import sys\n"
        "from idesluss.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, "--db", str(live_server.db), "similar", "Säker cykelväg", "--k", "2", "--json"],
        cwd=REPO,
        env=live_server.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["results"]) == 2
    assert "HEAVY []" in out.stderr, out.stderr


def _children(pid: int) -> list[int]:
    """The server's encoder processes (multiprocessing's resource tracker, also a child, left out)."""
    from evaluation.load import encoder_children

    return encoder_children(pid)


def test_the_server_encodes_in_a_child_that_comes_back_when_killed(live_server) -> None:
    server = live_server.proc.pid
    (child,) = _children(server)
    assert "libtorch" not in Path(f"/proc/{server}/maps").read_text()  # the server imports no torch
    assert "libtorch" in Path(f"/proc/{child}/maps").read_text()
    coach = {"Authorization": f"Bearer {live_server.keys['coach']}"}
    draft = {"text": "Bättre snöröjning på cykelvägarna i Öjebyn", "k": 5}
    with httpx.Client(base_url=live_server.url, timeout=300, headers=coach) as c:
        before = c.post("/suggest", json=draft).json()
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while child in _children(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/health").status_code == 200
        after = c.post("/suggest", json=draft)  # starts a new child, then answers
        assert after.status_code == 200, after.text
        assert [h["id"] for h in after.json()["similar"]] == [h["id"] for h in before["similar"]]
    (new_child,) = _children(server)
    assert new_child != child
