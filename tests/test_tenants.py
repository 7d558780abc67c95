"""Tenants: each municipality's data is its own; shared ideas cross; a region sees recurring themes.

The isolation test walks every API route of a real server on loopback with the keys of tenant A
against the ids of tenant B, and checks that no answer carries B's data and that nothing of B
changed. The route list is read from the app itself, so a new route that the walk does not know
fails the test until it is added.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import create_app
from idesluss.service import Query, Service
from idesluss.settings import Settings
from pipelines.themes.job import run_theme_job
from store import Store, UnknownTenant
from store.migrations import LATEST
from tests.fakes import KeywordEncoder
from tests.live import free_port

REPO = Path(__file__).resolve().parents[1]
MARK = "Kusmark"  # in every text of tenant B's own rows; found in no text of tenant A
B_IDEAS = (
    "id;title;text;shared\n"
    f"skel-1;Snöskoterled {MARK};Hemlig plan: en snöskoterled från {MARK} till byn, med vindskydd och grillplats.;false\n"
    f"skel-2;Cykelväg {MARK};Belyst gång- och cykelväg från {MARK} till skolan, så barnen kan cykla säkert.;true\n"
    f"skel-3;Snöröjning {MARK};Snöröjning av cykelvägarna i {MARK} före klockan sju.;\n"
)
B_NEEDS = f'{{"id": "skel-need-1", "text": "Vi i {MARK} saknar en säker väg till skolan på vintern."}}\n'


def H(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class _Server:
    """The app on a real uvicorn server on loopback, in a thread of this process."""

    def __init__(self, settings: Settings, service: Service) -> None:
        self.port = free_port()
        self.app = create_app(settings, service=service)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.app.state.jobs.wait(120)
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Tenants pitea (the demo) and skelleftea (the demo under the same ids, plus its own rows)."""
    work = tmp_path_factory.mktemp("tenants")
    db = work / "two.duckdb"
    settings = Settings(db=db, rate_limit_per_minute=100_000)
    root = Service(settings, encoder=KeywordEncoder())
    a = root.for_tenant("pitea", create=True)
    b = root.for_tenant("skelleftea", create=True)
    for svc in (a, b):
        svc.ingest("ideas", REPO / "demo" / "ideas.csv")
        svc.ingest("needs", REPO / "demo" / "needs.jsonl")
    (work / "b.csv").write_text(B_IDEAS, encoding="utf-8")
    (work / "b_needs.jsonl").write_text(B_NEEDS, encoding="utf-8")
    b.ingest("ideas", work / "b.csv")
    b.ingest("needs", work / "b_needs.jsonl")
    for svc in (a, b):
        run_theme_job(svc.store, svc.encoder, show_bar=False)
    keys = {
        t: {role: root.for_tenant(t).create_key(role, f"{t}-{role}")[1] for role in ("coach", "leadership", "admin")}
        for t in ("pitea", "skelleftea")
    }
    keys["region"] = root.create_key("region", "norrbotten-vasterbotten", region=["pitea", "skelleftea"])[1]
    server = _Server(settings, root)
    yield {"root": root, "a": a, "b": b, "keys": keys, "base": server.base, "work": work, "settings": settings}
    server.stop()
    root.close()


def test_same_ids_in_two_tenants_are_two_records(two) -> None:
    a, b = two["a"], two["b"]
    assert a.record("ideas", "I0001").text == b.record("ideas", "I0001").text  # same demo row, two copies
    assert a.store.count("ideas") + 3 == b.store.count("ideas")
    with pytest.raises(Exception, match="skel-1"):
        a.record("ideas", "skel-1")
    own = a.similar([Query(text=f"snöskoterled {MARK} vindskydd")], k=50)[0]
    assert all(MARK not in h.item.text for h in own)


