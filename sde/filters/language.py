"""The filter language's vocabulary and bounds, and its one error type.

Operators, the limits a filter (user input from a URL) must stay within, and :class:`QueryError`
with the helpers every stage (parser, binder, compilers, sde.query) uses to report a problem at its
position in the filter text.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

EXAMPLE = '{wer} > 20 && {text} contains "hello"'
MAX_QUERY_LENGTH = 10_000  # a filter (or sort) longer than this is a mistake (or an attack), not a query
# Each distinct clause is one pass over a column (~0.1 s for a text scan of 1M rows): 16 keep the
# worst filter near a second on the 2-core machines sde targets; real filters use a handful.
MAX_CLAUSES = 16
MAX_DEPTH = 32          # nested ( ), ! / not and unary minus: far beyond any real filter
MAX_ARITHMETIC = 32     # + - * / in one filter (each is a pass over the rows)
MAX_IN_VALUES = 1_000   # values in one `in (...)` list
MAX_REGEX_LENGTH = 1_000
COMPARISONS: tuple[str, ...] = ("=", "!=", "<", "<=", ">", ">=")
TEXT_OPERATORS: tuple[str, ...] = ("=~", "contains", "has", "matches")
OPERATORS: tuple[str, ...] = COMPARISONS + TEXT_OPERATORS + ("in", "is null", "is not null")
_OPS_TEXT = "= != < <= > >= =~ contains has matches in, or is null"


class QueryError(ValueError):
    """A filter or sort the user got wrong. ``str(exc)`` is a complete, user-facing message.

    ``position`` is the 0-based offset in the filter text where the problem is, when known (the
    message itself counts characters from 1); ``excerpt`` shows that part of the filter with a
    caret under the position, for a monospace display.
    """

    def __init__(self, message: str, position: int | None = None, text: str | None = None) -> None:
        super().__init__(message)
        self.position = position
        self.text = text

    @property
    def excerpt(self) -> str | None:
        if self.position is None or self.text is None:
            return None
        return caret_excerpt(self.text, self.position)

    def as_dict(self) -> dict[str, Any]:
        """JSON for an API answer: ``{"error", "position", "excerpt"}`` (the last two may be null)."""
        return {"error": str(self), "position": self.position, "excerpt": self.excerpt}


def caret_excerpt(text: str, position: int, width: int = 60) -> str:
    """Up to ``width`` characters of ``text`` around ``position`` and, below, a caret under it."""
    position = max(0, min(position, len(text)))
    start = max(0, min(position - width // 2, len(text) - width))
    end = min(len(text), start + width)
    # One display column per character: tabs and newlines would shift the caret.
    shown = "".join(c if c.isprintable() else " " for c in text[start:end])
    before = "…" if start > 0 else ""
    after = "…" if end < len(text) else ""
    return f"{before}{shown}{after}\n{' ' * (len(before) + position - start)}^"


def column_ref(name: str) -> str:
    """A column as filter text, ``{name}``: a ``}`` or ``\\`` in its name is escaped with a
    backslash (``{x\\}y}`` for the column ``x}y``), as the parser reads it (sde.filters.parser)."""
    return "{" + name.replace("\\", "\\\\").replace("}", "\\}") + "}"


def braced_name(text: str, start: int) -> tuple[str, int] | None:
    """The column name of ``{…}`` opening at ``text[start]``, with ``\\}`` and ``\\\\`` read as
    ``}`` and ``\\``, and the position of its closing ``}``; None where none closes it. Where the
    escaped reading finds no closing brace, the first ``}`` closes it (a filter written before
    the escape existed, for a name ending in a backslash)."""
    chars = []
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "}\\":
            chars.append(text[i + 1])
            i += 2
        elif c == "}":
            return "".join(chars), i
        else:
            chars.append(c)
            i += 1
    close = text.find("}", start + 1)
    return None if close < 0 else (text[start + 1:close], close)


def _syntax_error(what: str, pos: int) -> QueryError:
    return QueryError(f"Filter syntax error at character {pos + 1}: {what}. Example: {EXAMPLE}", pos)


def _at(pos: int | None) -> str:
    return "" if pos is None else f" at character {pos + 1}"


def check_clause_count(n: int) -> None:
    if n > MAX_CLAUSES:
        raise QueryError(f"The filter has more than {MAX_CLAUSES} clauses (at most {MAX_CLAUSES}): "
                         f"narrow it down in steps, or use contains/has/in on one column. Example: {EXAMPLE}")


# A manifest field named "" (an empty JSON key) is kept and shown, but the filter language has no
# name for it (`{}` is empty, and DuckDB refuses a zero-length identifier): say how to rename it.
UNNAMED_FIELD_FIX = ('a manifest field named "" (an empty key) cannot be filtered: rename it in the manifest, '
                     """e.g. jq -c 'with_entries(if .key == "" then .key = "unnamed" else . end)' """
                     "manifest.json > renamed.json, then filter {unnamed}")


def check_column(name: str, columns: Sequence[str], pos: int | None = None) -> None:
    """QueryError naming close matches (and the columns there are) unless ``name`` is a column."""
    if name in columns:
        return
    cols = [str(c) for c in columns]
    if name in ('""', "''") and "" in cols:  # {""}: the user's try at naming the field ""
        raise QueryError(f"Column {name}{_at(pos)}: {UNNAMED_FIELD_FIX}.", pos)
    cols = [c for c in cols if c] or cols  # an empty name listed would read as a stray comma
    close = difflib.get_close_matches(name, cols, n=3, cutoff=0.6)
    close += [c for c in cols if c.lower() == name.lower() and c not in close]
    # a field named as a JSON answer names it ("time" of /api/reviews' rows): its column's own name
    close += [c for c in cols if c.lower().endswith("_" + name.lower()) and c not in close][:3]
    # ... except "status", whose column is plain {review} (keep/drop/fix), not review_status
    if name.lower() == "status" and "review" in cols and "review" not in close:
        close.append("review")
    hint = f" Did you mean {', '.join(column_ref(c) for c in close)}?" if close else ""
    shown = ", ".join(cols[:20]) + (f", … ({len(cols) - 20} more)" if len(cols) > 20 else "")
    raise QueryError(f'Unknown column "{_cut(name)}"{_at(pos)}.{hint} Columns: {shown}.', pos)


def _cut(text: str, limit: int = 60) -> str:
    """A user value for a message, cut short: an error must not echo a megabyte back."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
