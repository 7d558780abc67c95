"""A real `idesluss serve` on loopback over a real DuckDB file with the demo data and the real model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(db: Path, *args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "idesluss", "--db", str(db), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and proc.returncode not in (0,):
        raise RuntimeError(f"idesluss {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


@dataclass
class LiveServer:
    url: str
    db: Path
    keys: dict[str, str]
    env: dict[str, str]
    proc: subprocess.Popen

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_live_server(workdir: Path, model_cache: Path, extra_ideas: Path | None = None) -> LiveServer:
    env = {
        **os.environ,
        "IDESLUSS_CACHE_DIR": str(model_cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # load tests send far more than a person would; the limit itself is tested in test_api.py
        "IDESLUSS_RATE_LIMIT_PER_MINUTE": "100000",
    }
    db = workdir / "live.duckdb"
    cli(db, "ingest", "ideas", str(REPO / "demo" / "ideas.csv"), env=env)
    cli(db, "ingest", "needs", str(REPO / "demo" / "needs.jsonl"), env=env)
    if extra_ideas is not None:
        cli(db, "ingest", "ideas", str(extra_ideas), env=env)
    cli(db, "cluster", env=env)
    keys = {}
    for role in ("coach", "leadership", "admin"):
        out = cli(db, "keys", "create", "--role", role, "--name", f"live-{role}", env=env).stdout
        keys[role] = out.strip().splitlines()[-1]
    return serve(db, keys, env, workdir / "serve.log")


def serve(db: Path, keys: dict[str, str], env: dict[str, str], log_path: Path) -> LiveServer:
    """``idesluss serve`` on a free loopback port over an existing database, once /health answers."""
    port = free_port()
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "idesluss", "--db", str(db), "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return LiveServer(url, db, keys, env, proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not start within 180 s")
