"""The DuckDB database every query of sde runs on: one in-memory database per process, opened
so that a query can read nothing but the tables registered for it (no files, no extensions, no
network) and cannot change that back; a cursor of its own per query, so server threads share no
state; errors, memory exhaustion and overlong queries as :class:`QueryError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde import engine as engine_settings
from sde.caching import ComputedOnce
from sde.filters.bind import TEXT
from sde.filters.language import QueryError
from sde.filters.sql import number_first_sql, number_key_sql

__all__ = ["MAX_QUERY_SECONDS", "MAX_REQUEST_SECONDS", "NOT_NOW", "LowerCaseColumns", "SingleLineColumns", "TextColumnsThatHold", "arrow_column",
           "arrow_sql", "configure", "connect", "cursor", "holds_a_number", "holds_no_ascii_upper", "holds_no_line_break",
           "number_first_ranks", "numpy_sql", "ranks_numbers_first", "reads_a_number", "request_budget", "stop_queries", "stopping"]


# One in-memory DuckDB database for the whole process: every TableQuery queries it through a
# cursor of its own, so the memory limit and the threads are shared by all tables, as a user who
# sets --memory-limit expects. Opened on first use, with sde.engine's settings (see configure).
_database: duckdb.DuckDBPyConnection | None = None
_database_lock = threading.Lock()
#: A query running longer than this is interrupted (a QueryError): a request is bounded in time.
MAX_QUERY_SECONDS = 60.0
#: ... and so are all the queries of one request together (see request_budget): 200 rules of 16
#: regex clauses previewed in one POST ran 3,200 queries, each well within the bound, 74 s over
#: 200k rows and about an hour over 10M, on a server of two cores.
MAX_REQUEST_SECONDS = 2 * MAX_QUERY_SECONDS


class _Budget:
    """The seconds the queries of a request may run together, and those they have run."""

    __slots__ = ("limit", "spent")

    def __init__(self, limit: float) -> None:
        self.limit, self.spent = limit, 0.0


# The budget of the running request (this thread's context); None: no bound but each query's.
_request_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("sde_request_budget", default=None)


# A forked child (the UI's background jobs run in forked processes) inherits the parent's database
# with whatever locks the parent's query threads held at that moment: it opens its own instead, and
# keeps the inherited one referenced, never closed (closing could wait on a lock nobody releases).
_inherited: list[duckdb.DuckDBPyConnection] = []


# The cursors running a query now (see _bounded), so that stop_queries can interrupt them.
_running: set[duckdb.DuckDBPyConnection] = set()
_running_lock = threading.Lock()
_stopping = False


def _own_database_in_child() -> None:
    global _database, _database_lock, _running_lock
    if _database is not None:
        _inherited.append(_database)
    _database = None
    _database_lock = threading.Lock()
    _running.clear()  # the parent's queries, not this process'
    _running_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_own_database_in_child)


def configure(threads: int | None = None, memory_limit: str | None = None) -> None:
    """Threads and memory limit (DuckDB syntax: ``"2GB"``, ``"500MB"``) of the query engine; None:
    every core / DuckDB's default. They become sde.engine's settings (the one place the CLI's
    ``--threads`` / ``--memory-limit`` live; the part size stays) once DuckDB accepts them; a
    value it refuses raises ValueError with its reason. Queries already running keep the old ones."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a whole number of at least 1 (got {threads!r}).")
    _open(replace(engine_settings.settings(), threads=threads, memory_limit=memory_limit))


def reopen() -> None:
    """Open the query database anew with sde.engine's current settings (after the CLI set them);
    ValueError when DuckDB refuses them."""
    _open(engine_settings.settings())


def _open(wanted: engine_settings.EngineSettings) -> None:
    global _database
    try:
        database = connect(wanted)
    except engine_settings.EngineSettingError as e:
        raise ValueError(f"memory limit {wanted.memory_limit!r}: {e}") from None
    except duckdb.OutOfMemoryException:
        raise  # the process is short of memory (ulimit -v), not the value wrong: sde.entry says so
    except duckdb.Error as e:
        raise ValueError(f"DuckDB refuses memory limit {wanted.memory_limit!r}: {_first_line(e)} "
                         "(write it like 2GB or 500MB).") from None
    with _database_lock:
        engine_settings.use(wanted)
        _database = database


