"""The nightly theme job.

Heavy work (embedding, reduction, clustering, labelling) happens outside any write transaction;
the result is written in one short transaction that also switches the new run in, so an
interrupted run (even kill -9) leaves the last good themes in place. A file lock next to the
database keeps two runs from overlapping.

The job is a list of named stages (see :func:`_run`); each reports its progress fraction and its
time under its name. Only the first stages (embed, load) and the last (write) touch the store; the
rest (``pipelines.themes.compute``) take arrays and item lists.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from models.encoder import TextEncoder
from pipelines.embed import embed_missing, vector_key
from pipelines.records import embed_text
from pipelines.themes import compute
from pipelines.themes.align import Previous
from pipelines.themes.compute import Items, cluster_reduced, reduce_vectors, themes_for_vectors
from pipelines.themes.config import ThemeJobConfig
from pipelines.themes.history import History
from store import KINDS, Store

__all__ = [
    "Progress",
    "ThemeJobConfig",
    "ThemeJobRunning",
    "cluster_reduced",
    "job_lock",
    "reduce_vectors",
    "run_theme_job",
    "themes_for_vectors",
]

Progress = Callable[[str, float], None]


class ThemeJobRunning(RuntimeError):
    """Another theme job holds the lock for this database."""


@contextmanager
def job_lock(db_path: Path) -> Iterator[None]:
    """Hold the theme-job lock of a database, or raise :class:`ThemeJobRunning`."""
    lock_path = Path(str(db_path) + ".theme-job.lock")
    fh = open(lock_path, "a+")  # noqa: SIM115 - held for the duration of the job
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ThemeJobRunning(
                f"a theme job is already running for {db_path} ({holder}); wait for it to finish"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        yield
    finally:
        fh.close()


ENGINES = ("local", "ray")


def run_theme_job(
    store: Store,
    encoder: TextEncoder,
    config: ThemeJobConfig | None = None,
    progress: Progress | None = None,
    show_bar: bool | None = None,
    engine: str = "local",
    ray: Any = None,
) -> dict[str, Any]:
    """Run the whole job and switch the new themes in. Returns the run record.

    Args:
        engine: "local" (this process) or "ray" (``pipelines.themes.ray_engine``, an optional extra).
        ray: the Ray engine's ``RayOptions`` (cluster address, encoder recipe); defaults when None.

    Raises:
        ThemeJobRunning: when another run holds the lock.
        ValueError: for an unknown engine.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {list(ENGINES)}")
    config = config or ThemeJobConfig()
    report = progress or (lambda stage, frac: None)
    tenant = getattr(store, "tenant_name", "default")  # one job at a time per tenant; tenants may run at once
    with job_lock(store.path if tenant == "default" else Path(f"{store.path}.{tenant}")):
        if engine == "ray":
            from pipelines.themes.ray_engine import RayOptions, run_on_ray

            return run_on_ray(store, encoder, config, report, show_bar, ray or RayOptions())
        return _run(store, encoder, config, report, show_bar)


def _run(
    store: Store, encoder: TextEncoder, config: ThemeJobConfig, progress: Progress, show_bar: bool | None
) -> dict[str, Any]:
    """The job's stages in order; each ends with its name and progress fraction."""
    clock = _StageClock(progress)
    _embed(store, encoder, progress, show_bar)
    clock.done("embed", 0.3)
    items, history = _load(store, encoder)
    clock.done("load", 0.35)
    fit = compute.reduce(items.vectors, config)
    clock.done("reduce", 0.6)
    labels = compute.cluster(fit, len(items), config)
    clock.done("cluster", 0.7)
    placed = compute.assign(items, labels, history, config)
    clock.done("assign", 0.75)
    labelled = compute.label(items, placed, config, encode=encoder.encode_queries)  # re-ranks label terms
    clock.done("label", 0.85)
    coords = compute.map_2d(items.vectors, config.map_max_points)
    clock.done("map", 0.95)
    params = {"config": asdict(config), "model_id": encoder.model_id, "items": len(items)}
    record = _write(store, params, compute.outcome(items, fit, placed, labelled, coords), clock.timings)
    clock.done("write", 1.0)
    return record


class _StageClock:
    """Times each stage (from the end of the previous one) and reports its progress fraction."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def done(self, name: str, fraction: float) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._t0, 3)
        self._t0 = now
        self.progress(name, fraction)


def _embed(store: Store, encoder: TextEncoder, progress: Progress, show_bar: bool | None) -> None:
    """Stage "embed": query vectors for every text that has none (progress from 0 to 0.3)."""
    embed_missing(
        store,
        encoder,
        prompt="query",
        show_bar=show_bar,
        progress=lambda done, total: progress("embed", 0.3 * done / max(total, 1)),
    )


def _load(store: Store, encoder: TextEncoder) -> tuple[Items, History]:
    """Stage "load": every item with its query vector, last night's themes and the staff curations."""
    keys, kinds, ids, texts, vecs = [], [], [], [], []
    qkey = vector_key(encoder.model_id, "query")
    for kind in KINDS:
        records = {r.id: r for r in store.records(kind)}
        vid, v = store.vectors(kind, qkey)
        for i, rid in enumerate(vid):
            rec = records[rid]
            keys.append(f"{kind}:{rid}")
            kinds.append(kind)
            ids.append(rid)
            texts.append(embed_text(rec.title, rec.text))
            vecs.append(v[i])
    matrix = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, encoder.dim), np.float32)
    members = store.themes.current_members()
    previous = [Previous(t.theme_id, members.get(t.theme_id, set()), t.centroid) for t in store.themes.current_themes()]
    return Items(keys, kinds, ids, texts, matrix), History(previous, store.themes.curations())


def _write(store: Store, params: dict[str, Any], out: compute.Outcome, timings: dict[str, float]) -> dict[str, Any]:
    """Stage "write": store the run and switch it in, in one transaction. Returns the run record."""
    run_id = store.themes.next_run_id()
    record = {
        "run_id": run_id,
        "params": params,
        "timings": timings,  # the caller's dict: the write stage's own time is added after writing
        "n_themes": len(out.themes),
        "share_unassigned": out.share_unassigned,
        "quality": out.quality,
        "events": out.events,
    }
    store.themes.write_run(run_id, record, out.themes, out.members)
    return record
