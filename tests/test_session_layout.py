"""The afternoon session's layout checks in headless Chromium against `sde demo`: every page fits a
narrow (800 px) window and a laptop one (1280x720) without running off the right edge, every
navbar link stays visible and clickable, and no page logs a console error."""

from __future__ import annotations

import pytest

from tests.browser_kit import TIMEOUT_MS, Watch, shot

pytestmark = pytest.mark.browser

PAGES = ["/statistics", "/samples", "/errors", "/vocabulary", "/comparison", "/rules", "/problems",
         "/duplicates", "/tts", "/utterance/1"]


@pytest.mark.parametrize("width,height", [(800, 720), (1280, 720)])
def test_navbar_links_stay_in_the_window(browser, demo, width, height):
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = Watch(page, demo)
    try:
        for path in PAGES:
            page.goto(demo + path)
            page.wait_for_selector("h4.page-title")
            page.wait_for_load_state("networkidle")
            links = page.evaluate("""() => [...document.querySelectorAll('.navbar .nav-link')].map(a => {
                const r = a.getBoundingClientRect();
                return {text: a.innerText, left: r.left, right: r.right, width: r.width}; })""")
            inner = page.evaluate("document.documentElement.clientWidth")
            assert links and all(link["width"] > 0 for link in links), (path, links)
            off = [link["text"] for link in links if link["right"] > inner + 1 or link["left"] < 0]
            assert off == [], f"{path} at {width}px: navbar links outside the window: {off}"
            assert page.evaluate("document.documentElement.scrollWidth") <= inner, (path, width)
        shot(page, f"session-navbar-{width}")
        page.click("#nav-tts-readiness a, a#nav-tts-readiness, #nav-tts-readiness .nav-link")
        page.wait_for_url("**/tts**")
        watch.check()
    finally:
        ctx.close()


def focused(page) -> str:
    return page.evaluate("(() => { const e = document.activeElement;"
                         " return e.id || (e.closest('[id]') || {}).id || e.tagName; })()")


@pytest.mark.parametrize("path,grid,after", [
    ("/errors?hyp=pred_text", "errors-sub-grid", "errors-del-csv"),
    ("/errors?hyp=pred_text", "errors-ins-grid", "errors-by"),
])
def test_tab_leaves_a_grid_of_links(page, demo, path, grid, after):
    """The Errors tables' cells take no focus (their rows are links): Tab walked their header
    cells and wrapped from the last to the first, a trap for the keyboard."""
    watch = Watch(page, demo)
    page.goto(demo + path)
    page.wait_for_selector(f"#{grid} .ag-row")
    page.focus(f"#{grid} .ag-header-cell[aria-colindex='1']")
    seen = []
    for _ in range(8):
        page.keyboard.press("Tab")
        seen.append(focused(page))
        if seen[-1] != grid:
            break
    assert seen[-1] == after, seen
    watch.check()


def test_tab_after_the_last_grid_of_the_page_cycles_to_its_start(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/comparison")
    grid = "cmp-utt-grid"
    page.wait_for_selector(f"#{grid} .ag-row")
    page.focus(f"#{grid} .ag-header-cell[aria-colindex='1']")
    seen = []
    for _ in range(8):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("!!document.activeElement.closest('#%s')" % grid))
        if not seen[-1]:
            break
    assert seen[-1] is False, "Tab never left the grid"
    assert page.evaluate("!!document.activeElement.closest('.navbar')")
    watch.check()
