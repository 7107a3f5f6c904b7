"""The JSON/CSV API: every page has a JSON twin, served by the same Flask server as the UI.

    page                       JSON twin                                     CSV
    /  and /statistics         GET /api/summary
    /samples?filter&sort       GET /api/utterances?filter=Q&sort=S&page=P&page_size=N
                                                                             GET /api/utterances.csv?filter=Q&sort=S
    /utterance/ID              GET /api/utterances/ID   (the row + word alignment per hypothesis)
    /vocabulary?filter&sort    GET /api/vocabulary?filter=Q&sort=S&page=P&page_size=N
                                                                             GET /api/vocabulary.csv?filter=Q&sort=S
    /problems?page=P           GET /api/problems?page=P&page_size=N
    (audio)                    GET /audio/ID.wav, /api/utterances/ID/signal  (sde/web/audio_routes.py)

Q is the filter language of DESIGN.md (`{wer} > 20 && {speaker} = "en-gb"`), S is `col`, `-col`
(descending) or several comma-separated. `page` is 0-based; `page_size` is 1..MAX_PAGE_SIZE.
Errors are JSON: 400 {"error": message} for a bad filter/sort/page, 404 {"error": ...} for an
unknown id or route. Rows are JSON-safe: NaN and missing values are null.

Every request is bounded (sde.query's limits): a `page_size` over MAX_PAGE_SIZE, a `page` that is
not a whole number in 0..MAX_PAGE, a filter over 10,000 characters or 16 clauses and a sort over 8
distinct columns answer 400 with the limit in the message (never clamped silently: a script asking
for 5,000 rows must learn it got fewer). /api/problems pages like the tables:
`{"total", "page", "page_size", "rows"}` plus the counts `total_lines`, `loaded`, `skipped`, and
`problems` (the same rows as `rows`, the field's name before paging).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd
from flask import Flask, Response, request

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

MAX_PAGE_SIZE = 1000
MAX_PAGE = 10**9            # 10^12 rows at the largest page size: any larger page number is a mistake
DEFAULT_PAGE_SIZE = 50
PROBLEMS_PAGE_SIZE = MAX_PAGE_SIZE  # default for /api/problems: small manifests get every problem at once
CSV_CHUNK_ROWS = 20_000
# Cells starting with these are formulas to a spreadsheet (CSV injection): prefixed with a quote.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class ApiError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- pure helpers (shared with the UI)

def records_json(df: pd.DataFrame) -> str:
    """A JSON array of row objects; NaN/NA → null, numpy scalars → JSON numbers."""
    if df.empty:
        return "[]"
    return df.to_json(orient="records", force_ascii=False, double_precision=10)


def records(df: pd.DataFrame) -> list[dict]:
    """JSON-safe row dicts (for callbacks)."""
    return json.loads(records_json(df))


def json_safe(value):
    """One value as JSON-safe Python (NaN/NA → None, numpy → builtin)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if np.isfinite(f) else None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def row_dict(df: pd.DataFrame, position: int) -> dict:
    return {col: json_safe(df[col].iat[position]) for col in df.columns}


def parse_int(name: str, raw: str | None, default: int, lo: int, hi: int | None = None) -> int:
    if raw is None or raw == "":
        return default
    if len(raw) > 40:  # no number this long is valid; echoing it back would mirror megabytes
        raise ApiError(f"{name} must be an integer, got {raw[:40]!r}…")
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"{name} must be an integer, got {raw!r}") from None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ApiError(f"{name} must be {bound}, got {value}")
    return value


