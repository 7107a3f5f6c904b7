"""One filter / sort / page engine for every table view of sde.

The UI grids (dash-ag-grid, server-side paging), the JSON API and the CSV export all go through
:class:`TableQuery`, so a filter means the same thing everywhere.

Filter language Q (the syntax of NeMo's Speech Data Explorer / Dash DataTable)::

    {wer} > 20 && {text} contains "hello world" && speaker = 'spk 1'

* Clauses are joined by ``&&`` (there is no OR).
* A clause is ``COLUMN OP VALUE``. COLUMN is ``{any name}`` or, when it is a plain identifier
  (letters, digits, ``_``), the bare name. Column names only (never display names).
* OP is one of ``= != < <= > >= contains has``; ``==`` means ``=``; the DataTable word aliases
  ``eq ne lt le gt ge`` are accepted too (case-insensitive, like ``contains``).
* VALUE is a quoted string (``"..."`` or ``'...'``; a backslash escapes the quote character and
  the backslash itself, any other backslash is kept as written, so Windows paths work) or a bare
  value: everything up to the next ``&&`` or the end, surrounding spaces removed.

Semantics (decisions where the product contract is silent):

* Numeric columns (int/float, nullable ones too): the value must be a number (``20``, ``-1.5``,
  ``1e3``, ``inf``); ``contains`` is an error. ``=`` is exact float equality.
* Text columns (string, object, categorical): ``=``/``!=`` are exact, case-sensitive string
  equality; ``< <= > >=`` compare lexicographically by Unicode code point (case-sensitive);
  ``contains`` is a case-*insensitive* substring test; ``has`` matches one whole word (a
  whitespace-separated token, case-sensitive, as the metrics split words).
* Boolean columns: ``= true``/``= false`` (also ``1``/``0``) and ``!=``; nothing else.
* Missing values (NaN, <NA>, None) never match any clause, ``!=`` included (SQL semantics):
  ``{speaker} != "a"`` keeps rows whose speaker is known and differs from "a".
* Other column types (dates, ...) can be sorted but not filtered.

Sorting (:func:`parse_sort`): ``"col"``, ``"-col"``, ``"col1,-col2"``. Sorts are stable (ties keep
table order), missing values come last in both directions, strings sort by code point
(case-sensitive).

Bounds (every request is served in bounded memory and time, whatever its text): a filter is at
most :data:`MAX_QUERY_LENGTH` characters and :data:`MAX_CLAUSES` clauses; a sort names a column
once (``id,-id`` is ``id``: a repeated key cannot change the order) and at most
:data:`MAX_SORT_KEYS` columns; a page or row range is at most :data:`MAX_PAGE_SIZE` rows. Going
over a limit is a :class:`QueryError` that names it (a page size is clamped instead).

Nothing here evaluates user text as code: Q is read by a small hand-written scanner, never by
``eval``, ``DataFrame.query`` or ``DataFrame.eval``.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "QueryError",
    "Clause",
    "OPERATORS",
    "EXAMPLE",
    "MAX_PAGE_SIZE",
    "MAX_QUERY_LENGTH",
    "MAX_CLAUSES",
    "MAX_SORT_KEYS",
    "GRID_NUMBER_FILTER_OPTIONS",
    "GRID_TEXT_FILTER_OPTIONS",
    "parse_filter",
    "format_filter",
    "parse_sort",
    "TableQuery",
    "to_clauses_from_grid",
    "sort_from_grid",
]

OPERATORS: tuple[str, ...] = ("=", "!=", "<", "<=", ">", ">=", "contains", "has")
EXAMPLE = '{wer} > 20 && {text} contains "hello"'
MAX_PAGE_SIZE = 1_000     # rows in one page / grid block: a screenful is ~50, a JSON page of 1000 ~1 MB
MAX_QUERY_LENGTH = 10_000  # a filter (or sort) longer than this is a mistake (or an attack), not a query
# Each distinct clause is one pass over a column (~0.1 s for a text scan of 1M rows): 16 keep the
# worst filter near a second on the 2-core machines sde targets; real filters use a handful.
MAX_CLAUSES = 16
# Each sort key costs an int64 per row (8 MB at 1M rows): 1,000 keys took a 100k server from 181 MB
# to 955 MB. Eight is more than anyone sorts by.
MAX_SORT_KEYS = 8

_WORD_OPS = {"contains": "contains", "has": "has", "eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
# Longest first, so "<=" is not read as "<" followed by a value "=...".
_SYMBOL_OPS = (("==", "="), ("!=", "!="), ("<=", "<="), (">=", ">="), ("=", "="), ("<", "<"), (">", ">"))
_IDENT = re.compile(r"[^\W\d]\w*")
_OPS_TEXT = "= != < <= > >= contains has"


class QueryError(ValueError):
    """A filter or sort the user got wrong. ``str(exc)`` is a complete, user-facing message.

    ``position`` is the 0-based offset in the filter text where the problem is, when known
    (the UI can put a caret there); the message itself counts characters from 1.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


