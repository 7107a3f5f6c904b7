"""sde.audio and sde.web.signal_figure on real audio files written into tmp_path."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sde.audio import (AUDIO_METRIC_COLUMNS, BLOCK_FRAMES, DB_FLOOR, IN_MEMORY_MAX_FRAMES,
                       AudioError, Segment, WavStream, audio_metrics, compute_audio_metrics,
                       display_data, envelope, ogg_bytes, ogg_stream, open_segment, read_segment,
                       spectrogram, wav_bytes)
from sde.web.signal_figure import error_figure, figure_json_size, signal_figure

RAMP_SCALE = 2.0 ** -24  # float32 holds i * 2**-24 exactly for i < 2**24


def sine(freq: float, seconds: float, sr: int, amp: float = 1.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path: Path, data: np.ndarray, sr: int, **kw) -> str:
    sf.write(str(path), data, sr, **kw)
    return str(path)


@pytest.fixture(scope="module")
def long_file(tmp_path_factory) -> str:
    """30-minute 8 kHz mono 16-bit WAV: silence with a 1 kHz tone over [1234.5, 1236.5) s,
    written in 60 s blocks so the test never holds the whole file in memory."""
    sr = 8000
    path = tmp_path_factory.mktemp("long") / "thirty_minutes.wav"
    block = np.zeros(60 * sr, dtype=np.float32)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for minute in range(30):
            if minute == 20:  # 1200..1260 s
                b = block.copy()
                start = int((1234.5 - 1200) * sr)
                b[start:start + 2 * sr] = sine(1000, 2.0, sr, 0.5)
                f.write(b)
            else:
                f.write(block)
    return str(path)


# ---------------------------------------------------------------------------------- reading


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


@pytest.fixture
def cut_wav(tmp_path) -> str:
    """A WAV whose header announces 2 s and that holds 1 s of samples."""
    path = write(tmp_path / "full.wav", sine(440, 2.0, 16000, 0.5), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(Path(path).read_bytes()[: 44 + 2 * 16000])
    return str(cut)


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


def test_metrics_still_measure_what_a_truncated_wav_holds(cut_wav):
    m = audio_metrics(cut_wav, 0.0, 2.0)
    assert m["duration_mismatch"] and m["audio_duration"] == pytest.approx(1.0, abs=0.01)


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


# ---------------------------------------------------------------------------------- encoding


def test_wav_bytes_is_16_bit_pcm(tmp_path):
    x = sine(440, 0.5, 22050, 0.8)
    seg = Segment(x, 22050, 2, "x.wav", 0.0, 0.5)
    data = wav_bytes(seg)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert len(data) == 44 + 2 * len(x)
    info = sf.info(io.BytesIO(data))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
    back, _ = sf.read(io.BytesIO(data), dtype="float32")
    np.testing.assert_allclose(back, x, atol=1.5 / 32768)
    # Out-of-range samples are clipped, not wrapped.
    loud = wav_bytes(Segment(np.array([2.0, -2.0], np.float32), 8000, 1, "", 0.0, 0.0))
    np.testing.assert_array_equal(np.frombuffer(loud[44:], "<i2"), [32767, -32767])


# ---------------------------------------------------------------------------------- display


def test_envelope_is_bounded_and_covers_every_sample():
    rng = np.random.default_rng(1)
    sr = 16000
    x = (rng.standard_normal(20 * sr) * 0.2).astype(np.float32)
    x[12345] = 0.99
    x[222222] = -0.97
    times, mins, maxs = envelope(x, sr)
    assert 1000 < len(times) <= 2000 and len(mins) == len(maxs) == len(times)
    assert np.all(mins <= maxs)
    assert mins.min() == pytest.approx(x.min()) and maxs.max() == pytest.approx(x.max())
    assert times[0] == pytest.approx(0.0) and np.all(np.diff(times) > 0) and times[-1] < 20.0
    # Each bucket brackets its samples.
    k = int(round((times[1] - times[0]) * sr))
    for i in (0, 7, len(times) - 1):
        chunk = x[i * k:(i + 1) * k]
        assert mins[i] == pytest.approx(chunk.min()) and maxs[i] == pytest.approx(chunk.max())
    # Short signals come back sample by sample; huge ones stay bounded.
    t, lo, hi = envelope(x[:500], sr)
    np.testing.assert_allclose(lo, x[:500], rtol=0, atol=1e-7)
    assert len(envelope(np.zeros(8000 * 1800, np.float32), 8000)[0]) <= 2000
    assert len(envelope(np.zeros(0, np.float32), 8000)[0]) == 0


@pytest.mark.parametrize("kind", ["linear", "mel"])
def test_spectrogram_shape_is_bounded_whatever_the_length(kind):
    sr = 8000
    for seconds in (0.01, 1.0, 20.0, 600.0):
        x = np.random.default_rng(0).standard_normal(int(seconds * sr)).astype(np.float32) * 0.1
        times, freqs, db = spectrogram(x, sr, kind=kind)
        assert db.shape == (len(freqs), len(times))
        assert 1 <= db.shape[1] <= 400 and 1 <= db.shape[0] <= 256
        assert np.all(np.diff(freqs) > 0) and freqs[-1] <= sr / 2
        assert times[0] >= 0 and times[-1] <= seconds + 0.05
        assert db.dtype == np.float32 and db.min() >= DB_FLOOR
    with pytest.raises(ValueError):
        spectrogram(x, sr, kind="cqt")


@pytest.mark.parametrize("kind", ["linear", "mel"])
def test_spectrogram_levels_are_dbfs(kind):
    sr = 16000
    times, freqs, db = spectrogram(sine(1000, 2.0, sr, 1.0), sr, kind=kind)
    row = np.argmax(db.max(axis=1))
    assert abs(freqs[row] - 1000) < 40
    assert db[row, len(times) // 2] == pytest.approx(0.0, abs=2.0)  # full-scale tone ≈ 0 dB
    assert np.median(db[freqs > 3000]) < -60
    silent = spectrogram(np.zeros(sr, np.float32), sr, kind=kind)[2]
    np.testing.assert_allclose(silent, DB_FLOOR, atol=1e-3)
    assert silent.min() >= DB_FLOOR  # clamped: float32 log10 alone gives -120.00001


@pytest.mark.parametrize("kind", ["linear", "mel"])
def test_signal_figure_is_small_and_shaped(kind):
    sr = 16000
    x = (np.random.default_rng(2).standard_normal(20 * sr) * 0.3).astype(np.float32)
    fig = signal_figure(Segment(x, sr, 1, "x.wav", 100.0, 20.0), kind=kind)
    assert figure_json_size(fig) <= 200_000  # target ≤ 500 KB; ~130 KB in practice
    d = json.loads(fig.to_json())
    wave_max, wave_min, heat = d["data"]
    assert heat["type"] == "heatmap" and heat["xaxis"] == "x2"
    assert wave_min["fill"] == "tonexty"
    assert d["layout"]["xaxis2"]["matches"] == "x"
    assert "kHz" in heat["hovertemplate"] and "dB" in heat["hovertemplate"]
    # Typed arrays: the envelope as float32, the spectrogram as int8 whole dB.
    assert wave_max["y"]["dtype"] == "f4"
    assert heat["z"]["dtype"] == "i1"
    rows, cols = (int(v) for v in heat["z"]["shape"].split(","))
    assert rows <= 256 and cols <= 400
    assert wave_max["dx"] * 2000 >= 19.99  # ≤ 2,000 points span the 20 s


def test_error_figure_says_why():
    fig = error_figure("x.wav: file not found")
    assert fig.layout.annotations[0].text == "x.wav: file not found"


# ---------------------------------------------------------------------------------- long segments


@pytest.fixture(scope="module")
def long_noise(tmp_path_factory) -> tuple[str, np.ndarray]:
    """(FLAC path, its samples): 8 kHz noise bursts a little past IN_MEMORY_MAX_FRAMES (~4.4 min),
    so segments of it are read, encoded and drawn block by block."""
    sr = 8000
    n = IN_MEMORY_MAX_FRAMES + 54321
    rng = np.random.default_rng(7)
    t = np.arange(n) / sr
    x = (rng.standard_normal(n) * 0.2 * (np.sin(2 * np.pi * 0.5 * t) > 0)
         + 0.3 * np.sin(2 * np.pi * 700 * t)).astype(np.float32)
    x = np.clip(x, -1, 1)
    path = tmp_path_factory.mktemp("long_noise") / "noise.flac"
    sf.write(str(path), x, sr, subtype="PCM_16")
    back, _ = sf.read(str(path), dtype="float32")  # what PCM_16 kept
    return str(path), back


def test_long_segment_is_read_block_by_block(long_noise):
    path, x = long_noise
    with open_segment(path, 0.0, None) as reader:
        assert not reader.fits_in_memory and reader.frames == len(x)
        sizes = [len(b) for b in reader.blocks()]
        assert max(sizes) == BLOCK_FRAMES and sum(sizes) == len(x)
        np.testing.assert_allclose(reader.read(len(x) - 10, 100), x[-10:], atol=1e-6)


@pytest.mark.parametrize("offset,duration", [(0.0, None), (1.2345, 250.0), (3.0, 2.5)])
@pytest.mark.parametrize("kind", ["linear", "mel"])
def test_block_wise_display_equals_the_whole_segment(long_noise, offset, duration, kind):
    """The figure of a reader (one pass, blocks) shows what the decoded segment's figure shows."""
    path, _ = long_noise
    whole = display_data(read_segment(path, offset, duration))
    with open_segment(path, offset, duration) as reader:
        blocks = display_data(reader)
    np.testing.assert_allclose(blocks.env_times, whole.env_times)
    np.testing.assert_allclose(blocks.env_mins, whole.env_mins, atol=1e-7)
    np.testing.assert_allclose(blocks.env_maxs, whole.env_maxs, atol=1e-7)
    t1, f1, db1 = blocks.spectrogram(kind)
    t2, f2, db2 = whole.spectrogram(kind)
    np.testing.assert_allclose(t1, t2)
    np.testing.assert_allclose(f1, f2)
    # FFTs in other batch sizes (float32 scipy vs numpy) differ by hundredths of a dB near the
    # floor; the figure sends whole dB.
    np.testing.assert_allclose(db1, db2, atol=0.1)
    assert db1.shape[0] <= 256 and db1.shape[1] <= 400 and len(blocks.env_times) <= 2000


