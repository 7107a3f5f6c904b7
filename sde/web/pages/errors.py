"""Errors: what one hypothesis gets wrong (JSON twins: /api/errors and /api/breakdown, with CSV).

    /errors?hyp=F&filter=Q&by=COLUMN&min_utts=K&show=best

Top substitution pairs (ref → hyp), deleted words and inserted words, each a table + a small bar
chart; a click on a row or bar opens `/samples?error=sub:REF:HYP&hyp=F[&filter=Q]` (the utterances
where that error happens). WER/CER broken down by any categorical column (or duration bucket),
whatever its number of values: a bar chart of all groups when they are few, else of the worst (or
best) CHART_GROUPS, with each group's bootstrap interval as whiskers; below it a table that pages
through every group on the server (sortable; a click opens the group's utterances); groups with
fewer than K utterances can be left out. The filter box (DESIGN filter language) restricts
everything to a subset of utterances. The URL carries the state; the controls rewrite it without a
reload.

Pure builders (`error_sections`, `top_error_rows`, `breakdown_content`, …) do the work; callbacks only
unpack inputs, call them and return.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
from dash import Input, Output, State, ctx, dcc, html, no_update

from sde import analysis
from sde.web import analysis_figures as af
from sde.web import ids
from sde.web.analysis_api import grouped_rates
from sde.web.api import ApiError
from sde.web.components import check_filter, fmt_int, fmt_pct, page_header
from sde.web.figures import GRAPH_CONFIG
from sde.web.pages import Page

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset
    from sde.manifest import HypothesisField

TITLE = "Errors"
PATH = "/errors"
TABLE_LIMIT = 200            # rows per top-error table (the chart shows the first af.MAX_BARS)
CHART_GROUPS = 30            # breakdown bars at most: the worst (or best) groups beyond that
GRID_BLOCK = 100             # breakdown table rows fetched per request
SHOW_CHOICES = ("worst", "best")

# Component ids (this page's own; prefixed so they never clash with other pages)
HYP = "errors-hyp"
FILTER = "errors-filter"
FILTER_FEEDBACK = "errors-filter-feedback"
APPLY = "errors-apply"
BY = "errors-by"
STATE = "errors-state"             # dcc.Store: the params now shown {"hyp", "filter", "by"}
WARNING = "errors-warning"
SUMMARY = "errors-summary"
SUMMARY_BOX = "errors-summary-box"
LINKS = "errors-links"
TABLES = "errors-tables"           # the row of the three top-error cards
TABLES_BOX = "errors-tables-box"   # its container
BREAKDOWN = "errors-breakdown"     # container of the breakdown card
MIN_UTTS = "errors-min-utts"       # hide groups with fewer utterances
SHOW = "errors-show"               # the chart's worst or best groups
KINDS = ("substitutions", "deletions", "insertions")
OPS = {"substitutions": "sub", "deletions": "del", "insertions": "ins"}


def grid_id(kind: str) -> str:
    return f"errors-{OPS[kind]}-grid"


def fig_id(kind: str) -> str:
    return f"errors-{OPS[kind]}-fig"


BREAKDOWN_GRID = "errors-breakdown-grid"
BREAKDOWN_CONTENT = "errors-breakdown-content"
BREAKDOWN_LINKS = "errors-breakdown-links"
BREAKDOWN_FIG = "errors-breakdown-fig"
BREAKDOWN_COUNT = "errors-breakdown-count"
BREAKDOWN_NOTE = "errors-breakdown-note"
BREAKDOWN_CSV = "errors-breakdown-csv"
BREAKDOWN_PURGE = "errors-breakdown-purge"

GRID_THEME = {"function": "themeQuartz.withParams({fontFamily: 'inherit', fontSize: 13, headerFontWeight: 700, "
                          "accentColor: '#18bc9c', headerBackgroundColor: '#f3f6f9', rowHoverColor: '#eaf6f3', "
                          "spacing: 5, wrapperBorderRadius: 6})"}
FILTER_PLACEHOLDER = 'e.g. {duration} > 5 && {speaker} = "anna"'

# Columns that are never worth a breakdown (free text, paths, per-hypothesis counts).
_NOT_GROUPS = {"id", "line", "text", "audio_filepath", "audio_filename", "audio_path", "offset"}


# ---------------------------------------------------------------- the error= parameter

def error_param(op: str, ref: str | None = None, hyp: str | None = None) -> str:
    """The samples page's `error=` value: `sub:REF:HYP`, `del:WORD` or `ins:WORD`.

    Each word is percent-encoded (so a ':' or '%' inside a word is unambiguous); plain words stay
    readable. `parse_error_param` is the inverse."""
    def q(word: str | None) -> str:
        return quote(word or "", safe="")

    if op == "sub":
        return f"sub:{q(ref)}:{q(hyp)}"
    if op == "del":
        return f"del:{q(ref)}"
    if op == "ins":
        return f"ins:{q(hyp)}"
    raise ValueError(f"unknown error kind {op!r}; choose sub, del or ins")


def parse_error_param(value: str) -> tuple[str, str | None, str | None]:
    """`sub:REF:HYP` → ("sub", REF, HYP); `del:W` → ("del", W, None); `ins:W` → ("ins", None, W).

    The arguments of `sde.analysis.utterances_with_error(errors, op, ref, hyp)`. ValueError with a
    message for anything else."""
    parts = (value or "").split(":")
    op = parts[0]
    if op == "sub" and len(parts) == 3:
        return "sub", unquote(parts[1]), unquote(parts[2])
    if op == "del" and len(parts) == 2:
        return "del", unquote(parts[1]), None
    if op == "ins" and len(parts) == 2:
        return "ins", None, unquote(parts[1])
    raise ValueError(f'invalid error {value!r}: use "sub:REF:HYP", "del:WORD" or "ins:WORD" '
                     "(words percent-encoded)")


def error_filter(dataset: "Dataset", error: str, hyp_field: str | None = None) -> str:
    """The `error=` parameter as a clause of the filter language (`{error} = "sub REF HYP"`), so the
    samples grid, its CSV, the JSON API and the inspector's previous/next all honour it alike.
    ValueError (bad value) or KeyError (unknown hypothesis) with a message for the user."""
    from sde.query import Clause, format_filter

    op, ref, hyp = parse_error_param(error)
    h = dataset.hypothesis(hyp_field) if hyp_field else dataset.hypotheses[0]
    words = {"sub": f"sub {ref} {hyp}", "del": f"del {ref}", "ins": f"ins {hyp}"}[op]
    return format_filter([Clause(h.column("error"), "=", words)])


def samples_href(params: Mapping[str, str | None]) -> str:
    """/samples with the given non-empty query parameters (colons kept readable)."""
    q = {k: v for k, v in params.items() if v}
    return "/samples" + (f"?{urlencode(q, safe=':')}" if q else "")


def error_href(hyp_field: str, op: str, ref: str | None = None, hyp: str | None = None,
               filter_text: str | None = None) -> str:
    return samples_href({"error": error_param(op, ref, hyp), "hyp": hyp_field, "filter": filter_text or None})


# ---------------------------------------------------------------- pure data helpers

def web_cache(dataset: "Dataset") -> dict:
    """Per-dataset memo for the analysis pages (dropped when the tables are replaced)."""
    cache = dataset.__dict__.setdefault("_sde_analysis_cache", {})
    if cache.get("_key") != id(dataset.utterances):
        cache.clear()
        cache["_key"] = id(dataset.utterances)
    return cache


def resolve_hypothesis(dataset: "Dataset", name: str | None, default_index: int = 0
                       ) -> tuple["HypothesisField | None", str | None]:
    """(hypothesis, warning): an unknown name falls back to the default with a message."""
    if not dataset.hypotheses:
        return None, None
    default = dataset.hypotheses[min(default_index, len(dataset.hypotheses) - 1)]
    if not name:
        return default, None
    try:
        return dataset.hypothesis(name), None
    except KeyError:
        choices = ", ".join(h.field for h in dataset.hypotheses)
        return default, (f'There is no hypothesis "{name}" in this manifest (choose one of: {choices}); '
                         f"showing {default.field}.")


def selection(dataset: "Dataset", filter_text: str | None) -> tuple[np.ndarray | None, str | None]:
    """(utterance ids or None for all, error message of an invalid filter)."""
    text = (filter_text or "").strip()
    if not text:
        return None, None
    error = check_filter(dataset.utterance_query, text)
    if error:
        return None, error
    return np.asarray(dataset.utterance_query.select(text), dtype=np.int64), None


def group_counts(dataset: "Dataset") -> dict[str, int]:
    """Columns worth a breakdown (duration_bucket and every categorical field of the manifest, any
    number of values) → their number of distinct values."""
    cache = web_cache(dataset)
    if "group_counts" not in cache:
        df = dataset.utterances
        skip = set(_NOT_GROUPS)
        for h in dataset.hypotheses:
            skip.add(h.field)
            skip |= {h.column(m) for m in ("wer", "cer", "wmr", "sub", "del", "ins", "hits", "char_edits",
                                           "ref_chars", "accuracy")}
        keep = [c for c in df.columns if c not in skip and not str(c).endswith("_norm")]
        cache["group_counts"] = analysis.group_counts(df[keep]) if keep else {}
    return cache["group_counts"]


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


def affected_utterances(errors: pd.DataFrame, kind: str, rows: pd.DataFrame,
                        utt_ids: np.ndarray | None = None) -> np.ndarray:
    """For each row of a top-errors table, the number of distinct utterances with that error
    (within `utt_ids` when given). One vectorised pass over the errors of that kind."""
    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    op = OPS[kind]
    try:
        codes = analysis._error_codes(errors)  # cached integer codes of the errors table
    except AttributeError:  # pragma: no cover - analysis without its code cache: slower, same answer
        return _affected_slow(errors, kind, rows, utt_ids)
    m = codes.op == {"sub": 0, "del": 1, "ins": 2}[op]
    if utt_ids is not None:
        mask = np.zeros(codes.max_utt, dtype=bool)
        ids_ = np.asarray(utt_ids, dtype=np.int64)
        mask[ids_[(ids_ >= 0) & (ids_ < codes.max_utt)]] = True
        m &= mask[codes.utt] if codes.utt.size else m
    nwords = max(len(codes.words), 1)
    if op == "sub":
        ref = codes.index.get_indexer(rows["ref"].astype(object).tolist())
        hyp = codes.index.get_indexer(rows["hyp"].astype(object).tolist())
        wanted = ref.astype(np.int64) * nwords + hyp
        got = codes.ref[m].astype(np.int64) * nwords + codes.hyp[m]
    else:
        wanted = codes.index.get_indexer(rows["word"].astype(object).tolist()).astype(np.int64)
        got = (codes.ref if op == "del" else codes.hyp)[m].astype(np.int64)
    where = pd.Index(wanted).get_indexer(got) if pd.Index(wanted).is_unique else \
        _first_index(wanted, got)
    hit = where >= 0
    key = codes.utt[m][hit] * n + where[hit]
    key.sort()  # sort-based distinct: numpy's hash-based unique is slow on millions of int64
    distinct = key[np.r_[True, key[1:] != key[:-1]]] if key.size else key
    return np.bincount(distinct % n, minlength=n).astype(np.int64)


def _first_index(wanted: np.ndarray, got: np.ndarray) -> np.ndarray:
    idx = pd.Index(wanted)
    return idx.drop_duplicates().get_indexer(got)


def _affected_slow(errors, kind, rows, utt_ids):  # pragma: no cover
    out = []
    keep = None if utt_ids is None else set(np.asarray(utt_ids).tolist())
    for r in rows.itertuples(index=False):
        if kind == "substitutions":
            found = analysis.utterances_with_error(errors, "sub", r.ref, r.hyp)
        elif kind == "deletions":
            found = analysis.utterances_with_error(errors, "del", r.word, None)
        else:
            found = analysis.utterances_with_error(errors, "ins", None, r.word)
        out.append(len(found) if keep is None else sum(1 for u in found.tolist() if u in keep))
    return np.asarray(out, dtype=np.int64)


def top_error_rows(dataset: "Dataset", h: "HypothesisField", utt_ids: np.ndarray | None,
                   filter_text: str | None, limit: int = TABLE_LIMIT) -> dict[str, list[dict]]:
    """The three top-error tables as grid rows, each with `utterances` (affected) and `href`."""
    errors = dataset.errors[h.field]
    frames = analysis.top_errors(errors, utt_ids=utt_ids, limit=limit)
    out: dict[str, list[dict]] = {}
    for kind in KINDS:
        df = frames[kind]
        affected = affected_utterances(errors, kind, df, utt_ids)
        rows = []
        if kind == "substitutions":
            for (ref, hyp, count), n in zip(df[["ref", "hyp", "count"]].itertuples(index=False), affected):
                rows.append({"ref": str(ref), "hyp": str(hyp), "count": int(count), "utterances": int(n),
                             "label": f"{ref} → {hyp}",
                             "href": error_href(h.field, "sub", str(ref), str(hyp), filter_text)})
        else:
            op = OPS[kind]
            for (word, count), n in zip(df[["word", "count"]].itertuples(index=False), affected):
                word = str(word)
                rows.append({"word": word, "count": int(count), "utterances": int(n), "label": word,
                             "href": error_href(h.field, op, word if op == "del" else None,
                                                word if op == "ins" else None, filter_text)})
        out[kind] = rows
    return out


def group_filter(by: str, value: Any, kind: str | None) -> str | None:
    """The filter clause selecting one breakdown group (None when the language cannot say it)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if by == "duration_bucket":
        try:
            i = analysis.DURATION_BUCKET_LABELS.index(str(value))
        except ValueError:
            return None
        lo, hi = analysis.DURATION_BUCKET_EDGES[i], analysis.DURATION_BUCKET_EDGES[i + 1]
        clause = f"{{duration}} >= {lo:g}"
        return clause + (f" && {{duration}} < {hi:g}" if math.isfinite(hi) else "")
    if kind == "number":
        return f"{{{by}}} = {value}"
    if kind == "bool":
        return f"{{{by}}} = {'true' if value else 'false'}"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'{{{by}}} = "{text}"'


