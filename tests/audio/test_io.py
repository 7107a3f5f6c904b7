"""sde.audio.io on real audio files: exact segments, every format and sample rate, errors that name
the file and why, truncated files, long segments read block by block."""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.audio import (
    AUDIO_METRIC_COLUMNS,
    BLOCK_FRAMES,
    AudioError,
    WavStream,
    audio_metrics,
    compute_audio_metrics,
    display_data,
    open_segment,
    read_segment,
    spectrogram,
)
from tests.audio.audio_kit import RAMP_SCALE, segments_table, sine, write


@pytest.mark.parametrize("fmt,subtype,scale", [("WAV", "FLOAT", RAMP_SCALE),
                                               ("FLAC", "PCM_24", 2.0 ** -23)])
def test_segment_bounds_are_exact_to_the_sample(tmp_path, fmt, subtype, scale):
    sr = 16000
    n = 5 * sr
    ramp = (np.arange(n) * scale).astype(np.float32)  # sample i holds i
    path = write(tmp_path / f"ramp.{fmt.lower()}", ramp, sr, format=fmt, subtype=subtype)
    for offset, duration in [(0.0, 1.0), (1.2345, 0.5), (2.0, 0.0001), (4.5, None), (3.0, 10.0)]:
        seg = read_segment(path, offset, duration)
        start = round(offset * sr)
        stop = n if duration is None else min(n, start + round(duration * sr))
        got = np.rint(seg.samples.astype(np.float64) / scale).astype(np.int64)
        np.testing.assert_array_equal(got, np.arange(start, stop))
        assert seg.duration == pytest.approx((stop - start) / sr)
        assert seg.sample_rate == sr and seg.channels == 1
        assert seg.file_duration == pytest.approx(5.0)


def test_long_file_reads_only_the_segment(long_file):
    t0 = time.perf_counter()
    seg = read_segment(long_file, 1234.0, 3.0)
    elapsed = time.perf_counter() - t0
    assert seg.duration == pytest.approx(3.0)
    assert seg.file_duration == pytest.approx(1800.0)
    assert elapsed < 0.5  # a whole-file read (14.4 M samples) would be far slower than a seek
    m = audio_metrics(long_file, 1234.0, 3.0)
    assert m["silence_start"] == pytest.approx(0.5, abs=0.011)
    assert m["silence_end"] == pytest.approx(0.5, abs=0.011)
    assert m["peak_dbfs"] == pytest.approx(-6.02, abs=0.05)
    # The end of the file: a segment that runs past it is shortened, not an error.
    tail = read_segment(long_file, 1799.5, 2.0)
    assert tail.duration == pytest.approx(0.5)


def test_offset_beyond_end_names_the_real_length(tmp_path, long_file):
    path = write(tmp_path / "two.wav", sine(440, 2.0, 16000, 0.5), 16000)
    with pytest.raises(AudioError) as exc:
        read_segment(path, 5.0, 1.0)
    assert exc.value.reason == "offset"
    assert "two.wav" in str(exc.value) and "beyond the end" in str(exc.value)
    assert "2.000 s long" in str(exc.value)
    with pytest.raises(AudioError, match=r"1800\.000 s long"):
        read_segment(long_file, 1900.0, 1.0)


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100])
def test_any_sample_rate(tmp_path, sr):
    path = write(tmp_path / f"tone_{sr}.wav", sine(1000, 3.0, sr, 0.5), sr)
    seg = read_segment(path, 1.0, 1.5)
    assert seg.sample_rate == sr
    assert len(seg.samples) == round(1.5 * sr)
    times, freqs, db = spectrogram(seg.samples, sr)
    assert db.shape == (len(freqs), len(times))
    assert db.shape[0] <= 256 and db.shape[1] <= 400
    assert freqs[-1] <= sr / 2
    assert abs(freqs[np.argmax(db.max(axis=1))] - 1000) <= sr / 256 + 1  # the tone's row
    m = audio_metrics(path, 1.0, 1.5)
    assert m["sample_rate"] == sr and m["audio_duration"] == pytest.approx(1.5)


