"""Load benchmark on loopback: concurrent clients against a live server, idle and during the nightly job.

    python -m evaluation.load --items 100000 --clients 8 --seconds 60 [--during-job] [--mix suggest]

Builds a database of synthetic ideas (vectors recombined from the demo corpus, so no embedding
time), starts `idesluss serve`, and runs the clients: `--mix suggest` sends only `POST /suggest`;
the default mix is suggestions, overviews and feedback writes. Prints requests/s, latency
percentiles per route, errors, and feedback rows sent against rows stored (must be equal).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def build_db(db: Path, items: int, settings_env: dict[str, str]) -> dict[str, str]:
    """Synthetic ideas with cached vectors, the demo needs, one theme run, and one key per role."""
    from evaluation.bench import _texts, synthesise
    from idesluss.settings import Settings
    from models.registry import load_encoder
    from pipelines.embed import vector_key
    from pipelines.ingest import ingest_file
    from pipelines.records import embed_text, text_hash
    from pipelines.themes.job import run_theme_job
    from store import Record, Store

    settings = Settings()
    enc = load_encoder(settings.model, settings.cache_dir, precision=settings.precision, engine=settings.engine)
    texts = _texts()
    base = enc.encode_passages(texts)
    stexts, svecs = synthesise(items, texts, base)
    with Store(db) as store:
        records = [
            Record(id=f"S{i:06d}", text=t, embed_hash=text_hash(embed_text(None, t)), department=f"Förvaltning {i % 7}")
            for i, t in enumerate(stexts)
        ]
        for start in range(0, items, 10_000):
            store.upsert_records("ideas", records[start : start + 10_000])
        hashes = [r.embed_hash for r in records]
        store.put_embeddings(enc.model_id, hashes, svecs)
        store.put_embeddings(vector_key(enc.model_id, "query"), hashes, svecs)
        ingest_file(store, "needs", REPO / "demo" / "needs.jsonl", encoder=enc)
        run_theme_job(store, enc, show_bar=False)
        return {role: store.keys.create_key(role, f"load-{role}")[1] for role in ("coach", "leadership", "admin")}


def run_clients(url: str, keys: dict[str, str], clients: int, seconds: float, mix: str) -> dict:
    """Drive the server; return per-route latencies, errors and feedback counts."""
    lat: dict[str, list[float]] = {}
    errors: list[str] = []
    sent_feedback = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    words = ["cykelväg", "gatubelysning", "snöröjning", "bibliotek", "hemtjänst", "buss", "lekplats", "skola"]

    def client(i: int) -> None:
        rng = np.random.default_rng(i)
        with httpx.Client(base_url=url, timeout=60) as c:
            n = 0
            while time.monotonic() < stop:
                kind = "suggest" if mix == "suggest" else ("suggest", "overview", "feedback")[n % 3]
                n += 1
                t = time.perf_counter()
                try:
                    if kind == "suggest":
                        text = " ".join(rng.choice(words, 4)) + f" förslag {n}"
                        r = c.post(
                            "/suggest",
                            json={"text": text, "k": 5},
                            headers={"Authorization": f"Bearer {keys['coach']}"},
                        )
                    elif kind == "overview":
                        r = c.get("/themes?page_size=50", headers={"Authorization": f"Bearer {keys['leadership']}"})
                    else:
                        r = c.post(
                            "/feedback",
                            json={
                                "query_kind": "draft",
                                "query_id": f"load-{i}-{n}",
                                "target_kind": "ideas",
                                "target_id": "S000001",
                                "verdict": "useful",
                            },
                            headers={"Authorization": f"Bearer {keys['coach']}"},
                        )
                    ok = r.status_code < 400
                except httpx.HTTPError as exc:
                    ok, r = False, None
                    errors.append(f"{kind}: {exc}")
                with lock:
                    lat.setdefault(kind, []).append(time.perf_counter() - t)
                    if r is not None and not ok:
                        errors.append(f"{kind}: {r.status_code}")
                    if kind == "feedback" and ok:
                        sent_feedback[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    routes = {
        k: {
            "requests": len(v),
            "rps": len(v) / seconds,
            **{p: float(np.percentile(np.asarray(v) * 1000, q)) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))},
        }
        for k, v in lat.items()
    }
    return {
        "routes": routes,
        "errors": len(errors),
        "error_samples": errors[:5],
        "feedback_sent": sent_feedback[0],
        "total_rps": sum(len(v) for v in lat.values()) / seconds,
    }


def _suggest_client(url: str, key: str, seconds: float, seed: int, out: list[float], errors: list[str]) -> None:
    rng = np.random.default_rng(seed)
    words = ["cykelväg", "gatubelysning", "snöröjning", "bibliotek", "hemtjänst", "buss", "lekplats", "skola"]
    stop = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as c:
        n = 0
        while time.monotonic() < stop:
            n += 1
            t = time.perf_counter()
            try:
                r = c.post("/suggest", json={"text": " ".join(rng.choice(words, 4)) + f" förslag {n}", "k": 5})
                if r.status_code != 200:
                    errors.append(f"suggest {r.status_code}")
            except httpx.HTTPError as exc:
                errors.append(f"suggest {exc}")
            out.append(time.perf_counter() - t)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux; NaN elsewhere or once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def encoder_children(pid: int) -> list[int]:
    """The encoder processes of the server ``pid``: its children started by multiprocessing's ``spawn``
    (its resource tracker, also a child, left out), read from /proc; [] where there is none."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = [int(c) for c in task.read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
        for child in children:
            try:
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    out.append(child)
            except OSError:
                continue
    return out