def min_utts_of(value: Any) -> int:
    """The min-utterances control's value as a threshold ≥ 1 (empty or nonsense: 1)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 1
    return int(min(max(number, 1), 10**12)) if math.isfinite(number) else 1


def show_of(value: Any) -> str:
    return value if value in SHOW_CHOICES else SHOW_CHOICES[0]


def grid_sort(request: Mapping[str, Any] | None) -> str:
    """The breakdown grid's sortModel as an analysis sort ("-wer"); worst first by default."""
    for item in (request or {}).get("sortModel") or []:
        col, order = item.get("colId"), item.get("sort")
        if col in analysis.BREAKDOWN_SORTS and order in ("asc", "desc"):
            return ("-" if order == "desc" else "") + col
    return "-wer"


def breakdown_rows(dataset: "Dataset", h: "HypothesisField", by: str, view: pd.DataFrame,
                   grouped: analysis.GroupedRates, filter_text: str | None) -> list[dict]:
    """Grid rows of some groups (a page of `grouped.view(...)`): the numbers, the 95% bootstrap
    interval and an href to the group's utterances on the samples page."""
    from sde.query import QueryError

    try:
        kind = dataset.utterance_query.kind(by) if by != "duration_bucket" else None
    except QueryError:
        kind = None
    lo, hi = grouped.intervals(view.index.to_numpy())
    rows = []
    for group, r, a, b in zip(view.index.tolist(), view.itertuples(index=False), lo.tolist(), hi.tolist()):
        clause = group_filter(by, r.value, kind)
        full = " && ".join(p for p in ((filter_text or "").strip(), clause) if p) if clause else None
        rows.append({
            "value": ("(missing)" if r.value is None else
                      r.value if isinstance(r.value, (int, float)) else str(r.value)),
            "utterances": int(r.utterances), "words": int(r.words),
            "wer": _round(r.wer), "cer": _round(r.cer), "ci_lo": _round(a), "ci_hi": _round(b),
            "href": samples_href({"filter": full}) if full else f"#group-{group}",
        })
    return rows


