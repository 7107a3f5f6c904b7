"""A segment shorter than one sample (duration 1e-5 s at 16 kHz: 0.16 samples) was served as a WAV
of no samples, which a browser's player refuses to play. Any duration above 0 now reads at least
the one sample nearest its start; a duration of 0 reads to the end of the file (as NeMo does), and a
negative one is a bad manifest line, skipped and named. Through the real server."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from tests.test_audio_faults import SdeServer, assert_no_traceback

SR = 16000
#: (offset, duration) of each line; the line of a negative duration is skipped, so ids run 0..3
LINES = [(0.0, 1e-5), (0.5, 3e-5), (0.25, 0.0), (0.0, -1.0), (0.0, 0.5)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_segments")
    sf.write(folder / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR), SR, subtype="PCM_16")
    lines = [{"audio_filepath": "tone.wav", "offset": o, "duration": d, "text": "a", "pred_text": "a"}
             for o, d in LINES]
    path = folder / "m.json"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with SdeServer(str(path)) as s:
        yield s
    assert_no_traceback(s)


@pytest.mark.parametrize("uid", [0, 1], ids=["1e-5 s", "3e-5 s at 0.5 s"])
@pytest.mark.parametrize("fmt", ["wav", "ogg"])
def test_a_segment_shorter_than_a_sample_plays_one_sample(server, uid, fmt):
    code, headers, body = server.get(f"/audio/{uid}.{fmt}")
    assert code == 200, body[:300]
    audio, sr = sf.read(io.BytesIO(body))
    assert sr == SR and len(audio) == 1


def test_a_zero_duration_reads_to_the_end_of_the_file(server):
    code, _, body = server.get("/audio/2.wav")
    assert code == 200, body[:300]
    audio, sr = sf.read(io.BytesIO(body))
    assert len(audio) == SR - SR // 4


def test_a_negative_duration_is_a_skipped_line_named_with_its_value(server):
    assert server.json("/api/summary", 200)["utterances"] == len(LINES) - 1
    assert '"duration" must be a non-negative number, got -1' in "".join(server.stderr)
    code, _, body = server.get("/audio/3.wav")  # the line after it
    assert code == 200 and len(sf.read(io.BytesIO(body))[0]) == SR // 2
