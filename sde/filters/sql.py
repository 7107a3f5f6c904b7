"""Compiling a bound filter tree to a parameterised DuckDB ``WHERE`` clause: column names are
checked and quoted as identifiers, every value is a parameter (user text never becomes SQL).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sde.filters.bind import NUMBER, TEXT, VIRTUAL, bind, iequal_pattern, re2_escape, word_pattern
from sde.filters.regex import anchored_literals, like_pattern, literal_text
from sde.filters.tree import And, Clause, Column, Compare, Expr, Negate, Node, Not, Number, Or, conjuncts

@dataclass(frozen=True)
class VirtualSql:
    """One clause of a filter-only column as SQL (what its function returns to sde.query): a
    condition on ``pos``, the row's position in the table, e.g.
    ``pos IN (SELECT utt FROM errors WHERE op = ?)``; ``params`` for its ``?`` and ``tables``, the
    DataFrames / Arrow tables it reads, by the names it uses (registered for that query only)."""

    sql: str
    params: tuple[Any, ...] = ()
    tables: Mapping[str, Any] = field(default_factory=dict)


SqlVirtual = Callable[[str, str], tuple[str, Sequence[Any]]]
class IndexAnswer(NamedTuple):
    """A ``contains`` / ``has`` / ``matches`` clause answered from an index (sde.query's word
    indexes), as boolean columns of the query: ``rows``, those whose AND holds on every row the clause
    matches (on exactly those when ``exact``; none: every row); ``sure``, None or the one true on
    rows the clause matches for sure (the others of ``rows`` are tested); ``test``, None or a
    cheaper clause that, on the rows of ``rows`` not ``sure``, matches exactly where the clause does
    (a regex across words: its spaces as spaces)."""

    rows: tuple[str, ...]
    exact: bool
    sure: str | None = None
    test: Clause | None = None


#: ``fn(clause)``: the clause answered from an index (:class:`IndexAnswer`), or None where the index
#: cannot help.
IndexedSql = Callable[[Clause], "IndexAnswer | None"]
_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_NAN = "CAST('NaN' AS DOUBLE)"
_ASCII_RUN = re.compile(r"[\x00-\x7f]+")
#: The first characters (all ASCII) of a value that reads as a number (:func:`number_sql`): the
#: whitespace TRY_CAST skips (tab, line feed, vertical tab, form feed, carriage return, space), a
#: sign, a point, a digit, and the i of inf / infinity (an n can only start "nan": no number here).
NUMBER_STARTS: tuple[int, ...] = (9, 10, 11, 12, 13, 32, ord("+"), ord("-"), ord("."),
                                  *range(ord("0"), ord("9") + 1), ord("I"), ord("i"))


def number_sql(col: str) -> str:
    """The number the text ``col`` reads as, NULL where it reads as none: what DuckDB's
    ``TRY_CAST(… AS DOUBLE)`` accepts (``" 20 "``, ``"1e3"``, ``"-inf"``, ``"1_000"``), NaN excepted:
    a NaN is a missing number everywhere else (sde.filters.engine.arrow_column). The one rule of
    "reads as a number": a text column's ``{snr} < 10`` and its sorts (:func:`number_key_sql`)."""
    return f"NULLIF(TRY_CAST({col} AS DOUBLE), {_NAN})"


def number_key_sql(col: str) -> str:
    """:func:`number_sql`, cheap on text that is no number: TRY_CAST costs ~5x as much on a value it
    refuses as on a number (1M lines of transcripts: ~180 ms against ~40 here), so a value that
    cannot be one is NULL without it: one whose first character cannot start a number, or with a
    space between two ends that are not whitespace (a number holds none inside). The same answer
    on every value (tests/test_query_number_sorts.py compares the two)."""
    return (f"CASE WHEN ord({col}) NOT IN ({', '.join(map(str, NUMBER_STARTS))}) "
            f"OR (contains({col}, ' ') AND ord({col}) > 32 AND ord(right({col}, 1)) > 32) "
            f"THEN NULL ELSE {number_sql(col)} END")


