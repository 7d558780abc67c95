"""WCAG 2.1 AA on every page and state, checked by axe-core in Debian's Chromium.

axe-core's own script comes from the ``axe-playwright-python`` wheel (axe.min.js inside; nothing is
fetched) and is injected with Playwright's evaluate. A serious or critical violation fails the test.
States: no key, data (the demo server), an empty database (a second server), and a job running.
Screenshots of every page go to /tmp/screens/.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.live import REPO, cli, free_port
from tests.test_browser import browser  # noqa: F401  (the module's Chromium fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser]
SCREENS = Path("/tmp/screens")
WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}}
BLOCKING = ("serious", "critical")


def axe_script() -> str:
    from axe_playwright_python.base import AXE_FILE_PATH

    return AXE_FILE_PATH.read_text(encoding="utf-8")


def axe_violations(page) -> list[str]:
    """Serious and critical axe violations of the page as it is now: 'rule: target (impact)'."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_script())
    result = page.evaluate("(opts) => axe.run(document, opts)", WCAG)
    return [
        f"{v['id']}: {', '.join(str(n['target']) for n in v['nodes'][:3])} ({v['impact']})"
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


def open_page(browser, url: str, key: str | None = None):  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    if key:  # the key lives in sessionStorage, as the key field leaves it
        ctx.add_init_script(f"sessionStorage.setItem('idesluss-key', {key!r});")
    page = ctx.new_page()
    page.goto(url)
    return page


def settle(page, selector: str) -> None:
    page.wait_for_selector(selector, timeout=30_000)
    page.wait_for_timeout(300)


def shot(page, name: str) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True)


def first_inbox_id(server) -> str:
    r = httpx.get(server.url + "/inbox?page_size=1", headers={"Authorization": f"Bearer {server.keys['coach']}"})
    return r.json()["items"][0]["idea"]["id"]


def first_theme_id(server) -> str:
    r = httpx.get(server.url + "/themes?page_size=1", headers={"Authorization": f"Bearer {server.keys['leadership']}"})
    return r.json()["items"][0]["id"]


PAGES = [
    "/",
    "/coach",
    "/coach/idea",
    "/coach/needs",
    "/leadership",
    "/leadership/theme",
    "/leadership/print",
    "/admin",
    "/region",
]


def test_every_page_without_a_key(browser, live_server) -> None:  # noqa: F811
    found = {}
    for path in PAGES:
        page = open_page(browser, live_server.url + path)
        settle(page, "h1")
        found[path] = axe_violations(page)
        if path in ("/coach", "/leadership"):
            assert "API-nyckel" in page.locator("#status").inner_text() + page.locator("main").inner_text()
        page.context.close()
    assert not {k: v for k, v in found.items() if v}


def test_every_page_with_data(browser, live_server) -> None:  # noqa: F811
    idea, theme = first_inbox_id(live_server), first_theme_id(live_server)
    cases = [
        ("/", None, "h1", "index"),
        ("/coach", "coach", "#inbox li.card a", "inbox"),
        (f"/coach/idea?id={idea}", "coach", "#ineeds li button", "idea"),
        ("/coach/needs", "coach", "#needstable tbody tr", "needs"),
        ("/leadership", "leadership", "#heat .main-svg", "leadership"),
        (f"/leadership/theme?id={theme}", "leadership", "#ttrend .main-svg", "theme"),
        ("/leadership/print", "leadership", "#heat .main-svg", "print"),
        ("/admin", "admin", "#keys li", "admin"),
    ]
    found = {}
    for path, role, ready, name in cases:
        page = open_page(browser, live_server.url + path, live_server.keys[role] if role else None)
        settle(page, ready)
        found[path] = axe_violations(page)
        shot(page, name)
        page.context.close()
    assert not {k: v for k, v in found.items() if v}


def region_key(server_db, env) -> str:
    """A region key over the default tenant (made beside the running server, through it)."""
    out = cli(server_db, "keys", "create", "--role", "region", "--name", "region", "--tenants", "default", env=env)
    return out.stdout.strip().splitlines()[-1]


def test_the_region_page_with_shared_ideas(browser, live_server) -> None:  # noqa: F811
    key = region_key(live_server.db, live_server.env)
    cli(live_server.db, "tenants", "share-default", "true", env=live_server.env)
    try:
        page = open_page(browser, live_server.url + "/region", key)
        settle(page, "#regiontable tbody tr")
        assert "delade idéer" in page.locator("#regionbars").inner_text()
        assert page.locator("#regionbars [role=img]").count() >= 3  # one bar per regional theme
        violations = axe_violations(page)
        shot(page, "region")
        page.context.close()
    finally:
        cli(live_server.db, "tenants", "share-default", "false", env=live_server.env)
    assert violations == []


def test_a_job_running_on_the_admin_page(browser, live_server) -> None:  # noqa: F811
    page = open_page(browser, live_server.url + "/admin", live_server.keys["admin"])
    settle(page, "#keys li")
    page.click("#startjob")
    page.wait_for_selector("#jobstate:not(:empty)", timeout=30_000)
    violations = axe_violations(page)
    shot(page, "admin-job")
    page.wait_for_selector("#jobstate:has-text('Klart')", timeout=300_000)
    assert violations == []


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory, live_server):
    """A second real server on an empty database (keys only)."""
    work = tmp_path_factory.mktemp("empty")
    db = work / "empty.duckdb"
    keys = {
        r: cli(db, "keys", "create", "--role", r, "--name", f"e-{r}", env=live_server.env)
        .stdout.strip()
        .splitlines()[-1]
        for r in ("coach", "leadership", "admin")
    }
    keys["region"] = region_key(db, live_server.env)
    port = free_port()
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "idesluss", "--db", str(db), "serve", "--port", str(port)],
        cwd=REPO,
        env=live_server.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(360):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    yield url, keys
    proc.terminate()
    proc.wait(30)


def test_every_page_on_an_empty_database(browser, empty_server) -> None:  # noqa: F811
    url, keys = empty_server
    cases = [
        ("/coach", "coach", "#inbox li.empty", "Inga idéer väntar"),
        ("/coach/needs", "coach", "#needstable tbody td", "Inga behov att visa"),
        ("/leadership", "leadership", "#themes tbody td", "Inga teman ännu"),
        ("/admin", "admin", "#keys li", ""),
        ("/region", "region", "#regionbars p", "Inga delade idéer"),
    ]
    found = {}
    for path, role, ready, says in cases:
        page = open_page(browser, url + path, keys[role])
        settle(page, ready)
        assert says in page.locator("main").inner_text()
        found[path] = axe_violations(page)
        shot(page, "empty" + path.replace("/", "-"))
        page.context.close()
    assert not {k: v for k, v in found.items() if v}
