"""What every route shares: the dataset it serves, the request's arguments checked (an ApiError,
answered 400 by the one handler, for anything out of bounds), and the JSON and CSV responses.

CSV is streamed in chunks (never the whole view in memory) and safe to open in a spreadsheet:
cells that would run as a formula get a leading quote, and rows end in CRLF (RFC 4180).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import quote, unquote_to_bytes

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from flask import Response, current_app, request
from werkzeug.exceptions import HTTPException

from sde.compressed_columns import rows_per_take, take_rows
from sde.export import safe_file_name as safe_name
from sde.query import MAX_PAGE_SIZE, QueryError
from sde.web.present import MAX_PAGE, MULTI_VALUED_ARGS, ApiError, parse_int

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

#: ``server.extensions[DATASET_KEY]`` is the dataset the routes serve.
DATASET_KEY = "sde_dataset"
DEFAULT_PAGE_SIZE = 50
CSV_CHUNK_ROWS = 20_000
# Rows taken at once from a view scattered over a column read by batch (sde.compressed_columns.
# rows_per_take); still sent CSV_CHUNK_ROWS at a time. ~40 MB of rows at 10M lines: a sorted view's
# CSV then decompresses each column 100 times, not 500.
CSV_SCATTERED_ROWS = 100_000
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


def filter_error(e: QueryError) -> ApiError:
    """The 400 of a filter or sort sde refused: `{"error": message, "position": P}`, P the 0-based
    character of the mistake in the filter (the message counts from 1: "at character P+1"), left
    out when not known; as /api/utterances.jsonl, /api/reviews and the rules preview answer it."""
    position = getattr(e, "position", None)
    return ApiError(str(e), fields={"position": position} if position is not None else None)


def select_rows(query: Any, filter_text: str | None, sort_text: str | None) -> np.ndarray:
    """Positions of a TableQuery's rows that `filter_text` selects, sorted; filter_error's 400 for
    a filter or sort sde refuses."""
    try:
        return np.asarray(query.select(filter_text or None, sort_text or None))
    except QueryError as e:
        raise filter_error(e) from None


def query_error_response(e: QueryError) -> Response:
    """A query sde refused or DuckDB could not run (over --memory-limit, over the time limit) that
    no route turned into an ApiError itself: answered 400 with its message (and position), as
    /api/utterances answers it, not as a bug."""
    return error_response(filter_error(e))


def unexpected_response(e: Exception) -> Response | HTTPException:
    """An error no route expected (a bug): logged with its traceback as Flask logs one, and answered
    as JSON with status 500 like every other API error, not with Flask's HTML page (a script reading
    /api/... could not parse it, and a download button saved it as the file)."""
    if isinstance(e, HTTPException):
        return e
    current_app.log_exception((type(e), e, e.__traceback__))
    return json_response({"error": internal_error_text(e)}, 500)


def internal_error_text(e: BaseException, where: str = "") -> str:
    """What a 500 says of an error no route expected (``where``: the work it ended, " in tts"): its
    type and the start of its message; the traceback is in the server's log."""
    said = str(e)
    said = said if len(said) <= 300 else said[:300] + "…"
    return f"internal error{where} ({type(e).__name__}: {said}); the server's log has the details"


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


def csv_chunks(df: pd.DataFrame, positions: np.ndarray, chunk_rows: int = CSV_CHUNK_ROWS,
               scattered_rows: int = CSV_SCATTERED_ROWS) -> Iterator[str]:
    """The rows at `positions` as CSV text, header first, in chunks of `chunk_rows` (streamed:
    never the whole view in memory; rows scattered over compressed columns are taken
    `scattered_rows` at a time)."""
    yield escape_header(df.iloc[:0]).to_csv(index=False, lineterminator=CSV_LINE_END)
    start = 0
    while start < len(positions):
        ahead = positions[start:start + max(chunk_rows, scattered_rows)]
        taken = take_rows(df, ahead[:rows_per_take(df, ahead, chunk_rows, scattered_rows)])
        for first in range(0, len(taken), chunk_rows):
            yield csv_rows(taken.iloc[first:first + chunk_rows])
        start += len(taken)


def csv_rows(chunk: pd.DataFrame) -> str:
    """The rows of `chunk` as CSV text, no header: exactly what pandas' ``to_csv`` writes of
    ``escape_formulas(chunk)`` (the text of every number, NaN and None as empty cells, RFC 4180
    quoting, CSV_LINE_END), but built column by column in Arrow: several times faster than pandas'
    writer, which formats and quotes cell by cell in Python (benchmarks/bench_csv.py). A chunk
    with a column of any other kind (dates, categories, objects that are not all text, …) is
    left to pandas."""
    columns = [_csv_cells(values) for _, values in chunk.items()]
    if not columns or any(c is None for c in columns):
        return escape_formulas(chunk).to_csv(index=False, header=False, lineterminator=CSV_LINE_END)
    if len(columns) == 1:  # Python's csv writer quotes a row's only cell when it is empty: `""`, not a blank line
        only = pc.fill_null(columns[0], "")
        columns = [pc.if_else(pc.equal(only, ""), _text('""'), only)]
    rows = pc.binary_join_element_wise(*columns, _text(","), null_handling="replace", null_replacement="")
    lines = pc.binary_join_element_wise(rows, _text(CSV_LINE_END), _text(""))
    if len(lines) == 0:
        return ""
    _, offsets, data = lines.buffers()
    ends = np.frombuffer(offsets, dtype=np.int64)[lines.offset:lines.offset + len(lines) + 1]
    return str(memoryview(data)[ends[0]:ends[-1]], "utf-8")


