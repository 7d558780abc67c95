"""Build the demo corpus (ideas.csv, needs.jsonl, gold.json) from the hand-written sources.

The texts, the theme of each text, which need an idea answers (the idea follows its need in the
source), and which ideas are paraphrases (``P:`` follows its original) or resubmitted
near-duplicates (``D:`` repeats an earlier title) are all written by hand in ``source/``.
Only the administrative fields (dates, departments, statuses, outcomes, sources) are drawn here
with a fixed seed, so the output is the same on every run.

Run: ``python demo/build_demo.py`` (rewrites the three files next to this script).
"""

from __future__ import annotations

import csv
import json
import random
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).parent
START, END = date(2024, 1, 8), date(2026, 11, 20)
GROWING = {"digitalisering": 2.5, "trygghet": 2.0, "integration": 0.6}  # >1: more recent, <1: older
OTHER_DEPARTMENTS = [
    "Kommunledningsförvaltningen",
    "Kultur- och fritidsförvaltningen",
    "Socialförvaltningen",
    "Samhällsbyggnadsförvaltningen",
    "Utbildningsförvaltningen",
]
REJECT_REASONS = [
    "Avslag: ryms inte i budgeten",
    "Avslag: frågan ägs av Region Norrbotten",
    "Avslag: en liknande lösning finns redan",
    "Avslag: strider mot gällande detaljplan",
]
NEED_SOURCES = ["medborgardialog", "enkät", "synpunkt", "e-tjänst", "klagomål"]
CONTACT_LINES = {  # a few submitters wrote contact details into the text: the service must mask them
    3: " Ring mig gärna på 070-312 45 98 om ni undrar något.",
    17: " Jag heter Karin, mejla karin.lindqvist@exempel.se.",
    42: " Mitt personnummer är 811228-9874 om ni behöver det.",
    88: " Nås på 0911-69 60 00 dagtid.",
}


def _parse(path: Path) -> dict:
    theme: dict = {}
    needs, ideas = [], []
    current_need = None
    last_idea = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            continue
        tag, _, body = line.partition(" ")
        if tag == "#":
            _, _, rest = body.partition(" ")
            key, label, dept = (s.strip() for s in rest.split("|"))
            theme = {"key": key, "label": label, "department": dept}
        elif tag == "N:":
            needs.append({"text": body.strip(), "theme": theme["key"]})
            current_need = len(needs) - 1
        elif tag in ("I:", "I0:", "P:", "D:"):
            title, _, text = (s.strip() for s in body.partition("|"))
            idea = {"title": title, "text": text, "theme": theme["key"], "needs": [], "of": None, "type": None}
            if tag == "I:":
                idea["needs"] = [current_need] if current_need is not None else []
            elif tag == "I0:":
                current_need = None
            elif tag == "P:":
                assert last_idea is not None, f"{path}: P: without an idea before it"
                idea.update(needs=list(ideas[last_idea]["needs"]), of=last_idea, type="paraphrase")
            else:
                # A resubmission repeats an earlier title; one with a changed title follows its original.
                original = next((i for i, x in enumerate(ideas) if x["title"] == title), last_idea)
                assert original is not None, f"{path}: D: without an original"
                idea.update(needs=list(ideas[original]["needs"]), of=original, type="duplicate")
            ideas.append(idea)
            if tag != "D:":
                last_idea = len(ideas) - 1
        else:
            raise ValueError(f"{path}: cannot read line {raw!r}")
    return {"theme": theme, "needs": needs, "ideas": ideas}


def _date(rng: random.Random, theme: str) -> date:
    span = (END - START).days
    power = GROWING.get(theme, 1.0)
    return START + timedelta(days=int(span * rng.random() ** (1 / power)))


def _status(rng: random.Random, created: date) -> tuple[str, str]:
    age = (END - created).days
    if age < 60:
        return "ny", ""
    r = rng.random()
    if age < 240:
        return ("under beredning", "") if r < 0.6 else ("pågår", "Pilot pågår")
    if r < 0.35:
        return "genomförd", f"Genomförd {min(created.year + 1, END.year)}"
    if r < 0.6:
        return "avslag", rng.choice(REJECT_REASONS)
    if r < 0.8:
        return "pågår", "Införs stegvis"
    return "parkerad", "Parkerad i väntan på budget"


def build() -> dict:
    rng = random.Random(2026)
    parsed = [_parse(p) for p in sorted((HERE / "source").glob("*.txt"))]
    idea_rows, need_rows, pairs, links, themes = [], [], [], [], {}
    gold_themes: dict[str, dict[str, str]] = {"ideas": {}, "needs": {}}
    for block in parsed:
        t = block["theme"]
        themes[t["key"]] = t["label"]
        need_ids = []
        for need in block["needs"]:
            nid = f"B{len(need_rows) + 1:03d}"
            need_ids.append(nid)
            created = _date(rng, t["key"])
            need_rows.append(
                {
                    "id": nid,
                    "text": need["text"],
                    "created_at": created.isoformat(),
                    "department": t["department"],
                    "source": rng.choice(NEED_SOURCES),
                }
            )
            gold_themes["needs"][nid] = t["key"]
        idea_ids: list[str] = []
        for idea in block["ideas"]:
            iid = f"I{len(idea_rows) + 1:04d}"
            idea_ids.append(iid)
            if idea["of"] is not None and idea["type"] == "duplicate":
                first = idea_rows[len(idea_rows) - len(idea_ids) + 1 + idea["of"]]
                created = date.fromisoformat(first["created_at"])
                created = min(created + timedelta(days=rng.randint(2, 60)), END)
            else:
                created = _date(rng, t["key"])
            status, outcome = _status(rng, created)
            dept = t["department"] if rng.random() > 0.2 else rng.choice(OTHER_DEPARTMENTS)
            source = "medarbetare" if rng.random() < 0.4 else "medborgare"
            text = idea["text"] + CONTACT_LINES.get(len(idea_rows), "")
            idea_rows.append(
                {
                    "id": iid,
                    "title": idea["title"],
                    "text": text,
                    "created_at": created.isoformat(),
                    "department": dept,
                    "status": status,
                    "outcome": outcome,
                    "source": source,
                }
            )
            gold_themes["ideas"][iid] = t["key"]
            for n in idea["needs"]:
                links.append({"idea": iid, "need": need_ids[n]})
            if idea["of"] is not None:
                pairs.append({"a": idea_ids[idea["of"]], "b": iid, "type": idea["type"]})
    return {
        "ideas": idea_rows,
        "needs": need_rows,
        "gold": {"theme_labels": themes, "themes": gold_themes, "pairs": pairs, "need_links": links},
    }


def main() -> None:
    data = build()
    fields = ["id", "title", "text", "created_at", "department", "status", "outcome", "source"]
    # Semicolons and a byte-order mark: what a Swedish Excel export looks like.
    with (HERE / "ideas.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, delimiter=";")
        writer.writeheader()
        writer.writerows(data["ideas"])
    with (HERE / "needs.jsonl").open("w", encoding="utf-8") as fh:
        for row in data["needs"]:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (HERE / "gold.json").write_text(json.dumps(data["gold"], ensure_ascii=False, indent=1), encoding="utf-8")
    g = data["gold"]
    print(
        f"{len(data['ideas'])} ideas, {len(data['needs'])} needs, {len(g['pairs'])} pairs, "
        f"{len(g['need_links'])} need links, {len(g['theme_labels'])} themes"
    )


if __name__ == "__main__":
    main()
