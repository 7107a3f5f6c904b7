"""Plotly figure of one segment: waveform envelope over a spectrogram, sharing the time axis.

Pure plotly (no dash): the inspector page and the ``/api/utterances/<id>/signal`` route both use
it. The figure stays small whatever the segment length, because what goes in is bounded
(:func:`sde.audio.display_data`: envelope ≤ 2,000 points, spectrogram ≤ 400 × 256, reduced
block by block from a :class:`~sde.audio.SegmentReader` for long segments) and
compact: plotly ≥ 6 serialises numpy arrays as base64 typed arrays, so the envelope travels as
float32 and the spectrogram as int8 whole dB (1 byte per cell; 1 dB steps are below what a
colour scale shows). A 20 s segment is ~150 KB of JSON instead of NeMo's ~4.5 MB.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from sde.audio import DB_FLOOR, DisplayData, Segment, SegmentReader, display_data

__all__ = ["DYNAMIC_RANGE_DB", "error_figure", "figure_json_size", "signal_figure"]

#: Colour range of the spectrogram below its loudest cell.
DYNAMIC_RANGE_DB = 80.0

_WAVE_COLOR = "#1f77b4"
_FONT = {"size": 11}


def _axis_common() -> dict:
    return {"showline": True, "linecolor": "#999", "ticks": "outside", "zeroline": False,
            "showgrid": True, "gridcolor": "#eee"}


def signal_figure(source: Segment | SegmentReader | DisplayData, kind: str = "linear", *,
                  max_points: int = 2000, max_frames: int = 400, max_bins: int = 256,
                  height: int = 420, title: str | None = None) -> go.Figure:
    """Two rows sharing the x axis (seconds from the segment's start): the min/max waveform
    envelope as a filled band, and the ``kind`` ("linear" or "mel") spectrogram as a heatmap with
    frequency in kHz and a dB colour bar. Hover shows time / amplitude and time / frequency / dB.

    ``source``: a decoded :class:`Segment`, an open :class:`SegmentReader` (read block by block,
    any length) or :class:`DisplayData` already reduced (``max_points``/``max_frames`` then
    were fixed when it was made).
    """
    if kind not in ("linear", "mel"):
        raise ValueError(f"kind must be 'linear' or 'mel', not {kind!r}")
    data = source if isinstance(source, DisplayData) else display_data(
        source, max_points=max_points, max_frames=max_frames)
    sr = int(data.sample_rate)
    t_env, mins, maxs = data.env_times, data.env_mins, data.env_maxs
    times, freqs, db = data.spectrogram(kind, max_bins=max_bins)

    # Envelope buckets are evenly spaced: x0/dx instead of an x array halves the payload.
    dt = float(t_env[1] - t_env[0]) if len(t_env) > 1 else 1.0 / sr
    band = {"x0": 0.0, "dx": round(dt, 9), "xaxis": "x", "yaxis": "y", "mode": "lines",
            "line": {"width": 0.6, "color": _WAVE_COLOR}, "showlegend": False}
    traces: list[dict] = [
        dict(band, y=maxs.astype(np.float32), name="max",
             hovertemplate="%{x:.3f} s<br>max %{y:.3f}<extra></extra>"),
        dict(band, y=mins.astype(np.float32), name="min", fill="tonexty",
             fillcolor="rgba(31,119,180,0.45)",
             hovertemplate="%{x:.3f} s<br>min %{y:.3f}<extra></extra>"),
    ]

    # Whole dB in int8: DB_FLOOR (-120) .. ~+6 fits in [-128, 127].
    z = np.clip(np.rint(db), -128, 127).astype(np.int8)
    zmax = float(z.max()) if z.size else 0.0
    zmin = max(zmax - DYNAMIC_RANGE_DB, DB_FLOOR)
    heat = {"type": "heatmap", "x": times.astype(np.float32), "z": z, "xaxis": "x2",
            "yaxis": "y2", "zmin": zmin, "zmax": zmax, "colorscale": "Magma",
            "zsmooth": False, "name": "spectrogram",
            "colorbar": {"title": {"text": "dB", "side": "top"}, "thickness": 12,
                         "len": 0.56, "y": 0.0, "yanchor": "bottom", "outlinewidth": 0}}
    yaxis2 = dict(_axis_common(), domain=[0.0, 0.56], title={"text": "frequency (kHz)"},
                  showgrid=False)
    if kind == "mel":
        # Mel bands are evenly spaced on a mel scale, which plotly has no axis type for: a
        # category axis keeps them even, and its labels (kHz, 1 Hz resolution) feed the hover.
        labels = [f"{f / 1000:.3f}" for f in freqs]
        heat["y"] = labels
        ticks = _mel_ticks(freqs)
        yaxis2.update(type="category", tickvals=[labels[i] for i, _ in ticks],
                      ticktext=[t for _, t in ticks], title={"text": "frequency (kHz, mel)"})
        heat["hovertemplate"] = "%{x:.2f} s<br>%{y} kHz<br>%{z} dB<extra></extra>"
    else:
        heat["y"] = (freqs / 1000.0).astype(np.float32)
        heat["hovertemplate"] = "%{x:.2f} s<br>%{y:.2f} kHz<br>%{z} dB<extra></extra>"
    traces.append(heat)

    dur = max(data.duration, 1.0 / sr)
    layout = {
        "template": {},  # the default template alone is ~8 KB of JSON
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 30 if title else 10, "b": 40},
        "font": _FONT,
        "plot_bgcolor": "white",
        "paper_bgcolor": "white",
        "hovermode": "closest",
        "showlegend": False,
        "xaxis": dict(_axis_common(), anchor="y", range=[0.0, dur], showticklabels=False),
        "yaxis": dict(_axis_common(), domain=[0.62, 1.0], range=[-1.0, 1.0],
                      title={"text": "amplitude"}),
        "xaxis2": dict(_axis_common(), anchor="y2", matches="x", title={"text": "time (s)"}),
        "yaxis2": yaxis2,
    }
    if title:
        layout["title"] = {"text": title, "x": 0.01, "font": {"size": 12}}
    # Trusted dicts built above: skip per-property validation (it costs more than the DSP).
    return go.Figure({"data": traces, "layout": layout}, skip_invalid=False, _validate=False)


def _mel_ticks(freqs: np.ndarray) -> list[tuple[int, str]]:
    """(band index, label) for round kHz values on a mel axis."""
    out: list[tuple[int, str]] = []
    top = float(freqs[-1]) if len(freqs) else 0.0
    for f in (0.25, 0.5, 1, 2, 4, 8, 16):
        hz = f * 1000.0
        if hz > top * 1.02 or len(freqs) == 0:
            break
        i = int(np.argmin(np.abs(freqs - hz)))
        if not out or out[-1][0] != i:
            out.append((i, f"{f:g}"))
    return out


def error_figure(message: str, height: int = 420) -> go.Figure:
    """An empty figure that says why there is no signal (a dcc.Graph always needs a figure)."""
    return go.Figure({
        "data": [],
        "layout": {
            "template": {}, "height": height, "plot_bgcolor": "white", "paper_bgcolor": "white",
            "xaxis": {"visible": False}, "yaxis": {"visible": False},
            "annotations": [{"text": message, "showarrow": False, "xref": "paper",
                             "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 13,
                                                                            "color": "#a00"}}],
        },
    }, _validate=False)


def figure_json_size(fig: go.Figure) -> int:
    """Bytes of the figure's JSON as sent to the browser (for benchmarks and tests)."""
    return len(fig.to_json().encode("utf-8"))

