"""The inspector in headless Chromium against the real server: the window's title names the
utterance shown, set once by the page shell as each page is rendered (never a bare "Utterance ·"
that a script then rewrites), walking the list with the Next link and the j key and moving on with
review mode's marks; and the Fields card, which scrolls, is reached and scrolled with the keyboard."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from tests.browser_kit import Watch, sde_server, shows_utterance_reviewed

pytestmark = pytest.mark.browser

RATE = 16_000
UTTERANCES = 6
EXTRA_FIELDS = 60  # far more rows than the Fields card's 75vh shows: it scrolls

# Every value the document's title takes, as it is set (its text node is replaced each time).
RECORD_TITLES = """
window.sdeTitles = [];
new MutationObserver(function (records) {
  records.forEach(function (r) {
    if (r.target.nodeName !== 'TITLE') return;
    r.addedNodes.forEach(function (n) { window.sdeTitles.push(n.textContent); });
  });
}).observe(document, {subtree: true, childList: true});
"""
NUMBERED = re.compile(r"^Utterance \d+ · ")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Six utterances of real audio (tones, written by soundfile), each line with many fields;
    reviews in a fresh file."""
    d = tmp_path_factory.mktemp("inspector")
    lines = []
    for i in range(UTTERANCES):
        t = np.arange(int(RATE * 0.5)) / RATE
        sf.write(d / f"u{i}.wav", (0.3 * np.sin(2 * np.pi * (220 + 55 * i) * t)).astype(np.float32), RATE)
        extra = {f"field_{k:02d}": f"value {k}" for k in range(EXTRA_FIELDS)}
        lines.append(json.dumps({"audio_filepath": f"u{i}.wav", "duration": 0.5, "text": f"words {i}",
                                 "pred_text": f"words {i}", **extra}))
    (d / "manifest.json").write_text("\n".join(lines) + "\n")
    with sde_server(str(d / "manifest.json"), "--reviews", str(d / "reviews.sqlite"), cwd=d) as url:
        yield url


def titled(page, uid: int) -> None:
    page.wait_for_function(f"document.title.startsWith('Utterance {uid} · ')")


def test_the_title_names_the_utterance_walking_the_list_and_marking_in_review_mode(page, served):
    watch = Watch(page, served)
    page.add_init_script(RECORD_TITLES)
    page.goto(f"{served}/utterance/0")
    page.wait_for_function(shows_utterance_reviewed(0))
    titled(page, 0)
    page.evaluate("window.sdeTitles = []")  # from here on, every title set is an inspector's

    page.click("#utt-next")                 # plain navigation: the Next link
    page.wait_for_function(shows_utterance_reviewed(1))
    titled(page, 1)
    page.keyboard.press("j")                # and its key
    page.wait_for_function(shows_utterance_reviewed(2))
    titled(page, 2)

    page.locator("label[for=review-mode]").click()
    assert page.is_checked("#review-mode")
    page.keyboard.press("a")                # keep: review mode moves on to the next utterance
    page.wait_for_function(shows_utterance_reviewed(3))
    titled(page, 3)
    page.keyboard.press("d")
    page.wait_for_function(shows_utterance_reviewed(4))
    titled(page, 4)

    titles = page.evaluate("window.sdeTitles")
    assert titles and all(NUMBERED.match(t) for t in titles), titles
    assert page.title().startswith("Utterance 4 · manifest")
    watch.check()


def test_the_title_of_an_utterance_the_dataset_lacks_names_none(page, served):
    watch = Watch(page, served, allow_console=("404",))
    page.goto(f"{served}/utterance/{UTTERANCES + 5}")
    page.wait_for_selector("#utt-not-found")
    page.wait_for_function("document.title.startsWith('Utterance · ')")
    watch.check()


def test_the_fields_card_is_reached_and_scrolled_with_the_keyboard(page, served):
    watch = Watch(page, served)
    page.goto(f"{served}/utterance/1")
    page.wait_for_function(shows_utterance_reviewed(1))
    region = page.locator(".utterance-page .kv-body")
    assert region.evaluate("el => el.scrollHeight > el.clientHeight")  # it does scroll
    for _ in range(80):  # Tab from the top of the page until the focus lands on the card's body
        page.keyboard.press("Tab")
        if region.evaluate("el => el === document.activeElement"):
            break
    assert region.evaluate("el => el === document.activeElement"), "Tab never reached the Fields card"
    # in the tab order itself: recent Chromium makes scrollers focusable on its own, other browsers do not
    assert (region.get_attribute("tabindex"), region.get_attribute("role"), region.get_attribute("aria-label")) == \
        ("0", "region", "Fields")
    page.keyboard.press("End")
    page.wait_for_function("document.querySelector('.utterance-page .kv-body').scrollTop > 0")
    watch.check()
