"""The nightly theme job on a Ray cluster (``idesluss cluster --engine ray``).

Same stages and same answer as the local engine (``pipelines.themes.job._run``), arranged for
millions of items:

* **export**: the rows go to Parquet files in a private scratch folder (0700, files 0600, removed
  afterwards); Ray Data reads them from there. On a cluster of several machines the scratch folder
  must be on storage every node mounts (``RayOptions.scratch``).
* **embed**: only texts without a stored vector, sorted by length and cut into files of about
  ``ray_ops.TOKENS_PER_TASK`` estimated tokens (at least ``TASKS_PER_ACTOR`` per actor), one Ray
  task each, on an actor pool of encoders spread over the nodes (each actor loads the model once,
  and the pool takes work only when every actor has loaded it; each actor cuts its task into
  forward passes of at most ``TOKEN_BUDGET`` padded tokens); the driver stores the vectors as
  they arrive.
* **fit**: the reducer and clusterer on the seeded sample (``max_fit_items``), as one Ray task on
  one node, with the project's own stage functions; the 2-D map is fitted beside it.
* **assign** and **label**: the per-item work as ``map_batches`` passes (``ray_stages``).
* **write**: the driver writes the run through the store, as the local engine does; a job that
  fails before that leaves the last good themes in place.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.encoder import TextEncoder
from pipelines.embed import vector_key
from pipelines.records import embed_text
from pipelines.themes import compute, ray_ops, ray_stages
from pipelines.themes.config import ThemeJobConfig
from store import KINDS, Store

INSTALL_HINT = "the Ray engine is an optional extra: install it with  pip install -e '.[scale]'  (Ray Data)"


ACTOR_START_S = 900.0  # most seconds for the encoder actors to load the model before any work


class RayJobFailed(RuntimeError):
    """The job on Ray did not finish (a node lost for good, no progress in time); nothing was written."""


def ray_available() -> bool:
    """Whether Ray Data can be imported here."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None


@dataclass
class RayOptions:
    """Where and how the job runs on Ray.

    Attributes:
        address: the cluster ("HOST:PORT"); None: ``RAY_ADDRESS``, else a private local instance.
        encoder_factory: builds the encoder inside each actor (an ``ray_ops.EncoderSpec``); needed
            only when some text has no vector yet.
        encoders: encoder actors (None: one per CPU of the cluster but one, which Ray Data's
            read tasks need; never more than that). A lost actor is restarted where there is room,
            and the pool goes on with fewer meanwhile.
        scratch: where the private export folder is made (shared storage on a multi-machine cluster).
        rows_per_file: most rows per exported file of the items (one task of each per-item pass);
            fewer when that leaves some CPU of the cluster without a task.
        timeout_s: a stage that has not finished by then fails the job (a pass waiting for a lost
            node would otherwise wait for ever).
        task_slots: most tasks of one pass at a time (None: as many as the cluster's CPUs allow).
        local_cpus: CPUs of a private local instance.
        object_store_bytes: object store of a private local instance.
    """

    address: str | None = None
    encoder_factory: Callable[[], TextEncoder] | None = None
    encoders: int | None = None
    scratch: str | None = None
    rows_per_file: int = 2_000
    timeout_s: float = 6 * 3600
    task_slots: int | None = None
    local_cpus: int = 2
    object_store_bytes: int = 256 * 1024 * 1024
    nodes: dict[str, set[str]] = field(default_factory=dict)  # filled in: stage -> node ids that worked on it
    actors: set[str] = field(default_factory=set)  # filled in: the encoder actors that embedded
    workers: dict[str, set[str]] = field(default_factory=dict)  # filled in: stage -> worker processes of its passes
    encoder_busy_s: float = 0.0  # filled in: seconds the encoder actors spent encoding, all together
    encoder_cpu_s: float = 0.0  # filled in: CPU seconds of that encoding


