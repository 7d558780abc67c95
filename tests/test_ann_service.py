"""The service with its dense index in HNSW mode answers as the exact scan does, erasure and filters included."""

from __future__ import annotations

import os
from pathlib import Path

from idesluss.service import Query, Service
from idesluss.settings import Settings
from matcher.mapped import is_mapped
from tests.fakes import KeywordEncoder

REPO = Path(__file__).resolve().parents[1]
QUERIES = [
    "cykelväg till skolan",
    "snöröjning på gångvägar",
    "bibliotekets öppettider",
    "belysning i parken",
    "hemtjänst för äldre",
    "buss till byarna",
    "lekplats vid förskolan",
    "parkering vid sjukhuset",
]


def _service(tmp_path: Path, mode: str) -> Service:
    svc = Service(Settings(db=tmp_path / f"{mode}.duckdb", dense_index=mode), encoder=KeywordEncoder())
    svc.ingest("ideas", REPO / "demo" / "ideas.csv")
    svc.ingest("needs", REPO / "demo" / "needs.jsonl")
    return svc


def test_hnsw_mode_agrees_with_the_exact_scan(tmp_path: Path) -> None:
    exact, approx = _service(tmp_path, "exact"), _service(tmp_path, "hnsw")
    assert approx.collections()["ideas"].dense_index is not None
    assert exact.collections()["ideas"].dense_index is None
    agree = total = 0
    for q in QUERIES:
        want = [h.id for h in exact.similar([Query(text=q)], k=10)[0]]
        got = [h.id for h in approx.similar([Query(text=q)], k=10)[0]]
        agree += len(set(want) & set(got))
        total += len(want)
        assert got[:3] == want[:3], q
    assert agree / total >= 0.9
    dept = "Samhällsbyggnadsförvaltningen"
    hits = approx.similar([Query(text="cykelväg till skolan")], k=5, filters={"department": dept})[0]
    assert hits and all(h.item.department == dept for h in hits)
    first = approx.similar([Query(text="cykelväg till skolan")], k=1)[0][0].id
    coll = approx.collections()["ideas"]
    # a kind with a dense index keeps its vectors and n-grams in unnamed file mappings (matcher.mapped)
    assert coll.dense_index is not None and coll.dense_index.mapped
    assert is_mapped(coll.snapshot.chars.segments[0].matrix.indices)
    row, mapped = coll.row_of[first], coll.dense_index._mapped
    assert mapped is not None and os.pread(mapped._fd, mapped.row_bytes, row * mapped.row_bytes).strip(b"\0")
    approx.erase("ideas", first, actor="t")
    # the erased vector is overwritten in the file's bytes, not only hidden
    assert not os.pread(mapped._fd, mapped.row_bytes, row * mapped.row_bytes).strip(b"\0")
    assert first not in {h.id for h in approx.similar([Query(text="cykelväg till skolan")], k=20)[0]}
    new = approx.add_idea({"id": "NY1", "text": "cykelväg till skolan cykelväg skolan"}, actor="t")
    assert approx.similar([Query(text="cykelväg till skolan")], k=3)[0][0].id == new.id
    exact.close()
    approx.close()
