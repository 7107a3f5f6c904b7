"""sde.filters: the filter language's tree, its printing, its errors, and its compilation to
parameterised DuckDB SQL, run both raw and through sde.query.TableQuery (the engine every view uses)."""

from __future__ import annotations

import math
import re
import time

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sde.filters import (
    MAX_ARITHMETIC,
    MAX_CLAUSES,
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_QUERY_LENGTH,
    MAX_REGEX_LENGTH,
    NODES,
    And,
    Arith,
    Clause,
    Column,
    Compare,
    Negate,
    Not,
    Number,
    Or,
    QueryError,
    column_kind,
    column_ref,
    combine_filters,
    duckdb_kind,
    parse,
    parse_filter,
    to_q,
    to_sql,
)
from sde.query import TableQuery

STR = "string[pyarrow]"
ODD = 'we"ird col'  # a real column whose name needs quoting as an SQL identifier


def _table() -> pd.DataFrame:
    x = [10.0, np.nan, 30.0, 20.0, 20.0, 5.0, 50.0, 0.0]
    return pd.DataFrame({
        "rid": np.arange(8, dtype=np.int64),
        "x": x,
        "n": pd.array([1, None, 3, 4, 5, 6, 7, 8], dtype="Int64"),
        "y": [5.0, 1.0, 0.0, 20.0, -20.0, np.nan, 25.0, 0.0],
        "t": pd.Series(["Hello world", "b", None, "hello", "x && y", 'say "hi"', "Zebra crossing", ""], dtype=STR),
        "s": pd.Series(["en", "EN", "en", None, "fr", "En", "de", "fr"], dtype=STR),
        "b": [True, False, True, True, False, False, True, False],
        "bn": pd.array([True, None, False, True, False, True, None, False], dtype="boolean"),
        ODD: x,
    })


DF = _table()
KINDS = {str(c): column_kind(DF[c].dtype) for c in DF.columns}


@pytest.fixture(scope="module")
def con():
    """DuckDB as a server would open it: no file system, no extensions."""
    c = duckdb.connect(config={"enable_external_access": False})
    c.register("t", DF)
    yield c
    c.close()


def duck_rows(con, tree, df_name: str = "t", kinds=KINDS, **kw) -> list[int]:
    sql, params = to_sql(tree, kinds, **kw)
    return [r[0] for r in con.execute(f"SELECT rid FROM {df_name} WHERE {sql} ORDER BY rid", params).fetchall()]


def engine_rows(tree, df=DF, **kw) -> list[int]:
    """The rows sde.query.TableQuery selects (a fresh engine: no cached result)."""
    return TableQuery(df, **kw).select([tree]).tolist()


# ---------------------------------------------------------------- the tree

C = Clause


@pytest.mark.parametrize("q, tree", [
    ("{wer} > 20", C("wer", ">", "20")),
    ("wer GT 20", C("wer", ">", "20")),
    ("{a} = 1 || {b} = 2", Or((C("a", "=", "1"), C("b", "=", "2")))),
    ("{a} = 1 && {b} = 2 || {c} = 3", Or((And((C("a", "=", "1"), C("b", "=", "2"))), C("c", "=", "3")))),
    ("{a} = 1 && ({b} = 2 || {c} = 3)", And((C("a", "=", "1"), Or((C("b", "=", "2"), C("c", "=", "3")))))),
    ("!{a} = 1", Not(C("a", "=", "1"))),
    ("not ({a} = 1)", Not(C("a", "=", "1"))),
    ("NOT {a} = 1 && {b} = 2", And((Not(C("a", "=", "1")), C("b", "=", "2")))),
    ("!!{a} = 1", Not(Not(C("a", "=", "1")))),
    ("{a} = 1 || {b} = 2 || {c} = 3", Or((C("a", "=", "1"), C("b", "=", "2"), C("c", "=", "3")))),
    ('{s} in ("a", b, 3)', C("s", "in", ("a", "b", "3"))),
    ("{s} IN('x')", C("s", "in", ("x",))),
    ("{x} is null", C("x", "is null")),
    ("{x} IS NOT NULL", C("x", "is not null")),
    ('{lang} =~ "EN"', C("lang", "=~", "EN")),
    ("{lang} ieq EN", C("lang", "=~", "EN")),
    ('{t} matches "^a.*b$"', C("t", "matches", "^a.*b$")),
    ("{t} has cat", C("t", "has", "cat")),
    ("{wer_b} > {wer}", Compare(Column("wer_b"), ">", Column("wer"))),
    ("{wer_b} - {wer} > 10", Compare(Arith("-", Column("wer_b"), Column("wer")), ">", Number(10.0))),
    ("wer_b - wer > 10", Compare(Arith("-", Column("wer_b"), Column("wer")), ">", Number(10.0))),
    ("({a} + {b}) / 2 >= 5", Compare(Arith("/", Arith("+", Column("a"), Column("b")), Number(2.0)), ">=", Number(5.0))),
    ("{a} * 2 + 1 < {b}", Compare(Arith("+", Arith("*", Column("a"), Number(2.0)), Number(1.0)), "<", Column("b"))),
    ("{a} - {b} - {c} > 0", Compare(Arith("-", Arith("-", Column("a"), Column("b")), Column("c")), ">", Number(0.0))),
    ("{a} - ({b} - {c}) > 0", Compare(Arith("-", Column("a"), Arith("-", Column("b"), Column("c"))), ">", Number(0.0))),
    ("{a} > -{b}", Compare(Column("a"), ">", Negate(Column("b")))),
    ("{a} * -2 > 1", Compare(Arith("*", Column("a"), Number(-2.0)), ">", Number(1.0))),
    ("{a} - {b} > -1.5e3", Compare(Arith("-", Column("a"), Column("b")), ">", Number(-1500.0))),
    ("{a} - {b} > '10'", Compare(Arith("-", Column("a"), Column("b")), ">", Number(10.0))),
    ("{a} - {b} > 10 - 2", Compare(Arith("-", Column("a"), Column("b")), ">", Arith("-", Number(10.0), Number(2.0)))),
], ids=lambda v: v if isinstance(v, str) else "")
def test_parses_into_a_tree(q, tree):
    assert parse(q) == tree
    assert parse(to_q(tree)) == tree