def run_on_ray(
    store: Store,
    encoder: TextEncoder,
    config: ThemeJobConfig,
    progress: Any,
    show_bar: bool | None,
    options: RayOptions,
) -> dict[str, Any]:
    """The job's stages on Ray (see the module docstring); returns the run record.

    Raises:
        RayJobFailed: the cluster failed the job; the previous themes stay current.
    """
    from pipelines.themes.job import _load, _StageClock, _write

    clock = _StageClock(progress)
    with _connected(options), _scratch(options) as scratch:
        run = _Runner(options, scratch)
        _guard(options, lambda: _embed(store, encoder, run, scratch / "todo", progress))
        clock.done("embed", 0.3)
        items, history = _load(store, encoder)
        _export_items(items, scratch / "items", _rows_per_file(options.rows_per_file, len(items)))
        run.source = str(scratch / "items")
        clock.done("load", 0.35)
        fit, labels, coords_ref = _guard(options, lambda: _fit(items, config, options.nodes))
        clock.done("fit", 0.6)
        placed = _guard(options, lambda: ray_stages.assign(run.passes, items, labels, history, config))
        clock.done("assign", 0.75)
        labelled = _guard(
            options, lambda: ray_stages.label(run.passes, items, placed, config, encode=encoder.encode_queries)
        )
        clock.done("label", 0.85)
        coords = _guard(options, lambda: _coords(coords_ref))
        clock.done("map", 0.95)
    params = {
        "config": asdict(config),
        "model_id": encoder.model_id,
        "items": len(items),
        "engine": "ray",
        "nodes": {stage: sorted(ids) for stage, ids in options.nodes.items()},
        "encoder_actors": len(options.actors),
        "pass_workers": {stage: len(ids) for stage, ids in options.workers.items()},
        "encoder_busy_s": round(options.encoder_busy_s, 3),
        "encoder_cpu_s": round(options.encoder_cpu_s, 3),
    }
    record = _write(store, params, compute.outcome(items, fit, placed, labelled, coords), clock.timings)
    clock.done("write", 1.0)
    return record


