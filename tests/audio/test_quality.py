"""sde.audio.quality: per-segment audio metrics and the parallel runner over a table."""

from __future__ import annotations

import shutil
import subprocess

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
from tests.audio.audio_kit import lowpassed_noise, segments_table, sine, write


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
