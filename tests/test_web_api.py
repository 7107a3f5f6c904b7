"""The JSON/CSV API (sde/web/api/) through Flask's test client, on the hostile manifest of
conftest.py: two hypotheses, an extra numeric field, hostile text, a formula, a bad line."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from sde.dataset import build_dataset
from sde.web.api import MAX_PAGE_SIZE
from sde.web.app import AppConfig, create_app
from tests.browser_kit import get_csv, get_json
from tests.conftest import IMG, XSS


def all_rows(web_client, **params):
    from urllib.parse import urlencode

    return get_json(web_client, "/api/utterances?" + urlencode({**params, "page_size": MAX_PAGE_SIZE}))


# ---------------------------------------------------------------- summary, problems

def test_summary_is_the_dataset_summary(web_client, web_dataset):
    body = get_json(web_client, "/api/summary")
    assert body == json.loads(json.dumps(web_dataset.summary()))
    for key in ("utterances", "hours", "vocabulary_size", "alphabet_size", "alphabet", "hypotheses", "skipped_lines"):
        assert key in body
    assert body["utterances"] == 6
    assert body["skipped_lines"] == 1
    assert set(body["hypotheses"]) == {"pred_text", "pred_text_b"}
    for h in body["hypotheses"].values():
        assert {"wer", "cer", "wmr", "mwa"} <= set(h)


def test_problems_lists_the_bad_line(web_client):
    body = get_json(web_client, "/api/problems")
    assert body["skipped"] == 1 and body["loaded"] == 6
    (p,) = body["problems"]
    assert p["line"] == 5
    assert p["file"].endswith("hostile.json")
    assert p["reason"]
    assert p["message"].endswith(p["reason"]) and ":5:" in p["message"]


@pytest.mark.parametrize("query, page, rows", [("", 0, 1), ("page=0&page_size=1", 0, 1), ("page=1", 1, 0)])
def test_problems_are_paged(web_client, query, page, rows):
    body = get_json(web_client, f"/api/problems?{query}")
    assert body["total"] == body["skipped"] == 1 and body["page"] == page
    assert len(body["rows"]) == rows and body["problems"] == body["rows"]
    assert {"total_lines", "loaded", "page_size"} <= set(body)


@pytest.mark.parametrize("query, fragment", [("page=-1", "page"), ("page_size=0", "page_size"),
                                             (f"page_size={MAX_PAGE_SIZE + 1}", str(MAX_PAGE_SIZE))])
def test_bad_problem_paging_is_400(web_client, query, fragment):
    assert fragment in get_json(web_client, f"/api/problems?{query}", 400)["error"]


# ---------------------------------------------------------------- utterances: shape, paging

def test_utterances_page_shape(web_client, web_dataset):
    body = get_json(web_client, "/api/utterances")
    assert set(body) == {"total", "rows"}
    assert body["total"] == 6
    assert len(body["rows"]) == 6
    assert [r["id"] for r in body["rows"]] == list(range(6))
    for r in body["rows"]:
        assert isinstance(r["id"], int)
        assert set(r) == {str(c) for c in web_dataset.utterances.columns}
    # Hostile text comes back verbatim (JSON is not HTML; escaping is the UI's job).
    assert body["rows"][2]["text"] == XSS
    assert body["rows"][2]["pred_text"] == IMG


def test_rows_are_json_safe(web_client):
    r = web_client.get("/api/utterances?page_size=100")
    text = r.get_data(as_text=True)
    assert "NaN" not in text and "Infinity" not in text
    rows = json.loads(text)["rows"]
    assert rows[2]["snr"] is None                 # missing field
    assert rows[4]["word_rate"] is None           # zero duration: NaN → null
    for row in rows:
        for v in row.values():
            assert not (isinstance(v, float) and not math.isfinite(v))


def test_paging(web_client):
    full = all_rows(web_client, sort="-duration")["rows"]
    page1 = get_json(web_client, "/api/utterances?sort=-duration&page=1&page_size=2")
    assert page1["total"] == 6
    assert [r["id"] for r in page1["rows"]] == [r["id"] for r in full[2:4]]
    past = get_json(web_client, "/api/utterances?page=50&page_size=2")
    assert past == {"total": 6, "rows": []}


@pytest.mark.parametrize("query, fragment", [
    (f"page_size={MAX_PAGE_SIZE + 1}", f"between 1 and {MAX_PAGE_SIZE}"),
    ("page_size=0", "page_size"),
    ("page=-1", "page"),
    ("page=abc", "integer"),
    ("page_size=1.5", "integer"),
    ("page=1e18", "integer"),
    (f"page={10**18}", "between 0 and"),
    ("page=" + "9" * 5_000, "integer"),
    ("sort=" + ",".join(["id", "duration", "text", "speaker", "snr", "num_words", "num_chars", "wer", "cer"]),
     "at most 8"),
    ("filter=" + " %26%26 ".join(f"{{snr}} != {i}" for i in range(17)), "at most 16"),
], ids=["too big", "zero", "negative", "word", "fraction", "float", "huge", "5000 digits", "9 sort columns",
        "17 clauses"])
def test_bad_paging_is_400(web_client, query, fragment):
    body = get_json(web_client, f"/api/utterances?{query}", 400)
    assert fragment in body["error"] and len(body["error"]) < 600


# ---------------------------------------------------------------- filter and sort

def test_filter(web_client):
    body = all_rows(web_client, filter="{wer} > 20")
    assert body["total"] == len(body["rows"]) > 0
    assert all(r["wer"] > 20 for r in body["rows"])
    both = all_rows(web_client, filter='{wer} > 20 && {speaker} = "en-gb"')
    assert {r["id"] for r in both["rows"]} == {r["id"] for r in body["rows"] if r["speaker"] == "en-gb"}
    contains = all_rows(web_client, filter='{text} contains "SCRIPT"')
    assert [r["id"] for r in contains["rows"]] == [2]
    extra = all_rows(web_client, filter="{snr} >= 12.5")
    assert sorted(r["id"] for r in extra["rows"]) == [0, 4, 5]


def test_sort(web_client):
    rows = all_rows(web_client, sort="-wer")["rows"]
    wers = [r["wer"] for r in rows]
    assert wers == sorted(wers, reverse=True)
    asc = all_rows(web_client, sort="snr")["rows"]
    assert [r["snr"] for r in asc][-1] is None            # missing values last
    snrs = [r["snr"] for r in asc if r["snr"] is not None]
    assert snrs == sorted(snrs)
    multi = all_rows(web_client, sort="speaker,-duration")["rows"]
    keys = [(r["speaker"], -r["duration"]) for r in multi]
    assert keys == sorted(keys)


@pytest.mark.parametrize("query, fragment", [
    ("filter={wer} >> 3", "not an operator"),
    ("filter={nope} > 3", "nope"),
    ("filter=({wer} > 3", 'missing ")"'),
    ("filter={text} contains", "missing value"),
    ("sort=nope", "nope"),
    ("sort=-", "sort"),
])
def test_bad_filter_or_sort_is_400_with_a_message(web_client, query, fragment):
    body = get_json(web_client, f"/api/utterances?{query}", 400)
    # a filter's mistake has its place (0-based, as /api/utterances.jsonl's); a sort's none
    assert set(body) == ({"error", "position"} if query.startswith("filter=") else {"error"})
    assert fragment.lower() in body["error"].lower()


# ---------------------------------------------------------------- error links (from the Errors page)

@pytest.mark.parametrize("query, ids", [
    ("error=sub:world:word", [1]),
    ("error=sub:cat:bat&hyp=pred_text_b", [0]),
    ("error=del:again&filter={duration} > 2.5", [1]),
    ("error=ins:uh", [4]),
], ids=["substitution", "other hypothesis", "with a filter", "insertion"])
def test_error_links_select_the_utterances_with_that_error(web_client, query, ids):
    assert [r["id"] for r in get_json(web_client, f"/api/utterances?{query}")["rows"]] == ids
    assert [int(r["id"]) for r in get_csv(web_client, f"/api/utterances.csv?{query}")] == ids


@pytest.mark.parametrize("query, fragment", [
    ("error=sub:only-one", "invalid error"),
    ("error=swap:a:b", "invalid error"),
    ("error=sub:a:b&hyp=nope", "unknown hypothesis"),
], ids=["two parts", "unknown kind", "unknown hypothesis"])
def test_a_bad_error_link_is_400(web_client, query, fragment):
    assert fragment in get_json(web_client, f"/api/utterances?{query}", 400)["error"]
    assert fragment in get_json(web_client, f"/api/utterances.csv?{query}", 400)["error"]


# ---------------------------------------------------------------- one utterance

def test_utterance_with_alignment(web_client, web_dataset):
    body = get_json(web_client, "/api/utterances/1")
    assert body["id"] == 1 and body["text"] == "hello world again"
    assert set(body["alignment"]) == {"pred_text", "pred_text_b"}
    ops = body["alignment"]["pred_text"]
    assert all(set(w) == {"op", "ref", "hyp"} for w in ops)
    assert [w["op"] for w in ops] == ["equal", "sub", "del"]
    assert ops[1] == {"op": "sub", "ref": "world", "hyp": "word"}
    assert ops[2] == {"op": "del", "ref": "again", "hyp": None}
    assert all(w["op"] == "equal" for w in body["alignment"]["pred_text_b"])
    hostile = get_json(web_client, "/api/utterances/2")
    assert hostile["text"] == XSS


@pytest.mark.parametrize("uid", ["6", "999", "-1", "abc", "1.5"])
def test_unknown_utterance_is_404_json(web_client, uid):
    body = get_json(web_client, f"/api/utterances/{uid}", 404)
    assert "no utterance" in body["error"]


def test_unknown_api_route_is_404_json(web_client):
    body = get_json(web_client, "/api/nothing/here", 404)
    assert "/api/summary" in body["error"]


# ---------------------------------------------------------------- CSV


def test_csv_is_the_filtered_sorted_view(web_client):
    rows = get_csv(web_client, "/api/utterances.csv?filter={duration} > 1&sort=-duration")
    assert [int(r["id"]) for r in rows] == [3, 1, 5, 0, 2]
    assert "text" in rows[0] and "wer_b" in rows[0]
    everything = get_csv(web_client, "/api/utterances.csv")
    assert len(everything) == 6


def test_csv_quotes_formulas(web_client):
    rows = {int(r["id"]): r for r in get_csv(web_client, "/api/utterances.csv")}
    assert rows[3]["text"] == "'=1+2 is a formula"
    assert rows[3]["pred_text"] == "'-5 dollars"
    assert rows[3]["pred_text_b"] == "'@home"
    assert rows[3]["speaker"].startswith("'=cmd")
    assert rows[3]["snr"] == "-4.0"                        # numbers are not text: left alone
    assert rows[2]["text"] == XSS                          # nothing else changes


def test_csv_bad_filter_is_400(web_client):
    body = get_json(web_client, "/api/utterances.csv?filter={wer} >", 400)
    assert body["error"]


def test_csv_streams_in_chunks(web_dataset):
    import numpy as np

    from sde.web.api.respond import csv_chunks

    positions = np.arange(len(web_dataset.utterances))
    chunks = list(csv_chunks(web_dataset.utterances, positions, chunk_rows=2))
    assert len(chunks) == 1 + 3                            # header + 3 chunks of 2 rows
    assert chunks[0].startswith("id,line,")


# ---------------------------------------------------------------- vocabulary

def test_vocabulary(web_client, web_dataset):
    body = get_json(web_client, "/api/vocabulary?page_size=1000")
    assert body["total"] == len(web_dataset.vocabulary) == len(body["rows"])
    first = body["rows"][0]
    assert {"word", "count", "accuracy", "accuracy_b"} <= set(first)
    the = next(r for r in body["rows"] if r["word"] == "the")
    assert the["count"] == 3
    filtered = get_json(web_client, "/api/vocabulary?filter={count} > 1&sort=word")
    assert [r["word"] for r in filtered["rows"]] == sorted(r["word"] for r in body["rows"] if r["count"] > 1)
    csv_rows = get_csv(web_client, "/api/vocabulary.csv?sort=-count")
    assert csv_rows[0]["word"] == "the"
    assert len(csv_rows) == len(web_dataset.vocabulary)
    assert get_json(web_client, "/api/vocabulary?filter={nope} > 1", 400)["error"]


# ---------------------------------------------------------------- the app itself

def test_index_page_loads_nothing_from_a_cdn(web_client):
    r = web_client.get("/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "<title>hostile.json · sde</title>" in html
    for tag in ("<script", "<link"):
        for piece in html.split(tag)[1:]:
            attrs = piece.split(">", 1)[0]
            assert "http://" not in attrs and "https://" not in attrs and "//cdn" not in attrs, attrs
    assert "00-bootstrap-flatly.min.css" in html
    css = web_client.get("/assets/00-bootstrap-flatly.min.css")
    assert css.status_code == 200 and b"fonts.googleapis" not in css.get_data()


def test_manifest_name_is_escaped_in_the_title(tmp_path):
    path = tmp_path / "<img src=x onerror=alert(1)>.json"
    path.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a"}) + "\n")
    app = create_app(build_dataset(path), AppConfig(title=path.name, audio_routes=False))
    html = app.server.test_client().get("/").get_data(as_text=True)
    assert "<img src=x" not in html


def test_two_apps_in_one_process(web_dataset, tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "solo"}) + "\n")
    other = create_app(build_dataset(path), AppConfig(title="other.json", audio_routes=False))
    first = create_app(web_dataset, AppConfig(title=web_dataset.name, audio_routes=False))
    assert get_json(other.server.test_client(), "/api/summary")["utterances"] == 1
    assert get_json(first.server.test_client(), "/api/summary")["utterances"] == 6
    # Callbacks live on each app, none on dash's global registry.
    import dash._callback as registry

    assert not registry.GLOBAL_CALLBACK_LIST and not registry.GLOBAL_CALLBACK_MAP
    assert any("samples-grid.getRowsResponse" in k for k in other.callback_map)


def test_basic_auth(web_dataset):
    app = create_app(web_dataset, AppConfig(title="x", auth="ann:s3cret", audio_routes=False))
    client = app.server.test_client()
    assert client.get("/api/summary").status_code == 401
    assert client.get("/").status_code == 401
    import base64

    good = {"Authorization": "Basic " + base64.b64encode(b"ann:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"ann:nope").decode()}
    assert client.get("/api/summary", headers=bad).status_code == 401
    assert client.get("/api/summary", headers=good).status_code == 200


# ---------------------------------------------------------------- serve

def test_serve_busy_port_is_a_clear_error(web_app):
    from sde.web.serve import ServeError, serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ServeError, match=f"port {port}.*already in use.*--port 0"):
            serve(web_app, "127.0.0.1", port)


def test_a_connection_that_keeps_the_server_waiting_is_closed_and_its_thread_ends(web_app, monkeypatch, caplog):
    """Half-sent requests and idle keep-alive connections each held a server thread forever (a
    thousand of them: a thousand threads). The real server, its idle limit shortened."""
    import threading
    import urllib.request

    from sde.web import serve as serving

    monkeypatch.setattr(serving, "IDLE_CONNECTION_S", 0.5)
    server = serving.listening_server(web_app, "127.0.0.1", serving.bind("127.0.0.1", 0))
    port = server.socket.getsockname()[1]
    runner = threading.Thread(target=server.serve_forever, daemon=True)
    runner.start()
    held: list[socket.socket] = []
    try:
        before = threading.active_count()
        for k in range(20):
            conn = socket.create_connection(("127.0.0.1", port))
            if k % 2:  # a whole request, answered, then the connection left open
                conn.sendall(b"GET /api/summary HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
            else:  # a request that never ends
                conn.sendall(b"GET /api/summary HTTP/1.1\r\nHost: localhost\r\n")
            held.append(conn)
        for conn in held:  # closed by the server: the answer (if any), then the end of the stream
            conn.settimeout(5)
            while conn.recv(65_536):
                pass
        deadline = time.monotonic() + 5
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= before
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/summary", timeout=5) as answer:
            assert answer.status == 200  # and it serves on
        # routine (every idle browser connection ends so): not an error line in the terminal
        assert not [r for r in caplog.records if "timed out" in r.getMessage()]
    finally:
        for conn in held:
            conn.close()
        server.shutdown()
        server.server_close()


def test_bind_port_zero_picks_a_free_port():
    from sde.web.serve import bind, display_url

    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0
    finally:
        sock.close()
    assert display_url("0.0.0.0", 8050) == "http://127.0.0.1:8050/"
    assert display_url("::1", 8050) == "http://[::1]:8050/"


def _in_a_fresh_python(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_server_imports_dash_without_ipython():
    pytest.importorskip("IPython")  # installed: Dash's notebook support would import it (~0.5 s a start)
    seen = _in_a_fresh_python("""
        import sys
        from sde.web.serve import import_dash
        import_dash()
        import dash._jupyter
        import sde.web.app
        print("IPython" in sys.modules, dash._jupyter._dep_installed)
        import IPython  # still importable afterwards
        print(IPython.__name__)
    """)
    assert seen == ["False", "False", "IPython"]


def test_dash_in_a_notebook_is_imported_as_it_is():
    pytest.importorskip("IPython")
    seen = _in_a_fresh_python("""
        import sys
        import IPython
        from sde.web.serve import import_dash
        import_dash()
        print(sys.modules["IPython"] is IPython, "dash" in sys.modules)
    """)
    assert seen == ["True", "True"]


def test_an_error_no_route_expected_is_500_json_and_logged(web_client, monkeypatch, caplog):
    # A fault injected under the route (a bug's stand-in): the real handler must answer it.
    from sde.web.api import tables

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug somewhere below the route")

    monkeypatch.setattr(tables, "problems_json", broken)
    r = web_client.get("/api/problems")
    assert r.status_code == 500 and r.mimetype == "application/json"
    assert r.get_json()["error"].startswith("internal error (ZeroDivisionError: a bug somewhere below the route)")
    assert any(rec.exc_info and rec.exc_info[0] is ZeroDivisionError for rec in caplog.records)
    assert web_client.get("/api/nope").status_code == 404  # the routes' own errors keep their status
    assert web_client.get("/api/utterances?page=-1").status_code == 400
