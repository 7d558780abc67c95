"""`python -m evaluation.bench_batching`: concurrent query encoding, direct vs micro-batched.

The API encodes one query per request thread. This measures, with the real default model and in one
run, queries/s and per-call latency (p50/p95) for 1 and for N client threads calling
``encode_queries([one short Swedish idea])`` in a closed loop, against the plain encoder ("direct")
and against :class:`models.batching.MicroBatcher` ("batched"), for each torch intra-op thread count
asked for. Each configuration's time is cut into slices run in turn with the others' (ABCD ABCD
...), so a change in the machine's load falls on all of them alike. The ratios printed are N-client
over 1-client throughput per mode, batched over direct at N clients, and batched over direct for a
lone client (what the wait bound costs when nobody else is asking).

The figures are as measured on whatever machine runs it; on a small shared machine they move by
several per cent from run to run.
"""

from __future__ import annotations

import os

# As the service and the tests: one BLAS thread, no hub, no tokenizer pool. Set before the imports.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

IDEAS = [
    "Bygg en cykelväg från Öjebyn till centrum",
    "Bättre belysning i parken vid skolan",
    "Fler papperskorgar vid badplatsen",
    "En lekplats för små barn i Norrfjärden",
    "Gratis wifi på biblioteket",
    "Trygg skolväg med övergångsställe",
    "Hundrastgård nära bostadsområdet",
    "Tätare busstrafik på kvällarna",
    "Utegym vid elljusspåret",
    "Bänkar längs promenadstråket vid älven",
    "Laddstolpar för elbilar vid simhallen",
    "Mötesplats för unga på fredagskvällar",
]


@dataclass
class Run:
    """One measured configuration."""

    torch_threads: int
    mode: str
    clients: int
    calls: int
    seconds: float
    queries_per_s: float
    p50_ms: float
    p95_ms: float
    mean_batch: float


def closed_loop(encoder: Any, clients: int, seconds: float) -> tuple[int, float, np.ndarray]:
    """``clients`` threads each calling ``encode_queries([idea])`` back to back for ``seconds``.

    Returns:
        calls completed, the wall time they took, and every call's latency in seconds.
    """
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(k: int) -> None:
        mine = latencies[k]
        i = k
        barrier.wait()
        while True:
            t = time.perf_counter()
            if t >= stop_at[0]:
                return
            encoder.encode_queries([IDEAS[i % len(IDEAS)]])
            mine.append(time.perf_counter() - t)
            i += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    flat = np.array([x for per in latencies for x in per])
    return len(flat), elapsed, flat


@dataclass
class _Tally:
    calls: int = 0
    seconds: float = 0.0
    batches: int = 0
    texts: int = 0
    latencies: list[np.ndarray] = field(default_factory=list)


def measure_slice(encoder: Any, clients: int, seconds: float, tally: _Tally) -> None:
    """One closed-loop slice, added to ``tally`` (with the batcher's batches and texts, if any)."""
    stats = getattr(encoder, "stats", None)
    before = (stats.batches, stats.texts) if stats is not None else (0, 0)
    calls, elapsed, lat = closed_loop(encoder, clients, seconds)
    tally.calls += calls
    tally.seconds += elapsed
    tally.latencies.append(lat)
    if stats is not None:
        tally.batches += stats.batches - before[0]
        tally.texts += stats.texts - before[1]
    else:
        tally.batches += calls
        tally.texts += calls


def to_run(torch_threads: int, mode: str, clients: int, tally: _Tally) -> Run:
    lat = np.concatenate(tally.latencies)
    return Run(
        torch_threads=torch_threads,
        mode=mode,
        clients=clients,
        calls=tally.calls,
        seconds=tally.seconds,
        queries_per_s=tally.calls / tally.seconds,
        p50_ms=float(np.percentile(lat, 50) * 1e3),
        p95_ms=float(np.percentile(lat, 95) * 1e3),
        mean_batch=tally.texts / tally.batches if tally.batches else 0.0,
    )


def table(runs: list[Run], clients: int) -> str:
    """The runs as a text table, then the ratios per torch thread count."""
    lines = [
        f"{'torch thr':>9} {'mode':>8} {'clients':>7} {'queries/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'batch':>6}",
    ]
    for r in runs:
        lines.append(
            f"{r.torch_threads:>9} {r.mode:>8} {r.clients:>7} {r.queries_per_s:>10.1f} "
            f"{r.p50_ms:>8.1f} {r.p95_ms:>8.1f} {r.mean_batch:>6.2f}"
        )
    lines.append("")
    by = {(r.torch_threads, r.mode, r.clients): r.queries_per_s for r in runs}
    for t in sorted({r.torch_threads for r in runs}):
        direct = by[(t, "direct", clients)] / by[(t, "direct", 1)]
        batched = by[(t, "batched", clients)] / by[(t, "batched", 1)]
        gain = by[(t, "batched", clients)] / by[(t, "direct", clients)]
        lone = by[(t, "batched", 1)] / by[(t, "direct", 1)]
        lines.append(
            f"torch threads {t}: {clients}/1-client throughput direct {direct:.2f}x, batched {batched:.2f}x; "
            f"batched/direct at {clients} clients {gain:.2f}x, at 1 client {lone:.2f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per configuration")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved slices each configuration is cut into")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the many-client runs")
    parser.add_argument("--torch-threads", default="", help="comma-separated counts to try (default: torch's own)")
    parser.add_argument("--max-wait", type=float, default=0.002, help="MicroBatcher wait bound, seconds")
    parser.add_argument("--max-batch", type=int, default=32, help="MicroBatcher size bound, texts")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/models"))
    parser.add_argument("--json", type=Path, help="also write the runs here")
    args = parser.parse_args(argv)

    import torch

    from models.batching import MicroBatcher
    from models.registry import load_encoder

    encoder = load_encoder("default", args.cache_dir)
    counts = [int(x) for x in args.torch_threads.split(",") if x] or [torch.get_num_threads()]
    print(
        f"model {encoder.model_id}, engine {encoder.engine}, precision {encoder.precision}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {args.seconds:g} s per row, "
        f"max_wait {args.max_wait * 1e3:g} ms, max_batch {args.max_batch}",
        flush=True,
    )
    runs: list[Run] = []
    for t in counts:
        torch.set_num_threads(t)
        batcher = MicroBatcher(encoder, max_wait=args.max_wait, max_batch=args.max_batch)
        encoders = {"direct": encoder, "batched": batcher}
        configs = [(mode, clients) for mode in encoders for clients in (1, args.clients)]
        for mode, clients in configs:  # warm-up: allocator, batch shapes, the worker thread
            closed_loop(encoders[mode], clients, 0.5)
        tallies = {c: _Tally() for c in configs}
        # Interleaved slices, so drift in the machine's load falls on every configuration alike.
        for _ in range(args.rounds):
            for mode, clients in configs:
                measure_slice(encoders[mode], clients, args.seconds / args.rounds, tallies[(mode, clients)])
        batcher.close()
        for (mode, clients), tally in tallies.items():
            runs.append(to_run(t, mode, clients, tally))
            print(f"  {asdict(runs[-1])}", flush=True)
    print()
    print(table(runs, args.clients))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))


if __name__ == "__main__":
    main()
