"""/audio/<id>.wav and /api/utterances/<id>/signal on a real Flask app over real audio files."""

from __future__ import annotations

import io
import json
import os
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from werkzeug.routing import IntegerConverter
import soundfile as sf
from flask import Flask

from sde.web.api import register_api
from sde.web.audio_service import EXTENSION_KEY, AudioService

SR = 16000


def _sine(seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * 440 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    out = {}
    out["good"] = str(tmp_path / "good.wav")
    sf.write(out["good"], _sine(2.0), SR, subtype="PCM_16")
    out["long"] = str(tmp_path / "long.flac")
    with sf.SoundFile(out["long"], "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        rng = np.random.default_rng(0)
        for _ in range(6):  # one minute of noise, written in 10 s blocks
            f.write((rng.standard_normal(10 * SR) * 0.1).astype(np.float32))
    out["missing"] = str(tmp_path / "missing.wav")
    out["corrupt"] = str(tmp_path / "corrupt.wav")
    Path(out["corrupt"]).write_text("not audio\n" * 50)
    out["zero"] = str(tmp_path / "zero.wav")
    Path(out["zero"]).write_bytes(b"")
    out["truncated"] = str(tmp_path / "truncated.wav")
    Path(out["truncated"]).write_bytes(Path(out["good"]).read_bytes()[:40])
    out["wrong_ext"] = str(tmp_path / "text.flac")
    Path(out["wrong_ext"]).write_text("definitely not flac\n" * 50)
    return out


ROWS = [  # (file key, offset, duration); the row's position is its id
    ("good", 0.0, 2.0),       # 0
    ("long", 30.0, 20.0),     # 1: a 20 s segment inside a longer file
    ("missing", 0.0, 1.0),    # 2
    ("corrupt", 0.0, 1.0),    # 3
    ("zero", 0.0, 1.0),       # 4
    ("truncated", 0.0, 1.0),  # 5
    ("wrong_ext", 0.0, 1.0),  # 6
    ("good", 5.0, 1.0),       # 7: offset beyond the end
    ("good", 0.5, 1.0),       # 8
]


@pytest.fixture
def app(files) -> Flask:
    df = pd.DataFrame({
        "id": np.arange(len(ROWS), dtype=np.int64),
        "audio_path": pd.array([files[k] for k, _, _ in ROWS], dtype="string[pyarrow]"),
        "offset": [o for _, o, _ in ROWS],
        "duration": [d for _, _, d in ROWS],
    })
    server = Flask(__name__)
    register_api(server, types.SimpleNamespace(utterances=df))
    return server


@pytest.fixture
def client(app):
    return app.test_client()


def test_wav_of_an_utterance(client):
    r = client.get("/audio/8.wav")
    assert r.status_code == 200
    assert r.mimetype == "audio/wav"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["ETag"] and "no-cache" in r.headers["Cache-Control"]
    assert len(r.data) == 44 + 2 * SR
    data, sr = sf.read(io.BytesIO(r.data), dtype="float32")
    assert sr == SR and sf.info(io.BytesIO(r.data)).subtype == "PCM_16"
    np.testing.assert_allclose(data, _sine(2.0)[SR // 2: SR // 2 + SR], atol=2 / 32768)


def test_range_requests(client):
    full = client.get("/audio/0.wav").data
    n = len(full)
    r = client.get("/audio/0.wav", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206
    assert len(r.data) == 100 and r.data == full[:100]
    assert r.headers["Content-Range"] == f"bytes 0-99/{n}"
    assert r.headers["Content-Length"] == "100"
    r = client.get("/audio/0.wav", headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.data == full[1000:]
    assert r.headers["Content-Range"] == f"bytes 1000-{n - 1}/{n}"
    r = client.get("/audio/0.wav", headers={"Range": "bytes=-50"})
    assert r.status_code == 206 and r.data == full[-50:]
    for bad in (f"bytes={n}-", f"bytes={n + 10}-{n + 20}", "bytes=-0", "bytes=-000"):  # a suffix of 0 bytes too
        r = client.get("/audio/0.wav", headers={"Range": bad})
        assert r.status_code == 416, bad
        assert r.headers["Content-Range"] == f"bytes */{n}"
        assert "not satisfiable" in r.get_json()["error"]


@pytest.mark.parametrize("extra", [0, 1, 10**6])
def test_a_suffix_as_long_as_the_body_or_longer_is_the_whole_body(client, streamed, extra):
    """RFC 9110 §14.1.2: a suffix longer than the body means all of it (206); werkzeug said 416."""
    for get in (client.get, streamed[0].get):  # a WAV in memory, a WAV streamed from the file
        full = get("/audio/0.wav").data
        n = len(full)
        r = get("/audio/0.wav", headers={"Range": f"bytes=-{n + extra}"})
        assert r.status_code == 206 and r.data == full
        assert r.headers["Content-Range"] == f"bytes 0-{n - 1}/{n}"


# RFC 9110 §14.2: a Range the server cannot use is ignored (200, whole body); only a well-formed
# single byte range that misses the body is 416 (test_range_requests).
IGNORED_RANGES = ["lines=1-2",       # another unit
                  "bytes=abc",       # malformed
                  "bytes=",          # no range-spec
                  "bytes=-",         # neither end
                  "bytes=99-10",     # last before first: invalid
                  "bytes=0-1,5-6"]   # several ranges: not served as multipart


@pytest.mark.parametrize("rng", IGNORED_RANGES)
def test_a_range_sde_cannot_use_is_ignored_with_the_whole_body(client, rng):
    full = client.get("/audio/0.wav").data
    r = client.get("/audio/0.wav", headers={"Range": rng})
    assert r.status_code == 200 and r.data == full
    assert "Content-Range" not in r.headers and r.headers["Accept-Ranges"] == "bytes"


def test_etag_revalidation_and_file_changes(client, files):
    r = client.get("/audio/0.wav")
    tag = r.headers["ETag"]
    r = client.get("/audio/0.wav", headers={"If-None-Match": tag})
    assert r.status_code == 304 and r.data == b""
    # The file changes on disk: new validator, new content (the cache does not serve stale audio).
    sf.write(files["good"], _sine(2.0, amp=0.25), SR, subtype="PCM_16")
    os.utime(files["good"], (time.time() + 5, time.time() + 5))
    r = client.get("/audio/0.wav", headers={"If-None-Match": tag})
    assert r.status_code == 200 and r.headers["ETag"] != tag
    data, _ = sf.read(io.BytesIO(r.data), dtype="float32")
    assert np.abs(data).max() == pytest.approx(0.25, abs=0.01)


def test_head_request(client):
    r = client.head("/audio/0.wav")
    assert r.status_code == 200 and r.headers["Content-Length"] == str(44 + 2 * 2 * SR)


@pytest.mark.parametrize("uid,status,words", [
    (2, 404, "file not found"),
    (3, 422, "not a sound file"),
    (4, 422, "zero-byte"),
    (5, 422, "corrupt"),
    (6, 422, "not a sound file"),
    (7, 422, "beyond the end"),
])
def test_bad_files_give_json_errors_and_the_server_keeps_serving(client, files, uid, status, words):
    for url in (f"/audio/{uid}.wav", f"/api/utterances/{uid}/signal"):
        r = client.get(url)
        assert r.status_code == status, url
        body = r.get_json()
        assert words in body["error"]
        assert files[ROWS[uid][0]] in body["error"]  # names the file
        assert body["id"] == uid
    assert client.get("/audio/0.wav").status_code == 200
    assert client.get("/api/utterances/0/signal").status_code == 200


def test_unknown_ids_and_no_path_routes(client, app):
    for url in ("/audio/9.wav", "/audio/123456.wav", "/api/utterances/99/signal"):
        r = client.get(url)
        assert r.status_code == 404
        assert "no utterance with id" in r.get_json()["error"]
    for url in ("/audio/-1.wav", "/audio/../etc/passwd", "/audio/%2Fetc%2Fpasswd.wav",
                "/audio/..%2F..%2Fetc%2Fpasswd", "/audio/0.wav/../../etc/passwd",
                "/audio/etc/passwd", "/audio/0.mp3", "/audio/abc.wav"):
        assert client.get(url).status_code == 404, url
    # Every audio/signal rule takes an integer id in ASCII digits and nothing else.
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("sde_audio"):
            assert set(rule.arguments) == {"utt_id"}
            converter = rule._converters["utt_id"]
            assert isinstance(converter, IntegerConverter) and converter.regex == "[0-9]+"


def test_signal_payload(client):
    r = client.get("/api/utterances/1/signal")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert len(r.data) <= 500_000  # the 20 s segment stays small (≈130 KB)
    body = r.get_json()
    assert body["sample_rate"] == SR and body["channels"] == 1
    assert body["duration"] == pytest.approx(20.0) and body["offset"] == pytest.approx(30.0)
    assert body["file_duration"] == pytest.approx(60.0)
    fig = body["figure"]
    kinds = [t.get("type", "scatter") for t in fig["data"]]
    assert kinds == ["scatter", "scatter", "heatmap"]
    assert fig["layout"]["xaxis2"]["matches"] == "x"
    r = client.get("/api/utterances/1/signal", headers={"If-None-Match": r.headers["ETag"]})
    assert r.status_code == 304
    mel = client.get("/api/utterances/1/signal?kind=mel")
    assert mel.status_code == 200 and mel.get_json()["kind"] == "mel"
    assert mel.headers["ETag"] != client.get("/api/utterances/1/signal").headers["ETag"]
    bad = client.get("/api/utterances/1/signal?kind=cqt")
    assert bad.status_code == 400 and "linear, mel" in bad.get_json()["error"]


def test_service_is_shared_with_pages(app):
    service = app.extensions[EXTENSION_KEY]
    assert isinstance(service, AudioService)
    fig = service.figure(0, "mel")
    assert fig.data[2].type == "heatmap"
    text, tag = service.signal_json(0)
    assert json.loads(text)["id"] == 0 and tag


def test_ogg_route_is_small_and_decodes_to_the_segment(client):
    """The inspector's player uses /audio/ID.ogg: a fraction of the WAV's bytes, same length."""
    utt = 1  # the 20 s segment inside the one-minute file
    wav = client.get(f"/audio/{utt}.wav")
    ogg = client.get(f"/audio/{utt}.ogg")
    assert ogg.status_code == 200 and ogg.mimetype == "audio/ogg"
    assert len(ogg.data) < len(wav.data) / 3
    a, sr_a = sf.read(io.BytesIO(wav.data))
    b, sr_b = sf.read(io.BytesIO(ogg.data))
    assert sr_a == sr_b and abs(len(a) - len(b)) <= 1
    part = client.get(f"/audio/{utt}.ogg", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.data) == 100


def _one_row_client(path: str, offset: float, duration: float):
    df = pd.DataFrame({"id": [0], "audio_path": pd.array([path], dtype="string[pyarrow]"),
                       "offset": [offset], "duration": [duration]})
    server = Flask(__name__)
    register_api(server, types.SimpleNamespace(utterances=df))
    return server.test_client()


AUDIO_URLS = ["/audio/0.wav", "/audio/0.ogg", "/api/utterances/0/signal"]


@pytest.mark.parametrize("field,value", [
    ("offset", 1e308), ("offset", float("inf")), ("offset", float("nan")), ("offset", -1.0),
    ("duration", 1e308), ("duration", float("inf")), ("duration", float("nan")),
    ("duration", -2.0),
])
def test_impossible_times_in_the_table_are_422_json_naming_field_value_and_fix(files, field, value):
    row = {"offset": 0.0, "duration": 1.0, field: value}
    client = _one_row_client(files["good"], row["offset"], row["duration"])
    for url in AUDIO_URLS:
        r = client.get(url)
        assert r.status_code == 422 and r.is_json, (url, r.data[:200])
        body = r.get_json()
        assert body["reason"] == "invalid" and body["field"] == field
        assert body["value"] == f"{value:g}"
        assert files["good"] in body["error"] and f'fix the "{field}" of this line' in body["error"]


def test_duration_zero_plays_to_the_end_of_the_file_as_nemo_reads_it(files):
    r = _one_row_client(files["good"], 0.5, 0.0).get("/audio/0.wav")
    assert r.status_code == 200
    assert sf.info(io.BytesIO(r.data)).duration == pytest.approx(1.5)


def test_an_unexpected_failure_is_json_not_an_html_page(files):
    df = pd.DataFrame({"id": [0], "offset": [0.0], "duration": [1.0]})  # no audio_path column
    server = Flask(__name__)
    register_api(server, types.SimpleNamespace(utterances=df))
    client = server.test_client()
    for url in AUDIO_URLS:
        r = client.get(url)
        assert r.status_code == 500 and r.is_json, url
        assert "utterance 0" in r.get_json()["error"]


@pytest.mark.parametrize("duration,src", [(20.0, "/audio/3.ogg"), (40.0, "/audio/3.ogg"),
                                          (40.5, "/audio/3.wav"), (3600.0, "/audio/3.wav"),
                                          (None, "/audio/3.wav"), (float("nan"), "/audio/3.wav")])
def test_player_plays_ogg_for_short_and_seekable_wav_for_long_utterances(duration, src):
    from sde.web.state import player_src

    assert player_src(3, duration) == src


@pytest.fixture
def streamed(files, monkeypatch):
    """(client of the 20 s segment served streamed, the same served from memory): the in-memory
    limit is lowered so this segment takes the path a 60-minute one takes."""
    import sde.audio.io

    whole = _one_row_client(files["long"], 30.0, 20.0)
    reference = {url: whole.get(url) for url in ("/audio/0.wav", "/api/utterances/0/signal")}
    monkeypatch.setattr(sde.audio.io, "IN_MEMORY_MAX_FRAMES", SR)
    return _one_row_client(files["long"], 30.0, 20.0), reference


def test_streamed_wav_is_the_same_file_with_ranges_head_and_etag(streamed):
    client, reference = streamed
    full = reference["/audio/0.wav"].data
    n = len(full)
    r = client.get("/audio/0.wav")
    assert r.status_code == 200 and r.is_streamed and r.data == full
    assert r.headers["Content-Length"] == str(n) and r.headers["Accept-Ranges"] == "bytes"
    for rng, part in [("bytes=0-99", full[:100]), ("bytes=43-46", full[43:47]),
                      ("bytes=12345-", full[12345:]), ("bytes=-51", full[-51:]),
                      ("bytes=300001-300002", full[300001:300003])]:
        r = client.get("/audio/0.wav", headers={"Range": rng})
        assert r.status_code == 206 and r.data == part, rng
        assert r.headers["Content-Length"] == str(len(part))
    r = client.get("/audio/0.wav", headers={"Range": f"bytes={n}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{n}"
    for rng in IGNORED_RANGES:
        r = client.get("/audio/0.wav", headers={"Range": rng})
        assert r.status_code == 200 and r.data == full, rng
    head = client.head("/audio/0.wav")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(n) and not head.data
    r = client.get("/audio/0.wav", headers={"If-None-Match": head.headers["ETag"]})
    assert r.status_code == 304


def test_streamed_ogg_and_signal(streamed):
    client, reference = streamed
    r = client.get("/audio/0.ogg")
    assert r.status_code == 200 and r.mimetype == "audio/ogg"
    assert r.headers["Accept-Ranges"] == "none" and "Content-Length" not in r.headers
    assert sf.info(io.BytesIO(r.data)).frames == 20 * SR
    sig = client.get("/api/utterances/0/signal").get_json()
    ref = reference["/api/utterances/0/signal"].get_json()
    assert {k: sig[k] for k in ("duration", "offset", "sample_rate")} == pytest.approx(
        {k: ref[k] for k in ("duration", "offset", "sample_rate")})
    assert len(sig["figure"]["data"]) == 3
