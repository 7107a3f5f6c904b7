"""Compiling a bound filter tree to a row mask over a pandas DataFrame (numpy / pyarrow compute,
vectorised; long text scans split over threads), with SQL's three-valued logic for missing values.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.filters.bind import BOOL, NUMBER, TEXT, VIRTUAL, _expr_kind, bind, column_kind, iequal_pattern, word_pattern
from sde.filters.language import COMPARISONS, QueryError
from sde.filters.tree import LEAVES, And, Clause, Column, Compare, Expr, Negate, Node, Not, Number, Or, conjuncts


class Cache(Protocol):
    def get(self, key: Any) -> Any: ...
    def get_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any: ...


class _DictCache:
    """An unbounded cache for one short-lived compilation."""

    def __init__(self) -> None:
        self._d: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        return self._d.get(key)

    def get_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._d:
            self._d[key] = compute()
        return self._d[key]


def _frozen(a: np.ndarray) -> np.ndarray:
    # Cached arrays are handed to callers; read-only so nobody can corrupt a cache.
    a.flags.writeable = False
    return a


class FrameColumns:
    """A DataFrame's columns in the forms the mask compiler reads (zero-copy where the dtype
    allows), optionally kept in a shared ``cache``. ``virtual`` adds filter-only columns:
    ``{name: fn(op, value) -> boolean mask}`` (raising QueryError for values it does not take)."""

    def __init__(self, df: pd.DataFrame, virtual: Mapping[str, Callable[[str, str], Any]] | None = None,
                 cache: Cache | None = None) -> None:
        self.df = df
        self.n = len(df)
        self.labels = {str(c): c for c in df.columns}
        self.kinds: dict[str, str] = {str(c): column_kind(df[c].dtype) for c in df.columns}
        self.virtual = dict(virtual or {})
        for name in self.virtual:
            self.kinds.setdefault(name, VIRTUAL)
        self.cache: Cache = cache if cache is not None else _DictCache()

    def series(self, name: str) -> pd.Series:
        return self.df[self.labels[name]]

    def numbers(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Values (the column's own numpy dtype where it has one) and the missing mask (None: no
        missing values apart from NaN, which the caller treats as missing)."""
        def compute() -> tuple[np.ndarray, np.ndarray | None]:
            s = self.series(name)
            if isinstance(s.dtype, np.dtype):
                return s.to_numpy(), None  # zero-copy; NaN handled by IEEE compares
            na = s.isna().to_numpy()
            return s.to_numpy(dtype="float64", na_value=np.nan), (na if na.any() else None)
        return self.cache.get_or_compute(("num", name), compute)

    def floats(self, name: str) -> np.ndarray:
        """float64 values with NaN where missing (what arithmetic and column comparisons read)."""
        def compute() -> np.ndarray:
            vals, na = self.numbers(name)
            if vals.dtype == np.float64 and na is None:
                return vals
            out = vals.astype(np.float64)
            if na is not None:
                out[na] = np.nan
            return _frozen(out)
        return self.cache.get_or_compute(("float", name), compute)

    def booleans(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        def compute() -> tuple[np.ndarray, np.ndarray | None]:
            s = self.series(name)
            if isinstance(s.dtype, np.dtype):
                return s.to_numpy(), None
            na = s.isna().to_numpy()
            return s.to_numpy(dtype=bool, na_value=False), (na if na.any() else None)
        return self.cache.get_or_compute(("bool", name), compute)

    def arrow(self, name: str) -> pa.ChunkedArray | pa.Array:
        """Arrow view of the column (zero-copy for Arrow-backed and numpy numeric columns)."""
        return self.cache.get_or_compute(("arrow", name), lambda: to_arrow(self.series(name), self.kinds[name]))

    def missing(self, name: str) -> np.ndarray | None:
        """Rows where the column is missing (None when there are none)."""
        def compute() -> np.ndarray | bool:
            kind = self.kinds[name]
            if kind == NUMBER:
                vals, na = self.numbers(name)
                m = np.isnan(vals) if vals.dtype.kind == "f" else np.zeros(self.n, bool)
                if na is not None:
                    m |= na
            elif kind == BOOL:
                m = self.booleans(name)[1]
                m = np.zeros(self.n, bool) if m is None else m
            elif kind == VIRTUAL:
                return False
            else:
                m = np.asarray(self.series(name).isna(), dtype=bool)
            return _frozen(m) if m.any() else False
        got = self.cache.get_or_compute(("missing", name), compute)
        return None if got is False else got

    def virtual_mask(self, name: str, op: str, value: str) -> np.ndarray:
        m = np.asarray(self.virtual[name](op, value), dtype=bool)
        if m.shape != (self.n,):
            raise QueryError(f"{{{name}}} gave {m.shape} values for {self.n} rows.")
        return m


def to_arrow(s: pd.Series, kind: str) -> pa.ChunkedArray | pa.Array:
    """Arrow view of a column: zero-copy for Arrow-backed and numpy numeric columns."""
    arrow_method = getattr(s.array, "__arrow_array__", None)
    if arrow_method is not None and kind in (TEXT, NUMBER, BOOL) and not isinstance(s.dtype, pd.CategoricalDtype):
        try:
            arr = arrow_method()
            if kind != TEXT or pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
                return arr
        except (TypeError, pa.ArrowException):
            pass
    if kind == TEXT:
        # object/categorical: str() of each value, missing kept missing.
        return s.astype("string[pyarrow]").array.__arrow_array__()
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iufb":
        return pa.array(s.to_numpy())  # zero-copy for numeric; NaN stays NaN (sorts last)
    return pa.array(s, from_pandas=True)


def bool_numpy(res: pa.ChunkedArray | pa.Array, fill: bool = False) -> np.ndarray:
    """An Arrow boolean result as numpy, nulls as ``fill``."""
    res = res.fill_null(fill)
    if isinstance(res, pa.ChunkedArray):
        if res.num_chunks == 0:
            return np.zeros(0, bool)
        res = res.combine_chunks() if res.num_chunks > 1 else res.chunk(0)
    return res.to_numpy(zero_copy_only=False)


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
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sde-filter")
    step = -(-n // workers)
    parts = [arr.slice(start, step) for start in range(0, n, step)]
    return np.concatenate(list(_POOL.map(fn, parts)))


_NUMPY_OPS: dict[str, Callable[..., Any]] = {
    "=": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
    ">": np.greater, ">=": np.greater_equal,
}
_ARROW_OPS: dict[str, Callable[..., Any]] = {
    "=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
    ">": pc.greater, ">=": pc.greater_equal,
}
_CHEAP_TEXT_OPS = ("=", "!=", "in", "is null", "is not null")


class MaskCompiler:
    """Evaluates a bound tree to a boolean row mask, with SQL's three-valued logic.

    Each clause's mask is kept in ``cache`` (keyed by the bound clause), so refining a filter
    reuses earlier work. A row is in ``truth(node)`` when the node is true for it and in
    ``falsity(node)`` when it is false; neither when it is unknown (a missing value).
    """

    def __init__(self, columns: FrameColumns, cache: Cache | None = None) -> None:
        self.columns = columns
        self.n = columns.n
        self.cache: Cache = cache if cache is not None else _DictCache()

    # -- conditions ----------------------------------------------------------------------------

    def select(self, parts: Sequence[Node]) -> np.ndarray | None:
        """Mask of the rows where every part is true, or None for "all rows".

        Cheap clauses run first; an expensive text scan then runs on the few surviving rows only.
        """
        if not parts:
            return None
        if len(parts) == 1:
            return self.truth(parts[0])
        ordered = sorted(parts, key=lambda p: (self.expensive(p), repr(p)))
        mask: np.ndarray | None = None
        for part in ordered:
            if isinstance(part, LEAVES) and mask is not None and self.expensive(part):
                cached = self.cache.get(leaf_key(part))
                if cached is None:
                    idx = np.flatnonzero(mask)
                    if len(idx) * 3 < self.n:
                        # Subset evaluation is not cached: it depends on the other parts.
                        mask[idx[~self._leaf(part, idx)]] = False
                        continue
                m = self.truth(part) if cached is None else cached
            else:
                m = self.truth(part)
            mask = m.copy() if mask is None else np.logical_and(mask, m, out=mask)
        return mask

    def expensive(self, node: Node) -> bool:
        """Text scans (~100 ms per million rows) as opposed to number tests (~1 ms)."""
        if isinstance(node, Clause):
            return self.columns.kinds.get(node.column) == TEXT and node.op not in _CHEAP_TEXT_OPS
        if isinstance(node, Compare):
            return False
        return True

    def truth(self, node: Node) -> np.ndarray:
        if isinstance(node, LEAVES):
            return self.cache.get_or_compute(leaf_key(node), lambda: _frozen(self._leaf(node, None)))
        if isinstance(node, Not):
            return self.falsity(node.item)
        if isinstance(node, And):
            return self._reduce(np.logical_and, [self.truth(i) for i in node.items])
        if isinstance(node, Or):
            return self._reduce(np.logical_or, [self.truth(i) for i in node.items])
        raise QueryError(f"Expected filter clauses, got {type(node).__name__}.")

    def falsity(self, node: Node) -> np.ndarray:
        if isinstance(node, LEAVES):
            true = self.truth(node)
            known = self._known(node)
            return ~true if known is None else known & ~true
        if isinstance(node, Not):
            return self.truth(node.item)
        if isinstance(node, And):  # false when any part is false
            return self._reduce(np.logical_or, [self.falsity(i) for i in node.items])
        if isinstance(node, Or):
            return self._reduce(np.logical_and, [self.falsity(i) for i in node.items])
        raise QueryError(f"Expected filter clauses, got {type(node).__name__}.")

    @staticmethod
    def _reduce(op: Callable[..., np.ndarray], masks: list[np.ndarray]) -> np.ndarray:
        out = masks[0].copy()
        for m in masks[1:]:
            op(out, m, out=out)
        return out

    def _known(self, node: Clause | Compare) -> np.ndarray | None:
        """Rows where the clause is true or false (not unknown); None for all rows."""
        if isinstance(node, Clause):
            if node.op in ("is null", "is not null"):
                return None
            missing = self.columns.missing(node.column)
            return None if missing is None else ~missing
        kind = _expr_kind(node.left, self.columns.kinds)
        if kind == NUMBER:
            left, right = self._values(node.left, None), self._values(node.right, None)
            return ~(np.isnan(left) | np.isnan(right))
        known = None
        for side in (node.left, node.right):
            missing = self.columns.missing(side.name)  # type: ignore[union-attr]
            if missing is not None:
                known = ~missing if known is None else known & ~missing
        return known

    # -- clauses --------------------------------------------------------------------------------

    def _leaf(self, node: Clause | Compare, idx: np.ndarray | None) -> np.ndarray:
        """Mask of the rows (all, or the rows ``idx``) where one clause is true."""
        if isinstance(node, Compare):
            return self._compare(node, idx)
        cols = self.columns
        column, op, value = node.column, node.op, node.value
        kind = cols.kinds[column]
        if op in ("is null", "is not null"):
            missing = cols.missing(column)
            m = np.zeros(self.n, bool) if missing is None else missing
            m = m if idx is None else m[idx]
            return m.copy() if op == "is null" else ~m
        if kind == VIRTUAL:
            m = cols.virtual_mask(column, op, value)  # type: ignore[arg-type]
            return m if idx is None else m[idx]
        if kind in (NUMBER, BOOL):
            vals, na = cols.numbers(column) if kind == NUMBER else cols.booleans(column)
            if idx is not None:
                vals = vals[idx]
                na = None if na is None else na[idx]
            with np.errstate(invalid="ignore"):
                if op == "in":
                    m = np.isin(vals, np.asarray(value, dtype=vals.dtype if kind == BOOL else np.float64))
                else:
                    m = _NUMPY_OPS[op](vals, value)
            if op == "!=" and vals.dtype.kind == "f":
                m &= ~np.isnan(vals)  # NaN != x is True in IEEE; a missing value must not match
            if na is not None:
                m &= ~na
            return m
        arr = cols.arrow(column)
        if idx is not None:
            arr = arr.take(pa.array(idx))
        if op in COMPARISONS:
            return bool_numpy(_ARROW_OPS[op](arr, pa.scalar(value, type=arr.type)))
        if op == "in":
            return bool_numpy(pc.is_in(arr, value_set=pa.array(list(value), type=arr.type)))  # type: ignore[arg-type]
        return _parallel(_text_scan(op, value), arr)  # type: ignore[arg-type]

    def _compare(self, node: Compare, idx: np.ndarray | None) -> np.ndarray:
        kinds = self.columns.kinds
        kind = _expr_kind(node.left, kinds)
        if kind == NUMBER:
            left, right = self._values(node.left, idx), self._values(node.right, idx)
            with np.errstate(invalid="ignore"):
                m = np.asarray(_NUMPY_OPS[node.op](left, right))
            if node.op == "!=":
                m = m & ~(np.isnan(left) | np.isnan(right))
            return np.broadcast_to(m, (self.n if idx is None else len(idx),)).copy()
        a, b = node.left.name, node.right.name  # type: ignore[union-attr]
        if kind == BOOL:
            (x, nx), (y, ny) = self.columns.booleans(a), self.columns.booleans(b)
            if idx is not None:
                x, y = x[idx], y[idx]
                nx = None if nx is None else nx[idx]
                ny = None if ny is None else ny[idx]
            m = (x == y) if node.op == "=" else (x != y)
            for na in (nx, ny):
                if na is not None:
                    m &= ~na
            return m
        x, y = self.columns.arrow(a), self.columns.arrow(b)
        if idx is not None:
            take = pa.array(idx)
            x, y = x.take(take), y.take(take)
        if x.type != y.type:
            y = y.cast(x.type)
        return bool_numpy(_ARROW_OPS[node.op](x, y))

    def _values(self, e: Expr, idx: np.ndarray | None) -> np.ndarray | float:
        """float64 values of a number expression, NaN where missing (x / 0 included)."""
        if isinstance(e, Number):
            return e.value
        if isinstance(e, Column):
            vals = self.columns.floats(e.name)
            return vals if idx is None else vals[idx]
        if isinstance(e, Negate):
            return -np.asarray(self._values(e.operand, idx))
        left = np.asarray(self._values(e.left, idx), dtype=np.float64)
        right = np.asarray(self._values(e.right, idx), dtype=np.float64)
        with np.errstate(all="ignore"):
            if e.op == "+":
                out = left + right
            elif e.op == "-":
                out = left - right
            elif e.op == "*":
                out = left * right
            else:
                out = np.where(right == 0, np.nan, left / right)
        return out


def _text_scan(op: str, value: str) -> Callable[[Any], np.ndarray]:
    if op == "contains":
        return lambda part: bool_numpy(pc.match_substring(part, pattern=value, ignore_case=True))
    if op == "has":
        # A whole token: "cat" matches "a cat sat", not "category".
        pattern = word_pattern(value)
        return lambda part: bool_numpy(pc.match_substring_regex(part, pattern=pattern))
    if op == "matches":
        return lambda part: bool_numpy(pc.match_substring_regex(part, pattern=value))
    if op == "=~":
        pattern = iequal_pattern(value)
        return lambda part: bool_numpy(pc.match_substring_regex(part, pattern=pattern, ignore_case=True))
    raise QueryError(f'Unknown operator "{op}".')


def leaf_key(node: Clause | Compare) -> Any:
    """The cache key of a bound clause: equal keys, equal masks."""
    if isinstance(node, Clause) and node.op == "contains" and isinstance(node.value, str) and node.value.isascii():
        # Case-insensitive test: "Fox" and "fox" share one mask. (ASCII only: Unicode lower() can
        # change a pattern's meaning, e.g. "İ" → "i̇".)
        return ("contains", node.column, node.value.lower())
    return node


def to_mask(tree: Node | Sequence[Node] | None, df: pd.DataFrame,
            virtual: Mapping[str, Callable[[str, str], Any]] | None = None) -> np.ndarray:
    """Boolean mask of the rows of ``df`` where the filter is true (all rows for no filter)."""
    columns = FrameColumns(df, virtual)
    parts = list(tree) if isinstance(tree, (list, tuple)) else conjuncts(tree)
    mask = MaskCompiler(columns).select([bind(p, columns.kinds) for p in parts])
    if mask is None:
        return np.ones(len(df), bool)
    return mask if mask.flags.writeable else mask.copy()
