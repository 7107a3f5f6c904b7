"""An index of the words of a transcript column: which rows hold each space-separated word.

A ``contains`` search scans every transcript (10M lines: ~0.2-0.3 s of DuckDB's substring test on
two cores, whatever the result). Words repeat: 10M lines of ~12 words have tens of thousands of
distinct ones. A search for text without a space can only match inside one word (the words are the
runs between spaces), so the rows that match are the rows of the distinct words that match: the
test runs on the words, and their rows are marked in a mask (``the`` at 10M: ~60 ms, against a
~250 ms scan). ``has`` (a whole word) works the same way. Text with spaces is matched piece by piece
(each piece must occur in some word of the row), which narrows the rows the scan must test.

The index is built by DuckDB, a segment of :data:`SEGMENT_BYTES` at a time (memory: the
postings, 4 bytes per word of the column, plus one segment's work), and kept in memory by
sde.compressed_columns within the budget of whole columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sde.filters.engine import arrow_sql, run_sql

__all__ = ["MAX_POSTINGS_PER_ROW", "SEGMENT_BYTES", "WORD", "WordIndex", "build_word_index", "within_one_word"]

#: Text indexed by one DuckDB query (whole chunks, so a little more): ~0.85M lines of ~12 words,
#: whose work takes ~0.2 GB; a column of very long lines makes short segments, not big ones.
SEGMENT_BYTES = 64 << 20
#: A search whose words hold more rows than this per row of the column scans the lines instead
#: (see WordIndex.matching_rows): marking a row costs ~5 ns, testing a line ~25 ns, and the marks
#: take memory (4 bytes a row).
MAX_POSTINGS_PER_ROW = 2
#: A build is given up when the segments built project the index over its room by this much.
PROJECTION_MARGIN = 1.25
#: The column name a predicate over the words table uses (see WordIndex.matching_rows).
WORD = "w"
_SEGMENT_SQL = (f"SELECT {WORD}, list(r) AS rows FROM "
                f"(SELECT unnest(string_split(text, ' ')) AS {WORD}, r FROM seg) GROUP BY {WORD}")


@dataclass(frozen=True)
class WordIndex:
    """The rows of every word of a column. ``words``: one row per word and segment (``w``, the
    word; ``seg``, the segment; ``start``/``stop``, its slice of that segment's postings);
    ``postings``: per segment, the row positions of its words; ``nulls``: the positions of
    missing values (a search neither matches nor fails to match them)."""

    rows: int
    words: pa.Table
    postings: tuple[np.ndarray, ...]
    nulls: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.words.nbytes + sum(p.nbytes for p in self.postings) + self.nulls.nbytes)

    def matching_rows(self, predicate: str, params: Sequence[Any] = (),
                      per_row: float | None = None) -> pa.BooleanArray | None:
        """Per row, whether one of its words satisfies ``predicate`` (DuckDB SQL over the column
        :data:`WORD`, with ``params`` for its ``?``); null where the value is missing. None when
        the words it matches hold more than ``per_row`` (default :data:`MAX_POSTINGS_PER_ROW`)
        rows per row of the column (``e``: nearly every word): scanning the lines is then faster,
        and marking them would take memory in proportion to the column."""
        cur = run_sql(f"SELECT seg, start, stop FROM words WHERE {predicate}", params, {"words": self.words})
        try:
            got = cur.fetchnumpy()
        finally:
            cur.close()
        segments, starts, stops = (np.asarray(got[c]) for c in ("seg", "start", "stop"))
        if int((stops - starts).sum()) > (MAX_POSTINGS_PER_ROW if per_row is None else per_row) * self.rows:
            return None
        mask = np.zeros(self.rows, dtype=bool)
        for seg in np.unique(segments):
            postings, mine = self.postings[int(seg)], segments == seg
            picked = [postings[a:b] for a, b in zip(starts[mine].tolist(), stops[mine].tolist())]
            mask[np.concatenate(picked)] = True
        if not len(self.nulls):
            return pa.array(mask)
        missing = np.zeros(self.rows, dtype=bool)
        missing[self.nulls] = True
        return pa.array(mask, mask=missing)


def within_one_word(pattern: str) -> bool | None:
    """Whether a regex's rows are the rows of the words it matches: True when it can match only
    the characters written in it, none of them a space (no whitespace, ``.``, class ``[…]`` or
    escape ``\\``), so any match lies inside one word; False when it may also hold anchors ``^`` /
    ``$`` (a line's start is a word's start, not the reverse: the words give rows to test); None
    for any other regex (it may match across words)."""
    if any(c.isspace() or c in ".[\\" for c in pattern):
        return None
    return "^" not in pattern and "$" not in pattern


def _once_per_row(rows: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Postings without a row repeated next to itself within a word ("the the the": one row, not
    three; DuckDB lists a line's words together), and their new offsets. A repeat left elsewhere
    costs memory, not correctness (marking a row twice marks it)."""
    if len(rows) < 2:
        return rows.copy(), offsets  # a copy: a view would keep DuckDB's whole answer alive
    keep = np.empty(len(rows), dtype=bool)
    keep[0] = True
    np.not_equal(rows[1:], rows[:-1], out=keep[1:])
    keep[offsets[:-1][offsets[:-1] < len(rows)]] = True  # a word's first row, whatever came before
    before = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(keep, out=before[1:])
    return rows[keep], before[offsets]


def build_word_index(chunks: Iterable[pa.Array], rows: int, max_bytes: int | None = None) -> WordIndex | None:
    """The index of a string column given as its chunks in order (``rows`` values in all): one
    DuckDB query per :data:`SEGMENT_BYTES` of text. None when it would take more than ``max_bytes``
    (given up as soon as the segments built project it: a column of one long word a line makes
    an index bigger than itself). Raises sde.filters.QueryError when DuckDB cannot (e.g. its
    memory limit)."""
    position = pa.uint32() if rows < 2**32 else pa.int64()
    words: list[pa.Table] = []
    postings: list[np.ndarray] = []
    nulls: list[np.ndarray] = []
    pending: list[pa.Array] = []
    base = pending_bytes = 0

    def index_segment() -> None:
        nonlocal base
        text = pa.chunked_array(pending, pending[0].type)
        positions = pa.array(np.arange(base, base + len(text), dtype=np.int64)).cast(position)
        got = arrow_sql(_SEGMENT_SQL, (), {"seg": pa.table({"text": text, "r": positions})})
        lists = got.column("rows").combine_chunks() if got.num_rows else pa.array([], pa.list_(position))
        offsets = lists.offsets.to_numpy().astype(np.int64)
        rows_of_words, offsets = _once_per_row(lists.values.to_numpy(zero_copy_only=False)[offsets[0]:offsets[-1]],
                                               offsets - offsets[0])
        postings.append(rows_of_words)
        # copied out: a column of DuckDB's answer keeps the whole answer (the lists too) alive
        words.append(pa.table({WORD: got.column(WORD).cast(pa.large_string()).take(np.arange(got.num_rows)),
                               "seg": pa.array(np.full(got.num_rows, len(postings) - 1, dtype=np.int32)),
                               "start": pa.array(offsets[:-1]), "stop": pa.array(offsets[1:])}))
        offset = base
        for a in pending:
            if a.null_count:
                nulls.append(np.flatnonzero(pc.is_null(a).to_numpy(zero_copy_only=False)) + offset)
            offset += len(a)
        base += len(text)
        pending.clear()

    def too_big(margin: float) -> bool:
        """Whether the index, projected from the rows done to every row, is over ``max_bytes``
        by more than ``margin`` (the projection is rough until the end)."""
        size = sum(t.nbytes for t in words) + sum(p.nbytes for p in postings) + sum(n.nbytes for n in nulls)
        return max_bytes is not None and size * rows > max_bytes * margin * max(base, 1)

    for chunk in chunks:
        pending.append(chunk)
        pending_bytes += chunk.nbytes
        if pending_bytes >= SEGMENT_BYTES:
            index_segment()
            pending_bytes = 0
            if too_big(PROJECTION_MARGIN):
                return None
    if pending:
        index_segment()
    if too_big(1.0):
        return None
    if base != rows:
        raise ValueError(f"the column gave {base:,} values, not {rows:,}")
    table = pa.concat_tables(words) if words else pa.table({WORD: pa.array([], pa.large_string()),
                                                             "seg": pa.array([], pa.int32()),
                                                             "start": pa.array([], pa.int64()),
                                                             "stop": pa.array([], pa.int64())})
    return WordIndex(rows, table, tuple(postings),
                     np.concatenate(nulls).astype(np.int64) if nulls else np.zeros(0, dtype=np.int64))
