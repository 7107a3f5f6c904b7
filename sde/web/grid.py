"""The server side of the AG Grid tables (Samples, Vocabulary): what a table page is (`TableSpec`),
its column definitions, and the answer to the grid's getRowsRequest (infinite row model), whose
filter and sort models become clauses of sde.query's filter language.

Plain dicts in and out, no dash import: the grid's models come from the browser, so every field
is checked (any JSON may arrive) and a mistake is a QueryError whose message the page shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sde.compressed_columns import distinct_count, most_common, present_count, take_rows
from sde.filters import NUMBER, bind, check_clause_count, combine_filters
from sde.query import MAX_PAGE_SIZE, MAX_QUERY_LENGTH, MAX_SORT_KEYS, Clause, QueryError, format_filter
from sde.web.present import records

# Filter options the engine understands: columnDefs' filterParams={"filterOptions": ...} offer
# only those.
GRID_NUMBER_FILTER_OPTIONS: tuple[str, ...] = (
    "equals", "notEqual", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual", "inRange",
)
GRID_TEXT_FILTER_OPTIONS: tuple[str, ...] = ("contains", "equals", "notEqual")

_GRID_OPS = {
    "equals": "=", "notEqual": "!=", "lessThan": "<", "lessThanOrEqual": "<=",
    "greaterThan": ">", "greaterThanOrEqual": ">=", "contains": "contains",
}


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
    row_href: Callable[[Mapping, Mapping], str | None] | None = None   # (state, clicked row) → link
    # the filter box's example, asked for at the page's layout (a dataset's is counted from its rows)
    placeholder: Callable[[], str] = lambda: '{wer} > 20 && {speaker} = "en-gb"'


# ---------------------------------------------------------------- grid models → clauses

def _short(value: Any, limit: int = 40) -> str:
    """repr of a browser value for a message, cut short: an error must not echo a megabyte back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clauses_from_grid(filter_model: Mapping[str, Any] | None, *, in_range_inclusive: bool = False) -> list[Clause]:
    """Translate an AG Grid ``filterModel`` (``{colId: model}``) into clauses.

    Supports the simple text and number filters: ``{"filterType": "number", "type":
    "greaterThan", "filter": 20}``, ``{"type": "inRange", "filter": 1, "filterTo": 5}``
    (exclusive bounds like AG Grid's default; ``in_range_inclusive=True`` matches its
    ``inRangeInclusive`` option), and combined models with ``"operator": "AND"`` given either as
    ``"conditions": [...]`` (AG Grid ≥ 29) or ``"condition1"/"condition2"`` (older). Conditions
    without a value (the user has not typed one yet) are skipped. OR, blank/notBlank,
    startsWith/endsWith/notContains, date and set filters raise :class:`QueryError`.
    """
    if not filter_model:
        return []
    if not isinstance(filter_model, Mapping):
        raise QueryError("The grid filter model must be an object {column: filter}.")
    out: list[Clause] = []
    for col_id, model in filter_model.items():
        out.extend(_grid_model(str(col_id), model, in_range_inclusive))
        check_clause_count(len(out))
    return out


def _grid_model(column: str, model: Any, inclusive: bool, nested: bool = False) -> list[Clause]:
    if not isinstance(model, Mapping):
        raise QueryError(f"Filter on {{{column}}}: expected an object, got {type(model).__name__}.")
    ftype = model.get("filterType", "text")
    if ftype not in ("text", "number"):
        raise QueryError(f"Filter on {{{column}}}: {ftype} filters are not supported (text and number are).")
    if "operator" in model or "conditions" in model or "condition1" in model:
        if nested:
            # AG Grid combines simple conditions only; a model nested deeper is not from the grid.
            raise QueryError(f"Filter on {{{column}}}: combined conditions cannot be nested.")
        operator = str(model.get("operator", "AND")).upper()
        if operator != "AND":
            raise QueryError(f"Filter on {{{column}}}: OR is not supported; combine conditions with AND.")
        conditions = model.get("conditions")
        if conditions is None:
            conditions = [model[k] for k in ("condition1", "condition2") if model.get(k)]
        if not isinstance(conditions, (list, tuple)):
            raise QueryError(f"Filter on {{{column}}}: conditions must be a list.")
        out: list[Clause] = []
        for cond in conditions:
            if isinstance(cond, Mapping) and "filterType" not in cond:
                cond = {**cond, "filterType": ftype}
            out.extend(_grid_model(column, cond, inclusive, nested=True))
            check_clause_count(len(out))
        return out
    gtype = model.get("type")
    value = model.get("filter")
    number = ftype == "number"
    if gtype == "inRange" and number:
        lo, hi = value, model.get("filterTo")
        if lo is None or hi is None:
            return []
        return [Clause(column, ">=" if inclusive else ">", _grid_number(lo, column)),
                Clause(column, "<=" if inclusive else "<", _grid_number(hi, column))]
    allowed = GRID_NUMBER_FILTER_OPTIONS if number else GRID_TEXT_FILTER_OPTIONS
    if gtype not in allowed:
        raise QueryError(f'Filter on {{{column}}}: "{gtype}" is not supported; use one of {", ".join(allowed)}.')
    if value is None or value == "":
        return []
    return [Clause(column, _GRID_OPS[gtype], _grid_number(value, column) if number else str(value))]


