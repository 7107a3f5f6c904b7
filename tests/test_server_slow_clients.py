"""A client that trickles its request's line and headers (a byte every few seconds: each read gets
something, so the idle limit never trips) is answered 408 and let go once REQUEST_HEAD_S has
passed, instead of holding a server thread for good; a request sent at once is never cut, however
long the server then takes to answer it. The real server (sde.web.serve), its limits shortened."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest

from tests.server_kit import answer_json, limited_server, read_all, trickling_clients

HEAD_S = 0.5
TRICKLE_GAP_S = 0.1
TRICKLE_LINES = 600  # 60 s of header lines at most: the server must have refused long before


@pytest.fixture()
def server(web_app, monkeypatch):
    watchers = watching()
    with limited_server(web_app, monkeypatch, REQUEST_HEAD_S=HEAD_S, IDLE_CONNECTION_S=5.0) as port:
        yield port
    assert watching() == watchers  # its deadline watcher ended too


def watching() -> int:
    return sum(t.name == "sde-request-heads" for t in threading.enumerate())


def trickle(port: int, first: bytes) -> tuple[bytes, int]:
    """(the server's answer, header lines sent before it) of a request head sent a line at a time."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(first)
        sent = 0
        for sent in range(TRICKLE_LINES):
            time.sleep(TRICKLE_GAP_S)
            try:
                conn.sendall(b"X-Slow: %d\r\n" % sent)
            except OSError:  # the server closed the connection: its answer was sent before
                break
        else:
            conn.sendall(b"\r\n")  # the server let the whole head arrive: complete the request
        return read_all(conn), sent


@pytest.mark.parametrize("first", [
    b"GET /api/summary HTTP/1.1\r\nHost: localhost\r\n",      # the headers trickle
    b"POST /api/rules/preview HTTP/1.1\r\n",
])
def test_a_trickled_request_head_is_a_408_and_the_server_serves_on(server, first):
    answer, sent = trickle(server, first)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert sent < TRICKLE_LINES
    assert f"longer than {HEAD_S:g} s" in answer_json(answer)["error"]
    with urllib.request.urlopen(f"http://127.0.0.1:{server}/api/summary", timeout=30) as resp:
        assert resp.status == 200


def test_the_thread_of_a_trickling_client_ends(server):
    before = threading.active_count()
    # four deadlines' worth of trickling
    answers = trickling_clients(server, 10, b"GET /api/summary HTTP/1.1\r\n", b"X: 1\r\n", 4 * HEAD_S, TRICKLE_GAP_S)
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), [a[:40] for a in answers]
    deadline = time.monotonic() + 30
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


def test_an_answer_read_after_the_head_deadline_is_not_cut(server):
    with socket.create_connection(("127.0.0.1", server)) as conn:
        conn.sendall(b"GET /api/summary HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(2 * HEAD_S)  # the answer waits, unread, past the head's deadline
        answer = read_all(conn)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer_json(answer)["utterances"] > 0
