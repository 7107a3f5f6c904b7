"""Comparison: is hypothesis B better than A, where, and on which utterances (JSON twin: /api/compare).

    /comparison?a=F&b=G&metric=wer|cer&filter=Q

- Corpus WER of A and B with 95% bootstrap intervals, and the paired-bootstrap interval and
  p-value of the difference B − A, as stat cards with a one-line interpretation
  (sde.web.pages.comparison_stats; `sde.analysis.compare`, through the cached
  `sde.web.present.compare_payload` of the JSON route: same numbers).
- Word level: per-word accuracy A vs B (scatter, marker size ~ log count) and the words where
  they differ most (`sde.analysis.word_comparison`); a click opens the samples that contain the
  word.
- Utterance level: per-utterance WER or CER, A vs B (WebGL scatter, at most 20k points chosen
  deterministically); a click opens the utterance.

Only offered when the manifest has at least two hypotheses. Built figures are cached per
(a, b, filter, metric), so going back and forth costs nothing. The server's warm-up lays out the
default comparison (the first two hypotheses, WER, every utterance) once (10M utterances: ~6 s on
two cores); a visit meanwhile waits for that work instead of repeating it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, ctx, dcc, html, no_update

from sde import analysis
from sde.caching import for_dataset
from sde.filters import column_ref, combine_filters
from sde.web import analysis_figures as af
from sde.web import present, state
from sde.web.components import (
    as_mapping,
    as_text,
    first_point,
    INT_FORMAT,
    PCT_FORMAT,
    alert_code,
    filter_box,
    fmt_int,
    graph_height,
    href_of_click,
    labelled,
    manifest_button,
    page_header,
    small_grid,
    warnings_view,
)
from sde.web.figures import GRAPH_CONFIG
from sde.web.outputs import changed
from sde.web.pages import comparison_stats, samples
from sde.web.pages.page import Page
from sde.web.pages.breakdown import scored_clause, unstated
from sde.web.present import ApiError, compare_payload, compare_words, hyp_options, resolve_hypothesis, selection
from sde.web.state import rendered_key, search_of, word_href

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset
    from sde.manifest import HypothesisField

TITLE = "Comparison"
PATH = "/comparison"
METRICS = ("wer", "cer")
WORD_ROWS = 300          # rows of the "differ most" table
_FIGURE_CACHE = 24
FILTER_LEAD = "{duration} > 5"     # the placeholder's example: this, and a real speaker of the data
SAME_HYPOTHESIS = "A and B are the same hypothesis: pick two different ones to compare."

# Component ids (this page's own)
A = "cmp-a"
B = "cmp-b"
SWAP = "cmp-swap"
METRIC = "cmp-metric"
FILTER = "cmp-filter"
FILTER_FEEDBACK = "cmp-filter-feedback"
APPLY = "cmp-apply"
STATE = "cmp-state"
WARNING = "cmp-warning"
WORDS = "cmp-words"                  # container of the word-level card
WORD_FIG = "cmp-word-fig"
WORD_GRID = "cmp-word-grid"
UTT_BOX = "cmp-utt-box"
UTT_FIG = "cmp-utt-fig"
UTT_GRID = "cmp-utt-grid"            # the utterances where A and B differ most
UTT_GRID_BOX = "cmp-utt-grid-box"
STATS_BOX = "cmp-stats-box"
WORDS_BOX = "cmp-words-box"
LINKS_BOX = "cmp-links-box"
UTT_ROWS = 200
WORSE_BETTER = "cmp-worse-better"    # the "where is B worse / better than A" links
WORSE_LINK = "cmp-worse-link"
BETTER_LINK = "cmp-better-link"


# ---------------------------------------------------------------- pure helpers

def _available(dataset: "Dataset") -> bool:
    return len(dataset.hypotheses) >= 2


def compare_stats(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", filter_text: str) -> dict:
    """The /api/compare payload (same defaults, same numbers, same cache)."""
    return compare_payload(dataset, a.field, b.field, filter_text or None)


def _figures(dataset: "Dataset"):
    return for_dataset(dataset, "comparison-figures", _FIGURE_CACHE, kept=1)


def word_comparison(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField",
                    utt_ids: np.ndarray | None):
    return analysis.word_comparison(dataset.utterances, dataset.vocabulary, dataset.errors, a, b, utt_ids)


def utterance_figure(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", metric: str,
                     utt_ids: np.ndarray | None, compared: pd.DataFrame | None = None):
    """The per-utterance scatter of A vs B; ``compared``: analysis.utterance_comparison's answer when
    the caller has it (10M utterances: ~0.3 s to make again)."""
    if compared is None:
        compared = analysis.utterance_comparison(dataset.utterances, a, b, metric=metric, utt_ids=utt_ids)
    return wrapped_captions(af.utterance_scatter_figure(compared["id"].to_numpy(), compared["a"].to_numpy(),
                                                        compared["b"].to_numpy(), a.name, b.name, metric))


# Plotly never wraps text: a caption longer than the narrowest chart (390 px phone: ~50 characters
# of its 11 px font beside the axis) was cut at the chart's edge. Its " · " parts go on lines of
# at most this many characters.
CAPTION_CHARS = 46
CAPTION_LINE_PX = 14


def wrapped_captions(fig: go.Figure) -> go.Figure:
    """``fig`` with each annotation over CAPTION_CHARS characters broken at its " · " separators;
    the lines a caption above the plot gains widen the top margin and lift the legend above it."""
    added = 0
    for note in fig.layout.annotations:
        text = note.text or ""
        if len(text) <= CAPTION_CHARS or "<br>" in text:
            continue
        lines: list[str] = []
        for part in text.split(" · "):
            if lines and len(lines[-1]) + 3 + len(part) <= CAPTION_CHARS:
                lines[-1] += " · " + part
            else:
                lines.append(part)
        note.text = "<br>".join(lines)
        if note.yanchor == "bottom" and (note.y or 0) >= 1:  # above the plot: under the legend
            added = max(added, len(lines) - 1)
    if added:
        layout = fig.layout
        top = (layout.margin.t or 0) + added * CAPTION_LINE_PX
        plot_px = (layout.height or 450) - top - (layout.margin.b or 0)
        legend_y = (layout.legend.y if layout.legend.y is not None else 1.0) + added * CAPTION_LINE_PX / max(plot_px, 1)
        fig.update_layout(margin={"t": top}, legend={"y": legend_y})
    return fig


def ranked_differences(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", metric: str,
                       filter_text: str | None, utt_ids: np.ndarray | None = None,
                       compared: pd.DataFrame | None = None) -> pd.DataFrame:
    """The utterances where A and B differ, largest |B − A| of the metric first, then by id
    (DataFrame[id, a, b, diff]): the ranked table, and the list the inspector walks when it is
    opened from this page. Cached per (a, b, metric, filter); ``compared``: the filter's
    analysis.utterance_comparison when the caller has made it."""
    def build() -> pd.DataFrame:
        frame = compared
        if frame is None:
            ids_ = utt_ids
            if ids_ is None and filter_text:
                ids_, error = selection(dataset, filter_text)
                if error:
                    raise ApiError(error)
            frame = analysis.utterance_comparison(dataset.utterances, a, b, metric=metric, utt_ids=ids_)
        diff = frame["diff"].to_numpy(dtype=np.float64)
        differ = np.flatnonzero(np.isfinite(diff) & (diff != 0))
        order = differ[np.lexsort([frame["id"].to_numpy()[differ], -np.abs(diff[differ])])]
        # one take of the rows, in order (10M utterances: a filtered copy and then a sorted one
        # held ~0.4 GB at once beside the comparison they came from)
        return frame.take(order).reset_index(drop=True)

    return _figures(dataset).get_or_compute_once(("ranked", a.field, b.field, metric, filter_text or ""), build)


def utterance_rows(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", metric: str,
                   filter_text: str | None, utt_ids: np.ndarray | None, limit: int = UTT_ROWS,
                   compared: pd.DataFrame | None = None) -> list[dict]:
    """The utterances where A and B differ most (|B − A| of the metric, then id), with links
    that open the inspector on the ranked list."""
    top = ranked_differences(dataset, a, b, metric, filter_text, utt_ids, compared).head(limit)
    texts = dataset.utterances["text"]
    rows = []
    for uid, va, vb, d in top[["id", "a", "b", "diff"]].itertuples(index=False):
        uid = int(uid)
        rows.append({"id": uid, "text": str(texts.iat[uid]) if uid < len(texts) else "",
                     "a": _r(va), "b": _r(vb), "diff": _r(d),
                     "href": state.ranked_utterance_href(uid, a.field, b.field, metric, filter_text)})
    return rows


def worse_better_links(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", metric: str,
                       filter_text: str | None, utt_ids: np.ndarray | None) -> html.Div:
    """"B worse than A: N · B better: M", each a link to Samples filtered by the column comparison
    (`{wer_b} > {wer}`), sorted by B's metric."""
    worse, better = differing_counts(dataset, a, b, metric, filter_text, utt_ids)
    col_a, col_b = a.column(metric), b.column(metric)
    name = metric.upper()

    def link(text: str, count: int, op: str, link_id: str, sort: str):
        q = combine_filters(filter_text, f"{column_ref(col_b)} {op} {column_ref(col_a)}")
        return dcc.Link([text, html.B(f" {fmt_int(count)}")], href=state.samples_href(filter=q, sort=sort),
                        id=link_id, title=f"Samples where {q}")

    return html.Div([
        html.Span("Utterances where ", className="text-muted"),
        link(f"B is worse (higher {name}):", worse, ">", WORSE_LINK, f"-{col_b}"), " · ",
        link(f"B is better (lower {name}):", better, "<", BETTER_LINK, col_b),
        html.Span(f" · B − A = {{{col_b}}} − {{{col_a}}}", className="text-muted"),
    ], className="small mb-1", id=WORSE_BETTER)