def number_first_sql(col: str) -> str:
    """An ``ORDER BY`` (ascending) of a text column that orders the values reading as numbers
    (:func:`number_key_sql`) as numbers, equal numbers by their text ("007" < "7" < "7.0"), before
    the others in text order; missing values last."""
    return f"{number_key_sql(col)} ASC NULLS LAST, {col} ASC NULLS LAST"


def to_sql(tree: Node | Sequence[Node] | None, columns: Mapping[str, str], *,
           virtual: Mapping[str, SqlVirtual] | None = None,
           names: Mapping[str, str] | None = None,
           lower_columns: Container[str] = (),
           single_line_columns: Container[str] = ()) -> tuple[str, list[Any]]:
    """A DuckDB boolean expression (for ``WHERE``) and its parameters, for the ``?`` placeholders.

    ``columns`` maps each column name to its kind (:func:`column_kind`, :func:`duckdb_kind`).
    Column names are checked against it and quoted as identifiers; every value is a parameter.
    ``virtual`` maps a filter-only column to ``fn(op, value) -> (sql, params)``. ``names`` maps a
    column to the name it has in the SQL table when that differs (sde.query names them c0, c1, …:
    DuckDB identifiers ignore case, so "WER" and "wer" could not both be columns). No filter gives
    ``("TRUE", [])``. NaN must be stored as NULL (as DuckDB does when it reads a DataFrame).

    ``lower_columns``: text columns known to hold no character that ignoring case equates with an
    ASCII letter other than its lower case (no A-Z, no U+017F ſ, no U+212A Kelvin sign; see
    :func:`sde.filters.engine.holds_no_ascii_upper`). There ``contains`` / ``=~`` with ASCII text
    are a plain substring / equality test of its lower case (RE2's case-insensitive regex costs
    ~1.7x as much CPU on a scan); the rows matched are the same. ``single_line_columns``: text
    columns known to hold no line break (:func:`sde.filters.engine.holds_no_line_break`): there a
    regex of text and dots is its LIKE test alone.
    """
    parts = list(tree) if isinstance(tree, (list, tuple)) else conjuncts(tree)
    if not parts:
        return "TRUE", []
    kinds = dict(columns)
    for name in virtual or {}:
        kinds.setdefault(name, VIRTUAL)
    return bound_sql([bind(p, kinds) for p in parts], kinds, virtual=virtual, names=names,
                     lower_columns=lower_columns, single_line_columns=single_line_columns)


def bound_sql(parts: Sequence[Node], kinds: Mapping[str, str], *,
              virtual: Mapping[str, SqlVirtual] | None = None,
              names: Mapping[str, str] | None = None,
              lower_columns: Container[str] = (),
              single_line_columns: Container[str] = (),
              indexed: IndexedSql | None = None) -> tuple[str, list[Any]]:
    """:func:`to_sql` of parts already bound (:func:`sde.filters.bind`) against ``kinds``;
    ``indexed`` answers text clauses from an index where it can (see :data:`IndexedSql`)."""
    if not parts:
        return "TRUE", []
    params: list[Any] = []
    node = parts[0] if len(parts) == 1 else And(tuple(parts))
    return _Sql(kinds, virtual or {}, params, names or {}, lower_columns, single_line_columns, indexed).node(node), params


def quote_ident(name: str) -> str:
    """``name`` as a DuckDB identifier: double-quoted, inner quotes doubled (never user SQL)."""
    return '"' + name.replace('"', '""') + '"'


