"""Serve a Dash app on a local port: `--port 0` picks a free one, a busy port is a clear error.

`reserve(host, port)` takes the port before anything else happens (the CLI calls it before it
loads the data: a busy port is reported at once, not after minutes of loading a large manifest);
`serve(app, ..., sock=that socket)` then listens on it. This module imports neither dash nor
werkzeug at import time, so the check costs the CLI nothing but a socket; `import_dash()` then
imports Dash for a server (without the notebook support it would load IPython for).
"""

from __future__ import annotations

import errno
import heapq
import io
import itertools
import json
import logging
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, TextIO

if TYPE_CHECKING:  # pragma: no cover
    import dash


def import_dash() -> None:
    """Import Dash for a server. Where IPython is installed (any Jupyter environment), Dash's
    notebook support imports it: ~0.4-0.6 s of every start of a server that never runs in a
    notebook. While Dash imports, IPython reads as not installed, which Dash takes as "no
    notebook"; anything imported later finds it as usual. In a notebook (IPython already
    imported), Dash imports as it would."""
    hidden = "dash" not in sys.modules and "IPython" not in sys.modules
    if hidden:
        sys.modules["IPython"] = None  # type: ignore[assignment]  # an import of it raises ImportError
    try:
        import dash  # noqa: F401
    finally:
        if hidden and sys.modules.get("IPython", False) is None:
            del sys.modules["IPython"]


class ServeError(Exception):
    """The server could not start (busy port, bad host); the message names the fix.
    ``bad_host``: the host given is no address to listen on (a usage error)."""

    def __init__(self, message: str, *, bad_host: bool = False) -> None:
        super().__init__(message)
        self.bad_host = bad_host


def display_url(host: str, port: int) -> str:
    """The URL a user can open: wildcard binds are shown as 127.0.0.1, IPv6 hosts in brackets."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def bind(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to host:port (port 0: the OS picks a free one), listening unless
    `listen=False` (then the port is taken, but connections are refused, not queued)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    # IPv4 first unless an IPv6 address was asked for ("localhost" may resolve to ::1 first).
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        if listen:
            sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """The port, taken now (bound, not yet listening: a browser that connects while the data
    loads is refused at once instead of hanging), or a ServeError that names the fix."""
    return _bound(host, port, listen=False)


def serve(app: "dash.Dash", host: str = "127.0.0.1", port: int = 8050, debug: bool = False,
          *, out: TextIO | None = None, sock: socket.socket | None = None) -> None:
    """Serve `app` until interrupted (Ctrl-C returns normally).

    Listens on `sock` (from `reserve`) or binds host:port now, and prints `sde: serving on
    http://HOST:PORT/` only once the socket listens, so a caller that parses the line (tests,
    scripts) can connect at once. Port 0 lets the OS choose.
    """
    out = out or sys.stdout
    if debug:
        app.enable_dev_tools(debug=True, dev_tools_hot_reload=False)
    else:
        # One log line per request drowns the terminal; errors still show.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if sock is None:
        sock = _bound(host, port, listen=True)
    else:
        _listen(sock, host, port)
    # werkzeug binds by itself and calls sys.exit(1) on a busy port; handing it our bound socket
    # keeps the error ours (a message that names the fix) and makes port 0 race-free.
    server = listening_server(app, host, sock)
    url = display_url(host, server.socket.getsockname()[1])
    try:  # the line inside: a Ctrl-C right after it (whoever waits for it may send one) stops cleanly too
        print(f"sde: serving on {url}  (Ctrl-C to stop)", file=out, flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def listening_server(app: "dash.Dash", host: str, sock: socket.socket):
    """werkzeug's threaded server of ``app`` on ``sock`` (listening; closed here: werkzeug works on
    its own duplicate of the descriptor), its connections answered by :func:`_json_error_handler`,
    their request heads due within REQUEST_HEAD_S and their bodies within REQUEST_BODY_S
    (:class:`HeadDeadlines`, ended by ``server_close``), at most MAX_CONNECTIONS of them at once."""
    from werkzeug.serving import make_server

    heads = HeadDeadlines()
    try:
        server = make_server(host, sock.getsockname()[1], _answering_cut_bodies(app.server), threaded=True,
                             fd=sock.fileno(), request_handler=_json_error_handler(heads))
    except BaseException:
        heads.close()
        raise
    finally:
        sock.close()
    _limit_connections(server)
    close = server.server_close

    def server_close() -> None:
        heads.close()
        close()

    server.server_close = server_close  # type: ignore[method-assign]
    return server


#: Longest request line Python's HTTP server reads (http.server): a longer URL is refused before
#: the app sees it.
MAX_REQUEST_LINE_BYTES = 65_536
#: Longest header line ("Name: value" and its line break) and most headers a request may have:
#: http.client's limits, which http.server reads a request's headers with (431 beyond them). Its
#: limit of 100 lines counts the empty line that ends the headers: 99 headers.
MAX_HEADER_LINE_BYTES = 65_536
MAX_HEADERS = 99
#: Seconds a connection may keep the server waiting on its socket (a request not yet sent whole, an
#: idle keep-alive connection, a client that stops reading an answer): each holds a thread, and a
#: thousand half-sent requests held a thousand threads for good. A browser opens a new connection
#: when it needs one; a paused player asks for the rest of its file again.
IDLE_CONNECTION_S = 10.0
#: Seconds a client has to send a request's line and headers, all of them. The idle limit above
#: bounds each wait for a byte, not the request: a client trickling a header byte every few seconds
#: never tripped it and held a thread for good (a thousand such clients, a thousand threads). A
#: browser or script sends its request head in one packet; the body has REQUEST_BODY_S more, the answer
#: as long as it takes.
REQUEST_HEAD_S = 30.0
#: Seconds a client has to send a request's body, once its head has arrived: the idle limit bounds
#: each wait for a byte, and a client trickling a body byte every few seconds held a thread for good.
#: sde's requests carry small bodies (a callback's JSON, a rules file of at most a few MiB), which a
#: browser sends at once.
REQUEST_BODY_S = 30.0
#: Connections served at once (one thread each): a new one beyond them is answered 503 (JSON, with
#: Retry-After) and closed at once, instead of a thread more for each a client opens.
MAX_CONNECTIONS = 1024
#: Seconds a refused connection is asked to wait before it tries again.
RETRY_AFTER_S = 5


class _Deadline:
    """One connection's request head, due by ``at`` (time.monotonic)."""

    __slots__ = ("at", "sock", "live", "expired")

    def __init__(self, at: float, sock: socket.socket) -> None:
        self.at, self.sock, self.live, self.expired = at, sock, True, False


