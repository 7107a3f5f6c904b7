"""The real server (sde.web.serve) in this process with its limits shortened, and raw-socket clients
that trickle what they send: shared by the tests of request heads, bodies and connection caps."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from sde.web import serve as serving


@contextlib.contextmanager
def limited_server(web_app, monkeypatch, **limits: float) -> Iterator[int]:
    """The port of a server of ``web_app`` whose module constants ``limits`` (REQUEST_HEAD_S=0.5,
    …) are set for the test; shut down and closed after it."""
    for name, value in limits.items():
        monkeypatch.setattr(serving, name, value)
    with served_port(web_app) as port:
        yield port


@contextlib.contextmanager
def served_port(web_app, host: str = "127.0.0.1") -> Iterator[int]:
    """The port of sde.web.serve's server of ``web_app`` bound to ``host``; shut down and closed after."""
    srv = serving.listening_server(web_app, host, serving.bind(host, 0))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.socket.getsockname()[1]
    finally:
        srv.shutdown()
        srv.server_close()


def read_all(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset ends it too)."""
    conn.settimeout(30)
    out = b""
    try:
        while chunk := conn.recv(65_536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def answer_json(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def trickling_clients(port: int, clients: int, first: bytes, piece: bytes, seconds: float,
                      gap: float) -> list[bytes]:
    """The answers to ``clients`` connections that each send ``first``, then ``piece`` every ``gap``
    seconds for ``seconds``."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(clients)]
    try:
        for conn in conns:
            conn.sendall(first)
        for _ in range(int(seconds / gap)):
            time.sleep(gap)
            for conn in conns:
                try:
                    conn.sendall(piece)
                except OSError:
                    pass
        return [read_all(conn) for conn in conns]
    finally:
        for conn in conns:
            conn.close()


def json_call(url: str, body: dict | None = None) -> tuple[int, dict]:
    """(status, JSON body) of a GET, or of a POST of ``body`` as JSON; 4xx answers too."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