@pytest.mark.parametrize("block", [1, 7, 1000, 65536])
def test_envelope_and_spectrogram_do_not_depend_on_block_boundaries(block):
    from sde.audio import SegmentReader

    class Blocks(SegmentReader):  # a real reader over samples in memory, read in odd blocks
        def __init__(self, x):
            super().__init__("mem", 0.0, 8000, 1, len(x), len(x) / 8000, False)
            self.x = x

        def _read_raw(self, start, count):
            return self.x[start:start + count, None]

        def blocks(self, block_frames=block):
            return super().blocks(block)

    x = (np.random.default_rng(5).standard_normal(8000 * 3) * 0.3).astype(np.float32)
    whole = display_data(Segment(np.clip(x, -1, 1), 8000, 1, "mem", 0.0, 3.0), max_points=333)
    parts = display_data(Blocks(x), max_points=333)
    np.testing.assert_allclose(parts.env_mins, whole.env_mins, atol=1e-7)
    np.testing.assert_allclose(parts.env_maxs, whole.env_maxs, atol=1e-7)
    np.testing.assert_allclose(parts.spectrogram("linear")[2], whole.spectrogram("linear")[2],
                               atol=0.1)


@pytest.mark.parametrize("start,length", [(0, 44), (0, 45), (10, 100), (43, 3), (45, 1), (46, 7),
                                          (1001, 2 * BLOCK_FRAMES + 3), (-57, 57), (-1, 1)])
