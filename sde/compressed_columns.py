"""String columns kept compressed on disk and read a batch at a time.

Transcripts, hypotheses and audio paths are most of a dataset's bytes. Stored plainly they made a
built dataset 1.7× its manifest; compressed (zstd, Arrow IPC record batches of :data:`BATCH_ROWS`
rows) they take about a third. A page of rows decompresses only the batches its rows are in
(~0.2 ms each, the last few kept; those of several columns at once on the engine's threads:
:func:`take_rows`). A query that needs the whole column (a ``contains`` filter, a sort by text)
streams it through DuckDB batch by batch, so memory stays bounded whatever the size;
when the column fits the budget of whole columns (:func:`whole_budget`) it is then read whole in
the background, and the next search scans memory. The word indexes of transcript columns
(:func:`index_words`, sde.word_index) are kept within the same budget, ahead of whole columns.

:class:`CompressedColumn` is one such file; :class:`CompressedStringArray` is the pandas array over
it, so every table view, API route and analysis that takes rows (``df.iloc[rows]``, ``s.iat[i]``)
reads only those rows, and any other use still works: it reads the column whole (kept when small,
see :meth:`CompressedColumn.read_all`).

A column of few distinct values (speakers, languages, splits) is stored as labels instead
(:class:`LabelColumn`): one small integer per row, memory-mapped, and the distinct values once. It
takes ~2 bytes a row on disk, reads without decompressing, and groups by its codes directly (a
breakdown by speaker at 10M rows needs no string hashing). :func:`open_column` opens either kind.
"""

from __future__ import annotations

import inspect
import itertools
import os
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import is_integer
from pandas.core.arrays.string_arrow import ArrowStringArray

from sde.caching import LRUCache
from sde.engine import (kept_memory_bytes, machine_memory, query_memory_bytes, release_freed_memory, room_in_process,
                        settings)
from sde.filters.engine import holds_no_ascii_upper, holds_no_line_break, stopping
from sde.index_files import read_index, read_number_ranks, read_ranks, write_number_ranks, write_part, write_ranks
from sde.text import string_buffers
from sde.word_index import WordIndex, build_word_index, with_joins, with_pairs

__all__ = ["BATCH_ROWS", "CompressedColumn", "CompressedStringArray", "LabelColumn", "compressible",
           "has_number_ranks", "held_whole", "index_joins", "index_pairs", "index_words", "is_compressed", "keep_number_ranks",
           "keep_ranks", "label_column", "open_column", "preload",
           "preload_transcripts",
           "read_strings", "distinct_count", "present_count", "decompress_ahead", "rows_per_take", "take_rows", "row_reader", "value_codes", "keep_for_next_scan", "sort_keys", "query_room", "stored_column", "string_chunks", "whole_budget", "word_index",
           "write_compressed"]

# Rows per compressed batch: small enough that a page of 50 scattered rows decompresses in a few
# ms, large enough that zstd still finds the text's repetitions (4,096 rows compress as well as 64K).
BATCH_ROWS = 4_096
CODEC = "zstd"
# Decompressed batches kept per column (~4,096 rows of ~70 bytes each: ~300 KB a batch).
CACHED_BATCHES = 64
#: Seconds the warm-up's last step waits for the process to have room for a transcript read whole
#: (preload_transcripts): the memory of the steps before is handed back within about one.
ROOM_WAIT_S = 5.0
#: Batches one thread decompresses at a time for CompressedColumn.stream (~1.2 MB of text each).
STREAM_BATCHES = 16
#: The least bytes of whole decompressed columns kept, all columns together (see whole_budget):
#: the transcripts and paths of 1M utterances of ~30 words.
WHOLE_BYTES = 2**30
#: Without --memory-limit, whole columns may take this share of the machine's memory (DuckDB's own
#: default takes 80%): on 24 GiB, 6 GiB, the transcripts and paths of 10M utterances (3.4 GB).
WHOLE_SHARE_OF_MEMORY = 4
#: Seconds after a search streamed a column before it is read whole for the next one (see
#: keep_for_next_scan): the search's answer goes out first.
READ_LATER_DELAY_S = 1.0
#: The server's warm-up reads whole a column of at most this share of the budget (a bigger one is
#: read after its first search).
PRELOAD_SHARE = 4


def whole_cache(budget: int) -> LRUCache:
    """An empty cache of whole columns of ``budget`` bytes. One column may fill it: the column
    searched last is the one searched next."""
    return LRUCache(budget, size_of=lambda array: array.nbytes, max_item_fraction=1)


_WHOLE = whole_cache(WHOLE_BYTES)
# Word indexes of transcript columns (index_words) and the ranks of text columns (keep_ranks), within
# the same budget and ahead of the whole columns: an index makes a search ~3x faster for ~0.6x a
# column's memory (ranks: a sort by text ~3x faster for ~0.05x), so a whole column is kept only in
# what they leave, and never pushes one out.
_WORDS = whole_cache(WHOLE_BYTES)
#: Whether word indexes and ranks are written beside their column's file once built, and read
#: from there (sde.index_files): a start then maps them instead of building them again.
KEEP_IN_FILES = True
_MARK = b"sde.compressed"
#: A column is stored as labels when it has at most this many distinct values, and at most one per
#: :data:`LABEL_MIN_ROWS_PER_VALUE` rows (a short column of unique strings stays compressed). Words
#: of an errors table (~100k distinct hypothesis words in 14M errors) are labels too.
LABEL_MAX_VALUES = 1 << 20
#: The most bytes of row codes (with each chunk's own distinct values) held while a column is
#: written, for it to be written as labels from them (beyond, it is compressed, then rewritten as
#: labels looked up in the column read back): each errors column of 10M utterances holds ~80 MB.
KEPT_CODE_BYTES = 128 << 20
LABEL_MIN_ROWS_PER_VALUE = 8
_LABELS = b"labels"


