"""Shared layout bits (navbar, stat cards, word diff, key/value tables) and the server-side table
view used by Samples and Vocabulary (dash-ag-grid infinite row model + filter box + CSV link).

Every user-supplied string goes into components as text children or props (Dash escapes them);
nothing here builds raw HTML, and the grid uses no HTML cell renderer.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence
from urllib.parse import urlencode

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
from dash import Input, Output, State, dcc, html, no_update

from sde.web import ids

if TYPE_CHECKING:  # pragma: no cover
    from sde.web.pages import Page

# ---------------------------------------------------------------- number formatting

def fmt_int(n: Any) -> str:
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError):
        return "–"


def fmt_float(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    try:
        return f"{float(x):,.{digits}f}"
    except (TypeError, ValueError):
        return "–"


def fmt_pct(x: Any, digits: int = 2) -> str:
    s = fmt_float(x, digits)
    return s if s == "–" else s + "%"


def fmt_value(v: Any) -> str:
    """Any cell value as display text (the inspector's key/value table)."""
    if v is None or v is pd.NA:
        return "–"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}" if abs(int(v)) >= 10_000 else str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return "–"
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else f"{f:.4g}" if abs(f) < 1e-3 else f"{f:,.4f}".rstrip("0").rstrip(".")
    return str(v)


def char_label(ch: str) -> str:
    """A visible, unambiguous label for one alphabet character (space, controls, combining marks)."""
    if ch == " ":
        return "␣"
    if ch == "\t":
        return "\\t"
    cat = unicodedata.category(ch)
    if cat.startswith("C") or cat in ("Zs", "Zl", "Zp") or ch in "\u200b\u200c\u200d\ufeff":
        return f"U+{ord(ch):04X}"
    if cat.startswith("M"):  # combining mark: show it on a dotted circle
        return "◌" + ch
    return ch


def char_title(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}".strip()


# ---------------------------------------------------------------- shell pieces

def navbar(pages: Sequence["Page"], title: str) -> dbc.Navbar:
    links = [
        dbc.NavItem(dbc.NavLink(p.name, href=p.path if not p.aliases else p.aliases[0],
                                active="exact" if p.aliases or p.path == "/" else "partial",
                                id=f"nav-{p.name.lower()}"))
        for p in pages if p.nav
    ]
    return dbc.Navbar(
        dbc.Container([
            dcc.Link(
                html.Span([html.Span("sde", className="brand-mark"),
                           html.Span(title, className="brand-title", title=title)]),
                href="/", className="navbar-brand d-flex align-items-center",
            ),
            dbc.NavbarToggler(id="navbar-toggler", n_clicks=0),
            dbc.Collapse(dbc.Nav(links, navbar=True, className="ms-auto"), id="navbar-collapse",
                         navbar=True, is_open=False),
        ], fluid=True),
        id=ids.NAVBAR, color="primary", dark=True, className="mb-3 shadow-sm", sticky="top",
    )


def page_header(title: str, subtitle: Any = None, right: Any = None) -> html.Div:
    return html.Div([
        html.Div([
            html.H4(title, className="mb-0 page-title"),
            html.Div(subtitle, className="text-muted small") if subtitle is not None else None,
        ]),
        html.Div(right, className="d-flex gap-2 align-items-center flex-wrap") if right is not None else None,
    ], className="d-flex justify-content-between align-items-end flex-wrap gap-2 mb-3")


def stat_card(label: str, value: str, *, value_id: str | None = None, sub: Any = None,
              href: str | None = None, tone: str | None = None, title: str | None = None) -> dbc.Card:
    value_props = {"id": value_id} if value_id else {}
    body = [
        html.Div(label, className="stat-label"),
        html.Div(value, className="stat-value" + (f" text-{tone}" if tone else ""), **value_props),
    ]
    if sub is not None:
        body.append(html.Div(sub, className="stat-sub"))
    card = dbc.Card(dbc.CardBody(body), className="stat-card h-100")
    if title:
        card = html.Div(card, title=title, className="h-100")
    if href:
        return dcc.Link(card, href=href, className="stat-link")
    return card


