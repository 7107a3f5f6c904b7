"""Security: no route serves a path, user text is data (never markup, formulas or code), sharing
the server is opt-in and guarded.

* path traversal on every route, raw (the real server, http.client sends the path verbatim) and
  in every query parameter of every API route → never a file's contents, never a 500;
* hostile strings in text, pred_text, a field name and a field value → the JSON API returns them
  as data; the browser shows them as text and no dialog ever fires (`@pytest.mark.browser`);
* CSV exports neutralise formula cells (= + - @ tab CR → prefixed with ');
* the filter language is parsed, never evaluated;
* `--host 0.0.0.0` warns; debug mode is off by default and never serves Werkzeug's debugger;
* `--auth` / `SDE_AUTH`: HTTP basic auth on every route (pages, API, audio, assets, _dash-*).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from sde.web.auth import REALM, check_authorization, install_basic_auth, parse_credentials
from tests.test_audio_faults import SdeServer, assert_no_traceback

SECRET = "SDE-SECRET-7d1e0c"  # content of a file beside the manifest that no route may serve
PASSWD_MARK = b"root:x:0:0"

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_ATTR = '" onmouseover="alert(1)'
FIELD_XSS = "<img src=x onerror=alert(2)>"        # a field NAME
FIELD_ATTR = '" onmouseover="alert(3)'            # another field name

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1:A9)", "\tTAB", "\rCR"]


def hostile_rows(good_wav: str) -> list[dict]:
    return [
        {"audio_filepath": good_wav, "duration": 1.0, "text": f"{XSS_SCRIPT} hello world",
         "pred_text": f"{XSS_IMG} hello world", FIELD_XSS: XSS_ATTR, FIELD_ATTR: XSS_SCRIPT, "speaker": XSS_IMG},
        {"audio_filepath": "missing.wav", "duration": 2.0, "text": f"{XSS_ATTR} world",
         "pred_text": f"{XSS_ATTR} word", FIELD_XSS: XSS_IMG, FIELD_ATTR: "x", "speaker": FORMULAS[0]},
        {"audio_filepath": "missing2.wav", "duration": 1.5, "text": "=1+2 @SUM(A1) -3 +4 plain",
         "pred_text": "=1+3 @SUM(A2) +4 plain", FIELD_XSS: FORMULAS[1], FIELD_ATTR: FORMULAS[3],
         "speaker": FORMULAS[2]},
        {"audio_filepath": "missing3.wav", "duration": 0.5, "text": "\ttab first", "pred_text": "\rcr first",
         FIELD_XSS: FORMULAS[4], FIELD_ATTR: FORMULAS[5], "speaker": "@evil",
         # a bare CR ends a spreadsheet row: unquoted, the formula after it starts a new row
         "note": 'safe\r=HYPERLINK("http://evil.example","x")'},
    ]


@pytest.fixture(scope="module")
def hostile(audio_dir, tmp_path_factory):
    """(manifest path, folder) of the hostile manifest; a secret file sits beside it."""
    src, _ = audio_dir
    d = tmp_path_factory.mktemp("hostile_web")
    good = d / "good.wav"
    shutil.copy(src / "one.wav", good)
    (d / "secret.txt").write_text(SECRET + "\n")
    manifest = d / "hostile <b>name<i>.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in hostile_rows(str(good))))
    return manifest, d


@pytest.fixture(scope="module")
def dataset(hostile):
    return build_dataset(hostile[0])


@pytest.fixture(scope="module")
def client(dataset):
    app = create_app(dataset, AppConfig(title=dataset.name))
    return app.server.test_client()


@pytest.fixture(scope="module")
def server(hostile):
    with SdeServer(str(hostile[0])) as s:
        yield s


def assert_no_traceback_except_dash_internals(s: SdeServer) -> None:
    """Server logs may hold tracebacks only for the deliberately malformed Dash callback POSTs."""
    text = "".join(s.stderr)
    for block in text.split("Traceback (most recent call last):")[1:]:
        assert "Callback function not found" in block or "nope.children" in block, block[:2000]


def no_leak(body: bytes, what: str) -> None:
    assert PASSWD_MARK not in body, what
    assert SECRET.encode() not in body, what


# ------------------------------------------------------------------------------------ paths

RAW_PATHS_4XX = [
    "/audio/../../etc/passwd",
    "/audio/..%2f..%2fetc%2fpasswd",
    "/audio/%2e%2e%2fetc%2fpasswd.wav",
    "/audio/-1.wav",
    "/audio/99999.wav",
    "/audio/1e3.wav",
    "/audio/0x1.wav",
    "/audio//etc/passwd",
    "/audio/%2fetc%2fpasswd",
    "/audio/secret.txt",
    "/audio/../secret.txt",
    "/assets/../../etc/passwd",
    "/assets/..%2f..%2fetc%2fpasswd",
    "/assets/%2e%2e/%2e%2e/etc/passwd",
    "/assets/../secret.txt",
    "/_dash-component-suites/../../etc/passwd",
    "/_dash-component-suites/dash/../../../../etc/passwd",
    "/_dash-component-suites/dash/..%2f..%2f..%2fetc%2fpasswd",
    "/_dash-component-suites/etc/passwd",
    "/api/../../etc/passwd",
    "/api/utterances/../../etc/passwd",
    "/api/utterances/-1",
    "/api/utterances/%2e%2e%2fetc%2fpasswd",
    "/api/utterances/0/../../../etc/passwd",
    "/api/utterances/-1/signal",
]
# Dash's catch-all route serves the single-page app's shell for any other path: sde sends it with
# status 404 for paths that are no page (the client-side router then says "Page not found").
RAW_PATHS_SHELL = ["/etc/passwd", "//etc/passwd", "/..%2f..%2fetc%2fpasswd", "/utterance/../../etc/passwd",
                   "/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/utterance/0/../../../etc/passwd"]


@pytest.mark.parametrize("path", RAW_PATHS_4XX)
def test_raw_traversal_paths_are_4xx(server, hostile, path):
    paths = [path, path.replace("etc/passwd", quote(str(hostile[1] / "secret.txt").lstrip("/"), safe="/"))]
    for p in paths:
        code, hdrs, body = server.get(p)
        no_leak(body, p)
        assert 400 <= code < 500, (p, code, body[:300])
    assert server.alive


@pytest.mark.parametrize("path", RAW_PATHS_SHELL)
def test_other_paths_are_404_with_the_app_shell(server, path):
    code, hdrs, body = server.get(path)
    no_leak(body, path)
    assert code == 404, (path, code, body[:300])
    assert hdrs["content-type"].startswith("text/html") and b"_dash-config" in body


HOSTILE_VALUES = [
    "/etc/passwd", "../../etc/passwd", "....//....//etc/passwd", "..%2f..%2fetc%2fpasswd", "file:///etc/passwd",
    "{/etc/passwd} = 1", "{../../etc/passwd} contains x", "audio_path contains /etc/passwd",
    "C:\\Windows\\win.ini", "\\\\server\\share", "-1", "99999999999999999999", "nan", "1e309", "\x00", "%00",
    "{text}\x00 = 1", "' OR 1=1 --", "{{7*7}}", "${jndi:ldap://x}",
]
API_ROUTES = ["/api/summary", "/api/problems", "/api/audio-quality", "/api/utterances", "/api/utterances.csv",
              "/api/utterances/0", "/api/utterances/0/signal", "/api/vocabulary", "/api/vocabulary.csv",
              "/api/errors", "/api/errors.csv", "/api/breakdown", "/api/breakdown.csv", "/api/compare",
              "/api/compare.csv", "/audio/0.wav"]
PARAMS = ["filter", "sort", "hyp", "by", "a", "b", "kind", "page", "page_size", "limit", "seed", "n_resamples"]


def test_every_query_parameter_of_every_route(client, hostile):
    secret_abs = str(hostile[1] / "secret.txt")
    values = HOSTILE_VALUES + [secret_abs, "secret.txt", "../secret.txt", f"{{text}} contains \"{secret_abs}\""]
    failures = []
    for route in API_ROUTES:
        for param in PARAMS:
            for value in values:
                url = f"{route}?{urlencode({param: value})}"
                r = client.get(url)
                body = r.get_data()
                if r.status_code >= 500 or PASSWD_MARK in body or SECRET.encode() in body:
                    failures.append((url, r.status_code, body[:200]))
                elif r.status_code >= 400 and route.startswith("/api/"):
                    assert r.is_json and "error" in r.get_json(), (url, body[:200])
    assert failures == []


@pytest.mark.parametrize("param, value", [("filter", "/etc/passwd"), ("sort", "../../etc/passwd"),
                                          ("hyp", "/etc/passwd"), ("by", "../../etc/passwd"),
                                          ("a", "/etc/passwd"), ("b", "../secret.txt")])
def test_path_like_parameters_are_400_with_a_message(client, param, value):
    route = {"filter": "/api/utterances", "sort": "/api/utterances", "hyp": "/api/errors", "by": "/api/breakdown",
             "a": "/api/compare", "b": "/api/compare"}[param]
    r = client.get(f"{route}?{urlencode({param: value})}")
    assert r.status_code == 400, r.get_data()[:300]
    assert r.get_json()["error"]


# ------------------------------------------------------------------------------ user text as data

def test_json_api_returns_hostile_strings_as_data(client):
    rows = client.get("/api/utterances?page_size=10").get_json()["rows"]
    assert rows[0]["text"] == f"{XSS_SCRIPT} hello world"
    assert rows[0]["pred_text"] == f"{XSS_IMG} hello world"
    assert rows[0][FIELD_XSS] == XSS_ATTR and rows[0][FIELD_ATTR] == XSS_SCRIPT
    assert rows[1]["text"] == f"{XSS_ATTR} world"
    one = client.get("/api/utterances/0")
    assert one.mimetype == "application/json" and one.headers["X-Content-Type-Options"] == "nosniff"
    assert one.get_json()[FIELD_XSS] == XSS_ATTR
    words = {w["ref"] for w in one.get_json()["alignment"]["pred_text"]}
    assert "<script>alert(1)</script>" in words
    vocab = {r["word"] for r in client.get("/api/vocabulary?page_size=1000").get_json()["rows"]}
    assert "<script>alert(1)</script>" in vocab and '"' in vocab
    # filters can reach hostile field names and values (quoted)
    r = client.get("/api/utterances?" + urlencode({"filter": f'{{{FIELD_XSS}}} = "{XSS_IMG}"'}))
    assert r.status_code == 200 and [row["id"] for row in r.get_json()["rows"]] == [1]
    errors = client.get("/api/errors").get_json()
    assert any(s["ref"] == XSS_SCRIPT for s in errors["substitutions"])


def test_html_pages_escape_the_manifest_name(client):
    body = client.get("/").get_data(as_text=True)
    assert "<b>name<i>" not in body and "&lt;b&gt;name&lt;i&gt;" in body


# ------------------------------------------------------------------------------------------ CSV

def _csv_cells(client, url: str) -> list[list[str]]:
    r = client.get(url)
    assert r.status_code == 200, (url, r.get_data()[:300])
    assert r.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(r.get_data(as_text=True), newline="")))


def _assert_neutralised(rows: list[list[str]], url: str, expect_quoted: set[str]) -> None:
    quoted = set()
    for row in rows:
        for cell in row:
            if cell[:1] in ("=", "+", "@", "\t", "\r"):
                raise AssertionError(f"{url}: formula cell {cell!r}")
            if cell.startswith("-"):
                float(cell)  # only numbers may start with a minus sign
            if cell.startswith("'"):
                quoted.add(cell[1:])
    missing = expect_quoted - quoted
    assert not missing, (url, missing, quoted)


@pytest.mark.parametrize("url, expect", [
    ("/api/utterances.csv", {FORMULAS[0], FORMULAS[2], "=1+2 @SUM(A1) -3 +4 plain", "\ttab first", "\rcr first"}),
    ("/api/vocabulary.csv", {"=1+2", "@SUM(A1)", "-3", "+4"}),
    ("/api/errors.csv?kind=substitutions", {"=1+2", "=1+3", "@SUM(A1)", "@SUM(A2)"}),
    ("/api/errors.csv?kind=deletions", {"-3"}),
    ("/api/breakdown.csv?by=speaker", {FORMULAS[0], FORMULAS[2], "@evil"}),
    (f"/api/breakdown.csv?{urlencode({'by': FIELD_ATTR})}", {FORMULAS[3], FORMULAS[5]}),
    ("/api/compare.csv?a=pred_text&b=pred_text", set()),
])
def test_csv_exports_neutralise_formulas(client, url, expect):
    _assert_neutralised(_csv_cells(client, url), url, expect)


def test_csv_header_with_hostile_field_names_is_neutralised(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1, "text": "x", "=cmd": "v", "@x": 1}) + "\n")
    client = create_app(build_dataset(p), AppConfig(audio_routes=False)).server.test_client()
    rows = _csv_cells(client, "/api/utterances.csv")
    _assert_neutralised(rows, "/api/utterances.csv", {"=cmd", "@x"})


# ------------------------------------------------------------------------------- no evaluation

def test_filter_text_is_never_evaluated(client, tmp_path):
    target = tmp_path / "pwned"
    code = f"__import__('os').system('touch {target}')"
    payloads = [
        "{" + code + "}",
        f"{{text}} = {code}",
        f"{{duration}} > {code}",
        f"{code} > 1",
        f"text contains \"{code}\"",
        f"@{code} > 1",
        f"{{duration}} > 0 && {code}",
        f"`{code}`",
        f"{{text}}.str.contains({code})",
        f"duration > 0 or {code}",
        f"index == {code}",
    ]
    routes = ["/api/utterances", "/api/utterances.csv", "/api/vocabulary", "/api/errors", "/api/breakdown?by=speaker",
              "/api/compare?a=pred_text&b=pred_text"]
    for payload in payloads:
        for route in routes:
            sep = "&" if "?" in route else "?"
            r = client.get(f"{route}{sep}{urlencode({'filter': payload})}")
            assert r.status_code in (200, 400), (route, payload, r.status_code)
            if r.status_code == 200:  # a quoted/bare value that merely *contains* the text: data
                assert r.mimetype in ("application/json", "text/csv")
        r = client.get("/api/utterances?" + urlencode({"sort": payload}))
        assert r.status_code == 400
    time.sleep(0.2)
    assert not target.exists()
    r = client.get("/api/utterances?" + urlencode({"filter": "{" + code + "}"}))
    assert r.status_code == 400 and "error" in r.get_json()


# ------------------------------------------------------------------------------- serving options

def _fake_serve(monkeypatch) -> dict:
    import sde.web.serve as serve_mod

    seen: dict = {}

    def fake(app, host="127.0.0.1", port=8050, debug=False, **kw):
        seen.update(app=app, host=host, port=port, debug=debug)

    monkeypatch.setattr(serve_mod, "serve", fake)
    return seen


def test_host_0000_warns_and_never_binds(monkeypatch, hostile):
    """The warning, checked in-process with serve() stubbed out: this test never listens on a
    non-loopback interface (tests stay on 127.0.0.1)."""
    from click.testing import CliRunner

    from sde.cli import cli

    seen = _fake_serve(monkeypatch)
    r = CliRunner().invoke(cli, [str(hostile[0]), "--host", "0.0.0.0", "--port", "0", "--no-cache"])
    assert r.exit_code == 0, r.output
    assert "warning: listening on 0.0.0.0" in r.stderr and "--auth" in r.stderr
    assert seen["host"] == "0.0.0.0"
    seen.clear()
    r = CliRunner().invoke(cli, [str(hostile[0]), "--host", "0.0.0.0", "--port", "0", "--no-cache",
                                 "--auth", "ann:pw"])
    assert r.exit_code == 0 and "warning: listening on 0.0.0.0" in r.stderr
    assert "consider --auth" not in r.stderr
    r = CliRunner().invoke(cli, [str(hostile[0]), "--port", "0", "--no-cache"])
    assert "warning" not in r.stderr


@pytest.mark.parametrize("host, warned", [("127.0.0.2", False), ("LOCALHOST", False), ("0.0.0.0", True)],
                         ids=["another-loopback-ip", "localhost-in-capitals", "every-interface"])
def test_only_a_host_others_can_reach_is_warned_about(monkeypatch, hostile, host, warned):
    # 127.0.0.2 is this machine as much as 127.0.0.1 (the whole 127/8 is loopback), and the Host
    # check (sde.web.sites) says so; the warning had its own list of three names.
    from click.testing import CliRunner

    from sde.cli import cli

    seen = _fake_serve(monkeypatch)
    r = CliRunner().invoke(cli, [str(hostile[0]), "--host", host, "--port", "0", "--no-cache", "--debug"])
    assert r.exit_code == 0, r.output
    assert seen["host"] == host
    assert ("anyone who can reach this machine" in r.stderr) is warned
    assert ("--debug shows tracebacks" in r.stderr) is warned


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_host_is_refused_not_every_interface(monkeypatch, hostile, host):
    # --host "$HOST" with HOST unset bound 0.0.0.0 while the URL printed said 127.0.0.1
    from click.testing import CliRunner

    from sde.cli import cli

    seen = _fake_serve(monkeypatch)
    r = CliRunner().invoke(cli, [str(hostile[0]), "--host", host, "--port", "0", "--no-cache"])
    assert r.exit_code == 2 and "Invalid value for --host: empty" in r.stderr, r.output
    assert not seen


@pytest.mark.parametrize("how", ["flag", "env"])
@pytest.mark.parametrize("command", [[], ["demo"]])
def test_bad_credentials_are_refused_before_the_dataset_is_read(hostile, how, command, tmp_path):
    # found only once the whole dataset had been read and scored: minutes at 10M lines
    args = [*(command or [str(hostile[0])])]  # a copy: the parametrised list is shared by both cases
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    if how == "flag":
        args += ["--auth", "nocolon"]
    else:
        env["SDE_AUTH"] = "nocolon"
    r = subprocess.run([sys.executable, "-m", "sde.cli", *args, "--port", "0", "--no-cache"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    # blamed on what the user set: the option, or the environment variable (its value never echoed)
    blamed = "'--auth'" if how == "flag" else "SDE_AUTH (an environment variable)"
    assert r.returncode == 2 and f"Invalid value for {blamed}: no colon in the credentials" in r.stderr, r.stderr
    assert "reading" not in r.stderr and "Traceback" not in r.stderr and "nocolon" not in r.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
@pytest.mark.parametrize("host,says", [
    ("a..b", "not a host name"),                   # an empty label: IDNA's UnicodeError, a traceback before
    ("a" * 64, "not a host name"),                 # a label over 63 characters: the same
    ("999.1.1.1", "pass --host 127.0.0.1"),        # no such address (getaddrinfo): exit 1 before
    ("192.0.2.1", "is not an address of this machine"),  # an address of another machine: exit 1 before
])
def test_a_host_no_address_answers_to_is_a_usage_error_naming_the_fix(hostile, how, host, says, tmp_path):
    """README: a bad --host or SDE_HOST is a usage error (exit 2) with a message that names the fix;
    a name with an empty label crashed with a traceback (QA)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    args = [str(hostile[0]), "--port", "0", "--no-cache"]
    if how == "flag":
        args += ["--host", host]
    else:
        env["SDE_HOST"] = host
    r = subprocess.run([sys.executable, "-m", "sde.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert ("SDE_HOST=" in r.stderr) == (how == "env"), r.stderr  # the value to change is named where it is


def test_debug_is_off_by_default(monkeypatch, hostile, dataset):
    from click.testing import CliRunner

    from sde.cli import cli

    assert create_app(dataset).server.debug is False
    seen = _fake_serve(monkeypatch)
    r = CliRunner().invoke(cli, [str(hostile[0]), "--port", "0", "--no-cache"])
    assert r.exit_code == 0, r.output
    assert seen["debug"] is False and seen["app"].server.debug is False


BAD_CALLBACK = json.dumps({"output": "nope.children", "outputs": {"id": "nope", "property": "children"},
                           "inputs": [], "changedPropIds": []}).encode()


def _assert_no_debugger(server: SdeServer) -> None:
    code, _, body = server.request("/_dash-update-component", "POST", {"Content-Type": "application/json"},
                                   BAD_CALLBACK)
    assert code >= 400
    for marker in (b"Traceback", b"Werkzeug Debugger", b"__debugger__", b"console", b"SECRET"):
        assert marker not in body, (marker, body[:500])
    code, _, body = server.get("/?__debugger__=yes&cmd=resource&f=debugger.js")
    assert b"CONSOLE_MODE" not in body and b"debugger.js" not in body
    code, _, body = server.get("/console")
    assert b"Werkzeug" not in body and b"__debugger__" not in body


def test_no_werkzeug_debugger_on_the_real_server(server):
    _assert_no_debugger(server)
    assert server.get("/api/summary")[0] == 200


def test_debug_flag_never_enables_the_werkzeug_console(hostile, tmp_path):
    """`--debug` turns on Dash's dev tools, which render errors as Werkzeug's traceback page (source
    lines, paths: hence "never use on a shared machine"); but the debugger middleware is not
    installed, so its console (`?__debugger__=yes&cmd=...`) can never evaluate code."""
    target = tmp_path / "pwned"
    with SdeServer(str(hostile[0]), "--debug") as s:
        cmd = quote(f"__import__('os').system('touch {target}')")
        for q in (f"/?__debugger__=yes&cmd={cmd}&frm=0&s=x", "/?__debugger__=yes&cmd=resource&f=debugger.js",
                  "/console", f"/_dash-update-component?__debugger__=yes&cmd={cmd}&frm=0&s=x"):
            code, _, body = s.get(q)
            assert b"CONSOLE_MODE = true" not in body and b"var CONSOLE_MODE" not in body, q
        assert s.get("/api/summary")[0] == 200
    assert not target.exists()


def test_server_log_has_no_unexpected_tracebacks(server):
    """Runs after the raw-path tests on the same server: only the deliberately malformed Dash
    callback POSTs may have logged a traceback."""
    assert_no_traceback_except_dash_internals(server)


# -------------------------------------------------------------------------------------- auth

def test_parse_credentials():
    assert parse_credentials("ann:s3cret") == ("ann", "s3cret")
    assert parse_credentials("ann:a:b:c") == ("ann", "a:b:c")
    assert parse_credentials("ännä:pässwörd") == ("ännä", "pässwörd")
    for bad, words in [("annsecret", "no colon"), (":pw", "user name is empty"), ("ann:", "password is empty"),
                       ("", "no colon"), (None, "no colon"), ("ann:pw\n", "control character")]:
        with pytest.raises(ValueError, match=words) as e:
            parse_credentials(bad)
        assert "USER:PASSWORD" in str(e.value)


def _basic(user_pw: str) -> str:
    return "Basic " + base64.b64encode(user_pw.encode()).decode()


def test_check_authorization():
    exp = b"ann:s3cret"
    assert check_authorization(_basic("ann:s3cret"), exp)
    assert check_authorization("basic " + base64.b64encode(exp).decode(), exp)
    for header in (None, "", "Basic", "Basic !!!", _basic("ann:s3cre"), _basic("ann:s3cret "), _basic("Ann:s3cret"),
                   "Bearer " + base64.b64encode(exp).decode(), _basic("ann") , "Basic " + "A" * 10_000):
        assert not check_authorization(header, exp), header


def _page_routes(index_html: str) -> list[str]:
    """Real URLs of the app: pages, API, audio, assets, Dash endpoints, one component bundle."""
    import re

    bundles = re.findall(r'src="(/_dash-component-suites/[^"]+)"', index_html)
    assert bundles, "the index page lists Dash's bundles"
    return ["/", "/samples", "/utterance/0", "/statistics", "/api/summary", "/api/utterances",
            "/api/utterances/0", "/api/utterances.csv", "/api/vocabulary", "/api/errors", "/api/compare?b=pred_text",
            "/audio/0.wav", "/api/utterances/0/signal", "/assets/sde.css", "/assets/favicon.ico", "/_dash-layout",
            "/_dash-dependencies", "/_favicon.ico", bundles[0], "/no/such/page", "/api/nope", "/../etc/passwd"]


def _assert_auth(request, routes: list[str], good: str) -> None:
    """`request(path, headers) -> (status, headers, body)` must refuse all routes without `good`."""
    for route in routes:
        for headers in ({}, {"Authorization": _basic("ann:wrong")}, {"Authorization": _basic("wrong:" + good)},
                        {"Authorization": "Bearer x"}):
            code, hdrs, body = request(route, headers)
            assert code == 401, (route, headers, code)
            assert hdrs["www-authenticate"].startswith(f'Basic realm="{REALM}"')
            no_leak(body, route)
            assert b"hello" not in body
        code, _, body = request(route, {"Authorization": _basic("ann:" + good)})
        if route in ("/no/such/page", "/api/nope", "/../etc/passwd"):
            assert code == 404
        else:
            assert code == 200, (route, code, body[:200])


def test_install_basic_auth_on_a_dash_app(dataset):
    app = create_app(dataset, AppConfig(title="x"))
    install_basic_auth(app.server, "ann:s3c:ret")
    client = app.server.test_client()

    def request(path, headers):
        r = client.get(path, headers=headers)
        return r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.get_data()

    index = client.get("/", headers={"Authorization": _basic("ann:s3c:ret")}).get_data(as_text=True)
    _assert_auth(request, _page_routes(index), "s3c:ret")
    r = client.post("/_dash-update-component", data=BAD_CALLBACK, content_type="application/json")
    assert r.status_code == 401
    with pytest.raises(ValueError):
        install_basic_auth(app.server, "nocolon")


def test_create_app_honours_config_auth(dataset):
    app = create_app(dataset, AppConfig(title="x", auth="ann:pw"))
    client = app.server.test_client()
    for route in ("/", "/_dash-layout", "/assets/sde.css", "/api/summary", "/audio/0.wav"):
        r = client.get(route)
        assert r.status_code == 401 and 'realm="sde"' in r.headers["WWW-Authenticate"], route
    assert client.get("/api/summary", headers={"Authorization": _basic("ann:pw")}).status_code == 200


@pytest.mark.parametrize("route, kind", [("/api/summary", "application/json"), ("/api/utterances.csv", "application/json"),
                                         ("/samples", "text/plain"), ("/audio/0.wav", "text/plain")])
def test_a_401_says_how_to_authenticate_in_json_on_the_api(dataset, route, kind):
    """The API answers every mistake in JSON (docs/api.md), a missing password too; pages in text."""
    r = create_app(dataset, AppConfig(title="x", auth="ann:pw")).server.test_client().get(route)
    assert r.status_code == 401 and r.mimetype == kind
    message = r.get_json()["error"] if kind == "application/json" else r.get_data(as_text=True)
    assert "--auth USER:PASSWORD" in message and "curl -u USER:PASSWORD" in message


@pytest.mark.parametrize("how", ["flag", "env"])
def test_auth_on_every_route_of_the_real_server(hostile, how):
    password = "s3c:r et"
    if how == "flag":
        s = SdeServer(str(hostile[0]), "--auth", f"ann:{password}")
    else:
        s = SdeServer(str(hostile[0]), env={"SDE_AUTH": f"ann:{password}"})
    with s:
        code, _, index = s.get("/", {"Authorization": _basic(f"ann:{password}")})
        assert code == 200
        _assert_auth(s.get, _page_routes(index.decode()), password)
        code, _, _ = s.request("/_dash-update-component", "POST", {"Content-Type": "application/json"},
                               BAD_CALLBACK)
        assert code == 401
        code, _, _ = s.request("/api/summary", "OPTIONS")
        assert code == 401
    assert_no_traceback(s)


def test_bad_auth_value_is_a_usage_error(hostile):
    from click.testing import CliRunner

    from sde.cli import cli

    for value in ("nocolon", ":pw"):
        r = CliRunner().invoke(cli, [str(hostile[0]), "--port", "0", "--no-cache", "--auth", value])
        assert r.exit_code == 2, r.output
        assert "USER:PASSWORD" in r.output and "Traceback" not in r.output


# -------------------------------------------------------------------------------------- browser

@pytest.mark.browser
def test_hostile_strings_render_as_text_in_the_browser(hostile):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = os.environ.get("SDE_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        pytest.skip(f"no Chromium at {chromium}")
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    dialogs: list[str] = []
    with SdeServer(str(hostile[0])) as s, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.set_default_timeout(20_000)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            def no_injection(where: str) -> None:
                # no element the hostile strings describe was created
                for sel in ("img[src='x']", "img[onerror]", "[onmouseover]", "script:not([src])"):
                    n = page.locator(sel).count()
                    if sel.startswith("script"):
                        assert page.evaluate("[...document.scripts].every(s => !s.text.includes('alert('))"), where
                    else:
                        assert n == 0, (where, sel)
                assert dialogs == [], (where, dialogs)

            page.goto(s.url + "/samples")
            cell = '#samples-grid .ag-row[row-index="0"] [col-id="text"]'
            page.wait_for_function(f"(document.querySelector('{cell}') || {{}}).innerText > ''")
            assert page.inner_text(cell) == f"{XSS_SCRIPT} hello world"
            assert page.inner_text('#samples-grid .ag-row[row-index="1"] [col-id="text"]') == f"{XSS_ATTR} world"
            page.mouse.move(400, 300)
            page.hover(cell)
            no_injection("samples")

            page.goto(s.url + "/utterance/0")
            page.wait_for_selector("#utt-diff")
            page.get_by_text(f"{XSS_SCRIPT} hello world", exact=True).first.wait_for()
            body = page.inner_text("body")
            assert FIELD_XSS in body and XSS_ATTR in body
            no_injection("inspector 0")
            page.goto(s.url + "/utterance/1")
            page.wait_for_selector("#utt-diff")
            page.get_by_text(f"{XSS_ATTR} world", exact=True).first.wait_for()
            page.hover("#utt-diff")
            no_injection("inspector 1")

            for path in ("/statistics", "/", "/vocabulary", "/errors"):
                page.goto(s.url + path)
                page.wait_for_load_state("networkidle")
                time.sleep(0.3)
                no_injection(path)
            assert "<b>name<i>" in page.title() or "hostile" in page.title()
            time.sleep(0.5)  # late scripts
            assert dialogs == []
        finally:
            browser.close()
