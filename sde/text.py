"""Tokenisation and optional text normalisation.

Metrics are computed on whitespace-split words with no normalisation unless the user asks for it
(DESIGN.md, "Metrics"), so NeMo SDE's numbers are reproduced by default. The optional steps are:

- ``lower``:   Unicode lower-casing.
- ``punct``:   remove punctuation (Unicode category P*); dashes and ``/`` become spaces (they join
               words: "well-known" → "well known"); apostrophes are kept inside words ("don't"),
               dropped elsewhere ("'quoted'" → "quoted", "a''b" → "ab"); the typographic apostrophe ’
               counts as '.
- ``numbers``: ASCII digit runs become English words with inflect ("25" → "twenty five",
               "3.5" → "three point five", "1,000" → "one thousand", "21st" → "twenty first",
               "mp3" → "mp three"); no "and" ("2024" → "two thousand twenty four", the usual ASR
               convention); inflect's hyphens and commas become spaces.

Whatever steps are on, they run in that fixed order: numbers, lower, punct (numbers must see
"3.5" and "1,000" before punct removes their separators), and runs of whitespace then collapse
to one space with none at the ends.

``normalize_many`` is the bulk path (load time, up to 1M strings): lower-casing, punctuation and
whitespace are done by Arrow compute kernels over the whole column; only strings containing a
digit go through Python, with inflect conversions cached per distinct number. ``normalize`` is
the same code on a one-element column, so both always agree.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "NORMALIZERS",
    "collapse_whitespace",
    "normalize",
    "normalize_many",
    "parse_normalize",
    "split_words",
    "to_arrow_strings",
    "words",
]

NORMALIZERS: tuple[str, ...] = ("lower", "punct", "numbers")

# Order in which steps are applied (see the module docstring for why numbers goes first).
_APPLY_ORDER: tuple[str, ...] = ("numbers", "lower", "punct")


def words(text: str) -> list[str]:
    """Split ``text`` on runs of whitespace (``str.split()``), no normalisation."""
    return text.split()


def parse_normalize(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Parse a normalisation spec into a tuple of step names.

    ``"lower,punct"`` or ``["lower", "punct"]`` → ``("lower", "punct")``; ``None``/``""`` → ``()``.
    Names may be given in any order and repeated; the result is deduplicated and in the order of
    ``NORMALIZERS`` so that equivalent specs give equal tuples (they are part of cache keys).
    An unknown name raises ``ValueError`` naming the valid choices.
    """
    if spec is None:
        return ()
    items = [spec] if isinstance(spec, str) else list(spec)
    names: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"normalisation step must be a string, got {item!r}")
        for part in item.split(","):
            name = part.strip().lower()
            if not name:
                continue
            if name not in NORMALIZERS:
                raise ValueError(
                    f"unknown normalisation step {name!r}; choose from {', '.join(NORMALIZERS)} "
                    f'(comma-separated, e.g. "lower,punct")'
                )
            names.add(name)
    return tuple(n for n in NORMALIZERS if n in names)


# --- numbers ---------------------------------------------------------------------------------

# An ASCII number: grouped thousands ("1,000,000") or a plain digit run, an optional decimal part,
# an optional ordinal suffix when it is not the start of a longer word ("1st" yes, "4thumbs" no).
# Digits glued to letters still convert ("mp3" → "mp three") so that "mp3" and "mp 3" agree.
_NUMBER_RE = re.compile(
    r"(?P<int>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)"
    r"(?P<frac>\.[0-9]+)?"
    r"(?P<ord>(?:st|nd|rd|th)(?![^\W\d_]))?",
    re.IGNORECASE,
)
_INFLECT_SEPARATORS = re.compile(r"[-,\s]+")


@functools.lru_cache(maxsize=1)
def _inflect_engine():  # inflect takes ~0.1 s to import; only pay for it when numbers is on
    import inflect

    return inflect.engine()


@functools.lru_cache(maxsize=200_000)
def _number_words(integer: str, frac: str, ordinal: bool) -> str:
    """Words for one number token; cached because corpora repeat the same numbers a lot."""
    engine = _inflect_engine()
    digits = integer.replace(",", "")
    if ordinal and not frac:
        spoken = engine.number_to_words(engine.ordinal(digits), andword="")
    else:
        spoken = engine.number_to_words(digits + frac, andword="")
    return _INFLECT_SEPARATORS.sub(" ", str(spoken)).strip()


def _number_sub(match: re.Match[str]) -> str:
    frac = match.group("frac") or ""
    ordinal = match.group("ord")
    spoken = _number_words(match.group("int"), frac, bool(ordinal))
    if ordinal and frac:  # "3.5th" is not an ordinal; keep the letters as a word of their own
        spoken = f"{spoken} {ordinal}"
    # Spaces on both sides so that a number glued to letters becomes separate words.
    return f" {spoken} "


def _numbers_to_words(text: str) -> str:
    return _NUMBER_RE.sub(_number_sub, text)


# --- punctuation -------------------------------------------------------------------------------
#
# Rules, in order: ’ becomes '; dashes (Unicode Pd) and "/" become spaces; every other punctuation
# character (Unicode P*) except ' is removed; then an apostrophe survives only when it is a single
# ' between two word characters (letters, digits, marks: "don't", "rock'n'roll"), so quotes and
# runs like "''" go. The rules are written twice: RE2 patterns for Arrow (the bulk path; compiling
# the Unicode classes costs milliseconds per call, nothing over a million strings) and a per-char
# Python version for small inputs. tests/test_text.py checks that both agree.

