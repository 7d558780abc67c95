"""`idesluss cluster` while `idesluss serve` owns the database: ask the server to run the job."""

from __future__ import annotations

import json
import sys
import time

from idesluss.settings import Settings


def run_job_on_server(settings: Settings, poll_seconds: float = 1.0) -> int:
    """Start the job on the running server and follow its progress; returns an exit code."""
    import httpx

    from api.app import sidecar_path
    from idesluss.errors import EXIT_LOCKED, CliError

    path = sidecar_path(settings.db)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CliError(
            f"the database {settings.db} is in use by another process, and no running "
            f"`idesluss serve` announced itself in {path}",
            EXIT_LOCKED,
        ) from None
    base = f"http://{info['host']}:{info['port']}"
    headers = {"X-Idesluss-Local-Token": info["token"]}
    print(f"the service at {base} owns {settings.db}: running the theme job there", file=sys.stderr)
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        r = client.post("/internal/jobs/cluster")
        if r.status_code == 409:
            raise CliError(r.json().get("detail", "a theme job is already running"), EXIT_LOCKED)
        r.raise_for_status()
        job = r.json()
        while job["state"] in ("queued", "running"):
            time.sleep(poll_seconds)
            job = client.get(f"/internal/jobs/{job['job_id']}").json()
            print(f"\r{job['stage'] or ''} {job['progress']:.0%}   ", end="", file=sys.stderr)
        print(file=sys.stderr)
    if job["state"] != "done":
        raise CliError(f"the theme job failed on the server: {job['error']}")
    print(json.dumps(job["result"], ensure_ascii=False, indent=1))
    return 0
