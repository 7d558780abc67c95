"""The theme job inside the server: one at a time, in a background thread, with progress.

The job computes outside any write transaction and switches its result in with one short one,
so the API keeps answering from the last good run while it works.
"""

from __future__ import annotations

import threading
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from idesluss.service import Service
from pipelines.themes.job import ThemeJobRunning


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class JobRunner:
    """Runs theme jobs for one service and remembers their state."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(
        self, actor: str, tenant: str | None = "default", engine: str = "local", ray_address: str | None = None
    ) -> dict[str, Any]:
        """Start a job for one tenant (``None``: every tenant, one after the other, as the nightly
        schedule does), here or on Ray (``engine="ray"``, at ``ray_address`` or ``RAY_ADDRESS``).

        Raises:
            ThemeJobRunning: a job is running.
            ValueError: ``engine="ray"`` without Ray installed (the message says how to install it).
        """
        if engine == "ray":
            from idesluss.themes_service import ray_options

            ray_options(self.service.settings, ray_address)  # refuse now, not in the job's thread
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                running = next(j for j in self.jobs.values() if j["state"] in ("queued", "running"))
                raise ThemeJobRunning(
                    f"a theme job is already running (job {running['job_id']}, started {running['started_at']})"
                )
            job_id = uuid.uuid4().hex[:10]
            job = {
                "job_id": job_id,
                "state": "running",
                "stage": "start",
                "progress": 0.0,
                "started_at": _now(),
                "finished_at": None,
                "result": None,
                "error": None,
                "actor": actor,
                "tenant": tenant,
                "engine": engine,
                "ray_address": ray_address,
            }
            self.jobs[job_id] = job
            self._thread = threading.Thread(target=self._run, args=(job,), name=f"theme-job-{job_id}", daemon=True)
            self._thread.start()
            return dict(job)

    def _run(self, job: dict[str, Any]) -> None:
        def progress(stage: str, fraction: float) -> None:
            job["stage"], job["progress"] = stage, round(float(fraction), 3)

        try:
            tenants = [job["tenant"]] if job["tenant"] else None
            records = self.service.cluster_tenants(
                tenants, engine=job["engine"], ray_address=job["ray_address"], progress=progress, show_bar=False
            )
            failed = {t: r["error"] for t, r in records.items() if "error" in r}
            keep = ("run_id", "n_themes", "share_unassigned", "quality", "timings")
            done = {t: {k: r[k] for k in keep} for t, r in records.items() if "error" not in r}
            job["result"] = done.get(job["tenant"], done or None)
            if failed:
                job["state"] = "failed"
                job["error"] = "; ".join(f"{t}: {e}" for t, e in failed.items())
            else:
                job["state"], job["progress"] = "done", 1.0
        except Exception as exc:  # noqa: BLE001 - reported to the admin, logged below
            job["state"], job["error"] = "failed", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            job["finished_at"] = _now()

    def get(self, job_id: str, tenant: str | None = None) -> dict[str, Any] | None:
        """A job's state (None when there is none, or it is another tenant's when ``tenant`` is given)."""
        job = self.jobs.get(job_id)
        if job is None or (tenant is not None and job["tenant"] != tenant):
            return None
        return dict(job)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running job (if any) ends (tests and shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)