def breakdown_grid_response(dataset: "Dataset", state: Mapping[str, Any] | None,
                            request: Mapping[str, Any] | None) -> tuple[dict, Any]:
    """(getRowsResponse, count line) for one block of the breakdown table: the groups of the
    page's state (hypothesis, filter, column, threshold), sorted as the grid asks."""
    empty = {"rowData": [], "rowCount": 0}
    state = state or {}
    h, _ = resolve_hypothesis(dataset, state.get("hyp"))
    by = state.get("by")
    if h is None or not by or by not in group_columns(dataset):
        return empty, ""
    try:
        grouped = grouped_rates(dataset, h, by, state.get("filter"))
    except ApiError as e:
        return empty, html.Span(str(e), className="text-danger")
    threshold = min_utts_of(state.get("min_utts"))
    view = grouped.view(grid_sort(request), 0, threshold)
    start = max(int((request or {}).get("startRow") or 0), 0)
    end = min(max(int((request or {}).get("endRow") or start + GRID_BLOCK), start), start + 10 * GRID_BLOCK)
    rows = breakdown_rows(dataset, h, by, view.iloc[start:end], grouped, state.get("filter"))
    count = [html.B(fmt_int(len(view))), f" {by} groups"]
    if threshold > 1:
        count.append(f" with at least {fmt_int(threshold)} utterances (of {fmt_int(len(grouped.groups))})")
    count.append(" · click a group to see its utterances")
    return {"rowData": rows, "rowCount": int(len(view))}, html.Span(count)


