"""The in-service nightly schedule (IDESLUSS_NIGHTLY_AT=HH:MM, Europe/Stockholm) for installations
without cron or systemd timers. Overlap is impossible: the job runner refuses a second job."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from api.jobs import JobRunner
from pipelines.themes.job import ThemeJobRunning

log = logging.getLogger(__name__)
STOCKHOLM = ZoneInfo("Europe/Stockholm")


def next_run(at: str, now: datetime) -> datetime:
    """The next Stockholm wall-clock time ``at`` (HH:MM) strictly after ``now``."""
    hh, mm = (int(p) for p in at.split(":"))
    local = now.astimezone(STOCKHOLM)
    candidate = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if candidate <= local:
        candidate = (local + timedelta(days=1)).replace(hour=hh, minute=mm, second=0, microsecond=0)
    return candidate


def nightly_loop(at: str, jobs: JobRunner, stop: threading.Event) -> None:
    """Sleep until each next run time and start the job (skipped, with a log line, if one is running)."""
    while not stop.is_set():
        when = next_run(at, datetime.now(STOCKHOLM))
        if stop.wait((when - datetime.now(STOCKHOLM)).total_seconds()):
            return
        try:
            jobs.start(actor="schedule", tenant=None)  # every tenant, one after the other
            log.info("nightly theme job started (%s Europe/Stockholm)", at)
        except ThemeJobRunning as exc:
            log.warning("nightly theme job skipped: %s", exc)
