"""Property tests (hypothesis) that complement tests/test_query.py and tests/test_metrics.py.

Already covered there: parse_filter raises only QueryError on arbitrary text; the engine raises
only QueryError; identical strings have no errors; rates are finite, non-negative and corpus
rates are sums. Added here:

* filter round trip: parse_filter(format_filter(clauses)) == clauses (text values; numbers come
  back as their text and convert to the same float);
* sort round trip, and parse_sort raising only QueryError;
* alignment counts from both sides: hits + sub + ins = hypothesis words; errors ≤ max(N, M);
  corpus_rates over a mask equals corpus_rates of the selected utterances;
* WER is invariant under whitespace changes (words = whitespace split);
* CSV export: however hostile the cells, a spreadsheet reading the CSV (CR, LF and CRLF end rows
  outside quotes) never sees a cell starting with = + - @ (unless it is a plain number);
* utterance ids from URLs: any text is a valid position or ApiError(404), never another error;
* normalisation is idempotent.
"""

from __future__ import annotations

import csv
import io
import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sde.metrics import align_corpus, corpus_rates, utterance_rates
from sde.query import Clause, QueryError, format_filter, parse_filter, parse_sort

OPS = ("=", "!=", "<", "<=", ">", ">=", "contains")

# Column names as users write them inside braces: anything without "}" (and not blank).
column_names = st.text(min_size=1, max_size=12).map(str.strip).filter(lambda s: s and "}" not in s)
text_values = st.text(max_size=20)
number_values = st.floats(allow_nan=False, allow_infinity=False, width=64) | st.integers(-10**12, 10**12).map(float)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(column_names, st.sampled_from(OPS), text_values), min_size=1, max_size=4))
def test_filter_round_trip_text_values(items):
    clauses = [Clause(c, op, v) for c, op, v in items]
    assert parse_filter(format_filter(clauses)) == clauses


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(column_names, st.sampled_from(OPS[:6]), number_values), min_size=1, max_size=4))
def test_filter_round_trip_numbers(items):
    clauses = [Clause(c, op, v) for c, op, v in items]
    parsed = parse_filter(format_filter(clauses))
    assert [(c.column, c.op) for c in parsed] == [(c.column, c.op) for c in clauses]
    for p, c in zip(parsed, clauses):
        assert float(p.value) == c.value


sort_names = st.text(alphabet=st.characters(blacklist_characters=",{}+-", blacklist_categories=("Cs",)),
                     min_size=1, max_size=10).map(str.strip).filter(bool)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(sort_names, st.booleans()), min_size=1, max_size=4))
def test_sort_round_trip(keys):
    # A repeated column counts once, the first key on it wins (a later one cannot change the order).
    first: list = []
    for name, desc in keys:
        if all(name != seen for seen, _ in first):
            first.append((name, desc))
    text = ",".join(("-" if desc else "") + name for name, desc in keys)
    assert parse_sort(text) == first
    braced = ",".join(("-" if desc else "+") + "{" + name + "}" for name, desc in keys)
    assert parse_sort(braced) == first


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30) | st.text(alphabet=st.sampled_from(list("{}-+, abw")), max_size=20))
def test_parse_sort_only_raises_query_error(text):
    try:
        out = parse_sort(text)
    except QueryError as e:
        assert str(e)
    else:
        assert all(isinstance(c, str) and c and isinstance(d, bool) for c, d in out)


# ---------------------------------------------------------------------------------------- metrics

words = st.sampled_from(["a", "b", "c", "the", "ä", "日本", "x'y", "1"])
texts = st.lists(words, max_size=12).map(" ".join)
pairs = st.lists(st.tuples(texts, texts), min_size=1, max_size=10)


@settings(max_examples=150, deadline=None)
@given(pairs)
def test_alignment_counts_balance_on_both_sides(items):
    refs = [r for r, _ in items]
    hyps = [h for _, h in items]
    c = align_corpus(refs, hyps, workers=1).counts
    hyp_words = np.array([len(h.split()) for h in hyps])
    ref_words = np.array([len(r.split()) for r in refs])
    assert (c["num_words"] == ref_words).all()
    assert (c["hits"] + c["sub"] + c["ins"] == hyp_words).all()
    errors = c["sub"] + c["del"] + c["ins"]
    assert (errors <= np.maximum(ref_words, hyp_words)).all()
    assert (errors >= np.abs(ref_words - hyp_words)).all()
    rates = utterance_rates(c)
    assert (rates["wer"] >= 0).all() and (rates["cer"] >= 0).all()
    assert ((rates["wer"] == 0) == (errors == 0)).all()


