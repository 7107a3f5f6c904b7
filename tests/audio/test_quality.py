"""sde.audio.quality: per-segment audio metrics and the parallel runner over a table."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sde.audio import (
    AUDIO_METRIC_COLUMNS,
    DB_FLOOR,
    audio_metrics,
    compute_audio_metrics,
)
from sde.audio import inputs, quality
from sde.audio.inputs import FileAudio
from tests.audio.audio_kit import long_recording, lowpassed_noise, segments_table, sine, write
from tests.quality_kit import need_espeak, noise, silence, speak


def test_metrics_still_measure_what_a_truncated_wav_holds(cut_wav):
    m = audio_metrics(cut_wav, 0.0, 2.0)
    assert m["duration_mismatch"] and m["audio_duration"] == pytest.approx(1.0, abs=0.01)


def test_metrics_of_a_full_scale_sine(tmp_path):
    sr = 16000
    path = write(tmp_path / "sine.wav", sine(1000, 2.0, sr, 1.0), sr, subtype="FLOAT")
    m = audio_metrics(path, 0.0, 2.0)
    assert m["rms_dbfs"] == pytest.approx(-3.01, abs=0.01)
    assert m["peak_dbfs"] == pytest.approx(0.0, abs=0.01)
    assert m["audio_error"] is None and not m["duration_mismatch"]
    half = write(tmp_path / "half.wav", sine(1000, 2.0, sr, 0.5), sr, subtype="FLOAT")
    m = audio_metrics(half, 0.0, 2.0)
    assert m["rms_dbfs"] == pytest.approx(-9.03, abs=0.01)
    assert m["peak_dbfs"] == pytest.approx(-6.02, abs=0.01)
    assert m["clipping_ratio"] == pytest.approx(0.0)


def test_full_scale_square_wave_is_clipped(tmp_path):
    sr = 16000
    square = np.sign(sine(100, 1.0, sr) + 1e-9).astype(np.float32)
    path = write(tmp_path / "square.wav", square, sr, subtype="PCM_16")
    m = audio_metrics(path)
    assert m["clipping_ratio"] > 0.99
    assert m["peak_dbfs"] == pytest.approx(0.0, abs=0.01)


def test_leading_and_trailing_silence(tmp_path):
    sr = 16000
    x = np.concatenate([np.zeros(int(0.5 * sr)), sine(300, 1.0, sr, 0.3),
                        np.zeros(int(0.25 * sr))]).astype(np.float32)
    x[: int(0.5 * sr)] += np.random.default_rng(3).standard_normal(int(0.5 * sr)) * 1e-4  # hiss
    path = write(tmp_path / "padded.wav", x, sr)
    m = audio_metrics(path, 0.0, 1.75)
    assert m["silence_start"] == pytest.approx(0.5, abs=0.011)
    assert m["silence_end"] == pytest.approx(0.25, abs=0.011)
    silent = write(tmp_path / "silent.wav", np.zeros(sr, np.float32), sr)
    m = audio_metrics(silent, 0.0, 1.0)
    assert m["silence_start"] == m["silence_end"] == pytest.approx(1.0)
    assert m["peak_dbfs"] == pytest.approx(DB_FLOOR) and m["rms_dbfs"] == pytest.approx(DB_FLOOR)
    assert m["bandwidth_hz"] == pytest.approx(0.0)


@pytest.mark.parametrize("sr", [16000, 44100])
def test_bandwidth_of_a_band_limited_signal(tmp_path, sr):
    path = write(tmp_path / "lp.wav", lowpassed_noise(sr, 3000), sr, subtype="FLOAT")
    assert audio_metrics(path)["bandwidth_hz"] == pytest.approx(3000, abs=250)
    # A sum of smooth tones below 3 kHz too (faded in/out: an abrupt start is broadband).
    tones = sum(sine(f, 2.0, sr, 0.15) for f in (200, 700, 1500, 2500, 2950))
    tones *= np.hanning(len(tones)).astype(np.float32)
    path = write(tmp_path / "tones.wav", tones, sr, subtype="FLOAT")
    assert audio_metrics(path)["bandwidth_hz"] == pytest.approx(3000, abs=250)
    white = write(tmp_path / "white.wav", lowpassed_noise(sr, sr), sr, subtype="FLOAT")
    assert audio_metrics(white)["bandwidth_hz"] == pytest.approx(sr / 2, abs=100)


@pytest.mark.slow  # importing librosa's STFT (numba) takes ~2 s
def test_bandwidth_matches_nemo_explorer_on_speech(tmp_path):
    """Same numbers as NeMo SDE's eval_bandwidth (librosa STFT), here on real speech."""
    librosa = pytest.importorskip("librosa")
    if not shutil.which("espeak-ng"):
        pytest.skip("needs espeak-ng")
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "the quick brown fox jumps over the lazy dog"],
                   check=True, capture_output=True)
    y, sr = sf.read(str(path), dtype="float32")
    spec = np.mean(np.abs(librosa.stft(y=y, n_fft=512, hop_length=int(sr * 0.01),
                                       window="blackmanharris")) ** 2, axis=1)
    db = librosa.power_to_db(S=spec, ref=np.max, top_db=100)
    nemo = next((i / 512 * sr for i in range(len(db) - 1, -1, -1) if db[i] > -50), 0)
    m = audio_metrics(str(path))
    assert m["bandwidth_hz"] == pytest.approx(nemo, abs=sr / 512 + 1e-6)
    assert m["sample_rate"] == sr and 0 < m["silence_start"] < 0.5
    assert -40 < m["rms_dbfs"] < 0 and m["clipping_ratio"] < 0.01


