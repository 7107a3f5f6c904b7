"""One filter / sort / page engine for every table view of sde.

The UI grids (dash-ag-grid, server-side paging), the JSON API and the CSV export all go through
:class:`TableQuery`, so a filter means the same thing everywhere.

The filter language Q (``{wer} > 20 && ({speaker} = "a" || !({text} contains "noise"))``: clauses,
``&& || !``, parentheses, ``in``, ``matches``, ``is null``, column-to-column arithmetic) is
defined, parsed and compiled in :mod:`sde.filters`; its names are re-exported here. A filter given
as a list is the parts of an AND (:class:`Clause`, or any node of the tree).

Sorting (:func:`parse_sort`): ``"col"``, ``"-col"``, ``"col1,-col2"``. Sorts are stable (ties keep
table order), missing values come last in both directions, strings sort by code point
(case-sensitive). A text column holding values that read as numbers (what a filter's
``{snr} < 10`` compares as numbers: sde.filters.sql.number_sql) sorts those first, as numbers,
equal numbers by their text ("007" < "7" < "7.0"), then its other values by code point; ``-col``
reverses both parts and keeps their places: numbers high to low, then text Z to A, then missing.

Bounds (every request is served in bounded memory and time, whatever its text): a filter is at
most :data:`MAX_QUERY_LENGTH` characters and :data:`MAX_CLAUSES` clauses; a sort names a column
once (``id,-id`` is ``id``: a repeated key cannot change the order) and at most
:data:`MAX_SORT_KEYS` columns; a page or row range is at most :data:`MAX_PAGE_SIZE` rows. Going
over a limit is a :class:`QueryError` that names it (a page size is clamped instead).

Nothing here evaluates user text as code: Q is read by a small hand-written parser, never by
``eval``, ``DataFrame.query`` or ``DataFrame.eval``, and compiled to SQL whose values are all
parameters and whose column names are fixed identifiers (``c0, c1, …``).

The engine is DuckDB (in process, one database for the process, a cursor per query): a table's
columns are handed to it as Arrow arrays sharing the DataFrame's memory, and each view is one
``SELECT pos … WHERE … ORDER BY …``. The database can read no file and load no extension
(:func:`configure` sets its threads and memory limit).
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.caching import ComputedOnce, LRUCache
from sde.compressed_columns import (BATCH_ROWS, CompressedColumn, LabelColumn, has_number_ranks, index_joins, index_pairs,
                                    index_words, keep_for_next_scan, keep_number_ranks, keep_ranks, preload, preload_transcripts, sort_keys, stored_column, stored_index, take_rows, whole_budget,
                                    word_index)
from sde.filters import (
    EXAMPLE,
    NUMBER_STARTS,
    MAX_CLAUSES,
    MAX_QUERY_LENGTH,
    NODES,
    NUMBER,
    OPERATORS,
    OTHER,
    TEXT,
    VIRTUAL,
    Clause,
    IndexAnswer,
    Node,
    QueryError,
    VirtualSql,
    bind,
    bound_sql,
    check_bounds,
    check_column,
    column_kind,
    column_refs,
    format_filter,
    leaves,
    parse_filter,
    positive_leaves,
    quote_ident,
    replace_node,
)
from sde.engine import settings
from sde.index_files import read_ranks
from sde.text_ranks import text_dense_ranks
from sde.word_index import (WORD, SpaceCuts, WordIndex, WordTest, phrase_pieces, required_words, space_cuts,
                            within_one_word)
from sde.filters.engine import (MAX_QUERY_SECONDS, NOT_NOW, LowerCaseColumns, SingleLineColumns, arrow_column,
                                configure, connect, cursor, holds_a_number, number_first_ranks, numpy_sql,
                                ranks_numbers_first, reads_a_number, reopen, rows_sql)

__all__ = [
    "QueryError",
    "Clause",
    "Hint",
    "OPERATORS",
    "EXAMPLE",
    "MAX_PAGE_SIZE",
    "MAX_QUERY_LENGTH",
    "MAX_CLAUSES",
    "MAX_SORT_KEYS",
    "parse_filter",
    "format_filter",
    "parse_sort",
    "TableQuery",
    "VirtualSql",
    "MAX_QUERY_SECONDS",
    "configure",
    "reopen",
    "connect",
    "cursor",
]

MAX_PAGE_SIZE = 1_000     # rows in one page / grid block: a screenful is ~50, a JSON page of 1000 ~1 MB
# Each sort key is one more column in DuckDB's sort of the whole view; eight is more than anyone
# sorts by.
MAX_SORT_KEYS = 8
# The first rows of a new sorted view are fetched alone (DuckDB's top-N): the first 20 pages of 50
# without sorting the whole view.
PREFIX_ROWS = 1_000
# ... and a page past them, up to this row, from a longer top-N (10M rows: ~0.1 s, about what the
# first 1,000 cost; DuckDB sorts everything for ~100,000): 200 pages of 50 before a whole sort.
LONG_PREFIX_ROWS = 10_000
# A page past LONG_PREFIX_ROWS sorts only a band of the view around it (_Engine.band): the band's
# edges are quantiles of a sample of the first sort key, about this many rows (10M rows: ~50 ms), ...
BAND_SAMPLE = 20_000
# ... this many standard errors of the sample's rank on each side (a band of ~3% of a 10M view,
# sorted in ~0.1 s; it misses the page about once in 15,000 and the whole view is sorted then).
BAND_SIGMAS = 4.0
# ... read at these quantiles (a step of 0.1% of the view), ...
BAND_GRID = 1_000
# ... on a table of the view's rows alone where they are at most this share of the table and the
# sort reads fixed-width columns (taking 1M rows of 10M: ~10 ms; each band query then reads a tenth).
BAND_TAKE_SHARE = 0.5
# A search of text with spaces marks the rows holding its longest pieces (word indexes, see
# _Engine.indexed_sql); a few narrow it enough, and a hostile thousand-word text must not cost more.
INDEXED_PIECES = 3
# ... and only pieces in at most this share of the rows: the lines left are still tested (DuckDB tests
# only those), so marking the rows of a piece in most lines ("of the") costs more than it saves.
PIECE_ROWS_SHARE = 0.5
# The lines a word index leaves to test are tested at once, from their batches (_Engine._tested_now),
# where those are at most this share of a column not kept whole (each batch decompressed once, not
# once per query) ...
TEST_NOW_SHARE = 0.5
# ... or hold at most this much text of a column kept whole (~0.05 s; 256 batches of 10M lines of
# ~12 words): more is as fast in the query's scan.
TEST_NOW_BYTES = 64 << 20

# The SQL and masks of the last filters compiled (word-index marks, lines tested at once), up to this
# many bytes of masks: a new sort or a page deep in a searched view does not mark its rows again
# (`th.s` at 10M: ~35 ms; a phrase tested at once with --memory-limit 2GB: ~0.3 s).
COMPILED_FILTER_BYTES = 64 << 20
# Views kept (their row positions: a whole sorted view, a band) take at most this share each of the
# budget of whole columns (sde.compressed_columns.whole_budget: half of --memory-limit, else a
# quarter of the machine), and the compiled filters no more: a whole view of 10M rows is 80 MB, and
# eight of them would otherwise outgrow --memory-limit 2GB.
KEPT_VIEWS_SHARE = 8

# The sort keys of a label column, or of a ranked text column, are the column ``k<i>`` of a query's
# table (see _Engine.sort_name).
_SORT_KEY = "k"
# The values a word index left to test, in the table of those tested at once (_Engine._tested_now).
_TESTED = "v"
# The rows of a view, as a mask of the band's queries (see _Engine.band).
_IN_VIEW = "inview"

_check_column = check_column


def _batches_holding(mask: pa.BooleanArray) -> int:
    """How many batches of :data:`BATCH_ROWS` rows hold a row ``mask`` is true for: read from its
    bits (10M rows: ~1 ms, where finding the rows takes ~25 ms)."""
    filled = pc.fill_null(mask, False)
    if filled.offset % 8 or BATCH_ROWS % 8:
        rows = np.flatnonzero(np.asarray(filled))
        return len(np.unique(rows // BATCH_ROWS))
    size = len(filled)
    bits = np.zeros(-(-size // BATCH_ROWS) * (BATCH_ROWS // 8), dtype=np.uint8)
    bits[:(size + 7) // 8] = np.frombuffer(filled.buffers()[1], np.uint8, (size + 7) // 8, filled.offset // 8)
    if size % 8:
        bits[size // 8] &= (1 << size % 8) - 1  # the bits past the last row are not the mask's
    return int(np.count_nonzero(bits.reshape(-1, BATCH_ROWS // 8).any(axis=1)))


def _filter_key(parts: Sequence[Node]) -> tuple[Node, ...]:
    """A filter's parts in one order: the same key for the same filter, whatever order its ANDed
    parts were written in (the view caches and the compiled filters are kept by it)."""
    return tuple(sorted(parts, key=repr))


def kept_views_bytes() -> int:
    """Bytes of row positions each of a TableQuery's caches of whole views and of bands may keep
    (:data:`KEPT_VIEWS_SHARE`): 128 MB with --memory-limit 2GB, 768 MB on a 24 GiB machine without one."""
    return whole_budget() // KEPT_VIEWS_SHARE


def _band_bytes(band: tuple[int, int, np.ndarray]) -> int:
    return 64 + band[2].nbytes


def _compiled_bytes(compiled: tuple[str, list[Any], dict[str, Any], dict[str, pa.Array]]) -> int:
    """What a compiled filter holds of its own: its masks (the tables it names are the dataset's)."""
    return 1024 + sum(mask.nbytes for mask in compiled[3].values())


def _names(ident: str, sql: str) -> bool:
    """Whether ``sql`` names the column ``ident`` (c0, k3, …)."""
    return re.search(rf"(?<![A-Za-z0-9_]){ident}(?![A-Za-z0-9_])", sql) is not None


@dataclass(frozen=True)
class Hint:
    """Advice shown next to a filter's results (see :meth:`TableQuery.hints`): ``message`` for the
    user and, when there is one, ``filter``: the whole filter with the advice applied."""

    message: str
    filter: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"message": self.message, "filter": self.filter}


