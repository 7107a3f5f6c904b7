"""End to end in headless Chromium: `sde demo --port 0` (and a hostile manifest) served by the real
CLI, every page opened, the grid filtered, sorted and clicked, the inspector walked with buttons and
keys. The console must stay clean and no request may leave 127.0.0.1.

Full-page screenshots land in tests/output/screenshots/ (look at them after a UI change).
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from tests.browser_kit import TIMEOUT_MS, Watch, api, first_cell, sde_server, shot, wait_url

pytestmark = pytest.mark.browser


def test_statistics_page_shows_the_summary(page, demo):
    watch = Watch(page, demo)
    summary = api(demo, "/api/summary")
    page.goto(demo + "/")
    page.wait_for_selector("#stat-utterances")
    assert page.inner_text("#stat-utterances") == f"{summary['utterances']:,}"
    assert page.inner_text("#stat-hours") == f"{summary['hours']:,.2f}"
    assert page.inner_text("#stat-vocabulary_size") == f"{summary['vocabulary_size']:,}"
    assert page.inner_text("#stat-alphabet_size") == f"{summary['alphabet_size']:,}"
    assert page.inner_text("#stat-skipped_lines") == f"{summary['skipped_lines']:,}"
    for field, h in summary["hypotheses"].items():
        for metric in ("wer", "cer", "wmr", "mwa"):
            assert page.inner_text(f"#stat-{field}-{metric}") == f"{h[metric]:,.2f}%"
    assert page.locator("#stats-alphabet .alpha-char").count() == summary["alphabet_size"]
    # Histograms drawn (plotly renders asynchronously).
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 8")
    assert page.title().startswith("Statistics · ")
    shot(page, "statistics")
    # The normalisation toggle: raw numbers stay, the normalised ones follow the chosen steps.
    field = next(iter(summary["hypotheses"]))
    assert summary["normalize"] == ["lower", "punct", "numbers"]  # `sde demo` starts with all three
    lower_punct = api(demo, "/api/summary", normalize="lower,punct")["hypotheses"][field]["normalized"]
    page.locator("#stats-normalize label", has_text="numbers").click()
    page.wait_for_function(
        f"document.querySelector('#stat-{field}-wer').parentElement.innerText"
        f".includes('normalised: {lower_punct['wer']:.2f}%')")
    assert page.inner_text(f"#stat-{field}-wer") == f"{summary['hypotheses'][field]['wer']:,.2f}%"
    page.locator("#stats-normalize label", has_text="lowercase").click()
    page.locator("#stats-normalize label", has_text="punctuation").click()
    page.wait_for_function("!document.querySelector('#stats-recognition').innerText.includes('normalised')")
    watch.check()


def test_samples_filter_sort_and_open(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/samples")
    page.wait_for_selector("#samples-grid .ag-row")
    total = api(demo, "/api/utterances")["total"]
    # The count arrives with the grid's first block, which may land after the first rows render.
    page.wait_for_function(f"document.querySelector('#samples-count').innerText === '{total} utterances'")

    # The filter box: a bad filter shows its message, a good one filters on the server.
    box = page.locator("#samples-filter")
    box.fill("{wer} >> 10")
    box.press("Enter")
    feedback = page.locator("#samples-filter-feedback")
    feedback.wait_for(state="visible")
    assert '">>" is not an operator' in feedback.inner_text()
    q = "{wer} > 10"
    box.fill(q)
    box.press("Enter")
    expected = api(demo, "/api/utterances", filter=q, page_size=1000)
    page.wait_for_function(
        f"document.querySelector('#samples-count').innerText.startsWith('{expected['total']} of')")
    assert not feedback.is_visible()
    wait_url(page, r"/samples\?filter=")
    assert parse_qs(urlparse(page.url).query)["filter"] == [q]

    # Sort by clicking the WER header (ascending first).
    page.locator('#samples-grid .ag-header-cell[col-id="wer"] .ag-header-cell-label').click()
    wait_url(page, r"sort=wer")
    ordered = api(demo, "/api/utterances", filter=q, sort="wer", page_size=1000)["rows"]
    page.wait_for_function(
        f"""() => {{ const c = document.querySelector('#samples-grid .ag-row[row-index="0"] [col-id="id"]');
                   return c && c.innerText.trim() === '{ordered[0]['id']}'; }}""")
    assert first_cell(page, "wer") == f"{ordered[0]['wer']:.2f}%"
    csv_href = page.get_attribute("#samples-csv", "href")
    assert csv_href.startswith("/api/utterances.csv?") and "sort=wer" in csv_href
    assert parse_qs(urlparse(csv_href).query)["filter"] == [q]
    shot(page, "samples")

    # Reload: the URL alone restores the view.
    page.reload()
    page.wait_for_selector("#samples-grid .ag-row")
    assert page.input_value("#samples-filter") == q
    page.wait_for_function(
        f"document.querySelector('#samples-count').innerText.startsWith('{expected['total']} of')")

    # Click a row: the inspector opens on the same filtered, sorted list.
    page.locator('#samples-grid .ag-row[row-index="0"] [col-id="text"]').click()
    wait_url(page, rf"/utterance/{ordered[0]['id']}\?")
    assert parse_qs(urlparse(page.url).query) == {"filter": [q], "sort": ["wer"]}
    page.wait_for_selector("#utt-diff")
    watch.check()


def test_inspector_diff_player_and_navigation(page, demo):
    watch = Watch(page, demo)
    q, sort = "{wer} > 0", "-wer"
    rows = api(demo, "/api/utterances", filter=q, sort=sort, page_size=1000)["rows"]
    ids = [r["id"] for r in rows]
    assert len(ids) >= 3
    page.goto(demo + f"/utterance/{ids[1]}?" + urlencode({"filter": q, "sort": sort}))
    page.wait_for_selector("#utt-diff")
    assert page.inner_text("h4.page-title") == f"Utterance {ids[1]}"
    # Diff: legend and coloured spans for the errors of this utterance.
    assert page.locator("#diff-legend").is_visible()
    one = api(demo, f"/api/utterances/{ids[1]}")
    ops = {w["op"] for w in one["alignment"]["pred_text"]}
    for op, cls in (("sub", ".diff-sub"), ("del", ".diff-del"), ("ins", ".diff-ins")):
        if op in ops:
            assert page.locator(f"#utt-diff-pred_text {cls}").count() >= 1
    color = page.locator("#diff-legend .diff-del").evaluate("e => getComputedStyle(e).color")
    assert color == "rgb(192, 57, 43)"
    # Player and signal figure.
    assert page.get_attribute("#utt-audio", "src") == f"/audio/{ids[1]}.ogg"
    assert page.locator("#utt-audio").evaluate("e => e.tagName") == "AUDIO"
    page.wait_for_selector("#utt-signal .js-plotly-plot .main-svg")
    page.wait_for_function("document.querySelector('#utt-audio').readyState >= 1")  # metadata loaded
    # Clicking the waveform seeks the player there; the playhead line follows the player.
    plot = page.locator("#utt-signal .js-plotly-plot .nsewdrag").first
    box = plot.bounding_box()
    page.wait_for_function("document.querySelector('#utt-signal .js-plotly-plot').__sdeBound !== undefined")
    x, y = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    for _ in range(10):  # plotly reports clicks once it has hover data for the point: retry briefly
        page.mouse.move(x, y)
        page.mouse.click(x, y)
        if page.evaluate("document.querySelector('#utt-audio').currentTime") > 0.3:
            break
        page.wait_for_timeout(300)
    page.wait_for_function("document.querySelector('#utt-audio').currentTime > 0.3")
    seek = page.evaluate("document.querySelector('#utt-audio').currentTime")
    assert 0.25 * one["duration"] < seek < 0.75 * one["duration"]
    page.wait_for_function("document.querySelector('#utt-signal .js-plotly-plot').getAttribute('data-playhead')")
    assert page.locator("#utt-signal .js-plotly-plot .shapelayer path").count() >= 1
    assert page.inner_text("#utt-position") == f"2 of {len(ids)} (filtered)"
    shot(page, "utterance")

    # Buttons, then keys, walk the filtered list.
    def arrived(uid: int) -> None:
        wait_url(page, rf"/utterance/{uid}\?")
        page.wait_for_function(f"document.querySelector('h4.page-title').innerText === 'Utterance {uid}'")

    page.click("#utt-next")
    arrived(ids[2])
    page.keyboard.press("ArrowLeft")
    arrived(ids[1])
    page.keyboard.press("k")
    arrived(ids[0])
    assert "disabled" in page.get_attribute("#utt-prev", "class")
    page.keyboard.press("j")
    arrived(ids[1])
    page.keyboard.press("ArrowRight")
    arrived(ids[2])
    page.click("#utt-prev")
    arrived(ids[1])
    page.keyboard.press("u")
    wait_url(page, r"/samples\?")
    page.wait_for_selector("#samples-grid .ag-row")
    assert page.input_value("#samples-filter") == q
    watch.check()


def test_vocabulary_and_problems_pages(page, demo):
    watch = Watch(page, demo)
    vocab = api(demo, "/api/vocabulary")
    page.goto(demo + "/vocabulary")
    page.wait_for_selector("#vocabulary-grid .ag-row")
    # the count comes with the grid's rows, but may be painted a moment after them
    page.wait_for_function("document.querySelector('#vocabulary-count').innerText.trim() !== ''")
    assert page.inner_text("#vocabulary-count") == f"{vocab['total']} words"
    assert first_cell(page, "word", "#vocabulary-grid") == vocab["rows"][0]["word"]
    shot(page, "vocabulary")
    # A grid column filter (floating filter under the header) filters on the server too.
    page.locator('#vocabulary-grid .ag-floating-filter[col-id="word"] input').fill("the")
    matching = api(demo, "/api/vocabulary", filter='{word} contains "the"')["total"]
    page.wait_for_function(
        f"document.querySelector('#vocabulary-count').innerText.startsWith('{matching} of')")
    wait_url(page, r"/vocabulary\?colfilter=")
    csv_href = page.get_attribute("#vocabulary-csv", "href")
    assert parse_qs(urlparse(csv_href).query)["filter"] == ['{word} contains "the"']
    page.click("#nav-problems")
    wait_url(page, r"/problems$")
    page.wait_for_selector("#problems-empty")
    summary = api(demo, "/api/summary")
    assert page.inner_text("#problems-empty") == f"No problems: all {summary['utterances']} lines loaded."
    shot(page, "problems_none")
    page.click("#nav-samples")
    wait_url(page, r"/samples$")
    page.wait_for_selector("#samples-grid .ag-row")
    watch.check()


HOSTILE = [
    {"audio_filepath": "missing.wav", "duration": 1.0, "text": "<script>alert(1)</script> hello",
     "pred_text": "<img src=x onerror=alert(1)> hello", "speaker": "<b>bold</b>"},
    {"audio_filepath": "missing2.wav", "duration": 2.0, "text": "plain words here", "pred_text": "plain word here"},
    '{"audio_filepath": "x.wav", "text": "no duration"}',
]


def test_hostile_text_is_shown_as_text(browser, tmp_path):
    manifest = tmp_path / "hostile.json"
    manifest.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in HOSTILE) + "\n")
    with sde_server(str(manifest)) as url:
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        # The missing audio files answer 404 to the <audio> element: expected here, nothing else is.
        watch = Watch(page, url, allow_console=("/audio/",))
        page.goto(url + "/samples")
        page.wait_for_selector("#samples-grid .ag-row")
        cell = '#samples-grid .ag-row[row-index="0"] [col-id="text"]'
        page.wait_for_function(f"(document.querySelector('{cell}') || {{}}).innerText > ''")  # block loaded
        assert page.inner_text(cell) == "<script>alert(1)</script> hello"
        assert page.locator("#samples-grid img").count() == 0
        page.goto(url + "/utterance/0")
        page.wait_for_selector("#utt-diff")
        assert page.get_by_text("<script>alert(1)</script> hello", exact=True).first.is_visible()
        assert page.locator("#utt-diff img, #utt-fields img, #utt-fields b").count() == 0
        # No waveform for a missing file: a message naming the file and the reason instead.
        alert = page.locator("#utt-audio-error")
        alert.wait_for(state="visible")
        assert "missing.wav" in alert.inner_text() and "not found" in alert.inner_text().lower()
        assert not page.locator("#utt-signal").is_visible()
        page.locator("#utt-audio").wait_for(state="hidden")   # no dead player beside the message
        shot(page, "hostile_utterance")
        page.goto(url + "/problems")
        page.wait_for_selector("#problems-table")
        row = page.locator("#problems-table tbody tr").first.inner_text()
        assert "hostile.json" in row and "3" in row and "duration" in row
        shot(page, "problems")
        page.goto(url + "/")
        page.wait_for_selector("#stat-skipped_lines")
        assert page.inner_text("#stat-skipped_lines") == "1"
        page.click("text=see Problems")
        wait_url(page, r"/problems$")
        page.wait_for_selector("#problems-table")
        time.sleep(0.3)  # let any late script run before checking for dialogs
        watch.check()
        ctx.close()