def _grid_number(value: Any, column: str) -> float:
    """A number filter's value (a JSON number, or text the grid left unparsed) as a float, read
    by the filter language's own rules (its messages name the column)."""
    value = value if isinstance(value, (int, float, str)) else str(value)
    return bind(Clause(column, "=", value), {column: NUMBER}).value


def sort_from_grid(sort_model: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, bool]]:
    """AG Grid ``sortModel`` (``[{"colId": "wer", "sort": "desc"}, ...]``) → ``[(column, descending)]``.

    Entries with no sort direction are skipped; the list order is the sort priority; a column's
    first entry wins and more than MAX_SORT_KEYS columns raise :class:`QueryError` as soon as
    the ninth is seen (a 5,000-entry model is never walked to its end).
    """
    if not sort_model:
        return []
    if not isinstance(sort_model, (list, tuple)):
        raise QueryError("The grid sort model must be a list of {colId, sort}.")
    keys: dict[str, bool] = {}
    for item in sort_model:
        if not isinstance(item, Mapping) or "colId" not in item:
            raise QueryError(f"Invalid grid sort entry {_short(item, 60)}: expected {{colId, sort}}.")
        direction = item.get("sort")
        if direction is None:
            continue
        column = str(item["colId"])
        if direction not in ("asc", "desc"):
            raise QueryError(f'Invalid sort direction {_short(direction, 60)} for {{{_short(column, 60)}}}: '
                             "use asc or desc.")
        if column in keys:
            continue
        if len(keys) >= MAX_SORT_KEYS:
            raise QueryError(f"Too many sort columns: at most {MAX_SORT_KEYS} distinct columns, e.g. -wer,duration.")
        keys[column] = direction == "desc"
    return list(keys.items())


def sort_text(sort: Sequence[tuple[str, bool]]) -> str:
    """[(column, descending)] as the URL's sort text: `col,-col`."""
    return ",".join(("-" if desc else "") + col for col, desc in sort)


def filter_model_of(text: str | None) -> dict | None:
    """The `colfilter=` URL parameter (a grid filter model as JSON), or None when it is not one."""
    if not text or len(text) > MAX_QUERY_LENGTH:  # a column-filter model that long is not the grid's
        return None
    try:
        model = json.loads(text)
    except ValueError:
        return None
    return model if isinstance(model, dict) else None


def filter_model_text(model: Any) -> str:
    """A grid filter model as the `colfilter=` URL parameter ("" for none)."""
    return json.dumps(model, separators=(",", ":"), sort_keys=True) if model else ""


def list_filter(params: Mapping[str, str]) -> str | None:
    """The filter of the list an inspector link walks: its `filter` and its grid column filters
    (`colfilter`), which travel apart so that "back" restores each where the user put it. A
    column-filter model the grid could not have made is left out, as the grid leaves it out."""
    try:
        columns = format_filter(clauses_from_grid(filter_model_of(params.get("colfilter"))))
    except QueryError:
        columns = ""
    return combine_filters(params.get("filter") or None, columns) or None


# ---------------------------------------------------------------- getRowsRequest → rows

@dataclass
class GridResult:
    response: dict            # getRowsResponse
    total: int
    effective: str            # box filter && grid column filters, as Q text
    sort: str                 # "col,-col"
    error: str | None = None
    grid_filter: str = ""     # the grid column filters alone, as Q text


