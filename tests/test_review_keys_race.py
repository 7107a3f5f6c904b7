"""Review mode's keys typed faster than the next utterance loads, in headless Chromium against the
real server: `d` drops and moves on; `f`, a correction and Enter typed at once after it must fix
the utterance that comes next (they went to the old panel's box, which the new page replaced: the
rest of the correction was read as keys, its "d" dropped a second utterance and the text was
lost). A mark key pressed before the next utterance is shown must not mark it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tests.browser_kit import DASH_CALLBACKS, TIMEOUT_MS, Watch, api, sde_server, wait_url

pytestmark = pytest.mark.browser

RATE = 16_000


@pytest.fixture
def served(tmp_path):
    """Five utterances of real audio (tones, written by soundfile), reviews in a fresh file."""
    lines = []
    for i in range(5):
        t = np.arange(int(RATE * (1.0 + 0.25 * i))) / RATE
        wav = tmp_path / f"u{i}.wav"
        sf.write(wav, (0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t)).astype(np.float32), RATE)
        lines.append(json.dumps({"audio_filepath": str(wav), "duration": len(t) / RATE,
                                 "text": f"words of utterance {i}", "pred_text": f"word of utterance {i}"}))
    manifest = tmp_path / "manifest.json"
    manifest.write_text("\n".join(lines) + "\n")
    with sde_server(str(manifest), "--reviews", str(tmp_path / "reviews.sqlite")) as url:
        yield url


def reviews(base: str) -> list[tuple]:
    return sorted((r["id"], r["status"], r["text"]) for r in api(base, "/api/reviews")["rows"] if r["status"])


def shows(page, uid: int) -> str:
    """A JS condition: the page is utterance `uid`'s, its review panel rendered."""
    return (f"(document.querySelector('h4.page-title') || {{}}).innerText === 'Utterance {uid}'"
            " && !!document.querySelector('#review-card #review-status')")


def review_mode_on(page, base: str) -> None:
    page.goto(base + "/utterance/0")
    page.wait_for_function(shows(page, 0))
    page.locator("label[for=review-mode]").click()
    assert page.is_checked("#review-mode")


def wait_or_report(page, condition: str) -> None:
    """Wait for `condition`; a page that never gets there is reported by the assertions after."""
    try:
        page.wait_for_function(condition, timeout=TIMEOUT_MS)
    except Exception:  # noqa: BLE001 - the saved reviews say what went wrong
        pass


@pytest.mark.parametrize("delay_ms", [0, 60], ids=["at-once", "at-a-typists-pace"])
def test_a_correction_typed_right_after_a_drop_fixes_the_next_utterance(page, served, delay_ms):
    watch = Watch(page, served)
    review_mode_on(page, served)
    page.keyboard.press("d")                          # drop 0: on to 1, which is still loading
    page.keyboard.press("f")
    page.keyboard.type(" corrected", delay=delay_ms)    # after the transcript, as f puts the caret
    page.keyboard.press("Enter")                      # the fix of 1 moves on to 2
    wait_or_report(page, shows(page, 2))
    assert reviews(served) == [(0, "drop", None), (1, "fix", "words of utterance 1 corrected")]
    wait_url(page, r"/utterance/2(\?|$)")
    assert page.inner_text("#review-badge") == "not reviewed yet"
    watch.check()


def test_a_correction_typed_before_the_next_utterance_shows_goes_to_its_box(page, served):
    review_mode_on(page, served)
    page.keyboard.press("d")
    page.keyboard.press("f")
    page.keyboard.type(" corrected")                 # no Enter yet: the box of 1 has it, and the focus
    page.wait_for_function(shows(page, 1) + " && document.activeElement.id === 'review-text'"
                           " && document.activeElement.value === 'words of utterance 1 corrected'")
    page.keyboard.type(" and more")                  # typing goes on in the box
    assert page.input_value("#review-text") == "words of utterance 1 corrected and more"
    assert reviews(served) == [(0, "drop", None)]
    page.keyboard.press("Enter")
    page.wait_for_function(shows(page, 2))
    assert reviews(served) == [(0, "drop", None), (1, "fix", "words of utterance 1 corrected and more")]


def test_a_mark_key_pressed_before_the_next_utterance_shows_marks_nothing(page, served):
    review_mode_on(page, served)
    # The server's answer to the drop is held back until the keys after it are typed: under load the
    # page could otherwise show 1 before `a` arrives, and `a` rightly keeps it.
    held, holding = [], [True]

    def hold(route):
        if holding[0]:
            held.append(route)
        else:
            route.continue_()

    page.route(DASH_CALLBACKS, hold)
    with page.expect_request(DASH_CALLBACKS):
        page.keyboard.press("d")
    page.keyboard.press("a")                          # 1 is not shown yet: ignored, and a note says so
    page.keyboard.press("d")
    page.wait_for_function("(document.getElementById('review-keys-note') || {}).textContent > ''")
    assert "ignored" in page.inner_text("#review-keys-note")
    assert held  # the drop's answer was held back
    holding[0] = False
    for route in held:
        route.continue_()
    page.unroute(DASH_CALLBACKS, hold)
    page.wait_for_function(shows(page, 1))
    assert reviews(served) == [(0, "drop", None)]
    assert page.inner_text("#review-badge") == "not reviewed yet"
    page.keyboard.press("a")                          # shown now: the key works
    page.wait_for_function(shows(page, 2))
    assert reviews(served) == [(0, "drop", None), (1, "keep", None)]
