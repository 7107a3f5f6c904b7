"""The filter language Q: parsed into a tree, printed back, compiled to SQL.

One language for every table view (the grids, the JSON API, CSV exports): :func:`to_sql` gives a
parameterised DuckDB ``WHERE`` clause, which :class:`sde.query.TableQuery` runs
(tests/test_query_duckdb.py checks every operator against an independent pandas evaluation).

Syntax (the SQL-ish language of NeMo's Speech Data Explorer, grown)::

    {wer} > 20 && ({speaker} in ("spk_1", "spk_2") || !({text} contains "noise"))
    {wer_b} - {wer} > 10 && {lang} =~ "EN" && {text} matches "^(uh|um) "

* A clause is ``COLUMN OP VALUE``. COLUMN is ``{any name}`` (a ``}`` or ``\\`` in the name escaped
  by a backslash: sde.filters.language.column_ref) or, for a plain identifier (letters, digits,
  ``_``), the bare name.
* OP: ``= != < <= > >=`` (``==`` is ``=``; the words ``eq ne lt le gt ge`` too), ``=~`` (text
  equality ignoring case; the word ``ieq`` too), ``contains`` (substring, ignoring case), ``has``
  (one whole whitespace-separated word, case-sensitive), ``matches "regex"`` (RE2 syntax, a match
  anywhere: anchor with ``^ $``; ``(?i)`` ignores case), ``in ("a", "b", 3)``, and ``is null`` /
  ``is not null``. Operator words are case-insensitive.
* Clauses combine with ``&&``, ``||``, ``!`` (or ``not``) and parentheses; ``!`` binds tightest,
  then ``&&``, then ``||``.
* VALUE is a quoted string (``"..."`` or ``'...'``: a backslash escapes the quote and the backslash,
  any other backslash is kept, so Windows paths work) or a bare value: the text up to the next
  ``&&``/``||`` (or the ``)`` closing a group), surrounding spaces removed.
* A value may be another column or arithmetic on number columns and numbers: ``{wer_b} > {wer}``,
  ``{wer_b} - {wer} > 10``, ``({a} + {b}) / 2 >= 5`` (``+ - * /``, parentheses). On the right of an
  operator a column is always written in braces (a bare word there is text), and right of a single
  column, arithmetic counts only with a column in it (``{date} = 2021-05-03`` is text). Dividing by
  zero gives a missing value, never an error.

Semantics:

* Number columns: the value must be a number (``20``, ``-1.5``, ``1e3``, ``inf``); ``=`` is exact
  float equality. Text columns: ``= != < <= > >=`` compare exactly, by Unicode code point
  (case-sensitive); ``contains`` and ``=~`` ignore case (Unicode simple case folding, as RE2 does).
  True/false columns: ``= true``/``= false`` (also ``1``/``0``), ``!=``, ``in``. Other column types
  (dates, ...) can be sorted and tested with ``is null``, nothing else.
* Missing values (NaN, <NA>, None) are SQL's NULL, with SQL's three-valued logic: a clause on a
  missing value is *unknown*, and a row is kept only when the whole filter is *true*. So
  ``{speaker} != "a"`` keeps rows whose speaker is known and differs from "a", and
  ``!({speaker} = "a")`` means the same (NOT unknown is unknown); ``is null`` finds the missing ones.
* Errors are :class:`QueryError`: a message, the 0-based ``position`` in the filter text where the
  problem is (the message counts characters from 1) and an ``excerpt`` with a caret under it.

Bounds (a filter is user input from a URL): at most :data:`MAX_QUERY_LENGTH` characters,
:data:`MAX_CLAUSES` clauses, :data:`MAX_DEPTH` levels of nesting, :data:`MAX_ARITHMETIC` arithmetic
operators, :data:`MAX_IN_VALUES` values in an ``in`` list and :data:`MAX_REGEX_LENGTH` characters in
a regex. Parsing is one left-to-right pass (each value is read at most twice); nothing is ever
evaluated as code, and :func:`to_sql` never puts user text into SQL: column names are checked
against the table's columns and quoted as identifiers, every value is a parameter.

One module per stage, their public names re-exported here: ``language`` (operators, bounds,
:class:`QueryError`), ``tree`` (nodes, walks, printing), ``parser`` (text → tree), ``bind`` (tree →
typed tree for a table), ``sql`` (DuckDB ``WHERE`` clause); ``engine`` is the DuckDB database the
clauses run on (:mod:`sde.filters.engine`, re-exported by sde.query).
"""

from __future__ import annotations

from sde.filters.bind import (
    BOOL,
    NUMBER,
    OTHER,
    TEXT,
    VIRTUAL,
    bind,
    check_regex,
    column_kind,
    duckdb_kind,
    iequal_pattern,
    re2_escape,
    word_pattern,
)
from sde.filters.language import (
    COMPARISONS,
    EXAMPLE,
    MAX_ARITHMETIC,
    MAX_CLAUSES,
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_QUERY_LENGTH,
    MAX_REGEX_LENGTH,
    OPERATORS,
    TEXT_OPERATORS,
    QueryError,
    caret_excerpt,
    check_clause_count,
    check_column,
    column_ref,
)
from sde.filters.parser import (
    combine_filters,
    parse,
    parse_filter,
)
from sde.filters.sql import (
    IndexAnswer,
    IndexedSql,
    SqlVirtual,
    VirtualSql,
    NUMBER_STARTS,
    bound_sql,
    number_first_sql,
    number_key_sql,
    number_sql,
    quote_ident,
    to_sql,
)
from sde.filters.tree import (
    LEAVES,
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
    check_bounds,
    column_refs,
    conjuncts,
    format_filter,
    leaves,
    positive_leaves,
    replace_node,
    to_q,
)

__all__ = [
    "QueryError",
    "Clause",
    "Compare",
    "And",
    "Or",
    "Not",
    "Column",
    "Number",
    "Arith",
    "Negate",
    "Node",
    "Expr",
    "OPERATORS",
    "EXAMPLE",
    "MAX_QUERY_LENGTH",
    "MAX_CLAUSES",
    "MAX_DEPTH",
    "MAX_ARITHMETIC",
    "MAX_IN_VALUES",
    "MAX_REGEX_LENGTH",
    "parse",
    "parse_filter",
    "to_q",
    "format_filter",
    "combine_filters",
    "conjuncts",
    "bind",
    "column_kind",
    "duckdb_kind",
    "to_sql",
    "leaves",
    "positive_leaves",
    "column_refs",
    "replace_node",
    "check_bounds",
    "check_column",
    "column_ref",
    "check_clause_count",
    "check_regex",
    "BOOL",
    "NUMBER",
    "OTHER",
    "TEXT",
    "VIRTUAL",
    "iequal_pattern",
    "re2_escape",
    "word_pattern",
    "COMPARISONS",
    "TEXT_OPERATORS",
    "caret_excerpt",
    "SqlVirtual",
    "VirtualSql",
    "IndexAnswer",
    "IndexedSql",
    "bound_sql",
    "quote_ident",
    "number_sql",
    "number_key_sql",
    "number_first_sql",
    "NUMBER_STARTS",
    "LEAVES",
    "NODES",
]
