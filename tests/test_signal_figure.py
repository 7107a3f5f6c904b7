"""sde.web.signal_figure: the inspector's waveform + spectrogram figure stays small and says why on error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sde.audio import (
    Segment,
)
from sde.web.signal_figure import error_figure, figure_json_size, signal_figure


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
