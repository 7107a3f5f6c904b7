"""Audio in an object store over a faulty link: the real server (CLI subprocess) against moto's S3
server behind a proxy that stalls, resets or fails requests (tests.store_faults_kit). A stalled
file delays its own request only; a store's failure is answered as one (reason, fix) and never
remembered as the file's state; remote audio never checked is "not checked", not "0 missing"."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("s3fs", reason="reading s3:// needs s3fs (pip install s3fs)")
pytest.importorskip("moto.server", reason="the local S3 server is moto's: pip install 'moto[server]'")

from tests.s3_kit import client, storage  # noqa: E402
from tests.store_faults_kit import faulty_link  # noqa: E402
from tests.test_audio_faults import SdeServer, assert_no_traceback  # noqa: E402
from tests.test_s3 import sde  # noqa: E402

BUCKET = "sde-remote-audio-faults"
# id → file: remote ones by name, the last a local file of the same manifest
NAMES = ["ok", "slow", "flaky", "denied"]


def _wav(freq: float) -> bytes:
    t = np.arange(16000) / 16000
    out = io.BytesIO()
    sf.write(out, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return out.getvalue()


@pytest.fixture(scope="module")
def manifest(moto_endpoint, tmp_path_factory) -> Path:
    """A local manifest of the remote WAVs NAMES (ids 0..3) and one local WAV (id 4)."""
    folder = tmp_path_factory.mktemp("remote-audio")
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    rows = []
    for k, name in enumerate(NAMES):
        s3.put_object(Bucket=BUCKET, Key=f"audio/{name}.wav", Body=_wav(200 + 50 * k))
        rows.append({"audio_filepath": f"s3://{BUCKET}/audio/{name}.wav", "duration": 1.0, "text": name})
    (folder / "local.wav").write_bytes(_wav(440))
    rows.append({"audio_filepath": str(folder / "local.wav"), "duration": 1.0, "text": "local"})
    path = folder / "manifest.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _serve(manifest: Path, link, timeout_s: float) -> SdeServer:
    return SdeServer(str(manifest), "--storage-options", storage(link.endpoint),
                     env={"SDE_REMOTE_TIMEOUT": f"{timeout_s:g}"})


def _plays(server: SdeServer, utt_id: int) -> None:
    code, _, body = server.get(f"/audio/{utt_id}.wav")
    assert code == 200, (utt_id, code, body[:500])
    samples, rate = sf.read(io.BytesIO(body))
    assert rate == 16000 and len(samples) == 16000


def test_a_stalled_remote_file_delays_only_its_own_request(manifest, moto_endpoint):
    # soundfile opens every file under one process-wide lock: a network read under it made every
    # other audio request, local files included, wait for the stalled one's timeout (2 x 60 s here)
    with faulty_link(moto_endpoint) as link, _serve(manifest, link, 60) as server:
        link.fault(f"GET /{BUCKET}/audio/slow.wav", "stall")
        stalled: dict = {}
        waiting = threading.Thread(target=lambda: stalled.update(answer=server.get("/audio/1.wav")), daemon=True)
        waiting.start()
        assert link.stalled.wait(60), "the stalled file was never asked for"
        _plays(server, 0)  # another remote file
        _plays(server, 4)  # a local file
        assert waiting.is_alive() and not stalled, "the stalled request answered before the healthy ones"
        link.heal()
        waiting.join(150)
        assert stalled["answer"][0] in (200, 502, 504), stalled["answer"][:2]
    assert_no_traceback(server)


@pytest.mark.parametrize("fault", [503, 500, "reset"])
def test_a_store_failure_is_not_remembered(manifest, moto_endpoint, fault):
    with faulty_link(moto_endpoint) as link, _serve(manifest, link, 60) as server:
        link.fault(f"/{BUCKET}/audio/flaky.wav", fault)
        code, _, body = server.get("/audio/2.wav")
        assert code != 200, body[:300]
        link.heal()
        _plays(server, 2)  # the store answers again: so does sde
    assert_no_traceback(server)


@pytest.mark.parametrize("fault, timeout_s, reason, fix", [
    (503, 60, "store_error", "try again"),
    (500, 60, "store_error", "try again"),
    ("reset", 60, "store_error", "try again"),
    ("stall", 1, "timeout", "SDE_REMOTE_TIMEOUT"),
    (403, 60, "permission", "credentials"),
], ids=["503", "500", "reset", "stall", "403"])
def test_a_store_failure_has_its_own_reason_and_names_the_url_and_fix(manifest, moto_endpoint, fault, timeout_s,
                                                                      reason, fix):
    url = f"s3://{BUCKET}/audio/flaky.wav"
    with faulty_link(moto_endpoint) as link, _serve(manifest, link, timeout_s) as server:
        link.fault(f"/{BUCKET}/audio/flaky.wav", fault)
        for route in ("/audio/2.wav", "/api/utterances/2/signal"):  # the player's and the inspector's
            answer = server.json(route)
            assert answer["reason"] == reason, (route, answer)
            assert answer["error"].startswith(f"{url}: ") and fix in answer["error"], (route, answer)
        link.heal()
    assert_no_traceback(server)


@pytest.mark.parametrize("fault, timeout_s, status", [(503, 60, 502), ("stall", 1, 504), (403, 60, 502)],
                         ids=["503", "stall", "403"])
def test_a_store_failure_answers_502_or_504(manifest, moto_endpoint, fault, timeout_s, status):
    with faulty_link(moto_endpoint) as link, _serve(manifest, link, timeout_s) as server:
        link.fault(f"/{BUCKET}/audio/flaky.wav", fault)
        code, _, body = server.get("/audio/2.wav")
        link.heal()
    assert code == status, body[:300]


def test_remote_audio_never_checked_counts_as_not_checked(moto_endpoint):
    s3 = client(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    rows = [{"audio_filepath": f"s3://{BUCKET}/audio/missing{k:02d}.wav", "duration": 1.0, "text": "gone"}
            for k in range(3)]
    s3.put_object(Bucket=BUCKET, Key="missing.json", Body="".join(json.dumps(r) + "\n" for r in rows).encode())
    r = sde("stats", f"s3://{BUCKET}/missing.json", "--storage-options", storage(moto_endpoint), "--no-cache", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["audio_missing"] is None and summary["audio_missing_files"] is None, summary
