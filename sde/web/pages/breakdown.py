"""The Errors page's breakdown card: WER and CER by any categorical column (or duration bucket),
whatever its number of values. A bar chart of all groups when they are few, else of the worst (or
best) CHART_GROUPS, with each group's bootstrap interval as whiskers; below it a table that pages
through every group on the server (AG Grid's infinite row model; a click opens the group's
utterances); groups with fewer than K utterances can be left out.

`card(...)` and `content(...)` build it; `callbacks(app, dataset)` serves the table's blocks from
the Errors page's store (PAGE_STATE).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, State, dcc, html, no_update

from sde import analysis
from sde.caching import for_dataset
from sde.filters import And, column_ref, combine_filters, parse, to_q
from sde.query import QueryError
from sde.web import analysis_figures as af
from sde.web.components import (
    LINK_GRID_CLASS,
    as_mapping,
    as_text,
    GRID_THEME,
    INT_FORMAT,
    PCT_FORMAT,
    PURGE_GRID_JS,
    fmt_int,
    graph_height,
    href_of_click,
    manifest_button,
)
from sde.web.figures import GRAPH_CONFIG
from sde.web.grid import grid_range
from sde.web.present import ApiError, grouped_rates, resolve_hypothesis
from sde.web.state import URL, samples_href, search_of

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from sde.dataset import Dataset
    from sde.manifest import HypothesisField

CHART_GROUPS = 30            # breakdown bars at most: the worst (or best) groups beyond that
GRID_BLOCK = 100             # table rows fetched per request
SHOW_CHOICES = ("worst", "best")

PAGE_STATE = "errors-state"        # the Errors page's dcc.Store: {"hyp", "filter", "by", "min_utts", "show"}
BY = "errors-by"
MIN_UTTS = "errors-min-utts"       # hide groups with fewer utterances
SHOW = "errors-show"               # the chart's worst or best groups
CARD = "errors-breakdown"          # the card
GRID = "errors-breakdown-grid"
CONTENT = "errors-breakdown-content"
LINKS = "errors-breakdown-links"
FIG = "errors-breakdown-fig"
COUNT = "errors-breakdown-count"
NOTE = "errors-breakdown-note"
CSV = "errors-breakdown-csv"
PURGE = "errors-breakdown-purge"

# Columns that are never worth a breakdown (free text, paths, per-hypothesis counts).
# audio_exists: a fact about the disk at this start, which no error rate depends on (and the
# breakdown columns kept with a build must not depend on whether it was there yet: sde.audio_presence)
_NOT_GROUPS = {"id", "line", "text", "audio_filepath", "audio_filename", "audio_path", "offset", "audio_exists"}
_HYP_COLUMNS = ("wer", "cer", "wmr", "sub", "del", "ins", "hits", "char_edits", "ref_chars", "accuracy")


# ---------------------------------------------------------------- which columns, which groups

def _group_counts(dataset: "Dataset") -> dict[str, int]:
    df = dataset.utterances
    skip = set(_NOT_GROUPS)
    for h in dataset.hypotheses:
        skip.add(h.field)
        skip |= {h.column(m) for m in _HYP_COLUMNS}
    keep = [c for c in df.columns if c not in skip and not str(c).endswith("_norm")]
    return analysis.group_counts(df[keep]) if keep else {}


def group_counts(dataset: "Dataset") -> dict[str, int]:
    """Columns worth a breakdown (duration_bucket and every categorical field of the manifest, any
    number of values) → their number of distinct values."""
    return for_dataset(dataset, "breakdown-columns", 1, kept=1).get_or_compute("counts", lambda: _group_counts(dataset))


def group_columns(dataset: "Dataset") -> list[str]:
    return list(group_counts(dataset))


def group_options(dataset: "Dataset") -> list[dict]:
    """The breakdown menu: every column, with how many groups it makes ("speaker (1,179 values)")."""
    return [{"label": f"{c} ({fmt_int(n)} {'value' if n == 1 else 'values'})", "value": c}
            for c, n in group_counts(dataset).items()]


def default_by(dataset: "Dataset") -> str | None:
    cols = group_columns(dataset)
    for c in ("speaker", "speaker_id", "spk", "duration_bucket"):
        if c in cols:
            return c
    return cols[0] if cols else None


def min_utts_of(value: Any) -> int:
    """The min-utterances control's value as a threshold ≥ 1 (empty or nonsense: 1)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 1
    return int(min(max(number, 1), 10**12)) if math.isfinite(number) else 1


