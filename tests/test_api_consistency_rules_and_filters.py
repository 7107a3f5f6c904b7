"""One answer for one kind of mistake, through a real `sde` server process (the CLI, bound to
127.0.0.1), as QA found them differ:

- a drop rule's mistake starts `rule 'NAME': ` whether its filter does not parse or names a column
  that is not there (a syntax error said `rules: rule 'r': …`), in `POST /api/rules/preview` and
  on the Rules page; a rules file's text keeps its lines (`rules:4: rule 'r': …`) in both cases;
- a filter's mistake carries the 0-based `"position"` on /api/utterances and its CSV (and the
  vocabulary's) as on /api/utterances.jsonl, /api/reviews and the rules preview;
- the rules preview takes only a JSON body (415 naming the header otherwise), as the reviews do;
- the Statistics page's "Download manifest without the drops" names the file the server sends:
  the browser saves it under the Content-Disposition name, whatever the link's `download` says.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.request
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from tests.browser_kit import TIMEOUT_MS, by_id, prop, sde_server

ROWS = [{"audio_filepath": f"clip{i}.wav", "duration": 1.0 + i, "text": f"the cat sat {i}",
         "pred_text": f"the bat sat {i}"} for i in range(8)]
DROPPED = 2   # the utterance reviewed "drop"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("consistency") / "m.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture(scope="module")
def served(manifest) -> str:
    with sde_server(str(manifest), "--reviews", str(manifest.parent / "reviews.sqlite")) as url:
        status, saved = send(url, "POST", f"/api/utterances/{DROPPED}/review", b'{"status": "drop"}')
        assert status == 200, saved
        yield url


def send(base: str, method: str, path: str, body: bytes | None = None,
         content_type: str | None = "application/json") -> tuple[int, dict]:
    """(status, JSON body) of one request sent with no header but its Content-Type (none when
    None: urllib would add one of its own); 4xx answers too."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type} if content_type else {})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def preview(base: str, body: dict) -> tuple[int, dict]:
    return send(base, "POST", "/api/rules/preview", json.dumps(body).encode())


# ------------------------------------------------------------------ 1. one prefix for a rule's mistake

RULE_MISTAKES = [
    ("{wer} > 60 &&", 11, "Filter syntax error at character 12"),          # does not parse
    ("{werr} > 1", 1, 'Unknown column "werr" at character 2'),             # parses, no such column
    ("{speech_ratio} > 0.5", 1, "is measured by --vad"),                    # a column of a build option
]
RULE_IDS = ["syntax error", "unknown column", "unmeasured column"]


@pytest.mark.parametrize("flt, position, said", RULE_MISTAKES, ids=RULE_IDS)
def test_a_rule_sent_as_json_names_itself_the_same_way_whatever_its_mistake(served, flt, position, said):
    status, answer = preview(served, {"rules": [{"name": "ok", "filter": "{wer} > 1"}, {"name": "r", "filter": flt}]})
    assert status == 400, answer
    assert answer["error"].startswith("rule 'r': ") and said in answer["error"], answer
    assert (answer["rule"], answer["position"]) == ("r", position), answer
    assert "Traceback" not in answer["error"]


@pytest.mark.parametrize("flt, position, said", RULE_MISTAKES, ids=RULE_IDS)
def test_a_rule_of_a_rules_file_names_its_line_the_same_way_whatever_its_mistake(served, flt, position, said):
    yaml = f'rules:\n  - name: ok\n    filter: "{{wer}} > 1"\n  - name: r\n    filter: "{flt}"\n'
    status, answer = preview(served, {"yaml": yaml})
    assert status == 400, answer
    assert answer["error"].startswith("rules:4: rule 'r': ") and said in answer["error"], answer
    assert (answer["rule"], answer["position"]) == ("r", position), answer


def test_a_rule_that_is_no_mapping_is_numbered_without_a_file_it_does_not_have(served):
    status, answer = preview(served, {"rules": [5]})
    assert status == 400 and answer["error"].startswith("rule 1 must be a mapping with name and filter"), answer