@settings(max_examples=100, deadline=None)
@given(pairs, st.data())
def test_corpus_rates_over_a_mask_equal_the_subset(items, data):
    refs = [r for r, _ in items]
    hyps = [h for _, h in items]
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(items), max_size=len(items))), dtype=bool)
    full = align_corpus(refs, hyps, workers=1).counts
    sub_refs = [r for r, m in zip(refs, mask) if m]
    sub_hyps = [h for h, m in zip(hyps, mask) if m]
    masked = corpus_rates(full, mask)
    positions = corpus_rates(full, np.flatnonzero(mask))
    if sub_refs:
        direct = corpus_rates(align_corpus(sub_refs, sub_hyps, workers=1).counts)
        assert masked == pytest.approx(direct) and positions == pytest.approx(direct)
    total = sum(full["num_words"][mask])
    if total:
        e = (full["sub"] + full["del"] + full["ins"])[mask].sum()
        assert masked["wer"] == pytest.approx(100 * e / total)


@settings(max_examples=100, deadline=None)
@given(st.lists(words, min_size=1, max_size=10), st.lists(words, max_size=10),
       st.sampled_from([" ", "  ", "\t", " \n "]))
def test_word_rates_ignore_whitespace_layout(ref, hyp, sep):
    a = align_corpus([" ".join(ref)], [" ".join(hyp)], workers=1).counts
    b = align_corpus([sep + sep.join(ref) + sep], [sep.join(hyp)], workers=1).counts
    for key in ("sub", "del", "ins", "hits", "num_words"):
        assert int(a[key][0]) == int(b[key][0]), key


# ---------------------------------------------------------------------------------------- CSV

FORMULA = ("=", "+", "-", "@")
cells = st.text(alphabet=st.sampled_from(list("=+-@\t\r\n\"',; ab1.")), max_size=12) | st.text(max_size=8)


def spreadsheet_rows(text: str) -> list[list[str]]:
    # csv with newline="" treats a bare CR, LF or CRLF outside quotes as a row end, as spreadsheets do.
    # A NUL is dropped first: Python 3.10's csv refuses a line with one ("line contains NUL").
    return list(csv.reader(io.StringIO(text.replace("\x00", ""), newline="")))


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(cells, cells), min_size=1, max_size=6))
def test_csv_cells_never_start_a_formula(items):
    from sde.web.api.respond import csv_chunks

    df = pd.DataFrame({"text": pd.Series([a for a, _ in items], dtype="string[pyarrow]"),
                       "other": pd.Series([b for _, b in items], dtype=object),
                       "n": np.arange(len(items), dtype=np.int64) - 3})
    text = "".join(csv_chunks(df, np.arange(len(df)), chunk_rows=4))
    for row in spreadsheet_rows(text):
        for cell in row:
            assert not (cell[:1] in FORMULA and not _is_number(cell)) and not cell.startswith(("\t", "\r")), \
                (cell, text)


@settings(max_examples=100, deadline=None)
@given(st.lists(cells, min_size=1, max_size=5))
def test_escape_formulas_only_touches_risky_cells(values):
    from sde.web.api.respond import FORMULA_PREFIXES, escape_formulas

    df = pd.DataFrame({"s": pd.Series(values, dtype="string[pyarrow]")})
    out = escape_formulas(df)["s"].tolist()
    for before, after in zip(values, out):
        if before.startswith(FORMULA_PREFIXES):
            assert after == "'" + before
        else:
            assert after == before


# ---------------------------------------------------------------------------------------- ids

class _Tiny:
    utterances = pd.DataFrame({"id": np.arange(5)})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12) | st.integers(-10, 10).map(str) | st.sampled_from(["0x1", "1e1", " 1", "٣", "1_0", "+1"]))
def test_utterance_ids_from_urls(raw):
    from sde.web.present import ApiError, utterance_position

    try:
        pos = utterance_position(_Tiny(), raw)
    except ApiError as e:
        assert e.status == 404 and "no utterance" in str(e)
    else:
        assert isinstance(pos, int) and 0 <= pos < 5


# ---------------------------------------------------------------------------------------- text

@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aBc ÉdŽ'.,!?-\t0123456789%$")), max_size=30),
       st.sampled_from([("lower",), ("punct",), ("lower", "punct"), ("numbers",), ("lower", "punct", "numbers")]))
def test_normalize_is_idempotent(text, steps):
    from sde.text import normalize

    once = normalize(text, steps)
    assert normalize(once, steps) == once
    assert not re.search(r"\s\s", once) and once == once.strip()