def _b_ids(two) -> dict[str, str]:
    b, keys = two["b"], two["keys"]["skelleftea"]
    with httpx.Client(base_url=two["base"], timeout=60) as c:
        job = c.post("/admin/jobs/cluster", headers=H(keys["admin"])).json()["job_id"]
        for _ in range(600):
            if c.get(f"/admin/jobs/{job}", headers=H(keys["admin"])).json()["state"] != "running":
                break
            time.sleep(0.1)
    b_key_id = next(k["key_id"] for k in b.list_keys() if k["role"] == "coach")
    themes = b.themes(with_members=True)
    theme = next((t["id"] for t in themes if "skel-2" in t["members"]), themes[0]["id"])
    return {
        "idea_id": "skel-1",
        "need_id": "skel-need-1",
        "item_id": "skel-1",
        "theme_id": theme,
        "job_id": job,
        "key_id": b_key_id,
    }


# What to send to each route: query strings and bodies naming tenant B's ids. A route missing here
# fails the walk: every route must be walked.
def _bodies(ids: dict[str, str]) -> dict[tuple[str, str], dict]:
    return {
        ("POST", "/suggest"): {"json": {"text": f"snöskoterled {MARK}", "k": 20}},
        ("POST", "/ideas"): {"json": {"id": "pitea-new-1", "text": "En ny idé om parkering vid badet"}},
        ("POST", "/admin/jobs/cluster"): {},
        ("GET", "/ideas"): {"params": {"page_size": 100}},
        ("GET", "/search"): {"params": {"q": f"snöskoterled {MARK}", "k": 50}},
        ("PATCH", "/ideas/{idea_id}"): {"json": {"status": "stängd"}},
        (
            "POST",
            "/feedback",
        ): {
            "json": {
                "query_kind": "ideas",
                "query_id": ids["idea_id"],
                "target_kind": "needs",
                "target_id": ids["need_id"],
                "verdict": "useful",
            }
        },
        ("POST", "/links"): {"json": {"idea_id": ids["idea_id"], "need_id": ids["need_id"], "state": "confirmed"}},
        ("POST", "/ideas/{idea_id}/review"): {"json": {"reviewed": True}},
        ("POST", "/ideas/{idea_id}/assign"): {"json": {"coach": "Kim"}},
        ("POST", "/admin/themes/{theme_id}/curate"): {"json": {"action": "rename", "name": "Omdöpt"}},
        ("POST", "/admin/keys"): {"json": {"role": "coach", "name": "ny"}},
        ("POST", "/admin/ingest/{kind}"): {
            "files": {"file": ("a.csv", b"id;text\nA-new;Ny idee om parkering\n", "text/csv")}
        },
    }


# Routes that name one of B's records: never a success for A.
MUST_MISS = {
    ("GET", "/ideas/{idea_id}"),
    ("PATCH", "/ideas/{idea_id}"),
    ("GET", "/ideas/{idea_id}/similar"),
    ("GET", "/ideas/{idea_id}/needs"),
    ("GET", "/needs/{need_id}/ideas"),
    ("GET", "/inbox/{idea_id}"),
    ("POST", "/ideas/{idea_id}/review"),
    ("POST", "/ideas/{idea_id}/assign"),
    ("POST", "/feedback"),
    ("POST", "/links"),
    ("DELETE", "/admin/ideas/{item_id}"),
    ("DELETE", "/admin/needs/{item_id}"),
    ("GET", "/admin/jobs/{job_id}"),
    ("DELETE", "/admin/keys/{key_id}"),
}
NOT_WALKED = {"/region/overview"}  # a region key's route (tested below); coach keys get 403 there


def _b_markers(two, ids: dict[str, str]) -> list[str]:
    """Strings only tenant B's data holds (its texts, ids only B has, its key id and key names)."""
    return [MARK, "skel-2", "skel-3", "skel-need", ids["key_id"], "skelleftea-"]


