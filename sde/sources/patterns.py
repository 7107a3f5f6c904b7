"""NeMo's shard patterns and globs: what the user typed → the list of files it names.

NeMo names sharded manifests and tars with brace expansion, written either with braces
(``manifest_{0..511}.json``) or, where braces upset shells and YAML, with the tags ``_OP_`` and
``_CL_`` (``manifest__OP_0..511_CL_.json``). A range keeps the zero padding of its ends
(``{000..511}`` → ``000``, ``001``, ...), a step is allowed (``{0..10..2}``), and a comma list picks
alternatives (``{train,dev}``). NeMo also accepts ``(``/``[``/``<`` as braces; sde does not, because
``[...]`` is a glob character class and ``(``/``<`` occur in real file names.

Globs (``*``, ``?``, ``[...]``, ``**`` for any depth) are expanded after braces and sorted in natural
order (``m_2.json`` before ``m_10.json``), so ids follow the shard numbers.
"""

from __future__ import annotations

import re

__all__ = ["PatternError", "brace_expand", "has_braces", "has_glob", "natural_key", "normalise_tags"]

OPEN_TAG = "_OP_"
CLOSE_TAG = "_CL_"
# A pattern that expands to more names than this is a typo ({0..99999999}), not a dataset.
MAX_EXPANSION = 1_000_000

_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?")
_GLOB_CHARS = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")


class PatternError(ValueError):
    """A source pattern that is malformed or matches no file; the message names it and the fix."""


def normalise_tags(spec: str) -> str:
    """``_OP_``/``_CL_`` → ``{``/``}`` (NeMo's spelling of braces for shells and YAML)."""
    return spec.replace(OPEN_TAG, "{").replace(CLOSE_TAG, "}")


def has_braces(spec: str) -> bool:
    """Whether ``spec`` holds a brace group that expands (``{x}`` alone stays literal, as in bash)."""
    text = normalise_tags(spec)
    return "{" in text and brace_expand(spec) != [text]


def has_glob(spec: str) -> bool:
    return bool(_GLOB_CHARS.search(spec))


def brace_expand(spec: str) -> list[str]:
    """Every name a NeMo shard pattern stands for, in order; a name without braces is itself.

    Raises PatternError for an empty or unbalanced group and for patterns that expand to more
    than MAX_EXPANSION names.
    """
    names = _expand(normalise_tags(spec), spec)
    if len(names) > MAX_EXPANSION:
        raise PatternError(f"{spec}: expands to {len(names):,} names (at most {MAX_EXPANSION:,}); check the range")
    return names


def _expand(text: str, spec: str) -> list[str]:
    start = text.find("{")
    if start < 0:
        if "}" in text:
            raise PatternError(f"{spec}: a closing brace without an opening one; write ranges as "
                               "{0..511} or _OP_0..511_CL_")
        return [text]
    end = _matching_brace(text, start, spec)
    head, body, tail = text[:start], text[start + 1:end], text[end + 1:]
    tails = _expand(tail, spec)
    return [head + choice + rest for choice in _choices(body, spec) for rest in tails]


def _matching_brace(text: str, start: int, spec: str) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    raise PatternError(f"{spec}: an opening brace without its closing one; write ranges as "
                       "{0..511} or _OP_0..511_CL_")


def _choices(body: str, spec: str) -> list[str]:
    if not body:
        raise PatternError(f"{spec}: an empty brace group; write ranges as {{0..511}} or _OP_0..511_CL_")
    match = _RANGE.fullmatch(body)
    if match:
        return _number_range(*match.groups(), spec=spec)
    parts = _split_top_level(body)
    if len(parts) == 1:
        return ["{" + choice + "}" for choice in _expand(body, spec)]  # a literal group, as in bash
    return [choice for part in parts for choice in _expand(part, spec)]


def _number_range(first: str, last: str, step: str | None, *, spec: str) -> list[str]:
    a, b = int(first), int(last)
    increment = abs(int(step)) if step else 1
    if increment == 0:
        raise PatternError(f"{spec}: a range step of 0")
    if abs(b - a) // increment + 1 > MAX_EXPANSION:
        raise PatternError(f"{spec}: expands to more than {MAX_EXPANSION:,} names; check the range")
    padded = any(len(x.lstrip("-")) > 1 and x.lstrip("-").startswith("0") for x in (first, last))
    width = max(len(first), len(last)) if padded else 0
    numbers = range(a, b + 1, increment) if a <= b else range(a, b - 1, -increment)
    return [f"{n:0{width}d}" if width else str(n) for n in numbers]


def _split_top_level(body: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in body:
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += ch == "{"
        depth -= ch == "}"
        current.append(ch)
    parts.append("".join(current))
    return parts


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value: m_2 < m_10."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]
