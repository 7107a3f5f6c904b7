"""In Chromium, on `sde demo` served by the real CLI: a page whose link has a parameter it cannot
use opens (with the default) under a warning naming the parameter, its value and what it takes,
which the user can close; and at 390 px the Comparison page's chart captions stay inside their
charts (plotly never wraps text: the per-utterance summary ran off the chart's edge)."""

from __future__ import annotations

import pytest

from tests.browser_kit import shot, sized_page

NOTES = "#link-notes"


@pytest.mark.parametrize("path, said, shown", [
    ("/samples?kind=bogus&filter=%7Bwer%7D+%3E+10&filter=%7Bwer%7D+%3E+50",
     ["'kind' (= 'bogus') is not one the Samples page takes", "the last one, '{wer} > 50', is used"],
     "#samples-grid"),
    ("/duplicates?kind=bogus&page=-1",
     ["kind must be one of text, near, audio, got 'bogus'", "page must be between 0 and 1000000000, got -1"],
     "#dup-tab-text.active"),
])
def test_a_link_parameter_the_page_cannot_use_is_said_and_can_be_closed(browser, demo, path, said, shown):
    with sized_page(browser, demo, 1280) as page:
        page.goto(demo + path)
        page.wait_for_selector(shown)  # the page itself opened, with the defaults
        notes = page.locator(NOTES)
        notes.wait_for(state="visible")
        for part in said:
            assert part in notes.inner_text()
        notes.locator(".btn-close").click()
        notes.wait_for(state="hidden")


def test_the_comparison_charts_captions_fit_a_phone(browser, demo):
    with sized_page(browser, demo, 390, 844) as page:
        page.goto(demo + "/comparison")
        page.wait_for_selector("#cmp-utt-fig .annotation-text")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2")
        cut = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(plot => {
            const box = plot.getBoundingClientRect(), right = Math.min(box.right, window.innerWidth);
            return [...plot.querySelectorAll('text')].filter(t => t.textContent.trim()).map(t => [t.textContent,
                t.getBoundingClientRect()]).filter(([, r]) => r.right > right + 0.5 || r.left < box.left - 0.5)
                .map(([text]) => text); })""")
        shot(page, "comparison-390-captions")
        assert cut == []
        # the caption's lines sit between the legend and the plot, overlapping neither
        boxes = page.evaluate("""() => { const fig = document.querySelector('#cmp-utt-fig');
            const r = e => e.getBoundingClientRect();
            return {legend: r(fig.querySelector('.legend')).bottom, caption: r(fig.querySelector('.annotation')).top,
                    captionBottom: r(fig.querySelector('.annotation')).bottom,
                    plot: r(fig.querySelector('.nsewdrag')).top}; }""")
        assert boxes["legend"] <= boxes["caption"] + 1 and boxes["captionBottom"] <= boxes["plot"] + 1, boxes