class HeadDeadlines:
    """Stops reading a request whose head is overdue: one thread for all of a server's connections
    shuts the reading side of those sockets down, which ends the read that waits (the answer, a
    408, can still be written)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="sde-request-heads", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """End the watching thread (the server is closed)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def start(self, sock: socket.socket, seconds: float) -> _Deadline:
        deadline = _Deadline(time.monotonic() + seconds, sock)
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._heap[0][2] is deadline:  # due before every other: the watcher's wait is too long
                self._cond.notify()
        return deadline

    def stop(self, deadline: _Deadline) -> bool:
        """The head arrived (or the connection ended): no more watching. Whether it was overdue."""
        with self._cond:
            deadline.live = False
            return deadline.expired

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                while self._heap and not self._heap[0][2].live:  # finished in time: forget
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                deadline = heapq.heappop(self._heap)[2]
                deadline.live, deadline.expired = False, True
                try:
                    deadline.sock.shutdown(socket.SHUT_RD)
                except OSError:  # already closed by the client or the handler
                    pass


def _json_error_handler(heads: HeadDeadlines) -> type:
    """werkzeug's request handler, answering a URL too long to read (414) in JSON like every other
    refusal: a legal filter of 10,000 non-ASCII characters takes up to 120 KB in a URL, and the
    page got an HTML error instead of the reason. So is a request head that took longer than
    REQUEST_HEAD_S to arrive (408; ``heads`` watches the deadlines), and headers too large to read
    (431); a body's deadline (REQUEST_BODY_S) starts once the head has arrived (:class:`_TimedBody`)."""
    from werkzeug.serving import WSGIRequestHandler

    class JsonErrors(WSGIRequestHandler):
        timeout = IDLE_CONNECTION_S  # socketserver sets it on each connection
        _dated = False  # the answer being written has its Date header

        def handle_one_request(self) -> None:
            self._head = heads.start(self.connection, REQUEST_HEAD_S)
            self._body: _Deadline | None = None
            try:
                super().handle_one_request()
            finally:
                heads.stop(self._head)
                if self._body is not None:
                    heads.stop(self._body)

        def make_environ(self) -> dict:
            environ = super().make_environ()
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > 0 or environ.get("wsgi.input_terminated"):  # a body to read (chunked: ends when it says)
                self._body = heads.start(self.connection, REQUEST_BODY_S)
                environ["wsgi.input"] = environ[_BODY_KEY] = _TimedBody(environ["wsgi.input"], self, heads,
                                                                       self._body, length or None)
            return environ

        def parse_request(self) -> bool:
            parsed = super().parse_request()
            if heads.stop(self._head) and parsed:  # whole, but only after the deadline shut reading down
                self.send_error(408)
                return False
            return parsed

        def send_response_only(self, code: int, message: str | None = None) -> None:
            self._dated = False
            super().send_response_only(code, message)

        def send_header(self, keyword: str, value: str) -> None:
            # send_response dates every answer, and werkzeug's Response.make_conditional (the audio
            # and signal routes) dates it again: two Date headers, where RFC 9110 allows one.
            if keyword.lower() == "date":
                if self._dated:
                    return
                self._dated = True
            super().send_header(keyword, value)

        def log_error(self, format: str, *args: object) -> None:
            if not format.startswith("Request timed out"):  # an idle connection closed: routine, not an error
                super().log_error(format, *args)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            if heads.stop(self._head):
                # The deadline cut the head short: what arrived reads as a bad request line (400), or
                # as an HTTP/0.9 one ("GET /api/su"), which http.server answers without a status line.
                code, self.request_version = 408, self.protocol_version
            if code == 414:
                text = (f"the URL is longer than {MAX_REQUEST_LINE_BYTES:,} bytes, which the server cannot "
                        "read: shorten the filter (in a URL each non-ASCII character takes 6 to 12 bytes)")
            elif code == 408:
                text = (f"the request's line and headers took longer than {REQUEST_HEAD_S:g} s to arrive; "
                        "send them at once")
            elif code == 431 and message == "Too many headers":  # http.server's words for it
                text = (f"the request has more than {MAX_HEADERS} headers, which the server cannot read: "
                        f"send at most {MAX_HEADERS}")
            elif code == 431:
                text = (f"a request header is longer than {MAX_HEADER_LINE_BYTES:,} bytes, which the server "
                        "cannot read: shorten it (a cookie that large: clear this site's cookies)")
            else:
                super().send_error(code, message, explain)
                return
            self.close_connection = True
            self.send_response(code)  # the standard reason ("Request Header Fields Too Large", not "Line too long")
            for name, value in _json_answer_headers(body := _json_error(text)):
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

    return JsonErrors


