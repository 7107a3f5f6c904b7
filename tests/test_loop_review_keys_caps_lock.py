"""Review mode's keys in headless Chromium with Caps Lock on: the browser reports "D", not "d"; the
keys must still keep, drop and fix (they did nothing, with no sign why)."""

from __future__ import annotations

import json

import pytest

from tests.browser_kit import api, sde_server, wait_url

pytestmark = pytest.mark.browser


def test_upper_case_keys_review_as_the_lower_case_ones(page, tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": f"words {i}",
                                            "pred_text": f"word {i}"}) + "\n" for i in range(4)))
    with sde_server(str(manifest), "--reviews", str(tmp_path / "r.sqlite")) as url:
        page.goto(url + "/utterance/0")
        page.wait_for_selector("#review-card")
        page.locator("label[for=review-mode]").click()
        assert page.is_checked("#review-mode")
        page.keyboard.press("D")
        wait_url(page, r"/utterance/1(\?|$)")
        assert api(url, "/api/utterances/0/review")["status"] == "drop"
        page.wait_for_selector("#review-card")
        page.wait_for_function("document.querySelector('h4.page-title').innerText === 'Utterance 1'")
        page.keyboard.press("A")
        wait_url(page, r"/utterance/2(\?|$)")
        assert api(url, "/api/utterances/1/review")["status"] == "keep"
        page.wait_for_function("document.querySelector('h4.page-title').innerText === 'Utterance 2'")
        page.keyboard.press("F")
        assert page.evaluate("document.activeElement.id") == "review-text"
