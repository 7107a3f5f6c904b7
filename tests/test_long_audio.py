"""Long utterances against the real server: a 60-minute one plays and draws with bounded memory,
and no length kills the process.

Before: `/audio/ID.ogg` of any segment of 2**21 samples or more died in libvorbis (SIGSEGV,
exit 139, the whole server gone), and a 60-minute WAV cost ~770 MB of RSS per request.
The 60-minute file is espeak-ng speech tiled in 10 s blocks into a FLAC (~2 s to write).
"""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sde.audio import IN_MEMORY_MAX_FRAMES
from tests.test_audio_faults import REQUEST_TIMEOUT_S, SdeServer, assert_no_traceback

SR = 16000
HOUR_FRAMES = 3600 * SR
RSS_GROWTH_LIMIT = 150 << 20


def _tile_to_flac(speech: np.ndarray, sr: int, frames: int, path: Path) -> None:
    """``frames`` frames of ``speech`` + 0.5 s pauses, repeated, written 10 s at a time."""
    unit = np.concatenate([speech, np.zeros(sr // 2, np.float32)])
    block = np.tile(unit, -(-10 * sr // len(unit)))[: 10 * sr]
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for start in range(0, frames, len(block)):
            f.write(block[: min(len(block), frames - start)])


@pytest.fixture(scope="module")
def long_files(audio_dir, tmp_path_factory) -> dict[str, Path]:
    src_dir, _ = audio_dir
    speech, sr = sf.read(str(src_dir / "one.wav"), dtype="float32")
    assert sr == SR
    d = tmp_path_factory.mktemp("long_audio")
    files = {"hour": d / "hour.flac", "short": src_dir / "two.wav", "hi_rate": d / "hi_rate.wav"}
    _tile_to_flac(speech, SR, HOUR_FRAMES, files["hour"])
    # 48 kHz, just past 2**21 frames: too long to hold, streamed block by block.
    _tile_to_flac(np.repeat(speech, 3), 48000, IN_MEMORY_MAX_FRAMES + 4800, files["hi_rate"])
    return files


#: id: (file, offset s, duration s, frames the segment holds)
ROWS = {
    "hour": ("hour", 0.0, 3600.0, HOUR_FRAMES),
    # exactly 2**21 frames: the largest segment decoded in memory (one sf.write of it crashed)
    "two_pow_21": ("hour", 100.0, IN_MEMORY_MAX_FRAMES / SR, IN_MEMORY_MAX_FRAMES),
    "hi_rate": ("hi_rate", 0.0, (IN_MEMORY_MAX_FRAMES + 4800) / 48000, IN_MEMORY_MAX_FRAMES + 4800),
    "short": ("short", 0.0, 1.0, SR),
}
IDS = {name: i for i, name in enumerate(ROWS)}


@pytest.fixture(scope="module")
def server(long_files, tmp_path_factory):
    manifest = tmp_path_factory.mktemp("long_manifest") / "long.json"
    manifest.write_text("".join(
        json.dumps({"audio_filepath": str(long_files[f]), "offset": off, "duration": dur,
                    "text": name}) + "\n" for name, (f, off, dur, _) in ROWS.items()))
    with SdeServer(str(manifest)) as srv:
        yield srv
    assert_no_traceback(srv)


def _stream(server: SdeServer, path: str, keep: bool, headers: dict | None = None
            ) -> tuple[int, dict, bytes, int]:
    """(status, headers, body if ``keep`` else b"", body length) without holding a big body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        parts, n = [], 0
        while chunk := resp.read(1 << 20):
            n += len(chunk)
            if keep:
                parts.append(chunk)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, b"".join(parts), n
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["two_pow_21", "hi_rate"])
def test_ogg_of_2_pow_21_samples_or_more_is_valid_and_the_server_lives(server, name):
    uid, frames = IDS[name], ROWS[name][3]
    code, hdrs, body, _ = _stream(server, f"/audio/{uid}.ogg", keep=True)
    assert code == 200, body[:300]
    assert hdrs["content-type"] == "audio/ogg"
    info = sf.info(io.BytesIO(body))
    assert info.format == "OGG" and info.frames == frames
    assert server.alive
    code, _, _ = server.get(f"/audio/{IDS['short']}.ogg")
    assert code == 200


def test_sixty_minute_utterance_is_served_with_bounded_memory(server):
    """WAV, Ogg and both figures of a 60-minute utterance, all at once: the server's RSS grows by
    less than RSS_GROWTH_LIMIT (it grew by ~770 MB for the WAV alone, and the Ogg killed it)."""
    uid = IDS["hour"]
    for url in ("/audio/{}.wav", "/audio/{}.ogg", "/api/utterances/{}/signal"):  # warm-up
        assert server.get(url.format(IDS["short"]))[0] == 200
    base = server.rss()
    peak = [base]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server.rss())
            time.sleep(0.01)

    results: dict[str, tuple] = {}

    def fetch(url: str) -> None:
        results[url] = _stream(server, url, keep=not url.endswith(".wav"))

    urls = [f"/audio/{uid}.wav", f"/audio/{uid}.ogg", f"/api/utterances/{uid}/signal",
            f"/api/utterances/{uid}/signal?kind=mel"]
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    fetchers = [threading.Thread(target=fetch, args=(u,)) for u in urls]
    for t in fetchers:
        t.start()
    for t in fetchers:
        t.join(300)
    done.set()
    watcher.join()
    growth = peak[0] - base
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.0f} MiB"
    assert server.alive

    code, hdrs, _, n = results[urls[0]]
    assert code == 200 and n == 44 + 2 * HOUR_FRAMES == int(hdrs["content-length"])
    code, hdrs, ogg, _ = results[urls[1]]
    assert code == 200 and sf.info(io.BytesIO(ogg)).frames == HOUR_FRAMES
    for url in urls[2:]:
        code, _, body, n = results[url]
        assert code == 200 and n <= 500_000, (url, n)  # the inspector's transfer budget
        payload = json.loads(body)
        assert payload["duration"] == pytest.approx(3600.0)
        env, _, heat = payload["figure"]["data"]
        rows, cols = (int(v) for v in heat["z"]["shape"].split(","))
        assert cols <= 400 and rows <= 256
        assert env["dx"] * 2000 >= 3599  # ≤ 2,000 envelope points span the hour


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_range_requests_into_the_hour_long_wav_read_the_right_samples(server, long_files, where):
    """The browser seeks in a long utterance by Range requests on the streamed WAV."""
    size = 44 + 2 * HOUR_FRAMES
    first = {"start": 44, "middle": 44 + 2 * (HOUR_FRAMES // 2) + 1, "end": size - 2000}[where]
    code, hdrs, part, _ = _stream(server, f"/audio/{IDS['hour']}.wav", keep=True,
                                  headers={"Range": f"bytes={first}-{first + 1999}"})
    assert code == 206 and len(part) == 2000
    assert hdrs["content-range"] == f"bytes {first}-{first + 1999}/{size}"
    frame = (first - 44) // 2
    if (first - 44) % 2:  # an odd start splits a sample: drop its high byte, and the last one
        part, frame = part[1:-1], frame + 1
    got = np.frombuffer(part, "<i2").astype(np.float32) / 32767
    want, _ = sf.read(str(long_files["hour"]), start=frame, frames=len(got), dtype="float32")
    np.testing.assert_allclose(got, want, atol=2 / 32768)


def test_the_inspector_figure_of_the_hour(long_files):
    """The inspector page draws through the same service (here without a server: a fresh one)."""
    from sde.web.audio_service import signal_for_page

    df = pd.DataFrame({"id": [0], "audio_path": [str(long_files["hour"])], "offset": [0.0],
                       "duration": [3600.0]})
    fig, message = signal_for_page(types.SimpleNamespace(utterances=df), 0, "mel")
    assert message is None
    assert len(fig.to_json()) <= 500_000
    assert fig.layout.xaxis.range[1] == pytest.approx(3600.0)


def test_clients_that_leave_mid_stream_leak_no_open_files(server):
    """A listener who skips to the next utterance drops the connection: the file is closed."""
    import psutil

    proc = psutil.Process(server.pid)
    base = proc.num_fds()
    for url in (f"/audio/{IDS['hour']}.wav", f"/audio/{IDS['hour']}.ogg") * 3:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT_S)
        conn.request("GET", url)
        resp = conn.getresponse()
        assert resp.status == 200 and len(resp.read(256 << 10)) == 256 << 10
        resp.close()  # the response holds the socket: both must go for the connection to drop
        conn.close()
    deadline = time.monotonic() + 10
    while proc.num_fds() > base and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.num_fds() <= base
    assert server.alive and server.get(f"/audio/{IDS['short']}.wav")[0] == 200


def test_the_inspector_plays_draws_and_seeks_the_hour_in_chromium(server, page):
    """In the browser: the player gets the streamed WAV (Range requests: it knows the hour's
    length at once and seeks anywhere), and the figure of the whole hour is drawn."""
    base = f"http://127.0.0.1:{server.port}"
    uid = IDS["hour"]
    page.goto(f"{base}/utterance/{uid}")
    page.wait_for_selector("#utt-signal .js-plotly-plot .main-svg", timeout=60_000)
    assert page.get_attribute("#utt-audio", "src") == f"/audio/{uid}.wav"
    page.wait_for_function("document.querySelector('#utt-audio').readyState >= 1")  # metadata
    assert page.evaluate("document.querySelector('#utt-audio').duration") == pytest.approx(3600, abs=1)
    page.evaluate("document.querySelector('#utt-audio').currentTime = 3000")
    page.wait_for_function("!document.querySelector('#utt-audio').seeking && "
                           "document.querySelector('#utt-audio').readyState >= 2")
    assert page.evaluate("document.querySelector('#utt-audio').currentTime") == pytest.approx(3000, abs=1)
    x_range = page.evaluate("document.querySelector('#utt-signal .js-plotly-plot').layout.xaxis.range")
    assert x_range[1] == pytest.approx(3600.0)
    assert server.alive
