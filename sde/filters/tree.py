"""The filter tree: its nodes, walks over it, and its canonical text.

Positions (0-based offsets in the filter text) are for messages only: they take no part in equality
or hashing, so a parsed tree equals the same tree built by hand. :func:`to_q` prints a tree back
as filter text (``parse(to_q(t)) == t``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from sde.filters.language import (
    _OPS_TEXT,
    COMPARISONS,
    EXAMPLE,
    MAX_ARITHMETIC,
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_QUERY_LENGTH,
    OPERATORS,
    QueryError,
    _cut,
    check_clause_count,
    column_ref,
)


def _pos() -> Any:
    return field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Column:
    """A column's value in an expression (``{wer}``)."""

    name: str
    pos: int | None = _pos()


@dataclass(frozen=True)
class Number:
    value: float
    pos: int | None = _pos()


@dataclass(frozen=True)
class Arith:
    """``left op right`` with op one of ``+ - * /`` (float arithmetic; x / 0 is missing)."""

    op: str
    left: Expr
    right: Expr
    pos: int | None = _pos()


@dataclass(frozen=True)
class Negate:
    operand: Expr
    pos: int | None = _pos()


Expr = Union[Column, Number, Arith, Negate]
_EXPRS = (Column, Number, Arith, Negate)
_Value = Union[str, float, int, bool, None, tuple]


@dataclass(frozen=True)
class Clause:
    """``column OP value``: a column tested against a literal.

    ``value`` is the text as the user wrote it (the parser does not know column types, and
    ``{speaker} = 007`` must stay "007"); it is converted when bound to a table (:func:`bind`).
    Numbers and booleans are accepted too (grid filters carry floats). ``in`` takes a tuple of
    values; ``is null`` / ``is not null`` take none.
    """

    column: str
    op: str
    value: _Value = None
    pos: int | None = _pos()        # where the column name starts
    value_pos: int | None = _pos()  # where the value starts
    # Whether the value was written unquoted: {snr} < 2 on a text column orders its values as
    # numbers, {snr} < "2" as text (sde.filters.bind).
    bare: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise QueryError(f'Unknown operator "{_cut(str(self.op))}": use one of {_OPS_TEXT}. Example: {EXAMPLE}')
        if self.op in ("is null", "is not null"):
            if self.value is not None:
                raise QueryError(f"{self.op} takes no value: {{{self.column}}} {self.op}")
        elif self.op == "in":
            if isinstance(self.value, list):
                object.__setattr__(self, "value", tuple(self.value))
            if not isinstance(self.value, tuple) or not self.value:
                raise QueryError(f'in takes a list of values: {{{self.column}}} in ("a", "b")')
            if len(self.value) > MAX_IN_VALUES:
                raise QueryError(f"An in list has at most {MAX_IN_VALUES} values ({len(self.value)} given).")
            for v in self.value:
                _check_literal(v)
        else:
            _check_literal(self.value)

    @property
    def bare_number(self) -> bool:
        """Whether the value is a number written without quotes (``{snr} < 2``, not ``"2"``)."""
        return self.bare and isinstance(self.value, str) and _parse_float(self.value) is not None

    def to_q(self) -> str:
        """This clause in the filter language (``parse_filter(c.to_q()) == [c]`` for text values)."""
        return to_q(self)


def _check_literal(v: Any) -> None:
    if not isinstance(v, (str, bool, int, float, np.integer, np.floating, np.bool_)):
        raise QueryError(f"A filter value must be text, a number or true/false, not {type(v).__name__}.")


@dataclass(frozen=True)
class Compare:
    """``left OP right`` where a side is another column or arithmetic (``{wer_b} - {wer} > 10``)."""

    left: Expr
    op: str
    right: Expr
    pos: int | None = _pos()

    def __post_init__(self) -> None:
        if self.op not in COMPARISONS:
            raise QueryError(f'"{_cut(str(self.op))}" cannot compare two columns or numbers: use one of '
                             f'{" ".join(COMPARISONS)}.')


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]
    pos: int | None = _pos()


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]
    pos: int | None = _pos()


@dataclass(frozen=True)
class Not:
    item: Node
    pos: int | None = _pos()


Node = Union[Clause, Compare, And, Or, Not]
NODES = (Clause, Compare, And, Or, Not)
LEAVES = (Clause, Compare)


def conjuncts(node: Node | None) -> list[Node]:
    """The parts of a top-level AND (``[]`` for no filter): what a list-of-clauses filter holds."""
    if node is None:
        return []
    return list(node.items) if isinstance(node, And) else [node]


