"""sde.filters.regex: the text every match of a regex must start or end with, tested before RE2, and a
regex that is plain text, a substring test."""

from __future__ import annotations

import re

import duckdb

import numpy as np
import pandas as pd
import pytest

from sde.filters import parse, to_sql
from sde.filters.regex import anchored_literals, like_pattern, literal_text
from sde.query import TableQuery


@pytest.mark.parametrize("pattern, ends", [
    ("^the .* of$", ("the ", " of")),
    ("^the", ("the", "")),
    ("of$", ("", "of")),
    ("^thee*", ("the", "")),            # the repeated "e" may be absent: not part of it
    ("^a?b", ("", "")),
    ("^th(e|em)", ("th", "")),
    ("^\\.wav$", (".wav", ".wav")),     # an escaped dot is a literal
    ("^ß日 x", ("ß日 x", "")),
    ("^[Tt]he", ("", "")),
    ("^.the", ("", "")),
    ("^the|of$", ("", "")),              # an alternation: neither end is sure
    ("(?i)^the", ("", "")),              # case ignored
    ("(?m)^the$", ("", "")),             # ^ and $ at line breaks
    ("the", ("", "")),
    ("\\Athe", ("", "")),
    ("^(?i:the)", ("", "")),
    ("^[[:alpha:]]x", ("", "")),         # not read the way RE2 reads it
    ("^the\\b", ("the", "")),
    ("^$", ("", "")),
])
def test_anchored_literals(pattern, ends):
    assert anchored_literals(pattern) == ends


TEXTS = ["the cat of", "the of", "then of", "the cat of the", "a the cat of", "the\nx of", "", None, "The cat of",
         "ß日 x y", "the.wav", ".wav", "of", "thee cat", "thecat of", "the  of"]
