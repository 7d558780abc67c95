"""Quality pinned on gold sets with the real model (measured figures minus a small tolerance)."""

from __future__ import annotations

import pytest

from evaluation import matching
from evaluation.datasets import load_demo
from tests.conftest import shared_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_results(real_encoder):
    return matching.demo_matching(real_encoder, load_demo(), [matching.SYSTEMS[0], matching.SYSTEMS[1]])


def test_demo_paraphrases_and_needs(demo_results) -> None:
    fused, dense = demo_results["fused (service)"], demo_results["dense only"]
    assert dense["paraphrase_top5"] >= 0.92  # measured 0.938; issue floor 0.80
    assert fused["paraphrase_top5"] >= 0.95  # measured 0.966; issue floor 0.90
    assert fused["needs_recall@10"] >= 0.88  # measured 0.907; issue floor 0.85
    assert fused["needs_mrr"] > dense["needs_mrr"]


def test_duplicate_threshold_calibration(real_encoder) -> None:
    from idesluss.settings import Settings

    cal = matching.duplicate_calibration(real_encoder, load_demo())
    assert cal["precision"] >= 0.9
    assert cal["resubmissions_found"] == 1.0
    assert abs(cal["threshold"] - Settings().duplicate_threshold) < 0.01


def test_swefaq_beats_every_reference(real_encoder) -> None:
    path = shared_file("swefaq/swefaq_dev.jsonl")
    systems = [matching.SYSTEMS[0], matching.SYSTEMS[1]]
    res = matching.swefaq(real_encoder, str(path), systems)
    fused = res["fused (service)"]
    assert abs(res["dense only"]["mrr"] - 0.709) < 0.01  # the reference dense figure, reproduced
    assert fused["mrr"] >= 0.755  # measured 0.763; references: dense 0.709, BM25 0.647, z-fusion 0.749
    assert fused["recall@1"] >= 0.645  # measured 0.664; z-fusion reference 0.636


def test_sweparaphrase_spearman(real_encoder) -> None:
    path = shared_file("sweparaphrase/sweparaphrase_dev.jsonl")
    res = matching.sweparaphrase(real_encoder, str(path))
    assert res["spearman"] >= 0.82  # reference 0.832 with the unquantised model
