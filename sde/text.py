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
               convention); inflect's hyphens and commas become spaces. The signs around a number
               are read the way a reference transcript spells them out (as NeMo's text
               normalisation does): "$5" → "five dollars", "$5.50" → "five dollars fifty cents",
               "$1" → "one dollar", "$2.5 million" → "two point five million dollars" (also £:
               pounds/pence, €: euros/cents); "25%" → "twenty five percent"; a decade "s":
               "1990s" → "nineteen nineties" (1100–1999 and 2010–2099 read as years), "80s" →
               "eighties"; "-4" → "minus four" when the - (or −) starts a word ("covid-19" and
               "1990-2000" keep theirs as a joiner).

Whatever steps are on, they run in that fixed order: numbers, lower, punct (numbers must see
"3.5", "1,000", "25%" and "-4" before punct removes their signs), and runs of whitespace then collapse
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
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "NORMALIZERS",
    "collapse_whitespace",
    "normalize",
    "normalize_arrow",
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
# then at most one of: "%", a suffix that is not the start of a longer word (an ordinal "1st", or
# the "s" of a decade "1990s"; "4thumbs" keeps its letters), a scale word ("5 million", only read
# as part of an amount of money: "$5 million" → "five million dollars").
# Digits glued to letters still convert ("mp3" → "mp three") so that "mp3" and "mp 3" agree.
#
# The regex starts at the first digit, which lets Python's re skip ahead to candidate digits
# quickly; a currency sign and a minus sign before the number are looked at by hand
# (_numbers_to_words), which is ~2.5x faster than the same optional prefixes inside the regex.
_NUMBER_RE = re.compile(
    r"(?P<int>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)"
    r"(?P<frac>\.[0-9]+)?"
    r"(?:(?P<pct>%)"
    r"|(?P<suffix>st|nd|rd|th|s)(?![^\W\d_])"
    r"|\s+(?P<scale>thousand|million|billion|trillion)(?![^\W\d_]))?",
    re.IGNORECASE,
)
_INFLECT_SEPARATORS = re.compile(r"[-,\s]+")

# Currency sign → (unit, units, subunit, subunits), read after the amount: "$5.50" → "five
# dollars fifty cents".
_CURRENCIES: dict[str, tuple[str, str, str, str]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
}
# A hyphen-minus or minus sign directly before the number (or its currency sign) is "minus" when it
# starts a word: at the start of the text or after whitespace or an opening bracket or quote
# ("-4", "(-4)", "-$5"); after anything else it joins ("covid-19", "1990-2000", "mid-80s").
_MINUS_SIGNS = "-\u2212"
_OPENERS = "([{\"'\u2018\u201c\u00ab"
# Decades read as years: "1990s" → "nineteen nineties", "2010s" → "twenty tens".
_YEAR_RANGES = ((1100, 1999), (2010, 2099))


@functools.lru_cache(maxsize=1)
def _inflect_engine():  # inflect takes ~0.1 s to import; only pay for it when numbers is on
    import inflect

    return inflect.engine()


@functools.lru_cache(maxsize=200_000)
def _number_words(integer: str, frac: str, ordinal: bool) -> str:
    """Words for one number; cached because corpora repeat the same numbers a lot."""
    engine = _inflect_engine()
    digits = integer.replace(",", "")
    if ordinal and not frac:
        spoken = engine.number_to_words(engine.ordinal(digits), andword="")
    else:
        spoken = engine.number_to_words(digits + frac, andword="")
    return _INFLECT_SEPARATORS.sub(" ", str(spoken)).strip()


def _decade_words(integer: str) -> str | None:
    """A decade's words, for the number before an "s": "1990" → "nineteen nineties", "80" →
    "eighties", "2000" → "two thousands"; None when ``integer`` is not a decade (2–4 digits ending
    in 0, no leading 0, no separator). Years are read as years only here ("1990" alone stays
    "one thousand nine hundred ninety"): "1990s" has no other reading."""
    if not (2 <= len(integer) <= 4 and integer[-1] == "0" and integer[0] != "0" and integer.isdigit()):
        return None
    value = int(integer)
    if any(lo <= value <= hi for lo, hi in _YEAR_RANGES):
        century, rest = divmod(value, 100)
        tens = _number_words(str(rest), "", False) if rest else "hundred"
        spoken = f"{_number_words(str(century), '', False)} {tens}"
    else:
        spoken = _number_words(integer, "", False)
    head, _, last = spoken.rpartition(" ")
    # The last word is that of a multiple of ten: ten, twenty ... ninety, hundred, thousand.
    plural = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return f"{head} {plural}" if head else plural


