"""Loudness and clipping of one segment: what a TTS voice's recordings must keep consistent.

Integrated loudness follows ITU-R BS.1770-4 / EBU R128 (K-weighting, 400 ms gated blocks) via
pyloudnorm, on the mono mix-down sde reads (so a stereo file measures as its mono mix, the way
it is heard through sde and fed to training pipelines that downmix).
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["CLIP_LEVEL", "MIN_LOUDNESS_S", "clipping_ratio", "integrated_loudness"]

#: BS.1770's gating block: shorter audio has no integrated loudness.
MIN_LOUDNESS_S = 0.4
#: |x| at or above this counts as clipped; the same level as sde.audio's clipping_ratio
#: (int16 full scale reads as 32767/32768).
CLIP_LEVEL = 0.999


@functools.lru_cache(maxsize=16)
def _meter(sample_rate: int):
    import pyloudnorm  # lazy: ~1 s to import, only loudness needs it

    return pyloudnorm.Meter(sample_rate)


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float:
    """LUFS of mono ``samples``; NaN when shorter than 0.4 s or silent (no gated block passes)."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if sample_rate <= 0 or len(x) < MIN_LOUDNESS_S * sample_rate:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        lufs = float(_meter(int(sample_rate)).integrated_loudness(x))
    return lufs if math.isfinite(lufs) else float("nan")


def clipping_ratio(samples: np.ndarray) -> float:
    """Share of samples at full scale; NaN for an empty segment."""
    x = np.asarray(samples).reshape(-1)
    if len(x) == 0:
        return float("nan")
    return float(np.count_nonzero(np.abs(x) >= CLIP_LEVEL) / len(x))