# A cell is quoted when it holds one of these (the csv module's QUOTE_MINIMAL: delimiter, quote,
# line end): ASCII bytes, never part of a longer character in UTF-8.
_QUOTED_BYTES = (',"' + CSV_LINE_END).encode()


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())


def _csv_cells(values: pd.Series) -> pa.Array | None:
    """The cells of one column as CSV text (nulls for empty cells), as pandas writes them; None for
    a column of a kind not handled here."""
    dtype = values.dtype
    kind = dtype.kind if isinstance(dtype, np.dtype) else None      # None: an extension dtype
    try:
        if kind in ("i", "u"):
            return pc.cast(pa.array(values.to_numpy()), pa.large_string())
        if kind == "f" and dtype.itemsize == 8:
            return _float_cells(values.to_numpy())
        if kind == "b":
            return pc.if_else(pa.array(values.to_numpy()), _text("True"), _text("False"))
        if isinstance(dtype, pd.StringDtype):
            cells = pa.array(values, from_pandas=True)
        elif kind == "O" and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
            cells = pa.array(values.to_numpy(), type=pa.large_string(), from_pandas=True)
        else:
            return None
    except (pa.ArrowException, UnicodeError, TypeError, ValueError):
        return None  # text Arrow cannot hold (a lone surrogate), …: pandas writes the chunk
    if isinstance(cells, pa.ChunkedArray):
        cells = cells.combine_chunks()
    return _quoted(_formulas_escaped(cells.cast(pa.large_string())))


def _formulas_escaped(cells: pa.Array) -> pa.Array:
    """escape_formulas on Arrow text: cells starting with one of FORMULA_PREFIXES get a leading quote."""
    risky = None
    for prefix in FORMULA_PREFIXES:
        starts = pc.starts_with(cells, prefix)
        risky = starts if risky is None else pc.or_(risky, starts)
    if not pc.any(risky).as_py():
        return cells
    return pc.if_else(risky, pc.binary_join_element_wise(_text("'"), cells, _text("")), cells)


def _quoted(cells: pa.Array) -> pa.Array:
    """Cells holding a comma, a quote or a line break in quotes, their quotes doubled (RFC 4180)."""
    needs = _cells_holding(cells, _QUOTED_BYTES)
    if needs is None:
        return cells
    mask = pa.array(needs)
    inside = pc.replace_substring(cells.filter(mask), '"', '""')
    return pc.replace_with_mask(cells, mask, pc.binary_join_element_wise(_text('"'), inside, _text('"'), _text("")))


def _cells_holding(cells: pa.Array, chars: bytes) -> np.ndarray | None:
    """Which of the text `cells` (large_string) hold one of the ASCII bytes `chars`; None if none
    does. One pass of ``bytes.find`` (memchr) over the chunk's text for each byte, the common case,
    none found; ~10x faster than Arrow's match_substring, which looks cell by cell."""
    _, offsets, data = cells.buffers()
    if data is None or len(cells) == 0:
        return None
    ends = np.frombuffer(offsets, dtype=np.int64)[cells.offset:cells.offset + len(cells) + 1]
    raw = memoryview(data)[ends[0]:ends[-1]].tobytes()
    found = [c for c in chars if raw.find(c) >= 0]
    if not found:
        return None
    text = np.frombuffer(raw, dtype=np.uint8)
    hit = text == found[0]
    for c in found[1:]:
        hit |= text == c
    rows = np.searchsorted(ends, np.flatnonzero(hit) + ends[0], side="right") - 1
    holding = np.zeros(len(cells), dtype=bool)
    holding[rows] = True
    return holding


# Arrow and Python (pandas writes numpy's str of a float64, which is Python's repr) find the same
# shortest digits but lay them out differently: Arrow writes 5.0 as "5", 1e15 as "1e+15", 1e-05 as
# "0.00001". In Python's range for plain decimals (1e-4 <= |x| < 1e16) Arrow's text is kept, with
# ".0" added to whole numbers; any other number (inf, tiny, huge, one Arrow gave an exponent) is
# formatted by numpy, as pandas formats it.
_PLAIN_LOW, _PLAIN_HIGH = 1e-4, 1e16


def _float_cells(values: np.ndarray) -> pa.Array:
    cells = pc.cast(pa.array(values, from_pandas=True), pa.large_string())   # NaN: null, an empty cell
    magnitude = np.abs(values)
    with np.errstate(invalid="ignore"):
        plain = ((magnitude >= _PLAIN_LOW) & (magnitude < _PLAIN_HIGH)) | (values == 0)
        whole = values == np.trunc(values)
    exponent = _cells_holding(cells, b"e")
    if exponent is not None:
        plain &= ~exponent
    whole &= plain                                    # plain text of a whole number has no point
    if whole.any():
        cells = pc.if_else(pa.array(whole), pc.binary_join_element_wise(cells, _text(".0"), _text("")), cells)
    other = ~plain & ~np.isnan(values)
    if other.any():
        cells = pc.replace_with_mask(cells, pa.array(other), pa.array(values[other].astype(str), pa.large_string()))
    return cells


def attachment(filename: str) -> str:
    """A Content-Disposition naming ``filename`` for any browser (RFC 6266): an ASCII name, plus the
    name itself in UTF-8 where it is not ASCII. A manifest named 清单.json or données.json put its
    name in the header raw: the server could not encode it (the download's connection closed with
    no answer) or sent Latin-1 bytes."""
    plain = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    if plain == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def csv_response(df: pd.DataFrame, filename: str, positions: np.ndarray | None = None) -> Response:
    """The rows of `df` at `positions` (all of them by default) as a CSV download, streamed."""
    positions = np.arange(len(df)) if positions is None else positions
    return Response(csv_chunks(df, positions), mimetype="text/csv",
                    headers={"Content-Disposition": attachment(filename), "Cache-Control": "no-store"})