def _money_words(currency: str, integer: str, frac: str, scale: str | None) -> str:
    """Amount of money: "$5" → "five dollars", "$5.50" → "five dollars fifty cents", "$0.01" →
    "one cent", "$2.5 million" → "two point five million dollars", "$5.5" → "five point five
    dollars" (a decimal part that is not two digits is not a number of cents)."""
    unit, units, subunit, subunits = _CURRENCIES[currency]
    if scale:
        return f"{_number_words(integer, frac, False)} {scale.lower()} {units}"
    if frac and len(frac) != 3:
        return f"{_number_words(integer, frac, False)} {units}"
    whole = int(integer.replace(",", ""))
    cents = int(frac[1:]) if frac else 0
    parts = []
    if whole or not cents:
        parts.append(f"{_number_words(integer, '', False)} {unit if whole == 1 else units}")
    if cents:
        parts.append(f"{_number_words(str(cents), '', False)} {subunit if cents == 1 else subunits}")
    return " ".join(parts)


@functools.lru_cache(maxsize=200_000)
def _spoken(minus: bool, currency: str, integer: str, frac: str | None, pct: str | None,
            suffix: str | None, scale: str | None) -> str:
    """The words for one matched number with its signs; cached per distinct token."""
    frac = frac or ""
    if currency:
        spoken = _money_words(currency, integer, frac, scale)
        if suffix or pct:  # "$5th", "$5%": not money words; keep the letters as a word of their own
            spoken = f"{spoken} {suffix or pct}"
    else:
        decade = _decade_words(integer) if suffix in ("s", "S") and not frac else None
        if decade is not None:
            spoken = decade
        else:
            ordinal = bool(suffix) and suffix.lower() != "s" and not frac
            spoken = _number_words(integer, frac, ordinal)
            if suffix and not ordinal:  # "3.5th", "5s": keep the letters as a word of their own
                spoken = f"{spoken} {suffix}"
        if pct:
            spoken = f"{spoken} percent"
        if scale:  # no currency: the scale word stays as written
            spoken = f"{spoken} {scale}"
    return f"minus {spoken}" if minus else spoken


def _numbers_to_words(text: str) -> str:
    """Every number of ``text`` in words, with the currency and minus signs before them."""
    pieces = []
    done = 0  # text[:done] is in pieces
    for match in _NUMBER_RE.finditer(text):
        start = match.start()
        currency = ""
        if start > done and text[start - 1] in _CURRENCIES:
            start -= 1
            currency = text[start]
        minus = (start > done and text[start - 1] in _MINUS_SIGNS
                 and (start == 1 or text[start - 2].isspace() or text[start - 2] in _OPENERS))
        if minus:
            start -= 1
        spoken = _spoken(minus, currency, *match.groups())  # int, frac, pct, suffix, scale
        # Spaces on both sides so that a number glued to letters becomes separate words.
        pieces += (text[done:start], " ", spoken, " ")
        done = match.end()
    pieces.append(text[done:])
    return "".join(pieces)


# Texts where no sign sits right before a digit (most of them: _apply_numbers finds them with one
# Arrow kernel) give _numbers_to_words the same result with a plain re.sub, ~20% faster.
_SIGN_BEFORE_DIGIT = f"[{re.escape(_MINUS_SIGNS + ''.join(_CURRENCIES))}][0-9]"


def _unsigned_number_sub(match: re.Match[str]) -> str:
    return f" {_spoken(False, '', *match.groups())} "


def _unsigned_numbers_to_words(text: str) -> str:
    """:func:`_numbers_to_words` for a text with no sign right before a digit."""
    return _NUMBER_RE.sub(_unsigned_number_sub, text)


# --- punctuation -------------------------------------------------------------------------------
#
# Rules, in order: ’ becomes '; dashes (Unicode Pd) and "/" become spaces; every other punctuation
# character (Unicode P*) except ' is removed; then an apostrophe survives only when it is a single
# ' between two word characters (letters, digits, marks: "don't", "rock'n'roll"), so quotes and
# runs like "''" go.
#
# One definition: which code points are punctuation, dashes and word characters is decided once,
# from Python's unicodedata, and both paths use those sets: a translation table plus Python regexes
# for small inputs, the same sets spelled as explicit RE2 ranges for Arrow (the bulk path). RE2's
# own \p{P} / \pL tables follow a newer Unicode than Python's, so using them would make a line
# normalise differently depending on the size of the manifest it is in.

_TYPOGRAPHIC_APOSTROPHE = "\u2019"
_APOSTROPHE_RUN = r"''+"