@pytest.mark.parametrize("q, tree", [
    # Today's syntax keeps its meaning: a bare value runs to && (now also to || or a group's ")").
    ("{t} contains   two words  ", C("t", "contains", "two words")),
    ("{t} = it's", C("t", "=", "it's")),
    ("{d} = 2021-05-03", C("d", "=", "2021-05-03")),          # a date, not arithmetic
    ("{x} > 10 - 2", C("x", ">", "10 - 2")),                    # no column: text (then "not a number")
    ("{t} contains (laughs)", C("t", "contains", "(laughs)")),
    ("{t} contains :)", C("t", "contains", ":)")),
    ("{t} contains ;-)", C("t", "contains", ";-)")),
    ("({t} = (laughs) || {t} = x)", Or((C("t", "=", "(laughs)"), C("t", "=", "x")))),
    ("{t} = hi!", C("t", "=", "hi!")),
    ('{t} = "a || b"', C("t", "=", "a || b")),
    ('{t} = "{wer}"', C("t", "=", "{wer}")),
    ("not = 1", C("not", "=", "1")),                            # a column named "not"
    (r'{p} = "C:\data\x"', C("p", "=", r"C:\data\x")),
    ("{speaker} = 007", C("speaker", "=", "007")),
])
def test_bare_values_keep_todays_meaning(q, tree):
    assert parse(q) == tree


@pytest.mark.parametrize("tree, text", [
    (Or((C("a", "=", "x"), C("b", "=", 2.0))), '{a} = "x" || {b} = 2'),
    (And((Or((C("a", "=", "x"), C("b", "!=", "y"))), Not(C("c", "is null")))), '({a} = "x" || {b} != "y") && !({c} is null)'),
    (C("s", "in", ("a", 3.0, True)), '{s} in ("a", 3, true)'),
    (Compare(Negate(Arith("+", Column("a"), Number(0.5))), "<=", Column("b")), "-({a} + 0.5) <= {b}"),
    (Compare(Arith("/", Column("a"), Arith("*", Column("b"), Number(2.0))), ">", Number(1e20)), "{a} / ({b} * 2) > 1e+20"),
])
def test_prints_back_as_filter_text(tree, text):
    assert to_q(tree) == text


@pytest.mark.parametrize("name, written", [
    ("wer", "{wer}"),
    ("x}y", "{x\\}y}"),
    ("a\\b", "{a\\\\b}"),
    ("ends\\", "{ends\\\\}"),
    ("}", "{\\}}"),
    ("{x}", "{{x\\}}"),
    ("snr (dB).mean", "{snr (dB).mean}"),
    ("речь", "{речь}"),
])
def test_a_column_name_is_written_in_braces_with_its_braces_escaped(name, written):
    assert column_ref(name) == written
    for q, tree in [(f"{written} = 1", C(name, "=", "1")),
                    (f"{written} - {{wer}} > 1", Compare(Arith("-", Column(name), Column("wer")), ">", Number(1.0)))]:
        assert parse(q) == tree
        assert parse(to_q(tree)) == tree


@pytest.mark.parametrize("q, name", [
    ("{a\\b} = 1", "a\\b"),       # a backslash before any other character is itself (filters written before)
    ("{ends\\} = 1", "ends\\"),   # no closing brace with the escape read: the first } closes it
    ("{ spaced } = 1", "spaced"),
])
def test_braces_written_before_the_escape_keep_their_meaning(q, name):
    assert parse(q) == C(name, "=", "1")


def test_parse_filter_gives_the_parts_of_the_top_level_and():
    parts = parse_filter('{a} = 1 && ({b} = 2 || {c} = 3) && !{d} = 4')
    assert parts == [C("a", "=", "1"), Or((C("b", "=", "2"), C("c", "=", "3"))), Not(C("d", "=", "4"))]
    assert parse_filter("{a} = 1 || {b} = 2") == [Or((C("a", "=", "1"), C("b", "=", "2")))]


@pytest.mark.parametrize("parts, combined", [
    (["{a} = 1 || {b} = 2", "{c} = 3"], "({a} = 1 || {b} = 2) && {c} = 3"),  # bare numbers stay bare
    (["{a} = 1 && {b} = 2", "  ", None, "{c} = 3"], "{a} = 1 && {b} = 2 && {c} = 3"),
    (["{t} contains :)", "{x} > 1"], "{t} contains :) && {x} > 1"),
    (["{a} = (", "{c} = 3"], "{a} = ( && {c} = 3"),  # invalid: kept as written, reported when used
])
def test_combined_filters_keep_their_meaning(parts, combined):
    assert combine_filters(*parts) == combined


# ---------------------------------------------------------------- errors, positions, bounds