_TYPOGRAPHIC_APOSTROPHE = "\u2019"
_RE2_JOINERS = r"[\p{Pd}/]"
_RE2_PUNCT_BUT_APOSTROPHE = r"[^\P{P}']"
_RE2_APOSTROPHE_RUN = r"''+"
# One match consumes the neighbour, but single apostrophes never share a neighbour once runs
# are gone, so one pass each side is exact.
_RE2_APOSTROPHE_AFTER_NON_WORD = r"(^|[^\pL\pN\pM])'"
_RE2_APOSTROPHE_BEFORE_NON_WORD = r"'([^\pL\pN\pM]|$)"

# Inputs shorter than this take the Python path (no RE2 compilation).
_PYTHON_PUNCT_MAX_ROWS = 64


def _punct_arrow(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    arr = pc.replace_substring(arr, _TYPOGRAPHIC_APOSTROPHE, "'")
    arr = pc.replace_substring_regex(arr, _RE2_JOINERS, " ")
    arr = pc.replace_substring_regex(arr, _RE2_PUNCT_BUT_APOSTROPHE, "")
    arr = pc.replace_substring_regex(arr, _RE2_APOSTROPHE_RUN, "")
    arr = pc.replace_substring_regex(arr, _RE2_APOSTROPHE_AFTER_NON_WORD, r"\1")
    return pc.replace_substring_regex(arr, _RE2_APOSTROPHE_BEFORE_NON_WORD, r"\1")


@functools.lru_cache(maxsize=65_536)
def _punct_char(char: str) -> str:
    """What the punct step makes of one character (before the apostrophe rule)."""
    if char == _TYPOGRAPHIC_APOSTROPHE or char == "'":
        return "'"
    category = unicodedata.category(char)
    if category == "Pd" or char == "/":
        return " "
    return "" if category[0] == "P" else char


def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LNM"


def _punct_python(text: str) -> str:
    chars = "".join(_punct_char(c) for c in text)
    if "'" not in chars:
        return chars
    out = []
    last = len(chars) - 1
    for i, c in enumerate(chars):
        if c == "'" and not (
            0 < i < last and _is_word_char(chars[i - 1]) and _is_word_char(chars[i + 1])
        ):
            continue
        out.append(c)
    return "".join(out)


def to_arrow_strings(
    texts: Sequence[str] | pa.Array | pa.ChunkedArray,
) -> pa.Array | pa.ChunkedArray:
    """An Arrow string column of ``texts`` (list, pandas Series or Arrow), nulls as ""."""
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        arr = texts
    elif hasattr(texts, "array") and hasattr(texts, "dtype"):  # pandas Series
        arr = pa.array(texts.array, from_pandas=True)
    else:
        arr = pa.array(list(texts), type=pa.large_string(), from_pandas=True)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())
    return pc.fill_null(arr, "")


def normalize_many(
    texts: Sequence[str] | pa.Array | pa.ChunkedArray, steps: Sequence[str]
) -> list[str]:
    """Normalise many strings at once; ``normalize`` applied to each, but fast for 1M strings.

    ``steps`` is validated with ``parse_normalize``. With no steps the texts come back unchanged
    (missing values become ""). Returns a list of str in input order.
    """
    chosen = parse_normalize(steps)
    arr = to_arrow_strings(texts)
    if not chosen:
        return arr.to_pylist()
    for step in _APPLY_ORDER:
        if step not in chosen:
            continue
        if step == "numbers":
            arr = _apply_numbers(arr)
        elif step == "lower":
            arr = pc.utf8_lower(arr)
        elif step == "punct":
            if len(arr) < _PYTHON_PUNCT_MAX_ROWS:
                punct = [_punct_python(t) for t in arr.to_pylist()]
                arr = pa.array(punct, type=arr.type)
            else:
                arr = _punct_arrow(arr)
    return collapse_whitespace(arr).to_pylist()


# Every character for which str.isspace() is true (tests/test_text.py checks the list), as RE2
# escapes: Arrow's collapse must split exactly where str.split() does.
_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_RE2_WS = "".join(f"\\x{{{ord(c):x}}}" for c in _WHITESPACE)
# A run of two or more, or one that is not a plain space: the only places that need rewriting.
_RE2_WHITESPACE_TO_SPACE = f"[{_RE2_WS}]{{2,}}|[{_RE2_WS.replace(chr(92) + 'x{20}', '')}]"


def collapse_whitespace(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``" ".join(s.split())`` for every string of an Arrow string column.

    A regex rewrite plus ``utf8_trim_whitespace`` (whose whitespace set equals ``str.isspace``):
    ~4x faster than splitting into lists and joining them again.
    """
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, _RE2_WHITESPACE_TO_SPACE, " "))


def split_words(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """All words of an Arrow string column, flattened: ``str.split()`` of every string."""
    tokens = pc.list_flatten(pc.split_pattern(collapse_whitespace(arr), " "))
    # An empty (or all-whitespace) string splits to [""]; str.split() gives [].
    return pc.filter(tokens, pc.not_equal(tokens, pa.scalar("", tokens.type)))


def _apply_numbers(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Convert digits to words in the strings that have any; the rest stay in Arrow."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    has_digit = pc.match_substring_regex(arr, "[0-9]")
    if not pc.any(has_digit).as_py():
        return arr
    with_digits = pc.filter(arr, has_digit).to_pylist()
    converted = pa.array([_numbers_to_words(s) for s in with_digits], type=arr.type)
    return pc.replace_with_mask(arr, has_digit, converted)


def normalize(text: str, steps: Sequence[str]) -> str:
    """Normalise one string with the given steps (see the module docstring).

    With no steps the text is returned unchanged; with any step on, whitespace is collapsed.
    """
    if not parse_normalize(steps):
        return text
    return normalize_many([text], steps)[0]
