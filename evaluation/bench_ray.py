"""`python -m evaluation.bench_ray`: the nightly theme job on Ray with 1 and 2 worker processes.

Every run builds a fresh database of ``--items`` texts (the argumentation dev sentences from
../shared/data, each repeated with a numbered suffix until there are enough; the demo ideas where
../shared is absent), starts a private local Ray instance, and runs the whole job with
``--engine ray``: the real model embeds every text on the encoder actors (one model load per
actor, tasks cut by tokens), the sample fit runs on one worker, the per-item passes on all. A run
with W workers has W encoder actors and at most W tasks per pass; the instance announces 2W
logical CPUs so that Ray Data's read tasks have room beside the actors.

The machine is shared and noisy, so the runs come in pairs, 1 then 2 workers, then 2 then 1
(``--repeats`` pairs, ABBA order against drift); each pair gives its own efficiency (items/s with
2 workers over twice the items/s with 1), and the report gives the median and the range of the
pairs, per stage. It also reports the actors and worker processes each run used (the proof that
the work spread), the encoder actors' busy seconds per item (the per-item cost that docs/ray.md
projects to 5,000,000 items), and the load average before and after.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

STAGES = ("embed", "load", "fit", "assign", "label", "map", "write")


def corpus(n: int) -> list[str]:
    """``n`` distinct Swedish texts: argumentation dev sentences (or demo ideas), numbered repeats."""
    from evaluation.datasets import DEMO_DIR, SHARED_DATA, load_demo, load_topic_file

    path = SHARED_DATA / "argumentation-sentences" / "argumentation-sentences_dev.jsonl"
    base = load_topic_file(path)[0] if path.is_file() else [i["text"] for i in load_demo(DEMO_DIR).ideas]
    return [base[i % len(base)] + ("" if i < len(base) else f" ({i // len(base)})") for i in range(n)]


class _Described:
    """What the driver needs of the encoder: its id and size (the actors load the model)."""

    def __init__(self, model_id: str, dim: int = 384) -> None:
        self.model_id, self.dim = model_id, dim

    def encode_queries(self, texts: Sequence[str]) -> Any:
        raise RuntimeError("the driver never encodes: the Ray engine embeds on its actors")

    encode_passages = encode_queries


def run_once(texts: list[str], workers: int, cache_dir: Path) -> dict[str, Any]:
    """One job on a private Ray instance with ``workers`` worker processes; timings and rates."""
    from models.registry import resolve_model_path
    from pipelines.records import embed_text, text_hash
    from pipelines.themes.job import run_theme_job
    from pipelines.themes.ray_engine import RayOptions
    from pipelines.themes.ray_ops import EncoderSpec
    from store import Record, Store

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        store = Store(Path(tmp) / "b.duckdb")
        records = [
            Record(id=f"B{i:07d}", text=t, embed_hash=text_hash(embed_text(None, t))) for i, t in enumerate(texts)
        ]
        store.upsert_records("ideas", records)
        options = RayOptions(
            encoder_factory=EncoderSpec(model="default", cache_dir=str(cache_dir), threads=1),
            encoders=workers,
            task_slots=workers,
            local_cpus=2 * workers,
        )
        t0 = time.perf_counter()
        record = run_theme_job(
            store, _Described(resolve_model_path("default", cache_dir)[1]), engine="ray", ray=options
        )
        total = time.perf_counter() - t0
        store.close()
    timings = record["timings"]
    n = len(texts)
    params = record["params"]
    return {
        "workers": workers,
        "items": n,
        "seconds": {s: timings.get(s, 0.0) for s in STAGES} | {"total": round(total, 2)},
        "items_per_s": {s: round(n / timings[s], 1) for s in STAGES if timings.get(s)} | {"total": round(n / total, 1)},
        "n_themes": record["n_themes"],
        "encoder_actors": params["encoder_actors"],
        "pass_workers": params["pass_workers"],
        "encoder_busy_ms_per_item": round(1000 * params["encoder_busy_s"] / n, 2),
        "encoder_cpu_ms_per_item": round(1000 * params["encoder_cpu_s"] / n, 2),
        # during the embed stage: actors busy at once, and cores they got (CPU seconds over wall)
        "encoders_busy_at_once": round(params["encoder_busy_s"] / timings["embed"], 2),
        "encoder_cores_obtained": round(params["encoder_cpu_s"] / timings["embed"], 2),
        "load_average": os.getloadavg()[0],
    }


def pass_costs(texts: list[str], k: int = 50, dim: int = 384) -> dict[str, float]:
    """Milliseconds per item of each per-item pass function, run here without Ray (their own work).

    The passes of one job: centroid sums with the word counts (assign), cosines (assign), centroid
    sums (label), cosines with the c-TF-IDF counts (label). The term counts are per label document
    (at most ``MAX_LABEL_DOCS`` per theme, so bounded whatever the corpus size): reported apart.
    Random unit vectors, ``k`` random themes; Ray's node id is stubbed (no cluster here).
    """
    import numpy as np
    import pyarrow as pa

    from pipelines.themes import ray_ops, ray_stages

    ray_ops.node_id = lambda: "local"  # type: ignore[assignment]  # bench only: no cluster
    rng = np.random.default_rng(0)
    n = len(texts)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = rng.integers(-1, k, n)
    cents = x[:k].copy()
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), dim)
    table = pa.table({"row": np.arange(n, dtype=np.int64), "text": texts, "vector": vectors})

    def ms(fn: Any, *args: Any) -> tuple[float, Any]:
        best, out = float("inf"), None
        for _ in range(3):  # best of three: the machine is shared
            t0 = time.perf_counter()
            out = fn(table, *args)
            best = min(best, time.perf_counter() - t0)
        return 1000 * best / n, out

    sums_ms, _ = ms(ray_ops.label_sums, labels, k)
    words_ms, first = ms(ray_ops.label_sums, labels, k, True)
    sims_ms, _ = ms(ray_ops.centroid_sims, labels, cents)
    from collections import Counter

    analyzer = ray_stages._learned_analyzer(Counter(json.loads(first["words"][0])))
    every_doc = np.where(labels >= 0, labels, -1)  # every item a label document: the term count per document
    terms_ms, _ = ms(ray_ops.sims_and_terms, labels, cents, every_doc, analyzer)
    return {
        "centroid_sums": round(sums_ms, 4),
        "word_counts": round(words_ms - sums_ms, 4),
        "cosines": round(sims_ms, 4),
        "term_counts_per_label_doc": round(terms_ms - sims_ms, 4),
        "per_item_all_passes": round(2 * sums_ms + (words_ms - sums_ms) + 2 * sims_ms, 4),
    }


def write_costs(sizes: tuple[int, int] = (20_000, 200_000), themes: int = 200) -> dict[str, float]:
    """The driver's write of a run (``store.themes.write_run``) at two sizes: fixed and per-item cost.

    Synthetic memberships into a fresh store; the slope between the two sizes is the per-item
    cost that grows with the corpus, the rest is the run's fixed cost.
    """
    import numpy as np

    from store import Store
    from store.themes import MemberRow, ThemeRow

    seconds = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
            store = Store(Path(tmp) / "w.duckdb")
            rows = [
                ThemeRow(f"T{t}", "tema", ["ord"], [], n // themes, np.zeros(384, np.float32), 0.5)
                for t in range(themes)
            ]
            members = [MemberRow("ideas", f"B{i:08d}", f"T{i % themes}", "clustered", 0.0, 0.0) for i in range(n)]
            record = {"params": {}, "timings": {}, "share_unassigned": 0.0, "quality": None, "events": []}
            t0 = time.perf_counter()
            store.themes.write_run(store.themes.next_run_id(), record, rows, members)
            seconds.append(time.perf_counter() - t0)
            store.close()
    per_item = (seconds[1] - seconds[0]) / (sizes[1] - sizes[0])
    return {"per_item_ms": round(1000 * per_item, 4), "fixed_s": round(seconds[0] - per_item * sizes[0], 2)}


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def summarise(runs: list[dict[str, Any]], pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """Per stage: median items/s (and range) per worker count, and the pairs' efficiencies."""
    # "map" only collects the 2-D map task started beside the fit: no work of its own
    stages = [s for s in (*STAGES, "total") if s != "map" and all(s in r["items_per_s"] for r in runs)]
    out: dict[str, Any] = {"items_per_s": {}, "efficiency": {}}
    for w in sorted({r["workers"] for r in runs}):
        mine = [r for r in runs if r["workers"] == w]
        out["items_per_s"][w] = {
            s: {
                "median": _median([r["items_per_s"][s] for r in mine]),
                "range": [min(r["items_per_s"][s] for r in mine), max(r["items_per_s"][s] for r in mine)],
            }
            for s in stages
        }
    for s in stages:
        ratios = [runs[two]["items_per_s"][s] / (2 * runs[one]["items_per_s"][s]) for one, two in pairs]
        if ratios:
            out["efficiency"][s] = {"median": round(_median(ratios), 2), "pairs": [round(x, 2) for x in ratios]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2, help="pairs of runs (1 and 2 workers), in ABBA order")
    p.add_argument("--out", type=Path, default=Path("reports/bench_ray"))
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--pass-costs-only",
        action="store_true",
        help="only the per-item work of the passes and of the driver's write (no Ray)",
    )
    args = p.parse_args(argv)
    cache_dir = Path(os.environ.get("IDESLUSS_CACHE_DIR", Path.home() / ".cache" / "idesluss"))
    texts = corpus(args.items)
    if args.pass_costs_only:
        print(json.dumps({"pass_ms_per_item": pass_costs(texts), "write": write_costs()}))
        return 0
    runs: list[dict[str, Any]] = []
    pairs: list[tuple[int, int]] = []
    for k in range(args.repeats):
        order = (1, 2) if k % 2 == 0 else (2, 1)
        at = {}
        for w in order:
            at[w] = len(runs)
            runs.append(run_once(texts, w, cache_dir))
            print(
                f"run {len(runs)}: {w} worker(s), {runs[-1]['seconds']['total']} s, "
                f"{runs[-1]['encoder_actors']} actor(s), load {runs[-1]['load_average']:.1f}",
                flush=True,
            )
        pairs.append((at[1], at[2]))
    report: dict[str, Any] = {"items": args.items, "cores": os.cpu_count(), "runs": runs}
    report |= summarise(runs, pairs)
    one = [r for r in runs if r["workers"] == 1]
    report["per_item_ms_one_worker"] = {
        s: round(1000 * _median([r["seconds"][s] for r in one]) / args.items, 3) for s in STAGES
    }
    for key in ("encoder_busy_ms_per_item", "encoder_cpu_ms_per_item"):
        report[key] = _median([r[key] for r in runs])
    report["pass_ms_per_item"] = pass_costs(texts)
    report["write"] = write_costs()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_ray.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{args.items} items, {report['cores']} cores, {args.repeats} pair(s) of runs")
    cols = [s for s in (*STAGES, "total") if s in report["efficiency"]]
    print("items/s, median [range]")
    for w, rates in report["items_per_s"].items():
        print(
            f"  {w} worker(s): "
            + "  ".join(f"{s} {rates[s]['median']:g} [{rates[s]['range'][0]:g}-{rates[s]['range'][1]:g}]" for s in cols)
        )
    print("efficiency (2 workers / 2x 1 worker), median (each pair):")
    print("  " + "  ".join(f"{s} {e['median']} {e['pairs']}" for s, e in report["efficiency"].items()))
    print(f"encoder per item: busy {report['encoder_busy_ms_per_item']} ms, CPU {report['encoder_cpu_ms_per_item']} ms")
    for r in runs:
        print(
            f"  run {runs.index(r) + 1} ({r['workers']} worker(s), load {r['load_average']:.1f}): "
            f"{r['encoder_actors']} actor(s), busy at once {r['encoders_busy_at_once']}, "
            f"cores obtained {r['encoder_cores_obtained']}, pass workers {r['pass_workers']}"
        )
    print(f"pass work per item (one core, no Ray): {json.dumps(report['pass_ms_per_item'])}")
    print(f"driver's write of a run: {json.dumps(report['write'])}")
    print(f"written to {args.out / 'bench_ray.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