def server_processes(pid: int) -> dict[str, int]:
    """The server's process and its encoder process (the last one :func:`encoder_children` names)."""
    children = encoder_children(pid)
    return {"server": pid, **({"encoder": children[-1]} if children else {})}


def _cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {**{name: cpu_seconds(pid) for name, pid in pids.items()}, "load generator": time.process_time()}


def _cpu_per_request(before: dict[str, float], after: dict[str, float], served: int) -> dict[str, float]:
    return {name: round(1000 * (after[name] - before[name]) / max(served, 1), 2) for name in before}


def cpu_bounds(
    cpu_ms_per_request: dict[str, float], rps_1: float, p50_1_ms: float, clients: int, cores: int
) -> dict[str, float]:
    """What the cores allow at most, from the CPU the concurrent phase spent per request.

    With every process's CPU per request summed (``c`` ms; the phase's writes and upload included,
    so this is an estimate: their share would thin out over more requests), ``cores`` cores serve at
    most ``1000 * cores / c`` requests/s, and Little's law puts the clients' *mean* latency at no
    less than ``clients`` over that rate (a p95 is usually above the mean, but not always).
    Returns the throughput ceiling as a ratio of the 1-client rate and that mean-latency floor as a
    ratio of the 1-client p50; the ``*_without_generator`` figures leave the load generator's CPU
    out, as if the clients ran on other machines (here they share the cores).
    """
    out: dict[str, float] = {}
    for suffix, names in (
        ("", cpu_ms_per_request),
        ("_without_generator", [n for n in cpu_ms_per_request if n != "load generator"]),
    ):
        total = sum(cpu_ms_per_request[n] for n in names)
        if not total > 0 or not rps_1 > 0 or not p50_1_ms > 0:  # nan (a process gone) fails too
            return {}
        ceiling_rps = 1000.0 * cores / total
        out[f"cpu_ms_per_request{suffix}"] = round(total, 2)
        out[f"throughput_ceiling_ratio{suffix}"] = ceiling_rps / rps_1
        out[f"mean_latency_floor_over_p50_1{suffix}"] = 1000.0 * clients / ceiling_rps / p50_1_ms
    return {"cores": cores, **out}