@pytest.mark.parametrize("q, pos, words", [
    ("({a} = 1", 8, 'missing ")"'),
    ('{a} = "1") && {b} = 2', 9, 'no "("'),
    # unquoted, the ")" was read into the value: the clause matched nothing, silently
    ("{speaker} = spk_4)", 17, 'no "(" to close'),
    ("{speaker} = spk_4 ) && {wer} > 0", 18, 'no "(" to close'),
    ("{wer} > 30)", 10, 'no "(" to close'),
    ("{text} contains (laughs))", 24, "quote the value"),
    ("({a} = 1) {b} = 2", 10, "join clauses with && or ||"),
    ("{a} = 1 || || {b} = 2", 11, "empty clause"),
    ("{a} = 1 ||", 8, "nothing after the last ||"),
    ("!", 1, "column name"),
    ("{a} in 1", 7, "in takes a list"),
    ("{a} in ()", 8, "empty"),
    ("{a} in (1, )", 11, "empty value"),
    ("{a} in (1 2", 7, "missing )"),
    ('{a} in ("x" "y")', 12, "expected , or )"),
    ("{a} is nothing", 7, "null or not null"),
    ("2 > 1", 0, "needs a column"),
    ("{a} + 1 contains x", 0, "tests one column"),
    ("({a} + 1)", 9, "expected an operator"),
    ("({a} = 1) + 2 > 1", 10, "not on a condition"),
    ("({a} = 1) = 2", 10, "cannot be compared"),
    ("{a} - {b} > abc", 12, "not a number"),
    ("{a} = 1 {b} = 2", 8, "missing &&"),
    ("{a} + 1e999 > {b}", 6, "too large"),
    # Operators of other languages ran on into the value: `> "en"` compared as text, silently.
    ('{s} <> "en"', 4, '"<>" is not an operator: use !='),
    ('{s} !== "en"', 4, '"!==" is not an operator: use !='),
    ('{s} === "en"', 4, '"===" is not an operator: use ='),
    ("{x} => 1", 4, '"=>" is not an operator: use >='),
    ("{x} =< 1", 4, '"=<" is not an operator: use <='),
    ("{a} - {b} <> 1", 10, '"<>" is not an operator'),
])
def test_syntax_errors_point_at_the_position(q, pos, words):
    with pytest.raises(QueryError) as exc:
        parse(q)
    assert exc.value.position == pos, str(exc.value)
    assert words.lower() in str(exc.value).lower()
    assert exc.value.excerpt.splitlines()[1] == " " * pos + "^"


@pytest.mark.parametrize("q, value", [("{t} = <unk>", "<unk>"), ("{t} contains <unk>", "<unk>"),
                                      ("{x} >= -5", "-5"), ("{x} >=5", "5"), ("{t} != !x", "!x")])
def test_a_value_may_start_with_an_operator_character_after_a_space(q, value):
    assert parse(q).value == value


@pytest.mark.parametrize("name,suggested", [("time", "{review_time}"), ("note", "{review_note}"),
                                              ("TAGS", "{review_tags}"), ("status", "{review}")])
def test_an_unknown_column_suggests_the_column_it_ends_with(name, suggested):
    # /api/reviews' rows say "time", "note", "tags", "status"; their columns are review_time, ...,
    # and review (QA: the message listed 32 more columns and named none)
    with pytest.raises(QueryError) as exc:
        parse_filter(f"{{{name}}} = 1", columns=["wer", "cer", "review", "review_time", "review_note", "review_tags"])
    assert f"Did you mean {suggested}?" in str(exc.value)


def test_unknown_column_names_the_position_and_the_close_match():
    with pytest.raises(QueryError) as exc:
        parse_filter("{cer} < 5 || {wre} > 20", columns=["wer", "cer"])
    e = exc.value
    assert e.position == 14
    assert str(e).startswith('Unknown column "wre" at character 15. Did you mean {wer}?')
    assert e.excerpt == "{cer} < 5 || {wre} > 20\n              ^"
    assert e.as_dict() == {"error": str(e), "position": 14, "excerpt": e.excerpt}
    with pytest.raises(QueryError, match="Unknown column") as exc:
        TableQuery(DF).select("{x} > 1 && {xx} - {y} > 1")
    assert exc.value.position == 12


@pytest.mark.parametrize("q, pos, words", [
    ("{x} contains 1", 1, "contains works on text"),
    ("{s} = a || {x} =~ 1", 12, "=~ works on text"),
    ("{x} > 1 && !({t} - {x} > 1)", 14, "arithmetic works on numbers"),
    ("{t} > {x}", 0, "cannot compare {t} (text) with {x} (number)"),
    ("{b} > {bn}", 0, "= or != only"),
    ("{b} > true", 1, "true/false column"),
    ("{x} in (1, two)", 7, '"two" in the list at character 8 is not a number'),
    ("{t} has 'two words'", 8, "one whole word"),
    ('{x} > "abc"', 6, '"abc" at character 7 is not a number'),
    ("{b} = maybe", 6, "is neither"),
    ('{t} matches "a{2,1}"', 12, "write the smaller count first, {1,2}"),
    ('{t} matches "a{1001}"', 12, "repetition counts above 1,000"),
])
def test_type_errors_point_at_the_clause(q, pos, words):
    """The message names the character too: an API answer carries only the message."""
    with pytest.raises(QueryError) as exc:
        TableQuery(DF).select(q)
    assert exc.value.position == pos, str(exc.value)
    assert words.lower() in str(exc.value).lower()
    assert f"at character {pos + 1}" in str(exc.value)
    with pytest.raises(QueryError, match=re.escape(str(exc.value))):
        to_sql(parse(q), KINDS)  # the SQL compiler refuses it with the same message


