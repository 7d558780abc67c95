"""`python -m evaluation.bench_routes --sizes 10000,100000`: every HTTP route's latency as the corpus grows.

For each size it builds a real DuckDB file of SYNTHETIC ideas, starts the real server on loopback
(``idesluss serve``, a subprocess), runs the nightly theme job through the API, and times about
``--requests`` sequential requests of each route from one client (p50 / p95 / max). The question it
answers is whether a request costs what its answer costs: the p95 of a route at the largest size over
its p95 at the smallest should be at most 2.

The data, and why the server starts without encoding anything:

* texts are Swedish-looking word sequences drawn (Zipf-weighted) from a small vocabulary of municipal
  words, compounds and the masking placeholders, so BM25 and the n-gram index have postings as long
  as a real corpus's; a few hundred needs come the same way;
* vectors are synthetic clustered unit vectors (:func:`evaluation.bench_scale.clustered_unit_vectors`),
  written straight to the embeddings table under the model id the server resolves from the same
  settings, both as document and as query vectors. The server's start-up runs ``embed_missing``, which
  finds nothing missing, so no text is encoded; the model itself is still loaded (``/suggest`` and
  writes encode their own text);
* the audit table gets one row per idea (as if every idea had come in through ``POST /ideas``), written
  with plain DuckDB before the server opens the file, so ``GET /admin/audit`` reads a table of a
  realistic size.

"After a write" rows time a read right after an (untimed) ``PATCH``: the answers of ``/themes`` and
``/overview`` are cached per theme run and write generation, so on a service that takes writes the
uncached figure is the one users see. Server start is the time from the process's start to the first
``/health`` answer (the index is built before it answers); RSS is ``VmRSS`` of the server process and
its encoder process together after start-up and at the end, and the sum of their high-water marks ``VmHWM``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
NEEDS = 300
TARGET_RATIO = 2.0

# A small municipal vocabulary: frequent words first (Zipf weights favour the head), compounds and
# place names in the tail. The stop-words are kept: real texts are full of them.
_WORDS = (
    "och att det som en på är för med av till inte om har kan vi de ska man så eller mer vid från alla "
    "behöver borde skulle många kommunen idé förslag förbättra bättre nya fler mindre enklare trygg "
    "cykelväg cykelbana gatubelysning gatlampa snöröjning halkbekämpning busshållplats busslinje "
    "kollektivtrafik parkering laddstolpe trottoar övergångsställe hastighet trafik vägar gång "
    "skola förskola fritidsgård bibliotek simhall idrottshall lekplats utegym badplats park grönområde "
    "hemtjänst äldreboende hemtjänstpersonal vårdcentral tillgänglighet rullstol ramp hiss "
    "återvinning sopsortering avfall matsvinn skolmat kompost solceller energi uppvärmning "
    "e-tjänst blankett ansökan bygglov handläggning väntetid telefontid kundtjänst digital app "
    "ungdomar barn äldre föräldrar pensionärer nyanlända medborgare invånare personal medarbetare "
    "centrum öjebyn hortlax norrfjärden roknäs byn stadsdel bostadsområde landsbygd hamnen älven "
    "sommar vinter kväll helg mörker ljus säker otrygg trasig saknas hinder långt nära "
    "arbetsmiljö schema bemanning utbildning introduktion samverkan dialog enkät klagomål synpunkt "
    "belysning skylt karta information webbplats öppettider avgift kostnad budget besparing "
    "[personnummer] [telefonnummer] [e-post]"
)
VOCABULARY = tuple(_WORDS.split())
DEPARTMENTS = (
    "Samhällsbyggnadsförvaltningen",
    "Socialförvaltningen",
    "Utbildningsförvaltningen",
    "Kultur- och fritidsförvaltningen",
    "Kommunledningsförvaltningen",
    "Miljö- och byggförvaltningen",
    "Tekniska förvaltningen",
)
STATUSES = ("ny", "under utredning", "genomförd", "avslagen")


def synthetic_texts(n: int, rng: np.random.Generator, words: tuple[int, int] = (12, 40)) -> list[str]:
    """``n`` texts of ``words`` words drawn Zipf-weighted from :data:`VOCABULARY`."""
    weights = 1.0 / np.arange(1, len(VOCABULARY) + 1) ** 0.9
    weights /= weights.sum()
    vocab = np.asarray(VOCABULARY, dtype=object)
    lengths = rng.integers(words[0], words[1] + 1, n)
    drawn = vocab[rng.choice(len(VOCABULARY), size=(n, words[1]), p=weights)]
    return [" ".join(row[:length]).capitalize() + "." for row, length in zip(drawn, lengths)]


def model_id_for(env: dict[str, str]) -> str:
    """The model id the server will store vectors under (resolved from the same settings, no model load)."""
    code = (
        "from idesluss.settings import Settings; from models.registry import resolve_model_path; "
        "s = Settings(); print(resolve_model_path(s.model, s.cache_dir)[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def _records(prefix: str, first: int, texts: list[str], rng: np.random.Generator, start: datetime) -> list[Any]:
    """Records numbered from ``first``, with a title, a date in the last three years, a department and a status."""
    from pipelines.records import embed_text, text_hash
    from store import Record

    days = rng.integers(0, 3 * 365, len(texts))
    out = []
    for i, text in enumerate(texts):
        title = " ".join(text.split()[:4]).rstrip(".")
        out.append(
            Record(
                id=f"{prefix}{first + i:07d}",
                text=text,
                title=title,
                embed_hash=text_hash(embed_text(title, text)),
                created_at=start + timedelta(days=int(days[i])),
                department=DEPARTMENTS[(first + i) % len(DEPARTMENTS)],
                status=STATUSES[(first + i) % len(STATUSES)],
            )
        )
    return out


def build_db(db: Path, n: int, model_id: str, needs: int = NEEDS, seed: int = 0, chunk: int = 50_000) -> dict:
    """A database of ``n`` synthetic ideas and ``needs`` needs with stored vectors; returns timings (s)."""
    from evaluation.bench_scale import clustered_unit_vectors
    from pipelines.embed import vector_key
    from store import Store

    timings: dict[str, float] = {}
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    start = datetime(2023, 1, 1)
    vectors = clustered_unit_vectors(n + needs, seed=seed)
    timings["vectors_s"] = time.perf_counter() - t
    with Store(db) as store:
        for kind, prefix, lo, hi in (("ideas", "S", 0, n), ("needs", "N", n, n + needs)):
            for a in range(lo, hi, chunk):
                b = min(a + chunk, hi)
                t = time.perf_counter()
                recs = _records(prefix, a - lo, synthetic_texts(b - a, rng), rng, start)
                timings["texts_s"] = timings.get("texts_s", 0.0) + time.perf_counter() - t
                t = time.perf_counter()
                store.upsert_records(kind, recs)
                timings["records_s"] = timings.get("records_s", 0.0) + time.perf_counter() - t
                t = time.perf_counter()
                hashes = [r.embed_hash for r in recs]
                for key in (model_id, vector_key(model_id, "query")):  # type: ignore[arg-type]
                    store.put_embeddings(key, hashes, vectors[a:b])
                timings["vectors_write_s"] = timings.get("vectors_write_s", 0.0) + time.perf_counter() - t
        counts = {"ideas": store.count("ideas"), "needs": store.count("needs")}
    del vectors
    t = time.perf_counter()
    timings["audit_rows"] = seed_audit(db, n)
    timings["audit_s"] = time.perf_counter() - t
    if counts != {"ideas": n, "needs": needs}:
        raise RuntimeError(f"built {counts}, expected {n} ideas and {needs} needs (duplicate texts?)")
    return timings


def seed_audit(db: Path, n: int) -> int:
    """One audit row per idea, as if each had come in through the API (plain DuckDB, server not running)."""
    import duckdb

    try:
        con = duckdb.connect(str(db))
        try:
            con.execute(
                "INSERT INTO audit SELECT TIMESTAMP '2023-01-01' + to_seconds(i::BIGINT * 60), "
                "'bench-coach', 'create', 'ideas', printf('S%07d', i) FROM range(?) t(i)",
                [n],
            )
        finally:
            con.close()
    except duckdb.Error as exc:  # the schema moved: the audit route then reads a small table (reported)
        print(f"audit rows not seeded: {exc}", file=sys.stderr)
        return 0
    return n


def _descendants(pid: int) -> list[int]:
    """``pid`` and its encoder processes (:func:`evaluation.load.encoder_children`)."""
    from evaluation.load import encoder_children

    return [pid, *encoder_children(pid)]


def process_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM and RssFile of a process and its children together, MB (from /proc/<pid>/status).

    The server encodes in a child process; both count. VmHWM is the sum of each process's own peak
    (an upper bound of the peak of the sum). ``server_VmRSS`` is the server process alone. RssFile is
    the part of VmRSS that maps files (the code, and a large index's mapped arrays: matcher.mapped),
    which the kernel can drop under memory pressure and read again; the rest it cannot.
    """
    out = {"VmRSS": 0.0, "VmHWM": 0.0, "RssFile": 0.0}
    for i, proc in enumerate(_descendants(pid)):
        try:
            lines = Path(f"/proc/{proc}/status").read_text().splitlines()
        except OSError:  # it ended meanwhile
            continue
        for line in lines:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssFile"):
                out[name] += int(value.split()[0]) / 1024
                if i == 0 and name == "VmRSS":
                    out["server_VmRSS"] = int(value.split()[0]) / 1024
    return out


