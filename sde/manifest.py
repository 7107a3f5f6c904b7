"""Read and validate NeMo JSON Lines manifests.

One JSON object per line with ``audio_filepath`` (or ``audio_filename``), ``duration`` (seconds) and
``text``; optional ``offset``, hypothesis fields (``pred_text``, ``pred_text_<label>``) and any other
fields, which are all kept.  :func:`read_manifest` returns a :class:`Manifest` whose ``table`` follows
the column contract of docs/internals.md.

How it is fast.  The file is read in chunks of about ``CHUNK_BYTES`` cut at line ends.  Each chunk
first goes through a *fast path*: ``pyarrow.json`` parses it in C++ on all cores, and the checks are
vectorised (pyarrow compute / numpy).  Only when that path cannot vouch for a chunk (a line that is
not JSON, mixed types in a column, nested values, numeric strings, duplicate keys, suspiciously deep
or wide lines...) is the chunk re-tried in smaller parts, and only the parts that still fail are read
by the *careful path*: line by line with orjson, which can say exactly which line is wrong and why
(several times slower: a manifest with nested values on every line loads at ~100k lines/s).
Lines that parse but fail a check (missing field, negative duration...) are re-examined one by one
by the careful checker, so both paths give the same reasons.

Decisions where NeMo or the contract are silent (tests pin each of them):

* ``duration`` / ``offset`` given as numeric strings (``"3.2"``) are accepted and converted, as
  NeMo's ``float(...)`` would; ``"abc"``, booleans, NaN, infinities and negatives are bad lines.
  ``duration`` 0 is valid.  ``offset`` absent or null means 0.0.
* ``duration`` absent or null (forced-alignment and speaker manifests omit it) is read from the audio
  file's header (soundfile, on a thread pool, once per distinct file): the file's duration, minus
  ``offset`` for a segment.  The table then has a ``duration_source`` column ("manifest" | "header").
  A line whose header cannot be read, or whose offset lies beyond the end, is skipped with the reason.
* ``text`` absent or null with ``text_filepath`` given: the text is read from that file as NeMo does
  (UTF-8, line breaks removed); relative paths resolve like audio paths.  A file that cannot be read
  (missing, not UTF-8, over ``MAX_TEXT_FILE_BYTES``) skips the line with the reason.
* ``audio_filepath`` must be a non-empty string.  ``audio_filename`` is an alias: it is used when
  ``audio_filepath`` is absent or null, and is not kept as a separate column.
* ``text`` must be a string (empty is fine).  Hypothesis fields must be strings when present; absent
  or null is <NA>: that line is left out of the hypothesis's scores (one warning per field in
  ``Manifest.warnings``), while "" is a real, empty hypothesis.  Non-string values make the line bad.
* JSON extensions that Python's ``json`` accepts (``NaN``, ``Infinity``, huge integers) are accepted,
  because NeMo reads manifests with ``json.loads``; a NaN duration is still a bad line.
* Duplicate keys: the last one wins (as in ``json.loads``).
* A byte-order mark at the start of the file, CRLF line ends and blank lines are accepted silently;
  blank lines count as physical lines (``line`` numbers match an editor) but are not problems.
* Values nested deeper than ``MAX_DEPTH`` levels make the line bad (``invalid JSON: nested deeper
  than ...``): it guards the parsers, which can crash on absurd nesting.
* Extra fields: booleans and mixed-type columns become strings (JSON text, ``true``/``false``);
  nested values become compact JSON text; a field that is null on every valid line is dropped;
  integers beyond 64 bits become floats (pyarrow does so; pandas could not hold them as int64).
  Manifest fields named like the generated columns (``id``, ``line``, ``audio_path``) are kept as
  ``manifest_id``, ``manifest_line``, ``manifest_audio_path``.
* Too many distinct fields (hostile or broken manifests): at most ``MAX_EXTRA_FIELDS`` extra fields are
  kept, fewer for very long manifests so that the table stays within about ``MAX_EXTRA_CELLS`` cells
  (never fewer than ``MIN_EXTRA_FIELDS``).  Further fields are ignored and one warning goes to
  ``Manifest.warnings`` (not ``problems``: those lines are not skipped).
* ``predictions=FILE`` merges that file's ``pred_text`` by (``audio_filepath`` as written, ``offset``),
  falling back to (resolved audio path, ``offset``).  The merged field is ``pred_text`` when the main
  manifest has no ``pred_text``; otherwise ``pred_text_<stem of FILE>`` (label = that stem).  Lines
  without a match get <NA> (left out of its scores) and one warning in ``Manifest.warnings`` counts
  them; no match at all is a ManifestError.  The predictions file needs only the audio path and ``pred_text`` (a string);
  its relative paths resolve like the manifest's (``audio_base_path``, else its own folder); its
  bad lines are listed in ``problems`` under its own path (``strict`` applies to it too).  With
  explicit ``pred_fields``, the merged field is appended to them unless already named.
* Audio files are not checked for existence here (too slow for millions of lines), except the
  headers read for lines without a duration; sde/audio.py reports missing files when they are played.
* Several manifests (a list, globs, NeMo shard patterns: see sde.sources) are one table: ids over
  all valid lines in the order of the sources, a ``source`` column naming each line's manifest
  (relative to the folder they share; a manifest field named ``source`` becomes
  ``manifest_source``), problems under each manifest's name and its own line numbers, relative audio
  paths from each manifest's own folder. A manifest that is missing or unusable as a whole is one
  problem (line 0) and the others load (``strict``: an error). Small local files are parsed in
  batches (their bytes joined, the rows split back by file), so 512 shards load as fast as one file
  of the same lines; larger and remote files are read each on a thread of its own.
* URLs (``s3://``, ``gs://``, ...) are streamed through fsspec in chunks, never downloaded whole
  (sde.sources.remote: storage options, time limits, one clear error per failure). Relative audio
  paths of a remote manifest join its URL's folder; an ``audio_filepath`` that is a URL stays as
  written.
* Files that are not NeMo manifests at all (Lhotse cuts/recordings/supervisions, also gzipped; Kaldi
  text, wav.scp, segments; CSV/TSV with a header; a JSON array; gzip) raise one ManifestError that
  says what the file looks like and how to convert it, judged on its first ``SNIFF_LINES`` lines.
"""

from __future__ import annotations

import io
import json
import math
import mmap
import os
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from sde.sources import PatternError, RemoteError, Source, SourceSet, as_source_set, is_url, remote

__all__ = [
    "HypothesisField",
    "Manifest",
    "ManifestError",
    "PredFieldError",
    "Problem",
    "parse_pred_field",
    "read_manifest",
]

# Chunk of the file handled at once: large enough for pyarrow's threads to pay off, small enough
# that a chunk falling back to the careful path costs well under a second, and memory stays low.
CHUNK_BYTES = 32 << 20
# pyarrow's unit of parallel parsing; 1-4 MiB measured fastest on 2 cores.
BLOCK_BYTES = 2 << 20
# Deeper nesting is refused before any parser sees it: pyarrow segfaults past ~10k levels, orjson past
# ~1M, orjson.dumps stops at 255 levels. No real manifest comes near.
MAX_DEPTH = 200
# Lines longer than this are inspected individually before the fast path: only they can hold enough
# brackets or keys to hurt pyarrow (which needs seconds for 100k columns).
SAFE_LINE_BYTES = 8192
WIDE_LINE_KEYS = 2000
# Sampling a chunk's fields before the full parse (see _many_new_fields).
PROBE_LINES = 256
PROBE_MIN_WINDOW = 32
PROBE_NEW_FIELDS = 100
# A chunk that the fast path refuses is re-tried in this many parts before reading any carefully.
SPLIT = 16
MAX_EXTRA_FIELDS = 1000
MIN_EXTRA_FIELDS = 32
MAX_EXTRA_CELLS = 25_000_000
# How many problems a whole-file error quotes.
QUOTED_PROBLEMS = 5
# text_filepath files larger than this are not transcripts (and must not fill memory).
MAX_TEXT_FILE_BYTES = 1 << 20
# Audio headers and transcript files are read on this many threads (they mostly wait on the disk).
FILE_READ_THREADS = 16
# How many line numbers the warning about a missing hypothesis field quotes.
MISSING_EXAMPLES = 3
# Several manifests (shards) are read at once: pyarrow parses without the GIL, remote reads wait on
# the network. Measured on 2 cores: 512 local shards load as fast as one file of the same lines.
LOCAL_READ_THREADS = 4
REMOTE_READ_THREADS = 16
# Local manifests up to SMALL_FILE_BYTES (shards) are parsed in batches of up to BATCH_BYTES.
SMALL_FILE_BYTES = 8 << 20
BATCH_BYTES = CHUNK_BYTES

CORE_FIELDS = ("audio_filepath", "duration", "text", "offset")
GENERATED = ("id", "line", "audio_path", "duration_source")
STRICT_HINT = ("Fix or remove that line, or run without --strict to skip bad lines "
               "(they are listed on the Problems page).")


@dataclass(frozen=True)
class Problem:
    """A skipped line (or, in ``Manifest.warnings``, a note about a line)."""

    path: str    # the manifest path as the user gave it (several manifests: the `source` column's name)
    line: int    # 1-based physical line number; 0 for a problem of the whole file (a missing shard)
    reason: str  # e.g. 'missing field "duration"'

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}" if self.line else f"{self.path}: {self.reason}"


class ManifestError(Exception):
    """A manifest that cannot be used; the message names file[:line] and the fix."""


class PredFieldError(ManifestError, ValueError):
    """A malformed ``--pred-field`` spec: a ValueError (usage error, exit 2, when the CLI checks
    specs with parse_pred_field first) that is also a ManifestError, so it never surfaces as a
    traceback if it reaches read_manifest unchecked."""


@dataclass(frozen=True)
class HypothesisField:
    """A manifest field holding ASR hypotheses, and the label its metric columns carry."""

    field: str
    label: str

    def column(self, metric: str) -> str:
        return metric if self.label == "" else f"{metric}_{self.label}"

    @property
    def name(self) -> str:
        return self.label or self.field