def leaves(node: Node) -> Iterator[Clause | Compare]:
    """The clauses (leaves) of a tree, left to right."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (And, Or)):
            stack.extend(reversed(n.items))
        elif isinstance(n, Not):
            stack.append(n.item)
        else:
            yield n


def column_refs(e: Expr | Node) -> Iterator[Column]:
    """Every column a tree or expression reads (a clause's column included), with positions."""
    stack: list[Any] = [e]
    while stack:
        n = stack.pop()
        if isinstance(n, Column):
            yield n
        elif isinstance(n, Arith):
            stack += [n.right, n.left]
        elif isinstance(n, Negate):
            stack.append(n.operand)
        elif isinstance(n, Compare):
            stack += [n.right, n.left]
        elif isinstance(n, (And, Or)):
            stack.extend(reversed(n.items))
        elif isinstance(n, Not):
            stack.append(n.item)
        elif isinstance(n, Clause):
            yield Column(n.column, n.pos)


def positive_leaves(node: Node) -> Iterator[Clause | Compare]:
    """The clauses not under a ``!``: those whose own match makes rows appear."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (And, Or)):
            stack.extend(reversed(n.items))
        elif isinstance(n, LEAVES):
            yield n


def replace_node(node: Node, old: Node, new: Node) -> Node:
    """The tree with every node equal to ``old`` replaced by ``new``."""
    if node == old:
        return new
    if isinstance(node, (And, Or)):
        return type(node)(tuple(replace_node(i, old, new) for i in node.items), pos=node.pos)
    if isinstance(node, Not):
        return Not(replace_node(node.item, old, new), pos=node.pos)
    return node


def check_bounds(parts: Sequence[Node]) -> None:
    """The parser's bounds, for trees built in code (grid filters, scripts): clauses, nesting,
    arithmetic and the total length of the values. Iterative: a hostile tree cannot overflow."""
    clauses = arithmetic = length = 0
    stack: list[tuple[Any, int]] = [(p, 1) for p in parts]
    while stack:
        n, depth = stack.pop()
        if depth > 2 * MAX_DEPTH:
            raise QueryError(f"The filter nests too deeply (at most {MAX_DEPTH} levels).")
        if not isinstance(n, NODES + _EXPRS):
            raise QueryError(f"Expected filter clauses, got {type(n).__name__}.")
        if isinstance(n, (And, Or)):
            stack += [(i, depth + 1) for i in n.items]
        elif isinstance(n, Not):
            stack.append((n.item, depth + 1))
        elif isinstance(n, Compare):
            clauses += 1
            stack += [(n.left, depth + 1), (n.right, depth + 1)]
        elif isinstance(n, Arith):
            arithmetic += 1
            stack += [(n.left, depth + 1), (n.right, depth + 1)]
        elif isinstance(n, Negate):
            stack.append((n.operand, depth + 1))
        elif isinstance(n, Clause):
            clauses += 1
            values = n.value if isinstance(n.value, tuple) else (n.value,)
            length += sum(len(v) for v in values if isinstance(v, str))
        check_clause_count(clauses)
        if arithmetic > MAX_ARITHMETIC:
            raise QueryError(f"The filter has more than {MAX_ARITHMETIC} arithmetic operators.")
        if length > MAX_QUERY_LENGTH:
            raise QueryError(f"The filter values are too long (at most {MAX_QUERY_LENGTH} characters in all).")


def _shown(e: Any) -> str:
    return _cut(_expr_q(e)) if isinstance(e, _EXPRS) else "the condition"


def to_q(node: Node | Sequence[Node] | None) -> str:
    """The tree as filter text; ``parse(to_q(t)) == t`` for a parsed tree."""
    if node is None:
        return ""
    if isinstance(node, (list, tuple)):
        return format_filter(node)
    if isinstance(node, Clause):
        col = column_ref(node.column)
        if node.op in ("is null", "is not null"):
            return f"{col} {node.op}"
        if node.op == "in":
            return f"{col} in ({', '.join(_literal_q(v) for v in node.value)})"  # type: ignore[union-attr]
        return f"{col} {node.op} {node.value if node.bare_number else _literal_q(node.value)}"
    if isinstance(node, Compare):
        return f"{_expr_q(node.left)} {node.op} {_expr_q(node.right)}"
    if isinstance(node, And):
        return " && ".join(f"({to_q(i)})" if isinstance(i, (Or, And)) else to_q(i) for i in node.items)
    if isinstance(node, Or):
        return " || ".join(f"({to_q(i)})" if isinstance(i, Or) else to_q(i) for i in node.items)
    if isinstance(node, Not):
        return f"!({to_q(node.item)})"
    raise QueryError(f"Not a filter: {type(node).__name__}.")


def format_filter(nodes: Sequence[Node]) -> str:
    """The parts of an AND as filter text (e.g. to show a grid's column filters in the filter box)."""
    return " && ".join(f"({to_q(n)})" if isinstance(n, (Or, And)) else to_q(n) for n in nodes)


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def _expr_q(e: Expr, context: int = 0) -> str:
    if isinstance(e, Column):
        return column_ref(e.name)
    if isinstance(e, Number):
        return _format_number(e.value)
    if isinstance(e, Negate):
        return "-" + _expr_q(e.operand, 3)
    p = _PRECEDENCE[e.op]
    # The right operand of the same precedence keeps its parentheses: a - (b - c), a / (b * c).
    text = f"{_expr_q(e.left, p)} {e.op} {_expr_q(e.right, p + 1)}"
    return f"({text})" if p < context else text


def _literal_q(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _format_number(v)


def _format_number(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    f = float(v)
    if f.is_integer() and abs(f) < 1e16:
        return str(int(f))
    return repr(f)


def _parse_float(text: str) -> float | None:
    text = text.strip()
    if "_" in text:  # valid in Python float literals, not something users mean
        return None
    try:
        f = float(text)
    except ValueError:
        return None
    return None if math.isnan(f) else f
