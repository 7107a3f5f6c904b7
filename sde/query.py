"""One filter / sort / page engine for every table view of sde.

The UI grids (dash-ag-grid, server-side paging), the JSON API and the CSV export all go through
:class:`TableQuery`, so a filter means the same thing everywhere.

The filter language Q (``{wer} > 20 && ({speaker} = "a" || !({text} contains "noise"))``: clauses,
``&& || !``, parentheses, ``in``, ``matches``, ``is null``, column-to-column arithmetic) is
defined, parsed and compiled in :mod:`sde.filters`; its names are re-exported here. A filter given
as a list is the parts of an AND (:class:`Clause`, or any node of the tree).

Sorting (:func:`parse_sort`): ``"col"``, ``"-col"``, ``"col1,-col2"``. Sorts are stable (ties keep
table order), missing values come last in both directions, strings sort by code point
(case-sensitive).

Bounds (every request is served in bounded memory and time, whatever its text): a filter is at
most :data:`MAX_QUERY_LENGTH` characters and :data:`MAX_CLAUSES` clauses; a sort names a column
once (``id,-id`` is ``id``: a repeated key cannot change the order) and at most
:data:`MAX_SORT_KEYS` columns; a page or row range is at most :data:`MAX_PAGE_SIZE` rows. Going
over a limit is a :class:`QueryError` that names it (a page size is clamped instead).

Nothing here evaluates user text as code: Q is read by a small hand-written parser, never by
``eval``, ``DataFrame.query`` or ``DataFrame.eval``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.caching import LRUCache
from sde.filters import (
    EXAMPLE,
    MAX_CLAUSES,
    MAX_QUERY_LENGTH,
    NODES,
    OPERATORS,
    TEXT,
    VIRTUAL,
    Clause,
    FrameColumns,
    MaskCompiler,
    Node,
    QueryError,
    bind,
    check_bounds,
    check_clause_count,
    check_column,
    column_refs,
    format_filter,
    leaf_key,
    leaves,
    parse_filter,
    positive_leaves,
    replace_node,
)
from sde.filters import LEAVES as _LEAVES
from sde.filters import bool_numpy as _bool_numpy

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
]

MAX_PAGE_SIZE = 1_000     # rows in one page / grid block: a screenful is ~50, a JSON page of 1000 ~1 MB
# Each sort key costs an int64 per row (8 MB at 1M rows): 1,000 keys took a 100k server from 181 MB
# to 955 MB. Eight is more than anyone sorts by.
MAX_SORT_KEYS = 8

_check_clause_count = check_clause_count
_check_column = check_column


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
# Evaluation


def _frozen(a: np.ndarray) -> np.ndarray:
    # Cached arrays are handed to callers; read-only so nobody can corrupt the cache.
    a.flags.writeable = False
    return a


_NUMBER, _TEXT, _BOOL, _OTHER, _VIRTUAL = "number", "text", "bool", "other", "virtual"


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
        self._orders = LRUCache(max_orders)
        self._masks = LRUCache(max_masks)
        self._results = LRUCache(max_results)
        # Per column: numeric / float / Arrow views and the missing-value mask.
        self._data = LRUCache(max(8, len(self.columns) * 4))
        # Filter-only columns computed on demand: name → fn(op, value) → boolean mask over the rows
        # (raising QueryError for values it does not understand). E.g. `{error} = "sub:cat:bat"`:
        # the utterances where that substitution happens. They can be filtered, not sorted or shown.
        self._virtual = dict(virtual or {})
        self._filterable = self.columns + [v for v in self._virtual if v not in self._labels]
        self._source = FrameColumns(df, self._virtual, cache=self._data)
        self._kinds = self._source.kinds
        self._compiler = MaskCompiler(self._source, cache=self._masks)

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
        parts = self._bind(self._as_clauses(filter), filter)
        sort_keys = self._as_sort(sort)
        fkey = tuple(sorted({leaf_key(p) if isinstance(p, _LEAVES) else p for p in parts}, key=repr))
        key = (fkey, tuple(sort_keys))
        hit = self._results.get(key)
        if hit is not None:
            return hit
        mask = self._compiler.select(list(dict.fromkeys(parts)))
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
        if self._compiler.truth(leaf).any():
            return None
        ignoring_case = replace(leaf, op="=~")
        matches = np.flatnonzero(self._compiler.truth(ignoring_case))
        if not len(matches):
            return None
        column = self._series(leaf.column)
        examples = list(dict.fromkeys(str(column.iat[i]) for i in matches[:200]))[:3]
        shown = ", ".join(f'"{_short_text(e)}"' for e in examples)
        suggestion = format_filter([replace_node(p, leaf, ignoring_case) for p in parts])
        return Hint(f"{leaf.to_q()} matches no row; ignoring case, {ignoring_case.to_q()} matches "
                    f"{len(matches):,} ({shown}).", suggestion)

    def _positions(self, mask: np.ndarray | None) -> np.ndarray:
        if mask is None:
            return np.arange(self._n, dtype=np.int64)
        return np.flatnonzero(mask).astype(np.int64, copy=False)

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
        pos = self.select(filter, sort)
        start = page * page_size
        return int(len(pos)), self.df.iloc[pos[start : start + page_size]]

    def rows(self, filter: str | Sequence[Node] | None = None,
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
                        self._compiler.truth(leaf)  # the column's own function checks the value
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

    def _arrow(self, column: str) -> pa.ChunkedArray | pa.Array:
        return self._source.arrow(column)

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


def _sort_indices(arr: pa.ChunkedArray | pa.Array, order: str) -> pa.Array:
    """Arrow's stable sort, nulls and NaN last; per-key null placement on pyarrow ≥ 25."""
    try:
        return pc.sort_indices(arr, sort_keys=[("", order, "at_end")])
    except (TypeError, ValueError):  # older pyarrow: 2-tuples + a global null_placement
        return pc.sort_indices(arr, sort_keys=[("", order)], null_placement="at_end")


def _missing(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    na = _bool_numpy(pc.is_null(arr, nan_is_null=True) if pa.types.is_floating(arr.type) else pc.is_null(arr))
    return na
