"""Which lines of a transcript column hold each join of two words: the byte that ends a word and
the byte that starts the next, around the one space between them.

A regex that may match a space at one character (``e.t``: "e", any character, "t") matches a
line where a word holds a match, or where a word ending in "e" is followed by one starting with
"t". The word index (sde.word_index) answers the first from the distinct words, and narrows the
second by the words that end or start so; where those words are in most lines ("the", "he",
"to", ...), every line was searched for the text "e t" (10M lines: ~0.4 s on two cores). The
lines holding the join "e"/"t" are that search's answer, read from this index in milliseconds;
for longer pieces (``th.s``: "h"/"s") they narrow the lines left to test.

Per segment of the column (sde.word_index.SEGMENT_BYTES of text), each join present is kept as
the segment's rows holding it (4 bytes a row), or as a bit per row of the segment where more than
:data:`BITS_SHARE` of its rows hold it. At 10M lines of ~12 words: ~0.25 GB, ~6 s on two cores
(numpy, a segment a thread).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["BITS_SHARE", "JoinSegment", "WordJoins", "join_code", "or_bits", "segment_joins"]

#: A join in more than this share of a segment's rows is kept as a bit per row (1/8 byte) instead
#: of its rows (4 bytes each): the smaller of the two.
BITS_SHARE = 1 / 32
#: Joins kept as bits are marked this many at a time (a grid of a bool per join and row).
_BITS_AT_ONCE = 32
_BLOCK_ROWS = 1 << 15
_SPACE = 32


def join_code(join: str) -> int:
    """The code of a join written as its two characters (ASCII: one byte each): ``"et"``."""
    before, after = join.encode("ascii")
    return (before << 8) | after


@dataclass(frozen=True)
class JoinSegment:
    """One segment's joins: ``codes``, those present (sorted); per code, its rows in the segment
    (uint32 positions from ``base``) or, where ``bits`` says so, a bit per row (little-endian)."""

    base: int
    rows: int
    codes: np.ndarray
    bits: np.ndarray
    kept: tuple[np.ndarray, ...]

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.bits.nbytes + sum(k.nbytes for k in self.kept))


@dataclass(frozen=True)
class WordJoins:
    """The joins of a column of ``rows`` lines, a segment at a time (see the module's doc)."""

    rows: int
    segments: tuple[JoinSegment, ...]

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.segments)

    def rows_joining(self, joins: Iterable[str]) -> np.ndarray:
        """Per row, whether its line holds one of these joins (each two ASCII characters: ``"et"``,
        a word ending in "e" then, after one space, one starting with "t")."""
        wanted = np.array(sorted({join_code(j) for j in joins}), dtype=np.uint16)
        mask = np.zeros(self.rows, dtype=bool)
        for segment in self.segments:
            rows = mask[segment.base:segment.base + segment.rows]
            for i in np.flatnonzero(np.isin(segment.codes, wanted)).tolist():
                if segment.bits[i]:
                    or_bits(rows, segment.kept[i])
                else:
                    rows[segment.kept[i]] = True
        return mask


def or_bits(mask: np.ndarray, bits: np.ndarray) -> None:
    """Mark in ``mask`` (a bool per row) the rows whose bit is set in ``bits`` (little-endian, a bit a row)."""
    mask |= np.unpackbits(bits, count=len(mask), bitorder="little").view(bool)


