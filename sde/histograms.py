"""Histograms of numeric columns, binned in SQL by DuckDB: only the bin counts and a few scalars
come back to Python, so a histogram of 20M utterances costs no sorted copy of its column.

Semantics (the Statistics page's, see :func:`histogram`): one set of bin edges shared by all the
series; finite values only (NaN, ±inf and missing values are left out); when a tail is far out,
the bulk is binned between exact quantiles and the outliers are folded into the edge bins; integer
data over a short range gets one bin per integer; otherwise the edges are round numbers
(:func:`nice_edges`), so that each bin is a readable filter. A value ``v`` is in bin ``i`` when
``edges[i] <= v < edges[i + 1]``, the last bin also holding ``edges[-1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from sde.filters import NUMBER, QueryError
from sde.filters.engine import arrow_column, rows_sql

__all__ = ["Histogram", "histogram", "histogram_of_arrays", "nice_edges", "nice_step"]

DEFAULT_BINS = 40
DEFAULT_CLIP_QUANTILE = 0.999
# Below this many values every one is drawn as it is: a quantile of a handful says nothing.
_MIN_VALUES_TO_CLIP = 100
# The widest integer range that still gets one bin per integer (a bar per word count up to 80).
_MAX_INTEGER_RANGE = 80
# Integer bins are centred on integers (edges at x.5): beyond 2**52 a float cannot hold a half.
_EXACT_HALVES = 2.0**52
# Bins are at least this share of the values' magnitude wide: narrower, the edges of 40 bins of
# values like nanosecond timestamps (~1.7e18, a float step of 256) would fall on the same floats.
_LEAST_RELATIVE_WIDTH = 2.0**-40


@dataclass
class Histogram:
    edges: np.ndarray        # len(bins) + 1
    counts: list[np.ndarray]  # one per series, len(bins) each
    overflow_at: float | None  # values above this were counted in the last bin
    underflow_at: float | None  # values below this were counted in the first bin
    total: list[int]         # finite values per series
    integer: bool            # bins are centred on integers


@dataclass(frozen=True)
class _Spread:
    """What the bins are chosen from: the finite values of all series together."""

    count: int
    vmin: float
    vmax: float
    all_integers: bool
    quantiles: tuple[float, float] | None  # the (1 - q, q) quantiles, as numpy.quantile's


def histogram(frame: pd.DataFrame, columns: Sequence[str], bins: int = DEFAULT_BINS,
              clip_quantile: float = DEFAULT_CLIP_QUANTILE) -> Histogram:
    """The histogram of ``columns`` of ``frame`` (one series each, shared edges), binned by DuckDB
    on the frame's own buffers (see the module doc for the rules). ``bins`` is the most bars of a
    non-integer histogram; the tails beyond the ``clip_quantile`` range are folded into the edge
    bins when they are far out (so one 3-hour file does not squash a histogram of 5-second
    utterances). Raises :class:`sde.filters.QueryError` when DuckDB cannot run the query (memory)."""
    return histogram_of_arrays([_numeric_arrow(frame[column]) for column in columns], bins, clip_quantile)


def histogram_of_arrays(series: Sequence[pa.Array | pa.ChunkedArray | np.ndarray | Sequence[float]],
                        bins: int = DEFAULT_BINS, clip_quantile: float = DEFAULT_CLIP_QUANTILE) -> Histogram:
    """:func:`histogram` of series of any lengths: Arrow arrays (read in place) or numbers."""
    tables = {f"s{i}": pa.table({"v": _as_arrow(values)}) for i, values in enumerate(series)}
    spread = _spread(tables, clip_quantile)
    if spread.count == 0:
        return Histogram(np.array([0.0, 1.0]), [np.zeros(1, dtype=np.int64) for _ in tables], None, None,
                         [0 for _ in tables], False)
    lo, hi = _clipped_range(spread)
    magnitude = max(abs(lo), abs(hi))
    integer = spread.all_integers and (hi - lo) <= _MAX_INTEGER_RANGE and magnitude < _EXACT_HALVES
    if integer:
        edges = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.0, 1.0)
    else:
        least = magnitude * _LEAST_RELATIVE_WIDTH
        if hi <= lo:
            lo, hi = lo - max(0.5, least), hi + max(0.5, least)
        elif hi - lo < least:
            grow = (least - (hi - lo)) / 2
            lo, hi = lo - grow, hi + grow
        edges = _edges_within_floats(lo, hi, bins, spread)
        lo, hi = min(lo, float(edges[0])), max(hi, float(edges[-1]))
    counts = _bin_counts(tables, edges)
    return Histogram(
        edges=edges,
        counts=counts,
        overflow_at=hi if hi < spread.vmax else None,
        underflow_at=lo if lo > spread.vmin else None,
        total=[int(c.sum()) for c in counts],  # every finite value is in a bin (outliers folded in)
        integer=integer,
    )


def _edges_within_floats(lo: float, hi: float, bins: int, spread: _Spread) -> np.ndarray:
    """:func:`nice_edges`, or QueryError (the page shows it in place of the figure) where the
    values are beyond what float bins can hold: near ±1.8e308, their range overflows; a range of
    subnormal numbers (1e-310) has no round step."""
    with np.errstate(all="ignore"):
        try:
            edges = nice_edges(lo, hi, bins)
        except (OverflowError, ValueError, ZeroDivisionError):
            edges = None
    if edges is None or len(edges) < 2 or not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0) \
            or not math.isfinite(float(edges[-1]) - float(edges[0])):
        raise QueryError(f"no histogram: the values, from {spread.vmin:g} to {spread.vmax:g}, are beyond what "
                         "bins of floating-point numbers can hold")
    return edges


def _numeric_arrow(s: pd.Series) -> pa.Array | pa.ChunkedArray:
    arr = arrow_column(s, NUMBER)
    # A column Arrow cannot hold as it is (numbers in an object column) is converted: a copy, but
    # the Statistics page only plots numeric dtypes, which arrow_column shares.
    return arr if arr is not None else _as_arrow(s.to_numpy(dtype="float64", na_value=np.nan))


def _as_arrow(values: object) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    return pa.array(np.asarray(values, dtype="float64"), from_pandas=True)


def _finite_values(tables: Sequence[str]) -> str:
    """SQL of every series' finite values as rows (s: the series' index, v: the value)."""
    return " UNION ALL ".join(
        f"SELECT {i} AS s, CAST(v AS DOUBLE) AS v FROM {name} WHERE isfinite(CAST(v AS DOUBLE))"
        for i, name in enumerate(tables))


def _spread(tables: dict[str, pa.Table], clip_quantile: float) -> _Spread:
    if not tables:
        return _Spread(0, 0.0, 0.0, False, None)
    finite = _finite_values(list(tables))
    count, vmin, vmax, all_integers = _fetch(
        f"WITH f AS ({finite}) SELECT count(*), min(v), max(v), bool_and(v = round(v)) FROM f", [], tables)[0]
    quantiles = None
    if count > _MIN_VALUES_TO_CLIP and 0 < clip_quantile < 1:
        quantiles = (_tail_quantile(tables, finite, count, 1 - clip_quantile),
                     _tail_quantile(tables, finite, count, clip_quantile))
    return _Spread(int(count), float(vmin or 0.0), float(vmax or 0.0), bool(all_integers), quantiles)


def _tail_quantile(tables: dict[str, pa.Table], finite: str, count: int, q: float) -> float:
    """The `q` quantile where a clip of the tails starts, at most the second largest value (for
    q > 0.5; at least the second smallest below): with fewer than 1,000 values the 0.999 quantile
    lies between the largest two, so one 3-hour file among 200 five-second ones pulled it most of
    the way out and squashed the histogram; capped, that file is folded into the last bar."""
    rank = (count - 1) * q
    if q > 0.5 and rank > count - 2:
        return _value_at(tables, finite, count, count - 2)
    if q < 0.5 and rank < 1:
        return _value_at(tables, finite, count, 1)
    return _quantile(tables, finite, count, q)


def _value_at(tables: dict[str, pa.Table], finite: str, count: int, rank: int) -> float:
    """The value of 0-based `rank` in ascending order, fetched from the nearer end."""
    if rank <= count - 1 - rank:
        sql = f"WITH f AS ({finite}) SELECT v FROM f ORDER BY v LIMIT 1 OFFSET {rank}"
    else:
        sql = f"WITH f AS ({finite}) SELECT v FROM f ORDER BY v DESC LIMIT 1 OFFSET {count - 1 - rank}"
    return float(_fetch(sql, [], tables)[0][0])


def _quantile(tables: dict[str, pa.Table], finite: str, count: int, q: float) -> float:
    """The `q` quantile of `count` values as numpy.quantile computes it (linear interpolation
    between the two nearest ranks, to the last bit), from just those two values: DuckDB finds
    them by a top-N from the nearer end, holding only the values beyond them (0.1 % of the column
    at q = 0.999) where quantile_cont would hold the whole column."""
    rank = (count - 1) * q  # numpy's "linear" rank, computed as numpy computes it
    lower = min(max(math.floor(rank), 0), count - 1)
    upper = min(lower + 1, count - 1)
    if lower < count - 1 - upper:
        sql = f"WITH f AS ({finite}) SELECT v FROM f ORDER BY v LIMIT {upper - lower + 1} OFFSET {lower}"
    else:
        sql = f"WITH f AS ({finite}) SELECT v FROM f ORDER BY v DESC LIMIT {upper - lower + 1} OFFSET {count - 1 - upper}"
    neighbours = sorted(float(v) for (v,) in _fetch(sql, [], tables))
    low, high = neighbours[0], neighbours[-1]
    weight = min(max(rank - lower, 0.0), 1.0)
    difference = high - low
    # numpy interpolates from the nearer neighbour: the same rounding, so the same number.
    return high - difference * (1 - weight) if weight >= 0.5 else low + difference * weight


def _fetch(sql: str, params: Sequence[object], tables: dict[str, pa.Table]) -> list[tuple]:
    return rows_sql(sql, params, tables)


def _clipped_range(spread: _Spread) -> tuple[float, float]:
    """The range the bins cover: min to max, or a quantile where that tail is far out."""
    lo, hi = spread.vmin, spread.vmax
    if spread.quantiles is None:
        return lo, hi
    qlo, qhi = spread.quantiles
    # Only clip when the tail really is far out: the bulk would otherwise get a handful of bars.
    if spread.vmax - qhi > 0.5 * (qhi - spread.vmin) and qhi > qlo:
        hi = qhi
    if qlo - spread.vmin > 0.5 * (spread.vmax - qlo) and qhi > qlo:
        lo = qlo
    return lo, hi


def _bin_counts(tables: dict[str, pa.Table], edges: np.ndarray) -> list[np.ndarray]:
    """Per series, the count of values in each bin, values beyond the edges counted in the edge bins.

    The bin is computed from the (uniform) step, then, for a value near an edge, moved by one where
    the rounded edges say so: a value exactly on an edge lands where the edge, not float division,
    puts it. Near: within what float rounding can move an edge or a division off the uniform grid
    (a millionth of a step, more when the values dwarf the step); a value farther away is binned
    right by the division alone (looking the edges up for every value doubled the query's time)."""
    n = len(edges) - 1
    step = (float(edges[-1]) - float(edges[0])) / n
    magnitude = max(abs(float(edges[0])), abs(float(edges[-1])))
    near = 1e-6 + 64 * np.finfo(np.float64).eps * magnitude / step
    sql = (f"WITH f AS ({_finite_values(list(tables))}), "
           "c AS (SELECT s, least(greatest(v, $1), $2) AS v FROM f), "
           "g AS (SELECT s, v, (v - $1) / $3 AS x FROM c), "
           "h AS (SELECT s, v, x, CAST(least(greatest(floor(x), 0), $4 - 1) AS BIGINT) AS i FROM g) "
           "SELECT s, CASE WHEN abs(x - round(x)) > $6 THEN i WHEN i > 0 AND v < $5[i + 1] THEN i - 1 "
           "WHEN i < $4 - 1 AND v >= $5[i + 2] THEN i + 1 ELSE i END AS bin, count(*) AS n "
           "FROM h GROUP BY ALL")
    params = [float(edges[0]), float(edges[-1]), step, n, [float(e) for e in edges], near]
    counts = [np.zeros(n, dtype=np.int64) for _ in tables]
    for series, bin_index, count in _fetch(sql, params, tables):
        counts[series][bin_index] += count
    return counts


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is at least `raw` (> 0)."""
    exponent = math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = m * 10.0 ** exponent
        if step >= raw * (1 - 1e-9):
            return step
    return 10.0 ** (exponent + 1)  # pragma: no cover - 10 × 10^k always qualifies


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step)) + 1)


def nice_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """At most `bins` equal bins of a round width covering [lo, hi], starting at a multiple of it.
    The edges are rounded to the step's decimals, so that each is the number a filter writes."""
    step = nice_step((hi - lo) / max(1, bins))
    decimals = _decimals(step)
    first = math.floor(lo / step) * step
    count = max(1, math.ceil((hi - first) / step - 1e-9))
    edges = np.round(first + step * np.arange(count + 1), decimals)
    # Rounding may leave an extreme value just outside (0.30000000000000004 beyond 0.3): one more
    # bin keeps every value inside the edges, where the bin filters select it.
    if edges[0] > lo:
        edges = np.concatenate([[round(float(edges[0]) - step, decimals)], edges])
    if edges[-1] < hi:
        edges = np.concatenate([edges, [round(float(edges[-1]) + step, decimals)]])
    return edges
