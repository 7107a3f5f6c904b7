"""Object stores over a faulty link: the real CLI against moto's S3 server behind a proxy that
resets connections mid-response or never answers (tests.store_faults_kit). A broken read is read
again once; a tar shard that still cannot be read is one note per line, the rest of the dataset
loads; a store that does not answer costs SDE_REMOTE_TIMEOUT twice, not once per phase of a load;
Ctrl-C and SIGTERM end a load whose tar read is stalled at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("s3fs", reason="reading s3:// needs s3fs (pip install s3fs)")
pytest.importorskip("moto.server", reason="the local S3 server is moto's: pip install 'moto[server]'")

from tests.store_faults_kit import FaultyLink  # noqa: E402
from tests.s3_kit import client, storage  # noqa: E402
from tests.sources.tar_kit import PATTERN, make_tarred  # noqa: E402
from tests.test_s3 import ROOT, sde  # noqa: E402

BUCKET = "sde-faulty-link"
MANIFEST = "big/m.json"
# lines of the plain manifest: ~150 KB, so that a reset mid-body leaves most of it unread
LINES = 1500


@pytest.fixture(scope="module")
def uploaded(moto_endpoint, tmp_path_factory):
    """The tarred dataset (two shards) under s3://BUCKET/tarred/, and a plain manifest of LINES lines."""
    tarred = make_tarred(tmp_path_factory.mktemp("faulty-tarred"))
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    for name in ("audio_0.tar", "audio_1.tar", tarred.manifest.name):
        s3.upload_file(str(tarred.folder / name), BUCKET, f"tarred/{name}")
    rows = [{"audio_filepath": f"audio/{k}.wav", "duration": 1.0 + k % 7, "text": f"line number {k} of the set"}
            for k in range(LINES)]
    s3.put_object(Bucket=BUCKET, Key=MANIFEST, Body="".join(json.dumps(r) + "\n" for r in rows).encode())
    return tarred


@pytest.fixture
def link(moto_endpoint):
    with FaultyLink(moto_endpoint) as proxy:
        yield proxy


def _env(tmp_path: Path, timeout_s: float) -> dict:
    return {**os.environ, "SDE_REMOTE_TIMEOUT": f"{timeout_s:g}", "SDE_CACHE_DIR": str(tmp_path / "cache")}


def _tarred_stats(uploaded, link: FaultyLink, tmp_path: Path, timeout_s: float = 2) -> subprocess.CompletedProcess:
    return sde("stats", f"s3://{BUCKET}/tarred/{uploaded.manifest.name}", "--tarred-audio",
               f"s3://{BUCKET}/tarred/{PATTERN}", "--storage-options", storage(link.endpoint), "--json",
               "--no-cache", env=_env(tmp_path, timeout_s))


def _indexed_tars(tmp_path: Path) -> set[str]:
    """The tars whose member index sde keeps (sde.sources.tar_index's cache)."""
    return {json.loads(p.read_text())["tar"] for p in (tmp_path / "cache" / "tar-index").glob("*.json")}


def _shard_lines(uploaded, shard: int) -> int:
    return sum(1 for line in uploaded.lines if line["shard_id"] == shard)


