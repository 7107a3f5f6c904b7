"""The real server (sde.web.serve) answers requests it cannot read as HTTP/1.1 with a JSON reason,
like every other refusal: a request line cut short by the head deadline (it read as HTTP/0.9, a bare
body, or as a bad line, HTML 400), a body that stops arriving (werkzeug took it for a disconnect,
HTML 400), headers too large to read (http.server's HTML 431); and it dates each answer once (the
audio routes carried two Date headers). Limits shortened for the tests."""

from __future__ import annotations

import http.client
import socket
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from sde.web import serve as serving
from tests.server_kit import answer_json, limited_server, read_all

HEAD_S = 0.5
IDLE_S = 0.5
TRICKLE_GAP_S = 0.1
TRICKLE_BYTES = 600  # 60 s of trickling at most: the server must have answered long before


def assert_serves_on(port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/summary", timeout=30) as resp:
        assert resp.status == 200


def ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(request)
        return read_all(conn)


def json_refusal(answer: bytes, status: bytes) -> str:
    """The error of an HTTP/1.1 JSON answer of ``status`` (fails on anything else)."""
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:300]
    assert b"\r\ncontent-type: application/json" in head, answer[:300]
    return answer_json(answer)["error"]


# ----------------------------------------------------------------------------- request line

@pytest.mark.parametrize("first, piece", [
    (b"GET /api/summ", b"a"),            # two words: an HTTP/0.9 request line, answered without a status line
    (b"GE", b"T"),                       # one word: a bad request line (400)
    (b"GET /api/summary HTT", b"P"),     # a bad version (400)
])
def test_a_request_line_cut_by_the_head_deadline_is_an_http_1_1_json_408(web_app, monkeypatch, first, piece):
    with limited_server(web_app, monkeypatch, REQUEST_HEAD_S=HEAD_S, IDLE_CONNECTION_S=5.0) as port:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(first)
            for _ in range(TRICKLE_BYTES):
                time.sleep(TRICKLE_GAP_S)
                try:
                    conn.sendall(piece)
                except OSError:  # the server closed the connection: its answer was sent before
                    break
            answer = read_all(conn)
        error = json_refusal(answer, b"408")
        assert f"longer than {HEAD_S:g} s" in error and "send them at once" in error
        assert_serves_on(port)


# ----------------------------------------------------------------------------- request body

@pytest.mark.parametrize("head, part", [
    (b"Content-Length: 100\r\n", b'{"rules":'),
    (b"Transfer-Encoding: chunked\r\n", b'9\r\n{"rules":\r\n'),
])
def test_a_body_that_stops_arriving_is_a_json_408_naming_the_fix(web_app, monkeypatch, head, part):
    with limited_server(web_app, monkeypatch, IDLE_CONNECTION_S=IDLE_S, REQUEST_HEAD_S=30.0,
                        REQUEST_BODY_S=30.0) as port:
        answer = ask(port, b"POST /api/rules/preview HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     + head + b"\r\n" + part)  # then nothing more
        error = json_refusal(answer, b"408")
        assert f"nothing for {IDLE_S:g} s" in error and "send it at once" in error
        assert_serves_on(port)


# ----------------------------------------------------------------------------- request headers

@pytest.fixture()
def server(web_app, monkeypatch):
    with limited_server(web_app, monkeypatch) as port:
        yield port


def get_with_headers(headers: list[bytes]) -> bytes:
    return b"GET /api/summary HTTP/1.1\r\nHost: localhost\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


def test_a_header_too_long_to_read_is_a_json_431_naming_the_limit(server):
    limit = serving.MAX_HEADER_LINE_BYTES
    error = json_refusal(ask(server, get_with_headers([b"X-Big: " + b"a" * limit])), b"431")
    assert f"longer than {limit:,} bytes" in error and "shorten it" in error
    assert_serves_on(server)


def test_more_headers_than_the_limit_are_a_json_431_naming_it(server):
    many = [b"X-%d: y" % i for i in range(serving.MAX_HEADERS)]  # with Host, one more than the limit
    error = json_refusal(ask(server, get_with_headers(many)), b"431")
    assert f"more than {serving.MAX_HEADERS} headers" in error and f"send at most {serving.MAX_HEADERS}" in error
    assert_serves_on(server)


def test_as_many_headers_as_the_limit_are_served(server):
    most = [b"X-%d: y" % i for i in range(serving.MAX_HEADERS - 1)]  # and Host
    answer = ask(server, get_with_headers(most))
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


# ----------------------------------------------------------------------------- Date

@pytest.fixture()
def audio_server(write_manifest, tmp_path, monkeypatch):
    """A server of an app with its audio routes, over one real second of audio."""
    from sde.dataset import build_dataset
    from sde.web.app import AppConfig, create_app

    wav = tmp_path / "tone.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000)).astype(np.float32), 16_000,
             subtype="PCM_16")
    dataset = build_dataset(write_manifest([{"audio_filepath": str(wav), "duration": 1.0, "text": "a tone"}]))
    with limited_server(create_app(dataset, AppConfig(title="tone")), monkeypatch) as port:
        yield port


@pytest.mark.parametrize("method, path, headers, status", [
    ("GET", "/audio/0.wav", {}, 200),
    ("HEAD", "/audio/0.wav", {}, 200),
    ("GET", "/audio/0.wav", {"Range": "bytes=0-99"}, 206),
    ("GET", "/audio/0.ogg", {}, 200),
    ("GET", "/api/utterances/0/signal", {}, 200),
    ("GET", "/api/summary", {}, 200),
])
def test_every_answer_has_one_date_header(audio_server, method, path, headers, status):
    conn = http.client.HTTPConnection("127.0.0.1", audio_server, timeout=30)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == status
    assert len(resp.headers.get_all("Date")) == 1, resp.headers.get_all("Date")


def test_a_revalidated_audio_answer_has_one_date_header(audio_server):
    conn = http.client.HTTPConnection("127.0.0.1", audio_server, timeout=30)
    try:
        conn.request("GET", "/audio/0.wav")
        first = conn.getresponse()
        first.read()
        conn.close()
        conn.request("GET", "/audio/0.wav", headers={"If-None-Match": first.headers["ETag"]})
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 304
    assert len(resp.headers.get_all("Date")) == 1, resp.headers.get_all("Date")
