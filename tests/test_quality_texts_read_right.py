"""The data-quality pages' texts as a reader meets them: a near-duplicate group lists its centre
first (it came wherever the manifest put it, beyond the JSON's 20 when the group was large),
docs/api.md states the cap /api/duplicates keeps (it said 100; the route keeps 20), the TTS
few_hours flag says "4.5 s of audio" (it said "0.0 h") and /api/tts's hours keep a 0.1 s speaker
above 0, and the audio quality card's durations read as everywhere else ("1.00 h", not "60.0 min")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.audio_quality import with_measured_audio
from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from tests.browser_kit import by_id, dash_update, text_of

ROOT = Path(__file__).resolve().parent.parent
NOON = "please call stella at noon"
# 25 one-edit variants that sort next to the centre (found by the neighbour search), each once,
# before the centre's two copies: in manifest order the centre came 26th.
VARIANTS = [NOON[:-1] + c for c in "abcdefghijklmopqrstuvwxyz"]


def _app(tmp_path: Path, lines: list[dict], measured: bool = False):
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    dataset = build_dataset(manifest, workers=1)
    if measured:
        dataset = with_measured_audio(dataset, workers=1)
    return create_app(dataset, AppConfig(title="t", audio_routes=False))


def _lines(texts: list[str], duration: float = 1.0) -> list[dict]:
    return [{"audio_filepath": f"a{i}.wav", "duration": duration, "text": t} for i, t in enumerate(texts)]


@pytest.mark.parametrize("texts, first, listed", [
    (VARIANTS + [NOON, NOON], [NOON], 20),
    (["Set a timer for two minutes.", "Set a timer for two minutes.", "set a timer for ten minutes",
      "set a timer for ten minutes"], ["set a timer for ten minutes", "Set a timer for two minutes."], 2),
    (["set a timer for ten minutes", "Set a timer for two minutes", "set a timer for two minutes!",
      "Set a timer for two minutes"], ["Set a timer for two minutes", "set a timer for two minutes!",
                                       "set a timer for ten minutes"], 3),
], ids=["most-frequent-after-25-others", "tie-alphabetical-first", "every-spelling-of-the-centre-first"])
def test_a_near_group_lists_its_centre_first(tmp_path, texts, first, listed):
    app = _app(tmp_path, _lines(texts))
    client = app.server.test_client()
    group = client.get("/api/duplicates?kind=near").get_json()["groups"][0]
    assert group["texts"][:len(first)] == first and len(group["texts"]) == listed
    assert group["texts_total"] == len({t for t in texts})
    out = dash_update(client, app, "page-content.children",
                      {"url.pathname": "/duplicates", "url.search": "?kind=near"}, {"rendered.data": None})
    shown = text_of(by_id(out["page-content.children"], "dup-table"))
    assert 0 <= shown.find(first[0]) < shown.find(texts[0] if texts[0] != first[0] else first[-1])


@pytest.mark.parametrize("kind, texts", [
    ("text", ["hello world" + "!" * (i + 1) for i in range(30)]),
    ("near", VARIANTS + [NOON, NOON]),
], ids=["spellings", "near"])
def test_api_docs_state_the_texts_cap_the_route_keeps(tmp_path, kind, texts):
    row = next(line for line in (ROOT / "docs" / "api.md").read_text().splitlines()
               if line.startswith("| `/api/duplicates"))
    cap = int(re.search(r"`texts` at most ([\d,]+) distinct", row).group(1).replace(",", ""))
    group = _app(tmp_path, _lines(texts)).server.test_client().get(f"/api/duplicates?kind={kind}").get_json()["groups"][0]
    assert len(group["texts"]) == cap < group["texts_total"]


@pytest.mark.parametrize("seconds, said", [
    (0.1, "0.1 s of audio"),
    (270.0, "4.5 min of audio"),
    (4500.0, "1.25 h of audio"),
], ids=["a-tenth-of-a-second", "minutes", "hours"])
def test_few_hours_says_how_long_a_speaker_is(tmp_path, seconds, said):
    lines = [{**line, "speaker": "ann"} for line in _lines(["hello there"], duration=seconds)]
    speaker = _app(tmp_path, lines).server.test_client().get("/api/tts").get_json()["speakers"][0]
    assert speaker["hours"] == pytest.approx(seconds / 3600, rel=0.01) and speaker["hours"] > 0
    message = next(f["message"] for f in speaker["flags"] if f["flag"] == "few_hours")
    assert message.startswith(said + ";"), message


@pytest.mark.parametrize("seconds, said", [
    (3599.6, "1.00 h"),
    (2.5, "2.5 s"),
], ids=["just-under-an-hour", "seconds"])
def test_audio_quality_card_durations_read_as_elsewhere(tmp_path, seconds, said):
    # the card sums the manifest's durations: a 1 s file stands for an hour's line
    sf.write(tmp_path / "a0.wav", np.zeros(8000, dtype=np.int16), 8000, subtype="PCM_16")
    app = _app(tmp_path, _lines(["a tone"], duration=seconds), measured=True)
    out = dash_update(app.server.test_client(), app, "page-content.children",
                      {"url.pathname": "/statistics", "url.search": ""}, {"rendered.data": None})
    assert said in text_of(by_id(out["page-content.children"], "audioq-rates"))
