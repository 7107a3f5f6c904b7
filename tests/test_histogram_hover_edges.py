"""A histogram bar's hover names its bin's edges with every digit they have: rounded to three
significant digits, the bin [10, 10.25) read "10–10.3" and overlapped the next one's "10.3–10.5",
and [1000, 1025) read "1e+3–1.03e+3"."""

from __future__ import annotations

import numpy as np
import pytest

from sde.histograms import histogram_of_arrays
from sde.web import figures


@pytest.mark.parametrize("edge,text", [
    (10.25, "10.25"),
    (0.30000000000000004, "0.3"),   # a round edge computed with a float's error
    (1025.0, "1,025"),
    (-1025.0, "-1,025"),
    (2_500_000.0, "2,500,000"),
    (0.000125, "0.000125"),
    (0.0, "0"),
    (-0.0, "0"),
    (1e-12, "1e-12"),
    (2.5e16, "2.5e+16"),
])
def test_edge_text_keeps_every_digit_of_a_round_edge(edge, text):
    assert figures.edge_text(edge) == text


@pytest.mark.parametrize("low,high,first,second", [
    (10.0, 20.0, ("10", "10.25"), ("10.25", "10.5")),
    (1000.0, 1999.0, ("1,000", "1,025"), ("1,025", "1,050")),
])
def test_neighbouring_bars_hover_with_edges_that_meet(low, high, first, second):
    values = np.random.default_rng(0).uniform(low, high, 500)
    h = histogram_of_arrays([values], bins=40)
    fig = figures.histogram_figure(h, ["x"], "X", "x", columns={"x": "x"})
    bar = fig.data[0]
    assert "%{customdata[3]}–%{customdata[4]}" in bar.hovertemplate
    assert tuple(bar.customdata[0][3:5]) == first and tuple(bar.customdata[1][3:5]) == second
    assert bar.customdata[0][2].startswith("{x} &gt;= ")  # the click's filter stays at index 2
    plain = figures.histogram_figure(h, ["x"], "X", "x")  # no filters: still the edges' texts
    assert tuple(plain.data[0].customdata[0][3:5]) == first and plain.data[0].customdata[0][2] == ""


@pytest.mark.parametrize("value", [-1e308, 1e308, 1.7e308])
def test_a_value_near_the_largest_float_draws_its_bar(value):
    # the bars' centres were (lo + hi) / 2: the sum overflowed to ±inf, and plotly drew nothing
    h = histogram_of_arrays([np.array([value])])
    fig = figures.histogram_figure(h, ["z"], "Z", "z")
    assert all(np.isfinite(fig.data[0].x)) and sum(fig.data[0].y) == 1