def test_every_route_with_tenant_a_keys_never_shows_or_changes_tenant_b(two) -> None:
    ids = _b_ids(two)
    bodies = _bodies(ids)
    paths = create_app(two["settings"], service=two["root"]).openapi()["paths"]
    app_routes = [(m.upper(), p) for p, methods in paths.items() for m in methods]
    assert len(app_routes) >= 30, app_routes
    b_before = {
        "ideas": two["b"].store.count("ideas"),
        "skel-1": two["b"].record("ideas", "skel-1").status,
        "links": two["b"].store.feedback.links(idea_id="skel-1"),
        "keys": [k["key_id"] for k in two["b"].list_keys() if not k["revoked_at"]],
        "run": two["b"].store.themes.current_run_id(),
        "labels": [t["label"] for t in two["b"].themes()],
    }
    markers = _b_markers(two, ids)
    walked, answered_ok = set(), 0
    with httpx.Client(base_url=two["base"], timeout=120) as client:
        for method, template in app_routes:
            if template in NOT_WALKED:
                continue
            path, sent = template, []
            for name in re.findall(r"\{(\w+)(?::\w+)?\}", template):
                value = "ideas" if name == "kind" else ids[name]
                path = re.sub(r"\{" + name + r"(?::\w+)?\}", value, path)
                sent.append(value)
            key = re.sub(r":\w+\}", "}", template)
            extra = bodies.get((method, key), {})
            sent += [v for v in extra.get("json", {}).values() if isinstance(v, str) and v in ids.values()]
            if method in ("POST", "PATCH", "PUT") and (method, key) not in bodies:
                pytest.fail(f"the walk has no body for {method} {template}: add one to _bodies")
            for role in ("coach", "leadership", "admin"):
                r = client.request(method, path, headers=H(two["keys"]["pitea"][role]), **extra)
                walked.add((method, key))
                text = r.text
                for echoed in sent:  # an error may name the id the caller sent: that is not B's data
                    text = text.replace(echoed, "")
                for marker in markers:
                    assert marker not in text, (method, path, role, r.status_code, text[:300])
                if (method, key) in MUST_MISS:
                    assert r.status_code in (403, 404), (method, path, role, r.status_code, text[:300])
                    if r.status_code == 404:
                        answered_ok += 1
    assert {(m, re.sub(r":\w+\}", "}", p)) for m, p in app_routes if p not in NOT_WALKED} <= walked
    assert answered_ok >= len(MUST_MISS)  # each id route reached the tenant check with some role
    b = two["b"]
    assert b.store.count("ideas") == b_before["ideas"]
    assert b.record("ideas", "skel-1").status == b_before["skel-1"]
    assert b.store.feedback.links(idea_id="skel-1") == b_before["links"]
    assert [k["key_id"] for k in b.list_keys() if not k["revoked_at"]] == b_before["keys"]
    assert b.store.themes.current_run_id() == b_before["run"]
    assert [t["label"] for t in b.themes()] == b_before["labels"]
    with httpx.Client(base_url=two["base"], timeout=60) as client:
        # B's own key still sees its idea; A may use the same id for its own idea (no 409 that would
        # tell A that B has it)
        assert client.get("/ideas/skel-1", headers=H(two["keys"]["skelleftea"]["coach"])).status_code == 200
        mine = {"id": "skel-1", "text": "Pitea har en egen idé med samma id"}
        assert client.post("/ideas", json=mine, headers=H(two["keys"]["pitea"]["coach"])).status_code == 201
        assert two["b"].record("ideas", "skel-1").text != mine["text"]