# Inputs shorter than this take the Python path (no RE2 compilation of the big classes).
_PYTHON_PUNCT_MAX_ROWS = 64
_MAX_CODE_POINT = 0x10FFFF


@dataclass(frozen=True)
class _PunctRules:
    """The punct step's code point sets, as a str.translate table and as regex classes."""

    translate: dict[int, str | None]  # ’ → ', joiners → " ", other punctuation except ' → removed
    joiners: np.ndarray               # Pd and "/"
    removed: np.ndarray               # P* except ' (and ’, which becomes ' first)
    word: np.ndarray                  # L*, N*, M*


def _ranges(code_points: np.ndarray) -> list[tuple[int, int]]:
    """Sorted code points as (first, last) runs."""
    if not len(code_points):
        return []
    breaks = np.flatnonzero(np.diff(code_points) != 1)
    starts = np.concatenate(([code_points[0]], code_points[breaks + 1]))
    ends = np.concatenate((code_points[breaks], [code_points[-1]]))
    return list(zip(starts.tolist(), ends.tolist()))


def _re2_class(code_points: np.ndarray, negate: bool = False) -> str:
    """A character class of exactly these code points, in RE2 syntax."""
    body = "".join(f"\\x{{{lo:x}}}" if lo == hi else f"\\x{{{lo:x}}}-\\x{{{hi:x}}}"
                   for lo, hi in _ranges(code_points))
    return f"[{'^' if negate else ''}{body}]"


def _python_class(code_points: np.ndarray, negate: bool = False) -> str:
    """The same class in Python's re syntax (which has no \\x{...})."""
    body = "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}"
                   for lo, hi in _ranges(code_points))
    return f"[{'^' if negate else ''}{body}]"


@functools.lru_cache(maxsize=1)
def _punct_rules() -> _PunctRules:
    # ~0.1 s once per process, only when punct is on: every code point's category.
    categories = "".join(unicodedata.category(chr(c)) for c in range(_MAX_CODE_POINT + 1))
    pairs = np.frombuffer(categories.encode("ascii"), dtype=np.uint8).reshape(-1, 2)
    major, minor = pairs[:, 0], pairs[:, 1]
    punct = major == ord("P")
    joiners = (punct & (minor == ord("d"))) | (np.arange(len(major)) == ord("/"))
    removed = punct & ~joiners
    removed[[ord("'"), ord(_TYPOGRAPHIC_APOSTROPHE)]] = False
    word = (major == ord("L")) | (major == ord("N")) | (major == ord("M"))
    joiner_points, removed_points = np.flatnonzero(joiners), np.flatnonzero(removed)
    table: dict[int, str | None] = dict.fromkeys(removed_points.tolist())
    table.update(dict.fromkeys(joiner_points.tolist(), " "))
    table[ord(_TYPOGRAPHIC_APOSTROPHE)] = "'"
    return _PunctRules(translate=table, joiners=joiner_points, removed=removed_points,
                       word=np.flatnonzero(word))


@functools.lru_cache(maxsize=1)
def _re2_punct_patterns() -> tuple[str, str, str, str]:
    rules = _punct_rules()
    non_word = _re2_class(rules.word, negate=True)
    # Apostrophes after / before a non-word character (RE2 has no lookaround). One match consumes
    # the neighbour, but single apostrophes never share a neighbour once runs are gone, so one pass
    # each side is exact.
    after_non_word, before_non_word = rf"(^|{non_word})'", rf"'({non_word}|$)"
    return _re2_class(rules.joiners), _re2_class(rules.removed), after_non_word, before_non_word