@pytest.mark.parametrize("regex, words", [
    ("(?<=a)b", "lookbehind"),
    ("(?<!a)b", "negative lookbehind"),
    ("a(?=b)", "lookahead"),
    ("a(?!b)", "negative lookahead"),
    (r"(a)\1", "backreferences"),
    ("(?<name>a)", "(?P<name>"),
    ("(?>a)", "atomic"),
    ("a++", "possessive"),
    (r"\C", "one byte"),
    ("(", "missing )"),
    ("a{1001}", "repetition counts above 1,000 are not supported"),
    ("(a{100}){20}", "use a shorter count, or a length column like {num_chars} > 1000"),
    ("x" * (MAX_REGEX_LENGTH + 1), "too long"),
])
def test_regexes_re2_cannot_run_are_refused_clearly(regex, words):
    with pytest.raises(QueryError, match=re.escape(words)):
        TableQuery(DF).select(Clause("t", "matches", regex).to_q())


@pytest.mark.parametrize("regex", [r"[(?<=]", r"\(?=", r"(?P<w>\w+) \b", r"[]a]+", "(?i)é", r"\p{Greek}",
                                   r"\p{Greek}+", r"\P{Latin}+ x", r"\x{3b1}+", r"\pL+"])
def test_regexes_re2_runs_are_accepted(regex, con):
    tree = Clause("t", "matches", regex)
    assert engine_rows(tree) == duck_rows(con, tree)


@pytest.mark.parametrize("make, words", [
    (lambda: "(" * (MAX_DEPTH + 1) + "{a} = 1" + ")" * (MAX_DEPTH + 1), "nests too deeply"),
    (lambda: "!" * (MAX_DEPTH + 1) + "{a} = 1", "nests too deeply"),
    (lambda: "{a} > " + "-" * (MAX_DEPTH + 1) + "{b}", "nests too deeply"),
    (lambda: "{a}" + " + {a}" * (MAX_ARITHMETIC + 1) + " > 1", f"more than {MAX_ARITHMETIC} arithmetic"),
    (lambda: " || ".join(f"{{a}} = {i}" for i in range(MAX_CLAUSES + 1)), f"at most {MAX_CLAUSES}"),
    (lambda: "{a} in (" + ",".join("1" * (MAX_IN_VALUES + 1)) + ")", f"at most {MAX_IN_VALUES}"),
    (lambda: "{a} = " + "x" * MAX_QUERY_LENGTH, "too long"),
], ids=["parentheses", "not", "minus", "arithmetic", "clauses", "in list", "length"])
def test_limits_are_named(make, words):
    with pytest.raises(QueryError, match=re.escape(words)):
        parse(make())


def test_the_limits_themselves_are_accepted():
    assert parse("(" * MAX_DEPTH + "{a} = 1" + ")" * MAX_DEPTH) == C("a", "=", "1")
    assert len(parse(" || ".join(f"{{a}} = {i}" for i in range(MAX_CLAUSES))).items) == MAX_CLAUSES
    assert len(parse("{a} in (" + ",".join("1" * MAX_IN_VALUES) + ")").value) == MAX_IN_VALUES


@pytest.mark.parametrize("make", [
    lambda: "{a} = " + "(" * 9_990,
    lambda: "{a} = " + "x" * 9_990,
    lambda: "{a} > " + "({b} + " * 2_000,
    lambda: "(" * 5_000 + "{a} = 1",
    lambda: "{a} = " + '"' + "\\\"" * 4_990,
    lambda: "{a} in (" + "x," * 4_990,
    lambda: " && ".join(["{t} contains " + "y" * 600] * 16),
], ids=["parens", "bare", "arith", "nesting", "escapes", "in list", "clauses"])
def test_parsing_10k_characters_is_quick(make):
    text = make()[:MAX_QUERY_LENGTH]
    start = time.perf_counter()
    try:
        parse(text)
    except QueryError:
        pass
    assert time.perf_counter() - start < 1.0  # one pass: milliseconds even on a loaded machine


def test_trees_built_in_code_are_bounded_too():
    deep = C("x", ">", 1.0)
    for _ in range(10 * MAX_DEPTH):
        deep = Not(deep)
    with pytest.raises(QueryError, match="nests too deeply"):
        TableQuery(DF).select([deep])
    with pytest.raises(QueryError, match="too long"):
        TableQuery(DF).select([C("t", "in", ("x" * 6_000, "y" * 6_000))])
    with pytest.raises(QueryError, match="Expected filter clauses"):
        TableQuery(DF).select([Or((C("x", ">", 1.0), "x > 1"))])


# ---------------------------------------------------------------- semantics: both compilers