def test_shared_scope_finds_the_shared_idea_of_another_tenant_and_never_an_unshared_one(two) -> None:
    with httpx.Client(base_url=two["base"], timeout=60) as client:
        coach = H(two["keys"]["pitea"]["coach"])
        r = client.post("/suggest", json={"text": f"cykelväg {MARK} skolan", "scope": "shared", "k": 20}, headers=coach)
        assert r.status_code == 200, r.text
        found = {(h["tenant"], h["id"]) for h in r.json()["similar"]}
        assert ("skelleftea", "skel-2") in found
        assert not any(i == "skel-1" for _, i in found)  # unshared
        assert not any(i == "skel-3" for _, i in found)  # unset, and skelleftea does not share by default
        assert all(t == "skelleftea" for t, _ in found)  # pitea shares nothing: only B's shared rows
        own = client.post("/suggest", json={"text": f"cykelväg {MARK} skolan", "k": 20}, headers=coach).json()
        assert all(h.get("tenant") is None for h in own["similar"])
        assert MARK not in json.dumps(own)
        r = client.get("/search", params={"q": "snöskoterled vindskydd", "scope": "shared", "k": 50}, headers=coach)
        assert [h["id"] for h in r.json()] == ["skel-2"] or "skel-1" not in r.text
        # an unshared copy of the shared idea: same group at home, but neither named nor counted abroad
        b = two["b"]
        shared = b.record("ideas", "skel-2")
        b.add_idea({"id": "skel-2b", "title": shared.title, "text": shared.text, "shared": False}, actor="test")
        try:
            home = b.similar([Query(id="skel-2")], k=5, all_duplicates=True)[0]
            assert any(h.id == "skel-2b" and h.duplicate_count == 2 for h in home)  # they are one group
            r = client.post("/suggest", json={"text": shared.text, "scope": "shared", "k": 20}, headers=coach)
            hits = {h["id"]: h for h in r.json()["similar"]}
            assert "skel-2b" not in hits and "skel-2b" not in r.text
            assert hits["skel-2"]["duplicate_group"] == [] and hits["skel-2"]["duplicate_count"] == 0
        finally:
            b.erase("ideas", "skel-2b", actor="test")


def test_a_tenant_default_shares_rows_left_unset(two) -> None:
    b, a = two["b"], two["a"]
    b.set_shared_default(True)
    try:
        hits = a.similar([Query(text=f"snöröjning cykelvägar {MARK}")], k=50, scope="shared")[0]
        ids = {h.id for h in hits if h.tenant == "skelleftea"}
        assert "skel-3" in ids and "skel-1" not in ids  # unset follows the default; false stays private
    finally:
        b.set_shared_default(False)
    hits = a.similar([Query(text=f"snöröjning cykelvägar {MARK}")], k=50, scope="shared")[0]
    assert "skel-3" not in {h.id for h in hits}


def test_region_key_sees_recurring_themes_from_shared_ideas_only(two) -> None:
    with httpx.Client(base_url=two["base"], timeout=60) as client:
        region = H(two["keys"]["region"])
        assert client.get("/ideas", headers=region).status_code == 403
        coach = H(two["keys"]["pitea"]["coach"])
        assert client.get("/region/overview", headers=coach).status_code == 403
        two["a"].update_idea("I0001", {"shared": True}, actor="test")
        try:
            r = client.get("/region/overview", headers=region)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["tenants"] == ["pitea", "skelleftea"]
            shared = {(i["tenant"], i["id"]) for t in body["themes"] for i in t["ideas"]}
            assert shared == {("pitea", "I0001"), ("skelleftea", "skel-2")}
            assert sum(sum(t["by_tenant"].values()) for t in body["themes"]) == 2  # unshared: not even counted
            assert "skel-1" not in r.text and "Snöskoterled" not in r.text
        finally:
            two["a"].update_idea("I0001", {"shared": False}, actor="test")


def test_unknown_tenant_is_refused_and_names_the_tenants(tmp_path) -> None:
    with Store(tmp_path / "x.duckdb") as store:
        with pytest.raises(UnknownTenant, match="default"):
            store.for_tenant("pitea")
        with pytest.raises(ValueError, match="lower-case"):
            store.for_tenant("Piteå")
        store.for_tenant("pitea", create=True)
        assert store.tenants.names() == ["default", "pitea"]