@dataclass
class Manifest:
    """A read manifest: the utterance table (see internals.md for its columns) and what was skipped."""

    path: Path
    table: pd.DataFrame
    hypotheses: list[HypothesisField]
    problems: list[Problem]
    total_lines: int
    # Notes that do not skip lines (ignored extra fields, unmatched predictions). Not in the
    # internals.md contract, added with a default so that constructing a Manifest stays compatible.
    warnings: list[Problem] = field(default_factory=list)
    # The dataset's name (the file name, or the patterns as typed) and every file read, in id order.
    name: str = ""
    sources: list[str] = field(default_factory=list)
    # How problems name the manifest: the path as given (several manifests: each problem its own).
    shown: str = ""
    # Tar shards holding the audio (index = a row's `shard_id`; members named by `audio_filepath`):
    # set by readers whose data keeps its audio in tars (Lhotse Shar); --tarred-audio sets the rest.
    tar_shards: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManifestPart:
    """Some whole lines of one local manifest: bytes [start, stop), after ``first_line`` lines.

    A dataset too big to read at once is read part by part (sde.build); line numbers, problems and
    paths stay those of the whole file."""

    start: int
    stop: int
    first_line: int


def parse_pred_field(spec: str) -> HypothesisField:
    """Parse a ``--pred-field`` value: ``F`` or ``F=LABEL``.

    Plain ``F``: label "" for ``pred_text``, the part after ``pred_text_`` for ``pred_text_X``, else
    the field name itself.  Raises PredFieldError (a ValueError and a ManifestError) for an empty
    field or label.
    """
    name, sep, label = spec.partition("=")
    name, label = name.strip(), label.strip()
    if not name:
        raise PredFieldError(f"--pred-field {spec!r}: the field name is empty; use FIELD or FIELD=LABEL")
    if sep:
        if not label or any(c.isspace() for c in label):
            raise PredFieldError(f"--pred-field {spec!r}: the label must be a non-empty word; "
                             "use FIELD or FIELD=LABEL")
        return HypothesisField(name, label)
    return HypothesisField(name, _default_label(name))


def _default_label(name: str) -> str:
    if name == "pred_text":
        return ""
    if name.startswith("pred_text_") and len(name) > len("pred_text_"):
        return name[len("pred_text_"):]
    return name


def _is_pred_name(name: str) -> bool:
    return name == "pred_text" or (name.startswith("pred_text_") and len(name) > len("pred_text_"))


# --------------------------------------------------------------------------------------------------
# Reading state shared by the chunks of one file


@dataclass
class _Spec:
    """What a file must contain: a main manifest, or a predictions file (audio path + pred_text)."""

    predictions: bool = False
    explicit_hyps: frozenset[str] | None = None  # --pred-field names; None: pred_text* discovery

    def is_hyp(self, name: str) -> bool:
        if self.predictions:
            return name == "pred_text"
        if self.explicit_hyps is not None:
            return name in self.explicit_hyps
        return _is_pred_name(name)


@dataclass
class _Piece:
    """The valid rows of one chunk: arrow columns of equal length and their source lines."""

    n: int
    lines: np.ndarray
    cols: dict[str, pa.Array | pa.ChunkedArray]
    # which of several manifests it comes from: one index, or one per row (a batch of shards)
    source: int | np.ndarray = 0