def test_stereo_is_mixed_to_mono_and_channels_reported(tmp_path):
    sr = 16000
    left = np.full(sr, 0.5, dtype=np.float32)
    right = np.full(sr, 0.25, dtype=np.float32)
    right[:10] = 1.0  # only one channel clips: metrics must still see it
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), sr, subtype="FLOAT")
    seg = read_segment(path)
    assert seg.channels == 2 and seg.samples.ndim == 1
    np.testing.assert_allclose(seg.samples[10:], 0.375)
    m = audio_metrics(path)
    assert m["channels"] == 2
    assert m["clipping_ratio"] == pytest.approx(10 / (2 * sr))
    assert m["peak_dbfs"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("fmt,subtype,ext", [("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg"),
                                              ("OGG", "OPUS", "opus"), ("MP3", None, "mp3")])
def test_compressed_formats(tmp_path, fmt, subtype, ext):
    sr = 16000 if fmt != "OGG" or subtype != "OPUS" else 48000
    x = sine(440, 3.0, sr, 0.5)
    try:
        path = write(tmp_path / f"tone.{ext}", x, sr, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, ValueError, TypeError):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
    seg = read_segment(path, 1.0, 1.0)
    assert seg.sample_rate == sr
    assert abs(len(seg.samples) - sr) <= 2
    assert np.abs(seg.samples).max() == pytest.approx(0.5, abs=0.06)


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="needs ffmpeg")
def test_formats_libsndfile_cannot_read_go_through_ffmpeg(tmp_path):
    src = write(tmp_path / "src.wav", sine(440, 3.0, 16000, 0.5), 16000)
    m4a = str(tmp_path / "tone.m4a")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", src, m4a], check=True)
    seg = read_segment(m4a, 1.0, 1.0)
    assert seg.sample_rate == 16000 and seg.channels == 1
    assert len(seg.samples) == 16000
    assert np.abs(seg.samples).max() == pytest.approx(0.5, abs=0.06)
    with pytest.raises(AudioError, match="beyond the end"):
        read_segment(m4a, 10.0, 1.0)


