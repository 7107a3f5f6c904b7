"""A POST to Dash's callback route that is no callback request the browser would send (a script,
a scanner, a stale tab after a restart) is a JSON 400 naming what is wrong, never a 500 with a
traceback in the server's log; the router answers any JSON its inputs are given. Real requests
still answer as before."""

from __future__ import annotations

import json
import logging

import pytest

from sde.web.app import CALLBACK_PATH

ROUTER_OUTPUT = "..page-content.children...rendered.data.."


def router_body(pathname, search, rendered=None) -> dict:
    return {"output": ROUTER_OUTPUT,
            "outputs": [{"id": "page-content", "property": "children"}, {"id": "rendered", "property": "data"}],
            "inputs": [{"id": "url", "property": "pathname", "value": pathname},
                       {"id": "url", "property": "search", "value": search}],
            "state": [{"id": "rendered", "property": "data", "value": rendered}],
            "changedPropIds": ["url.pathname"]}


def post(client, body: bytes | str | dict, content_type: str = "application/json"):
    data = json.dumps(body) if isinstance(body, dict) else body
    return client.post(CALLBACK_PATH, data=data, content_type=content_type)


@pytest.fixture()
def no_errors_logged(caplog):
    caplog.set_level(logging.ERROR)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize("body, says", [
    (b"[" * 100_000 + b"]" * 100_000, "JSON object"),                # RecursionError in json
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "JSON object"),
    (b"NaN", "JSON object"),
    (b'"just a string"', "JSON object"),
    (b"\xff\xfe{}", "JSON object"),                                  # not UTF-8
    (b"{not json", "JSON object"),
    ({"output": "x.y", "inputs": []}, "no callback has the output 'x.y'"),
    ({"output": 7, "inputs": []}, "no callback has the output 7"),
    ({"output": ROUTER_OUTPUT, "inputs": 5, "changedPropIds": 7}, "'inputs' must be a list of 2"),
    ({**router_body("/", ""), "inputs": [{"id": "url", "property": "pathname", "value": "/"}]}, "'inputs' must be a list of 2"),
    ({**router_body("/", ""), "inputs": ["url.pathname", "url.search"]}, "'inputs' must be a list of 2"),
    ({**router_body("/", ""), "state": {"id": "rendered"}}, "'state' must be a list of 1"),
    ({**router_body("/", ""), "outputs": "page-content.children"}, "'outputs' must be"),
    ({**router_body("/", ""), "changedPropIds": [1, 2]}, "'changedPropIds' must be a list of strings"),
    ({"output": "doc-title.data", "inputs": []}, "computed in the browser"),  # Dash: KeyError, a 500
])
def test_a_malformed_callback_request_is_a_json_400_naming_the_problem(web_client, no_errors_logged, body, says):
    resp = post(web_client, body)
    assert resp.status_code == 400, (resp.status_code, resp.data[:300])
    assert resp.mimetype == "application/json"
    assert says in resp.get_json()["error"]


def test_a_callback_request_that_is_not_json_typed_is_a_400(web_client, no_errors_logged):
    resp = post(web_client, router_body("/", ""), content_type="text/plain")
    assert resp.status_code == 400 and "JSON object" in resp.get_json()["error"]


@pytest.mark.parametrize("pathname, search, rendered", [
    (5, None, None), (["/samples"], {"a": 1}, "x"), (None, 3.5, []), ({"x": 1}, True, 7),
])
def test_the_router_answers_any_json_values(web_client, no_errors_logged, pathname, search, rendered):
    resp = post(web_client, router_body(pathname, search, rendered))
    assert resp.status_code == 200, resp.data[:300]
    assert resp.get_json()["response"]["rendered"]["data"]["path"] == "/"


def test_a_real_callback_request_still_renders_its_page(web_client, no_errors_logged):
    resp = post(web_client, router_body("/samples", "?filter=%7Bwer%7D+%3E+10"))
    assert resp.status_code == 200
    rendered = resp.get_json()["response"]["rendered"]["data"]
    assert rendered["path"] == "/samples" and rendered["params"] == {"filter": "{wer} > 10"}
