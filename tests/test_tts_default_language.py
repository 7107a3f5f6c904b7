"""The TTS page's phoneme language, when the URL names none: the manifest's most common `lang`,
where a line without one counts as English (36 lines without a language and one each of ru, zh and
ar made Russian phonemes "missing" for English speakers)."""

from __future__ import annotations

import flask
import pytest

from sde.dataset import DatasetOptions, build_dataset
from sde.web.api import register_api
from sde.web.panels.quality_data import default_lang
from tests.browser_kit import get_json


def _lines(langs: list[str | None]) -> list[dict]:
    rows = []
    for i, lang in enumerate(langs):
        row = {"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": "hello there", "speaker": "s1"}
        if lang is not None:
            row["lang"] = lang
        rows.append(row)
    return rows


@pytest.mark.parametrize("langs,expected", [
    ([None] * 36 + ["ru", "zh", "ar"], "en"),      # most lines have none: English
    (["de"] * 5 + [None] * 2, "de"),
    (["DE", "de", "fr"], "de"),                      # case folded
    (["", " ", "fr"], "en"),                         # blank is none
    (["fr", "de"], "de"),                            # a tie: alphabetical, whatever the order
    (["de", "fr"], "de"),
    (["not a code!"] * 3, "en"),                     # not a language code: English
])
def test_default_language_counts_lines_without_one_as_english(write_manifest, langs, expected):
    dataset = build_dataset(write_manifest(_lines(langs)), DatasetOptions(), workers=1)
    assert default_lang(dataset) == expected


def test_the_tts_answer_uses_it_when_the_url_names_no_language(write_manifest):
    dataset = build_dataset(write_manifest(_lines([None] * 6 + ["ru"])), DatasetOptions(), workers=1)
    server = flask.Flask("test")
    register_api(server, dataset)
    client = server.test_client()
    assert get_json(client, "/api/tts")["language"] == "en"
    assert get_json(client, "/api/tts?lang=ru")["language"] == "ru"