def test_errors_name_the_file_and_why(tmp_path):
    good = write(tmp_path / "good.wav", sine(440, 2.0, 16000, 0.5), 16000, subtype="PCM_16")
    data = Path(good).read_bytes()

    cases: dict[str, tuple[str, str]] = {}
    cases[str(tmp_path / "missing.wav")] = ("not_found", "file not found")
    (tmp_path / "zero.wav").write_bytes(b"")
    cases[str(tmp_path / "zero.wav")] = ("empty", "zero-byte")
    (tmp_path / "text.wav").write_text("this is not audio at all\n" * 20)
    cases[str(tmp_path / "text.wav")] = ("unreadable", "not a sound file")
    (tmp_path / "text.mp3").write_text("ID3? no, just text\n" * 20)
    cases[str(tmp_path / "text.mp3")] = ("unreadable", "not a sound file")
    (tmp_path / "header_only.wav").write_bytes(data[:30])
    cases[str(tmp_path / "header_only.wav")] = ("unreadable", "corrupt")
    (tmp_path / "sub").mkdir()
    cases[str(tmp_path / "sub")] = ("not_a_file", "directory")
    for path, (reason, words) in cases.items():
        with pytest.raises(AudioError) as exc:
            read_segment(path, 0.0, 1.0)
        assert exc.value.reason == reason, path
        assert path in str(exc.value) and words in str(exc.value)
        m = audio_metrics(path, 0.0, 1.0)
        assert m["audio_error"] == str(exc.value)
        assert all(math.isnan(m[c]) for c in AUDIO_METRIC_COLUMNS
                   if c not in ("audio_error", "duration_mismatch"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied(tmp_path):
    path = write(tmp_path / "locked.wav", sine(440, 1.0, 16000), 16000)
    os.chmod(path, 0)
    try:
        with pytest.raises(AudioError, match="permission denied"):
            read_segment(path)
    finally:
        os.chmod(path, 0o644)


@pytest.mark.parametrize("offset,duration,seconds", [
    (0.25, 0.5, 0.5),   # inside the data that is there: served, flagged truncated
    (0.5, 0.55, 0.5),   # past the end by less than DURATION_TOLERANCE (rounded durations)
    (0.5, None, 0.5),   # "to the end of the file": the end of the data
])
def test_truncated_wav_serves_segments_inside_its_data(cut_wav, offset, duration, seconds):
    seg = read_segment(cut_wav, offset, duration)
    assert seg.truncated and seg.duration == pytest.approx(seconds, abs=0.01)


@pytest.mark.parametrize("offset,duration,words", [
    (0.5, 1.0, "expected audio up to 1.500 s (the end of the segment), the file has 1.000 s "
               "(its header announces 2.000 s)"),
    (1.5, 0.5, "1.000 s long"),
])
def test_segment_past_the_end_of_a_truncated_wav_is_an_error(cut_wav, offset, duration, words):
    with pytest.raises(AudioError) as exc:
        read_segment(cut_wav, offset, duration)
    assert exc.value.reason == "truncated" and "truncated" in str(exc.value)
    assert cut_wav in str(exc.value) and words in str(exc.value)


def test_truncated_flac_is_an_error_not_a_crash(tmp_path):
    path = write(tmp_path / "full.flac", sine(440, 2.0, 16000, 0.5), 16000)
    data = Path(path).read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="cut.flac.*(corrupt|truncated)"):
        read_segment(str(cut))


def test_wrong_extension_still_reads_by_content(tmp_path):
    x = sine(440, 1.0, 16000, 0.5)
    path = write(tmp_path / "really_a_wav.flac", x, 16000, format="WAV", subtype="FLOAT")
    np.testing.assert_allclose(read_segment(path).samples, x, rtol=0, atol=1e-7)


def test_long_segment_is_read_block_by_block(long_noise):
    path, x = long_noise
    with open_segment(path, 0.0, None) as reader:
        assert not reader.fits_in_memory and reader.frames == len(x)
        sizes = [len(b) for b in reader.blocks()]
        assert max(sizes) == BLOCK_FRAMES and sum(sizes) == len(x)
        np.testing.assert_allclose(reader.read(len(x) - 10, 100), x[-10:], atol=1e-6)


@pytest.mark.parametrize("offset, duration", [(0.0, None), (1.3, 7.5)], ids=["whole file", "a segment"])
def test_an_mp3_read_block_by_block_equals_one_read(tmp_path, offset, duration):
    """libsndfile decodes MP3 wrongly after a read boundary (errors of ~0.35 on a 0.3 sine): every
    MP3 segment longer than a block (4 s at 16 kHz, 1.4 s at 48 kHz) was played, drawn and measured
    with garbage after each boundary."""
    sr = 16_000
    t = np.arange(10 * sr) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 0.5 * t)
    try:
        path = write(tmp_path / "tone.mp3", x, sr, format="MP3")
    except (sf.LibsndfileError, ValueError, TypeError):
        pytest.skip("this libsndfile cannot write MP3")
    once = sf.read(path, dtype="float32")[0]
    first = int(round(offset * sr))
    expected = once[first:first + (len(once) if duration is None else int(round(duration * sr)))]
    with open_segment(path, offset, duration) as reader:
        blocks = np.concatenate(list(reader.blocks(block_frames=10_000)))
    with open_segment(path, offset, duration) as reader:
        whole = reader.segment().samples
    for got in (blocks, whole):
        assert len(got) == len(expected)
        np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="needs ffmpeg")