def escape_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula (= + - @ tab CR) with a quote."""
    out = None
    for col in df.columns:
        s = df[col]
        if not (pd.api.types.is_string_dtype(s.dtype) or s.dtype == object):
            continue
        text = s.astype("string")
        risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).to_numpy(dtype=bool)
        if risky.any():
            if out is None:
                out = df.copy()
            fixed = text.copy()
            fixed[risky] = "'" + text[risky]
            out[col] = fixed
    return df if out is None else out


def escape_header(df: pd.DataFrame) -> pd.DataFrame:
    """Column names are user text too (manifest field names): quote the risky ones."""
    risky = {c: "'" + c for c in df.columns if isinstance(c, str) and c.startswith(FORMULA_PREFIXES)}
    return df.rename(columns=risky) if risky else df


# RFC 4180 row ends: with "\r\n" as the terminator the csv writer quotes every cell holding a CR or
# LF. With pandas' default "\n", a bare CR stays unquoted and spreadsheets start a new row there,
# so "x\r=HYPERLINK(...)" would smuggle a formula past escape_formulas.
CSV_LINE_END = "\r\n"


def csv_chunks(df: pd.DataFrame, positions: np.ndarray, chunk_rows: int = CSV_CHUNK_ROWS) -> Iterator[str]:
    """The rows at `positions` as CSV text, header first, in chunks (streamed: never the whole view in memory)."""
    yield escape_header(df.iloc[:0]).to_csv(index=False, lineterminator=CSV_LINE_END)
    for start in range(0, len(positions), chunk_rows):
        chunk = df.iloc[positions[start:start + chunk_rows]]
        yield escape_formulas(chunk).to_csv(index=False, header=False, lineterminator=CSV_LINE_END)


def select(query, filter_text: str | None, sort_text: str | None) -> np.ndarray:
    from sde.query import QueryError

    try:
        return np.asarray(query.select(filter_text or None, sort_text or None))
    except QueryError as e:
        raise ApiError(str(e)) from None


def page_of(query, df: pd.DataFrame, filter_text: str | None, sort_text: str | None,
            page: int, page_size: int) -> tuple[int, pd.DataFrame]:
    positions = select(query, filter_text, sort_text)
    start = page * page_size
    return len(positions), df.iloc[positions[start:start + page_size]]


def alignment_of(dataset: "Dataset", position: int) -> dict[str, list[dict]]:
    from sde.metrics import align_words

    utt = dataset.utterances
    ref = utt["text"].iat[position]
    ref = "" if ref is None or ref is pd.NA else str(ref)
    out = {}
    for h in dataset.hypotheses:
        hyp = utt[h.field].iat[position]
        if hyp is None or hyp is pd.NA:  # no such field on this line: not scored, so no diff either
            out[h.field] = [{"op": "missing", "ref": None, "hyp": None,
                             "note": f"this line has no {h.field}: it is left out of that hypothesis's scores"}]
            continue
        hyp = str(hyp)
        # "unaligned" (texts too long for a word diff) carries a "note" saying so
        out[h.field] = [{"op": w.op, "ref": w.ref, "hyp": w.hyp, **({"note": w.note} if w.note else {})}
                        for w in align_words(ref, hyp)]
    return out


def utterance_position(dataset: "Dataset", raw_id) -> int:
    """The row position of utterance `raw_id` (ids are positions among valid lines), or ApiError 404."""
    raw = str(raw_id)
    try:
        uid = int(raw) if len(raw) <= 40 else None
    except ValueError:
        uid = None
    if uid is None:
        shown = repr(raw) if len(raw) <= 40 else repr(raw[:40]) + "…"
        raise ApiError(f"no utterance with id {shown}: ids are integers", 404)
    n = len(dataset.utterances)
    if not 0 <= uid < n:
        raise ApiError(f"no utterance with id {uid}: ids run from 0 to {n - 1}" if n else
                       f"no utterance with id {uid}: the manifest has no valid lines", 404)
    return uid


def problems_json(dataset: "Dataset", page: int = 0, page_size: int = PROBLEMS_PAGE_SIZE) -> dict:
    """One page of the skipped lines (a million bad lines must not become one 200 MB response)."""
    start = page * page_size
    rows = [{"file": p.path, "line": int(p.line), "reason": p.reason, "message": str(p)}
            for p in dataset.problems[start:start + page_size]]
    return {
        "total_lines": int(getattr(dataset, "total_lines", 0) or 0),
        "loaded": int(len(dataset.utterances)),
        "skipped": len(dataset.problems),
        "total": len(dataset.problems),
        "page": page,
        "page_size": page_size,
        "rows": rows,
        "problems": rows,
    }


def page_args(default_size: int = DEFAULT_PAGE_SIZE) -> tuple[int, int]:
    """`page` and `page_size` of the current request, validated (ApiError 400 otherwise)."""
    page = parse_int("page", request.args.get("page"), 0, 0, MAX_PAGE)
    size = parse_int("page_size", request.args.get("page_size"), default_size, 1, MAX_PAGE_SIZE)
    return page, size


# ---------------------------------------------------------------- routes

def _json(payload, status: int = 200) -> Response:
    body = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, allow_nan=False)
    return Response(body, status=status, mimetype="application/json")


def _error(e: ApiError) -> Response:
    return _json({"error": str(e)}, e.status)


def _csv_response(df: pd.DataFrame, positions: np.ndarray, filename: str) -> Response:
    return Response(
        csv_chunks(df, positions),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _stem(dataset: "Dataset") -> str:
    name = str(dataset.name or "manifest").rsplit(".", 1)[0]
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "manifest"


def register_api_routes(server: Flask, dataset: "Dataset") -> None:
    """Add the /api routes of the module docstring to `server` (the Dash app's Flask server)."""

    def filter_of(table: str) -> str | None:
        """`filter=`, plus the Errors page's `error=…&hyp=F` (utterances only) folded into it."""
        if table != "utterances" or not request.args.get("error"):
            return request.args.get("filter")
        from sde.web.components import combine_filters
        from sde.web.pages.errors import error_filter

        try:
            clause = error_filter(dataset, request.args["error"], request.args.get("hyp"))
        except (ValueError, KeyError) as e:
            raise ApiError(str(e).strip('"')) from None
        return combine_filters(clause, request.args.get("filter"))

    def table_routes(name: str, df_of, query_of) -> None:
        def page_view():
            try:
                page, size = page_args()
                total, rows = page_of(query_of(), df_of(), filter_of(name), request.args.get("sort"), page, size)
            except ApiError as e:
                return _error(e)
            return _json(f'{{"total": {total}, "rows": {records_json(rows)}}}')

        def csv_view():
            try:
                positions = select(query_of(), filter_of(name), request.args.get("sort"))
            except ApiError as e:
                return _error(e)
            return _csv_response(df_of(), positions, f"{_stem(dataset)}-{name}.csv")

        server.add_url_rule(f"/api/{name}", f"sde_api_{name}", page_view)
        server.add_url_rule(f"/api/{name}.csv", f"sde_api_{name}_csv", csv_view)

    table_routes("utterances", lambda: dataset.utterances, lambda: dataset.utterance_query)
    table_routes("vocabulary", lambda: dataset.vocabulary, lambda: dataset.vocabulary_query)

    def summary_view():
        summary = dataset.summary()
        steps = request.args.get("normalize")
        if steps is not None:
            # ?normalize=lower,punct,numbers: the normalised numbers for that choice (cached per choice).
            from sde.dataset import normalized_summary
            from sde.text import parse_normalize

            try:
                chosen = list(parse_normalize(steps))
            except ValueError as e:
                return _error(ApiError(str(e)))
            normalized = normalized_summary(dataset, chosen)
            for field, h in summary["hypotheses"].items():
                h.pop("normalized", None)
                if field in normalized:
                    h["normalized"] = normalized[field]
            summary["normalize"] = chosen
        return _json(summary)

    def utterance_view(uid: str):
        try:
            pos = utterance_position(dataset, uid)
        except ApiError as e:
            return _error(e)
        row = row_dict(dataset.utterances, pos)
        row["alignment"] = alignment_of(dataset, pos)
        return _json(row)

    def problems_view():
        try:
            page, size = page_args(PROBLEMS_PAGE_SIZE)
        except ApiError as e:
            return _error(e)
        return _json(problems_json(dataset, page, size))

    server.add_url_rule("/api/summary", "sde_api_summary", summary_view)
    server.add_url_rule("/api/utterances/<uid>", "sde_api_utterance", utterance_view)
    server.add_url_rule("/api/problems", "sde_api_problems", problems_view)

    from sde.audio_quality import cached_audio_quality_summary

    def audio_quality_view():
        return _json(cached_audio_quality_summary(dataset))

    server.add_url_rule("/api/audio-quality", "sde_api_audio_quality", audio_quality_view)

    def api_not_found(path: str):
        return _json({"error": f"no API route /api/{path}; see /api/summary, /api/utterances, "
                      "/api/vocabulary, /api/problems, /api/audio-quality, /api/errors, /api/breakdown, /api/compare"}, 404)

    # Registered last, and less specific than every route above: only unknown /api paths land here.
    server.add_url_rule("/api/<path:path>", "sde_api_not_found", api_not_found)