def _json_error(text: str) -> bytes:
    return json.dumps({"error": text}).encode()


def _json_answer_headers(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]


# ---------------------------------------------------------------- request bodies

_BODY_KEY = "sde.timed_body"


class _TimedBody(io.RawIOBase):
    """A request's body (``wsgi.input``) due by its deadline: the watcher shuts the socket's reading
    side down when it passes, which ends the read that waits; ``cut`` then says so, and
    :func:`_answering_cut_bodies` answers 408 instead of whatever the app made of a short body.
    So does a body that stops arriving (``stalled``: no byte for IDLE_CONNECTION_S, the socket's
    timeout). The deadline ends once ``length`` bytes (the Content-Length) have been read."""

    def __init__(self, raw, handler, heads: HeadDeadlines, deadline: _Deadline, length: int | None) -> None:
        super().__init__()
        self._raw, self._handler, self._heads, self._deadline = raw, handler, heads, deadline
        self._left = length
        self.cut = self.stalled = False

    def readable(self) -> bool:
        return True

    def _got(self, n: int) -> None:
        if self._deadline.expired:
            self.cut = True
            self._handler.close_connection = True
        elif self._left is not None:
            self._left -= n
            if self._left <= 0:
                self._heads.stop(self._deadline)

    def _read(self, how: Callable[[], Any], size: Callable[[Any], int]) -> Any:
        try:
            got = how()
        except TimeoutError:  # the idle limit: werkzeug took the short body for a disconnect (HTML 400)
            self.stalled = self.cut = True
            self._handler.close_connection = True
            return None
        except (OSError, ValueError):  # a chunked body cut mid-chunk ("invalid chunk header")
            if not self._deadline.expired:
                raise
            got = None
        self._got(size(got) if got is not None else 0)
        return None if self.cut else got

    def readinto(self, buffer) -> int:
        if self.cut:
            return 0
        if hasattr(self._raw, "readinto"):
            return self._read(lambda: self._raw.readinto(buffer) or 0, int) or 0
        data = self._read(lambda: self._raw.read(len(buffer)), len) or b""
        buffer[:len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return b"" if self.cut else self._read(lambda: self._raw.read(size), len) or b""

    def readline(self, size: int = -1) -> bytes:
        return b"" if self.cut else self._read(lambda: self._raw.readline(size), len) or b""


def _answering_cut_bodies(app):
    """``app`` (WSGI), answering 408 (JSON) a request whose body did not arrive by REQUEST_BODY_S or
    stopped arriving: the app saw a short body (werkzeug: 400 "client disconnected"), its answer is dropped."""

    def wsgi(environ, start_response):
        body = environ.get(_BODY_KEY)
        if body is None:
            return app(environ, start_response)
        started = []

        def start(status, headers, exc_info=None):
            if body.cut and not started:
                return lambda _data: None
            started.append(True)
            return start_response(status, headers, exc_info)

        result = app(environ, start)
        if not body.cut or started:
            return result
        if hasattr(result, "close"):
            result.close()
        if body.stalled:
            text = f"the request's body stopped arriving (nothing for {IDLE_CONNECTION_S:g} s); send it at once"
        else:
            text = f"the request's body took longer than {REQUEST_BODY_S:g} s to arrive; send it at once"
        answer = _json_error(text)
        start_response("408 Request Timeout", _json_answer_headers(answer))
        return [answer]

    return wsgi


# ---------------------------------------------------------------- how many connections at once

def _limit_connections(server) -> None:
    """At most MAX_CONNECTIONS connections of ``server`` (werkzeug's, a thread each) served at once;
    one more is answered 503 (JSON, Retry-After) from the accepting thread and closed."""
    lock = threading.Lock()
    active = [0]
    start_thread, serve_one = server.process_request, server.process_request_thread

    def done() -> None:
        with lock:
            active[0] -= 1

    def process_request(request, client_address) -> None:
        with lock:
            full = active[0] >= MAX_CONNECTIONS
            if not full:
                active[0] += 1
        if not full:
            try:
                start_thread(request, client_address)
                return
            except RuntimeError:  # "can't start new thread": out of threads before the cap
                done()
        _refuse(request)
        server.shutdown_request(request)

    def process_request_thread(request, client_address) -> None:
        try:
            serve_one(request, client_address)
        finally:
            done()

    server.process_request = process_request
    server.process_request_thread = process_request_thread


def _refuse(conn: socket.socket) -> None:
    """Answer 503 on a connection the server will not serve, without waiting on it."""
    body = _json_error(f"the server is already serving {MAX_CONNECTIONS:,} connections; "
                       f"try again in {RETRY_AFTER_S} s")
    head = "".join(f"{k}: {v}\r\n" for k, v in _json_answer_headers(body))
    answer = (f"HTTP/1.1 503 Service Unavailable\r\n{head}Retry-After: {RETRY_AFTER_S}\r\n"
              "Connection: close\r\n\r\n").encode() + body
    try:
        conn.setblocking(False)
        conn.send(answer)  # a few hundred bytes: the socket's buffer takes them at once
        while conn.recv(65_536):  # what the client sent: closing on unread bytes resets the connection
            pass
    except OSError:  # nothing more to read now (or the client has gone)
        pass


def _bound(host: str, port: int, *, listen: bool) -> socket.socket:
    try:
        return bind(host, port, listen=listen)
    except OSError as e:
        raise _serve_error(e, host, port) from None
    except UnicodeError:  # the name's IDNA encoding: a label empty ("a..b", ".x") or over 63 characters
        raise ServeError(f"cannot listen on {host!r}: not a host name (a part between dots is empty or longer "
                         "than 63 characters); pass --host 127.0.0.1 or 0.0.0.0", bad_host=True) from None


def _listen(sock: socket.socket, host: str, port: int) -> None:
    # Two processes may both hold a reserved (bound, SO_REUSEADDR) port: the second listen fails.
    try:
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise _serve_error(e, host, port) from None


def _serve_error(e: OSError, host: str, port: int) -> ServeError:
    if isinstance(e, socket.gaierror):  # an unknown host name (a subclass of OSError)
        return ServeError(f"cannot listen on {host!r}: {e.strerror or e}; pass --host 127.0.0.1 or 0.0.0.0",
                          bad_host=True)
    if e.errno == errno.EADDRINUSE:
        return ServeError(
            f"port {port} on {host} is already in use (another sde or server is running there); "
            "pass --port with another number, or --port 0 to pick a free one"
        )
    if e.errno == errno.EACCES:
        return ServeError(
            f"no permission to listen on port {port}; ports below 1024 need root: pass --port 8050 "
            "or --port 0"
        )
    if e.errno == errno.EADDRNOTAVAIL:
        return ServeError(f"{host} is not an address of this machine; pass --host 127.0.0.1 or 0.0.0.0",
                          bad_host=True)
    return ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}; check --host and --port")