def alphabet_view(chars: Sequence[str]) -> html.Div:
    if not chars:
        return html.Div("The references are empty: no characters.", className="text-muted")
    return html.Div(
        [html.Span(char_label(c), className="alpha-char", title=char_title(c)) for c in chars],
        className="alphabet", id=ids.STATS_ALPHABET,
    )


def key_value_table(row: Mapping[str, Any], table_id: str | None = None) -> dbc.Table:
    body = [html.Tr([html.Th(str(k), scope="row", className="kv-key"), html.Td(fmt_value(v), className="kv-value")])
            for k, v in row.items()]
    props = {"id": table_id} if table_id else {}
    return dbc.Table(html.Tbody(body), bordered=False, hover=True, size="sm",
                     className="kv-table mb-0", **props)


# ---------------------------------------------------------------- word diff

DIFF_CLASSES = {"equal": "diff-eq", "sub": "diff-sub", "del": "diff-del", "ins": "diff-ins"}


def diff_view(aligned: Sequence[Any]) -> html.Div:
    """Word diff of one hypothesis vs its reference: equal words plain, substitutions as struck
    reference + hypothesis, deletions struck in red, insertions in green. `aligned` holds
    sde.metrics.AlignedWord (or dicts with op/ref/hyp)."""
    spans: list[Any] = []
    for w in aligned:
        op, ref, hyp = (w["op"], w["ref"], w["hyp"]) if isinstance(w, Mapping) else (w.op, w.ref, w.hyp)
        if spans:
            spans.append(" ")
        if op == "equal":
            spans.append(html.Span(ref, className="diff-eq"))
        elif op == "sub":
            spans.append(html.Span([html.Del(ref, className="diff-sub-ref"), html.Ins(hyp, className="diff-sub-hyp")],
                                   className="diff-sub", title=f"substitution: {ref} → {hyp}"))
        elif op == "del":
            spans.append(html.Del(ref, className="diff-del", title=f"deletion: {ref}"))
        elif op == "ins":
            spans.append(html.Ins(hyp, className="diff-ins", title=f"insertion: {hyp}"))
        elif op in ("unaligned", "missing"):  # too long to diff, or no hypothesis: the text as it is, and why
            note = w.get("note") if isinstance(w, Mapping) else w.note
            spans.append(html.Div(note, className="text-muted small diff-note"))
            if hyp is not None:
                spans.append(html.Span(hyp, className="diff-plain"))
    if not spans:
        spans = [html.Span("(empty reference and hypothesis)", className="text-muted")]
    return html.Div(spans, className="diff")


def diff_legend() -> html.Div:
    return html.Div([
        html.Span("Legend:", className="me-2 text-muted"),
        html.Span("correct", className="diff-eq legend-item"),
        html.Span([html.Del("ref", className="diff-sub-ref"), html.Ins("hyp", className="diff-sub-hyp")],
                  className="diff-sub legend-item", title="substitution"),
        html.Del("deleted", className="diff-del legend-item", title="deletion"),
        html.Ins("inserted", className="diff-ins legend-item", title="insertion"),
    ], className="diff-legend small", id="diff-legend")


# ---------------------------------------------------------------- server-side table view

@dataclass
class TableSpec:
    """One grid page (Samples, Vocabulary): its id prefix, data, columns and links."""

    prefix: str                                   # id prefix and URL path: "samples" → /samples
    path: str                                     # "/samples"
    api: str                                      # "/api/utterances" (CSV: api + ".csv")
    noun: str                                     # "utterances"
    df: Callable[[], pd.DataFrame]
    query: Callable[[], Any]                      # → sde.query.TableQuery
    labels: Mapping[str, str] = field(default_factory=dict)       # column → header
    visible: Sequence[str] = ()                   # shown by default (others: in the column picker)
    wide: Sequence[str] = ()                      # text columns that get the room
    percent: Sequence[str] = ()                   # shown as "12.34%"
    pinned: Sequence[str] = ()                    # pinned left
    row_href: Callable[[dict, int], str | None] | None = None   # (state, id or row) → link on click
    row_href_by_row: bool = False                 # row_href gets the clicked row's data instead of its id
    placeholder: str = '{wer} > 20 && {speaker} = "en-gb"'


