"""Filter text → tree: a recursive-descent parser reading tokens on demand (a value's extent
depends on where it is: a bare word on the right of an operator is text, on the left a column).

Parsing is one left-to-right pass (each value is read at most twice) within the bounds of
:mod:`sde.filters.language`; it raises :class:`QueryError` and nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from sde.filters.language import (
    _OPS_TEXT,
    EXAMPLE,
    MAX_ARITHMETIC,
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_QUERY_LENGTH,
    UNNAMED_FIELD_FIX,
    QueryError,
    _cut,
    _syntax_error,
    braced_name,
    check_clause_count,
    check_column,
)
from sde.filters.tree import (
    NODES,
    And,
    Arith,
    Clause,
    Column,
    Compare,
    Expr,
    Negate,
    Node,
    Not,
    Number,
    Or,
    _parse_float,
    _shown,
    column_refs,
    conjuncts,
    to_q,
)

_WORD_OPS = {"contains": "contains", "has": "has", "matches": "matches", "in": "in", "is": "is",
             "ieq": "=~", "eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_OPERATOR_CHARS = "=!<>"
# Operators of other languages, and what they are here.
_MEANT = {"<>": "!=", "!==": "!=", "=!": "!=", "><": "!=", "===": "=", "=>": ">=", "=<": "<="}
# Longest first, so "<=" is not read as "<" followed by a value "=...".
_SYMBOL_OPS = (("==", "="), ("=~", "=~"), ("!=", "!="), ("<=", "<="), (">=", ">="), ("=", "="),
               ("<", "<"), (">", ">"))
_IDENT = re.compile(r"[^\W\d]\w*")
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?![\w.])")


#: What may stand before a ")" no "(" opened in an unquoted value: a face's (":)", ";-)", "=)", "^)").
_FACE_BEFORE_PAREN = frozenset(":;=-^")


class _Fallback(Exception):
    """The right-hand side is not arithmetic: read it as a plain value instead."""


class _LimitError(QueryError):
    """A bound was crossed: reported as is, never taken as a hint to read the text otherwise."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.q = text
        self.n = len(text)
        self.i = 0
        self.depth = 0
        self.clauses = 0
        self.arith = 0

    # -- characters ------------------------------------------------------------------------------

    def ws(self) -> int:
        q, n, i = self.q, self.n, self.i
        while i < n and q[i].isspace():
            i += 1
        self.i = i
        return i

    def at(self, s: str) -> bool:
        return self.q.startswith(s, self.i)

    def found(self) -> str:
        return f'"{self.q[self.i]}"' if self.i < self.n else "the end"

    def nest(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _LimitError(f"The filter nests too deeply at character {pos + 1} (at most {MAX_DEPTH} levels "
                             f"of parentheses, ! and minus signs). Example: {EXAMPLE}", pos)

    # -- conditions ------------------------------------------------------------------------------

    def filter(self) -> Node | None:
        if self.ws() == self.n:
            return None
        node = self.or_()
        if self.ws() < self.n:
            c = self.q[self.i]
            if c == ")":
                raise _syntax_error('unexpected ")" (no "(" to close)', self.i)
            after = " after the value" if self.q[: self.i].rstrip()[-1:] in ("\"", "'") else ""
            raise _syntax_error(f'unexpected "{c}"{after} (join clauses with && or ||)', self.i)
        return node

    def or_(self) -> Node:
        return self._chain("||", Or, self.and_)

    def and_(self) -> Node:
        return self._chain("&&", And, self.unary)

    def _chain(self, symbol: str, kind: type, operand: Callable[[], Any]) -> Any:
        start = self.ws()
        first = operand()
        items = [first]
        while self.ws() < self.n and self.at(symbol):
            op_pos = self.i
            self.i += 2
            if self.ws() == self.n:
                raise _syntax_error(f"nothing after the last {symbol} (remove it or add a clause)", op_pos)
            items.append(operand())
        if len(items) == 1:
            return first
        flat: list[Node] = []
        for item in items:
            flat.extend(item.items if isinstance(item, kind) else [item])
        return kind(tuple(flat), pos=start)

    def unary(self) -> Any:
        start = self.ws()
        if self.at("!") and not self.at("!="):
            self.i += 1
            return self._negated(start)
        m = _IDENT.match(self.q, start)
        if m is not None and m.group(0).lower() == "not":
            self.i = m.end()
            nxt = self.ws()
            if nxt < self.n and self._operator_here() is None and self.q[nxt] not in "+-*/&|)":
                return self._negated(start)
            self.i = start
        return self.comparison()

    def _negated(self, start: int) -> Not:
        self.nest(start)
        item = self.unary()
        self.depth -= 1
        return Not(item, pos=start)

    def comparison(self) -> Any:
        start = self.ws()
        if self.at("&&") or self.at("||"):
            raise _syntax_error(f"empty clause (an extra {self.q[start:start + 2]}?)", start)
        lhs = self.additive(rhs=False)
        self.ws()
        op_pos = self.i
        op = self._operator_here()
        if isinstance(lhs, NODES):  # a condition in parentheses
            if op is not None:
                raise _syntax_error("a condition in ( ) cannot be compared with a value", op_pos)
            return lhs
        if op is None:
            if self.i < self.n and self.q[self.i] == ")" and self.depth > 0:
                return lhs  # arithmetic in parentheses, e.g. ({a} + {b}) / 2 > 1
            raise _syntax_error(f"expected an operator ({_OPS_TEXT}) after {_shown(lhs)}, found {self.found()}",
                                self.i)
        word, self.i = op
        self._refuse_run_on_operator(op_pos)
        if not any(True for _ in column_refs(lhs)):
            raise _syntax_error("the left side needs a column, like {wer} > 20", start)
        self.clauses += 1
        check_clause_count(self.clauses)
        if word in ("is", "in", "contains", "has", "matches", "=~"):
            if not isinstance(lhs, Column):
                raise _syntax_error(f"{word} tests one column, like {{text}} {word} …", start)
            if word == "is":
                return self._is_null(lhs)
            if word == "in":
                return self._in_list(lhs)
            value, value_pos = self._literal(f"{_shown(lhs)} {word}")
            return Clause(lhs.name, word, value, pos=lhs.pos, value_pos=value_pos)
        right = self._right_side(f"{_shown(lhs)} {word}", needs_column=isinstance(lhs, Column))
        if isinstance(right, tuple):  # a plain value
            value, value_pos = right
            if isinstance(lhs, Column):
                return Clause(lhs.name, word, value, pos=lhs.pos, value_pos=value_pos,
                              bare=self.q[value_pos] not in "\"'")
            number = _parse_float(value)
            if number is None:
                raise QueryError(f'{_shown(lhs)} is arithmetic: "{_cut(value)}" at character {value_pos + 1} '
                                 f"is not a number. Example: {{wer_b}} - {{wer}} > 10", value_pos)
            return Compare(lhs, word, Number(number, pos=value_pos), pos=start)
        return Compare(lhs, word, right, pos=start)

    def _refuse_run_on_operator(self, op_pos: int) -> None:
        """`<>`, `!==`, `=>`: an operator of another language runs on into the value, which would
        then be compared as the text `> "en"` and silently match every line or none."""
        end = op_pos
        while end < self.n and self.q[end] in _OPERATOR_CHARS:
            end += 1
        if end > self.i and self.q[op_pos] in _OPERATOR_CHARS:
            typed = self.q[op_pos:end]
            meant = _MEANT.get(typed)
            hint = f"use {meant}" if meant else f"the operators are {_OPS_TEXT}"
            raise _syntax_error(f'"{typed}" is not an operator: {hint} (quote a value that starts with '
                                f'{self.q[self.i]})', op_pos)

    def _operator_here(self) -> tuple[str, int] | None:
        """(canonical operator, position after it) if an operator starts at the current position."""
        i = self.i
        for sym, canon in _SYMBOL_OPS:
            if self.q.startswith(sym, i):
                return canon, i + len(sym)
        m = _IDENT.match(self.q, i)
        if m is not None and m.group(0).lower() in _WORD_OPS:
            return _WORD_OPS[m.group(0).lower()], m.end()
        return None

    def _is_null(self, col: Column) -> Clause:
        words: list[str] = []
        start = self.ws()
        for _ in range(2):
            self.ws()
            m = _IDENT.match(self.q, self.i)
            if m is None:
                break
            words.append(m.group(0).lower())
            self.i = m.end()
            if words[-1] != "not":
                break
        if words not in (["null"], ["not", "null"]):
            raise _syntax_error(f"expected null or not null after {_shown(col)} is", start)
        return Clause(col.name, "is null" if words == ["null"] else "is not null", pos=col.pos)

    def _in_list(self, col: Column) -> Clause:
        self.ws()
        open_pos = self.i
        if not self.at("("):
            raise _syntax_error(f'in takes a list in parentheses, like {_shown(col)} in ("a", "b")', self.i)
        self.i += 1
        values: list[str] = []
        while True:
            self.ws()
            if self.at(")") and not values:
                raise _syntax_error("the in list is empty", self.i)
            if self.i < self.n and self.q[self.i] in "\"'":
                value, self.i = _read_quoted(self.q, self.i)
            else:
                value = self._bare_item()
            values.append(value)
            if len(values) > MAX_IN_VALUES:
                raise QueryError(f"An in list has at most {MAX_IN_VALUES} values (at character {open_pos + 1}).",
                                 open_pos)
            self.ws()
            if self.at(","):
                self.i += 1
            elif self.at(")"):
                self.i += 1
                return Clause(col.name, "in", tuple(values), pos=col.pos, value_pos=open_pos)
            elif self.i == self.n:
                raise _syntax_error("missing ) at the end of the in list", open_pos)
            else:
                raise _syntax_error(f"expected , or ) in the in list, found {self.found()}", self.i)

    def _bare_item(self) -> str:
        start = j = self.i
        while j < self.n and self.q[j] not in ",()":
            if self.q[j] in "{}\"'":
                raise _syntax_error(f'unexpected "{self.q[j]}" in the in list (quote values: in ("a", "b"))', j)
            j += 1
        value = self.q[start:j].strip()
        if not value:
            raise _syntax_error("empty value in the in list", start)
        self.i = j
        return value

    # -- values ----------------------------------------------------------------------------------

    def _value_start(self, after: str) -> tuple[int, str | None]:
        """Where the value after ``after`` starts (a syntax error when there is none), and the
        string there when it is quoted (read, and the position moved past it)."""
        pos = self.ws()
        if pos == self.n or self.at("&&") or self.at("||"):
            raise _syntax_error(f"missing value after {after}", pos)
        if self.q[pos] in "\"'":
            value, self.i = _read_quoted(self.q, pos)
            return pos, value
        return pos, None

    def _literal(self, after: str) -> tuple[str, int]:
        """A quoted string or a bare value, and where it starts."""
        pos, quoted = self._value_start(after)
        if quoted is not None:
            return quoted, pos
        value = self._bare_value()
        if not value:
            raise _syntax_error(f"missing value after {after}", pos)
        return value, pos

    def _bare_value(self) -> str:
        """Text up to the next && or || (or the ) closing the group this clause is in)."""
        q, n = self.q, self.n
        start = j = self.i
        balance = 0
        while j < n:
            c = q[j]
            if c in "&|" and q.startswith(c + c, j):
                break
            if c == "(":
                balance += 1
            elif c == ")":
                if balance:
                    balance -= 1
                elif self.depth:
                    break
                elif j == start or q[j - 1] not in _FACE_BEFORE_PAREN:
                    # a typo ("{speaker} = spk_4)") read into the value matched nothing, silently;
                    # a face (":)", ";-)") is a value as it stands
                    raise _syntax_error('unexpected ")" (no "(" to close; if it is part of the value, quote the '
                                        'value)', j)
            elif c == "{":
                # A bare value holding "{" is almost always a missing "&&": saying so beats
                # silently matching nothing.
                raise _syntax_error('unexpected "{" in a value (missing && between clauses? '
                                    'quote the value if it contains {)', j)
            j += 1
        self.i = j
        return q[start:j].strip()

    def _right_side(self, after: str, needs_column: bool) -> Expr | tuple[str, int]:
        """Arithmetic (``{wer} + 5``), else a plain value (text, as written). Right of a plain
        column, arithmetic must name a column: ``{date} = 2021-05-03`` is text, not 2013."""
        pos, quoted = self._value_start(after)
        if quoted is not None:
            return quoted, pos
        saved = (self.depth, self.arith)
        try:
            expr = self.additive(rhs=True)
            self.ws()
            ends = self.i == self.n or self.at("&&") or self.at("||") or self.at(")")
            if ends and (not needs_column or any(True for _ in column_refs(expr))):
                return expr
        except _LimitError:
            raise
        except (_Fallback, QueryError):
            pass
        # Not arithmetic on a column (e.g. a date "2021-05-03" or "(laughs)"): text as written.
        self.i = pos
        self.depth, self.arith = saved
        value = self._bare_value()
        if not value:
            raise _syntax_error(f"missing value after {after}", pos)
        return value, pos

    # -- arithmetic ------------------------------------------------------------------------------

    def additive(self, rhs: bool) -> Any:
        left = self.term(rhs)
        while self.ws() < self.n and self.q[self.i] in "+-":
            left = self._binary(left, self.q[self.i], self.term, rhs)
        return left

    def term(self, rhs: bool) -> Any:
        left = self.signed(rhs)
        while self.ws() < self.n and self.q[self.i] in "*/":
            left = self._binary(left, self.q[self.i], self.signed, rhs)
        return left

    def _binary(self, left: Any, op: str, operand: Callable[[bool], Any], rhs: bool) -> Arith:
        op_pos = self.i
        self.i += 1
        self.arith += 1
        if self.arith > MAX_ARITHMETIC:
            raise _LimitError(f"The filter has more than {MAX_ARITHMETIC} arithmetic operators "
                             f"(at character {op_pos + 1}).", op_pos)
        right = operand(rhs)
        for side in (left, right):
            if isinstance(side, NODES):
                if rhs:
                    raise _Fallback()
                raise _syntax_error(f"{op} works on numbers and number columns, not on a condition", op_pos)
        return Arith(op, left, right, pos=op_pos)

    def signed(self, rhs: bool) -> Any:
        start = self.ws()
        if self.at("-"):
            self.i += 1
            self.nest(start)
            operand = self.signed(rhs)
            self.depth -= 1
            if isinstance(operand, NODES):
                if rhs:
                    raise _Fallback()
                raise _syntax_error("- works on numbers and number columns, not on a condition", start)
            if isinstance(operand, Number):  # -5 is a number, not arithmetic
                return Number(-operand.value, pos=start)
            return Negate(operand, pos=start)
        return self.primary(rhs)

    def primary(self, rhs: bool) -> Any:
        start = self.ws()
        q = self.q
        if start == self.n:
            if rhs:
                raise _Fallback()
            raise _syntax_error("expected a column name like {wer} or wer, found the end", start)
        c = q[start]
        if c == "{":
            braced = braced_name(q, start)
            if braced is None:
                raise _syntax_error("missing } after the column name", start)
            raw, close = braced
            name = raw.strip()
            if not name:
                raise _syntax_error(f"empty column name {{}} ({UNNAMED_FIELD_FIX})", start)
            self.i = close + 1
            return Column(name, pos=start + 1 + (len(raw) - len(raw.lstrip())))
        if c == "(":
            self.i += 1
            self.nest(start)
            inner = self.additive(rhs=True) if rhs else self.or_()
            if self.ws() == self.n or not self.at(")"):
                if rhs:
                    raise _Fallback()
                if self.i == self.n:
                    raise _syntax_error(f'missing ")" to close the "(" at character {start + 1}', self.i)
                raise _syntax_error(f"expected &&, || or ) here, found {self.found()}", self.i)
            self.i += 1
            self.depth -= 1
            return inner
        m = _NUMBER.match(q, start)
        if m is not None:
            value = float(m.group(0))
            if math.isinf(value):
                if rhs:
                    raise _Fallback()
                raise _syntax_error(f"the number {_cut(m.group(0))} is too large", start)
            self.i = m.end()
            return Number(value, pos=start)
        if rhs:
            raise _Fallback()
        m = _IDENT.match(q, start)
        if m is not None:
            self.i = m.end()
            return Column(m.group(0), pos=start)
        raise _syntax_error("expected a column name like {wer} or wer", start)


def _read_quoted(q: str, i: int) -> tuple[str, int]:
    """The string quoted at ``q[i]`` and the position after its closing quote."""
    quote = q[i]
    out: list[str] = []
    j = i + 1
    n = len(q)
    while j < n:
        ch = q[j]
        if ch == "\\" and j + 1 < n and q[j + 1] in (quote, "\\"):
            out.append(q[j + 1])
            j += 2
            continue
        if ch == quote:
            return "".join(out), j + 1
        out.append(ch)
        j += 1
    raise _syntax_error(f"unterminated string: the {quote} here is never closed", i)


def parse(text: str | None) -> Node | None:
    """Parse filter text into a tree; ``""``/``None``/blank → None. Raises only :class:`QueryError`."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise QueryError(f"The filter must be text, like: {EXAMPLE}")
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"The filter is too long ({len(text)} characters, at most {MAX_QUERY_LENGTH}).")
    try:
        return _Parser(text).filter()
    except QueryError as e:
        e.text = text
        raise


def parse_filter(text: str | None, columns: Sequence[str] | None = None) -> list[Node]:
    """Parse filter text into the parts of its top-level AND (``[]`` for no filter).

    ``'{wer} > 20 && {speaker} = a'`` gives two :class:`Clause`; a part may also be an
    :class:`Or`, :class:`Not` or :class:`Compare`. When ``columns`` is given, unknown column names
    are reported here too (with suggestions and the position); otherwise that check happens when
    the filter is bound to a table. Raises :class:`QueryError` (and nothing else).
    """
    tree = parse(text)
    if columns is not None and tree is not None:
        try:
            for col in column_refs(tree):
                check_column(col.name, columns, col.pos)
        except QueryError as e:
            e.text = text
            raise
    return conjuncts(tree)


def combine_filters(*texts: str | None) -> str:
    """Filter texts joined by ``&&``: a part with a top-level ``||`` is put in parentheses (and
    printed canonically), so ``a || b`` and ``c`` give ``(a || b) && c``, not ``a || (b && c)``."""
    parts = []
    for text in texts:
        if not text or not text.strip():
            continue
        try:
            tree = parse(text)
        except QueryError:
            tree = None  # kept as written: its error is reported when the whole filter is used
        parts.append(f"({to_q(tree)})" if isinstance(tree, Or) else text.strip())
    return " && ".join(parts)
