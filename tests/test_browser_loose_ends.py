"""Loose ends a user meets, in headless Chromium against the real CLI (`sde demo`, and a small
manifest of real audio with duplicate transcripts and a long name):

- an utterance the manifest does not have (past the end, negative, not a number, huge) is a 404
  page that names the id, says how many utterances there are and links back;
- Duplicates offers "all of them in Samples" only when there are groups;
- the Comparison word table counts the utterances its row opens in Samples, beside the occurrences;
- the grids whose rows are links open a row from the keyboard (arrow keys, Enter), mouse clicks
  and text selection still work, and Tab / Shift+Tab leave the grid;
- the navbar is one row at 768-1280 px, every page is reachable from it and the active link is
  the page shown.

Screenshots: tests/output/screenshots/loose-ends-*.png.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from urllib.parse import parse_qs, quote, urlparse

import numpy as np
import pytest
import soundfile as sf

from tests.browser_kit import TIMEOUT_MS, Watch, api, sde_server, shot, wait_url

pytestmark = pytest.mark.browser

LONG_NAME = "a_rather_long_manifest_name_of_a_corpus_with_duplicate_transcripts_train_clean_360.json"
DUPLICATE_LINES = [  # three groups of the same transcript (after lower-casing and punctuation)
    ("hello world", "hello world", "hello word"),
    ("Hello, world!", "hello world", "hello world"),
    ("good morning", "good morning", "good mourning"),
    ("good morning", "good morning", "good morning"),
    ("the cat sat on the mat", "the cat sat on mat", "the cat sat on the mat"),
    ("the cat sat on the mat", "a cat sat on the mat", "the cat sat on the mat"),
    ("something else entirely", "something else", "something else entirely"),
]


@pytest.fixture(scope="module")
def dups(tmp_path_factory):
    """`sde` on LONG_NAME: real WAV files (soundfile), two hypotheses, three duplicate groups."""
    d = tmp_path_factory.mktemp("dups")
    rng = np.random.default_rng(0)
    with (d / LONG_NAME).open("w", encoding="utf-8") as f:
        for i, (text, a, b) in enumerate(DUPLICATE_LINES):
            audio = d / f"u{i}.wav"
            sf.write(audio, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000, subtype="PCM_16")
            f.write(json.dumps({"audio_filepath": str(audio), "duration": 0.5, "text": text, "pred_text": a,
                                "pred_text_b": b}) + "\n")
    with sde_server(str(d / LONG_NAME)) as url:
        yield url


def focused(page) -> dict:
    return page.evaluate("""(() => { const e = document.activeElement, row = e.closest('.ag-row');
        return {grid: (e.closest('.sde-grid') || {}).id || null, id: e.id || (e.closest('[id]') || {}).id,
                row: row ? +row.getAttribute('row-index') : null, cell: e.classList.contains('ag-cell')}; })()""")


def row_href(page, grid: str, index: int) -> str:
    return page.evaluate("([g, i]) => dash_ag_grid.getApi(g).getDisplayedRowAtIndex(i).data.href", [grid, index])


def wait_rows(page, grid: str, rows: int = 2) -> None:
    """Until the grid shows `rows` rows with their data (an infinite grid's come from the server)."""
    page.wait_for_selector(f"#{grid} .ag-row")
    page.wait_for_function("""([g, n]) => { const api = window.dash_ag_grid && dash_ag_grid.getApi(g);
        if (!api || api.getDisplayedRowCount() < n) return false;
        const node = api.getDisplayedRowAtIndex(n - 1); return !!(node && node.data); }""", arg=[grid, rows])


def same_link(got: str, want: str) -> bool:
    g, w = urlparse(got), urlparse(want)
    return g.path == w.path and parse_qs(g.query) == parse_qs(w.query)


def opened(got: str, want: str) -> bool:
    """Whether the browser is at the link ``want``, or at the filter the Samples page rewrites an
    error's link into as it arrives (``?error=sub:a:b&hyp=F`` → ``?filter={error} = "sub a b"``):
    a test that looks just after the path changed may see either."""
    if same_link(got, want):
        return True
    g, w = urlparse(got), urlparse(want)
    error = parse_qs(w.query).get("error")
    filters = parse_qs(g.query).get("filter", [])
    words = " ".join(error[0].split(":")) if error else None
    return (g.path == w.path and words is not None and "error" not in parse_qs(g.query) and len(filters) == 1
            and filters[0].startswith("{error") and filters[0].endswith('} = "' + words + '"'))


# ---------------------------------------------------------------- 1. an utterance that is not there

@pytest.mark.parametrize("raw,shown", [
    ("30", "30"),                         # one past the end of the demo's 30
    ("99999", "99999"),
    ("-1", "-1"),
    ("1.5", "'1.5'"),
    ("abc", "'abc'"),
    (str(10**30), str(10**30)),
])
def test_a_missing_utterance_is_a_404_page_naming_it_and_the_count(page, demo, raw, shown):
    watch = Watch(page, demo, allow_console=("404",))  # the page's own HTTP 404, logged by Chromium
    answer = page.goto(demo + "/utterance/" + quote(raw))
    assert answer.status == 404
    page.wait_for_selector("#utt-not-found")
    message = page.inner_text("#utt-not-found-message")
    assert f"id {shown}" in message and "30 utterances" in message, message
    with pytest.raises(urllib.error.HTTPError) as e:  # and its JSON twin
        urllib.request.urlopen(f"{demo}/api/utterances/{quote(raw)}", timeout=30)
    assert e.value.code == 404
    assert json.loads(e.value.read())["utterances"] == 30
    page.click("#utt-not-found-back")
    wait_url(page, r"/samples$")
    watch.check()


# ---------------------------------------------------------------- 2. Duplicates with no groups

@pytest.mark.parametrize("server,groups", [("demo", 0), ("dups", 3)])
def test_duplicates_links_to_samples_only_when_there_are_groups(page, request, server, groups):
    url = request.getfixturevalue(server)
    watch = Watch(page, url)
    page.goto(url + "/duplicates?kind=text")
    page.wait_for_selector("#dup-groups")
    assert page.inner_text("#dup-groups") == str(groups)
    if not groups:
        assert page.locator("#dup-none").is_visible()
        assert page.locator("text=all of them in Samples").count() == 0
    else:
        page.click("text=all of them in Samples")
        wait_url(page, r"/samples\?")
        listed = api(url, "/api/utterances", filter=parse_qs(urlparse(page.url).query)["filter"][0])["total"]
        assert listed == api(url, "/api/duplicates", kind="text")["utterances"] == 6
    watch.check()


# ---------------------------------------------------------------- 3. the word table's counts

def test_the_word_table_counts_the_utterances_its_row_opens(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/comparison")
    wait_rows(page, "cmp-word-grid", 1)
    headers = page.locator("#cmp-word-grid .ag-header-cell-text").all_inner_texts()
    assert "utterances" in [h.lower() for h in headers] and "occurrences" in [h.lower() for h in headers], headers
    rows = api(demo, "/api/compare/words")["rows"]
    twice = next(i for i, r in enumerate(rows) if r["occurrences"] > r["utterances"])  # a word said twice in a line
    shown = page.evaluate("([g, i]) => dash_ag_grid.getApi(g).getDisplayedRowAtIndex(i).data", ["cmp-word-grid", twice])
    assert (shown["word"], shown["utterances"], shown["occurrences"]) == \
        (rows[twice]["word"], rows[twice]["utterances"], rows[twice]["occurrences"])
    page.evaluate("([g, i]) => dash_ag_grid.getApi(g).ensureIndexVisible(i, 'top')", ["cmp-word-grid", twice])
    page.locator(f'#cmp-word-grid .ag-row[row-index="{twice}"] [col-id="word"]').click()
    wait_url(page, r"/samples\?")
    listed = api(demo, "/api/utterances", filter=parse_qs(urlparse(page.url).query)["filter"][0])["total"]
    assert listed == shown["utterances"] < shown["occurrences"]
    watch.check()


# ---------------------------------------------------------------- 4. link rows from the keyboard

LINK_GRIDS = [
    ("/errors?hyp=pred_text", "errors-sub-grid"),
    ("/errors?hyp=pred_text", "errors-breakdown-grid"),
    ("/comparison", "cmp-word-grid"),
    ("/comparison", "cmp-utt-grid"),
]


@pytest.mark.parametrize("path,grid", LINK_GRIDS)
def test_the_keyboard_walks_the_rows_of_a_link_grid_and_enter_opens_one(page, demo, path, grid):
    watch = Watch(page, demo)
    page.goto(demo + path)
    wait_rows(page, grid)
    page.focus(f"#{grid} .ag-header-cell[aria-colindex='1']")
    page.keyboard.press("ArrowDown")
    assert focused(page) == {"grid": grid, "id": grid, "row": 0, "cell": True}
    page.keyboard.press("ArrowDown")
    assert focused(page)["row"] == 1
    want = row_href(page, grid, 1)
    page.keyboard.press("Enter")
    page.wait_for_function("(p) => window.location.pathname === p", arg=urlparse(want).path)
    assert opened(page.url, want), (page.url, want)
    watch.check()


# A listener on the grid's own element counts the clicks that reach it: AG Grid's cellClicked
# comes from such a click, and a click stopped before it (the drag's) never gets there.
COUNT_CLICKS = "(g) => { window.sdeClicks = 0; document.getElementById(g).addEventListener('click', () => window.sdeClicks++); }"


@pytest.mark.parametrize("path,grid", [*LINK_GRIDS[::3], ("/samples", "samples-grid")])
def test_a_drag_selects_a_cells_text_without_opening_its_row_and_a_click_opens_it(page, demo, path, grid):
    watch = Watch(page, demo)
    page.goto(demo + path)
    wait_rows(page, grid)
    page.evaluate(COUNT_CLICKS, grid)
    cell = page.locator(f'#{grid} .ag-row[row-index="0"] .ag-cell').first
    box = cell.bounding_box()
    page.mouse.move(box["x"] + 4, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 4, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    assert page.evaluate("window.getSelection().toString().trim()") != ""
    assert page.evaluate("window.sdeClicks") == 0  # the drag's closing click: the row stays shut
    before = urlparse(page.url).path
    want = row_href(page, grid, 0) if grid != "samples-grid" else None
    cell.click()  # its press collapses the selection: a click of its own, which opens the row
    assert page.evaluate("window.sdeClicks") == 1
    if want is None:
        page.wait_for_function("(p) => window.location.pathname !== p", arg=before)
    else:
        page.wait_for_function("(p) => window.location.pathname === p", arg=urlparse(want).path)
        assert opened(page.url, want), (page.url, want)
    watch.check()


@pytest.mark.parametrize("path,grid,after,before", [
    ("/errors?hyp=pred_text", "errors-sub-grid", "errors-del-csv", "errors-sub-manifest"),
    ("/comparison", "cmp-word-grid", "cmp-metric", "cmp-word-links"),
])
def test_tab_and_shift_tab_leave_a_link_grid_from_a_row(page, demo, path, grid, after, before):
    watch = Watch(page, demo)
    page.goto(demo + path)
    wait_rows(page, grid)
    for key, lands in (("Tab", after), ("Shift+Tab", before)):
        page.focus(f"#{grid} .ag-header-cell[aria-colindex='1']")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        assert focused(page)["row"] == 1
        page.keyboard.press(key)
        now = focused(page)
        assert now["grid"] is None and lands in page.evaluate(
            "(() => { const ids = []; for (let e = document.activeElement; e; e = e.parentElement) if (e.id) ids.push(e.id);"
            " return ids; })()"), (key, now)
    watch.check()


# ---------------------------------------------------------------- 5. the navbar in one row

NAV_PAGES = [("nav-statistics", r"/$"), ("nav-samples", r"/samples"), ("nav-vocabulary", r"/vocabulary"),
             ("nav-problems", r"/problems"), ("nav-errors", r"/errors"), ("nav-comparison", r"/comparison"),
             ("nav-rules", r"/rules"), ("nav-duplicates", r"/duplicates"), ("nav-tts-readiness", r"/tts")]


@pytest.mark.parametrize("width", [768, 800, 1024, 1199, 1280])
def test_the_navbar_is_one_row_that_reaches_every_page(browser, dups, width):
    ctx = browser.new_context(viewport={"width": width, "height": 720})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = Watch(page, dups)
    try:
        page.goto(dups + "/samples")
        page.wait_for_selector("h4.page-title")
        for item, path in NAV_PAGES:
            page.click(f"#{item} a")
            wait_url(page, path)
            page.wait_for_function("(id) => document.querySelector(`#${id} a`).classList.contains('active')", arg=item)
            assert page.locator(".navbar .nav-link.active").count() == 1
            bar = page.evaluate("""() => ({height: document.querySelector('.navbar').getBoundingClientRect().height,
                tops: [...new Set([...document.querySelectorAll('.navbar .nav-link')].map(
                    a => Math.round(a.getBoundingClientRect().top)))],
                right: Math.max(...[...document.querySelectorAll('.navbar .nav-link')].map(
                    a => a.getBoundingClientRect().right)),
                inner: document.documentElement.clientWidth})""")
            assert len(bar["tops"]) == 1 and bar["height"] < 90, (width, item, bar)
            assert bar["right"] <= bar["inner"], (width, item, bar)
            # the manifest's name gives way (ellipsis), and says itself whole on hover
            assert page.get_attribute(".brand-title", "title") == LONG_NAME
        shot(page, f"loose-ends-navbar-{width}")
        watch.check()
    finally:
        ctx.close()


def test_a_short_label_keeps_the_full_name_for_screen_readers(browser, dups):
    ctx = browser.new_context(viewport={"width": 800, "height": 720})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(dups + "/comparison")
        page.wait_for_selector("h4.page-title")
        link = page.get_by_role("link", name="Comparison", exact=True)
        assert link.is_visible() and link.inner_text().strip().endswith("Compare")
        assert re.search(r"\bactive\b", link.get_attribute("class"))
    finally:
        ctx.close()


# Samples and Vocabulary rows open on a click (the inspector, a word's utterances): from the
# keyboard, Enter on the focused row opens the same, and Tab from the filter box lands on a row
# (it took 40 Tabs through headers and column filters, and Enter did nothing).
@pytest.mark.parametrize("path,grid,opens", [
    ("/samples?sort=-wer", "samples-grid", lambda row: f"/utterance/{row['id']}"),
    ("/vocabulary", "vocabulary-grid", lambda row: "/samples"),
])
def test_enter_on_a_focused_samples_or_vocabulary_row_opens_it(page, demo, path, grid, opens):
    watch = Watch(page, demo)
    page.goto(demo + path)
    wait_rows(page, grid, 3)
    page.focus(f"#{grid.split('-')[0]}-filter")
    for _ in range(8):  # past Apply, the column picker and the downloads
        page.keyboard.press("Tab")
        if focused(page)["grid"] == grid:
            break
    assert focused(page)["grid"] == grid and focused(page)["row"] == 0, focused(page)  # a row, not a header
    page.keyboard.press("ArrowDown")
    row = page.evaluate("([g, i]) => dash_ag_grid.getApi(g).getDisplayedRowAtIndex(i).data", [grid, 1])
    page.keyboard.press("Enter")
    page.wait_for_function("(p) => window.location.pathname === p", arg=opens(row))
    if grid == "vocabulary-grid":
        assert row["word"] in parse_qs(urlparse(page.url).query)["filter"][0]
    watch.check()


def test_tab_walks_a_samples_column_filter_to_the_next_one(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/samples")
    wait_rows(page, "samples-grid")
    boxes = page.locator("#samples-grid .ag-floating-filter input")
    boxes.nth(0).focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('.ag-floating-filter') !== null")
    assert page.evaluate("document.activeElement") != boxes.nth(0).element_handle()
    watch.check()
