"""Comparison: is hypothesis B better than A, where, and on which utterances (JSON twin: /api/compare).

    /comparison?a=F&b=G&metric=wer|cer&filter=Q

- Corpus WER of A and B with 95% bootstrap intervals, and the paired-bootstrap interval and
  p-value of the difference B − A, as stat cards with a one-line interpretation
  (`sde.analysis.compare`, through the cached `compare_payload` of the JSON route: same numbers).
- Word level: per-word accuracy A vs B (scatter, marker size ~ log count) and the words where
  they differ most (`sde.analysis.word_accuracy_comparison`); a click opens the samples that
  contain the word.
- Utterance level: per-utterance WER or CER, A vs B (WebGL scatter, at most 20k points chosen
  deterministically); a click opens the utterance.

Only offered when the manifest has at least two hypotheses. Built figures are cached per
(a, b, filter, metric), so going back and forth costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
from dash import Input, Output, State, ctx, dcc, html, no_update

from sde import analysis
from sde.web import analysis_figures as af
from sde.web import ids
from sde.web.analysis_api import RecentResults, compare_payload
from sde.web.api import ApiError
from sde.web.components import fmt_int, page_header
from sde.web.figures import GRAPH_CONFIG
from sde.web.pages import Page
from sde.web.pages.errors import (
    _INT_FMT,
    _PCT_FMT,
    filter_box,
    graph_height,
    hyp_options,
    labelled,
    resolve_hypothesis,
    samples_href,
    selection,
    small_grid,
    web_cache,
)

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset
    from sde.manifest import HypothesisField

TITLE = "Comparison"
PATH = "/comparison"
METRICS = ("wer", "cer")
WORD_ROWS = 300          # rows of the "differ most" table
_FIGURE_CACHE = 24

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
STATS = "cmp-stats"                  # container of the stat cards + interpretation
INTERPRETATION = "cmp-interpretation"
A_WER, B_WER, DIFF_WER = "cmp-a-wer", "cmp-b-wer", "cmp-diff-wer"
A_CI, B_CI, DIFF_CI, DIFF_P = "cmp-a-ci", "cmp-b-ci", "cmp-diff-ci", "cmp-diff-p"
WORDS = "cmp-words"                  # container of the word-level card
WORD_FIG = "cmp-word-fig"
WORD_GRID = "cmp-word-grid"
UTT_BOX = "cmp-utt-box"
UTT_FIG = "cmp-utt-fig"
UTT_GRID = "cmp-utt-grid"            # the utterances where A and B differ most
UTT_GRID_BOX = "cmp-utt-grid-box"
UTT_ROWS = 200


# ---------------------------------------------------------------- pure helpers

def _available(dataset: "Dataset") -> bool:
    return len(dataset.hypotheses) >= 2


def ci_digits(lo: float, hi: float) -> int:
    """Decimals that keep an interval's ends apart: 1 for a wide one, up to 3 for a narrow one
    (a million utterances give intervals a few hundredths of a point wide)."""
    width = abs(hi - lo)
    if not math.isfinite(width) or width <= 0:
        return 2
    return max(1, min(3, math.ceil(-math.log10(width))))


def fmt_points(x: float, digits: int = 1) -> str:
    """A WER difference in percentage points (at least 2 decimals below 1 point)."""
    return f"{x:.{digits if abs(x) >= 1 else max(digits, 2)}f}"


def fmt_p(p: float | None, n_resamples: int | None = None) -> str:
    """The p-value; at the bootstrap's floor 2/(B+1) it says "≤" (the true p may be far smaller)."""
    if p is None or not math.isfinite(p):
        return "p = –"
    if n_resamples:
        floor = 2.0 / (n_resamples + 1)
        if p <= floor * (1 + 1e-6):
            return f"p ≤ {floor:.2g}" if floor < 0.001 else f"p ≤ {floor:.3f}"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def fmt_signed(x: float | None, digits: int = 2) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:+.{digits}f}".replace("-", "−")


