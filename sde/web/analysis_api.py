"""Error-analysis routes: JSON twins (and CSV exports) of the error-analysis page.

    GET /api/errors?hyp=F&filter=Q&limit=N          {"substitutions": [{"ref","hyp","count"}],
                                                     "deletions": [{"word","count"}], "insertions": [...]}
    GET /api/errors.csv?kind=K&hyp=F&filter=Q[&limit=N]   K = substitutions (default) | deletions | insertions;
                                                     every row unless limit is given
    GET /api/breakdown?by=COLUMN&hyp=F&filter=Q[&sort=S&page=P&page_size=N&min_words=K&min_utterances=U
                       &ci=1&n_resamples=B&seed=S]
        {"by", "hyp", "total", "groups", "page", "page_size", "sort", "min_words", "min_utterances",
         "n_resamples", "seed", "rows": [{"value","utterances","words","wer","cer","ci":[lo,hi]}]}
        any number of groups, sorted (value | utterances | words | wer | cer, "-" for descending;
        default value order) and paged on the server; groups with fewer than K reference words or
        U utterances are left out (`total` counts the rest, `groups` all of them); `ci` is each
        group's seeded 95% bootstrap interval of its WER (ci=0 leaves it out)
    GET /api/breakdown.csv?…                         ALL the groups (sorted, thresholds applied), no
                                                     intervals, streamed
    GET /api/compare?a=F&b=G&filter=Q[&n_resamples=N&seed=S]
        {"a": {"field","wer","ci":[lo,hi]}, "b": {…}, "diff": {"wer","ci":[lo,hi],"p"},
         "utterances", "n_resamples", "seed"}
    GET /api/compare.csv?…                           rows system, field, wer, ci_lo, ci_hi, p

`hyp`, `a` and `b` take a hypothesis field (`pred_text_conformer`) or its label (`conformer`);
`hyp` and `a` default to the first hypothesis, `b` to the second. Q is the filter language of
DESIGN.md and restricts the utterances. Rates are percentages (see sde.analysis for the methods:
corpus rates are ratios of sums; `diff` = WER(b) − WER(a), a paired bootstrap over utterances
with a seeded percentile interval and two-sided p-value). Mistakes (bad filter, unknown
hypothesis or column, bad number) answer 400 {"error": message naming the valid choices}.
"""

from __future__ import annotations

import io
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from flask import Flask, Response, request

from sde import analysis
from sde.web.api import (
    CSV_LINE_END,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    ApiError,
    csv_chunks,
    escape_formulas,
    escape_header,
    parse_int,
    records,
    select,
)

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset
    from sde.manifest import HypothesisField

ERROR_KINDS = ("substitutions", "deletions", "insertions")
DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000
DEFAULT_RESAMPLES = 1000
MAX_RESAMPLES = 10_000
_COMPARE_CACHE_SIZE = 32
# Per-group intervals are computed for every row of a page: fewer resamples at most than a
# comparison, so a page of 1,000 groups stays around a second.
MAX_GROUP_RESAMPLES = 2000
_GROUPS_CACHE_SIZE = 8       # breakdowns kept per dataset (one int32 per utterance each)
MAX_PAGE = 10**9


# ---------------------------------------------------------------- pure helpers (shared with the UI)

def _num(x: Any) -> Any:
    """JSON-safe number: NaN/inf → None, floats rounded to 6 decimals (like /api/summary)."""
    if x is None:
        return None
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return round(f, 6) if math.isfinite(f) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def hypothesis_of(dataset: Dataset, name: str | None, default_index: int = 0,
                  param: str = "hyp") -> HypothesisField:
    """The hypothesis named by a field or label; the `default_index`-th one when `name` is empty."""
    if not dataset.hypotheses:
        raise ApiError("the manifest has no hypothesis fields (pred_text…), so there are no errors to analyse; "
                       "add predictions with --predictions FILE or --pred-field F")
    if not name:
        if default_index >= len(dataset.hypotheses):
            raise ApiError(f"{param} is required: the manifest has only one hypothesis "
                           f"({dataset.hypotheses[0].field}), and a comparison needs two")
        return dataset.hypotheses[default_index]
    try:
        return dataset.hypothesis(name)
    except KeyError as e:
        message = e.args[0] if e.args else f"unknown hypothesis {name!r}"
        raise ApiError(f"{param}: {message}") from None


def selected_ids(dataset: Dataset, filter_text: str | None) -> np.ndarray | None:
    """Utterance ids selected by a filter (None: all); ApiError for a bad filter."""
    if not filter_text or not filter_text.strip():
        return None
    return select(dataset.utterance_query, filter_text, None)


def errors_payload(dataset: Dataset, hyp: str | None, filter_text: str | None,
                   limit: int | None) -> dict[str, pd.DataFrame]:
    h = hypothesis_of(dataset, hyp)
    return analysis.top_errors(dataset.errors[h.field], utt_ids=selected_ids(dataset, filter_text), limit=limit)