class _Sql:
    def __init__(self, kinds: Mapping[str, str], virtual: Mapping[str, SqlVirtual], params: list[Any],
                 names: Mapping[str, str], lower_columns: Container[str], single_line_columns: Container[str],
                 indexed: IndexedSql | None = None) -> None:
        self.kinds = kinds
        self.virtual = virtual
        self.params = params
        self.names = names
        self.lower_columns = lower_columns
        self.single_line_columns = single_line_columns
        self.indexed = indexed

    def param(self, value: Any) -> str:
        self.params.append(value)
        if isinstance(value, bool):
            return "CAST(? AS BOOLEAN)"
        if isinstance(value, float):
            return "CAST(? AS DOUBLE)"
        return "CAST(? AS VARCHAR)"

    def ident(self, name: str) -> str:
        return quote_ident(self.names.get(name, name))

    def node(self, n: Node) -> str:
        if isinstance(n, And):
            return "(" + " AND ".join(self.node(i) for i in n.items) + ")"
        if isinstance(n, Or):
            return "(" + " OR ".join(self.node(i) for i in n.items) + ")"
        if isinstance(n, Not):
            return f"(NOT {self.node(n.item)})"
        if isinstance(n, Compare):
            return f"({self.expr(n.left)} {_SQL_OPS[n.op]} {self.expr(n.right)})"
        return self.clause(n)

    def clause(self, c: Clause) -> str:
        col = self.ident(c.column)
        op, value = c.op, c.value
        if op == "is null":
            return f"({col} IS NULL)"
        if op == "is not null":
            return f"({col} IS NOT NULL)"
        if self.kinds[c.column] == VIRTUAL:
            sql, params = self.virtual[c.column](op, value)  # type: ignore[arg-type]
            self.params.extend(params)
            return f"({sql})"
        if op in _SQL_OPS:
            if self.kinds[c.column] == TEXT and isinstance(value, float):
                # an unquoted number on a text column (sde.filters.bind): the values that read as
                # numbers, compared as numbers; the others ("n/a", "", "nan") are unknown, as a
                # missing number is
                col = number_sql(col)
            return f"({col} {_SQL_OPS[op]} {self.param(value)})"
        if op == "in":
            return f"({col} IN ({', '.join(self.param(v) for v in value)}))"  # type: ignore[union-attr]
        answered = self.indexed(c) if self.indexed is not None and op in ("contains", "has", "matches") else None
        if answered is not None:
            rows = " AND ".join(answered.rows) or "TRUE"
            if answered.exact:
                return f"({rows})"
            tested = f"({rows} AND {self.text_clause(col, answered.test or c)})"
            return tested if answered.sure is None else f"({answered.sure} OR {tested})"
        return self.text_clause(col, c)

    def text_clause(self, col: str, c: Clause) -> str:
        op, value = c.op, c.value
        if op == "contains":
            return self.contains(col, c.column, value)  # type: ignore[arg-type]
        if op == "=~":
            if self.lowered_exactly(c.column, value):  # type: ignore[arg-type]
                return f"({col} = {self.param(value.lower())})"  # type: ignore[union-attr]
            return f"regexp_matches({col}, {self.param(iequal_pattern(value))}, 'i')"  # type: ignore[arg-type]
        if op == "has":
            # the word as a substring first: RE2 then reads only the lines holding it (1M lines, a
            # rare word: ~0.05 s instead of ~0.3), and its whitespace class, every character
            # str.isspace() accepts (sde.filters.bind.word_pattern), costs no more than \s did
            return (f"(contains({col}, {self.param(value)}) "
                    f"AND regexp_matches({col}, {self.param(word_pattern(value))}))")  # type: ignore[arg-type]
        return self.matches(col, c.column, value)  # type: ignore[arg-type]

    def matches(self, col: str, column: str, pattern: str) -> str:
        """RE2 on the line, after a comparison of the text a match must start or end with
        (sde.filters.regex.anchored_literals): ``^the .* of$`` reads the lines starting "the ". A regex
        that is plain text is a substring test (sde.filters.regex.literal_text); one of text, ``.``
        and ``.*`` without such a start or end a LIKE test (sde.filters.regex.like_pattern: ``a.*b``
        10M lines ~0.4 s instead of ~1.1), RE2 reading only the lines with a line break among those
        it keeps (RE2's ``.`` never matches one, LIKE's ``_`` and ``%`` do), and none in a column
        that holds no line break (``single_line_columns``)."""
        text = literal_text(pattern)
        if text is not None:
            return f"contains({col}, {self.param(text)})"
        prefix, suffix = anchored_literals(pattern)
        like = like_pattern(pattern) if not prefix and not suffix else None  # compared bytes leave RE2 few lines
        if like is not None:
            # ESCAPE only where the regex holds %, _ or \ (escaped): with it DuckDB's LIKE runs ~1.6x slower
            test = f"{col} LIKE {self.param(like)}" + (" ESCAPE '\\'" if "\\" in like else "")
            if column in self.single_line_columns:
                return f"({test})"
            return (f"({test} AND (NOT contains({col}, {self.param(chr(10))}) "
                    f"OR regexp_matches({col}, {self.param(pattern)})))")
        guards = ([f"starts_with({col}, {self.param(prefix)})"] if prefix else []) + \
                 ([f"ends_with({col}, {self.param(suffix)})"] if suffix else [])
        test = f"regexp_matches({col}, {self.param(pattern)})"
        return f"({' AND '.join([*guards, test])})" if guards else test

    def lowered_exactly(self, column: str, value: str) -> bool:
        """Whether ignoring case, ``value`` matches in ``column`` exactly what its lower case matches
        with case: ASCII text in a lower-case column. (Which SQL a clause gets depends on this and
        on the column, never on the value's text: that is always a parameter.)"""
        return value.isascii() and column in self.lower_columns

    def contains(self, col: str, column: str, value: str) -> str:
        if self.lowered_exactly(column, value):
            return f"contains({col}, {self.param(value.lower())})"
        runs = _ASCII_RUN.findall(value) if column in self.lower_columns else []
        if not runs:
            return f"regexp_matches({col}, {self.param(re2_escape(value))}, 'i')"
        # In a lower-case column the ASCII part of the text appears in lower case wherever the
        # text matches: a cheap substring test leaves the regex only the rows that have it.
        run = self.param(max(runs, key=len).lower())
        return f"(contains({col}, {run}) AND regexp_matches({col}, {self.param(re2_escape(value))}, 'i'))"

    def expr(self, e: Expr) -> str:
        """One side of a comparison. A NaN result (inf - inf, 0 * inf) is missing, like every other
        NaN. Arithmetic carries a NaN to the result, so the result alone is tested: a test at each
        operator repeated its operands (DuckDB's NULLIF repeats its first argument), 2^n of them for
        n nested operators, and a 200-character filter took a minute and gigabytes to plan."""
        sql = self._value(e)
        return sql if isinstance(e, (Number, Column)) else f"NULLIF({sql}, {_NAN})"

    def _value(self, e: Expr) -> str:
        if isinstance(e, Number):
            return self.param(float(e.value))
        if isinstance(e, Column):
            col = self.ident(e.name)
            # Number columns compute in DOUBLE, as numpy's float64 does (no integer overflow).
            return f"CAST({col} AS DOUBLE)" if self.kinds[e.name] == NUMBER else col
        if isinstance(e, Negate):
            return f"(-{self._value(e.operand)})"
        left = self._value(e.left)
        right = self._divisor(e.right) if e.op == "/" else self._value(e.right)
        return f"({left} {e.op} {right})"

    def _divisor(self, e: Expr) -> str:
        """A divisor, missing where it is 0: x / 0 is missing, never an error or inf. An expression
        goes through a lambda, which names its value once (a NULLIF would repeat it: see expr)."""
        if isinstance(e, Number) and float(e.value) == 0:
            return "CAST(NULL AS DOUBLE)"
        sql = self._value(e)
        if isinstance(e, Number):
            return sql
        if isinstance(e, Column):
            return f"NULLIF({sql}, 0)"
        return f"list_transform([{sql}], lambda d: CASE WHEN d = 0 THEN NULL ELSE d END)[1]"
