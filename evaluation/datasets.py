"""Loaders for the gold sets: the project's demo gold and SuperLim / SIB-200 formats.

Paths to public files are arguments; nothing is copied into the project.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "demo"
SHARED_DATA = REPO.parent / "shared" / "data"


@dataclass
class DemoCorpus:
    """The demo ideas, needs and gold labels."""

    ideas: list[dict[str, Any]]
    needs: list[dict[str, Any]]
    gold: dict[str, Any]

    def pair_groups(self) -> dict[str, int]:
        """Idea id -> group number, where gold pairs are joined transitively."""
        parent: dict[str, str] = {}

        def find(a: str) -> str:
            while parent.setdefault(a, a) != a:
                a = parent[a]
            return a

        for p in self.gold["pairs"]:
            parent[find(p["b"])] = find(p["a"])
        roots = {i: find(i) for i in list(parent)}
        numbers = {r: n for n, r in enumerate(sorted(set(roots.values())))}
        return {i: numbers[r] for i, r in roots.items()}


def load_demo(directory: Path = DEMO_DIR) -> DemoCorpus:
    """Read ideas.csv, needs.jsonl and gold.json."""
    with (directory / "ideas.csv").open(encoding="utf-8-sig", newline="") as fh:
        ideas = list(csv.DictReader(fh, delimiter=";"))
    needs = [
        json.loads(line)
        for line in (directory / "needs.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    gold = json.loads((directory / "gold.json").read_text(encoding="utf-8"))
    return DemoCorpus(ideas, needs, gold)


def load_swefaq(path: Path) -> tuple[list[str], list[str], list[int]]:
    """SweFAQ: (questions, pooled unique answers, index of each question's gold answer)."""
    questions: list[str] = []
    answers: list[str] = []
    gold: list[int] = []
    index: dict[str, int] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        answer = row["candidate_answers"][int(row["label"])]
        if answer not in index:
            index[answer] = len(answers)
            answers.append(answer)
        questions.append(row["question"])
        gold.append(index[answer])
    return questions, answers, gold


def load_sweparaphrase(path: Path) -> tuple[list[str], list[str], list[float]]:
    """SweParaphrase: (sentences 1, sentences 2, gold similarity 0-5)."""
    a, b, y = [], [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            a.append(row["sentence_1"])
            b.append(row["sentence_2"])
            y.append(float(row["label"]))
    return a, b, y


def load_topic_file(path: Path) -> tuple[list[str], list[str]]:
    """(texts, topic labels) from an argumentation-sentences .jsonl or a SIB-200 .tsv file."""
    p = Path(path)
    if p.suffix == ".tsv":
        with p.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        return [r["text"] for r in rows], [r["category"] for r in rows]
    texts, labels = [], []
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            texts.append(row["sentence"])
            labels.append(row["topic"])
    return texts, labels