def create_keys(db: Path, env: dict[str, str]) -> dict[str, str]:
    """One key per role through ``idesluss keys create`` (the stable CLI contract), before the server starts."""
    keys = {}
    for role in ("coach", "leadership", "admin"):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "idesluss",
                "--db",
                str(db),
                "keys",
                "create",
                "--role",
                role,
                "--name",
                f"bench-{role}",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        keys[role] = out.stdout.strip().splitlines()[-1]
    return keys


def run_theme_job(client: httpx.Client, admin: str, timeout: float = 3600) -> float:
    """The nightly job through ``POST /admin/jobs/cluster``; its wall time in seconds."""
    headers = {"Authorization": f"Bearer {admin}"}
    t = time.perf_counter()
    job = client.post("/admin/jobs/cluster", headers=headers).json()
    while time.perf_counter() - t < timeout:
        state = client.get(f"/admin/jobs/{job['job_id']}", headers=headers).json()
        if state["state"] == "done":
            return time.perf_counter() - t
        if state["state"] == "failed":
            raise RuntimeError(f"theme job failed: {state['error']}")
        time.sleep(0.5)
    raise RuntimeError("theme job did not finish")


@dataclass
class Route:
    """One timed route: ``request(i)`` sends the i-th request; ``before(i)``, when set, runs untimed first."""

    name: str
    request: Callable[[int], httpx.Response]
    before: Callable[[int], Any] | None = None
    times: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