def show_of(value: Any) -> str:
    return value if value in SHOW_CHOICES else SHOW_CHOICES[0]


def group_filter(by: str, value: Any, kind: str | None) -> str | None:
    """The filter clause selecting one group (None when the language cannot say it: the duration
    bucket of missing and negative durations)."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if missing:
        return None if by == "duration_bucket" else f"{column_ref(by)} is null"
    if by == "duration_bucket":
        try:
            i = analysis.DURATION_BUCKET_LABELS.index(str(value))
        except ValueError:
            return None
        lo, hi = analysis.DURATION_BUCKET_EDGES[i], analysis.DURATION_BUCKET_EDGES[i + 1]
        clause = f"{{duration}} >= {lo:g}"
        return clause + (f" && {{duration}} < {hi:g}" if math.isfinite(hi) else "")
    if kind == "number":
        return f"{column_ref(by)} = {value}"
    if kind == "bool":
        return f"{column_ref(by)} = {'true' if value else 'false'}"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'{column_ref(by)} = "{text}"'


def _round(x: float) -> float | None:
    return round(float(x), 4) if x is not None and math.isfinite(float(x)) else None


# ---------------------------------------------------------------- the table

def grid_sort(request: Mapping[str, Any] | None) -> str:
    """The table's sortModel as a breakdown sort ("-wer"); worst first by default."""
    for item in (request or {}).get("sortModel") or []:
        col, order = item.get("colId"), item.get("sort")
        if col in analysis.BREAKDOWN_SORTS and order in ("asc", "desc"):
            return ("-" if order == "desc" else "") + col
    return "-wer"


def breakdown_rows(dataset: "Dataset", by: str, view: pd.DataFrame, grouped: analysis.GroupedRates,
                   filter_text: str | None, h: "HypothesisField | None" = None) -> list[dict]:
    """Table rows of some groups (a page of `grouped.view(...)`): the numbers, the 95% bootstrap
    interval and an href to the group's utterances on the samples page (those hypothesis `h` was
    scored on, the ones the row counts)."""
    hrefs = group_hrefs(dataset, by, view, filter_text, h)
    lo, hi = grouped.intervals(view.index.to_numpy())
    rows = []
    for group, r, a, b, href in zip(view.index.tolist(), view.itertuples(index=False), lo.tolist(), hi.tolist(),
                                    hrefs):
        rows.append({
            "value": ("(missing)" if r.value is None else
                      r.value if isinstance(r.value, (int, float)) else str(r.value)),
            "utterances": int(r.utterances), "words": int(r.words),
            "wer": _round(r.wer), "cer": _round(r.cer), "ci_lo": _round(a), "ci_hi": _round(b),
            "href": href or f"#group-{group}",
        })
    return rows


def group_hrefs(dataset: "Dataset", by: str, view: pd.DataFrame, filter_text: str | None,
                h: "HypothesisField | None" = None) -> list[str | None]:
    """The samples page of each group of `view` (its `value` column): the utterances its numbers
    count (None where the filter language cannot select the group)."""
    scored = scored_clause(dataset, h)
    try:
        kind = dataset.utterance_query.kind(by) if by != "duration_bucket" else None
    except QueryError:
        kind = None
    hrefs: list[str | None] = []
    for value in view["value"].tolist():
        clause = group_filter(by, value, kind)
        hrefs.append(samples_href(filter=combine_filters(filter_text, *unstated(filter_text, clause, scored)))
                     if clause else None)
    return hrefs