def chart_frame(grouped: analysis.GroupedRates, min_utts: int = 1, show: str = "worst"
                ) -> tuple[pd.DataFrame, int]:
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


def _round(x: float) -> float | None:
    return round(float(x), 4) if x is not None and math.isfinite(float(x)) else None


def selection_totals(dataset: "Dataset", h: "HypothesisField", utt_ids: np.ndarray | None) -> dict[str, float]:
    """Utterances, words, S/D/I and corpus WER of the selection."""
    df = dataset.utterances
    utt_ids = analysis.scored_rows(df, h, utt_ids)  # lines without this hypothesis are not scored
    pos = slice(None) if utt_ids is None else utt_ids

    def total(col: str) -> int:
        return int(df[col].to_numpy()[pos].sum()) if col in df.columns else 0

    n = len(df) if utt_ids is None else len(utt_ids)
    s, d, i, words = total(h.column("sub")), total(h.column("del")), total(h.column("ins")), total("num_words")
    wer = analysis.corpus_wer(df, h, utt_ids) if n else float("nan")
    return {"utterances": n, "words": words, "sub": s, "del": d, "ins": i, "wer": wer}


# ---------------------------------------------------------------- components

def filter_box(input_id: str, apply_id: str, feedback_id: str, value: str, error: str | None) -> html.Div:
    """The filter box of the analysis pages (same look and language as the samples page)."""
    return html.Div([
        dbc.InputGroup([
            dbc.InputGroupText("Filter", className="fw-bold"),
            dbc.Input(id=input_id, value=value, placeholder=FILTER_PLACEHOLDER, debounce=True, type="text",
                      autoComplete="off", invalid=bool(error), className="font-monospace filter-input"),
            dbc.Button("Apply", id=apply_id, color="primary", n_clicks=0),
            dbc.FormFeedback(error or "", type="invalid", id=feedback_id),
        ], className="has-validation"),
        html.Div(["Restrict to some utterances: clauses ", html.Code("{column} OP value"), " joined by ",
                  html.Code("&&"), "; OP is one of ", html.Code("= != < <= > >= contains has"), ". Press Enter to apply."],
                 className="form-text"),
    ])


