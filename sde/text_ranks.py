"""Dense ranks of a text column in byte order (the order DuckDB sorts text in), on every core and in
bounded memory: sorts by a ranked column compare integers instead of strings.

Arrow ranks a column on one core, the whole column in memory beside its sort (10M transcripts:
9-13 s, ~0.9 GB). Here the values are cut into ranges by a key: their 8 bytes after the start
all of them share (none for transcripts; "/data/corpus/" for paths), a big-endian integer that
orders them as their bytes do (a shorter value's missing bytes read as 0, and a value sorts
after its prefixes). Every value of a range sorts after every value of the ranges before it, so
each range is ranked alone, several on threads at once (Arrow lets go of the GIL), sorted by
key then text; a value's rank is its rank in its range plus the distinct values of the ranges
before. The column is read in passes, each holding only its ranges' values (10M transcripts:
8-11 s on two cores, 0.55-0.73 GB at the most; Arrow's rank of the column read whole took 11-12 s
and 1.13 GB).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sde.engine import release_freed_memory

__all__ = ["MAX_RANGE_BYTES", "PASS_BYTES", "prefix_keys", "text_dense_ranks"]

#: The most text one pass holds by default: a 10M-line transcript column (~0.7 GB) takes six.
PASS_BYTES = 128 << 20
#: The most text of one range: the ranges of a pass are ranked a thread each, and each thread holds a
#: copy of its range's values beside the pass's.
MAX_RANGE_BYTES = 64 << 20
#: Values sampled to set the ranges' bounds.
SAMPLE_ROWS = 1 << 16
#: The allocator of the passes' copies: glibc's, whose freed memory release_freed_memory hands back
#: (mimalloc, Arrow's default, kept ~0.3 GB of it).
_POOL = pa.system_memory_pool
#: Rows of the per-row arrays worked on at a time, where a whole column's temporaries would be big.
_BLOCK_ROWS = 1 << 20


def prefix_keys(chunk: pa.Array, skip: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(each value's 8 bytes after the first ``skip`` as a big-endian uint64, missing bytes 0; its
    length in bytes) of a string or large_string array; missing values get key 0 and length 0. The
    keys order the values as their bytes do where all of them share their first ``skip`` bytes."""
    n = len(chunk)
    if n == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    offset_type = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    _, offsets_buffer, data_buffer = chunk.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type, count=n + 1,
                            offset=chunk.offset * np.dtype(offset_type).itemsize).astype(np.int64)
    lengths = np.diff(offsets)
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None and data_buffer.size else None
    if data is None:
        return np.zeros(n, dtype=np.uint64), lengths
    starts, remaining, last = offsets[:-1] + skip, lengths - skip, len(data) - 1
    keys = np.zeros(n, dtype=np.uint64)
    for i in range(8):  # a byte at a time: a gather of all 8 at once takes 64 bytes a value
        byte = data[np.minimum(starts + i, last)].astype(np.uint64)
        byte[remaining <= i] = 0
        keys |= byte << np.uint64(56 - 8 * i)
    if chunk.null_count:
        missing = np.asarray(chunk.is_null())
        keys[missing] = 0
        lengths[missing] = 0
    return keys, lengths


