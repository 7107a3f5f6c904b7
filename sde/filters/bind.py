"""Binding a filter tree to a table: column names checked, values converted to each column's
type, regexes checked against what RE2 (DuckDB's regex engine) accepts. :mod:`sde.filters.sql`
compiles the bound tree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.filters.regex import repetition_problem
from sde.filters.language import MAX_REGEX_LENGTH, TEXT_OPERATORS, QueryError, _at, _cut, check_column, column_ref
from sde.filters.tree import (
    And,
    Clause,
    Column,
    Compare,
    Expr,
    Negate,
    Node,
    Not,
    Number,
    Or,
    _format_number,
    _parse_float,
    _shown,
)
from sde.text import RE2_WHITESPACE

NUMBER, TEXT, BOOL, OTHER, VIRTUAL = "number", "text", "bool", "other", "virtual"
_SURROGATE = re.compile("[\ud800-\udfff]")


def column_kind(dtype: Any) -> str:
    """A pandas dtype's kind for filtering: number, text, bool or other (sortable, not filterable)."""
    if isinstance(dtype, pd.ArrowDtype):
        t = dtype.pyarrow_dtype
        if pa.types.is_boolean(t):
            return BOOL
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            return NUMBER
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return TEXT
        return OTHER
    if pd.api.types.is_bool_dtype(dtype):
        return BOOL
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return NUMBER
    if isinstance(dtype, (pd.StringDtype, pd.CategoricalDtype)) or dtype == np.dtype(object):
        return TEXT
    return OTHER


