"""The careful path: one line at a time with orjson (Python's json for its extensions), which
says exactly which line is wrong and why. It is the reference the fast path defers to.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from sde.manifest.model import Problem
from sde.manifest.pieces import Piece, ReadState, Spec

# Deeper nesting is refused before any parser sees it: pyarrow segfaults past ~10k levels, orjson past
# ~1M, orjson.dumps stops at 255 levels. No real manifest comes near.
MAX_DEPTH = 200
# The longest duration or offset a line may give, in seconds (~11.6 days): longer than any
# recording, so a larger value is a unit mistake or corrupt data, and summed with others it would
# make the dataset's hours meaningless (or infinite).
MAX_SECONDS = 1_000_000.0


def show_value(value: Any) -> str:
    """A short JSON-ish rendering of a bad value for messages."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    try:
        text = orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _max_depth(raw: bytes) -> int:
    """Exact nesting depth of a JSON text, ignoring brackets inside strings, in numpy."""
    a = np.frombuffer(raw, np.uint8)
    quotes = np.flatnonzero(a == 34)
    if len(quotes):
        # a quote preceded by an odd run of backslashes is escaped, i.e. inside a string
        maybe = quotes[(quotes > 0) & (a[np.maximum(quotes - 1, 0)] == 92)]
        if len(maybe):
            escaped = set()
            for q in maybe.tolist():
                k = q - 1
                while k >= 0 and raw[k] == 92:
                    k -= 1
                if (q - 1 - k) % 2:
                    escaped.add(q)
            if escaped:
                quotes = np.array([q for q in quotes.tolist() if q not in escaped], dtype=np.int64)
    brackets = np.flatnonzero((a == 91) | (a == 93) | (a == 123) | (a == 125))
    if len(quotes):
        brackets = brackets[np.searchsorted(quotes, brackets) % 2 == 0]
    if not len(brackets):
        return 0
    b = a[brackets]
    steps = np.where((b == 91) | (b == 123), 1, -1)
    return int(np.cumsum(steps).max())


def load_line(raw: bytes) -> tuple[Any, str | None]:
    """Parse one line: (value, None) or (None, reason)."""
    # A byte-order mark opening a later line is what `cat` of files saved by Windows tools leaves:
    # the line is fine, the mark is the other file's.
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _max_depth(raw) > MAX_DEPTH:
        return None, f"invalid JSON: nested deeper than {MAX_DEPTH} levels"
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
    # Python's json is what NeMo uses: it accepts NaN, Infinity and huge integers, and its messages
    # say what was expected.
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        msg = e.msg.removesuffix(" at")  # "Invalid control character at"
        return None, f"invalid JSON: {msg} at column {e.colno}"
    except RecursionError:
        return None, f"invalid JSON: nested deeper than {MAX_DEPTH} levels"
    except ValueError:  # an integer past Python's digit limit: NeMo's json.loads refuses it too
        return None, (f"invalid JSON: a number with more than {sys.get_int_max_str_digits():,} digits, "
                      "which Python's json (and so NeMo) refuses: write it as a string or remove it")
    if _SURROGATE_ESCAPE.search(raw):
        reason = _unpaired_surrogate(value)
        if reason is not None:
            return None, reason
    return value, None


# An escaped UTF-16 surrogate (\ud800-\udfff): Python's json reads an unpaired one as a lone
# surrogate, which no UTF-8 text (Arrow's, a page's) can hold; orjson refuses the line.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _unpaired_surrogate(value: Any) -> str | None:
    """The reason a parsed line cannot be kept when a key or string in it holds an unpaired
    surrogate (text cut inside a character, e.g. an emoji split in two), naming the field."""
    for field, text in _strings(value, None):
        found = _LONE_SURROGATE.search(text)
        if found is not None:
            # the name itself may hold one: escaped, the message stays valid UTF-8 (terminal, JSON)
            where = f'"{field.encode("utf-8", "backslashreplace").decode()}"' if field is not None else "a value"
            return (f"{where} holds an unpaired surrogate \\u{ord(found.group()):04x} (half of a character, "
                    "cut when the line was written): fix or remove that escape")
    return None


def _strings(value: Any, field: str | None) -> Iterator[tuple[str | None, str]]:
    """Every key and string in a parsed JSON value, with the top-level field it is under."""
    if isinstance(value, str):
        yield field, value
    elif isinstance(value, dict):
        for key, item in value.items():
            top = key if field is None else field
            yield top, key
            yield from _strings(item, top)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, field)


def _number(obj: dict, key: str, required: bool) -> tuple[float | None, str | None]:
    value = obj.get(key)
    if value is None:
        if key not in obj and required:
            return None, f'missing field "{key}"'
        if not required:
            return 0.0, None
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number < 0:
        return None, f'"{key}" must be a non-negative number, got {show_value(value)}'
    if number > MAX_SECONDS:
        return None, (f'"{key}" is {show_value(value)} seconds, longer than any recording (at most '
                      f'{MAX_SECONDS:,.0f} s, ~11.6 days): is it in another unit than seconds?')
    return number, None


