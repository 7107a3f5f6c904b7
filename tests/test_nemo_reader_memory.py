"""The transcription reader (sde.nemo.infer.read_audio) reads block by block, mixes down and
resamples as it goes: the same samples as decoding the whole segment with soundfile and resampling
it with soxr at once, in memory of the output plus a block. It decoded every channel of the segment
to float32 first: +550 MB for 10 minutes of 44.1 kHz stereo, growing with the segment."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from sde.audio import BLOCK_FRAMES
from sde.nemo.infer import read_audio


def _write(path: Path, seconds: float, sr: int, channels: int, fmt: str = "WAV", subtype: str = "PCM_16") -> Path:
    """Speech-like test audio: a chirp per channel over quiet noise (every block differs)."""
    rng = np.random.default_rng(channels * sr)
    t = np.arange(int(seconds * sr)) / sr
    cols = [0.4 * np.sin(2 * np.pi * (200 + 150 * c + 40 * t) * t) + 0.01 * rng.standard_normal(len(t))
            for c in range(channels)]
    sf.write(path, np.stack(cols, axis=1).astype(np.float32), sr, format=fmt, subtype=subtype)
    return path


def _reference(path: Path, offset: float, duration: float | None, target: int, channel: int | None) -> np.ndarray:
    """The whole-array path: decode the segment at once, mix down (or take the channel), resample."""
    info = sf.info(str(path))
    start = round(offset * info.samplerate)
    stop = None if duration is None else start + round(duration * info.samplerate)
    data, sr = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    mono = data[:, channel] if channel is not None else data.mean(axis=1, dtype=np.float32)
    return mono if sr == target else soxr.resample(mono, sr, target, quality="HQ")


# (behaviour, file rate, channels, format, offset, duration, model rate, channel)
CASES = [
    ("mono_44k_resampled_to_16k", 44100, 1, "WAV", 0.0, None, 16000, None),
    ("stereo_44k_mixed_and_resampled_to_16k", 44100, 2, "WAV", 0.0, None, 16000, None),
    ("stereo_flac_mixed_and_resampled_to_16k", 44100, 2, "FLAC", 0.0, None, 16000, None),
    ("stereo_16k_mixed_at_its_own_rate", 16000, 2, "WAV", 0.0, None, 16000, None),
    ("an_offset_and_duration_segment_of_stereo_44k", 44100, 2, "FLAC", 1.37, 3.21, 16000, None),
    ("one_channel_of_stereo_44k_resampled", 44100, 2, "WAV", 0.5, 4.0, 16000, 1),
    ("stereo_48k_to_16k_to_the_end_from_an_offset", 48000, 2, "WAV", 2.2, None, 16000, None),
]


@pytest.mark.parametrize("_name, sr, channels, fmt, offset, duration, target, channel", CASES,
                         ids=[c[0] for c in CASES])
def test_block_reading_equals_the_whole_array_path(tmp_path, _name, sr, channels, fmt, offset, duration, target,
                                                   channel):
    path = _write(tmp_path / f"a.{fmt.lower()}", 14.0, sr, channels, fmt)  # several blocks
    assert 14.0 * sr > 3 * BLOCK_FRAMES
    got = read_audio(str(path), offset, duration, target, **({} if channel is None else {"channel": channel}))
    want = _reference(path, offset, duration, target, channel)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    assert len(got) == len(want)
    assert np.allclose(got, want, atol=1e-5, rtol=0)


def test_a_long_stereo_segment_is_read_in_memory_of_the_output_plus_a_block(tmp_path):
    # 60 s of 44.1 kHz stereo: decoding it whole as float32 is 21 MB (plus its mono mix and the
    # resampler's copy); the block reader holds the 3.8 MB output plus ~1 MB per block.
    path = _write(tmp_path / "long.flac", 60.0, 44100, 2, "FLAC")
    read_audio(str(path), 0.0, None, 16000)  # imports and first-use allocations outside the measure
    tracemalloc.start()
    try:
        out = read_audio(str(path), 0.0, None, 16000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out) == pytest.approx(60.0 * 16000, abs=2)
    decoded_whole = 60.0 * 44100 * 2 * 4
    assert peak - out.nbytes < 4 * BLOCK_FRAMES * 2 * 4 + (1 << 20)
    assert peak < decoded_whole / 3