def hyp_options(dataset: "Dataset") -> list[dict]:
    return [{"label": h.field if not h.label else f"{h.label} ({h.field})", "value": h.field}
            for h in dataset.hypotheses]


def labelled(label: str, control: Any, width: str | None = None) -> html.Div:
    style = {"minWidth": width} if width else {}
    return html.Div([html.Label(label, className="form-label small fw-bold text-muted mb-1"), control], style=style)


def small_grid(grid_id_: str, rows: list[dict], column_defs: list[dict], height: int = 320,
               clickable: bool = True) -> dag.AgGrid:
    """A client-side grid for a few hundred rows (sortable; a click opens the row's href)."""
    return dag.AgGrid(
        id=grid_id_,
        rowData=rows,
        columnDefs=column_defs,
        defaultColDef={"sortable": True, "resizable": True, "suppressHeaderMenuButton": True,
                       "filter": False},
        getRowId="params.data.href",
        columnSize="responsiveSizeToFit",
        dashGridOptions={"theme": GRID_THEME, "animateRows": False, "enableCellTextSelection": True,
                         "rowClass": "grid-row-link" if clickable else "", "tooltipShowDelay": 400,
                         "suppressCellFocus": True,
                         "localeText": {"noRowsToShow": "none"}},
        style={"height": f"{height}px", "width": "100%"},
        className="sde-grid",
    )


def graph_height(fig: Any) -> str:
    """A dcc.Graph's CSS height: its figure's (else a responsive graph takes the default 450 px)."""
    return f"{int(fig.layout.height or 450)}px"


_INT_FMT = {"function": "params.value == null ? '' : d3.format(',')(params.value)"}
_PCT_FMT = {"function": "params.value == null ? '–' : d3.format('.2f')(params.value) + '%'"}


def _word_col(field: str, header: str) -> dict:
    return {"field": field, "headerName": header, "tooltipField": field, "minWidth": 90, "flex": 2,
            "cellClass": "font-monospace"}


def _count_cols() -> list[dict]:
    return [
        {"field": "count", "headerName": "count", "type": "numericColumn", "valueFormatter": _INT_FMT,
         "minWidth": 80, "flex": 1, "sort": "desc", "headerTooltip": "how many times the error happens"},
        {"field": "utterances", "headerName": "utts", "type": "numericColumn", "valueFormatter": _INT_FMT,
         "minWidth": 70, "flex": 1, "headerTooltip": "utterances where it happens (click a row to see them)"},
    ]


_KIND_TITLES = {"substitutions": "Substitutions", "deletions": "Deletions", "insertions": "Insertions"}
_KIND_HELP = {"substitutions": "reference word → recognised word",
              "deletions": "reference words the hypothesis dropped",
              "insertions": "words the hypothesis added"}


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
        total = totals.get(OPS[kind], 0)
        q = {"kind": kind, "hyp": h.field, "filter": (filter_text or None)}
        csv = "/api/errors.csv?" + urlencode({k: v for k, v in q.items() if v})
        header = html.Div([
            html.Div([html.H6(_KIND_TITLES[kind], className="mb-0 fw-bold"),
                      html.Span(f"{fmt_int(total)} in all · {_KIND_HELP[kind]}", className="text-muted small")]),
            html.A("CSV", href=csv, className="btn btn-sm btn-outline-success", download=f"{kind}.csv",
                   id=f"errors-{OPS[kind]}-csv"),
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


def breakdown_content(dataset: "Dataset", h: "HypothesisField", by: str | None, utt_ids: np.ndarray | None,
                      filter_text: str | None, min_utts: int = 1, show: str = "worst") -> tuple[list, Any]:
    """(content, links) of the breakdown card: the bar chart (WER with intervals, CER per group)
    and the JSON / CSV links. The table below pages through the groups on its own (see
    `breakdown_grid_response`)."""
    columns = group_columns(dataset)
    if not by or by not in columns:
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
                          id="errors-breakdown-empty")], breakdown_links(h, by, filter_text, min_utts)
    fig = af.breakdown_figure(frame, by, h.name, max_groups=CHART_GROUPS)
    content = [html.Div(note, id=BREAKDOWN_NOTE, className="text-muted small text-end"),
               dcc.Graph(id=BREAKDOWN_FIG, figure=fig, config=GRAPH_CONFIG, style={"height": graph_height(fig)})]
    return content, breakdown_links(h, by, filter_text, min_utts)


