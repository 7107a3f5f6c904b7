"""No single request may exhaust the server: every one is bounded, and user text never becomes
chart markup. All through the real `sde` process (tests/test_audio_faults.SdeServer):

* sort keys are deduplicated and capped (MAX_SORT_KEYS), on the JSON API and in the grid callback;
* a grid block is at most MAX_PAGE_SIZE rows whatever startRow/endRow say; hostile values are messages;
* page / page_size of the JSON API are validated (400 JSON, the limit in the message);
* filters are capped in length and clauses;
* /api/problems pages (`{"total", "rows"}` plus the counts), and so does the Problems page;
* field names and hypothesis labels reach plotly escaped (no `<a href>` in a chart);
* paths that are not a page answer 404;
* a query DuckDB cannot run within --memory-limit is a 400 naming it, never a 500.
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import urlencode

import pytest

from sde.query import MAX_CLAUSES, MAX_PAGE_SIZE, MAX_QUERY_LENGTH, MAX_SORT_KEYS
from sde.web.api import MAX_PAGE
from tests.test_audio_faults import ROOT, SdeServer, assert_no_traceback

N_ROWS = 2_500
N_BAD = 1_234
LINK_FIELD = '<a href="http://x">bad</a>'     # a numeric field's NAME: gets a histogram
BOLD_HYP = "pred_text_<b>x</b>"               # a hypothesis whose label is markup
SPEAKERS = ["<i>ann</i>", "bob", "cy"]
# Requests that used to take seconds and gigabytes answer within this (a loaded 2-core machine).
FAST_S = 5.0
# Server memory one such request may add. Every sort key once cost ~40 bytes a row: 1,000 keys
# took a 100k-row server from 181 MB to 955 MB; here 5,000 keys on 2,500 rows added ~117 MB.
GROWTH = 30_000_000


def manifest_lines() -> list[str]:
    lines = []
    for i in range(N_ROWS):
        lines.append(json.dumps({
            "audio_filepath": f"a{i}.wav", "duration": 1.0 + (i % 17) / 4, "text": f"the cat {i % 50} sat",
            "pred_text": f"the bat {i % 50} sat", BOLD_HYP: f"a cat {i % 40} sat", LINK_FIELD: (i % 23) * 1.5,
            "speaker": SPEAKERS[i % 3], "snr": float(i % 31),
        }))
        if i < N_BAD:
            lines.append("{not json " + str(i))
    return lines


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    path = tmp_path_factory.mktemp("bounds") / "bounds.json"
    path.write_text("\n".join(manifest_lines()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(manifest):
    with SdeServer(str(manifest)) as s:
        yield s


def get(server: SdeServer, path: str, **params) -> tuple[int, dict | bytes, float]:
    """(status, JSON body (or raw bytes), seconds) of one GET."""
    url = path + (f"?{urlencode(params)}" if params else "")
    t0 = time.monotonic()
    code, hdrs, body = server.get(url)
    took = time.monotonic() - t0
    if hdrs.get("content-type", "").startswith("application/json"):
        return code, json.loads(body), took
    return code, body, took


# ------------------------------------------------------------------------ Dash callbacks, for real

def _dependencies(server: SdeServer) -> list[dict]:
    code, _, body = server.get("/_dash-dependencies")
    assert code == 200
    return json.loads(body)


def _outputs(spec: str):
    """Dash's output string ("..a.b...c.d.." or "a.b") → the `outputs` field of a callback request."""
    if spec.startswith(".."):
        return [dict(zip(("id", "property"), part.rsplit(".", 1))) for part in spec[2:-2].split("...")]
    return dict(zip(("id", "property"), spec.rsplit(".", 1)))


