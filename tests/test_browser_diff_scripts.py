"""The inspector's word diff in headless Chromium, in left-to-right and right-to-left scripts: a
substitution shows its reference and hypothesis words apart (a visible gap), and Arabic letters do
not join across the two into one word that exists in neither text.

Screenshot: tests/output/screenshots/diff-scripts-*.png.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tests.browser_kit import sde_server, shot

pytestmark = pytest.mark.browser

# (reference, hypothesis): one substitution each, on the second word
LINES = {
    "german": ("guten morgen freund", "guten abend freund"),
    "arabic": ("السلام عَلَيْكُمْ يا صديقي", "السلام عليكم يا صديقي"),
    "hebrew": ("שלום עולם ומלואו", "שלום עולמות ומלואו"),
}

SUBSTITUTION = """() => {
  const sub = document.querySelector('.diff-sub');
  const del = sub.querySelector('del').getBoundingClientRect(), ins = sub.querySelector('ins').getBoundingClientRect();
  return {gap: Math.max(ins.left - del.right, del.left - ins.right), text: sub.textContent};
}"""


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    d = tmp_path_factory.mktemp("scripts")
    manifest = d / "scripts.json"
    with manifest.open("w", encoding="utf-8") as f:
        for i, (ref, hyp) in enumerate(LINES.values()):
            sf.write(d / f"{i}.wav", np.zeros(8000, dtype=np.float32), 16000, subtype="PCM_16")
            f.write(json.dumps({"audio_filepath": f"{i}.wav", "duration": 0.5, "text": ref, "pred_text": hyp},
                               ensure_ascii=False) + "\n")
    with sde_server(str(manifest)) as url:
        yield url


@pytest.mark.parametrize("uid, script", list(enumerate(LINES)))
def test_a_substitution_shows_its_two_words_apart_in_any_script(page, scripts, uid, script):
    page.goto(f"{scripts}/utterance/{uid}")
    page.wait_for_selector(".diff-sub")
    ref, hyp = LINES[script]
    chip = page.evaluate(SUBSTITUTION)
    ref_word, hyp_word = ref.split()[1], hyp.split()[1]
    # the text itself separates the words, so a copy, a screen reader and the shaper see two words
    assert chip["text"] == f"{ref_word} {hyp_word}"
    assert chip["gap"] >= 2, chip
    shot(page, f"diff-scripts-{script}")