def breakdown_links(h: "HypothesisField", by: str, filter_text: str | None, min_utts: int) -> list:
    q = {k: v for k, v in (("by", by), ("hyp", h.field), ("filter", (filter_text or "").strip()),
                           ("min_utterances", str(min_utts) if min_utts > 1 else "")) if v}
    return [html.A("JSON", href="/api/breakdown?" + urlencode({**q, "sort": "-wer"}), className="link-secondary"),
            " · ",
            html.A("Download CSV (all groups)", href="/api/breakdown.csv?" + urlencode({**q, "sort": "-wer"}),
                   className="btn btn-sm btn-outline-success", download="breakdown.csv", id=BREAKDOWN_CSV)]


_CI_TEXT = {"function": "params.data && params.data.ci_lo != null ? d3.format('.2f')(params.data.ci_lo) + '–' + "
                        "d3.format('.2f')(params.data.ci_hi) + '%' : ''"}


def breakdown_column_defs(by: str | None) -> list[dict]:
    return [
        {"field": "value", "headerName": by or "group", "tooltipField": "value", "flex": 2, "minWidth": 120,
         "sortable": True},
        {"field": "utterances", "type": "numericColumn", "valueFormatter": _INT_FMT, "flex": 1},
        {"field": "words", "type": "numericColumn", "valueFormatter": _INT_FMT, "flex": 1},
        {"field": "wer", "headerName": "WER", "type": "numericColumn", "valueFormatter": _PCT_FMT, "flex": 1,
         "sort": "desc"},
        {"field": "ci", "headerName": "95% interval", "valueGetter": _CI_TEXT, "sortable": False, "flex": 1.4,
         "minWidth": 120, "headerTooltip": "bootstrap interval of the group's WER: its utterances resampled"},
        {"field": "cer", "headerName": "CER", "type": "numericColumn", "valueFormatter": _PCT_FMT, "flex": 1},
    ]


def breakdown_grid(by: str | None) -> dag.AgGrid:
    """The table of every group: AG Grid's infinite row model, so the server sorts and pages."""
    return dag.AgGrid(
        id=BREAKDOWN_GRID,
        rowModelType="infinite",
        columnDefs=breakdown_column_defs(by),
        defaultColDef={"sortable": True, "resizable": True, "suppressHeaderMenuButton": True, "filter": False},
        getRowId="params.data.href",
        columnSize="responsiveSizeToFit",
        dashGridOptions={"theme": GRID_THEME, "animateRows": False, "enableCellTextSelection": True,
                         "rowClass": "grid-row-link", "tooltipShowDelay": 400, "suppressCellFocus": True,
                         "cacheBlockSize": GRID_BLOCK, "maxBlocksInCache": 20, "infiniteInitialRowCount": 1,
                         "maxConcurrentDatasourceRequests": 1, "localeText": {"noRowsToShow": "no groups"}},
        style={"height": "360px", "width": "100%"},
        className="sde-grid",
    )


def breakdown_card(dataset: "Dataset", by: str | None, content: list, links: Any, min_utts: int = 1,
                   show: str = "worst") -> dbc.Card:
    """The breakdown card: its header (column picker, threshold, worst/best) and the table stay;
    the chart and the links change."""
    picker = dcc.Dropdown(id=BY, options=group_options(dataset), value=by, clearable=False,
                          style={"minWidth": "16rem"})
    threshold = dbc.InputGroup([
        dbc.InputGroupText("min. utterances", className="small"),
        dbc.Input(id=MIN_UTTS, type="number", min=1, step=1, value=min_utts, debounce=True,
                  style={"maxWidth": "6rem"}),
    ], size="sm", style={"width": "auto"})
    toggle = dbc.RadioItems(id=SHOW, options=[{"label": f"{c} {CHART_GROUPS}", "value": c} for c in SHOW_CHOICES],
                            value=show_of(show), inline=True, className="small")
    head = html.Div([
        html.H6("WER and CER by group", className="mb-0 fw-bold me-auto"),
        html.Span("break down by", className="text-muted small"),
        picker, threshold, toggle,
        html.Span(links, className="small", id=BREAKDOWN_LINKS),
    ], className="d-flex align-items-center gap-2 flex-wrap mb-2")
    table = html.Div([breakdown_grid(by), html.Div(id=BREAKDOWN_COUNT, className="text-muted small mt-1")],
                     className="mt-2")
    return dbc.Card(dbc.CardBody([head, html.Div(content, id=BREAKDOWN_CONTENT), table,
                                  dcc.Store(id=BREAKDOWN_PURGE)], className="p-2"),
                    id=BREAKDOWN, className="mb-3")


