"""The error-analysis session (issue 17) in headless Chromium, as a user works through it: the
listening loop (click to play, Space, seek, autoplay), the inspector's highlights and normalised
scores, context that stays (scroll and row on the way back, the ranked walk from Comparison,
columns in the URL), drill-down from the charts, the grid's filters and hints, and data health
(missing audio), each against the real `sde` CLI serving `sde demo` or a generated manifest.
"""

from __future__ import annotations

import html
import json
import re
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser_kit import DASH_CALLBACKS, Watch, api, sde_server, shot, wait_url

pytestmark = pytest.mark.browser


def query_of(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def arrived(page, uid: int) -> None:
    wait_url(page, rf"/utterance/{uid}(\?|$)")
    page.wait_for_function(f"document.querySelector('h4.page-title').innerText === 'Utterance {uid}'")


def wait_count(page, prefix: str, text: str) -> None:
    page.wait_for_function(f"(document.querySelector('#{prefix}-count') || {{innerText: ''}}).innerText"
                           f".startsWith({json.dumps(text)})")


def open_inspector(page, base: str, uid: int, **params) -> None:
    page.goto(base + f"/utterance/{uid}" + (f"?{urlencode(params)}" if params else ""))
    page.wait_for_selector("#utt-diff")


def audio_state(page) -> dict:
    return page.evaluate("(() => { const a = document.querySelector('#utt-audio');"
                         " return {paused: a.paused, t: a.currentTime, d: a.duration}; })()")


def wait_playing_past(page, seconds: float) -> None:
    page.wait_for_function(f"(() => {{ const a = document.querySelector('#utt-audio');"
                           f" return a && !a.paused && a.currentTime > {seconds}; }})()")


def click_plot(page, fraction: float) -> None:
    """Click the waveform at `fraction` of its width (plotly reports a click once it has hover
    data for the point under the mouse: the move comes first)."""
    page.wait_for_selector("#utt-signal .js-plotly-plot .main-svg")
    page.wait_for_function("(document.querySelector('#utt-signal .js-plotly-plot') || {}).__sdeBound !== undefined")
    box = page.locator("#utt-signal .js-plotly-plot .nsewdrag").first.bounding_box()
    x, y = box["x"] + box["width"] * fraction, box["y"] + box["height"] * 0.5
    page.mouse.move(x, y)
    page.mouse.click(x, y)


# ---------------------------------------------------------------- the listening loop

def test_clicking_the_waveform_plays_from_that_point(page, demo):
    watch = Watch(page, demo)
    one = api(demo, "/api/utterances/1")
    open_inspector(page, demo, 1)
    page.wait_for_function("document.querySelector('#utt-audio').readyState >= 1")
    assert audio_state(page)["paused"]
    start = 0.5 * one["duration"]
    for _ in range(10):  # plotly may need a hover before it reports the click
        click_plot(page, 0.5)
        if not audio_state(page)["paused"]:
            break
        page.wait_for_timeout(200)
    wait_playing_past(page, start * 0.8)
    first = audio_state(page)
    assert first["t"] < 0.8 * one["duration"] + 0.5          # from the click, not from the start or the end
    page.wait_for_function(f"document.querySelector('#utt-audio').currentTime > {first['t'] + 0.1}")
    assert not audio_state(page)["paused"]                     # the playhead moves: it is playing
    watch.check()


def test_space_plays_and_pauses_and_arrows_seek_on_the_focused_player(page, demo):
    watch = Watch(page, demo)
    q, sort = "{duration} > 3", "duration"
    ids = [r["id"] for r in api(demo, "/api/utterances", filter=q, sort=sort, page_size=1000)["rows"]]
    open_inspector(page, demo, ids[1], filter=q, sort=sort)
    page.wait_for_function("document.querySelector('#utt-audio').readyState >= 1")
    page.locator("h4.page-title").click()                        # the focus is on the page, not a control
    page.keyboard.press(" ")
    wait_playing_past(page, 0.05)
    page.keyboard.press(" ")
    page.wait_for_function("document.querySelector('#utt-audio').paused")
    assert page.evaluate("window.scrollY") == 0                  # Space did not scroll the page
    # With the player focused, ← / → seek and the utterance stays.
    page.evaluate("(() => { const a = document.querySelector('#utt-audio'); a.currentTime = 1.0; a.focus(); })()")
    # (an Ogg seek lands on the nearest page it can decode from: within a few hundredths of a second)
    page.wait_for_function("!document.querySelector('#utt-audio').seeking")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("Math.abs(document.querySelector('#utt-audio').currentTime - 3.0) < 0.25")
    page.wait_for_function("!document.querySelector('#utt-audio').seeking")  # the seek has landed
    page.keyboard.press("ArrowLeft")
    try:
        page.wait_for_function("Math.abs(document.querySelector('#utt-audio').currentTime - 1.0) < 0.25",
                               timeout=5000)
    except Exception:
        raise AssertionError(audio_state(page)) from None
    assert urlparse(page.url).path == f"/utterance/{ids[1]}"
    page.keyboard.press(" ")                                     # on the player too: one toggle, not two
    wait_playing_past(page, 1.05)
    page.keyboard.press(" ")
    page.wait_for_function("document.querySelector('#utt-audio').paused")
    # j still walks the list from the player; elsewhere → does too.
    page.keyboard.press("j")
    arrived(page, ids[2])
    page.locator("h4.page-title").click()
    page.keyboard.press("ArrowLeft")
    arrived(page, ids[1])
    watch.check()


def test_autoplay_plays_the_next_utterance_and_is_kept_for_the_session(page, demo):
    watch = Watch(page, demo)
    q = "{wer} > 0"
    ids = [r["id"] for r in api(demo, "/api/utterances", filter=q, page_size=1000)["rows"]]
    open_inspector(page, demo, ids[0], filter=q)
    page.locator("label[for='utt-autoplay']").click()
    page.wait_for_function("document.querySelector('#utt-autoplay').checked")
    page.keyboard.press("j")
    arrived(page, ids[1])
    wait_playing_past(page, 0.1)                                  # it plays without a click
    stored = page.evaluate("JSON.stringify(Object.keys(window.sessionStorage))")
    assert "utt-autoplay" in stored                               # remembered for this tab's session
    assert page.evaluate("document.querySelector('#utt-autoplay').checked")
    # Switched off: the next one waits for the user.
    page.locator("label[for='utt-autoplay']").click()
    page.wait_for_function("!document.querySelector('#utt-autoplay').checked")
    page.keyboard.press("j")
    arrived(page, ids[2])
    page.wait_for_function("document.querySelector('#utt-audio').readyState >= 1")
    page.wait_for_timeout(400)   # a started play() would have advanced by now
    assert audio_state(page)["paused"]
    watch.check()


def test_the_mel_spectrogram_stays_on_the_next_utterance(page, demo):
    # Switched to mel, j/k (or a reload) opened the next utterance in linear again: the choice
    # was neither in the URL nor remembered, so a user comparing mel spectrograms re-picked it
    # on every utterance.
    watch = Watch(page, demo)
    q = "{wer} > 0"
    ids = [r["id"] for r in api(demo, "/api/utterances", filter=q, page_size=1000)["rows"]]
    mel_title = ("(document.querySelector('#utt-signal .js-plotly-plot') || {}).layout?.yaxis2?.title?.text"
                 "?.includes('mel')")
    open_inspector(page, demo, ids[0], filter=q)
    page.locator("#utt-signal-kind label", has_text="mel").click()
    page.wait_for_function(mel_title)
    page.locator("h4.page-title").click()
    page.keyboard.press("j")
    arrived(page, ids[1])
    assert page.is_checked("#utt-signal-kind input[value='mel']")
    page.wait_for_function(mel_title)
    page.reload()
    page.wait_for_selector("h4.page-title")
    arrived(page, ids[1])
    page.wait_for_function(mel_title)
    # Back to linear, with ← on the focused radio group (it moved to the next utterance): remembered too.
    page.focus("#utt-signal-kind input[value='mel']")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"!({mel_title})")
    assert urlparse(page.url).path == f"/utterance/{ids[1]}"
    page.locator("h4.page-title").click()
    page.keyboard.press("j")
    arrived(page, ids[2])
    assert page.is_checked("#utt-signal-kind input[value='linear']")
    watch.check()


