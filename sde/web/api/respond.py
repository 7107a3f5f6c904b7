"""What every route shares: the dataset it serves, the request's arguments checked (an ApiError,
answered 400 by the one handler, for anything out of bounds), and the JSON and CSV responses.

CSV is streamed in chunks (never the whole view in memory) and safe to open in a spreadsheet:
cells that would run as a formula get a leading quote, and rows end in CRLF (RFC 4180).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import unquote_to_bytes

import numpy as np
import pandas as pd
from flask import Response, current_app, request
from werkzeug.exceptions import HTTPException

from sde.compressed_columns import take_rows
from sde.query import MAX_PAGE_SIZE, QueryError
from sde.web.present import ApiError

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

#: ``server.extensions[DATASET_KEY]`` is the dataset the routes serve.
DATASET_KEY = "sde_dataset"
MAX_PAGE = 10**9            # 10^12 rows at the largest page size: any larger page number is a mistake
DEFAULT_PAGE_SIZE = 50
CSV_CHUNK_ROWS = 20_000
# Cells starting with these are formulas to a spreadsheet (CSV injection): prefixed with a quote.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# RFC 4180 row ends: with "\r\n" as the terminator the csv writer quotes every cell holding a CR or
# LF. With pandas' default "\n", a bare CR stays unquoted and spreadsheets start a new row there,
# so "x\r=HYPERLINK(...)" would smuggle a formula past escape_formulas.
CSV_LINE_END = "\r\n"


def served_dataset() -> "Dataset":
    """The dataset of the server handling this request."""
    return current_app.extensions[DATASET_KEY]


# ---------------------------------------------------------------- request arguments

#: Parameters a request may repeat (/api/utterances.jsonl?drop=…&drop=…); every other one is single-valued.
MULTI_VALUED_ARGS = frozenset({"drop"})
# Every sde parameter name is a word ("page_size", "_" for a cache buster). A name with braces,
# quotes, spaces or operators is what is left of a filter whose "&&" or "&" was not URL-encoded:
# "filter={wer}>10&&{cer}>5" reaches the server as filter="{wer}>10" plus a parameter "{cer}>5".
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


def check_query_string() -> None:
    """ApiError 400 for a query string sde would otherwise misread without a word: a parameter
    given twice (which one should win? `filter=A&filter=B` meant A and B to someone, A or B to
    someone else), and the pieces of a filter whose `&&` was not URL-encoded (the server would
    silently run only the part before the first `&`), and text that is not UTF-8 (werkzeug
    reads its bytes as U+FFFD: a filter `contains "caf%E9"`, é in Latin-1, matched no row)."""
    check_utf8_query(request.query_string)
    for name in request.args:
        if not _PARAMETER_NAME.match(name):
            shown = name if len(name) <= 80 else name[:80] + "…"
            raise ApiError(f"the query string has a parameter named {shown!r}, which is no parameter of sde: it looks "
                           "like the rest of a filter or value holding '&' that was not URL-encoded, so only the part "
                           "before the '&' reached sde. Encode the value (&& as %26%26; curl -G --data-urlencode "
                           "'filter=…', Python urllib.parse.urlencode or requests' params=)",
                           fields={"parameter": name})
        values = request.args.getlist(name)
        if len(values) > 1 and name not in MULTI_VALUED_ARGS:
            shown = ", ".join(repr(v if len(v) <= 40 else v[:40] + "…") for v in values[:3])
            more = f" and {len(values) - 3} more" if len(values) > 3 else ""
            combine = (" To select rows that match several filters, join them in one: filter=(A) && (B), or "
                       "(A) || (B)." if name == "filter" else "")
            raise ApiError(f"parameter {name!r} is given {len(values)} times ({shown}{more}); give it once.{combine}",
                           fields={"parameter": name})


def check_utf8_query(raw: bytes) -> None:
    """ApiError 400 naming the first parameter of the query string `raw` whose name or value,
    percent-decoded, is not UTF-8, and the byte that is not."""
    for pair in raw.split(b"&"):
        name, _, value = pair.partition(b"=")
        for which, part in (("name", name), ("value", value)):
            text = unquote_to_bytes(part.replace(b"+", b" "))
            try:
                text.decode("utf-8")
            except UnicodeDecodeError as e:
                shown = unquote_to_bytes(name).decode("utf-8", "replace")
                shown = shown if len(shown) <= 80 else shown[:80] + "…"
                raise ApiError(f"parameter {shown!r} is not UTF-8 text (byte 0x{text[e.start]:02X} at position "
                               f"{e.start} of its {which}), so sde cannot read it: "
                               "percent-encode it as UTF-8 (é is %C3%A9, not %E9): curl -G --data-urlencode "
                               "'filter=…', Python urllib.parse.urlencode or requests' params=",
                               fields={"parameter": shown}) from None


def arg(name: str) -> str | None:
    return request.args.get(name)


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


def int_arg(name: str, default: int, lo: int, hi: int | None = None) -> int:
    return parse_int(name, arg(name), default, lo, hi)


def flag_arg(name: str, default: bool) -> bool:
    raw = arg(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ApiError(f"{name} must be 1 or 0 (true or false), got {raw!r}")


def page_args(default_size: int = DEFAULT_PAGE_SIZE) -> tuple[int, int]:
    """`page` and `page_size` of the current request, validated (ApiError 400 otherwise)."""
    return int_arg("page", 0, 0, MAX_PAGE), int_arg("page_size", default_size, 1, MAX_PAGE_SIZE)


# ---------------------------------------------------------------- responses

def json_response(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    """JSON (already-encoded text is sent as it is); NaN is never written."""
    body = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, allow_nan=False)
    return Response(body, status=status, mimetype="application/json", headers=headers)


def error_response(e: ApiError) -> Response:
    """The one answer to an ApiError: `{"error": message, …fields}` with its status."""
    return json_response(e.body(), e.status, e.headers)


def query_error_response(e: QueryError) -> Response:
    """A query sde refused or DuckDB could not run (over --memory-limit, over the time limit) that
    no route turned into an ApiError itself: answered 400 with its message, as /api/utterances
    answers it, not as a bug."""
    return error_response(ApiError(str(e)))


def unexpected_response(e: Exception) -> Response | HTTPException:
    """An error no route expected (a bug): logged with its traceback as Flask logs one, and answered
    as JSON with status 500 like every other API error, not with Flask's HTML page (a script reading
    /api/... could not parse it, and a download button saved it as the file)."""
    if isinstance(e, HTTPException):
        return e
    current_app.log_exception((type(e), e, e.__traceback__))
    said = str(e)
    said = said if len(said) <= 300 else said[:300] + "…"
    return json_response({"error": f"internal error ({type(e).__name__}: {said}); the server's log has the "
                                   "details"}, 500)


def safe_name(name: str) -> str:
    """User text (a manifest or hypothesis name) as part of a download's file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def download_name(*parts: str) -> str:
    """`<manifest stem>-<parts…>.csv`: the manifest's name without its extension first."""
    stem = safe_name(str(getattr(served_dataset(), "name", "") or "manifest").rsplit(".", 1)[0]) or "manifest"
    return "-".join([stem, *(safe_name(p) for p in parts)]) + ".csv"


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


def csv_chunks(df: pd.DataFrame, positions: np.ndarray, chunk_rows: int = CSV_CHUNK_ROWS) -> Iterator[str]:
    """The rows at `positions` as CSV text, header first, in chunks (streamed: never the whole view in memory)."""
    yield escape_header(df.iloc[:0]).to_csv(index=False, lineterminator=CSV_LINE_END)
    for start in range(0, len(positions), chunk_rows):
        chunk = take_rows(df, positions[start:start + chunk_rows])
        yield escape_formulas(chunk).to_csv(index=False, header=False, lineterminator=CSV_LINE_END)


def csv_response(df: pd.DataFrame, filename: str, positions: np.ndarray | None = None) -> Response:
    """The rows of `df` at `positions` (all of them by default) as a CSV download, streamed."""
    positions = np.arange(len(df)) if positions is None else positions
    return Response(csv_chunks(df, positions), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})
