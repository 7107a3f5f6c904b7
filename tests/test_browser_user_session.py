"""A user's session in headless Chromium over a small generated manifest with a very long
transcript: what must stay readable (a cell's tooltip) and what must survive a reload (the Rules
page's view), against the real `sde` CLI."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import pytest
import soundfile as sf

from tests.browser_kit import Watch, first_cell, sde_server, wait_url

pytestmark = pytest.mark.browser

LONG = " ".join(["alpha", "beta", "gamma", "delta"][i % 4] for i in range(3000))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("user-session")
    sr = 16000
    sf.write(d / "tone.wav", (0.2 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)).astype("float32"), sr)
    rows = [{"audio_filepath": "tone.wav", "duration": 1.0, "text": LONG, "pred_text": LONG.replace("beta", "bet")}]
    rows += [{"audio_filepath": "tone.wav", "duration": 1.0, "text": f"short line {i}", "pred_text": f"short {i}"}
             for i in range(20)]
    (d / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with sde_server(str(d / "m.json")) as url:
        yield url


def test_the_tooltip_of_a_very_long_transcript_stays_a_few_lines(page, served):
    watch = Watch(page, served)
    page.goto(served + "/samples?sort=-num_chars")
    assert first_cell(page, "text").startswith("alpha beta")
    page.hover('#samples-grid .ag-row[row-index="0"] [col-id="text"]')
    tip = page.locator(".ag-tooltip")
    tip.wait_for(state="visible")
    box = tip.bounding_box()
    assert box["height"] < 250 and box["width"] < 0.95 * page.viewport_size["width"]
    watch.check()


def test_the_rules_view_survives_a_reload(page, served):
    watch = Watch(page, served)
    page.goto(served + "/rules")
    page.fill("#rules-name", "high WER")
    page.fill("#rules-filter", "{wer} > 40")
    page.press("#rules-filter", "Enter")
    page.wait_for_selector("#rules-row-0")
    page.fill("#rules-view", "{duration} >= 1")
    page.press("#rules-view", "Enter")
    page.wait_for_url("**/rules?filter=*")
    page.reload()
    page.wait_for_selector("#rules-row-0")
    assert page.input_value("#rules-view") == "{duration} >= 1"
    page.wait_for_function("document.querySelector('#rules-union').innerText.includes('of 21 in the view')")
    watch.check()


def test_a_rule_added_from_an_add_link_is_not_offered_again_by_a_reload(page, served):
    watch = Watch(page, served)
    page.goto(served + "/rules?" + urlencode({"filter": "{duration} >= 1", "add": "{wer} > 10"}))
    assert page.input_value("#rules-filter") == "{wer} > 10"
    page.fill("#rules-name", "some errors")
    page.press("#rules-filter", "Enter")
    page.wait_for_selector("#rules-row-0")
    page.wait_for_function("!location.search.includes('add=')")
    assert parse_qs(urlparse(page.url).query) == {"filter": ["{duration} >= 1"]}
    page.reload()
    page.wait_for_selector("#rules-row-0")
    assert page.input_value("#rules-filter") == "" and page.input_value("#rules-view") == "{duration} >= 1"
    watch.check()


def test_the_navbar_returns_to_each_page_as_the_user_left_it(page, served):
    watch = Watch(page, served)
    page.goto(served + "/samples?" + urlencode({"filter": "{wer} > 0", "sort": "-wer"}))
    page.wait_for_selector("#samples-grid .ag-row")
    page.click("#nav-statistics")
    wait_url(page, r"/$")
    page.wait_for_selector("#stats-log-y")
    # the label, as a user clicks it: the switch itself is a styled input Playwright may find
    # outside the viewport while the histograms above it are still laying out
    page.locator("label[for='stats-log-y']").click()
    wait_url(page, r"/\?logy=1$")
    assert page.is_checked("#stats-log-y")
    page.click("#nav-samples")
    wait_url(page, r"/samples\?")
    # the page and the navbar render after the URL changes: wait for them, then check them
    page.wait_for_function("(document.querySelector('#samples-filter') || {value: ''}).value !== ''")
    page.wait_for_function("!document.querySelector('#nav-statistics a').classList.contains('active')")
    assert page.input_value("#samples-filter") == "{wer} > 0"
    assert parse_qs(urlparse(page.url).query)["sort"] == ["-wer"]
    assert page.get_attribute("#nav-samples a", "class").split().count("active") == 1
    assert "active" not in page.get_attribute("#nav-statistics a", "class").split()
    page.click("#nav-statistics")
    wait_url(page, r"/\?logy=1$")
    page.wait_for_function("document.querySelector('#nav-statistics a').classList.contains('active')")
    assert "active" in page.get_attribute("#nav-statistics a", "class").split()
    page.reload()                                   # kept for the browser tab
    page.wait_for_selector("#stats-log-y")
    assert parse_qs(urlparse(page.get_attribute("#nav-samples a", "href")).query)["filter"] == ["{wer} > 0"]
    watch.check()


def test_errors_of_an_empty_selection_log_nothing_and_clicks_work_after(page, served):
    watch = Watch(page, served)
    page.goto(served + "/errors?" + urlencode({"filter": "{duration} > 99"}))
    page.wait_for_selector("#errors-empty")
    page.fill("#errors-filter", "{duration} > 0")
    page.press("#errors-filter", "Enter")
    cell = '#errors-sub-grid .ag-row[row-index="0"] .ag-cell'
    page.wait_for_selector(cell)
    page.click(cell)
    wait_url(page, r"/samples\?filter=")
    watch.check()
