"""The theme job on a real two-node Ray cluster on loopback (the optional extra ``[scale]``).

A head and a worker node run as separate ``ray start --block`` processes. Each node announces two
logical CPUs: with one, Ray Data's actor pool and its read tasks wait on each other for ever (seen
with Ray 2.60), and the machine still has only its two cores. Bounded: a few hundred items, the
fake encoder, and the real model only in the agreement test (loaded once per actor).

One driver connection serves every job of the module (as a long-lived scheduler's would), so the
jobs share one Ray driver and its worker pool instead of starting both per job. The fake
encoder actors hold their first task until both actors have one (or until the test releases
them), so "spread over the pool" and "killed mid-job" are facts of the run, not of timing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from pipelines.embed import vector_key
from pipelines.records import embed_text, text_hash
from pipelines.themes import ray_engine, ray_ops
from pipelines.themes.job import run_theme_job
from store import Record
from tests.conftest import MODEL_CACHE, shared_file
from tests.fakes import KeywordEncoder
from tests.helpers import blob_records, store_with_vectors

needs_ray = pytest.mark.skipif(
    not ray_engine.ray_available(), reason="Ray is not installed: pip install -e '.[scale]' (the optional extra)"
)
RAY = Path(sys.executable).parent / "ray"


def _partition(store) -> dict[str, str]:
    return {m["item_id"]: m["theme_id"] for m in store.themes.memberships()}


def _nmi(a: dict[str, str], b: dict[str, str]) -> float:
    ids = sorted(a)
    return float(normalized_mutual_info_score([a[i] or "-" for i in ids], [b[i] or "-" for i in ids]))


# -- without Ray ---------------------------------------------------------------------------------
def test_token_shards_cover_every_text_once_within_budget_and_feed_every_actor() -> None:
    lengths = [5, 300, 12, 40, 40, 7, 9000, 60, 33, 21] * 30
    shards = ray_ops.token_shards(lengths, per_shard=1_000, min_shards=8)
    flat = [i for shard in shards for i in shard]
    assert sorted(flat) == list(range(len(lengths)))  # every text once
    assert len(shards) >= 8
    for shard in shards:
        size = sum(lengths[i] for i in shard)
        assert size <= 1_000 or len(shard) == 1  # only a text longer than the budget stands alone
    assert [lengths[i] for i in flat] == sorted(lengths)  # shortest first: like lengths share a task
    # few texts: the shard shrinks so that each of 8 actors still gets a task
    assert len(ray_ops.token_shards([10] * 16, per_shard=10_000, min_shards=8)) == 8
    assert ray_ops.token_shards([], 1_000, 8) == []


def test_engine_ray_without_the_extra_says_how_to_install(tmp_path: Path, monkeypatch, capsys) -> None:
    from idesluss.cli import main

    monkeypatch.setattr(ray_engine, "ray_available", lambda: False)
    code = main(["--db", str(tmp_path / "x.duckdb"), "cluster", "--engine", "ray"])
    assert code == 2
    assert "pip install -e '.[scale]'" in capsys.readouterr().err


# -- a two-node cluster ----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Ray's workers start sessions of their own, so groups miss them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_node(proc: subprocess.Popen) -> None:
    """Kill one node: its ``ray start`` process and everything it started."""
    for pid in [*_descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)


def _wait_until(condition, limit_s: float, what: str) -> None:
    """Wait for a condition of the run (not for a time); ``limit_s`` only bounds a broken run."""
    end = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < end, what
        time.sleep(0.1)


class LoopbackCluster:
    """A head and one worker node on 127.0.0.1, each a separate process tree."""

    def __init__(self) -> None:
        self.temp = tempfile.mkdtemp(prefix="rt")  # short: Ray's socket paths must fit 107 bytes
        self.address = f"127.0.0.1:{_free_port()}"
        # loopback only: no token (Ray 2.60 otherwise requires the one its first local start wrote to ~/.ray)
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
        self.env["PYTHONUNBUFFERED"] = "1"  # "Ray runtime started" reaches the log at once
        self.head = self.worker = None
        common = ["--block", "--num-cpus=2", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
        common += ["--object-store-memory=100000000"]
        port = self.address.rsplit(":", 1)[1]
        head = [str(RAY), "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={self.temp}"]
        try:
            self.head = self._start(head + common, "head")
            self._wait_started("head")
            self.worker = self._start([str(RAY), "start", f"--address={self.address}", *common], "worker")
            self._wait_started("worker")
        except BaseException:
            self.close()
            raise

    def _start(self, cmd: list[str], name: str) -> subprocess.Popen:
        log = open(Path(self.temp) / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_started(self, name: str) -> None:
        """Until ``ray start`` says the node runs (its log; polling ``ray status`` costs a Python start a time)."""
        log, proc = Path(self.temp) / f"{name}.log", self.head if name == "head" else self.worker
        _wait_until(
            lambda: "Ray runtime started" in log.read_text() or proc.poll() is not None,
            60,
            f"the {name} node did not start (log in {log})",
        )
        assert proc.poll() is None, f"the {name} node exited: {log.read_text()[-2000:]}"

    @staticmethod
    def alive() -> int:
        """Nodes alive, as the connected driver sees them."""
        import ray

        return sum(1 for n in ray.nodes() if n["Alive"])

    def close(self) -> None:
        for proc in (self.worker, self.head):
            if proc is not None and proc.poll() is None:
                _kill_node(proc)
        subprocess.run(["rm", "-rf", self.temp], check=False)


@pytest.fixture(scope="module")
def cluster():
    """The two-node cluster, and this process connected to it as the driver of every job."""
    if not ray_engine.ray_available():
        pytest.skip("Ray is not installed: pip install -e '.[scale]' (the optional extra)")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")  # the driver (this process) too
    c = LoopbackCluster()
    try:
        # the engine's own connection code (a loopback address); the jobs below find it open and use it
        with ray_engine._connected(ray_engine.RayOptions(address=c.address)):
            _wait_until(lambda: c.alive() == 2, 60, "the loopback cluster never had both nodes")
            yield c
    finally:
        c.close()
        mp.undo()


def _blob_store(path: Path, missing_every: int = 3):
    """Blob items whose vectors are stored, except every ``missing_every``-th (those get embedded)."""
    records, x, y = blob_records(n_per=60, dim=32)
    enc = KeywordEncoder(dim=32, model_id="blobs")
    keep = [i for i in range(len(records)) if i % missing_every]
    store = store_with_vectors(path, [records[i] for i in keep], x[keep], enc.model_id)
    store.upsert_records("ideas", [r for i, r in enumerate(records) if i % missing_every == 0])
    return store, enc, y


class GateKeywords(KeywordEncoder):
    """The keyword encoder in an actor that holds its tasks at a gate (a folder on the shared disk).

    Each actor marks the gate when it has a task, then waits until ``parties`` actors have one, or,
    with ``parties=None``, until the test opens the gate. An actor that waits past ``limit_s``
    goes on anyway, so a run whose work never spread still ends (and its assertions fail).
    """

    def __init__(self, gate: str, parties: int | None, limit_s: float = 60.0) -> None:
        super().__init__(dim=32, model_id="blobs")
        self.gate, self.parties, self.limit_s = Path(gate), parties, limit_s

    def encode_queries(self, texts):
        (self.gate / f"busy-{os.getpid()}").touch()
        end = time.monotonic() + self.limit_s
        while not self._open() and time.monotonic() < end:
            time.sleep(0.05)
        return super().encode_queries(texts)

    def _open(self) -> bool:
        if self.parties is None:
            return (self.gate / "open").exists()
        return len(list(self.gate.glob("busy-*"))) >= self.parties


def _gate(tmp_path: Path, parties: int | None) -> tuple[Path, functools.partial]:
    gate = tmp_path / "gate"
    gate.mkdir()
    return gate, functools.partial(GateKeywords, str(gate), parties)


@needs_ray
def test_job_spreads_over_both_nodes_and_survives_a_switch_of_engine(cluster, tmp_path: Path) -> None:
    store, enc, y = _blob_store(tmp_path / "t.duckdb")
    seen: dict[str, tuple[int, int]] = {}

    def progress(stage: str, fraction: float) -> None:
        if stage == "load":  # the export exists now: private folder, private files
            folder = next(Path(tmp_path / "scratch").iterdir())
            files = list((folder / "items").iterdir())
            seen["modes"] = (folder.stat().st_mode & 0o777, max(f.stat().st_mode & 0o777 for f in files))

    (tmp_path / "scratch").mkdir()
    _, factory = _gate(tmp_path, parties=2)
    opts = ray_engine.RayOptions(
        address=cluster.address,
        encoder_factory=factory,
        encoders=2,
        scratch=str(tmp_path / "scratch"),
        rows_per_file=60,
        timeout_s=120,
    )
    record = run_theme_job(store, enc, show_bar=False, progress=progress, engine="ray", ray=opts)
    print("ray run timings", record["timings"], record["params"]["pass_workers"])
    nodes = record["params"]["nodes"]
    # the missing third was embedded by both encoder actors, one on each node (Ray Data's default
    # Parquet reader once made one task of all the files: one actor did everything)
    stored = {embed_text(r.title, r.text) for r in store.records("ideas")}
    assert not stored & set(enc.seen)  # the driver encoded label words only, never an item
    assert record["params"]["encoder_actors"] == 2 and len(nodes["embed"]) == 2, nodes
    # the per-item passes ran on both nodes too; the sample fit on one
    assert len(nodes["assign"]) == 2 and len(nodes["label"]) == 2, nodes
    assert len(nodes["fit"]) == 1
    key = vector_key("blobs", "query")
    assert store.missing_hashes(key, [r.embed_hash for r in store.records("ideas")]) == []
    assert seen["modes"] == (0o700, 0o600)
    assert list((tmp_path / "scratch").iterdir()) == []  # the export is gone
    on_ray = _partition(store)
    assert record["n_themes"] >= 6  # the six blobs (the re-embedded third adds keyword themes)
    # the same store, switched to the local engine: same themes, same ids
    run_theme_job(store, enc, show_bar=False)
    local = _partition(store)
    assert _nmi(local, on_ray) >= 0.95
    assert sum(local[i] == on_ray[i] for i in local) >= 0.95 * len(local)
    store.close()


@needs_ray
@pytest.mark.slow
def test_engines_agree_on_argumentation_dev(cluster, tmp_path: Path) -> None:
    """NMI between the local and the Ray run >= 0.95 (real model; the Ray run embeds on the actors)."""
    from evaluation.datasets import load_topic_file
    from pipelines.themes.ray_ops import EncoderSpec
    from store import Store

    texts, _ = load_topic_file(shared_file("argumentation-sentences/argumentation-sentences_dev.jsonl"))
    records = [Record(id=f"A{i:04d}", text=t, embed_hash=text_hash(embed_text(None, t))) for i, t in enumerate(texts)]
    spec = EncoderSpec(model="default", cache_dir=str(MODEL_CACHE), threads=1)
    ray_store = Store(tmp_path / "ray.duckdb")
    ray_store.upsert_records("ideas", records)

    class Described:
        """The driver's encoder: its model id and size, and vectors for the few label candidates the
        label stage re-ranks (a hash of the word: no model load in the test process). Every text it is
        asked for is kept, so the test can check that no idea text was embedded here."""

        model_id, dim = "intfloat/multilingual-e5-small", 384
        asked: list[str] = []

        def encode_queries(self, texts):
            self.asked.extend(texts)
            rng = [np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self.dim) for t in texts]
            out = np.asarray(rng, dtype=np.float32).reshape(len(texts), self.dim)
            return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-9)

        encode_passages = encode_queries

    from models.registry import resolve_model_path

    Described.model_id = resolve_model_path("default", MODEL_CACHE)[1]
    opts = ray_engine.RayOptions(address=cluster.address, encoder_factory=spec, encoders=2, timeout_s=300)
    ray_record = run_theme_job(ray_store, Described(), show_bar=False, engine="ray", ray=opts)  # type: ignore[arg-type]
    assert ray_record["params"]["encoder_actors"] == 2  # both actors loaded the model and embedded
    texts = {embed_text(r.title, r.text) for r in ray_store.records("ideas")}
    assert Described.asked and not texts & set(Described.asked)  # the driver embedded label words only
    # the local engine on the same vectors and seed
    key = vector_key(Described.model_id, "query")
    stored = ray_store.records("ideas")
    hashes = [r.embed_hash for r in stored]
    vecs = ray_store.vectors_for(key, hashes)
    local_store = store_with_vectors(
        tmp_path / "local.duckdb", stored, np.stack([vecs[h] for h in hashes]), Described.model_id
    )
    run_theme_job(local_store, Described(), show_bar=False)  # type: ignore[arg-type]
    print("ray run timings", ray_record["timings"])
    agreement = _nmi(_partition(local_store), _partition(ray_store))
    print(f"argumentation dev: NMI(local, ray) = {agreement:.3f}")
    assert agreement >= 0.95
    ray_store.close()
    local_store.close()


@needs_ray
def test_worker_killed_mid_job_completes_or_fails_cleanly(cluster, tmp_path: Path) -> None:
    """Runs last: the worker node dies while both encoder actors hold a task; the last good themes stay served."""
    store, enc, _ = _blob_store(tmp_path / "k.duckdb", missing_every=10_000)
    # a good run first, then new texts for the killed run to embed
    good = run_theme_job(store, enc, show_bar=False)
    before = _partition(store)
    fresh = [
        Record(id=f"N{i:04d}", text=f"Förslag om cykelbana nummer {i}", embed_hash=text_hash(f"ny {i}"))
        for i in range(400)
    ]
    store.upsert_records("ideas", fresh)
    outcome: dict[str, object] = {}
    gate, factory = _gate(tmp_path, parties=None)
    opts = ray_engine.RayOptions(address=cluster.address, encoder_factory=factory, encoders=2, timeout_s=60)

    def job() -> None:
        try:
            outcome["record"] = run_theme_job(store, enc, show_bar=False, engine="ray", ray=opts)
        except ray_engine.RayJobFailed as exc:
            outcome["failed"] = exc

    worker = threading.Thread(target=job)
    worker.start()
    # both actors (one per node) hold a task: the job is mid-embedding, nothing embedded yet
    _wait_until(lambda: len(list(gate.glob("busy-*"))) >= 2, 120, "the encoder actors never both started")
    _kill_node(cluster.worker)
    (gate / "open").touch()
    worker.join(240)
    assert not worker.is_alive(), "the job neither finished nor failed"
    print("after the kill:", "completed" if "record" in outcome else f"failed: {outcome['failed']}")
    if "record" in outcome:  # completed on the survivor: a whole new run, every item placed once
        after = _partition(store)
        assert len(after) == len(before) + len(fresh)
        assert outcome["record"]["run_id"] == good["run_id"] + 1
    else:  # failed cleanly: the last good run is still the one served
        assert "nothing was written" in str(outcome["failed"])
        assert _partition(store) == before
        assert store.themes.current_themes()
    store.close()


@needs_ray
def test_two_tenants_run_at_once_on_the_cluster_each_on_its_own_rows(cluster, tmp_path: Path) -> None:
    """`cluster --all-tenants --engine ray`: one connection, one job per tenant at the same time."""
    from idesluss.service import Service
    from idesluss.settings import Settings

    repo = Path(__file__).resolve().parents[1]
    root = Service(Settings(db=tmp_path / "tenants.duckdb"), encoder=KeywordEncoder())
    try:
        for tenant in ("pitea", "skelleftea"):
            root.for_tenant(tenant, create=True).ingest("ideas", repo / "demo" / "ideas.csv")
        extra = tmp_path / "extra.csv"
        extra.write_text(
            "id;text\n" + "".join(f"K{n};Skoterled och vindskydd vid Kusmark nummer {n}\n" for n in range(12)),
            encoding="utf-8",
        )
        root.for_tenant("skelleftea").ingest("ideas", extra)
        # the actors build the same fake encoder (its query vectors are what the job clusters)
        opts = ray_engine.RayOptions(address=cluster.address, encoder_factory=KeywordEncoder, encoders=2, timeout_s=300)
        records = root.cluster_tenants(["pitea", "skelleftea"], engine="ray", ray=opts)
        assert not any("error" in r for r in records.values()), records
        for tenant, record in records.items():
            svc = root.for_tenant(tenant)
            assert svc.store.themes.current_run_id() == record["run_id"]
            assert record["n_themes"] > 0 and record["params"]["engine"] == "ray"
            members = {m for t in svc.themes(with_members=True) for m in t["members"]}
            assert any(m.startswith("K") for m in members) == (tenant == "skelleftea")
    finally:
        root.close()
