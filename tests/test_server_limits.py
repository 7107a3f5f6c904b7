"""The real server (sde.web.serve) bounds what one client can hold: a request body trickled a byte
every few seconds (each read gets something, so the idle limit never trips) is answered 408 and
let go once REQUEST_BODY_S has passed, a body sent at once is never cut however long the answer
takes; and beyond MAX_CONNECTIONS connections at once a new one is answered 503 (JSON, with
Retry-After) and closed at once instead of taking a thread more. Limits shortened for the tests."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import psutil
import pytest

from tests.server_kit import answer_json, limited_server, read_all, trickling_clients

BODY_S = 1.0
TRICKLE_GAP_S = 0.1
BODY_BYTES = 2_000  # 200 s of trickling at most: the server must have refused long before
CAP = 4

PREVIEW = b'{"rules": [{"name": "high", "filter": "{wer} > 10"}]}'


@pytest.fixture()
def server(web_app, monkeypatch):
    with limited_server(web_app, monkeypatch, REQUEST_BODY_S=BODY_S, REQUEST_HEAD_S=30.0, IDLE_CONNECTION_S=5.0,
                        MAX_CONNECTIONS=CAP) as port:
        yield port


def threads() -> int:
    return psutil.Process().num_threads()


def settle(target: int, *, at_most: bool) -> int:
    """The thread count once it is at most (or at least) ``target``, or after 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        n = threads()
        if (n <= target) if at_most else (n >= target):
            return n
        time.sleep(0.05)
    return threads()


def post_head(path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def trickle_body(port: int, path: str) -> tuple[bytes, int]:
    """(the server's answer, body bytes sent before it) of a body sent a byte at a time."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(post_head(path, BODY_BYTES))
        sent = 0
        for sent in range(BODY_BYTES):
            time.sleep(TRICKLE_GAP_S)
            try:
                conn.sendall(b" ")
            except OSError:  # the server closed the connection: its answer was sent before
                break
            if sent * TRICKLE_GAP_S > 10 * BODY_S:
                break  # far past the deadline: stop sending, read what the server says
        return read_all(conn), sent


def test_a_trickled_chunked_body_is_a_408(server):
    with socket.create_connection(("127.0.0.1", server)) as conn:
        conn.sendall(b"POST /api/rules/preview HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(int(10 * BODY_S / TRICKLE_GAP_S)):
            time.sleep(TRICKLE_GAP_S)
            try:
                conn.sendall(b"1\r\n \r\n")  # a chunk of one byte
            except OSError:
                break
        answer = read_all(conn)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]


@pytest.mark.parametrize("path", ["/api/rules/preview", "/_dash-update-component"])
def test_a_trickled_body_is_a_408_and_the_server_serves_on(server, path):
    answer, sent = trickle_body(server, path)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert f"body took longer than {BODY_S:g} s" in answer_json(answer)["error"]
    assert sent < BODY_BYTES
    with urllib.request.urlopen(f"http://127.0.0.1:{server}/api/summary", timeout=30) as resp:
        assert resp.status == 200


def test_the_threads_of_clients_trickling_bodies_end(server):
    before = threads()
    # four deadlines' worth of trickling
    answers = trickling_clients(server, CAP - 1, post_head("/api/rules/preview", BODY_BYTES), b" ", 4 * BODY_S,
                                TRICKLE_GAP_S)
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), [a[:40] for a in answers]
    assert settle(before, at_most=True) <= before


def test_a_body_sent_at_once_is_answered_as_before(server):
    for _ in range(2):  # and on a kept-alive connection
        with socket.create_connection(("127.0.0.1", server)) as conn:
            conn.sendall(post_head("/api/rules/preview", len(PREVIEW)) + PREVIEW)
            time.sleep(2 * BODY_S)  # the answer waits, unread, past the body's deadline
            conn.shutdown(socket.SHUT_WR)
            answer = read_all(conn)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert "rules" in answer_json(answer)


def test_a_connection_beyond_the_cap_is_a_503_with_retry_after(server):
    before = threads()
    held = [socket.create_connection(("127.0.0.1", server)) for _ in range(CAP)]  # each waits for its request
    try:
        assert settle(before + CAP, at_most=False) >= before + CAP  # each has its thread
        with socket.create_connection(("127.0.0.1", server)) as extra:
            answer = read_all(extra)  # answered and closed without a request
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 503"), answer[:300]
        assert b"\r\nRetry-After: " in head and b"\r\nContent-Type: application/json" in head
        assert f"already serving {CAP:,} connections" in json.loads(body)["error"]
        assert threads() <= before + CAP  # no thread for the refused one
    finally:
        for conn in held:
            conn.close()
    assert settle(before, at_most=True) <= before
    with urllib.request.urlopen(f"http://127.0.0.1:{server}/api/summary", timeout=30) as resp:
        assert resp.status == 200  # the held connections' places are free again