def unstated(filter_text: str | None, *clauses: str | None) -> list[str | None]:
    """The clauses the filter does not already require as one of its top-level `&&` parts: the
    Errors page filtered on `{speaker} = "bob"`, broken down by speaker, linked its row to
    `{speaker} = "bob" && {speaker} = "bob"`."""
    try:
        tree = parse(filter_text) if filter_text and filter_text.strip() else None
    except QueryError:
        return list(clauses)
    parts = tree.items if isinstance(tree, And) else (tree,) if tree is not None else ()
    stated = {to_q(part) for part in parts}

    def said(clause: str) -> bool:
        try:
            return to_q(parse(clause)) in stated
        except QueryError:
            return False

    return [c for c in clauses if not c or not said(c)]


def scored_clause(dataset: "Dataset", h: "HypothesisField | None") -> str | None:
    """``{wer} is not null`` where hypothesis ``h`` lacks some lines: a group's numbers count only
    the lines it was scored on, and its link must select those (it opened 554 for a row of 477)."""
    if h is None:
        return None
    column = h.column("wer")
    values = dataset.utterances[column] if column in dataset.utterances.columns else None
    return f"{column_ref(column)} is not null" if values is not None and values.hasnans else None


def grid_block(dataset: "Dataset", page_state: Mapping[str, Any] | None, request: Mapping[str, Any] | None) -> dict:
    """One block of the table (getRowsResponse) and the count line under it: the groups of the
    page's state (hypothesis, filter, column, threshold), sorted as the grid asks."""
    empty = {"rows": {"rowData": [], "rowCount": 0}, "count": ""}
    page_state = as_mapping(page_state)
    h, _ = resolve_hypothesis(dataset, as_text(page_state.get("hyp")) or None)
    by = as_text(page_state.get("by"))
    if h is None or not by or by not in group_columns(dataset):
        return empty
    try:
        grouped = grouped_rates(dataset, h, by, as_text(page_state.get("filter")) or None)
        start, end = grid_range(request if isinstance(request, Mapping) else {}, GRID_BLOCK)
    except (ApiError, QueryError) as e:
        return {**empty, "count": html.Span(str(e), className="text-danger")}
    threshold = min_utts_of(page_state.get("min_utts"))
    view = grouped.view(grid_sort(request), 0, threshold)
    rows = breakdown_rows(dataset, by, view.iloc[start:min(end, start + 10 * GRID_BLOCK)], grouped,
                          page_state.get("filter"), h)
    count = [html.B(fmt_int(len(view))), f" {by} groups"]
    if threshold > 1:
        count.append(f" with at least {fmt_int(threshold)} utterances (of {fmt_int(len(grouped.groups))})")
    count.append(" · click a group to see its utterances")
    return {"rows": {"rowData": rows, "rowCount": int(len(view))}, "count": html.Span(count)}


_CI_TEXT = {"function": "params.data && params.data.ci_lo != null ? d3.format('.2f')(params.data.ci_lo) + '–' + "
                        "d3.format('.2f')(params.data.ci_hi) + '%' : ''"}


def column_defs(by: str | None) -> list[dict]:
    return [
        {"field": "value", "headerName": by or "group", "tooltipField": "value", "flex": 2, "minWidth": 120,
         "sortable": True},
        {"field": "utterances", "type": "numericColumn", "valueFormatter": INT_FORMAT, "flex": 1},
        {"field": "words", "type": "numericColumn", "valueFormatter": INT_FORMAT, "flex": 1},
        {"field": "wer", "headerName": "WER", "type": "numericColumn", "valueFormatter": PCT_FORMAT, "flex": 1,
         "sort": "desc"},
        {"field": "ci", "headerName": "95% interval", "valueGetter": _CI_TEXT, "sortable": False, "flex": 1.4,
         "minWidth": 120, "headerTooltip": "bootstrap interval of the group's WER: its utterances resampled"},
        {"field": "cer", "headerName": "CER", "type": "numericColumn", "valueFormatter": PCT_FORMAT, "flex": 1},
    ]


