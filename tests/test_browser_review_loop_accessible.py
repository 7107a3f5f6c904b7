"""The listening / review loop and the inspector for a keyboard and a screen reader, in headless
Chromium against the real server: `f` puts the caret after the transcript (it selected it all, and
the words typed replaced it), each mark is said in a live region with the focus kept on the page
and the window's title naming the utterance, Tab into Samples after the inspector lands on the row
come back from, a substitution is said as one, and the augmentation preview's boxes have names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tests.browser_kit import Watch, api, sde_server, shows_utterance_reviewed, wait_url

pytestmark = pytest.mark.browser

RATE = 16_000
TEXTS = [("the quick brown fox", "the quick brown fox"), ("she sells sea shells", "she sells seashells"),
         ("hello world", "hello word"), ("all that glitters", "all that glitters"), ("a stitch in time", "a stitch"),
         ("one two three", "one two three"), ("four five six", "four five six")]
LIVE = "(document.getElementById('review-live') || {}).textContent || ''"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Seven utterances of real audio (tones, written by soundfile), reviews in a fresh file."""
    d = tmp_path_factory.mktemp("loop")
    lines = []
    for i, (text, pred) in enumerate(TEXTS):
        t = np.arange(int(RATE * 0.5)) / RATE
        sf.write(d / f"u{i}.wav", (0.3 * np.sin(2 * np.pi * (220 + 55 * i) * t)).astype(np.float32), RATE)
        lines.append(json.dumps({"audio_filepath": f"u{i}.wav", "duration": 0.5, "text": text, "pred_text": pred}))
    (d / "manifest.json").write_text("\n".join(lines) + "\n")
    with sde_server(str(d / "manifest.json"), "--reviews", str(d / "reviews.sqlite"), cwd=d) as url:
        yield url


def review_mode_at(page, base: str, uid: int) -> None:
    page.goto(f"{base}/utterance/{uid}")
    page.wait_for_function(shows_utterance_reviewed(uid))
    page.locator("label[for=review-mode]").click()
    assert page.is_checked("#review-mode")


def test_f_puts_the_caret_after_the_transcript_so_typing_adds_to_it(page, served):
    watch = Watch(page, served)
    review_mode_at(page, served, 5)
    page.keyboard.press("f")
    assert page.evaluate("[document.activeElement.id, document.activeElement.selectionStart,"
                         " document.activeElement.selectionEnd]") == ["review-text", 13, 13]
    page.keyboard.type(" four")
    page.keyboard.press("Enter")
    wait_url(page, r"/utterance/6(\?|$)")
    saved = api(served, "/api/utterances/5/review")
    assert (saved["status"], saved["text"]) == ("fix", "one two three four")
    watch.check()


def test_each_mark_is_said_and_the_focus_and_title_follow_the_utterance(page, served):
    watch = Watch(page, served)
    review_mode_at(page, served, 0)
    page.keyboard.press("a")
    page.wait_for_function(shows_utterance_reviewed(1) + f" && ({LIVE}).startsWith('Kept utterance 0')")
    assert page.evaluate(LIVE) == "Kept utterance 0; now utterance 1, 2 of 7"
    assert page.get_attribute("#review-live", "aria-live") == "polite"
    assert page.evaluate("document.activeElement !== document.body && document.activeElement.innerText") == \
        "Utterance 1"  # the heading: the keys still work from there
    page.wait_for_function("document.title.startsWith('Utterance 1 · ')")
    page.keyboard.press("d")
    page.wait_for_function(shows_utterance_reviewed(2) + f" && ({LIVE}).startsWith('Dropped utterance 1')")
    assert page.evaluate(LIVE) == "Dropped utterance 1; now utterance 2, 3 of 7"
    assert page.evaluate("document.activeElement.innerText") == "Utterance 2"
    page.wait_for_function("document.title.startsWith('Utterance 2 · ')")
    assert [api(served, f"/api/utterances/{i}/review")["status"] for i in (0, 1)] == ["keep", "drop"]
    watch.check()


def test_tab_into_samples_after_the_inspector_lands_on_the_row_come_back_from(page, served):
    watch = Watch(page, served)
    page.goto(f"{served}/utterance/3")
    page.wait_for_function(shows_utterance_reviewed(3))
    page.keyboard.press("u")
    wait_url(page, r"/samples\?focus=3$")
    page.wait_for_selector('#samples-grid .ag-row-selected[row-index="3"]')
    for _ in range(80):  # Tab from the top of the page until the focus enters the grid's rows
        page.keyboard.press("Tab")
        row = page.evaluate("(document.activeElement.closest('.ag-row[row-index]') || {getAttribute: () => null})"
                            ".getAttribute('row-index')")
        if row is not None:
            break
    assert row == "3"
    watch.check()


def test_a_substitution_is_said_as_one_not_as_a_deletion_and_an_insertion(page, served):
    watch = Watch(page, served)
    page.goto(f"{served}/utterance/2")                     # "hello world" heard as "hello word"
    page.wait_for_selector("#utt-diff-pred_text .diff-sub")
    spoken = page.locator("#utt-diff-pred_text .diff").aria_snapshot()
    assert "substitution: world, said as word" in spoken, spoken
    assert "deletion" not in spoken and "insertion" not in spoken, spoken
    # what is seen stays: the struck word, then its replacement
    assert page.inner_text("#utt-diff-pred_text .diff-sub") == "world word"
    watch.check()


def test_the_augmentation_preview_boxes_are_named_by_their_labels(page, served):
    watch = Watch(page, served)
    page.goto(f"{served}/utterance/2")
    page.wait_for_selector("#aug-card #aug-speed")
    names = page.evaluate("""ids => ids.map(id => Array.from(document.getElementById(id).labels || [])
                                                   .map(l => l.textContent).join(' '))""",
                          ["aug-speed", "aug-stretch", "aug-noise", "aug-snr", "aug-rir", "aug-rt60", "aug-seed"])
    assert names == ["speed", "time stretch", "noise", "SNR (dB)", "room impulse response", "RT60 (s)", "seed"]
    assert page.get_by_label("RT60 (s)").get_attribute("id") == "aug-rt60"
    watch.check()