class RecentResults:
    """The last few results of a costly computation, by key, thread-safe (e.g. comparisons: a
    bootstrap over a million utterances takes ~0.5 s, and pages re-ask)."""

    def __init__(self, size: int = _COMPARE_CACHE_SIZE) -> None:
        self._items: OrderedDict[tuple, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, key: tuple, compute: Callable[[], dict]) -> dict:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


def grouped_rates(dataset: Dataset, h: HypothesisField, by: str | None,
                  filter_text: str | None) -> analysis.GroupedRates:
    """`analysis.group_rates` of a hypothesis, column and filter, kept for the next pages (a
    breakdown over a million utterances costs ~0.1 s, a page of it ~1 ms); ApiError for a bad
    column or filter. Shared by the JSON routes and the Errors page."""
    if not by:
        raise ApiError("by is required: the column to break down by; choose one of: "
                       + ", ".join(analysis.breakdown_columns(dataset.utterances)))
    store = dataset.__dict__.setdefault("_sde_breakdown_cache", {})
    if store.get("key") != id(dataset.utterances):  # new tables (a hypothesis added): start again
        store.clear()
        store.update(key=id(dataset.utterances), results=RecentResults(_GROUPS_CACHE_SIZE))
    text = (filter_text or "").strip()

    def compute() -> analysis.GroupedRates:
        try:
            return analysis.group_rates(dataset.utterances, by, h, utt_ids=selected_ids(dataset, text))
        except (ValueError, KeyError) as e:
            raise ApiError(e.args[0] if e.args else str(e)) from None

    return store["results"].get((h.field, by, text), compute)


def parse_breakdown_sort(raw: str | None) -> str:
    try:
        key, descending = analysis._parse_breakdown_sort(raw)
    except ValueError as e:
        raise ApiError(str(e)) from None
    return ("-" if descending else "") + key


def breakdown_json_rows(grouped: analysis.GroupedRates, view: pd.DataFrame, ci: bool, n_resamples: int = DEFAULT_RESAMPLES,
                   seed: int = 0) -> list[dict]:
    """JSON rows of a (paged) view of the groups, each with its bootstrap interval when `ci`."""
    rows = _rows(view)
    if ci:
        lo, hi = grouped.intervals(view.index.to_numpy(), n_resamples, seed)
        for row, a, b in zip(rows, lo.tolist(), hi.tolist()):
            row["ci"] = [_num(a), _num(b)]
    return rows


def breakdown_frame(dataset: Dataset, by: str | None, hyp: str | None, filter_text: str | None,
                    sort: str | None = None, min_words: int = 0, min_utterances: int = 0) -> pd.DataFrame:
    """Every group (sorted, thresholds applied): DataFrame[value, utterances, words, wer, cer]."""
    grouped = grouped_rates(dataset, hypothesis_of(dataset, hyp), by, filter_text)
    return grouped.view(parse_breakdown_sort(sort), min_words, min_utterances).reset_index(drop=True)


def compare_payload(dataset: Dataset, a: str | None, b: str | None, filter_text: str | None,
                    n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                    cache: RecentResults | None = None) -> dict:
    ha = hypothesis_of(dataset, a, 0, "a")
    hb = hypothesis_of(dataset, b, 1, "b")
    ids = selected_ids(dataset, filter_text)

    def compute() -> dict:
        r = analysis.compare(dataset.utterances, ha, hb, n_resamples=n_resamples, seed=seed, utt_ids=ids)
        out = {
            "a": {"field": ha.field, "wer": _num(r["a"]["wer"]), "ci": [_num(v) for v in r["a"]["ci"]]},
            "b": {"field": hb.field, "wer": _num(r["b"]["wer"]), "ci": [_num(v) for v in r["b"]["ci"]]},
            "diff": {"wer": _num(r["diff"]["wer"]), "ci": [_num(v) for v in r["diff"]["ci"]],
                     "p": _num(r["diff"]["p"])},
            "utterances": int(len(dataset.utterances) if ids is None else len(ids)),
            "n_resamples": n_resamples,
            "seed": seed,
        }
        return out

    if cache is None:
        return compute()
    key = (ha.field, hb.field, (filter_text or "").strip(), n_resamples, seed, id(dataset.utterances))
    return cache.get(key, compute)


def compare_frame(payload: dict) -> pd.DataFrame:
    rows = []
    for system in ("a", "b", "diff"):
        entry = payload[system]
        rows.append({
            "system": system,
            "field": entry.get("field", ""),
            "wer": entry["wer"],
            "ci_lo": entry["ci"][0],
            "ci_hi": entry["ci"][1],
            "p": entry.get("p"),
        })
    return pd.DataFrame(rows, columns=["system", "field", "wer", "ci_lo", "ci_hi", "p"])


# ---------------------------------------------------------------- routes

def parse_flag(name: str, raw: str | None, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ApiError(f"{name} must be 1 or 0 (true or false), got {raw!r}")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, allow_nan=False), status=status,
                    mimetype="application/json")


def _rows(df: pd.DataFrame) -> list[dict]:
    rows = records(df)
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float):
                row[k] = _num(v)
    return rows


