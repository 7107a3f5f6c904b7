"""Refusing requests that other web sites make the user's browser send.

Two attacks reach a server on 127.0.0.1 through the browser of the person using it:

* Cross-site writes (CSRF): any page the user visits can POST to http://127.0.0.1:8050/ (an
  auto-submitting form, ``fetch(..., {mode: "no-cors"})``): the browser sends it, with saved basic
  auth credentials, and the page never needs to read the answer to store a review. A
  state-changing request (any method but GET, HEAD, OPTIONS) whose ``Sec-Fetch-Site`` says another
  site sent it is refused; from a browser that does not send that header, one whose ``Origin`` names
  another host than the request's own. ``Sec-Fetch-Site: same-origin`` is trusted over ``Origin``:
  behind a reverse proxy that rewrites ``Host``, the two name different hosts for the server's own
  pages. Programs (curl, Python) send neither header and are served as before.
* DNS rebinding: a page on attacker.test whose name later resolves to 127.0.0.1 is, to the
  browser, the same origin as the server, and reads every answer. A server bound to a loopback
  address answers only requests whose ``Host`` is localhost, a ``*.localhost`` name, a loopback IP
  or a name the user allowed (``--allow-host``); bound to another or every address, the user has
  exposed it on purpose (``--auth`` is the guard there) and any Host is answered.

Both refusals are 403 with ``{"error"}`` naming the value and the fix.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, Response, request

__all__ = ["ANY_HOST", "allowed_names", "host_name", "install", "is_host_name", "is_loopback_name", "refusal"]

ANY_HOST = "*"  # in allowed_hosts: answer any Host (the user accepts DNS rebinding, e.g. behind a proxy)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OTHER_SITES = frozenset({"cross-site", "same-site"})  # Sec-Fetch-Site values of a request another site's page made
SAME_SITE_OR_USER = frozenset({"same-origin", "none"})  # ... of this origin's page, or of the user (address bar)
DEFAULT_PORTS = {"http": "80", "https": "443"}


def host_name(value: str) -> str | None:
    """The lower-case name or IP of a ``Host`` header ("[::1]:8050" → "::1", "LocalHost.:80" →
    "localhost"), or None when it is not one (an unbracketed IPv6, a port that is not a number)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, port = value[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and port[1:].isdigit())):
            return None
        try:  # one spelling of each address: [0:0:0:0:0:0:0:1] is ::1
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            return name
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None
    return name[:-1] if name.endswith(".") else name


def allowed_names(values: Iterable[str]) -> frozenset[str]:
    """The names of ``--allow-host`` values (a name, an IP, either with a port; ``"*"``; blanks left
    out), or ValueError naming a value that is none of them."""
    names = set()
    for value in values:
        value = value.strip()
        if not value:
            continue
        if value == ANY_HOST:
            names.add(ANY_HOST)
            continue
        try:  # a bare IPv6 address, which a Host header would bracket
            names.add(str(ipaddress.IPv6Address(value.strip("[]"))))
            continue
        except ValueError:
            pass
        name = host_name(value)
        if not name or any(c.isspace() or c in "/@?#*" for c in name):
            raise ValueError(f"--allow-host {value!r} is not a host name: give the name or IP the browser "
                             "connects to, such as sde.example.org or 10.0.0.5 (a port is ignored), or '*' for any")
        names.add(name)
    return frozenset(names)


def is_loopback_name(name: str) -> bool:
    """Whether ``name`` (from :func:`host_name`, or a bound address) can only mean this machine:
    localhost, a ``*.localhost`` name (RFC 6761), an IP of 127.0.0.0/8 or ::1 (also IPv4-mapped)."""
    if name == "localhost" or (name.endswith(".localhost") and is_host_name(name)):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_host_name(name: str) -> bool:
    """Whether werkzeug can route a request for ``name``: it IDNA-encodes the Host before any view
    runs, and answers its own HTML 400 for a name with an empty part (".localhost", "a..b") or a
    part over 63 characters."""
    try:
        name.encode("idna")
    except UnicodeError:
        return False
    return True


def refusal(text: str) -> Response:
    return Response(json.dumps({"error": text}), 403, mimetype="application/json",
                    headers={"Cache-Control": "no-store"})


def _origin_authority(origin: str) -> tuple[str | None, str | None]:
    """(host[:port] as a Host header would carry it, host name) of an ``Origin`` header; (None,
    None) for "null" (a sandboxed page, a file:// page) or anything else that names no host."""
    try:
        parts = urlsplit(origin.strip().lower())
        name, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number, or out of range
        return None, None
    if parts.scheme not in DEFAULT_PORTS or not name:
        return None, None
    shown = f"[{name}]" if ":" in name else name
    if port is not None and str(port) != DEFAULT_PORTS[parts.scheme]:
        shown += f":{port}"
    return shown, name


