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
    statuses: list[int] = []
    stop = threading.Event()

    def load(i: int) -> None:
        with httpx.Client(base_url=live_server.url, timeout=60) as client:
            while not stop.is_set():
                if i % 2:
                    r = client.post("/suggest", json={"text": f"snöröjning på cykelvägarna {i}"}, headers=coach)
                else:
                    r = client.get("/overview", headers=lead)
                statuses.append(r.status_code)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
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
    after = httpx.get(live_server.url + "/overview", headers=lead, timeout=30).json()["run_id"]
    assert after == before + 1