def test_a_database_made_before_tenants_becomes_tenant_default_without_loss(tmp_path) -> None:
    """A version-6 file (the schema the previous release wrote), opened by this version."""
    db = tmp_path / "v6.duckdb"
    old = Store(db, migrate=False)
    assert old.migrate(target=6) == 6
    with old.transaction() as con:
        con.execute(
            "INSERT INTO ideas (id, title, text, embed_hash, ingested_at, updated_at, status) "
            "VALUES ('I1', 'Bänkar', 'Fler bänkar vid älven', 'h1', now(), now(), 'ny')"
        )
        con.execute(
            "INSERT INTO needs (id, text, embed_hash, ingested_at, updated_at) "
            "VALUES ('N1', 'Vi vill sitta vid älven', 'h2', now(), now())"
        )
        con.execute("INSERT INTO need_links VALUES ('I1', 'N1', 'confirmed', 'kim', now())")
    with old.transaction() as con:
        con.execute(
            "INSERT INTO api_keys (key_id, name, role, key_hash, created_at) VALUES ('k1', 'kim', 'coach', ?, now())",
            [__import__("hashlib").sha256(b"secret").hexdigest()],
        )
    old.close()
    with Store(db) as store:
        assert store.schema_version() == LATEST
        assert store.tenants.names() == ["default"]
        rec = store.get_record("ideas", "I1")
        assert rec is not None and rec.text == "Fler bänkar vid älven" and rec.status == "ny" and rec.shared is None
        assert store.count("needs") == 1
        assert store.feedback.links(idea_id="I1") == {("I1", "N1"): "confirmed"}
        user = store.keys.verify_key("idk_k1_secret")
        assert user is not None and user["tenant"] == "default" and user["role"] == "coach"
        pitea = store.for_tenant("pitea", create=True)
        assert pitea.count("ideas") == 0 and pitea.keys.verify_key("idk_k1_secret")["tenant"] == "default"


def test_cli_tenant_option_and_environment_choose_the_tenant(tmp_path) -> None:
    """The CLI on the file: --tenant and IDESLUSS_TENANT, a first ingest adds the tenant, unknown exits 2."""
    db = tmp_path / "cli.duckdb"
    src = tmp_path / "ideas.csv"
    shutil.copy(REPO / "demo" / "ideas.csv", src)
    (tmp_path / "b.csv").write_text(B_IDEAS, encoding="utf-8")
    env = {**__import__("os").environ, "IDESLUSS_DB": str(db), "IDESLUSS_MODEL": "default"}
    exe = [sys.executable, "-m", "idesluss"]

    def run(*args: str, tenant_env: str | None = None) -> subprocess.CompletedProcess:
        e = dict(env)
        if tenant_env:
            e["IDESLUSS_TENANT"] = tenant_env
        return subprocess.run([*exe, *args], env=e, capture_output=True, text=True, timeout=600)

    r = run("--tenant", "nosuch", "keys", "list")
    assert r.returncode == 2 and "no tenant 'nosuch'" in r.stderr
    r = run("keys", "create", "--role", "coach", "--name", "kim", tenant_env="pitea")
    assert r.returncode == 0 and "tenant pitea" in r.stdout, r.stderr
    r = run("--tenant", "pitea", "keys", "list")
    assert "kim" in r.stdout
    assert "kim" not in run("keys", "list").stdout  # default tenant: its own keys only
    r = run("tenants", "list")
    assert "pitea" in r.stdout and "default" in r.stdout
    r = run("--tenant", "Bad Name", "tenants", "list")
    assert r.returncode == 2 and "--tenant" in r.stderr


