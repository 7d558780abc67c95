"""The nightly job against a live server under load: the API keeps answering, nothing fails."""

from __future__ import annotations

import subprocess
import sys
import threading

import httpx
import pytest

from tests.live import REPO

pytestmark = pytest.mark.slow


def test_cluster_runs_while_the_server_answers(live_server) -> None:
    coach = {"Authorization": f"Bearer {live_server.keys['coach']}"}
    lead = {"Authorization": f"Bearer {live_server.keys['leadership']}"}
    before = httpx.get(live_server.url + "/overview", headers=lead, timeout=30).json()["run_id"]
    themes = [t["id"] for t in httpx.get(live_server.url + "/themes", headers=lead, timeout=30).json()["items"]]
    statuses: list[int] = []
    pages: list[int] = []
    stop = threading.Event()

    def load(i: int) -> None:
        with httpx.Client(base_url=live_server.url, timeout=60) as client:
            n = 0
            while not stop.is_set():
                n += 1
                if i == 4:  # a theme's page: a theme the new run no longer has is a 404, nothing else
                    pages.append(client.get(f"/themes/{themes[n % len(themes)]}/page", headers=lead).status_code)
                    continue
                if i % 2:
                    r = client.post("/suggest", json={"text": f"snöröjning på cykelvägarna {i}"}, headers=coach)
                else:
                    r = client.get("/overview", headers=lead)
                statuses.append(r.status_code)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    try:
        # the server owns the database: the command hands the job to it and follows its progress
        proc = subprocess.run(
            [sys.executable, "-m", "idesluss", "--db", str(live_server.db), "cluster"],
            cwd=REPO,
            env=live_server.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert proc.returncode == 0, proc.stderr
    assert "running the theme job there" in proc.stderr
    assert statuses and set(statuses) == {200}, set(statuses)
    assert pages and set(pages) <= {200, 404} and 200 in pages, set(pages)
    after = httpx.get(live_server.url + "/overview", headers=lead, timeout=30).json()["run_id"]
    assert after == before + 1