def summary_line(dataset: "Dataset", h: "HypothesisField", totals: Mapping[str, float], filter_text: str | None):
    n_all = len(dataset.utterances)
    selected = (f"{fmt_int(totals['utterances'])} of {fmt_int(n_all)} utterances match the filter"
                if filter_text else f"all {fmt_int(n_all)} utterances")
    q = {k: v for k, v in (("hyp", h.field), ("filter", filter_text)) if v}
    return html.Div([
        html.Span([html.B(h.name), f" over {selected} · WER {fmt_pct(totals['wer'])} · ",
                   f"{fmt_int(totals['sub'])} substitutions, {fmt_int(totals['del'])} deletions, "
                   f"{fmt_int(totals['ins'])} insertions in {fmt_int(totals['words'])} reference words · "],
                  id=SUMMARY),
        html.A("JSON", href="/api/errors?" + urlencode(q), className="link-secondary", id=LINKS),
    ], className="text-muted small mb-2")


def error_sections(dataset: "Dataset", h: "HypothesisField", filter_text: str,
                   utt_ids: np.ndarray | None) -> tuple[Any, Any]:
    """(summary line, top-error cards) for one hypothesis and a valid filter's selection."""
    totals = selection_totals(dataset, h, utt_ids)
    summary = summary_line(dataset, h, totals, filter_text)
    if totals["utterances"] == 0:
        return summary, dbc.Alert("No utterance matches the filter.", color="info", id="errors-empty")
    rows = top_error_rows(dataset, h, utt_ids, filter_text or None)
    return summary, error_tables(rows, h, filter_text, totals)


def page_params(dataset: "Dataset", hyp: str | None, filter_text: str | None, by: str | None,
                min_utts: int = 1, show: str = "worst") -> dict[str, str]:
    """The query-string state of the page (defaults left out, so the plain URL stays plain)."""
    out = {}
    if hyp and dataset.hypotheses and hyp != dataset.hypotheses[0].field:
        out["hyp"] = hyp
    if filter_text:
        out["filter"] = filter_text
    if by and by != default_by(dataset):
        out["by"] = by
    if min_utts > 1:
        out["min_utts"] = str(min_utts)
    if show_of(show) != SHOW_CHOICES[0]:
        out["show"] = show
    return out


# ---------------------------------------------------------------- layout and callbacks

def layout(dataset: "Dataset", path: str, params: Mapping[str, str]):
    if not dataset.hypotheses:
        return html.Div([page_header(TITLE), dbc.Alert(
            ["This manifest has no hypotheses (", html.Code("pred_text"), " …), so there are no errors to analyse. "
             "Add predictions with --predictions FILE or --pred-field F."], color="info", id="errors-no-hyp")])
    h, warning = resolve_hypothesis(dataset, params.get("hyp"))
    filter_text = (params.get("filter") or "").strip()
    _ids, filter_error = selection(dataset, filter_text)
    applied = "" if filter_error else filter_text
    by = params.get("by") or default_by(dataset)
    by_warning = None
    if by and by not in group_columns(dataset):
        by_warning = f'Cannot break down by "{by}"; choose one of: {", ".join(group_columns(dataset))}.'
        by = default_by(dataset)
    min_utts, show = min_utts_of(params.get("min_utts")), show_of(params.get("show"))
    warnings = [w for w in (warning, by_warning) if w]
    if filter_error:
        warnings.append("The filter in the link is invalid (see below), so all utterances are shown.")
    controls = dbc.Row([
        dbc.Col(labelled("Hypothesis", dcc.Dropdown(id=HYP, options=hyp_options(dataset), value=h.field,
                                                    clearable=False)), xs=12, md=3),
        dbc.Col(labelled("Utterances", filter_box(FILTER, APPLY, FILTER_FEEDBACK, filter_text, filter_error)),
                xs=12, md=9),
    ], className="g-2 mb-2")
    return html.Div([
        dcc.Store(id=STATE, data={"hyp": h.field, "filter": applied, "by": by or "", "min_utts": min_utts,
                                  "show": show}),
        page_header(TITLE, "What the recognizer gets wrong: click an error to see the utterances where it happens"),
        html.Div([dbc.Alert(w, color="warning", className="py-2 mb-2") for w in warnings], id=WARNING),
        controls,
        *body(dataset, h, applied, by, min_utts, show),
    ], className="errors-page")


def body(dataset: "Dataset", h: "HypothesisField", filter_text: str, by: str | None, min_utts: int = 1,
         show: str = "worst") -> list:
    """Everything below the controls (containers keep their ids; callbacks refill them)."""
    utt_ids, _ = selection(dataset, filter_text)
    summary, tables = error_sections(dataset, h, filter_text, utt_ids)
    content, links = breakdown_content(dataset, h, by, utt_ids, filter_text, min_utts, show)
    return [html.Div(summary, id=SUMMARY_BOX), html.Div(tables, id=TABLES_BOX),
            breakdown_card(dataset, by, content, links, min_utts, show)]


