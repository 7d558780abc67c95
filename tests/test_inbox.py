"""The coach's inbox, idea view, review, assignment and needs view: a real DuckDB file, the API
through TestClient, the fake keyword encoder (rankings are not what is tested here)."""

from __future__ import annotations

import json
from datetime import date
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
    db = tmp_path_factory.mktemp("inbox") / "inbox.duckdb"
    settings = Settings(db=db, rate_limit_per_minute=10_000)
    svc = Service(settings, encoder=KeywordEncoder())
    svc.ingest("ideas", REPO / "demo" / "ideas.csv")
    svc.ingest("needs", REPO / "demo" / "needs.jsonl")
    svc.inbox.settle()  # an upload's ideas are precomputed in the background
    run_theme_job(svc.store, svc.encoder, show_bar=False)
    keys = {role: svc.store.keys.create_key(role, f"test-{role}")[1] for role in ("coach", "leadership", "admin")}
    with TestClient(create_app(settings, service=svc)) as client:
        yield client, keys, svc
    svc.close()


def H(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_ingest_precomputes_suggestions_for_the_waiting_ideas_only(env) -> None:
    _, _, svc = env
    rows = svc.store.read("SELECT idea_id FROM idea_suggestions")
    stored = {r[0] for r in rows}
    statuses = dict(svc.store.read("SELECT id, coalesce(status, '') FROM ideas"))
    waiting = {i for i, s in statuses.items() if s in ("", "ny")}
    assert waiting and stored == waiting  # 'ny' ideas: precomputed; decided ones ('genomförd', ...): not


def test_inbox_lists_waiting_ideas_newest_first_with_suggestions(env) -> None:
    client, keys, _ = env
    r = client.get("/inbox?page_size=5", headers=H(keys["coach"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] >= 10 and len(body["items"]) == 5
    dates = [c["idea"]["created_at"] for c in body["items"]]
    assert dates == sorted(dates, reverse=True)
    card = body["items"][0]
    assert all(c["idea"]["status"] in (None, "ny") for c in body["items"])
    assert card["similar"] and card["needs"] and card["computed_at"]
    assert card["similar"][0]["why"] and "outcome" in card["similar"][0]
    assert card["idea"]["id"] not in [h["id"] for h in card["similar"]]
    page2 = client.get("/inbox?page=2&page_size=5", headers=H(keys["coach"])).json()
    assert not {c["idea"]["id"] for c in page2["items"]} & {c["idea"]["id"] for c in body["items"]}


def test_inbox_filters(env) -> None:
    client, keys, _ = env
    everything = client.get("/inbox?page_size=100", headers=H(keys["coach"])).json()
    dept = everything["departments"][0]
    only = client.get("/inbox", params={"department": dept, "page_size": 100}, headers=H(keys["coach"])).json()
    assert 0 < only["total"] < everything["total"]
    assert all(c["idea"]["department"] == dept for c in only["items"])
    middle = sorted(c["idea"]["created_at"][:10] for c in everything["items"])[everything["total"] // 2]
    dated = client.get(f"/inbox?date_from={middle}&page_size=100", headers=H(keys["coach"])).json()
    assert all(c["idea"]["created_at"][:10] >= middle for c in dated["items"])
    assert 0 < dated["total"] < everything["total"]
    themed = [c for c in everything["items"] if c["theme"]]
    tid = themed[0]["theme"]["id"]
    by_theme = client.get("/inbox", params={"theme": tid, "page_size": 100}, headers=H(keys["coach"])).json()
    assert by_theme["total"] >= 1 and all(c["theme"]["id"] == tid for c in by_theme["items"])
    assert client.get("/inbox?date_from=2026-13-01", headers=H(keys["coach"])).status_code in (400, 422)
    assert client.get("/inbox?date_from=junk", headers=H(keys["coach"])).status_code == 422


def test_inbox_is_for_coaches(env) -> None:
    client, keys, _ = env
    assert client.get("/inbox").status_code == 401
    assert client.get("/inbox", headers=H(keys["leadership"])).status_code == 403
    assert client.get("/inbox", headers=H(keys["admin"])).status_code == 200


def test_a_new_idea_arrives_with_precomputed_suggestions(env) -> None:
    client, keys, svc = env
    r = client.post(
        "/ideas",
        json={"id": "N-1", "text": "Fler bänkar vid busshållplatsen i byn", "created_at": date.today().isoformat()},
        headers=H(keys["coach"]),
    )
    assert r.status_code == 201, r.text
    row = svc.store.read_one("SELECT basis FROM idea_suggestions WHERE idea_id = 'N-1'")
    assert row is not None  # computed on arrival, not on the first page view
    first = client.get("/inbox?page_size=1", headers=H(keys["coach"])).json()["items"][0]
    assert first["idea"]["id"] == "N-1"


def test_a_missing_or_stale_precomputation_is_computed_on_demand(env) -> None:
    client, keys, svc = env
    svc.store.write("DELETE FROM idea_suggestions WHERE idea_id = 'N-1'")
    view = client.get("/inbox/N-1", headers=H(keys["coach"])).json()
    assert view["similar"] and svc.store.read_one("SELECT 1 FROM idea_suggestions WHERE idea_id = 'N-1'")
    old = svc.store.read_one("SELECT basis FROM idea_suggestions WHERE idea_id = 'N-1'")[0]
    client.patch(
        "/ideas/N-1", json={"text": "Fler bänkar och väderskydd vid busshållplatsen"}, headers=H(keys["coach"])
    )
    client.get("/inbox/N-1", headers=H(keys["coach"]))
    assert svc.store.read_one("SELECT basis FROM idea_suggestions WHERE idea_id = 'N-1'")[0] != old


def test_the_idea_view_actions_are_audited_and_review_leaves_the_inbox(env) -> None:
    client, keys, svc = env
    c = H(keys["coach"])
    view = client.get("/inbox/N-1", headers=c).json()
    need = view["needs"][0]["id"]
    assert (
        client.post("/links", json={"idea_id": "N-1", "need_id": need, "state": "confirmed"}, headers=c).status_code
        == 204
    )
    other = view["similar"][0]["id"]
    fb = {"query_kind": "ideas", "query_id": "N-1", "target_kind": "ideas", "target_id": other, "verdict": "duplicate"}
    assert client.post("/feedback", json=fb, headers=c).status_code == 201
    assert (
        client.patch("/ideas/N-1", json={"status": "under beredning", "outcome": "Utreds"}, headers=c).status_code
        == 200
    )
    assert client.post("/ideas/N-1/assign", json={"coach": "Anna Coach"}, headers=c).status_code == 204
    view = client.get("/inbox/N-1", headers=c).json()
    assert view["needs"][0]["id"] == need and view["needs"][0]["link"] == "confirmed"
    assert view["assigned_to"] == "Anna Coach"
    whats = [e["what"] for e in view["history"]]
    assert any(w.startswith("link confirmed") for w in whats) and "feedback duplicate" in whats
    assert any("status" in w for w in whats) and any(w.startswith("assigned to") for w in whats)
    assert all(e["actor"] == "test-coach" for e in view["history"] if e["what"] != "create")
    # status 'under beredning' is decided: it left the inbox; send it back, then mark it reviewed
    assert client.post("/ideas/N-1/review", json={"reviewed": True}, headers=c).status_code == 204
    assert "N-1" not in [x["idea"]["id"] for x in client.get("/inbox?page_size=100", headers=c).json()["items"]]
    assert client.get("/inbox/N-1", headers=c).json()["awaiting"] is False
    log = [(e["action"], e["item_id"]) for e in svc.audit_log(50)]
    assert ("reviewed", "N-1") in log and ("assigned to Anna Coach", "N-1") in log


def test_review_takes_an_idea_out_of_the_inbox(env) -> None:
    client, keys, _ = env
    c = H(keys["coach"])
    before = client.get("/inbox?page_size=100", headers=c).json()
    target = before["items"][-1]["idea"]["id"]
    assert client.post(f"/ideas/{target}/review", json={}, headers=c).status_code == 204
    after = client.get("/inbox?page_size=100", headers=c).json()
    assert after["total"] == before["total"] - 1 and target not in [x["idea"]["id"] for x in after["items"]]
    assert client.post(f"/ideas/{target}/review", json={"reviewed": False}, headers=c).status_code == 204
    assert client.get("/inbox?page_size=100", headers=c).json()["total"] == before["total"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/ideas/NOPE/review", {}, 404),
        ("post", "/ideas/NOPE/assign", {"coach": "Anna"}, 404),
        ("get", "/inbox/NOPE", None, 404),
        ("post", "/ideas/I0001/assign", {"coach": ""}, 422),
        ("post", "/ideas/I0001/assign", {"coach": "   "}, 400),
        ("post", "/ideas/I0001/assign", {}, 422),
        ("post", "/ideas/I0001/review", {"reviewed": "maybe"}, 422),
        ("post", "/ideas/I0001/review", {"extra": 1}, 422),
        ("get", "/needs?sort=size", None, 422),
    ],
)
def test_bad_input_is_a_clear_4xx(env, method, path, body, status) -> None:
    client, keys, _ = env
    r = getattr(client, method)(path, headers=H(keys["coach"]), **({"json": body} if body is not None else {}))
    assert r.status_code == status, r.text
    assert r.json().get("detail")


def test_needs_view_answered_and_unmet_sorted_by_raised(env) -> None:
    client, keys, svc = env
    body = client.get("/needs", headers=H(keys["coach"])).json()
    raised = [n["raised"] for n in body["items"]]
    assert raised == sorted(raised, reverse=True) and body["total"] == svc.store.count("needs")
    answered = [n for n in body["items"] if n["ideas"]]
    assert answered and all(not n["unmet"] for n in answered)
    assert any(i["id"] == "N-1" for n in answered for i in n["ideas"])
    assert all(n["raised_basis"] == "duplicates" for n in body["items"])  # the demo needs carry no count
    unmet = client.get("/needs?unmet=true", headers=H(keys["coach"])).json()
    assert unmet["total"] == body["unmet"] and all(n["unmet"] for n in unmet["items"])


def test_needs_that_say_the_same_thing_count_as_raised_by_each(env, tmp_path: Path) -> None:
    client, keys, svc = env
    same = "Sittplatser längs promenadstråket vid älven för den som inte orkar gå långt"
    rows = [{"id": "NDUP-1", "text": same}, {"id": "NDUP-2", "text": same + "."}]
    path = tmp_path / "same.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    svc.ingest("needs", path)
    items = {n["id"]: n for n in client.get("/needs?sort=id", headers=H(keys["coach"])).json()["items"]}
    assert items["NDUP-1"]["raised"] == items["NDUP-2"]["raised"] == 2
    assert items["NDUP-1"]["raised_basis"] == "duplicates"
    svc.erase("needs", "NDUP-2", actor="test")
    items = {n["id"]: n for n in client.get("/needs?sort=id", headers=H(keys["coach"])).json()["items"]}
    assert items["NDUP-1"]["raised"] == 1 and "NDUP-2" not in items


def test_a_suggestion_stored_before_the_group_cap_is_served_capped_with_its_size() -> None:
    from idesluss.inbox import _capped_group

    old = {"id": "X-25", "duplicate_group": [f"X-{i:02d}" for i in range(30)]}  # every id, no size
    hit = _capped_group(old)
    assert hit["duplicate_count"] == 30 and len(hit["duplicate_group"]) == 20
    assert "X-25" in hit["duplicate_group"] and hit["duplicate_group"][:19] == old["duplicate_group"][:19]
    assert _capped_group({"id": "Y", "duplicate_group": []})["duplicate_count"] == 0
    now = {"id": "Z", "duplicate_group": ["Z", "Z2"], "duplicate_count": 45}  # stored after the cap: as it was
    assert _capped_group(now) == now


def test_erasure_removes_the_precomputed_row(env) -> None:
    client, keys, svc = env
    client.post("/ideas", json={"id": "N-2", "text": "Gratis broddar till äldre"}, headers=H(keys["coach"]))
    assert svc.store.read_one("SELECT 1 FROM idea_suggestions WHERE idea_id = 'N-2'")
    assert client.delete("/admin/ideas/N-2", headers=H(keys["admin"])).status_code == 204
    assert svc.store.read_one("SELECT 1 FROM idea_suggestions WHERE idea_id = 'N-2'") is None


def test_leadership_growth_needs_enough_items_and_csv_export(env) -> None:
    client, keys, _ = env
    from api.schemas import MIN_GROWTH_ITEMS

    themes = client.get("/overview", headers=H(keys["leadership"])).json()["themes"]
    for t in themes:
        enough = t["last_quarter_count"] >= MIN_GROWTH_ITEMS and t["previous_quarter_count"] >= MIN_GROWTH_ITEMS
        if not enough:
            assert t["growth"] is None
    r = client.get("/overview.csv", headers=H(keys["leadership"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("tabell;tema") and sum(line.startswith("teman;") for line in lines) == len(themes)
    page = client.get(f"/themes/{themes[0]['id']}/page", headers=H(keys["leadership"])).json()
    assert page["theme"]["id"] == themes[0]["id"] and page["representatives"] and "ideas" in page["per_month"]
    assert client.get("/themes/nope/page", headers=H(keys["leadership"])).status_code == 404


def test_a_theme_page_lists_the_needs_no_idea_is_confirmed_to_answer(env) -> None:
    client, keys, svc = env
    themes = client.get("/themes?page_size=100", headers=H(keys["leadership"])).json()["items"]
    with_needs = [t["id"] for t in themes if svc.theme_detail(t["id"])["need_members"]]
    assert with_needs, "the demo's themes hold needs"
    tid = with_needs[0]
    needs = svc.theme_detail(tid)["need_members"]
    before = {u["id"] for u in client.get(f"/themes/{tid}/page", headers=H(keys["leadership"])).json()["unmet"]}
    open_need = sorted(before)[0]
    idea = svc.store.read_one("SELECT id FROM ideas ORDER BY id LIMIT 1")[0]
    svc.set_link(idea, open_need, "confirmed", "coach")
    after = {u["id"] for u in client.get(f"/themes/{tid}/page", headers=H(keys["leadership"])).json()["unmet"]}
    assert after == before - {open_need}  # only the answered need leaves the list
    assert after <= set(needs)
    assert svc.store.feedback.confirmed_needs([open_need, "no-such-need"]) == {open_need}
    assert svc.store.feedback.confirmed_needs([]) == set()
    svc.set_link(idea, open_need, "rejected", "coach")  # a rejection answers nothing: the need is open again
    again = {u["id"] for u in client.get(f"/themes/{tid}/page", headers=H(keys["leadership"])).json()["unmet"]}
    assert again == before
