"""The serving commands' guards as the command line gives them: --allow-host / SDE_ALLOWED_HOSTS
names the extra Host names a loopback-bound server answers (sde.web.sites refuses the others), and
an SDE_AUTH that is set but empty is refused instead of serving with no password."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.browser_kit import sde_server


def _status(url: str, host: str) -> int:
    request = urllib.request.Request(url + "/api/summary", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _sde(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


@pytest.mark.parametrize("how", ["option", "environment"])
def test_allowed_names_are_answered_and_others_refused(how):
    args, env = (("--allow-host", "proxy.example", "--allow-host", "alias.example:8080"), {}) if how == "option" \
        else ((), {"SDE_ALLOWED_HOSTS": "proxy.example, alias.example"})
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with sde_server("demo", *args) as url:
            assert _status(url, "proxy.example") == 200
            assert _status(url, "alias.example:1234") == 200  # any port: forwarding changes it
            assert _status(url, "localhost") == 200
            assert _status(url, "other.example") == 403


@pytest.mark.parametrize("args, env, says", [
    (["--allow-host", "http://proxy/"], {}, "'http://proxy/' is not a host name"),
    ([], {"SDE_ALLOWED_HOSTS": "ok.example,bad/name"}, "'bad/name' is not a host name"),
    ([], {"SDE_AUTH": ""}, "SDE_AUTH is set but empty"),
    ([], {"SDE_AUTH": "  "}, "SDE_AUTH is set but empty"),
], ids=["a URL", "a path in the variable", "SDE_AUTH empty", "SDE_AUTH blank"])
def test_a_bad_guard_is_a_usage_error_before_anything_is_read(args, env, says):
    r = _sde("demo", "--port", "0", "--no-cache", *args, env=env)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr
    assert "reading" not in r.stderr  # refused before the demo dataset was read
