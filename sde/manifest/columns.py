"""The table's columns assembled from the pieces of every file read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.manifest.paths import resolve_paths
from sde.manifest.pieces import AUDIO_PATH, Piece


def _parts(pieces: list[Piece], name: str) -> list[pa.Array | pa.ChunkedArray | None]:
    return [p.cols.get(name) for p in pieces]


def string_column(pieces: list[Piece], name: str, fill: str | None = None) -> pa.ChunkedArray:
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


def float_column(pieces: list[Piece], name: str, fill: float | None = None) -> np.ndarray:
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


def shard_column(pieces: list[Piece]) -> np.ndarray:
    """Each line's ``shard_id`` (NeMo tarred audio: what tells apart members of one name in two
    tars) as a float, NaN where absent or not a whole number."""
    out = np.full(sum(p.n for p in pieces), np.nan, dtype=np.float64)
    pos = 0
    for p, part in zip(pieces, _parts(pieces, "shard_id")):
        if part is not None:
            out[pos:pos + p.n] = shard_numbers(part)
        pos += p.n
    return out


def shard_numbers(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Shard ids as floats, NaN where missing or not a whole number (JSON may give "3" or 3.0)."""
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    else:
        numbers = pd.to_numeric(pd.Series(values.cast(pa.string()).to_pylist(), dtype=object),
                                errors="coerce").to_numpy(dtype=np.float64)
    return np.where(np.isfinite(numbers) & (numbers == np.round(numbers)), numbers, np.nan)


def extra_column(pieces: list[Piece], name: str) -> Any:
    """Numbers stay numeric (int64 when integral and complete), anything else becomes string."""
    parts = _parts(pieces, name)
    types = {part.type for part in parts if part is not None} - {pa.null()}
    if types and all(pa.types.is_integer(t) for t in types):
        nulls = sum(p.n if part is None else part.null_count for p, part in zip(pieces, parts))
        if not nulls:
            return np.concatenate([part.cast(pa.int64()).to_numpy() for part in parts])
    if types and all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        return float_column(pieces, name)
    return pd.arrays.ArrowStringArray(string_column(pieces, name))


def has_values(pieces: list[Piece], name: str) -> bool:
    return any(part is not None and part.null_count < len(part) for part in _parts(pieces, name))


def core_frame(pieces: list[Piece], base: str | Sequence[str],
                source_names: Sequence[str] | None = None) -> dict[str, Any]:
    """id, (source,) line, audio_filepath, audio_path, offset. ``base``: one folder, or one per
    source (relative audio paths of each manifest start from its own folder); ``source_names``
    (several manifests): the `source` column's value for each source."""
    n = sum(p.n for p in pieces)
    fp = string_column(pieces, "audio_filepath")
    if isinstance(base, str):
        resolved = resolve_paths(fp, base)
    elif all(AUDIO_PATH in p.cols for p in pieces):
        resolved = string_column(pieces, AUDIO_PATH)
    else:
        resolved = pa.chunked_array([chunk for p in pieces for chunk in resolve_paths(
            string_column([p], "audio_filepath"), base[p.source]).chunks], pa.string())
    frame: dict[str, Any] = {"id": np.arange(n, dtype=np.int64)}
    if source_names is not None:
        frame["source"] = _source_column(pieces, source_names)
    frame.update({
        "line": np.concatenate([p.lines for p in pieces]),
        "audio_filepath": pd.arrays.ArrowStringArray(fp),
        "audio_path": pd.arrays.ArrowStringArray(resolved),
        "offset": float_column(pieces, "offset", fill=0.0),
    })
    return frame


def _source_column(pieces: list[Piece], names: Sequence[str]) -> pd.arrays.ArrowStringArray:
    """Each row's manifest name, built from a dictionary (one string per source, not per row)."""
    index = np.concatenate([np.full(p.n, p.source, dtype=np.int32) if isinstance(p.source, int)
                            else p.source.astype(np.int32) for p in pieces])
    column = pa.DictionaryArray.from_arrays(pa.array(index), pa.array(list(names), pa.string()))
    return pd.arrays.ArrowStringArray(pa.chunked_array([column.cast(pa.string())]))
