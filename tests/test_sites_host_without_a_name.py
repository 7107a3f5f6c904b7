"""A Host header whose name has an empty part (".localhost", "a..localhost") or a part over 63
characters: werkzeug cannot route it (it IDNA-encodes the name) and answered its own HTML 400. sde
refuses it first, as any other Host it does not serve: a 403 with sde's JSON error naming the Host,
on a server bound to loopback and on one that answers any Host. Through sde.web.serve's real server
with raw Host headers."""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from tests.server_kit import served_port

NAMELESS = [".localhost", ".localhost:{port}", "a..localhost", "sde." + "x" * 64 + ".localhost", "..", "a..b:{port}"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path: Path = tmp_path_factory.mktemp("nameless") / "m.json"
    path.write_text("".join(json.dumps({"audio_filepath": f"c{i}.wav", "duration": 1.0 + i, "text": "a b"}) + "\n"
                            for i in range(3)))
    return build_dataset(path)


@contextlib.contextmanager
def real_server(dataset, bind_to: str, **config) -> Iterator[int]:
    with served_port(create_app(dataset, AppConfig(audio_routes=False, **config)), bind_to) as port:
        yield port


def get(port: int, host: str, path: str = "/api/summary") -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        answer = conn.getresponse()
        return answer.status, answer.getheader("Content-Type") or "", answer.read()
    finally:
        conn.close()


@pytest.mark.parametrize("bind_to, config", [("127.0.0.1", {}), ("127.0.0.1", {"allowed_hosts": ("*",)}),
                                             ("0.0.0.0", {})], ids=["loopback", "allow-any", "every-address"])
@pytest.mark.parametrize("path", ["/api/summary", "/samples"])
def test_a_host_with_an_empty_or_long_part_gets_sdes_refusal(dataset, bind_to, config, path):
    with real_server(dataset, bind_to, **config) as port:
        for template in NAMELESS:
            host = template.format(port=port)
            status, kind, body = get(port, host, path)
            assert (status, kind) == (403, "application/json"), (host, status, body[:200])
            error = json.loads(body)["error"]
            assert f"refused a request for the host {host!r}" in error
            assert "http://127.0.0.1:PORT/" in error
            assert "--allow-host" not in error  # it could not make werkzeug route that name
        # the names it serves still get their answer
        assert get(port, f"sde.localhost:{port}", path)[0] == 200
        assert get(port, f"127.0.0.1:{port}", path)[0] == 200