def table_params(params: Mapping[str, str]) -> dict[str, str]:
    """The query-string state a table page understands, normalised (only non-empty keys)."""
    return {k: params[k] for k in ("filter", "sort", "colfilter") if params.get(k)}


def _json_loads(text: str | None) -> Any:
    from sde.query import MAX_QUERY_LENGTH

    if not text or len(text) > MAX_QUERY_LENGTH:  # a column-filter model that long is not the grid's
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def sort_text(sort: Sequence[tuple[str, bool]]) -> str:
    return ",".join(("-" if desc else "") + col for col, desc in sort)


def combine_filters(*parts: str | None) -> str:
    return " && ".join(p.strip() for p in parts if p and p.strip())


@dataclass
class GridResult:
    response: dict            # getRowsResponse
    total: int
    effective: str            # box filter && grid column filters, as Q text
    sort: str                 # "col,-col"
    error: str | None = None


def _grid_row_number(value: Any, name: str, default: int) -> int:
    """startRow / endRow as the browser sent them (any JSON): an int, or a QueryError."""
    from sde.query import QueryError

    if value is None:
        return default
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    shown = repr(value)
    raise QueryError(f"{name} must be a whole number, got {shown if len(shown) <= 40 else shown[:39] + '…'}.")


def grid_range(request: Mapping[str, Any]) -> tuple[int, int]:
    """The [start, end) rows a getRowsRequest asks for, clamped to at most MAX_PAGE_SIZE rows:
    a hostile endRow=10**9 must not turn one callback into the whole table."""
    from sde.query import MAX_PAGE_SIZE

    start = max(0, _grid_row_number(request.get("startRow"), "startRow", 0))
    end = _grid_row_number(request.get("endRow"), "endRow", start + 100)
    return start, min(max(end, start), start + MAX_PAGE_SIZE)


def grid_rows(query, df: pd.DataFrame, request: Mapping[str, Any] | None, box_filter: str | None) -> GridResult:
    """Answer an AG Grid infinite-model getRowsRequest from a TableQuery (the pure core of the
    getRows callback): the filter box's Q and the grid's filter/sort models are combined."""
    from sde.query import QueryError, format_filter, sort_from_grid, to_clauses_from_grid

    from sde.web.api import records

    request = request if isinstance(request, Mapping) else {}
    box_filter = box_filter if isinstance(box_filter, str) else None  # browser-side store: any JSON
    try:
        start, end = grid_range(request)
        box = query.clauses(box_filter or None)
        grid = to_clauses_from_grid(request.get("filterModel"))
        grid = query.clauses(grid)
        sort = sort_from_grid(request.get("sortModel"))
        positions = query.select(box + grid, sort)
    except QueryError as e:
        return GridResult({"rowData": [], "rowCount": 0}, 0, box_filter or "", "", str(e))
    rows = df.iloc[positions[start:end]]
    return GridResult(
        response={"rowData": records(rows), "rowCount": int(len(positions))},
        total=int(len(positions)),
        effective=combine_filters(box_filter, format_filter(grid)),
        sort=sort_text(sort),
    )



def check_filter(query, text: str | None) -> str | None:
    """None when `text` is a valid filter for this table, else the message to show under the box."""
    from sde.query import QueryError

    try:
        query.clauses(text or None)
    except QueryError as e:
        return str(e)
    return None


def _value_formatter(col: str, dtype: Any, percent: bool) -> dict | None:
    if pd.api.types.is_bool_dtype(dtype):
        return None
    if pd.api.types.is_integer_dtype(dtype):
        return {"function": "params.value == null ? '' : d3.format(',')(params.value)"}
    if pd.api.types.is_float_dtype(dtype):
        suffix = " + '%'" if percent else ""
        return {"function": f"params.value == null ? '' : d3.format(',.2f')(params.value){suffix}"}
    return None


