"""A faulty link in front of a real HTTP store (moto's S3 server): a TCP proxy on 127.0.0.1 that
passes requests through, except those a rule names, which it stalls (never answers), resets
(before answering, or after some bytes of the answer's body), or answers with a store's error
status (503 SlowDown, 500 InternalError, 403 ExpiredToken). Real sockets, real resets (RST), real
silences: what sde meets on a lossy or stalled link, without a mock of s3fs, aiohttp or botocore.

One request per connection: the proxy asks the store with ``Connection: close`` and closes the
client's connection after the answer, so every request is seen (and can be failed) on its own;
``requests`` lists them all, with what the proxy did.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

_ERRORS = {503: ("Service Unavailable", "SlowDown", "Please reduce your request rate."),
           500: ("Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
           403: ("Forbidden", "ExpiredToken", "The provided token has expired.")}


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    action: str                 # "stall", "reset" or "status"
    after: int | None = None    # "reset": bytes of the answer's body sent first (None: no answer at all)
    status: int = 0             # "status": one of _ERRORS
    times: int | None = None    # requests it still applies to (None: all)


class FaultyLink:
    """``endpoint`` reaches ``upstream`` through the proxy. Faults for requests whose
    ``"METHOD /bucket/key?query"`` matches: ``fault(text, kind)`` (contains ``text``; kind "stall",
    "reset" or an int status of _ERRORS), ``reset(pattern, after, times)`` and ``stall(pattern,
    times)`` (a regular expression). ``heal()`` drops every rule and ends the stalled requests
    (their connections close); ``seen(action, pattern)`` counts the requests that met an action
    ("forward", "stall", "reset", "status")."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self.stalled = threading.Event()  # set once a request is being stalled
        self.requests: list[tuple[str, str, str]] = []  # (method, path, what the proxy did)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, name="faulty-link", daemon=True).start()

    def __enter__(self) -> FaultyLink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def fault(self, text: str, kind: str | int) -> None:
        """Requests containing ``text``: "stall", "reset" (before any answer) or an error status."""
        rule = _Rule(re.compile(re.escape(text)), "status", status=kind) if isinstance(kind, int) else \
            _Rule(re.compile(re.escape(text)), kind)
        with self._lock:
            self._rules.append(rule)

    def reset(self, pattern: str, after: int, times: int | None = None) -> None:
        """Matching answers: ``after`` bytes of the body, then a connection reset."""
        with self._lock:
            self._rules.append(_Rule(re.compile(pattern), "reset", after, times=times))

    def stall(self, pattern: str, times: int | None = None) -> None:
        """Matching requests get no answer (the connection stays open, silent, until heal or close)."""
        with self._lock:
            self._rules.append(_Rule(re.compile(pattern), "stall", times=times))

    def seen(self, action: str, pattern: str = "") -> int:
        with self._lock:
            return sum(1 for method, path, done in self.requests
                       if done == action and re.search(pattern, f"{method} {path}"))

    def heal(self) -> None:
        with self._lock:
            self._rules.clear()
            release, self._release = self._release, threading.Event()
        release.set()
        self.stalled.clear()

    def close(self) -> None:
        self._closed.set()
        self.heal()
        with self._lock:
            sockets, self._sockets = [self._server, *self._sockets], []
        for s in sockets:
            try:
                s.close()
            except OSError:
                pass

    # ---------------------------------------------------------------------------------- serving

    def _keep(self, s: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(s)
        return s

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(self._keep(client),), daemon=True).start()

    def _rule_for(self, request: str) -> _Rule | None:
        for rule in self._rules:
            if rule.times != 0 and rule.pattern.search(request):
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None

    def _serve(self, client: socket.socket) -> None:
        try:
            head, body = _read_request(client)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path = (lines[0].split(" ") + ["", ""])[:2]
            with self._lock:
                rule = self._rule_for(f"{method} {path}")
                self.requests.append((method, path, rule.action if rule else "forward"))
                release = self._release
            if rule is not None and rule.action == "stall":
                self.stalled.set()
                release.wait(300)
                return
            if rule is not None and rule.action == "reset" and rule.after is None:
                _reset(client)
                return
            if rule is not None and rule.action == "status":
                client.sendall(_error(rule.status, path, method == "HEAD"))
                return
            # one request per connection: a rule then meets exactly the answer that follows
            kept = [line for line in lines[1:] if line and not line.lower().startswith("connection:")]
            request = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
            upstream = self._keep(socket.create_connection(self._upstream, timeout=60))
            upstream.sendall(request)
            self._relay(upstream, client, rule.after if rule is not None else None)
        except OSError:
            pass
        finally:
            try:
                client.close()
            except OSError:
                pass

    def _relay(self, upstream: socket.socket, client: socket.socket, reset_after: int | None) -> None:
        """The answer to the client; with ``reset_after``, its head and that many body bytes, then a reset."""
        pending = b""
        body_sent: int | None = None  # None until the answer's head has gone by
        while True:
            data = upstream.recv(65536)
            if not data:
                client.sendall(pending)
                return
            if reset_after is None:
                client.sendall(data)
                continue
            if body_sent is None:
                pending += data
                end = pending.find(b"\r\n\r\n")
                if end < 0:
                    continue
                client.sendall(pending[:end + 4])
                data, pending, body_sent = pending[end + 4:], b"", 0
            allowed = reset_after - body_sent
            if len(data) >= allowed:
                client.sendall(data[:allowed])
                _reset(client)
                upstream.close()
                return
            client.sendall(data)
            body_sent += len(data)


def _reset(conn: socket.socket) -> None:
    """SO_LINGER 0: close sends RST, as a connection dropped on a lossy link does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _read_request(client: socket.socket) -> tuple[bytes | None, bytes]:
    """(the request's head, its body) as the client sent them; (None, b"") if it closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            break
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
    with FaultyLink(upstream) as link:
        yield link
