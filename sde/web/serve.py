"""Serve a Dash app on a local port: `--port 0` picks a free one, a busy port is a clear error.

`reserve(host, port)` takes the port before anything else happens (the CLI calls it before it
loads the data: a busy port is reported at once, not after minutes of loading a large manifest);
`serve(app, ..., sock=that socket)` then listens on it. This module imports neither dash nor
werkzeug at import time, so the check costs the CLI nothing but a socket; `import_dash()` then
imports Dash for a server (without the notebook support it would load IPython for).
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from typing import TYPE_CHECKING, TextIO

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
    """The server could not start (busy port, bad host); the message names the fix."""


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
    its own duplicate of the descriptor), its connections answered by :func:`_json_error_handler`."""
    from werkzeug.serving import make_server

    try:
        return make_server(host, sock.getsockname()[1], app.server, threaded=True, fd=sock.fileno(),
                           request_handler=_json_error_handler())
    finally:
        sock.close()


#: Longest request line Python's HTTP server reads (http.server): a longer URL is refused before
#: the app sees it.
MAX_REQUEST_LINE_BYTES = 65_536
#: Seconds a connection may keep the server waiting on its socket (a request not yet sent whole, an
#: idle keep-alive connection, a client that stops reading an answer): each holds a thread, and a
#: thousand half-sent requests held a thousand threads for good. A browser opens a new connection
#: when it needs one; a paused player asks for the rest of its file again.
IDLE_CONNECTION_S = 10.0


def _json_error_handler() -> type:
    """werkzeug's request handler, answering a URL too long to read (414) in JSON like every other
    refusal: a legal filter of 10,000 non-ASCII characters takes up to 120 KB in a URL, and the
    page got an HTML error instead of the reason."""
    import json

    from werkzeug.serving import WSGIRequestHandler

    class JsonErrors(WSGIRequestHandler):
        timeout = IDLE_CONNECTION_S  # socketserver sets it on each connection

        def log_error(self, format: str, *args: object) -> None:
            if not format.startswith("Request timed out"):  # an idle connection closed: routine, not an error
                super().log_error(format, *args)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            if code != 414:
                super().send_error(code, message, explain)
                return
            body = json.dumps({"error": f"the URL is longer than {MAX_REQUEST_LINE_BYTES:,} bytes, which the "
                                        "server cannot read: shorten the filter (in a URL each non-ASCII "
                                        "character takes 6 to 12 bytes)"}).encode()
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

    return JsonErrors


def _bound(host: str, port: int, *, listen: bool) -> socket.socket:
    try:
        return bind(host, port, listen=listen)
    except OSError as e:
        raise _serve_error(e, host, port) from None


def _listen(sock: socket.socket, host: str, port: int) -> None:
    # Two processes may both hold a reserved (bound, SO_REUSEADDR) port: the second listen fails.
    try:
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise _serve_error(e, host, port) from None


def _serve_error(e: OSError, host: str, port: int) -> ServeError:
    if isinstance(e, socket.gaierror):  # an unknown host name (a subclass of OSError)
        return ServeError(f"cannot listen on {host!r}: {e.strerror or e}; pass --host 127.0.0.1 or 0.0.0.0")
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
        return ServeError(f"{host} is not an address of this machine; pass --host 127.0.0.1 or 0.0.0.0")
    return ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}; check --host and --port")
