"""Loudness and clipping of one segment: what a TTS voice's recordings must keep consistent.

Integrated loudness follows ITU-R BS.1770-4 / EBU R128 (K-weighting, 400 ms blocks every 100 ms,
absolute gate -70 LUFS, relative gate -10 LU) on the mono mix-down sde reads (so a stereo file
measures as its mono mix, the way it is heard through sde and fed to training pipelines that
downmix). :class:`LoudnessMeter` takes the segment block by block: an hours-long segment costs one
float per 100 ms, not its samples.

The K-weighting filters are pyloudnorm's "DeMan" design (:func:`k_weighting`), which reproduces
BS.1770's 48 kHz coefficients exactly; pyloudnorm's default design (a 1500 Hz shelf of +4 dB, Q
0.707) does not: a full-scale 997 Hz sine, -3.01 LUFS by the standard, read -3.05 at 48 kHz and
-3.19 at 8 kHz, beyond EBU Tech 3341's ±0.1 LU.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["CLIP_LEVEL", "MIN_LOUDNESS_S", "LoudnessMeter", "clipping_ratio", "integrated_loudness",
           "k_weighting"]

#: BS.1770's gating block: shorter audio has no integrated loudness.
MIN_LOUDNESS_S = 0.4
#: |x| at or above this counts as clipped; the same level as sde.audio's clipping_ratio
#: (int16 full scale reads as 32767/32768).
CLIP_LEVEL = 0.999
_ABSOLUTE_GATE = -70.0  # LUFS
_RELATIVE_GATE = -10.0  # LU below the loudness of the blocks above the absolute gate
_OFFSET = -0.691        # BS.1770's constant: a 997 Hz sine at 0 dBFS (one channel) reads -3.01


@functools.lru_cache(maxsize=16)
def k_weighting(sample_rate: int) -> np.ndarray:
    """BS.1770's two K-weighting stages (high shelf, then high pass) at ``sample_rate``, as
    second-order sections for ``scipy.signal.sosfilt``: pyloudnorm's "DeMan" design, which gives
    the standard's own coefficients at 48 kHz and holds the response at other rates (its default
    design does not: a full-scale 997 Hz sine, -3.01 LUFS by the standard, read -3.05 at 48 kHz and
    -3.19 at 8 kHz). pyloudnorm measures a whole array only; the meter below streams."""
    import pyloudnorm  # lazy: ~1 s to import, only loudness needs it

    # the stages' coefficients are only reachable through the meter's filters (b, a and a gain)
    stages = pyloudnorm.Meter(sample_rate, filter_class="DeMan")._filters.values()
    return np.array([[*(f.passband_gain * np.asarray(f.b, dtype=np.float64)), *np.asarray(f.a, dtype=np.float64)]
                     for f in stages])


class LoudnessMeter:
    """Integrated loudness of one mono segment fed block by block (any block sizes, in order).

    Keeps the filters' state, the samples of an unfinished 100 ms step and one energy per finished
    step; :meth:`result` gates the 400 ms blocks (four steps) once the whole segment is in.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = int(sample_rate)
        # 100 ms in whole samples (rounded, as libebur128 does, for rates like 11025 Hz).
        self.step = max(1, (self.sample_rate + 5) // 10)
        self._sos = k_weighting(self.sample_rate) if self.sample_rate > 0 else None
        self._zi = np.zeros((2, 2))
        self._partial = 0.0  # energy of the unfinished step so far
        self._partial_n = 0
        self._steps: list[np.ndarray] = []
        self.samples = 0

    def feed(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        if len(x) == 0 or self._sos is None:
            self.samples += len(x)
            return
        from scipy.signal import sosfilt  # lazy: only loudness needs it

        y, self._zi = sosfilt(self._sos, x, zi=self._zi)
        self.samples += len(y)
        sq = np.square(y)
        need = self.step - self._partial_n
        head = sq[:need]
        self._partial += float(head.sum())
        self._partial_n += len(head)
        if self._partial_n < self.step:
            return
        done = [np.array([self._partial])]
        rest = sq[need:]
        whole = len(rest) - len(rest) % self.step
        if whole:
            done.append(rest[:whole].reshape(-1, self.step).sum(axis=1))
        tail = rest[whole:]
        self._partial, self._partial_n = float(tail.sum()), len(tail)
        self._steps.append(np.concatenate(done))

    def result(self) -> float:
        """LUFS; NaN when shorter than 0.4 s or silent (no block passes the gates)."""
        if self.sample_rate <= 0 or self.samples < MIN_LOUDNESS_S * self.sample_rate:
            return float("nan")
        steps = np.concatenate(self._steps) if self._steps else np.zeros(0)
        if len(steps) < 4:  # 0.4 s of samples but, rounded, not four whole steps
            return float("nan")
        # Mean square of every 400 ms block starting at a step (75 % overlap).
        window = np.convolve(steps, np.ones(4), mode="valid") / (4 * self.step)
        with np.errstate(divide="ignore"):
            block_lufs = _OFFSET + 10.0 * np.log10(window)
        above = window[block_lufs >= _ABSOLUTE_GATE]
        if len(above) == 0:
            return float("nan")
        relative = _OFFSET + 10.0 * math.log10(float(above.mean())) + _RELATIVE_GATE
        gated = window[(block_lufs >= _ABSOLUTE_GATE) & (block_lufs > relative)]
        if len(gated) == 0:
            return float("nan")
        lufs = _OFFSET + 10.0 * math.log10(float(gated.mean()))
        return lufs if math.isfinite(lufs) else float("nan")


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float:
    """LUFS of mono ``samples``; NaN when shorter than 0.4 s or silent (no gated block passes)."""
    meter = LoudnessMeter(sample_rate)
    meter.feed(samples)
    return meter.result()


def clipping_ratio(samples: np.ndarray) -> float:
    """Share of samples at full scale; NaN for an empty segment."""
    x = np.asarray(samples).reshape(-1)
    if len(x) == 0:
        return float("nan")
    return float(np.count_nonzero(np.abs(x) >= CLIP_LEVEL) / len(x))