def check_record(obj: Any, spec: Spec) -> tuple[dict | None, str | None]:
    """Validate and normalise one parsed line: (record, None) or (None, reason)."""
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {_json_type(obj)}"
    rec = dict(obj)
    # audio_filename is NeMo's older name for the same thing: an alias, not a column of its own
    path = rec.get("audio_filepath")
    if path is None:
        path = rec.get("audio_filename")
    rec.pop("audio_filename", None)
    if path is None and "audio_filepath" not in obj and "audio_filename" not in obj:
        return None, 'missing field "audio_filepath"'
    if not isinstance(path, str) or not path:
        return None, f'"audio_filepath" must be a non-empty string, got {show_value(path)}'
    rec["audio_filepath"] = path
    off, reason = _number(rec, "offset", required=False)
    if reason:
        return None, reason
    rec["offset"] = off
    if not spec.predictions:
        if rec.get("duration") is None:  # absent or null: read from the audio header later
            rec["duration"] = None
        else:
            dur, reason = _number(rec, "duration", required=True)
            if reason:
                return None, reason
            rec["duration"] = dur
        reason = _check_text(rec)
        if reason:
            return None, reason
    elif "pred_text" not in rec:
        # a model's output line for audio it could not read (sde transcribe, NeMo): no prediction,
        # which leaves the line it matches without one, not a bad line
        rec["pred_text"] = None
    elif not isinstance(rec["pred_text"], str):
        return None, f'"pred_text" must be a string, got {show_value(rec["pred_text"])}'
    for key, value in rec.items():
        if value is not None and not isinstance(value, str) and spec.is_hyp(key):
            return None, f'"{key}" must be a string, got {show_value(value)}'
    return rec, None


def _check_text(rec: dict) -> str | None:
    """``text`` must be a string; when it is absent or null, ``text_filepath`` (read later) must
    name the file holding it."""
    text = rec.get("text")
    if text is None:
        text_file = rec.get("text_filepath")
        if text_file is None:
            return 'missing field "text" (or "text_filepath")' if "text" not in rec else \
                f'"text" must be a string, got {show_value(text)}'
        if not isinstance(text_file, str) or not text_file:
            return f'"text_filepath" must be a non-empty string, got {show_value(text_file)}'
        rec["text"] = None
    elif not isinstance(text, str):
        return f'"text" must be a string, got {show_value(text)}'
    return None


def _json_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        # integers beyond 64 bits; NaN inside containers stays NaN like Python writes it
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _to_arrow(values: list) -> pa.Array:
    """A column of Python values: numeric or string arrow; anything else as JSON text."""
    try:
        arr = pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        arr = None
    if arr is not None:
        t = arr.type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t) or pa.types.is_null(t):
            return arr
    elif all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        # integers beyond 64 bits: floats, as pyarrow's fast path makes them
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array(_mixed_text(values), pa.string())


INT64 = (-(1 << 63), (1 << 63) - 1)


def _mixed_text(values: list) -> list:
    """The values of a column of mixed kinds as text. A number is written as the fast path's rows
    of it are when a chunk that parsed fast meets text in another (Arrow's cast: 2.0 as "2"), so
    that a value's text does not depend on which path, chunk or part (sde.build) read its line."""
    texts = [_json_text(v) for v in values]
    floats = [k for k, v in enumerate(values) if (type(v) is float and math.isfinite(v))
              or (type(v) is int and not INT64[0] <= v <= INT64[1])]  # beyond 64 bits: pyarrow's floats
    if floats:
        cast = pa.array([float(values[k]) for k in floats], pa.float64()).cast(pa.string()).to_pylist()
        for k, text in zip(floats, cast):
            texts[k] = text
    return texts


def careful_piece(data: bytes, line0: int, state: ReadState) -> tuple[Piece, list[Problem], int]:
    spec = state.spec
    problems: list[Problem] = []
    records: list[dict] = []
    lines: list[int] = []
    accepted = state.accepted
    predictions = spec.predictions
    raws = data.split(b"\n")
    raws.pop()  # data always ends with b"\n"
    for i, raw in enumerate(raws):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            continue
        line = line0 + i + 1
        obj, reason = load_line(raw)
        if reason is None:
            obj, reason = check_record(obj, spec)
        if reason is not None:
            problems.append(Problem(state.path, line, reason))
            continue
        if predictions:
            obj = {k: obj[k] for k in ("audio_filepath", "offset", "pred_text", "shard_id", "audio_channel") if k in obj}
        elif not obj.keys() <= accepted.keys():
            for key in [k for k in obj if k not in accepted]:
                if not state.admit(key, line):
                    del obj[key]
        records.append(obj)
        lines.append(line)

    # Columns by key, padded lazily: rows lacking a key get None.
    cols: dict[str, list] = {}
    for row, rec in enumerate(records):
        for key, value in rec.items():
            col = cols.get(key)
            if col is None:
                col = cols[key] = []
            if len(col) < row:
                col.extend([None] * (row - len(col)))
            col.append(value)
    n = len(records)
    out: dict[str, pa.Array] = {}
    for key, col in cols.items():
        if len(col) < n:
            col.extend([None] * (n - len(col)))
        if key in ("duration", "offset"):
            out[key] = pa.array(col, pa.float64())
        elif key in ("audio_filepath", "text") or spec.is_hyp(key):
            out[key] = pa.array(col, pa.string())
        else:
            out[key] = _to_arrow(col)
    return Piece(n, np.asarray(lines, dtype=np.int64), out), problems, len(raws)


def seconds_field(obj: dict, key: str) -> tuple[float | None, str | None]:
    """A line's ``offset`` or ``duration`` checked as read_manifest checks it: (seconds, None), (None,
    None) when absent or null, or (None, the reason it is invalid)."""
    if obj.get(key) is None:
        return None, None
    return _number(obj, key, required=True)