def differing_counts(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", metric: str,
                     filter_text: str | None, utt_ids: np.ndarray | None) -> tuple[int, int]:
    """(utterances where B's metric is higher than A's, where it is lower), kept apart from the
    ranked list they are counted from: that list (millions of rows at 10M utterances) is too big to
    keep beside the build, these two numbers are not."""
    def build() -> tuple[int, int]:
        ranked = ranked_differences(dataset, a, b, metric, filter_text, utt_ids)
        worse = int((ranked["diff"] > 0).sum())
        return worse, len(ranked) - worse

    return _figures(dataset).get_or_compute_once(("counts", a.field, b.field, metric, filter_text or ""), build)


def cached_utterances(dataset, a, b, metric, filter_text, utt_ids) -> tuple[Any, list[dict]]:
    """(utterance scatter figure, rows of the largest differences) for A vs B: both from one
    analysis.utterance_comparison; the figure as plotly JSON (kept beside the build, it reads back
    without validating its traces again)."""
    def build() -> tuple[Any, list[dict]]:
        compared = analysis.utterance_comparison(dataset.utterances, a, b, metric=metric, utt_ids=utt_ids)
        return (utterance_figure(dataset, a, b, metric, utt_ids, compared).to_plotly_json(),
                utterance_rows(dataset, a, b, metric, filter_text, utt_ids, compared=compared))

    return _figures(dataset).get_or_compute_once(("utt", a.field, b.field, metric, filter_text), build)