def connect(settings: engine_settings.EngineSettings | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory database as sde's engine opens it (with sde.engine's settings unless given):
    it can read nothing but the tables registered on it (no files, no extensions, no network), and
    no query can change that back."""
    settings = settings or engine_settings.settings()
    config: dict[str, Any] = {
        "enable_external_access": False,
        "autoload_known_extensions": False,
        "autoinstall_known_extensions": False,
        "threads": settings.threads or os.cpu_count() or 1,
        # jemalloc hands freed memory back to the system on its own threads: without them the ~1 GB
        # a distinct count of 10M audio paths used stayed with the process after it (until the next
        # big allocation), under the pages laid out after it
        "allocator_background_threads": True,
    }
    query_memory = engine_settings.query_memory_bytes(settings.memory_limit)
    if query_memory is not None:
        config["memory_limit"] = f"{query_memory}B"
    # What a query spills goes to the system's temporary folder (DuckDB removes it when closed):
    # DuckDB's default, ".tmp" in the current folder, is the user's data folder.
    config["temp_directory"] = os.path.join(tempfile.gettempdir(), f"sde-duckdb-{os.getpid()}")
    config["lock_configuration"] = True
    return duckdb.connect(":memory:", config=config)


def cursor() -> duckdb.DuckDBPyConnection:
    """A connection of its own to the process' database (one per query: threads share no state;
    tables registered on it are seen by it alone)."""
    global _database
    with _database_lock:
        if _database is None:
            _database = connect()
        return _database.cursor()


def arrow_sql(sql: str, params: Sequence[Any] = (), tables: Mapping[str, Any] | None = None) -> pa.Table:
    """One query on a fresh cursor with ``tables`` (DataFrames / Arrow tables) registered under
    their names, its whole answer as an Arrow table (read as Arrow, not copied out of DB-API rows:
    nested values such as lists stay columnar). DuckDB's errors become :class:`QueryError`, and a
    query over :data:`MAX_QUERY_SECONDS` is interrupted, the fetch included (:func:`_fetched`)."""
    return _fetched(sql, params, tables, lambda cur: cur.sql(sql, params=list(params)).to_arrow_table())


def numpy_sql(sql: str, params: Sequence[Any] = (), tables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`arrow_sql`'s query, its whole answer as numpy arrays by column (cursor.fetchnumpy)."""
    return _fetched(sql, params, tables, lambda cur: cur.execute(sql, list(params)).fetchnumpy())


def rows_sql(sql: str, params: Sequence[Any] = (), tables: Mapping[str, Any] | None = None) -> list[tuple]:
    """:func:`arrow_sql`'s query, its whole answer as rows (tuples)."""
    return _fetched(sql, params, tables, lambda cur: cur.execute(sql, list(params)).fetchall())


_Fetched = TypeVar("_Fetched")


def _fetched(sql: str, params: Sequence[Any], tables: Mapping[str, Any] | None,
             run: Callable[[duckdb.DuckDBPyConnection], _Fetched]) -> _Fetched:
    """``run(cursor)`` with ``tables`` registered, the fetch inside the bound: DuckDB runs most of a
    query while its rows are fetched (all but the first few thousand rows of a scan), so running
    out of memory or failing there is a QueryError too, and the time limit covers it."""
    cur = cursor()
    try:
        with _bounded(cur):
            for name, table in (tables or {}).items():
                cur.register(name, table)
            return run(cur)
    finally:
        cur.close()


def stop_queries(wait_s: float = 5.0) -> None:
    """Interrupt the queries running now and refuse new ones (a QueryError), as the process exits:
    a query left running in a background thread while Python shuts down aborts the process.
    Interrupts again until they have ended (at most ``wait_s``): an interrupt that lands before
    its query starts executing is lost."""
    global _stopping
    with _running_lock:
        _stopping = True
    deadline = time.monotonic() + wait_s
    while True:
        with _running_lock:
            running = list(_running)
        if not running or time.monotonic() > deadline:
            return
        for cur in running:
            cur.interrupt()
        time.sleep(0.02)


def stopping() -> bool:
    """Whether the process is exiting: :func:`stop_queries` was called, or the main thread has ended
    (Python's exit refuses new work to thread pools from then on, before sde's exit handler calls
    stop_queries; seen on Python 3.12 under SIGTERM). Long background work should end."""
    return _stopping or not threading.main_thread().is_alive()