def scaling(
    url: str,
    keys: dict[str, str],
    seconds: float,
    clients: int = 8,
    upload_rows: int = 2000,
    pids: dict[str, int] | None = None,
) -> dict:
    """Throughput of /suggest with 1 client, then ``clients`` at once, while writes land (same run).

    During both phases a writer adds an idea every second; during the concurrent phase a
    ``upload_rows``-row file is uploaded as well, and /health is probed throughout.

    ``pids`` (name -> process id, e.g. :func:`server_processes`): each phase also reports the CPU
    milliseconds each process used per ``/suggest`` served, everything it did in the phase included
    (the writes, the upload); "load generator" is this process, clients and all.
    """
    pids = pids or {}
    errors: list[str] = []
    health: list[float] = []
    done = threading.Event()

    def writer() -> None:
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {keys['coach']}"}) as c:
            n = 0
            while not done.wait(1.0):
                n += 1
                r = c.post("/ideas", json={"id": f"LOADW-{time.time_ns()}-{n}", "text": f"Ny idé om parkbänkar {n}"})
                if r.status_code != 201:
                    errors.append(f"write {r.status_code}")

    def prober() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while not done.wait(0.05):
                t = time.perf_counter()
                if c.get("/health").status_code != 200:
                    errors.append("health")
                health.append(time.perf_counter() - t)

    upload_took: list[float] = []

    def upload() -> None:
        began = time.perf_counter()
        rows = "\n".join(
            f"LOADU{i}-{time.time_ns()};Uppladdad idé {i} om belysning och snöröjning" for i in range(upload_rows)
        )
        with httpx.Client(base_url=url, timeout=900, headers={"Authorization": f"Bearer {keys['admin']}"}) as c:
            r = c.post("/admin/ingest/ideas", files={"file": ("load.csv", ("id;text\n" + rows + "\n").encode())})
            if r.status_code != 200:
                errors.append(f"upload {r.status_code}")
        upload_took.append(time.perf_counter() - began)

    background = [threading.Thread(target=writer), threading.Thread(target=prober)]
    for th in background:
        th.start()
    one: list[float] = []
    cpu_0 = _cpu_snapshot(pids)
    _suggest_client(url, keys["coach"], seconds, 0, one, errors)
    cpu_1 = _cpu_snapshot(pids)
    many: list[float] = []
    up = threading.Thread(target=upload if upload_rows else lambda: None)
    up.start()
    workers = [
        threading.Thread(target=_suggest_client, args=(url, keys["coach"], seconds, i + 1, many, errors))
        for i in range(clients)
    ]
    for th in workers:
        th.start()
    for th in workers:
        th.join()
    cpu_n = _cpu_snapshot(pids)
    up.join()
    done.set()
    for th in background:
        th.join()
    rps1, rpsn = len(one) / seconds, len(many) / seconds
    p50_1 = float(np.percentile(np.asarray(one) * 1000, 50))
    p95_n = float(np.percentile(np.asarray(many) * 1000, 95))
    return {
        "clients": clients,
        "rps_1": rps1,
        "rps_n": rpsn,
        "throughput_ratio": rpsn / rps1 if rps1 else float("nan"),
        "p50_1_ms": p50_1,
        "p95_n_ms": p95_n,
        "p95_n_over_p50_1": p95_n / p50_1 if p50_1 else float("nan"),
        "errors": len(errors),
        "error_samples": errors[:5],
        "health_max_ms": max(health) * 1000 if health else float("nan"),
        "health_p99_ms": float(np.percentile(np.asarray(health) * 1000, 99)) if health else float("nan"),
        "upload_s": upload_took[0] if upload_took else None,  # the upload's answer: its rows stored and indexed
        "cpu_ms_per_request_1": _cpu_per_request(cpu_0, cpu_1, len(one)),
        "cpu_ms_per_request_n": _cpu_per_request(cpu_1, cpu_n, len(many)),
        "cpu_bounds_n": cpu_bounds(
            _cpu_per_request(cpu_1, cpu_n, len(many)),
            rps1,
            p50_1,
            clients,
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        )
        if pids
        else {},
    }