def whole_budget() -> int:
    """Bytes of whole decompressed columns this process keeps: half of --memory-limit when one
    is set (2GB keeps one 10M-row transcript column, 8GB all of them), else a quarter of the
    machine's memory and at least :data:`WHOLE_BYTES`."""
    limit = settings().memory_limit
    if limit:
        return kept_memory_bytes(limit)
    return max(WHOLE_BYTES, machine_memory() // WHOLE_SHARE_OF_MEMORY)


def query_room() -> int:
    """Bytes one query's work may take: DuckDB's half of --memory-limit where one is set
    (sde.engine.query_memory_bytes), else what the whole columns may keep (:func:`whole_budget`)."""
    limit = settings().memory_limit
    return query_memory_bytes(limit) if limit else whole_budget()


def _sized_whole() -> LRUCache:
    """The shared cache of whole columns, sized by the current budget less the word indexes kept
    (whole columns over it go, oldest first: they make way for an index)."""
    budget = whole_budget()
    _WORDS.resize(budget)
    _WHOLE.resize(budget - _WORDS.size)
    return _WHOLE


def compressible(type_: pa.DataType) -> bool:
    """Whether a column of this type is written by :func:`write_compressed` (compressed, or as labels
    when it has few distinct values): every string column is."""
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def stored_column(values: pd.Series) -> "CompressedColumn | LabelColumn | None":
    """The file behind a column read from a stored dataset (compressed or labels), while the column
    has not been read whole; None for any other column."""
    array = values.array
    return array.compressed if isinstance(array, CompressedStringArray) else None


def read_strings(values: pd.Series) -> pa.ChunkedArray:
    """A string column's values as Arrow large strings for one whole-column computation: a
    compressed column is read whole (CompressedColumn.read_all), any other shares its buffers
    where it can."""
    column = stored_column(values)
    if column is not None:
        return column.read_all()
    array = values.array
    got = array.__arrow_array__() if hasattr(array, "__arrow_array__") else pa.array(values, from_pandas=True)
    got = got if isinstance(got, pa.ChunkedArray) else pa.chunked_array([got])
    return got if got.type == pa.large_string() else got.cast(pa.large_string())


def distinct_count(values: pd.Series) -> int:
    """Distinct non-missing values of a string column: a label column's own distinct values; a
    compressed one counted by DuckDB from its batches as they decompress (10M audio paths: ~2.7 s;
    the whole column is never read: reading it first held ~0.8 GB more at that size); any other by
    pandas."""
    stored = stored_column(values)
    if isinstance(stored, LabelColumn):
        codes = stored.codes()
        return int(np.count_nonzero(np.bincount(codes[codes >= 0], minlength=len(stored.dictionary))))
    if stored is None:
        return int(values.nunique(dropna=True))
    from sde.filters.engine import numpy_sql

    schema = pa.schema([pa.field("v", pa.large_string())])
    batches = (pa.record_batch([chunk], schema=schema) for chunk in string_chunks(values))
    stream = pa.RecordBatchReader.from_batches(schema, batches)
    return int(numpy_sql("SELECT count(DISTINCT v) AS n FROM t", (), {"t": stream})["n"][0])


def present_count(values: pd.Series) -> int:
    """Non-missing values of a column; a stored string column's from the null count kept with it
    (its values are never read)."""
    stored = stored_column(values)
    if stored is not None:
        return len(stored) - stored.null_count
    return int(values.notna().sum())


def take_rows(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """``frame.iloc[positions]``, the batches its compressed columns need decompressed on the
    engine's workers at once (:func:`decompress_ahead`) rather than column after column."""
    positions = np.asarray(positions, dtype=np.int64)
    decompress_ahead(frame, positions)
    return frame.iloc[positions]


def rows_per_take(frame: pd.DataFrame, positions: np.ndarray, rows: int, most: int) -> int:
    """How many of ``positions`` (the next rows of a view streamed out, such as a CSV) to take from
    ``frame`` at once: ``rows``, unless they are out of table order (a sorted view) and a column is
    read by batch. A take of such rows decompresses nearly every batch of that column whatever its
    size (10M lines: ~0.5 s for 20,000 rows as for 100,000), so it takes up to ``most`` rows, to
    pay that fewer times."""
    if len(positions) <= rows:
        return len(positions)
    by_batch = any(isinstance(column := stored_column(values), CompressedColumn) and column.kept_whole() is None
                   for _, values in frame.items())
    if not by_batch:
        return rows
    chunk = np.asarray(positions[:rows])
    # Rows in table order (a filtered view, unsorted) reach each batch once however they are cut.
    in_order = bool(np.all(chunk[1:] > chunk[:-1]))
    return rows if in_order else min(max(most, rows), len(positions))


def decompress_ahead(frame: pd.DataFrame, positions: np.ndarray) -> int:
    """Decompress, spread over the engine's workers, the batches holding rows ``positions`` (each
    0 ≤ p < len) in every compressed column of ``frame`` not kept whole, and keep them for the take
    that follows. A page of 50 scattered rows at 10M lines lies in ~50 batches of each of five
    text columns (~0.4 ms each): ~100 ms one after another. Rows in more batches than a column
    keeps are left to its own take, which spreads them itself. Returns the batches decompressed."""
    workers = settings().processes
    if workers < 2 or len(positions) == 0:
        return 0
    wanted = np.unique(positions // BATCH_ROWS).tolist()
    if len(wanted) > CACHED_BATCHES:
        return 0
    jobs = [(column, i) for _, values in frame.items() if isinstance(column := stored_column(values), CompressedColumn)
            for i in wanted if not column.cached(i)]
    workers = min(workers, len(jobs))
    if workers < 2:
        return 0

    def decompress(part: list[tuple[CompressedColumn, int]]) -> None:
        readers: dict[str, pa.ipc.RecordBatchFileReader] = {}
        for column, i in part:
            if column.path not in readers:
                readers[column.path] = column.reader(_AHEAD_POOL())
            column.keep_batch(i, readers[column.path].get_batch(i).column(0))

    list(_decompress_pool().map(decompress, [jobs[k::workers] for k in range(workers)]))
    return len(jobs)


# Batches decompressed ahead are freed by another thread (the request's, as the column's cache
# drops them): from Arrow's default pool (mimalloc) that kept ~100 MB more of the process' memory
# after a few hundred pages at 1M lines; from the system's allocator, none.
_AHEAD_POOL = pa.system_memory_pool
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    global _POOL
    _POOL = None  # a forked child has none of its threads: a call there would wait for ever


os.register_at_fork(after_in_child=_forget_pool)


def _decompress_pool() -> ThreadPoolExecutor:
    # one for the process: a page's request would otherwise start its threads each time
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="sde-decompress")
        return _POOL


def preload(frame: pd.DataFrame) -> list[str]:
    """Read whole the compressed columns of ``frame`` that the shared budget keeps (smallest
    first), e.g. at a server's start: pages then take their rows without decompressing (at 1M
    rows the transcripts fit; at 10M they stay read by batch). Returns those columns."""
    files = {str(c): stored_column(frame[c]) for c in frame.columns}
    sizes = {name: column.nbytes for name, column in files.items() if isinstance(column, CompressedColumn)}
    budget = _sized_whole().max_size
    loaded, room = [], budget
    for name, size in sorted(sizes.items(), key=lambda item: item[1]):
        if size > budget // PRELOAD_SHARE or size > room:
            break
        loaded.append(name)
        room -= size
    for name in loaded:  # each on every core (10M rows' transcripts and paths: ~9 s on one core)
        if stopping():  # the process is exiting
            break
        files[name].read_all()
    return loaded


def preload_transcripts(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """Read whole, in order, the named transcript columns of ``frame`` that the budget keeps
    together, whatever their share of it (:func:`preload` reads the small columns; other columns
    kept whole, such as those the pages' preparation read, make way): once
    their word indexes are mapped from their files they take none of the budget, and at 10M lines
    with --memory-limit 2GB the references (0.76 GB) fit; a phrase or a regex across words then
    tests its lines in memory (~0.25 s) instead of decompressing the column (~1.2 s), and no
    search waits for the read in the background (keep_for_next_scan) that would otherwise follow
    the first. A transcript is read only where the process has room for it under --memory-limit
    (sde.engine.room_in_process, waiting up to :data:`ROOM_WAIT_S` for the allocators to hand
    back what the steps before freed): at 10M lines, a first start that served requests during its
    warm-up held 2.0-2.1 GB before this read, 2.8-2.9 GB after it. Returns those in memory after
    it: read whole, or never compressed."""
    in_memory, taken = [], 0
    for name in columns:
        if name not in frame.columns or stopping():
            continue
        column = stored_column(frame[name])
        if isinstance(column, CompressedColumn):
            if column.kept_whole() is None:
                if taken + column.nbytes > _sized_whole().max_size:
                    continue  # other columns read whole make way (oldest first), not these transcripts
                if not room_in_process(column.nbytes, ROOM_WAIT_S, give_up=stopping):
                    continue  # the process is near its limit (requests served during the warm-up)
                column.read_all()
            taken += column.nbytes
        if not isinstance(column, CompressedColumn) or column.kept_whole() is not None:
            in_memory.append(name)
    return in_memory


def keep_for_next_scan(column: "CompressedColumn | LabelColumn") -> None:
    """After a query streamed the whole column: read it whole in the background
    (:meth:`CompressedColumn.read_later`) when the budget (:func:`whole_budget`, less the word
    indexes kept) can keep it. The first search of a 10M-row transcript column streams it (~1 s),
    the next ones scan memory (~0.3 s), and no request waits for the ~1 GB read. The read looks first whether the process
    has room for it under --memory-limit (sde.engine.room_in_process; else the next search streams
    the column and asks again). Labels are left as they are (a query scans their codes)."""
    if isinstance(column, CompressedColumn) and column.kept_whole() is None and column.nbytes <= _sized_whole().max_size:
        column.read_later()


def word_index(column: "CompressedColumn | LabelColumn | None") -> WordIndex | None:
    """The word index of a compressed column (see :func:`index_words`): the one kept in memory
    while it is (grown beyond its files: a part that could not be written), else the one mapped
    from its files, else None."""
    if not isinstance(column, CompressedColumn):
        return None
    kept = _WORDS.get(column.path)
    return kept if kept is not None else column.mapped_index


def index_words(column: "CompressedColumn | LabelColumn | None") -> WordIndex | None:
    """Build the word index of a transcript column (sde.word_index: a search of one word then
    tests the distinct words, not every line) and keep it, when the budget of whole columns has
    room for it beside the indexes already kept (whole columns make way: see _WORDS); None when
    it has not (searches scan; the build gives up once its first segments project it too big).
    Read from the column kept whole, else streamed. At 10M lines of ~12 words: ~5 s on two cores,
    ~0.32 GB."""
    if not isinstance(column, CompressedColumn):
        return None
    with column.index_lock:  # asked by two threads at once, built once
        kept = _kept_or_mapped(column)
        if kept is not None:
            return kept
        return _built_into_file(column, lambda chunks, room: build_word_index(chunks, column.rows, room), "words")


def stored_index(column: "CompressedColumn | LabelColumn | None") -> WordIndex | None:
    """A transcript column's word index as kept, else as a previous start wrote it beside the column
    (mapped: milliseconds, with the pairs and joins written then); None when neither: nothing is
    built here (see :func:`index_words`)."""
    if not isinstance(column, CompressedColumn):
        return None
    with column.index_lock:
        return _kept_or_mapped(column)


def _kept_or_mapped(column: "CompressedColumn") -> WordIndex | None:
    """The column's word index kept, else mapped from the files beside it (held by the column from
    then on); None when neither. The caller holds ``column.index_lock``."""
    kept = word_index(column)
    if kept is not None or not KEEP_IN_FILES:
        return kept
    stored = read_index(column.path, column.rows)
    if stored is not None:
        column.mapped_index = stored  # the kernel's pages, not this budget's
    return stored


def index_pairs(column: "CompressedColumn | LabelColumn | None") -> WordIndex | None:
    """Add to a column's word index the rows of its pairs of common words (sde.word_index.with_pairs:
    a phrase of them then tests only the lines holding the pair), when the budget has room for
    them beside every index kept; the index kept (None when there is none). Read from the column
    kept whole, else streamed. At 10M lines of ~12 words: ~5 s on two cores, ~0.15 GB."""
    return _grown_index(column, lambda index: len(index.pairs) > 0, with_pairs, "pairs")


def index_joins(column: "CompressedColumn | LabelColumn | None") -> WordIndex | None:
    """Add to a column's word index the lines holding each join of two words (sde.word_joins: a
    regex that may match a space at one character then reads them), when the budget has room for
    them beside every index kept; the index kept (None when there is none). Read from the column
    kept whole, else streamed. At 10M lines of ~12 words: ~6 s on two cores, ~0.25 GB."""
    return _grown_index(column, lambda index: index.joins is not None, with_joins, "joins")


def _grown_index(column: "CompressedColumn | LabelColumn | None", has: Callable[[WordIndex], bool],
                 grow: Callable[[WordIndex, Iterable[pa.Array], int], WordIndex | None], part: str) -> WordIndex | None:
    """A column's word index, grown by ``grow(index, chunks, room)`` unless it ``has`` that already,
    within the room the budget has (see _kept_within_room), and its new ``part`` written beside the
    column (see _kept_in_file); None when there is no index."""
    if not isinstance(column, CompressedColumn):
        return None
    with column.index_lock:  # asked by two threads at once, grown once
        index = word_index(column)
        if index is None or has(index):
            return index
        return _built_into_file(column, lambda chunks, room: grow(index, chunks, room), part)


def _built_into_file(column: "CompressedColumn", build: Callable[[Iterable[pa.Array], int], WordIndex | None],
                     part: str) -> WordIndex | None:
    """``build`` within the room the budget has (see _kept_within_room), its new ``part`` written
    beside the column and mapped from there (see _kept_in_file); the memory of the build handed back
    to the system once the index built is let go of. glibc keeps what a build's threads freed, and
    the next build does not reuse it all: at 10M lines the joins of three columns took the process
    from 0.87 to 1.82 GB, of which glibc held 0.33 GB at most in use."""
    built = _kept_within_room(column, build)
    kept = _kept_in_file(column, built, part)
    if kept is not built:
        del built
        release_freed_memory()
    return kept


def _kept_within_room(column: "CompressedColumn",
                      build: Callable[[Iterable[pa.Array], int], WordIndex | None]) -> WordIndex | None:
    """``build(chunks, room)`` of the column (kept whole, else streamed) within the room the budget
    has beside the indexes kept, and keep what it gives (whole columns make way: see _WORDS)."""
    room = _index_room()
    if room <= 0:
        return None
    # Whole columns make way before the build, not once it is kept: a 10M-row transcript column a
    # search had read whole stayed beside its own index's build (2.7 GB with --memory-limit 2GB).
    # An index takes less than its column (words ~0.6x, pairs and joins less): room for the column's
    # size is room for the build.
    _sized_whole().make_room(min(room, column.nbytes))
    whole = column.kept_whole()  # still kept, or held by a query that reads it: read from memory
    index = build(whole.chunks if whole is not None else column.chunks(), room)
    if index is None:
        return None
    # counted without the parts it shares with the index mapped from files (a grown one)
    mapped = column.mapped_index.nbytes if column.mapped_index is not None else 0
    _keep_beside_indexes(column.path, index, max(index.nbytes - mapped, 0))
    return index


def _kept_in_file(column: "CompressedColumn", index: WordIndex | None, part: str) -> WordIndex | None:
    """A column's index just built or grown, its new ``part`` written beside the column's file
    (sde.index_files) and the index kept mapped from the files in place of the one in memory: the
    budget has its room back for the next build, and the next start reads it at once. Where the
    file cannot be written, the index stays in memory, counted as before."""
    if index is None or not KEEP_IN_FILES or not write_part(column.path, index, part):
        return index
    mapped = read_index(column.path, column.rows)
    if mapped is None or (part == "pairs" and not len(mapped.pairs)) or (part == "joins" and mapped.joins is None):
        return index  # not read back as written: kept as built
    column.mapped_index = mapped  # held by the column, outside the budget's cache: never pushed out
    _WORDS.discard(column.path)
    _sized_whole()
    return mapped


def _index_room() -> int:
    """Bytes the budget has left beside the word indexes and ranks kept (see _WORDS)."""
    _sized_whole()
    return _WORDS.max_size - _WORDS.size


def _keep_beside_indexes(key: str, value: Any, size: int) -> None:
    """Keep ``value`` with the word indexes and ranks; whole columns make way for it."""
    _WORDS.put(key, value, size=size)
    _sized_whole()


def sort_keys(column: "CompressedColumn | LabelColumn | None") -> pa.Array | None:
    """Per row, an integer that orders as its value does (null where the value is missing), for a
    sort that compares integers instead of strings: a label column's (LabelColumn.sort_keys), or a
    compressed column's once ranked (:func:`keep_ranks`); else None."""
    if isinstance(column, LabelColumn):
        return column.sort_keys()
    return column.ranks if isinstance(column, CompressedColumn) else None


def keep_ranks(column: "CompressedColumn | LabelColumn | None", rank: Callable[[], pa.Array]) -> pa.Array | None:
    """Give a compressed text column its sort keys, ``rank()`` (each row's dense rank among the
    column's values: ties stay ties, so the next sort key still orders them), when the budget of
    whole columns has room for them beside the indexes kept (4 bytes a row: 40 MB at 10M rows);
    the keys (None when there is no room). Computed once; kept as long as the column."""
    if not isinstance(column, CompressedColumn):
        return None
    with column.index_lock:
        if column.ranks is None and KEEP_IN_FILES:
            column.ranks = read_ranks(column.path, column.rows)  # mapped: not counted
        if column.ranks is None:
            if _index_room() < 4 * column.rows:
                return None
            ranks = rank()
            if KEEP_IN_FILES and write_ranks(column.path, ranks):
                mapped = read_ranks(column.path, column.rows)
                ranks = ranks if mapped is None else mapped
            else:
                _keep_beside_indexes(column.path + "#ranks", ranks, ranks.nbytes)  # counted with the indexes
            column.ranks = ranks
        return column.ranks


def keep_number_ranks(column: "CompressedColumn", rank: Callable[[], tuple[np.ndarray, int]]) -> tuple[np.ndarray, int]:
    """A compressed text column's number-first ranks and how many are numbers (``rank()``, see
    sde.filters.engine.number_first_ranks): read from beside its file where an earlier start wrote
    them (mapped: not counted), else computed and written there."""
    with column.index_lock:
        stored = read_number_ranks(column.path, column.rows) if KEEP_IN_FILES else None
        if stored is not None:
            return stored
        ranks, numbers = rank()
        if KEEP_IN_FILES and write_number_ranks(column.path, ranks, numbers):
            return read_number_ranks(column.path, column.rows) or (ranks, numbers)
        return ranks, numbers


def has_number_ranks(column: "CompressedColumn") -> bool:
    """Whether an earlier start wrote number-first ranks beside the column: it holds a number."""
    return KEEP_IN_FILES and read_number_ranks(column.path, column.rows) is not None


@contextmanager
def held_whole(frame: pd.DataFrame, columns: Iterable[str]) -> Iterator[None]:
    """Keep these columns of ``frame`` read whole while the block runs, where they are stored
    compressed: a computation whose steps each read a transcript column (the suspicious-utterance
    flags read ``text`` five times) decompresses it once, not once per step."""
    kept = [read_strings(frame[c]) for c in columns
            if c in frame.columns and isinstance(stored_column(frame[c]), CompressedColumn)]
    try:
        yield
    finally:
        del kept


def row_reader(values: pd.Series) -> Callable[[int, int], pa.Array | pa.ChunkedArray]:
    """``rows(start, count)``: those rows of a string column as Arrow strings, missing values kept,
    for a computation that goes through a column a range of rows at a time: a compressed column
    kept whole is sliced, one not kept decompresses only their batches (three transcripts read
    whole at 10M utterances would take ~2 GB), any other converts only those rows."""
    stored = stored_column(values)
    whole = stored.kept_whole() if isinstance(stored, CompressedColumn) else None
    if whole is not None:
        return lambda start, count: whole.slice(start, count)
    if stored is not None:
        return lambda start, count: stored.take(np.arange(start, start + count))
    return lambda start, count: read_strings(values.iloc[start:start + count])


def value_codes(values: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """(per row, an index into the distinct values, -1 where missing; those values): a label
    column's own codes and values, else pandas' factorize (no Python string per row)."""
    stored = stored_column(values)
    if isinstance(stored, LabelColumn):
        return stored.codes(), stored.dictionary.to_pylist()
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes, list(uniques)


def string_chunks(values: pd.Series) -> Iterator[pa.Array]:
    """A string column's values as Arrow arrays, a batch at a time, for a computation that needs
    every value but not all at once: a compressed column's batches as they decompress (memory: one
    batch), any other column's own chunks."""
    column = stored_column(values)
    if column is None:
        yield from read_strings(values).chunks
        return
    kept = column.kept_whole()
    yield from (kept.chunks if kept is not None else column.chunks())


def _data_bytes(array: pa.Array | pa.ChunkedArray) -> int:
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    total = 0
    for chunk in chunks:
        offsets, _ = string_buffers(chunk)
        total += int(offsets[-1] - offsets[0])
    return total


def write_compressed(path: str | Path, name: str, arrays: Iterable[pa.Array | pa.ChunkedArray], *,
                     labels: bool = True) -> int:
    """Write the string values of ``arrays`` (in order) as column ``name`` of a compressed Arrow
    file at ``path`` (batches of BATCH_ROWS rows); returns its row count. The caller makes the
    write atomic. What a reader asks of the whole column (nulls, size, case) is counted on the way
    and kept with the last batch, so no answer needs the column read. With ``labels``, a column of
    few distinct values (see LABEL_MAX_VALUES) is written as labels instead (LabelColumn): directly
    from its rows' codes while they fit :data:`KEPT_CODE_BYTES`, else compressed first, then
    rewritten."""
    schema = pa.schema([pa.field(name, pa.large_string())], metadata={_MARK: b"1"})
    stats = {"rows": 0, "nulls": 0, "bytes": 0, "lower": True, "single_line": True}
    distinct = _Distinct(LABEL_MAX_VALUES if labels else -1)
    with _CompressedWriter(path, schema, stats) as writer:
        for array in arrays:
            for chunk in (array.chunks if isinstance(array, pa.ChunkedArray) else [array]):
                if chunk.type != pa.large_string():
                    chunk = chunk.cast(pa.large_string())
                stats["rows"] += len(chunk)
                stats["nulls"] += chunk.null_count
                stats["bytes"] += _data_bytes(chunk)
                stats["lower"] = stats["lower"] and holds_no_ascii_upper(chunk)
                stats["single_line"] = stats["single_line"] and holds_no_line_break(chunk)
                # While the column may turn out to be labels (the words of the errors tables,
                # speakers, languages), its chunks are held as their codes, not compressed:
                # compressing them would be work thrown away (~2 s for each errors column of 10M
                # utterances).
                held = distinct.tracking
                distinct.add(chunk)
                if distinct.tracking:
                    continue
                for piece in distinct.held_chunks() if held else [chunk]:
                    writer.add(piece)
        values = distinct.values()
        as_labels = values is not None and 0 < len(values) and len(values) * LABEL_MIN_ROWS_PER_VALUE <= stats["rows"]
        if as_labels and distinct.tracking:
            writer.discard()
            _write_labels(Path(path), name, int(stats["rows"]), values, stats, distinct.codes(values))
            return int(stats["rows"])
        for piece in distinct.held_chunks():
            writer.add(piece)
    if as_labels:
        _rewrite_as_labels(Path(path), values, stats)  # the codes did not fit: looked up in the column read back
    return int(stats["rows"])


class _CompressedWriter:
    """A compressed column's file, opened at its first rows (a column written as labels instead
    never opens it), written BATCH_ROWS rows at a time; the counts go with the last batch."""

    def __init__(self, path: str | Path, schema: pa.Schema, stats: dict) -> None:
        self.path, self.schema, self.stats = path, schema, stats
        self._sink: pa.OSFile | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._pending: list[pa.Array] = []
        self._pending_rows = 0
        self._discarded = False

    def __enter__(self) -> "_CompressedWriter":
        return self

    def add(self, chunk: pa.Array) -> None:
        self._pending.append(chunk)
        self._pending_rows += len(chunk)
        if self._pending_rows >= BATCH_ROWS:
            self._write(final=False)

    def discard(self) -> None:
        """Nothing is written (the column went elsewhere)."""
        self._discarded = True

    def _open(self) -> pa.ipc.RecordBatchFileWriter:
        if self._writer is None:
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_file(self._sink, self.schema, options=pa.ipc.IpcWriteOptions(compression=CODEC))
        return self._writer

    def _write(self, final: bool) -> None:
        writer = self._open()
        joined = pa.concat_arrays(self._pending) if self._pending else pa.array([], pa.large_string())
        start = 0
        while len(joined) - start >= BATCH_ROWS or (final and start < len(joined)):
            piece = joined.slice(start, BATCH_ROWS)
            start += len(piece)
            last = final and start == len(joined)
            writer.write_batch(pa.record_batch([piece], schema=self.schema),
                               custom_metadata=_stats_metadata(self.stats) if last else None)
        if final and len(joined) == 0:  # no rows: an empty batch carries the counts
            writer.write_batch(pa.record_batch([joined], schema=self.schema), custom_metadata=_stats_metadata(self.stats))
        self._pending = [joined.slice(start)] if start < len(joined) else []
        self._pending_rows = len(joined) - start

    def __exit__(self, kind: type | None, *exc: object) -> None:
        try:
            if kind is None and not self._discarded:
                self._write(final=True)
        finally:
            if self._writer is not None:
                self._writer.close()
            if self._sink is not None:
                self._sink.close()


class _Distinct:
    """The distinct non-null strings seen, while there are at most ``limit`` of them and they are
    not most of the rows (a text column of unique lines gives up after its first 64K rows). Merged
    by Arrow every few chunks, less often as they grow, so tracking costs a pass over the rows.
    Meanwhile each chunk is held as its codes into its own distinct values (:meth:`codes`), up to
    :data:`KEPT_CODE_BYTES` with those values: a column of labels is then written from them, never
    compressed nor read back, and one that is not gets its chunks back (:meth:`held_chunks`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: pa.Array | None = pa.array([], pa.large_string()) if limit >= 0 else None
        self._pending: list[pa.Array] = []
        self._pending_rows = 0
        self._rows = 0
        self._chunk_codes: list[tuple[pa.Array, np.ndarray, np.ndarray | None]] | None = []
        self._code_bytes = 0
        self._let_go: list[tuple[pa.Array, np.ndarray, np.ndarray | None]] = []  # held when holding stopped

    def add(self, chunk: pa.Array) -> None:
        if self._seen is None:
            return
        encoded = pc.dictionary_encode(chunk)
        local = encoded.dictionary
        indices = encoded.indices
        valid = indices.is_valid().to_numpy(zero_copy_only=False) if indices.null_count else None
        positions = indices.fill_null(0).to_numpy(zero_copy_only=False) if indices.null_count else indices.to_numpy()
        if self._chunk_codes is not None:
            # the smallest width that holds them (a column of 10M labels: 20 MB, not 40)
            positions = positions.astype(_index_type(len(local)).to_pandas_dtype())
            self._code_bytes += positions.nbytes + (valid.nbytes if valid is not None else 0) + local.nbytes
            self._chunk_codes.append((local, positions, valid))
            if self._code_bytes > KEPT_CODE_BYTES:
                self._stop_holding()  # memory stays bounded: a rewrite as labels looks the rows up
        self._pending.append(local)
        self._pending_rows += len(chunk)
        self._rows += len(chunk)
        if self._pending_rows >= max(16 * BATCH_ROWS, 4 * len(self._seen)):
            self._merge()

    @property
    def tracking(self) -> bool:
        """Whether the column may still be labels with its rows' codes kept (:meth:`codes`)."""
        return self._seen is not None and self._chunk_codes is not None

    def _merge(self) -> None:
        if self._seen is None or not self._pending:
            return
        merged = pc.unique(pa.concat_arrays([self._seen, *self._pending])).drop_null()
        self._pending, self._pending_rows = [], 0
        mostly_unique = self._rows >= 16 * BATCH_ROWS and 2 * len(merged) > self._rows
        self._seen = None if len(merged) > self.limit or mostly_unique else merged
        if self._seen is None:
            self._stop_holding()

    def _stop_holding(self) -> None:
        self._let_go.extend(self._chunk_codes or [])
        self._chunk_codes = None

    def held_chunks(self) -> list[pa.Array]:
        """The chunks held as codes, rebuilt in order, for the column to be compressed (they are
        held no more); [] when none were."""
        self._stop_holding()
        rebuilt = [local.take(pa.array(positions, mask=None if valid is None else ~valid))
                   for local, positions, valid in self._let_go]
        self._let_go = []
        return rebuilt

    def values(self) -> pa.Array | None:
        """The distinct values, sorted; None past the limit."""
        self._merge()
        return None if self._seen is None else self._seen.take(pc.sort_indices(self._seen))

    def codes(self, values: pa.Array) -> Iterator[tuple[np.ndarray, np.ndarray | None]] | None:
        """Chunk by chunk, in order: each row's position in ``values`` (:meth:`values`), and
        whether it has one (None: every row does); None where they were not kept."""
        return None if self._chunk_codes is None else self._remapped(self._chunk_codes, values)

    @staticmethod
    def _remapped(chunk_codes: list, values: pa.Array) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for local, positions, valid in chunk_codes:
            if not len(local):  # nulls only
                yield np.zeros(len(positions), dtype=np.int32), valid
                continue
            chunk_codes = pc.index_in(local, value_set=values).to_numpy(zero_copy_only=False)[positions]
            if valid is not None:
                chunk_codes[~valid] = 0  # as a lookup writes a missing value's
            yield chunk_codes, valid


# Rows looked up at once when rewriting as labels: each lookup hashes the whole dictionary first.
_LOOKUP_ROWS = 1 << 20


def _joined(chunks: Iterable[pa.Array], rows: int) -> Iterator[pa.Array]:
    """The chunks concatenated into arrays of about ``rows`` rows."""
    pending: list[pa.Array] = []
    count = 0
    for chunk in chunks:
        pending.append(chunk)
        count += len(chunk)
        if count >= rows:
            yield pa.concat_arrays(pending)
            pending, count = [], 0
    if pending:
        yield pa.concat_arrays(pending)


def _index_type(n_values: int) -> pa.DataType:
    return pa.int8() if n_values <= 127 else pa.int16() if n_values <= 32_767 else pa.int32()


def _rewrite_as_labels(path: Path, dictionary: pa.Array, stats: dict) -> None:
    """Replace the compressed column at ``path`` by its labels (:func:`_write_labels`), each row
    looked up in the column read back (a column whose codes were held is written as labels
    directly: write_compressed)."""
    source = CompressedColumn(path)
    out = path.with_name(path.name + ".labels")
    try:
        _write_labels(out, source.name, len(source), dictionary, stats, _looked_up(source, dictionary))
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    out.replace(path)


def _write_labels(out: Path, name: str, rows: int, dictionary: pa.Array, stats: dict,
                  codes_and_validity: Iterable[tuple[np.ndarray, np.ndarray | None]]) -> None:
    """Column ``name`` as labels at ``out``: one Arrow dictionary array in one uncompressed batch
    (so a reader maps its codes without a copy), its codes gathered in a file mapped into memory,
    not in RAM."""
    kind = _index_type(len(dictionary))
    width = np.dtype(kind.to_pandas_dtype())
    schema = pa.schema([pa.field(name, pa.dictionary(kind, pa.large_string()))], metadata={_MARK: _LABELS})
    nulls = int(stats["nulls"])
    with tempfile.TemporaryFile(dir=out.parent) as scratch, tempfile.TemporaryFile(dir=out.parent) as flags:
        codes = np.memmap(scratch, dtype=width, mode="w+", shape=(max(rows, 1),))[:rows]
        valid = np.memmap(flags, dtype=bool, mode="w+", shape=(max(rows, 1),))[:rows] if nulls else None
        start = 0
        for chunk_codes, chunk_valid in codes_and_validity:
            end = start + len(chunk_codes)
            codes[start:end] = chunk_codes
            if valid is not None:
                valid[start:end] = True if chunk_valid is None else chunk_valid
            start = end
        assert start == rows, f"{out}: {start} codes for {rows} rows"
        bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
        indices = pa.Array.from_buffers(kind, rows, [bitmap, pa.py_buffer(codes)], null_count=nulls)
        array = pa.DictionaryArray.from_arrays(indices, dictionary.cast(pa.large_string()))
        with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            writer.write_batch(pa.record_batch([array], schema=schema), custom_metadata=_stats_metadata(stats))
        del indices, array, codes, valid


def _looked_up(source: "CompressedColumn", dictionary: pa.Array) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The codes and validity of a compressed column's rows in ``dictionary``, read back."""
    for chunk in _joined(source.chunks(), _LOOKUP_ROWS):
        found = pc.index_in(chunk, value_set=dictionary)  # null only where the value is
        yield found.fill_null(0).to_numpy(), found.is_valid().to_numpy(zero_copy_only=False)


def _stats_metadata(stats: dict) -> dict[str, str]:
    return {"sde.rows": str(stats["rows"]), "sde.nulls": str(stats["nulls"]), "sde.bytes": str(stats["bytes"]),
            "sde.no_ascii_upper": "1" if stats["lower"] else "0", "sde.no_line_break": "1" if stats["single_line"] else "0"}


def is_compressed(schema: pa.Schema) -> bool:
    """Whether an Arrow file with this schema is a column written by :func:`write_compressed`
    (compressed or as labels: open it with :func:`open_column`)."""
    return len(schema) == 1 and _MARK in (schema.metadata or {})


def _is_labels(schema: pa.Schema) -> bool:
    return is_compressed(schema) and (schema.metadata or {}).get(_MARK) == _LABELS


def open_column(path: str | Path) -> "CompressedColumn | LabelColumn":
    """The column written by :func:`write_compressed` at ``path``, as it was stored."""
    with pa.memory_map(str(path), "r") as source:
        labels = _is_labels(pa.ipc.open_file(source).schema)
    return LabelColumn(path) if labels else CompressedColumn(path)


def _read_stats(path: str, meta: dict | None) -> tuple[int, int, bool, int, bool | None]:
    """(rows, nulls, no_ascii_upper, bytes of the values once decompressed: what pandas would hold,
    no_line_break) from the counts write_compressed kept; no_line_break is None in a column written
    before it was kept (2026-12-03)."""
    stats = {k.decode(): v.decode() for k, v in (meta or {}).items()}
    try:
        rows, nulls, data_bytes = int(stats["sde.rows"]), int(stats["sde.nulls"]), int(stats["sde.bytes"])
        lower = stats["sde.no_ascii_upper"] == "1"
    except (KeyError, ValueError):
        raise ValueError(f"{path} lacks its column counts: not a column written by sde") from None
    single_line = {"1": True, "0": False}.get(stats.get("sde.no_line_break", ""))
    return rows, nulls, lower, data_bytes + 8 * (rows + 1) + (rows + 7) // 8 * bool(nulls), single_line


class _ColumnFile:
    """What both kinds of column file share: the whole read, kept (see CompressedColumn.read_all),
    the file for DuckDB, and pickling by path."""

    path: str
    rows: int
    _recent: weakref.ref | None = None
    _whole_lock: threading.Lock

    def __len__(self) -> int:
        return self.rows

    def _held(self) -> pa.ChunkedArray | None:
        kept = _WHOLE.get(self.path)
        if kept is None and self._recent is not None:
            kept = self._recent()
        return kept

    def _decoded(self, workers: int | None = None) -> pa.ChunkedArray:
        raise NotImplementedError

    def read_all(self, workers: int | None = None) -> pa.ChunkedArray:
        """The whole column as strings (memory: its plain size), decompressed on ``workers``
        threads (default: --threads). Kept while it fits in a shared budget (:func:`whole_budget`),
        else only while a caller still holds it (several steps of one computation share one read)."""
        kept = self._held()
        if kept is not None:
            return kept
        with self._whole_lock:  # two threads asking at once read it once
            kept = self._held()
            if kept is None:
                # the columns it would push out go first: read beside them, a second 10M-row
                # transcript column held both (~1.5 GB in a 1 GB budget) until it was kept
                _sized_whole().make_room(self.nbytes)
                kept = self._decoded(workers)
                self._recent = weakref.ref(kept)
                _sized_whole().put(self.path, kept, size=self.nbytes)  # the size keep_for_next_scan weighs
        return kept

    def decompressed(self) -> pa.ChunkedArray:
        """The whole column decompressed on the engine's threads for one computation, and not kept
        (see :meth:`read_all`): the caller counts its memory."""
        kept = self._held()
        return kept if kept is not None else self._decoded()

    def dataset(self):
        """The file as a pyarrow dataset, for DuckDB to scan batch by batch."""
        import pyarrow.dataset as ds

        return ds.dataset(self.path, format="ipc")

    def __reduce__(self):
        return (type(self), (self.path,))


def _take_within(indices: np.ndarray, which: np.ndarray, wanted: np.ndarray,
                 batch: Callable[[int], pa.Array]) -> pa.Array:
    """The values at ``indices``, whose batches are ``which``, all among ``wanted`` (sorted, each
    read by ``batch`` and holding one of them at least). Each batch gives only its values, joined
    in order: joining whole batches first copied ~300 KB per value (a page of 50 scattered rows:
    ~15 MB over five text columns, 20-30 ms at 10M)."""
    if len(wanted) == 1:
        return batch(int(wanted[0])).take(pa.array(indices - int(wanted[0]) * BATCH_ROWS))
    order = np.argsort(which, kind="stable")
    edges = np.searchsorted(which[order], wanted).tolist() + [len(order)]
    pieces = [batch(int(b)).take(pa.array(indices[order[start:end]] - int(b) * BATCH_ROWS))
              for b, start, end in zip(wanted.tolist(), edges, edges[1:])]
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return pa.concat_arrays(pieces).take(pa.array(back))


class CompressedColumn(_ColumnFile):
    """One compressed string column file: its rows by batch, by position, or streamed whole."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._source = pa.memory_map(self.path, "r")
        self._reader = pa.ipc.open_file(self._source)
        self.name = self._reader.schema.field(0).name
        self.batches = self._reader.num_record_batches
        self._lock = threading.Lock()
        self._cache = LRUCache(CACHED_BATCHES)
        self._whole_lock = threading.Lock()
        self._reading = False  # see read_later
        self.index_lock = threading.Lock()  # see index_words, keep_ranks
        #: The values' dense ranks, once computed (keep_ranks): sorts compare them, not strings.
        self.ranks: pa.Array | None = None
        #: Its word index as mapped from the files beside it (sde.index_files; see word_index).
        self.mapped_index: WordIndex | None = None
        if not self.batches or not pa.types.is_large_string(self._reader.schema.field(0).type):
            raise ValueError(f"{self.path} holds no compressed batch: not a compressed column written by sde")
        _, meta = self._reader.get_batch_with_custom_metadata(self.batches - 1)
        #: Null values in the column; whether no value holds A-Z, ſ or K (see
        #: sde.filters.engine.holds_no_ascii_upper); bytes of the values once decompressed; whether
        #: no value holds a line break (holds_no_line_break; None: not counted when written).
        self.rows, self.null_count, self.no_ascii_upper, self.nbytes, self.no_line_break = _read_stats(self.path, meta)

    def close(self) -> None:
        self._source.close()

    def reader(self, memory_pool: pa.MemoryPool | None = None, *, whole: bool = False) -> pa.ipc.RecordBatchFileReader:
        """A reader of the file for one thread: threads decompress batches at once (zstd releases
        the GIL), where the column's own reader takes one at a time (Arrow's file reader is not
        documented thread-safe). It reads the column's memory map (positional reads, safe from any
        thread), not the path again: ~0.07 ms to open, and a file removed meanwhile (a cache
        cleared while serving) is still read. For a read of the ``whole`` file, a map of its own
        while the file is there: unmapped after, the file's pages are no longer counted in the
        process' memory (RSS) for as long as the column lives."""
        if whole:
            try:
                return pa.ipc.open_file(pa.memory_map(self.path, "r"), memory_pool=memory_pool)
            except OSError:
                pass
        return pa.ipc.open_file(self._source, memory_pool=memory_pool)

    def cached(self, i: int) -> bool:
        """Whether batch ``i`` is at hand without decompressing it."""
        return self.kept_whole() is not None or self._cache.get(i) is not None

    def keep_batch(self, i: int, values: pa.Array) -> None:
        """Keep batch ``i``, decompressed by another reader (:meth:`reader`), for :meth:`batch`."""
        self._cache.put(i, values)

    def batch(self, i: int) -> pa.Array:
        """Batch ``i`` decompressed (the last ones asked are kept; a column read whole and still
        kept serves them all)."""
        whole = self.kept_whole()
        if whole is not None:
            return whole.chunk(i)
        got = self._cache.get(i)
        if got is None:
            with self._lock:  # one reader: Arrow's file reader is not documented thread-safe
                got = self._reader.get_batch(i).column(0)
            self._cache.put(i, got)
        return got

    def take(self, indices: np.ndarray) -> pa.Array:
        """The values at these positions (0 ≤ each < len), as one large_string array. Their batches
        are decompressed :data:`CACHED_BATCHES` at a time, by each of the engine's workers (memory:
        those, and the values taken)."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) == 0:
            return pa.array([], pa.large_string())
        which = indices // BATCH_ROWS
        wanted = np.unique(which)
        if len(wanted) <= CACHED_BATCHES:
            return _take_within(indices, which, wanted, self.batch)
        order = np.argsort(which, kind="stable")
        which = which[order]
        edges = np.searchsorted(which, wanted[::CACHED_BATCHES]).tolist() + [len(which)]
        groups = [(indices[order[a:b]], which[a:b], wanted[i * CACHED_BATCHES:(i + 1) * CACHED_BATCHES])
                  for i, (a, b) in enumerate(zip(edges, edges[1:]))]
        workers = min(settings().processes, len(groups))
        if self.kept_whole() is not None or workers == 1:
            pieces = [_take_within(*group, self.batch) for group in groups]
        else:
            def take_part(part: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[pa.Array]:
                reader = self.reader()
                return [_take_within(*group, lambda b: reader.get_batch(b).column(0)) for group in part]

            step = -(-len(groups) // workers)
            with ThreadPoolExecutor(workers, thread_name_prefix="sde-decompress") as pool:
                pieces = [p for part in pool.map(take_part, [groups[a:a + step] for a in range(0, len(groups), step)])
                          for p in part]
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return pa.concat_arrays(pieces).take(pa.array(back))

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

    def stream(self, workers: int | None = None) -> Iterator[pa.Array]:
        """Every batch in order, as :meth:`chunks` gives them, decompressed by ``workers`` threads
        (default: the engine's) :data:`STREAM_BATCHES` at a time, a few runs ahead of the reader
        (memory: those runs): a pass over 10M transcripts takes ~0.5 s on two cores, ~1 s on one.
        The batches come from the system's allocator, as those decompressed ahead for a page do:
        the reader's thread frees them."""
        whole = self.kept_whole()
        if whole is not None:
            yield from whole.chunks
            return
        workers = min(workers or settings().processes, -(-self.batches // STREAM_BATCHES))
        if workers <= 1:
            yield from self.chunks()
            return
        readers = threading.local()

        def decompress(first: int) -> list[pa.Array]:
            if not hasattr(readers, "reader"):
                readers.reader = self.reader(_AHEAD_POOL())
            return [readers.reader.get_batch(i).column(0) for i in range(first, min(first + STREAM_BATCHES, self.batches))]

        firsts = iter(range(0, self.batches, STREAM_BATCHES))
        pool = _decompress_pool()
        ahead = deque(pool.submit(decompress, first) for first in itertools.islice(firsts, 2 * workers))
        try:
            while ahead:
                run = ahead.popleft().result()
                following = next(firsts, None)
                if following is not None:
                    ahead.append(pool.submit(decompress, following))
                yield from run
        finally:
            for left in ahead:  # a reader that stopped early: the runs not started are not wanted
                left.cancel()

    def kept_whole(self) -> pa.ChunkedArray | None:
        """The column as read whole (:meth:`read_all`, one chunk per batch), while it is still
        kept (then pages take their rows from it), else None."""
        return self._held()

    def read_later(self) -> None:
        """Read the column whole on a background thread :data:`READ_LATER_DELAY_S` from now, to be
        kept for the next query (nothing while a read is under way): the request that asked for it
        finishes first."""
        with self._lock:
            if self._reading:
                return
            self._reading = True

        def read() -> None:
            try:
                if room_in_process(self.nbytes):  # else the next search streams it, and asks again
                    self.read_all()
            except (OSError, pa.ArrowException):
                pass  # nothing lost: the next search streams the file, and says what is wrong with it
            except RuntimeError:
                if not stopping():  # Python's exit refuses the read's thread pool: nothing to say then
                    raise
            finally:
                self._reading = False

        timer = threading.Timer(READ_LATER_DELAY_S, read)
        timer.name, timer.daemon = "sde-read-whole", True
        timer.start()

    def _decoded(self, workers: int | None = None) -> pa.ChunkedArray:
        workers = min(workers or settings().processes, self.batches)
        if workers == 1:
            return pa.chunked_array(list(self.chunks()), pa.large_string())

        def decompress(batches: range) -> list[pa.Array]:
            reader = self.reader(whole=True)
            return [reader.get_batch(i).column(0) for i in batches]

        step = -(-self.batches // workers)
        parts = [range(start, min(start + step, self.batches)) for start in range(0, self.batches, step)]
        with ThreadPoolExecutor(len(parts), thread_name_prefix="sde-decompress") as pool:
            return pa.chunked_array([a for part in pool.map(decompress, parts) for a in part], pa.large_string())


class LabelColumn(_ColumnFile):
    """One column stored as labels (see write_compressed): a code per row, mapped from the file,
    and the distinct values. The same reading interface as :class:`CompressedColumn`, plus
    :meth:`codes` for grouping."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._source = pa.memory_map(self.path, "r")
        reader = pa.ipc.open_file(self._source)
        if not _is_labels(reader.schema) or reader.num_record_batches != 1:
            raise ValueError(f"{self.path} is not a label column written by sde")
        batch, meta = reader.get_batch_with_custom_metadata(0)
        self.name = reader.schema.field(0).name
        array = batch.column(0)
        #: The distinct values (sorted) and each row's index into them (null: a missing value).
        self.dictionary: pa.Array = array.dictionary
        self.indices: pa.Array = array.indices
        self.rows, self.null_count, self.no_ascii_upper, self.nbytes, self.no_line_break = _read_stats(self.path, meta)
        self.batches = -(-self.rows // BATCH_ROWS)
        self._whole_lock = threading.Lock()
        self._sort_keys: pa.Array | None = None

    def codes(self) -> np.ndarray:
        """Each row's index into :attr:`dictionary`, -1 where the value is missing."""
        if self.null_count == 0:
            return self.indices.to_numpy()
        return self.indices.fill_null(-1).to_numpy()

    def take(self, indices: np.ndarray) -> pa.Array:
        """The values at these positions (0 ≤ each < len), as one large_string array."""
        return self.dictionary.take(self.indices.take(pa.array(np.asarray(indices, dtype=np.int64))))

    def chunks(self) -> Iterator[pa.Array]:
        """The values in order, BATCH_ROWS at a time."""
        for start in range(0, self.rows, BATCH_ROWS):
            yield self.dictionary.take(self.indices.slice(start, BATCH_ROWS))

    def kept_whole(self) -> pa.ChunkedArray | None:
        """None: a query scans the labels' codes, cheaper than strings read whole."""
        return None

    def sort_keys(self) -> pa.Array:
        """Per row, an integer that orders as its value does (bytewise, as DuckDB sorts text), null
        where the value is missing: a sort by it compares integers, not strings (10M rows: ~25 ms
        for the first 1,000, against ~90 ms by the strings). The codes themselves when the
        distinct values are stored sorted (as sde writes them), else their ranks (computed once)."""
        with self._whole_lock:
            if self._sort_keys is None:
                values = self.dictionary
                if len(values) < 2 or pc.all(pc.less(values[:-1], values[1:])).as_py():
                    self._sort_keys = self.indices
                else:
                    ranks = np.empty(len(values), dtype=np.int64)
                    ranks[pc.sort_indices(values).to_numpy()] = np.arange(len(values))
                    self._sort_keys = pa.array(ranks).take(self.indices)
            return self._sort_keys

    def _decoded(self, workers: int | None = None) -> pa.ChunkedArray:
        return pa.chunked_array([self.dictionary.take(self.indices)], pa.large_string())


def label_column(values: pd.Series) -> LabelColumn | None:
    """The labels behind a column stored as labels and not read whole, else None."""
    column = stored_column(values)
    return column if isinstance(column, LabelColumn) else None


def most_common(values: pd.Series) -> Any:
    """The most frequent value that is present, None where none is. A column stored as labels
    counts its codes (10M rows: ~20 ms, where decoding the strings to count them takes ~0.5 s);
    its ties go to the first label in value order."""
    labels = label_column(values)
    if labels is None:
        counts = values.value_counts(dropna=True)
        return counts.index[0] if len(counts) else None
    codes = labels.codes()
    counts = np.bincount(codes[codes >= 0], minlength=len(labels.dictionary))
    return labels.dictionary[int(counts.argmax())].as_py() if counts.size and counts.max() else None


class CompressedStringArray(ArrowStringArray):
    """pandas' Arrow-backed string array over a :class:`CompressedColumn`: takes and single values
    read only their batches; anything else reads the column whole (CompressedColumn.read_all
    says for how long it is kept). A value set into it makes it a plain ArrowStringArray in all
    but name. Built with :meth:`over`."""

    _column: CompressedColumn | LabelColumn | None = None
    _loaded: pa.ChunkedArray | None = None

    @classmethod
    def over(cls, column: CompressedColumn | LabelColumn, dtype: pd.StringDtype | None = None) -> "CompressedStringArray":
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
    def compressed(self) -> CompressedColumn | LabelColumn | None:
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
        return _string_array(values, self._dtype)

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
            if item.indices(len(column)) == (0, len(column), 1):  # every row (pandas' concat, copies): stays compressed
                return type(self).over(column, self._dtype)
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
    return _string_array(values, dtype)


# pandas 3 gives ArrowStringArray its dtype as an argument; pandas 2 has no such argument and a
# class per missing value instead (ArrowStringArrayNumpySemantics for NaN), which the dtype names.
_DTYPE_ARGUMENT = "dtype" in inspect.signature(ArrowStringArray.__init__).parameters


def _string_array(values: pa.ChunkedArray, dtype: pd.StringDtype) -> ArrowStringArray:
    """pandas' Arrow string array of ``dtype`` around ``values`` (large_string: without a copy)."""
    if _DTYPE_ARGUMENT:
        return ArrowStringArray(values, dtype=dtype)
    return dtype.construct_array_type()(values)


def _reopen(path: str, dtype: pd.StringDtype) -> CompressedStringArray:
    return CompressedStringArray.over(open_column(path), dtype)
