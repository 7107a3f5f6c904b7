"""A faulty link in front of a real HTTP store (moto's S3 server): a TCP proxy on 127.0.0.1 that
passes requests through, except those a rule names, which it stalls (never answers), resets, or
answers with a store's error status (503 SlowDown, 500 InternalError, 403 ExpiredToken).

One request per connection: the proxy asks the store with ``Connection: close`` and closes the
client's connection after the answer, so every request is seen (and can be failed) on its own.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

_ERRORS = {503: ("Service Unavailable", "SlowDown", "Please reduce your request rate."),
           500: ("Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
           403: ("Forbidden", "ExpiredToken", "The provided token has expired.")}


class FaultyLink:
    """``endpoint`` reaches ``upstream`` through the proxy. ``fault(text, kind)``: a request whose
    ``"METHOD /path"`` contains ``text`` gets ``kind``: "stall", "reset", or an int status of
    _ERRORS. ``heal()`` drops every rule and ends the stalled requests (their connections close)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._rules: dict[str, str | int] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.stalled = threading.Event()  # set once a request is being stalled
        self._server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def fault(self, text: str, kind: str | int) -> None:
        with self._lock:
            self._rules[text] = kind

    def heal(self) -> None:
        with self._lock:
            self._rules.clear()
        self._release.set()
        self._release = threading.Event()
        self.stalled.clear()

    def close(self) -> None:
        self.heal()
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            head, body = request
            first = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, path = (first.split(" ") + ["", ""])[:2]
            with self._lock:
                kind = next((k for text, k in self._rules.items() if text in f"{method} {path}"), None)
                release = self._release
            if kind == "stall":
                self.stalled.set()
                release.wait(300)
            elif kind == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif isinstance(kind, int):
                conn.sendall(_error(kind, path, method == "HEAD"))
            else:
                conn.sendall(self._forward(head, body))

    def _forward(self, head: bytes, body: bytes) -> bytes:
        lines = [line for line in head.split(b"\r\n") if line and not line.lower().startswith(b"connection:")]
        with socket.create_connection(self._upstream) as up:
            up.sendall(b"\r\n".join([*lines, b"Connection: close", b"", b""]) + body)
            answer = b""
            while chunk := up.recv(1 << 16):
                answer += chunk
        return answer


def _read_request(conn: socket.socket) -> tuple[bytes, bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return None
        body += chunk
    return head, body


def _error(status: int, path: str, head_only: bool) -> bytes:
    reason, code, message = _ERRORS[status]
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<Resource>{path}</Resource><RequestId>FAULTY</RequestId></Error>").encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + (b"" if head_only else body)


@contextlib.contextmanager
def faulty_link(upstream: str) -> Iterator[FaultyLink]:
    link = FaultyLink(upstream)
    try:
        yield link
    finally:
        link.close()