def call(server: SdeServer, input_id: str, input_prop: str, value, state: dict | None = None) -> tuple[int, dict]:
    """POST the callback whose input is `input_id.input_prop`, as the browser would."""
    dep = next(d for d in _dependencies(server)
               if any(i["id"] == input_id and i["property"] == input_prop for i in d["inputs"]))
    state = state or {}
    body = {
        "output": dep["output"], "outputs": _outputs(dep["output"]),
        "inputs": [{**i, "value": value if (i["id"], i["property"]) == (input_id, input_prop) else None}
                   for i in dep["inputs"]],
        "state": [{**s, "value": state.get(f"{s['id']}.{s['property']}")} for s in dep["state"]],
        "changedPropIds": [f"{input_id}.{input_prop}"],
    }
    code, _, raw = server.request("/_dash-update-component", "POST", {"Content-Type": "application/json"},
                                  json.dumps(body).encode())
    return code, (json.loads(raw) if raw.strip() else {})


def grid(server: SdeServer, request: dict) -> tuple[list[dict], int, str, float]:
    """(rowData, rowCount, the row-count text shown above the grid, seconds) of one getRows call."""
    t0 = time.monotonic()
    code, body = call(server, "samples-grid", "getRowsRequest", request, {"url.search": ""})
    took = time.monotonic() - t0
    assert code == 200, (request if len(str(request)) < 300 else str(request)[:300], code, body)
    resp = body["response"]
    return (resp["samples-grid"]["getRowsResponse"]["rowData"], resp["samples-grid"]["getRowsResponse"]["rowCount"],
            json.dumps(resp["samples-count"]["children"]), took)


# ------------------------------------------------------------------------------------ sort keys

NINE_COLUMNS = ["id", "duration", "text", "speaker", "snr", "num_words", "num_chars", "word_rate", "char_rate"]


@pytest.mark.parametrize("sort, same_as", [
    (",".join(["id"] * 1_000), "id"),
    (",".join(["-duration", "id"] * 600), "-duration,id"),        # 1,200 keys, 2 distinct
    ("-duration,id,duration,-id", "-duration,id"),                 # a column's first key wins
    (",".join(NINE_COLUMNS[:MAX_SORT_KEYS]), ",".join(NINE_COLUMNS[:MAX_SORT_KEYS])),
], ids=["id x1000", "2 keys x600", "repeats", "the limit"])
def test_repeated_sort_keys_are_deduplicated(server, sort, same_as):
    _, expected, _ = get(server, "/api/utterances", sort=same_as, page_size=20)
    before = server.rss()
    code, body, took = get(server, "/api/utterances", sort=sort, page_size=20)
    assert code == 200, body
    assert took < FAST_S and server.rss() - before < GROWTH
    assert [r["id"] for r in body["rows"]] == [r["id"] for r in expected["rows"]]


@pytest.mark.parametrize("route", ["/api/utterances", "/api/utterances.csv"])
def test_more_sort_columns_than_the_limit_is_400_naming_it(server, route):
    code, body, _ = get(server, route, sort=",".join(NINE_COLUMNS))
    assert code == 400 and f"at most {MAX_SORT_KEYS}" in body["error"]


