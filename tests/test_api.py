"""Every route and every role with TestClient, against a real DuckDB file (fake encoder for speed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from idesluss.service import Service
from idesluss.settings import Settings
from pipelines.themes.job import run_theme_job
from tests.fakes import KeywordEncoder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    db = tmp_path_factory.mktemp("api") / "api.duckdb"
    settings = Settings(db=db, rate_limit_per_minute=10_000)
    svc = Service(settings, encoder=KeywordEncoder())
    svc.ingest("ideas", REPO / "demo" / "ideas.csv")
    svc.ingest("needs", REPO / "demo" / "needs.jsonl")
    run_theme_job(svc.store, svc.encoder, show_bar=False)
    keys = {role: svc.store.keys.create_key(role, f"test-{role}")[1] for role in ("coach", "leadership", "admin")}
    with TestClient(create_app(settings, service=svc)) as client:
        yield client, keys, svc
    svc.close()


def H(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def theme_id(client, keys) -> str:
    return client.get("/themes", headers=H(keys["leadership"])).json()["items"][0]["id"]


ROUTES = [  # method, path, json body, roles allowed
    ("POST", "/suggest", {"text": "cykelväg till Öjebyn"}, {"coach", "admin"}),
    ("GET", "/ideas", None, {"coach", "admin"}),
    ("GET", "/ideas/I0001", None, {"coach", "admin"}),
    ("GET", "/ideas/I0001/similar", None, {"coach", "admin"}),
    ("GET", "/ideas/I0001/needs", None, {"coach", "admin"}),
    ("GET", "/needs/B001/ideas", None, {"coach", "admin"}),
    ("GET", "/search?q=snöröjning", None, {"coach", "admin"}),
    (
        "POST",
        "/feedback",
        {"query_kind": "ideas", "query_id": "I0001", "target_kind": "ideas", "target_id": "I0002", "verdict": "useful"},
        {"coach", "admin"},
    ),
    ("POST", "/links", {"idea_id": "I0001", "need_id": "B001", "state": "confirmed"}, {"coach", "admin"}),
    ("GET", "/themes", None, {"coach", "admin", "leadership"}),
    ("GET", "/themes/{theme}", None, {"coach", "admin", "leadership"}),
    ("GET", "/overview", None, {"coach", "admin", "leadership"}),
    ("GET", "/admin/runs", None, {"admin"}),
    ("GET", "/admin/keys", None, {"admin"}),
    ("GET", "/admin/audit", None, {"admin"}),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES)
def test_every_route_checks_its_role(env, method, path, body, allowed) -> None:
    client, keys, _ = env
    path = path.replace("{theme}", theme_id(client, keys))
    assert client.request(method, path, json=body).status_code == 401
    assert client.request(method, path, json=body, headers=H("idk_nope_nope")).status_code == 401
    for role, key in keys.items():
        r = client.request(method, path, json=body, headers=H(key))
        if role in allowed:
            assert r.status_code in (200, 201, 204), (role, path, r.text)
        else:
            assert r.status_code == 403, (role, path)
            assert r.headers["content-type"].startswith("application/problem+json")


def test_suggest_answers_with_history_needs_and_theme(env) -> None:
    client, keys, _ = env
    r = client.post(
        "/suggest",
        json={"text": "Fler gatlampor och bättre gatubelysning på gångvägen", "k": 3},
        headers=H(keys["coach"]),
    )
    body = r.json()
    assert len(body["similar"]) == 3 and len(body["needs"]) == 3
    top = body["similar"][0]
    assert {"outcome", "status", "why", "shared_terms"} <= set(top)
    assert "belysning" in " ".join(top["shared_terms"]) or "lampor" in " ".join(top["shared_terms"])


def test_submit_masks_and_returns_suggestions(env) -> None:
    client, keys, svc = env
    r = client.post(
        "/ideas",
        json={"id": "API1", "title": "Bänkar", "text": "Bänkar vid hållplatsen, mejla kim@exempel.se"},
        headers=H(keys["coach"]),
    )
    assert r.status_code == 201
    assert r.json()["idea"]["text"].endswith("[e-post]")
    assert "API1" in svc.collections()["ideas"].row_of  # indexed without a rebuild
    assert client.get("/ideas/API1", headers=H(keys["leadership"])).status_code == 403


def test_rejected_suggestions_are_not_shown_again(env) -> None:
    client, keys, _ = env
    first = client.get("/ideas/I0068/similar?k=3", headers=H(keys["coach"])).json()[0]["id"]
    client.post(
        "/feedback",
        json={
            "query_kind": "ideas",
            "query_id": "I0068",
            "target_kind": "ideas",
            "target_id": first,
            "verdict": "not_useful",
        },
        headers=H(keys["coach"]),
    )
    again = [h["id"] for h in client.get("/ideas/I0068/similar?k=10", headers=H(keys["coach"])).json()]
    assert first not in again


def test_confirmed_need_links_come_first(env) -> None:
    client, keys, _ = env
    client.post("/links", json={"idea_id": "I0100", "need_id": "B050", "state": "confirmed"}, headers=H(keys["coach"]))
    hits = client.get("/ideas/I0100/needs?k=5", headers=H(keys["coach"])).json()
    assert hits[0]["id"] == "B050" and hits[0]["confirmed"]


def test_leadership_sees_aggregates_only(env) -> None:
    client, keys, _ = env
    ov = client.get("/overview", headers=H(keys["leadership"])).json()
    assert ov["themes"] and ov["map"] and ov["heatmap"]
    assert len(ov["heatmap"]) == len(ov["themes"]) and len(ov["heatmap"][0]) == len(ov["departments"])
    detail = client.get(f"/themes/{ov['themes'][0]['id']}", headers=H(keys["leadership"])).json()
    assert "members" not in detail and "original_text" not in str(detail)
    assert detail["trend"]["per_month"]


def test_errors_are_problems_naming_the_field(env) -> None:
    client, keys, _ = env
    c = H(keys["coach"])
    r = client.post("/suggest", json={"text": "x" * 20_001}, headers=c)
    assert r.status_code == 422 and r.json()["field"] == "text"
    r = client.post("/suggest", json={"text": "   "}, headers=c)
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = client.post("/suggest", json={"text": 5}, headers=c)
    assert r.status_code == 422 and r.json()["field"] == "text"
    r = client.get("/ideas/I0001/similar?k=0", headers=c)
    assert r.status_code == 422 and r.json()["field"] == "k"
    r = client.get("/ideas/NOPE/similar", headers=c)
    assert r.status_code == 404 and "NOPE" in r.json()["detail"]
    r = client.post("/suggest", content=b"{not json", headers={**c, "Content-Type": "application/json"})
    assert r.status_code == 400
    r = client.get("/ideas?page_size=1000", headers=c)
    assert r.status_code == 422 and r.json()["field"] == "page_size"
    r = client.post("/suggest", content=b"x" * 6_000_000, headers={**c, "Content-Type": "application/json"})
    assert r.status_code == 413


def test_pagination(env) -> None:
    client, keys, _ = env
    p1 = client.get("/ideas?page=1&page_size=7", headers=H(keys["coach"])).json()
    p2 = client.get("/ideas?page=2&page_size=7", headers=H(keys["coach"])).json()
    assert len(p1["items"]) == 7 and p1["total"] >= 404
    assert not {i["id"] for i in p1["items"]} & {i["id"] for i in p2["items"]}


def test_paging_by_cursor_walks_every_idea_once_while_ideas_are_added(env) -> None:
    client, keys, _ = env
    c = H(keys["coach"])
    by_number = []
    page = 1
    while True:
        body = client.get(f"/ideas?page={page}&page_size=50", headers=c).json()
        by_number += [i["id"] for i in body["items"]]
        if body["next_after"] is None:
            break
        assert body["next_after"] == body["items"][-1]["id"]
        page += 1
    assert len(by_number) == body["total"] >= 404 and by_number == sorted(by_number)
    seen, after, added = [], None, 0
    while True:
        query = {"page_size": 50, **({"after": after} if after else {})}
        body = client.get("/ideas", params=query, headers=c).json()
        seen += [i["id"] for i in body["items"]]
        after = body["next_after"]
        if after is None:
            break
        if added < 3:  # an idea that sorts before the cursor: an offset would shift, a cursor does not
            r = client.post(
                "/ideas",
                json={"id": f"A-{added}", "title": "Bänkar vid stranden", "text": "Fler bänkar vid stranden"},
                headers=c,
            )
            assert r.status_code == 201, r.text
            added += 1
    assert seen == by_number  # every idea once, in order, none of the new ones (they lie behind the cursor)
    tail = client.get("/ideas", params={"after": by_number[-3], "page_size": 50}, headers=c).json()
    assert [i["id"] for i in tail["items"]] == by_number[-2:] and tail["next_after"] is None
    r = client.get("/ideas", params={"after": by_number[0], "page": 2}, headers=c)
    assert r.status_code == 400 and "page and after" in r.json()["detail"]
    r = client.get("/ideas", params={"after": "x" * 201}, headers=c)
    assert r.status_code == 422 and r.json()["field"] == "after"


def test_admin_upload_curate_job_erase_and_keys(env) -> None:
    client, keys, svc = env
    a = H(keys["admin"])
    data = b"id;text\nU1;Fler papperskorgar vid badplatsen\nU2;\n"
    r = client.post("/admin/ingest/ideas", files={"file": ("nya.csv", io.BytesIO(data), "text/csv")}, headers=a)
    assert r.status_code == 200 and r.json()["inserted"] == 1
    assert r.json()["errors"] == [{"line": 3, "id": "U2", "reason": "text is empty"}]
    r = client.post("/admin/ingest/ideas", files={"file": ("x.xlsx", io.BytesIO(b"PK"), "application/zip")}, headers=a)
    assert r.status_code == 415
    tid = theme_id(client, keys)
    before = client.get("/overview", headers=a).json()  # cached as JSON: a curation must reach it
    assert tid in {t["id"] for t in before["themes"]} and "Nytt namn" not in {t["label"] for t in before["themes"]}
    r = client.post(f"/admin/themes/{tid}/curate", json={"action": "rename", "name": "Nytt namn"}, headers=a)
    assert r.status_code == 201
    assert client.get(f"/themes/{tid}", headers=a).json()["label"] == "Nytt namn"
    after = client.get("/overview", headers=a)
    assert after.headers["content-type"] == "application/json"
    assert {t["id"]: t["label"] for t in after.json()["themes"]}[tid] == "Nytt namn"
    r = client.post(f"/admin/themes/{tid}/curate", json={"action": "merge", "other_theme_id": tid}, headers=a)
    assert r.status_code == 400
    job = client.post("/admin/jobs/cluster", headers=a).json()
    client.app.state.jobs.wait(120)
    done = client.get(f"/admin/jobs/{job['job_id']}", headers=a).json()
    assert done["state"] == "done" and done["result"]["n_themes"] > 0
    assert client.get(f"/themes/{tid}", headers=a).json()["label"] == "Nytt namn"  # survived the run
    assert client.delete("/admin/ideas/U1", headers=a).status_code == 204
    assert client.get("/ideas/U1", headers=a).status_code == 404
    assert client.delete("/admin/ideas/U1", headers=a).status_code == 404
    new = client.post("/admin/keys", json={"role": "coach", "name": "ny"}, headers=a).json()
    assert client.get("/ideas", headers=H(new["key"])).status_code == 200
    assert client.delete(f"/admin/keys/{new['key_id']}", headers=a).status_code == 204
    assert client.get("/ideas", headers=H(new["key"])).status_code == 401
    log = client.get("/admin/audit", headers=a).json()
    assert {"action": "delete", "kind": "ideas", "item_id": "U1"}.items() <= log[-1].items() or any(
        e["action"] == "delete" and e["item_id"] == "U1" for e in log
    )


def test_rate_limit_per_key(tmp_path: Path) -> None:
    settings = Settings(db=tmp_path / "r.duckdb", rate_limit_per_minute=3)
    svc = Service(settings, encoder=KeywordEncoder())
    key = svc.store.keys.create_key("coach", "fast")[1]
    with TestClient(create_app(settings, service=svc)) as client:
        codes = [client.post("/suggest", json={"text": "hej"}, headers=H(key)).status_code for _ in range(5)]
    svc.close()
    assert codes[:3] == [200, 200, 200] and codes[3] == 429


def test_openapi_has_swedish_examples(env) -> None:
    client, *_ = env
    spec = client.get("/openapi.json").json()
    assert "/suggest" in spec["paths"]
    assert "Öjebyn" in str(spec["components"]["schemas"]["SuggestIn"])


def test_pages_and_local_plotly(env) -> None:
    client, *_ = env
    for path in ("/", "/coach", "/leadership", "/admin"):
        r = client.get(path)
        assert r.status_code == 200 and 'lang="sv"' in r.text
    assert "/vendor/plotly.min.js" in client.get("/leadership").text
    js = client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000


def test_themes_carry_their_most_representative_title_and_growth_only_with_enough_items(env) -> None:
    client, keys, svc = env
    items = client.get("/themes", headers=H(keys["leadership"])).json()["items"]
    titles = {r.title for r in svc.store.records("ideas")} | {r.title or r.text for r in svc.store.records("needs")}
    shown = [t["representative_title"] for t in items if t["representative_title"]]
    assert len(shown) == len(items)  # every theme has a representative
    assert all(title.rstrip("…") in " ".join(titles) for title in shown)
    for t in items:
        if t["growth"] is not None:
            assert min(t["last_quarter_count"], t["previous_quarter_count"]) >= 5


def test_an_erasure_reaches_the_cached_overview(env) -> None:
    """The overview is served from a cache of its JSON; an erased idea's title must leave it at once."""
    client, keys, svc = env
    lead, admin = H(keys["leadership"]), H(keys["admin"])
    text = client.get("/overview", headers=lead).text
    assert client.get("/overview", headers=lead).text == text  # served from the cache
    titles = {}
    for rec in svc.store.records("ideas"):
        shown = rec.title or rec.text[:80]
        if len(shown) > 12 and text.count(json.dumps(shown, ensure_ascii=False)[1:-1]) == 1:
            titles[rec.id] = shown
    victim, shown = sorted(titles.items())[0]  # an idea on the map whose title appears once
    assert client.delete(f"/admin/ideas/{victim}", headers=admin).status_code == 204
    after = client.get("/overview", headers=lead).text
    assert json.dumps(shown, ensure_ascii=False)[1:-1] not in after
