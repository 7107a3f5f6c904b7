"""A TTS report groups utterances by speaker and holds each speaker's phoneme counts: grouped by a
column of transcripts or paths (`/api/tts?speaker=text`: one "speaker" per line), it held ~7 KB a
line for the server's life (GBs at a million lines). Over MAX_SPEAKERS it is refused, saying why."""

from __future__ import annotations

import http.client
import json

import pytest

from sde.dataset import build_dataset
from sde.quality import tts
from sde.web.app import AppConfig, create_app
from tests.server_kit import served_port

ROWS = [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": f"line number {i}", "speaker": f"s{i % 2}"}
        for i in range(6)]


@pytest.fixture
def dataset(write_manifest, monkeypatch):
    monkeypatch.setattr(tts, "MAX_SPEAKERS", 3)
    return build_dataset(write_manifest(ROWS))


@pytest.mark.parametrize("column, refused", [("speaker", False), ("text", True), ("audio_filepath", True)])
def test_a_report_by_a_column_of_more_values_than_speakers_is_refused(dataset, column, refused):
    if not refused:
        assert [s["speaker"] for s in tts.tts_report(dataset.utterances, None, speaker_column=column)["speakers"]] \
            == ["s0", "s1"]
        return
    with pytest.raises(tts.TooManySpeakers, match=f'"{column}" has 6 distinct values: .* at most 3 speakers'):
        tts.tts_report(dataset.utterances, None, speaker_column=column)


def test_the_api_answers_422_naming_the_column(dataset):
    with served_port(create_app(dataset, AppConfig(audio_routes=False))) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/api/tts?lang=en&speaker=text")
        answer = conn.getresponse()
        body = json.loads(answer.read())
    assert answer.status == 422 and 'speaker column "text" has 6 distinct values' in body["error"]