def test_a_sort_longer_than_the_filter_limit_is_400(server):
    code, body, _ = get(server, "/api/utterances", sort="id," * (MAX_QUERY_LENGTH // 3 + 10))
    assert code == 400 and "too long" in body["error"]


def test_a_filter_whose_url_is_too_long_to_read_is_a_json_414_and_the_server_serves_on(server):
    # 9,000 emoji: a filter within the 10,000-character limit, ~108 KB in a URL; it was an HTML page
    code, body, _ = get(server, "/api/utterances", filter='{text} contains "' + "😀" * 9_000 + '"')
    assert code == 414 and isinstance(body, dict), body[:200] if isinstance(body, bytes) else body
    assert "longer than 65,536 bytes" in body["error"] and "shorten the filter" in body["error"]
    assert get(server, "/api/summary")[0] == 200


# ----------------------------------------------------------------------------- grid callback

@pytest.mark.parametrize("request_, rows, first_id", [
    ({"startRow": 0, "endRow": 10**9}, MAX_PAGE_SIZE, 0),          # all rows in one callback: clamped
    ({"startRow": 100, "endRow": 10**12}, MAX_PAGE_SIZE, 100),
    ({"startRow": -50, "endRow": 10}, 10, 0),                      # negative start: from the top
    ({"startRow": 10**18, "endRow": 10**18 + 100}, 0, None),       # past the end: empty
    ({"startRow": 20, "endRow": 5}, 0, None),                      # end before start: empty
    ({"startRow": 5.0, "endRow": 8.0}, 3, 5),                      # JSON numbers that are whole
    ({}, 100, 0),                                                  # AG Grid's default block
])
def test_grid_blocks_are_clamped(server, request_, rows, first_id):
    data, count, _, took = grid(server, {"sortModel": [{"colId": "id", "sort": "asc"}], **request_})
    assert len(data) == rows and count == N_ROWS
    assert took < FAST_S
    if first_id is not None:
        assert data[0]["id"] == first_id


@pytest.mark.parametrize("request_, message", [
    ({"startRow": "abc", "endRow": 100}, "startRow must be a whole number"),
    ({"startRow": 0, "endRow": 1.5}, "endRow must be a whole number"),
    ({"startRow": True, "endRow": 100}, "startRow must be a whole number"),
    ({"startRow": 0, "endRow": 100, "sortModel": [{"colId": c, "sort": "asc"} for c in NINE_COLUMNS]},
     f"at most {MAX_SORT_KEYS}"),
    ({"startRow": 0, "endRow": 100, "sortModel": "id"}, "sort model must be a list"),
    ({"startRow": 0, "endRow": 100, "filterModel": {"snr": {"filterType": "number", "operator": "AND", "conditions": [
        {"operator": "AND", "conditions": [{"type": "equals", "filter": 1}]}]}}}, "cannot be nested"),
    ({"startRow": 0, "endRow": 100, "filterModel": {"text": {"filterType": "text", "type": "contains",
                                                              "filter": "x" * (MAX_QUERY_LENGTH + 1)}}}, "too long"),
])
def test_hostile_grid_requests_are_messages(server, request_, message):
    data, count, shown, took = grid(server, request_)
    assert data == [] and count == 0
    assert message in shown
    assert took < FAST_S


def test_a_5000_entry_sort_model_is_one_key(server):
    model = [{"colId": "duration", "sort": "desc"}] * 2_500 + [{"colId": "id", "sort": "asc"}] * 2_500
    before = server.rss()
    data, count, _, took = grid(server, {"startRow": 0, "endRow": 50, "sortModel": model})
    assert server.rss() - before < GROWTH
    assert took < FAST_S and count == N_ROWS
    _, expected, _ = get(server, "/api/utterances", sort="-duration,id", page_size=50)
    assert [r["id"] for r in data] == [r["id"] for r in expected["rows"]]


@pytest.mark.parametrize("clicked", [{"rowIndex": "abc"}, {"rowIndex": 1.5}, {"rowIndex": -1}, {"rowIndex": 10**20},
                                     "row 3", [1]])
def test_hostile_grid_clicks_are_ignored(server, clicked):
    code, body = call(server, "samples-grid", "cellClicked", clicked, {"samples-state.data": {}})
    assert code in (200, 204) and "url" not in body.get("response", {}), body  # no navigation, no error


# ------------------------------------------------------------------------ JSON API page bounds

@pytest.mark.parametrize("route", ["/api/utterances", "/api/vocabulary", "/api/problems"])
@pytest.mark.parametrize("params, message", [
    ({"page": "-1"}, "page must be between 0 and"),
    ({"page": "1e18"}, "page must be an integer"),
    ({"page": "abc"}, "page must be an integer"),
    ({"page": "0x10"}, "page must be an integer"),
    ({"page": str(10**18)}, f"page must be between 0 and {MAX_PAGE}"),
    ({"page": "9" * 5_000}, "page must be an integer"),
    ({"page_size": str(MAX_PAGE_SIZE + 1)}, f"page_size must be between 1 and {MAX_PAGE_SIZE}"),
    ({"page_size": "0"}, "page_size must be between 1"),
    ({"page_size": "10e3"}, "page_size must be an integer"),
])
def test_bad_page_values_are_400_json_naming_the_limit(server, route, params, message):
    code, body, took = get(server, route, **params)
    assert code == 400 and message in body["error"], body
    assert len(body["error"]) < 200  # a 10,000-digit page is not echoed back
    assert took < FAST_S


@pytest.mark.parametrize("route, total", [("/api/utterances", N_ROWS), ("/api/problems", N_BAD)])
def test_pages_past_the_end_are_empty(server, route, total):
    code, body, _ = get(server, route, page=str(MAX_PAGE), page_size="1000")
    assert code == 200 and body["rows"] == [] and body["total"] == total


def test_the_largest_page_is_max_page_size_rows(server):
    code, body, _ = get(server, "/api/utterances", page_size=str(MAX_PAGE_SIZE))
    assert code == 200 and len(body["rows"]) == MAX_PAGE_SIZE and body["total"] == N_ROWS


# ------------------------------------------------------------------------------------- filters

@pytest.mark.parametrize("route", ["/api/utterances", "/api/utterances.csv", "/api/vocabulary"])
@pytest.mark.parametrize("filter_text, status, message", [
    ('{text} contains "' + "x" * MAX_QUERY_LENGTH + '"', 400, f"at most {MAX_QUERY_LENGTH}"),
    (" && ".join(f"{{snr}} != {i}" for i in range(MAX_CLAUSES + 1)), 400, f"at most {MAX_CLAUSES}"),
    (" && ".join(f'{{text}} contains "{c}"' for c in "abcdefghijklmnop"[:MAX_CLAUSES]), 200, None),
], ids=["too long", "too many clauses", "the limit"])
def test_filters_are_capped_in_length_and_clauses(server, route, filter_text, status, message):
    if route == "/api/vocabulary":
        filter_text = filter_text.replace("{snr}", "{count}").replace("{text}", "{word}")
    code, body, took = get(server, route, filter=filter_text)
    assert code == status, body if isinstance(body, dict) else body[:300]
    if message:
        assert message in body["error"]
    assert took < FAST_S


# ------------------------------------------------------- query strings sde would otherwise misread

@pytest.mark.parametrize("query, parameter, says", [
    ("filter=%7Bsnr%7D%3E10&filter=%7Bsnr%7D%3C20", "filter", "join them in one: filter=(A) && (B)"),
    ("page=1&page=2", "page", "parameter 'page' is given 2 times ('1', '2'); give it once"),
    ("sort=id&sort=-id", "sort", "given 2 times"),
    ("page_size=5&" * 30, "page_size", "given 30 times ('5', '5', '5' and 27 more)"),
    # `&&` not URL-encoded: the server got filter="{snr}>10" and a parameter named "{snr}<20"
    ("filter={snr}>10&&{snr}<20", "{snr}<20", "&& as %26%26"),
    ('filter={text} contains "cat&dog"', 'dog"', "not URL-encoded"),
], ids=["filter twice", "page twice", "sort twice", "page_size x30", "raw &&", "raw & in a string"])
@pytest.mark.parametrize("route", ["/api/utterances", "/api/utterances.csv", "/api/errors", "/api/vocabulary"])
def test_a_query_string_sde_would_misread_is_400_naming_the_parameter(server, route, query, parameter, says):
    raw = query.replace(" ", "%20").replace('"', "%22")  # as a browser sends it: only what HTTP forbids encoded
    code, _, body = server.get(f"{route}?{raw}")
    body = json.loads(body)
    assert code == 400 and body["parameter"] == parameter and says in body["error"], body


@pytest.mark.parametrize("query, total", [
    ("filter=%7Bsnr%7D%3E10%20%26%26%20%7Bsnr%7D%3C20", sum(10 < i % 31 < 20 for i in range(N_ROWS))),
    ("_=1712345678&page_size=1", N_ROWS),  # a cache buster: a parameter sde does not read, as before
])
def test_an_encoded_filter_and_unknown_plain_parameters_still_answer(server, query, total):
    code, _, body = server.get(f"/api/utterances?{query}")
    assert code == 200 and json.loads(body)["total"] == total


@pytest.mark.parametrize("method, path, status, says, allow", [
    ("POST", "/api/utterances", 405, "POST is not allowed on /api/utterances; use GET", "GET"),
    ("DELETE", "/api/utterances/1/review", 405, "DELETE is not allowed on /api/utterances/1/review; use GET or POST",
     "POST"),
    ("PUT", "/audio/0.wav", 405, "PUT is not allowed on /audio/0.wav; use GET", "GET"),
    ("GET", "/api/rules/preview", 405, "GET is not allowed on /api/rules/preview; use POST", "POST"),
    ("POST", "/api/no-such-route", 404, "no API route /api/no-such-route", None),
], ids=["POST a table", "DELETE a review", "PUT audio", "GET a POST route", "POST nowhere"])
def test_a_method_a_route_does_not_take_is_a_json_answer_naming_the_methods(server, method, path, status, says, allow):
    # these were Flask's HTML "405 Method Not Allowed" page (or a 404 naming no method)
    code, hdrs, body = server.request(path, method=method, body=b"{}")
    assert code == status and hdrs["content-type"].startswith("application/json"), (code, body[:200])
    assert json.loads(body)["error"].startswith(says)
    assert allow is None or allow in hdrs["allow"]


# ------------------------------------------------------------------------------------ problems

def test_problems_are_paged_with_their_counts(server):
    code, body, _ = get(server, "/api/problems")
    assert code == 200
    assert body["skipped"] == body["total"] == N_BAD
    assert body["loaded"] == N_ROWS and body["total_lines"] == N_ROWS + N_BAD
    assert body["page"] == 0 and body["page_size"] == MAX_PAGE_SIZE
    assert len(body["rows"]) == MAX_PAGE_SIZE and body["problems"] == body["rows"]  # the old field still works
    code, page, _ = get(server, "/api/problems", page="3", page_size="10")
    assert [p["line"] for p in page["rows"]] == [2 * (30 + i) + 2 for i in range(10)]  # bad lines are even
    assert all(p["file"].endswith("bounds.json") and p["reason"] for p in page["rows"])


@pytest.mark.parametrize("search, page", [("", 0), ("?page=1", 1), ("?page=999", -1), ("?page=-3", 0),
                                          ("?page=abc", 0)])
def test_problems_page_pages(server, search, page):
    from sde.web.pages.problems import PAGE_SIZE

    pages = -(-N_BAD // PAGE_SIZE)
    page = page % pages  # -1: the last page (a page past the end shows the last one)
    code, body = _router(server, "/problems", search)
    shown = json.dumps(body, ensure_ascii=False)
    assert code == 200 and f"page {page + 1} of {pages}" in shown
    rows = min(PAGE_SIZE, N_BAD - page * PAGE_SIZE)
    assert shown.count('"text-end font-monospace"') == rows
    assert f'"children": "{2 * page * PAGE_SIZE + 2}"' in shown  # the page's first bad line
    if page + 1 < pages:
        assert f"/problems?page={page + 1}" in shown


def _router(server: SdeServer, pathname: str, search: str = "") -> tuple[int, dict]:
    dep = next(d for d in _dependencies(server) if d["output"].startswith("..page-content.children"))
    body = {"output": dep["output"], "outputs": _outputs(dep["output"]),
            "inputs": [{"id": "url", "property": "pathname", "value": pathname},
                       {"id": "url", "property": "search", "value": search}],
            "state": [{"id": "rendered", "property": "data", "value": None}],
            "changedPropIds": ["url.pathname"]}
    code, _, raw = server.request("/_dash-update-component", "POST", {"Content-Type": "application/json"},
                                  json.dumps(body).encode())
    return code, json.loads(raw)


# -------------------------------------------------------------------------------- chart escaping

def _figures(layout_json) -> list[dict]:
    """Every plotly figure in a rendered layout (the JSON the browser gets)."""
    out = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "Graph" and isinstance(node.get("props"), dict):
                out.append(node["props"]["figure"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(layout_json)
    return out


@pytest.mark.parametrize("path, search, shows", [
    ("/", "", ["&lt;a href=", "&gt;bad&lt;/a&gt;", "&lt;b&gt;x&lt;/b&gt;"]),
    ("/comparison", "", ["&lt;b&gt;x&lt;/b&gt;"]),
    ("/errors", f"?{urlencode({'hyp': BOLD_HYP, 'by': 'speaker'})}", ["&lt;b&gt;x&lt;/b&gt;", "&lt;i&gt;ann"]),
])
def test_user_text_in_charts_is_escaped(server, path, search, shows):
    code, body = _router(server, path, search)
    assert code == 200
    figures = _figures(body)
    assert figures, ("the page has charts", json.dumps(body)[:3000])
    text = json.dumps(figures, ensure_ascii=False)
    for raw in ("<a href", "<a>", "<b>x", "<i>ann"):
        assert raw not in text, (path, raw)
    for escaped in shows:
        assert escaped in text, (path, escaped)  # the name is still there, as text


@pytest.mark.parametrize("text, shown", [
    ('<a href="http://x">bad</a>', '&lt;a href="http://x"&gt;bad&lt;/a&gt;'),
    ("pred_text_<b>x</b>", "pred_text_&lt;b&gt;x&lt;/b&gt;"),
    ("%{x} & <br>", "%&#123;x} &amp; &lt;br&gt;"),     # no template fill, no line break
    ("plain words", "plain words"),
])
def test_plotly_text_escapes_markup_and_templates(text, shown):
    from sde.web.figures import plotly_text

    assert plotly_text(text) == shown


def test_figure_builders_escape_every_user_string():
    import numpy as np

    from sde.histograms import histogram_of_arrays
    from sde.web import figures

    binned = histogram_of_arrays([np.arange(10.0), np.arange(5.0)])
    built = [figures.histogram_figure(binned, [LINK_FIELD, "<b>x</b>"], LINK_FIELD, LINK_FIELD, ylabel="<i>y</i>",
                                      unit="<u>s</u>"),
             figures.word_accuracy_figure({"<b>x</b>": np.array([0.0, 50.0, 100.0])}),
             figures.empty_figure(LINK_FIELD, "<b>x</b>")]
    for fig in built:
        text = json.dumps(json.loads(fig.to_json()), ensure_ascii=False)  # plotly writes "<" as \u003c
        assert "<a " not in text and "<b>" not in text and "<i>" not in text and "<u>" not in text, text[:500]
        assert "&lt;" in text


@pytest.mark.browser
def test_statistics_page_has_no_link_from_a_field_name(server, browser):
    page = browser.new_page()
    try:
        page.goto(server.url + "/")
        # the field's histogram and the WER legend are drawn (escaped or not, both contain these)
        page.wait_for_function("[...document.querySelectorAll('.js-plotly-plot .gtitle')]"
                               ".some(t => t.textContent.includes('bad'))")
        page.wait_for_function("[...document.querySelectorAll('.js-plotly-plot .legendtext')]"
                               ".some(t => t.textContent.includes('x'))")
        # drawn as the literal names, not as a link and bold text
        assert LINK_FIELD in page.locator(".js-plotly-plot .gtitle").all_text_contents()
        assert "<b>x</b>" in page.locator(".js-plotly-plot .legendtext").all_text_contents()
        # plotly draws a title's <a href> as an SVG link (xlink:href): match any namespace
        assert page.locator('a[*|href="http://x"]').count() == 0
        assert page.locator(".js-plotly-plot .legendtext tspan[style*=bold]").count() == 0
    finally:
        page.close()


# ------------------------------------------------------------------------------ unknown paths

@pytest.mark.parametrize("path, status", [
    ("/../etc/passwd", 404), ("/%2e%2e/x", 404), ("/nope", 404), ("/utterance/abc", 404),
    ("/utterance/../../etc/passwd", 404), ("//etc/passwd", 404), ("/samples/x", 404), ("/_dash-nope", 404),
    ("/", 200), ("/statistics", 200), ("/samples", 200), ("/samples/", 200), ("/utterance/0", 200),
    ("/utterance/17", 200), ("/vocabulary", 200), ("/errors", 200), ("/comparison", 200), ("/problems", 200),
    ("/_dash-layout", 200), ("/_dash-dependencies", 200), ("/_reload-hash", 200), ("/assets/sde.css", 200),
    ("/_favicon.ico", 200),
])
def test_paths_that_are_not_a_page_are_404(server, path, status):
    code, hdrs, body = server.get(path)
    assert code == status, (path, code)
    assert b"root:x:0:0" not in body
    if path.startswith(("/", "//")) and code == 404 and not path.startswith("/_dash"):
        # still the app's shell: the browser shows its "Page not found" view with the navbar
        assert hdrs["content-type"].startswith("text/html") and b"_dash-config" in body


def test_the_server_survived_without_a_traceback(server):
    assert server.alive
    assert get(server, "/api/summary")[0] == 200
    assert_no_traceback(server)


@pytest.mark.browser
def test_problems_pager_in_the_browser(server, browser):
    from sde.web.pages.problems import PAGE_SIZE

    page = browser.new_page()
    try:
        page.goto(server.url + "/problems")
        page.wait_for_selector("#problems-table")
        assert page.locator("#problems-table tbody tr").count() == PAGE_SIZE
        page.click("#problems-next")
        page.wait_for_url("**/problems?page=1")
        page.wait_for_function("document.querySelector('#problems-range').innerText.includes('page 2')")
        first_line = page.locator("#problems-table tbody tr").first.locator("td").nth(1).inner_text()
        assert first_line == str(2 * PAGE_SIZE + 2)
        page.click("#problems-prev")
        page.wait_for_url("**/problems?page=0")
    finally:
        page.close()


def test_an_oversized_callback_post_is_413_and_the_server_lives_on(server):
    from sde.web.app import MAX_REQUEST_BYTES

    huge = json.dumps({"output": "x.y", "inputs": [{"id": "a", "property": "b", "value": "x" * MAX_REQUEST_BYTES}]})
    code, _, _ = server.request("/_dash-update-component", "POST", {"Content-Type": "application/json"},
                                huge.encode())
    assert code == 413
    assert get(server, "/api/summary")[0] == 200


# ------------------------------------------------------------------------- over --memory-limit

# At sde's least --memory-limit (64MB) DuckDB runs out only on big datasets (millions of distinct
# substitutions) or while other queries hold its memory. A server allowed less (its sitecustomize
# lowers sde.engine's floor) runs out on a test-sized dataset, in the same queries: counting the
# errors, digesting the transcripts for duplicates, sorting.
STARVED_MEMORY = "256KB"
STARVED_ROWS = 20_000


@pytest.fixture(scope="module")
def starved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("starved")
    (folder / "sitecustomize.py").write_text("import sde.engine\nsde.engine.LEAST_MEMORY_LIMIT = 0\n")
    manifest = folder / "starved.json"
    manifest.write_text("".join(json.dumps({
        "audio_filepath": f"a{i}.wav", "duration": 2.0, "text": f"the cat {i} sat on mat {i % 97}",
        "pred_text": f"the bat {i} sat on {i % 89}"}) + "\n" for i in range(STARVED_ROWS)), encoding="utf-8")
    env = {"PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}
    with SdeServer(str(manifest), "--memory-limit", STARVED_MEMORY, "--threads", "2", env=env) as s:
        yield s


@pytest.mark.parametrize("path, params", [
    ("/api/errors", {}),                                   # the substitutions counted by DuckDB
    ("/api/errors", {"filter": "{duration} > 1"}),
    ("/api/errors.csv", {"kind": "deletions"}),
    ("/api/suspicious", {}),                               # the transcripts' digests (duplicates)
    ("/api/utterances", {"filter": "{dup_text_group} is not null"}),  # the same, asked by a filter
    ("/api/utterances", {"sort": "text"}),
])
def test_a_query_over_the_memory_limit_is_a_400_naming_it(starved, path, params):
    code, body, _ = get(starved, path, **params)
    assert code == 400 and "--memory-limit" in body["error"], (code, body)


def test_the_starved_server_logged_no_traceback(starved):
    get(starved, "/api/suspicious")
    assert starved.alive and get(starved, "/api/summary")[0] == 200
    assert_no_traceback(starved)
