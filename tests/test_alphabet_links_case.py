"""Each character of the Statistics page's alphabet lists the references that hold it, in its case
and whatever it is: "T" listed every reference with a "t" (`contains` ignores case; QA), and a
regex's own characters (. ( [ \\ ^ $ * + ? | { }) must be taken as themselves."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest

from sde.dataset import build_dataset
from sde.web import state
from sde.web.app import AppConfig, create_app
from tests.browser_kit import by_id, components, get_json, prop

TEXTS = ["The cat", "the dog", "a.b c", "(laughs) yes", "back\\slash", 'say "hi"', "cost $5^2*3+1?", "a|b {x} [y]",
         "café", "tab\there", "plain words"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("alphabet")
    (folder / "m.json").write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": t}) + "\n"
                                           for i, t in enumerate(TEXTS)))
    dataset = build_dataset(folder / "m.json")
    return dataset, create_app(dataset, AppConfig(title="alphabet", audio_routes=False)).server.test_client()


def test_each_character_lists_the_references_holding_it_in_its_case(served):
    from sde.web.pages import statistics

    dataset, client = served
    page = statistics.layout(dataset, "/statistics", {})
    chips = [c for c in components(by_id(page, state.STATS_ALPHABET)) if prop(c, "className") == "alpha-char"]
    assert {"T", "t", ".", "(", "\\", '"', "$", "^", "*", "+", "?", "|", "{", "[", "é", "\t"} <= set(dataset.alphabet)
    for char, chip in zip(dataset.alphabet, chips, strict=True):
        listed = get_json(client, "/api/utterances?page_size=100&" + urlparse(prop(chip, "href")).query)
        assert sorted(r["text"] for r in listed["rows"]) == sorted(t for t in TEXTS if char in t), repr(char)