CASES = [
    ("{x} = 20", [3, 4]),
    ("{x} != 20", [0, 2, 5, 6, 7]),
    ("{x} < 10", [5, 7]),
    ("{x} <= 10", [0, 5, 7]),
    ("{x} > 20", [2, 6]),
    ("{x} >= 20", [2, 3, 4, 6]),
    ("{x} < inf", [0, 2, 3, 4, 5, 6, 7]),
    ("{n} != 3", [0, 3, 4, 5, 6, 7]),
    ("{t} = hello", [3]),
    ("{t} != hello", [0, 1, 4, 5, 6, 7]),
    ("{t} < a", [0, 6, 7]),
    ("{t} >= x", [4]),
    ("{t} =~ HELLO", [3]),
    ('{s} =~ "en"', [0, 1, 2, 5]),
    ('{t} contains "O W"', [0]),
    ('{t} contains ""', [0, 1, 3, 4, 5, 6, 7]),
    ('{t} has "hello"', [3]),
    ('{t} matches "^[Hh]ello"', [0, 3]),
    ('{t} matches "(?i)^zebra"', [6]),
    ('{t} matches "o"', [0, 3, 6]),
    ('{s} in ("en", "fr")', [0, 2, 4, 7]),
    ("{n} in (1, 3, 99)", [0, 2]),
    ("{x} in (20)", [3, 4]),
    ("{b} in (true)", [0, 2, 3, 6]),
    ("{t} is null", [2]),
    ("{t} is not null", [0, 1, 3, 4, 5, 6, 7]),
    ("{x} is null", [1]),
    ("{bn} is null", [1, 6]),
    ("{b} = true", [0, 2, 3, 6]),
    ("{bn} != true", [2, 4, 7]),
    ('{x} > 20 || {s} = "EN"', [1, 2, 6]),
    ('{b} = false || {x} > 20 && {s} = "en"', [1, 2, 4, 5, 7]),
    ('({b} = false || {x} > 20) && {s} = "en"', [2]),
    # Three-valued logic: NOT of unknown is unknown, so a missing speaker never matches.
    ('!({s} = "en")', [1, 4, 5, 6, 7]),
    ('not {s} = "en"', [1, 4, 5, 6, 7]),
    ('!({s} = "en" || {x} > 20)', [4, 5, 7]),
    ('!({s} = "en") && !({x} is null)', [4, 5, 6, 7]),
    ("!({x} > 20) || {x} is null", [0, 1, 3, 4, 5, 7]),
    # Column to column, arithmetic; division by zero is missing.
    ("{y} >= {x}", [3, 7]),
    ("{y} != {x}", [0, 2, 4, 6]),
    ("{x} - {y} > 10", [2, 4, 6]),
    ("({x} + {y}) / 2 >= 10", [2, 3, 6]),
    ("{x} / {y} > 1", [0, 6]),
    ("!({x} / {y} > 1)", [3, 4]),
    ("{x} * -1 < -25", [2, 6]),
    ("-{x} < -25", [2, 6]),
    ("{n} * 2 > {x}", [5, 7]),
    # Division by zero is missing whatever the divisor: a number, a column, an expression.
    ("{x} / 0 >= 0", []),
    ("{x} / ({y} - {y}) >= 0", []),
    ("!({x} / ({n} - {n}) > 1)", []),
    ("{x} / ({y} * 1) > 1", [0, 6]),
    ("{x} / ({n} / ({n} / {n})) > 5", [0, 2, 6]),
    ("{x} - {x} + 1 = 1", [0, 2, 3, 4, 5, 6, 7]),
    ("{t} > {s}", [1, 4, 5]),
    ("{b} = {bn}", [0, 3, 4, 7]),
    ('{we"ird col} >= 20', [2, 3, 4, 6]),
    ('{t} = "x && y" || {t} = \'say "hi"\'', [4, 5]),
]


@pytest.mark.parametrize("q, expected", CASES, ids=[q for q, _ in CASES])
def test_both_compilers_give_the_same_rows(q, expected, con):
    tree = parse(q)
    assert engine_rows(tree) == expected
    assert TableQuery(DF).select(q).tolist() == expected
    assert duck_rows(con, tree) == expected


# A text column whose values are mostly numbers, as a manifest field with "high" or "" on some lines
# becomes: an unquoted number orders its values as numbers (those that are not numbers, "nan"
# included, are unknown, like a missing number); a quoted one orders them as text.
MIXED = pd.DataFrame({"rid": np.arange(8, dtype=np.int64),
                      "snr": pd.Series(["12.5", "high", "2", None, " 7 ", "nan", "1e3", ""], dtype=STR)})
MIXED_CASES = [
    ("{snr} < 10", [2, 4]),                # as text, "12.5" < "10" would hold and " 7 " would not
    ("{snr} >= 12.5", [0, 6]),
    ("{snr} > -1", [0, 2, 4, 6]),
    ("!({snr} < 10)", [0, 6]),             # unknown stays unknown under not
    ("{snr} < inf", [0, 2, 4, 6]),
    ('{snr} < "10"', [4, 7]),              # quoted: text order
    ("{snr} = 2", [2]),                    # equality stays exact text ({speaker} = 007 is "007")
    ("{snr} = 2.0", []),
    ("{snr} > 2021-05-03", [1, 5]),        # not a number: text order, as a date's
]


@pytest.mark.parametrize("q, expected", MIXED_CASES, ids=[q for q, _ in MIXED_CASES])
def test_a_text_column_orders_as_numbers_by_an_unquoted_number(q, expected):
    kinds = {str(c): column_kind(MIXED[c].dtype) for c in MIXED.columns}
    assert kinds["snr"] == "text"
    tree = parse(q)
    assert TableQuery(MIXED).select(q).tolist() == expected
    c = duckdb.connect(config={"enable_external_access": False})
    c.register("mixed", MIXED)
    assert duck_rows(c, tree, "mixed", kinds=kinds) == expected
    assert TableQuery(MIXED).select(to_q(tree)).tolist() == expected  # printed back: the same rows
    c.close()