def column_defs(spec: TableSpec, visible: Sequence[str], sort: Sequence[tuple[str, bool]] = (),
                with_sort: bool = True) -> list[dict]:
    from sde.query import GRID_NUMBER_FILTER_OPTIONS, GRID_TEXT_FILTER_OPTIONS

    df = spec.df()
    sort_index = {col: (i, desc) for i, (col, desc) in enumerate(sort)}
    defs = []
    # Visible columns in the spec's order first, then the rest (revealed by the column picker).
    rank = {c: i for i, c in enumerate(spec.visible)}
    rank.update({str(c): len(rank) + i for i, c in enumerate(df.columns) if str(c) not in rank})
    shown = sorted((c for c in visible if c in rank), key=rank.__getitem__)
    order = shown + sorted((c for c in rank if c not in shown and c in df.columns), key=rank.__getitem__)
    for col in order:
        dtype = df[col].dtype
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        d: dict[str, Any] = {
            "field": col,
            "colId": col,
            "headerName": spec.labels.get(col, col),
            "headerTooltip": col,
            "hide": col not in visible,
        }
        if numeric:
            d.update(type="numericColumn", filter="agNumberColumnFilter", width=110 if col != "id" else 90,
                     filterParams={"filterOptions": list(GRID_NUMBER_FILTER_OPTIONS), "maxNumConditions": 1,
                                   "buttons": ["reset"], "debounceMs": 400})
            fmt = _value_formatter(col, dtype, col in spec.percent)
            if fmt:
                d["valueFormatter"] = fmt
        elif pd.api.types.is_bool_dtype(dtype):
            d.update(width=90, filter=False)
        else:
            d.update(filter="agTextColumnFilter", tooltipField=col,
                     filterParams={"filterOptions": list(GRID_TEXT_FILTER_OPTIONS), "maxNumConditions": 1,
                                   "buttons": ["reset"], "debounceMs": 400})
            if col in spec.wide:
                d.update(flex=2, minWidth=240)
            else:
                d.update(flex=1, minWidth=130)
        if col in spec.pinned:
            d["pinned"] = "left"
        if with_sort:
            if col in sort_index:
                d["sort"] = "desc" if sort_index[col][1] else "asc"
                d["sortIndex"] = sort_index[col][0]
            else:
                d["sort"] = None
        defs.append(d)
    return defs