def _finite(*xs: Any) -> bool:
    return all(x is not None and isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def interpretation(payload: Mapping, a_name: str, b_name: str) -> tuple[str, str]:
    """(sentence, tone) saying what the paired bootstrap found.

    "B (x) is better by 8.0 points (95% CI 3.1 – 12.9, p = 0.002)" when the interval excludes 0;
    otherwise that the difference is not significant. tone: success | danger | secondary."""
    d = payload.get("diff") or {}
    diff, (lo, hi), p = d.get("wer"), d.get("ci") or (None, None), d.get("p")
    if not _finite(diff, lo, hi):
        return "No utterances selected: nothing to compare.", "secondary"
    if diff == 0 and lo == 0 and hi == 0:
        return f"A ({a_name}) and B ({b_name}) make exactly as many word errors.", "secondary"
    if diff < 0:  # B has the lower WER
        better, by, clo, chi = f"B ({b_name})", -diff, -hi, -lo
    else:
        better, by, clo, chi = f"A ({a_name})", diff, lo, hi
    digits = ci_digits(lo, hi)
    ci = f"95% CI {fmt_points(clo, digits)} – {fmt_points(chi, digits)}"
    pv = fmt_p(p, payload.get("n_resamples"))
    if lo > 0 or hi < 0:
        tone = "success" if diff < 0 else "danger"
        return f"{better} is better by {fmt_points(by, digits)} points ({ci}, {pv}).", tone
    return (f"No significant difference: {better} is ahead by {fmt_points(by, digits)} points, but the {ci} "
            f"includes 0 ({pv}).", "secondary")


def _caches(dataset: "Dataset") -> tuple[RecentResults, RecentResults]:
    cache = web_cache(dataset)
    if "compare" not in cache:
        cache["compare"] = RecentResults()
        cache["figures"] = RecentResults(_FIGURE_CACHE)
    return cache["compare"], cache["figures"]


def compare_stats(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", filter_text: str) -> dict:
    """The /api/compare payload (same defaults, same numbers), cached per (a, b, filter)."""
    cache, _ = _caches(dataset)
    return compare_payload(dataset, a.field, b.field, filter_text or None, cache=cache)


def word_comparison(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField",
                    utt_ids: np.ndarray | None) -> pd.DataFrame:
    """`analysis.word_accuracy_comparison` of A and B (word, count, acc_a, acc_b, diff, net), over
    the selected utterances (the vocabulary's accuracies when all are selected). `net` = B's
    correctly recognised occurrences − A's; rows sorted by |net|, then |diff|."""
    acc_a, acc_b = a.column("accuracy"), b.column("accuracy")
    vocab = dataset.vocabulary
    if utt_ids is not None or acc_a not in vocab.columns or acc_b not in vocab.columns:
        vocab = _subset_vocabulary(dataset, a, b, utt_ids)
    out = analysis.word_accuracy_comparison(vocab, acc_a, acc_b)
    net = np.rint(out["count"].to_numpy(dtype=np.float64) * out["diff"].to_numpy(dtype=np.float64) / 100.0)
    out["net"] = net.astype(np.int64)
    order = np.lexsort([-np.abs(out["diff"].to_numpy()), -np.abs(net)])
    return out.iloc[order].reset_index(drop=True)


def _subset_vocabulary(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField",
                       utt_ids: np.ndarray | None) -> pd.DataFrame:
    from sde.metrics import word_counts, word_hits

    df = dataset.utterances
    # Lines without either hypothesis are in neither score (sde.analysis.scored_rows): not here either.
    scored = df[a.field].notna().to_numpy() & df[b.field].notna().to_numpy()
    if utt_ids is not None:
        keep = np.zeros(len(df), dtype=bool)
        keep[utt_ids] = True
        scored &= keep
    utt_ids = None if scored.all() else np.flatnonzero(scored)
    texts = df["text"] if utt_ids is None else df["text"].iloc[utt_ids]
    counts = word_counts(texts)
    out = counts[["word", "count"]].copy()
    for h in (a, b):
        errors = dataset.errors[h.field]
        if utt_ids is not None:
            mask = np.zeros(len(df), dtype=bool)
            mask[utt_ids] = True
            utt = errors["utt"].to_numpy(dtype=np.int64)
            errors = errors[mask[np.clip(utt, 0, max(len(df) - 1, 0))] & (utt < len(df))]
        hits = word_hits(counts, errors)
        out[h.column("accuracy")] = 100.0 * hits["hits"].to_numpy(dtype=np.float64) / np.maximum(
            hits["count"].to_numpy(dtype=np.float64), 1.0)
    return out


def word_href(word: str, filter_text: str | None = None) -> str:
    """/samples restricted to references containing the word (and the page's filter)."""
    clause = '{text} has "' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    full = " && ".join(p for p in ((filter_text or "").strip(), clause) if p)
    return samples_href({"filter": full})


def utterance_href(uid: int, filter_text: str | None = None) -> str:
    q = {"filter": filter_text} if filter_text else {}
    return f"/utterance/{int(uid)}" + (f"?{urlencode(q)}" if q else "")


def utterance_figure(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", metric: str,
                     utt_ids: np.ndarray | None):
    frame = analysis.utterance_comparison(dataset.utterances, a, b, metric=metric, utt_ids=utt_ids)
    return af.utterance_scatter_figure(frame["id"].to_numpy(), frame["a"].to_numpy(), frame["b"].to_numpy(),
                                       a.name, b.name, metric)


def utterance_rows(dataset: "Dataset", a: "HypothesisField", b: "HypothesisField", metric: str,
                   filter_text: str | None, utt_ids: np.ndarray | None, limit: int = UTT_ROWS) -> list[dict]:
    """The utterances where A and B differ most (|B − A| of the metric, then id), with links."""
    frame = analysis.utterance_comparison(dataset.utterances, a, b, metric=metric, utt_ids=utt_ids)
    diff = np.nan_to_num(frame["diff"].to_numpy(dtype=np.float64), nan=0.0)
    k = min(limit, len(frame))
    if k == 0:
        return []
    top = np.argpartition(-np.abs(diff), k - 1)[:k] if k < len(frame) else np.arange(len(frame))
    ids_ = frame["id"].to_numpy()[top]
    top = top[np.lexsort([ids_, -np.abs(diff[top])])]
    texts = dataset.utterances["text"]
    rows = []
    for pos in top.tolist():
        if diff[pos] == 0:
            continue
        uid = int(frame["id"].iat[pos])
        rows.append({"id": uid, "text": str(texts.iat[uid]) if uid < len(texts) else "",
                     "a": _r(frame["a"].iat[pos]), "b": _r(frame["b"].iat[pos]), "diff": _r(diff[pos]),
                     "href": utterance_href(uid, filter_text)})
    return rows


def cached_utterances(dataset, a, b, metric, filter_text, utt_ids) -> tuple[Any, list[dict]]:
    """(utterance scatter figure, rows of the largest differences) for A vs B."""
    _, figs = _caches(dataset)
    return figs.get(("utt", a.field, b.field, metric, filter_text),
                    lambda: (utterance_figure(dataset, a, b, metric, utt_ids),
                             utterance_rows(dataset, a, b, metric, filter_text, utt_ids)))


def cached_words(dataset, a, b, filter_text, utt_ids) -> tuple[Any, list[dict]]:
    """(word scatter figure, table rows) for A vs B."""
    _, figs = _caches(dataset)

    def build():
        words = word_comparison(dataset, a, b, utt_ids)
        fig = af.word_scatter_figure(words, a.name, b.name)
        top = words.head(WORD_ROWS)
        rows = [{"word": str(w), "count": int(c), "acc_a": _r(x), "acc_b": _r(y), "diff": _r(d), "net": int(n),
                 "href": word_href(str(w), filter_text)}
                for w, c, x, y, d, n in top[["word", "count", "acc_a", "acc_b", "diff", "net"]].itertuples(index=False)]
        return fig, rows

    return figs.get(("words", a.field, b.field, filter_text), build)


def _r(x: float) -> float | None:
    return round(float(x), 4) if x is not None and math.isfinite(float(x)) else None


# ---------------------------------------------------------------- components

def _card(label: str, value: str, value_id: str, sub: Any, sub_id: str, tone: str | None = None,
          extra: Any = None, title: str | None = None, name: str | None = None) -> dbc.Card:
    head = [html.Span(label, className="stat-label")]
    if name:  # the hypothesis as written (stat labels are upper-cased)
        head.append(html.Span(name, className="hyp-name small ms-2 text-truncate"))
    body = [html.Div(head, className="d-flex align-items-baseline"),
            html.Div(value, id=value_id, className="stat-value" + (f" text-{tone}" if tone else "")),
            html.Div(sub, id=sub_id, className="stat-sub")]
    if extra is not None:
        body.append(extra)
    card = dbc.Card(dbc.CardBody(body), className="stat-card h-100")
    return html.Div(card, title=title, className="h-100") if title else card


def _pct(x: Any) -> str:
    return f"{x:.2f}%" if _finite(x) else "–"


def _ci(ci: Any, unit: str = "%") -> str:
    lo, hi = (ci or [None, None])[:2]
    if not _finite(lo, hi):
        return "95% CI –"
    return f"95% CI {lo:.2f} – {hi:.2f}{unit}"


def stats_section(payload: Mapping, a: "HypothesisField", b: "HypothesisField") -> html.Div:
    sentence, tone = interpretation(payload, a.name, b.name)
    d = payload["diff"]
    diff_tone = {"success": "success", "danger": "danger"}.get(tone)
    dlo, dhi = (d.get("ci") or [None, None])[:2]
    diff_ci = (f"95% CI {fmt_signed(dlo)} – {fmt_signed(dhi)} points" if _finite(dlo, dhi) else "95% CI –")
    cards = [
        _card("WER of A", _pct(payload["a"]["wer"]), A_WER, _ci(payload["a"]["ci"]), A_CI, name=a.name,
              title=f"corpus WER of {a.field} with its 95% bootstrap interval"),
        _card("WER of B", _pct(payload["b"]["wer"]), B_WER, _ci(payload["b"]["ci"]), B_CI, name=b.name,
              title=f"corpus WER of {b.field} with its 95% bootstrap interval"),
        _card("Difference B − A", (fmt_signed(d["wer"]) + " points") if _finite(d["wer"]) else "–", DIFF_WER,
              diff_ci, DIFF_CI, tone=diff_tone,
              extra=html.Div(fmt_p(d.get("p"), payload.get("n_resamples")), id=DIFF_P, className="stat-sub"),
              title="paired bootstrap over utterances: negative means B makes fewer errors"),
    ]
    n = payload.get("utterances")
    note = (f"{fmt_int(n)} utterances · {fmt_int(payload.get('n_resamples'))} bootstrap resamples "
            f"(seed {payload.get('seed', 0)}), paired for the difference")
    return html.Div([
        dbc.Row([dbc.Col(c, xs=12, md=4, className="mb-2") for c in cards], className="g-2"),
        dbc.Alert(sentence, color={"success": "success", "danger": "danger"}.get(tone, "light"),
                  id=INTERPRETATION, className="mb-1 py-2 fw-bold"),
        html.Div(note, className="text-muted small mb-3"),
    ], id=STATS)


def words_section(fig: Any, rows: list[dict], a: "HypothesisField", b: "HypothesisField") -> dbc.Card:
    defs = [
        {"field": "word", "tooltipField": "word", "flex": 2, "minWidth": 110, "cellClass": "font-monospace"},
        {"field": "count", "type": "numericColumn", "valueFormatter": _INT_FMT, "flex": 1, "minWidth": 80},
        {"field": "acc_a", "headerName": f"A: {a.name}", "headerTooltip": f"word accuracy of {a.field}",
         "type": "numericColumn", "valueFormatter": _PCT_FMT, "flex": 1, "minWidth": 90},
        {"field": "acc_b", "headerName": f"B: {b.name}", "headerTooltip": f"word accuracy of {b.field}",
         "type": "numericColumn", "valueFormatter": _PCT_FMT, "flex": 1, "minWidth": 90},
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
            dbc.Col([html.Div("Where A and B differ most (by occurrences gained or lost)",
                              className="small fw-bold mb-1"),
                     small_grid(WORD_GRID, rows, defs, height=380)], xs=12, xl=6),
        ], className="g-2"),
    ], className="p-2"), className="mb-3", id=WORDS)