# ---------------------------------------------------------------- the inspector shows what it was opened for

def first_row_opens_inspector(page) -> None:
    page.wait_for_selector("#samples-grid .ag-row")
    cell = '#samples-grid .ag-row[row-index="0"] [col-id="text"]'
    page.wait_for_function(f"(document.querySelector('{cell}') || {{}}).innerText > ''")
    page.locator(cell).click()
    wait_url(page, r"/utterance/\d+")
    page.wait_for_selector("#utt-diff")


def test_inspector_reached_from_an_error_highlights_that_error(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/samples?" + urlencode({"error": "sub:light:night", "hyp": "pred_text"}))
    first_row_opens_inspector(page)
    assert query_of(page)["filter"] == ['{error} = "sub light night"']
    hits = page.locator("#utt-diff-pred_text > .diff .diff-hit")          # the raw diff (the normalised
    assert hits.count() == 1                                              # one below marks it too)
    assert (hits.first.locator("del").inner_text(), hits.first.locator("ins").inner_text()) == ("light", "night")
    assert page.locator("#utt-diff-pred_text_conformer .diff-hit").count() == 0   # another hypothesis's diff
    shot(page, "session_error_highlight")
    watch.check()


def test_inspector_reached_from_a_word_highlights_that_word(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/samples?" + urlencode({"filter": '{text} has "light"'}))
    first_row_opens_inspector(page)
    assert [m.inner_text() for m in page.locator("#utt-reference mark.diff-hit").all()] == ["light"]
    hits = page.locator("#utt-diff-pred_text > .diff .diff-hit")
    assert hits.count() >= 1 and "light" in hits.first.inner_text()
    watch.check()


def test_normalized_scores_and_diff_beside_the_raw_ones(page, demo):
    watch = Watch(page, demo)
    row = api(demo, "/api/utterances", filter='{text} contains "2021"')["rows"][0]
    assert row["wer_norm"] < row["wer"]
    open_inspector(page, demo, row["id"])
    assert page.inner_text("#utt-wer-pred_text") == f"WER {row['wer']:.2f}%"           # raw stays
    assert page.inner_text("#utt-wer-norm-pred_text") == f"WER {row['wer_norm']:.2f}%"  # normalised beside it
    assert page.inner_text("#utt-cer-norm-pred_text") == f"CER {row['cer_norm']:.2f}%"
    norm = page.inner_text("#utt-diff-norm-pred_text")
    assert "twenty" in norm and "2021" not in norm                 # the normalised texts, diffed
    assert "2021" in page.inner_text("#utt-diff-pred_text .diff")
    shot(page, "session_normalized")
    watch.check()


# ---------------------------------------------------------------- context that stays

def ranked(page, demo: str, a: str = "wer", b: str = "wer_conformer") -> list[int]:
    """The ids of Comparison's ranked table (its page open), checked against the API's scores:
    largest |B − A| first (ties, equal to the API's rounding, in any order)."""
    page.wait_for_selector("#cmp-utt-grid .ag-row")
    ids = page.evaluate("(() => { const out = []; dash_ag_grid.getApi('cmp-utt-grid')"
                        ".forEachNodeAfterFilterAndSort(n => out.push(n.data.id)); return out; })()")
    rows = {r["id"]: r for r in api(demo, "/api/utterances", page_size=1000)["rows"]}
    gaps = [abs(rows[i][b] - rows[i][a]) for i in ids]
    assert all(g > 0 for g in gaps) and all(x >= y - 1e-6 for x, y in zip(gaps, gaps[1:]))
    assert len(ids) == sum(1 for r in rows.values() if r[a] is not None and r[b] is not None and r[a] != r[b])
    return ids


def test_quick_presses_move_as_many_utterances_as_pressed(page, demo):
    """j pressed again before the next utterance had come followed the old page's link once more
    and went nowhere (8 presses 40 ms apart moved 4): the presses are owed and followed as each
    page comes, k paying back j; u drops what is owed."""
    watch = Watch(page, demo)
    order = [r["id"] for r in api(demo, "/api/utterances", sort="-duration", page_size=1000)["rows"]]
    assert len(order) >= 10
    open_inspector(page, demo, order[0], sort="-duration")
    page.locator("h4.page-title").click()
    for _ in range(6):
        page.keyboard.press("j")
    arrived(page, order[6])
    for key in "kkjkk":
        page.keyboard.press(key)
    arrived(page, order[3])
    page.wait_for_timeout(500)  # nothing more is owed: it stays
    arrived(page, order[3])
    assert page.inner_text("#utt-position").startswith(f"4 of {len(order)}")
    for key in "jjju":
        page.keyboard.press(key)
    wait_url(page, r"/samples")
    page.wait_for_timeout(500)
    assert "/samples" in page.url  # what was owed went with the way back
    watch.check()


def test_comparison_row_opens_a_walk_of_the_ranked_differences(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/comparison")
    order = ranked(page, demo)
    cell = '#cmp-utt-grid .ag-row[row-index="0"] [col-id="text"]'
    page.wait_for_function(f"(document.querySelector('{cell}') || {{}}).innerText > ''")
    page.locator(cell).click()
    arrived(page, order[0])
    q = query_of(page)
    assert q["from"] == ["comparison"] and q["a"] == ["pred_text"] and q["b"] == ["pred_text_conformer"]
    assert page.inner_text("#utt-position").startswith(f"difference 1 of {len(order)}")
    assert page.inner_text("#utt-role-pred_text") == "A" and page.inner_text("#utt-role-pred_text_conformer") == "B"
    page.keyboard.press("j")
    arrived(page, order[1])                                   # the next difference, not the next id
    page.keyboard.press("j")
    arrived(page, order[2])
    page.keyboard.press("k")
    arrived(page, order[1])
    page.keyboard.press("u")
    wait_url(page, r"/comparison\?a=pred_text&b=pred_text_conformer$")
    page.wait_for_selector("#cmp-utt-grid")
    watch.check()


def column_shown(page, column: str) -> bool:
    """Whether the Samples grid shows `column` (the grid renders only the header cells in view)."""
    return page.evaluate(f"dash_ag_grid.getApiAsync('samples-grid').then(api => "
                         f"api.getColumn({json.dumps(column)}).isVisible())")


def wait_column(page, column: str) -> None:
    page.wait_for_selector("#samples-grid .ag-header-cell")
    for _ in range(100):
        if column_shown(page, column):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the grid does not show {column}")


def test_comparison_point_opens_the_ranked_walk_too(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/comparison")
    order = ranked(page, demo)
    page.wait_for_function("document.querySelectorAll('#cmp-utt-fig .main-svg').length >= 1")
    page.locator("#cmp-utt-fig").scroll_into_view_if_needed()
    # WebGL points have no DOM nodes: click where plotly draws a point off the diagonal (A ≠ B).
    found = page.evaluate("""() => {
        const gd = document.getElementById('cmp-utt-fig').querySelector('.js-plotly-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
        for (const tr of gd._fullData) {
            for (let i = 0; tr.x && i < tr.x.length; i++) {
                if (tr.x[i] !== tr.y[i]) {
                    const id = Array.isArray(tr.customdata[i]) ? tr.customdata[i][0] : tr.customdata[i];
                    return [box.left + xa._offset + xa.l2p(tr.x[i]), box.top + ya._offset + ya.l2p(tr.y[i]), id];
                }
            }
        }
        return null; }""")
    assert found is not None
    x, y, _uid = found
    for _ in range(10):  # plotly reports the click once it has hover data for the point
        if "/comparison" not in page.url:
            break
        page.mouse.move(x, y)
        page.mouse.click(x, y)
        try:
            page.wait_for_url(re.compile(r"/utterance/\d+"), timeout=3000)
        except PlaywrightTimeout:
            continue
    page.wait_for_selector("#utt-position")
    uid = int(urlparse(page.url).path.rsplit("/", 1)[1])
    assert query_of(page)["from"] == ["comparison"]
    place = order.index(uid)
    assert page.inner_text("#utt-position").startswith(f"difference {place + 1} of {len(order)}")
    if place + 1 < len(order):
        page.keyboard.press("j")
        arrived(page, order[place + 1])
    else:
        page.keyboard.press("k")
        arrived(page, order[place - 1])
    watch.check()


def test_column_choices_are_part_of_the_url(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/samples")
    page.wait_for_selector("#samples-grid .ag-row")
    page.click("#samples-columns-toggle")
    page.locator("#samples-columns label", has_text=re.compile(r"^line$")).click()
    wait_url(page, r"cols=")
    cols = query_of(page)["cols"][0].split(",")
    assert "line" in cols
    wait_column(page, "line")
    page.reload()                                              # the URL alone brings the columns back
    wait_column(page, "line")
    assert query_of(page)["cols"][0].split(",") == cols
    # ... and so does the way back from the inspector.
    first_row_opens_inspector(page)
    page.keyboard.press("u")
    wait_url(page, r"/samples\?")
    assert query_of(page)["cols"][0].split(",") == cols
    wait_column(page, "line")
    watch.check()


# ---------------------------------------------------------------- the grid's filters and hints

def test_numeric_column_filter_means_at_least_and_shows_its_operator(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/samples")
    page.wait_for_selector("#samples-grid .ag-row")
    page.locator('#samples-grid .ag-floating-filter[col-id="wer"] input[type="number"]').fill("10")
    expected = api(demo, "/api/utterances", filter="{wer} >= 10")["total"]
    assert 0 < expected < 30
    wait_count(page, "samples", f"{expected} of")
    page.wait_for_function("document.querySelector('#samples-colfilter-text').innerText.includes('{wer} >= 10')")
    wait_url(page, r"colfilter=")
    model = json.loads(query_of(page)["colfilter"][0])
    assert model["wer"]["type"] == "greaterThanOrEqual"
    watch.check()


def test_a_case_mismatch_offers_the_case_insensitive_filter(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/samples?" + urlencode({"filter": '{lang} = "en-us"'}))
    page.wait_for_selector("#samples-grid")
    wait_count(page, "samples", "0 of")
    hint = page.locator("#samples-filter-hint")
    hint.locator("#samples-hint-link").wait_for()
    assert "=~" in hint.inner_text()
    page.click("#samples-hint-link")
    wait_url(page, r"/samples\?filter=")
    assert query_of(page)["filter"] == ['{lang} =~ "en-us"']
    expected = api(demo, "/api/utterances", filter='{lang} = "en-US"')["total"]
    wait_count(page, "samples", f"{expected} of")
    watch.check()


def test_a_rejected_filter_takes_away_the_hint_about_the_one_before(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/samples?" + urlencode({"filter": '{lang} = "en-us"'}))
    page.locator("#samples-filter-hint #samples-hint-link").wait_for()
    box = page.locator("#samples-filter")
    box.fill("{wer} >> 10")
    box.press("Enter")
    page.locator("#samples-filter-feedback").filter(has_text="{wer}").wait_for()
    page.locator("#samples-hint-link").wait_for(state="detached")
    assert page.locator("#samples-filter-hint").inner_text() == ""
    wait_count(page, "samples", "0 of")  # the rows of the filter before stay, as the box says
    watch.check()


def test_a_bad_filter_shows_where_it_goes_wrong_and_the_placeholder_is_real(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/samples")
    page.wait_for_selector("#samples-grid .ag-row")
    speakers = {r["speaker"] for r in api(demo, "/api/utterances", page_size=1000)["rows"]}
    placeholder = page.get_attribute("#samples-filter", "placeholder")
    m = re.fullmatch(r'e\.g\. \{wer\} > 20 && \{speaker\} = "(.+)"', placeholder)
    assert m and m.group(1) in speakers
    box = page.locator("#samples-filter")
    box.fill("{wer} > 10 && {duration} >> 2")
    box.press("Enter")
    excerpt = page.locator("#samples-filter-excerpt pre")
    excerpt.wait_for(state="visible")
    text_line, caret_line = excerpt.inner_text().split("\n")[:2]
    assert text_line.strip().startswith("{wer} > 10") and caret_line.strip() == "^"
    assert text_line[len(caret_line) - 1] == ">"                # the caret is under the stray ">"
    watch.check()


def test_where_b_is_worse_than_a(page, demo):
    watch = Watch(page, demo)
    rows = api(demo, "/api/utterances", page_size=1000)["rows"]
    worse = sum(1 for r in rows if r["wer_conformer"] is not None and r["wer"] is not None
                and r["wer_conformer"] > r["wer"])
    page.goto(demo + "/comparison")
    link = page.locator("#cmp-worse-link")
    link.wait_for()
    assert link.inner_text().split()[-1] == str(worse)
    link.click()
    wait_url(page, r"/samples\?filter=")
    assert query_of(page)["filter"] == ["{wer_conformer} > {wer}"]
    wait_count(page, "samples", f"{worse} of")
    watch.check()


# ---------------------------------------------------------------- drill-down and readable charts

def first_trace(page, plot: str) -> dict:
    """The first trace of a drawn plotly figure: its counts and each bar's customdata."""
    page.wait_for_function(f"(document.querySelector('{plot}') || {{}}).data !== undefined")
    return page.evaluate(f"(() => {{ const t = document.querySelector('{plot}').data[0];"
                         f" return {{y: Array.from(t.y), custom: t.customdata}}; }})()")


def click_bar(page, plot: str, k: int, path: str) -> None:
    """Click bar k of a figure until the page moves to `path` with a filter."""
    url = re.compile(re.escape(path) + r"\?filter=")
    bar = page.locator(f"{plot} .bars .point path").nth(k)
    for _ in range(10):  # plotly reports the click once it has hover data for the bar
        if path in page.url:
            break
        bar.hover(force=True)
        bar.click(force=True)
        try:
            page.wait_for_url(url, timeout=3000)
        except PlaywrightTimeout:
            continue
    wait_url(page, re.escape(path) + r"\?filter=")


def test_histogram_bar_click_lists_that_bin(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/")
    plot = "#hist-duration .js-plotly-plot"
    trace = first_trace(page, plot)
    k = int(np.argmax(trace["y"]))
    lo, hi, q = trace["custom"][k][:3]
    q = html.unescape(q)                                        # user text in a figure travels escaped
    click_bar(page, plot, k, "/samples")
    assert query_of(page)["filter"] == [q]
    last = k == len(trace["y"]) - 1
    assert q == f"{{duration}} >= {lo:g} && {{duration}} {'<=' if last else '<'} {hi:g}"
    wait_count(page, "samples", f"{trace['y'][k]} of")          # exactly the utterances of the bar
    watch.check()


def test_a_word_accuracy_bar_lists_its_words_in_vocabulary(page, demo):
    """The page says "click a bar"; the word accuracy bars did nothing (found by exploratory QA)."""
    watch = Watch(page, demo)
    page.goto(demo + "/")
    plot = "#hist-word_accuracy .js-plotly-plot"
    trace = first_trace(page, plot)
    k = 0                                                       # never recognised
    q = html.unescape(trace["custom"][k][2])
    click_bar(page, plot, k, "/vocabulary")
    assert query_of(page)["filter"] == [q] and q.endswith("<= 0")
    total = api(demo, "/api/vocabulary", filter=q, page_size=1)["total"]
    assert total == trace["y"][k] > 0                           # exactly the words of the bar
    wait_count(page, "vocabulary", f"{total:,}")
    watch.check()


def test_log_counts_and_one_number_style(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .ytick').length > 4")
    ticks = page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot .xtick text, "
                          ".js-plotly-plot .ytick text')).map(t => t.textContent)")
    assert ticks and not [t for t in ticks if re.search(r"\d[kMGTµm]$", t)]   # no SI suffixes
    page.locator("label[for='stats-log-y']").click()
    wait_url(page, r"\?logy=1$")
    page.wait_for_function("document.querySelector('#hist-wer .js-plotly-plot')._fullLayout.yaxis.type === 'log'")
    page.reload()
    page.wait_for_function("(document.querySelector('#hist-wer .js-plotly-plot') || {})._fullLayout !== undefined")
    assert page.evaluate("document.querySelector('#hist-wer .js-plotly-plot')._fullLayout.yaxis.type") == "log"
    assert page.is_checked("#stats-log-y")
    shot(page, "session_statistics_log")
    watch.check()


def test_the_normalisation_boxes_stay_through_a_reload_and_the_json_link_follows(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/")
    field = next(iter(api(demo, "/api/summary")["hypotheses"]))
    lower = api(demo, "/api/summary", normalize="lower")["hypotheses"][field]["normalized"]
    page.wait_for_selector("#stats-normalize input")
    page.locator("#stats-normalize label", has_text="punctuation").click()
    page.locator("#stats-normalize label", has_text="numbers").click()
    wait_url(page, r"/\?normalize=lower$")
    page.reload()
    page.wait_for_function(
        f"(document.querySelector('#stat-{field}-wer') || {{}}).parentElement !== undefined && "
        f"document.querySelector('#stat-{field}-wer').parentElement.innerText.includes('normalised: {lower['wer']:.2f}%')")
    checked = page.evaluate("Array.from(document.querySelectorAll('#stats-normalize input:checked')).map(i => i.value)")
    assert checked == ["lower"]
    assert page.get_attribute("#stats-json", "href") == "/api/summary?normalize=lower"
    watch.check()


def test_leaving_statistics_before_its_switch_is_answered_leaves_no_error(page, demo):
    """The log-y switch reports its value as Statistics is laid out; its answer, held back here
    until the user is on Samples, patched the figures of a page no longer there."""
    watch = Watch(page, demo)
    page.goto(demo + "/samples")
    page.wait_for_selector("h4.page-title")
    held, holding = [], [True]

    def hold(route):
        if holding[0] and "stats-log-y" in (route.request.post_data or ""):
            held.append(route)
        else:
            route.continue_()

    page.route(DASH_CALLBACKS, hold)
    with page.expect_request(lambda request: bool(DASH_CALLBACKS.search(request.url))
                             and "stats-log-y" in (request.post_data or "")):
        page.click("#nav-statistics a")
    page.click("#nav-samples a")
    wait_url(page, r"/samples")
    page.wait_for_selector("#samples-grid")
    assert held, "the switch's report was not held"
    holding[0] = False
    for route in held:
        with page.expect_response(lambda response, asked=route.request: response.request == asked) as answered:
            route.continue_()
        answered.value.finished()
    page.unroute(DASH_CALLBACKS, hold)
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)))")  # applied
    watch.check()


def test_statistics_shows_field_cardinality_linked_to_the_breakdown(page, demo):
    watch = Watch(page, demo)
    rows = api(demo, "/api/utterances", page_size=1000)["rows"]
    page.goto(demo + "/")
    page.wait_for_selector("#stats-fields")
    for field in ("speaker", "lang"):
        assert page.inner_text(f"#stat-field-{field}") == str(len({r[field] for r in rows}))
    page.click("#stat-field-speaker-link")
    wait_url(page, r"/errors\?by=speaker$")
    page.wait_for_selector("#errors-breakdown-grid .ag-row")
    watch.check()


# ---------------------------------------------------------------- a generated manifest: long list, missing audio

ROWS = 240
MISSING = {237: "gone-a.wav", 238: "gone-b.wav", 239: "gone-a.wav"}
PAST_END = ROWS  # one more line: a segment from 5 s of the 2 s file


@pytest.fixture(scope="module")
def health(tmp_path_factory):
    """`sde MANIFEST` on 240 utterances of one real file, three of which name files that are not there."""
    d = tmp_path_factory.mktemp("health")
    sr = 16000
    t = np.arange(sr * 2) / sr
    sf.write(d / "tone.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype("float32"), sr)
    with (d / "long.json").open("w") as f:
        for i in range(ROWS):
            f.write(json.dumps({"audio_filepath": MISSING.get(i, "tone.wav"), "duration": 0.5 + (i % 13) * 0.1,
                                "text": f"utterance number {i}", "pred_text": f"utterance {i}",
                                "speaker": f"s{i % 7}"}) + "\n")
        f.write(json.dumps({"audio_filepath": "tone.wav", "offset": 5.0, "duration": 1.0, "text": "too late",
                            "pred_text": "too late", "speaker": "s0"}) + "\n")
    with sde_server(str(d / "long.json")) as url:
        yield url


def visible_row_indexes(page) -> list[int]:
    return page.evaluate("""(() => {
        const view = document.querySelector('#samples-grid .ag-body-viewport').getBoundingClientRect();
        return Array.from(document.querySelectorAll('#samples-grid .ag-center-cols-container .ag-row'))
          .filter(r => { const b = r.getBoundingClientRect(); return b.top >= view.top && b.bottom <= view.bottom; })
          .map(r => Number(r.getAttribute('row-index'))); })()""")


def scroll_to_row(page, index: int) -> None:
    """Scroll the grid as a user would until row `index` shows (once the grid knows its row count)."""
    page.wait_for_function(f"""(() => {{ try {{ return dash_ag_grid.getApi('samples-grid').getDisplayedRowCount() > {index}; }}
                               catch (e) {{ return false; }} }})()""")
    page.evaluate(f"dash_ag_grid.getApi('samples-grid').ensureIndexVisible({index}, 'middle')")
    cell = f'#samples-grid .ag-center-cols-container .ag-row[row-index="{index}"] [col-id="text"]'
    page.wait_for_function(f"(document.querySelector('{cell}') || {{}}).innerText > ''")


def wait_selected(page, index: int) -> None:
    page.wait_for_function(
        f"document.querySelector('#samples-grid .ag-center-cols-container .ag-row-selected[row-index=\"{index}\"]')")
    page.wait_for_function(f"""(() => {{
        const view = document.querySelector('#samples-grid .ag-body-viewport').getBoundingClientRect();
        const r = document.querySelector('#samples-grid .ag-center-cols-container .ag-row[row-index="{index}"]');
        if (!r) return false;
        const b = r.getBoundingClientRect(); return b.top >= view.top && b.bottom <= view.bottom; }})()""")


def test_back_to_samples_keeps_the_scroll_position_and_the_row(page, health):
    watch = Watch(page, health)
    sort = "-duration"
    ids = [r["id"] for r in api(health, "/api/utterances", sort=sort, page_size=1000)["rows"]]
    page.goto(health + "/samples?" + urlencode({"sort": sort}))
    page.wait_for_selector("#samples-grid .ag-row")
    scroll_to_row(page, 150)
    page.locator('#samples-grid .ag-center-cols-container .ag-row[row-index="150"] [col-id="text"]').click()
    arrived(page, ids[150])
    page.keyboard.press("j")                                    # walk on: back shows where the walk ended
    arrived(page, ids[151])
    page.keyboard.press("u")
    wait_url(page, r"/samples\?")
    wait_selected(page, 151)
    assert 0 not in visible_row_indexes(page)                    # not back at the top
    shot(page, "session_back_to_row")
    # The browser's back button returns to the clicked row as well.
    scroll_to_row(page, 200)
    page.locator('#samples-grid .ag-center-cols-container .ag-row[row-index="200"] [col-id="text"]').click()
    arrived(page, ids[200])
    page.go_back()
    wait_url(page, r"/samples")
    wait_selected(page, 200)
    watch.check()


def test_back_forward_back_still_shows_the_row(page, health):
    """The way back was read once: a second Back (after Forward) showed the list at its top with no
    row selected (found by exploratory QA)."""
    watch = Watch(page, health)
    query = {"filter": "{duration} > 0", "sort": "-duration"}
    ids = [r["id"] for r in api(health, "/api/utterances", **query, page_size=1000)["rows"]]
    page.goto(health + "/samples?" + urlencode(query))
    page.wait_for_selector("#samples-grid .ag-row")
    scroll_to_row(page, 120)
    page.locator('#samples-grid .ag-center-cols-container .ag-row[row-index="120"] [col-id="text"]').click()
    arrived(page, ids[120])
    for _ in range(2):
        page.go_back()
        wait_url(page, r"/samples")
        wait_selected(page, 120)
        page.go_forward()
        arrived(page, ids[120])
    watch.check()


def test_column_filters_survive_the_inspector_and_the_back_button(page, health):
    watch = Watch(page, health)
    colfilter = json.dumps({"speaker": {"filterType": "text", "type": "equals", "filter": "s3"}})
    page.goto(health + "/samples?" + urlencode({"filter": "{duration} > 1", "colfilter": colfilter}))
    wait_count(page, "samples", "")
    expected = api(health, "/api/utterances", filter='{duration} > 1 && {speaker} = "s3"')["total"]
    wait_count(page, "samples", f"{expected} of")
    entries = page.evaluate("history.length")
    page.locator('#samples-grid .ag-row[row-index="2"] [col-id="text"]').click()
    wait_url(page, r"/utterance/")
    assert query_of(page)["filter"] == ["{duration} > 1"] and "colfilter" in query_of(page)
    page.wait_for_selector("#utt-diff")
    page.keyboard.press("u")
    wait_url(page, r"/samples\?")
    wait_selected(page, 2)
    # The box holds the box's filter, the grid its column filter: the view as the user left it.
    assert page.input_value("#samples-filter") == "{duration} > 1"
    assert page.evaluate("dash_ag_grid.getApi('samples-grid').getFilterModel()") == json.loads(colfilter)
    wait_count(page, "samples", f"{expected} of")
    # Only the inspector and the way back were added to the history: Back returns to the inspector.
    assert page.evaluate("history.length") == entries + 2
    page.go_back()
    wait_url(page, r"/utterance/")
    watch.check()


def test_missing_audio_is_counted_listed_and_filterable(page, health):
    # Nothing may fail: the inspector of a file the start-up check found missing does not ask for it.
    watch = Watch(page, health)
    asked: list[str] = []
    page.on("request", lambda req: asked.append(req.url) if "/audio/" in req.url else None)
    summary = api(health, "/api/summary")
    assert summary["audio_missing"] == len(MISSING) and summary["audio_missing_files"] == len(set(MISSING.values()))
    listed = api(health, "/api/utterances", filter="{audio_exists} = false")
    assert sorted(r["id"] for r in listed["rows"]) == sorted(MISSING)
    assert all(r["audio_exists"] is True for r in api(health, "/api/utterances", page_size=5)["rows"])
    page.goto(health + "/problems")
    block = page.locator("#problems-missing-audio")
    block.wait_for()
    text = block.inner_text()
    assert "2 audio files not found" in text and "gone-a.wav" in text and "gone-b.wav" in text
    page.click("#problems-missing-audio-link")
    wait_url(page, r"/samples\?filter=")
    assert query_of(page)["filter"] == ["{audio_exists} = false"]
    wait_count(page, "samples", f"{len(MISSING)} of")
    wait_column(page, "audio_exists")                                    # shown when some are missing
    gone = sorted(MISSING)[0]
    page.goto(health + f"/utterance/{gone}")
    alert = page.locator("#utt-audio-error")
    alert.wait_for(state="visible")
    assert MISSING[gone] in alert.inner_text() and "not found" in alert.inner_text().lower()
    page.locator("#utt-audio").wait_for(state="hidden")
    assert page.get_attribute("#utt-audio", "src") is None and asked == []
    # no download of a file that is not there, no hint to click a waveform that is not shown
    assert not page.locator("#utt-wav").is_visible() and not page.locator("#utt-play-hint").is_visible()
    watch.check()


def test_an_offset_past_the_end_of_the_file_is_explained_without_a_failing_request(page, health):
    watch = Watch(page, health)
    asked: list[str] = []
    page.on("request", lambda req: asked.append(req.url) if "/audio/" in req.url else None)
    open_inspector(page, health, PAST_END, filter="{audio_exists} = true")   # found at start-up: its offset is not
    alert = page.locator("#utt-audio-error")
    alert.wait_for(state="visible")
    assert "tone.wav" in alert.inner_text() and "end" in alert.inner_text()
    assert page.get_attribute("#utt-audio", "src") is None
    assert not page.locator("#utt-wav").is_visible() and not page.locator("#utt-play-hint").is_visible()
    page.keyboard.press("k")                               # the one before plays again
    arrived(page, 236)
    page.wait_for_function("(document.querySelector('#utt-audio') || {}).readyState >= 1")
    assert page.locator("#utt-wav").is_visible() and page.locator("#utt-play-hint").is_visible()
    assert page.locator("#utt-audio-error").count() == 0
    assert {urlparse(u).path for u in asked} == {"/audio/236.ogg"}
    watch.check()


def test_inspector_keys_leave_text_boxes_alone(page, health):
    watch = Watch(page, health)
    open_inspector(page, health, 5)
    page.evaluate("(() => { const i = document.createElement('input'); i.id = 'scratch';"
                  " document.body.prepend(i); i.focus(); })()")
    page.keyboard.type("jk u")
    assert page.input_value("#scratch") == "jk u"
    assert urlparse(page.url).path == "/utterance/5"
    watch.check()

