"""A query string whose text is not UTF-8 (a Latin-1 terminal, an old script: `é` sent as %E9)
is a 400 naming the parameter and the byte, never read as U+FFFD: `{text} contains "caf%E9"`
answered 200 with no rows, a wrong answer without a word. UTF-8 text answers as before."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app


@pytest.fixture()
def client(write_manifest):
    path = write_manifest([
        {"audio_filepath": "a.wav", "duration": 1.0, "text": "un café noir", "pred_text": "un cafe noir"},
        {"audio_filepath": "b.wav", "duration": 1.0, "text": "thé vert", "pred_text": "the vert"},
    ])
    return create_app(build_dataset(path), AppConfig(audio_routes=False)).server.test_client()


def latin1(text: str) -> str:
    return quote(text.encode("latin-1"))


CAFE = '{text} contains "café"'


@pytest.mark.parametrize("query, parameter, byte", [
    ("filter=" + latin1(CAFE), "filter", "0xE9 at position 20 of its value"),
    ("sort=" + latin1("é"), "sort", "0xE9 at position 0 of its value"),
    ("filter=%7Bwer%7D%3E1&hyp=%FF%FE", "hyp", "0xFF at position 0 of its value"),
    ("caf%E9=1", "caf\ufffd", "0xE9 at position 3 of its name"),
])
def test_a_parameter_that_is_not_utf8_is_a_400_naming_it(client, query, parameter, byte):
    resp = client.get(f"/api/utterances?{query}")
    assert resp.status_code == 400, resp.get_json()
    body = resp.get_json()
    assert body["parameter"] == parameter
    assert byte in body["error"] and "%C3%A9" in body["error"]


def test_a_raw_latin1_byte_is_refused_too(client):
    # WSGI's QUERY_STRING holds the bytes of the request line as Latin-1 characters: \xe9 is 0xE9
    resp = client.get("/api/utterances", environ_overrides={"QUERY_STRING": "filter=%7Btext%7D+contains+%22caf\xe9%22"})
    assert resp.status_code == 400 and "0xE9" in resp.get_json()["error"]


@pytest.mark.parametrize("route", ["/api/utterances.csv", "/api/vocabulary", "/api/errors"])
def test_every_api_route_refuses_it(client, route):
    resp = client.get(f"{route}?filter={latin1(CAFE)}")
    assert resp.status_code == 400 and "not UTF-8" in resp.get_json()["error"]


def test_utf8_text_still_selects_its_rows(client):
    resp = client.get(f"/api/utterances?filter={quote(CAFE)}")
    assert resp.status_code == 200
    assert [r["text"] for r in resp.get_json()["rows"]] == ["un café noir"]
    # + for a space, and a value holding a literal U+FFFD, sent as UTF-8, are text like any other
    resp = client.get("/api/utterances?filter=%7Btext%7D+contains+%22%EF%BF%BD%22")
    assert resp.status_code == 200 and resp.get_json()["total"] == 0