def test_every_operator_is_covered_by_the_cases():
    used = set()
    for q, _ in CASES:
        tree = parse(q)
        stack = [tree]
        while stack:
            n = stack.pop()
            if isinstance(n, (And, Or)):
                stack += n.items
                used.add(type(n).__name__)
            elif isinstance(n, Not):
                stack.append(n.item)
                used.add("Not")
            elif isinstance(n, Compare):
                used.add("Compare " + n.op)
            else:
                used.add(n.op)
    from sde.filters import OPERATORS
    assert set(OPERATORS) <= used and {"And", "Or", "Not", "Compare >", "Compare !="} <= used


def test_no_filter_is_every_row(con):
    assert to_sql(None, KINDS) == ("TRUE", [])
    assert TableQuery(DF).select(None).tolist() == TableQuery(DF).select([]).tolist() == list(range(len(DF)))


def test_filter_only_columns_work_in_any_combination(con):
    calls = []

    def error_rows(op, value):
        calls.append((op, value))
        if op != "=":
            raise QueryError('{error} takes = "sub REF HYP"')
        return DF["rid"].isin([1, 2, 3]).to_numpy()

    def error_sql(op, value):
        return '"rid" IN (SELECT unnest(?::BIGINT[]))', [[1, 2, 3]]

    tree = parse('{error} = "sub a b" || !({x} > 1)')
    assert engine_rows(tree, virtual={"error": error_rows}) == [1, 2, 3, 7]
    assert duck_rows(con, tree, virtual={"error": error_sql}) == [1, 2, 3, 7]
    tq = TableQuery(DF, virtual={"error": error_rows})
    assert tq.select('!({error} = "sub a b") && {x} >= 0').tolist() == [0, 4, 5, 6, 7]
    with pytest.raises(QueryError, match="sub REF HYP") as exc:
        tq.clauses('{x} > 1 || {error} != "x"')  # the column's own check runs when the filter is checked
    assert exc.value.position == 12
    with pytest.raises(QueryError, match="never missing"):
        tq.select("{error} is null")
    assert calls[0] == ("=", "sub a b")


def test_the_same_parts_in_another_order_reuse_the_cached_view():
    tq = TableQuery(DF)
    first = tq.select('{x} > 1 && {s} = "en"', "-x")
    assert tq.select('{s} = "en" && {x} > 1', "-x") is first  # one SQL query, not two


def test_the_documented_examples_run():
    """Every example of docs/api.md's filter section parses and runs on a table with those columns."""
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Filter language"): doc.index("## Dataset")]
    examples = [re.split(r"\s{2,}", line.strip())[0] for line in section.splitlines() if line.startswith("    {")]
    assert len(examples) >= 5
    df = pd.DataFrame({"wer": [10.0, 30.0], "wer_conformer": [25.0, 31.0], "duration": [3.0, 12.0],
                       "speaker": pd.Series(["spk_7", "x"], dtype=STR), "lang": pd.Series(["en", "de"], dtype=STR),
                       "text": pd.Series(["hello there", "um hello"], dtype=STR), "snr": [np.nan, 5.0]})
    def error_rows(op, value):
        return np.array([True, False])
    tq = TableQuery(df, virtual={"error": error_rows, "error_conformer": error_rows})
    for q in examples:
        tq.select(q)
    assert tq.select(examples[1]).tolist() == [0]
    assert tq.select('{wer_conformer} - {wer} > 10').tolist() == [0]


# ---------------------------------------------------------------- hints


def test_a_case_mismatch_offers_case_insensitive_equality():
    df = pd.DataFrame({"lang": pd.Series(["en", "en", "de", "EN", None], dtype=STR), "wer": [1.0, 2, 3, 4, 5]})
    tq = TableQuery(df)
    assert tq.select('{lang} = "En" && {wer} > 0').tolist() == []
    [hint] = tq.hints('{lang} = "En" && {wer} > 0')
    assert hint.message == '{lang} = "En" matches no row; ignoring case, {lang} =~ "En" matches 3 ("en", "EN").'
    assert hint.filter == '{lang} =~ "En" && {wer} > 0'
    assert tq.select(hint.filter).tolist() == [0, 1, 3]
    assert hint.as_dict() == {"message": hint.message, "filter": hint.filter}


@pytest.mark.parametrize("q", ['{lang} = "en"', '{lang} = "fr"', '!({lang} = "En")', "{lang} = (", "{wer} = 7"])
def test_no_hint_without_a_case_mismatch(q):
    df = pd.DataFrame({"lang": pd.Series(["en", "EN"], dtype=STR), "wer": [1.0, 2.0]})
    assert TableQuery(df).hints(q) == []


# ---------------------------------------------------------------- hostile values: just values

HOSTILE = ['"', "'", "\\", "'; DROP TABLE t; --", '"; DROP TABLE t; --', "read_csv('/etc/passwd')",
           "x' OR '1'='1", "); DELETE FROM t; --", "\x00", "a\x00b", "é日本🙂", "\u202e\u0301", "?", "$1", "%_",
           "CAST(? AS VARCHAR)", "\n", "Zebra crossing", "x" * 10_000]
TEXT_OPS = ["=", "!=", "<", "<=", ">", ">=", "=~", "contains", "has", "matches", "in"]


