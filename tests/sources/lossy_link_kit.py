"""A lossy network link for the object-store tests: a TCP proxy on 127.0.0.1 in front of an HTTP
server (moto's S3 server) that, for requests matching a pattern, resets the connection after some
bytes of the response body, or never answers. Real sockets, real resets (RST), real silences: what
sde meets on a lossy or stalled link, without a mock of s3fs, aiohttp or botocore.

Each connection carries one request (the proxy asks the server to close after it), so a rule
applies to exactly the requests it matches, and ``seen`` counts every request."""

from __future__ import annotations

import re
import socket
import struct
import threading
from dataclasses import dataclass


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    action: str               # "reset" or "stall"
    after: int = 0            # "reset": bytes of the response body sent first
    times: int | None = None  # requests it still applies to (None: all)


class LossyLink:
    """``with LossyLink(upstream) as link``: ``link.endpoint`` is the proxy's URL; ``link.reset``
    and ``link.stall`` add faults for requests whose ``"METHOD /bucket/key?query"`` matches a
    regular expression; ``link.seen`` counts the requests that met each fault."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.split("://", 1)[-1].rstrip("/").rpartition(":")
        self._upstream = (host, int(port))
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self.requests: list[tuple[str, str, str]] = []  # (method, path, what the proxy did)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, name="lossy-link", daemon=True).start()

    def __enter__(self) -> LossyLink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def reset(self, pattern: str, after: int, times: int | None = None) -> None:
        """Matching responses: ``after`` bytes of the body, then a connection reset."""
        with self._lock:
            self._rules.append(_Rule(re.compile(pattern), "reset", after, times))

    def stall(self, pattern: str, times: int | None = None) -> None:
        """Matching requests get no answer (the connection stays open, silent, until close)."""
        with self._lock:
            self._rules.append(_Rule(re.compile(pattern), "stall", 0, times))

    def seen(self, action: str, pattern: str = "") -> int:
        """How many requests matching ``pattern`` met ``action`` ("forward", "reset", "stall")."""
        with self._lock:
            return sum(1 for method, path, done in self.requests
                       if done == action and re.search(pattern, f"{method} {path}"))

    def close(self) -> None:
        self._closed.set()
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
        with self._lock:
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
            method, path = lines[0].split(" ")[:2]
            rule = self._rule_for(f"{method} {path}")
            with self._lock:
                self.requests.append((method, path, rule.action if rule else "forward"))
            if rule is not None and rule.action == "stall":
                self._closed.wait()
                return
            # one request per connection: a rule then meets exactly the response that follows
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
        """The response to the client; with ``reset_after``, its head and that many body bytes, then a reset."""
        pending = b""
        body_sent: int | None = None  # None until the response's head has gone by
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
                # SO_LINGER 0: close sends RST, as a connection dropped on a lossy link does
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                upstream.close()
                return
            client.sendall(data)
            body_sent += len(data)


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
