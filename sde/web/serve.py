"""Serve a Dash app on a local port: `--port 0` picks a free one, a busy port is a clear error."""

from __future__ import annotations

import errno
import logging
import socket
import sys
from typing import TextIO

import dash
from werkzeug.serving import make_server


class ServeError(Exception):
    """The server could not start (busy port, bad host); the message names the fix."""


def display_url(host: str, port: int) -> str:
    """The URL a user can open: wildcard binds are shown as 127.0.0.1, IPv6 hosts in brackets."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: the OS picks a free one)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    # IPv4 first unless an IPv6 address was asked for ("localhost" may resolve to ::1 first).
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(app: dash.Dash, host: str = "127.0.0.1", port: int = 8050, debug: bool = False,
          *, out: TextIO | None = None) -> None:
    """Serve `app` until interrupted (Ctrl-C returns normally).

    Binds first and prints `sde: serving on http://HOST:PORT/` only once the socket listens, so a
    caller that parses the line (tests, scripts) can connect at once. Port 0 lets the OS choose.
    """
    out = out or sys.stdout
    if debug:
        app.enable_dev_tools(debug=True, dev_tools_hot_reload=False)
    else:
        # One log line per request drowns the terminal; errors still show.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        sock = bind(host, port)
    except socket.gaierror as e:  # an unknown host name (a subclass of OSError: caught first)
        raise ServeError(f"cannot listen on {host!r}: {e.strerror or e}; pass --host 127.0.0.1 or 0.0.0.0") from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ServeError(
                f"port {port} on {host} is already in use (another sde or server is running there); "
                "pass --port with another number, or --port 0 to pick a free one"
            ) from None
        if e.errno == errno.EACCES:
            raise ServeError(
                f"no permission to listen on port {port}; ports below 1024 need root: pass --port 8050 "
                "or --port 0"
            ) from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ServeError(f"{host} is not an address of this machine; pass --host 127.0.0.1 or 0.0.0.0") from None
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}; check --host and --port") from None
    # werkzeug binds by itself and calls sys.exit(1) on a busy port; handing it our bound socket
    # keeps the error ours (a message that names the fix) and makes port 0 race-free.
    actual_port = sock.getsockname()[1]
    try:
        server = make_server(host, actual_port, app.server, threaded=True, fd=sock.fileno())
    finally:
        sock.close()  # werkzeug works on its own duplicate of the descriptor
    url = display_url(host, actual_port)
    print(f"sde: serving on {url}  (Ctrl-C to stop)", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
