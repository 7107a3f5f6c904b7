"""Errors: what one hypothesis gets wrong (JSON twins: /api/errors and /api/breakdown, with CSV).

    /errors?hyp=F&filter=Q&by=COLUMN&min_utts=K&show=best

Top substitution pairs (ref → hyp), deleted words and inserted words, each a table + a small bar
chart; a click on a row or bar opens `/samples?error=sub:REF:HYP&hyp=F[&filter=Q]` (the utterances
where that error happens). Below them, WER/CER broken down by any column (sde.web.pages.breakdown).
The filter box (DESIGN filter language) restricts everything to a subset of utterances. The URL
carries the state; the controls rewrite it without a reload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dash_bootstrap_components as dbc
from dash import Input, Output, State, ctx, dcc, html, no_update

from sde.filters import column_ref
from sde.web import analysis_figures as af
from sde.web import state
from sde.web.components import (
    as_mapping,
    as_text,
    INT_FORMAT,
    alert_code,
    fmt_int,
    fmt_pct,
    filter_box,
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
from sde.web.pages import breakdown, samples
from sde.web.pages.page import Page, link_value_notes
from sde.web.present import (ERROR_ROWS_MADE, choice_param, error_frames_with_utterances, hyp_options, int_param,
                              resolve_hypothesis, selection, selection_totals)
from sde.web.state import error_href, rendered_key, search_of

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset
    from sde.manifest import HypothesisField

TITLE = "Errors"
PATH = "/errors"
TABLE_LIMIT = ERROR_ROWS_MADE  # rows per top-error table (the chart shows the first af.MAX_BARS)

# Component ids (this page's own; prefixed so they never clash with other pages)
HYP = "errors-hyp"
FILTER = "errors-filter"
FILTER_FEEDBACK = "errors-filter-feedback"
APPLY = "errors-apply"
STATE = breakdown.PAGE_STATE       # dcc.Store: the params now shown {"hyp", "filter", "by", "min_utts", "show"}
WARNING = "errors-warning"
SUMMARY = "errors-summary"
SUMMARY_BOX = "errors-summary-box"
LINKS = "errors-links"
TABLES = "errors-tables"           # the row of the three top-error cards
TABLES_BOX = "errors-tables-box"   # its container
KINDS = ("substitutions", "deletions", "insertions")
OPS = {"substitutions": "sub", "deletions": "del", "insertions": "ins"}
_KIND_TITLES = {"substitutions": "Substitutions", "deletions": "Deletions", "insertions": "Insertions"}
_KIND_HELP = {"substitutions": "reference word → recognised word",
              "deletions": "reference words the hypothesis dropped",
              "insertions": "words the hypothesis added"}


def grid_id(kind: str) -> str:
    return f"errors-{OPS[kind]}-grid"


def fig_id(kind: str) -> str:
    return f"errors-{OPS[kind]}-fig"


# ---------------------------------------------------------------- the top-error tables

def top_error_rows(dataset: "Dataset", h: "HypothesisField", filter_text: str | None,
                   limit: int = TABLE_LIMIT) -> dict[str, list[dict]]:
    """The three top-error tables as grid rows, each with `utterances` (affected) and `href`."""
    frames = error_frames_with_utterances(dataset, h.field, filter_text, limit)
    out: dict[str, list[dict]] = {}
    for kind in KINDS:
        df = frames[kind]
        rows = []
        if kind == "substitutions":
            for ref, hyp, count, n in df[["ref", "hyp", "count", "utterances"]].itertuples(index=False):
                rows.append({"ref": str(ref), "hyp": str(hyp), "count": int(count), "utterances": int(n),
                             "label": f"{ref} → {hyp}",
                             "href": error_href(h.field, "sub", str(ref), str(hyp), filter_text)})
        else:
            op = OPS[kind]
            for word, count, n in df[["word", "count", "utterances"]].itertuples(index=False):
                word = str(word)
                rows.append({"word": word, "count": int(count), "utterances": int(n), "label": word,
                             "href": error_href(h.field, op, word if op == "del" else None,
                                                word if op == "ins" else None, filter_text)})
        out[kind] = rows
    return out


def _word_col(field: str, header: str) -> dict:
    return {"field": field, "headerName": header, "tooltipField": field, "minWidth": 90, "flex": 2,
            "cellClass": "font-monospace"}


def _count_cols() -> list[dict]:
    return [
        {"field": "count", "headerName": "count", "type": "numericColumn", "valueFormatter": INT_FORMAT,
         "minWidth": 80, "flex": 1, "sort": "desc", "headerTooltip": "how many times the error happens"},
        {"field": "utterances", "headerName": "utts", "type": "numericColumn", "valueFormatter": INT_FORMAT,
         "minWidth": 70, "flex": 1, "headerTooltip": "utterances where it happens (click a row to see them)"},
    ]


def error_tables(rows: Mapping[str, list[dict]], h: "HypothesisField", filter_text: str | None,
                 totals: Mapping[str, float]) -> dbc.Row:
    """Three cards (substitutions, deletions, insertions): bar chart of the top ones + table."""
    cols = []
    for kind in KINDS:
        data = rows[kind]
        if kind == "substitutions":
            defs = [_word_col("ref", "reference"), _word_col("hyp", "recognised as"), *_count_cols()]
        else:
            defs = [_word_col("word", "word"), *_count_cols()]
        fig = af.top_errors_figure([r["label"] for r in data], [r["count"] for r in data], "",
                                   hrefs=[r["href"] for r in data], kind=kind)
        csv = "/api/errors.csv" + search_of({"kind": kind, "hyp": h.field, "filter": filter_text})
        header = html.Div([
            html.Div([html.H6(_KIND_TITLES[kind], className="mb-0 fw-bold"),
                      html.Span(f"{fmt_int(totals.get(OPS[kind], 0))} in all · {_KIND_HELP[kind]}",
                                className="text-muted small")]),
            html.Div([html.A("CSV", href=csv, className="btn btn-sm btn-outline-success", download=f"{kind}.csv",
                             id=f"errors-{OPS[kind]}-csv"),
                      manifest_button(filter_text, also=f"{column_ref(h.column(OPS[kind]))} > 0", label="Manifest",
                                      element_id=f"errors-{OPS[kind]}-manifest")], className="d-flex gap-1"),
        ], className="d-flex justify-content-between align-items-start mb-1 gap-2")
        body = [header,
                dcc.Graph(id=fig_id(kind), figure=fig, config={**GRAPH_CONFIG, "displayModeBar": False},
                          className="errors-bars", style={"height": graph_height(fig)}),
                small_grid(grid_id(kind), data, defs)]
        if len(data) >= TABLE_LIMIT:
            body.append(html.Div(f"the {TABLE_LIMIT} most frequent; all of them in the CSV",
                                 className="text-muted small mt-1"))
        cols.append(dbc.Col(dbc.Card(dbc.CardBody(body, className="p-2"), className="h-100",
                                     id=f"errors-{OPS[kind]}-card"), xs=12, lg=4, className="mb-3"))
    return dbc.Row(cols, className="g-3", id=TABLES)


def summary_line(dataset: "Dataset", h: "HypothesisField", totals: Mapping[str, float], filter_text: str | None):
    n_all, scored = len(dataset.utterances), totals["utterances"]
    # the lines without this hypothesis are not scored: "all 202" said so of 201
    having = f" with {h.field}" if breakdown.scored_clause(dataset, h) is not None else ""
    if filter_text:
        selected = (f"{fmt_int(scored)} of {fmt_int(n_all)} utterances: those{having} the filter selects" if having
                    else f"{fmt_int(scored)} of {fmt_int(n_all)} utterances match the filter")
    else:
        selected = f"the {fmt_int(scored)} utterances{having}" if having else f"all {fmt_int(n_all)} utterances"
    return html.Div([
        html.Span([html.B(h.name), f" over {selected} · WER {fmt_pct(totals['wer'])} · ",
                   f"{fmt_int(totals['sub'])} substitutions, {fmt_int(totals['del'])} deletions, "
                   f"{fmt_int(totals['ins'])} insertions in {fmt_int(totals['words'])} reference words · "],
                  id=SUMMARY),
        html.A("JSON", href="/api/errors" + search_of({"hyp": h.field, "filter": filter_text, "limit": str(TABLE_LIMIT)}),
               className="link-secondary", id=LINKS),
    ], className="text-muted small mb-2")


def error_sections(dataset: "Dataset", h: "HypothesisField", filter_text: str) -> tuple[Any, Any]:
    """(summary line, top-error cards) for one hypothesis and a valid filter's selection."""
    totals = selection_totals(dataset, h, filter_text)
    summary = summary_line(dataset, h, totals, filter_text)
    if totals["utterances"] == 0:
        return summary, dbc.Alert("No utterance matches the filter.", color="info", id="errors-empty")
    rows = top_error_rows(dataset, h, filter_text or None)
    return summary, error_tables(rows, h, filter_text, totals)


