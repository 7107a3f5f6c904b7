"""The afternoon session's drill-downs in headless Chromium against `sde demo`: a row of the Errors
page opens the utterances behind it with the filter shown and the right count, and the browser's
Back button returns to the page the user came from."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from tests.browser_kit import Watch, wait_url

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("grid", ["errors-sub-grid", "errors-del-grid", "errors-ins-grid"])
def test_back_from_an_error_drill_down_returns_to_errors(page, demo, grid):
    watch = Watch(page, demo)
    page.goto(demo + "/errors?hyp=pred_text_conformer")
    row = f'#{grid} .ag-center-cols-container .ag-row[row-index="0"]'
    page.wait_for_selector(row)
    cells = page.inner_text(row).split("\n")
    affected = int(cells[-1])  # the table's last column: the utterances with that error
    page.click(row + " .ag-cell >> nth=0")
    wait_url(page, r"/samples\?filter=")
    page.wait_for_function("(document.querySelector('#samples-count') || {innerText: ''}).innerText"
                           f".startsWith('{affected} of ')")
    assert page.input_value("#samples-filter").startswith("{error_conformer} = ")
    page.go_back()
    wait_url(page, r"/errors\?hyp=pred_text_conformer$")
    page.wait_for_selector(row)
    assert re.search(r"/errors", page.url)
    page.go_forward()
    wait_url(page, r"/samples\?filter=")
    page.wait_for_function("(document.querySelector('#samples-count') || {innerText: ''}).innerText"
                           f".startsWith('{affected} of ')")
    watch.check()


def test_breakdown_row_under_the_same_filter_does_not_repeat_it(page, demo):
    watch = Watch(page, demo)
    page.goto(demo + "/errors?" + urlencode({"hyp": "pred_text", "filter": '{speaker} = "emily"', "by": "speaker"}))
    row = '#errors-breakdown-grid .ag-center-cols-container .ag-row[row-index="0"]'
    page.wait_for_selector(row)
    # the grid renders its rows as they come: wait for the filtered row rather than read the first paint
    page.wait_for_function(f"(document.querySelector('{row}') || {{innerText: ''}}).innerText.trim()"
                           ".startsWith('emily')")
    cells = page.inner_text(row).split("\n")
    utterances = int(cells[1])
    page.click(row + " .ag-cell >> nth=0")
    wait_url(page, r"/samples\?filter=")
    page.wait_for_function("(document.querySelector('#samples-count') || {innerText: ''}).innerText"
                           f".startsWith('{utterances} of ')")
    page.wait_for_function("document.querySelector('#samples-filter').value === '{speaker} = \"emily\"'")
    watch.check()