def _grid(by: str | None) -> dag.AgGrid:
    return dag.AgGrid(
        id=GRID,
        rowModelType="infinite",
        columnDefs=column_defs(by),
        defaultColDef={"sortable": True, "resizable": True, "suppressHeaderMenuButton": True, "filter": False},
        getRowId="params.data.href",
        columnSize="responsiveSizeToFit",
        dashGridOptions={"theme": GRID_THEME, "animateRows": False, "enableCellTextSelection": True,
                         # cells take the focus: ↑/↓ walk the rows, Enter opens one (sde.js, sde-link-grid)
                         "rowClass": "grid-row-link", "tooltipShowDelay": 400, "suppressCellFocus": False,
                         "cacheBlockSize": GRID_BLOCK, "maxBlocksInCache": 20, "infiniteInitialRowCount": 1,
                         "maxConcurrentDatasourceRequests": 1, "localeText": {"noRowsToShow": "no groups"}},
        style={"height": "360px", "width": "100%"},
        className=LINK_GRID_CLASS,
    )


# ---------------------------------------------------------------- the chart

def chart_frame(grouped: analysis.GroupedRates, min_utts: int = 1, show: str = "worst") -> tuple[pd.DataFrame, int]:
    """(groups to chart, with ci_lo/ci_hi; how many groups pass the threshold): all of them in
    value order when they are at most CHART_GROUPS, else the CHART_GROUPS highest (worst) or
    lowest (best) WERs."""
    view = grouped.view("value", 0, min_utts)
    total = len(view)
    if total > CHART_GROUPS:
        view = grouped.view("-wer" if show_of(show) == "worst" else "wer", 0, min_utts).iloc[:CHART_GROUPS]
    lo, hi = grouped.intervals(view.index.to_numpy())
    return view.assign(ci_lo=lo, ci_hi=hi), total


def chart_note(by: str, shown: int, total: int, min_utts: int, show: str) -> str:
    parts = []
    if shown < total:
        parts.append(f"showing {shown} of {fmt_int(total)} {by} groups: the "
                     f"{'highest' if show_of(show) == 'worst' else 'lowest'} WER")
    if min_utts > 1:
        parts.append(f"groups with at least {fmt_int(min_utts)} utterances")
    parts.append("whiskers: 95% bootstrap interval of the WER")
    return " · ".join(parts)


def links(h: "HypothesisField", by: str, filter_text: str | None, min_utts: int) -> list:
    """The JSON and CSV twins of the breakdown shown."""
    q = {"by": by, "hyp": h.field, "filter": (filter_text or "").strip(),
         "min_utterances": str(min_utts) if min_utts > 1 else "", "sort": "-wer"}
    return [html.A("JSON", href="/api/breakdown" + search_of(q), className="link-secondary"), " · ",
            html.A("Download CSV (all groups)", href="/api/breakdown.csv" + search_of(q),
                   className="btn btn-sm btn-outline-success", download="breakdown.csv", id=CSV), " ",
            # every utterance broken down here; one group's: click it, then Samples' Download manifest
            manifest_button(filter_text, element_id="errors-breakdown-manifest")]