@pytest.mark.parametrize("fault", ["reset", "stall"])
def test_a_tar_that_cannot_be_read_while_indexed_is_a_note_and_the_rest_loads(uploaded, link, tmp_path, fault):
    tar = f"s3://{BUCKET}/tarred/audio_1.tar"
    if fault == "reset":  # every read of the tar's bytes breaks, the second attempt too
        link.reset(r"^GET /sde-faulty-link/tarred/audio_1\.tar", after=100)
    else:
        link.stall(r"^GET /sde-faulty-link/tarred/audio_1\.tar")
    r = _tarred_stats(uploaded, link, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert json.loads(r.stdout)["utterances"] == len(uploaded.lines)
    notes = [line for line in r.stderr.splitlines() if tar in line]
    # one note per line of the shard, each naming the tar and the fix
    assert len([n for n in notes if "shard 1:" in n]) == _shard_lines(uploaded, 1), r.stderr
    fix = "try again" if fault == "reset" else "SDE_REMOTE_TIMEOUT"
    assert all(fix in n for n in notes if "shard 1:" in n), r.stderr
    assert f"s3://{BUCKET}/tarred/audio_0.tar" not in r.stderr  # the other shard's members all found
    assert link.seen(fault, "audio_1.tar") == 2  # its two attempts
    assert _indexed_tars(tmp_path) == {f"s3://{BUCKET}/tarred/audio_0.tar"}  # no index kept of the unread one


def test_a_reset_while_indexing_a_tar_is_read_again(uploaded, link, tmp_path):
    link.reset(r"^GET /sde-faulty-link/tarred/audio_1\.tar", after=100, times=1)
    r = _tarred_stats(uploaded, link, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "audio_1.tar" not in r.stderr
    assert json.loads(r.stdout)["utterances"] == len(uploaded.lines)
    assert link.seen("reset", "audio_1.tar") == 1


def _manifest_stats(link: FaultyLink, tmp_path: Path, timeout_s: float = 2,
                    cache: bool = False) -> subprocess.CompletedProcess:
    return sde("stats", f"s3://{BUCKET}/{MANIFEST}", "--storage-options", storage(link.endpoint), "--json",
               *([] if cache else ["--no-cache"]), env=_env(tmp_path, timeout_s))


def test_a_manifest_read_reset_mid_body_is_read_again(uploaded, link, tmp_path):
    link.reset(r"^GET /sde-faulty-link/big/m\.json", after=20_000, times=1)
    r = _manifest_stats(link, tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["utterances"] == LINES
    assert link.seen("reset", r"m\.json") == 1


def test_a_manifest_read_reset_twice_names_the_url_and_the_fix(uploaded, link, tmp_path):
    link.reset(r"^GET /sde-faulty-link/big/m\.json", after=20_000)
    r = _manifest_stats(link, tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    error = r.stderr.strip().splitlines()[-1]
    assert f"s3://{BUCKET}/{MANIFEST}" in error and "try again" in error, r.stderr
    assert link.seen("reset", r"m\.json") == 2


def test_a_store_that_does_not_answer_is_asked_twice_not_once_per_phase(uploaded, link, tmp_path):
    link.stall("")
    r = _manifest_stats(link, tmp_path, timeout_s=1, cache=True)  # the cache key is one more phase
    assert r.returncode == 1
    assert f"s3://{BUCKET}/{MANIFEST}" in r.stderr and "did not answer within 1 s" in r.stderr, r.stderr
    # the cache key, the choice of parts and the read each asked twice (6 waits) before
    assert link.seen("stall") == 2, link.requests


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_while_a_tar_read_stalls_ends_sde_at_once(uploaded, link, tmp_path, sig, code):
    link.stall(r"^GET /sde-faulty-link/tarred/audio_1\.tar")
    timeout_s = 60  # the stalled read would hold the exit for up to two of these
    process = subprocess.Popen(
        [sys.executable, "-m", "sde.cli", "stats", f"s3://{BUCKET}/tarred/{uploaded.manifest.name}", "--tarred-audio",
         f"s3://{BUCKET}/tarred/{PATTERN}", "--storage-options", storage(link.endpoint), "--no-cache"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**_env(tmp_path, timeout_s), "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while not link.seen("stall", "audio_1.tar"):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "sde never read the tar"
            time.sleep(0.05)
        process.send_signal(sig)
        try:  # a generous bound, far below the 2 x 60 s the stalled read would take
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("sde still running 30 s after the signal: it waits for the stalled read")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"s3://{BUCKET}/tarred/audio_1.tar" not in _indexed_tars(tmp_path)
    assert not list((tmp_path / "cache").rglob(".tmp-*"))