class _State:
    def __init__(self, path: str, spec: _Spec, strict: bool, size: int) -> None:
        self.path = path
        self.spec = spec
        self.strict = strict
        self.size = size
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        # keys accepted so far, in order of first appearance; core keys never count against the cap
        self.accepted: dict[str, None] = dict.fromkeys(CORE_FIELDS + ("audio_filename", "text_filepath"))
        self.n_extra = 0
        self.cap = MAX_EXTRA_FIELDS
        self.dropped: set[str] = set()
        self.dropped_first_line: int | None = None

    def estimate_rows(self, lines: int, nbytes: int) -> None:
        """Shrink the extra-field cap for long files, from the first chunk's mean line length."""
        if lines and nbytes:
            rows = max(1, int(self.size / (nbytes / lines)))
            self.cap = max(MIN_EXTRA_FIELDS, min(MAX_EXTRA_FIELDS, MAX_EXTRA_CELLS // rows))

    def admit(self, key: str, line: int) -> bool:
        """Whether an extra key is kept; remembers the first line whose key is dropped."""
        if key in self.accepted:
            return True
        if self.n_extra < self.cap:
            self.accepted[key] = None
            self.n_extra += 1
            return True
        self.dropped.add(key)
        if self.dropped_first_line is None or line < self.dropped_first_line:
            self.dropped_first_line = line
        return False

    def commit(self, problems: list[Problem]) -> None:
        if problems and self.strict:
            raise ManifestError(f"{problems[0]}\n{STRICT_HINT}")
        self.problems.extend(problems)


# --------------------------------------------------------------------------------------------------
# Careful path: one line at a time


def _show(value: Any) -> str:
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


def _load(raw: bytes) -> tuple[Any, str | None]:
    """Parse one line: (value, None) or (None, reason)."""
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
        return json.loads(text), None
    except json.JSONDecodeError as e:
        msg = e.msg.removesuffix(" at")  # "Invalid control character at"
        return None, f"invalid JSON: {msg} at column {e.colno}"
    except RecursionError:
        return None, f"invalid JSON: nested deeper than {MAX_DEPTH} levels"


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
        return None, f'"{key}" must be a non-negative number, got {_show(value)}'
    return number, None


def _check(obj: Any, spec: _Spec) -> tuple[dict | None, str | None]:
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
        return None, f'"audio_filepath" must be a non-empty string, got {_show(path)}'
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
        return None, 'missing field "pred_text"'
    elif not isinstance(rec["pred_text"], str):
        return None, f'"pred_text" must be a string, got {_show(rec["pred_text"])}'
    for key, value in rec.items():
        if value is not None and not isinstance(value, str) and spec.is_hyp(key):
            return None, f'"{key}" must be a string, got {_show(value)}'
    return rec, None


def _check_text(rec: dict) -> str | None:
    """``text`` must be a string; when it is absent or null, ``text_filepath`` (read later) must
    name the file holding it."""
    text = rec.get("text")
    if text is None:
        text_file = rec.get("text_filepath")
        if text_file is None:
            return 'missing field "text" (or "text_filepath")' if "text" not in rec else \
                f'"text" must be a string, got {_show(text)}'
        if not isinstance(text_file, str) or not text_file:
            return f'"text_filepath" must be a non-empty string, got {_show(text_file)}'
        rec["text"] = None
    elif not isinstance(text, str):
        return f'"text" must be a string, got {_show(text)}'
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
    return pa.array([_json_text(v) for v in values], pa.string())


def _careful_piece(data: bytes, line0: int, state: _State) -> tuple[_Piece, list[Problem], int]:
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
        obj, reason = _load(raw)
        if reason is None:
            obj, reason = _check(obj, spec)
        if reason is not None:
            problems.append(Problem(state.path, line, reason))
            continue
        if predictions:
            obj = {k: obj[k] for k in ("audio_filepath", "offset", "pred_text")}
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
    return _Piece(n, np.asarray(lines, dtype=np.int64), out), problems, len(raws)


# --------------------------------------------------------------------------------------------------
# Fast path: pyarrow parses the chunk, checks are vectorised


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def _parse_fast(data: bytes | memoryview, block: int, spec: _Spec, strings: Sequence[str] = ()) -> pa.Table:
    schema = None
    behaviour = "infer"
    if spec.predictions:
        # only what the merge needs: other fields are not even converted
        schema = pa.schema([("audio_filepath", pa.string()), ("audio_filename", pa.string()),
                            ("offset", pa.float64()), ("pred_text", pa.string())])
        behaviour = "ignore"
    elif strings:
        schema = pa.schema([(name, pa.string()) for name in strings])
    return pj.read_json(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=pj.ReadOptions(block_size=block, use_threads=True),
        parse_options=pj.ParseOptions(explicit_schema=schema, newlines_in_values=False,
                                      unexpected_field_behavior=behaviour),
    )


def _many_new_fields(data: bytes | memoryview, starts: np.ndarray, ends: np.ndarray,
                     state: _State) -> bool:
    """Whether a sample of the chunk brings suspiciously many new fields.

    pyarrow pads every field to every row of a chunk, so a chunk whose lines each carry their own
    keys costs rows x keys (65k x 65k cells would exhaust memory). Such chunks go to the careful
    path, which drops fields beyond the cap line by line. Four windows of PROBE_LINES lines, a few
    milliseconds, catch the pathological files (unique keys on many lines). A small chunk (one
    shard of many) gets windows of a 32nd of its lines, so that the probe stays a small part of the
    work; they still hold more than PROBE_NEW_FIELDS lines.
    """
    n = len(ends)
    window = max(PROBE_MIN_WINDOW, min(PROBE_LINES, n // 32))
    sample = b"".join(bytes(data[starts[k]:ends[min(k + window, n) - 1] + 1])
                      for k in (0, n // 3, 2 * n // 3, n - window))
    try:
        names = pj.read_json(pa.BufferReader(sample),
                             read_options=pj.ReadOptions(block_size=max(len(sample), 1 << 16) + 1,
                                                         use_threads=False)).column_names
    except Exception:  # noqa: BLE001 - the full parse will fail too, and say so
        return False
    return sum(name not in state.accepted for name in names) > PROBE_NEW_FIELDS


def _fast_piece(data: bytes | memoryview, line0: int,
                state: _State) -> tuple[_Piece, list[Problem], int] | None:
    """The chunk's valid rows, or None when only the careful path can judge this chunk."""
    spec = state.spec
    arr = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(arr == 10)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    # Every non-blank line must start with "{" so that pyarrow's rows map one-to-one onto lines.
    blank = np.zeros(len(ends), dtype=bool)
    for i in np.flatnonzero(arr[starts] != 123).tolist():
        if bytes(data[starts[i]:ends[i]]).strip():
            return None
        blank[i] = True
    lengths = ends - starts
    longest = int(lengths.max()) if len(lengths) else 0
    if longest > SAFE_LINE_BYTES:
        for i in np.flatnonzero(lengths > SAFE_LINE_BYTES).tolist():
            seg = bytes(data[starts[i]:ends[i]])
            if seg.count(b"[") + seg.count(b"{") > MAX_DEPTH or seg.count(b":") > WIDE_LINE_KEYS:
                return None
    block = max(BLOCK_BYTES, 2 * longest + 2)
    if len(ends) > 4 * PROBE_LINES and not spec.predictions and _many_new_fields(data, starts, ends, state):
        return None
    try:
        table = _parse_fast(data, block, spec)
        stamps = [f.name for f in table.schema if pa.types.is_temporal(f.type)]
        if stamps and not spec.predictions:
            # pyarrow turns ISO dates into timestamps; keep the text as written
            table = _parse_fast(data, block, spec, stamps)
        table.validate(full=True)  # includes UTF-8 validation of every string
        names = table.column_names  # field names with bad UTF-8 raise here
    except Exception:  # noqa: BLE001 - any pyarrow complaint: the careful path says what is wrong
        return None
    rows = np.flatnonzero(~blank)
    if table.num_rows != len(rows):
        return None
    if len(set(names)) != len(names):
        return None
    types = {name: table.schema.field(name).type for name in names}
    if any(pa.types.is_nested(t) or pa.types.is_temporal(t) or pa.types.is_binary(t)
           for t in types.values()):
        return None  # nested values need exact JSON text; the careful path has it
    for name in ("audio_filepath", "audio_filename") + (() if spec.predictions else ("text",)):
        if name in types and not _is_text(types[name]):
            return None
    for name in ("duration", "offset"):
        if name in types and not _is_numeric(types[name]) and not (spec.predictions and name == "duration"):
            return None
    if any(spec.is_hyp(name) and not _is_text(t) for name, t in types.items()):
        return None

    n = table.num_rows
    cols = {name: table.column(name) for name in names}
    fp = cols.pop("audio_filepath", None)
    fn = cols.pop("audio_filename", None)
    if fp is None:
        fp = fn
    elif fn is not None:
        fp = pc.coalesce(fp.cast(pa.string()), fn.cast(pa.string()))
    if fp is None:
        fp = pa.nulls(n, pa.string())
    fp = fp.cast(pa.string())
    ok = pc.fill_null(pc.greater(pc.utf8_length(fp), 0), False)
    off = cols.pop("offset", None)
    if off is not None:
        off = off.cast(pa.float64())
        ok = pc.and_(ok, pc.fill_null(pc.and_(pc.is_finite(off), pc.greater_equal(off, 0.0)), True))
    out: dict[str, Any] = {"audio_filepath": fp}
    if off is not None:
        out["offset"] = off
    if spec.predictions:
        pt = cols.pop("pred_text", None)
        if pt is None:
            pt = pa.nulls(n, pa.string())
        ok = pc.and_(ok, pc.is_valid(pt))
        out["pred_text"] = pt
        cols = {}
    else:
        dur = cols.pop("duration", None)
        dur = pa.nulls(n, pa.float64()) if dur is None else dur.cast(pa.float64())
        text = cols.pop("text", None)
        text = pa.nulls(n, pa.string()) if text is None else text.cast(pa.string())
        # a null duration is read from the audio header later (see _fill_from_files)
        ok = pc.and_(ok, pc.fill_null(pc.and_(pc.is_finite(dur), pc.greater_equal(dur, 0.0)), True))
        has_text = pc.is_valid(text)
        text_file = cols.get("text_filepath")
        if text_file is not None and text.null_count and not pa.types.is_null(text_file.type):
            if not _is_text(text_file.type):
                return None  # the careful path names the ill-typed text_filepath
            has_text = pc.or_(has_text, pc.fill_null(pc.greater(pc.utf8_length(text_file), 0), False))
        ok = pc.and_(ok, has_text)
        out["duration"] = dur
        out["text"] = text
    good = np.asarray(ok, dtype=bool)
    problems: list[Problem] = []
    bad = np.flatnonzero(~good)
    for r in bad.tolist():
        i = rows[r]
        raw = bytes(data[starts[i]:ends[i]])
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        obj, reason = _load(raw)
        if reason is None:
            _, reason = _check(obj, spec)
        if reason is None:
            return None  # the two paths disagree: trust the careful one for the whole chunk
        problems.append(Problem(state.path, int(line0 + i + 1), reason))
    lines = (line0 + rows + 1).astype(np.int64)
    if len(bad):
        mask = pa.array(good)
        out = {k: v.filter(mask) for k, v in out.items()}
        cols = {k: v.filter(mask) for k, v in cols.items()}
        lines = lines[good]
    for key in list(cols):
        if key not in state.accepted:
            if key in state.dropped or cols[key].null_count == len(cols[key]):
                del cols[key]
                continue
            first = int(lines[np.flatnonzero(cols[key].is_valid().to_numpy(zero_copy_only=False))[0]])
            if not state.admit(key, first):
                del cols[key]
    out.update(cols)
    return _Piece(len(lines), lines, out), problems, len(ends)


def _try_fast(data: bytes | memoryview, line0: int,
              state: _State) -> tuple[_Piece, list[Problem], int] | None:
    try:
        return _fast_piece(data, line0, state)
    except Exception:  # noqa: BLE001 - whatever went wrong, the careful path is the reference
        return None


def _pieces(data: bytes | memoryview, line0: int,
            state: _State) -> Iterator[tuple[_Piece, list[Problem], int]]:
    """A chunk's pieces: one from the fast path, else the chunk re-tried in SPLIT parts.

    One bad line should not send a whole chunk (~65k lines) down the careful path, which is ~10x
    slower: re-trying smaller parts costs one more fast parse, and only the part holding the bad
    line is read carefully.
    """
    result = _try_fast(data, line0, state)
    if result is not None:
        yield result
        return
    arr = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(arr == 10)
    del arr
    if len(ends) < 4 * SPLIT:
        yield _careful_piece(bytes(data), line0, state)
        return
    cuts = [0] + [int(ends[k * len(ends) // SPLIT]) + 1 for k in range(1, SPLIT)] + [len(data)]
    lines = [0] + [k * len(ends) // SPLIT + 1 for k in range(1, SPLIT)]
    for k in range(SPLIT):
        part = data[cuts[k]:cuts[k + 1]]
        result = _try_fast(part, line0 + lines[k], state)
        yield result if result is not None else _careful_piece(bytes(part), line0 + lines[k], state)
        if isinstance(part, memoryview):
            part.release()


# --------------------------------------------------------------------------------------------------
# Whole file


def _chunks(mm: mmap.mmap, start: int, stop: int | None = None) -> Iterator[tuple[memoryview | bytes, int]]:
    """(data, end offset) for chunks of the mapped file (up to ``stop``) that end with b"\\n".

    Zero-copy views of the mapping: no read() copies, and the kernel can drop pages behind us.
    A last line without its newline gets one (that chunk alone is copied).
    """
    size = len(mm) if stop is None else min(stop, len(mm))
    view = memoryview(mm)
    pos = start
    try:
        while pos < size:
            end = min(pos + CHUNK_BYTES, size)
            if end < size:
                cut = mm.rfind(b"\n", pos, end)
                if cut < 0:
                    cut = mm.find(b"\n", end)  # a line longer than a chunk
                end = size if cut < 0 else cut + 1
            if end == size and mm[size - 1:size] != b"\n":
                yield bytes(view[pos:end]) + b"\n", end
            else:
                yield view[pos:end], end
            pos = end
    finally:
        view.release()


def _head_checks(path: str, head: bytes) -> None:
    """Whole-file problems visible in the first bytes."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ManifestError(f"{path}: the file is UTF-16 encoded; sde expects UTF-8 JSON Lines. "
                            f"Convert it with: iconv -f UTF-16 -t UTF-8 {path} > manifest.json")
    if head.startswith(b"\x1f\x8b"):
        lhotse = _lhotse_kind(_json_objects(_text_lines(_gunzip_head(head))))
        if lhotse:
            raise ManifestError(_lhotse_message(path, lhotse, compressed=True))
        raise ManifestError(f"{path}: the file is gzip-compressed; decompress it first: gunzip -k {path}")
    if b"\x00" in head[:1024]:
        raise ManifestError(f"{path}: not a text manifest (binary data in the first KB); sde expects "
                            "a NeMo manifest: JSON Lines, one object per line with audio_filepath, "
                            "duration and text")


# Files that are not NeMo manifests at all get one message saying what they look like, instead of
# one "invalid JSON" per line. Judged on the first SNIFF_LINES non-blank lines (within SNIFF_BYTES).
SNIFF_LINES = 20
SNIFF_BYTES = 64 << 10
NEMO_HINT = "sde reads NeMo manifests: JSON Lines, one object per line with audio_filepath, duration and text"
_LHOTSE_KEYS = {"recording_id": "supervisions", "supervisions": "cuts", "recording": "cuts", "sources": "recordings"}
_AUDIO_COLUMN_WORDS = ("audio", "path", "file", "wav", "flac", "mp3")
_TEXT_COLUMN_WORDS = ("text", "transcript", "sentence", "transcription", "utterance", "label")
_TABLE_COLUMN_WORDS = _AUDIO_COLUMN_WORDS + _TEXT_COLUMN_WORDS + ("duration", "speaker", "id", "client")
_KALDI_ID = re.compile(r"[\w.\-:/]+")


def _gunzip_head(head: bytes) -> bytes:
    """The first SNIFF_BYTES of a gzip stream's content (from its first compressed bytes only)."""
    import zlib

    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, SNIFF_BYTES)
    except zlib.error:
        return b""


def _text_lines(sample: bytes) -> list[str]:
    """The sample's first non-blank lines, stripped; a last line cut by the sample's end is dropped."""
    lines = sample.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace").splitlines()
    if len(sample) >= SNIFF_BYTES and len(lines) > 1:
        lines.pop()
    return [line.strip() for line in lines if line.strip()][:SNIFF_LINES]


def _json_objects(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _lhotse_kind(objects: list[dict]) -> str | None:
    """"cuts", "recordings" or "supervisions" when the objects are Lhotse manifest entries."""
    if not objects or any("audio_filepath" in o or "audio_filename" in o for o in objects):
        return None
    first = objects[0]
    if "id" not in first:
        return None
    return next((kind for key, kind in _LHOTSE_KEYS.items() if key in first), None)


def _lhotse_message(path: str, kind: str, compressed: bool = False) -> str:
    what = f"a {'gzip-compressed ' if compressed else ''}Lhotse {kind} manifest"
    cuts = (f"CutSet.from_file({path!r})" if kind == "cuts" else
            "CutSet.from_manifests(recordings=RecordingSet.from_file(R), supervisions=SupervisionSet.from_file(S))")
    return (f"{path}: this is {what}, not a NeMo manifest; {NEMO_HINT}. Convert it first, e.g. in Python "
            f"with lhotse: for each cut of {cuts}, write one line "
            '{"audio_filepath": cut.recording.sources[0].source, "offset": cut.start, '
            '"duration": cut.duration, "text": " ".join(s.text for s in cut.supervisions)}')


def _table_message(path: str, lines: list[str]) -> str | None:
    """A CSV or TSV file with a header row of column names."""
    import csv

    delimiter = "\t" if "\t" in lines[0] else "," if "," in lines[0] else None
    if delimiter is None:
        return None
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [name.strip() for name in rows[0]]
    if len(header) < 2 or any(not name or len(name) > 64 for name in header):
        return None
    if any(len(row) != len(header) for row in rows[1:]):
        return None
    lowered = [name.lower() for name in header]
    if not any(word in name for name in lowered for word in _TABLE_COLUMN_WORDS):
        return None
    kind = "TSV" if delimiter == "\t" else "CSV"

    def column(words: tuple[str, ...], target: str) -> str | None:
        found = next((h for h, low in zip(header, lowered) if any(w in low for w in words)), None)
        return found if found and found != target else None

    renames = {name: target for name, target in ((column(_AUDIO_COLUMN_WORDS, "audio_filepath"), "audio_filepath"),
                                                  (column(_TEXT_COLUMN_WORDS, "text"), "text")) if name}
    sep = ", sep='\\t'" if delimiter == "\t" else ""
    rename = f".rename(columns={renames!r})" if renames else ""
    return (f"{path}: this is a {kind} table (columns: {', '.join(header[:8])}"
            f"{', ...' if len(header) > 8 else ''}), not a NeMo manifest; {NEMO_HINT} "
            f"(a missing duration is read from the audio files). Convert it, e.g.: python -c \"import pandas "
            f"as pd; pd.read_csv('{path}'{sep}){rename}.to_json('manifest.json', orient='records', "
            "lines=True, force_ascii=False)\"")


def _kaldi_message(path: str, lines: list[str]) -> str | None:
    """A Kaldi data-directory file: wav.scp (id + audio path or pipe) or text (id + words)."""
    tokens = [line.split() for line in lines]
    ids = [t[0] for t in tokens]
    if not all(_KALDI_ID.fullmatch(i) for i in ids) or len(set(ids)) != len(ids):
        return None
    build = ("Build one from the Kaldi data directory: join wav.scp and text (and segments, as offset and "
             "duration) by utterance id, one JSON line per utterance with audio_filepath and text; a missing "
             "duration is read from the audio files")
    audio_ext = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".sph", ".m4a")
    if all(len(t) >= 2 and (line.endswith("|") or (len(t) == 2 and ("/" in t[1] or t[1].lower().endswith(audio_ext))))
           for t, line in zip(tokens, lines)):
        return (f"{path}: this is a Kaldi wav.scp (utterance id, then an audio path or a command ending in |), "
                f"not a NeMo manifest; {NEMO_HINT}. {build} (piped entries must be written to audio files first).")
    if all(len(t) == 4 and _is_number(t[2]) and _is_number(t[3]) for t in tokens):
        return (f"{path}: this is a Kaldi segments file (utterance id, recording id, start, end), not a NeMo "
                f"manifest; {NEMO_HINT}. {build}.")
    if sum(any(c.isdigit() or c in "-_" for c in i) for i in ids) * 2 >= len(ids):
        return (f"{path}: this is a Kaldi text file (utterance id, then the words), not a NeMo manifest; "
                f"{NEMO_HINT}. {build}.")
    return None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _check_other_formats(path: str, f: BinaryIO) -> None:
    """One clear error for a file that is some other speech-data format, not a NeMo manifest."""
    f.seek(0)
    lines = _text_lines(f.read(SNIFF_BYTES))
    f.seek(0)
    if not lines:
        return
    lhotse = _lhotse_kind(_json_objects(lines))
    if lhotse:
        raise ManifestError(_lhotse_message(path, lhotse))
    if any(line.startswith(("{", "[")) for line in lines):
        return  # JSON Lines, maybe with bad lines: those are reported one by one
    message = _table_message(path, lines) or _kaldi_message(path, lines)
    if message:
        raise ManifestError(message)


def _check_json_array(path: str, f: BinaryIO, head: bytes) -> None:
    """A file starting with "[" is a JSON array unless its first line is a (bad) line of JSONL."""
    if not head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"["):
        return
    f.seek(0)
    first = b""
    while not first.strip():
        first = f.readline(1 << 20)  # bounded: a one-line 500 MB array is not read whole
        if not first:
            break
    more = len(first) < (1 << 20) and any(raw.strip() for raw in f)
    f.seek(0)
    reason = "too long" if len(first) >= (1 << 20) else _load(first.strip().removeprefix(b"\xef\xbb\xbf"))[1]
    if reason is not None or not more:
        raise ManifestError(f"{path}: this is a JSON array; sde expects JSON Lines (one object per "
                            f"line); convert with: jq -c '.[]' in.json > out.json")


def _stream_chunks(f: BinaryIO, start: int) -> Iterator[tuple[bytes, int]]:
    """(data, end offset) for chunks of a streamed file (a remote manifest) that end with b"\\n":
    CHUNK_BYTES at a time, the part after the last line end carried into the next chunk."""
    f.seek(start)
    carry = b""
    while True:
        block = f.read(CHUNK_BYTES)
        if not block:
            break
        data = carry + block if carry else block
        cut = data.rfind(b"\n")
        if cut < 0:  # a line longer than a chunk: keep reading
            carry = data
            continue
        carry = data[cut + 1:]
        yield data[:cut + 1], f.tell() - len(carry)
    if carry:
        yield carry + b"\n", f.tell()


def _open_local(path: str, shown: str) -> tuple[BinaryIO, int]:
    if os.path.isdir(path):
        raise ManifestError(f"{shown}: is a directory; pass the manifest file inside it "
                            f"(a .json/.jsonl file with one JSON object per line)")
    try:
        f = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise ManifestError(f"{shown}: file not found; check the path (relative paths start from "
                            f"{os.getcwd()})") from None
    except OSError as e:
        raise ManifestError(f"{shown}: cannot open: {e.strerror}; check the file's permissions") from None
    return f, os.fstat(f.fileno()).st_size


def _open_remote(url: str) -> tuple[BinaryIO, int]:
    """A remote manifest, streamed with byte ranges (a buffered reader gives the line reads the
    format checks need); nothing is downloaded whole."""
    try:
        found = remote.info(url)
        raw = remote.open_file(url, ranged=True, size=found.get("size"))
    except RemoteError as e:
        raise ManifestError(str(e)) from None
    return io.BufferedReader(raw, buffer_size=remote.STREAM_BLOCK_BYTES), int(found.get("size") or 0)


def _read(path: str | Path, spec: _Spec, strict: bool, progress: bool, *, shown: str | None = None,
          rows_of: int | None = None, allow_empty: bool = False,
          part: "ManifestPart | None" = None) -> tuple[list[_Piece], _State, int]:
    """Read one manifest file (local, or a URL) into pieces of valid rows.

    ``shown``: how messages name the file (default: ``path``). ``rows_of``: bytes of all the
    manifests read together (the cap on extra fields depends on the dataset's size).
    ``allow_empty``: a file without valid lines returns no pieces (its problems say why) instead
    of raising; several manifests are read this way, so one bad shard does not stop the others.
    ``part``: read only these lines of a local file (see ManifestPart).
    """
    location = str(path)
    shown = location if shown is None else shown
    is_remote = is_url(location)
    f, size = _open_remote(location) if is_remote else _open_local(location, shown)
    try:
        with f:
            head = f.read(4096)
            _head_checks(shown, head)
            _check_json_array(shown, f, head)
            _check_other_formats(shown, f)
            state = _State(shown, spec, strict, rows_of or size)
            pieces: list[_Piece] = []
            total = 0
            if part is not None:
                total = _read_mapped(f, max(part.start, 3 if head.startswith(b"\xef\xbb\xbf") else 0),
                                     state, pieces, size, shown, progress, stop=part.stop, line0=part.first_line)
            elif size:
                start = 3 if head.startswith(b"\xef\xbb\xbf") else 0  # a BOM is not an error
                if is_remote:
                    total = _read_chunks(_stream_chunks(f, start), state, pieces, size, shown, progress)
                else:
                    total = _read_mapped(f, start, state, pieces, size, shown, progress)
    except ManifestError:
        raise
    except Exception as e:  # the connection (any backend's exception) or the disk failed mid-file
        if is_remote:
            raise ManifestError(str(remote.explain(location, e))) from None
        if isinstance(e, OSError):
            raise ManifestError(f"{shown}: cannot read: {e.strerror or e}") from None
        raise
    if not pieces and not allow_empty:
        _raise_no_pieces(shown, spec, state, head)
    if state.dropped:
        state.warnings.append(Problem(
            shown, state.dropped_first_line or 0,
            f"{len(state.dropped)} more distinct fields ignored: at most {state.cap} extra fields are "
            f"kept for a manifest of this size"))
    return pieces, state, total


def _read_mapped(f: BinaryIO, start: int, state: _State, pieces: list[_Piece], size: int, shown: str,
                 progress: bool, *, stop: int | None = None, line0: int = 0) -> int:
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return _read_chunks(_chunks(mm, start, stop), state, pieces, size, shown, progress, mm, line0=line0)
    finally:
        try:
            mm.close()
        except BufferError:  # a view still referenced by an in-flight exception: GC closes it
            pass


def _read_chunks(chunks: Iterator[tuple[memoryview | bytes, int]], state: _State, pieces: list[_Piece],
                 size: int, shown: str, progress: bool, mm: mmap.mmap | None = None, *, line0: int = 0) -> int:
    """Parse every chunk into ``pieces``; returns the number of physical lines (``line0``: lines
    before the first chunk, so that line numbers count from the file's start)."""
    from sde.progress import progress_bar

    total = line0
    bar = progress_bar(size, f"reading {Path(shown).name}", unit="B", unit_scale=True, enabled=progress,
                       unit_divisor=1024, leave=False)
    try:
        done = 0
        for data, end in chunks:
            if total == line0:
                state.estimate_rows(int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10)), len(data))
            for piece, problems, nlines in _pieces(data, total, state):
                state.commit(problems)
                if piece.n:
                    pieces.append(piece)
                total += nlines
            if isinstance(data, memoryview):
                data.release()
            # the pages read so far are not needed again: keep them out of our RSS
            if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                mm.madvise(mmap.MADV_DONTNEED, 0, end - end % mmap.PAGESIZE)
            bar.update(end - done)
            done = end
        bar.set_postfix_str(f"{total - line0:,} lines", refresh=False)
    finally:
        bar.close()
    return total - line0


def _raise_no_pieces(shown: str, spec: _Spec, state: _State, head: bytes) -> None:
    if not state.problems:
        raise ManifestError(f"{shown}: no utterances: the file is empty or has only blank lines; "
                            "sde expects one JSON object per line with audio_filepath, duration and text")
    quoted = "\n  ".join(str(q) for q in state.problems[:QUOTED_PROBLEMS])
    more = len(state.problems) - QUOTED_PROBLEMS
    hint = (f"\n  ... and {more} more" if more > 0 else "")
    pretty = ""
    first_line = head.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].strip()
    if state.problems[0].line == 1 and first_line == b"{":
        pretty = ("\nIt looks like pretty-printed JSON; sde expects one object per line; "
                  "convert with: jq -c . in.json > out.json")
    need = "audio_filepath and pred_text" if spec.predictions else "audio_filepath, duration and text"
    raise ManifestError(f"{shown}: no valid utterances: every line is bad:\n  {quoted}{hint}{pretty}\n"
                        f"sde expects one JSON object per line with {need}")


# --------------------------------------------------------------------------------------------------
# Durations and texts that live in other files


def _header_duration(path: str) -> tuple[float | None, str | None]:
    """(seconds, None) from the audio file's header, or (None, why it cannot be read)."""
    from sde.audio import AudioError, file_info  # only manifests without durations need it

    try:
        return float(file_info(path)["duration"]), None
    except AudioError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - any decoder failure is this line's problem, not a crash
        return None, f"{path}: {type(e).__name__}: {e}"


def _read_text_file(path: str) -> tuple[str | None, str | None]:
    """(text, None) as NeMo reads ``text_filepath`` (UTF-8, line breaks removed), or (None, why)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TEXT_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, "file not found"
    except IsADirectoryError:
        return None, "is a directory"
    except PermissionError:
        return None, "permission denied"
    except OSError as e:
        return None, e.strerror or type(e).__name__
    if len(raw) > MAX_TEXT_FILE_BYTES:
        return None, f"larger than {MAX_TEXT_FILE_BYTES >> 20} MiB, not a transcript"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
    # NeMo opens the file in text mode (universal newlines) and drops every "\n"
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", ""), None


def _read_all(read: Any, paths: list[str]) -> dict[str, tuple[Any, str | None]]:
    """``read`` of every distinct path, on a thread pool (header and file reads wait on the disk)."""
    from concurrent.futures import ThreadPoolExecutor

    unique = list(dict.fromkeys(paths))
    if len(unique) < 8:
        return {p: read(p) for p in unique}
    with ThreadPoolExecutor(min(FILE_READ_THREADS, len(unique))) as pool:
        return dict(zip(unique, pool.map(read, unique, chunksize=64)))


def _null_rows(col: pa.Array | pa.ChunkedArray | None, n: int) -> np.ndarray:
    if col is None:
        return np.ones(n, dtype=bool)
    return np.asarray(pc.is_null(col), dtype=bool) if col.null_count else np.zeros(n, dtype=bool)


def _as_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


# The pieces' key for where each duration came from (a manifest field of that name stays separate).
_DURATION_SOURCE = "\x00duration_source"
# The pieces' key for resolved audio paths, when each manifest's lines are resolved as it is read.
_AUDIO_PATH = "\x00audio_path"


def _fill_from_files(pieces: list[_Piece], path: str, base: str) -> tuple[list[_Piece], list[Problem], bool]:
    """Durations from audio headers (lines without one) and texts from ``text_filepath`` (lines
    without ``text``). Lines whose file cannot be read are left out, with a problem each.

    Returns the pieces (with a ``duration_source`` column when any header was read), the new
    problems, and whether any duration came from a header.
    """
    needs = [(_null_rows(p.cols.get("duration"), p.n), _null_rows(p.cols.get("text"), p.n)) for p in pieces]
    if not any(d.any() or t.any() for d, t in needs):
        return pieces, [], False
    from_header = any(d.any() for d, _ in needs)
    durations = _read_all(_header_duration, [
        path_ for p, (d, _) in zip(pieces, needs) if d.any()
        for path_ in _resolve(pa.chunked_array([_as_array(p.cols["audio_filepath"]).filter(pa.array(d))]),
                              base).to_pylist()])
    texts = _read_all(_read_text_file, [
        path_ for p, (_, t) in zip(pieces, needs) if t.any()
        for path_ in _resolve(pa.chunked_array([_as_array(p.cols["text_filepath"]).cast(pa.string())
                                                .filter(pa.array(t))]), base).to_pylist()])
    problems: list[Problem] = []
    out: list[_Piece] = []
    for p, (need_duration, need_text) in zip(pieces, needs):
        keep = np.ones(p.n, dtype=bool)
        cols = dict(p.cols)
        if need_duration.any():
            cols["duration"] = _durations_from_headers(p, need_duration, keep, durations, base, path, problems)
        if from_header:
            cols[_DURATION_SOURCE] = pa.array(np.where(need_duration, "header", "manifest"), pa.string())
        if need_text.any():
            cols["text"] = _texts_from_files(p, need_text, keep, texts, base, path, problems)
        if not keep.all():
            mask = pa.array(keep)
            cols = {k: v.filter(mask) for k, v in cols.items()}
        out.append(_Piece(int(keep.sum()), p.lines[keep], cols))
    problems.sort(key=lambda q: q.line)
    return [p for p in out if p.n], problems, from_header


def _durations_from_headers(p: _Piece, need: np.ndarray, keep: np.ndarray,
                            found: dict[str, tuple[Any, str | None]], base: str, path: str,
                            problems: list[Problem]) -> pa.Array:
    """The piece's duration column with the missing values read from the audio headers; rows
    whose header cannot be read (or whose offset lies beyond the end) are cleared in ``keep``."""
    dur = p.cols.get("duration")
    values = np.full(p.n, np.nan) if dur is None else \
        _as_array(dur).cast(pa.float64()).to_numpy(zero_copy_only=False).copy()
    rows = np.flatnonzero(need)
    audio = _resolve(pa.chunked_array([_as_array(p.cols["audio_filepath"]).filter(pa.array(need))]), base).to_pylist()
    offset_col = p.cols.get("offset")
    offsets = np.zeros(p.n) if offset_col is None else \
        pc.fill_null(_as_array(offset_col).cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
    for row, audio_path in zip(rows.tolist(), audio):
        seconds, why = found[audio_path]
        offset = float(offsets[row])
        if seconds is None:
            reason = (f'missing field "duration" and the audio header cannot be read ({why}); '
                      'add "duration" to the line, or fix the audio file')
        elif offset > seconds:
            reason = (f'missing field "duration" and "offset" {offset:g} is beyond the end of the audio '
                      f'({seconds:.3f} s); fix the offset, or add "duration"')
        else:
            values[row] = seconds - offset
            continue
        keep[row] = False
        problems.append(Problem(path, int(p.lines[row]), reason))
    return pa.array(values, pa.float64())


def _texts_from_files(p: _Piece, need: np.ndarray, keep: np.ndarray,
                      found: dict[str, tuple[Any, str | None]], base: str, path: str,
                      problems: list[Problem]) -> pa.Array:
    """The piece's text column with the missing values read from ``text_filepath``."""
    text = p.cols.get("text")
    values = [None] * p.n if text is None else _as_array(text).cast(pa.string()).to_pylist()
    written = _as_array(p.cols["text_filepath"]).cast(pa.string()).filter(pa.array(need))
    resolved = _resolve(pa.chunked_array([written]), base).to_pylist()
    for row, shown, text_path in zip(np.flatnonzero(need).tolist(), written.to_pylist(), resolved):
        content, why = found[text_path]
        if content is None:
            keep[row] = False
            problems.append(Problem(path, int(p.lines[row]),
                                    f'"text_filepath" {_show(shown)} cannot be read ({why}); '
                                    'fix the path, or give the transcript as "text"'))
        else:
            values[row] = content
    return pa.array(values, pa.string())


# --------------------------------------------------------------------------------------------------
# Assembling the table


def _parts(pieces: list[_Piece], name: str) -> list[pa.Array | pa.ChunkedArray | None]:
    return [p.cols.get(name) for p in pieces]


def _string_column(pieces: list[_Piece], name: str, fill: str | None = None) -> pa.ChunkedArray:
    chunks: list[pa.Array] = []
    for p, part in zip(pieces, _parts(pieces, name)):
        if part is None:
            part = pa.nulls(p.n, pa.string())
        elif part.type != pa.string():
            part = part.cast(pa.string())
        if fill is not None and part.null_count:
            part = pc.fill_null(part, fill)
        chunks.extend(part.chunks if isinstance(part, pa.ChunkedArray) else [part])
    return pa.chunked_array(chunks, pa.string())


def _float_column(pieces: list[_Piece], name: str, fill: float | None = None) -> np.ndarray:
    out = np.empty(sum(p.n for p in pieces), dtype=np.float64)
    pos = 0
    for p, part in zip(pieces, _parts(pieces, name)):
        if part is None:
            out[pos:pos + p.n] = np.nan if fill is None else fill
        else:
            if fill is not None and part.null_count:
                part = pc.fill_null(part.cast(pa.float64()), fill)
            out[pos:pos + p.n] = part.cast(pa.float64()).to_numpy(zero_copy_only=False)
        pos += p.n
    return out


def _extra_column(pieces: list[_Piece], name: str) -> Any:
    """Numbers stay numeric (int64 when integral and complete), anything else becomes string."""
    parts = _parts(pieces, name)
    types = {part.type for part in parts if part is not None} - {pa.null()}
    if types and all(pa.types.is_integer(t) for t in types):
        nulls = sum(p.n if part is None else part.null_count for p, part in zip(pieces, parts))
        if not nulls:
            return np.concatenate([part.cast(pa.int64()).to_numpy() for part in parts])
    if types and all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        return _float_column(pieces, name)
    return pd.arrays.ArrowStringArray(_string_column(pieces, name))


def _has_values(pieces: list[_Piece], name: str) -> bool:
    return any(part is not None and part.null_count < len(part) for part in _parts(pieces, name))


def _resolve(fp: pa.ChunkedArray, base: str) -> pa.ChunkedArray:
    """NeMo's rule, vectorised: absolute paths and URLs as written, others joined to base (a folder,
    or a URL's folder for a remote manifest); normalised."""
    prefix = base if base.endswith("/") else base + "/"
    base_is_url = is_url(base)
    chunks = []
    for chunk in fp.chunks:
        is_abs = pc.starts_with(chunk, "/")
        urls = pc.any(pc.match_substring(chunk, "://")).as_py()
        if urls:  # s3://..., https://...: a location of its own, never joined to the base
            is_abs = pc.or_(is_abs, pc.match_substring_regex(chunk, r"^[A-Za-z][A-Za-z0-9+.\-]*://"))
        rel = chunk
        if pc.any(pc.starts_with(chunk, "./")).as_py():
            rel = pc.replace_substring_regex(chunk, r"^(\./)+", "")  # the common "./x.wav"
        out = pc.if_else(is_abs, chunk, pc.binary_join_element_wise(prefix, rel, ""))
        # plain substring searches are far cheaper than a regex over millions of paths
        # "/." finds "/./", "/../" and a trailing "/." or "/.." (and hidden folders: harmless)
        if urls or base_is_url:  # "//" belongs in "s3://": only other double slashes need fixing
            dotty = pc.or_(pc.match_substring(out, "/."), pc.match_substring_regex(out, "[^:]//"))
            normalise = remote.normalise
        else:
            dotty = pc.or_(pc.match_substring(out, "/."), pc.match_substring(out, "//"))
            normalise = os.path.normpath
        if pc.any(dotty).as_py():
            fixed = [normalise(p) for p in pc.filter(out, dotty).to_pylist()]
            out = pc.replace_with_mask(out, dotty, pa.array(fixed, pa.string()))
        chunks.append(out)
    return pa.chunked_array(chunks, pa.string())


def _base_dir(path: str | Path, audio_base_path: str | Path | None) -> str:
    """Where relative audio paths start: --audio-base-path, else the manifest's own folder (a URL's
    folder for a remote manifest)."""
    if audio_base_path is not None:
        if is_url(str(audio_base_path)):
            return str(audio_base_path).rstrip("/")
        return os.path.abspath(os.path.expanduser(str(audio_base_path)))
    if is_url(str(path)):
        return remote.url_folder(str(path))
    return os.path.dirname(os.path.abspath(str(path)))


def resolve_audio_path(value: str, manifest: str | Path, audio_base_path: str | Path | None = None) -> str:
    """One line's audio_filepath resolved as read_manifest resolves the column (for tools that read
    a manifest line by line, such as ``sde transcribe``)."""
    return _resolve(pa.chunked_array([[value]], pa.string()), _base_dir(manifest, audio_base_path))[0].as_py()


def seconds_field(obj: dict, key: str) -> tuple[float | None, str | None]:
    """A line's ``offset`` or ``duration`` checked as read_manifest checks it: (seconds, None), (None,
    None) when absent or null, or (None, the reason it is invalid)."""
    if obj.get(key) is None:
        return None, None
    return _number(obj, key, required=True)


def _core_frame(pieces: list[_Piece], base: str | Sequence[str],
                source_names: Sequence[str] | None = None) -> dict[str, Any]:
    """id, (source,) line, audio_filepath, audio_path, offset. ``base``: one folder, or one per
    source (relative audio paths of each manifest start from its own folder); ``source_names``
    (several manifests): the `source` column's value for each source."""
    n = sum(p.n for p in pieces)
    fp = _string_column(pieces, "audio_filepath")
    if isinstance(base, str):
        resolved = _resolve(fp, base)
    elif all(_AUDIO_PATH in p.cols for p in pieces):
        resolved = _string_column(pieces, _AUDIO_PATH)
    else:
        resolved = pa.chunked_array([chunk for p in pieces for chunk in _resolve(
            _string_column([p], "audio_filepath"), base[p.source]).chunks], pa.string())
    frame: dict[str, Any] = {"id": np.arange(n, dtype=np.int64)}
    if source_names is not None:
        frame["source"] = _source_column(pieces, source_names)
    frame.update({
        "line": np.concatenate([p.lines for p in pieces]),
        "audio_filepath": pd.arrays.ArrowStringArray(fp),
        "audio_path": pd.arrays.ArrowStringArray(resolved),
        "offset": _float_column(pieces, "offset", fill=0.0),
    })
    return frame


def _source_column(pieces: list[_Piece], names: Sequence[str]) -> pd.arrays.ArrowStringArray:
    """Each row's manifest name, built from a dictionary (one string per source, not per row)."""
    index = np.concatenate([np.full(p.n, p.source, dtype=np.int32) if isinstance(p.source, int)
                            else p.source.astype(np.int32) for p in pieces])
    column = pa.DictionaryArray.from_arrays(pa.array(index), pa.array(list(names), pa.string()))
    return pd.arrays.ArrowStringArray(pa.chunked_array([column.cast(pa.string())]))


def _merge_predictions(table: pd.DataFrame, preds: pd.DataFrame, preds_path: str,
                       main_path: str) -> tuple[pd.Series, int]:
    """pred_text per main row ("" where unmatched) and the number of unmatched rows."""
    p_off = preds["offset"].round(6)
    m_off = table["offset"].round(6)

    def lookup(p_key: pd.Series, m_key: pd.Series) -> pd.Series:
        right = pd.DataFrame({"k": p_key.to_numpy(dtype=object), "o": p_off.to_numpy(),
                              "p": preds["pred_text"].to_numpy(dtype=object)})
        right = right.drop_duplicates(["k", "o"], keep="last")
        left = pd.DataFrame({"k": m_key.to_numpy(dtype=object), "o": m_off.to_numpy()})
        merged = left.merge(right, on=["k", "o"], how="left", sort=False)
        return merged["p"]

    found = lookup(preds["audio_filepath"], table["audio_filepath"])
    missing = found.isna().to_numpy()
    if missing.any():
        by_path = lookup(preds["audio_path"], table["audio_path"])
        found = found.where(~missing, by_path)
    unmatched = int(found.isna().sum())
    if unmatched == len(table):
        example = table["audio_filepath"].iloc[0]
        p_example = preds["audio_filepath"].iloc[0]
        raise ManifestError(
            f"{preds_path}: no line matches {main_path}: predictions are matched by audio_filepath "
            f"(as written or resolved) and offset, e.g. {main_path} has {example!r} while "
            f"{preds_path} has {p_example!r}; use the manifest that was transcribed, or --audio-base-path")
    return found.astype(pd.StringDtype("pyarrow")), unmatched


def _missing_hypothesis_warning(path: str, field_name: str, values: pd.arrays.ArrowStringArray,
                                lines: np.ndarray, sources: Any = None) -> Problem | None:
    """One warning per hypothesis field that some lines lack (absent or null), naming a few
    (``sources``, for several manifests: each row's manifest, so examples read file:line)."""
    missing = np.asarray(values.isna(), dtype=bool)
    count = int(missing.sum())
    if not count:
        return None
    rows = np.flatnonzero(missing)[:MISSING_EXAMPLES]
    shown = [int(lines[r]) for r in rows]
    if sources is not None:
        places = [f"{sources[r]}:{line}" for r, line in zip(rows, shown)]
        path = str(sources[rows[0]])
        examples = ("e.g. " if count > len(shown) else "") + ", ".join(places)
    else:
        which = ", ".join(map(str, shown))
        examples = f"e.g. lines {which}" if count > len(shown) else f"line{'s' if count > 1 else ''} {which}"
    return Problem(path, shown[0], f"{field_name} missing on {count:,} line{'s' if count > 1 else ''} "
                                   f"({examples}): left out of its scores")


def _empty_part(sources: SourceSet, shown: str, problems: list[Problem], total: int) -> Manifest:
    """A part of a manifest in which no line is valid: no rows, its problems and line count."""
    return Manifest(path=sources.manifest_path, table=pd.DataFrame(), hypotheses=[], problems=problems,
                    total_lines=total, name=sources.name, sources=[s.location for s in sources.sources],
                    shown=shown)


def _every_line_bad(shown: str, problems: list[Problem]) -> ManifestError:
    quoted = "\n  ".join(str(q) for q in problems[:QUOTED_PROBLEMS])
    more = len(problems) - QUOTED_PROBLEMS
    hint = f"\n  ... and {more} more" if more > 0 else ""
    return ManifestError(f"{shown}: no valid utterances: every line is bad:\n  {quoted}{hint}\n"
                         "sde expects one JSON object per line with audio_filepath, duration and text")


@dataclass
class _FileRead:
    """One manifest file read, with the durations and texts its lines take from other files."""

    pieces: list[_Piece]
    state: _State | None  # None: the whole file failed (several manifests: one problem for it)
    total: int
    problems: list[Problem]
    from_header: bool
    base: str


def _source_set(path: Any) -> SourceSet:
    try:
        return as_source_set(path)
    except (PatternError, RemoteError) as e:
        raise ManifestError(str(e)) from None


def _read_source(k: int, source: Source, shown: str, spec: _Spec, strict: bool, progress: bool,
                 audio_base_path: str | Path | None, *, several: bool, rows_of: int | None,
                 part: ManifestPart | None = None) -> _FileRead:
    """Read manifest number ``k``. Of several manifests, one that cannot be used at all (missing,
    empty, not a manifest) is one problem of its own, unless ``strict``."""
    base = _base_dir(source.location, audio_base_path)
    try:
        pieces, state, total = _read(source.location, spec, strict, progress, shown=shown, rows_of=rows_of,
                                     allow_empty=several or part is not None, part=part)
    except ManifestError as e:
        if not several or strict:
            raise
        return _FileRead([], None, 0, [Problem(shown, 0, _whole_file_reason(str(e), shown, source))], False, base)
    return _finish_file(k, shown, pieces, state, list(state.problems), total, base, strict, several)


def _finish_file(k: int, shown: str, pieces: list[_Piece], state: _State, problems: list[Problem], total: int,
                 base: str, strict: bool, several: bool) -> _FileRead:
    """A file's lines completed from other files (durations, texts), and tagged with the file."""
    pieces, file_problems, from_header = _fill_from_files(pieces, shown, base)
    if file_problems:
        if strict:
            raise ManifestError(f"{file_problems[0]}\n{STRICT_HINT}")
        problems = sorted(problems + file_problems, key=lambda q: q.line)
        if not pieces and not several:
            raise _every_line_bad(shown, problems)
    if several and not pieces and not problems:
        problems = [Problem(shown, 0, "no utterances: the file is empty or has only blank lines")]
    for piece in pieces:
        piece.source = k
        if several and _AUDIO_PATH not in piece.cols:  # on the reading threads, from the file's own folder
            piece.cols[_AUDIO_PATH] = _resolve(_string_column([piece], "audio_filepath"), base)
    return _FileRead(pieces, state, total, problems, from_header, base)


def _whole_file_reason(message: str, shown: str, source: Source) -> str:
    """Why one of several manifests was skipped, without repeating its name."""
    for prefix in (shown, source.location, source.given):
        message = message.removeprefix(f"{prefix}: ")
    if message.startswith(("file not found", "no such file")):
        return f"file not found ({source.given}); the other manifests are read without it"
    return message


def _read_sources(sources: SourceSet, shown: str, spec: _Spec, strict: bool, progress: bool,
                  audio_base_path: str | Path | None, part: ManifestPart | None = None) -> list[_FileRead]:
    """Every manifest of the set, several at once (see LOCAL_READ_THREADS); results in order, so
    that ids, problems and --strict's first error follow the order of the sources."""
    if not sources.several:
        return [_read_source(0, sources.sources[0], shown, spec, strict, progress, audio_base_path,
                             several=False, rows_of=None, part=part)]
    from sde.progress import progress_bar

    remote_files = sum(s.remote for s in sources.sources)
    sizes = [None if s.remote else _size_or_none(s.location) for s in sources.sources]
    rows_of = None if remote_files else sum(size or 0 for size in sizes)
    threads = REMOTE_READ_THREADS if remote_files else LOCAL_READ_THREADS
    jobs = _batches(sources, sizes)
    pool = ThreadPoolExecutor(min(threads, len(jobs)), thread_name_prefix="sde-read")
    bar = progress_bar(len(sources), f"reading {len(sources)} manifests", unit="files", enabled=progress,
                       leave=False)
    try:
        futures = [pool.submit(_read_batch, job, spec, strict, audio_base_path, rows_of) if len(job) > 1 else
                   pool.submit(_read_source, job[0][0], job[0][1], job[0][1].name, spec, strict, False,
                               audio_base_path, several=True, rows_of=rows_of)
                   for job in jobs]
        reads: list[_FileRead] = []
        for future in futures:
            done = future.result()
            reads.extend(done if isinstance(done, list) else [done])
            bar.update(len(done) if isinstance(done, list) else 1)
        bar.set_postfix_str(f"{sum(r.total for r in reads):,} lines", refresh=False)
        return reads
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)


def _size_or_none(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _batches(sources: SourceSet, sizes: list[int | None]) -> list[list[tuple[int, Source]]]:
    """Consecutive small local files joined into batches of up to BATCH_BYTES; any other file
    (remote, large, missing) is a job of its own."""
    jobs: list[list[tuple[int, Source]]] = []
    batch: list[tuple[int, Source]] = []
    batch_bytes = 0
    for k, (source, size) in enumerate(zip(sources.sources, sizes)):
        small = size is not None and size <= SMALL_FILE_BYTES
        if batch and (not small or batch_bytes + (size or 0) > BATCH_BYTES):
            jobs.append(batch)
            batch, batch_bytes = [], 0
        if small:
            batch.append((k, source))
            batch_bytes += size or 0
        else:
            jobs.append([(k, source)])
    if batch:
        jobs.append(batch)
    return jobs


class _BatchState(_State):
    """The reading state of several small files parsed as one chunk: lines are counted over the
    whole batch, and problems are told by file and line within it."""

    def __init__(self, names: list[str], first_lines: np.ndarray, spec: _Spec, strict: bool, size: int) -> None:
        super().__init__(names[0], spec, strict, size)
        self.names = names
        self.first_lines = first_lines  # lines of the batch before each file's first line

    def file_of(self, lines: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.first_lines, lines - 1, side="right") - 1

    def locate(self, problem: Problem) -> Problem:
        f = int(self.file_of(np.array([problem.line]))[0])
        return Problem(self.names[f], problem.line - int(self.first_lines[f]), problem.reason)

    def commit(self, problems: list[Problem]) -> None:
        super().commit([self.locate(q) for q in problems])


def _read_batch(batch: list[tuple[int, Source]], spec: _Spec, strict: bool, audio_base_path: str | Path | None,
                rows_of: int | None) -> list[_FileRead]:
    """Small manifests (shards) read as one: their bytes joined, parsed in one go, the rows split
    back by file. Parsing a file has a fixed cost (~2 ms) that 512 shards would pay 512 times;
    joined they cost what one file of the same lines costs."""
    buf = _batch_buffer(0)
    ends: list[int] = []  # where each kept file's bytes end in the buffer
    kept: list[tuple[int, Source]] = []
    failed: dict[int, _FileRead] = {}
    for k, source in batch:
        try:
            buf, end = _read_small_file(source, buf, ends[-1] if ends else 0)
        except ManifestError as e:
            if strict:
                raise
            failed[k] = _FileRead([], None, 0, [Problem(source.name, 0, _whole_file_reason(
                str(e), source.name, source))], False, "")
            continue
        ends.append(end)
        kept.append((k, source))
    size = ends[-1] if ends else 0
    starts = [0] + ends[:-1]
    counts = np.array([buf.count(b"\n", a, b) for a, b in zip(starts, ends)], dtype=np.int64)
    first_lines = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(kept) else counts
    names = [source.name for _, source in kept] or [batch[0][1].name]
    state = _BatchState(names, first_lines, spec, strict, rows_of or size)
    pieces: list[_Piece] = []
    if size:
        # a view of the thread's buffer: parsed values are copied out, so the next batch may reuse it
        _read_chunks(iter([(memoryview(buf)[:size], size)]), state, pieces, size, names[0], False)
    bases = [_base_dir(source.location, audio_base_path) for _, source in kept]
    problems_by_file: dict[str, list[Problem]] = {}
    for q in state.problems:
        problems_by_file.setdefault(q.path, []).append(q)
    if state.dropped:
        first = state.locate(Problem(names[0], state.dropped_first_line or 1, ""))
        state.warnings.append(Problem(first.path, first.line, f"{len(state.dropped)} more distinct fields ignored: "
                                      f"at most {state.cap} extra fields are kept for a dataset of this size"))
    reads = dict(failed)
    if len(set(bases)) == 1 and not any(_needs_other_files(p) for p in pieces):
        # The common case (shards of one folder, lines complete): the batch's pieces stay whole, each
        # row tagged with its file, and the first file's read carries them (the files are consecutive).
        rows = np.zeros(len(kept), dtype=np.int64)
        for piece in pieces:
            owner = state.file_of(piece.lines)
            rows += np.bincount(owner, minlength=len(kept))
            piece.lines = piece.lines - state.first_lines[owner]
            piece.source = np.asarray([k for k, _ in kept], dtype=np.int64)[owner]
            piece.cols[_AUDIO_PATH] = _resolve(_string_column([piece], "audio_filepath"), bases[0])
        for f, (k, source) in enumerate(kept):
            problems = problems_by_file.get(source.name, [])
            if not rows[f] and not problems:
                problems = [Problem(source.name, 0, "no utterances: the file is empty or has only blank lines")]
            reads[k] = _FileRead(pieces if f == 0 else [], state, int(counts[f]), problems, False, bases[f])
        return [reads[k] for k, _ in batch]
    by_file = _split_by_file(pieces, state, len(kept))
    for f, (k, source) in enumerate(kept):
        reads[k] = _finish_file(k, source.name, by_file[f], state, problems_by_file.get(source.name, []),
                                int(counts[f]), bases[f], strict, several=True)
    return [reads[k] for k, _ in batch]


def _needs_other_files(piece: _Piece) -> bool:
    """Whether some row takes its duration from an audio header or its text from text_filepath."""
    return bool(_null_rows(piece.cols.get("duration"), piece.n).any() or _null_rows(piece.cols.get("text"), piece.n).any())


_thread_buffers = threading.local()


def _batch_buffer(size: int) -> bytearray:
    """This thread's buffer for batches, at least ``size`` bytes: reused from batch to batch, its
    pages are allocated once, not once per batch."""
    buf = getattr(_thread_buffers, "buf", None)
    if buf is None or len(buf) < size:
        grown = bytearray(max(size, BATCH_BYTES + SMALL_FILE_BYTES))
        if buf is not None:
            grown[:len(buf)] = buf
        buf = _thread_buffers.buf = grown
    return buf


def _first_line_is_nemo(head: bytes) -> bool:
    """Whether the first line is a JSON object with an audio path: then _check_other_formats has
    nothing to say (a NeMo line rules out Lhotse, and JSON rules out CSV and Kaldi), and 512 shards
    need not each be sniffed."""
    first = head.removeprefix(b"\xef\xbb\xbf").lstrip().split(b"\n", 1)
    if len(first) < 2 or not first[0].startswith(b"{"):
        return False
    try:
        value = orjson.loads(first[0])
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and ("audio_filepath" in value or "audio_filename" in value)


def _read_small_file(source: Source, buf: bytearray, pos: int) -> tuple[bytearray, int]:
    """A small manifest read into ``buf`` at ``pos`` after the whole-file checks, without a BOM,
    ending with a newline: (the buffer, grown if need be; where the file's bytes end)."""
    f, size = _open_local(source.location, source.name)
    with f:
        buf = _batch_buffer(pos + size + 1) if len(buf) < pos + size + 1 else buf
        with memoryview(buf) as view:
            n = f.readinto(view[pos:pos + size]) or 0
    head = bytes(buf[pos:pos + min(n, 4096)])
    _head_checks(source.name, head)
    if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"["):
        _check_json_array(source.name, io.BytesIO(bytes(buf[pos:pos + n])), head)
    if not _first_line_is_nemo(head):
        _check_other_formats(source.name, io.BytesIO(bytes(buf[pos:pos + min(n, SNIFF_BYTES)])))
    if head.startswith(b"\xef\xbb\xbf"):  # a BOM is not an error
        buf[pos:pos + n - 3] = buf[pos + 3:pos + n]
        n -= 3
    if n and buf[pos + n - 1] != 10:
        buf[pos + n] = 10
        n += 1
    return buf, pos + n


def _split_by_file(pieces: list[_Piece], state: _BatchState, files: int) -> list[list[_Piece]]:
    """The batch's pieces cut where one file's rows end, with line numbers within each file."""
    out: list[list[_Piece]] = [[] for _ in range(files)]
    for piece in pieces:
        owner = state.file_of(piece.lines)
        cuts = np.concatenate([[0], np.flatnonzero(np.diff(owner)) + 1, [piece.n]])
        for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
            f = int(owner[a])
            cols = {key: col.slice(a, b - a) for key, col in piece.cols.items()}
            out[f].append(_Piece(b - a, piece.lines[a:b] - state.first_lines[f], cols))
    return out


def _present_fields(reads: list[_FileRead], pieces: list[_Piece], spec: _Spec,
                    warnings: list[Problem], shown: str) -> list[str]:
    """Fields other than the core ones that some valid line has, in order of first appearance over
    all manifests. Several manifests together keep at most as many extra fields as one would."""
    states = [r.state for r in reads if r.state is not None]
    keys = dict.fromkeys(key for state in states for key in state.accepted)
    present = [k for k in keys if k not in CORE_FIELDS and k != "audio_filename" and _has_values(pieces, k)]
    if len(states) < 2:
        return present
    cap = min(state.cap for state in states)
    extras = [k for k in present if k != "text_filepath" and not spec.is_hyp(k)]
    if len(extras) <= cap:
        return present
    dropped = set(extras[cap:])
    warnings.append(Problem(shown, 0, f"{len(dropped)} more distinct fields ignored: at most {cap} extra "
                                      "fields are kept for a dataset of this size"))
    return [k for k in present if k not in dropped]


def read_manifest(path: str | Path | Sequence[str | Path] | SourceSet, *,
                  audio_base_path: str | Path | None = None,
                  pred_fields: Sequence[str] = (), predictions: str | Path | None = None,
                  strict: bool = False, progress: bool = False, part: ManifestPart | None = None) -> Manifest:
    """Read a NeMo JSONL manifest into a validated table (see the module docstring for the rules).

    ``path``: one manifest (a file or a URL), or several, globs and NeMo shard patterns (a list, or
    a SourceSet from sde.sources.expand_sources): their lines become one table, ids in the order of
    the sources, with a ``source`` column naming each line's manifest; relative audio paths start
    from each manifest's own folder. Of several manifests, one that is missing or unusable is one
    problem (line 0) and the others load.

    Bad lines are skipped and listed in ``problems`` (``strict=True``: the first raises
    ManifestError ``path:line: reason``).  Whole-file problems (missing, directory, empty, JSON
    array, binary, no valid line) raise ManifestError with the fix.  ``progress`` shows progress on
    stderr: a bar (bytes) on a terminal, else one line when done (see sde.progress).
    ``part``: only these lines of one local manifest (a part without valid lines is no error:
    its problems say why; the table is then empty).
    """
    hyp_specs = [parse_pred_field(s) for s in pred_fields]
    explicit = frozenset(h.field for h in hyp_specs) if hyp_specs else None
    spec = _Spec(explicit_hyps=explicit)
    sources = _source_set(path)
    several = sources.several
    shown = sources.name if several else sources.sources[0].given
    reads = _read_sources(sources, shown, spec, strict, progress, audio_base_path, part)
    pieces = [p for r in reads for p in r.pieces]
    problems = [q for r in reads for q in r.problems]
    if not pieces and part is not None:
        return _empty_part(sources, shown, problems, sum(r.total for r in reads))
    if not pieces:
        raise _every_line_bad(shown, problems)
    total = sum(r.total for r in reads)
    from_header = any(r.from_header for r in reads)

    source_names = [s.name for s in sources.sources] if several else None
    data = _core_frame(pieces, [r.base for r in reads] if several else reads[0].base, source_names)
    data["duration"] = _float_column(pieces, "duration")
    if from_header:
        data["duration_source"] = pd.arrays.ArrowStringArray(
            _string_column(pieces, _DURATION_SOURCE, fill="manifest"))
    data["text"] = pd.arrays.ArrowStringArray(_string_column(pieces, "text"))
    states = {id(r.state): r.state for r in reads if r.state is not None}  # a batch shares one
    warnings = [w for state in states.values() for w in state.warnings]
    present = _present_fields(reads, pieces, spec, warnings, shown)
    n = len(data["id"])
    row_sources = data.get("source")

    merged: HypothesisField | None = None
    merged_values: pd.Series | None = None
    if predictions is not None:
        p_pieces, p_state, _ = _read(predictions, _Spec(predictions=True), strict, progress)
        p_table = pd.DataFrame(_core_frame(p_pieces, _base_dir(predictions, audio_base_path)))
        p_table["pred_text"] = pd.arrays.ArrowStringArray(_string_column(p_pieces, "pred_text"))
        problems.extend(p_state.problems)
        main = pd.DataFrame({"audio_filepath": data["audio_filepath"], "audio_path": data["audio_path"],
                             "offset": data["offset"]})
        merged_values, unmatched = _merge_predictions(main, p_table, str(predictions), shown)
        if "pred_text" not in present:
            merged = HypothesisField("pred_text", "")
        else:
            stem = re.sub(r"\W+", "_", Path(predictions).stem).strip("_") or "predictions"
            name, k = f"pred_text_{stem}", 2
            while name in present:
                name, k = f"pred_text_{stem}_{k}", k + 1
            merged = HypothesisField(name, name[len("pred_text_"):])
        if unmatched:
            row = int(np.flatnonzero(merged_values.isna().to_numpy())[0])
            first = int(data["line"][row])
            warnings.append(Problem(shown if row_sources is None else str(row_sources[row]), first,
                                    f"{unmatched} of {n} utterances have no prediction in {predictions} "
                                    f"(the first is here): left out of {merged.field}'s scores"))
        present.append(merged.field)

    if hyp_specs:
        hyps = list(hyp_specs)
        for h in hyps:
            if h.field not in present and part is None:  # a part may lack it; sde.build checks the whole
                fields = ", ".join(["audio_filepath", "duration", "text", "offset"] + present)
                raise ManifestError(f'{shown}: no line has the hypothesis field "{h.field}"; the fields '
                                    f"are: {fields}. Pass one of them to --pred-field")
        if merged is not None and merged.field not in {h.field for h in hyps}:
            hyps.append(merged)
    else:
        found = [k for k in present if _is_pred_name(k)]
        lead = ["pred_text"] if "pred_text" in found else []
        ordered = lead + sorted(k for k in found if k != "pred_text")
        hyps = [HypothesisField(k, _default_label(k)) for k in ordered]
    labels = [h.label for h in hyps]
    if len(set(labels)) != len(labels):
        dup = next(label for label in labels if labels.count(label) > 1)
        raise ManifestError(f"{shown}: two hypothesis fields have the label {dup!r} "
                            f"({', '.join(h.field for h in hyps if h.label == dup)}); "
                            "give them distinct labels with --pred-field FIELD=LABEL")
    for h in hyps:
        if merged is not None and h.field == merged.field:
            data[h.field] = merged_values.array
        else:
            # <NA> where the line has no such field: it is left out of that hypothesis's scores
            data[h.field] = pd.arrays.ArrowStringArray(_string_column(pieces, h.field))
            warning = _missing_hypothesis_warning(shown, h.field, data[h.field], data["line"], row_sources)
            if warning is not None:
                warnings.append(warning)
    hyp_names = {h.field for h in hyps}
    generated = GENERATED + (("source",) if several else ())
    for key in present:
        if key in hyp_names:
            continue
        column = f"manifest_{key}" if key in generated else key
        data[column] = _extra_column(pieces, key)

    table = pd.DataFrame(data, index=pd.RangeIndex(n))
    return Manifest(path=sources.manifest_path, table=table, hypotheses=hyps,
                    problems=problems, total_lines=total, warnings=warnings, name=sources.name,
                    sources=[s.name for s in sources.sources], shown=shown)
