"""The Errors and Comparison pages end to end in headless Chromium, served by the real CLI
(`python -m sde.cli demo --port 0 --no-cache`): the numbers shown equal the JSON twins
(/api/errors, /api/compare), a click on a substitution pair opens /samples?error=…, a click on
a utterance point opens the inspector, and the console stays clean.

Screenshots: tests/output/screenshots/errors.png and comparison.png (look at them after a change).
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser_kit import Watch, api, sde_server, shot

pytestmark = pytest.mark.browser


def grid_texts(page, grid: str, col: str) -> list[str]:
    return page.locator(f'#{grid} .ag-center-cols-container [col-id="{col}"]').all_inner_texts()


def wait_breakdown_rows(page, index: int = 0) -> None:
    """Until the breakdown table (infinite row model) shows row `index` from the server."""
    page.wait_for_function(
        "(i) => { const c = document.querySelector(`#errors-breakdown-grid .ag-row[row-index=\"${i}\"] "
        "[col-id=value]`); return c && c.innerText.trim() !== ''; }", arg=index)


def click_first_bar(page, figure: str) -> None:
    """Click a chart's first bar once Plotly shows its hover label: Plotly reports a click on the
    points it hovers, and under load a click sent right after the pointer arrived came before them
    (no clickData, no navigation)."""
    bar = page.locator(f"#{figure} .point").first
    bar.hover(force=True)
    page.wait_for_selector(f"#{figure} .hoverlayer .hovertext")
    bar.click(force=True)


def test_errors_page_matches_the_api_and_links_to_samples(page, demo):
    watch = Watch(page, demo)
    summary = api(demo, "/api/summary")
    field = next(iter(summary["hypotheses"]))
    expected = api(demo, "/api/errors", hyp=field, limit=200)
    page.goto(demo + "/errors")
    page.wait_for_selector("#errors-sub-grid .ag-row")
    page.wait_for_function("document.querySelectorAll('#errors-tables .js-plotly-plot .main-svg').length >= 3")

    # The tables hold the API's rows (the grid renders what fits; compare those, in API order).
    subs = expected["substitutions"]
    shown_refs = grid_texts(page, "errors-sub-grid", "ref")
    shown_hyps = grid_texts(page, "errors-sub-grid", "hyp")
    shown_counts = grid_texts(page, "errors-sub-grid", "count")
    assert shown_refs and len(shown_refs) <= len(subs)
    assert [(r["ref"], r["hyp"], str(r["count"])) for r in subs[:len(shown_refs)]] == \
        list(zip(shown_refs, shown_hyps, shown_counts))
    for kind, grid in (("deletions", "errors-del-grid"), ("insertions", "errors-ins-grid")):
        words = grid_texts(page, grid, "word")
        counts = grid_texts(page, grid, "count")
        assert [(r["word"], str(r["count"])) for r in expected[kind][:len(words)]] == list(zip(words, counts))
    # The summary line's totals equal /api/summary's.
    h = summary["hypotheses"][field]
    text = page.inner_text("#errors-summary")
    assert f"{h['substitutions']:,} substitutions" in text
    assert f"{h['deletions']:,} deletions" in text
    assert f"{h['insertions']:,} insertions" in text
    assert f"WER {h['wer']:.2f}%" in text
    # Breakdown by speaker (the default): one row per speaker, as /api/breakdown says.
    wait_breakdown_rows(page)
    breakdown = api(demo, "/api/breakdown", by="speaker", hyp=field)["rows"]
    assert page.locator("#errors-breakdown-grid .ag-center-cols-container .ag-row").count() == len(breakdown)
    shot(page, "errors")

    # A bad filter shows a hint and changes nothing; a good one restricts and goes into the URL.
    box = page.locator("#errors-filter")
    box.fill("{wer} >> 10")
    box.press("Enter")
    page.locator("#errors-filter-feedback").wait_for(state="visible")
    q = "{duration} > 3"
    box.fill(q)
    box.press("Enter")
    page.wait_for_url(re.compile(r"/errors\?.*filter="))
    assert parse_qs(urlparse(page.url).query)["filter"] == [q]
    filtered = api(demo, "/api/errors", hyp=field, filter=q, limit=200)
    first = filtered["substitutions"][0]
    page.wait_for_function(
        "([ref, hyp]) => { const r = document.querySelector('#errors-sub-grid .ag-row[row-index=\"0\"]');"
        " return r && r.querySelector('[col-id=ref]').innerText === ref"
        " && r.querySelector('[col-id=hyp]').innerText === hyp; }", arg=[first["ref"], first["hyp"]])
    assert "match the filter" in page.inner_text("#errors-summary")

    # A click on a substitution pair opens the samples page with error=sub:REF:HYP.
    page.locator('#errors-sub-grid .ag-row[row-index="0"] [col-id="ref"]').click()
    page.wait_for_url(re.compile(r"/samples\?"))
    params = parse_qs(urlparse(page.url).query)
    assert params["error"] == [f"sub:{first['ref']}:{first['hyp']}"]
    assert params["hyp"] == [field]
    assert params["filter"] == [q]
    page.wait_for_selector("#samples-grid")
    # The samples page shows exactly the utterances where that substitution happens (within the filter).
    expected = api(demo, "/api/utterances", error=params["error"][0], hyp=field, filter=q)
    assert expected["total"] >= 1
    page.wait_for_function(
        f"document.querySelector('#samples-count') && "
        f"document.querySelector('#samples-count').innerText.startsWith('{expected['total']} of')")
    assert page.input_value("#samples-filter").startswith("{error")
    watch.check()


def test_errors_page_hypothesis_and_breakdown_controls(page, demo):
    watch = Watch(page, demo)
    fields = list(api(demo, "/api/summary")["hypotheses"])
    page.goto(demo + f"/errors?hyp={fields[1]}&by=duration_bucket")
    wait_breakdown_rows(page)
    # The table is sorted worst first on the server, like /api/breakdown?sort=-wer.
    expected = api(demo, "/api/breakdown", by="duration_bucket", hyp=fields[1], sort="-wer")["rows"]
    values = grid_texts(page, "errors-breakdown-grid", "value")
    assert values == [r["value"] for r in expected]
    wers = grid_texts(page, "errors-breakdown-grid", "wer")
    assert wers == [f"{r['wer']:.2f}%" for r in expected]
    intervals = grid_texts(page, "errors-breakdown-grid", "ci")
    assert intervals == [f"{r['ci'][0]:.2f}–{r['ci'][1]:.2f}%" for r in expected]
    # A click on a header re-sorts on the server.
    page.locator('#errors-breakdown-grid .ag-header-cell[col-id="value"]').click()
    by_value = [r["value"] for r in api(demo, "/api/breakdown", by="duration_bucket", hyp=fields[1])["rows"]]
    page.wait_for_function(
        "(first) => { const c = document.querySelector('#errors-breakdown-grid .ag-row[row-index=\"0\"] "
        "[col-id=value]'); return c && c.innerText === first; }", arg=by_value[0])
    assert grid_texts(page, "errors-breakdown-grid", "value") == by_value
    # A bar of the top-deletions chart is a link too.
    dels = api(demo, "/api/errors", hyp=fields[1])["deletions"]
    if dels:
        click_first_bar(page, "errors-del-fig")
        page.wait_for_url(re.compile(r"/samples\?"))
        assert parse_qs(urlparse(page.url).query)["error"] == [f"del:{dels[0]['word']}"]
    watch.check()


def test_a_breakdown_bar_opens_its_groups_utterances(page, demo):
    # The bars of "WER and CER by group" were not links (the table's rows and every other chart's
    # bars are): clicking the worst speaker's bar did nothing.
    watch = Watch(page, demo)
    fields = list(api(demo, "/api/summary")["hypotheses"])
    groups = api(demo, "/api/breakdown", by="speaker", hyp=fields[1])["rows"]  # in value order, as charted
    page.goto(demo + f"/errors?hyp={fields[1]}&by=speaker")
    wait_breakdown_rows(page)
    click_first_bar(page, "errors-breakdown-fig")
    page.wait_for_url(re.compile(r"/samples\?"))
    first = groups[0]
    assert parse_qs(urlparse(page.url).query)["filter"] == [f'{{speaker}} = "{first["value"]}"']
    total = api(demo, "/api/summary")["utterances"]
    page.wait_for_function("(t) => (document.querySelector('#samples-count') || {}).innerText === t",
                           arg=f"{first['utterances']} of {total} utterances match")
    watch.check()


def test_comparison_page_matches_the_api(page, demo):
    watch = Watch(page, demo)
    fields = list(api(demo, "/api/summary")["hypotheses"])
    cmp = api(demo, "/api/compare", a=fields[0], b=fields[1])
    page.goto(demo + "/comparison")
    page.wait_for_selector("#cmp-a-wer")
    assert page.inner_text("#cmp-a-wer") == f"{cmp['a']['wer']:.2f}%"
    assert page.inner_text("#cmp-b-wer") == f"{cmp['b']['wer']:.2f}%"
    assert page.inner_text("#cmp-a-ci") == f"95% CI {cmp['a']['ci'][0]:.2f} – {cmp['a']['ci'][1]:.2f}%"
    assert page.inner_text("#cmp-b-ci") == f"95% CI {cmp['b']['ci'][0]:.2f} – {cmp['b']['ci'][1]:.2f}%"
    diff = cmp["diff"]["wer"]
    assert page.inner_text("#cmp-diff-wer") == f"{diff:+.2f} points".replace("-", "−")
    p, floor = cmp["diff"]["p"], 2 / (cmp["n_resamples"] + 1)
    assert page.inner_text("#cmp-diff-p") == (f"p ≤ {floor:.3f}" if p <= floor * (1 + 1e-6) else
                                              f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}")
    sentence = page.inner_text("#cmp-interpretation")
    if cmp["diff"]["ci"][1] < 0:
        assert sentence.startswith("B (") and "is better by" in sentence
    page.wait_for_function("document.querySelectorAll('.comparison-page .js-plotly-plot .main-svg').length >= 4")
    page.wait_for_selector("#cmp-word-grid .ag-row")
    shot(page, "comparison")

    # Swap A and B: the URL and the numbers follow.
    page.locator("#cmp-swap").click()
    page.wait_for_url(re.compile(rf"a={fields[1]}"))
    swapped = api(demo, "/api/compare", a=fields[1], b=fields[0])
    page.wait_for_function(
        f"document.querySelector('#cmp-a-wer').innerText === '{swapped['a']['wer']:.2f}%'")
    assert page.inner_text("#cmp-b-wer") == f"{swapped['b']['wer']:.2f}%"

    # CER for the utterance scatter goes into the URL.
    page.locator("#cmp-metric label", has_text="CER").click()
    page.wait_for_url(re.compile(r"metric=cer"))
    watch.check()


def test_comparison_clicks_open_samples_and_utterances(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/comparison")
    page.wait_for_selector("#cmp-word-grid .ag-row")
    word = page.inner_text('#cmp-word-grid .ag-row[row-index="0"] [col-id="word"]')
    page.locator('#cmp-word-grid .ag-row[row-index="0"] [col-id="word"]').click()
    page.wait_for_url(re.compile(r"/samples\?"))
    assert parse_qs(urlparse(page.url).query)["filter"] == [f'{{text}} has "{word}"']
    page.wait_for_selector("#samples-grid .ag-row")

    page.goto(demo + "/comparison")
    page.wait_for_function("document.querySelectorAll('#cmp-utt-fig .main-svg').length >= 1")
    # WebGL points have no DOM nodes: click where plotly says the first point of a trace is.
    page.locator("#cmp-utt-fig").scroll_into_view_if_needed()
    xy = page.evaluate("""() => {
        const gd = document.getElementById('cmp-utt-fig').querySelector('.js-plotly-plot');
        const tr = gd._fullData.find(t => t.x && t.x.length);
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const box = gd.getBoundingClientRect();
        return [box.left + xa._offset + xa.l2p(tr.x[0]), box.top + ya._offset + ya.l2p(tr.y[0])];
    }""")
    page.mouse.move(xy[0], xy[1])
    page.wait_for_timeout(300)
    page.mouse.click(xy[0], xy[1])
    page.wait_for_url(re.compile(r"/utterance/\d+"))
    watch.check()


def test_comparison_unavailable_with_one_hypothesis(browser, tmp_path):
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": "a b c", "pred_text": "a b d"}
            for i in range(3)]
    path = tmp_path / "one.json"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with sde_server(str(path)) as url:
        pg = browser.new_page()
        watch = Watch(pg, url)
        pg.goto(url + "/errors")
        pg.wait_for_selector("#errors-sub-grid .ag-row")
        assert pg.locator("#nav-comparison").count() == 0
        pg.goto(url + "/comparison?a=pred_text&b=pred_text_b")  # a bookmark: says why, not "Page not found"
        pg.wait_for_selector("#cmp-unavailable")
        assert pg.locator("#not-found").count() == 0
        watch.check()
        pg.close()


# The contrast (WCAG) against the alert's background of an element's text, and of the alert's own.
CONTRAST_JS = """(el) => {
    const lum = (c) => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map((v) => {
        v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const ratio = (a, b) => (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const alert = el.closest('.alert'), bg = lum(getComputedStyle(alert).backgroundColor);
    return [ratio(lum(getComputedStyle(el).color), bg), ratio(lum(getComputedStyle(alert).color), bg)];
}"""


def test_code_in_coloured_alerts_is_readable(browser, tmp_path):
    # The theme's pink `code` on the danger alert's red had a contrast of 1.0: the missing audio
    # paths on Problems were invisible (1.2 on info blue, 1.7 on warning orange).
    rows = [{"audio_filepath": f"gone{i}.wav", "duration": 1.0 + i, "text": f"call 911 now {i}"} for i in range(3)]
    path = tmp_path / "nohyp.json"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with sde_server(str(path)) as url:
        pg = browser.new_page()
        watch = Watch(pg, url, allow_console=("/no-such-page",))  # its HTTP 404, logged by Chromium
        for where, alert in (("/problems", "#problems-missing-audio"), ("/errors", "#errors-no-hyp"),
                             ("/comparison", "#cmp-unavailable"), ("/", "#alphabet-digits"),
                             ("/no-such-page", "#not-found")):
            pg.goto(url + where)
            code = pg.locator(f"{alert} code").first
            code.wait_for()
            code_contrast, text_contrast = pg.evaluate(CONTRAST_JS, code.element_handle())
            assert code_contrast >= 0.95 * text_contrast, (where, code_contrast, text_contrast)
        watch.check()
        pg.close()


def test_errors_breakdown_of_1179_speakers(browser, tmp_path):
    from tests.test_breakdown import SPEAKERS, manifest_rows

    path = tmp_path / "many.json"
    path.write_text("\n".join(json.dumps(r) for r in manifest_rows()) + "\n", encoding="utf-8")
    with sde_server(str(path)) as url:
        pg = browser.new_page()
        watch = Watch(pg, url)
        pg.goto(url + "/errors")
        wait_breakdown_rows(pg)
        assert "speaker (1,179 values)" in pg.inner_text("#errors-by")
        assert f"showing 30 of {SPEAKERS:,} speaker groups" in pg.inner_text("#errors-breakdown-note")
        pg.wait_for_function("document.querySelector('#errors-breakdown-count') && "
                             "document.querySelector('#errors-breakdown-count').innerText.includes('1,179')")
        worst = api(url, "/api/breakdown", by="speaker", sort="-wer", page=1, page_size=100, ci=0)["rows"]
        # Rows 100.. come from a second block asked of the server when the table scrolls there.
        pg.evaluate("window.dash_ag_grid.getApiAsync('errors-breakdown-grid').then(a => a.ensureIndexVisible(120))")
        wait_breakdown_rows(pg, 120)
        assert pg.inner_text('#errors-breakdown-grid .ag-row[row-index="120"] [col-id="value"]') == \
            worst[20]["value"]
        # The threshold hides the small groups and goes into the URL.
        box = pg.locator("#errors-min-utts")
        box.fill("5")
        box.press("Enter")
        box.blur()
        pg.wait_for_url(re.compile(r"min_utts=5"))
        total = api(url, "/api/breakdown", by="speaker", min_utterances=5)["total"]
        pg.wait_for_function(f"document.querySelector('#errors-breakdown-count').innerText.startsWith('{total:,}')")
        wait_breakdown_rows(pg)
        pg.locator("#errors-breakdown").scroll_into_view_if_needed()
        shot(pg, "errors-1179-speakers")
        # A group opens the samples page filtered to it.
        first = pg.locator('#errors-breakdown-grid .ag-row[row-index="0"] [col-id="value"]')
        speaker = first.inner_text()
        first.click()
        pg.wait_for_url(re.compile(r"/samples\?"))
        assert parse_qs(urlparse(pg.url).query)["filter"] == [f'{{speaker}} = "{speaker}"']
        pg.wait_for_function("document.querySelector('#samples-count') && "
                             "document.querySelector('#samples-count').innerText.startsWith('5 of')")
        watch.check()
        pg.close()