def utterance_grid(rows: list[dict], metric: str) -> Any:
    name = metric.upper()
    defs = [
        {"field": "id", "type": "numericColumn", "width": 95, "minWidth": 95, "flex": 0, "sort": None},
        {"field": "text", "headerName": "reference", "tooltipField": "text", "flex": 1, "minWidth": 180},
        {"field": "a", "headerName": f"A {name}", "type": "numericColumn", "valueFormatter": _PCT_FMT,
         "width": 95, "flex": 0},
        {"field": "b", "headerName": f"B {name}", "type": "numericColumn", "valueFormatter": _PCT_FMT,
         "width": 95, "flex": 0},
        {"field": "diff", "headerName": "B − A", "type": "numericColumn", "width": 85, "flex": 0,
         "valueFormatter": {"function": "params.value == null ? '–' : d3.format('+.1f')(params.value)"},
         "cellClassRules": {"text-danger fw-bold": "params.value > 0", "text-success fw-bold": "params.value < 0"}},
    ]
    return [html.Div(f"Where A and B differ most (largest |B − A| of the {name}); click to open",
                     className="small fw-bold mb-1"),
            small_grid(UTT_GRID, rows, defs, height=380)]


def utterance_section(fig: Any, rows: list[dict], metric: str) -> dbc.Card:
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
            dbc.Col(utterance_grid(rows, metric), id=UTT_GRID_BOX, xs=12, xl=6),
        ], className="g-2"),
    ], className="p-2"), className="mb-3")