def _syntax_error(what: str, pos: int) -> QueryError:
    return QueryError(f"Filter syntax error at character {pos + 1}: {what}. Example: {EXAMPLE}", pos)


@dataclass(frozen=True)
class Clause:
    """One ``column OP value`` test.

    ``value`` is the text as the user wrote it (``parse_filter`` does not know column types, and
    ``{speaker} = 007`` must stay "007"); it is converted when evaluated against a table. Clauses
    built from grid number filters carry floats.
    """

    column: str
    op: str
    value: str | float

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise QueryError(f'Unknown operator "{self.op}": use one of {_OPS_TEXT}. Example: {EXAMPLE}')

    def to_q(self) -> str:
        """This clause in the filter language (``parse_filter(c.to_q()) == [c]`` for text values)."""
        if isinstance(self.value, str):
            value = '"' + self.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            value = _format_number(self.value)
        return f"{{{self.column}}} {self.op} {value}"


def format_filter(clauses: Sequence[Clause]) -> str:
    """Render clauses as Q text (e.g. to show a grid's column filters in the filter box)."""
    return " && ".join(c.to_q() for c in clauses)


def _format_number(v: float) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    f = float(v)
    if f.is_integer() and abs(f) < 1e16:
        return str(int(f))
    return repr(f)


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_filter(q: str | None, columns: Sequence[str] | None = None) -> list[Clause]:
    """Parse filter text Q into clauses. ``""``/``None``/blank → ``[]``.

    When ``columns`` is given, unknown column names are reported here too (with suggestions);
    otherwise that check happens when the clauses are evaluated against a table.
    Raises :class:`QueryError` (and nothing else) for any malformed text.
    """
    if q is None:
        return []
    if not isinstance(q, str):
        raise QueryError(f"The filter must be text, like: {EXAMPLE}")
    if len(q) > MAX_QUERY_LENGTH:
        raise QueryError(f"The filter is too long ({len(q)} characters, at most {MAX_QUERY_LENGTH}).")
    clauses: list[Clause] = []
    n = len(q)
    i = _skip_ws(q, 0)
    if i == n:
        return []
    while True:
        clause, i = _parse_clause(q, i)
        clauses.append(clause)
        _check_clause_count(len(clauses))
        i = _skip_ws(q, i)
        if i == n:
            break
        if q.startswith("&&", i):
            amp = i
            i = _skip_ws(q, i + 2)
            if i == n:
                raise _syntax_error("nothing after the last && (remove it or add a clause)", amp)
            continue
        # Only reachable after a quoted value: a bare value runs up to the next "&&".
        raise _syntax_error(f'unexpected "{q[i]}" after the value (join clauses with &&)', i)
    if columns is not None:
        for c in clauses:
            _check_column(c.column, columns)
    return clauses


def _check_clause_count(n: int) -> None:
    if n > MAX_CLAUSES:
        raise QueryError(f"The filter has more than {MAX_CLAUSES} clauses (at most {MAX_CLAUSES}): "
                         f"narrow it down in steps, or use contains/has on one column. Example: {EXAMPLE}")


def _skip_ws(q: str, i: int) -> int:
    n = len(q)
    while i < n and q[i].isspace():
        i += 1
    return i


def _parse_clause(q: str, i: int) -> tuple[Clause, int]:
    n = len(q)
    if q.startswith("&&", i):
        raise _syntax_error("empty clause (an extra &&?)", i)
    # Column: {name} or a plain identifier.
    if q[i] == "{":
        close = q.find("}", i + 1)
        if close < 0:
            raise _syntax_error("missing } after the column name", i)
        column = q[i + 1 : close].strip()
        if not column:
            raise _syntax_error("empty column name {}", i)
        i = close + 1
    else:
        m = _IDENT.match(q, i)
        if m is None:
            raise _syntax_error("expected a column name like {wer} or wer", i)
        column = m.group(0)
        i = m.end()
    # Operator.
    i = _skip_ws(q, i)
    op = None
    if i < n:
        for sym, canon in _SYMBOL_OPS:
            if q.startswith(sym, i):
                op, i = canon, i + len(sym)
                break
        else:
            m = _IDENT.match(q, i)
            if m is not None and m.group(0).lower() in _WORD_OPS:
                op, i = _WORD_OPS[m.group(0).lower()], m.end()
    if op is None:
        what = f'"{q[i]}"' if i < n else "the end"
        raise _syntax_error(f"expected an operator ({_OPS_TEXT}) after {{{column}}}, found {what}", i)
    # Value.
    i = _skip_ws(q, i)
    if i == n or q.startswith("&&", i):
        raise _syntax_error(f"missing value after {{{column}}} {op}", i)
    if q[i] in "\"'":
        value, i = _parse_quoted(q, i)
    else:
        end = q.find("&&", i)
        end = n if end < 0 else end
        raw = q[i:end]
        # A bare value holding "{" or "||" is almost always a missing "&&" or an attempted OR;
        # saying so beats silently matching nothing.
        bad = raw.find("||")
        if bad >= 0:
            raise _syntax_error("|| (OR) is not supported; clauses can only be joined with &&", i + bad)
        bad = raw.find("{")
        if bad >= 0:
            raise _syntax_error('unexpected "{" in a value (missing && between clauses? '
                                'quote the value if it contains {)', i + bad)
        value = raw.strip()
        i = end
    return Clause(column, op, value), i