def _csv(df: pd.DataFrame, filename: str) -> Response:
    buf = io.StringIO()
    escape_header(escape_formulas(df)).to_csv(buf, index=False, lineterminator=CSV_LINE_END)
    return Response(buf.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store"})


def _stem(dataset: Dataset) -> str:
    name = str(getattr(dataset, "name", "") or "manifest").rsplit(".", 1)[0]
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "manifest"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def register_analysis_routes(server: Flask, dataset: Dataset) -> None:
    """Add the error-analysis routes of the module docstring to `server`."""
    cache = RecentResults()

    class _Args:  # request.args, looked up per request (request is context-local)
        def get(self, name: str) -> str | None:
            return request.args.get(name)

    args = _Args()

    def guarded(view: Callable[[], Response]) -> Callable[[], Response]:
        def wrapper() -> Response:
            try:
                return view()
            except ApiError as e:
                return _json({"error": str(e)}, e.status)
        wrapper.__name__ = view.__name__
        return wrapper

    def limit_arg(default: int | None) -> int | None:
        raw = args.get("limit")
        if not raw and default is None:
            return None  # CSV export: every row
        return parse_int("limit", raw, DEFAULT_LIMIT if default is None else default, 1, MAX_LIMIT)

    def errors_view() -> Response:
        frames = errors_payload(dataset, args.get("hyp"), args.get("filter"), limit_arg(DEFAULT_LIMIT))
        return _json({k: _rows(frames[k]) for k in ERROR_KINDS})

    def errors_csv_view() -> Response:
        kind = args.get("kind") or "substitutions"
        if kind not in ERROR_KINDS:
            raise ApiError(f"unknown kind {kind!r}; choose one of: {', '.join(ERROR_KINDS)}")
        h = hypothesis_of(dataset, args.get("hyp"))
        frames = errors_payload(dataset, h.field, args.get("filter"), limit_arg(None))
        return _csv(frames[kind], f"{_stem(dataset)}-{_safe(h.name)}-{kind}.csv")

    def thresholds() -> tuple[int, int]:
        return (parse_int("min_words", args.get("min_words"), 0, 0),
                parse_int("min_utterances", args.get("min_utterances"), 0, 0))

    def breakdown_view() -> Response:
        h = hypothesis_of(dataset, args.get("hyp"))
        by = args.get("by")
        sort = parse_breakdown_sort(args.get("sort"))
        page = parse_int("page", args.get("page"), 0, 0, MAX_PAGE)
        size = parse_int("page_size", args.get("page_size"), DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        min_words, min_utterances = thresholds()
        ci = parse_flag("ci", args.get("ci"), True)
        n_resamples = parse_int("n_resamples", args.get("n_resamples"), DEFAULT_RESAMPLES, 1, MAX_GROUP_RESAMPLES)
        seed = parse_int("seed", args.get("seed"), 0, 0, 2**32 - 1)
        grouped = grouped_rates(dataset, h, by, args.get("filter"))
        view = grouped.view(sort, min_words, min_utterances)
        shown = view.iloc[page * size:(page + 1) * size]
        return _json({"by": by, "hyp": h.field, "total": len(view), "groups": len(grouped.groups), "page": page,
                      "page_size": size, "sort": sort, "min_words": min_words, "min_utterances": min_utterances,
                      "n_resamples": n_resamples if ci else None, "seed": seed if ci else None,
                      "rows": breakdown_json_rows(grouped, shown, ci, n_resamples, seed)})

    def breakdown_csv_view() -> Response:
        h = hypothesis_of(dataset, args.get("hyp"))
        by = args.get("by")
        df = breakdown_frame(dataset, by, h.field, args.get("filter"), args.get("sort"), *thresholds())
        return Response(csv_chunks(df, np.arange(len(df))), mimetype="text/csv",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{_stem(dataset)}-{_safe(h.name)}-by-{_safe(by or "")}.csv"',
                                 "Cache-Control": "no-store"})

    def compare_args() -> dict:
        return {
            "n_resamples": parse_int("n_resamples", args.get("n_resamples"), DEFAULT_RESAMPLES, 1, MAX_RESAMPLES),
            "seed": parse_int("seed", args.get("seed"), 0, 0, 2**32 - 1),
        }

    def compare_view() -> Response:
        return _json(compare_payload(dataset, args.get("a"), args.get("b"), args.get("filter"),
                                     cache=cache, **compare_args()))

    def compare_csv_view() -> Response:
        payload = compare_payload(dataset, args.get("a"), args.get("b"), args.get("filter"),
                                  cache=cache, **compare_args())
        return _csv(compare_frame(payload), f"{_stem(dataset)}-compare.csv")

    for rule, endpoint, view in (
        ("/api/errors", "sde_api_errors", errors_view),
        ("/api/errors.csv", "sde_api_errors_csv", errors_csv_view),
        ("/api/breakdown", "sde_api_breakdown", breakdown_view),
        ("/api/breakdown.csv", "sde_api_breakdown_csv", breakdown_csv_view),
        ("/api/compare", "sde_api_compare", compare_view),
        ("/api/compare.csv", "sde_api_compare_csv", compare_csv_view),
    ):
        server.add_url_rule(rule, endpoint, guarded(view))
