"""Tarred audio and loose audio files in an S3 bucket (a real S3-compatible server: moto's server
mode on 127.0.0.1, started here): the CLI, a real sde server's /audio and signal routes, header
durations read with byte ranges, and failures (access denied, a store that does not answer) as
one clear message each, without a hang."""

from __future__ import annotations

import io
import json
import socket
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("s3fs", reason="reading s3:// needs s3fs (pip install s3fs)")
pytest.importorskip("moto.server", reason="the local S3 server is moto's: pip install 'moto[server]'")

from sde.audio import AudioError, file_info, read_segment  # noqa: E402
from sde.sources import remote  # noqa: E402
from sde.sources.members import TarShards, check_tar_members  # noqa: E402
from tests.browser_kit import sde_server  # noqa: E402
from tests.sources.tar_kit import PATTERN, make_tarred  # noqa: E402
from tests.s3_kit import client, start_moto, stop, storage  # noqa: E402
from tests.test_s3 import sde  # noqa: E402

BUCKET = "sde-tarred"


@pytest.fixture(scope="module")
def uploaded(moto_endpoint, tmp_path_factory):
    """The tarred dataset under s3://BUCKET/tarred/, and a plain manifest with loose audio files
    (one line without a duration) under s3://BUCKET/loose/."""
    tarred = make_tarred(tmp_path_factory.mktemp("s3tarred"))
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    for name in ("audio_0.tar", "audio_1.tar", tarred.manifest.name):
        s3.upload_file(str(tarred.folder / name), BUCKET, f"tarred/{name}")
    loose = []
    for k, original in enumerate(tarred.originals[4:]):
        s3.upload_file(original["audio_filepath"], BUCKET, f"loose/audio/{k}.wav")
        line = {"audio_filepath": f"audio/{k}.wav", "duration": original["duration"], "text": original["text"]}
        loose.append(line if k else {key: v for key, v in line.items() if key != "duration"})
    s3.put_object(Bucket=BUCKET, Key="loose/m.json", Body="".join(json.dumps(x) + "\n" for x in loose).encode())
    return tarred


def _wav(url: str) -> tuple[np.ndarray, int]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return sf.read(io.BytesIO(r.read()), dtype="float32")


def test_cli_stats_of_a_tarred_manifest_and_tars_in_a_bucket(uploaded, moto_endpoint):
    r = sde("stats", f"s3://{BUCKET}/tarred/{uploaded.manifest.name}", "--tarred-audio",
             f"s3://{BUCKET}/tarred/{PATTERN}", "--storage-options", storage(moto_endpoint), "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["utterances"] == len(uploaded.lines)


def test_a_missing_duration_of_a_remote_file_comes_from_its_header(uploaded, moto_endpoint):
    r = sde("stats", f"s3://{BUCKET}/loose/m.json", "--storage-options", storage(moto_endpoint), "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["utterances"] == 3
    assert summary["hours"] * 3600 == pytest.approx(sum(o["duration"] for o in uploaded.originals[4:]), abs=0.01)


@pytest.fixture(scope="module")
def tar_server(uploaded, moto_endpoint):
    with sde_server(f"s3://{BUCKET}/tarred/{uploaded.manifest.name}", "--tarred-audio",
                    f"s3://{BUCKET}/tarred/{PATTERN}", "--storage-options", storage(moto_endpoint)) as url:
        yield url


@pytest.mark.parametrize("line", [0, 3, 5])
def test_server_plays_members_of_tars_in_a_bucket(uploaded, tar_server, line):
    samples, _ = _wav(f"{tar_server}/audio/{line}.wav")
    with urllib.request.urlopen(f"{tar_server}/api/utterances/{line}/signal", timeout=30) as r:
        payload = json.loads(r.read())
    assert np.allclose(samples, uploaded.expected(line), atol=1e-3)
    assert payload["duration"] == pytest.approx(uploaded.originals[line]["duration"], abs=2e-3)


def test_server_plays_loose_audio_files_in_a_bucket(uploaded, moto_endpoint):
    with sde_server(f"s3://{BUCKET}/loose/m.json", "--storage-options", storage(moto_endpoint)) as url:
        for k in range(3):
            samples, _ = _wav(f"{url}/audio/{k}.wav")
            assert np.allclose(samples, uploaded.expected(4 + k), atol=1e-3)


def test_a_remote_file_is_read_with_byte_ranges_not_whole(uploaded, configured):
    url = f"s3://{BUCKET}/loose/audio/2.wav"
    assert file_info(url)["duration"] == pytest.approx(2.0)
    seg = read_segment(url, 1.5, 0.25)
    assert np.allclose(seg.samples, uploaded.expected(6)[24000:28000], atol=1e-4)


def test_check_of_tars_in_a_bucket_finds_every_member(uploaded, configured, tmp_path):
    import pandas as pd

    table = pd.DataFrame(uploaded.lines)
    tars = [f"s3://{BUCKET}/tarred/audio_{k}.tar" for k in range(2)]
    check = check_tar_members(table, tars, cache_dir=tmp_path)
    assert check.problems == [] and check.present.all()


def test_access_denied_to_an_audio_file_names_the_url_and_the_fix(uploaded, tmp_path):
    proc, endpoint = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "2"})
    try:
        s3 = client(endpoint)
        s3.create_bucket(Bucket="locked")
        s3.upload_file(uploaded.originals[4]["audio_filepath"], "locked", "a.wav")
        remote.configure({"endpoint_url": endpoint, "key": "x", "secret": "y"})
        with pytest.raises(AudioError) as e:
            read_segment("s3://locked/a.wav")
    finally:
        remote.configure(None)
        stop(proc)
    assert e.value.reason == "permission"
    assert str(e.value).startswith("s3://locked/a.wav: access denied") and "--storage-options" in str(e.value)


@pytest.mark.parametrize("what", ["audio file", "tar"])
def test_a_store_that_does_not_answer_is_an_error_not_a_hang(monkeypatch, tmp_path, what):
    monkeypatch.setenv("SDE_REMOTE_TIMEOUT", "1")
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        remote.configure({"endpoint_url": endpoint, "key": "x", "secret": "y"})
        start = time.monotonic()
        try:
            if what == "audio file":
                with pytest.raises(AudioError) as e:
                    read_segment("s3://slow/a.wav")
                message = str(e.value)
            else:
                import pandas as pd

                table = pd.DataFrame([{"audio_filepath": "a.wav", "shard_id": 0, "line": 1}])
                check = check_tar_members(table, TarShards(["s3://slow/audio_0.tar"], tmp_path), manifest="m.json")
                assert [(p[0], p[1]) for p in check.problems] == [("m.json", 1)]
                message = check.problems[0][2]
        finally:
            remote.configure(None)
        elapsed = time.monotonic() - start
    assert "did not answer within 1 s" in message and "SDE_REMOTE_TIMEOUT" in message
    assert elapsed < 20