PATTERNS = ["^the .* of$", "^the", "of$", "^thee*", "^ß日 x", "^\\.wav$", "wav$", "^the of$", "^the\\b", "^th(e|em)"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_regex_with_a_literal_start_or_end_selects_what_re_selects(pattern):
    rng = np.random.default_rng(0)
    texts = [TEXTS[i] for i in rng.integers(0, len(TEXTS), 2000)]
    query = TableQuery(pd.DataFrame({"text": pd.Series(texts, dtype="string[pyarrow]")}))
    want = [i for i, t in enumerate(texts) if t is not None and re.search(pattern, t)]
    assert query.select(f'{{text}} matches "{pattern}"').tolist() == want
    others = [i for i, t in enumerate(texts) if t is not None and not re.search(pattern, t)]
    assert query.select(f'!({{text}} matches "{pattern}")').tolist() == others


@pytest.mark.parametrize("pattern, text", [
    ("of the", "of the"),
    ("(?:th) (?:s)", "th s"),           # groups that set no flag are their text
    ("(of) the", "of the"),
    ("x\\x2ey", "x.y"),                # an escaped character is itself
    ("a\\.b", "a.b"),
    ("ß日", "ß日"),
    ("th.s", None),
    ("of|the", None),
    ("the+", None),
    ("(?i)the", None),                  # case ignored: not a substring test
    ("(?i:the) x", None),
    ("^the", None),
    ("the\\b", None),
    ("", None),
    ("[[:alpha:]]", None),
])
def test_literal_text(pattern, text):
    assert literal_text(pattern) == text


@pytest.mark.parametrize("pattern, sql", [
    ("of the", "contains"),
    ("of\\s+the", "regexp_matches"),
    ("(?i)of the", "regexp_matches"),
])
def test_a_regex_that_is_plain_text_is_a_substring_test(pattern, sql):
    where, params = to_sql(parse(f'{{text}} matches "{pattern}"'), {"text": "text"})
    assert where.startswith(sql + "(") and params == [literal_text(pattern) or pattern]


@pytest.mark.parametrize("pattern", ["the of", "(?:e) (?:t)", "x\\.y", "ß日 x", "(the) (cat)"])
def test_a_plain_text_regex_selects_what_re_selects(pattern):
    rng = np.random.default_rng(1)
    texts = [TEXTS[i] for i in rng.integers(0, len(TEXTS), 2000)] + ["x.y", "xzy", "the cat", "e t", "e\tt"]
    query = TableQuery(pd.DataFrame({"text": pd.Series(texts, dtype="string[pyarrow]")}))
    for filt, keep in ((f'{{text}} matches "{pattern}"', True), (f'!({{text}} matches "{pattern}")', False)):
        want = [i for i, t in enumerate(texts) if t is not None and bool(re.search(pattern, t)) is keep]
        assert query.select(filt).tolist() == want


@pytest.mark.parametrize("pattern, like", [
    ("a.*b", "%a%b%"),
    ("^the .* of$", "the % of"),       # RE2's ^ and $: the text's start and end
    ("a.+b", "%a_%b%"),
    ("a.b", "%a_b%"),
    ("a.*?b", "%a%b%"),                # lazy or greedy: the same lines
    ("(the).*(of)", "%the%of%"),
    ("x%y.*_z", "%x\\%y%\\_z%"),     # LIKE's own characters escaped
    ("a\\\\b.*c", "%a\\\\b%c%"),
    ("^$", ""),
    ("ß.*日", "%ß%日%"),
    ("(?i)a.*b", None),                # case ignored
    ("(?s)a.*b", None),                # "." matching a line break
    ("(?m)^a.*b$", None),
    ("a.*b|c", None),
    ("a[bc].*d", None),
    ("a.{2}b", None),
    ("\\bthe.*of", None),
    ("a\\s*b", None),
])
def test_like_pattern(pattern, like):
    assert like_pattern(pattern) == like


LIKE_REGEXES = ["a.*b", "^the .* of$", "a.+b", "a.b", "x%y.*_z", "a\\\\\\\\b.*c", "ß.*日", "^$", "b$", "^a.*"]
LIKE_TEXTS = ["a b", "ab", "ba", "a\nb", "xa\nby", "the cat of", "the\nx of", "the of", "x%y z_z", "x%y _z", "xzy _z",
              "a\\b c", "ß 日", "ß\n日", "", None, "axb", "a%b", "a_b", "abc\n"]


@pytest.mark.parametrize("pattern", LIKE_REGEXES)
def test_a_regex_of_text_and_dots_is_a_like_test_that_selects_what_re2_selects(pattern):
    rng = np.random.default_rng(2)
    texts = [LIKE_TEXTS[i] for i in rng.integers(0, len(LIKE_TEXTS), 500)]
    query = TableQuery(pd.DataFrame({"text": pd.Series(texts, dtype="string[pyarrow]")}))
    regex = query.clauses(f'{{text}} matches "{pattern}"')[0].value  # as the filter language reads it
    where, _ = to_sql(parse(f'{{text}} matches "{pattern}"'), {"text": "text"})
    # a LIKE test, unless literal text at an anchor leaves RE2 only the lines it starts or ends
    assert like_pattern(regex) is not None and (" LIKE " in where) == (anchored_literals(regex) == ("", ""))
    assert "text" not in query._engine.single_line  # lines with a line break: RE2 reads those
    _selects_what_re2_selects(query, pattern, texts)


def _selects_what_re2_selects(query: TableQuery, pattern: str, texts: list[str | None]) -> None:
    regex = query.clauses(f'{{text}} matches "{pattern}"')[0].value
    re2 = duckdb.connect()  # the truth: RE2 itself, whose "$" and "." differ from Python's at line breaks
    found = re2.execute("SELECT regexp_matches(t, ?) FROM unnest(?) AS u(t)", [regex, texts]).fetchall()
    for filt, keep in ((f'{{text}} matches "{pattern}"', True), (f'!({{text}} matches "{pattern}")', False)):
        want = [i for i, (hit,) in enumerate(found) if hit is not None and hit is keep]
        assert query.select(filt).tolist() == want, filt


@pytest.mark.parametrize("pattern", LIKE_REGEXES)
def test_on_lines_without_a_line_break_the_like_test_alone_selects_what_re2_selects(pattern):
    rng = np.random.default_rng(3)
    single = [t for t in LIKE_TEXTS if t is None or "\n" not in t] + ["a\rb", "a\u2028b", "a\x85b"]
    texts = [single[i] for i in rng.integers(0, len(single), 500)]
    query = TableQuery(pd.DataFrame({"text": pd.Series(texts, dtype="string[pyarrow]")}))
    assert "text" in query._engine.single_line
    _selects_what_re2_selects(query, pattern, texts)


def test_a_regex_of_text_and_dots_in_a_single_line_column_is_its_like_test_alone():
    where, params = to_sql(parse('{t} matches "a.*b"'), {"t": "text"}, single_line_columns=["t"])
    assert (where, params) == ('("t" LIKE CAST(? AS VARCHAR))', ["%a%b%"])  # no ESCAPE: nothing escaped
    where, params = to_sql(parse('{t} matches "x%y.*_z"'), {"t": "text"}, single_line_columns=["t"])
    assert "ESCAPE" in where and params == ["%x\\%y%\\_z%"]  # LIKE's own characters, escaped
    where, params = to_sql(parse('{t} matches "a.*b"'), {"t": "text"})
    assert "regexp_matches" in where and params == ["%a%b%", "\n", "a.*b"]


def test_re2s_dot_matches_every_character_but_a_line_break():
    """The premise of the LIKE test alone, checked against DuckDB's RE2 over all of Unicode."""
    with duckdb.connect() as con:
        missed = con.execute("SELECT list(cp) FROM range(1, 1114112) r(cp) WHERE (cp < 55296 OR cp > 57343) "
                             "AND NOT regexp_matches(chr(cp::INT), '^.$')").fetchone()[0]
    assert missed == [10]