# -- cluster connection, scratch folder, bounded waits --------------------------------------------
@contextmanager
def _connected(options: RayOptions) -> Iterator[None]:
    """Connect to the cluster (or start a private instance); disconnect afterwards."""
    import ray
    import ray.data

    if ray.is_initialized():  # the caller holds a connection: use it, leave it open
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = options.address or os.environ.get("RAY_ADDRESS")
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        host = address.split("://")[-1].rsplit(":", 1)[0]
        # a cluster on loopback: the driver must announce itself there too, or it cannot attach
        extra: dict[str, Any] = {"_node_ip_address": host} if host.startswith("127.") or host == "localhost" else {}
        ray.init(address=address, **quiet, **extra)
    else:
        ray.init(
            num_cpus=options.local_cpus,
            object_store_memory=options.object_store_bytes,
            include_dashboard=False,
            **quiet,
        )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _scratch(options: RayOptions) -> Iterator[Path]:
    """A private folder (0700) for the exported rows, removed afterwards whatever happens."""
    path = Path(tempfile.mkdtemp(prefix="idesluss-ray-", dir=options.scratch))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _guard(options: RayOptions, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` (which waits on the cluster) within the job's time limit; cluster errors fail the job."""
    import ray.exceptions

    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            result["error"] = exc

    thread = threading.Thread(target=target, name="theme-job-ray", daemon=True)
    thread.start()
    thread.join(options.timeout_s)
    if thread.is_alive():
        raise RayJobFailed(f"the job on Ray made no progress within {options.timeout_s:.0f} s; nothing was written")
    error = result.get("error")
    if isinstance(error, ray.exceptions.RayError):
        raise RayJobFailed(f"the job on Ray failed ({type(error).__name__}); nothing was written: {error}") from error
    if error is not None:
        raise error
    return result["value"]


_PLANNING = threading.Lock()


def _read(folder: str) -> Any:
    """The exported files as a dataset of one block per file, so one file is one task downstream.

    Ray 2.60's default Parquet reader (DataSourceV2) bin-packs files into read tasks of up to
    128 MiB and ignores ``override_num_blocks``: a few thousand rows became one block, hence one
    task and one busy actor. The V1 reader, switched on for this read only, keeps one block per file.
    """
    import ray.data

    files = sorted(str(f) for f in Path(folder).glob("*.parquet"))
    # one read is planned at a time in this process: jobs of several tenants run in threads, the
    # reader's setting is process-wide, and Ray Data's path check imports optional modules that a
    # second thread would see half-initialised ("cannot import name ...")
    with _PLANNING:
        ctx = ray.data.DataContext.get_current()
        saved = ctx.use_datasource_v2
        ctx.use_datasource_v2 = False
        try:
            return ray.data.read_parquet(files, override_num_blocks=max(len(files), 1))
        finally:
            ctx.use_datasource_v2 = saved


def _write_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, path)
    os.chmod(path, 0o600)


# -- the passes ----------------------------------------------------------------------------------
class _Runner:
    """Runs ``map_batches`` passes over the exported items and notes which nodes did the work."""

    def __init__(self, options: RayOptions, scratch: Path) -> None:
        self.options = options
        self.scratch = scratch
        self.source = ""
        self.passes = ray_stages.Passes(self.run, self.put)

    def put(self, value: Any) -> Any:
        import ray

        return ray.put(value)

    def run(self, stage: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Iterator[dict[str, np.ndarray]]:
        import ray.data

        slots = self.options.task_slots
        compute = ray.data.TaskPoolStrategy(size=slots) if slots else None
        ds = _read(self.source).map_batches(fn, batch_format="pyarrow", fn_kwargs=kwargs, num_cpus=1, compute=compute)
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            self.options.nodes.setdefault(stage, set()).update(str(n) for n in batch["node"])
            self.options.workers.setdefault(stage, set()).update(str(w) for w in batch["worker"])
            yield batch


def _embed(store: Store, encoder: TextEncoder, run: _Runner, folder: Path, progress: Any) -> int:
    """Stage "embed": query vectors for every text that has none, on the encoder actor pool."""
    todo: dict[str, str] = {}
    for kind in KINDS:
        for rec in store.records(kind):
            todo.setdefault(rec.embed_hash, embed_text(rec.title, rec.text))
    key = vector_key(encoder.model_id, "query")
    missing = store.missing_hashes(key, todo)
    if not missing:
        return 0
    if run.options.encoder_factory is None:
        raise ValueError("the Ray engine needs an encoder recipe (RayOptions.encoder_factory) to embed new texts")
    pool = _pool_size(run.options.encoders)
    _export_todo(missing, todo, folder, pool)
    done = 0
    for b in _encoded(run.options, str(folder), pool):
        if len(b["hash"]) and str(b["model_id"][0]) != encoder.model_id:
            raise ValueError(f"an encoder actor loaded {b['model_id'][0]!r}, the job expects {encoder.model_id!r}")
        vectors = np.asarray(b["vector"], dtype=np.float32)
        store.put_embeddings(key, [str(h) for h in b["hash"]], vectors, only_stored=True)  # edits meanwhile
        run.options.nodes.setdefault("embed", set()).update(str(n) for n in b["node"])
        run.options.actors.update(str(a) for a in b["actor"])
        run.options.encoder_busy_s += float(np.sum(b["busy_s"]))
        run.options.encoder_cpu_s += float(np.sum(b["cpu_s"]))
        done += len(b["hash"])
        progress("embed", 0.3 * done / len(missing))
    return done


def _pool_size(wanted: int | None) -> int:
    """Encoder actors: as asked, but leaving one CPU of the cluster to Ray Data's read tasks."""
    import ray

    room = max(int(ray.cluster_resources().get("CPU", 1)) - 1, 1)
    return max(min(wanted or room, room), 1)


def _export_todo(missing: list[str], todo: dict[str, str], folder: Path, pool: int) -> None:
    """The texts to embed as Parquet files of about ``TOKENS_PER_TASK`` tokens, shortest first."""
    import pyarrow as pa

    folder.mkdir(mode=0o700)
    lengths = ray_ops.estimated_tokens([todo[h] for h in missing])
    shards = ray_ops.token_shards(lengths, ray_ops.TOKENS_PER_TASK, ray_ops.TASKS_PER_ACTOR * pool)
    for n, shard in enumerate(shards):
        part = [missing[i] for i in shard]
        _write_parquet(pa.table({"hash": part, "text": [todo[h] for h in part]}), folder / f"part-{n:06d}.parquet")


def _encoded(options: RayOptions, folder: str, pool: int) -> Iterator[dict[str, np.ndarray]]:
    """The encoder pool's output batches: one task per exported file, on actors spread over the nodes."""
    import ray.data

    ds = _read(folder).map_batches(
        ray_ops.EncodeBatch,
        fn_constructor_kwargs={"factory": options.encoder_factory},
        # may shrink to one actor while a lost one is restarted (the job goes on)
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool, initial_size=pool),
        batch_size=None,  # the whole file: its texts were chosen by tokens (the actor cuts forward passes)
        batch_format="pyarrow",
        num_cpus=1,  # Ray Data places its actors with "SPREAD": one model per node before a second
    )
    # no batch before every actor has loaded the model: else the first one ready takes the early
    # tasks and, on small jobs, all of them. A pool that cannot start in time fails the job.
    ds.context.wait_for_min_actors_s = min(options.timeout_s, ACTOR_START_S)
    yield from ds.iter_batches(batch_format="numpy", batch_size=None)


def _rows_per_file(most: int, n: int) -> int:
    """Rows per items file: at most ``most``, and few enough that every CPU gets several tasks."""
    import ray

    cpus = max(int(ray.cluster_resources().get("CPU", 1)), 1)
    return max(min(most, -(-n // (ray_ops.TASKS_PER_ACTOR * cpus))), 1)


def _export_items(items: compute.Items, folder: Path, step: int) -> None:
    """Stage "load", second half: the items (row, text, vector) as Parquet files for Ray Data."""
    import pyarrow as pa

    folder.mkdir(mode=0o700)
    x = items.vectors
    for i in range(0, max(len(items), 1), step):
        part = x[i : i + step]
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1), pa.float32()), x.shape[1])
        rows = pa.array(np.arange(i, i + len(part), dtype=np.int64))
        table = pa.table({"row": rows, "text": items.texts[i : i + step], "vector": vectors})
        _write_parquet(table, folder / f"part-{i // step:06d}.parquet")


def _fit_sample(x: np.ndarray, config: ThemeJobConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """On one node: reduce and cluster the fit sample with the project's own stages."""
    reduced = compute.reduce_vectors(x, config)
    return reduced, compute.cluster_reduced(reduced, config), ray_ops.node_id()


def _map_sample(x: np.ndarray, max_points: int) -> dict[int, tuple[float, float]]:
    return compute.map_2d(x, max_points)


def _fit(
    items: compute.Items, config: ThemeJobConfig, nodes: dict[str, set[str]]
) -> tuple[compute.Fit, np.ndarray, Any]:
    """Stage "fit": the sample fit as one task; the 2-D map starts beside it (collected later)."""
    import ray

    x, n = items.vectors, len(items)
    rows = compute.fit_sample(n, config.max_fit_items)
    # the map's sample, drawn exactly as compute.map_2d draws it
    rng = np.random.default_rng(42)
    map_rows = (
        np.arange(n) if n <= config.map_max_points else np.sort(rng.choice(n, config.map_max_points, replace=False))
    )
    coords_ref = (ray.remote(num_cpus=1)(_map_sample).remote(x[map_rows], config.map_max_points), map_rows)
    reduced, sample_labels, node = ray.get(ray.remote(num_cpus=1)(_fit_sample).remote(x[rows], config))
    nodes.setdefault("fit", set()).add(node)
    labels = np.full(n, -1, dtype=int)
    labels[rows] = sample_labels
    return compute.Fit(rows, reduced), labels, coords_ref


def _coords(coords_ref: tuple[Any, np.ndarray]) -> dict[int, tuple[float, float]]:
    import ray

    ref, map_rows = coords_ref
    return {int(map_rows[i]): xy for i, xy in ray.get(ref).items()}
