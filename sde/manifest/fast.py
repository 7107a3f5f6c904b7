"""The fast path: pyarrow parses a whole chunk in C++ and the checks are vectorised; a chunk it
cannot vouch for is re-tried in parts, and only the parts that still fail go down the careful path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from sde.manifest import careful
from sde.manifest.careful import MAX_DEPTH, MAX_SECONDS, check_record, load_line
from sde.manifest.model import Problem
from sde.manifest.pieces import Piece, ReadState, Spec

# pyarrow's unit of parallel parsing; 1-4 MiB measured fastest on 2 cores.
BLOCK_BYTES = 2 << 20


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


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def parse_fast(data: bytes | memoryview, block: int, spec: Spec, strings: Sequence[str] = ()) -> pa.Table:
    schema = None
    behaviour = "infer"
    if spec.predictions:
        # only what the merge needs: other fields are not even converted
        schema = pa.schema([("audio_filepath", pa.string()), ("audio_filename", pa.string()),
                            ("offset", pa.float64()), ("pred_text", pa.string()), ("shard_id", pa.float64()),
                            ("audio_channel", pa.float64())])
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
                     state: ReadState) -> bool:
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


def fast_piece(data: bytes | memoryview, line0: int,
                state: ReadState) -> tuple[Piece, list[Problem], int] | None:
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
        table = parse_fast(data, block, spec)
        stamps = [f.name for f in table.schema if pa.types.is_temporal(f.type)]
        if stamps and not spec.predictions:
            # pyarrow turns ISO dates into timestamps; keep the text as written
            table = parse_fast(data, block, spec, stamps)
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
        ok = pc.and_(ok, pc.fill_null(_plausible_seconds(off), True))
    out: dict[str, Any] = {"audio_filepath": fp}
    if off is not None:
        out["offset"] = off
    if spec.predictions:
        pt = cols.pop("pred_text", None)
        if pt is None:
            pt = pa.nulls(n, pa.string())
        # null is a line without pred_text (kept: no prediction) or with "pred_text": null (bad):
        # only the careful path below tells them apart
        predicted_ok = np.asarray(ok, dtype=bool)
        ok = pc.and_(ok, pc.is_valid(pt))
        out["pred_text"] = pt
        shard = cols.pop("shard_id", None)
        if shard is not None and shard.null_count < n:  # NeMo tarred audio: a member name is per tar
            out["shard_id"] = shard
        channel = cols.pop("audio_channel", None)
        if channel is not None and channel.null_count < n:  # one side of a call: both share path and offset
            out["audio_channel"] = channel
        cols = {}
    else:
        dur = cols.pop("duration", None)
        dur = pa.nulls(n, pa.float64()) if dur is None else dur.cast(pa.float64())
        text = cols.pop("text", None)
        text = pa.nulls(n, pa.string()) if text is None else text.cast(pa.string())
        # a null duration is read from the audio header later (see fill_from_files)
        ok = pc.and_(ok, pc.fill_null(_plausible_seconds(dur), True))
        has_text = pc.is_valid(text)
        text_file = cols.get("text_filepath")
        if text_file is not None and text.null_count and not pa.types.is_null(text_file.type):
            if not _is_text(text_file.type):
                return None  # the careful path names the ill-typed text_filepath
            has_text = pc.or_(has_text, pc.fill_null(pc.greater(pc.utf8_length(text_file), 0), False))
        ok = pc.and_(ok, has_text)
        out["duration"] = dur
        out["text"] = text
    good = np.array(ok, dtype=bool)  # a copy: a line without pred_text is marked good below
    problems: list[Problem] = []
    bad = np.flatnonzero(~good)
    for r in bad.tolist():
        i = rows[r]
        raw = bytes(data[starts[i]:ends[i]])
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        obj, reason = load_line(raw)
        if reason is None:
            _, reason = check_record(obj, spec)
        if reason is None and spec.predictions and predicted_ok[r]:
            good[r] = True  # no pred_text at all: a line without a prediction
            continue
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
            if key in state.dropped or not len(lines):
                del cols[key]
                continue
            # A key is admitted where it first appears, with a value or not, as the careful path
            # admits it: the columns' order and the cap then do not depend on where chunks (or the
            # parts of sde.build) begin. A key without a value anywhere gets no column (reader).
            valued = np.flatnonzero(cols[key].is_valid().to_numpy(zero_copy_only=False))
            if not state.admit(key, int(lines[valued[0]] if len(valued) else lines[0])):
                del cols[key]
    out.update(cols)
    return Piece(len(lines), lines, out), problems, len(ends)


def _plausible_seconds(values: pa.ChunkedArray | pa.Array) -> pa.BooleanArray:
    """Per value, whether careful._number accepts it as seconds: finite, 0 to MAX_SECONDS (null stays null)."""
    return pc.and_(pc.is_finite(values), pc.and_(pc.greater_equal(values, 0.0), pc.less_equal(values, MAX_SECONDS)))


def _try_fast(data: bytes | memoryview, line0: int,
              state: ReadState) -> tuple[Piece, list[Problem], int] | None:
    try:
        return fast_piece(data, line0, state)
    except Exception:  # noqa: BLE001 - whatever went wrong, the careful path is the reference
        return None


def chunk_pieces(data: bytes | memoryview, line0: int,
            state: ReadState) -> Iterator[tuple[Piece, list[Problem], int]]:
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
        yield careful.careful_piece(bytes(data), line0, state)
        return
    cuts = [0] + [int(ends[k * len(ends) // SPLIT]) + 1 for k in range(1, SPLIT)] + [len(data)]
    lines = [0] + [k * len(ends) // SPLIT + 1 for k in range(1, SPLIT)]
    for k in range(SPLIT):
        part = data[cuts[k]:cuts[k + 1]]
        result = _try_fast(part, line0 + lines[k], state)
        yield result if result is not None else careful.careful_piece(bytes(part), line0 + lines[k], state)
        if isinstance(part, memoryview):
            part.release()
