"""Requests another web site's page makes the user's browser send (sde/web/sites.py), through a real
`sde` server process: a state change whose Origin or Sec-Fetch-Site names another site is a 403 on
every route (the review routes, Dash's callbacks), even with the right --auth credentials, and the
review routes take only JSON (415), which no page can POST cross-site without asking first; curl
and Python clients (no Origin) and the server's own pages write as before. In Chromium, a page of
another site that auto-submits a text/plain form and a no-cors fetch (the QA's evil page) stores
nothing."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from tests.browser_kit import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, sde_server
from tests.server_kit import served_port

ROWS = [{"audio_filepath": f"clip{i}.wav", "duration": 1.0 + i, "text": f"the cat sat {i}",
         "pred_text": f"the bat sat {i}"} for i in range(12)]
#: What the QA's evil page POSTs: a text/plain form whose one field reads as a JSON review.
FORM_BODY = b'{"status":"fix","text":"attacker text","note":"x=y"}'
REVIEW = b'{"status": "drop"}'


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sites") / "m.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture(scope="module")
def served(manifest) -> str:
    """The URL of `sde manifest.json --reviews FILE` (the real CLI, bound to 127.0.0.1)."""
    with sde_server(str(manifest), "--reviews", str(manifest.parent / "reviews.sqlite")) as url:
        yield url


def ask(url: str, method: str, path: str, headers: dict[str, str] | None = None,
        body: bytes | None = None) -> tuple[int, dict]:
    """(status, JSON body) of one request sent with exactly ``headers`` (Host too, when given)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def review_of(url: str, uid: int) -> dict:
    status, review = ask(url, "GET", f"/api/utterances/{uid}/review")
    assert status == 200, review
    return review


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("uid, path, headers, body, named", [
    (1, "/review", {"Origin": "http://evil.test", "Content-Type": "text/plain"}, FORM_BODY, "'http://evil.test'"),
    (2, "/review", {"Origin": "http://evil.test", **JSON}, REVIEW, "'http://evil.test'"),
    (3, "/review", {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}, FORM_BODY, "cross-site"),
    # another port of this machine (a dev server, a notebook) is the same site, another origin
    (4, "/review", {"Sec-Fetch-Site": "same-site", **JSON}, REVIEW, "same-site"),
    (5, "/review", {"Origin": "null", **JSON}, REVIEW, "'null'"),  # a sandboxed or file:// page
    (6, "/review/undo", {"Origin": "http://127.0.0.1:1", **JSON}, b"{}", "'http://127.0.0.1:1'"),
], ids=["form from another origin", "JSON from another origin", "cross-site fetch", "same-site fetch",
        "opaque origin", "undo from another port"])
def test_a_review_another_sites_page_posts_is_refused_and_stores_nothing(served, uid, path, headers, body, named):
    if path.endswith("undo"):  # something to undo
        assert ask(served, "POST", f"/api/utterances/{uid}/review", JSON, REVIEW)[0] == 200
    before = review_of(served, uid)
    status, answer = ask(served, "POST", f"/api/utterances/{uid}{path}", headers, body)
    assert status == 403, answer
    assert named in answer["error"] and "from a program (curl, Python" in answer["error"]
    assert review_of(served, uid) == before


@pytest.mark.parametrize("headers, named", [
    ({"Content-Type": "text/plain"}, "Content-Type 'text/plain'"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, "Content-Type 'application/x-www-form-urlencoded'"),
    ({}, "no Content-Type"),
])
@pytest.mark.parametrize("path", ["/review", "/review/undo"])
def test_a_review_that_is_not_sent_as_json_is_a_415_naming_the_header(served, headers, named, path):
    assert ask(served, "POST", "/api/utterances/7/review", JSON, REVIEW)[0] == 200
    before = review_of(served, 7)
    status, answer = ask(served, "POST", f"/api/utterances/7{path}", headers, FORM_BODY)
    assert status == 415, answer
    assert named in answer["error"] and "Content-Type: application/json" in answer["error"]
    assert review_of(served, 7) == before


@pytest.mark.parametrize("headers", [
    {},                                                              # curl, Python
    {"Sec-Fetch-Site": "same-origin"},                               # the server's own pages
    {"Sec-Fetch-Site": "none"},                                      # typed in the address bar
], ids=["no Origin", "same-origin fetch", "user-initiated"])
def test_programs_and_the_servers_own_pages_still_write_reviews(served, headers):
    own = {"Origin": served, **headers} if headers else {}
    status, saved = ask(served, "POST", "/api/utterances/0/review", {**JSON, **own},
                        b'{"status": "fix", "text": "the cat sat"}')
    assert status == 200, saved
    assert review_of(served, 0)["text"] == "the cat sat"
    assert ask(served, "POST", "/api/utterances/0/review/undo", {**JSON, **own}, b"{}")[0] == 200