def test_long_segments_of_formats_only_ffmpeg_reads_stream_too(tmp_path, monkeypatch):
    import sde.audio.io

    src = write(tmp_path / "src.wav", sine(440, 3.0, 16000, 0.5), 16000)
    m4a = str(tmp_path / "tone.m4a")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", src, m4a], check=True)
    # A 3 s file stands in for an hour-long one: the in-memory limit is what decides the path.
    monkeypatch.setattr(sde.audio.io, "IN_MEMORY_MAX_FRAMES", 1000)
    with open_segment(m4a, 0.5, 2.0) as reader:
        assert not reader.fits_in_memory and reader.frames == 32000
        stream = WavStream(reader)
        body = stream.read(stream.size + 10)
        while len(body) < stream.size:
            body += stream.read(stream.size)
    back, sr = sf.read(io.BytesIO(body), dtype="float32")
    assert sr == 16000 and len(back) == 32000
    assert np.abs(back[1000:-1000]).max() == pytest.approx(0.5, abs=0.06)
    with open_segment(m4a, 0.5, 2.0) as reader:
        data = display_data(reader)
    assert data.duration == pytest.approx(2.0) and len(data.env_mins) <= 2000


def test_truncated_flac_too_long_to_decode_whole_is_refused_up_front(long_noise, tmp_path):
    path, x = long_noise
    cut = tmp_path / "cut.flac"
    data = Path(path).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError) as exc:
        open_segment(str(cut), 0.0, len(x) / 8000)
    assert exc.value.reason == "truncated"
    assert str(cut) in str(exc.value) and "expected audio up to" in str(exc.value)


@pytest.mark.parametrize("field,value", [
    ("offset", 1e308), ("offset", math.inf), ("offset", math.nan), ("offset", -1.0),
    ("offset", 2e9), ("duration", 1e308), ("duration", math.inf), ("duration", math.nan),
    ("duration", -0.5),
])
def test_impossible_offsets_and_durations_name_the_field_value_and_fix(tmp_path, field, value):
    path = write(tmp_path / "ok.wav", sine(440, 1.0, 8000, 0.5), 8000)
    args = {"offset": 0.0, "duration": 0.5, field: value}
    with pytest.raises(AudioError) as exc:
        read_segment(path, args["offset"], args["duration"])
    assert exc.value.reason == "invalid" and exc.value.field == field
    assert exc.value.value == pytest.approx(value, nan_ok=True)
    text = str(exc.value)
    assert path in text and f"invalid {field} {value:g}" in text and f'fix this line\'s "{field}"' in text
    if math.isfinite(value):  # metric tables read NaN/inf as "absent": offset 0, to the end
        m = audio_metrics(path, args["offset"], args["duration"])
        assert "invalid" in m["audio_error"]
        out = compute_audio_metrics(segments_table([(path, args["offset"], args["duration"])]), workers=1)
        assert "invalid" in out["audio_error"].iloc[0]


def test_a_format_only_ffmpeg_decodes_says_to_install_ffmpeg_where_it_is_missing(tmp_path):
    # Without ffmpeg an M4A was "not a sound file, or corrupt": the fallback (audioread through
    # librosa, which librosa 1.0 removed) only asked libsndfile again. The file is fine: say so.
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg makes the M4A")
    write(tmp_path / "a.wav", sine(440.0, 0.5, 16000), 16000)
    made = subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(tmp_path / "a.wav"), "-c:a", "aac",
                           str(tmp_path / "a.m4a")], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    (tmp_path / "nobin").mkdir()
    read = subprocess.run([sys.executable, "-c", "import sys; from sde.audio.io import AudioError, read_segment\n"
                           "try:\n    read_segment(sys.argv[1])\nexcept AudioError as e:\n    print(e)",
                           str(tmp_path / "a.m4a")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": str(tmp_path / "nobin"), "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert read.returncode == 0, read.stderr
    said = read.stdout.strip()
    assert said.startswith(f"{tmp_path / 'a.m4a'}: no decoder installed reads it (extension '.m4a')"), said
    assert "install ffmpeg" in said and "not a sound file" not in said