def routes_for(client: httpx.Client, keys: dict[str, str], n: int, rng: np.random.Generator) -> list[Route]:
    """Every route under test, in the order they run (reads before writes; the cached reads before the writes
    that invalidate them)."""
    auth = {role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}
    ids = [f"S{i:07d}" for i in rng.integers(0, n, 10_000)]
    patch_ids = [f"S{i:07d}" for i in rng.permutation(n)[:10_000]]
    drafts = synthetic_texts(10_000, rng, words=(8, 30))
    queries = [" ".join(d.split()[:3]) for d in drafts]
    last_page = max(1, min(100_000, n // 20))
    pages = rng.integers(1, last_page + 1, 10_000)
    stamp = time.time_ns()
    coach, lead, admin = auth["coach"], auth["leadership"], auth["admin"]

    theme_ids: list[str] = []

    def theme(i: int) -> str:  # the current run's themes, read once (the job has run before the routes)
        if not theme_ids:
            r = client.get("/themes?page_size=100", headers=lead)
            r.raise_for_status()
            theme_ids.extend(t["id"] for t in r.json()["items"])
        return theme_ids[i % len(theme_ids)] if theme_ids else "none"

    def touch(i: int) -> None:  # an untimed write: cached answers are stale afterwards
        r = client.patch(f"/ideas/{patch_ids[-1 - i]}", json={"status": f"ändrad {i}"}, headers=coach)
        r.raise_for_status()

    return [
        Route("GET /health", lambda i: client.get("/health")),
        Route("GET /admin/keys (key check)", lambda i: client.get("/admin/keys", headers=admin)),
        Route("GET /ideas/{id}", lambda i: client.get(f"/ideas/{ids[i]}", headers=coach)),
        Route("GET /ideas?page=", lambda i: client.get(f"/ideas?page={pages[i]}&page_size=20", headers=coach)),
        Route(  # the next page after a random idea (the cursor the previous page handed out)
            "GET /ideas?after=",
            lambda i: client.get("/ideas", params={"after": ids[-1 - i], "page_size": 20}, headers=coach),
        ),
        Route("GET /ideas/{id}/similar", lambda i: client.get(f"/ideas/{ids[-1 - i]}/similar?k=10", headers=coach)),
        Route("GET /ideas/{id}/needs", lambda i: client.get(f"/ideas/{ids[i]}/needs?k=10", headers=coach)),
        Route("GET /search", lambda i: client.get("/search", params={"q": queries[i], "k": 10}, headers=coach)),
        Route("POST /suggest", lambda i: client.post("/suggest", json={"text": drafts[i], "k": 5}, headers=coach)),
        Route("GET /themes", lambda i: client.get("/themes?page_size=50", headers=lead)),
        Route("GET /overview", lambda i: client.get("/overview", headers=lead)),
        Route("GET /themes/{id}/page", lambda i: client.get(f"/themes/{theme(i)}/page", headers=lead)),
        Route("GET /admin/runs", lambda i: client.get("/admin/runs", headers=admin)),
        Route("GET /admin/audit", lambda i: client.get("/admin/audit?limit=100", headers=admin)),
        Route(
            "POST /admin/keys",
            lambda i: client.post("/admin/keys", json={"role": "coach", "name": f"bench {i}"}, headers=admin),
        ),
        Route(
            "POST /ideas",
            lambda i: client.post(
                "/ideas", json={"id": f"NEW-{stamp}-{i}", "text": drafts[-1 - i], "k": 5}, headers=coach
            ),
        ),
        Route(
            "PATCH /ideas/{id}",
            lambda i: client.patch(f"/ideas/{patch_ids[i]}", json={"text": drafts[i // 2 + 1]}, headers=coach),
        ),
        Route("GET /themes (after a write)", lambda i: client.get("/themes?page_size=50", headers=lead), touch),
        Route("GET /overview (after a write)", lambda i: client.get("/overview", headers=lead), touch),
        Route(
            "GET /ideas/{id}/similar (after a write)",
            lambda i: client.get(f"/ideas/{ids[i]}/similar?k=10", headers=coach),
            touch,
        ),
    ]


def time_route(route: Route, requests: int, warmup: int = 1) -> dict[str, Any]:
    """Send ``warmup`` untimed then ``requests`` timed requests; latency figures in ms."""
    for i in range(warmup):
        if route.before:
            route.before(requests + i)
        route.request(requests + i)
    for i in range(requests):
        if route.before:
            route.before(i)
        t = time.perf_counter()
        r = route.request(i)
        route.times.append(time.perf_counter() - t)
        route.statuses[r.status_code] = route.statuses.get(r.status_code, 0) + 1
    ms = np.asarray(route.times) * 1000
    return {
        "requests": requests,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
        "statuses": {str(k): v for k, v in route.statuses.items()},
        "errors": sum(v for k, v in route.statuses.items() if k >= 400),
    }


def prepare_db(db: Path, n: int, env: dict[str, str], seed: int = 0, keep: bool = False) -> tuple[dict, dict]:
    """The database of one size and its keys: built, or with ``keep`` reused from an earlier run.

    Returns (build timings, keys); the timings of a reused database are those of its build.
    """
    saved = db.with_name(db.name + ".bench.json")
    if keep and db.exists() and saved.exists():
        state = json.loads(saved.read_text())
        print(f"[{n}] reusing {db} (built in {state['build_s']:.1f} s)", file=sys.stderr, flush=True)
        return {**state["build"], "reused": True}, state["keys"]
    t = time.perf_counter()
    build = build_db(db, n, model_id_for(env), seed=seed)
    keys = create_keys(db, env)
    build["build_s"] = time.perf_counter() - t
    if keep:
        saved.write_text(json.dumps({"build": build, "build_s": build["build_s"], "keys": keys}))
    return build, keys


def run_size(
    n: int,
    requests: int,
    workdir: Path,
    env: dict[str, str],
    seed: int = 0,
    theme_job: bool = True,
    keep: bool = False,
) -> dict:
    """Build (or reuse, with ``keep``), start, measure and stop at one size."""
    from evaluation.load import free_port, start_server

    db = workdir / f"routes-{n}.duckdb"
    result: dict[str, Any] = {"n": n}
    result["build"], keys = prepare_db(db, n, env, seed=seed, keep=keep)
    result["build_s"] = result["build"]["build_s"]
    result["db_mb"] = db.stat().st_size / 2**20
    print(f"[{n}] built in {result['build_s']:.1f} s ({result['db_mb']:.0f} MB)", file=sys.stderr, flush=True)
    port = free_port()
    t = time.perf_counter()
    proc = start_server(db, env, port, log=workdir / f"serve-{n}.log", poll_s=0.1, wait_s=4 * 3600, verbose=True)
    result["start_s"] = time.perf_counter() - t
    try:
        result["memory_after_start_mb"] = process_memory_mb(proc.pid)
        print(f"[{n}] server up in {result['start_s']:.1f} s, {result['memory_after_start_mb']}", file=sys.stderr)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            result["theme_job_s"] = run_theme_job(client, keys["admin"]) if theme_job else None
            result["memory_after_job_mb"] = process_memory_mb(proc.pid)
            rng = np.random.default_rng(seed + 1)
            result["routes"] = {}
            for route in routes_for(client, keys, n, rng):
                result["routes"][route.name] = time_route(route, requests)
                r = result["routes"][route.name]
                print(
                    f"[{n}] {route.name}: p50 {r['p50_ms']:.1f} p95 {r['p95_ms']:.1f} ms", file=sys.stderr, flush=True
                )
        result["memory_end_mb"] = process_memory_mb(proc.pid)
        result["cli_query_s"] = cli_query_seconds(db, env)
        print(f"[{n}] CLI query beside the server: {result['cli_query_s']} s", file=sys.stderr, flush=True)
        _stop(proc)
        # a second start: the index saved by the first (at its build, and at its clean stop) is loaded
        t = time.perf_counter()
        proc = start_server(
            db, env, port, log=workdir / f"serve-{n}-again.log", poll_s=0.1, wait_s=4 * 3600, verbose=True
        )
        result["restart_s"] = time.perf_counter() - t
        print(f"[{n}] second start (saved index) in {result['restart_s']:.1f} s", file=sys.stderr, flush=True)
    finally:
        _stop(proc)
        for path in [] if keep else workdir.glob(f"routes-{n}.duckdb*"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    return result


def cli_query_seconds(db: Path, env: dict[str, str], runs: int = 3) -> dict[str, float]:
    """Wall time of ``idesluss similar TEXT`` beside the running server, from process start to exit
    (interpreter, imports, the hand-over to the server, the answer): median and max of ``runs``."""
    times = []
    for i in range(runs):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "idesluss", "--db", str(db), "similar", f"cykelväg och belysning {i}", "--k", "5"],
            env=env,
            capture_output=True,
            check=True,
            timeout=600,
        )
        times.append(time.perf_counter() - t)
    return {"median": round(float(np.median(times)), 2), "max": round(max(times), 2)}


def _stop(proc: subprocess.Popen) -> None:
    """A clean stop (SIGTERM: the server saves its index), killed after two minutes."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ratios(results: list[dict]) -> dict[str, float]:
    """Per route: p95 at the largest size over p95 at the smallest."""
    small, large = results[0]["routes"], results[-1]["routes"]
    return {name: large[name]["p95_ms"] / small[name]["p95_ms"] for name in small if name in large}


def _cli_cell(t: dict[str, float] | None) -> str:
    return f"{t['median']:.2f}, {t['max']:.2f}" if t else "-"


def table(report: dict) -> str:
    """The Markdown report: route x size p95, the ratio, start time and memory."""
    results = report["results"]
    sizes = [r["n"] for r in results]
    head = " | ".join(f"p95 ms at {n:,}" for n in sizes)
    ratio_head = f"{sizes[-1]:,} / {sizes[0]:,}" if len(sizes) > 1 else "ratio"
    lines = [
        f"| route | {head} | {ratio_head} | <= {TARGET_RATIO:g}x |",
        "|---" + "|---:" * len(sizes) + "|---:|---|",
    ]
    for name in results[0]["routes"]:
        cells = " | ".join(f"{r['routes'][name]['p95_ms']:.1f}" for r in results)
        ratio = report["ratios"].get(name, math.nan)
        errors = sum(r["routes"][name]["errors"] for r in results)
        mark = ("yes" if ratio <= TARGET_RATIO else "**no**") + (f" ({errors} errors)" if errors else "")
        lines.append(f"| {name} | {cells} | {ratio:.2f} | {mark} |")
    lines += [
        "",
        "| size | build s | DB MB | first start s | start with saved index s | theme job s "
        "| CLI query beside the server s (median, max of 3) "
        "| RSS after start MB (server alone) | RSS end MB (file-backed) | peak RSS MB |",
    ]
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        job = f"{r['theme_job_s']:.1f}" if r.get("theme_job_s") is not None else "-"
        lines.append(
            f"| {r['n']:,} | {r['build_s']:.1f} | {r['db_mb']:.0f} | {r['start_s']:.1f} "
            f"| {r.get('restart_s', math.nan):.1f} | {job} "
            f"| {_cli_cell(r.get('cli_query_s'))} "
            f"| {r['memory_after_start_mb']['VmRSS']:.0f} ({r['memory_after_start_mb'].get('server_VmRSS', math.nan):.0f}) "
            f"| {r['memory_end_mb']['VmRSS']:.0f} ({r['memory_end_mb'].get('RssFile', math.nan):.0f}) "
            f"| {r['memory_end_mb']['VmHWM']:.0f} |"
        )
    lines.append("")
    lines.append(
        f"{report['requests']} sequential requests per route from one client after one warm-up; p95 in ms; "
        f"{os.cpu_count()} CPUs; synthetic texts and vectors (see evaluation/bench_routes.py); RSS: the server "
        "and its encoder process together (peak: the sum of each one's peak; file-backed: pages of mapped files, "
        "which the kernel may drop under memory pressure)."
    )
    return "\n".join(lines)


def run(
    sizes: list[int],
    requests: int = 100,
    out: str | None = None,
    workdir: str | None = None,
    theme_job: bool = True,
    keep: bool = False,
    build_only: bool = False,
) -> dict:
    """Every size, smallest first; prints the table and writes the JSON report to ``out``.

    With ``keep`` the databases stay in ``workdir`` and a later run reuses them (a 1M one takes long
    to build); ``build_only`` builds them and measures nothing.
    """
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # one client sends far more than a person would; the per-key limit is not what is measured
        "IDESLUSS_RATE_LIMIT_PER_MINUTE": "100000000",
    }
    if keep and not workdir:
        raise SystemExit("--keep needs --workdir (where the databases stay)")
    results: list[dict] = []
    report: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        tmp = (
            Path(workdir)
            if keep and workdir
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-routes-", dir=workdir)))
        )
        tmp.mkdir(parents=True, exist_ok=True)
        for n in sorted(sizes):
            if build_only:
                prepare_db(tmp / f"routes-{n}.duckdb", n, env, keep=keep)
                continue
            results.append(run_size(n, requests, tmp, env, theme_job=theme_job, keep=keep))
            report = {"sizes": sorted(sizes)[: len(results)], "requests": requests, "results": results}
            report["ratios"] = ratios(results)
            if out:  # after every size: a long run that stops keeps what it measured
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                Path(out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    if results:
        print(table(report))
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated idea counts (e.g. 10000,100000,1000000)")
    ap.add_argument("--requests", type=int, default=100, help="timed requests per route and size")
    ap.add_argument("--out", default="reports/bench/routes.json")
    ap.add_argument("--workdir", default=None, help="where the databases are built (default: the temp dir)")
    ap.add_argument("--no-theme-job", action="store_true", help="skip the nightly job (themes and overview empty)")
    ap.add_argument("--keep", action="store_true", help="keep the databases in --workdir and reuse them next time")
    ap.add_argument("--build-only", action="store_true", help="build the databases (with --keep) and stop")
    args = ap.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    run(
        sizes,
        args.requests,
        args.out,
        args.workdir,
        theme_job=not args.no_theme_job,
        keep=args.keep,
        build_only=args.build_only,
    )


if __name__ == "__main__":
    main()