def word_filter(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", filter_text: str | None) -> str:
    """The utterances the word table counts, as a filter: the page's, and (where a hypothesis lacks
    some lines) only the lines both score, so a word's link lists its `utterances` rows."""
    return combine_filters(filter_text, *unstated(filter_text, scored_clause(dataset, a), scored_clause(dataset, b)))


def word_rows(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", filter_text: str | None) -> list[dict]:
    """The rows of the word table (present.compare_words, as /api/compare/words gives them), each with
    the link to the Samples that hold the word."""
    words = compare_words(dataset, a.field, b.field, filter_text, WORD_ROWS)
    scope = word_filter(dataset, a, b, filter_text)
    return [{"word": str(w), "utterances": int(u), "occurrences": int(c), "acc_a": _r(x), "acc_b": _r(y),
             "diff": _r(d), "net": int(n), "href": word_href(str(w), scope)}
            for w, u, c, x, y, d, n in words[["word", "utterances", "occurrences", "acc_a", "acc_b", "diff",
                                              "net"]].itertuples(index=False)]


def cached_words(dataset, a, b, filter_text, utt_ids) -> tuple[Any, list[dict]]:
    """(word scatter figure, table rows) for A vs B."""
    def build():
        words = present.word_comparison(dataset, a, b, filter_text)  # the table's too (compare_words)
        fig = af.word_scatter_figure(words, a.name, b.name).to_plotly_json()
        return fig, word_rows(dataset, a, b, filter_text)

    return _figures(dataset).get_or_compute_once(("words", a.field, b.field, filter_text), build)


def _r(x: float) -> float | None:
    return round(float(x), 4) if x is not None and math.isfinite(float(x)) else None


# ---------------------------------------------------------------- components

def words_section(fig: Any, rows: list[dict], a: "HypothesisField", b: "HypothesisField",
                  filter_text: str | None = None) -> dbc.Card:
    defs = [
        {"field": "word", "tooltipField": "word", "flex": 2, "minWidth": 110, "cellClass": "font-monospace"},
        {"field": "utterances", "type": "numericColumn", "valueFormatter": INT_FORMAT, "flex": 1, "minWidth": 95,
         "headerTooltip": "utterances whose reference has the word (a click lists them)"},
        {"field": "occurrences", "type": "numericColumn", "valueFormatter": INT_FORMAT, "flex": 1, "minWidth": 105,
         "headerTooltip": "occurrences of the word in those references (accuracy is over these)"},
        {"field": "acc_a", "headerName": f"A: {a.name}", "headerTooltip": f"word accuracy of {a.field}",
         "type": "numericColumn", "valueFormatter": PCT_FORMAT, "flex": 1, "minWidth": 90},
        {"field": "acc_b", "headerName": f"B: {b.name}", "headerTooltip": f"word accuracy of {b.field}",
         "type": "numericColumn", "valueFormatter": PCT_FORMAT, "flex": 1, "minWidth": 90},
        {"field": "diff", "headerName": "B − A", "headerTooltip": "accuracy difference in points",
         "type": "numericColumn", "flex": 1, "minWidth": 80,
         "valueFormatter": {"function": "params.value == null ? '–' : d3.format('+.1f')(params.value)"},
         "cellClassRules": {"text-success fw-bold": "params.value > 0", "text-danger fw-bold": "params.value < 0"}},
        {"field": "net", "headerName": "net", "type": "numericColumn", "flex": 1, "minWidth": 70,
         "headerTooltip": "occurrences B gets right minus occurrences A gets right",
         "valueFormatter": {"function": "params.value == null ? '' : d3.format('+,')(params.value)"}},
    ]
    return dbc.Card(dbc.CardBody([
        html.Div([html.H6("Word level", className="mb-0 fw-bold"),
                  html.Span("per-word accuracy; click a word to see the utterances that contain it",
                            className="text-muted small")],
                 className="d-flex align-items-baseline gap-2 flex-wrap mb-1"),
        dbc.Row([
            dbc.Col(dcc.Graph(id=WORD_FIG, figure=fig, config=GRAPH_CONFIG, style={"height": graph_height(fig)}),
                    xs=12, xl=6),
            dbc.Col([html.Div(["Where A and B differ most (by occurrences gained or lost) · ",
                               _word_links(a, b, filter_text)], className="small fw-bold mb-1"),
                     small_grid(WORD_GRID, rows, defs, height=380)], xs=12, xl=6),
        ], className="g-2"),
    ], className="p-2"), className="mb-3", id=WORDS)


def _word_links(a: "HypothesisField", b: "HypothesisField", filter_text: str | None) -> html.Span:
    q = search_of({"a": a.field, "b": b.field, "filter": filter_text or ""})
    return html.Span([html.A("JSON", href="/api/compare/words" + q, className="link-secondary fw-normal"), " · ",
                      html.A("CSV", href="/api/compare/words.csv" + q, className="link-secondary fw-normal",
                             download="compare-words.csv")], id="cmp-word-links")


def utterance_grid(rows: list[dict], metric: str, links: Any = None) -> Any:
    name = metric.upper()
    defs = [
        {"field": "id", "type": "numericColumn", "width": 95, "minWidth": 95, "flex": 0, "sort": None},
        {"field": "text", "headerName": "reference", "tooltipField": "text", "flex": 1, "minWidth": 180},
        # minimum widths: sized to fit a phone's screen, the numbers shrank to "1…" (the grid scrolls instead)
        {"field": "a", "headerName": f"A {name}", "type": "numericColumn", "valueFormatter": PCT_FORMAT,
         "width": 95, "minWidth": 80, "flex": 0},
        {"field": "b", "headerName": f"B {name}", "type": "numericColumn", "valueFormatter": PCT_FORMAT,
         "width": 95, "minWidth": 80, "flex": 0},
        {"field": "diff", "headerName": "B − A", "type": "numericColumn", "width": 85, "minWidth": 75, "flex": 0,
         "headerTooltip": f"the delta column: B's {name} minus A's, in points",
         "valueFormatter": {"function": "params.value == null ? '–' : d3.format('+.1f')(params.value)"},
         "cellClassRules": {"text-danger fw-bold": "params.value > 0", "text-success fw-bold": "params.value < 0"}},
    ]
    return [html.Div(f"Where A and B differ most (largest |B − A| of the {name}); click to open, then "
                     "previous/next walk this ranking", className="small fw-bold mb-1"),
            links,
            small_grid(UTT_GRID, rows, defs, height=380)]


def utterance_section(fig: Any, rows: list[dict], metric: str, links: Any = None) -> dbc.Card:
    return dbc.Card(dbc.CardBody([
        html.Div([
            html.H6("Utterance level", className="mb-0 fw-bold"),
            html.Span("per-utterance error rate; click a point or a row to open the utterance",
                      className="text-muted small me-auto"),
            dbc.RadioItems(id=METRIC, options=[{"label": m.upper(), "value": m} for m in METRICS], value=metric,
                           inline=True, className="small"),
        ], className="d-flex align-items-baseline gap-2 flex-wrap mb-1"),
        dbc.Row([
            dbc.Col(html.Div(dcc.Graph(id=UTT_FIG, figure=fig, config=GRAPH_CONFIG,
                                       style={"height": graph_height(fig)}), id=UTT_BOX), xs=12, xl=6),
            dbc.Col(utterance_grid(rows, metric, links), id=UTT_GRID_BOX, xs=12, xl=6),
        ], className="g-2"),
    ], className="p-2"), className="mb-3")


def json_links(a: "HypothesisField", b: "HypothesisField", filter_text: str) -> html.Span:
    q = search_of({"a": a.field, "b": b.field, "filter": filter_text})
    return html.Span([html.A("JSON", href="/api/compare" + q, className="link-secondary"), " · ",
                      html.A("CSV", href="/api/compare.csv" + q, className="link-secondary",
                             download="compare.csv"), " ",
                      manifest_button(filter_text, element_id="cmp-manifest")], id="cmp-links")


def page_params(dataset: "Dataset", a: str, b: str, metric: str, filter_text: str) -> dict[str, str]:
    out = {"a": a, "b": b}
    if metric and metric != "wer":
        out["metric"] = metric
    if filter_text:
        out["filter"] = filter_text
    return out


def sections(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", metric: str,
             filter_text: str) -> tuple[Any, Any, Any, list[dict]]:
    """(stats, words card, utterance figure, utterance rows) for a valid filter."""
    utt_ids, _ = selection(dataset, filter_text)
    try:
        payload = compare_stats(dataset, a, b, filter_text)
    except ApiError as e:
        return dbc.Alert(str(e), color="warning"), None, None, []
    stats = comparison_stats.section(payload, a, b)
    if utt_ids is not None and len(utt_ids) == 0:
        return stats, dbc.Alert("No utterance matches the filter.", color="info"), None, []
    fig, rows = cached_words(dataset, a, b, filter_text, utt_ids)
    ufig, urows = cached_utterances(dataset, a, b, metric, filter_text, utt_ids)
    return stats, words_section(fig, rows, a, b, filter_text), ufig, urows


# ---------------------------------------------------------------- layout and callbacks

def _no_utterances():
    fig = af.empty_figure("Per-utterance error rate", "no utterances")
    fig.update_layout(height=460)
    return fig


def unavailable() -> html.Div:
    return html.Div([page_header(TITLE), dbc.Alert(
        ["A comparison needs two hypotheses, and this manifest has fewer. Add another one, e.g. a ",
         alert_code("pred_text_<label>"), " field, or --pred-field F / --predictions FILE."],
        color="info", id="cmp-unavailable")])


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    if not _available(dataset):
        return unavailable()
    warnings = []
    a, wa = resolve_hypothesis(dataset, params.get("a"), 0)
    b, wb = resolve_hypothesis(dataset, params.get("b"), 1)
    warnings += [w for w in (wa, wb) if w]
    if a.field == b.field:
        warnings.append(SAME_HYPOTHESIS)
    metric = params.get("metric") or "wer"
    if metric not in METRICS:
        warnings.append(f'Unknown metric "{metric}"; showing WER (choose wer or cer).')
        metric = "wer"
    filter_text = (params.get("filter") or "").strip()
    _ids, filter_error = selection(dataset, filter_text)
    if filter_error:
        warnings.append("The filter in the link is invalid (see below), so all utterances are compared.")
    applied = "" if filter_error else filter_text
    stats, words, ufig, urows = sections(dataset, a, b, metric, applied)
    controls = dbc.Row([
        dbc.Col(labelled("A (baseline)", dcc.Dropdown(id=A, options=hyp_options(dataset), value=a.field,
                                                      clearable=False)), xs=12, md=3),
        dbc.Col(dbc.Button("⇄", id=SWAP, color="secondary", outline=True, n_clicks=0, title="swap A and B",
                           style={"marginTop": "1.75rem"}), xs="auto"),
        dbc.Col(labelled("B (candidate)", dcc.Dropdown(id=B, options=hyp_options(dataset), value=b.field,
                                                       clearable=False)), xs=12, md=3),
        dbc.Col(labelled("Utterances", filter_box(FILTER, APPLY, FILTER_FEEDBACK, filter_text, filter_error,
                                                  "e.g. " + samples.placeholder(dataset, FILTER_LEAD), lead="Restrict to some utterances: clauses ")),
                xs=12, md=True),
    ], className="g-2 mb-3")
    return html.Div([
        dcc.Store(id=STATE, data={"a": a.field, "b": b.field, "metric": metric, "filter": applied}),
        page_header(TITLE, ["Is B better than A, on which words and which utterances · ",
                            html.Span(json_links(a, b, applied), id=LINKS_BOX)]),
        html.Div(warnings_view(warnings), id=WARNING),
        controls,
        html.Div(stats, id=STATS_BOX),
        html.Div(words, id=WORDS_BOX),
        utterance_section(ufig if ufig is not None else _no_utterances(), urows, metric,
                          worse_better_links(dataset, a, b, metric, applied, None)),
    ], className="comparison-page")


# ---------------------------------------------------------------- callbacks

OUTPUTS = {
    "stats": Output(STATS_BOX, "children"),
    "words": Output(WORDS_BOX, "children"),
    "utterance_figure": Output(UTT_FIG, "figure"),
    "utterance_grid": Output(UTT_GRID_BOX, "children"),
    "links": Output(LINKS_BOX, "children"),
    "state": Output(STATE, "data"),
    "invalid": Output(FILTER, "invalid"),
    "feedback": Output(FILTER_FEEDBACK, "children"),
    "warning": Output(WARNING, "children"),
    "search": Output(state.URL, "search", allow_duplicate=True),
    "rendered": Output(state.RENDERED, "data", allow_duplicate=True),
}


def update(dataset: "Dataset", a_name: str | None, b_name: str | None, metric: str | None,
           filter_value: str | None, shown: Mapping | None) -> dict:
    """The page after a control changed (`shown`: its store); a new metric redraws the utterance
    level only."""
    shown = as_mapping(shown)
    a_name, b_name, metric = as_text(a_name) or None, as_text(b_name) or None, as_text(metric) or None
    filter_text = as_text(filter_value).strip()
    utt_ids, error = selection(dataset, filter_text)
    if error:
        return changed(OUTPUTS, invalid=True, feedback=error)
    a, _ = resolve_hypothesis(dataset, a_name, 0)
    b, _ = resolve_hypothesis(dataset, b_name, 1)
    metric = metric if metric in METRICS else "wer"
    new = {"a": a.field, "b": b.field, "metric": metric, "filter": filter_text}
    if new == shown:
        return changed(OUTPUTS, invalid=False, feedback="")
    params = page_params(dataset, a.field, b.field, metric, filter_text)
    out = changed(OUTPUTS, state=new, invalid=False, feedback="", search=search_of(params),
                  rendered=rendered_key(PATH, params, TITLE),
                  warning=warnings_view([SAME_HYPOTHESIS] if a.field == b.field else []))
    if all(new[k] == shown.get(k) for k in ("a", "b", "filter")):
        ufig, urows = cached_utterances(dataset, a, b, metric, filter_text, utt_ids)
        return {**out, "utterance_figure": ufig,
                "utterance_grid": utterance_grid(urows, metric, worse_better_links(dataset, a, b, metric, filter_text,
                                                                                   utt_ids))}
    stats, words, ufig, urows = sections(dataset, a, b, metric, filter_text)
    return {**out, "stats": stats, "words": words, "links": json_links(a, b, filter_text),
            "utterance_figure": ufig if ufig is not None else _no_utterances(),
            "utterance_grid": utterance_grid(urows, metric, worse_better_links(dataset, a, b, metric, filter_text,
                                                                              utt_ids))}


def click_href(trigger: str | None, cell: Mapping | None, word_point: Mapping | None,
               utt_point: Mapping | None, shown: Mapping | None) -> str | None:
    """Where a click on the word table, the word scatter, the utterance scatter or the utterance
    table leads (the page's filter travels along)."""
    shown = as_mapping(shown)
    filter_text = as_text(shown.get("filter"))
    if trigger in (WORD_GRID, UTT_GRID):
        return href_of_click(cell=cell)
    point = first_point(word_point if trigger == WORD_FIG else utt_point if trigger == UTT_FIG else None)
    if not point:
        return None
    custom = point.get("customdata")
    value = custom[0] if isinstance(custom, (list, tuple)) and custom else custom
    if trigger == WORD_FIG:
        return word_href(value, filter_text) if isinstance(value, str) and value else None
    try:
        uid = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    a, b = as_text(shown.get("a")), as_text(shown.get("b"))
    if not a or not b:
        return state.utterance_href(uid, filter_text or None)
    return state.ranked_utterance_href(uid, a, b, as_text(shown.get("metric")) or None, filter_text or None)


def callbacks(app, dataset: "Dataset") -> None:
    @app.callback(Output(A, "value"), Output(B, "value"), Input(SWAP, "n_clicks"), State(A, "value"),
                  State(B, "value"), prevent_initial_call=True)
    def swap(_n, a, b):
        return b, a

    @app.callback(
        output=OUTPUTS,
        inputs={"a": Input(A, "value"), "b": Input(B, "value"), "metric": Input(METRIC, "value"),
                "_typed": Input(FILTER, "value"), "_clicks": Input(APPLY, "n_clicks"),
                "filter_value": State(FILTER, "value"), "shown": State(STATE, "data")},
        prevent_initial_call=True,
    )
    def on_controls(a, b, metric, _typed, _clicks, filter_value, shown):
        return update(dataset, a, b, metric, filter_value, shown)

    # Two callbacks: the word card is absent when no utterance matches, the utterance plot never is
    # (a callback does not fire while one of its inputs is missing from the page).
    @app.callback(Output(state.URL, "href", allow_duplicate=True), Input(WORD_GRID, "cellClicked"),
                  Input(WORD_FIG, "clickData"), State(STATE, "data"), prevent_initial_call=True)
    def open_word(cell, point, shown):
        return click_href(ctx.triggered_id, cell, point, None, shown) or no_update

    @app.callback(Output(state.URL, "href", allow_duplicate=True), Input(UTT_FIG, "clickData"),
                  Input(UTT_GRID, "cellClicked"), State(STATE, "data"), prevent_initial_call=True)
    def open_utterance(point, cell, shown):
        return click_href(ctx.triggered_id, cell, None, point, shown) or no_update


PAGE = Page(path=PATH, name=TITLE, layout=layout, callbacks=callbacks, available=_available, api="/api/compare",
            prepare=True, takes=("a", "b", "metric", "filter"))
