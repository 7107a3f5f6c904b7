"""A line's audio_channel named as the line wrote it, wherever it is refused. A manifest where some
lines have no audio_channel keeps the column as floats, so the measures (/api/audio-quality) said
"audio_channel 5.0 is not one of the file's channels" for the line's 5, while the player said 5."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.audio import AudioError, channel_selection
from tests.browser_kit import api, sde_server

SR = 16000


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("channel-message")
    t = np.arange(SR) / SR
    sf.write(folder / "mono.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    sf.write(folder / "call.wav", np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 900 * t)],
                                           axis=1).astype(np.float32), SR)
    lines = [{"audio_filepath": "mono.wav", "duration": 1.0, "text": "no channel"},  # the column: floats
             {"audio_filepath": "call.wav", "duration": 1.0, "text": "the other side", "audio_channel": 1},
             {"audio_filepath": "call.wav", "duration": 1.0, "text": "no such side", "audio_channel": 5}]
    path = folder / "m.json"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _player_error(base: str, utt_id: int) -> str:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/audio/{utt_id}.wav", timeout=60)
    return json.loads(err.value.read())["error"]


def test_the_measures_and_the_player_name_the_channel_as_the_line_wrote_it(manifest):
    with sde_server(str(manifest), "--estimate-audio-metrics", cwd=manifest.parent) as base:
        reasons = [r["reason"] for r in api(base, "/api/audio-quality")["unreadable"]["reasons"]]
        player = _player_error(base, 2)
    said = "audio_channel 5 is not one of the file's channels (0..1), it has 2; fix the line's audio_channel"
    assert reasons == [said]
    assert player.endswith(f"call.wav: {said}")


@pytest.mark.parametrize("value,shown", [
    (5.0, "audio_channel 5 is not one"), (np.float64(5.0), "audio_channel 5 is not one"),
    ([0.0, 7.0], "audio_channel [0, 7] lists channel 7"), (np.array([0.0, 7.0]), "audio_channel [0, 7] lists"),
    (1.5, "audio_channel 1.5 is not a channel number"),  # a fraction stays as written
])
def test_a_whole_float_from_a_table_is_shown_as_the_whole_number(value, shown):
    with pytest.raises(AudioError, match=rf"^/data/call\.wav: {re.escape(shown)}"):
        channel_selection(value, "/data/call.wav", 2)