def _grid_row_number(value: Any, name: str, default: int) -> int:
    """startRow / endRow as the browser sent them (any JSON): an int, or a QueryError."""
    if value is None:
        return default
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise QueryError(f"{name} must be a whole number, got {_short(value)}.")


def grid_range(request: Mapping[str, Any], default_size: int = 100) -> tuple[int, int]:
    """The [start, end) rows a getRowsRequest asks for, clamped to at most MAX_PAGE_SIZE rows:
    a hostile endRow=10**9 must not turn one callback into the whole table."""
    start = max(0, _grid_row_number(request.get("startRow"), "startRow", 0))
    end = _grid_row_number(request.get("endRow"), "endRow", start + default_size)
    return start, min(max(end, start), start + MAX_PAGE_SIZE)


def grid_rows(query: Any, df: pd.DataFrame, request: Mapping[str, Any] | None, box_filter: str | None) -> GridResult:
    """Answer an AG Grid infinite-model getRowsRequest from a TableQuery: the filter box's Q and
    the grid's filter/sort models are combined."""
    request = request if isinstance(request, Mapping) else {}
    box_filter = box_filter if isinstance(box_filter, str) else None  # browser-side store: any JSON
    try:
        start, end = grid_range(request)
        box = query.clauses(box_filter or None)
        grid = query.clauses(clauses_from_grid(request.get("filterModel")))
        sort = sort_from_grid(request.get("sortModel"))
        positions = query.select(box + grid, sort)
    except QueryError as e:
        return GridResult({"rowData": [], "rowCount": 0}, 0, box_filter or "", "", str(e))
    rows = take_rows(df, positions[start:end])
    grid_filter = format_filter(grid)
    return GridResult(
        response={"rowData": records(rows), "rowCount": int(len(positions))},
        total=int(len(positions)),
        effective=combine_filters(box_filter, grid_filter),
        sort=sort_text(sort),
        grid_filter=grid_filter,
    )


def clicked_row(spec: TableSpec, state: Mapping | None, clicked: Any) -> dict | None:
    """The row a cellClicked event points at, in the filtered, sorted list the grid shows
    (`state` is the table's store: its effective filter and sort), or None for a stale click."""
    if not isinstance(clicked, Mapping) or clicked.get("rowIndex") is None:
        return None
    state = state or {}
    try:
        positions = spec.query().select(state.get("effective") or None, state.get("sort") or None)
    except QueryError:  # a stale state: ignore the click rather than fail
        return None
    index = clicked["rowIndex"]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(positions):
        return None
    df = spec.df()
    pos = int(positions[index])
    return {str(c): df[c].iat[pos] for c in df.columns}


# ---------------------------------------------------------------- column definitions

#: Float columns whose values are whole numbers by what they hold: sde.audio.quality's audio metrics
#: `sample_rate` (Hz) and `channels`, float only so that an unreadable file can be NaN. Shown as
#: integers ("16,000", "1", not "16,000.00", "1.00"). Known by name, not found by a look at the
#: values: column_defs runs at every layout of a table that can hold 10M rows.
WHOLE_NUMBER_COLUMNS = frozenset({"sample_rate", "channels"})
_INTEGER_FORMAT = {"function": "params.value == null ? '' : d3.format(',')(params.value)"}


def _value_formatter(dtype: Any, percent: bool, whole: bool = False) -> dict | None:
    """The grid's number format of a column (run in the browser): integers with thousands
    separators for an integer dtype or a float column of whole numbers (`whole`: d3's ',' keeps any
    fraction such a column still had, never rounding it away), two decimals for other floats."""
    if pd.api.types.is_bool_dtype(dtype):
        return None
    if pd.api.types.is_integer_dtype(dtype) or (whole and pd.api.types.is_float_dtype(dtype) and not percent):
        return dict(_INTEGER_FORMAT)
    if pd.api.types.is_float_dtype(dtype):
        suffix = " + '%'" if percent else ""
        return {"function": f"params.value == null ? '' : d3.format(',.2f')(params.value){suffix}"}
    return None


def _filter_params(options: Sequence[str], default: str | None = None) -> dict:
    params = {"filterOptions": list(options), "maxNumConditions": 1, "buttons": ["reset"], "debounceMs": 400}
    if default:
        params["defaultOption"] = default
    return params


