"""Accessibility of the pages, in headless Chromium against `sde demo` served by the real CLI: no
chart offers to upload its data to Plotly Cloud, every page has a language, a main landmark, a
level-1 heading and a skip link, the Statistics charts have a name and a keyboard way to their
drill-down, focus is visible, text has contrast, and the controls have names."""

from __future__ import annotations

import re

import pytest

from tests.browser_kit import Watch, api, wait_url

pytestmark = pytest.mark.browser

# WCAG 2.x relative luminance and contrast ratio of two computed CSS colours ("rgb(r, g, b)" or
# "rgba(r, g, b, a)"; a translucent foreground is blended over the background first).
CONTRAST_JS = """(sel) => {
    const el = document.querySelector(sel);
    if (!el) return null;
    const rgba = s => { const m = s.match(/[\\d.]+/g).map(Number); return m.length === 3 ? [...m, 1] : m; };
    let node = el, bg = [255, 255, 255, 0];
    while (node && node.nodeType === 1) {
        const c = rgba(getComputedStyle(node).backgroundColor);
        if (c[3] > 0) { bg = c; break; }
        node = node.parentElement;
    }
    if (bg[3] === 0) bg = [255, 255, 255, 1];
    const fg = rgba(getComputedStyle(el).color);
    const mixed = fg.slice(0, 3).map((v, i) => v * fg[3] + bg[i] * (1 - fg[3]));
    const lum = c => { const l = c.map(v => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                       return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2]; };
    const [a, b] = [lum(mixed), lum(bg.slice(0, 3))].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
}"""

PAGES = ("/", "/samples", "/vocabulary", "/errors", "/comparison", "/problems", "/rules", "/duplicates", "/tts",
         "/utterance/0")


def test_no_chart_offers_to_share_to_plotly_cloud(page, demo):
    watch = Watch(page, demo)
    for path in ("/", "/errors", "/comparison", "/tts"):
        page.goto(demo + path)
        page.wait_for_selector(".js-plotly-plot .modebar-btn", state="attached")
        titles = page.eval_on_selector_all(".modebar-btn", "els => els.map(e => e.getAttribute('data-title'))")
        assert titles and not any("Share" in (t or "") for t in titles), (path, titles)
        server = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].map("
                               "g => [g._context.showSendToCloud, g._context.plotlyServerURL])")
        assert all(send is False and not url for send, url in server), (path, server)
    watch.check()


def test_every_page_has_lang_main_h1_and_a_skip_link_to_main(page, demo):
    watch = Watch(page, demo)
    for path in PAGES:
        page.goto(demo + path)
        page.wait_for_selector("main .page-title")
        assert page.evaluate("document.documentElement.lang") == "en", path
        assert page.locator("main").count() == 1, path
        h1 = page.locator("main h1, main [role=heading][aria-level='1']")
        assert h1.count() == 1 and h1.inner_text().strip(), path
    # the first Tab stop is the skip link, shown when focused; following it puts the focus in main
    page.goto(demo + "/samples")
    page.wait_for_selector("#samples-grid .ag-row")
    page.keyboard.press("Tab")
    focused = page.evaluate("() => [document.activeElement.innerText, document.activeElement.getBoundingClientRect().width]")
    assert focused[0] == "Skip to content" and focused[1] > 1, focused
    page.keyboard.press("Enter")
    page.wait_for_function("document.activeElement && document.activeElement.tagName === 'MAIN'")
    watch.check()