def table_layout(spec: TableSpec, params: Mapping[str, str], title: str, subtitle: Any = None) -> html.Div:
    from sde.query import QueryError, parse_sort

    p = lambda s: ids.table_id(spec.prefix, s)  # noqa: E731
    state = table_params(params)
    query = spec.query()
    box = state.get("filter", "")
    box_error = check_filter(query, box)
    try:
        sort = parse_sort(state.get("sort"), query.columns)
    except QueryError:
        sort = []
    colfilter = _json_loads(state.get("colfilter"))
    df = spec.df()
    visible = [c for c in spec.visible if c in df.columns]
    picker = dbc.Checklist(
        id=p(ids.COLUMNS),
        options=[{"label": spec.labels.get(str(c), str(c)), "value": str(c)} for c in df.columns],
        value=visible, switch=True, className="column-picker",
    )
    filter_box = html.Div([
        dbc.InputGroup([
            dbc.InputGroupText("Filter", className="fw-bold"),
            dbc.Input(id=p(ids.FILTER), value=box, placeholder=f"e.g. {spec.placeholder}", debounce=True,
                      type="text", autoComplete="off", invalid=bool(box_error),
                      className="font-monospace filter-input"),
            dbc.Button("Apply", id=p("apply"), color="primary", n_clicks=0),
            dbc.FormFeedback(box_error or "", type="invalid", id=p(ids.FILTER_FEEDBACK)),
        ], className="has-validation"),
        html.Div([
            "Clauses ", html.Code("{column} OP value"), " joined by ", html.Code("&&"),
            "; OP is one of ", html.Code("= != < <= > >= contains has"),
            ". Press Enter to apply. Column filters in the grid headers add to it.",
        ], className="form-text", id=p(ids.FILTER_HELP)),
    ], className="flex-grow-1")
    toolbar = html.Div([
        html.Span(id=p(ids.COUNT), className="row-count me-auto"),
        dbc.Button("Columns", id=p(ids.COLUMNS_TOGGLE), color="primary", outline=True, size="sm", n_clicks=0),
        html.A("Download CSV", id=p(ids.CSV), href=csv_href(spec, box if not box_error else "", sort_text(sort)),
               className="btn btn-sm btn-success", download=f"{spec.noun}.csv"),
    ], className="d-flex align-items-center gap-2 mb-2 flex-wrap")
    grid = dag.AgGrid(
        id=p(ids.GRID),
        rowModelType="infinite",
        columnDefs=column_defs(spec, visible, sort),
        defaultColDef={"sortable": True, "resizable": True, "floatingFilter": True, "wrapHeaderText": True,
                       "autoHeaderHeight": True, "suppressHeaderMenuButton": True,
                       "suppressFloatingFilterButton": False},
        filterModel=colfilter if isinstance(colfilter, dict) else {},
        dashGridOptions={
            "cacheBlockSize": 100,
            "maxBlocksInCache": 50,
            "infiniteInitialRowCount": 100,
            "maxConcurrentDatasourceRequests": 2,
            "rowBuffer": 10,
            "tooltipShowDelay": 400,
            "enableCellTextSelection": True,
            "suppressCellFocus": False,
            "animateRows": False,
            "theme": {"function": "themeQuartz.withParams({fontFamily: 'inherit', fontSize: 13, "
                                  "headerFontWeight: 700, accentColor: '#18bc9c', "
                                  "headerBackgroundColor: '#f3f6f9', rowHoverColor: '#eaf6f3', "
                                  "spacing: 6, wrapperBorderRadius: 6})"},
            "rowClass": "grid-row-link" if spec.row_href else "",
        },
        style={"height": "calc(100vh - 290px)", "minHeight": "360px", "width": "100%"},
        className="sde-grid",
    )
    return html.Div([
        dcc.Store(id=p(ids.STATE), data={"filter": box if not box_error else "", "sort": sort_text(sort),
                                         "colfilter": state.get("colfilter", ""), "effective": box}),
        dcc.Store(id=p("applied"), data=box if not box_error else ""),
        dcc.Store(id=p(ids.PURGE)),
        page_header(title, subtitle),
        html.Div(filter_box, className="mb-2"),
        dbc.Collapse(dbc.Card(dbc.CardBody([html.Div("Visible columns", className="fw-bold small mb-1"), picker])),
                     id=p(ids.COLUMNS_COLLAPSE), is_open=False, className="mb-2"),
        toolbar,
        grid,
    ], className="table-page")


def csv_href(spec: TableSpec, filter_text: str, sort: str) -> str:
    q = {k: v for k, v in (("filter", filter_text), ("sort", sort)) if v}
    return f"{spec.api}.csv" + (f"?{urlencode(q)}" if q else "")


def state_search(state: Mapping[str, str]) -> str:
    q = {k: state[k] for k in ("filter", "colfilter", "sort") if state.get(k)}
    return f"?{urlencode(q)}" if q else ""


