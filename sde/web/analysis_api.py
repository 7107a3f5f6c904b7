"""Error-analysis routes: JSON twins (and CSV exports) of the error-analysis page.

    GET /api/errors?hyp=F&filter=Q&limit=N          {"substitutions": [{"ref","hyp","count"}],
                                                     "deletions": [{"word","count"}], "insertions": [...]}
    GET /api/errors.csv?kind=K&hyp=F&filter=Q[&limit=N]   K = substitutions (default) | deletions | insertions;
                                                     every row unless limit is given
    GET /api/breakdown?by=COLUMN&hyp=F&filter=Q[&sort=S]  {"rows": [{"value","utterances","words","wer","cer"}]}
    GET /api/breakdown.csv?…                         the same rows as CSV
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
from sde.web.api import CSV_LINE_END, ApiError, escape_formulas, escape_header, parse_int, records, select

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset
    from sde.manifest import HypothesisField

ERROR_KINDS = ("substitutions", "deletions", "insertions")
DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000
DEFAULT_RESAMPLES = 1000
MAX_RESAMPLES = 10_000
_COMPARE_CACHE_SIZE = 32


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


def breakdown_frame(dataset: Dataset, by: str | None, hyp: str | None, filter_text: str | None,
                    sort: str | None = None) -> pd.DataFrame:
    h = hypothesis_of(dataset, hyp)
    if not by:
        raise ApiError("by is required: the column to break down by; choose one of: "
                       + ", ".join(analysis.breakdown_columns(dataset.utterances)))
    try:
        return analysis.breakdown(dataset.utterances, by, h, utt_ids=selected_ids(dataset, filter_text),
                                  sort=sort or "value")
    except (ValueError, KeyError) as e:
        raise ApiError(e.args[0] if e.args else str(e)) from None


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

    def breakdown_view() -> Response:
        df = breakdown_frame(dataset, args.get("by"), args.get("hyp"), args.get("filter"), args.get("sort"))
        return _json({"rows": _rows(df)})

    def breakdown_csv_view() -> Response:
        h = hypothesis_of(dataset, args.get("hyp"))
        by = args.get("by")
        df = breakdown_frame(dataset, by, h.field, args.get("filter"), args.get("sort"))
        return _csv(df, f"{_stem(dataset)}-{_safe(h.name)}-by-{_safe(by or '')}.csv")

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