def test_statistics_chart_has_a_name_and_its_bins_table_opens_samples(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/")
    chart = page.locator("#hist-duration")
    chart.wait_for()
    assert chart.get_attribute("role") == "figure"
    name = chart.get_attribute("aria-label") or ""
    total = api(demo, "/api/summary")["utterances"]
    assert name.startswith("Duration") and f"{total:,} utterances" in name, name
    # the keyboard's way: Tab to the summary, open it, Tab to a count, Enter
    summary = page.locator('[id*="stats-bins-open"][id*="duration"]')
    summary.focus()
    page.keyboard.press("Enter")
    link = page.locator('[id*="\\"stats-bins\\""][id*="duration"] td a').first
    link.wait_for()
    count = int(link.inner_text().replace(",", ""))
    href = link.get_attribute("href")
    link.focus()
    page.keyboard.press("Enter")
    wait_url(page, r"/samples\?filter=")
    assert page.url.endswith(href), (page.url, href)
    page.wait_for_function("document.querySelector('#samples-count') && "
                           "/ of /.test(document.querySelector('#samples-count').innerText)")
    assert page.inner_text("#samples-count").startswith(f"{count:,} of "), page.inner_text("#samples-count")
    watch.check()


def test_focused_navbar_link_has_a_visible_outline(page, demo):
    page.goto(demo + "/samples")
    page.wait_for_selector("#samples-grid .ag-row")
    style = "el => { const s = getComputedStyle(el); return [s.outlineStyle, s.outlineWidth, s.outlineColor]; }"
    link = page.locator("#nav-vocabulary a")
    before = link.evaluate(style)
    link.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focused by the keyboard: :focus-visible
    after = link.evaluate(style)
    assert after != before and after[0] == "solid" and float(after[1].rstrip("px")) >= 2, (before, after)
    assert re.fullmatch(r"rgb\(255, 255, 255\)", after[2]), after  # light on the dark navbar


@pytest.mark.parametrize(("path", "selectors"), [
    ("/", (".stat-label", ".stat-sub", "#stats-json", "#stat-field-speaker-link", ".brand-mark")),
    ("/samples", (".filter-examples", ".form-text code")),
    ("/rules", ("#rules-clear", "#rules-add")),
])
def test_text_contrast_is_at_least_4_5(page, demo, path, selectors):
    page.goto(demo + path)
    page.wait_for_selector(selectors[0])
    for sel in selectors:
        if page.locator(sel).count() == 0:
            continue
        ratio = page.evaluate(CONTRAST_JS, sel)
        assert ratio >= 4.5 - 1e-6, (path, sel, round(ratio, 2))


NAME_JS = """(sel) => {
    const el = document.querySelector(sel);
    if (!el) return null;
    const by = el.getAttribute('aria-labelledby');
    return (el.getAttribute('aria-label') || (by && document.getElementById(by) || {}).innerText
            || [...(el.labels || [])].map(l => l.innerText).join(' ')).trim();
}"""


@pytest.mark.parametrize(("path", "selector"), [
    ("/samples", "#samples-filter"),
    ("/vocabulary", "#vocabulary-filter"),
    ("/tts", "#tts-phoneme-speaker"),
    ("/", "#navbar-toggler"),
    ("/errors", "#errors-min-utts"),
])
def test_controls_have_accessible_names(page, demo, path, selector):
    page.goto(demo + path)
    page.wait_for_selector(selector, state="attached")
    assert page.evaluate(NAME_JS, selector), (path, selector)


def test_navbar_toggler_says_whether_the_menu_is_open(browser, demo):
    ctx = browser.new_context(viewport={"width": 600, "height": 800})
    try:
        page = ctx.new_page()
        page.goto(demo + "/")
        toggler = page.locator("#navbar-toggler")
        toggler.wait_for()
        assert toggler.get_attribute("aria-expanded") == "false"
        toggler.click()
        page.wait_for_function("document.querySelector('#navbar-toggler').getAttribute('aria-expanded') === 'true'")
    finally:
        ctx.close()


def test_filter_examples_hint_is_a_tab_stop_with_its_tooltip(page, demo):
    page.goto(demo + "/samples")
    hint = page.locator("#samples-filter-examples")
    hint.wait_for()
    assert hint.get_attribute("tabindex") == "0"
    hint.focus()
    page.wait_for_selector(".filter-examples-tip", state="visible")


def test_rules_file_input_is_no_tab_stop_and_the_button_opens_it(page, demo):
    page.goto(demo + "/rules")
    page.wait_for_selector("#rules-upload button")
    stops = page.evaluate("""() => { const i = document.querySelector('#rules-upload input[type=file]');
        i.focus(); return document.activeElement === i; }""")
    assert stops is False
    with page.expect_file_chooser():
        page.locator("#rules-upload button").focus()
        page.keyboard.press("Enter")
