"""NeMo tarred audio end to end: the real CLI (`sde stats … --tarred-audio …`), the HTTP API of a
real server (/audio/ID.wav, /api/utterances/ID/signal) and the inspector in Chromium, on shards
written with tarfile the way NeMo writes them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from sde.web.state import UTT_FIELDS
from tests.browser_kit import ROOT, Watch, sde_server, shot
from tests.sources.tar_kit import make_tarred


@pytest.fixture(scope="module")
def tarred(tmp_path_factory):
    return make_tarred(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def server(tarred):
    with sde_server(str(tarred.manifest), "--tarred-audio", tarred.pattern) as url:
        yield url


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_cli_stats_of_a_tarred_manifest(tarred):
    r = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(tarred.manifest), "--tarred-audio",
                        tarred.pattern, "--json", "--no-cache"], capture_output=True, text=True, timeout=120,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["utterances"] == len(tarred.lines)
    assert summary["hours"] * 3600 == pytest.approx(sum(o["duration"] for o in tarred.originals), abs=0.01)


@pytest.mark.parametrize("line", [0, 2, 3, 6])
def test_audio_route_serves_the_members_segment(tarred, server, line):
    status, body = _get(f"{server}/audio/{line}.wav")
    assert status == 200
    samples, rate = sf.read(io.BytesIO(body), dtype="float32")
    assert rate == sf.info(tarred.originals[line]["audio_filepath"]).samplerate
    assert np.allclose(samples, tarred.expected(line), atol=1e-3)


@pytest.mark.parametrize("line", [1, 3, 5])
def test_signal_route_of_a_member(tarred, server, line):
    status, body = _get(f"{server}/api/utterances/{line}/signal")
    assert status == 200
    payload = json.loads(body)
    assert payload["duration"] == pytest.approx(tarred.originals[line]["duration"], abs=2e-3)
    assert payload["figure"]["data"]


def test_the_api_row_of_a_member_names_its_tar_and_member(tarred, server):
    status, body = _get(f"{server}/api/utterances/0")
    assert status == 200
    row = json.loads(body)
    assert row["audio_path"] == f"{tarred.folder}/audio_0.tar:{tarred.lines[0]['audio_filepath']}"
    assert row["audio_exists"] is True


def test_an_unknown_id_is_still_404(server):
    assert _get(f"{server}/audio/999.wav")[0] == 404


def test_inspector_plays_and_draws_a_tar_member(browser, server, tarred):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    try:
        watch = Watch(page, server)
        page.goto(f"{server}/utterance/3")
        page.wait_for_selector("#utt-signal .js-plotly-plot .main-svg")
        assert page.get_attribute("#utt-audio", "src") == "/audio/3.ogg"
        page.wait_for_function("document.querySelector('#utt-audio').readyState >= 1")
        seconds = page.locator("#utt-audio").evaluate("e => e.duration")
        assert seconds == pytest.approx(tarred.originals[3]["duration"], abs=0.05)
        # the Fields card says where the audio is: the tar and the member, not a joined path
        where = f"{tarred.folder}/audio_{tarred.lines[3]['shard_id']}.tar:{tarred.lines[3]['audio_filepath']}"
        assert where in page.inner_text(f"#{UTT_FIELDS}")
        shot(page, "inspector-tar-member")
        watch.check()
    finally:
        ctx.close()
