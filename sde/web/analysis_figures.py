"""Pure plotly figure builders for the Errors and Comparison pages (no dash import).

Every builder takes plain data (DataFrames / arrays from sde.analysis) and returns a
`plotly.graph_objects.Figure`. Scatter plots of many points use WebGL (`Scattergl`) and are
subsampled deterministically to at most `MAX_POINTS` points, with a note on the chart that says so.
Clickable marks carry what a click should open in `customdata` (an href or an utterance id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from sde.web.figures import FONT, HYP_COLORS, empty_figure, plotly_text

MAX_POINTS = 20_000          # scatter points sent to the browser at most
MAX_WORDS = 5_000            # words in the word scatter (the most frequent)
MAX_BARS = 15                # bars in the small top-error charts
MAX_GROUP_BARS = 40          # groups in the breakdown chart
WER_COLOR = "#e74c3c"
CER_COLOR = "#f39c12"
OP_COLORS = {"substitutions": "#e67e22", "deletions": "#e74c3c", "insertions": "#18bc9c"}
NOTE_FONT = {"size": 10, "color": "#7f8c8d"}


# plotly_white's look, set directly: applying a named template deep-copies it (~0.2 s a figure).
_AXIS = {"gridcolor": "#ebf0f8", "linecolor": "#ebf0f8", "zerolinecolor": "#ebf0f8", "ticks": "",
         "automargin": True}


def _layout(fig: go.Figure, title: str, height: int, margin: dict | None = None) -> go.Figure:
    fig.update_layout(
        template=None,
        paper_bgcolor="white",
        plot_bgcolor="white",
        xaxis=_AXIS,
        yaxis=_AXIS,
        title={"text": plotly_text(title), "x": 0.01, "xanchor": "left", "y": 0.98, "yanchor": "top", "font": {"size": 14}},
        font={"family": FONT, "size": 12, "color": "#2c3e50"},
        margin={"l": 55, "r": 15, "t": 40, "b": 45, **(margin or {})},
        height=height,
        hoverlabel={"font": {"family": FONT}},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
    )
    return fig


def _note(fig: go.Figure, text: str, y: float = -0.13) -> None:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=1.0, y=y,
                       xanchor="right", yanchor="top", font=NOTE_FONT)


def _truncate(label: str, width: int = 28) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


# ---------------------------------------------------------------- Errors page

def top_errors_figure(labels: Sequence[str], counts: Sequence[int], title: str, *,
                      hrefs: Sequence[str] | None = None, kind: str = "substitutions",
                      max_bars: int = MAX_BARS) -> go.Figure:
    """Horizontal bars of the most frequent errors, most frequent on top.

    `labels` are display texts ("light → night", "the"); `hrefs` (same length) go into customdata
    so a click on a bar can open the utterances where the error happens.
    """
    labels = [str(x) for x in labels][:max_bars]
    counts = [int(c) for c in counts][:max_bars]
    height = 20 + 19 * max_bars + (25 if title else 0)
    if not labels:
        fig = empty_figure(title, f"no {kind}")
        fig.update_layout(height=height)
        return fig
    custom = list(hrefs)[: len(labels)] if hrefs is not None else labels
    fig = go.Figure(go.Bar(
        x=counts, y=list(range(len(labels))), orientation="h",
        marker={"color": OP_COLORS.get(kind, HYP_COLORS[0]), "line": {"width": 0}},
        customdata=[[c, _esc(lab)] for c, lab in zip(custom, labels)],
        text=[f"{c:,}" for c in counts], textposition="outside", cliponaxis=False,
        hovertemplate="%{customdata[1]}<br>%{x:,} times<extra></extra>",
        name=kind,
    ))
    # The same height and bar thickness however many bars: the three cards line up.
    _layout(fig, title, height=height, margin={"l": 10, "r": 35, "t": 35 if title else 10, "b": 10})
    fig.update_yaxes(tickvals=list(range(len(labels))), ticktext=[_esc(_truncate(x)) for x in labels],
                     range=[max_bars - 0.5, -0.5], automargin=True, showgrid=False)
    fig.update_xaxes(title_text=None, rangemode="tozero", separatethousands=True, showticklabels=False,
                     showgrid=False, zeroline=False)
    fig.update_layout(bargap=0.25, showlegend=False)
    return fig


def breakdown_figure(rows: pd.DataFrame, by: str, hyp_name: str, *, max_groups: int = MAX_GROUP_BARS,
                     note: str | None = None) -> go.Figure:
    """Grouped bars of WER and CER per group (rows of `sde.analysis.breakdown`, in the order
    given); hover shows the number of utterances and reference words. With `ci_lo`/`ci_hi`
    columns the WER bars get whiskers (the groups' intervals); with an `href` column, each bar's
    last customdata is its group's link (a click opens it). More than `max_groups` groups: the
    largest ones. `note` (plain text) goes above the chart, e.g. which groups are shown."""
    title = f"WER and CER by {by} · {hyp_name}"  # plain text: _layout and empty_figure escape titles
    if rows is None or rows.empty:
        return empty_figure(title, "no utterances")
    if len(rows) > max_groups:
        keep = rows["utterances"].to_numpy().argsort(kind="stable")[::-1][:max_groups]
        rows = rows.iloc[np.sort(keep)]
        note = note or f"showing the {max_groups} groups with the most utterances"
    has_ci = {"ci_lo", "ci_hi"} <= set(rows.columns)
    values = ["(missing)" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
              for v in rows["value"].tolist()]
    x = [_esc(_truncate(v, 24)) for v in values]
    columns = [np.asarray([_esc(v) for v in values], dtype=object), rows["utterances"].to_numpy(),
               rows["words"].to_numpy()]
    if has_ci:
        lo, hi = rows["ci_lo"].to_numpy(dtype=float), rows["ci_hi"].to_numpy(dtype=float)
        columns += [lo.round(2), hi.round(2)]
    if "href" in rows.columns:
        columns.append(rows["href"].to_numpy(dtype=object))
    custom = np.stack(columns, axis=1).tolist()
    fig = go.Figure()
    for metric, name, color in (("wer", "WER", WER_COLOR), ("cer", "CER", CER_COLOR)):
        y = rows[metric].to_numpy(dtype=float)
        extra, interval = {}, ""
        if metric == "wer" and has_ci:
            extra["error_y"] = {"type": "data", "symmetric": False, "array": np.nan_to_num(hi - y).round(4).tolist(),
                                "arrayminus": np.nan_to_num(y - lo).round(4).tolist(), "color": "#7f8c8d",
                                "thickness": 1.2, "width": 3}
            interval = "<br>95% interval %{customdata[3]:.2f}–%{customdata[4]:.2f}%"
        fig.add_trace(go.Bar(
            x=list(range(len(x))), y=y.round(4).tolist(), name=name,
            marker={"color": color, "line": {"width": 0}}, customdata=custom,
            hovertemplate=(f"{_esc(by)} = %{{customdata[0]}}<br>{name} %{{y:.2f}}%{interval}<br>"
                           "%{customdata[1]:,} utterances · %{customdata[2]:,} words<extra></extra>"),
            **extra,
        ))
    _layout(fig, title, height=320, margin={"t": 55})
    fig.update_layout(barmode="group", bargap=0.2, bargroupgap=0.05)
    fig.update_xaxes(tickvals=list(range(len(x))), ticktext=x, title_text=_esc(by), tickangle=-30 if len(x) > 8 else 0,
                     automargin=True)
    fig.update_yaxes(title_text="error rate (%)", rangemode="tozero", ticksuffix="%")
    if note:
        _note(fig, _esc(note), y=1.12)
    return fig


# ---------------------------------------------------------------- Comparison page

@dataclass
class Sample:
    positions: np.ndarray   # row positions kept, ascending
    total: int              # rows before subsampling
    extremes: int           # how many were kept for their large |diff|

    @property
    def subsampled(self) -> bool:
        return len(self.positions) < self.total


def subsample(diff: np.ndarray, max_points: int = MAX_POINTS, extreme_share: float = 0.25,
              seed: int = 0) -> Sample:
    """At most `max_points` positions, deterministically: the rows with the largest |diff| (the
    interesting ones, a quarter of the budget) plus a seeded uniform sample of the rest."""
    n = len(diff)
    if n <= max_points:
        return Sample(np.arange(n), n, 0)
    absdiff = np.abs(np.nan_to_num(np.asarray(diff, dtype=np.float64), nan=0.0))
    k = int(max_points * extreme_share)
    extreme = np.argpartition(-absdiff, k)[:k] if k else np.zeros(0, dtype=np.int64)
    rest_mask = np.ones(n, dtype=bool)
    rest_mask[extreme] = False
    rest = np.flatnonzero(rest_mask)
    rng = np.random.default_rng(seed)
    picked = rng.choice(rest, size=max_points - k, replace=False)
    return Sample(np.sort(np.concatenate([extreme, picked])), n, k)


def _diagonal(fig: go.Figure, lo: float, hi: float) -> None:
    fig.add_shape(type="line", x0=lo, y0=lo, x1=hi, y1=hi, xref="x", yref="y",
                  line={"color": "#95a5a6", "dash": "dash", "width": 1}, layer="below")


def _split_traces(fig: go.Figure, trace_cls: type, x: np.ndarray, y: np.ndarray, diff: np.ndarray,
                  names: tuple[str, str, str], **common_arrays: np.ndarray) -> None:
    """One trace per side of the diagonal (B better / A better / equal), each in one colour: fast
    to build (no per-point colour list) and a legend that says what the colours mean."""
    hover = common_arrays.pop("hovertemplate")
    marker = common_arrays.pop("marker")
    groups = ((diff > 0, names[0], HYP_COLORS[1]), (diff < 0, names[1], HYP_COLORS[0]),
              (~((diff > 0) | (diff < 0)), names[2], "#95a5a6"))
    for mask, name, color in groups:
        sel = np.flatnonzero(mask)
        # customdata as a plain list: plotly.js leaves a typed-array customdata out of a WebGL
        # trace's click events, and the click is what opens the utterance.
        extra = {k: (v[sel].tolist() if k == "customdata" else v[sel]) for k, v in common_arrays.items()}
        m = dict(marker)
        if isinstance(m.get("size"), np.ndarray):
            m["size"] = m["size"][sel]
        m["color"] = color
        fig.add_trace(trace_cls(x=x[sel], y=y[sel], mode="markers", name=f"{name} ({len(sel):,})", marker=m,
                                hovertemplate=hover, **extra))


def word_scatter_figure(words: pd.DataFrame, a_name: str, b_name: str, *,
                        max_points: int = MAX_WORDS) -> go.Figure:
    """Per-word accuracy of A (x) vs B (y) from `sde.analysis.word_accuracy_comparison`
    (word, count, acc_a, acc_b, diff). Marker size grows with log(count); points above the
    diagonal are words B recognises better. Too many words: the most frequent `max_points`.
    customdata = the word (what a click opens), text = its count."""
    title = "Word accuracy: A vs B"
    if words is None or words.empty:
        return empty_figure(title, "no words")
    total = len(words)
    if total > max_points:
        keep = np.argsort(-words["count"].to_numpy(), kind="stable")[:max_points]
        words = words.iloc[np.sort(keep)]
    count = words["count"].to_numpy(dtype=np.int64)
    size = np.round(5 + 4 * np.log10(np.maximum(count, 1)), 2)
    word_arr = words["word"].astype(str).to_numpy(dtype=object)
    shown = np.asarray([_esc(w) for w in word_arr], dtype=object)
    fig = go.Figure()
    trace_cls = go.Scattergl if len(words) > 2000 else go.Scatter
    _split_traces(
        fig, trace_cls, words["acc_a"].to_numpy(dtype=np.float64).round(3),
        words["acc_b"].to_numpy(dtype=np.float64).round(3), words["diff"].to_numpy(dtype=np.float64),
        ("B better", "A better", "equal"),
        customdata=word_arr, text=shown, hovertext=count.astype(str),
        hovertemplate=("<b>%{text}</b><br>%{hovertext} occurrences<br>"
                       f"A {_esc(a_name)}: %{{x:.1f}}%<br>B {_esc(b_name)}: %{{y:.1f}}%<extra></extra>"),
        marker={"size": size, "opacity": 0.6, "line": {"width": 0}},
    )
    _diagonal(fig, 0, 100)
    _layout(fig, title, height=440, margin={"b": 85, "t": 55})
    fig.update_xaxes(title_text=f"accuracy of A: {_esc(a_name)} (%)", range=[-4, 104], zeroline=False)
    fig.update_yaxes(title_text=f"accuracy of B: {_esc(b_name)} (%)", range=[-4, 104], zeroline=False)
    fig.update_layout(showlegend=True, legend={"itemsizing": "constant"})
    note = "marker size ~ log(count) · click a word to see its utterances"
    if total > max_points:
        note = f"the {max_points:,} most frequent of {total:,} words · " + note
    _note(fig, note, y=-0.24)
    return fig


def utterance_scatter_figure(ids: np.ndarray, a: np.ndarray, b: np.ndarray, a_name: str, b_name: str,
                             metric: str = "wer", *, max_points: int = MAX_POINTS) -> go.Figure:
    """Per-utterance metric of A (x) vs B (y), WebGL, at most `max_points` points (the largest
    differences plus a seeded random sample; the chart says so). customdata = utterance id."""
    name = metric.upper()
    title = f"Per-utterance {name}: A vs B"
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    if a.size == 0:
        return empty_figure(title, "no utterances")
    diff = b - a
    better_b = int(np.count_nonzero(diff < 0))
    better_a = int(np.count_nonzero(diff > 0))
    same = int(a.size - better_a - better_b)
    s = subsample(diff, max_points)
    pos = s.positions
    xa, yb, d = a[pos].round(3), b[pos].round(3), diff[pos]
    fig = go.Figure()
    # For an error rate lower is better: B is better below the diagonal (diff < 0).
    _split_traces(
        fig, go.Scattergl, xa, yb, -d, ("B better", "A better", "equal"),
        customdata=ids[pos],
        hovertemplate=(f"utterance %{{customdata}}<br>A {_esc(a_name)}: %{{x:.1f}}%<br>"
                       f"B {_esc(b_name)}: %{{y:.1f}}%<extra></extra>"),
        marker={"size": 6, "opacity": 0.55, "line": {"width": 0}},
    )
    finite = np.concatenate([xa[np.isfinite(xa)], yb[np.isfinite(yb)]])
    # Up to the largest value shown (not 100 %: a strong pair of systems would be squashed in a corner).
    hi = max(float(finite.max()) if finite.size else 1.0, 1.0)
    _diagonal(fig, 0, hi)
    _layout(fig, title, height=460, margin={"b": 85, "t": 75})
    pad = hi * 0.04
    fig.update_xaxes(title_text=f"{name} of A: {_esc(a_name)} (%)", range=[-pad, hi + pad], zeroline=False)
    fig.update_yaxes(title_text=f"{name} of B: {_esc(b_name)} (%)", range=[-pad, hi + pad], zeroline=False)
    n = a.size
    summary = (f"over all {n:,} utterances: B better on {better_b:,} ({100 * better_b / n:.1f}%) · "
               f"A better on {better_a:,} ({100 * better_a / n:.1f}%) · equal on {same:,} ({100 * same / n:.1f}%)")
    fig.update_layout(showlegend=True, legend={"itemsizing": "constant", "y": 1.08})
    fig.add_annotation(text=summary, showarrow=False, xref="paper", yref="paper", x=0.0, y=1.0,
                       xanchor="left", yanchor="bottom", font={"size": 11, "color": "#2c3e50"})
    if s.subsampled:
        note = (f"showing {len(pos):,} of {s.total:,} utterances: the {s.extremes:,} largest differences "
                f"+ a random sample · click a point to open it")
    else:
        note = "click a point to open the utterance"
    _note(fig, note, y=-0.22)
    return fig


def _esc(text: str) -> str:
    """A user string for a plotly hovertemplate: plotly renders a few HTML tags there."""
    return plotly_text(text)