def _clause(column, op, value):
    return Clause(column, "in", (value, "b")) if op == "in" else Clause(column, op, value)


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:20])
def test_hostile_values_through_every_operator_are_just_values(value, con):
    df = DF.assign(t=pd.Series(list(DF["t"][:-1]) + [value], dtype=STR))  # one row holds the value
    con.register("h", df)
    for column, ops in (("t", TEXT_OPS), ("x", ["=", "<", "in"]), ("b", ["=", "in"])):
        for op in ops:
            tree = _clause(column, op, value)
            try:
                expected = engine_rows(tree, df)
            except QueryError as e:  # refused (not a number, not one word, not a regex): the same in SQL
                if "too long" in str(e):  # the engine's bound on a filter's size (user input from a URL)
                    continue
                with pytest.raises(QueryError, match=re.escape(str(e))):
                    to_sql(tree, KINDS)
                continue
            # The SQL text does not depend on the value's text: values travel as parameters (a regex
            # that is plain text, like "v", is a substring test; one of text and dots, like "v.", a
            # LIKE test; another, like "v+", runs RE2).
            assert to_sql(tree, KINDS)[0] in {to_sql(_clause(column, op, v), KINDS)[0] for v in ("v", "v.", "v+")}
            assert duck_rows(con, tree, "h") == expected, (op, value[:30])
            if len(value) < 1_000:  # written as filter text, the value comes back unchanged
                assert parse(to_q(tree)) == tree
    holding = [i for i, v in enumerate(df["t"]) if isinstance(v, str) and v == value]
    assert engine_rows(Clause("t", "=", value), df) == duck_rows(con, Clause("t", "=", value), "h") == holding
    assert 7 in holding
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(len(DF),)]


def test_hostile_column_names_never_reach_sql(con):
    for name in ['t"; DROP TABLE t; --', "x) OR (1=1", "read_csv('/etc/passwd')"]:
        with pytest.raises(QueryError, match="Unknown column"):
            to_sql(Clause(name, "=", "a"), KINDS)
    sql, _ = to_sql(parse('{we"ird col} > 1'), KINDS)
    assert sql == '("we""ird col" > CAST(? AS DOUBLE))'


def test_duckdb_is_opened_without_file_access(con):
    with pytest.raises(duckdb.Error, match="disabled"):
        con.execute("SELECT * FROM read_csv('/etc/passwd')")


@pytest.mark.parametrize("type_name, kind", [("DOUBLE", "number"), ("BIGINT", "number"), ("DECIMAL(18,3)", "number"),
                                             ("VARCHAR", "text"), ("BOOLEAN", "bool"), ("TIMESTAMP", "other")])
def test_duckdb_types_map_to_kinds(type_name, kind):
    assert duckdb_kind(type_name) == kind


def test_kinds_read_from_duckdb_compile_the_same_sql(con):
    described = {r[0]: duckdb_kind(r[1]) for r in con.execute("DESCRIBE t").fetchall()}
    assert described == KINDS


# ---------------------------------------------------------------- random trees: parse, print, run

NUM_COLS, TEXT_COLS, BOOL_COLS = ["x", "n", "y"], ["t", "s"], ["b", "bn"]
LETTERS = "aAbé É"


def _random_df(seed: int, n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    def word():
        return "".join(rng.choice(list(LETTERS), size=rng.integers(0, 5)))
    def maybe(v):
        return None if rng.random() < 0.15 else v
    x = [np.nan if rng.random() < 0.15 else float(rng.choice([0, 1, 5, 10, 20, -3.5, 1e3])) for _ in range(n)]
    return pd.DataFrame({
        "rid": np.arange(n, dtype=np.int64),
        "x": x,
        "n": pd.array([maybe(int(rng.integers(-2, 6))) for _ in range(n)], dtype="Int64"),
        "y": [np.nan if rng.random() < 0.15 else float(rng.integers(-3, 4)) for _ in range(n)],
        "t": pd.Series([maybe(word()) for _ in range(n)], dtype=STR),
        "s": pd.Series([maybe(str(rng.choice(["a", "A", "b", "é", "É", ""]))) for _ in range(n)], dtype=STR),
        "b": rng.random(n) < 0.5,
        "bn": pd.array([maybe(bool(rng.random() < 0.5)) for _ in range(n)], dtype="boolean"),
    })


RANDOM_DF = _random_df(0)
RANDOM_KINDS = {str(c): column_kind(RANDOM_DF[c].dtype) for c in RANDOM_DF.columns}
RECORDS = RANDOM_DF.to_dict("records")

num_text = st.sampled_from(["0", "1", "5", "10", "20", "-3.5", "1e3", "inf", "-inf", "20.0", "-2"])
text_value = st.text(alphabet=LETTERS, max_size=3)
word_value = st.text(alphabet="aAbBé", min_size=1, max_size=2)
regex_value = st.sampled_from(["^a", "b$", "a.b", "(?i)é", "[ab]+", "^$", "A|é", " ", "^.{2}$"])
small_numbers = st.integers(-20, 20).map(float) | st.sampled_from([0.5, -0.25, 1e3])

num_clause = st.builds(Clause, st.sampled_from(NUM_COLS), st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), num_text)
num_in = st.builds(lambda c, vs: Clause(c, "in", tuple(vs)), st.sampled_from(NUM_COLS), st.lists(num_text, min_size=1, max_size=3))
text_clause = st.builds(Clause, st.sampled_from(TEXT_COLS), st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "=~", "contains"]),
                        text_value)