def json_links(a: "HypothesisField", b: "HypothesisField", filter_text: str) -> html.Span:
    q = {k: v for k, v in (("a", a.field), ("b", b.field), ("filter", filter_text)) if v}
    return html.Span([html.A("JSON", href="/api/compare?" + urlencode(q), className="link-secondary"), " · ",
                      html.A("CSV", href="/api/compare.csv?" + urlencode(q), className="link-secondary",
                             download="compare.csv")], id="cmp-links")


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
    stats = stats_section(payload, a, b)
    if utt_ids is not None and len(utt_ids) == 0:
        return stats, dbc.Alert("No utterance matches the filter.", color="info"), None, []
    fig, rows = cached_words(dataset, a, b, filter_text, utt_ids)
    ufig, urows = cached_utterances(dataset, a, b, metric, filter_text, utt_ids)
    return stats, words_section(fig, rows, a, b), ufig, urows


# ---------------------------------------------------------------- layout and callbacks

def _no_utterances():
    fig = af.empty_figure("Per-utterance error rate", "no utterances")
    fig.update_layout(height=460)
    return fig


def unavailable() -> html.Div:
    return html.Div([page_header(TITLE), dbc.Alert(
        ["A comparison needs two hypotheses, and this manifest has fewer. Add another one, e.g. a ",
         html.Code("pred_text_<label>"), " field, or --pred-field F / --predictions FILE."],
        color="info", id="cmp-unavailable")])