def _punct_arrow(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    joiners, removed, after_non_word, before_non_word = _re2_punct_patterns()
    arr = pc.replace_substring(arr, _TYPOGRAPHIC_APOSTROPHE, "'")
    arr = pc.replace_substring_regex(arr, joiners, " ")
    arr = pc.replace_substring_regex(arr, removed, "")
    arr = pc.replace_substring_regex(arr, _APOSTROPHE_RUN, "")
    arr = pc.replace_substring_regex(arr, after_non_word, r"\1")
    return pc.replace_substring_regex(arr, before_non_word, r"\1")


@functools.lru_cache(maxsize=1)
def _python_apostrophe_regexes() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    word = _python_class(_punct_rules().word)
    # The same rules as RE2's, spelled to start with the apostrophe: Python's re then jumps from
    # apostrophe to apostrophe instead of testing the big class at every position (~100x faster).
    # "' not preceded by a word character" is: the two characters ending after it are not word + '.
    after_non_word = rf"'(?<!{word}')"
    before_non_word = rf"'(?!{word})"
    return re.compile(_APOSTROPHE_RUN), re.compile(after_non_word), re.compile(before_non_word)


def _punct_python(text: str) -> str:
    chars = text.translate(_punct_rules().translate)
    if "'" not in chars:
        return chars
    run, after_non_word, before_non_word = _python_apostrophe_regexes()
    chars = run.sub("", chars)
    chars = after_non_word.sub("", chars)
    return before_non_word.sub("", chars)


# --- lower-casing ------------------------------------------------------------------------------
#
# Python's str.lower is the reference (it is what users compare with): full case mappings ("İ" →
# "i̇") and the final-sigma rule ("ΟΔΟΣ" → "οδος"). Arrow's utf8_lower maps each code point on its
# own with simple mappings from its own Unicode version. Both are per code point except Python's
# Σ, so a string holding none of the code points where they differ (found once by lower-casing
# every code point both ways) gets the same result from Arrow; only the rest go through Python.

_CAPITAL_SIGMA = "\u03a3"


@functools.lru_cache(maxsize=1)
def _lower_differs_class() -> str:
    """RE2 class of the code points whose Arrow lower-case differs from str.lower, plus Σ.

    Found once per process, only when lower is on, by lower-casing every code point both ways,
    in blocks: a block that str.lower leaves the same length compares code point by code point
    in numpy; the rare blocks holding an expanding mapping ("İ") are compared one by one.
    """
    points = np.concatenate([np.arange(0xD800), np.arange(0xE000, _MAX_CODE_POINT + 1)]).astype("<u4")
    every = points.tobytes().decode("utf-32-le")
    by_arrow = np.frombuffer(pc.utf8_lower(pa.array([every]))[0].as_py().encode("utf-32-le"), dtype="<u4")
    if len(by_arrow) != len(points):  # Arrow maps code point to code point; should that ever
        return "[^\\x00-\\x7f]"        # change, every non-ASCII string goes to Python
    differs = [ord(_CAPITAL_SIGMA)]
    block = 4096
    for start in range(0, len(every), block):
        chars = every[start:start + block]
        by_python = chars.lower()
        if len(by_python) == len(chars):
            python_points = np.frombuffer(by_python.encode("utf-32-le"), dtype="<u4")
            differs.extend(points[start + np.flatnonzero(python_points != by_arrow[start:start + block])].tolist())
        else:
            differs.extend(ord(c) for k, c in enumerate(chars) if c.lower() != chr(by_arrow[start + k]))
    return _re2_class(np.unique(np.asarray(differs, dtype=np.int64)))


def _lower(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """str.lower of every string, through Arrow wherever that gives the same result."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    lowered = pc.utf8_lower(arr)
    tricky = pc.match_substring_regex(arr, _lower_differs_class())
    if not pc.any(tricky).as_py():
        return lowered
    by_python = [s.lower() for s in pc.filter(arr, tricky).to_pylist()]
    return pc.replace_with_mask(lowered, tricky, pa.array(by_python, type=arr.type))


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
    return normalize_arrow(texts, steps).to_pylist()


def normalize_arrow(
    texts: Sequence[str] | pa.Array | pa.ChunkedArray, steps: Sequence[str]
) -> pa.Array | pa.ChunkedArray:
    """:func:`normalize_many` as Arrow strings: no Python string per text (10M of them take GBs)."""
    chosen = parse_normalize(steps)
    arr = to_arrow_strings(texts)
    if not chosen:
        return arr
    for step in _APPLY_ORDER:
        if step not in chosen:
            continue
        if step == "numbers":
            arr = _apply_numbers(arr)
        elif step == "lower":
            arr = _lower(arr)
        elif step == "punct":
            if len(arr) < _PYTHON_PUNCT_MAX_ROWS:
                punct = [_punct_python(t) for t in arr.to_pylist()]
                arr = pa.array(punct, type=arr.type)
            else:
                arr = _punct_arrow(arr)
    return collapse_whitespace(arr)


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
    with_digits = pc.filter(arr, has_digit)
    signed = pc.match_substring_regex(with_digits, _SIGN_BEFORE_DIGIT).to_pylist()
    converted = pa.array([_numbers_to_words(s) if sign else _unsigned_numbers_to_words(s)
                          for s, sign in zip(with_digits.to_pylist(), signed)], type=arr.type)
    return pc.replace_with_mask(arr, has_digit, converted)


def normalize(text: str, steps: Sequence[str]) -> str:
    """Normalise one string with the given steps (see the module docstring).

    With no steps the text is returned unchanged; with any step on, whitespace is collapsed.
    """
    if not parse_normalize(steps):
        return text
    return normalize_many([text], steps)[0]
