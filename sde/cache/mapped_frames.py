"""Frames of fixed-width columns written as one Arrow file and read back memory-mapped, every
column a view of the file: the data-quality columns derived from a build (sde.quality.apply), kept
beside it (sde.cache.kept) so that a later start reads them instead of computing them (minutes at
10M utterances) and a server holds them as pages of a file the OS may drop, not as its own memory
(~0.5 GB at 10M, ~5 GB at 100M).

Columns are numpy numbers or booleans, or pandas' masked numbers and booleans (``Int64``, a
duplicate group that may be missing). Arrow packs booleans in bits, which numpy cannot view, so
booleans and masks are written as bytes; a masked column is its values (0 where missing) and its
mask. Any other column (text, objects) is refused with :class:`UnmappableFrame`: the caller keeps
such a frame in memory.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["UnmappableFrame", "mapped_frame", "write_frame"]

#: Schema metadata naming each column's layout: "numbers", "booleans" or "masked:<pandas dtype>".
_LAYOUT_KEY = b"sde.columns"
#: A masked column's mask is written beside its values under its name plus this.
_MASK_SUFFIX = "\x00missing"


class UnmappableFrame(TypeError):
    """A frame with a column that cannot be read back as a view of a file (text, objects)."""


def write_frame(path: str, frame: pd.DataFrame) -> None:
    """Write ``frame``'s columns (not its index) to ``path`` as one Arrow record batch."""
    arrays: list[pa.Array] = []
    names: list[str] = []
    layout: list[list[str]] = []
    for name in frame.columns:
        values = frame[name].array
        dtype = frame[name].dtype
        if isinstance(values, pd.arrays.BooleanArray | pd.arrays.IntegerArray | pd.arrays.FloatingArray):
            data = values._data  # the values under the mask; garbage where missing, zeroed here
            arrays += [pa.array(_bytes_of(np.where(values._mask, np.zeros((), data.dtype), data))),
                       pa.array(_bytes_of(values._mask))]
            names += [str(name), str(name) + _MASK_SUFFIX]
            layout.append([str(name), f"masked:{dtype}"])
            continue
        data = np.asarray(values) if isinstance(dtype, np.dtype) else None
        if data is None or data.dtype.kind not in "biuf":
            raise UnmappableFrame(f"column {name!r} ({dtype}) cannot be mapped from a file")
        arrays.append(pa.array(_bytes_of(data)))
        names.append(str(name))
        layout.append([str(name), "booleans" if data.dtype.kind == "b" else "numbers"])
    table = pa.Table.from_arrays(arrays, names=names, metadata={_LAYOUT_KEY: json.dumps(layout).encode()})
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())  # one batch: each column one contiguous buffer


def _bytes_of(data: np.ndarray) -> np.ndarray:
    return data.view(np.uint8) if data.dtype.kind == "b" else data


def mapped_frame(path: str, index: pd.Index) -> pd.DataFrame:
    """The frame :func:`write_frame` wrote to ``path``, memory-mapped (its columns read-only
    views of the file), on ``index``. ValueError when the file does not hold ``len(index)`` rows."""
    table = pa.ipc.open_file(pa.memory_map(path, "r")).read_all()
    if table.num_rows != len(index):
        raise ValueError(f"{path} holds {table.num_rows} rows, not {len(index)}")
    layout = json.loads((table.schema.metadata or {})[_LAYOUT_KEY])

    def view(name: str) -> np.ndarray:
        column = table[name]
        chunk = column.chunk(0) if column.num_chunks else pa.array([], column.type)
        return chunk.to_numpy(zero_copy_only=True)

    columns: dict[str, object] = {}
    for name, kind in layout:
        if kind == "numbers":
            columns[name] = view(name)
        elif kind == "booleans":
            columns[name] = view(name).view(np.bool_)
        else:
            dtype = pd.api.types.pandas_dtype(kind.removeprefix("masked:"))
            data = view(name)
            mask = view(name + _MASK_SUFFIX).view(np.bool_)
            columns[name] = dtype.construct_array_type()(data.view(np.bool_) if dtype.kind == "b" else data, mask,
                                                         copy=False)
    return pd.DataFrame(columns, index=index, copy=False)
