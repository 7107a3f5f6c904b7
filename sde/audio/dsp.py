"""Display data of a segment: min/max envelope, log-power spectrogram (linear or mel), bounded
whatever the length (envelope ≤ ``max_points`` points, spectrogram ≤ ``max_frames`` × ``max_bins``)
and reduced in one pass over a :class:`~sde.audio.io.SegmentReader`, block by block; and
:func:`resample` / :func:`read_resampled` to a model's rate. The STFT helpers are shared with :mod:`sde.audio.quality`."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sde.audio.io import Segment, SegmentReader

__all__ = ["DB_FLOOR", "DisplayData", "display_data", "envelope", "read_resampled", "resample", "spectrogram"]

#: Lowest level reported, in dB: log of zero is -inf, which neither JSON nor tables handle well.
DB_FLOOR = -120.0


class _Envelope:
    """Min/max per bucket of ``k`` consecutive samples, fed block by block (any block sizes)."""

    def __init__(self, n: int, sample_rate: int, max_points: int) -> None:
        self.k = max(1, -(-n // max(1, int(max_points))))  # ceil: bucket size
        self.sample_rate = sample_rate
        buckets = -(-n // self.k)
        self.mins = np.full(buckets, np.inf, dtype=np.float32)
        self.maxs = np.full(buckets, -np.inf, dtype=np.float32)
        self.pos = 0

    def feed(self, x: np.ndarray) -> None:
        if len(x) == 0:
            return
        first = (-self.pos) % self.k  # where the first bucket starting in x starts
        starts = np.arange(first, len(x), self.k)
        if first:  # x begins inside a bucket started by the previous block
            starts = np.concatenate(([0], starts))
        buckets = (self.pos + starts) // self.k
        self.mins[buckets] = np.minimum(self.mins[buckets], np.minimum.reduceat(x, starts))
        self.maxs[buckets] = np.maximum(self.maxs[buckets], np.maximum.reduceat(x, starts))
        self.pos += len(x)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        filled = -(-self.pos // self.k)
        times = np.arange(filled, dtype=np.float64) * self.k / self.sample_rate
        return times, self.mins[:filled].copy(), self.maxs[:filled].copy()


def envelope(samples: np.ndarray, sample_rate: int,
             max_points: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max envelope: ``(times_s, mins, maxs)``, at most ``max_points`` points.

    Bucket ``i`` covers ``k`` consecutive samples starting at ``times[i]`` (seconds from the
    segment's start; the last bucket may be shorter); ``mins``/``maxs`` are its extremes, so the
    band always contains every sample. Short signals are returned sample by sample.
    """
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    env = _Envelope(len(x), sample_rate, max_points)
    env.feed(x)
    return env.result()


def _n_fft(sample_rate: int) -> int:
    """Power of two covering ≥ 25 ms: 256 @ 8 kHz, 512 @ 16 kHz, 1024 @ 22.05 kHz, 2048 @ 44.1 kHz."""
    return int(2 ** math.ceil(math.log2(max(16, 0.025 * sample_rate))))


def _hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)  # periodic


def blackman_harris(n: int) -> np.ndarray:
    # Periodic 4-term Blackman-Harris, as scipy.signal.get_window("blackmanharris", n, fftbins=True).
    t = 2 * np.pi * np.arange(n) / n
    return (0.35875 - 0.48829 * np.cos(t) + 0.14128 * np.cos(2 * t)
            - 0.01168 * np.cos(3 * t)).astype(np.float32)


_SCIPY_RFFT: Any = None


def rfft(frames: np.ndarray) -> np.ndarray:
    """rfft along axis 1. Big batches use scipy's FFT (a librosa dependency; ~3x numpy's on
    float32), imported on first need: it costs 0.25 s, which metric workers on short clips
    (numpy is fine there) should not pay."""
    global _SCIPY_RFFT
    if frames.size < 200_000:
        return np.fft.rfft(frames, axis=1)
    if _SCIPY_RFFT is None:
        try:
            from scipy.fft import rfft as scipy_rfft
        except ImportError:  # pragma: no cover
            scipy_rfft = np.fft.rfft
        _SCIPY_RFFT = scipy_rfft
    return _SCIPY_RFFT(frames, axis=1)


