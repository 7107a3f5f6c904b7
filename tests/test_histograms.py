"""Histograms binned in SQL by DuckDB (sde.histograms): the same bins as numpy's reference of the
rules, only counts coming back to Python."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sde.filters import QueryError
from sde.histograms import Histogram, _finite_values, _quantile, histogram, histogram_of_arrays, nice_edges

RNG = np.random.default_rng(12)


def numpy_reference(series: list[np.ndarray], bins: int = 40, clip_quantile: float = 0.999) -> Histogram:
    """The rules written with numpy over every value (what the Statistics page did before DuckDB)."""
    finite = [s[np.isfinite(s)] for s in (np.asarray(s, dtype="float64") for s in series)]
    allv = np.concatenate(finite) if finite else np.empty(0)
    if allv.size == 0:
        return Histogram(np.array([0.0, 1.0]), [np.zeros(1, dtype=np.int64) for _ in finite], None, None,
                         [0] * len(finite), False)
    vmin, vmax = float(allv.min()), float(allv.max())
    lo, hi = vmin, vmax
    if allv.size > 100:
        qlo, qhi = np.quantile(allv, [1 - clip_quantile, clip_quantile])
        ordered, n = np.sort(allv), allv.size  # a tail's clip starts inside the two extremes
        qhi = ordered[n - 2] if (n - 1) * clip_quantile > n - 2 else qhi
        qlo = ordered[1] if (n - 1) * (1 - clip_quantile) < 1 else qlo
        if vmax - qhi > 0.5 * (qhi - vmin) and qhi > qlo:
            hi = float(qhi)
        if qlo - vmin > 0.5 * (vmax - qlo) and qhi > qlo:
            lo = float(qlo)
    integer = bool(np.all(allv == np.round(allv))) and (hi - lo) <= 80
    if integer:
        edges = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.0, 1.0)
    else:
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = nice_edges(lo, hi, bins)
        lo, hi = min(lo, float(edges[0])), max(hi, float(edges[-1]))
    counts = [np.histogram(np.clip(s, edges[0], edges[-1]), bins=edges)[0] for s in finite]
    return Histogram(edges, counts, hi if hi < vmax else None, lo if lo > vmin else None,
                     [int(s.size) for s in finite], integer)


def assert_same(got: Histogram, want: Histogram) -> None:
    assert got.integer == want.integer
    assert np.allclose(got.edges, want.edges, rtol=0, atol=1e-12)
    assert [c.tolist() for c in got.counts] == [c.tolist() for c in want.counts]
    assert got.total == want.total
    for ours, theirs in ((got.overflow_at, want.overflow_at), (got.underflow_at, want.underflow_at)):
        assert (ours is None) == (theirs is None)
        assert ours is None or ours == pytest.approx(theirs, rel=1e-12)


def _as_floats(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype="float64", na_value=np.nan)


FAR_OUTLIER = np.concatenate([RNG.normal(5, 1, 3000), [3600.0]])
CASES = [
    ("plain floats", {"x": RNG.uniform(0, 30, 3000)},
     lambda h: not h.integer and h.overflow_at is None and h.underflow_at is None),
    ("integers get one bin per integer", {"x": RNG.integers(0, 40, 800)},
     lambda h: h.integer and np.allclose(np.diff(h.edges), 1.0)),
    ("integers over a wide range get round bins", {"x": RNG.integers(0, 5000, 800)}, lambda h: not h.integer),
    ("a far outlier is folded into the last bin", {"x": FAR_OUTLIER},
     lambda h: h.overflow_at is not None and h.edges[-1] < 100 and h.counts[0][-1] >= 1),
    ("a far low outlier is folded into the first bin", {"x": np.concatenate([RNG.normal(-3, 2, 3000), [-500.0]])},
     lambda h: h.underflow_at is not None and h.edges[0] > -100),
    # under 1,000 values the 0.999 quantile lies between the largest two: the outlier pulled it out
    ("one 3-hour file among 200 short ones is folded in", {"x": np.concatenate([RNG.uniform(3, 7, 199), [10800.0]])},
     lambda h: h.overflow_at is not None and h.edges[-1] <= 8 and h.counts[0][-1] >= 1),
    ("a low outlier among 500 is folded in", {"x": np.concatenate([RNG.uniform(3, 7, 499), [-9000.0]])},
     lambda h: h.underflow_at is not None and h.edges[0] >= 2),
    ("±1e300 among 1,000 values in [0, 1)", {"x": np.concatenate([RNG.uniform(0, 1, 998), [1e300, -1e300]])},
     lambda h: h.edges[0] >= -1 and h.edges[-1] <= 2 and max(h.counts[0]) < 200),
    ("a hundred values are never clipped", {"x": np.concatenate([RNG.normal(5, 1, 99), [3600.0]])},
     lambda h: h.overflow_at is None and h.edges[-1] >= 3600),
    ("NaN and inf are left out", {"x": np.concatenate([RNG.normal(5, 1, 500), [np.nan, np.inf, -np.inf]])},
     lambda h: h.total == [500]),
    ("an empty column", {"x": np.array([], dtype="float64")}, lambda h: h.total == [0]),
    ("an all-NaN column", {"x": np.full(5, np.nan)}, lambda h: h.total == [0] and len(h.counts[0]) == 1),
    ("two series share their edges", {"a": RNG.uniform(0, 10, 1000), "b": RNG.uniform(5, 30, 1000)},
     lambda h: len(h.counts) == 2 and h.edges[0] <= 0 and h.edges[-1] >= 30),
    ("two series, one all missing", {"a": RNG.uniform(0, 10, 300), "b": np.full(300, np.nan)},
     lambda h: h.total == [300, 0]),
    ("nullable Int64 with missing values", {"x": pd.array([1, None, 3, 3, None, 7], dtype="Int64")},
     lambda h: h.integer and h.total == [4]),
    ("nullable Float64 with missing values", {"x": pd.array([0.5, None, 2.25, 1.0], dtype="Float64")},
     lambda h: h.total == [3]),
    ("pyarrow doubles with nulls", {"x": pd.array([0.5, None, 2.25, 9.0], dtype="double[pyarrow]")},
     lambda h: h.total == [3]),
    ("small integer and float dtypes", {"u8": np.arange(200, dtype=np.uint8), "f32": np.linspace(0, 50, 200,
                                                                                                 dtype=np.float32)},
     lambda h: h.total == [200, 200]),
    ("a column of one value", {"x": np.full(50, 2.5)}, lambda h: h.total == [50] and h.counts[0].sum() == 50),
    ("a column of one integer", {"x": np.full(50, 7)}, lambda h: h.integer and h.counts[0].tolist() == [50]),
    ("values on the edges", {"x": np.round(RNG.normal(5, 1, 5000), 2)}, lambda h: h.total == [5000]),
    ("edges that float arithmetic blurs", {"x": np.array([0.1, 0.2, 0.30000000000000004, np.nan])},
     lambda h: h.total == [3]),
    ("large magnitudes", {"x": 1e12 + np.round(RNG.uniform(0, 1, 2000), 3)}, lambda h: h.total == [2000]),
    ("a hair either side of the edges", {"x": np.concatenate([np.arange(0, 20, 0.5) + d for d in
                                                               (-1e-9, 0.0, 1e-9, -1e-4, 1e-4)])},
     lambda h: h.total == [200]),
    ("large negative magnitudes", {"x": -3e9 - np.round(RNG.uniform(0, 5, 2000), 2)}, lambda h: h.total == [2000]),
]


@pytest.mark.parametrize("columns, shows", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_duckdb_bins_like_numpy(columns, shows):
    frame = pd.DataFrame(columns)
    got = histogram(frame, list(columns))
    assert_same(got, numpy_reference([_as_floats(frame[c]) for c in columns]))
    assert shows(got)


@pytest.mark.parametrize("size", [1, 2, 1001, 4321])
@pytest.mark.parametrize("q", [0.999, 0.001, 0.5, 0.3])
def test_quantiles_are_numpys_to_the_last_bit(size, q):
    values = np.concatenate([RNG.normal(0, 1, size - 1), [1e6]])
    tables = {"s0": pa.table({"v": pa.array(values)})}
    assert _quantile(tables, _finite_values(list(tables)), size, q) == float(np.quantile(values, q))


def test_the_bins_end_at_the_round_edge_above_the_quantile():
    values = np.concatenate([RNG.normal(0, 1, 4000), [1e6]])
    got = histogram_of_arrays([values])
    assert got.overflow_at == got.edges[-1] == nice_edges(values.min(), np.quantile(values, 0.999), 40)[-1]


def test_series_of_different_lengths_share_edges():
    got = histogram_of_arrays([np.array([1, 2, 2, 3]), pa.array([3.0, 3.0, None, 4.0])])
    assert got.integer and got.edges.tolist() == [0.5, 1.5, 2.5, 3.5, 4.5]
    assert [c.tolist() for c in got.counts] == [[1, 2, 1, 0], [0, 0, 2, 1]]


def test_no_histogram_of_no_series():
    got = histogram_of_arrays([])
    assert got.counts == [] and got.total == []


def test_a_million_values_are_binned_without_a_copy_in_python():
    frame = pd.DataFrame({"duration": RNG.exponential(5, 1_000_000)})
    histogram(frame, ["duration"])  # the database warmed up
    tracemalloc.start()
    try:
        got = histogram(frame, ["duration"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.total == [1_000_000]
    assert peak < 1_000_000, f"{peak:,} bytes traced: a copy of the 8 MB column?"


def test_text_is_no_histogram():
    with pytest.raises(QueryError, match="could not run"):
        histogram(pd.DataFrame({"text": ["a", "b"]}), ["text"])


@pytest.mark.parametrize("values", [
    np.full(5, 1e16),                                  # a 64-bit id on every line
    np.full(5, 5e15),
    np.full(50, 1.7e18),                               # a nanosecond timestamp on every line
    1.7e18 + np.arange(50) * 1e9,                      # timestamps a second apart
    np.array([1.2345678901234568e29]),                 # one huge integer
    np.array([1e16, 1e16 + 2]),
    np.full(3, -1e16),
    np.full(3, 1e308),
    np.array([1e-300, 3e-300]),
], ids=["1e16 everywhere", "5e15 everywhere", "ns timestamps everywhere", "ns timestamps", "one 1.2e29",
        "two floats apart", "-1e16 everywhere", "1e308 everywhere", "tiny values"])
def test_values_of_any_magnitude_get_increasing_edges_and_every_value_a_bin(values):
    # 1e16 on every line gave no edges at all (IndexError) and 5e15 a step of 0 (ZeroDivisionError):
    # the integer bins' halves and the round bins' steps were below what floats of that size hold
    got = histogram_of_arrays([values])
    assert np.all(np.isfinite(got.edges)) and np.all(np.diff(got.edges) > 0)
    assert got.edges[0] <= values.min() and got.edges[-1] >= values.max()
    assert got.total == [len(values)] and int(got.counts[0].sum()) == len(values)


@pytest.mark.parametrize("values", [
    np.array([1.7976931348623157e308] * 2),
    np.array([-1.7976931348623157e308, 1.7976931348623157e308]),
    np.array([0.0, 1e-310]),
], ids=["the largest float", "both largest floats", "a subnormal range"])
def test_values_no_float_bins_can_hold_are_a_message(values):
    with pytest.raises(QueryError, match="no histogram: the values, from .* are beyond what bins"):
        histogram_of_arrays([values])