# The router's callback, as the browser posts it.
ROUTER_CALLBACK = json.dumps({
    "output": "..page-content.children...rendered.data..",
    "outputs": [{"id": "page-content", "property": "children"}, {"id": "rendered", "property": "data"}],
    "inputs": [{"id": "url", "property": "pathname", "value": "/"}, {"id": "url", "property": "search", "value": ""}],
    "state": [{"id": "rendered", "property": "data", "value": None}],
    "changedPropIds": ["url.pathname"]}).encode()


def test_dash_callbacks_from_another_site_are_refused(served):
    # answered for the server's own page only
    status, answer = ask(served, "POST", "/_dash-update-component", {**JSON, "Origin": "http://evil.test"},
                         ROUTER_CALLBACK)
    assert status == 403 and "'http://evil.test'" in answer["error"], answer
    status, _ = ask(served, "POST", "/_dash-update-component", {**JSON, "Sec-Fetch-Site": "cross-site"},
                    ROUTER_CALLBACK)
    assert status == 403


def test_behind_a_proxy_that_rewrites_host_the_pages_own_callbacks_and_reviews_are_served(served):
    # nginx's plain proxy_pass hands sde Host 127.0.0.1:PORT while the browser's Origin is the
    # proxy's: every Dash callback was refused and each page stayed blank. The browser's own
    # Sec-Fetch-Site: same-origin says the page is the proxy's, i.e. this server's.
    proxy = {"Origin": "http://proxy.example:8443", "Sec-Fetch-Site": "same-origin", **JSON}
    status, _ = ask(served, "POST", "/_dash-update-component", proxy, ROUTER_CALLBACK)
    assert status == 200
    status, saved = ask(served, "POST", "/api/utterances/8/review", proxy, b'{"status": "drop"}')
    assert status == 200 and saved["status"] == "drop", saved
    # the same Origin from a browser that says nothing of the site is still compared with Host
    status, _ = ask(served, "POST", "/_dash-update-component", {**JSON, "Origin": "http://proxy.example:8443"},
                    ROUTER_CALLBACK)
    assert status == 403


@pytest.fixture()
def auth_server(manifest, tmp_path):
    """The port of a real server (sde.web.serve on 127.0.0.1) of an app with --auth ann:s3cret."""
    app = create_app(build_dataset(manifest), AppConfig(audio_routes=False, reviews=str(tmp_path / "r.sqlite"),
                                                        auth="ann:s3cret"))
    with served_port(app) as port:
        yield f"http://127.0.0.1:{port}"


def test_the_saved_password_does_not_let_another_site_write(auth_server):
    # Chromium sends the basic auth credentials it saved with another site's form POST.
    signed_in = {"Authorization": "Basic " + base64.b64encode(b"ann:s3cret").decode(), **JSON}
    status, answer = ask(auth_server, "POST", "/api/utterances/1/review", {**signed_in, "Origin": "http://evil.test"},
                         REVIEW)
    assert status == 403, answer
    assert ask(auth_server, "GET", "/api/utterances/1/review", signed_in)[1]["status"] is None
    assert ask(auth_server, "POST", "/api/utterances/1/review", signed_in, REVIEW)[0] == 200
    assert ask(auth_server, "GET", "/api/utterances/1/review", signed_in)[1]["user"] == "ann"


# ----------------------------------------------------------------------------- in Chromium

EVIL_PAGE = """<html><body>
<form id=f method=POST action="{sde}/api/utterances/{form_uid}/review" enctype="text/plain">
<input name='{{"status":"fix","text":"attacker text","note":"x' value='y"}}'>
</form>
<script>
fetch("{sde}/api/utterances/{fetch_uid}/review", {{method: "POST", mode: "no-cors",
      body: JSON.stringify({{status: "drop", note: "via fetch"}})}})
  .then(() => document.getElementById('f').submit());
</script></body></html>"""


@pytest.fixture()
def evil_site(tmp_path):
    """The URL of a page at http://evil.test:PORT/ (a server of this machine that Chromium's
    resolver maps evil.test to) that writes two reviews to the sde server it is given."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def page(sde: str, form_uid: int, fetch_uid: int) -> str:
        (tmp_path / "evil.html").write_text(EVIL_PAGE.format(sde=sde, form_uid=form_uid, fetch_uid=fetch_uid))
        return f"http://evil.test:{httpd.server_address[1]}/evil.html"

    try:
        yield page
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.browser
def test_in_chromium_another_sites_form_and_no_cors_fetch_store_no_review(served, evil_site):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():  # pragma: no cover
        pytest.skip(f"no Chromium at {CHROMIUM} (set SDE_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP evil.test 127.0.0.1"])
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            with page.expect_navigation(url=f"{served}/api/utterances/10/review"):  # the form, after the fetch
                page.goto(evil_site(served, form_uid=10, fetch_uid=11))
            assert "refused" in page.inner_text("body")
        finally:
            browser.close()
    assert review_of(served, 10)["version"] == 0 and review_of(served, 11)["version"] == 0
