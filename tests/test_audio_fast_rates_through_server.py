"""The player's Ogg of audio recorded at 256 kHz and more, through the real server: before, libsndfile
crashed the whole server (SIGSEGV) on the first such request (found by exploratory QA). Now it is
decimated to a rate Vorbis encodes, and the server answers the next request."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from tests.test_audio_faults import SdeServer, assert_no_traceback

RATES = [96000, 256000, 352800, 384000]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast_rates")
    lines = []
    for rate in RATES:
        t = np.arange(rate) / rate
        sf.write(folder / f"sr{rate}.wav", 0.3 * np.sin(2 * np.pi * 440 * t), rate)
        lines.append({"audio_filepath": f"sr{rate}.wav", "duration": 1.0, "text": "a tone"})
    (folder / "m.json").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    with SdeServer(str(folder / "m.json"), "--no-cache") as s:
        yield s
    assert_no_traceback(s)


@pytest.mark.parametrize("uid, rate", list(enumerate(RATES)))
def test_the_ogg_of_fast_audio_plays_and_the_server_lives(server, uid, rate):
    code, _, body = server.get(f"/audio/{uid}.ogg")
    assert code == 200, body[:300]
    audio, sr = sf.read(io.BytesIO(body))
    assert sr <= 192000 and abs(len(audio) / sr - 1.0) < 0.01
    assert server.json("/api/summary", 200)["utterances"] == len(RATES)