def page_params(dataset: "Dataset", hyp: str | None, filter_text: str | None, by: str | None,
                min_utts: int = 1, show: str = "worst") -> dict[str, str]:
    """The query-string state of the page (defaults left out, so the plain URL stays plain)."""
    out = {}
    if hyp and dataset.hypotheses and hyp != dataset.hypotheses[0].field:
        out["hyp"] = hyp
    if filter_text:
        out["filter"] = filter_text
    if by and by != breakdown.default_by(dataset):
        out["by"] = by
    if min_utts > 1:
        out["min_utts"] = str(min_utts)
    if breakdown.show_of(show) != breakdown.SHOW_CHOICES[0]:
        out["show"] = show
    return out


# ---------------------------------------------------------------- layout

def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    if not dataset.hypotheses:
        return html.Div([page_header(TITLE), dbc.Alert(
            ["This manifest has no hypotheses (", alert_code("pred_text"), " …), so there are no errors to analyse. "
             "Add predictions with --predictions FILE or --pred-field F."], color="info", id="errors-no-hyp")])
    h, warning = resolve_hypothesis(dataset, params.get("hyp"))
    filter_text = (params.get("filter") or "").strip()
    _ids, filter_error = selection(dataset, filter_text)
    applied = "" if filter_error else filter_text
    columns = breakdown.group_columns(dataset)
    by = params.get("by") or breakdown.default_by(dataset)
    by_warning = None
    if by and by not in columns:
        by_warning = f'Cannot break down by "{by}"; choose one of: {", ".join(columns)}.'
        by = breakdown.default_by(dataset)
    notes = link_value_notes()
    min_utts = int_param(params, "min_utts", 1, 1, None, notes)
    show = choice_param(params, "show", breakdown.SHOW_CHOICES, breakdown.SHOW_CHOICES[0], notes)
    warnings = [w for w in (warning, by_warning) if w]
    if filter_error:
        warnings.append("The filter in the link is invalid (see below), so all utterances are shown.")
    controls = dbc.Row([
        dbc.Col(labelled("Hypothesis", dcc.Dropdown(id=HYP, options=hyp_options(dataset), value=h.field,
                                                    clearable=False)), xs=12, md=3),
        dbc.Col(labelled("Utterances", filter_box(FILTER, APPLY, FILTER_FEEDBACK, filter_text, filter_error,
                                                  "e.g. " + samples.placeholder(dataset, "{duration} > 5"),
                                                  lead="Restrict to some utterances: clauses ")),
                xs=12, md=9),
    ], className="g-2 mb-2")
    return html.Div([
        dcc.Store(id=STATE, data={"hyp": h.field, "filter": applied, "by": by or "", "min_utts": min_utts,
                                  "show": show}),
        page_header(TITLE, "What the recognizer gets wrong: click an error to see the utterances where it happens"),
        html.Div(warnings_view(warnings), id=WARNING),
        controls,
        *body(dataset, h, applied, by, min_utts, show),
    ], className="errors-page")


