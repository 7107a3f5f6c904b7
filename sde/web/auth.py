"""HTTP basic auth for every route of an sde server (`--auth USER:PASSWORD` / `SDE_AUTH`).

sde often runs on shared GPU boxes with `--host 0.0.0.0`; anyone who can reach the port could
otherwise read the manifest and play its audio. :func:`install_basic_auth` guards the whole Flask
server with one ``before_request`` hook, so nothing escapes it: Dash pages, ``/_dash-*`` endpoints
(layout, dependencies, callbacks, component bundles), ``/assets``, ``/api`` and ``/audio``.

Basic auth sends the password in clear text on every request: on an untrusted network put sde
behind an HTTPS reverse proxy (or an SSH tunnel) as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from flask import Flask, Response, request

__all__ = ["REALM", "install_basic_auth", "parse_credentials", "check_authorization"]

REALM = "sde"
_HINT = "expected USER:PASSWORD (for example --auth ann:s3cret, or SDE_AUTH=ann:s3cret)"


def parse_credentials(value: str | None) -> tuple[str, str]:
    """Split ``"USER:PASSWORD"`` at its first colon (the password may hold colons).

    Raises ValueError with a message that names the fix for a missing colon, an empty user or
    password, or a user/password that HTTP basic auth cannot carry (control characters).
    """
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f"no colon in the credentials: {_HINT}")
    user, _, password = value.partition(":")
    if not user:
        raise ValueError(f"the user name is empty: {_HINT}")
    if not password:
        raise ValueError(f"the password is empty: {_HINT}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"the credentials contain a control character (newline, tab...): {_HINT}")
    return user, password


def _digest(raw: bytes) -> bytes:
    # Comparing fixed-size digests keeps the comparison constant-time whatever the lengths.
    return hashlib.sha256(raw).digest()


def check_authorization(header: str | None, expected: bytes) -> bool:
    """Whether an ``Authorization`` header carries exactly ``expected`` (b"user:password")."""
    if not header:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(_digest(given), _digest(expected))


CHALLENGE = ("authentication required: this sde server was started with --auth USER:PASSWORD; "
             "send them (curl -u USER:PASSWORD URL)")


def _challenge(path: str) -> Response:
    headers = {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"', "Cache-Control": "no-store"}
    if path.startswith("/api/"):  # the API answers every mistake in JSON, this one too
        return Response(json.dumps({"error": CHALLENGE}), 401, headers, mimetype="application/json")
    return Response(CHALLENGE[0].upper() + CHALLENGE[1:] + ".\n", 401, headers, mimetype="text/plain")


def install_basic_auth(server: Flask, credentials: str) -> None:
    """Require HTTP basic auth with ``credentials`` ("USER:PASSWORD") on every route of ``server``.

    Registered as the first ``before_request`` hook, so it runs before any view (and before any
    other hook that might read the dataset). Wrong or missing credentials get 401 with
    ``WWW-Authenticate: Basic realm="sde"``. Raises ValueError for malformed credentials.
    """
    user, password = parse_credentials(credentials)
    expected = f"{user}:{password}".encode("utf-8")

    def _require_auth() -> Response | None:
        if check_authorization(request.headers.get("Authorization"), expected):
            return None
        return _challenge(request.path)

    hooks = server.before_request_funcs.setdefault(None, [])
    hooks.insert(0, _require_auth)
