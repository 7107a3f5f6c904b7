"""Numbers in requests are written in the digits 0-9, through the real server: `page`, `page_size`
and an utterance id in an audio path. Python's int() took " 1", "+1", "1_0" and "１" (full-width),
and Werkzeug's int converter any Unicode digit, so /audio/٣.wav served utterance 3 while
/api/utterances/٣ answered 404 (found by exploratory QA). A POST to the rules preview that is not
JSON now shows the rules body, not a review's."""

from __future__ import annotations

import json
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf

from tests.test_audio_faults import SdeServer, assert_no_traceback

SR = 16000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("number_spellings")
    sf.write(folder / "a.wav", 0.1 * np.ones(SR, dtype=np.float32), SR, subtype="PCM_16")
    lines = [{"audio_filepath": "a.wav", "duration": 1.0, "text": f"line {i}"} for i in range(5)]
    (folder / "m.json").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    with SdeServer(str(folder / "m.json"), "--no-cache") as s:
        yield s
    assert_no_traceback(s)


@pytest.mark.parametrize("name, raw", [
    ("page", " 1"), ("page", "+1"), ("page", "1_0"), ("page", "１"), ("page", "٣"),
    ("page_size", " 1"), ("page_size", "1 "), ("page_size", "１"),
])
def test_a_number_in_other_digits_or_spelling_is_refused(server, name, raw):
    code, _, body = server.get(f"/api/utterances?{name}={quote(raw)}")
    assert code == 400, body[:200]
    assert "digits 0-9" in json.loads(body)["error"]


@pytest.mark.parametrize("name, raw, rows", [("page", "0", 5), ("page", "1", 0), ("page_size", "2", 2),
                                             ("page_size", "0002", 2)])
def test_a_number_in_digits_is_read(server, name, raw, rows):
    assert len(server.json(f"/api/utterances?{name}={raw}", 200)["rows"]) == rows


@pytest.mark.parametrize("path", ["/audio/%D9%A3.wav", "/audio/%EF%BC%93.ogg", "/api/utterances/%D9%A3/signal",
                                  "/api/utterances/%D9%A3"])
def test_an_id_in_other_digits_is_no_utterance(server, path):
    code, _, body = server.get(path)
    assert code == 404, body[:200]
    assert "error" in json.loads(body)


def test_an_id_in_digits_plays(server):
    code, _, body = server.get("/audio/3.wav")
    assert code == 200 and body[:4] == b"RIFF"


def test_a_rules_preview_that_is_not_json_shows_the_rules_body(server):
    code, _, body = server.request("/api/rules/preview", "POST", {"Content-Type": "application/json"}, b"nope")
    assert code == 400
    message = json.loads(body)["error"]
    assert '{"rules": [' in message and "status" not in message
