"""Breakdowns over a real manifest: per-group WER/CER against jiwer, and the columns a mistaken
request is told to choose from (those the Errors page offers, not transcripts or metric columns)."""

from __future__ import annotations

import collections

import flask
import jiwer
import pytest

from sde import analysis
from sde.dataset import DatasetOptions, build_dataset
from sde.web.api import register_api
from sde.web.pages import breakdown
from tests.browser_kit import get_json

ROWS = [
    {"audio_filepath": "a0.wav", "duration": 1.0, "text": "the cat", "pred_text": "the cat",
     "pred_text_b": "a cat", "speaker": "ann"},
    {"audio_filepath": "a1.wav", "duration": 3.0, "text": "the cat", "pred_text": "the bat sat",
     "pred_text_b": "the cat", "speaker": "bob"},
    {"audio_filepath": "a2.wav", "duration": 12.0, "text": "good morning", "pred_text": "good",
     "speaker": "ann"},
    {"audio_filepath": "a3.wav", "duration": 25.0, "text": "", "pred_text": "um",
     "pred_text_b": "", "speaker": "bob"},
]


@pytest.fixture
def dataset(write_manifest):
    return build_dataset(write_manifest(ROWS), DatasetOptions(), workers=1)


def _client(dataset) -> flask.testing.FlaskClient:
    server = flask.Flask("test")
    register_api(server, dataset)
    return server.test_client()


@pytest.mark.parametrize("field", ["pred_text", "pred_text_b"])
def test_breakdown_by_speaker_matches_jiwer(dataset, field):
    groups: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for row in ROWS:
        if field not in row:
            continue  # not scored: in none of its groups
        words = row["text"].split()
        out = jiwer.process_words(row["text"], row[field]) if words else None
        errors = out.substitutions + out.deletions + out.insertions if out else len(row[field].split())
        for i, value in enumerate((1, len(words), errors)):
            groups[row["speaker"]][i] += value
    got = get_json(_client(dataset), f"/api/breakdown?by=speaker&hyp={field}&ci=0")["rows"]
    assert [r["value"] for r in got] == sorted(groups)
    for r in got:
        utterances, words, errors = groups[r["value"]]
        assert (r["utterances"], r["words"]) == (utterances, words)
        assert r["wer"] == pytest.approx(100 * errors / words if words else (100.0 if errors else 0.0), abs=1e-6)


def test_an_unknown_column_names_the_columns_the_page_offers(dataset):
    client = _client(dataset)
    offered = breakdown.group_columns(dataset)
    assert offered == ["duration_bucket", "speaker", "num_words", "num_chars"]
    for url in ("/api/breakdown?by=nosuch", "/api/breakdown"):
        response = client.get(url)
        assert response.status_code == 400
        message = response.get_json()["error"]
        listed = message.split("choose one of: ")[1].split(", ")
        assert listed == offered, message  # before: text, pred_text, pred_text_b, sub, del, ins, sub_b, …
    assert analysis.breakdown_columns(dataset.utterances) == offered
    # any column still works when asked for by name
    assert get_json(client, "/api/breakdown?by=pred_text_b&ci=0")["total"] == 4  # 3 values and missing
