"""Commands beside a running `idesluss serve`: it owns the database, so commands run through it.

Both ways read the server's token file (``<db>.serve.json``, mode 0600): `idesluss cluster` asks
the server to run the job and follows its progress; every other command is forwarded whole
(``/internal/cli``) and runs there on the server's service, printing what it would print here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from idesluss.errors import EXIT_LOCKED, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from idesluss.settings import Settings


def sidecar_path(db: Path) -> Path:
    """Where a running server tells local commands how to reach it."""
    return Path(str(db) + ".serve.json")


class ServerUnreachable(CliError):
    """A server announced itself for the database but does not answer (starting, or gone)."""


@dataclass(frozen=True)
class Answer:
    """A command's result from the server."""

    code: int


def forward_if_served(settings: Settings, argv: list[str]) -> Answer | None:
    """Run the command on the server that announced itself for this database, if one is alive.

    Checked before anything heavy is imported, so a query beside a running server costs an HTTP
    round trip, not a model load. A token file left by a server that died is ignored (None).
    """
    path = sidecar_path(settings.db)
    if not path.is_file():
        return None
    try:
        pid = int(json.loads(path.read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        return Answer(forward_to_server(settings, argv))
    except ServerUnreachable:
        return None  # starting up or gone: the command tries the file itself


def _announced(settings: Settings) -> tuple[str, dict[str, str]]:
    """The running server's address and the header that authorises local commands."""

    path = sidecar_path(settings.db)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CliError(
            f"the database {settings.db} is in use by another process, and no running "
            f"`idesluss serve` announced itself in {path}",
            EXIT_LOCKED,
        ) from None
    host = "127.0.0.1" if info["host"] in ("0.0.0.0", "", "::") else info["host"]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{info['port']}", {"X-Idesluss-Local-Token": info["token"]}


def forward_to_server(settings: Settings, argv: list[str]) -> int:
    """Run one command line on the server that owns the database; print its output; return its exit code."""
    import httpx

    base, headers = _announced(settings)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=None) as client:
            r = client.post("/internal/cli", json={"argv": argv})
    except httpx.HTTPError as exc:
        raise ServerUnreachable(
            f"the service at {base} owns {settings.db} but did not answer: {exc}", EXIT_LOCKED
        ) from None
    if r.status_code != 200:
        detail = r.json().get("detail", r.text) if r.headers.get("content-type", "").endswith("json") else r.text
        raise CliError(f"the service at {base} refused the command: {detail}", EXIT_LOCKED)
    body = r.json()
    sys.stdout.write(body["stdout"])
    sys.stderr.write(body["stderr"])
    return int(body["code"])


def run_job_on_server(
    settings: Settings,
    poll_seconds: float = 1.0,
    engine: str = "local",
    ray_address: str | None = None,
    all_tenants: bool = False,
) -> int:
    """Start the job on the running server (which writes its result through its own single writer)
    and follow its progress; returns an exit code."""
    import httpx

    base, headers = _announced(settings)
    print(f"the service at {base} owns {settings.db}: running the theme job there", file=sys.stderr)
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        body = {
            "tenant": None if all_tenants else settings.tenant,
            "engine": engine,
            **({"ray_address": ray_address} if ray_address else {}),
        }
        r = client.post("/internal/jobs/cluster", json=body)
        if r.status_code == 400:
            raise CliError(r.json().get("detail", "the server cannot run this job"), EXIT_USAGE)
        if r.status_code == 409:
            raise CliError(r.json().get("detail", "a theme job is already running"), EXIT_LOCKED)
        if r.status_code == 404:
            raise CliError(r.json().get("detail", f"no tenant {settings.tenant!r}"), EXIT_USAGE)
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