def register_table_callbacks(app: dash.Dash, spec: TableSpec, title: str) -> None:
    """The callbacks of one table page, registered on `app` (thin: unpack → core → return)."""
    p = lambda s: ids.table_id(spec.prefix, s)  # noqa: E731
    from sde.web.app import rendered_key

    @app.callback(
        Output(p(ids.FILTER), "invalid"),
        Output(p(ids.FILTER_FEEDBACK), "children"),
        Output(p("applied"), "data"),
        Input(p(ids.FILTER), "value"),
        Input(p("apply"), "n_clicks"),
        State(p(ids.FILTER), "value"),
        State(p("applied"), "data"),
        prevent_initial_call=True,
    )
    def apply_filter(_value, _clicks, text, applied):
        text = (text or "").strip()
        error = check_filter(spec.query(), text)
        if error:
            return True, error, no_update
        return False, "", (text if text != applied else no_update)

    # Re-ask the grid for its rows once the applied filter changed (the infinite model caches blocks).
    app.clientside_callback(
        """function(applied, gridId) {
            if (window.dash_ag_grid && window.dash_ag_grid.getApiAsync) {
                window.dash_ag_grid.getApiAsync(gridId).then(function (api) {
                    api.purgeInfiniteCache();
                    api.ensureIndexVisible(0, 'top');
                });
            }
            return Date.now();
        }""",
        Output(p(ids.PURGE), "data"),
        Input(p("applied"), "data"),
        State(p(ids.GRID), "id"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(p(ids.GRID), "getRowsResponse"),
        Output(p(ids.COUNT), "children"),
        Output(p(ids.CSV), "href"),
        Output(p(ids.STATE), "data"),
        Output(ids.URL, "search", allow_duplicate=True),
        Output(ids.RENDERED, "data", allow_duplicate=True),
        Input(p(ids.GRID), "getRowsRequest"),
        State(p("applied"), "data"),
        State(ids.URL, "search"),
        prevent_initial_call=True,
    )
    def get_rows(request, applied, search):
        result = grid_rows(spec.query(), spec.df(), request, applied)
        colfilter = (request.get("filterModel") if isinstance(request, Mapping) else None) or {}
        state = {"filter": applied or "", "sort": result.sort,
                 "colfilter": json.dumps(colfilter, separators=(",", ":"), sort_keys=True) if colfilter else "",
                 "effective": result.effective}
        total_rows = len(spec.df())
        if result.error:
            count = html.Span(result.error, className="text-danger")
        elif result.total == total_rows:
            count = html.Span([html.B(fmt_int(result.total)), f" {spec.noun}"])
        else:
            count = html.Span([html.B(fmt_int(result.total)), f" of {fmt_int(total_rows)} {spec.noun} match"])
        new_search = state_search(state)
        from urllib.parse import parse_qsl

        current = dict(parse_qsl((search or "").lstrip("?")))
        if table_params(current) == table_params(dict(parse_qsl(new_search.lstrip("?")))):
            url_out, rendered_out = no_update, no_update
        else:
            url_out = new_search
            rendered_out = rendered_key(spec.path, table_params(dict(parse_qsl(new_search.lstrip("?")))), title)
        return (result.response, count, csv_href(spec, result.effective, result.sort), state,
                url_out, rendered_out)

    @app.callback(
        Output(p(ids.COLUMNS_COLLAPSE), "is_open"),
        Input(p(ids.COLUMNS_TOGGLE), "n_clicks"),
        State(p(ids.COLUMNS_COLLAPSE), "is_open"),
        prevent_initial_call=True,
    )
    def toggle_columns(_n, is_open):
        return not is_open

    @app.callback(
        Output(p(ids.GRID), "columnDefs"),
        Input(p(ids.COLUMNS), "value"),
        prevent_initial_call=True,
    )
    def pick_columns(visible):
        return column_defs(spec, visible or [], with_sort=False)

    if spec.row_href is not None:
        @app.callback(
            Output(ids.URL, "href", allow_duplicate=True),
            Input(p(ids.GRID), "cellClicked"),
            State(p(ids.STATE), "data"),
            prevent_initial_call=True,
        )
        def open_row(clicked, state):
            if not isinstance(clicked, Mapping) or clicked.get("rowIndex") is None:
                return no_update
            state = state or {}
            try:
                positions = spec.query().select(state.get("effective") or None, state.get("sort") or None)
            except Exception:  # a stale state: ignore the click rather than fail
                return no_update
            index = clicked["rowIndex"]
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(positions):
                return no_update
            df = spec.df()
            pos = int(positions[index])
            if spec.row_href_by_row:
                row = {str(c): df[c].iat[pos] for c in df.columns}
                href = spec.row_href(state, row)
            else:
                href = spec.row_href(state, int(df["id"].iat[pos]) if "id" in df.columns else pos)
            return href or no_update
