"""Cleaning a dataset in headless Chromium, against `sde demo --reviews FILE` served by the real CLI:
a review session with the keys (keep, drop, fix with a typed correction, undo, next unreviewed),
a conflict between two pages, the drop-rules view, the manifest downloads of every view and a
read-only server. Screenshots of the review panel, the conflict and the rules view land in
tests/output/screenshots/ (docs/images/ holds copies for docs/cleaning.md).
"""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from sde.rules import parse_rules
from tests.browser_kit import SHOTS, TIMEOUT_MS, Watch, api, sde_server, wait_url

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def reviews_file(tmp_path_factory):
    return tmp_path_factory.mktemp("reviews") / "demo-reviews.sqlite"


@pytest.fixture(scope="module")
def served(reviews_file):
    with sde_server("demo", "--reviews", str(reviews_file)) as url:
        yield url


def review_of(base: str, uid: int) -> dict:
    return api(base, f"/api/utterances/{uid}/review")


def fetch(base: str, href: str) -> bytes:
    with urllib.request.urlopen(base + href, timeout=30) as r:
        return r.read()


def shot(page, name: str, selector: str | None = None) -> None:
    """A screenshot of the page (or of one element) for tests/output/screenshots."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    target = page.locator(selector) if selector else page
    target.screenshot(path=str(SHOTS / f"{name}.png"))


def wait_text(page, selector: str, condition: str) -> None:
    """Wait until the text of `selector` (once it exists) meets the JS `condition` on `text`."""
    page.wait_for_function(f"(() => {{ const text = (document.querySelector({json.dumps(selector)}) || {{}})"
                           f".innerText || ''; return {condition}; }})()")


def arrive(page, uid: int) -> None:
    wait_url(page, rf"/utterance/{uid}(\?|$)")
    wait_text(page, "h4.page-title", f"text === 'Utterance {uid}'")
    page.wait_for_selector("#review-card")


def open_from_samples(page, base: str, flt: str) -> int:
    """Samples filtered by `flt`, then a click on its first row: the inspector on that list."""
    page.goto(base + "/samples?" + urlencode({"filter": flt}))
    cell = '#samples-grid .ag-row[row-index="0"] [col-id="id"]'
    page.wait_for_function(f"(document.querySelector('{cell}') || {{}}).innerText > ''")
    uid = int(page.inner_text(cell))
    page.locator(cell).click()
    arrive(page, uid)
    return uid


def test_a_review_session_with_keys(page, served):
    watch = Watch(page, served)
    flt = '{speaker} = "ben"'
    ids = [r["id"] for r in api(served, "/api/utterances", filter=flt, page_size=100)["rows"]]
    assert len(ids) >= 5
    first = open_from_samples(page, served, flt)
    assert first == ids[0]
    page.locator("label[for=review-mode]").click()
    assert page.is_checked("#review-mode")

    page.keyboard.press("a")                       # keep → on to the next unreviewed
    arrive(page, ids[1])
    assert review_of(served, ids[0])["status"] == "keep"
    page.keyboard.press("d")                       # drop
    arrive(page, ids[2])
    assert review_of(served, ids[1])["status"] == "drop"
    page.keyboard.press("f")                       # fix: the caret after the transcript, Enter saves it
    assert page.evaluate("document.activeElement.id") == "review-text"
    transcript = page.input_value("#review-text")
    page.keyboard.type(" corrected")
    page.keyboard.press("Enter")
    arrive(page, ids[3])
    fixed = review_of(served, ids[2])
    assert (fixed["status"], fixed["text"], fixed["version"]) == ("fix", transcript + " corrected", 1)

    page.keyboard.press("z")                       # undo the last mark: back to it, undone
    arrive(page, ids[2])
    assert review_of(served, ids[2])["status"] is None
    wait_text(page, "#review-status", "text.includes('undone')")
    page.keyboard.press("n")                       # next unreviewed: ids[2] is reviewed no more, ids[3] is next
    arrive(page, ids[3])

    # Outside review mode a mark stays on the utterance and shows what is saved.
    page.locator("label[for=review-mode]").click()
    page.fill("#review-text", "a corrected transcript typed by hand")
    page.fill("#review-note", "music in the background")
    page.fill("#review-tags", "noise music")
    page.click("#review-fix")
    wait_text(page, "#review-status", "text.includes('version 1')")
    assert page.inner_text("#review-badge") == "fix"
    saved = review_of(served, ids[3])
    assert (saved["note"], saved["tags"]) == ("music in the background", ["noise", "music"])
    page.evaluate("window.scrollTo(0, 0)")
    page.mouse.move(0, 0)  # no hover colour on the button just clicked
    shot(page, "review-panel")

    # Review columns filter the Samples grid; the Statistics page counts them.
    page.goto(served + "/samples?" + urlencode({"filter": '{review_tags} has "noise"'}))
    wait_text(page, "#samples-count", "text.startsWith('1 of')")
    summary = api(served, "/api/reviews")["summary"]
    page.goto(served + "/")
    page.wait_for_selector("#review-summary")
    for status in ("reviewed", "keep", "drop", "fix"):
        assert page.inner_text(f"#stat-review-{status}") == str(summary[status])
    watch.check()


@pytest.mark.parametrize("choice", ["Take mine", "Take theirs"])
def test_a_conflict_between_two_pages_shows_both_values(browser, served, choice):
    uid = 20 if choice == "Take mine" else 21
    pages = []
    for _ in range(2):
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        pg = ctx.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(f"{served}/utterance/{uid}")
        pg.wait_for_selector("#review-card")
        pages.append(pg)
    mine, theirs = pages[1], pages[0]
    try:
        theirs.click("#review-keep")
        wait_text(theirs, "#review-status", "text.includes('version 1')")
        mine.fill("#review-note", "too much noise")
        mine.click("#review-drop")
        mine.wait_for_selector("#review-conflict", state="visible")
        assert "keep" in mine.inner_text("#review-theirs")
        assert "drop" in mine.inner_text("#review-mine") and "too much noise" in mine.inner_text("#review-mine")
        assert "nothing was overwritten" in mine.inner_text("#review-message")
        assert review_of(served, uid)["status"] == "keep"
        # the status is what is saved now (theirs), not what this page loaded ("not reviewed yet")
        assert mine.inner_text("#review-badge") == "keep" and "version 1" in mine.inner_text("#review-version")
        if choice == "Take mine":
            mine.mouse.move(0, 0)
            shot(mine, "review-conflict", "#review-card")
            mine.click("#review-take-mine")
            wait_text(mine, "#review-status", "text.includes('version 2')")
            assert (review_of(served, uid)["status"], review_of(served, uid)["note"]) == ("drop", "too much noise")
        else:
            mine.click("#review-take-theirs")
            mine.wait_for_selector("#review-conflict", state="hidden")
            assert mine.inner_text("#review-badge") == "keep" and mine.input_value("#review-note") == ""
            mine.click("#review-drop")   # now against their version: saved, no conflict
            wait_text(mine, "#review-status", "text.includes('version 2')")
            assert review_of(served, uid)["status"] == "drop"
        assert not mine.locator("#review-conflict").is_visible()
    finally:
        for pg in pages:
            pg.context.close()


def test_the_rules_view_counts_what_the_export_removes(page, served):
    watch = Watch(page, served)
    page.goto(served + "/rules?" + urlencode({"add": "{wer} > 20"}))
    assert page.input_value("#rules-filter") == "{wer} > 20"
    page.fill("#rules-name", "high WER")
    page.click("#rules-add")
    page.wait_for_selector("#rules-row-0")
    page.fill("#rules-name", "too fast")
    page.fill("#rules-filter", "{char_rate} > 16")
    page.press("#rules-filter", "Enter")
    page.wait_for_selector("#rules-row-1")
    page.fill("#rules-name", "typo")
    page.fill("#rules-filter", "{werr} > 1")
    page.click("#rules-add")
    page.wait_for_selector("#rules-error")
    assert "Unknown column" in page.inner_text("#rules-error") and "typo" in page.inner_text("#rules-error")

    rules = [{"name": "high WER", "filter": "{wer} > 20"}, {"name": "too fast", "filter": "{char_rate} > 16"}]
    req = urllib.request.Request(served + "/api/rules/preview", data=json.dumps({"rules": rules}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        preview = json.loads(r.read())
    for i, counted in enumerate(preview["rules"]):
        wait_text(page, f"#rules-count-{i}", f"text === '{counted['utterances']:,}'")
        assert page.inner_text(f"#rules-only-{i}") == f"{counted['only']:,}"
    assert page.inner_text("#rules-union").startswith(f"{preview['union']['utterances']:,} utterances")
    shot(page, "rules")

    # The downloads: kept and removed lines partition the manifest; rules.yaml reads back.
    kept = fetch(served, page.get_attribute("#rules-kept", "href")).splitlines()
    removed = fetch(served, page.get_attribute("#rules-removed", "href")).splitlines()
    assert len(removed) == preview["union"]["utterances"]
    assert len(kept) + len(removed) == api(served, "/api/summary")["utterances"]
    with page.expect_download() as got:
        page.click("#rules-yaml-button")
    text = open(got.value.path(), encoding="utf-8").read()
    assert [(r.name, r.filter) for r in parse_rules(text)] == [(r["name"], r["filter"]) for r in rules]

    # The rules stay in the browser: a reload shows them, "×" removes one.
    page.reload()
    page.wait_for_selector("#rules-row-1")
    page.locator("#rules-row-0 button").click()
    page.wait_for_function("!document.querySelector('#rules-row-1')")
    assert "too fast" in page.inner_text("#rules-row-0")
    watch.check()


def test_download_manifest_buttons_follow_each_view(page, served):
    watch = Watch(page, served)
    page.goto(served + "/samples")
    page.wait_for_selector("#samples-grid .ag-row")
    box = page.locator("#samples-filter")
    box.fill('{lang} = "en-GB"')
    box.press("Enter")
    page.wait_for_function("(document.querySelector('#samples-manifest') || {href: ''}).href.includes('en-GB')")
    href = page.get_attribute("#samples-manifest", "href")
    assert parse_qs(urlparse(href).query)["filter"] == ['{lang} = "en-GB"']
    expected = api(served, "/api/utterances", filter='{lang} = "en-GB"', page_size=100)["total"]
    assert len(fetch(served, href).splitlines()) == expected > 0
    assert parse_qs(urlparse(page.get_attribute("#samples-save-rule", "href")).query)["add"] == ['{lang} = "en-GB"']

    page.goto(served + "/errors")
    page.wait_for_selector("#errors-sub-manifest")
    sub = fetch(served, page.get_attribute("#errors-sub-manifest", "href")).splitlines()
    assert len(sub) == api(served, "/api/utterances", filter="{sub} > 0", page_size=100)["total"] > 0
    page.wait_for_selector("#errors-breakdown-manifest")
    assert len(fetch(served, page.get_attribute("#errors-breakdown-manifest", "href")).splitlines()) == 30
    page.goto(served + "/comparison?" + urlencode({"filter": "{duration} > 3"}))
    page.wait_for_selector("#cmp-manifest")
    cmp = fetch(served, page.get_attribute("#cmp-manifest", "href")).splitlines()
    assert len(cmp) == api(served, "/api/utterances", filter="{duration} > 3", page_size=100)["total"]
    watch.check()


def test_read_only_mode_disables_the_controls(browser, served, reviews_file):
    uid = 22
    req = urllib.request.Request(f"{served}/api/utterances/{uid}/review", data=b'{"status": "drop"}',
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=30).close()
    with sde_server("demo", "--reviews", str(reviews_file), "--read-only") as ro:
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(f"{ro}/utterance/{uid}")
            page.wait_for_selector("#review-read-only")
            assert "--read-only" in page.inner_text("#review-read-only")
            assert page.inner_text("#review-badge") == "drop"
            for control in ("#review-keep", "#review-drop", "#review-fix", "#review-undo", "#review-text",
                            "#review-note", "#review-tags", "#review-mode"):
                assert page.is_disabled(control), control
            page.keyboard.press("a")
            page.wait_for_timeout(500)
            assert review_of(ro, uid)["status"] == "drop"
        finally:
            ctx.close()