def _pool_mean(a: np.ndarray, group: int, axis: int) -> np.ndarray:
    if group <= 1:
        return a
    n = a.shape[axis]
    starts = np.arange(0, n, group)
    sums = np.add.reduceat(a, starts, axis=axis)
    counts = np.diff(np.append(starts, n)).astype(a.dtype)
    shape = [1] * a.ndim
    shape[axis] = len(counts)
    return sums / counts.reshape(shape)


class _PowerColumns:
    """The power spectrogram of an ``n``-sample signal fed block by block, pooled on the fly into
    at most ``max_frames`` columns: memory is one block plus the columns, whatever ``n``.

    Frames are those of a centred STFT (Hann window ≥ 25 ms, zero padding of n_fft/2 at both
    ends). The hop is half a window, widened for long signals to at most ~8 frames per column,
    so very long segments are strided (frames sampled evenly), not read twice.
    """

    def __init__(self, n: int, sample_rate: int, max_frames: int) -> None:
        self.sample_rate = sample_rate
        self.n_fft = n_fft = _n_fft(sample_rate)
        self.pad = n_fft // 2
        max_frames = max(1, int(max_frames))
        # 50 % overlap: Hann windows then sum to a constant, so every sample weighs the same in
        # the pooled columns; more overlap would only add work (columns average many frames).
        self.hop = max(n_fft // 2, -(-n // (max_frames * 8)))
        self.padded_len = max(n + 2 * self.pad, n_fft)
        self.n_frames = 1 + (self.padded_len - n_fft) // self.hop
        self.group = -(-self.n_frames // max_frames)
        n_cols = -(-self.n_frames // self.group)
        self.sums = np.zeros((n_cols, n_fft // 2 + 1), dtype=np.float64)
        self.counts = np.zeros(n_cols, dtype=np.int64)
        self.window = _hann(n_fft)
        # |X| of a full-scale sine is sum(window)/2: normalise so such a tone reads 0 dB.
        self.scale = np.float32((self.window.sum() / 2.0) ** 2)
        self.buf = np.zeros(self.pad, dtype=np.float32)  # padded-signal samples from buf_start
        self.buf_start = 0
        self.stream_pos = self.pad  # padded index of the next sample fed
        self.next_frame = 0

    def feed(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32)
        # > 0 after a jump: the next frame starts past what came so far (hop > window).
        drop = self.buf_start + len(self.buf) - self.stream_pos
        self.stream_pos += len(x)
        if drop > 0:
            x = x[drop:]
        if len(x) == 0 or self.next_frame >= self.n_frames:
            return
        self.buf = np.concatenate((self.buf, x)) if len(self.buf) else x
        self._frames_in_buffer()

    def _frames_in_buffer(self) -> None:
        end = self.buf_start + len(self.buf)
        last = min(self.n_frames, (end - self.n_fft) // self.hop + 1) if end >= self.n_fft else 0
        if last > self.next_frame:
            first = self.next_frame
            view = np.lib.stride_tricks.sliding_window_view(self.buf, self.n_fft)
            at = first * self.hop - self.buf_start
            frames = view[at: at + (last - first - 1) * self.hop + 1: self.hop]
            spec = rfft(frames * self.window)
            power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32, copy=False)
            cols = np.arange(first, last) // self.group
            bounds = np.flatnonzero(np.diff(cols, prepend=-1))
            self.sums[cols[bounds]] += np.add.reduceat(power, bounds, axis=0)
            self.counts[cols[bounds]] += np.diff(np.append(bounds, len(cols)))
            self.next_frame = last
        keep_from = self.next_frame * self.hop
        if keep_from >= end:
            self.buf = self.buf[:0]
            self.buf_start = keep_from
        elif keep_from > self.buf_start:
            self.buf = self.buf[keep_from - self.buf_start:]
            self.buf_start = keep_from

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(times of the column centres in s, mean power per column (columns, n_fft/2 + 1))."""
        tail = self.padded_len - self.stream_pos
        if tail > 0:
            self.feed(np.zeros(tail, dtype=np.float32))
        used = self.counts > 0
        power = (self.sums[used] / self.counts[used, None] / self.scale).astype(np.float32)
        cols = np.flatnonzero(used)
        first = cols * self.group
        last = np.minimum(first + self.group, self.n_frames) - 1
        times = (first + last) / 2.0 * self.hop / self.sample_rate
        return times, power


@functools.lru_cache(maxsize=16)
def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """HTK-mel triangles on the rfft bins (peak weight 1, so a tone keeps its level in dB)."""
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    bins_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(np.array(sample_rate / 2.0)), n_mels + 2))
    lo, ctr, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins_hz[None, :] - lo) / np.maximum(ctr - lo, 1e-9)
    down = (hi - bins_hz[None, :]) / np.maximum(hi - ctr, 1e-9)
    fb = np.clip(np.minimum(up, down), 0.0, None)
    # Low mel bands can be narrower than one FFT bin: give them their nearest bin rather than
    # leaving empty (-120 dB) stripes across the image.
    empty = fb.sum(axis=1) == 0
    if empty.any():
        nearest = np.rint(ctr[empty, 0] * n_fft / sample_rate).astype(int)
        fb[np.flatnonzero(empty), np.clip(nearest, 0, n_fft // 2)] = 1.0
    fb = fb.astype(np.float32)
    centres = edges[1:-1].copy()
    fb.setflags(write=False)  # shared by the lru_cache
    centres.setflags(write=False)
    return fb, centres


def _power_to_db(times: np.ndarray, power: np.ndarray, sample_rate: int, n_fft: int, kind: str,
                 max_bins: int, n_mels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if kind not in ("linear", "mel"):
        raise ValueError(f"kind must be 'linear' or 'mel', not {kind!r}")
    max_bins = max(1, int(max_bins))
    if kind == "mel":
        fb, freqs = _mel_filterbank(sample_rate, n_fft, min(n_mels, max_bins))
        power = power @ fb.T
    else:
        power = power[:, : n_fft // 2]  # drop Nyquist: 2**k bins pool evenly
        freqs = np.arange(n_fft // 2) * sample_rate / n_fft
        group_f = -(-power.shape[1] // max_bins)
        if group_f > 1:
            power = _pool_mean(power, group_f, axis=1)
            freqs = _pool_mean(freqs.astype(np.float64), group_f, axis=0)
    db = 10.0 * np.log10(np.maximum(power, np.float32(10.0 ** (DB_FLOOR / 10.0))))
    # log10 in float32 puts the floor at -120.00001: clamp, so silence reads DB_FLOOR exactly.
    db = np.maximum(db, np.float32(DB_FLOOR))
    return times, np.array(freqs, dtype=np.float64), np.ascontiguousarray(db.T, dtype=np.float32)


def spectrogram(samples: np.ndarray, sample_rate: int, kind: str = "linear",
                max_frames: int = 400, max_bins: int = 256,
                n_mels: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-power spectrogram ``(times_s, freqs_hz, db)`` with ``db.shape == (len(freqs), len(times))``.

    ``kind="linear"``: STFT bins; ``kind="mel"``: ``min(n_mels, max_bins)`` HTK-mel bands (freqs
    are the band centres). Window ≥ 25 ms (Hann), 50 % overlap; neighbouring frames and bins are
    averaged in power so the image is at most ``max_frames`` × ``max_bins`` whatever the length.
    dB are relative to full scale (a full-scale sine peaks near 0 dB), floored at ``DB_FLOOR``.
    ``times`` are frame centres in seconds from the segment's start.
    """
    if kind not in ("linear", "mel"):
        raise ValueError(f"kind must be 'linear' or 'mel', not {kind!r}")
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    cols = _PowerColumns(len(x), sample_rate, max_frames)
    cols.feed(x)
    times, power = cols.finish()
    return _power_to_db(times, power, sample_rate, cols.n_fft, kind, max_bins, n_mels)


@dataclass
class DisplayData:
    """What the waveform + spectrogram figure shows of a segment, bounded whatever its length:
    the min/max envelope and the pooled power spectrogram (either kind is derived from it)."""

    sample_rate: int
    duration: float          # s
    env_times: np.ndarray    # s, bucket starts
    env_mins: np.ndarray
    env_maxs: np.ndarray
    spec_times: np.ndarray   # s, column centres
    power: np.ndarray        # (columns, n_fft/2 + 1) mean power, full scale = 1
    n_fft: int

    def spectrogram(self, kind: str = "linear", max_bins: int = 256,
                    n_mels: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(times_s, freqs_hz, db)`` as :func:`spectrogram` gives them."""
        return _power_to_db(self.spec_times, self.power, self.sample_rate, self.n_fft, kind,
                            max_bins, n_mels)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.env_times, self.env_mins, self.env_maxs,
                                      self.spec_times, self.power))


def display_data(source: Segment | SegmentReader, max_points: int = 2000,
                 max_frames: int = 400) -> DisplayData:
    """Envelope (≤ ``max_points``) and spectrogram (≤ ``max_frames`` columns) of a segment, in
    one pass over it: a :class:`SegmentReader` is read block by block, never held whole."""
    sr = int(source.sample_rate)
    if isinstance(source, Segment):
        n, blocks = len(source.samples), iter([source.samples])
    else:
        n, blocks = source.frames, source.blocks()
    env = _Envelope(n, sr, max_points)
    cols = _PowerColumns(n, sr, max_frames)
    for block in blocks:
        env.feed(block)
        cols.feed(block)
    env_times, mins, maxs = env.result()
    spec_times, power = cols.finish()
    return DisplayData(sr, n / sr, env_times, mins, maxs, spec_times, power, cols.n_fft)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``samples`` (mono float32) from ``orig_sr`` to ``target_sr`` Hz, high quality."""
    if orig_sr == target_sr or samples.size == 0:
        return samples
    # Lazy on purpose: only transcription resamples. soxr is librosa's own default engine; calling
    # it directly skips librosa's multi-second first import.
    try:
        import soxr
    except ImportError:
        import librosa

        return librosa.resample(samples, orig_sr=orig_sr, target_sr=target_sr)
    return soxr.resample(samples, orig_sr, target_sr, quality="HQ")


def read_resampled(path: Any, offset: float = 0.0, duration: float | None = None, sample_rate: int = 16000, *,
                   channel: object = None) -> np.ndarray:
    """The segment as float32 mono at ``sample_rate`` (transcription's input): ``channel`` alone,
    or the mean of a list of channels (a row's ``audio_channel``, see
    :func:`sde.audio.io.channel_selection`), else every channel mixed.

    Read block by block, mixed down and resampled as it goes (a streaming soxr resampler, the same
    samples as resampling the whole segment), into an array of the output's size: peak memory is
    the output plus one block, where decoding every channel first held 550 MB more for 10 minutes
    of 44.1 kHz stereo. Lenient as :func:`sde.audio.io.read_channels`: a file shorter than it
    announces gives what it holds."""
    from sde.audio.io import open_segment

    with open_segment(path, offset, duration, channel=channel, lenient=True) as reader:
        rate = int(reader.sample_rate)
        blocks = reader.raw_blocks()
        try:
            import soxr
        except ImportError:  # librosa's own fallback resampler wants the whole array
            whole = np.concatenate([np.zeros(0, np.float32), *blocks])
            return np.ascontiguousarray(resample(whole, rate, sample_rate), dtype=np.float32)
        out = _Growing(math.ceil(reader.frames * sample_rate / rate) + 64 if reader.frames else 0)
        if rate == sample_rate:
            for block in blocks:
                out.add(block)
            return out.result()
        stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
        for block in blocks:
            out.add(stream.resample_chunk(np.ascontiguousarray(block), last=False))
        out.add(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        return out.result()


class _Growing:
    """A float32 array filled in order: allocated once at the expected size, doubled only when a
    length was not known (ffmpeg without a container duration)."""

    def __init__(self, expected: int) -> None:
        self.data = np.empty(max(0, expected), dtype=np.float32)
        self.n = 0

    def add(self, x: np.ndarray) -> None:
        end = self.n + len(x)
        if end > len(self.data):
            grown = np.empty(max(end, 2 * len(self.data)), dtype=np.float32)
            grown[:self.n] = self.data[:self.n]
            self.data = grown
        self.data[self.n:end] = x
        self.n = end

    def result(self) -> np.ndarray:
        # A copy only when the estimate was far off: a slice keeps the whole buffer alive.
        return self.data[:self.n] if self.n >= len(self.data) - 1024 else self.data[:self.n].copy()