def _own_authority(host: str) -> str:
    """The request's ``Host``, lower-case, without the default port of the scheme it came in with."""
    host = host.strip().lower()
    default = ":" + DEFAULT_PORTS.get(request.scheme, "")
    return host[:-len(default)] if host.endswith(default) and not host.endswith("]") else host


def _cross_site_problem(allowed: frozenset[str]) -> str | None:
    """Why this state-changing request came from another web site's page (None when it did not)."""
    method = request.method
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    fix = ("open the page from this server itself, or send the request from a program (curl, Python: "
           "they send no Origin)")
    if fetch_site in OTHER_SITES:
        return (f"refused a {method} to {request.path} that a page of another web site sent "
                f"(Sec-Fetch-Site: {fetch_site}): another site may not change what sde stores; {fix}")
    if fetch_site in SAME_SITE_OR_USER:
        # The browser itself says the page is of this origin (a page cannot forge the header). Its
        # Origin may still name another host: a reverse proxy in front of sde (nginx's default
        # proxy_pass) hands sde its own Host, 127.0.0.1:PORT, and every Dash callback was refused.
        return None
    origin = request.headers.get("Origin")  # browsers that do not send Sec-Fetch-Site
    if origin is None:
        return None
    own = _own_authority(request.headers.get("Host", ""))
    authority, name = _origin_authority(origin)
    # The scheme is left out: behind an HTTPS proxy that keeps the Host, the browser's origin is
    # https:// while this server sees http://; another scheme on the same host and port is this server.
    if authority is not None and (authority == own or name in allowed):
        return None
    return (f"refused a {method} to {request.path} sent by the web page {origin!r}, which is not this server "
            f"({own or 'no Host'}): another site may not change what sde stores; {fix}"
            + (f"; if {name} is this server's own name (a proxy in front of it), start sde with --allow-host {name}"
               if name else ""))


def _host_problem(bound: str, allowed: frozenset[str]) -> str | None:
    """Why this request's ``Host`` is not one a server bound to loopback answers (None when it is)."""
    host = request.environ.get("HTTP_HOST", "")
    if not host.strip():  # no browser sends a request without Host: nothing to rebind
        return None
    name = host_name(host)
    if name is not None and (is_loopback_name(name) or name in allowed):
        return None
    said = (f"refused a request for the host {host!r}: this server listens on {bound} (this machine only) "
            "and answers only localhost and loopback addresses, so that a web page whose name is made to "
            "point at 127.0.0.1 (DNS rebinding) cannot read it; open it as http://127.0.0.1:PORT/")
    if name is not None and not is_host_name(name):  # --allow-host could not make werkzeug route it
        return said + " (a part of that name between its dots is empty or longer than 63 characters)"
    return said + (f", or, if you reach sde by that name (a proxy, an /etc/hosts alias), start it with "
                   f"--allow-host {name or 'NAME'}")


def _unroutable_host_problem() -> str | None:
    """Why this request's ``Host`` is no name werkzeug can route, on a server that answers any Host
    (None when it is one, or an IP)."""
    host = request.environ.get("HTTP_HOST", "")
    name = host_name(host) if host.strip() else None
    if name is None or ":" in name or is_host_name(name):  # ":": an IPv6 address, which is not IDNA-encoded
        return None
    return (f"refused a request for the host {host!r}: it is no host name (a part between its dots is empty "
            "or longer than 63 characters); open sde by its address or a name of this machine, such as "
            "http://127.0.0.1:PORT/")


def install(server: Flask, allowed_hosts: Iterable[str] = ()) -> None:
    """Refuse, with 403, requests of ``server`` that another web site's page sent (every route,
    Dash's included): state changes from another origin, and, on a server bound to a loopback
    address, requests for a Host that is not this machine nor in ``allowed_hosts`` (``"*"``: any;
    ValueError for a value that is no host name, see :func:`allowed_names`).

    Registered as the first ``before_request`` hook (call it after install_basic_auth): a
    refused request gets no password prompt and reaches no view."""
    allowed = allowed_names(allowed_hosts)
    names = allowed - {ANY_HOST}

    def _refuse_other_sites() -> Response | None:
        # werkzeug's server puts the address its socket is bound to in SERVER_NAME ("0.0.0.0", "::1").
        bound = request.environ.get("SERVER_NAME", "")
        if ANY_HOST not in allowed and is_loopback_name(bound.strip("[]").lower()):
            problem = _host_problem(bound, names)
            if problem is not None:
                return refusal(problem)
        else:
            problem = _unroutable_host_problem()
            if problem is not None:
                return refusal(problem)
        if request.method not in SAFE_METHODS:
            problem = _cross_site_problem(names)
            if problem is not None:
                return refusal(problem)
        return None

    server.before_request_funcs.setdefault(None, []).insert(0, _refuse_other_sites)