def body(dataset: "Dataset", h: "HypothesisField", filter_text: str, by: str | None, min_utts: int = 1,
         show: str = "worst") -> list:
    """Everything below the controls (containers keep their ids; callbacks refill them)."""
    utt_ids, _ = selection(dataset, filter_text)
    summary, tables = error_sections(dataset, h, filter_text)
    content, links = breakdown.content(dataset, h, by, utt_ids, filter_text, min_utts, show)
    return [html.Div(summary, id=SUMMARY_BOX), html.Div(tables, id=TABLES_BOX),
            breakdown.card(dataset, by, content, links, min_utts, show)]


# ---------------------------------------------------------------- callbacks

OUTPUTS = {
    "summary": Output(SUMMARY_BOX, "children"),
    "tables": Output(TABLES_BOX, "children"),
    "breakdown": Output(breakdown.CONTENT, "children"),
    "breakdown_links": Output(breakdown.LINKS, "children"),
    "breakdown_columns": Output(breakdown.GRID, "columnDefs"),
    "state": Output(STATE, "data"),
    "invalid": Output(FILTER, "invalid"),
    "feedback": Output(FILTER_FEEDBACK, "children"),
    "warning": Output(WARNING, "children"),
    "search": Output(state.URL, "search", allow_duplicate=True),
    "rendered": Output(state.RENDERED, "data", allow_duplicate=True),
}