def _parse_quoted(q: str, i: int) -> tuple[str, int]:
    quote = q[i]
    out: list[str] = []
    j = i + 1
    n = len(q)
    while j < n:
        ch = q[j]
        if ch == "\\" and j + 1 < n and q[j + 1] in (quote, "\\"):
            out.append(q[j + 1])
            j += 2
            continue
        if ch == quote:
            return "".join(out), j + 1
        out.append(ch)
        j += 1
    raise _syntax_error(f"unterminated string: the {quote} here is never closed", i)


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


def _check_column(name: str, columns: Sequence[str]) -> None:
    if name in columns:
        return
    cols = [str(c) for c in columns]
    close = difflib.get_close_matches(name, cols, n=3, cutoff=0.6)
    close += [c for c in cols if c.lower() == name.lower() and c not in close]
    hint = f" Did you mean {', '.join('{' + c + '}' for c in close)}?" if close else ""
    shown = ", ".join(cols[:20]) + (f", … ({len(cols) - 20} more)" if len(cols) > 20 else "")
    raise QueryError(f'Unknown column "{name}".{hint} Columns: {shown}.')


# ---------------------------------------------------------------------------------------------
# Evaluation


class _LRU:
    """A small thread-safe LRU. Values are computed outside the lock: two threads may compute the
    same entry at once (harmless, both results are equal); the lock only protects the dict."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._d: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: Hashable, value: Any) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        v = self.get(key)
        if v is None:
            v = compute()
            self.put(key, v)
        return v

    def __len__(self) -> int:
        return len(self._d)


def _frozen(a: np.ndarray) -> np.ndarray:
    # Cached arrays are handed to callers; read-only so nobody can corrupt the cache.
    a.flags.writeable = False
    return a


_NUMBER, _TEXT, _BOOL, _OTHER, _VIRTUAL = "number", "text", "bool", "other", "virtual"


def _kind(dtype: Any) -> str:
    if isinstance(dtype, pd.ArrowDtype):
        t = dtype.pyarrow_dtype
        if pa.types.is_boolean(t):
            return _BOOL
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            return _NUMBER
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return _TEXT
        return _OTHER
    if pd.api.types.is_bool_dtype(dtype):
        return _BOOL
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return _NUMBER
    if isinstance(dtype, (pd.StringDtype, pd.CategoricalDtype)) or dtype == np.dtype(object):
        return _TEXT
    return _OTHER


class TableQuery:
    """Filter, sort and page one DataFrame, fast enough for a 1M-row table behind a web UI.

    The frame must not be modified after this object is built (caches assume it is immutable).
    Caches (all bounded LRUs, safe to share between server threads):

    * per column and direction, the stable sort order of the whole table (``max_orders``);
      a sorted, filtered view is then ``order[mask[order]]`` — no sort per request;
    * per clause, its boolean mask (``max_masks``), so refining a filter reuses earlier work;
    * per (filter, sort), the final row positions (``max_results``), so paging is a slice;
    * per column, the Arrow / float views of its data (cheap: zero-copy for the usual dtypes).
    """

    def __init__(self, df: pd.DataFrame, *, max_orders: int = 16, max_masks: int = 32,
                 max_results: int = 8,
                 virtual: Mapping[str, Callable[[str, str], np.ndarray]] | None = None) -> None:
        self.df = df
        self.columns: list[str] = [str(c) for c in df.columns]
        self._labels = {str(c): c for c in df.columns}
        self._n = len(df)
        self._kinds = {str(c): _kind(df[c].dtype) for c in df.columns}
        # Filter-only columns computed on demand: name → fn(op, value) → boolean mask over the rows
        # (raising QueryError for values it does not understand). E.g. `{error} = "sub:cat:bat"`:
        # the utterances where that substitution happens. They can be filtered, not sorted or shown.
        self._virtual = dict(virtual or {})
        self._filterable = self.columns + [v for v in self._virtual if v not in self._kinds]
        for name in self._virtual:
            self._kinds.setdefault(name, _VIRTUAL)
        self._orders = _LRU(max_orders)
        self._masks = _LRU(max_masks)
        self._results = _LRU(max_results)
        self._data = _LRU(max(8, len(self.columns) * 2))

    def _series(self, column: str) -> pd.Series:
        return self.df[self._labels[column]]

    # -- public API --------------------------------------------------------------------------

    def kind(self, column: str) -> str:
        """The column's kind: "number", "text", "bool" or "other" (sortable, not filterable)."""
        _check_column(column, self.columns)
        return self._kinds[column]

    def clauses(self, filter: str | Sequence[Clause] | None) -> list[Clause]:
        """Parse (if text) and validate a filter against this table's columns and types."""
        clauses = self._as_clauses(filter)
        for c in clauses:
            self._clause_key(c)
        return clauses

    def select(self, filter: str | Sequence[Clause] | None = None,
               sort: str | Sequence[tuple[str, bool]] | None = None) -> np.ndarray:
        """Row positions (int64, read-only) of the filtered view, in sort order (else table order)."""
        clauses = self._as_clauses(filter)
        sort_keys = self._as_sort(sort)
        fkey = tuple(sorted({self._clause_key(c) for c in clauses}, key=repr))
        skey = tuple(sort_keys)
        key = (fkey, skey)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        mask = self._mask(clauses, fkey)
        if not sort_keys:
            pos = self._positions(mask)
        elif len(sort_keys) == 1:
            column, desc = sort_keys[0]
            order = self._orders.get(("order", column, desc))
            if order is None and mask is not None and int(np.count_nonzero(mask)) * 16 < self._n:
                # A few matching rows and no cached order: sorting just them beats sorting all.
                sel = self._positions(mask)
                pos = sel[self._sort_subset(sel, column, desc)]
            else:
                order = self._order(column, desc) if order is None else order
                pos = order if mask is None else order[mask[order]]
        else:
            pos = self._multi_sort(self._positions(mask), sort_keys)
        pos = _frozen(pos)
        self._results.put(key, pos)
        return pos

    def _positions(self, mask: np.ndarray | None) -> np.ndarray:
        if mask is None:
            return np.arange(self._n, dtype=np.int64)
        return np.flatnonzero(mask).astype(np.int64, copy=False)

    def count(self, filter: str | Sequence[Clause] | None = None) -> int:
        """Number of rows matching the filter."""
        return int(len(self.select(filter)))

    def page(self, filter: str | Sequence[Clause] | None = None,
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
        pos = self.select(filter, sort)
        start = page * page_size
        return int(len(pos)), self.df.iloc[pos[start : start + page_size]]

    def rows(self, filter: str | Sequence[Clause] | None = None,
             sort: str | Sequence[tuple[str, bool]] | None = None,
             start: int = 0, end: int | None = None) -> tuple[int, pd.DataFrame]:
        """Like :meth:`page` with an AG Grid style ``[start, end)`` row range (startRow/endRow)."""
        start = _as_int(start, "start")
        end = start + 100 if end is None else _as_int(end, "end")
        if start < 0 or end < start:
            raise QueryError(f"Invalid row range {start}..{end}.")
        end = min(end, start + MAX_PAGE_SIZE)
        pos = self.select(filter, sort)
        return int(len(pos)), self.df.iloc[pos[start:end]]

    # -- parsing against the table -----------------------------------------------------------

    def _as_clauses(self, filter: str | Sequence[Clause] | None) -> list[Clause]:
        if filter is None or isinstance(filter, str):
            return parse_filter(filter, self._filterable)
        clauses = list(filter)
        _check_clause_count(len(clauses))
        if sum(len(c.value) for c in clauses if isinstance(c, Clause) and isinstance(c.value, str)) > MAX_QUERY_LENGTH:
            raise QueryError(f"The filter values are too long (at most {MAX_QUERY_LENGTH} characters in all).")
        for c in clauses:
            if not isinstance(c, Clause):
                raise QueryError(f"Expected filter clauses, got {type(c).__name__}.")
            _check_column(c.column, self._filterable)
        return clauses

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

    def _clause_key(self, c: Clause) -> tuple:
        """Validate the clause against the column's type; return its normalised cache key."""
        kind = self._kinds[c.column]
        col = "{" + c.column + "}"
        if kind == _VIRTUAL:
            value = c.value if isinstance(c.value, str) else _format_number(c.value)
            key = (c.column, c.op, value)
            self._clause_mask(key)  # the column's own function validates the value (QueryError)
            return key
        if kind == _NUMBER:
            if c.op in ("contains", "has"):
                raise QueryError(f"{col} is a number column: {c.op} works on text columns. "
                                 f"Use = != < <= > >=, e.g. {col} > 20.")
            return (c.column, c.op, _to_float(c.value, col))
        if kind == _BOOL:
            if c.op not in ("=", "!="):
                raise QueryError(f"{col} is a true/false column: use {col} = true or {col} = false.")
            return (c.column, c.op, _to_bool(c.value, col))
        if kind == _TEXT:
            value = c.value if isinstance(c.value, str) else _format_number(c.value)
            if c.op == "has" and (not value or len(value.split()) != 1 or value != value.strip()):
                raise QueryError(f'{col} has "WORD" matches one whole word (a whitespace-separated token, '
                                 f'case-sensitive), e.g. {col} has "cat"; got {value!r}.')
            if c.op == "contains" and value.isascii():
                # Case-insensitive test: "Fox" and "fox" share one cached mask. (ASCII only:
                # Unicode lower() can change a pattern's meaning, e.g. "İ" → "i̇".)
                value = value.lower()
            return (c.column, c.op, value)
        raise QueryError(f"{col} ({self._series(c.column).dtype}) cannot be filtered; it can be sorted.")

    # -- filtering -----------------------------------------------------------------------------

    def _mask(self, clauses: list[Clause], fkey: tuple) -> np.ndarray | None:
        """AND of the clause masks, or None for "all rows"."""
        if not clauses:
            return None
        if len(fkey) == 1:
            return self._clause_mask(fkey[0])
        # Cheap clauses first: an expensive text scan can then run on the few surviving rows.
        keys = sorted(fkey, key=lambda k: (self._expensive(k), repr(k)))
        mask: np.ndarray | None = None
        for k in keys:
            cached = self._masks.get(k)
            if cached is not None:
                m = cached
            elif mask is not None and self._expensive(k):
                idx = np.flatnonzero(mask)
                if len(idx) * 3 < self._n:
                    # Subset evaluation is not cached: it depends on the other clauses.
                    keep = self._eval(k, idx)
                    mask[idx[~keep]] = False
                    continue
                m = self._clause_mask(k)
            else:
                m = self._clause_mask(k)
            mask = m.copy() if mask is None else np.logical_and(mask, m, out=mask)
        return mask

    def _expensive(self, key: tuple) -> bool:
        # Text scans cost ~100 ms per million rows; numeric/bool tests ~1 ms; virtual columns are
        # evaluated whole and cached, so never on a subset.
        return self._kinds[key[0]] == _TEXT and key[1] not in ("=", "!=")

    def _clause_mask(self, key: tuple) -> np.ndarray:
        return self._masks.get_or_compute(key, lambda: _frozen(self._eval(key, None)))

    def _eval(self, key: tuple, idx: np.ndarray | None) -> np.ndarray:
        """Boolean mask of the rows (all, or the rows ``idx``) passing one clause."""
        column, op, value = key
        kind = self._kinds[column]
        if kind == _VIRTUAL:
            m = np.asarray(self._virtual[column](op, value), dtype=bool)
            return m if idx is None else m[idx]
        if kind == _NUMBER:
            vals, na = self._numeric(column)
            if idx is not None:
                vals = vals[idx]
                na = None if na is None else na[idx]
            with np.errstate(invalid="ignore"):
                m = _NUMPY_OPS[op](vals, value)
            if op == "!=":
                # NaN != x is True in IEEE; missing values must never match.
                m &= ~(np.isnan(vals) if vals.dtype.kind == "f" else np.zeros(len(vals), bool))
            if na is not None:
                m &= ~na
            return m
        if kind == _BOOL:
            vals, na = self._boolean(column)
            if idx is not None:
                vals = vals[idx]
                na = None if na is None else na[idx]
            m = (vals == value) if op == "=" else (vals != value)
            if na is not None:
                m &= ~na
            return m
        arr = self._arrow(column)
        if idx is not None:
            arr = arr.take(pa.array(idx))
        if op == "contains":
            def scan(part: pa.ChunkedArray | pa.Array) -> np.ndarray:
                return _bool_numpy(pc.match_substring(part, pattern=value, ignore_case=True))
            return _parallel(scan, arr)
        if op == "has":
            # A whole token, as the metrics split words: "cat" matches "a cat sat", not "category".
            pattern = r"(?:^|\s)" + re.escape(value) + r"(?:\s|$)"

            def scan_word(part: pa.ChunkedArray | pa.Array) -> np.ndarray:
                return _bool_numpy(pc.match_substring_regex(part, pattern=pattern))
            return _parallel(scan_word, arr)
        return _bool_numpy(_ARROW_OPS[op](arr, pa.scalar(value, type=arr.type)))

    # -- column data -----------------------------------------------------------------------------

    def _numeric(self, column: str) -> tuple[np.ndarray, np.ndarray | None]:
        def compute() -> tuple[np.ndarray, np.ndarray | None]:
            s = self._series(column)
            if isinstance(s.dtype, np.dtype):
                return s.to_numpy(), None  # zero-copy; NaN handled by IEEE compares
            na = s.isna().to_numpy()
            return s.to_numpy(dtype="float64", na_value=np.nan), (na if na.any() else None)
        return self._data.get_or_compute(("num", column), compute)

    def _boolean(self, column: str) -> tuple[np.ndarray, np.ndarray | None]:
        def compute() -> tuple[np.ndarray, np.ndarray | None]:
            s = self._series(column)
            if isinstance(s.dtype, np.dtype):
                return s.to_numpy(), None
            na = s.isna().to_numpy()
            return s.to_numpy(dtype=bool, na_value=False), (na if na.any() else None)
        return self._data.get_or_compute(("bool", column), compute)

    def _arrow(self, column: str) -> pa.ChunkedArray | pa.Array:
        return self._data.get_or_compute(("arrow", column),
                                         lambda: _to_arrow(self._series(column), self._kinds[column]))

    # -- sorting -------------------------------------------------------------------------------

    def _order(self, column: str, desc: bool) -> np.ndarray:
        """Stable order of all rows by one column, missing values last (cached)."""
        def compute() -> np.ndarray:
            s = self._series(column)
            if isinstance(s.dtype, np.dtype) and s.dtype.kind in "biuf":
                x = s.to_numpy()
                if desc:
                    # Negating keeps NaN as NaN (numpy sorts it last); ~ is the overflow-free
                    # order reversal for integers and booleans.
                    x = -x if x.dtype.kind == "f" else ~x
                return _frozen(np.argsort(x, kind="stable").astype(np.int64, copy=False))
            if self._kinds[column] == _TEXT:
                small = self._text_codes(column)
                if small is not None:
                    codes, u = small
                    key = np.where(codes == u, u, u - 1 - codes).astype(codes.dtype) if desc else codes
                    return _frozen(np.argsort(key, kind="stable").astype(np.int64, copy=False))
            arr = self._arrow(column)
            try:
                idx = _sort_indices(arr, "descending" if desc else "ascending")
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise QueryError(f"{{{column}}} ({self._series(column).dtype}) cannot be sorted.") from exc
            return _frozen(idx.to_numpy().astype(np.int64, copy=False))
        return self._orders.get_or_compute(("order", column, desc), compute)

    def _sort_subset(self, sel: np.ndarray, column: str, desc: bool) -> np.ndarray:
        """Stable order (positions into ``sel``) of the rows ``sel`` by one column."""
        s = self._series(column)
        if isinstance(s.dtype, np.dtype) and s.dtype.kind in "biuf":
            x = s.to_numpy()[sel]
            if desc:
                x = -x if x.dtype.kind == "f" else ~x
            return np.argsort(x, kind="stable")
        arr = self._arrow(column).take(pa.array(sel))
        try:
            idx = _sort_indices(arr, "descending" if desc else "ascending")
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise QueryError(f"{{{column}}} ({s.dtype}) cannot be sorted.") from exc
        return idx.to_numpy().astype(np.int64, copy=False)

    def warm(self, columns: Sequence[str] | None = None, descending: bool = True) -> None:
        """Precompute sort orders (e.g. in a background thread at startup) so the first sort by
        these columns is as fast as the next ones. Default: the number columns."""
        if columns is None:
            columns = [c for c in self.columns if self._kinds[c] == _NUMBER]
        for c in columns:
            _check_column(c, self.columns)
            self._order(c, False)
            if descending:
                self._order(c, True)

    def _text_codes(self, column: str) -> tuple[np.ndarray, int] | None:
        """For a low-cardinality text column (speaker, lang, ...): each row's rank among the
        distinct values (missing → number of distinct values), as int16/int32; else None.

        Sorting 1M short strings directly costs ~1 s; ranking ~500 distinct values and sorting
        small integers costs ~50 ms.
        """
        def compute() -> tuple[np.ndarray, int] | bool:
            arr = self._arrow(column)
            sample = arr.slice(0, 20_000)
            if len(arr) > 20_000 and pc.count_distinct(sample).as_py() > 5_000:
                return False
            enc = pc.dictionary_encode(arr)
            if isinstance(enc, pa.ChunkedArray):
                enc = enc.unify_dictionaries().combine_chunks() if enc.num_chunks else None
            if enc is None:
                return False
            dictionary = enc.dictionary
            u = len(dictionary)
            if u > 1_000_000 or u * 4 > max(self._n, 1) * 3:
                return False
            dtype = np.int16 if u < 2**15 - 1 else np.int32
            rank_of_code = np.empty(u + 1, dtype)
            rank_of_code[_sort_indices(dictionary, "ascending").to_numpy()] = np.arange(u, dtype=dtype)
            rank_of_code[u] = u
            idx = enc.indices.fill_null(u).to_numpy(zero_copy_only=False)
            return _frozen(rank_of_code[idx]), u
        got = self._orders.get_or_compute(("codes", column), compute)
        return got if got is not False else None

    def _rank(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """Dense ascending rank of every row (ties share a rank) and the missing-value mask."""
        def compute() -> tuple[np.ndarray, np.ndarray]:
            if self._kinds[column] == _TEXT:
                small = self._text_codes(column)
                if small is not None:
                    codes, u = small
                    return _frozen(codes.astype(np.int64)), _frozen(codes == u)
            order = self._order(column, False)
            arr = self._arrow(column)
            na = _missing(arr)
            if self._n == 0:
                return np.zeros(0, np.int64), na
            srt = arr.take(pa.array(order))
            if len(srt) > 1:
                diff = _bool_numpy(pc.not_equal(srt.slice(1), srt.slice(0, len(srt) - 1)), fill=True)
            else:
                diff = np.zeros(0, bool)
            ranks_sorted = np.concatenate([[0], np.cumsum(diff, dtype=np.int64)])
            rank = np.empty(self._n, np.int64)
            rank[order] = ranks_sorted
            return _frozen(rank), _frozen(na)
        return self._orders.get_or_compute(("rank", column), compute)

    def _multi_sort(self, sel: np.ndarray, sort_keys: list[tuple[str, bool]]) -> np.ndarray:
        keys = []
        sizes = []
        for column, desc in sort_keys:
            rank, na = self._rank(column)
            r = rank[sel]
            top = int(rank.max()) if len(rank) else 0
            # Missing values last in both directions: give them the largest key.
            k = np.where(na[sel], top + 1, (top - r) if desc else r)
            keys.append(k)
            sizes.append(top + 2)
        # One combined int64 key when it fits: a single stable argsort beats lexsort.
        if math.prod(sizes) < 2**62:
            combined = np.zeros(len(sel), np.int64)
            for k, size in zip(keys, sizes, strict=True):
                combined = combined * size + k
            order = np.argsort(combined, kind="stable")
        else:
            order = np.lexsort(keys[::-1])  # lexsort is stable; last key is the primary one
        return sel[order]


# ---------------------------------------------------------------------------------------------
# Helpers


_NUMPY_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "=": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
    ">": np.greater, ">=": np.greater_equal,
}
_ARROW_OPS: dict[str, Callable[..., Any]] = {
    "=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
    ">": pc.greater, ">=": pc.greater_equal,
}


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_PARALLEL_MIN_ROWS = 200_000


def _parallel(fn: Callable[[Any], np.ndarray], arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Apply an Arrow text kernel to slices of ``arr`` on several threads and concatenate.

    A substring scan is ~100 ms of CPU per million rows and Arrow kernels release the GIL, so
    slicing halves the wait on the 2-core machines sde targets. Small inputs run inline.
    """
    global _POOL
    workers = min(4, os.cpu_count() or 1)
    n = len(arr)
    if workers < 2 or n < _PARALLEL_MIN_ROWS:
        return fn(arr)
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sde-query")
    step = -(-n // workers)
    parts = [arr.slice(start, step) for start in range(0, n, step)]
    return np.concatenate(list(_POOL.map(fn, parts)))


def _as_int(v: Any, name: str) -> int:
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, str) and len(v) <= 40 and v.strip().lstrip("+-").isdecimal():
        try:
            return int(v)
        except ValueError:  # decimal digits int() still refuses (mixed scripts)
            pass
    raise QueryError(f"{name} must be a whole number (got {_short(v)}).")


def _short(v: Any, limit: int = 60) -> str:
    """repr of a user value for a message, cut short: an error must not echo a megabyte back."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _to_float(value: str | float, col: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise QueryError(f"{col} is a number column: {value!r} is not a number. Example: {col} > 20")
    if isinstance(value, (int, float, np.integer, np.floating)):
        f = float(value)
    else:
        text = value.strip()
        try:
            # "_" is valid in Python float literals but not something users mean.
            f = float(text) if "_" not in text else float("nan")
        except ValueError:
            f = float("nan")
        if math.isnan(f):
            raise QueryError(f'{col} is a number column: "{value}" is not a number. Example: {col} > 20')
    if math.isnan(f):
        raise QueryError(f"{col} is a number column: NaN is not a value to compare with. Example: {col} > 20")
    return f


def _to_bool(value: str | float, col: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value) in (0.0, 1.0):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise QueryError(f'{col} is a true/false column: "{value}" is neither. Example: {col} = true')


def _to_arrow(s: pd.Series, kind: str) -> pa.ChunkedArray | pa.Array:
    """Arrow view of a column: zero-copy for Arrow-backed and numpy numeric columns."""
    arrow_method = getattr(s.array, "__arrow_array__", None)
    if arrow_method is not None and kind in (_TEXT, _NUMBER, _BOOL) and not isinstance(s.dtype, pd.CategoricalDtype):
        try:
            arr = arrow_method()
            if kind != _TEXT or pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
                return arr
        except (TypeError, pa.ArrowException):
            pass
    if kind == _TEXT:
        # object/categorical: str() of each value, missing kept missing.
        return s.astype("string[pyarrow]").array.__arrow_array__()
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iufb":
        return pa.array(s.to_numpy())  # zero-copy for numeric; NaN stays NaN (sorts last)
    return pa.array(s, from_pandas=True)


def _sort_indices(arr: pa.ChunkedArray | pa.Array, order: str) -> pa.Array:
    """Arrow's stable sort, nulls and NaN last; per-key null placement on pyarrow ≥ 25."""
    try:
        return pc.sort_indices(arr, sort_keys=[("", order, "at_end")])
    except (TypeError, ValueError):  # older pyarrow: 2-tuples + a global null_placement
        return pc.sort_indices(arr, sort_keys=[("", order)], null_placement="at_end")


def _missing(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    na = _bool_numpy(pc.is_null(arr, nan_is_null=True) if pa.types.is_floating(arr.type) else pc.is_null(arr))
    return na


def _bool_numpy(res: pa.ChunkedArray | pa.Array, fill: bool = False) -> np.ndarray:
    res = res.fill_null(fill)
    if isinstance(res, pa.ChunkedArray):
        if res.num_chunks == 0:
            return np.zeros(0, bool)
        res = res.combine_chunks() if res.num_chunks > 1 else res.chunk(0)
    return res.to_numpy(zero_copy_only=False)


# ---------------------------------------------------------------------------------------------
# dash-ag-grid models → clauses (plain dicts in, no dash import)

# Filter options the engine understands: pass as columnDefs' filterParams={"filterOptions": ...}
# so the grid offers only those.
GRID_NUMBER_FILTER_OPTIONS: tuple[str, ...] = (
    "equals", "notEqual", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual", "inRange",
)
GRID_TEXT_FILTER_OPTIONS: tuple[str, ...] = ("contains", "equals", "notEqual")

_GRID_OPS = {
    "equals": "=", "notEqual": "!=", "lessThan": "<", "lessThanOrEqual": "<=",
    "greaterThan": ">", "greaterThanOrEqual": ">=", "contains": "contains",
}


def to_clauses_from_grid(filter_model: Mapping[str, Any] | None, *,
                         in_range_inclusive: bool = False) -> list[Clause]:
    """Translate an AG Grid ``filterModel`` (``{colId: model}``) into clauses.

    Supports the simple text and number filters: ``{"filterType": "number", "type":
    "greaterThan", "filter": 20}``, ``{"type": "inRange", "filter": 1, "filterTo": 5}``
    (exclusive bounds like AG Grid's default; ``in_range_inclusive=True`` matches its
    ``inRangeInclusive`` option), and combined models with ``"operator": "AND"`` given either as
    ``"conditions": [...]`` (AG Grid ≥ 29) or ``"condition1"/"condition2"`` (older). Conditions
    without a value (the user has not typed one yet) are skipped. OR, blank/notBlank,
    startsWith/endsWith/notContains, date and set filters raise :class:`QueryError`.
    """
    if not filter_model:
        return []
    if not isinstance(filter_model, Mapping):
        raise QueryError("The grid filter model must be an object {column: filter}.")
    out: list[Clause] = []
    for col_id, model in filter_model.items():
        out.extend(_grid_model(str(col_id), model, in_range_inclusive))
        _check_clause_count(len(out))
    return out


def _grid_model(column: str, model: Any, inclusive: bool, nested: bool = False) -> list[Clause]:
    if not isinstance(model, Mapping):
        raise QueryError(f"Filter on {{{column}}}: expected an object, got {type(model).__name__}.")
    ftype = model.get("filterType", "text")
    if ftype not in ("text", "number"):
        raise QueryError(f"Filter on {{{column}}}: {ftype} filters are not supported (text and number are).")
    if "operator" in model or "conditions" in model or "condition1" in model:
        if nested:
            # AG Grid combines simple conditions only; a model nested deeper is not from the grid.
            raise QueryError(f"Filter on {{{column}}}: combined conditions cannot be nested.")
        operator = str(model.get("operator", "AND")).upper()
        if operator != "AND":
            raise QueryError(f"Filter on {{{column}}}: OR is not supported; combine conditions with AND.")
        conditions = model.get("conditions")
        if conditions is None:
            conditions = [model[k] for k in ("condition1", "condition2") if model.get(k)]
        if not isinstance(conditions, (list, tuple)):
            raise QueryError(f"Filter on {{{column}}}: conditions must be a list.")
        out: list[Clause] = []
        for cond in conditions:
            if isinstance(cond, Mapping) and "filterType" not in cond:
                cond = {**cond, "filterType": ftype}
            out.extend(_grid_model(column, cond, inclusive, nested=True))
            _check_clause_count(len(out))
        return out
    gtype = model.get("type")
    value = model.get("filter")
    number = ftype == "number"
    if gtype == "inRange" and number:
        lo, hi = value, model.get("filterTo")
        if lo is None or hi is None:
            return []
        return [Clause(column, ">=" if inclusive else ">", _grid_number(lo, column)),
                Clause(column, "<=" if inclusive else "<", _grid_number(hi, column))]
    allowed = GRID_NUMBER_FILTER_OPTIONS if number else GRID_TEXT_FILTER_OPTIONS
    if gtype not in allowed:
        raise QueryError(f'Filter on {{{column}}}: "{gtype}" is not supported; use one of {", ".join(allowed)}.')
    if value is None or value == "":
        return []
    return [Clause(column, _GRID_OPS[gtype], _grid_number(value, column) if number else str(value))]


def _grid_number(v: Any, column: str) -> float:
    return _to_float(v if isinstance(v, (int, float)) else str(v), "{" + column + "}")


def sort_from_grid(sort_model: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, bool]]:
    """AG Grid ``sortModel`` (``[{"colId": "wer", "sort": "desc"}, ...]``) → ``[(column, descending)]``.

    Entries with no sort direction are skipped; the list order is the sort priority; a column's
    first entry wins and more than :data:`MAX_SORT_KEYS` columns raise :class:`QueryError`.
    """
    if not sort_model:
        return []
    if not isinstance(sort_model, (list, tuple)):
        raise QueryError("The grid sort model must be a list of {colId, sort}.")
    out = _SortKeys()
    for item in sort_model:
        if not isinstance(item, Mapping) or "colId" not in item:
            raise QueryError(f"Invalid grid sort entry {_short(item)}: expected {{colId, sort}}.")
        direction = item.get("sort")
        if direction is None:
            continue
        if direction not in ("asc", "desc"):
            raise QueryError(f'Invalid sort direction {_short(direction)} for {{{_short(str(item["colId"]))}}}: '
                             "use asc or desc.")
        out.add(str(item["colId"]), direction == "desc")
    return out.keys
