"""`contains` / `=~` on lower-case text columns compile to a plain substring / equality test (fast)
instead of RE2's case-insensitive regex (slow), and must select exactly the rows the regex selects:
on lower-case and mixed-case columns, with non-ASCII text, through TableQuery and as raw SQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from sde.filters import Clause, parse_filter, to_sql
from sde.filters.bind import iequal_pattern, re2_escape
from sde.filters.engine import _SCAN_BYTES, NOT_NOW, LowerCaseColumns, holds_no_ascii_upper, holds_no_line_break
from sde.query import TableQuery

MIXED = ["Ärger im Büro", "ärger im büro", "İstanbul", "istanbul", "ISTANBUL", "straße", "STRASSE", "strasse",
         "The end", "the end", "THE END", "ſecret", "secret", "Kelvin K", "kelvin k", "x\x00y", "", None,
         "a.b(c) 'quoted' \"too\"", "naïve CAFÉ", "naïve café", "ΣΊΣΥΦΟΣ", "σίσυφος", "ǅ dz"]
# Lower case as this engine means it: no A-Z, ſ or K (other capitals, such as Ä or Σ, may stay).
LOWER = [t for t in MIXED if t is None or not any(c in t for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZſ\u212a")]
NEEDLES = ["the", "THE", "The End", "ärger", "ÄRGER", "Ärger im", "İstanbul", "istanbul", "ISTANBUL", "straße",
           "STRASSE", "s", "S", "k", "K", "ſ", "\u212a", "", ".", "(C)", "'", '"too"', "\x00", "x\x00Y", "é", "É",
           "ΣΊΣΥΦΟΣ", "σ", "ς", "SECRET", "ǅ", "DZ", "naïve"]


def _frame(values: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame({"t": pd.array(values, dtype="string[pyarrow]")})


@pytest.fixture(scope="module")
def re2():
    """The regex path as it was, run by DuckDB directly: the meaning `contains` / `=~` keep."""
    con = duckdb.connect(config={"enable_external_access": False})

    def rows(values: list[str | None], op: str, needle: str) -> list[int]:
        pattern = re2_escape(needle) if op == "contains" else iequal_pattern(needle)
        con.register("x", pa.table({"t": pa.array(values, pa.large_string()), "i": list(range(len(values)))}))
        return [i for (i,) in con.execute("SELECT i FROM x WHERE regexp_matches(t, ?, 'i') ORDER BY i",
                                          [pattern]).fetchall()]

    yield rows
    con.close()


@pytest.fixture(scope="module")
def queries() -> dict[str, TableQuery]:
    return {"mixed": TableQuery(_frame(MIXED)), "lower": TableQuery(_frame(LOWER))}


def test_the_lower_case_table_is_lower_case_and_the_mixed_one_is_not(queries):
    assert "t" in queries["lower"]._engine.lower_case
    assert "t" not in queries["mixed"]._engine.lower_case


@pytest.mark.parametrize("op", ["contains", "=~"])
@pytest.mark.parametrize("needle", NEEDLES)
@pytest.mark.parametrize("table", ["lower", "mixed"])
def test_ignoring_case_selects_what_re2_selects(re2, queries, table, op, needle):
    values = LOWER if table == "lower" else MIXED
    assert queries[table].select([Clause("t", op, needle)]).tolist() == re2(values, op, needle)


@pytest.mark.parametrize("values, needle, expected", [
    (LOWER, "THE", ["the end"]),
    (MIXED, "THE", ["The end", "the end", "THE END"]),
    (LOWER, "ÄRGER", ["ärger im büro"]),
    (MIXED, "ärger", ["Ärger im Büro", "ärger im büro"]),
    (MIXED, "istanbul", ["istanbul", "ISTANBUL"]),  # simple case folding: İ is not I
    (MIXED, "STRASSE", ["STRASSE", "strasse"]),  # ...and ß is not ss
    (MIXED, "S", ["İstanbul", "istanbul", "ISTANBUL", "straße", "STRASSE", "strasse", "ſecret", "secret"]),  # ſ too
    (MIXED, "k", ["Kelvin K", "kelvin k"]),
    (LOWER, "CAFÉ", ["naïve café"]),
])
def test_contains_ignores_case_as_documented(values, needle, expected):
    got = TableQuery(_frame(values)).select(f'{{t}} contains "{needle}"')
    assert [values[i] for i in got] == expected


@pytest.mark.parametrize("q, lower, sql, params", [
    ('{t} contains "THE"', True, 'contains("t", CAST(? AS VARCHAR))', ["the"]),
    ('{t} contains "THE"', False, "regexp_matches(\"t\", CAST(? AS VARCHAR), 'i')", ["THE"]),
    ('{t} contains ":) 1"', True, 'contains("t", CAST(? AS VARCHAR))', [":) 1"]),
    ('{t} contains ":) 1"', False, "regexp_matches(\"t\", CAST(? AS VARCHAR), 'i')", [re2_escape(":) 1")]),
    ('{t} contains "Ärger"', True,
     "(contains(\"t\", CAST(? AS VARCHAR)) AND regexp_matches(\"t\", CAST(? AS VARCHAR), 'i'))", ["rger", "Ärger"]),
    ('{t} contains "Ärger"', False, "regexp_matches(\"t\", CAST(? AS VARCHAR), 'i')", ["Ärger"]),
    ('{t} =~ "EN"', True, '("t" = CAST(? AS VARCHAR))', ["en"]),
    ('{t} contains "\'); DROP TABLE t; --"', True, 'contains("t", CAST(? AS VARCHAR))', ["'); drop table t; --"]),
])
def test_a_lower_case_column_is_searched_without_the_regex(q, lower, sql, params):
    assert to_sql(parse_filter(q), {"t": "text"}, lower_columns=["t"] if lower else []) == (sql, params)


HOSTILE = ["x' OR '1'='1", "'); DROP TABLE t; --", "\x00", "a\x00b", "é日本🙂", "\u202e\u0301", "?", "$1", "%_",
           "CAST(? AS VARCHAR)", "\n", "Zebra crossing", "\"", "\\"]
SHAPES = {'contains("t", CAST(? AS VARCHAR))', '("t" = CAST(? AS VARCHAR))',
          "regexp_matches(\"t\", CAST(? AS VARCHAR), 'i')",
          "(contains(\"t\", CAST(? AS VARCHAR)) AND regexp_matches(\"t\", CAST(? AS VARCHAR), 'i'))"}


@pytest.mark.parametrize("value", HOSTILE, ids=ascii)
@pytest.mark.parametrize("op", ["contains", "=~"])
def test_hostile_values_on_a_lower_case_column_are_parameters(re2, op, value):
    sql, params = to_sql([Clause("t", op, value)], {"t": "text"}, lower_columns=["t"])
    assert sql in SHAPES and len(params) == sql.count("?")
    values = [v.lower() for v in LOWER if v is not None] + [value.lower()]
    values = [v for v in values if holds_no_ascii_upper(pa.array([v]))]
    assert TableQuery(_frame(values)).select([Clause("t", op, value)]).tolist() == re2(values, op, value)


def _chunked(*chunks: list[str | None], large: bool = True) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(c, pa.large_string() if large else pa.string()) for c in chunks])


CUT = "x" * (_SCAN_BYTES - 1)  # with it, the next character starts on the last byte of a scanned block


@pytest.mark.parametrize("values, expected", [
    (_chunked(["the end", "ärger", "Ä ΣΊΣΥΦΟΣ Ü", None, ""]), True),  # capitals, not ASCII ones
    (_chunked(["the end"], ["The end"]), False),
    (_chunked(["the end", "The end"], large=False), False),
    (_chunked(["ſecret"]), False),
    (_chunked(["kelvin \u212a"]), False),
    (_chunked([CUT + "ſ"]), False),  # cut between two scanned blocks
    (_chunked([CUT + "\u212a"]), False),
    (_chunked([CUT + "ü"]), True),
    (_chunked([]), True),
    (pa.array(["The end", "the end"], pa.large_string()).slice(1), True),  # only what the slice holds
    (pa.array(["the end", "The end"], pa.string()).slice(1), False),
    (pa.array([1, 2]), False),  # not text: unsure
])
def test_holds_no_ascii_upper(values, expected):
    assert holds_no_ascii_upper(values) is expected


@pytest.mark.parametrize("values, expected", [
    (_chunked(["the end", "a\rb", "\u2028", "\x85", None, ""]), True),  # RE2's "." matches these
    (_chunked(["the end"], ["a\nb"]), False),
    (pa.array(["a\nb", "ab"], pa.string()).slice(1), True),  # only what the slice holds
    (pa.array(["ab", "a\nb"], pa.string()).slice(1), False),
    (_chunked([CUT + "yz\n"]), False),  # in the second block scanned
    (_chunked([]), True),
    (iter([pa.array(["a"]), pa.array(["b\n"])]), False),  # chunks, one at a time
    (pa.array([1, 2]), False),  # not text: unsure
])
def test_holds_no_line_break(values, expected):
    assert holds_no_line_break(values) is expected


def test_re2_folds_no_character_but_s_and_k_onto_an_ascii_letters_other_case():
    """The premise of the plain search, checked against DuckDB's RE2 over all of Unicode: ignoring
    case, an ASCII character matches its two cases and, for s and k, ſ and K: nothing else."""
    with duckdb.connect() as con:
        near_ascii = [cp for (cp,) in con.execute(
            "SELECT cp FROM range(1, 1114112) r(cp) WHERE (cp < 55296 OR cp > 57343) "
            "AND regexp_matches(chr(cp::INT), '^[\\x01-\\x7f]$', 'i') ORDER BY cp").fetchall()]
        folded = {}
        for a in range(1, 128):
            got = con.execute("SELECT list(cp ORDER BY cp) FROM unnest(?::INT[]) u(cp) "
                              "WHERE regexp_matches(chr(cp), ?, 'i')", [near_ascii, "^" + re2_escape(chr(a)) + "$"])
            others = [chr(cp) for cp in got.fetchone()[0] or [] if chr(cp) not in (chr(a), chr(a).swapcase())]
            if others:
                folded[chr(a)] = others
    assert folded == {"K": ["\u212a"], "S": ["ſ"], "k": ["\u212a"], "s": ["ſ"]}


def test_each_column_is_read_once_even_when_asked_from_many_threads():
    reads: list[str] = []
    columns = {"text": pa.chunked_array([["the end"] * 1000]), "mixed": pa.chunked_array([["The end"]])}

    def values(column: str) -> pa.ChunkedArray | None:
        reads.append(column)
        return columns.get(column)  # None: not a text column

    lower = LowerCaseColumns(values)
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda c: c in lower, ["text", "mixed", "number"] * 20))
    assert found == [True, False, False] * 20
    assert sorted(reads) == ["mixed", "number", "text"]


def test_a_column_that_cannot_be_read_now_is_asked_again_until_it_can():
    reads: list[str] = []
    ready = {"text": False}

    def values(column: str) -> pa.ChunkedArray | object:
        reads.append(column)
        return pa.chunked_array([["the end"]]) if ready[column] else NOT_NOW

    lower = LowerCaseColumns(values)
    assert "text" not in lower and "text" not in lower  # not read: no answer kept
    ready["text"] = True
    assert "text" in lower and "text" in lower  # read once, then remembered
    assert reads == ["text"] * 3