# A number typed into a numeric column's filter means "at least": "50" under WER asks for the
# utterances at 50% and above, not for those at exactly 50.00% (Equals gave 0 rows).
NUMBER_FILTER_DEFAULT = "greaterThanOrEqual"


def column_defs(spec: TableSpec, visible: Sequence[str], sort: Sequence[tuple[str, bool]] = (),
                with_sort: bool = True) -> list[dict]:
    """AG Grid columnDefs of every column: the visible ones in the spec's order first, then the
    rest (hidden, revealed by the column picker)."""
    df = spec.df()
    sort_index = {col: (i, desc) for i, (col, desc) in enumerate(sort)}
    rank = {c: i for i, c in enumerate(spec.visible)}
    rank.update({str(c): len(rank) + i for i, c in enumerate(df.columns) if str(c) not in rank})
    shown = sorted((c for c in visible if c in rank), key=rank.__getitem__)
    order = shown + sorted((c for c in rank if c not in shown and c in df.columns), key=rank.__getitem__)
    defs = []
    for col in order:
        dtype = df[col].dtype
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        d: dict[str, Any] = {"field": col, "colId": col, "headerName": spec.labels.get(col, col),
                             "headerTooltip": col, "hide": col not in visible}
        if numeric:
            d.update(type="numericColumn", filter="agNumberColumnFilter", width=110 if col != "id" else 90,
                     filterParams=_filter_params(GRID_NUMBER_FILTER_OPTIONS, NUMBER_FILTER_DEFAULT))
            fmt = _value_formatter(dtype, col in spec.percent, col in WHOLE_NUMBER_COLUMNS)
            if fmt:
                d["valueFormatter"] = fmt
        elif pd.api.types.is_bool_dtype(dtype):
            d.update(width=90, filter=False)
        else:
            d.update(filter="agTextColumnFilter", tooltipField=col,
                     filterParams=_filter_params(GRID_TEXT_FILTER_OPTIONS))
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


# ---------------------------------------------------------------- categorical columns, example filters

# Field names that hold a speaker: the filter box's example uses one of them when the data has it.
SPEAKER_FIELDS = ("speaker", "speaker_id", "speaker_name", "spk", "spk_id", "client_id", "voice")


def categorical_columns(df: pd.DataFrame, skip: Collection[str] = ()) -> dict[str, int]:
    """Text and boolean columns whose values repeat (speakers, languages; not ids or transcripts):
    {column: number of distinct values}, in table order. A text column counts when its distinct
    values are at most half its non-empty rows."""
    out: dict[str, int] = {}
    for col in df.columns:
        name = str(col)
        series = df[col]
        numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
        if name in skip or numeric:
            continue
        present = present_count(series)
        if present == 0:
            continue
        distinct = distinct_count(series)
        if pd.api.types.is_bool_dtype(series.dtype) or distinct <= max(1, present // 2):
            out[name] = distinct
    return out


def example_filter(df: pd.DataFrame, lead: str, skip: Collection[str] = ()) -> str:
    """A filter for the box's placeholder that fits this data: `lead` (e.g. `{wer} > 20`) and the
    most common value of a speaker-like column (else of the first text column that repeats):
    `{wer} > 20 && {speaker} = "anna"`. Just `lead` when there is no such column."""
    candidates = [c for c in SPEAKER_FIELDS if c in df.columns and c not in skip]
    if not candidates:
        text = {c: n for c, n in categorical_columns(df, skip).items() if not pd.api.types.is_bool_dtype(df[c].dtype)}
        candidates = [c for c, n in text.items() if n > 1] or list(text)
    for column in candidates:
        value = most_common(df[column])
        if value is not None and str(value).strip():
            return combine_filters(lead, Clause(column, "=", str(value)).to_q())
    return lead


__all__ = [
    "GRID_NUMBER_FILTER_OPTIONS", "GRID_TEXT_FILTER_OPTIONS", "GridResult", "NUMBER_FILTER_DEFAULT", "TableSpec",
    "WHOLE_NUMBER_COLUMNS",
    "categorical_columns", "clauses_from_grid", "clicked_row", "column_defs", "example_filter", "filter_model_of",
    "filter_model_text", "grid_range", "grid_rows", "sort_from_grid", "sort_text",
]
