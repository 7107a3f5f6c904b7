"""Narrow screens, in headless Chromium against the real CLI: a long audio path under the
inspector's title wraps instead of widening the page (a 300-character path made a 390 px phone's page
2,465 px wide, and a 2,560 px screen's 2,845), and the phone's menu closes once a page is picked (the
bar is sticky: left open, its list covered half the screen), and Comparison's utterance table keeps its
numbers readable (the grid scrolls instead).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tests.browser_kit import sde_server, sized_page, wait_url

pytestmark = pytest.mark.browser

DEEP = "a_folder_of_a_corpus_converted_by_a_pipeline_with_a_long_run_name_20261207T031500_shard_000017"


@pytest.fixture(scope="module")
def long_path(tmp_path_factory):
    """`sde` on two lines whose audio sits ~300 characters deep (real WAV files)."""
    d = tmp_path_factory.mktemp("narrow")
    folder = d / DEEP / DEEP / DEEP
    folder.mkdir(parents=True)
    manifest = d / "m.json"
    with manifest.open("w", encoding="utf-8") as f:
        for i in range(2):
            audio = folder / f"utterance_{i}.wav"
            sf.write(audio, (0.1 * np.random.default_rng(i).standard_normal(8000)).astype(np.float32), 16000)
            f.write(json.dumps({"audio_filepath": str(audio), "duration": 0.5, "text": "a b c",
                                "pred_text": "a b d"}) + "\n")
    assert len(str(folder / "utterance_0.wav")) > 300
    with sde_server(str(manifest)) as url:
        yield url


def overflow(page) -> int:
    """How far the page is wider than the window, in CSS pixels (0: no sideways scrolling)."""
    return page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")


@pytest.mark.parametrize("width", [390, 768, 1400, 2560])
def test_a_long_audio_path_under_the_inspectors_title_wraps(browser, long_path, width):
    with sized_page(browser, long_path, width) as page:
        page.goto(long_path + "/utterance/0")
        page.wait_for_selector(".page-subtitle")
        page.wait_for_function(f"document.querySelector('.page-subtitle').textContent.includes('{DEEP[:40]}')")
        assert overflow(page) <= 0


def test_picking_a_page_from_the_phones_menu_closes_it(browser, long_path):
    with sized_page(browser, long_path, 390, 844) as page:
        page.goto(long_path + "/samples")
        page.click("#navbar-toggler")
        page.wait_for_function("document.querySelector('#navbar-collapse').classList.contains('show')")
        page.locator("#navbar-collapse").get_by_role("link", name="Errors").click()
        wait_url(page, r"/errors")
        page.wait_for_function("!document.querySelector('#navbar-collapse').classList.contains('show')")
        page.wait_for_function("document.querySelector('#navbar').getBoundingClientRect().height < 120")
        page.click("#navbar-toggler")  # the button still opens it
        page.wait_for_function("document.querySelector('#navbar-collapse').classList.contains('show')")


def test_the_comparison_utterance_tables_numbers_keep_their_width_on_a_phone(browser, demo):
    # sized to fit 390 px, the A, B and B − A columns shrank to 32 px ("1…")
    with sized_page(browser, demo, 390, 844) as page:
        page.goto(demo + "/comparison")
        page.wait_for_selector("#cmp-utt-grid .ag-row [col-id='diff']")
        widths = page.evaluate("""['a', 'b', 'diff'].map(c =>
            document.querySelector(`#cmp-utt-grid .ag-header-cell[col-id='${c}']`).getBoundingClientRect().width)""")
        assert min(widths) >= 75, widths
