"""Speech activity (Silero VAD) on espeak-ng speech with known silence around it, and the batch
runner that measures a whole table in worker processes."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from sde.quality.segments import Cancelled, SegmentMeasures, measure_segments, vad_columns
from sde.quality.vad import VAD_COLUMNS, VadParams, load_model, speech_activity, speech_intervals
from tests.quality_kit import need_espeak, need_vad, noise, padded, silence, speak, write

SENTENCE = "the quick brown fox jumps over the lazy dog and then it runs far away"


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    need_espeak()
    need_vad()
    return speak(SENTENCE)


@pytest.fixture(scope="module")
def table(speech, tmp_path_factory) -> pd.DataFrame:
    """Rows: a padded utterance file, the same speech as a segment of a longer file (offset),
    noise, silence, a missing file, a row without a path."""
    y, sr = speech
    d = tmp_path_factory.mktemp("vad")
    write(d / "padded.wav", padded(y, sr, 1.0, 0.5), sr)
    # long.wav: 2 s noise | 1 s silence | speech | 0.5 s silence | 2 s noise; the row names 2.0 s on.
    long = np.concatenate([noise(2.0, sr), padded(y, sr, 1.0, 0.5), noise(2.0, sr, seed=1)])
    write(d / "long.wav", long, sr)
    write(d / "noise.wav", noise(3.0, sr), sr)
    write(d / "silence.flac", silence(3.0, sr), sr)
    seg = len(y) / sr + 1.5
    rows = [(str(d / "padded.wav"), 0.0, None), (str(d / "long.wav"), 2.0, seg),
            (str(d / "noise.wav"), 0.0, 3.0), (str(d / "silence.flac"), 0.0, 3.0),
            (str(d / "missing.wav"), 0.0, 1.0), (None, 0.0, 1.0)]
    return pd.DataFrame({"id": range(len(rows)), "audio_path": [r[0] for r in rows],
                         "offset": [r[1] for r in rows], "duration": [r[2] for r in rows]})


@pytest.mark.parametrize("sample_rate", [22050, 16000, 8000, 48000])
@pytest.mark.parametrize("before,after", [(1.0, 0.5), (0.3, 1.2)])
def test_leading_and_trailing_silence_match_the_padding(speech, sample_rate, before, after):
    y, sr = speech
    if sample_rate != sr:
        import soxr

        y = soxr.resample(y, sr, sample_rate).astype(np.float32)
    m = speech_activity(padded(y, sample_rate, before, after), sample_rate)
    assert m["leading_silence"] == pytest.approx(before, abs=0.15)
    assert m["trailing_silence"] == pytest.approx(after, abs=0.15)
    assert m["speech_duration"] == pytest.approx(len(y) / sample_rate, abs=0.4)
    total = before + after + len(y) / sample_rate
    assert m["speech_ratio"] == pytest.approx(m["speech_duration"] / total, rel=1e-3)


@pytest.mark.parametrize("signal", [
    silence(3.0, 16000),
    noise(3.0, 16000, level=0.03),
    noise(3.0, 16000, level=0.3, seed=2),
    0.3 * np.sin(2 * np.pi * 50 * np.arange(48000) / 16000).astype(np.float32),  # mains hum
], ids=["silence", "hiss", "loud-noise", "hum"])
def test_no_speech_means_zero_speech_duration(signal):
    need_vad()
    m = speech_activity(signal, 16000)
    assert m["speech_duration"] == pytest.approx(0.0, abs=0.1)
    assert m["speech_ratio"] == pytest.approx(0.0, abs=0.05)


def test_empty_segment_has_no_speech_and_no_ratio():
    need_vad()
    m = speech_activity(np.zeros(0, dtype=np.float32), 16000)
    assert m["speech_duration"] == 0.0 and np.isnan(m["speech_ratio"])


FRAME = 0.032


@pytest.mark.parametrize("probs,expected", [
    ([0.0] * 10, []),
    ([0.9] * 10, [(0.0, 10 * FRAME)]),
    ([0.0] * 5 + [0.9] * 4 + [0.0] * 5, []),                                 # 128 ms blip < 250 ms
    ([0.9] * 10 + [0.0] * 2 + [0.9] * 10, [(0.0, 22 * FRAME)]),               # 64 ms pause bridged
    ([0.9] * 10 + [0.0] * 5 + [0.9] * 10, [(0.0, 10 * FRAME), (15 * FRAME, 25 * FRAME)]),
    ([0.9] * 10 + [0.4] * 5 + [0.9] * 10, [(0.0, 25 * FRAME)]),               # 0.4 ≥ 0.5 - 0.15: still speech
], ids=["silent", "all-speech", "blip-dropped", "short-pause-bridged", "long-pause-splits", "hysteresis"])
def test_speech_intervals_follow_silero_rules(probs, expected):
    got = speech_intervals(np.array(probs), VadParams(pad_s=0.0))
    assert got.shape == (len(expected), 2)
    assert np.allclose(got, np.array(expected).reshape(-1, 2))


def test_padding_is_clipped_to_the_audio_and_merges_neighbours():
    probs = np.array([0.9] * 10 + [0.0] * 4 + [0.9] * 10)
    got = speech_intervals(probs, VadParams(pad_s=0.1, min_silence_s=0.1), n_samples=24 * 512)
    assert np.allclose(got, [[0.0, 24 * FRAME]])


def test_the_model_is_loaded_once_per_process():
    need_vad()
    assert load_model() is load_model()


@pytest.mark.parametrize("workers", [1, 2])
def test_vad_columns_measure_each_row_segment(table, speech, workers):
    y, sr = speech
    calls: list[tuple[int, int]] = []
    out = vad_columns(table, workers=workers, callback=lambda done, total: calls.append((done, total)))
    assert list(out.columns) == [*VAD_COLUMNS, "quality_error"]
    assert out.index.equals(table.index)
    for row in (0, 1):  # the file, and the same speech as an offset segment of a longer file
        assert out.loc[row, "leading_silence"] == pytest.approx(1.0, abs=0.15)
        assert out.loc[row, "trailing_silence"] == pytest.approx(0.5, abs=0.15)
        assert out.loc[row, "speech_duration"] == pytest.approx(len(y) / sr, abs=0.4)
    assert out.loc[2:3, "speech_duration"].tolist() == pytest.approx([0.0, 0.0], abs=0.1)
    assert "missing.wav: file not found" in out.loc[4, "quality_error"]
    assert "names no audio file" in out.loc[5, "quality_error"]
    assert out.loc[4:5, "speech_duration"].isna().all()
    assert out.loc[:3, "quality_error"].isna().all()
    assert calls[-1] == (len(table), len(table))


def test_all_measures_come_from_one_read(table):
    out = measure_segments(table.iloc[:4], ("vad", "hash", "loudness", "levels"), workers=1)
    assert out["sample_rate"].tolist() == [22050.0] * 4
    assert out["clipping_ratio"].tolist() == pytest.approx([0.0] * 4)
    assert out["lufs"].iloc[:3].notna().all() and np.isnan(out.loc[3, "lufs"])  # silence: no loudness
    assert out["audio_hash"].str.len().tolist() == [32] * 4
    assert out["speech_duration"].iloc[0] > 3


def test_unknown_measure_names_the_choices():
    with pytest.raises(ValueError, match="choose from vad, hash, loudness, levels"):
        SegmentMeasures(("vda",))


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_stops_the_run(table, workers):
    big = pd.concat([table.iloc[:4]] * 20, ignore_index=True)
    stop = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        stop.set()  # a user pressing "cancel" after the first batch

    with pytest.raises(Cancelled) as info:
        vad_columns(big, workers=workers, callback=progress, cancel=stop)
    assert info.value.done == seen[-1] < len(big) == info.value.total


def test_runs_from_a_threaded_process(table):
    """A web server calls from a thread: workers then start by forkserver, not fork."""
    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)
    other.start()
    try:
        threaded = vad_columns(table, workers=2)
    finally:
        release.set()
        other.join()
    pd.testing.assert_frame_equal(threaded, vad_columns(table, workers=1))


FALLBACK_SCRIPT = """
import json, sys, threading
import pandas as pd
from sde.quality.segments import vad_columns
release = threading.Event()
threading.Thread(target=release.wait, daemon=True).start()  # a thread: workers use forkserver
table = pd.DataFrame({"audio_path": [sys.argv[1]] * 8, "offset": 0.0, "duration": None})
print(json.dumps(vad_columns(table, workers=2)["leading_silence"].tolist()))
release.set()
"""


def test_workers_that_cannot_start_fall_back_to_this_process(table):
    """Read from stdin, __main__ cannot be re-imported by forkserver workers: the pool breaks and
    the rows are measured in the calling process instead."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-", table.loc[0, "audio_path"]], input=FALLBACK_SCRIPT, text=True,
                          capture_output=True, timeout=120, cwd=root, env={"PYTHONPATH": str(root), "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == pytest.approx([1.0] * 8, abs=0.15)