def test_two_tenants_written_and_searched_at_once_stay_apart(tmp_path) -> None:
    """Both tenants take new ideas while both are searched: every write lands in its own tenant, no
    search ever returns the other tenant's idea, and nothing fails."""
    from concurrent.futures import ThreadPoolExecutor

    settings = Settings(db=tmp_path / "busy.duckdb")
    root = Service(settings, encoder=KeywordEncoder())
    try:
        a = root.for_tenant("pitea", create=True)
        b = root.for_tenant("skelleftea", create=True)
        a.ingest("ideas", REPO / "demo" / "ideas.csv")
        b.ingest("needs", REPO / "demo" / "needs.jsonl")
        errors: list[BaseException] = []
        leaks: list[str] = []

        def write(svc: Service, prefix: str) -> None:
            for n in range(15):
                svc.add_idea(
                    {"id": f"{prefix}-{n}", "text": f"{prefix} vill ha fler cykelvägar och bänkar nr {n}"}, "t"
                )

        def search(svc: Service, foreign: str) -> None:
            for _ in range(25):
                for hit in svc.similar([Query(text="cykelvägar och bänkar")], k=30)[0]:
                    if hit.id.startswith(foreign):
                        leaks.append(hit.id)

        jobs = [(write, a, "pit"), (write, b, "ske"), (search, a, "ske"), (search, b, "pit")]
        with ThreadPoolExecutor(4) as pool:
            for fut in [pool.submit(fn, svc, arg) for fn, svc, arg in jobs]:
                try:
                    fut.result()
                except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)
        assert not errors, errors
        assert not leaks, leaks
        assert {h.id for h in b.similar([Query(text="ske vill ha fler cykelvägar")], k=50, all_duplicates=True)[0]} == {
            f"ske-{n}" for n in range(15)
        }
        assert sum(1 for r in a.store.records("ideas") if r.id.startswith("pit-")) == 15
        assert not any(r.id.startswith("pit-") for r in b.store.records("ideas"))
    finally:
        root.close()


def test_erasure_in_one_tenant_removes_its_bytes_from_the_shared_file(tmp_path) -> None:
    settings = Settings(db=tmp_path / "erase.duckdb")
    root = Service(settings, encoder=KeywordEncoder())
    secret = "Hemlighetsfull idé om Kusmarks snöskoterled nummer 4711"
    try:
        a = root.for_tenant("pitea", create=True)
        b = root.for_tenant("skelleftea", create=True)
        a.add_idea({"id": "A1", "text": "Fler bänkar vid älven i Piteå"}, "t")
        b.add_idea({"id": "B1", "text": secret}, "t")
        b.collections()
        root.checkpoint()
        assert secret.encode() in (tmp_path / "erase.duckdb").read_bytes() + b"".join(
            p.read_bytes() for p in tmp_path.glob("erase.duckdb.wal")
        )
        b.erase("ideas", "B1", actor="t")
    finally:
        root.close()
    found = [
        p for p in tmp_path.rglob("*") if p.is_file() and b"4711" in p.read_bytes() and b"Kusmark" in p.read_bytes()
    ]
    assert not found, found
    with Store(tmp_path / "erase.duckdb") as store:
        assert store.for_tenant("pitea").get_record("ideas", "A1") is not None
        assert store.for_tenant("skelleftea").get_record("ideas", "B1") is None


def test_the_nightly_job_for_every_tenant_gives_each_its_own_run(two) -> None:
    a, b = two["a"], two["b"]
    before = {t: svc.store.themes.current_run_id() for t, svc in (("pitea", a), ("skelleftea", b))}
    records = two["root"].cluster_tenants(["pitea", "skelleftea"], show_bar=False)
    assert set(records) == {"pitea", "skelleftea"}
    assert not any("error" in r for r in records.values()), records
    for tenant, svc in (("pitea", a), ("skelleftea", b)):
        assert svc.store.themes.current_run_id() == records[tenant]["run_id"] != before[tenant]
    # B's labels are drawn from B's rows only: the word only B's texts hold is not in A's themes
    assert not any(MARK.lower() in json.dumps(t, ensure_ascii=False).lower() for t in a.themes())


def test_a_tenant_being_opened_is_not_handed_out_half_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import idesluss.service as service_module

    root = Service(Settings(db=tmp_path / "t.duckdb"), encoder=KeywordEncoder())
    seen_while_building: list[object] = []
    real_inbox = service_module.Inbox

    def watching_inbox(svc: Service) -> object:  # the last part built: what would a request get now?
        seen_while_building.append(root.opened_tenant(svc.tenant))
        return real_inbox(svc)

    monkeypatch.setattr(service_module, "Inbox", watching_inbox)
    try:
        opened = root.for_tenant("lulea", create=True)
        assert seen_while_building == [None]  # not visible until whole
        assert root.opened_tenant("lulea") is opened and opened.similar([Query(text="cykel")], k=1) == [[]]
    finally:
        root.close()