def segment_joins(base: int, chunks: Sequence[pa.Array]) -> JoinSegment:
    """The joins of the lines in ``chunks`` (strings of one type, in order), the first of them row
    ``base``. Each block's joins are kept as found (4 bytes a join: a row within a block of
    :data:`_BLOCK_ROWS` fits 2) until the counts say which are common; then each block marks its
    common joins' bits and hands on its rare ones: ~0.1 GB for a segment of 64 MB of text, where a
    grid and a sort over the whole segment took ~0.28 GB."""
    found: list[tuple[int, np.ndarray, np.ndarray]] = []  # (first row, codes, rows within the block)
    seen = np.zeros(1 << 16, dtype=np.int64)
    count = 0
    for block in _blocks(chunks):
        codes, at = _chunk_joins(block)
        seen += np.bincount(codes, minlength=1 << 16)
        found.append((count, codes, at.astype(np.uint16) if len(block) <= 1 << 16 else at))
        count += len(block)
    present = np.flatnonzero(seen)
    common = present[seen[present] > BITS_SHARE * count]  # a join twice in a line counts twice: a guess, either way exact
    slot = np.full(1 << 16, -1, dtype=np.int32)
    slot[common] = np.arange(len(common), dtype=np.int32)
    bits = np.zeros((len(common), (count + 7) // 8), dtype=np.uint8)
    rare: list[np.ndarray] = []  # per block, its rare joins as keys (below)
    while found:
        first, codes, at = found.pop(0)  # let go of each block's joins once marked
        slots = slot[codes]
        mine = slots >= 0
        _mark_bits(bits, first, slots[mine], at[mine])
        rare.append(_join_keys(codes[~mine], at[~mine].astype(np.uint64) + np.uint64(first)))
    kept = {int(code): row_bits for code, row_bits in zip(common.tolist(), bits)}
    kept.update(_rows_by_join(rare))
    codes = np.array(sorted(kept), dtype=np.uint16)
    return JoinSegment(base, count, codes, np.isin(codes, common), tuple(kept[int(c)] for c in codes.tolist()))


def _mark_bits(bits: np.ndarray, first: int, slots: np.ndarray, rows: np.ndarray) -> None:
    """Set in ``bits`` (a row of bits per common join) the bit of each join found: in ``slots`` (its
    row of ``bits``) at ``rows`` (from ``first``, the block's first row). The block's bytes are
    marked as a grid of bools, :data:`_BITS_AT_ONCE` joins at a time, and OR-ed in: its first and
    last bytes may hold the neighbouring blocks' rows."""
    if not len(slots):
        return
    shift = first % 8
    start = first // 8
    width = (shift + int(rows.max()) + 1 + 7) // 8 * 8
    positions = rows.astype(np.int64) + shift
    for low in range(0, len(bits), _BITS_AT_ONCE):
        high = min(low + _BITS_AT_ONCE, len(bits))
        these = (slots >= low) & (slots < high)
        if not these.any():
            continue
        grid = np.zeros((high - low, width), dtype=bool)
        grid[slots[these] - low, positions[these]] = True
        bits[low:high, start:start + width // 8] |= np.packbits(grid, axis=1, bitorder="little")


def _join_keys(codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each join found as one number that sorts by join, then row: one sort, no order array."""
    return (codes.astype(np.uint64) << np.uint64(32)) | rows


def _rows_by_join(parts: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Per join code, its rows in order, each once (a join twice in a line: the line once), from
    the keys of the joins found (:func:`_join_keys`), in parts; ``parts`` is emptied as they are
    joined, so that they are let go of."""
    keys = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    parts.clear()
    if not len(keys):
        return {}
    keys.sort()
    joins, rows = (keys >> np.uint64(32)).astype(np.uint16), keys.astype(np.uint32)  # rows: the low 32 bits
    del keys
    starts = np.flatnonzero(np.r_[True, joins[1:] != joins[:-1]])
    once = np.r_[True, rows[1:] != rows[:-1]]
    once[starts] = True
    return {int(joins[a]): rows[a:b][once[a:b]] for a, b in zip(starts.tolist(), [*starts[1:].tolist(), len(joins)])}


def _blocks(chunks: Sequence[pa.Array]) -> Iterable[pa.Array]:
    """The chunks joined into blocks of about :data:`_BLOCK_ROWS` lines: fewer, bigger numpy steps,
    whose work still fits the processor's cache."""
    pending: list[pa.Array] = []
    rows = 0
    for chunk in [*chunks, None]:
        if pending and (chunk is None or rows + len(chunk) > _BLOCK_ROWS):
            yield pa.concat_arrays(pending) if len(pending) > 1 else pending[0]
            pending, rows = [], 0
        if chunk is not None:
            pending.append(chunk)
            rows += len(chunk)


def _chunk_joins(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The joins of one chunk of strings (codes, uint16) and the row of each (uint32): every space
    with a byte other than a space on each side within its line. Bytes, not characters: a
    character over one byte (UTF-8) gives its last or first byte, which no ASCII character is."""
    n = len(chunk)
    if pa.types.is_large_string(chunk.type):
        width = np.int64
    elif pa.types.is_string(chunk.type):
        width = np.int32
    else:
        raise TypeError(f"word joins read strings, not {chunk.type}")
    buffers = chunk.buffers()
    if n == 0 or buffers[2] is None:
        return np.zeros(0, dtype=np.uint16), np.zeros(0, dtype=np.uint32)
    offsets = np.frombuffer(buffers[1], dtype=width)[chunk.offset:chunk.offset + n + 1].astype(np.int64)
    low = int(offsets[0])
    text = np.frombuffer(buffers[2], dtype=np.uint8)[low:int(offsets[-1])]
    starts, ends = offsets[:-1] - low, offsets[1:] - low
    spaces = np.flatnonzero(text == _SPACE)
    first = np.searchsorted(spaces, starts)
    row = np.repeat(np.arange(n, dtype=np.uint32), np.searchsorted(spaces, ends) - first)
    inside = (spaces > starts[row]) & (spaces + 1 < ends[row])  # a byte on each side, in the line
    spaces, row = spaces[inside], row[inside]
    before, after = text[spaces - 1], text[spaces + 1]
    words = (before != _SPACE) & (after != _SPACE)
    return (before[words].astype(np.uint16) << 8) | after[words], row[words]
