"""`python -m evaluation.bench_ray`: the nightly theme job on Ray with 1 and 2 worker processes.

For each worker count it builds a fresh database of ``--items`` texts (the argumentation dev
sentences from ../shared/data, each repeated with a numbered suffix until there are enough; the demo
ideas where ../shared is absent), starts a private local Ray instance, and runs the whole job with
``--engine ray``: the real model embeds every text on the encoder actors (one model load per
actor), the sample fit runs on one worker, the per-item passes on all. A run with W workers has W
encoder actors and at most W tasks per pass; the instance announces 2W logical CPUs so that Ray Data's read
tasks can run beside the actors (with W, its resource allocator starts one actor only).

It reports items/s per stage and for the whole job, the scaling efficiency (items/s with 2 workers
over twice the items/s with 1), and the per-item costs that docs/ray.md projects to 5,000,000
items. Figures are as measured on the machine that runs it; on a small shared machine they move by
several per cent from run to run, and the two workers share its cores with Ray's own processes.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
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

    def encode_queries(self, texts: list[str]) -> Any:
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
            rows_per_file=max(len(texts) // (4 * workers), 100),
        )
        t0 = time.perf_counter()
        record = run_theme_job(
            store, _Described(resolve_model_path("default", cache_dir)[1]), engine="ray", ray=options
        )
        total = time.perf_counter() - t0
        store.close()
    timings = record["timings"]
    n = len(texts)
    return {
        "workers": workers,
        "items": n,
        "seconds": {s: timings.get(s, 0.0) for s in STAGES} | {"total": round(total, 2)},
        "items_per_s": {s: round(n / timings[s], 1) for s in STAGES if timings.get(s)} | {"total": round(n / total, 1)},
        "n_themes": record["n_themes"],
        "encoder_actors": record["params"]["encoder_actors"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=Path("reports/bench_ray"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    cache_dir = Path(os.environ.get("IDESLUSS_CACHE_DIR", Path.home() / ".cache" / "idesluss"))
    texts = corpus(args.items)
    runs = [run_once(texts, w, cache_dir) for w in args.workers]
    report: dict[str, Any] = {"items": args.items, "cores": os.cpu_count(), "runs": runs}
    by = {r["workers"]: r for r in runs}
    if 1 in by and 2 in by:
        report["scaling_efficiency"] = {
            s: round(by[2]["items_per_s"][s] / (2 * by[1]["items_per_s"][s]), 2)
            for s in by[1]["items_per_s"]
            if s in by[2]["items_per_s"]
        }
    one = by.get(1, runs[0])
    report["per_item_ms_one_worker"] = {s: round(1000 * one["seconds"][s] / args.items, 3) for s in STAGES}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_ray.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{args.items} items, {report['cores']} cores")
    print("workers  " + "  ".join(f"{s:>8}" for s in (*STAGES, "total")) + "   (items/s)")
    for r in runs:
        print(f"{r['workers']:>7}  " + "  ".join(f"{r['items_per_s'].get(s, 0):>8}" for s in (*STAGES, "total")))
    if "scaling_efficiency" in report:
        print("efficiency " + json.dumps(report["scaling_efficiency"]))
    print(f"written to {args.out / 'bench_ray.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