def test_duration_mismatch_is_flagged(tmp_path):
    path = write(tmp_path / "two.wav", sine(440, 2.0, 16000, 0.5), 16000)
    m = audio_metrics(path, 0.0, 3.0)
    assert m["duration_mismatch"]
    assert m["audio_duration"] == pytest.approx(2.0) and m["file_duration"] == pytest.approx(2.0)
    assert not audio_metrics(path, 0.0, 2.05)["duration_mismatch"]
    assert not audio_metrics(path, 0.5, None)["duration_mismatch"]


def test_compute_audio_metrics_table(tmp_path, long_file):
    good = write(tmp_path / "good.wav", sine(440, 2.0, 16000, 0.5), 16000)
    rows = [(good, 0.0, 2.0), (str(tmp_path / "gone.wav"), 0.0, 1.0), (long_file, 1234.0, 3.0),
            (long_file, 10.0, 5.0), (long_file, 1799.0, 5.0), (long_file, 2000.0, 1.0),
            (good, 1.0, 0.5)]
    table = segments_table(rows, index=pd.RangeIndex(10, 17))
    seen: list[tuple[int, int]] = []
    out = compute_audio_metrics(table, workers=1, callback=lambda d, n: seen.append((d, n)))
    assert list(out.columns) == list(AUDIO_METRIC_COLUMNS)
    assert out.index.equals(table.index)
    assert out["duration_mismatch"].dtype == bool
    assert str(out["audio_error"].dtype).startswith("string")
    assert out["sample_rate"].dtype == np.float64
    assert seen[-1] == (7, 7) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert "file not found" in out.loc[11, "audio_error"]
    assert "beyond the end" in out.loc[15, "audio_error"] and np.isnan(out.loc[15, "rms_dbfs"])
    assert out.loc[12, "silence_start"] == pytest.approx(0.5, abs=0.011)
    assert out.loc[13, "peak_dbfs"] == pytest.approx(DB_FLOOR)  # silence
    assert out.loc[14, "duration_mismatch"] and out.loc[14, "audio_duration"] == pytest.approx(1.0)
    assert out.loc[14, "file_duration"] == pytest.approx(1800.0)
    assert out.loc[16, "audio_duration"] == pytest.approx(0.5)
    assert pd.isna(out.loc[10, "audio_error"])
    # Same numbers one segment at a time.
    for idx, (p, o, d) in zip(table.index, rows, strict=True):
        single = audio_metrics(p, o, d)
        for c in ("rms_dbfs", "bandwidth_hz", "audio_duration"):
            a, b = out.loc[idx, c], single[c]
            assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b)


def test_compute_audio_metrics_uses_worker_processes(tmp_path):
    sr = 8000
    rows = []
    for i in range(80):  # above the in-process threshold
        rows.append((write(tmp_path / f"{i}.wav", sine(1000, 0.2 + 0.01 * i, sr, 0.5), sr),
                     0.0, 0.2 + 0.01 * i))
    rows.append(("", 0.0, 1.0))
    table = segments_table(rows)
    calls: list[int] = []
    out = compute_audio_metrics(table, workers=2, callback=lambda d, n: calls.append(d))
    assert calls[-1] == len(rows)
    assert out["audio_error"].isna().sum() == 80
    assert "no audio file" in out["audio_error"].iloc[-1]
    np.testing.assert_allclose(out["peak_dbfs"].iloc[:80], -6.02, atol=0.01)
    np.testing.assert_allclose(out["audio_duration"].iloc[:80], 0.2 + 0.01 * np.arange(80))


