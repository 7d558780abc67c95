"""End to end in Debian's Chromium, driven by Playwright, against a live server on loopback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def _page(browser, live_server, role: str, path: str):
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    page = ctx.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(live_server.url + path)
    page.fill("#apikey", live_server.keys[role])
    page.click("#keyform button")
    return page, dialogs


def test_coach_types_an_idea_and_sees_suggestions(browser, live_server) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, dialogs = _page(browser, live_server, "coach", "/coach")
    page.fill("#draft", "Vi behöver en upplyst cykelväg från Öjebyn till centrum")
    page.wait_for_selector("#similar li strong", timeout=30_000)
    titles = page.locator("#similar li strong").all_inner_texts()
    assert any("cykel" in t.lower() for t in titles)
    assert page.locator("#needs li").count() >= 1
    assert "Varför" in page.locator("#similar li").first.inner_text()
    # the stored idea titled <script>alert(1)</script> shows as text, never runs
    page.fill("#draft", "Cykelväg med fet text till Öjebyn, script alert")
    page.wait_for_selector("#similar:has-text('<script>')", timeout=30_000)  # no wait_for_function: CSP bars eval
    assert not dialogs
    assert page.locator("#similar script").count() == 0 and page.locator("#similar img").count() == 0
    page.screenshot(path=str(ARTIFACTS / "coach.png"), full_page=True)
    page.locator("#similar li button").first.click()
    page.wait_for_selector("#status:has-text('Tack')", timeout=10_000)


def test_leadership_charts_render(browser, live_server) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, dialogs = _page(browser, live_server, "leadership", "/leadership")
    page.wait_for_selector("#map .main-svg", timeout=30_000)
    page.wait_for_selector("#heat .main-svg", timeout=30_000)
    page.wait_for_selector("#trend .main-svg", timeout=30_000)
    assert page.locator("#themes tbody tr").count() >= 5
    assert page.locator("#map canvas, #map .scatterlayer").count() >= 1
    assert page.locator("#unmet li").count() >= 1
    assert not dialogs
    page.screenshot(path=str(ARTIFACTS / "leadership.png"), full_page=True)


def test_admin_page_loads_runs_and_keys(browser, live_server) -> None:
    page, _ = _page(browser, live_server, "admin", "/admin")
    page.wait_for_selector("#runs li", timeout=30_000)
    assert page.locator("#keys li").count() >= 3
    page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)


def test_leadership_key_cannot_use_the_coach_page(browser, live_server) -> None:
    page, _ = _page(browser, live_server, "leadership", "/coach")
    page.fill("#draft", "cykelväg")
    page.wait_for_selector("#status:has-text('coach')", timeout=30_000)
    assert page.locator("#similar li").count() == 0


CSP_WATCH = (
    "window.__csp = [];"
    "document.addEventListener('securitypolicyviolation', (e) =>"
    " window.__csp.push(e.effectiveDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber));"
)


def _watched(browser, live_server, path: str, role: str | None = None):
    """A page with every CSP violation recorded: console 'Refused to' / 'violates' lines and DOM events."""
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    ctx.add_init_script(CSP_WATCH)
    page = ctx.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    page.goto(live_server.url + path)
    if role:
        page.fill("#apikey", live_server.keys[role])
        page.click("#keyform button")

    def violations() -> list[str]:
        said = [m for m in console if m.startswith("Refused to") or "Content Security Policy" in m]
        return said + page.evaluate("window.__csp")

    return page, violations


def test_leadership_charts_draw_under_the_csp(browser, live_server) -> None:
    page, violations = _watched(browser, live_server, "/leadership", "leadership")
    for chart in ("#map", "#heat", "#trend"):
        page.wait_for_selector(chart + " .main-svg", timeout=30_000)
    page.wait_for_timeout(500)
    assert violations() == []
    # plotly filled its style sheet through the CSSOM (the hash of the empty <style> admits it)
    assert page.evaluate("document.getElementById('plotly.js-style-global').sheet.cssRules.length") > 10


def test_a_department_with_markup_shows_as_text_in_the_charts(browser, live_server) -> None:
    page, _ = _watched(browser, live_server, "/leadership", "leadership")
    page.wait_for_selector("#heat .main-svg", timeout=30_000)
    ticks = page.locator("#heat .xtick text").all_text_contents()
    assert "<a href='https://evil.example/'>Evilförvaltningen</a>" in ticks, ticks
    assert page.locator(".js-plotly-plot a").count() == 0
    assert page.locator("a[href*='evil']").count() == 0


def test_swagger_ui_renders_under_the_csp(browser, live_server) -> None:
    page, violations = _watched(browser, live_server, "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert page.locator(".swagger-ui .opblock").count() >= 10
    assert "Idéslussen" in page.locator(".swagger-ui .title").inner_text()
    assert violations() == []


def test_redoc_renders_and_loads_nothing_from_elsewhere(browser, live_server) -> None:
    page, violations = _watched(browser, live_server, "/redoc")
    page.wait_for_selector("h1", timeout=30_000)
    page.wait_for_timeout(1000)
    assert "Idéslussen" in page.locator("h1").first.inner_text()
    assert page.locator("h2").count() >= 10
    # only ReDoc's "API docs by Redocly" logo (an image on a CDN) is blocked
    assert all("cdn.redoc.ly" in v for v in violations()), violations()


def test_keyboard_only_from_the_inbox_to_a_confirmed_need_link(browser, live_server) -> None:
    import httpx

    page, dialogs = _page(browser, live_server, "coach", "/coach")
    page.wait_for_selector("#inbox li.card a.open", timeout=30_000)
    page.locator("body").focus()
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    focused = page.evaluate("document.activeElement.getAttribute('href')")
    first = page.locator("#inbox a.open").first.get_attribute("href")
    assert focused == first  # j, j, k: back on the first idea
    page.keyboard.press("Enter")
    page.wait_for_url("**/coach/idea?id=*", timeout=30_000)
    page.wait_for_selector("#ineeds li button", timeout=30_000)
    idea_id = page.url.split("id=", 1)[1]
    for _ in range(60):  # Tab to the first "confirm" button, as a keyboard user would
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Bekräfta koppling":
            break
    else:
        raise AssertionError("no 'Bekräfta koppling' button reachable with Tab")
    label = page.evaluate("document.activeElement.getAttribute('aria-label')")
    page.keyboard.press("Enter")
    page.wait_for_selector("#ineeds .linkstate.confirmed", timeout=30_000)
    assert "bekräftad" in page.locator("#status").inner_text()
    view = httpx.get(
        f"{live_server.url}/inbox/{idea_id}", headers={"Authorization": f"Bearer {live_server.keys['coach']}"}
    ).json()
    confirmed = [n for n in view["needs"] if n["link"] == "confirmed"]
    assert confirmed and (confirmed[0]["title"] or confirmed[0]["snippet"][:80]) in label
    assert any(e["what"].startswith("link confirmed") for e in view["history"])
    assert not dialogs
