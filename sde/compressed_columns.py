"""String columns kept compressed on disk and read a batch at a time.

Transcripts, hypotheses and audio paths are most of a dataset's bytes. Stored plainly they made a
built dataset 1.7× its manifest; compressed (zstd, Arrow IPC record batches of :data:`BATCH_ROWS`
rows) they take about a third. A page of rows decompresses only the batches its rows are in
(~0.2 ms each, the last few kept); a query that needs the whole column (a ``contains`` filter, a
sort by text) streams it through DuckDB batch by batch, so memory stays bounded whatever the size.

:class:`CompressedColumn` is one such file; :class:`CompressedStringArray` is the pandas array over
it, so every table view, API route and analysis that takes rows (``df.iloc[rows]``, ``s.iat[i]``)
reads only those rows, and any other use still works: it reads the column whole (kept when small,
see :meth:`CompressedColumn.read_all`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import is_integer
from pandas.core.arrays.string_arrow import ArrowStringArray

from sde.caching import LRUCache
from sde.filters.engine import holds_no_ascii_upper

__all__ = ["BATCH_ROWS", "CompressedColumn", "CompressedStringArray", "compressible", "is_compressed",
           "read_strings", "write_compressed"]

# Rows per compressed batch: small enough that a page of 50 scattered rows decompresses in a few
# ms, large enough that zstd still finds the text's repetitions (4,096 rows compress as well as 64K).
BATCH_ROWS = 4_096
CODEC = "zstd"
# Decompressed batches kept per column (~4,096 rows of ~70 bytes each: ~300 KB a batch).
CACHED_BATCHES = 64
#: Bytes of whole decompressed columns kept, all columns together (one column at most a quarter):
#: short label columns stay read; a transcript column of millions of rows is read per use.
WHOLE_BYTES = 512 * 2**20
_WHOLE = LRUCache(WHOLE_BYTES, size_of=lambda array: array.nbytes)
_MARK = b"sde.compressed"


def compressible(type_: pa.DataType) -> bool:
    """Whether a column of this type is stored compressed: every string column is (short labels too: a
    speaker column compresses ~10×, and one read whole is kept in memory while it is small)."""
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def read_strings(values: pd.Series) -> pa.ChunkedArray:
    """A string column's values as Arrow large strings for one whole-column computation: a
    compressed column is read whole (CompressedColumn.read_all), any other shares its buffers
    where it can."""
    array = values.array
    if isinstance(array, CompressedStringArray) and array.compressed is not None:
        return array.compressed.read_all()
    got = array.__arrow_array__() if hasattr(array, "__arrow_array__") else pa.array(values, from_pandas=True)
    got = got if isinstance(got, pa.ChunkedArray) else pa.chunked_array([got])
    return got if got.type == pa.large_string() else got.cast(pa.large_string())


def _data_bytes(array: pa.Array | pa.ChunkedArray) -> int:
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    total = 0
    for chunk in chunks:
        if len(chunk):
            offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64 if pa.types.is_large_string(chunk.type) else np.int32)
            total += int(offsets[chunk.offset + len(chunk)] - offsets[chunk.offset])
    return total


def write_compressed(path: str | Path, name: str, arrays: Iterable[pa.Array | pa.ChunkedArray]) -> int:
    """Write the string values of ``arrays`` (in order) as column ``name`` of a compressed Arrow
    file at ``path`` (batches of BATCH_ROWS rows); returns its row count. The caller makes the
    write atomic. What a reader asks of the whole column (nulls, size, case) is counted on the way
    and kept with the last batch, so no answer needs the column read."""
    schema = pa.schema([pa.field(name, pa.large_string())], metadata={_MARK: b"1"})
    options = pa.ipc.IpcWriteOptions(compression=CODEC)
    stats = {"rows": 0, "nulls": 0, "bytes": 0, "lower": True}
    pending: list[pa.Array] = []
    pending_rows = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema, options=options) as writer:
        def write(final: bool) -> None:
            nonlocal pending, pending_rows
            joined = pa.concat_arrays(pending) if pending else pa.array([], pa.large_string())
            start = 0
            while len(joined) - start >= BATCH_ROWS or (final and start < len(joined)):
                piece = joined.slice(start, BATCH_ROWS)
                start += len(piece)
                last = final and start == len(joined)
                writer.write_batch(pa.record_batch([piece], schema=schema),
                                   custom_metadata=_stats_metadata(stats) if last else None)
            if final and len(joined) == 0:  # no rows: an empty batch carries the counts
                writer.write_batch(pa.record_batch([joined], schema=schema), custom_metadata=_stats_metadata(stats))
            pending = [joined.slice(start)] if start < len(joined) else []
            pending_rows = len(joined) - start

        for array in arrays:
            for chunk in (array.chunks if isinstance(array, pa.ChunkedArray) else [array]):
                if chunk.type != pa.large_string():
                    chunk = chunk.cast(pa.large_string())
                stats["rows"] += len(chunk)
                stats["nulls"] += chunk.null_count
                stats["bytes"] += _data_bytes(chunk)
                stats["lower"] = stats["lower"] and holds_no_ascii_upper(chunk)
                pending.append(chunk)
                pending_rows += len(chunk)
                if pending_rows >= BATCH_ROWS:
                    write(final=False)
        write(final=True)
    return int(stats["rows"])


def _stats_metadata(stats: dict) -> dict[str, str]:
    return {"sde.rows": str(stats["rows"]), "sde.nulls": str(stats["nulls"]), "sde.bytes": str(stats["bytes"]),
            "sde.no_ascii_upper": "1" if stats["lower"] else "0"}


def is_compressed(schema: pa.Schema) -> bool:
    """Whether an Arrow file with this schema is a compressed column (read it with CompressedColumn)."""
    return len(schema) == 1 and pa.types.is_large_string(schema.field(0).type) and _MARK in (schema.metadata or {})


class CompressedColumn:
    """One compressed string column file: its rows by batch, by position, or streamed whole."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._source = pa.memory_map(self.path, "r")
        self._reader = pa.ipc.open_file(self._source)
        self.name = self._reader.schema.field(0).name
        self.batches = self._reader.num_record_batches
        self._lock = threading.Lock()
        self._cache = LRUCache(CACHED_BATCHES)
        self._recent: weakref.ref | None = None
        self._whole_lock = threading.Lock()
        if not self.batches:
            raise ValueError(f"{self.path} holds no batch: not a compressed column written by sde")
        _, meta = self._reader.get_batch_with_custom_metadata(self.batches - 1)
        stats = {k.decode(): v.decode() for k, v in (meta or {}).items()}
        try:
            self.rows = int(stats["sde.rows"])
            #: Null values in the column.
            self.null_count = int(stats["sde.nulls"])
            #: Whether no value holds A-Z, ſ or K (see sde.filters.engine.holds_no_ascii_upper).
            self.no_ascii_upper = stats["sde.no_ascii_upper"] == "1"
            data_bytes = int(stats["sde.bytes"])
        except (KeyError, ValueError):
            raise ValueError(f"{self.path} lacks its column counts: not a compressed column written by sde") from None
        #: Bytes of the values once decompressed (what pandas would hold).
        self.nbytes = data_bytes + 8 * (self.rows + 1) + (self.rows + 7) // 8 * bool(self.null_count)

    def __len__(self) -> int:
        return self.rows

    def batch(self, i: int) -> pa.Array:
        """Batch ``i`` decompressed (the last ones asked are kept)."""
        got = self._cache.get(i)
        if got is None:
            with self._lock:  # one reader: Arrow's file reader is not documented thread-safe
                got = self._reader.get_batch(i).column(0)
            self._cache.put(i, got)
        return got

    def take(self, indices: np.ndarray) -> pa.Array:
        """The values at these positions (0 ≤ each < len), as one large_string array."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) == 0:
            return pa.array([], pa.large_string())
        which = indices // BATCH_ROWS
        wanted = np.unique(which)
        pieces = [self.batch(int(b)) for b in wanted]
        if len(wanted) == 1:
            return pieces[0].take(pa.array(indices - int(wanted[0]) * BATCH_ROWS))
        joined = pa.concat_arrays(pieces)
        starts = np.searchsorted(wanted, which) * BATCH_ROWS  # batch b sits at its rank's offset
        return joined.take(pa.array(starts + indices % BATCH_ROWS))

    def chunks(self) -> Iterator[pa.Array]:
        """Every batch in order, decompressed one at a time (not kept)."""
        for i in range(self.batches):
            cached = self._cache.get(i)
            if cached is not None:
                yield cached
                continue
            with self._lock:
                got = self._reader.get_batch(i).column(0)
            yield got

    def read_all(self) -> pa.ChunkedArray:
        """The whole column decompressed (memory: its plain size). Kept while it fits in a
        shared budget of :data:`WHOLE_BYTES` (a speaker column read by every breakdown), else only
        while a caller still holds it (several steps of one computation share one read)."""
        kept = _WHOLE.get(self.path)
        if kept is None and self._recent is not None:
            kept = self._recent()
        if kept is not None:
            return kept
        with self._whole_lock:  # two threads asking at once read it once
            kept = self._recent() if self._recent is not None else None
            if kept is None:
                kept = pa.chunked_array(list(self.chunks()), pa.large_string())
                self._recent = weakref.ref(kept)
                _WHOLE.put(self.path, kept)
        return kept

    def dataset(self):
        """The file as a pyarrow dataset, for DuckDB to scan in parallel, batch by batch."""
        import pyarrow.dataset as ds

        return ds.dataset(self.path, format="ipc")

    def __reduce__(self):
        return (CompressedColumn, (self.path,))


class CompressedStringArray(ArrowStringArray):
    """pandas' Arrow-backed string array over a :class:`CompressedColumn`: takes and single values
    read only their batches; anything else reads the column whole (CompressedColumn.read_all
    says for how long it is kept). A value set into it makes it a plain ArrowStringArray in all
    but name. Built with :meth:`over`."""

    _column: CompressedColumn | None = None
    _loaded: pa.ChunkedArray | None = None

    @classmethod
    def over(cls, column: CompressedColumn, dtype: pd.StringDtype | None = None) -> "CompressedStringArray":
        array = cls.__new__(cls)
        array._column = column
        array._loaded = None
        array._dtype = dtype if dtype is not None else pd.StringDtype("pyarrow")
        array._cache = {}
        array._readonly = False
        return array

    @property  # type: ignore[override]
    def _pa_array(self) -> pa.ChunkedArray:
        if self._loaded is None:
            assert self._column is not None
            return self._column.read_all()  # not kept by the array: see CompressedColumn.read_all
        return self._loaded

    @_pa_array.setter
    def _pa_array(self, value: pa.ChunkedArray) -> None:
        self._loaded = value

    @property
    def compressed(self) -> CompressedColumn | None:
        """The file behind the array while it has not been read whole (None after)."""
        return self._column if self._loaded is None else None

    def __len__(self) -> int:
        column = self.compressed
        return len(column) if column is not None else super().__len__()

    @property
    def nbytes(self) -> int:
        column = self.compressed
        return column.nbytes if column is not None else super().nbytes

    def isna(self) -> np.ndarray:
        column = self.compressed
        if column is not None and column.null_count == 0:
            return np.zeros(len(column), dtype=bool)
        return super().isna()

    def copy(self) -> "CompressedStringArray":
        column = self.compressed
        if column is None:
            return super().copy()
        return type(self).over(column, self._dtype)  # the file never changes: sharing it is a copy

    def view(self, dtype=None):
        column = self.compressed
        if column is None or dtype is not None:
            return super().view(dtype)
        return type(self).over(column, self._dtype)

    def take(self, indices, *, allow_fill: bool = False, fill_value=None):
        column = self.compressed
        if column is None:
            return super().take(indices, allow_fill=allow_fill, fill_value=fill_value)
        idx = np.asarray(indices, dtype=np.int64)
        n = len(column)
        missing = np.zeros(len(idx), dtype=bool)
        if allow_fill:
            if (idx < -1).any():
                raise ValueError("Invalid value in 'indices': only -1 may mark a missing value")
            missing = idx == -1
            if fill_value is not None and not pd.isna(fill_value):
                return super().take(indices, allow_fill=allow_fill, fill_value=fill_value)
        else:
            idx = np.where(idx < 0, idx + n, idx)
        if ((idx[~missing] < 0) | (idx[~missing] >= n)).any():
            raise IndexError("out of bounds value in 'indices'.")
        values = column.take(np.where(missing, 0, idx))
        if missing.any():
            values = pc.if_else(pa.array(missing), pa.scalar(None, pa.large_string()), values)
        return ArrowStringArray(values, dtype=self._dtype)

    def __getitem__(self, item):
        column = self.compressed
        if column is None:
            return super().__getitem__(item)
        if is_integer(item):
            i = int(item)
            if not -len(column) <= i < len(column):
                raise IndexError(f"index {i} is out of bounds for a column of {len(column)} rows")
            value = column.take(np.array([i % len(column)])).to_pylist()[0]
            return self._dtype.na_value if value is None else value
        if isinstance(item, slice):
            return self.take(np.arange(len(column))[item])
        if isinstance(item, np.ndarray) and item.dtype.kind in "iu" and item.ndim == 1:
            return self.take(item)
        if isinstance(item, np.ndarray) and item.dtype == bool and item.shape == (len(column),):
            return self.take(np.flatnonzero(item))
        return super().__getitem__(item)

    def __reduce__(self):
        column = self.compressed
        if column is None:
            return (_plain, (self._loaded, self._dtype))
        return (_reopen, (column.path, self._dtype))


def _plain(values: pa.ChunkedArray, dtype: pd.StringDtype) -> ArrowStringArray:
    return ArrowStringArray(values, dtype=dtype)


def _reopen(path: str, dtype: pd.StringDtype) -> CompressedStringArray:
    return CompressedStringArray.over(CompressedColumn(path), dtype)
