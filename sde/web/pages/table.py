"""The server-side table view that Samples and Vocabulary are: a filter box, a column picker, a
CSV link and a dash-ag-grid in the infinite row model, whose blocks come from a TableQuery
(sde.web.grid). `layout(spec, …)` renders it from the URL; `callbacks(app, spec, title)` keeps the
URL, the row count and the CSV link in step with what the grid shows.

The URL holds the filter, the grid's column filters, the sort and the visible columns (`cols`);
`focus=ID` (the inspector's "back to list") scrolls to that row and selects it, and so does the
browser's back button, from the row that was clicked (sde.js keeps it in sessionStorage).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import dash
import dash_ag_grid as dag
import numpy as np
import dash_bootstrap_components as dbc
from dash import Input, Output, State, dcc, html, no_update

from sde.filters import combine_filters
from sde.query import QueryError, format_filter, parse_sort
from sde.rules import unmeasured_in_filter
from sde.web import state
from sde.web.panels import review
from sde.web.components import (
    as_mapping,
    as_text,
    LINK_GRID_CLASS,
    PURGE_GRID_JS,
    TABLE_GRID_THEME,
    filter_box,
    filter_hints_view,
    fmt_int,
    page_header,
)
from sde.web.grid import (
    TableSpec,
    clauses_from_grid,
    clicked_row,
    column_defs,
    filter_model_of,
    filter_model_text,
    grid_rows,
    sort_text,
)
from sde.web.state import query_params, rendered_key, search_of, table_params, table_search

# Scrolls the grid to the focused row and selects it (sde.js: sdeFocusRow), once its first block
# of rows has arrived; without a focus from the URL, the row clicked before the browser's back
# button (kept in sessionStorage by sde.js) is the focus.
FOCUS_JS = """function(_response, focus, gridId) {
    if (window.sdeFocusRow) { window.sdeFocusRow(gridId, focus); }
    return null;
}"""


def csv_href(spec: TableSpec, filter_text: str, sort: str) -> str:
    return f"{spec.api}.csv" + search_of({"filter": filter_text, "sort": sort})


def json_href(spec: TableSpec, filter_text: str, sort: str) -> str:
    return spec.api + search_of({"filter": filter_text, "sort": sort})


def count_text(spec: TableSpec, total: int, error: str | None) -> html.Span:
    """"1,234 of 5,000 utterances match" under the filter box (or why nothing is shown)."""
    all_rows = len(spec.df())
    if error:
        return html.Span(error, className="text-danger")
    if total == all_rows:
        return html.Span([html.B(fmt_int(total)), f" {spec.noun}"])
    return html.Span([html.B(fmt_int(total)), f" of {fmt_int(all_rows)} {spec.noun} match"])


def filter_problem(query: Any, text: str | None, utterances: bool = False) -> tuple[str, str | None] | None:
    """None when `text` is a valid filter for this table, else (the message, the excerpt of the
    filter with a caret under the place it goes wrong, when the parser knows it). Of the
    `utterances` table, a column only a build option measures names that option (sde.rules)."""
    found = unmeasured_in_filter(query.columns, text) if utterances else None
    if found is not None:
        return str(found), None
    try:
        query.clauses(text or None)
    except QueryError as e:
        return str(e), getattr(e, "excerpt", None)
    return None


def grid_columns(df: Any) -> list[str]:
    """The columns a grid can show: AG Grid takes a field named "" (an empty manifest key) for no
    field at all, and showed a nameless, empty column whose filter named no column. The
    inspector and the JSON API still show that field."""
    return [str(c) for c in df.columns if str(c)]


def visible_columns(spec: TableSpec, cols: str | None) -> list[str]:
    """The URL's `cols` (comma-separated; unknown names left out), else the page's default."""
    columns = grid_columns(spec.df())
    if cols:
        known = set(columns)
        chosen = [c for c in dict.fromkeys(cols.split(",")) if c in known]
        if chosen:
            return chosen
    return [c for c in spec.visible if c in columns]


def cols_param(spec: TableSpec, visible: Any) -> str:
    """The `cols` URL parameter for these visible columns ("" when they are the page's default)."""
    visible = [str(c) for c in visible] if isinstance(visible, (list, tuple)) else []
    default = visible_columns(spec, None)
    return "" if sorted(visible) == sorted(default) else ",".join(visible)


def focus_of(spec: TableSpec, params: Mapping[str, str], box: str, sort: list[tuple[str, bool]]) -> dict | None:
    """{"uid", "index"} of the URL's `focus=ID` in the list the grid will show (None when the row
    is not in it, or the URL names none)."""
    raw = (params.get("focus") or "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return None
    try:
        model = filter_model_of(params.get("colfilter"))
        effective = combine_filters(box, format_filter(clauses_from_grid(model)))
        positions = spec.query().select(effective or None, sort)
    except QueryError:
        return None
    df = spec.df()
    ids_ = df["id"].to_numpy()[positions] if "id" in df.columns else positions
    where = np.flatnonzero(ids_ == int(raw))
    return {"uid": int(raw), "index": int(where[0])} if len(where) else None


def _grid(spec: TableSpec, visible: list[str], sort: list[tuple[str, bool]], colfilter: dict | None) -> dag.AgGrid:
    return dag.AgGrid(
        id=state.table_id(spec.prefix, state.GRID),
        rowModelType="infinite",
        columnDefs=column_defs(spec, visible, sort),
        defaultColDef={"sortable": True, "resizable": True, "floatingFilter": True, "wrapHeaderText": True,
                       "autoHeaderHeight": True, "suppressHeaderMenuButton": True,
                       "suppressFloatingFilterButton": False},
        dashGridOptions={
            # The URL's column filters as the grid's initial state, not the filterModel prop: the
            # prop is applied after the grid's first block request, which then went out unfiltered
            # and rewrote the URL without them (two extra history entries: Back looped).
            **({"initialState": {"filter": {"filterModel": colfilter}}} if colfilter else {}),
            # One block request at a time: the request is a Dash prop, so two at once (a jump that
            # needs two blocks) collapse into one, and the other block would stay "loading" forever.
            "cacheBlockSize": 100, "maxBlocksInCache": 50, "infiniteInitialRowCount": 100,
            "maxConcurrentDatasourceRequests": 1, "rowBuffer": 10, "tooltipShowDelay": 400,
            "enableCellTextSelection": True, "suppressCellFocus": False, "animateRows": False,
            "theme": TABLE_GRID_THEME,
            "rowClass": "grid-row-link" if spec.row_href else "",
            # The selected row is the one the inspector came back from (see FOCUS_JS).
            "rowSelection": {"mode": "singleRow", "checkboxes": False, "enableClickSelection": True},
        },
        style={"height": "calc(100vh - 290px)", "minHeight": "360px", "width": "100%"},
        # rows that open something (Samples: the inspector, Vocabulary: a word's utterances) open
        # from the keyboard too: Tab lands on a row, ↑/↓ walk, Enter opens (sde.js)
        className=LINK_GRID_CLASS if spec.row_href else "sde-grid",
    )


def layout(spec: TableSpec, params: Mapping[str, str], title: str, subtitle: Any = None,
           hint: str | None = None) -> html.Div:
    """The table page for the URL's `filter`, `sort` and `colfilter` (`hint`: a warning about
    the link, shown above the filter box)."""
    def p(suffix: str) -> str:
        return state.table_id(spec.prefix, suffix)

    url_state = table_params(params)
    query = spec.query()
    box = url_state.get("filter", "")
    problem = filter_problem(query, box, spec.prefix == state.SAMPLES)
    box_error, excerpt = problem if problem else (None, None)
    applied = "" if box_error else box
    try:
        sort = parse_sort(url_state.get("sort"), query.columns)
    except QueryError as e:  # the grid shows the rows unsorted: say why (Samples says it before us)
        sort = []
        hint = " ".join(h for h in (hint, f"The sort in the link is invalid ({e}), so the list is not sorted.") if h)
    df = spec.df()
    visible = visible_columns(spec, url_state.get("cols"))
    picker = dbc.Checklist(
        id=p(state.COLUMNS),
        options=[{"label": spec.labels.get(c, c), "value": c} for c in grid_columns(df)],
        value=visible, switch=True, className="column-picker",
    )
    box_view = filter_box(p(state.FILTER), p(state.APPLY), p(state.FILTER_FEEDBACK), box, box_error,
                          f"e.g. {spec.placeholder()}",
                          tail=". Press Enter to apply. Column filters in the grid headers add to it.",
                          help_id=p(state.FILTER_HELP), className="flex-grow-1",
                          excerpt=excerpt, excerpt_id=p(state.FILTER_EXCERPT))
    toolbar = html.Div([
        html.Span(id=p(state.COUNT), className="row-count"),
        html.Span(id=p(state.COLFILTER_TEXT), className="small text-muted me-auto colfilter-text"),
        dbc.Button("Columns", id=p(state.COLUMNS_TOGGLE), color="primary", outline=True, size="sm", n_clicks=0),
        html.A("Download CSV", id=p(state.CSV), href=csv_href(spec, applied, sort_text(sort)),
               className="btn btn-sm btn-success", download=f"{spec.noun}.csv"),
        *(review.samples_toolbar_links(applied, sort_text(sort)) if spec.prefix == state.SAMPLES else ()),
    ], className="d-flex align-items-center gap-2 mb-2 flex-wrap")
    # The JSON twin of the view shown: kept in step with the grid, as the CSV link is.
    json_link = html.A("JSON", id=p(state.JSON), href=json_href(spec, applied, sort_text(sort)),
                       className="link-secondary")
    subtitle = [*(subtitle if isinstance(subtitle, list) else [] if subtitle is None else [subtitle]),
                " · " if subtitle else None, json_link]
    return html.Div([
        dcc.Store(id=p(state.STATE), data={"filter": applied, "sort": sort_text(sort),
                                           "colfilter": url_state.get("colfilter", ""), "effective": box,
                                           "cols": url_state.get("cols", "")}),
        dcc.Store(id=p(state.APPLIED), data=applied),
        dcc.Store(id=p(state.PURGE)),
        dcc.Store(id=p(state.FOCUS), data=focus_of(spec, params, applied, sort)),
        page_header(title, subtitle),
        dbc.Alert(hint, color="warning", className="py-2 mb-2", id=p("hint")) if hint else None,
        html.Div(box_view, className="mb-1"),
        html.Div(id=p(state.FILTER_HINT), className="mb-2"),
        dbc.Collapse(dbc.Card(dbc.CardBody([html.Div("Visible columns", className="fw-bold small mb-1"), picker])),
                     id=p(state.COLUMNS_COLLAPSE), is_open=False, className="mb-2"),
        toolbar,
        _grid(spec, visible, sort, filter_model_of(url_state.get("colfilter"))),
    ], className="table-page")


# ---------------------------------------------------------------- what the callbacks do

def applied_filter(spec: TableSpec, text: str | None, applied: str | None) -> dict:
    """The filter box after Enter or Apply: its message (and the caret excerpt), and the text to
    apply (when it changed). A rejected filter also takes away the advice about the one before
    (its rows stay shown): a hint offering to rewrite a filter no longer in the box read as advice
    about the new one."""
    text = as_text(text).strip()
    problem = filter_problem(spec.query(), text, spec.prefix == state.SAMPLES)
    if problem:
        message, excerpt = problem
        return {"invalid": True, "feedback": message, "excerpt": excerpt_view(excerpt), "applied": no_update,
                "hint": None}
    return {"invalid": False, "feedback": "", "excerpt": None, "applied": text if text != applied else no_update,
            "hint": no_update}


def excerpt_view(excerpt: str | None) -> html.Pre | None:
    return html.Pre(excerpt, className="filter-excerpt mb-0") if excerpt else None


def colfilter_text(grid_filter: str) -> Any:
    """The grid's column filters in the filter language, operator included ("{wer} >= 50"): the
    grid's own floating filter shows only the number."""
    if not grid_filter:
        return ""
    return ["column filters: ", html.Code(grid_filter)]


def hint_view(spec: TableSpec, effective: str, total: int, error: str | None, keep: Mapping[str, str]) -> Any:
    """Advice under the filter box when nothing matches (e.g. the case-insensitive `=~`), each a
    link to the rewritten filter (with the page's sort and columns, `keep`)."""
    if error or total or not effective:
        return None
    hints = spec.query().hints(effective)
    return filter_hints_view(hints, lambda q: spec.path + table_search({**keep, "filter": q}),
                             state.table_id(spec.prefix, "hint-link"))


ROWS_OUTPUTS = ("rows", "count", "colfilters", "hint", "csv", "json", "state", "search", "rendered")


def rows_block(spec: TableSpec, title: str, request: Any, applied: str | None, search: str | None,
               visible: Any = None) -> dict:
    """One block of rows for the grid, and everything that follows from what it shows: the row
    count, the CSV link, the table's store and (when they changed) the URL and the router's key."""
    if not isinstance(request, Mapping):
        # The grid resets its request to null as it mounts: no rows are asked for, and answering
        # would rewrite the URL before the grid's sort and column filters are in the request.
        return {name: no_update for name in ROWS_OUTPUTS}
    result = grid_rows(spec.query(), spec.df(), request, applied)
    model = request.get("filterModel") if isinstance(request, Mapping) else None
    cols = cols_param(spec, visible) if visible is not None else table_params(query_params(search)).get("cols", "")
    table_state = {"filter": applied or "", "sort": result.sort, "colfilter": filter_model_text(model),
                   "effective": result.effective, "cols": cols}
    new_search = table_search(table_state)
    new_params = table_params(query_params(new_search))
    same_url = table_params(query_params(search)) == new_params
    first_block = not isinstance(request, Mapping) or not request.get("startRow")
    return {
        "rows": result.response,
        "count": count_text(spec, result.total, result.error),
        "colfilters": colfilter_text(result.grid_filter) if not result.error else "",
        "hint": (hint_view(spec, result.effective, result.total, result.error, {"sort": result.sort, "cols": cols})
                 if first_block else no_update),
        "csv": csv_href(spec, result.effective, result.sort),
        "json": json_href(spec, result.effective, result.sort),
        "state": table_state,
        "search": no_update if same_url else new_search,
        "rendered": no_update if same_url else rendered_key(spec.path, new_params, title),
    }


def picked_columns(spec: TableSpec, title: str, visible: Any, table_state: Mapping | None,
                   search: str | None) -> dict:
    """The column picker changed: the grid's columns, and `cols` in the URL (nothing when the
    columns are those shown already: the picker reports its value as it mounts, and new column
    definitions then would reset the grid's sort)."""
    visible = [str(c) for c in visible] if isinstance(visible, (list, tuple)) else []
    params = {**table_params(query_params(search)), "cols": cols_param(spec, visible)}
    new_params = table_params(params)
    same_url = table_params(query_params(search)) == new_params
    if same_url:
        return {"columns": no_update, "state": no_update, "search": no_update, "rendered": no_update}
    return {
        "columns": column_defs(spec, visible, with_sort=False),
        "state": {**(table_state or {}), "cols": new_params.get("cols", "")},
        "search": table_search(new_params),
        "rendered": rendered_key(spec.path, new_params, title),
    }


def callbacks(app: dash.Dash, current: Callable[[], TableSpec], title: str) -> None:
    """The table page's callbacks, registered on `app`. `current()` is the page's spec now: the
    table can gain columns while the server runs (duplicates, VAD, audio metrics), and a spec
    taken at start-up would see the layout's default columns as a choice and write them all into
    the URL as `cols`, a new history entry at every visit (back then returned to Samples)."""
    spec = current()  # its prefix and whether rows are links never change

    def p(suffix: str) -> str:
        return state.table_id(spec.prefix, suffix)

    @app.callback(
        output={"invalid": Output(p(state.FILTER), "invalid"),
                "feedback": Output(p(state.FILTER_FEEDBACK), "children"),
                "excerpt": Output(p(state.FILTER_EXCERPT), "children"),
                "applied": Output(p(state.APPLIED), "data"),
                "hint": Output(p(state.FILTER_HINT), "children", allow_duplicate=True)},
        inputs={"_typed": Input(p(state.FILTER), "value"), "_clicks": Input(p(state.APPLY), "n_clicks"),
                "text": State(p(state.FILTER), "value"), "applied": State(p(state.APPLIED), "data")},
        prevent_initial_call=True,
    )
    def apply_filter(_typed, _clicks, text, applied):
        return applied_filter(current(), text, applied)

    app.clientside_callback(
        PURGE_GRID_JS,
        Output(p(state.PURGE), "data"),
        Input(p(state.APPLIED), "data"),
        State(p(state.GRID), "id"),
        prevent_initial_call=True,
    )

    @app.callback(
        output={"rows": Output(p(state.GRID), "getRowsResponse"),
                "count": Output(p(state.COUNT), "children"),
                "colfilters": Output(p(state.COLFILTER_TEXT), "children"),
                "hint": Output(p(state.FILTER_HINT), "children", allow_duplicate=True),
                "csv": Output(p(state.CSV), "href"),
                "json": Output(p(state.JSON), "href"),
                "state": Output(p(state.STATE), "data", allow_duplicate=True),
                "search": Output(state.URL, "search", allow_duplicate=True),
                "rendered": Output(state.RENDERED, "data", allow_duplicate=True)},
        inputs={"request": Input(p(state.GRID), "getRowsRequest"),
                "applied": State(p(state.APPLIED), "data"),
                "search": State(state.URL, "search"),
                "visible": State(p(state.COLUMNS), "value")},
        prevent_initial_call=True,
    )
    def get_rows(request, applied, search, visible):
        return rows_block(current(), title, request, as_text(applied) or None, as_text(search), visible)

    app.clientside_callback(
        FOCUS_JS,
        Output(p(state.FOCUS), "data"),
        Input(p(state.GRID), "getRowsResponse"),
        State(p(state.FOCUS), "data"),
        State(p(state.GRID), "id"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(p(state.COLUMNS_COLLAPSE), "is_open"),
        Input(p(state.COLUMNS_TOGGLE), "n_clicks"),
        State(p(state.COLUMNS_COLLAPSE), "is_open"),
        prevent_initial_call=True,
    )
    def toggle_columns(_n, is_open):
        return not is_open

    @app.callback(
        output={"columns": Output(p(state.GRID), "columnDefs"),
                "state": Output(p(state.STATE), "data", allow_duplicate=True),
                "search": Output(state.URL, "search", allow_duplicate=True),
                "rendered": Output(state.RENDERED, "data", allow_duplicate=True)},
        inputs={"visible": Input(p(state.COLUMNS), "value"), "table_state": State(p(state.STATE), "data"),
                "search": State(state.URL, "search")},
        prevent_initial_call=True,
    )
    def pick_columns(visible, table_state, search):
        return picked_columns(current(), title, visible, as_mapping(table_state), as_text(search))

    if spec.row_href is not None:
        @app.callback(
            Output(state.URL, "href", allow_duplicate=True),
            Input(p(state.GRID), "cellClicked"),
            State(p(state.STATE), "data"),
            prevent_initial_call=True,
        )
        def open_row(clicked, table_state):
            now = current()
            row = clicked_row(now, table_state, clicked)
            return (now.row_href(table_state or {}, row) if row is not None and now.row_href else None) or no_update