# --- Block by block: same numbers as the whole array, in bounded memory -----------------------

def _same_metrics(got: dict, want: dict) -> None:
    # The same error; libsndfile's own reason in brackets depends on where decoding gave up.
    assert str(got["audio_error"]).split(" (")[0] == str(want["audio_error"]).split(" (")[0]
    assert got["duration_mismatch"] == want["duration_mismatch"]
    assert got["bandwidth_hz"] == want["bandwidth_hz"] or np.isnan(want["bandwidth_hz"])
    for c in AUDIO_METRIC_COLUMNS:
        if c not in ("audio_error", "duration_mismatch"):
            assert np.isclose(got[c], want[c], rtol=1e-9, atol=1e-9, equal_nan=True), c


@pytest.fixture(scope="module")
def speech_files(tmp_path_factory) -> dict[str, str]:
    """espeak-ng speech (22050 Hz: 220-sample silence frames and hops, cut by most block sizes)
    between 0.2 s of digital silence and 0.2 s of faint hiss; a stereo copy; an 88.2 kHz copy
    (its 882-sample hop is longer than the 512-point window: frames leave gaps)."""
    need_espeak()
    y, sr = speak("sound check")
    pad = silence(0.2, sr)
    x = np.concatenate([pad, y, pad + noise(0.2, sr, level=1e-4)])
    folder = tmp_path_factory.mktemp("speech")
    right = 0.5 * x + noise(len(x) / sr, sr, level=0.01, seed=1)
    return {"mono": write(folder / "mono.wav", x, sr, subtype="FLOAT"),
            "stereo": write(folder / "stereo.wav", np.stack([x, right], axis=1), sr),
            "88k": write(folder / "88k.wav", np.repeat(x, 4), 4 * sr, subtype="FLOAT"),
            "end": str(len(x) / sr)}


#: (file, offset, duration): speech after 0.05 s of silence, a stereo segment, one shorter than
#: the 512-point window, an empty one, digital silence, one running to the end (trailing hiss),
#: and one at 88.2 kHz. Short: block size 1 costs a Python call per frame.
SEGMENTS = [("mono", 0.15, 0.12), ("stereo", 0.25, 0.08), ("mono", 0.3, 0.01), ("mono", 0.3, 0.0),
            ("mono", 0.0, 0.15), ("mono", -0.15, None), ("88k", 0.2, 0.03)]


@pytest.mark.parametrize("block", [1, 7, 160, 511, 4096])
def test_block_by_block_metrics_equal_the_whole_array(speech_files, monkeypatch, block):
    rows = [(speech_files[name], off if off >= 0 else float(speech_files["end"]) + off, dur)
            for name, off, dur in SEGMENTS]
    # Each segment is shorter than the default block: audio_metrics measures it as one array.
    want = [audio_metrics(p, o, d) for p, o, d in rows]
    assert want[0]["silence_start"] == pytest.approx(0.05, abs=0.011) and want[0]["rms_dbfs"] > -30
    assert want[1]["channels"] == 2 and want[2]["audio_duration"] == pytest.approx(0.01, abs=0.001)
    assert want[3]["audio_duration"] == 0 and want[4]["peak_dbfs"] == DB_FLOOR
    assert want[5]["silence_end"] == pytest.approx(0.15, abs=0.011)
    monkeypatch.setattr(quality, "METRIC_BLOCK_FRAMES", block)
    # Every segment of a file through one open file, in one call (the first read of each seeks).
    for path in {p for p, _, _ in rows}:
        segs = [(i, o, d, None) for i, (p, o, d) in enumerate(rows) if p == path]
        for i, got in quality._metrics_for_file(path, segs):
            _same_metrics(got, want[i])
    # The whole array of audio_metrics goes through the same blocks.
    _same_metrics(audio_metrics(*rows[0]), want[0])


