"""DNS rebinding (sde/web/sites.py): a server bound to a loopback address answers only requests
whose Host is this machine (localhost, *.localhost, a loopback IP, any port) or a name in
AppConfig.allowed_hosts (`--allow-host`; "*" any); any other Host is a 403 naming it and the fix.
A server bound to every address answers any Host. Through real servers (sde.web.serve and the
`sde` CLI) with raw Host headers, and in Chromium with attacker.test resolving to 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sde.dataset import build_dataset
from sde.web.app import AppConfig, create_app
from tests.browser_kit import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, sde_server
from tests.server_kit import served_port

ROWS = [{"audio_filepath": f"clip{i}.wav", "duration": 1.0 + i, "text": f"secret words {i}"} for i in range(4)]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rebind") / "m.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture(scope="module")
def dataset(manifest):
    return build_dataset(manifest)


@contextlib.contextmanager
def real_server(dataset, bind_to: str, **config) -> Iterator[int]:
    """The port of sde.web.serve's server of an app with ``config``, bound to ``bind_to``."""
    with served_port(create_app(dataset, AppConfig(audio_routes=False, **config)), bind_to) as port:
        yield port


def get(port: int, host: str, path: str = "/api/summary", connect: str = "127.0.0.1") -> tuple[int, bytes]:
    """(status, body) of a GET to ``connect``:``port`` whose Host header is ``host``."""
    conn = http.client.HTTPConnection(connect, port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


LOCAL_HOSTS = ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST.:{port}", "sde.localhost:{port}",
               "127.0.0.2:{port}", "[::1]:{port}", "[::ffff:127.0.0.1]:{port}", "localhost:9999", "127.0.0.1"]


@pytest.mark.parametrize("host", LOCAL_HOSTS)
def test_a_loopback_server_answers_this_machines_names_on_any_port(dataset, host):
    with real_server(dataset, "127.0.0.1") as port:
        status, body = get(port, host.format(port=port))
        assert status == 200, body
        assert json.loads(body)["utterances"] == len(ROWS)


@pytest.mark.parametrize("host, shown", [
    ("attacker.test:{port}", "attacker.test"),
    ("ATTACKER.test", "attacker.test"),
    ("10.0.0.5:{port}", "10.0.0.5"),
    ("localhost.attacker.test", "localhost.attacker.test"),
    ("127.0.0.1.attacker.test:{port}", "127.0.0.1.attacker.test"),
    ("[::2]:{port}", "::2"),
    ("localhost:abc", "NAME"),
])
@pytest.mark.parametrize("path", ["/api/summary", "/api/utterances.jsonl", "/", "/_dash-layout"])
def test_a_loopback_server_refuses_other_host_names_naming_them_and_the_fix(dataset, host, shown, path):
    with real_server(dataset, "127.0.0.1") as port:
        host = host.format(port=port)
        status, body = get(port, host, path)
        assert status == 403, body[:300]
        error = json.loads(body)["error"]
        assert repr(host) in error and f"--allow-host {shown}" in error and "DNS rebinding" in error
        assert b"secret words" not in body


def test_allowed_hosts_are_answered_and_only_they(dataset):
    with real_server(dataset, "127.0.0.1", allowed_hosts=("sde.example.org", "Proxy.Example:8443")) as port:
        assert get(port, "sde.example.org")[0] == 200
        assert get(port, f"SDE.example.org:{port}")[0] == 200
        assert get(port, "proxy.example")[0] == 200
        assert get(port, "example.org")[0] == 403
        assert get(port, "attacker.test")[0] == 403


def test_an_allowed_ipv6_address_is_answered_however_the_host_spells_it(dataset):
    with real_server(dataset, "127.0.0.1", allowed_hosts=("2001:db8::5",)) as port:
        assert get(port, f"[2001:0db8:0:0::5]:{port}")[0] == 200
        assert get(port, "[2001:db8::6]")[0] == 403


@pytest.mark.parametrize("value", ["a b", "localhost:abc", "http://x/", "*.example.org"])
def test_an_allowed_host_that_is_no_host_name_is_refused_naming_it(dataset, value):
    with pytest.raises(ValueError, match=f"--allow-host {re.escape(repr(value))} is not a host name"):
        create_app(dataset, AppConfig(audio_routes=False, allowed_hosts=(value,)))


def test_an_allowed_star_answers_any_host(dataset):
    with real_server(dataset, "127.0.0.1", allowed_hosts=("*",)) as port:
        assert get(port, "attacker.test")[0] == 200


def test_a_server_bound_to_every_address_answers_any_host(dataset):
    with real_server(dataset, "0.0.0.0") as port:
        status, body = get(port, "gpu-box.lab.example:8050")
        assert status == 200, body


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_a_server_bound_to_ipv6_loopback_refuses_other_host_names(dataset):
    with real_server(dataset, "::1") as port:
        assert get(port, f"[::1]:{port}", connect="::1")[0] == 200
        assert get(port, "attacker.test", connect="::1")[0] == 403


def test_the_cli_server_refuses_a_rebound_name_and_serves_its_own(manifest):
    with sde_server(str(manifest)) as url:
        port = int(url.rsplit(":", 1)[1])
        assert get(port, f"attacker.test:{port}", "/api/utterances.jsonl")[0] == 403
        assert get(port, f"localhost:{port}", "/api/utterances.jsonl")[0] == 200


@pytest.mark.browser
def test_in_chromium_a_page_rebound_to_127_0_0_1_reads_nothing(manifest):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():  # pragma: no cover
        pytest.skip(f"no Chromium at {CHROMIUM} (set SDE_CHROMIUM)")
    with sde_server(str(manifest)) as url, sync_api.sync_playwright() as p:
        port = int(url.rsplit(":", 1)[1])
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP attacker.test 127.0.0.1"])
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            answer = page.goto(f"http://attacker.test:{port}/nope")
            assert answer is not None and answer.status == 403
            status, text = page.evaluate(
                "fetch('/api/utterances.jsonl').then(r => r.text().then(t => [r.status, t]))")
            assert status == 403 and "--allow-host attacker.test" in text
            assert "secret words" not in text
            page.goto(f"{url}/api/summary")  # the server's own address still works
            assert json.loads(page.inner_text("body"))["utterances"] == len(ROWS)
        finally:
            browser.close()