def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    if not _available(dataset):
        return unavailable()
    warnings = []
    a, wa = resolve_hypothesis(dataset, params.get("a"), 0)
    b, wb = resolve_hypothesis(dataset, params.get("b"), 1)
    warnings += [w for w in (wa, wb) if w]
    if a.field == b.field:
        warnings.append("A and B are the same hypothesis: pick two different ones to compare.")
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
        dbc.Col(labelled("Utterances", filter_box(FILTER, APPLY, FILTER_FEEDBACK, filter_text, filter_error)),
                xs=12, md=True),
    ], className="g-2 mb-3")
    return html.Div([
        dcc.Store(id=STATE, data={"a": a.field, "b": b.field, "metric": metric, "filter": applied}),
        page_header(TITLE, ["Is B better than A, on which words and which utterances · ",
                            html.Span(json_links(a, b, applied), id="cmp-links-box")]),
        html.Div([dbc.Alert(w, color="warning", className="py-2 mb-2") for w in warnings], id=WARNING),
        controls,
        html.Div(stats, id="cmp-stats-box"),
        html.Div(words, id="cmp-words-box"),
        utterance_section(ufig if ufig is not None else _no_utterances(), urows, metric),
    ], className="comparison-page")


def register_callbacks(app, dataset: "Dataset") -> None:
    from sde.web.app import rendered_key

    @app.callback(
        Output(A, "value"),
        Output(B, "value"),
        Input(SWAP, "n_clicks"),
        State(A, "value"),
        State(B, "value"),
        prevent_initial_call=True,
    )
    def swap(_n, a, b):
        return b, a

    @app.callback(
        Output("cmp-stats-box", "children"),
        Output("cmp-words-box", "children"),
        Output(UTT_FIG, "figure"),
        Output(UTT_GRID_BOX, "children"),
        Output("cmp-links-box", "children"),
        Output(STATE, "data"),
        Output(FILTER, "invalid"),
        Output(FILTER_FEEDBACK, "children"),
        Output(WARNING, "children"),
        Output(ids.URL, "search", allow_duplicate=True),
        Output(ids.RENDERED, "data", allow_duplicate=True),
        Input(A, "value"),
        Input(B, "value"),
        Input(METRIC, "value"),
        Input(FILTER, "value"),
        Input(APPLY, "n_clicks"),
        State(FILTER, "value"),
        State(STATE, "data"),
        prevent_initial_call=True,
    )
    def update(a_name, b_name, metric, _typed, _clicks, filter_value, state):
        state = state or {}
        filter_text = (filter_value or "").strip()
        _utt, error = selection(dataset, filter_text)
        if error:
            return (*(no_update,) * 6, True, error, no_update, no_update, no_update)
        a, _ = resolve_hypothesis(dataset, a_name, 0)
        b, _ = resolve_hypothesis(dataset, b_name, 1)
        metric = metric if metric in METRICS else "wer"
        new = {"a": a.field, "b": b.field, "metric": metric, "filter": filter_text}
        if new == state:
            return (*(no_update,) * 6, False, "", no_update, no_update, no_update)
        warning = ([dbc.Alert("A and B are the same hypothesis: pick two different ones to compare.",
                              color="warning", className="py-2 mb-2")] if a.field == b.field else [])
        params = page_params(dataset, a.field, b.field, metric, filter_text)
        url = (f"?{urlencode(params)}", rendered_key(PATH, params, TITLE))
        if {k: v for k, v in new.items() if k != "metric"} == {k: v for k, v in state.items() if k != "metric"}:
            ufig, urows = cached_utterances(dataset, a, b, metric, filter_text, _utt)
            return (no_update, no_update, ufig, utterance_grid(urows, metric), no_update, new, False, "", warning,
                    *url)
        stats, words, ufig, urows = sections(dataset, a, b, metric, filter_text)
        return (stats, words, ufig if ufig is not None else _no_utterances(), utterance_grid(urows, metric),
                json_links(a, b, filter_text), new, False, "", warning, *url)

    # Separate callbacks: the word card is absent when no utterance matches, the utterance plot never is.
    @app.callback(
        Output(ids.URL, "href", allow_duplicate=True),
        Input(WORD_GRID, "cellClicked"),
        Input(WORD_FIG, "clickData"),
        State(STATE, "data"),
        prevent_initial_call=True,
    )
    def open_word(cell, point, state):
        return click_href(ctx.triggered_id, cell, point, None, state) or no_update

    @app.callback(
        Output(ids.URL, "href", allow_duplicate=True),
        Input(UTT_FIG, "clickData"),
        Input(UTT_GRID, "cellClicked"),
        State(STATE, "data"),
        prevent_initial_call=True,
    )
    def open_utterance(point, cell, state):
        return click_href(ctx.triggered_id, cell, None, point, state) or no_update


def click_href(trigger: str | None, cell: Mapping | None, word_point: Mapping | None,
               utt_point: Mapping | None, state: Mapping | None) -> str | None:
    """Where a click on the word table, the word scatter or the utterance scatter leads."""
    filter_text = (state or {}).get("filter") or ""
    if trigger in (WORD_GRID, UTT_GRID) and cell:
        href = cell.get("rowId")
        return href if isinstance(href, str) and href.startswith("/") else None
    point = word_point if trigger == WORD_FIG else utt_point if trigger == UTT_FIG else None
    pts = (point or {}).get("points") or []
    if not pts:
        return None
    custom = pts[0].get("customdata")
    if trigger == WORD_FIG:
        word = custom[0] if isinstance(custom, (list, tuple)) and custom else custom
        return word_href(str(word), filter_text) if isinstance(word, str) and word else None
    uid = custom[0] if isinstance(custom, (list, tuple)) and custom else custom
    try:
        return utterance_href(int(uid), filter_text)
    except (TypeError, ValueError):
        return None


PAGE = Page(path=PATH, name=TITLE, layout=layout, register_callbacks=register_callbacks, available=_available,
            api="/api/compare")
