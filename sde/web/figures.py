"""Pure plotly figure builders. Histograms arrive binned (:mod:`sde.histograms`, in DuckDB), so
the browser gets bin counts (a few dozen numbers per trace), never a million points.

Bin edges are round numbers (steps of 1, 2, 2.5 or 5 times a power of ten), so that each bar is a
readable filter (`{duration} >= 2.5 && {duration} < 3`): with `columns`, every bar carries the
filter that selects exactly its utterances (customdata[2], escaped as user text), which the
Statistics page opens in Samples on a click. Axis numbers share one style: thousands separated, no SI suffixes ("20,000"
beside "6,000", never "20k").

Builders take plain text (field names, hypothesis labels are user text) and escape it with
:func:`plotly_text` wherever it reaches the figure; callers never escape.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from sde.filters import Clause, column_ref
from sde.histograms import Histogram

FONT = "Lato, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
# One colour per hypothesis, in order (Flatly's palette, then more).
HYP_COLORS = ("#3498db", "#e67e22", "#9b59b6", "#18bc9c", "#e74c3c", "#2c3e50", "#f1c40f", "#7f8c8d")
BASE_COLOR = "#2c3e50"
# d3 formats of the axis numbers: one style everywhere (plotly's default mixes "20k" with "6,000").
AXIS_NUMBER_FORMAT = ",~g"
# Dash 4's Graph turns plotly's "Share chart..." on (showSendToCloud, plotlyServerURL
# https://cloud.plotly.com/newchart): a button that uploads the chart's data, private speech data,
# to Plotly Cloud, in a box the keyboard cannot leave. Off, in every way the plotly version offers.
NO_CLOUD = {"showSendToCloud": False, "showEditInChartStudio": False, "plotlyServerURL": ""}
GRAPH_CONFIG = {"displaylogo": False, "responsive": True, **NO_CLOUD,
                "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d", "sendDataToCloud", "editInChartStudio"],
                "toImageButtonOptions": {"format": "png", "scale": 2}}


def plotly_text(text: object) -> str:
    """User text for any string plotly shows: titles, axis titles, legend names, hover templates,
    annotations, tick text. Plotly renders a subset of HTML there (a field named
    `<a href="…">x</a>` would become a link) and fills `%{…}` in templates; escaped, both show
    as written (plotly turns the entities back into characters when it draws the text)."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("%{", "%&#123;"))


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


def bin_filters(h: Histogram, column: str) -> list[str]:
    """Per bin, the filter that selects exactly the values :mod:`sde.histograms` put in it: [lo, hi) except
    the last bin, which is closed; a bin that folds outliers in has no bound on that side; integer
    bins (centred on k) are `{c} = k`."""
    n = len(h.edges) - 1
    out = []
    for i in range(n):
        lo, hi = float(h.edges[i]), float(h.edges[i + 1])
        open_below = i == 0 and h.underflow_at is not None
        open_above = i == n - 1 and h.overflow_at is not None
        if h.integer:
            k = _number(round((lo + hi) / 2))
            clauses = ([Clause(column, "<=", k)] if open_below and not open_above else
                       [Clause(column, ">=", k)] if open_above and not open_below else
                       [] if open_below and open_above else [Clause(column, "=", k)])
        else:
            clauses = []
            if not open_below:
                clauses.append(Clause(column, ">=", _number(lo)))
            if not open_above:
                clauses.append(Clause(column, "<=" if i == n - 1 else "<", _number(hi)))
        out.append(" && ".join(c.to_q() for c in clauses) or f"{column_ref(column)} is not null")
    return out


def _base_layout(fig: go.Figure, title: str, xlabel: str, ylabel: str, height: int = 280) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        title={"text": plotly_text(title), "x": 0.01, "xanchor": "left", "y": 0.98, "yanchor": "top", "font": {"size": 15}},
        font={"family": FONT, "size": 12, "color": "#2c3e50"},
        margin={"l": 55, "r": 15, "t": 45, "b": 45},
        height=height,
        bargap=0.04,
        hoverlabel={"font": {"family": FONT}},
        # Under the title, left-aligned: a long title and the legend never overlap.
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "xanchor": "left", "x": 0.0},
    )
    if len(fig.data) > 1:
        fig.update_layout(margin={"t": 65})
    fig.update_xaxes(title_text=plotly_text(xlabel), zeroline=False, tickformat=AXIS_NUMBER_FORMAT)
    fig.update_yaxes(title_text=plotly_text(ylabel), rangemode="tozero", tickformat=AXIS_NUMBER_FORMAT)
    return fig