def test_wav_stream_reads_any_byte_range_like_the_whole_wav(long_noise, start, length):
    path, _ = long_noise
    whole = wav_bytes(read_segment(path, 10.0, 30.0))
    with open_segment(path, 10.0, 30.0) as reader:
        stream = WavStream(reader)
        assert stream.size == len(whole)
        stream.seek(start if start >= 0 else len(whole) + start)
        got = b""
        while len(got) < length:
            piece = stream.read(length - len(got))
            assert piece, "ended early"
            got += piece
        stream.close()
    begin = start if start >= 0 else len(whole) + start
    assert got == whole[begin:begin + length]


@pytest.mark.parametrize("frames", [0, 1, BLOCK_FRAMES + 1, IN_MEMORY_MAX_FRAMES])
def test_ogg_is_encoded_in_blocks_whatever_the_length(frames):
    """One libvorbis write of 2**21 frames overflows the stack (SIGSEGV): never more than a block."""
    sr = 8000
    x = (0.3 * np.sin(2 * np.pi * 300 * np.arange(frames) / sr)).astype(np.float32)
    data = ogg_bytes(Segment(x, sr, 1, "x.wav", 0.0, frames / sr))
    info = sf.info(io.BytesIO(data))
    assert info.samplerate == sr and info.frames == max(frames, 1)