def duckdb_kind(type_name: str) -> str:
    """A DuckDB column type's kind (``DOUBLE`` → number, ``VARCHAR`` → text, ...)."""
    t = str(type_name).upper().split("(")[0].strip()
    if t in ("BOOLEAN", "BOOL"):
        return BOOL
    if t in ("VARCHAR", "TEXT", "STRING"):
        return TEXT
    if t in ("TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
             "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "REAL", "DOUBLE", "DECIMAL", "NUMERIC"):
        return NUMBER
    return OTHER


def bind(node: Node, kinds: Mapping[str, str], text: str | None = None) -> Node:
    """The tree with each clause checked against the columns' kinds (``{name: "number" | "text" |
    "bool" | "other" | "virtual"}``) and its values converted (floats for number columns, bools
    for true/false ones, text for text ones). Raises :class:`QueryError` with the position."""
    try:
        return _bind(node, kinds)
    except QueryError as e:
        if e.text is None:
            e.text = text
        raise


def _bind(node: Node, kinds: Mapping[str, str]) -> Node:
    if isinstance(node, Clause):
        return _bind_clause(node, kinds)
    if isinstance(node, Compare):
        left, right = _expr_kind(node.left, kinds), _expr_kind(node.right, kinds)
        if left != right:
            raise QueryError(f"Cannot compare {_shown(node.left)} ({left}) with {_shown(node.right)} ({right})"
                             f"{_at(node.pos)}.", node.pos)
        if left == BOOL and node.op not in ("=", "!="):
            raise QueryError(f"True/false columns compare with = or != only{_at(node.pos)}.", node.pos)
        return node
    if isinstance(node, (And, Or)):
        return type(node)(tuple(_bind(i, kinds) for i in node.items), pos=node.pos)
    if isinstance(node, Not):
        return Not(_bind(node.item, kinds), pos=node.pos)
    raise QueryError(f"Expected filter clauses, got {type(node).__name__}.")


def _kind_of(name: str, kinds: Mapping[str, str], pos: int | None) -> str:
    if name not in kinds:
        check_column(name, list(kinds), pos)
    return kinds[name]


def _expr_kind(e: Expr, kinds: Mapping[str, str]) -> str:
    if isinstance(e, Number):
        return NUMBER
    if isinstance(e, Column):
        kind = _kind_of(e.name, kinds, e.pos)
        if kind == VIRTUAL:
            raise QueryError(f"{{{e.name}}} is a filter-only column: it cannot be compared with another "
                             f"column{_at(e.pos)}.", e.pos)
        if kind == OTHER:
            raise QueryError(f"{{{e.name}}} cannot be filtered{_at(e.pos)}; it can be sorted.", e.pos)
        return kind
    for operand in ((e.operand,) if isinstance(e, Negate) else (e.left, e.right)):
        kind = _expr_kind(operand, kinds)
        if kind != NUMBER:
            where = operand.pos if isinstance(operand, Column) else e.pos
            raise QueryError(f"Arithmetic works on numbers: {_shown(operand)} is a {kind} column{_at(where)}.",
                             where)
    return NUMBER


def _bind_clause(c: Clause, kinds: Mapping[str, str]) -> Clause:
    kind = _kind_of(c.column, kinds, c.pos)
    col = column_ref(c.column)
    op, value = c.op, c.value
    if op in ("is null", "is not null"):
        if kind == VIRTUAL:
            raise QueryError(f"{col} is a filter-only column: it is never missing{_at(c.pos)}.", c.pos)
        return c
    if kind == VIRTUAL:
        if op == "in":
            raise QueryError(f"{col} is a filter-only column: in is not supported on it{_at(c.pos)}.", c.pos)
        return replace(c, value=_as_text(value, c))
    # where a value is: an in list's position is its "("
    where = (" in the list" if op == "in" else "") + _at(c.value_pos)
    if kind == NUMBER:
        if op in TEXT_OPERATORS:
            raise QueryError(f"{col}{_at(c.pos)} is a number column: {op} works on text columns. "
                             f"Use = != < <= > >= in, e.g. {col} > 20.", c.pos)
        convert: Callable[[Any], Any] = lambda v: _as_float(v, col, c.value_pos, where)  # noqa: E731
    elif kind == BOOL:
        if op not in ("=", "!=", "in"):
            raise QueryError(f"{col}{_at(c.pos)} is a true/false column: use {col} = true or {col} = false.", c.pos)
        convert = lambda v: _as_bool(v, col, c.value_pos, where)  # noqa: E731
    elif kind == TEXT and op in ORDERINGS and (_is_number(value) or c.bare_number):
        # {snr} < 2 on a column whose values are mostly numbers (and some "n/a"): ordered as numbers,
        # not as text, where "12.5" < "2"; sde.filters.sql reads the values that are numbers
        convert = lambda v: _as_float(v, col, c.value_pos, where)  # noqa: E731
    elif kind == TEXT:
        convert = lambda v: _as_text(v, c)  # noqa: E731
    else:
        raise QueryError(f"{col} cannot be filtered{_at(c.pos)}; it can be sorted (or tested with is null).",
                         c.pos)
    if op == "in":
        return replace(c, value=tuple(convert(v) for v in value))  # type: ignore[union-attr]
    value = convert(value)
    if op == "has" and (not value or len(value.split()) != 1 or value != value.strip()):
        raise QueryError(f'{col} has "WORD" matches one whole word (a whitespace-separated token, '
                         f'case-sensitive), e.g. {col} has "cat"; got {_cut(repr(value))}{_at(c.value_pos)}.',
                         c.value_pos)
    if op == "matches":
        check_regex(value, col, c.value_pos)
    return replace(c, value=value)


#: The comparisons that order values: with an unquoted number, a text column compares as numbers.
ORDERINGS: tuple[str, ...] = ("<", "<=", ">", ">=")


def _is_number(value: Any) -> bool:
    """Whether a filter's value is a number (a grid's number filter), not text."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _as_text(v: Any, c: Clause) -> str:
    text = v if isinstance(v, str) else _format_number(v)
    if _SURROGATE.search(text):
        raise QueryError(f"The value for {{{c.column}}}{_at(c.value_pos)} holds an invalid character "
                         "(a lone UTF-16 surrogate).", c.value_pos)
    return text


def _as_float(value: Any, col: str, pos: int | None = None, where: str | None = None) -> float:
    where = _at(pos) if where is None else where
    if isinstance(value, (bool, np.bool_)):
        raise QueryError(f"{col} is a number column: {value!r}{where} is not a number. Example: {col} > 20", pos)
    if isinstance(value, (int, float, np.integer, np.floating)):
        f = float(value)
        if math.isnan(f):
            raise QueryError(f"{col} is a number column: NaN{where} is not a value to compare with. "
                             f"Example: {col} > 20",
                             pos)
        return f
    f = _parse_float(value)
    if f is None:
        raise QueryError(f'{col} is a number column: "{_cut(value)}"{where} is not a number. Example: {col} > 20',
                         pos)
    return f


def _as_bool(value: Any, col: str, pos: int | None = None, where: str | None = None) -> bool:
    where = _at(pos) if where is None else where
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value) in (0.0, 1.0):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise QueryError(f'{col} is a true/false column: "{_cut(str(value))}"{where} is neither. '
                     f'Example: {col} = true', pos)


# RE2 (pyarrow's and DuckDB's regex engine) has no backtracking features; say which one is missing
# rather than RE2's terse "invalid perl operator".
_REGEX_GROUPS = (("(?=", "lookahead (?=…)"), ("(?!", "negative lookahead (?!…)"),
                 ("(?<=", "lookbehind (?<=…)"), ("(?<!", "negative lookbehind (?<!…)"),
                 ("(?>", "atomic groups (?>…)"), ("(?(", "conditionals (?(…)…)"),
                 ("(?<", "named groups written (?<name>…) (write (?P<name>…))"))


def check_regex(pattern: str, col: str = "{text}", pos: int | None = None) -> None:
    """QueryError unless ``pattern`` is an RE2 regex both engines accept, of bounded length."""
    where = _at(pos)
    if len(pattern) > MAX_REGEX_LENGTH:
        raise QueryError(f"The regex for {col}{where} is too long ({len(pattern)} characters, "
                         f"at most {MAX_REGEX_LENGTH}).", pos)
    problem = _unsupported_regex(pattern)
    if problem is None:
        try:
            pc.match_substring_regex(pa.array([""], pa.string()), pattern=pattern)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, UnicodeError) as e:
            problem = str(e).removeprefix("Invalid regular expression: ")
            if (limit := repetition_problem(problem, pattern, col, where)) is not None:
                raise QueryError(f"{limit}.", pos) from None
    if problem is not None:
        raise QueryError(f"{col} matches{where}: not a regular expression sde can run ({_cut(problem, 120)}). "
                         "The syntax is RE2's (no lookaround or backreferences), e.g. "
                         f'{col} matches "^(uh|um) ".', pos)


def _unsupported_regex(p: str) -> str | None:
    i, n = 0, len(p)
    in_class = False
    while i < n:
        c = p[i]
        if c == "\\":
            nxt = p[i + 1 : i + 2]
            if nxt in tuple("123456789"):
                return f"backreferences like \\{nxt} are not supported"
            if nxt == "C":
                return "\\C (one byte) is not supported"
            i += 2
            if nxt in ("p", "P", "x") and p.startswith("{", i):  # \p{Han}, \x{4EAC}: the brace is the escape's own
                close = p.find("}", i)
                i = n if close < 0 else close + 1
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 1
            if p.startswith("^", i):
                i += 1
            if p.startswith("]", i):  # a leading ] is a literal
                i += 1
            continue
        elif c == "(":
            for prefix, name in _REGEX_GROUPS:
                if p.startswith(prefix, i) and not (prefix == "(?<" and p.startswith(("(?<=", "(?<!"), i)):
                    return f"{name} is not supported"
        elif c in "*+?}" and p.startswith("+", i + 1):
            return f"possessive quantifiers like {c}+ are not supported"
        i += 1
    return None


def re2_escape(text: str) -> str:
    """``text`` as an RE2 pattern matching exactly it (every ASCII non-word character escaped)."""
    out = []
    for ch in text:
        if ch == "\x00":
            out.append("\\x00")
        elif ch.isascii() and not (ch.isalnum() or ch == "_"):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def word_pattern(word: str) -> str:
    """RE2 pattern of ``has``: one whole token of ``str.split()`` (as the vocabulary, the word
    indexes and the metrics split words), cut at any whitespace ``str.isspace()`` accepts."""
    return f"(?:^|{RE2_WHITESPACE})" + re2_escape(word) + f"(?:{RE2_WHITESPACE}|$)"


def iequal_pattern(value: str) -> str:
    """RE2 pattern of ``=~`` (used with case-insensitive matching): the whole value, nothing more."""
    return "^" + re2_escape(value) + "$"
