"""sde.audio_quality: the audio-quality summary of the Statistics page and /api/audio-quality,
checked by hand on a small table and on a dataset measured from real audio files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sde.audio_quality import (
    FILTER_BELOW_TTS_RATE,
    FILTER_CLIPPED,
    FILTER_MISMATCH,
    FILTER_NOT_ASR_RATE,
    FILTER_UNREADABLE,
    audio_quality_summary,
    count_files,
    has_audio_metrics,
    with_measured_audio,
)
from sde.dataset import build_dataset
from sde.query import TableQuery

NAN = float("nan")


def _table() -> pd.DataFrame:
    """7 utterances over 6 files: rates 16k / 8k / 44.1k stereo / two missing / one 22.05 kHz
    recording cut into two segments."""
    rows = [
        # audio_path, duration, sample_rate, channels, audio_duration, mismatch, clipping, error
        ("/d/a.wav", 2.0, 16000, 1, 2.0, False, 0.0, None),
        ("/d/b.wav", 2.0, 8000, 1, 2.5, True, 0.01, None),
        ("/d/c.wav", 3.0, 44100, 2, 3.0, False, 0.0005, None),
        ("/d/d.wav", 1.0, NAN, NAN, NAN, False, NAN, "/d/d.wav: file not found"),
        ("/d/e.wav", 1.0, NAN, NAN, NAN, False, NAN, "/d/e.wav: file not found"),
        ("/d/long.wav", 5.0, 22050, 1, 5.0, False, 0.0, None),
        ("/d/long.wav", 4.0, 22050, 1, 4.0, False, 0.0, None),
    ]
    df = pd.DataFrame(rows, columns=["audio_path", "duration", "sample_rate", "channels", "audio_duration",
                                     "duration_mismatch", "clipping_ratio", "audio_error"])
    df.insert(0, "id", np.arange(len(df), dtype="int64"))
    df["audio_path"] = df["audio_path"].astype("string[pyarrow]")
    df["audio_error"] = df["audio_error"].astype("string[pyarrow]")
    df["file_duration"] = df["audio_duration"]
    df["peak_dbfs"] = [-3.0, -1.0, -6.0, NAN, NAN, -10.0, -12.0]
    df["rms_dbfs"] = [-20.0, -18.0, -25.0, NAN, NAN, -30.0, -28.0]
    df["silence_start"] = [0.1, 0.2, 0.3, NAN, NAN, 0.4, 0.5]
    df["silence_end"] = [0.0, 0.1, 0.2, NAN, NAN, 0.3, 0.4]
    df["bandwidth_hz"] = [7800.0, 3900.0, 20000.0, NAN, NAN, 11000.0, 10000.0]
    return df


def test_has_audio_metrics_needs_the_whole_set():
    df = _table()
    assert has_audio_metrics(df)
    assert not has_audio_metrics(df.drop(columns=["audio_error"]))
    # A manifest field called sample_rate alone is not a measurement.
    assert not has_audio_metrics(pd.DataFrame({"id": [0], "sample_rate": [16000]}))


def test_unmeasured_summary_counts_files():
    df = _table()[["id", "audio_path", "duration"]]
    s = audio_quality_summary(df)
    assert s == {"measured": False, "utterances": 7, "files": 6}
    assert count_files(df) == 6


def test_summary_by_hand():
    s = audio_quality_summary(_table())
    json.dumps(s, allow_nan=False)  # JSON-safe: no NaN, no numpy scalars
    assert s["measured"] is True
    assert (s["utterances"], s["files"]) == (7, 6)
    assert (s["measured_utterances"], s["measured_files"]) == (5, 4)

    u = s["unreadable"]
    assert (u["utterances"], u["files"], u["filter"]) == (2, 2, FILTER_UNREADABLE)
    assert u["reasons"] == [{"reason": "file not found", "utterances": 2}]
    assert [e["id"] for e in u["examples"]] == [3, 4]
    assert u["examples"][0] == {"id": 3, "path": "/d/d.wav", "error": "/d/d.wav: file not found"}

    m = s["duration_mismatch"]
    assert (m["utterances"], m["tolerance_s"], m["max_abs_diff_s"], m["filter"]) == (1, 0.1, 0.5, FILTER_MISMATCH)

    c = s["clipped"]  # 0.01 > 0.001 counts; 0.0005 does not; NaN never
    assert (c["utterances"], c["threshold"], c["filter"]) == (1, 0.001, FILTER_CLIPPED)

    assert s["sample_rates"] == [
        {"sample_rate": 8000, "files": 1, "utterances": 1, "hours": round(2 / 3600, 4)},
        {"sample_rate": 16000, "files": 1, "utterances": 1, "hours": round(2 / 3600, 4)},
        {"sample_rate": 22050, "files": 1, "utterances": 2, "hours": round(9 / 3600, 4)},
        {"sample_rate": 44100, "files": 1, "utterances": 1, "hours": round(3 / 3600, 4)},
    ]
    assert [(r["channels"], r["files"], r["utterances"]) for r in s["channels"]] == [(1, 3, 4), (2, 1, 1)]

    asr, tts = s["readiness"]["asr"], s["readiness"]["tts"]
    # Not 16 kHz: b (8k), c (44.1k), long (22.05k, one file in two segments). Unreadable: not judged.
    assert (asr["ok"], asr["status"], asr["files"], asr["utterances"]) == (False, "warning", 3, 4)
    assert asr["message"] == ("3 files are not 16 kHz: NeMo ASR models expect 16 kHz; "
                              "resample them (e.g. sox in.wav -r 16000 out.wav)")
    assert asr["filter"] == FILTER_NOT_ASR_RATE
    # Below 22.05 kHz: a (16k), b (8k); 22.05 kHz itself is fine.
    assert (tts["ok"], tts["files"], tts["utterances"]) == (False, 2, 2)
    assert tts["message"] == "2 files below 22.05 kHz: too low for TTS training"
    assert tts["filter"] == FILTER_BELOW_TTS_RATE

    lv = s["levels"]
    assert lv["median_peak_dbfs"] == -6.0
    assert lv["median_rms_dbfs"] == -25.0
    assert lv["median_silence_start_s"] == 0.3
    assert lv["median_bandwidth_hz"] == 10000.0


def test_each_filter_selects_the_counted_rows():
    df = _table()
    q = TableQuery(df)
    assert q.select(FILTER_UNREADABLE).tolist() == [3, 4]
    assert q.select(FILTER_MISMATCH).tolist() == [1]
    assert q.select(FILTER_CLIPPED).tolist() == [1]
    assert q.select(FILTER_NOT_ASR_RATE).tolist() == [1, 2, 5, 6]
    assert q.select(FILTER_BELOW_TTS_RATE).tolist() == [0, 1]
    # The same with the object-dtype columns a cache or older builds may hand back.
    obj = df.astype({"audio_error": object, "duration_mismatch": object})
    assert TableQuery(obj).select(FILTER_UNREADABLE).tolist() == [3, 4]
    assert audio_quality_summary(obj)["unreadable"]["utterances"] == 2
    assert audio_quality_summary(obj)["duration_mismatch"]["utterances"] == 1


def test_all_ready_and_nothing_readable():
    df = _table().iloc[[0]].reset_index(drop=True)  # one good 16 kHz file
    s = audio_quality_summary(df)
    assert s["readiness"]["asr"]["status"] == "ok"
    assert s["readiness"]["asr"]["message"] == "The one readable file is 16 kHz, as NeMo ASR models expect."
    assert s["readiness"]["tts"]["status"] == "warning"
    assert s["readiness"]["tts"]["message"] == "1 file below 22.05 kHz: too low for TTS training"

    bad = _table().iloc[[3, 4]].reset_index(drop=True)
    s = audio_quality_summary(bad)
    assert s["measured_files"] == 0 and s["sample_rates"] == [] and s["channels"] == []
    assert s["readiness"]["asr"]["status"] == s["readiness"]["tts"]["status"] == "unknown"
    assert s["levels"]["median_peak_dbfs"] is None
    assert s["duration_mismatch"]["max_abs_diff_s"] is None
    json.dumps(s, allow_nan=False)

    empty = audio_quality_summary(_table().iloc[:0])
    assert (empty["utterances"], empty["files"], empty["measured_files"]) == (0, 0, 0)
    json.dumps(empty, allow_nan=False)


# ---------------------------------------------------------------- real audio


def write_audio_set(folder: Path) -> list[dict]:
    """Manifest rows over real files: 8 / 16 (FLAC) / 22.05 / 44.1 kHz (stereo) sines, a clipped
    16 kHz square wave, one missing file, and one line whose duration is 0.5 s off."""
    folder.mkdir(parents=True, exist_ok=True)

    def sine(sr: int, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
        t = np.arange(int(sr * seconds)) / sr
        y = 0.3 * np.sin(2 * np.pi * 440 * t)
        return np.stack([y] * channels, axis=1) if channels > 1 else y

    sf.write(folder / "r8k.wav", sine(8000), 8000, subtype="PCM_16")
    sf.write(folder / "r16k.flac", sine(16000), 16000, subtype="PCM_16")
    sf.write(folder / "r22k.wav", sine(22050), 22050, subtype="PCM_16")
    sf.write(folder / "r44k.wav", sine(44100, channels=2), 44100, subtype="PCM_16")
    t = np.arange(16000) / 16000
    sf.write(folder / "clipped.wav", np.sign(np.sin(2 * np.pi * 200 * t)), 16000, subtype="PCM_16")
    return [
        {"audio_filepath": "r8k.wav", "duration": 1.0, "text": "eight"},
        {"audio_filepath": "r16k.flac", "duration": 1.0, "text": "sixteen"},
        {"audio_filepath": "r22k.wav", "duration": 1.5, "text": "twenty two"},   # 0.5 s too long
        {"audio_filepath": "r44k.wav", "duration": 1.0, "text": "forty four"},
        {"audio_filepath": "clipped.wav", "duration": 1.0, "text": "clipped"},
        {"audio_filepath": "missing.wav", "duration": 1.0, "text": "missing"},
    ]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    d = tmp_path_factory.mktemp("aq")
    rows = write_audio_set(d)
    manifest = d / "manifest.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return with_measured_audio(build_dataset(manifest, workers=1), workers=1)


def test_real_audio_summary_and_flags(measured):
    utt = measured.utterances
    assert has_audio_metrics(utt)
    s = audio_quality_summary(utt)
    json.dumps(s, allow_nan=False)
    assert (s["utterances"], s["files"], s["measured_files"]) == (6, 6, 5)
    assert s["unreadable"]["utterances"] == 1
    assert s["unreadable"]["reasons"] == [{"reason": "file not found", "utterances": 1}]
    assert s["unreadable"]["examples"][0]["id"] == 5
    assert s["duration_mismatch"]["utterances"] == 1
    assert s["duration_mismatch"]["max_abs_diff_s"] == pytest.approx(0.5, abs=1e-3)
    assert s["clipped"]["utterances"] == 1
    assert {r["sample_rate"]: r["files"] for r in s["sample_rates"]} == {8000: 1, 16000: 2, 22050: 1, 44100: 1}
    assert {r["channels"]: r["files"] for r in s["channels"]} == {1: 4, 2: 1}
    asr, tts = s["readiness"]["asr"], s["readiness"]["tts"]
    assert (asr["status"], asr["files"]) == ("warning", 3)            # 8k, 22.05k, 44.1k
    assert asr["message"].startswith("3 files are not 16 kHz: NeMo ASR models expect 16 kHz")
    assert (tts["status"], tts["files"]) == ("warning", 3)            # 8k, 16k FLAC, clipped 16k
    assert tts["message"] == "3 files below 22.05 kHz: too low for TTS training"


def test_real_audio_filters_select_the_right_lines(measured):
    q = measured.utterance_query
    ids = measured.utterances["id"].to_numpy()
    names = measured.utterances["audio_filepath"].tolist()

    def sel(f):
        return sorted(names[i] for i in ids[q.select(f)])

    assert sel(FILTER_UNREADABLE) == ["missing.wav"]
    assert sel(FILTER_MISMATCH) == ["r22k.wav"]
    assert sel(FILTER_CLIPPED) == ["clipped.wav"]
    assert sel(FILTER_NOT_ASR_RATE) == ["r22k.wav", "r44k.wav", "r8k.wav"]
    assert sel(FILTER_BELOW_TTS_RATE) == ["clipped.wav", "r16k.flac", "r8k.wav"]


@pytest.mark.parametrize("rows, changed", [
    ([1], ["r16k.flac"]),                       # one file
    ([0, 5], ["r8k.wav", "missing.wav"]),       # a file, and one that came since
    ([], []),                                   # nothing
])
def test_measuring_some_rows_again_keeps_the_others(tmp_path, rows, changed):
    """``rows``: only those utterances are measured; the others keep their metrics even where their
    file no longer reads as what was measured."""
    lines = write_audio_set(tmp_path)
    (tmp_path / "manifest.json").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    before = with_measured_audio(build_dataset(tmp_path / "manifest.json", workers=1), workers=1)
    for name in ("r8k.wav", "r16k.flac", "missing.wav"):
        sf.write(tmp_path / name, np.zeros(4000), 4000, subtype="PCM_16")  # 4 kHz silence everywhere
    after = with_measured_audio(before, workers=1, rows=np.array(rows, dtype=np.int64))
    rates = dict(zip([r["audio_filepath"] for r in lines], after.utterances["sample_rate"].tolist()))
    old = dict(zip([r["audio_filepath"] for r in lines], before.utterances["sample_rate"].tolist()))
    assert {n for n in rates if rates[n] == 4000} == set(changed)
    assert all(rates[n] == old[n] or np.isnan(old[n]) and np.isnan(rates[n]) for n in rates if n not in changed)
    errors = after.utterances["audio_error"]
    assert str(errors.dtype) == str(before.utterances["audio_error"].dtype)
    assert errors.isna().tolist() == [True] * 5 + ["missing.wav" in changed]


def test_measuring_some_rows_again_needs_measured_rows(measured):
    from sde.audio_quality import StaleMetrics

    plain = build_dataset(measured.manifest_path, workers=1)
    with pytest.raises(StaleMetrics):
        with_measured_audio(plain, workers=1, rows=np.array([0]))


@pytest.mark.parametrize("threads, said", [
    (1, "measuring audio (here; --threads sets how many)"),
    (3, "measuring audio (in 3 worker processes; --threads sets how many)"),  # was 2 whatever --threads said
], ids=["one", "three"])
def test_measuring_audio_uses_the_processes_threads_allows(tmp_path, threads_setting, threads, said):
    rows = write_audio_set(tmp_path)
    (tmp_path / "m.json").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    threads_setting(threads=threads)
    heard: list[str] = []
    table = with_measured_audio(build_dataset(tmp_path / "m.json", workers=1), status=heard.append).utterances
    assert heard == [said]
    assert table["sample_rate"].tolist()[:5] == [8000, 16000, 22050, 44100, 16000]