def test_ogg_of_a_reader_streams_in_pieces(long_noise):
    path, x = long_noise
    with open_segment(path, 0.0, None) as reader:
        chunks = list(ogg_stream(reader))
    assert len(chunks) > 10  # bytes leave as blocks are encoded, not all at the end
    assert sf.info(io.BytesIO(b"".join(chunks))).frames == len(x)


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
        out = compute_audio_metrics(_table([(path, args["offset"], args["duration"])]), workers=1)
        assert "invalid" in out["audio_error"].iloc[0]


# ---------------------------------------------------------------------------------- metrics


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


def _lowpassed_noise(sr: int, cutoff: float, seconds: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(4)
    spec = np.fft.rfft(rng.standard_normal(int(seconds * sr)))
    spec[np.fft.rfftfreq(int(seconds * sr), 1 / sr) > cutoff] = 0
    x = np.fft.irfft(spec, int(seconds * sr))
    # 50 ms fades: an abrupt start is a broadband click (the zero padding of the first frame).
    fade = int(0.05 * sr)
    ramp = np.sin(np.linspace(0, np.pi / 2, fade)) ** 2
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("sr", [16000, 44100])
def test_bandwidth_of_a_band_limited_signal(tmp_path, sr):
    path = write(tmp_path / "lp.wav", _lowpassed_noise(sr, 3000), sr, subtype="FLOAT")
    assert audio_metrics(path)["bandwidth_hz"] == pytest.approx(3000, abs=250)
    # A sum of smooth tones below 3 kHz too (faded in/out: an abrupt start is broadband).
    tones = sum(sine(f, 2.0, sr, 0.15) for f in (200, 700, 1500, 2500, 2950))
    tones *= np.hanning(len(tones)).astype(np.float32)
    path = write(tmp_path / "tones.wav", tones, sr, subtype="FLOAT")
    assert audio_metrics(path)["bandwidth_hz"] == pytest.approx(3000, abs=250)
    white = write(tmp_path / "white.wav", _lowpassed_noise(sr, sr), sr, subtype="FLOAT")
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


def _table(rows: list[tuple[str, float, float]], index=None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["audio_path", "offset", "duration"], index=index)
    df.insert(0, "id", np.arange(len(df)))
    return df


def test_compute_audio_metrics_table(tmp_path, long_file):
    good = write(tmp_path / "good.wav", sine(440, 2.0, 16000, 0.5), 16000)
    rows = [(good, 0.0, 2.0), (str(tmp_path / "gone.wav"), 0.0, 1.0), (long_file, 1234.0, 3.0),
            (long_file, 10.0, 5.0), (long_file, 1799.0, 5.0), (long_file, 2000.0, 1.0),
            (good, 1.0, 0.5)]
    table = _table(rows, index=pd.RangeIndex(10, 17))
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
    table = _table(rows)
    calls: list[int] = []
    out = compute_audio_metrics(table, workers=2, callback=lambda d, n: calls.append(d))
    assert calls[-1] == len(rows)
    assert out["audio_error"].isna().sum() == 80
    assert "no audio file" in out["audio_error"].iloc[-1]
    np.testing.assert_allclose(out["peak_dbfs"].iloc[:80], -6.02, atol=0.01)
    np.testing.assert_allclose(out["audio_duration"].iloc[:80], 0.2 + 0.01 * np.arange(80))