def request_budget(seconds: float | None = None) -> contextvars.Token:
    """From now on, the queries run in this context (a server's request: sde.web.api starts one
    per request) run ``seconds`` (MAX_REQUEST_SECONDS) at most all together (their own time: not
    the request's other work); ``end_request_budget`` with the token given back lifts it."""
    return _request_budget.set(_Budget(MAX_REQUEST_SECONDS if seconds is None else seconds))


def end_request_budget(token: contextvars.Token) -> None:
    _request_budget.reset(token)


def _time_left(budget: _Budget | None) -> tuple[float, bool]:
    """(seconds the next query may run, whether the request's budget is what bounds it): a
    QueryError when the budget is spent."""
    left = None if budget is None else budget.limit - budget.spent
    if left is None or left >= MAX_QUERY_SECONDS:
        return MAX_QUERY_SECONDS, False
    if left <= 0:
        raise QueryError(_over_budget(budget))
    return left, True


def _over_budget(budget: _Budget | None) -> str:
    limit = budget.limit if budget is not None else MAX_REQUEST_SECONDS
    return (f"This request's queries took longer than {limit:g} s together and were stopped: narrow the "
            "filter down, or ask for less at once (fewer rules, fewer clauses).")


@contextlib.contextmanager
def _bounded(cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB's errors in the block as :class:`QueryError`, the query interrupted after
    :data:`MAX_QUERY_SECONDS`, or when the request's budget (request_budget) is spent, or by
    :func:`stop_queries`."""
    budget = _request_budget.get()
    seconds, by_budget = _time_left(budget)
    with _running_lock:
        if _stopping:
            raise QueryError("sde is stopping: no new query runs.")
        _running.add(cur)
    timer = threading.Timer(seconds, cur.interrupt)
    started = time.monotonic()
    timer.start()
    try:
        yield
    except duckdb.OutOfMemoryException as e:
        raise QueryError(f"This query needs more memory than DuckDB may use (--memory-limit): "
                         f"{_first_line(e)}") from None
    except duckdb.InterruptException:
        if _stopping:
            raise QueryError("sde is stopping: the query was interrupted.") from None
        if by_budget:
            raise QueryError(_over_budget(budget)) from None
        raise QueryError(f"The query took longer than {MAX_QUERY_SECONDS:.0f} s and was stopped: "
                         "narrow the filter down.") from None
    except duckdb.Error as e:
        raise QueryError(f"The query could not run: {_first_line(e)}") from None
    finally:
        timer.cancel()
        if budget is not None:
            budget.spent += time.monotonic() - started
        with _running_lock:
            _running.discard(cur)


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def arrow_column(s: pd.Series, kind: str) -> pa.Array | pa.ChunkedArray | None:
    """A column as Arrow for DuckDB, sharing the DataFrame's buffers where the dtype allows;
    missing values (NaN included) as nulls, so SQL sees them as NULL. None when Arrow cannot hold
    it (such a column can still be shown, not sorted)."""
    try:
        if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iufb":
            return pa.array(s.to_numpy(), from_pandas=True)  # NaN → null: a bitmap, data shared
        if kind == TEXT and not isinstance(s.dtype, pd.CategoricalDtype):
            arr = getattr(s.array, "__arrow_array__", None)
            got = arr() if arr is not None else None
            if got is not None and (pa.types.is_string(got.type) or pa.types.is_large_string(got.type)):
                return got
        if kind == TEXT:
            return s.astype("string[pyarrow]").array.__arrow_array__()  # object/categorical: str() each
        arrow_method = getattr(s.array, "__arrow_array__", None)
        arr = arrow_method() if arrow_method is not None else pa.array(s, from_pandas=True)
        if pa.types.is_floating(arr.type) and pc.any(pc.is_nan(arr)).as_py():
            arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
        return arr
    except (TypeError, ValueError, pa.ArrowException):
        return None


# Bytes read at a time by holds_no_ascii_upper, into scratch arrays allocated once: fresh
# multi-megabyte temporaries (page faults) would make the scan ~6x slower.
_SCAN_BYTES = 1 << 18
# UTF-8 of the only characters RE2's case-insensitive matching (Unicode simple case folding) equates
# with an ASCII letter besides that letter's two cases: U+017F ſ (with s) and U+212A K (with k).
_ASCII_FOLDS = (b"\xc5\xbf", b"\xe2\x84\xaa")


def holds_no_ascii_upper(arr: pa.Array | pa.ChunkedArray | Iterable[pa.Array]) -> bool:
    """Whether no string of a text column holds A-Z, ſ (U+017F) or K (U+212A): then every character
    of it that matches an ASCII character ignoring case is that character's lower case, and a
    case-insensitive search for ASCII text is a plain search for its lower case (typical ASR text
    is lower case). Read from the column's bytes (~70 ms for 700 MB); False when unsure (not a
    string type). ``arr`` may also be its chunks, one at a time, or an object that knows the
    answer (its ``no_ascii_upper``: a compressed column counted it when written)."""
    known = getattr(arr, "no_ascii_upper", None)
    if isinstance(known, bool):
        return known
    shifted = np.empty(_SCAN_BYTES + 2, dtype=np.uint8)
    upper = np.empty(_SCAN_BYTES + 2, dtype=bool)
    for block in _byte_blocks(arr, overlap=2):  # two more: a character cut at the end is read whole
        if block is None:
            return False
        n = len(block)
        np.subtract(block, ord("A"), out=shifted[:n])  # wraps below "A": A-Z is < 26
        if np.less(shifted[:n], 26, out=upper[:n]).any():
            return False
        if block.max() >= _ASCII_FOLDS[0][0] and any(_found(block, folded) for folded in _ASCII_FOLDS):
            return False
    return True


_LINE_BREAK = ord("\n")


def holds_no_line_break(arr: pa.Array | pa.ChunkedArray | Iterable[pa.Array]) -> bool:
    """Whether no string of a text column holds a line break ("\\n", the one character RE2's "."
    never matches unless told to): there a regex of text and dots selects exactly the lines its
    LIKE pattern does (sde.filters.sql), and RE2 need not read any. Read from the column's bytes
    (~0.1 s for 700 MB); False when unsure (not a string type). ``arr`` may also be its chunks, or
    an object that knows the answer (its ``no_line_break``: a compressed column counted it when
    written)."""
    known = getattr(arr, "no_line_break", None)
    if isinstance(known, bool):
        return known
    found = np.empty(_SCAN_BYTES, dtype=bool)
    for block in _byte_blocks(arr):
        if block is None or np.equal(block, _LINE_BREAK, out=found[:len(block)]).any():
            return False
    return True


def _byte_blocks(arr: pa.Array | pa.ChunkedArray | Iterable[pa.Array], overlap: int = 0) -> Iterator[np.ndarray | None]:
    """The UTF-8 bytes of a text column, :data:`_SCAN_BYTES` at a time (each block with ``overlap``
    bytes of the next), for scans into scratch arrays allocated once; None for a chunk that is not
    text (the scan is then unsure). ``arr`` may also be its chunks, one at a time."""
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr] if isinstance(arr, pa.Array) else arr
    for chunk in chunks:
        data = _string_bytes(chunk)
        if data is None:
            yield None
            return
        for start in range(0, len(data), _SCAN_BYTES):
            yield data[start:start + _SCAN_BYTES + overlap]


def holds_a_number(values: pa.Array | pa.ChunkedArray) -> bool:
    """Whether some value of these strings reads as a number (sde.filters.sql.number_sql): DuckDB
    stops at the first it finds (a column of numbers answers at once, one of text reads it all,
    ~40 ms per 1M lines of transcripts)."""
    return reads_a_number("t", "v", {"t": pa.table({"v": values})})


def reads_a_number(source: str, column: str, tables: Mapping[str, Any]) -> bool:
    """:func:`holds_a_number` of the text ``column`` of the query's ``source`` (``FROM`` text: a
    table, or one joined with a streamed file)."""
    return bool(rows_sql(f"SELECT 1 FROM {source} WHERE {number_key_sql(column)} IS NOT NULL LIMIT 1", (), tables))


def number_first_ranks(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """(each value's dense rank from 1 in the number-first order of sde.filters.sql.number_first_sql,
    0 where it is missing; how many ranks are numbers): ranks 1 to that many are the values that
    read as numbers, the ranks above them the other text. Equal strings share a rank, "7" and "7.0"
    do not."""
    table = pa.table({"v": values, "pos": pa.array(np.arange(len(values), dtype=np.int64))})
    return ranks_numbers_first("t", "v", {"t": table}, len(values))


def ranks_numbers_first(source: str, column: str, tables: Mapping[str, Any], rows: int) -> tuple[np.ndarray, int]:
    """:func:`number_first_ranks` of the text ``column`` of the query's ``source`` (``FROM`` text:
    a table, or one joined with a streamed file), whose ``pos`` numbers its ``rows`` rows. The
    distinct values are ranked, then joined back to the rows: 1M rows of 20,000 values (an snr
    field) ~0.1 s, where ranking every row took ~0.5 s; about the same for a column of distinct values."""
    rank_type, dtype = ("UINTEGER", np.uint32) if rows < 2**32 else ("UBIGINT", np.uint64)  # 4 bytes a row
    got = numpy_sql(f"WITH d AS (SELECT _v, (dense_rank() OVER (ORDER BY {number_first_sql('_v')}))::{rank_type} AS _r, "
                    f"{number_key_sql('_v')} IS NOT NULL AS _n FROM (SELECT DISTINCT {column} AS _v FROM {source} "
                    f"WHERE {column} IS NOT NULL)) SELECT pos, _r, _n FROM {source} JOIN d ON {column} = d._v", (), tables)
    ranks = np.zeros(rows, dtype=dtype)
    ranks[np.asarray(got["pos"], dtype=np.int64)] = got["_r"]
    numeric = np.asarray(got["_r"])[np.asarray(got["_n"], dtype=bool)]
    return ranks, int(numeric.max()) if len(numeric) else 0


class _NotNow(Exception):
    """A column :class:`TextColumnsThatHold` cannot read now (its values gave :data:`NOT_NOW`)."""


#: What a :class:`TextColumnsThatHold`'s ``values`` gives for a text column it cannot read cheaply
#: now (a compressed column not kept whole): the answer is False, and a later ask reads it.
NOT_NOW = object()


class TextColumnsThatHold:
    """The text columns of one table whose values pass ``holds`` (e.g. :func:`holds_no_ascii_upper`),
    as a container (``column in it``, for :func:`sde.filters.to_sql`): a column is read on first
    ask and remembered (the table must never change). ``values(column)`` gives a text column's
    values, None for any other column, :data:`NOT_NOW` for one to read at a later ask. Safe to ask
    from several threads: a column asked by two at once is read once."""

    def __init__(self, values: Callable[[str], pa.Array | pa.ChunkedArray | Iterable[pa.Array] | None],
                 holds: Callable[[Any], bool]) -> None:
        self._values = values
        self._holds = holds
        self._known = ComputedOnce()

    def __contains__(self, column: object) -> bool:
        if not isinstance(column, str):
            return False
        try:
            return self._known.get(column, lambda: self._read(column))
        except _NotNow:  # not remembered: a later ask reads it
            return False

    def _read(self, column: str) -> bool:
        values = self._values(column)
        if values is NOT_NOW:
            raise _NotNow
        return values is not None and self._holds(values)

    def learn(self, columns: Iterable[str]) -> None:
        """Read these columns now (e.g. while warming up), not on a query's first ask."""
        for column in columns:
            _ = column in self