@pytest.mark.parametrize("block", [511, 4096])
def test_block_by_block_metrics_of_truncated_files(tmp_path, cut_wav, monkeypatch, block):
    """A WAV cut short (libsndfile trims its length at opening), a FLAC cut short (decoding
    fails: an error either way) and an MP3 cut short (its header still announces 2 s: the reads
    come back short, in a later block when blocks are small)."""
    y = sine(440, 2.0, 16000, 0.5) * np.linspace(0, 1, 32000, dtype=np.float32)
    rows = [(cut_wav, 0.5, 2.0), (cut_wav, 0.0, None)]
    for ext in ("flac", "mp3"):
        if ext.upper() not in sf.available_formats():
            continue
        full = write(tmp_path / f"full.{ext}", y, 16000)
        cut = tmp_path / f"cut.{ext}"
        cut.write_bytes(Path(full).read_bytes()[: Path(full).stat().st_size // 2])
        rows += [(str(cut), 0.25, 1.5), (str(cut), 0.0, None)]
    want = [audio_metrics(p, o, d) for p, o, d in rows]
    assert want[0]["duration_mismatch"] and want[0]["audio_duration"] == pytest.approx(0.5)
    assert "truncated" in want[2]["audio_error"]
    if len(rows) > 4:
        assert want[4]["duration_mismatch"] and 0.5 < want[4]["audio_duration"] < 1.5
        assert want[4]["audio_error"] is None
    monkeypatch.setattr(quality, "METRIC_BLOCK_FRAMES", block)
    for (p, o, d), w in zip(rows, want, strict=True):
        # One call each: after a failed read (the cut FLAC) the decoder's state differs.
        _same_metrics(quality._metrics_for_file(p, [(0, o, d, None)])[0][1], w)


_PEAK_RSS_GROWTH = """
import json, resource, sys
import sde.sources.members  # reads tar members named by sde.sources.members.tar_member_path
from sde.audio.quality import _metrics_for_file

def peak_mb():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes there, KiB here

_metrics_for_file(sys.argv[1], [(0, 0.0, 20.0, None)])  # imports and first-use allocations (scipy FFT)
before = peak_mb()
m = _metrics_for_file(sys.argv[1], [(0, 0.0, None, None)])[0][1]
print(json.dumps({"grew_mb": peak_mb() - before, **m}))
"""


@pytest.mark.parametrize("kept", ["in a file", "in a tar"])
def test_measuring_a_long_segment_adds_bounded_memory(tmp_path, kept):
    """25 minutes at 16 kHz in one segment: the whole-array code peaked 1.2 GB above its start.
    A tar member (a NeMo tarred dataset's; a URL is read the same way) was read whole first, and
    then measured block by block."""
    sr = 16000
    name = long_recording(tmp_path, 0.25 * sine(1000, 60.0, sr) + noise(60.0, sr, level=0.01), 25, sr, kept)
    run = subprocess.run([sys.executable, "-c", _PEAK_RSS_GROWTH, name], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    m = json.loads(run.stdout.splitlines()[-1])
    assert m["audio_error"] is None and m["audio_duration"] == pytest.approx(1500.0)
    assert m["rms_dbfs"] == pytest.approx(-15.03, abs=0.05) and m["silence_start"] == 0.0
    # the segment read whole is 96 MB of float32: reading it so, the tar member took 95 MB more
    assert m["grew_mb"] < 40, f"measuring 25 minutes took {m['grew_mb']:.0f} MB more memory"


class _ResetAfter(io.FileIO):
    """A remote file whose connection drops once ``limit`` bytes have been read."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(path, "rb")
        self.limit = limit

    def read(self, size: int = -1) -> bytes:
        if size < 0 or self.tell() + size > self.limit:
            raise ConnectionResetError("connection reset by peer")
        return super().read(size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def test_a_read_that_fails_under_the_decoder_is_the_error_not_a_shorter_segment(tmp_path, monkeypatch):
    """A URL's connection dropping halfway: libsndfile sees the data end early, which would measure
    half the audio as if that were all; the metrics carry the failure instead."""
    path = write(tmp_path / "a.wav", sine(440, 4.0, 16000, 0.3), 16000)
    size = Path(path).stat().st_size

    def opener(url: str) -> FileAudio:
        return FileAudio(url, lambda: _ResetAfter(path, size // 2), size=size)

    monkeypatch.setattr(inputs, "_url_opener", opener)
    [(_, whole)] = quality._metrics_for_file("https://example.org/a.wav", [(0, 0.0, 1.0, None)])
    assert whole["audio_error"] is None and whole["audio_duration"] == pytest.approx(1.0)
    [(_, got)] = quality._metrics_for_file("https://example.org/a.wav", [(0, 0.0, 4.0, None)])
    assert "connection reset by peer" in (got["audio_error"] or ""), got
    assert np.isnan(got["audio_duration"])
