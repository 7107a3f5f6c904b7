"""sde.audio.dsp: bounded display data (envelope, spectrogram), the same whole or block by block."""

from __future__ import annotations

import numpy as np
import pytest

from sde.audio import (
    DB_FLOOR,
    Segment,
    display_data,
    envelope,
    open_segment,
    read_segment,
    spectrogram,
)
from tests.audio.audio_kit import sine


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