def register_callbacks(app, dataset: "Dataset") -> None:
    from sde.web.app import rendered_key

    @app.callback(
        Output(SUMMARY_BOX, "children"),
        Output(TABLES_BOX, "children"),
        Output(BREAKDOWN_CONTENT, "children"),
        Output(BREAKDOWN_LINKS, "children"),
        Output(BREAKDOWN_GRID, "columnDefs"),
        Output(STATE, "data"),
        Output(FILTER, "invalid"),
        Output(FILTER_FEEDBACK, "children"),
        Output(WARNING, "children"),
        Output(ids.URL, "search", allow_duplicate=True),
        Output(ids.RENDERED, "data", allow_duplicate=True),
        Input(HYP, "value"),
        Input(FILTER, "value"),
        Input(APPLY, "n_clicks"),
        Input(BY, "value"),
        Input(MIN_UTTS, "value"),
        Input(SHOW, "value"),
        State(FILTER, "value"),
        State(STATE, "data"),
        prevent_initial_call=True,
    )
    def update(hyp, _typed, _clicks, by, min_utts, show, filter_value, state):
        state = state or {}
        skip = (no_update,) * 5
        filter_text = (filter_value or "").strip()
        utt_ids, error = selection(dataset, filter_text)
        if error:
            return (*skip, no_update, True, error, no_update, no_update, no_update)
        h, _ = resolve_hypothesis(dataset, hyp)
        if h is None:
            return (no_update,) * 11
        by = by or state.get("by") or default_by(dataset)
        min_utts, show = min_utts_of(min_utts), show_of(show)
        new = {"hyp": h.field, "filter": filter_text, "by": by or "", "min_utts": min_utts, "show": show}
        if new == state:
            return (*skip, no_update, False, "", no_update, no_update, no_update)
        params = page_params(dataset, h.field, filter_text, by, min_utts, show)
        search = f"?{urlencode(params)}" if params else ""
        only_breakdown = all(new[k] == state.get(k) for k in ("hyp", "filter"))
        summary, tables = (no_update, no_update) if only_breakdown else \
            error_sections(dataset, h, filter_text, utt_ids)
        content, links = breakdown_content(dataset, h, by, utt_ids, filter_text, min_utts, show)
        defs = breakdown_column_defs(by) if by != state.get("by") else no_update
        return (summary, tables, content, links, defs, new, False, "", [], search,
                rendered_key(PATH, params, TITLE))

    @app.callback(
        Output(BREAKDOWN_GRID, "getRowsResponse"),
        Output(BREAKDOWN_COUNT, "children"),
        Input(BREAKDOWN_GRID, "getRowsRequest"),
        State(STATE, "data"),
        prevent_initial_call=True,
    )
    def breakdown_block(request, state):
        return breakdown_grid_response(dataset, state, request)

    # A new breakdown (hypothesis, filter, column or threshold): the grid drops its cached blocks
    # and asks again (the infinite model would otherwise keep the old groups).
    app.clientside_callback(
        """function(state, gridId) {
            if (window.dash_ag_grid && window.dash_ag_grid.getApiAsync) {
                window.dash_ag_grid.getApiAsync(gridId).then(function (api) {
                    api.purgeInfiniteCache();
                    api.ensureIndexVisible(0, 'top');
                });
            }
            return Date.now();
        }""",
        Output(BREAKDOWN_PURGE, "data"),
        Input(STATE, "data"),
        State(BREAKDOWN_GRID, "id"),
        prevent_initial_call=True,
    )

    # A click on a table row or on a bar opens the utterances with that error.
    for kind in KINDS:
        register_click(app, grid_id(kind), fig_id(kind))
    register_click(app, BREAKDOWN_GRID, None)


def href_from_click(cell: Mapping | None = None, point: Mapping | None = None) -> str | None:
    """The href a grid cell click (its row id) or a bar click (customdata[0]) points to."""
    if cell:
        href = cell.get("rowId")
        return href if isinstance(href, str) and href.startswith("/") else None
    if point:
        pts = point.get("points") or []
        if pts:
            custom = pts[0].get("customdata")
            href = custom[0] if isinstance(custom, (list, tuple)) and custom else custom
            return href if isinstance(href, str) and href.startswith("/") else None
    return None


def register_click(app, grid: str, graph: str | None) -> None:
    inputs = [Input(grid, "cellClicked")] + ([Input(graph, "clickData")] if graph else [])

    @app.callback(Output(ids.URL, "href", allow_duplicate=True), *inputs, prevent_initial_call=True)
    def open_clicked(cell, point=None):
        if ctx.triggered_id == graph:
            href = href_from_click(point=point)
        else:
            href = href_from_click(cell=cell)
        return href or no_update


def _available(dataset: "Dataset") -> bool:
    return bool(dataset.hypotheses)


PAGE = Page(path=PATH, name=TITLE, layout=layout, register_callbacks=register_callbacks, available=_available,
            api="/api/errors")