def content(dataset: "Dataset", h: "HypothesisField", by: str | None, utt_ids: "np.ndarray | None",
            filter_text: str | None, min_utts: int = 1, show: str = "worst") -> tuple[list, Any]:
    """(content, links) of the card: the bar chart (WER with intervals, CER per group) and the JSON
    / CSV links. The table below pages through the groups on its own (`grid_block`)."""
    if not by or by not in group_columns(dataset):
        return [dbc.Alert("No categorical column to break the error rates down by.", color="light")], None
    if utt_ids is not None and len(utt_ids) == 0:
        return [], None
    try:
        grouped = grouped_rates(dataset, h, by, filter_text)
    except ApiError as e:
        return [dbc.Alert(str(e), color="warning")], None
    frame, total = chart_frame(grouped, min_utts, show)
    note = chart_note(by, len(frame), total, min_utts, show)
    if frame.empty:
        return [dbc.Alert(f"No {by} group has at least {fmt_int(min_utts)} utterances.", color="light",
                          id="errors-breakdown-empty")], links(h, by, filter_text, min_utts)
    # each bar links to its group's utterances, as the table's rows do
    frame = frame.assign(href=group_hrefs(dataset, by, frame, filter_text, h))
    fig = af.breakdown_figure(frame, by, h.name, max_groups=CHART_GROUPS)
    return [html.Div(note, id=NOTE, className="text-muted small text-end"),
            dcc.Graph(id=FIG, figure=fig, config=GRAPH_CONFIG, style={"height": graph_height(fig)})], \
        links(h, by, filter_text, min_utts)


def card(dataset: "Dataset", by: str | None, body: list, card_links: Any, min_utts: int = 1,
         show: str = "worst") -> dbc.Card:
    """The card: its header (column picker, threshold, worst/best) and the table stay; the chart
    and the links (`content`) change."""
    picker = dcc.Dropdown(id=BY, options=group_options(dataset), value=by, clearable=False,
                          style={"minWidth": "16rem"})
    threshold = dbc.InputGroup([
        # a label, not InputGroupText's span: a screen reader names the box by it
        html.Label("min. utterances", htmlFor=MIN_UTTS, className="input-group-text small mb-0"),
        dbc.Input(id=MIN_UTTS, type="number", min=1, step=1, value=min_utts, debounce=True,
                  style={"maxWidth": "6rem"}),
    ], size="sm", style={"width": "auto"})
    toggle = dbc.RadioItems(id=SHOW, options=[{"label": f"{c} {CHART_GROUPS}", "value": c} for c in SHOW_CHOICES],
                            value=show_of(show), inline=True, className="small")
    head = html.Div([
        html.H6("WER and CER by group", className="mb-0 fw-bold me-auto"),
        html.Span("break down by", className="text-muted small"),
        picker, threshold, toggle,
        html.Span(card_links, className="small", id=LINKS),
    ], className="d-flex align-items-center gap-2 flex-wrap mb-2")
    table = html.Div([_grid(by), html.Div(id=COUNT, className="text-muted small mt-1")], className="mt-2")
    return dbc.Card(dbc.CardBody([head, html.Div(body, id=CONTENT), table, dcc.Store(id=PURGE)], className="p-2"),
                    id=CARD, className="mb-3")


def callbacks(app, dataset: "Dataset") -> None:
    @app.callback(
        output={"rows": Output(GRID, "getRowsResponse"), "count": Output(COUNT, "children")},
        inputs={"request": Input(GRID, "getRowsRequest"), "page_state": State(PAGE_STATE, "data")},
        prevent_initial_call=True,
    )
    def block(request, page_state):
        return grid_block(dataset, page_state, request)

    # Its own callback: the chart is absent when no group passes the threshold (a callback does
    # not fire while one of its inputs is missing from the page).
    @app.callback(Output(URL, "href", allow_duplicate=True), Input(FIG, "clickData"),
                  prevent_initial_call=True)
    def open_bar(point):
        return href_of_click(point=point, index=-1) or no_update

    # A new breakdown (hypothesis, filter, column or threshold): the grid drops its cached blocks
    # and asks again (the infinite model would otherwise keep the old groups).
    app.clientside_callback(PURGE_GRID_JS, Output(PURGE, "data"), Input(PAGE_STATE, "data"), State(GRID, "id"),
                            prevent_initial_call=True)