def update(dataset: "Dataset", hyp: str | None, filter_value: str | None, by: str | None, min_utts: Any,
           show: Any, shown: Mapping | None) -> dict:
    """The page after a control changed: `shown` is what the page shows now (its store); only the
    parts that depend on what changed are rebuilt (a new column redraws the breakdown only)."""
    shown = as_mapping(shown)
    filter_text = as_text(filter_value).strip()
    utt_ids, error = selection(dataset, filter_text)
    if error:
        return changed(OUTPUTS, invalid=True, feedback=error)
    h, _ = resolve_hypothesis(dataset, as_text(hyp) or None)
    if h is None:
        return changed(OUTPUTS)
    by = as_text(by) or as_text(shown.get("by")) or breakdown.default_by(dataset)
    min_utts, show = breakdown.min_utts_of(min_utts), breakdown.show_of(show)
    new = {"hyp": h.field, "filter": filter_text, "by": by or "", "min_utts": min_utts, "show": show}
    if new == shown:
        return changed(OUTPUTS, invalid=False, feedback="")
    params = page_params(dataset, h.field, filter_text, by, min_utts, show)
    out = changed(OUTPUTS, state=new, invalid=False, feedback="", warning=[], search=search_of(params),
                  rendered=rendered_key(PATH, params, TITLE))
    if any(new[k] != shown.get(k) for k in ("hyp", "filter")):
        out["summary"], out["tables"] = error_sections(dataset, h, filter_text)
    out["breakdown"], out["breakdown_links"] = breakdown.content(dataset, h, by, utt_ids, filter_text, min_utts, show)
    if by != shown.get("by"):
        out["breakdown_columns"] = breakdown.column_defs(by)
    return out


# Every clickable error (the three tables and their charts, the breakdown table) opens its href.
CLICK_SOURCES = ([(grid_id(kind), "cellClicked") for kind in KINDS] + [(fig_id(kind), "clickData") for kind in KINDS]
                 + [(breakdown.GRID, "cellClicked")])


def callbacks(app, dataset: "Dataset") -> None:
    @app.callback(
        output=OUTPUTS,
        inputs={"hyp": Input(HYP, "value"), "_typed": Input(FILTER, "value"), "_clicks": Input(APPLY, "n_clicks"),
                "by": Input(breakdown.BY, "value"), "min_utts": Input(breakdown.MIN_UTTS, "value"),
                "show": Input(breakdown.SHOW, "value"), "filter_value": State(FILTER, "value"),
                "shown": State(STATE, "data")},
        prevent_initial_call=True,
    )
    def on_controls(hyp, _typed, _clicks, by, min_utts, show, filter_value, shown):
        return update(dataset, hyp, filter_value, by, min_utts, show, shown)

    # Optional: a filter that selects no utterance shows no error tables (the breakdown stays).
    @app.callback(Output(state.URL, "href", allow_duplicate=True),
                  [Input(component, prop, allow_optional=True) for component, prop in CLICK_SOURCES],
                  prevent_initial_call=True)
    def open_clicked(*clicks):
        source = dict(zip((c for c, _ in CLICK_SOURCES), clicks)).get(ctx.triggered_id)
        is_chart = ctx.triggered_id in {fig_id(kind) for kind in KINDS}
        href = href_of_click(point=source) if is_chart else href_of_click(cell=source)
        return href or no_update

    breakdown.callbacks(app, dataset)


def _available(dataset: "Dataset") -> bool:
    return bool(dataset.hypotheses)


PAGE = Page(path=PATH, name=TITLE, layout=layout, callbacks=callbacks, available=_available, api="/api/errors",
            prepare=True, takes=("hyp", "filter", "by", "min_utts", "show"))