def start_server(
    db: Path,
    env: dict[str, str],
    port: int,
    log: Path | None = None,
    poll_s: float = 0.5,
    wait_s: float = 3600,
    verbose: bool = False,
) -> subprocess.Popen:
    """``idesluss serve`` on loopback, once /health answers.

    Args:
        log: a file for the server's output (discarded when omitted).
        poll_s: seconds between /health probes while it starts.
        wait_s: how long start-up may take (the index is built before the first answer).
        verbose: log at INFO (the index build's steps and their seconds).
    """
    out = log.open("w") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "idesluss", *(["-v"] if verbose else []), "--db", str(db), "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-2000:] if log is not None else ""
            raise RuntimeError(f"the server exited during start-up {tail}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(poll_s)
    proc.kill()
    raise RuntimeError(f"the server did not answer within {wait_s:.0f} s")


def free_port() -> int:
    """A free port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--mix", choices=["suggest", "mixed"], default="mixed")
    ap.add_argument("--during-job", action="store_true", help="also run once while the nightly job runs")
    ap.add_argument(
        "--scaling",
        action="store_true",
        help="1 client, then --clients at once, on /suggest, while writes and a 2,000-row upload land",
    )
    ap.add_argument("--upload-rows", type=int, default=2000, help="rows of the upload during --scaling (0: none)")
    ap.add_argument("--out", help="also write the report to this JSON file")
    args = ap.parse_args(argv)
    # the clients send far more than people would; the per-key limit is not what is measured here
    env = {**os.environ, "IDESLUSS_RATE_LIMIT_PER_MINUTE": "100000000"}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "load.duckdb"
        t = time.perf_counter()
        keys = build_db(db, args.items, env)
        build_s = time.perf_counter() - t
        print(f"built {args.items} items in {build_s:.0f} s", file=sys.stderr)
        port = free_port()
        proc = start_server(db, env, port)
        url = f"http://127.0.0.1:{port}"
        try:
            if args.scaling:
                report = {
                    "items": args.items,
                    "seconds": args.seconds,
                    "upload_rows": args.upload_rows,
                    "build_s": build_s,
                    "scaling": scaling(
                        url, keys, args.seconds, args.clients, args.upload_rows, pids=server_processes(proc.pid)
                    ),
                }
                print(json.dumps(report, indent=1), flush=True)
                _write(args.out, report)
                return
            report = {"items": args.items, "clients": args.clients, "seconds": args.seconds, "mix": args.mix}
            report["idle"] = run_clients(url, keys, args.clients, args.seconds, args.mix)
            if args.during_job:
                job = httpx.post(
                    url + "/admin/jobs/cluster", headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=30
                ).json()
                report["during_job"] = run_clients(url, keys, args.clients, args.seconds, args.mix)
                state = httpx.get(
                    url + f"/admin/jobs/{job['job_id']}",
                    timeout=30,
                    headers={"Authorization": f"Bearer {keys['admin']}"},
                ).json()
                report["job_state_after"] = {"state": state["state"], "stage": state["stage"]}
            print(json.dumps(report, indent=1), flush=True)  # before shutdown, which waits for the job
        finally:
            proc.terminate()  # the server waits for a running theme job before it exits
            try:
                proc.wait(600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        from store import Store

        with Store(db) as store:
            stored = store.feedback.count_feedback()
        sent = report["idle"]["feedback_sent"] + report.get("during_job", {}).get("feedback_sent", 0)
        report["feedback_rows_sent"], report["feedback_rows_stored"] = sent, stored
        report["feedback_rows_lost"] = sent - stored
    print(json.dumps(report, indent=1))
    _write(args.out, report)


def _write(path: str | None, report: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