class LowerCaseColumns(TextColumnsThatHold):
    """The text columns that hold no A-Z, ſ or K (:func:`holds_no_ascii_upper`: ``lower_columns``)."""

    def __init__(self, values: Callable[[str], pa.Array | pa.ChunkedArray | Iterable[pa.Array] | None]) -> None:
        super().__init__(values, holds_no_ascii_upper)


class SingleLineColumns(TextColumnsThatHold):
    """The text columns that hold no line break (:func:`holds_no_line_break`: ``single_line_columns``)."""

    def __init__(self, values: Callable[[str], pa.Array | pa.ChunkedArray | Iterable[pa.Array] | None]) -> None:
        super().__init__(values, holds_no_line_break)


def _string_bytes(chunk: pa.Array) -> np.ndarray | None:
    """The UTF-8 bytes of a string array's values (no copy), None for any other type."""
    if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
        return None
    if len(chunk) == 0:
        return np.zeros(0, dtype=np.uint8)
    _, offsets, data = chunk.buffers()[:3]
    ends = np.frombuffer(offsets, dtype=np.int64 if pa.types.is_large_string(chunk.type) else np.int32)
    start, end = int(ends[chunk.offset]), int(ends[chunk.offset + len(chunk)])
    return np.zeros(0, dtype=np.uint8) if data is None else np.frombuffer(data, dtype=np.uint8)[start:end]


def _found(block: np.ndarray, folded: bytes) -> bool:
    """Whether the byte string ``folded`` occurs in ``block``."""
    at = np.flatnonzero(block[: len(block) - len(folded) + 1] == folded[0])
    hit = np.ones(len(at), dtype=bool)
    for i in range(1, len(folded)):
        hit &= block[at + i] == folded[i]
    return bool(hit.any())
