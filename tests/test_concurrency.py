"""Searches interleaved with writes on one service: no torn read, no error, every answer consistent.

Torn reads were provoked before by a search landing while an append had grown the items but not
yet the alive mask or the lexical indexes (a numpy shape error). Here many threads search while
others add, update and erase ideas as fast as they can.
"""

from __future__ import annotations

import threading
from pathlib import Path

from idesluss.service import Query, Service
from idesluss.settings import Settings
from tests.fakes import KeywordEncoder

REPO = Path(__file__).resolve().parents[1]


def test_searches_never_see_half_a_write(tmp_path: Path) -> None:
    svc = Service(Settings(db=tmp_path / "c.duckdb"), encoder=KeywordEncoder())
    svc.ingest("ideas", REPO / "demo" / "ideas.csv")
    svc.ingest("needs", REPO / "demo" / "needs.jsonl")
    svc.collections()
    errors: list[BaseException] = []
    answers: list[int] = []
    stop = threading.Event()

    def search(i: int) -> None:
        try:
            while not stop.is_set():
                if i % 2:
                    hits = svc.similar([Query(text="cykelbana belysning vinter")], k=10)[0]
                else:
                    hits = svc.suggest("snöröjning cykelbana", k=10)["similar"]
                ids = [h.id for h in hits]
                assert len(ids) == len(set(ids)) and "" not in ids  # no erased row, no duplicate row
                answers.append(len(ids))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    def write(w: int) -> None:
        try:
            for j in range(25):
                rid = f"T{w}-{j}"
                svc.add_idea({"id": rid, "text": f"cykelbana belysning vinter {w} {j}"}, actor="t")
                if j % 3 == 0:
                    svc.update_idea(rid, {"status": "pågår"}, actor="t")
                if j % 2 == 0:
                    svc.erase("ideas", rid, actor="t")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=search, args=(i,)) for i in range(4)]
    writers = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(300)
    stop.set()
    for t in readers:
        t.join(60)
    assert not errors, errors[:3]
    assert answers and min(answers) == 10
    kept = {r.id for r in svc.store.records("ideas") if r.id.startswith("T")}
    assert kept == {f"T{w}-{j}" for w in range(2) for j in range(25) if j % 2}
    hits = svc.similar([Query(text="cykelbana belysning vinter 0 0")], k=50)[0]
    assert not {h.id for h in hits} & {f"T{w}-{j}" for w in range(2) for j in range(0, 25, 2)}
    svc.close()