def parse_sort(s: str | None, columns: Sequence[str] | None = None) -> list[tuple[str, bool]]:
    """``"col"``, ``"-col"``, ``"col1,-col2"`` → ``[(column, descending)]``; ``""``/``None`` → ``[]``.

    A leading ``+`` is accepted for ascending. When ``columns`` is given, unknown names raise
    :class:`QueryError` with suggestions.
    """
    if s is None:
        return []
    if not isinstance(s, str):
        raise QueryError("The sort must be text, like: -wer,duration")
    if len(s) > MAX_QUERY_LENGTH:
        raise QueryError(f"The sort is too long ({len(s)} characters, at most {MAX_QUERY_LENGTH}).")
    out = _SortKeys()
    for part in s.split(","):
        part = part.strip()
        if not part:
            if s.strip():
                raise QueryError(f'Empty column in sort "{s}". Example: -wer,duration')
            continue
        desc = part.startswith("-")
        name = part[1:].strip() if part[0] in "+-" else part
        if name.startswith("{") and name.endswith("}"):
            name = name[1:-1].strip()
        if not name:
            raise QueryError(f'Missing column name in sort "{s}". Example: -wer,duration')
        if columns is not None and name not in out:
            _check_column(name, columns)
        out.add(name, desc)
    return out.keys


class _SortKeys:
    """Sort keys as they are read: a column's first key wins (a later key on the same column can
    only compare equal values, so dropping it changes nothing) and more than MAX_SORT_KEYS distinct
    columns is an error, raised as soon as it is seen (a 5,000-entry sort is never materialised)."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, bool]] = []
        self._seen: set[str] = set()

    def __contains__(self, column: str) -> bool:
        return column in self._seen

    def add(self, column: str, desc: bool) -> None:
        if column in self._seen:
            return
        if len(self.keys) >= MAX_SORT_KEYS:
            raise QueryError(f"Too many sort columns: at most {MAX_SORT_KEYS} distinct columns, "
                             f"e.g. -wer,duration.")
        self._seen.add(column)
        self.keys.append((column, desc))


# ---------------------------------------------------------------------------------------------
# The table as DuckDB sees it


def _duckdb_reads(arr: pa.Array | pa.ChunkedArray) -> bool:
    """Whether DuckDB can scan this Arrow type (one it cannot would fail every query of the table)."""
    try:
        rows_sql("SELECT v FROM one LIMIT 0", (), {"one": pa.table({"v": arr})})
        return True
    except QueryError:
        return False


@dataclass(frozen=True)
class _NumberFirst:
    """The sort keys of a text column holding values that read as numbers
    (sde.filters.sql.number_first_sql): per row the value's dense rank, ranks 1 to ``numbers`` the
    numbers (as numbers, equal ones by their text), the ranks above them up to ``ranks`` the other
    text in text order; null where the value is missing. Integers: a sort by them costs what a sort
    by a label does, and bands of deep pages (_Engine.band) compare them as they compare any key."""

    keys: pa.Array
    numbers: int
    ranks: int

    def key_sql(self, ident: str, desc: bool) -> str:
        """The key of a sort by the column named ``ident`` in a query: descending too, the numbers
        come first (high to low), then the other text (Z to A), so their ranks move above the
        text's."""
        if not desc:
            return ident
        return f"(CASE WHEN {ident} <= {self.numbers} THEN {ident}::BIGINT + {self.ranks} ELSE {ident}::BIGINT END)"


def _no_number_between_its_ends(stored: CompressedColumn) -> bool:
    """Whether a compressed column's text ranks, where it has them (kept, or written beside it by an
    earlier start: text order either way), show that none of its values can read as a number: each
    value lies between the first and the last in text order, so its first byte between theirs, and
    none of those bytes starts a number (paths: "/" to "/"). Two values read, not the column."""
    ranks = stored.ranks if stored.ranks is not None else read_ranks(stored.path, stored.rows)
    if ranks is None or ranks.null_count == len(ranks):
        return False
    top = pc.max(ranks).as_py()
    ends = stored.take(np.array([pc.index(ranks, 1).as_py(), pc.index(ranks, top).as_py()], dtype=np.int64))
    first, last = (value.encode()[:1] for value in ends.to_pylist())
    return bool(first and last) and not any(first[0] <= c <= last[0] for c in NUMBER_STARTS)


def _number_first_keys(ranks: np.ndarray, numbers: int) -> _NumberFirst:
    """:class:`_NumberFirst` of ranks from sde.filters.engine.number_first_ranks (0: missing)."""
    missing = ranks == 0
    return _NumberFirst(pa.array(ranks, mask=missing if missing.any() else None), numbers,
                        int(ranks.max()) if len(ranks) else 0)


# Stored columns (sde.compressed_columns) are learnt once for every table over them: whether they
# hold a number, and then their number-first sort keys.
_STORED_HOLD_NUMBERS = ComputedOnce(weak=True)
_STORED_NUMBER_KEYS = ComputedOnce(weak=True)
_KEY_NAME = re.compile(rf"(?<![A-Za-z0-9_]){_SORT_KEY}(c[0-9]+)(?![A-Za-z0-9_])")