text_has = st.builds(lambda c, w: Clause(c, "has", w), st.sampled_from(TEXT_COLS), word_value)
text_matches = st.builds(lambda c, r: Clause(c, "matches", r), st.sampled_from(TEXT_COLS), regex_value)
text_in = st.builds(lambda c, vs: Clause(c, "in", tuple(vs)), st.sampled_from(TEXT_COLS), st.lists(text_value, min_size=1, max_size=3))
bool_clause = st.builds(Clause, st.sampled_from(BOOL_COLS), st.sampled_from(["=", "!="]), st.sampled_from(["true", "false", "1", "0"]))
null_clause = st.builds(Clause, st.sampled_from(NUM_COLS + TEXT_COLS + BOOL_COLS), st.sampled_from(["is null", "is not null"]))


def _arith(operand):
    return st.one_of(
        st.builds(Arith, st.sampled_from("+-*/"), operand, operand),
        st.builds(Negate, operand.filter(lambda e: not isinstance(e, Number))),
    )


columns = st.sampled_from(NUM_COLS).map(Column)
numbers = small_numbers.map(Number)
expressions = st.recursive(columns | numbers, _arith, max_leaves=4)
with_arith = st.builds(Arith, st.sampled_from("+-*/"), columns, expressions)
compare = st.one_of(
    st.builds(Compare, with_arith, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), expressions),
    st.builds(Compare, columns, st.sampled_from(["<", ">=", "!="]), columns),
    st.builds(Compare, st.sampled_from(TEXT_COLS).map(Column), st.sampled_from(["=", "!=", "<", ">="]),
              st.sampled_from(TEXT_COLS).map(Column)),
    st.builds(Compare, st.sampled_from(BOOL_COLS).map(Column), st.sampled_from(["=", "!="]),
              st.sampled_from(BOOL_COLS).map(Column)),
)
leaf = st.one_of(num_clause, num_in, text_clause, text_has, text_matches, text_in, bool_clause, null_clause, compare)


def _join(kind, items):
    flat = []
    for i in items:
        flat.extend(i.items if isinstance(i, kind) else [i])
    return kind(tuple(flat))


trees = st.recursive(leaf, lambda kids: st.one_of(
    st.lists(kids, min_size=2, max_size=3).map(lambda xs: _join(And, xs)),
    st.lists(kids, min_size=2, max_size=3).map(lambda xs: _join(Or, xs)),
    kids.map(Not),
), max_leaves=8)


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _value(e, row):
    """Reference arithmetic, row by row: None for missing (x / 0 and NaN included)."""
    if isinstance(e, Number):
        return e.value
    if isinstance(e, Column):
        v = row[e.name]
        return None if _missing(v) else v
    if isinstance(e, Negate):
        v = _value(e.operand, row)
        return None if v is None else -float(v)
    a, b = _value(e.left, row), _value(e.right, row)
    if a is None or b is None:
        return None
    a, b = float(a), float(b)
    if e.op == "/" and b == 0:
        return None
    out = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0.0}[e.op]
    return None if math.isnan(out) else out


_CMP = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _reference(node, row):
    """SQL's three-valued logic, one row at a time, independent of both compilers."""
    if isinstance(node, And):
        vals = [_reference(i, row) for i in node.items]
        return False if False in vals else (None if None in vals else True)
    if isinstance(node, Or):
        vals = [_reference(i, row) for i in node.items]
        return True if True in vals else (None if None in vals else False)
    if isinstance(node, Not):
        v = _reference(node.item, row)
        return None if v is None else not v
    if isinstance(node, Compare):
        a, b = _value(node.left, row), _value(node.right, row)
        if a is None or b is None:
            return None
        if isinstance(a, (bool, np.bool_)) or isinstance(a, str):
            return _CMP[node.op](a, b)
        return _CMP[node.op](float(a), float(b))
    v = row[node.column]
    if node.op == "is null":
        return _missing(v)
    if node.op == "is not null":
        return not _missing(v)
    if _missing(v):
        return None
    kind = RANDOM_KINDS[node.column]
    conv = {"number": float, "bool": lambda s: s in ("true", "1"), "text": str}[kind]
    if node.op == "in":
        return any((float(v) if kind == "number" else v) == conv(w) for w in node.value)
    if node.op == "contains":
        return node.value.lower() in v.lower()
    if node.op == "=~":
        return node.value.lower() == v.lower()
    if node.op == "has":
        return node.value in v.split()
    if node.op == "matches":
        return re.search(node.value, v) is not None
    return _CMP[node.op](float(v) if kind == "number" else v, conv(node.value))


@pytest.fixture(scope="module")
def random_con():
    c = duckdb.connect(config={"enable_external_access": False})
    c.register("r", RANDOM_DF)
    yield c
    c.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trees)
def test_random_trees_print_parse_and_run_the_same_everywhere(random_con, tree):
    assert parse(to_q(tree)) == tree
    expected = [i for i, row in enumerate(RECORDS) if _reference(tree, row) is True]
    assert engine_rows(tree, RANDOM_DF) == expected, to_q(tree)
    assert duck_rows(random_con, tree, "r", RANDOM_KINDS) == expected, to_q(tree)
    assert TableQuery(RANDOM_DF).select([tree]).tolist() == expected


GRAMMAR = list("{}()abxyt _=!<>~&|+-*/,\"'\\0123.e") + ["in", "is", "not", "null", "contains", "matches", "has"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(GRAMMAR), max_size=25).map("".join) | st.text(max_size=40))
def test_any_text_parses_to_a_tree_or_a_query_error(text):
    try:
        tree = parse(text)
    except QueryError as e:
        assert str(e) and (e.position is None or 0 <= e.position <= len(text))
    else:
        assert tree is None or isinstance(tree, NODES)
        assert parse(to_q(tree)) == tree