def test_the_rules_page_says_a_rules_mistake_as_the_preview_does(served, browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(served + "/rules")
        for flt, _, said in RULE_MISTAKES[:2]:
            page.fill("#rules-name", "r")
            page.fill("#rules-filter", flt)
            page.click("#rules-add")
            page.wait_for_function("([id, said]) => (document.getElementById(id) || {}).innerText?.includes(said)",
                                   arg=["rules-error", said])
            shown = page.inner_text("#rules-error")
            assert shown.startswith("rule 'r': ") and said in shown, shown
            assert shown == preview(served, {"rules": [{"name": "r", "filter": flt}]})[1]["error"]
    finally:
        ctx.close()


# ------------------------------------------------------------------ 2. "position" on every filter route

@pytest.mark.parametrize("route", ["/api/utterances", "/api/utterances.csv", "/api/utterances.jsonl", "/api/reviews"])
@pytest.mark.parametrize("flt, position, said", [
    ("{duration} > 1 &&", 15, "at character 16"),
    ("{durationn} > 1", 1, "at character 2"),
], ids=["syntax error", "unknown column"])
def test_a_filters_mistake_has_its_0_based_position_on_every_route(served, route, flt, position, said):
    status, answer = send(served, "GET", route + "?" + urlencode({"filter": flt}), content_type=None)
    assert status == 400, answer
    assert said in answer["error"] and answer.get("position") == position, (route, answer)


@pytest.mark.parametrize("route", ["/api/vocabulary", "/api/vocabulary.csv"])
def test_the_vocabularys_filter_mistake_has_its_position_too(served, route):
    status, answer = send(served, "GET", route + "?" + urlencode({"filter": "{countt} > 1"}), content_type=None)
    assert status == 400 and answer.get("position") == 1 and "at character 2" in answer["error"], answer


def test_a_mistake_without_a_position_leaves_the_field_out_rather_than_null(served):
    status, answer = send(served, "GET", "/api/utterances.csv?" + urlencode({"sort": "-durationn"}), content_type=None)
    assert status == 400 and "durationn" in answer["error"] and "position" not in answer, answer


# ------------------------------------------------------------------ 3. the preview takes JSON only

@pytest.mark.parametrize("content_type, named", [
    ("text/plain", "Content-Type 'text/plain'"),
    ("application/x-www-form-urlencoded", "Content-Type 'application/x-www-form-urlencoded'"),
    ("application/yaml", "Content-Type 'application/yaml'"),
    (None, "no Content-Type"),
])
def test_a_preview_not_sent_as_json_is_a_415_naming_the_header(served, content_type, named):
    status, answer = send(served, "POST", "/api/rules/preview", b"{}", content_type)
    assert status == 415, answer
    said = answer["error"]
    assert named in said and "Content-Type: application/json" in said and "rules preview" in said, said
    assert "rules must be a list" not in said


@pytest.mark.parametrize("body", [
    {"rules": [{"name": "long", "filter": "{duration} > 4"}]},
    {"yaml": 'rules:\n  - name: long\n    filter: "{duration} > 4"\n'},
], ids=["rules", "yaml"])
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_a_preview_sent_as_json_is_answered(served, body, content_type):
    status, answer = send(served, "POST", "/api/rules/preview", json.dumps(body).encode(), content_type)
    assert status == 200 and answer["rules"][0]["utterances"] == 4, answer


# ------------------------------------------------------------------ 4. one name for the kept manifest

ROUTER_CALLBACK = {
    "output": "..page-content.children...rendered.data..",
    "outputs": [{"id": "page-content", "property": "children"}, {"id": "rendered", "property": "data"}],
    "inputs": [{"id": "url", "property": "pathname", "value": "/statistics"},
               {"id": "url", "property": "search", "value": ""}],
    "state": [{"id": "rendered", "property": "data", "value": None}],
    "changedPropIds": ["url.pathname"]}


def saved_name(disposition: str) -> str:
    found = re.fullmatch(r'attachment; filename="([^"]+)"', disposition)
    assert found, disposition
    return found.group(1)


def test_the_statistics_kept_manifest_link_names_the_file_the_server_sends(served, manifest):
    # The Statistics page as the server lays it out for the browser (its router callback)
    status, answer = send(served, "POST", "/_dash-update-component", json.dumps(ROUTER_CALLBACK).encode())
    assert status == 200, answer
    link = by_id(answer["response"]["page-content"]["children"], "review-kept-manifest")
    href, download = prop(link, "href"), prop(link, "download")
    with urllib.request.urlopen(served + href, timeout=60) as got:
        assert got.status == 200
        sent_as, body = saved_name(got.headers["Content-Disposition"]), got.read()
    assert download == sent_as == "m.kept.jsonl", (download, sent_as)
    lines = manifest.read_bytes().splitlines(keepends=True)
    assert body == b"".join(lines[:DROPPED] + lines[DROPPED + 1:])


def test_the_browser_saves_the_kept_manifest_under_the_name_the_page_gives(served, browser, manifest):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(served + "/statistics")
        link = page.locator("#review-kept-manifest")
        link.wait_for()
        said = link.get_attribute("download")
        with page.expect_download() as caught:
            link.click()
        saved = caught.value
        assert saved.suggested_filename == said == "m.kept.jsonl", (saved.suggested_filename, said)
        assert Path(saved.path()).read_bytes().count(b"\n") == len(ROWS) - 1
    finally:
        ctx.close()