class _Engine:
    """One table for DuckDB: the frame's columns as an Arrow table (columns ``c0, c1, …`` and
    ``pos``, the row position) sharing the frame's buffers, built on first use. Columns kept
    compressed on disk (sde.compressed_columns) are not in it: a query that names one adds it
    while it is kept read whole, else scans its file beside the table (a positional join), batch
    by batch."""

    def __init__(self, df: pd.DataFrame, kinds: Mapping[str, str]) -> None:
        self._df = df
        self._kinds = kinds
        self._lock = threading.Lock()
        self._table: pa.Table | None = None
        self.names: dict[str, str] = {}
        self._compressed: dict[str, CompressedColumn | LabelColumn] = {}  # identifier → its file
        self._scans: dict[str, Any] = {}
        self.lower_case = LowerCaseColumns(self._text_values)
        self.single_line = SingleLineColumns(self._text_chunks)
        # the same of the columns held in the table (not stored), by identifier
        self._hold_numbers = ComputedOnce()
        self._number_keys = ComputedOnce()
        self.indexes_made = 0  # how many times word indexes or their pairs were added
        #: Read a column a query streamed whole afterwards, for the next query (TableQuery.warm: a
        #: server's searches); a batch command streams each time.
        self.keep_searched = False
        self.indexes_building = False  # a warm-up builds indexes in the budget of whole columns

    def table(self) -> pa.Table:
        with self._lock:
            if self._table is None:
                columns: dict[str, Any] = {}
                for i, label in enumerate(self._df.columns):
                    kind = self._kinds[str(label)]
                    compressed = stored_column(self._df[label])
                    if compressed is not None:
                        self._compressed[f"c{i}"] = compressed
                        self.names[str(label)] = f"c{i}"
                        continue
                    arr = arrow_column(self._df[label], kind)
                    if arr is not None and (kind != OTHER or _duckdb_reads(arr)):
                        columns[f"c{i}"] = arr
                        self.names[str(label)] = f"c{i}"
                columns["pos"] = pa.array(np.arange(len(self._df), dtype=np.int64))
                self._table = pa.table(columns)
            return self._table

    def _text_values(self, column: str) -> Any:
        table = self.table()
        name = self.names.get(column)
        if name is None or self._kinds.get(column) != TEXT:
            return None
        compressed = self._compressed.get(name)
        return compressed if compressed is not None else table[name]

    def _text_chunks(self, column: str) -> Any:
        """A text column's values for a scan of its bytes: a label column's distinct values, a
        compressed one that counted it when written, or its values while it is kept whole (else
        NOT_NOW: a scan would decompress it, ~2 s at 10M lines, inside the query that asks), any
        other as it is; None for another column."""
        values = self._text_values(column)
        if isinstance(values, LabelColumn):
            return values.dictionary
        if isinstance(values, CompressedColumn):
            if values.no_line_break is not None:
                return values
            whole = values.kept_whole()
            return whole if whole is not None else NOT_NOW
        return values

    def _source(self, sql: str, tables: dict[str, Any], masks: Mapping[str, pa.Array],
                ) -> tuple[str, list[CompressedColumn | LabelColumn]]:
        """The FROM of a query and the columns it streams: the table, with ``masks`` (the rows
        word indexes matched, see :meth:`indexed_sql`) and the compressed columns it names: those
        kept read whole (sde.compressed_columns.preload, keep_for_next_scan) as columns of this
        query's table (scanned in memory, in parallel), the others joined by position with their
        files (registered in ``tables``, decompressed batch by batch)."""
        source = "t"
        table = self.table()
        for name, mask in masks.items():
            table = table.append_column(name, mask)
        streamed = []
        for ident in dict.fromkeys(_KEY_NAME.findall(sql)):
            keys = self._sort_keys(ident)
            if keys is not None:
                table = table.append_column(_SORT_KEY + ident, keys)
        for ident, column in self._compressed.items():
            if _names(ident, sql):
                whole = column.kept_whole()
                if whole is not None:
                    table = table.append_column(ident, whole)
                    continue
                source += f" POSITIONAL JOIN {self._scan(ident, column, tables)}"
                streamed.append(column)
        tables["t"] = table
        return source, streamed

    def _file_alone(self, sql: str, tables: dict[str, Any]) -> str | None:
        """The FROM of a query that reads one column streamed from its file and nothing else of the
        table (no ``pos``, no mask): that file alone, registered in ``tables``; else None. Joined by
        position with the table, DuckDB held the file's side whole: a band's counts of rows before a
        transcript at 10M took 9.2 s and +1.2 GB, alone 2.1 s and +0.1 GB."""
        named = [name for name in dict.fromkeys([*self.table().column_names, *self._compressed]) if _names(name, sql)]
        if len(named) != 1 or _names(_IN_VIEW, sql):
            return None
        column = self._compressed.get(named[0])
        if column is None or column.kept_whole() is not None:
            return None
        return self._scan(named[0], column, tables)

    def _scan(self, ident: str, column: CompressedColumn | LabelColumn, tables: dict[str, Any]) -> str:
        """The column ``ident`` streamed from its file as a subquery (its dataset opened once per
        engine, registered in ``tables``)."""
        with self._lock:
            scan = self._scans.get(ident)
            if scan is None:
                scan = self._scans[ident] = column.dataset()
        tables[f"x{ident}"] = scan
        return f"(SELECT {quote_ident(column.name)} AS {ident} FROM x{ident}) AS s{ident}"

    def positions(self, where: str, params: Sequence[Any], tables: Mapping[str, Any], order: str,
                  masks: Mapping[str, pa.Array]) -> np.ndarray:
        tables = dict(tables)
        source, streamed = self._source(f"{where} {order}", tables, masks)
        sql = f"SELECT pos FROM {source} WHERE {where}" + (f" ORDER BY {order}, pos" if order else "")
        pos = self._fetch(sql, params, tables, streamed)[0]
        if not order and len(pos) > 1 and not bool(np.all(pos[1:] > pos[:-1])):
            pos = np.sort(pos)  # no sort asked: table order
        return pos

    def prefix(self, where: str, params: Sequence[Any], tables: Mapping[str, Any], order: str,
               sort_columns: Sequence[str], limit: int, masks: Mapping[str, pa.Array],
               by_text: bool = False) -> tuple[int, np.ndarray]:
        """(rows in the view, the positions of its first ``limit`` rows): DuckDB's top-N, without
        sorting the whole view; the filter runs once (a materialised CTE) for both. Sorted
        ``by_text`` (a sort key is a text column), the top-N and the count are two queries: a
        CTE would copy every string of the view (10M lines: ~0.45 s, against ~0.1 s for the
        top-N and ~20 ms for a count whose filter is cheap). A view one word index marks exactly
        (``contains "the"``) is counted from its mask, and its top-N streams: the CTE copied
        its rows (8M of 10M lines) to count them."""
        tables = dict(tables)
        source, streamed = self._source(f"{where} {order}", tables, masks)
        if where == "TRUE":  # every row: the count is known, and a CTE would copy the whole table
            return len(self._df), self._fetch(f"SELECT pos FROM {source} ORDER BY {order}, pos LIMIT {int(limit)}",
                                              params, tables, streamed)[0]
        marked = _sole_mask(where, masks)
        if by_text or marked is not None:
            pos = self._fetch(f"SELECT pos FROM {source} WHERE {where} ORDER BY {order}, pos LIMIT {int(limit)}",
                              params, tables, streamed)[0]
            if len(pos) < limit:
                return len(pos), pos
            if marked is not None:  # the rows one word index marks exactly: counted already
                return int(pc.sum(marked).as_py() or 0), pos
            source, _ = self._source(where, tables, masks)  # its columns: the top-N's, kept already
            return int(self._row(f"SELECT count(*) FROM {source} WHERE {where}", params, tables)[0]), pos
        keep = ", ".join(dict.fromkeys(["pos", *sort_columns]))
        sql = (f"WITH m AS MATERIALIZED (SELECT {keep} FROM {source} WHERE {where}) "
               f"SELECT pos, (SELECT count(*) FROM m) AS n FROM m ORDER BY {order}, pos LIMIT {int(limit)}")
        pos, total = self._fetch(sql, params, tables, streamed)
        return (int(total[0]) if len(total) else 0), pos

    def band(self, where: str, params: Sequence[Any], tables: Mapping[str, Any], order: str, key: str,
             desc: bool, start: int, end: int, masks: Mapping[str, pa.Array]) -> tuple[int, int, np.ndarray] | None:
        """The rows of the view ranked ``[start, end)`` and those around them, without sorting the
        whole view: (rows in the view, the rank of the band's first row, the band's positions in
        order), or None where this does not pay (the caller sorts the whole view). ``key`` is the
        first sort key (``order`` sorts by it first). The filter runs once: its rows become the
        table the band's queries read, or a mask of the table (:meth:`_band_view`; a regex across
        words costs its scan once, not four times).
        Quantiles of a sample of the key bound a band that holds the ranks with near certainty;
        exact counts of the rows before it and through it check that it does, so the answer never
        depends on the sample."""
        marked, total = self._marked_view(where, masks)
        if marked is not None:  # most rows, as one word index marks them: that mask is the view
            rows = None
        else:
            rows = None if where == "TRUE" else self._view_rows(where, params, tables, masks)
            total = len(self._df) if rows is None else len(rows)
        end = min(end, total)
        if start >= end:
            return total, start, np.zeros(0, dtype=np.int64)  # past the view's last row
        tables = {}
        source, streamed = self._source(f"{order}", tables, {} if marked is None else {_IN_VIEW: marked})
        view = _IN_VIEW if marked is not None else "TRUE" if rows is None else self._band_view(rows, order, tables, streamed)
        sample = [row[0] for row in rows_sql(f"SELECT {key} FROM {source} WHERE {_spread_sample(total)} AND {view} "
                                             f"ORDER BY {key} NULLS LAST", (), tables)]
        keyed = len(sample) - sample.count(None)
        if not keyed:
            return None
        grid = [sample[(keyed - 1) * i // BAND_GRID] for i in range(BAND_GRID + 1)]
        edges = _band_edges(grid, keyed / len(sample), start / total, end / total, desc, len(sample))
        if edges is None:
            return None
        first, last = edges
        bounds = [e for e in edges if e is not None]
        before, after = (">", "<") if desc else ("<", ">")
        count_ahead = "0" if first is None else f"count(*) FILTER (WHERE {key} {before} ?)"
        count_through = f"count({key})" if last is None else f"count(*) FILTER (WHERE {key} {before}= ?)"
        def counts(rows: str) -> str:
            return f"SELECT {count_ahead}, {count_through} FROM {rows} WHERE {view}"

        ahead, through = self._row(counts(self._file_alone(counts(""), tables) or source), bounds, tables)
        if ahead > start or through < end or through - ahead > total // 2:
            return None  # the sample missed the page (rare), the page reaches the rows without a key
            # (sorted last), or ties make the band most of the view
        inside_band = "".join([f" AND {key} {after}= ?"] * (first is not None) + [f" AND {key} {before}= ?"] * (last is not None))
        pos = self._fetch(f"SELECT pos FROM {source} WHERE {view} AND {key} IS NOT NULL{inside_band} ORDER BY {order}, pos",
                          bounds, tables, streamed)[0]
        return total, ahead, pos

    def _marked_view(self, where: str, masks: Mapping[str, pa.Array]) -> tuple[pa.Array | None, int]:
        """(the mask, its rows) of a filter whose rows one word index marks exactly (``contains
        "the"``), where it holds more than :data:`BAND_TAKE_SHARE` of the rows: a band's queries
        read it as it is, where gathering its positions and marking them again cost ~0.1 s at 10M
        (8M rows); a smaller view is taken as a table of its own (:meth:`_band_view`). Else
        (None, 0)."""
        mask = _sole_mask(where, masks)
        rows = 0 if mask is None else int(pc.sum(mask).as_py() or 0)
        if rows <= BAND_TAKE_SHARE * len(self._df):
            return None, 0
        return mask, rows

    def _view_rows(self, where: str, params: Sequence[Any], tables: Mapping[str, Any],
                   masks: Mapping[str, pa.Array]) -> np.ndarray:
        """The positions of the rows the filter keeps, in table order."""
        mask = _sole_mask(where, masks)
        if mask is not None:  # one word index's rows: known already
            return np.flatnonzero(np.asarray(pc.fill_null(mask, False)))
        # DuckDB tests a regex only on the rows the marks left to test
        return self.positions(where, params, tables, "", masks)

    @staticmethod
    def _band_view(rows: np.ndarray, order: str, tables: dict[str, Any],
                   streamed: Sequence[CompressedColumn | LabelColumn]) -> str:
        """The condition a band's queries select the view ``rows`` with, from the query's table
        ``tables["t"]``: where the view is at most :data:`BAND_TAKE_SHARE` of it and the sort reads
        only fixed-width columns of it, that table becomes the view's rows (``TRUE``); else a mask
        of them is added to it (:data:`_IN_VIEW`)."""
        table = tables["t"]
        read = table.select([name for name in table.column_names if name == "pos" or _names(name, order)])
        fixed = all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in read.schema.types)
        if not streamed and fixed and len(rows) <= BAND_TAKE_SHARE * table.num_rows:
            tables["t"] = read.take(rows)
            return "TRUE"
        inside = np.zeros(table.num_rows, dtype=bool)
        inside[rows] = True
        tables["t"] = table.append_column(_IN_VIEW, pa.array(inside))
        return _IN_VIEW

    def sort_name(self, column: str) -> str | None:
        """The name a sort by ``column`` uses in a query: its integer sort keys where it has them (a
        text column's that holds numbers: :meth:`number_first`; a label column's, a ranked text
        column's: sde.compressed_columns.sort_keys; added by :meth:`_source`), else the column
        itself; None when it is not in the table."""
        name = self.names.get(column)
        if name is not None and self.holds_numbers(column):
            self.number_first(column)
            return _SORT_KEY + name
        if name is not None and sort_keys(self._compressed.get(name)) is not None:
            return _SORT_KEY + name
        return name

    def sort_key(self, column: str, desc: bool) -> tuple[str, str] | None:
        """(the name a sort by ``column`` reads, quoted; the key it orders by): the name itself,
        but descending by a text column that holds numbers (:meth:`_NumberFirst.key_sql`). None
        when the column is not in the table."""
        name = self.sort_name(column)
        if name is None:
            return None
        ident = quote_ident(name)
        number_first = self._known_number_first(name[len(_SORT_KEY):]) if name.startswith(_SORT_KEY) else None
        return ident, ident if number_first is None else number_first.key_sql(ident, desc)

    def holds_numbers(self, column: str) -> bool:
        """Whether the text column ``column`` holds a value that reads as a number
        (sde.filters.sql.number_sql): then its sorts put those first, as numbers
        (:meth:`number_first`), and a column of text alone keeps its plain sort. Learnt once: a
        label column from its distinct values, a column held whole from its values (~40 ms per 1M
        lines of text, at once where a number comes first), a transcript's from the words of its
        word index where none reads as a number (a line that does is one such word), else from its
        file streamed (~0.3 s per 1M lines)."""
        self.table()
        name = self.names.get(column)
        if name is None or self._kinds.get(column) != TEXT:
            return False
        stored = self._compressed.get(name)
        if stored is None:
            return self._hold_numbers.get(name, lambda: holds_a_number(self.table()[name]))
        return _STORED_HOLD_NUMBERS.get(stored, lambda: self._stored_holds_numbers(name, stored))

    def _stored_holds_numbers(self, ident: str, stored: CompressedColumn | LabelColumn) -> bool:
        if isinstance(stored, LabelColumn):
            return holds_a_number(stored.dictionary)
        if has_number_ranks(stored):
            return True
        index = word_index(stored)
        if index is not None and not holds_a_number(index.vocabulary.column(WORD)):
            return False
        if _no_number_between_its_ends(stored):
            return False
        whole = stored.kept_whole()
        if whole is not None:
            return holds_a_number(whole)
        # the file alone, not joined with the table: DuckDB held a positional join's streamed side
        # whole for this scan (10M audio paths: +475 MB and 0.99 s, against +50 MB and 0.80 s)
        return reads_a_number("x", quote_ident(stored.name), {"x": stored.dataset()})

    def number_first(self, column: str) -> _NumberFirst:
        """The number-first sort keys of a text column that holds numbers (:class:`_NumberFirst`),
        computed once: a label column's from its distinct values (a take of their codes), any
        other's by one DuckDB sort of its values (kept whole or streamed: 10M rows ~5 s, 40 MB)."""
        name = self.names[column]
        stored = self._compressed.get(name)
        if stored is None:
            return self._number_keys.get(name, lambda: _number_first_keys(*number_first_ranks(self.table()[name])))
        return _STORED_NUMBER_KEYS.get(stored, lambda: self._stored_number_first(name, stored))

    def _stored_number_first(self, ident: str, stored: CompressedColumn | LabelColumn) -> _NumberFirst:
        if isinstance(stored, LabelColumn):
            ranks, numbers = number_first_ranks(stored.dictionary)
            keys = _number_first_keys(ranks, numbers)
            return replace(keys, keys=keys.keys.take(stored.indices))

        def rank() -> tuple[np.ndarray, int]:
            tables: dict[str, Any] = {}
            source, _ = self._source(ident, tables, {})
            return ranks_numbers_first(source, ident, tables, stored.rows)

        return _number_first_keys(*keep_number_ranks(stored, rank))

    def _known_number_first(self, ident: str) -> _NumberFirst | None:
        """The number-first keys of the column ``ident`` where computed already, else None."""
        stored = self._compressed.get(ident)
        return self._number_keys.known(ident) if stored is None else _STORED_NUMBER_KEYS.known(stored)

    def _sort_keys(self, ident: str) -> pa.Array | None:
        """The integer sort keys of the column ``ident`` (see :meth:`sort_name`), else None."""
        number_first = self._known_number_first(ident)
        return number_first.keys if number_first is not None else sort_keys(self._compressed.get(ident))

    def rank_text(self, columns: Sequence[str]) -> list[str]:
        """Give these text columns integer sort keys: a column holding numbers its number-first
        keys (:meth:`number_first`, which its first sort would compute), one of text alone stored
        compressed its ranks while the budget has room (sde.compressed_columns.keep_ranks). From
        then on a sort by one compares integers, so its pages cost what a sort by a number does
        (10M rows: ~5 s and 40 MB a column, once). Returns the columns given keys."""
        self.table()
        ranked = []
        for column in columns:
            ident = self.names.get(column)
            if ident is None or self._kinds.get(column) != TEXT:
                continue
            stored = self._compressed.get(ident)
            try:
                if self.holds_numbers(column):
                    # numbers first; never by the text ranks, which a previous start may have
                    # written beside it in text order
                    self.number_first(column)
                    ranked.append(column)
                elif isinstance(stored, CompressedColumn) and keep_ranks(
                        stored, functools.partial(self._dense_ranks, stored)) is not None:
                    ranked.append(column)
            except (QueryError, OSError, ValueError, pa.ArrowException):
                continue  # nothing lost: its sorts compute what they need on their first ask
        return ranked

    @staticmethod
    def _dense_ranks(column: CompressedColumn) -> pa.Array:
        """Each row's dense rank among the column's values in DuckDB's order (ties share one), null
        where the value is missing: by sde.text_ranks on the engine's threads, from the column kept
        whole or streamed from its file (10M transcripts streamed: 8-11 s and 0.55-0.73 GB at the
        most, 128 MB of text at a time; Arrow's rank of the column read whole took 11-12 s on one
        core and 1.13 GB, DuckDB's sort of it streamed ~17 s and ~1.7 GB)."""
        return text_dense_ranks(column.stream, column.rows, workers=settings().processes)

    def sorts_as_text(self, column: str) -> bool:
        """Whether a sort by ``column`` compares strings (not integer sort keys: a label column's, a
        ranked text column's, one holding numbers)."""
        name = self.sort_name(column)
        return self._kinds.get(column) == TEXT and name is not None and not name.startswith(_SORT_KEY)

    def index_words(self, columns: Sequence[str]) -> list[str]:
        """Build the word indexes of these text columns where they are stored compressed and the
        budget has room (sde.compressed_columns.index_words); from then on a ``contains`` / ``has``
        search of them tests their distinct words (:meth:`indexed_sql`). Returns those indexed."""
        self.table()
        return self._each_indexed(columns, index_words, lambda index: True)

    def stored_indexes(self, columns: Sequence[str]) -> list[str]:
        """Of these text columns, those stored compressed whose word index is kept or was written
        beside them by a previous start (mapped now: sde.compressed_columns.stored_index); nothing
        is built."""
        self.table()
        return self._each_indexed(columns, stored_index, lambda index: True)

    def compressed(self, columns: Sequence[str]) -> list[str]:
        """Of these columns, those stored compressed (the ones a word index can serve)."""
        self.table()
        return [c for c in columns if isinstance(self._compressed.get(self.names.get(c, "")), CompressedColumn)]

    def index_pairs(self, columns: Sequence[str]) -> list[str]:
        """Add the pairs of common words to the word indexes of these text columns where the budget
        has room (sde.compressed_columns.index_pairs): a phrase of common words then tests only the
        lines that hold it. Returns the columns whose index has them."""
        return self._each_indexed(columns, index_pairs, lambda index: len(index.pairs) > 0)

    def index_joins(self, columns: Sequence[str]) -> list[str]:
        """Add the joins of words to the word indexes of these text columns where the budget has room
        (sde.compressed_columns.index_joins): a regex that may match a space at one character
        (``e.t``, ``th.s``) then reads the lines holding its joins. Returns the columns whose index
        has them."""
        return self._each_indexed(columns, index_joins, lambda index: index.joins is not None)

    def _each_indexed(self, columns: Sequence[str], build: Callable[[Any], WordIndex | None],
                      done: Callable[[WordIndex], bool]) -> list[str]:
        """``build`` (sde.compressed_columns.index_words / index_pairs) for each column's file, in
        order; the columns whose index it gave is ``done``. A column that fails loses nothing: its
        searches read the lines, and report what is wrong with it."""
        indexed = []
        for column in columns:
            try:
                index = build(self._compressed.get(self.names.get(column, "")))
            except (QueryError, OSError, pa.ArrowException):
                continue
            if index is not None and done(index):
                indexed.append(column)
        if indexed:
            self.indexes_made += 1  # filters compiled before may now use them
        return indexed

    def indexed_sql(self, masks: dict[str, pa.Array], clause: Clause) -> IndexAnswer | None:
        """A ``contains`` / ``has`` / ``matches`` clause on a column with a word index, as the rows
        it matches or may match (sde.filters.IndexedSql): its rows as the word index marks them
        (:meth:`marked_sql`), those left to test tested now where they lie in few batches
        (:meth:`_tested_now`)."""
        answered = self.marked_sql(masks, clause)
        if answered is None or answered.exact:
            return answered
        return self._tested_now(masks, clause, answered) or answered

    def _tested_now(self, masks: dict[str, pa.Array], clause: Clause, answered: IndexAnswer) -> IndexAnswer | None:
        """The rows a word index left to test (``answered``, see :meth:`marked_sql`) tested now, once:
        their batches decompressed (or taken from the column kept whole) and the clause's SQL run
        on their values alone, so the query reads a mask. A query would otherwise read the whole
        column, and decompress it when it is not kept (10M lines: ~1 s a query), and a band's
        queries would each test them. Where their batches are at most :data:`TEST_NOW_SHARE` of
        the column's, or of a column kept whole hold at most :data:`TEST_NOW_BYTES`; else None."""
        column = self._compressed.get(self.names.get(clause.column, ""))
        names, sure = answered.rows, answered.sure
        if not names or not isinstance(column, CompressedColumn):
            return None  # every line: the query's scan tests those not matched for sure
        rows = functools.reduce(pc.and_kleene, [masks[name] for name in names])
        batches = _batches_holding(rows)
        if column.kept_whole() is None:
            if batches > TEST_NOW_SHARE * column.batches:
                return None  # most batches: a query's scan decompresses them as fast, in parallel
        elif batches * column.nbytes > TEST_NOW_BYTES * column.batches:
            return None  # the values are in memory: a query's scan reads them as fast
        positions = np.flatnonzero(np.asarray(pc.fill_null(rows, False)))
        predicate, params = self._clause_sql(answered.test or clause, _TESTED)
        passed = np.asarray(numpy_sql(f"SELECT pos FROM tested WHERE {predicate}", params,
                                      {"tested": pa.table({"pos": positions, _TESTED: column.take(positions)})})["pos"],
                            dtype=np.int64)
        found = np.zeros(len(rows), dtype=bool)
        found[passed] = True
        matched = pa.array(found, mask=np.asarray(rows.is_null()) if rows.null_count else None)
        masks[names[0]] = matched if sure is None else pc.or_kleene(masks[sure], matched)
        return IndexAnswer((names[0],), True)

    def marked_sql(self, masks: dict[str, pa.Array], clause: Clause) -> IndexAnswer | None:
        """A ``contains`` / ``has`` / ``matches`` clause on a column with a word index, as the rows
        its word index marks (the answer of sde.filters.IndexedSql). Text without a space, or a regex that can only
        match within a word (sde.word_index.within_one_word), matches inside one word, so the rows
        of the words it matches are exactly its rows (for a regex anchored with ^ or $, rows to
        test). A phrase (words with one space between): rows where words passing its pieces follow
        each other (WordIndex.phrase_rows: its :data:`INDEXED_PIECES` longest pairs of pieces),
        to be tested. A regex whose only parts that may match a space are single characters
        (sde.word_index.space_cuts: ``th.s``): the rows of the words it matches whole (matched, with no
        line anchor), and for each way its matches may fall across words, rows where words passing
        its pieces follow each other (WordIndex.way_rows), to be tested. Other
        text with spaces, or another regex: rows with a word matching each of its
        :data:`INDEXED_PIECES` longest pieces, to be tested. Rows to test are marked only when in
        at most :data:`PIECE_ROWS_SHARE` of the rows (else the test costs what the marks save).
        Each mark is a boolean column of this query (``masks``). None where the index does not
        help: no index, only spaces, another regex, or words too common."""
        index = word_index(self._compressed.get(self.names.get(clause.column, "")))
        value = clause.value
        if index is None or not isinstance(value, str):
            return None
        phrase = phrase_pieces(value) if clause.op == "contains" else None
        if phrase is not None:
            tests = [self._word_test(replace(clause, value=text), shape) for text, shape in phrase]
            steps = sorted(range(len(phrase) - 1), key=lambda i: len(phrase[i][0]) + len(phrase[i + 1][0]),
                           reverse=True)[:INDEXED_PIECES]
            return self._marked(masks, [index.phrase_rows(tests, steps, PIECE_ROWS_SHARE)], exact=False)
        if clause.op == "matches":
            exact = within_one_word(value)
            cuts = space_cuts(value) if exact is None else None
            cut = None if cuts is None else self._cut(masks, index, clause, cuts)
            if cut is not None:
                return cut
            clauses = [clause] if exact is not None else [
                replace(clause, op="contains", value=word)
                for word in sorted(dict.fromkeys(required_words(value)), key=len, reverse=True)[:INDEXED_PIECES]]
        else:
            pieces = sorted(dict.fromkeys(piece for piece in value.split(" ") if piece), key=len, reverse=True)
            exact = pieces == [value]
            clauses = [replace(clause, value=piece) for piece in pieces[:INDEXED_PIECES]]
        return self._marked(masks, [index.matching_rows(test, None if exact else PIECE_ROWS_SHARE)
                                    for test in map(self._word_test, clauses)], bool(exact))

    def _cut(self, masks: dict[str, pa.Array], index: WordIndex, clause: Clause,
             alternatives: Sequence[SpaceCuts]) -> IndexAnswer | None:
        """A regex cut at the characters that may be spaces (sde.word_index.space_cuts, one cut per
        alternative) as rows: those of the words matching an alternative whole (matched for sure,
        unless it has a line anchor), and those where words passing the pieces of a way across
        words follow each other (WordIndex.way_rows, to be tested). Where the words of a way are in
        most rows, every line not matched for sure is tested (no rows to test named: every one); None when
        no line is. Where every word matching an alternative whole is marked for sure, the lines
        left are tested with the ways across words alone, their cuts spaces (``th.s``: the text
        "th s", a substring test, not RE2). Where the index has the joins of words (sde.word_joins),
        a way whose lines are those holding its join (``e.t``) is matched for sure from them, and
        the others' lines to test are narrowed to those holding their joins (``th.s``: "h"/"s")."""
        def test(piece: str | None) -> WordTest | None:
            return None if piece is None else self._word_test(replace(clause, value=piece))

        sure: list[pa.Array] = []
        tested: list[pa.Array] = []
        every_line = False
        only_across = True  # whether a line no sure row holds can match only across words
        for cuts in alternatives:
            ways = []
            for way, joins, joined in zip(cuts.across, cuts.joins, cuts.joined):
                holding = index.joined_rows(joins[0]) if joined else None  # type: ignore[arg-type]
                if holding is not None:  # its lines are those holding its join: matched
                    sure.append(holding)
                else:
                    ways.append((way, joins))
            if ways:
                across = index.way_rows([[test(piece) for piece in way] for way, _ in ways], PIECE_ROWS_SHARE,
                                        [joins for _, joins in ways])
                if across is None:
                    every_line = True
                else:
                    tested.append(across)
            if cuts.within is not None:
                # rows matched for sure are never tested: marking them pays up to the share of an exact search
                within = index.matching_rows(test(cuts.within), None if cuts.sure else PIECE_ROWS_SHARE)  # type: ignore[arg-type]
                only_across &= cuts.sure and within is not None
                if within is None:
                    every_line = True
                else:
                    (sure if cuts.sure else tested).append(within)
        def marked(rows: list[pa.Array], exact: bool) -> IndexAnswer | None:
            return self._marked(masks, [functools.reduce(pc.or_, rows)], exact) if rows else None

        spaced = [way for cuts in alternatives for way in cuts.spaced]
        across_test = replace(clause, value="|".join(spaced)) if only_across and spaced else None
        if every_line:
            matched = marked(sure, exact=True)
            return None if matched is None else IndexAnswer((), False, matched.rows[0], across_test)
        to_test = marked(tested, exact=False)
        matched = marked(sure, exact=True)
        if to_test is None:
            return matched
        return IndexAnswer(to_test.rows, False, None if matched is None else matched.rows[0], across_test)

    def _word_test(self, clause: Clause, word: str = WORD) -> WordTest:
        """A text clause compiled for the words of a word index (sde.word_index.WordTest)."""
        return WordTest(*self._clause_sql(clause, WORD), word)

    def _clause_sql(self, clause: Clause, name: str) -> tuple[str, list[Any]]:
        """A text clause as SQL over a column called ``name``: (predicate, params)."""
        lower = (clause.column,) if clause.column in self.lower_case else ()
        predicate, params = bound_sql([clause], {clause.column: TEXT}, names={clause.column: name}, lower_columns=lower,
                                      single_line_columns=self.single_line)  # read only for a LIKE test
        return predicate, list(params)

    @staticmethod
    def _marked(masks: dict[str, pa.Array], found: Sequence[pa.Array | None], exact: bool) -> IndexAnswer | None:
        """The rows ``found`` (None: a test left to the scan) as columns of the query, ANDed."""
        names = []
        for rows in found:
            if rows is not None:
                names.append(f"m{len(masks)}")
                masks[names[-1]] = rows
        if not names:
            return None
        return IndexAnswer(tuple(names), exact and len(names) == 1)

    @staticmethod
    def _row(sql: str, params: Sequence[Any], tables: Mapping[str, Any]) -> tuple:
        return rows_sql(sql, params, tables)[0]

    def _fetch(self, sql: str, params: Sequence[Any], tables: Mapping[str, Any],
               streamed: Sequence[CompressedColumn | LabelColumn]) -> tuple[np.ndarray, np.ndarray]:
        got = numpy_sql(sql, params, tables)  # the query's table "t" is in them (see _source)
        # after the query: the read must not slow it; none while a warm-up builds indexes in the same
        # budget (10M lines, --memory-limit 2GB: a 0.7 GB column beside a build; 4GB: two, 4.6 GB in all)
        for column in streamed if self.keep_searched and not self.indexes_building else ():
            keep_for_next_scan(column)
        pos = np.asarray(got["pos"], dtype=np.int64)
        return pos, np.asarray(got.get("n", pos[:0]), dtype=np.int64)


class TableQuery:
    """Filter, sort and page one DataFrame through DuckDB, fast enough for a 1M-row table behind a
    web UI (a filtered, sorted view of 1M rows is one SQL query of tens of milliseconds).

    The frame must not be modified after this object is built: DuckDB reads its buffers in place
    (no copy). The last ``max_results`` views (filter, sort) are kept as row positions, within
    :func:`kept_views_bytes`, so the next page is a slice; the caches are bounded LRUs, safe to
    share between server threads.
    """

    def __init__(self, df: pd.DataFrame, *, max_results: int = 8,
                 virtual: Mapping[str, Callable[[str, str], Any]] | None = None) -> None:
        self.df = df
        self.columns: list[str] = [str(c) for c in df.columns]
        self._labels = {str(c): c for c in df.columns}
        self._n = len(df)
        kept = kept_views_bytes()
        # one whole view may fill its cache: a view not kept is sorted again for each page
        self._results = LRUCache(kept, lambda pos: pos.nbytes, max_item_fraction=1, max_items=max_results)
        self._prefixes = LRUCache(max_results)  # (rows in the view, positions of its first rows: a few thousand)
        # (rows in the view, rank of a band's first row, its positions)
        self._bands = LRUCache(kept, _band_bytes, max_item_fraction=1, max_items=max_results)
        # parts → _compile's answer
        self._filters = LRUCache(min(COMPILED_FILTER_BYTES, kept), _compiled_bytes)
        # Filter-only columns: name → fn(op, value) returning a VirtualSql (a condition on the row
        # position), or a boolean mask over the rows; raising QueryError for values it does not
        # take. E.g. `{error} = "sub cat bat"`. They can be filtered, not sorted or shown.
        self._virtual = dict(virtual or {})
        self._filterable = self.columns + [v for v in self._virtual if v not in self._labels]
        self._kinds: dict[str, str] = {str(c): column_kind(df[c].dtype) for c in df.columns}
        for name in self._virtual:
            self._kinds.setdefault(name, VIRTUAL)
        self._engine = _Engine(df, self._kinds)

    def _series(self, column: str) -> pd.Series:
        return self.df[self._labels[column]]

    # -- public API --------------------------------------------------------------------------

    def kind(self, column: str) -> str:
        """The column's kind: "number", "text", "bool" or "other" (sortable, not filterable)."""
        _check_column(column, self.columns)
        return self._kinds[column]

    def clauses(self, filter: str | Sequence[Node] | None) -> list[Node]:
        """Parse (if text) and check a filter against this table's columns and types: the parts of
        its top-level AND (each a :class:`Clause`, or an Or / Not / Compare node)."""
        parts = self._as_clauses(filter)
        self._bind(parts, filter)
        return parts

    def select(self, filter: str | Sequence[Node] | None = None,
               sort: str | Sequence[tuple[str, bool]] | None = None) -> np.ndarray:
        """Row positions (int64, read-only) of the filtered view, in sort order (else table order)."""
        parts, sort_keys, key = self._key(filter, sort)
        return self._results.get_or_compute(key, lambda: _frozen(self._run(parts, sort_keys)))

    def _key(self, filter: str | Sequence[Node] | None, sort: str | Sequence[tuple[str, bool]] | None,
             ) -> tuple[list[Node], list[tuple[str, bool]], Any]:
        """The bound parts, the sort keys and the cache key of a view (the parts of an AND in any order)."""
        parts = list(dict.fromkeys(self._bind(self._as_clauses(filter), filter)))
        sort_keys = self._as_sort(sort)
        return parts, sort_keys, (_filter_key(parts), tuple(sort_keys))

    def _run(self, parts: list[Node], sort_keys: list[tuple[str, bool]], limit: int | None = None) -> Any:
        """The view's positions, or with ``limit``: (its size, the positions of its first rows)."""
        if not parts and not sort_keys:
            pos = np.arange(self._n, dtype=np.int64)
            return pos if limit is None else (self._n, pos[:limit])
        where, params, tables, masks = self._compiled(parts)
        columns, order, _ = self._order(sort_keys)
        if limit is None:
            return self._engine.positions(where, params, tables, order, masks)
        return self._engine.prefix(where, params, tables, order, columns, limit, masks,
                                   by_text=any(self._engine.sorts_as_text(c) for c, _ in sort_keys))

    def _compiled(self, parts: list[Node]) -> tuple[str, list[Any], dict[str, Any], dict[str, pa.Array]]:
        """The filter as SQL: (where, params, the tables and the word-index masks it reads), kept
        for the next sort or page of it (:data:`COMPILED_FILTER_BYTES`) until the word indexes change."""
        key = (_filter_key(parts), self._engine.indexes_made)
        where, params, tables, masks = self._filters.get_or_compute(key, lambda: self._compile(parts))
        return where, list(params), dict(tables), dict(masks)  # copies: the kept answer is shared by requests

    def _compile(self, parts: list[Node]) -> tuple[str, list[Any], dict[str, Any], dict[str, pa.Array]]:
        tables: dict[str, Any] = {}
        masks: dict[str, pa.Array] = {}
        virtual = {name: functools.partial(self._virtual_sql, name, tables) for name in self._virtual}
        self._engine.table()
        where, params = bound_sql(parts, self._kinds, virtual=virtual, names=self._engine.names,
                                  lower_columns=self._engine.lower_case,
                                  single_line_columns=self._engine.single_line,
                                  indexed=functools.partial(self._engine.indexed_sql, masks))
        return where, list(params), tables, masks

    def _order(self, sort_keys: list[tuple[str, bool]]) -> tuple[list[str], str, str]:
        """(the names the sort reads, its ORDER BY, its first key; "" for no sort): a key is a
        name, or an expression of one (see _Engine.sort_key)."""
        read = [self._sort_key(c, desc) for c, desc in sort_keys]
        order = ", ".join(f"{key} {'DESC' if desc else 'ASC'} NULLS LAST" for (_, key), (_, desc) in zip(read, sort_keys))
        return [name for name, _ in read], order, read[0][1] if read else ""

    def _band(self, parts: list[Node], sort_keys: list[tuple[str, bool]], start: int, end: int,
              ) -> tuple[int, int, np.ndarray] | None:
        """(rows in the view, rank of the band's first row, its positions) around ``[start, end)``,
        or None (see _Engine.band). Numbers, labels and text only: their sort order is DuckDB's."""
        column, desc = sort_keys[0]
        if self._kinds[column] not in (NUMBER, TEXT):
            return None
        where, params, tables, masks = self._compiled(parts)
        _, order, key = self._order(sort_keys)
        return self._engine.band(where, params, tables, order, key, desc, start, end, masks)

    def window(self, filter: str | Sequence[Node] | None, sort: str | Sequence[tuple[str, bool]] | None,
               start: int, end: int) -> tuple[int, np.ndarray]:
        """(rows in the view, positions of its rows ``[start, end)``): a page without sorting the
        whole view. The first pages of a new sorted view come from DuckDB's top-N (a sort of 1M
        rows costs ~100 ms, the top 1,000 ~10), pages up to :data:`LONG_PREFIX_ROWS` from a
        longer one; a page past them from a band of the view around it (:meth:`_Engine.band`),
        whose next pages are slices of it; where a band does not pay, the whole view is sorted
        once, and later pages are slices of that."""
        parts, sort_keys, key = self._key(filter, sort)
        full = self._results.get(key)
        if full is None and sort_keys and end <= LONG_PREFIX_ROWS:
            got = self._prefixes.get(key)
            if got is None or (end > len(got[1]) and len(got[1]) < got[0]):  # none yet, or too short for this page
                got = self._run(parts, sort_keys, PREFIX_ROWS if end <= PREFIX_ROWS else LONG_PREFIX_ROWS)
                self._prefixes.put(key, got)
            total, pos = got
            if len(pos) == total:  # the whole view
                self._results.put(key, _frozen(pos))
            return total, pos[start:end]
        if full is None and sort_keys:
            band = self._bands.get(key)  # (rows in the view, rank of its first row, positions)
            if band is None or not band[1] <= start <= min(end, band[0]) <= band[1] + len(band[2]):
                band = self._band(parts, sort_keys, start, end)
                if band is not None:
                    self._bands.put(key, band)
            if band is not None:
                total, first, pos = band
                return total, pos[max(0, start - first):max(0, end - first)]
        pos = self.select(parts, sort_keys) if full is None else full
        return int(len(pos)), pos[start:end]

    def _sort_key(self, column: str, desc: bool) -> tuple[str, str]:
        key = self._engine.sort_key(column, desc)
        if key is None:
            raise QueryError(f"{{{column}}} ({self._series(column).dtype}) cannot be sorted.")
        return key

    def _virtual_sql(self, name: str, tables: dict[str, Any], op: str, value: str) -> tuple[str, list[Any]]:
        got = self._virtual[name](op, value)
        if isinstance(got, VirtualSql):
            for table, frame in got.tables.items():
                if table == "t" or table in tables and tables[table] is not frame:
                    raise QueryError(f"{{{name}}} uses table name {table!r} twice.")
                tables[table] = frame
            return got.sql, list(got.params)
        mask = np.asarray(got, dtype=bool)
        if mask.shape != (self._n,):
            raise QueryError(f"{{{name}}} gave {mask.shape} values for {self._n} rows.")
        table = f"v{len(tables)}"
        tables[table] = pa.table({"pos": np.flatnonzero(mask).astype(np.int64)})
        return f"pos IN (SELECT pos FROM {table})", []

    def hints(self, filter: str | Sequence[Node] | None) -> list[Hint]:
        """Advice for a valid filter, to show beside its results ([] when there is none, or when
        the filter has an error: that is reported by :meth:`select`).

        Today: a text ``=`` that matches no row while the same value ignoring case does
        (``{lang} = "EN"`` when the data says "en") offers ``=~``, with the count and examples.
        """
        try:
            parts = self._bind(self._as_clauses(filter), filter)
        except QueryError:
            return []
        out: list[Hint] = []
        seen: set[Clause] = set()
        for part in parts:
            for leaf in positive_leaves(part):
                if (not isinstance(leaf, Clause) or leaf.op != "=" or leaf in seen
                        or self._kinds[leaf.column] != TEXT):
                    continue
                seen.add(leaf)
                hint = self._case_hint(leaf, parts)
                if hint is not None:
                    out.append(hint)
        return out

    def _case_hint(self, leaf: Clause, parts: list[Node]) -> Hint | None:
        if len(self.select([leaf])):
            return None
        ignoring_case = replace(leaf, op="=~")
        matches = self.select([ignoring_case])
        if not len(matches):
            return None
        column = self._series(leaf.column)
        examples = list(dict.fromkeys(str(column.iat[i]) for i in matches[:200]))[:3]
        shown = ", ".join(f'"{_short_text(e)}"' for e in examples)
        suggestion = format_filter([replace_node(p, leaf, ignoring_case) for p in parts])
        return Hint(f"{leaf.to_q()} matches no row; ignoring case, {ignoring_case.to_q()} matches "
                    f"{len(matches):,} ({shown}).", suggestion)

    def count(self, filter: str | Sequence[Node] | None = None) -> int:
        """Number of rows matching the filter."""
        return int(len(self.select(filter)))

    def page(self, filter: str | Sequence[Node] | None = None,
             sort: str | Sequence[tuple[str, bool]] | None = None,
             page: int = 0, page_size: int = 50) -> tuple[int, pd.DataFrame]:
        """``(total matching rows, the rows of page number ``page`` (0-based), all columns)``.

        ``page_size`` above :data:`MAX_PAGE_SIZE` is clamped to it; a page past the end is empty.
        """
        page = _as_int(page, "page")
        page_size = _as_int(page_size, "page_size")
        if page < 0:
            raise QueryError(f"page must be 0 or more (got {page}).")
        if page_size <= 0:
            raise QueryError(f"page_size must be at least 1 (got {page_size}).")
        page_size = min(page_size, MAX_PAGE_SIZE)
        start = page * page_size
        total, pos = self.window(filter, sort, start, start + page_size)
        return total, take_rows(self.df, pos)

    def rows(self, filter: str | Sequence[Node] | None = None,
             sort: str | Sequence[tuple[str, bool]] | None = None,
             start: int = 0, end: int | None = None) -> tuple[int, pd.DataFrame]:
        """Like :meth:`page` with an AG Grid style ``[start, end)`` row range (startRow/endRow)."""
        start = _as_int(start, "start")
        end = start + 100 if end is None else _as_int(end, "end")
        if start < 0 or end < start:
            raise QueryError(f"Invalid row range {start}..{end}.")
        end = min(end, start + MAX_PAGE_SIZE)
        total, pos = self.window(filter, sort, start, end)
        return total, take_rows(self.df, pos)

    def warm(self, columns: Sequence[str] | None = None, descending: bool = True, *,
             text: Sequence[str] | None = None) -> list[str]:
        """Prepare the engine (e.g. in a background thread at startup) so the first query does not
        pay for it: the Arrow view of the table, the DuckDB connection and which of the ``text``
        columns (default: every text column) are lower case (~70 ms for 10M lines of text; other
        columns learn it on their first ``contains``), and the compressed columns small enough
        to keep in memory read whole (sde.compressed_columns.preload: pages then decompress
        nothing). From then on a compressed column that a query streamed is read whole in the
        background when the budget keeps it (sde.compressed_columns.keep_for_next_scan), so the
        next search scans memory. The ``text`` columns named (the transcripts) are indexed by word
        where the budget has room (sde.word_index: ~5-6 s per 10M lines on two cores, or mapped at
        once from the files a previous start wrote, sde.index_files); returns those indexed.
        ``columns`` (checked) and ``descending`` are accepted for compatibility: DuckDB
        keeps no per-column order. :meth:`warm_search` and :meth:`warm_columns` are its two halves."""
        for c in columns or ():
            _check_column(c, self.columns)
        wanted = self.columns if text is None else [c for c in text if c in self._kinds]
        self._prepare(wanted)
        self.warm_columns(wanted)
        if text is None:
            return []
        return self._engine.index_words([c for c in wanted if self._kinds[c] == TEXT])

    def map_indexes(self, text: Sequence[str]) -> bool:
        """Map the word indexes a previous start wrote beside these transcript columns (milliseconds,
        nothing built); True when each of them stored compressed has its index now. A warm-up then
        serves searches at full speed before it reads columns whole (:meth:`warm_search` first);
        otherwise those reads come first, and the indexes are built from them (:meth:`warm`)."""
        compressed = self._engine.compressed([c for c in text if self._kinds.get(c) == TEXT])
        return bool(compressed) and len(self._engine.stored_indexes(compressed)) == len(compressed)

    def stored_compressed(self, text: Sequence[str]) -> list[str]:
        """Of these text columns, those stored compressed: the ones word indexes are built for."""
        return self._engine.compressed([c for c in text if self._kinds.get(c) == TEXT])

    def warm_search(self, text: Sequence[str]) -> list[str]:
        """:meth:`warm` without its reads of whole columns: the engine prepared and these transcript
        columns indexed by word (mapped, else built from their files streamed). Returns those indexed."""
        wanted = [c for c in text if c in self._kinds]
        self._prepare(wanted)
        return self._engine.index_words([c for c in wanted if self._kinds[c] == TEXT])

    def warm_columns(self, text: Sequence[str], indexes_to_build: bool = False) -> None:
        """:meth:`warm`'s reads of whole columns: the compressed columns the budget keeps (smallest
        first), then whether these text columns hold a line break; from then on a column a query
        streamed is read whole for the next (sde.compressed_columns.keep_for_next_scan); with
        ``indexes_to_build`` (a server's warm-up builds them next, in the same budget), only from
        :meth:`warm_transcripts` on."""
        preload(self.df)
        # whether each holds a line break, read now where kept whole (another: once it is)
        self._engine.single_line.learn(c for c in text if self._kinds.get(c) == TEXT)
        self._engine.indexes_building = indexes_to_build
        self._engine.keep_searched = True

    def _prepare(self, text: Sequence[str]) -> None:
        self._engine.table()
        cursor().close()
        self._engine.lower_case.learn(c for c in text if self._kinds[c] == TEXT)

    def warm_transcripts(self, text: Sequence[str]) -> list[str]:
        """Last in a warm-up: read whole, in order, these transcripts where the budget has room
        left (sde.compressed_columns.preload_transcripts; after whatever else the warm-up read
        whole, which would push them out): their phrases and regexes across words then test lines
        in memory. Returns those in memory after it; whether each holds a line break is read
        now where it is (a column written before that was counted). From then on a column a query
        streamed is read whole for the next where the budget keeps it: the indexes are built (see
        :meth:`warm_columns`)."""
        kept = preload_transcripts(self.df, [c for c in text if self._kinds.get(c) == TEXT])
        self._engine.single_line.learn(kept)
        self._engine.indexes_building = False
        return kept

    def warm_sorts(self, text: Sequence[str] | None = None) -> list[str]:
        """After :meth:`warm`: rank these text columns (default: every one), in order, while the budget
        has room (_Engine.rank_text: ~5 s and 40 MB per 10M lines), those holding numbers numbers
        first: sorts by them, and pages deep in those sorts, then compare integers. Returns the
        columns ranked."""
        wanted = self.columns if text is None else list(dict.fromkeys(text))
        return self._engine.rank_text([c for c in wanted if self._kinds.get(c) == TEXT])

    def warm_phrases(self, text: Sequence[str]) -> list[str]:
        """After :meth:`warm`: index the pairs of common words of these transcripts' word indexes,
        in order, while the budget has room (~5 s and ~0.15 GB per 10M lines; a phrase of common words
        such as "of the" then tests only the lines that hold it). Returns the columns done."""
        return self._engine.index_pairs([c for c in text if self._kinds.get(c) == TEXT])

    def warm_joins(self, text: Sequence[str]) -> list[str]:
        """After :meth:`warm`: index the joins of words of these transcripts' word indexes (the byte
        ending each word and the byte starting the next, sde.word_joins), in order, while the budget
        has room (~6 s on two cores and ~0.25 GB per 10M lines): a regex that may match a space at
        one character then reads the lines holding its joins (``e.t``: matched from them; ``th.s``:
        fewer lines to test). Returns the columns done."""
        return self._engine.index_joins([c for c in text if self._kinds.get(c) == TEXT])

    # -- parsing against the table -----------------------------------------------------------

    def _as_clauses(self, filter: str | Sequence[Node] | None) -> list[Node]:
        if filter is None or isinstance(filter, str):
            return parse_filter(filter, self._filterable)
        parts = list(filter)
        for part in parts:
            if not isinstance(part, NODES):
                raise QueryError(f"Expected filter clauses, got {type(part).__name__}.")
        check_bounds(parts)
        for part in parts:
            for col in column_refs(part):
                _check_column(col.name, self._filterable, col.pos)
        return parts

    def _bind(self, parts: list[Node], filter: Any) -> list[Node]:
        """The parts checked against the columns' types, values converted (see sde.filters.bind)."""
        text = filter if isinstance(filter, str) else None
        bound = [bind(p, self._kinds, text) for p in parts]
        for part in bound:
            for leaf in leaves(part):
                if isinstance(leaf, Clause) and self._kinds[leaf.column] == VIRTUAL:
                    try:
                        self._virtual[leaf.column](leaf.op, leaf.value)  # the column checks its value
                    except QueryError as e:
                        if e.position is None:
                            e.position, e.text = leaf.pos, text
                        raise
        return bound

    def _as_sort(self, sort: str | Sequence[tuple[str, bool]] | None) -> list[tuple[str, bool]]:
        if sort is None or isinstance(sort, str):
            return parse_sort(sort, self.columns)
        out = _SortKeys()
        for item in sort:
            try:
                name, desc = item
            except (TypeError, ValueError):
                raise QueryError(f"Expected (column, descending) pairs for sort, got {_short(item)}.") from None
            name = str(name)
            if name not in out:
                _check_column(name, self.columns)
            out.add(name, bool(desc))
        return out.keys


# ---------------------------------------------------------------------------------------------
# Helpers


def _sole_mask(where: str, masks: Mapping[str, pa.Array]) -> pa.Array | None:
    """The mask a filter is alone (``(m0)``: the rows one word index marks exactly), else None."""
    return masks.get(where.strip("()"))


def _spread_sample(total: int) -> str:
    """A test of ``pos`` that about :data:`BAND_SAMPLE` of a view's ``total`` rows pass, spread
    over the table: the fraction of ``pos`` times the golden ratio below the sample's share (a Weyl
    sequence). A reservoir sample shuffles every row of the view (10M rows: ~0.1 s); every k-th row
    could share a period with the manifest's order; this has none, and costs a multiplication."""
    share = min(1.0, BAND_SAMPLE / max(total, 1))
    return f"((pos::UBIGINT * 2654435761) & 4294967295) < {math.ceil(share * 2**32)}"


def _band_edges(grid: Sequence[Any], keyed_share: float, start: float, end: float, desc: bool,
                sampled: int = BAND_SAMPLE) -> tuple[Any, Any] | None:
    """The key's values bounding a band of the view that holds the rows ranked from ``start`` to
    ``end`` (shares of the view), from ``grid``: the quantiles 0, 1/BAND_GRID, …, 1 of a sample of
    ``sampled`` rows of the view, of which ``keyed_share`` had a key (rows without sort last). None
    for an unbounded side. The margins: BAND_SIGMAS standard errors of a sample's share, and a few
    of its rows (at the ends, where the error is skewed); the grid's step rounds outwards."""
    def margin(share: float) -> float:
        share = min(max(share, 0.0), 1.0)
        return BAND_SIGMAS * math.sqrt(share * (1 - share) / sampled) + 8 / sampled

    spread = margin(keyed_share) / keyed_share  # the share of rows with a key is a sample's too
    low = start / keyed_share - margin(start / keyed_share) - spread
    high = end / keyed_share + margin(end / keyed_share) + spread
    if low >= 1:
        return None  # among the rows without a key
    steps = len(grid) - 1
    first = None if low <= 0 else math.floor(low * steps)  # grid index, ascending
    last = None if high >= 1 else math.ceil(high * steps)
    if desc:
        first, last = (None if first is None else steps - first), (None if last is None else steps - last)
    return (None if first is None else grid[first]), (None if last is None else grid[last])


def _frozen(a: np.ndarray) -> np.ndarray:
    # Cached arrays are handed to callers; read-only so nobody can corrupt the cache.
    a.flags.writeable = False
    return a


def _as_int(v: Any, name: str) -> int:
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, str) and len(v) <= 40 and v.strip().lstrip("+-").isdecimal():
        try:
            return int(v)
        except ValueError:  # decimal digits int() still refuses (mixed scripts)
            pass
    raise QueryError(f"{name} must be a whole number (got {_short(v)}).")


def _short_text(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(v: Any, limit: int = 60) -> str:
    """repr of a user value for a message, cut short: an error must not echo a megabyte back."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"