def text_dense_ranks(read: Callable[[], Iterable[pa.Array]], rows: int, pass_bytes: int | None = None,
                     workers: int = 1) -> pa.Array:
    """Each row's dense rank from 1 among the values of a text column in byte order (equal values
    share one; uint32, uint64 from 2**32 rows), null where the value is missing. ``read()`` gives
    the column's values in order, as string arrays, each call from its start: it is called once
    for the values' keys, then once per pass over ranges that hold at most ``pass_bytes`` of text
    together (default :data:`PASS_BYTES`; a range bigger than that, one 8-byte start shared by
    more text, is a pass of its own). A pass holds a copy of its values; ``workers`` threads rank
    its ranges, each holding copies of its range's values (:data:`MAX_RANGE_BYTES` at most, one
    8-byte start aside). Memory beside those: 15 bytes a row while the keys are read and cut into
    ranges, 7 after."""
    pass_bytes = PASS_BYTES if pass_bytes is None else pass_bytes
    dtype = np.uint32 if rows < 2**32 else np.uint64
    keys = np.zeros(rows, dtype=np.uint64)
    lengths = np.zeros(rows, dtype=np.int32)  # of one value: under 2 GB, as Arrow's strings
    present = np.zeros(rows, dtype=bool)
    skip = _read_keys(read, 0, keys, lengths, present)
    if skip:  # every value starts the same (paths): keys after that start tell them apart
        _read_keys(read, skip, keys, lengths, present)
    range_bytes_wanted = min(MAX_RANGE_BYTES, max(1, pass_bytes // (2 * max(workers, 1))))
    range_of = _ranges(keys, lengths, present, range_bytes_wanted)
    del keys
    ranges = int(range_of.max()) + 1 if rows else 0
    range_bytes = _range_bytes(range_of, lengths, present, ranges)
    del lengths
    ranks = np.zeros(rows, dtype=dtype)
    distinct = np.zeros(ranges, dtype=dtype)
    with ThreadPoolExecutor(max(workers, 1), thread_name_prefix="sde-rank") as pool:
        for first, stop in _passes(range_bytes, pass_bytes):
            values, positions = _in_ranges(read, range_of, present, first, stop)
            for r, (at, local) in enumerate(zip(positions, pool.map(_range_ranks, values, [skip] * len(values))), first):
                if len(local):
                    ranks[at] = local
                    distinct[r] = local.max()
            del values, positions
            release_freed_memory()  # the pass's copies: else the allocator keeps them (~0.5 GB at 10M)
    before = np.concatenate([np.zeros(1, dtype=dtype), np.cumsum(distinct, dtype=dtype)[:-1]]) if ranges else distinct
    for start in range(0, rows, _BLOCK_ROWS):  # a missing value's rank is masked
        ranks[start:start + _BLOCK_ROWS] += before[range_of[start:start + _BLOCK_ROWS]]
    return pa.array(ranks) if present.all() else pa.array(ranks, mask=~present)


def _read_keys(read: Callable[[], Iterable[pa.Array]], skip: int, keys: np.ndarray, lengths: np.ndarray,
               present: np.ndarray) -> int:
    """Read the column once for each value's key after ``skip`` bytes, its length, whether it is
    present; the length of the start every present value shares (that of its least and greatest)."""
    rows, done = len(keys), 0
    bounds: tuple[bytes, bytes] | None = None
    for chunk in read():
        end = done + len(chunk)
        if end > rows:
            done = end
            break
        keys[done:end], lengths[done:end] = prefix_keys(chunk, skip)
        present[done:end] = True if not chunk.null_count else ~np.asarray(chunk.is_null())
        bounds = _widened(bounds, chunk)
        done = end
    if done != rows:
        raise ValueError(f"the column gave {'more' if done > rows else 'fewer'} values than its {rows:,} rows")
    return _shared_start(bounds)


def _widened(bounds: tuple[bytes, bytes] | None, chunk: pa.Array) -> tuple[bytes, bytes] | None:
    """The least and greatest value (as bytes) of those ``bounds`` span and of ``chunk``'s present
    values."""
    if chunk.null_count == len(chunk):
        return bounds
    got = pc.min_max(chunk)
    low, high = got["min"].as_py().encode(), got["max"].as_py().encode()
    return (low, high) if bounds is None else (min(bounds[0], low), max(bounds[1], high))


def _shared_start(bounds: tuple[bytes, bytes] | None) -> int:
    """How many bytes every value between ``bounds`` (least, greatest) starts with alike: those its
    least and greatest share (0 with no value)."""
    return 0 if bounds is None else len(os.path.commonprefix(bounds))


def _range_ranks(pieces: list[pa.Array], skip: int = 0) -> np.ndarray:
    """The dense ranks from 1 of one range's values (none missing), whose first ``skip`` bytes are
    alike. Sorted by their keys first, most comparisons are of two integers (~2.5x faster than
    Arrow's rank of the strings alone). A range over twice :data:`MAX_RANGE_BYTES` (one key held by
    many values) is ranked as a column of its own, keyed after the start its values share where
    that start is longer (each such step goes deeper into the values: it ends)."""
    if not pieces:
        return np.zeros(0, dtype=np.uint64)
    size = sum(piece.nbytes for piece in pieces)
    if size > 2 * MAX_RANGE_BYTES:
        if _shared_start(functools.reduce(_widened, pieces, None)) > skip:
            rows = sum(len(piece) for piece in pieces)
            return text_dense_ranks(lambda: iter(pieces), rows, 2 * MAX_RANGE_BYTES).to_numpy().astype(np.uint64)
    keys = np.concatenate([prefix_keys(piece, skip)[0] for piece in pieces])
    values = pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces, memory_pool=_POOL())
    order = pc.sort_indices(pa.table({"k": keys, "v": values}), sort_keys=[("k", "ascending"), ("v", "ascending")],
                            memory_pool=_POOL())
    in_order = pc.take(values, order, memory_pool=_POOL())
    new = np.ones(len(values), dtype=bool)
    if len(values) > 1:
        new[1:] = pc.not_equal(in_order.slice(1), in_order.slice(0, len(values) - 1), memory_pool=_POOL()).to_numpy(zero_copy_only=False)
    ranks = np.empty(len(values), dtype=np.uint64)
    ranks[order.to_numpy()] = np.cumsum(new, dtype=np.uint64)
    return ranks


def _in_ranges(read: Callable[[], Iterable[pa.Array]], range_of: np.ndarray, present: np.ndarray,
               first: int, stop: int) -> tuple[list[list[pa.Array]], list[np.ndarray]]:
    """For each range ``first`` to ``stop`` (exclusive): its values, as pieces of a new read of the
    column, and their rows."""
    values: list[list[pa.Array]] = [[] for _ in range(first, stop)]
    rows: list[list[np.ndarray]] = [[] for _ in range(first, stop)]
    bounds = np.arange(first, stop + 1)
    done = 0
    for chunk in read():
        of_chunk = range_of[done:done + len(chunk)]
        local = np.flatnonzero(present[done:done + len(chunk)] & (of_chunk >= first) & (of_chunk < stop))
        if len(local):
            by_range = np.argsort(of_chunk[local], kind="stable")
            local = local[by_range]
            taken = pc.take(chunk, pa.array(local), memory_pool=_POOL())
            edges = np.searchsorted(of_chunk[local], bounds).tolist()
            for i, (a, b) in enumerate(zip(edges, edges[1:])):
                if b > a:
                    values[i].append(taken.slice(a, b - a))
                    rows[i].append(done + local[a:b])
        done += len(chunk)
    return values, [np.concatenate(r) if r else np.zeros(0, dtype=np.int64) for r in rows]


def _ranges(keys: np.ndarray, lengths: np.ndarray, present: np.ndarray, range_bytes: int) -> np.ndarray:
    """Each row's range (uint16 or more), ranges in key order, bounds set from a sample of the present
    rows so that a range holds about ``range_bytes`` of text; rows of one key share a range. A missing
    value has length 0: it weighs nothing."""
    count = int(np.count_nonzero(present))
    wanted = -(-(int(lengths.sum(dtype=np.int64)) + count) // range_bytes)
    if count == 0 or wanted <= 1:
        return np.zeros(len(keys), dtype=np.uint16)
    sample = np.arange(0, len(keys), max(1, len(keys) // SAMPLE_ROWS))
    sample = sample[present[sample]]
    if not len(sample):
        sample = np.flatnonzero(present)[:SAMPLE_ROWS]
    order = np.argsort(keys[sample], kind="stable")
    sampled = keys[sample][order]
    weight = np.cumsum(lengths[sample][order] + 1, dtype=np.float64)
    cuts = np.searchsorted(weight, weight[-1] * np.arange(1, wanted) / wanted)
    bounds = np.unique(sampled[np.minimum(cuts, len(sampled) - 1)])
    bounds = bounds[bounds > sampled[0]]  # a range starts at each bound: none empty at the start
    found = np.empty(len(keys), dtype=np.uint16 if len(bounds) < 2**16 else np.uint32)
    for start in range(0, len(keys), _BLOCK_ROWS):  # by block: a whole column's int64 answer is 80 MB at 10M
        found[start:start + _BLOCK_ROWS] = np.searchsorted(bounds, keys[start:start + _BLOCK_ROWS], side="right")
    return found


def _range_bytes(range_of: np.ndarray, lengths: np.ndarray, present: np.ndarray, ranges: int) -> np.ndarray:
    """The text of each range, one byte more per present value, counted block by block."""
    total = np.zeros(ranges, dtype=np.float64)
    for start in range(0, len(range_of), _BLOCK_ROWS):
        block = slice(start, start + _BLOCK_ROWS)
        total += np.bincount(range_of[block], weights=lengths[block] + present[block], minlength=ranges)
    return total


def _passes(range_bytes: np.ndarray, pass_bytes: int) -> list[tuple[int, int]]:
    """Runs of consecutive ranges (first, stop) of at most ``pass_bytes`` each, or one range alone."""
    passes, first, held = [], 0, 0.0
    for r, size in enumerate(range_bytes.tolist()):
        if r > first and held + size > pass_bytes:
            passes.append((first, r))
            first, held = r, 0.0
        held += size
    if len(range_bytes):
        passes.append((first, len(range_bytes)))
    return passes