def log_y(fig: go.Figure | dict, on: bool) -> None:
    """Switch a figure's count axis between linear and log (a 0% WER bin dwarfs the others)."""
    layout = fig.layout if isinstance(fig, go.Figure) else fig.setdefault("layout", {})
    yaxis = {"type": "log" if on else "linear", "rangemode": "normal" if on else "tozero", "autorange": True}
    if isinstance(fig, go.Figure):
        fig.update_yaxes(**yaxis)
    else:
        layout.setdefault("yaxis", {}).update(yaxis)


def empty_figure(title: str, message: str = "no data") -> go.Figure:
    fig = _base_layout(go.Figure(), title, "", "")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.add_annotation(text=plotly_text(message), showarrow=False, font={"size": 14, "color": "#7f8c8d"},
                       xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def edge_text(x: float) -> str:
    """A bin edge with every digit it has (edges are round numbers, so few), thousands separated:
    a hover of "10–10.3s" for the bin [10, 10.25) overlapped the next bin's "10.3–10.5s"."""
    if x == 0 or not np.isfinite(x):
        return "0" if x == 0 else str(x)
    if 1e-6 <= abs(x) < 1e15:
        return f"{x:,.9f}".rstrip("0").rstrip(".")
    return f"{x:.6g}"


def histogram_figure(h: Histogram, names: Sequence[str], title: str, xlabel: str, *,
                     ylabel: str = "utterances", unit: str = "",
                     columns: Mapping[str, str] | None = None) -> go.Figure:
    """A histogram, one overlaid trace per series of `h` (named by `names`, in order). With
    `columns` (series name → table column), each bar's customdata[2] is the filter of its bin."""
    names = list(names)
    if len(names) != len(h.counts):
        raise ValueError(f"{len(names)} names for a histogram of {len(h.counts)} series")
    if sum(h.total) == 0:
        return empty_figure(title)
    centers = h.edges[:-1] / 2 + h.edges[1:] / 2  # halves first: the sum of two edges near ±1.8e308 is ±inf
    widths = np.diff(h.edges)
    multi = len(names) > 1
    x_text, y_text, unit_text = plotly_text(xlabel), plotly_text(ylabel), plotly_text(unit)
    fig = go.Figure()
    for i, name in enumerate(names):
        color = HYP_COLORS[i % len(HYP_COLORS)] if multi else BASE_COLOR
        # [lo, hi, the bin's filter ("": none), lo and hi as the hover writes them]
        queries = bin_filters(h, columns[name]) if columns and name in columns else [""] * len(centers)
        # Escaped like all user text that reaches a figure (field names are user text); the page's
        # click handler unescapes it (html.unescape is its exact inverse).
        custom = [[float(lo), float(hi), plotly_text(q), edge_text(lo), edge_text(hi)]
                  for lo, hi, q in zip(h.edges[:-1], h.edges[1:], queries)]
        legend = plotly_text(name)
        click = "<br><i>click to list these utterances</i>" if columns and name in columns else ""
        if h.integer:
            hover = (f"{x_text} %{{x:.0f}}{unit_text}<br>%{{y:,}} {y_text}{click}"
                     f"<extra>{legend if multi else ''}</extra>")
        else:
            hover = (f"{x_text} %{{customdata[3]}}–%{{customdata[4]}}{unit_text}"
                     f"<br>%{{y:,}} {y_text}{click}<extra>{legend if multi else ''}</extra>")
        fig.add_trace(go.Bar(
            x=centers.tolist(), y=h.counts[i].tolist(), width=widths.tolist(), name=legend,
            customdata=custom, hovertemplate=hover,
            marker={"color": color, "line": {"width": 0}}, opacity=0.7 if multi else 0.9,
        ))
    fig.update_layout(barmode="overlay", showlegend=multi)
    _base_layout(fig, title, xlabel + (f" ({unit.strip()})" if unit.strip() else ""), ylabel)
    notes = []
    if h.overflow_at is not None:
        notes.append(f"last bar includes values > {edge_text(h.overflow_at)}")
    if h.underflow_at is not None:
        notes.append(f"first bar includes values < {edge_text(h.underflow_at)}")
    if notes:
        fig.add_annotation(text="; ".join(notes), showarrow=False, xref="paper", yref="paper",
                           x=1.0, y=-0.2, xanchor="right", yanchor="top",
                           font={"size": 10, "color": "#7f8c8d"})
        fig.update_layout(margin={"b": 60})
    return fig


WORD_ACCURACY_BUCKETS = ("never", "sometimes", "always")


def word_accuracy_buckets(accuracy: np.ndarray) -> dict[str, int]:
    """Reference words never (0 %), sometimes (0–100 %) and always (100 %) recognised."""
    acc = np.asarray(accuracy, dtype="float64")
    acc = acc[np.isfinite(acc)]
    return {
        "never": int(np.count_nonzero(acc <= 0)),
        "sometimes": int(np.count_nonzero((acc > 0) & (acc < 100))),
        "always": int(np.count_nonzero(acc >= 100)),
    }


def word_accuracy_filters(column: str) -> dict[str, str]:
    """The vocabulary filter of each word accuracy bucket, as word_accuracy_buckets counts them (a
    word a hypothesis never met, accuracy missing, is in none)."""
    ref = column_ref(column)
    return {"never": f"{ref} <= 0", "sometimes": f"{ref} > 0 && {ref} < 100", "always": f"{ref} >= 100"}


def word_accuracy_figure(accuracies: Mapping[str, np.ndarray], columns: Mapping[str, str] | None = None) -> go.Figure:
    """Grouped bars: per hypothesis, how many vocabulary words are never/sometimes/always recognised.
    With `columns` (hypothesis → its vocabulary accuracy column), each bar carries the Vocabulary
    filter of its words (customdata[2], escaped as user text; customdata[3] "vocabulary")."""
    title = "Word accuracy over the vocabulary"
    if not accuracies:
        return empty_figure(title, "no hypotheses")
    fig = go.Figure()
    for i, (hyp, acc) in enumerate(accuracies.items()):
        name = plotly_text(hyp)
        b = word_accuracy_buckets(acc)
        total = sum(b.values()) or 1
        column = (columns or {}).get(hyp)
        custom = ([[None, None, plotly_text(word_accuracy_filters(column)[k]), "vocabulary"]
                   for k in WORD_ACCURACY_BUCKETS] if column else None)
        fig.add_trace(go.Bar(
            customdata=custom,
            x=[f"{k} recognised" for k in WORD_ACCURACY_BUCKETS], y=[b[k] for k in WORD_ACCURACY_BUCKETS],
            name=name, marker={"color": HYP_COLORS[i % len(HYP_COLORS)]},
            text=[f"{b[k]:,} ({100 * b[k] / total:.1f}%)" for k in WORD_ACCURACY_BUCKETS],
            textposition="outside", cliponaxis=False,
            hovertemplate="%{x}: %{y:,} words<extra>" + name + "</extra>",
        ))
    fig.update_layout(barmode="group", showlegend=True)
    return _base_layout(fig, title, "", "words")
