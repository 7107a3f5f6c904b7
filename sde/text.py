"""Tokenisation and optional text normalisation.

Metrics are computed on whitespace-split words with no normalisation unless the user asks for it
(DESIGN.md, "Metrics"), so NeMo SDE's numbers are reproduced by default. With any step on, a text
first gets one spelling (the prelude: Unicode NFKC, except that symbols and number characters such
as "²", "½", "™" keep their form; invisible format characters such as soft hyphens, zero-width
spaces and joiners, bidi marks and variation selectors are removed), since the same words typed
two ways ("café" composed or decomposed, "ﬁ", full-width "Ａ１", a no-break space) must score as
the same words. Diacritics are kept: they can tell words apart ("pêche", "péché"). The steps:

- ``lower``:   Unicode lower-casing (Python's str.lower).
- ``punct``:   remove punctuation (Unicode category P*), symbols (So, Sk: emoji, ©, °) and the
               optional vowel marks of Arabic (harakat, tatweel) and Hebrew (niqqud); dashes and
               ``/`` become spaces (they join words: "well-known" → "well known"); a tag made of one
               ASCII word in <> or [] ("<unk>", "[noise]", "</s>") is removed, as no spoken word;
               apostrophes are kept inside words ("don't"), dropped elsewhere ("'quoted'" →
               "quoted", "a''b" → "ab"); ’ ʼ ‘ ` ´ ′ typed as apostrophes count as '; a contraction
               split off its word is joined back ("it 's", "don ' t", "do n't" → "it's", "don't").
               Scripts written without spaces (Chinese, Japanese, Thai) are not segmented: score
               them by CER.
- ``numbers``: digits (ASCII; full-width ones via the prelude; other scripts' decimal digits,
               Arabic-Indic "٥", Devanagari "५"..., as ASCII ones, and "٫" "٬" "٪" after a digit as
               "." "," "%") become English words with inflect ("25" → "twenty five", "3.5" →
               "three point five", "1,000" → "one thousand", "21st" → "twenty first", "mp3" → "mp
               three"); no "and" ("2100" → "two thousand one hundred", the usual ASR convention);
               inflect's hyphens and commas become spaces. A digit run is read as a number, never
               guessed to be said digit by digit ("911" → "nine hundred eleven": sde writes words
               where Whisper's English normaliser writes digits), except that one with a leading
               zero is no quantity and is read digit by digit ("007", "0800" → "zero zero seven",
               "zero eight zero zero"), and that a bare four-digit number in 1010–1999 or
               2010–2099 is read as a year where the text around it says it is one: "1990" →
               "nineteen ninety", "1905" → "nineteen oh five", "1900" → "nineteen hundred",
               "1066" → "ten sixty six", "2020" → "twenty twenty" (1000–1009 and 2000–2009 read
               the same either way: "two thousand five"). Bare: no separator, sign or currency
               before it, no decimal part, %, suffix or scale after it ("1,500", "-1990",
               "$1990", "No. 1990", "1990.5" stay cardinals). A year: after a month and a day
               ("May 5 1990"); else not in a run of digit groups, which is a phone number or a
               code, read as cardinals ("555 1234", "555-1234", "0800 1234", "1234 5678"); a
               multiple of a hundred is always said by hundreds ("1500 people" → "fifteen
               hundred people", as a quantity is often said too); after "in", "since", "until",
               "till", "from", "by", "between", "during", "before", "after", "circa", "year", a
               season, a month, or a determiner ("the 1990 election", "a 2019 study"), unless a
               counted plural, a unit or a span of time follows ("in 1234 steps", "the 1234
               miles", "in 1990 kg": cardinals; "people" and the like only after a determiner,
               "the 1234 people", since "in 1990 people voted" is a year); before the end of the
               text, punctuation, an era ("1066 AD"), a month, or "was", "is", "when"; at the
               start of a sentence before a verb in the past or a preposition ("1990 saw the
               end", "1984 by George Orwell"); numbers joined into a run ("1990 to 95", "between
               1990 and 1995", "1990, 1991") share the context of its ends. Otherwise a cardinal:
               "1234 steps", "about 1990 people" → "one thousand two hundred thirty four steps",
               "one thousand nine hundred ninety people". What these rules get wrong: a headline's
               "1234 killed in ..." and "1234 in total" (years). After a label word (flight,
               route, room, bus, channel, apollo, model, gate, platform, track, highway,
               interstate, page) a bare three- or four-digit number is a name and is said in
               pairs whatever its value: "Flight 1549" → "flight fifteen forty nine", "room 101"
               → "room one oh one", "Interstate 405" → "interstate four oh five", "flight 2005"
               → "flight twenty oh five" (a round thousand stays "two thousand"). A "+" right
               before a number, starting a word or after a digit, is "plus": "+5 degrees" →
               "plus five degrees", "+1 650 ..." → "plus one six hundred fifty ...", "2+2" →
               "two plus two" ("c++11" keeps it; punct keeps "+" and the other math symbols,
               which are said). A plural is read as years whatever is
               around it ("1990s", "the 1995s" → "nineteen nineties", "nineteen ninety fives";
               "'90s" → "nineties"). Separators: a comma
               followed by exactly three digits groups thousands ("3,500"); followed by one, two,
               four or more, it is a decimal comma ("3,5" → "three point five", "€3,50" → "three
               euros fifty cents"), except in a chain ("1,2,3") or next to a point ("1.000,5").
               Space-grouped thousands (SI style: every group after the first exactly three
               digits) are joined ("1 000 000", "12 500", "1 000" → "one million", "twelve
               thousand five hundred", "one thousand") unless they may be a count before a
               number: one digit, a space, three digits not starting with 0 ("5 100 people", "2
               500 ml" → "five one hundred people", "two five hundred ml"), so "1 500" meant as
               1500 is read "one five hundred" (write "1,500" or "1500"). What is written
               around a number is read the way a reference transcript spells it out (as NeMo's
               text normalisation does):
               money "$5" / "$ 5" / "5$" / "5 €" → "five dollars" / ... "five euros", "$5.50" →
               "five dollars fifty cents", "$1" → "one dollar", "$2.5 million" and "$2.5m" → "two
               point five million dollars" (k, m, mn, b, bn, tn only after a currency sign: "5m"
               alone may be metres), £ pounds/pence, € euros/cents, ¥ yen, ₹ rupees/paise;
               "25%" and "25 %" → "twenty five percent"; plurals "1990s" and "1990's" → "nineteen
               nineties" (1010–1999 and 2010–2099 read as years), "80s" → "eighties", "100s" →
               "hundreds", "5s" → "fives"; times "3:45" → "three forty five", "3:05" → "three oh
               five", "10:00" → "ten o'clock", "15:00" → "fifteen hundred"; fractions with a
               denominator up to ten "1/2" and "½" → "one half", "3/4" → "three quarters", "1 1/2"
               and "1½" → "one and a half" ("24/7", "9/11" stay two numbers); "No. 5", "№ 5", "#1" →
               "number five", "number one"; ".5" → "point five"; a rising range "5-10" → "five to
               ten" (a falling pair "3-2" is a score: "three two"; three digits then four not
               ending in 00, "555-1234", a phone number); "-4" → "minus four" when the - (or −)
               starts a word ("covid-19" keeps it as a joiner). Not read, but the same
               however spaced: units ("5kg", "5 kg" → "five kg": spelt out, they would have to pick
               "kilometres" or "kilometers"), am/pm ("5pm", "5 PM", "5 p.m." → "five pm" with
               lower and punct; an ASR's "p m" stays two words); superscripts keep their form
               ("m²": a power or a footnote mark).

Whatever steps are on, they run in that fixed order: numbers, lower, punct (numbers must see
"3.5", "1,000", "25%" and "-4" before punct removes their signs), and runs of whitespace then collapse
to one space with none at the ends.

``normalize_many`` is the bulk path (load time, up to 1M strings): lower-casing, punctuation and
whitespace are done by Arrow compute kernels over the whole column; only strings containing a
digit go through Python, with inflect conversions cached per distinct number, and only non-ASCII
ones through the prelude. ``normalize`` is the same code on a one-element column, so both always
agree.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "NORMALIZERS",
    "RE2_OTHER_WHITESPACE",
    "RE2_WHITESPACE",
    "WHITESPACE",
    "collapse_whitespace",
    "normalize",
    "normalize_arrow",
    "normalize_many",
    "parse_normalize",
    "split_words",
    "token_numbers",
    "word_lists",
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

# Currency sign → (unit, units, subunit, subunits), read after the amount: "$5.50" → "five
# dollars fifty cents".
_CURRENCIES: dict[str, tuple[str, str, str, str]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "sen", "sen"),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_CURRENCY_SIGNS = "".join(_CURRENCIES)
# Abbreviated scales, read as such only in an amount of money ("$5m" → "five million dollars"):
# alone, "5m" is as likely five metres, so it stays "five m".
_SCALE_ABBREVIATIONS = {"k": "thousand", "m": "million", "mn": "million", "b": "billion", "bn": "billion",
                        "tn": "trillion"}
# The vulgar fraction characters, "½" → (1, 2) (their compatibility form is "1⁄2").
_VULGAR_FRACTIONS = "¼½¾⅐⅑⅒⅓⅔⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞"
_VULGAR: dict[str, tuple[int, int]] = {
    c: tuple(int(p) for p in unicodedata.normalize("NFKC", c).split("\u2044"))  # type: ignore[misc]
    for c in _VULGAR_FRACTIONS
}
# Fractions are read as such only with a denominator up to ten and a numerator below it: "24/7",
# "9/11" and "50/50" are said as their two numbers.
_FRACTION_NAMES: dict[int, tuple[str, str]] = {
    2: ("half", "halves"), 3: ("third", "thirds"), 4: ("quarter", "quarters"), 5: ("fifth", "fifths"),
    6: ("sixth", "sixths"), 7: ("seventh", "sevenths"), 8: ("eighth", "eighths"), 9: ("ninth", "ninths"),
    10: ("tenth", "tenths"),
}

# One regex for everything numbers reads, in three shapes:
# - a time "3:45" (not inside "1:02:03" or after a digit, "." or "/");
# - a fraction "1/2", "1 1/2" (not inside a date "1/2/2020");
# - any other number: grouped thousands ("1,000,000", "1 000 000": every group after the first
#   exactly three digits; the prelude has already turned no-break and thin spaces into " "; with
#   spaces, not one digit then one group not starting with 0, "5 100 people": a count before a
#   number as likely) or a plain digit run, then a vulgar fraction ("1½"), or an optional decimal part and at most one
#   of: "%" (maybe after a space), a suffix that is not the start of a longer word (an ordinal
#   "1st", the "s" or "'s" of a plural "1990s", "1990's"; "4thumbs" keeps its letters), a scale
#   word ("5 million"), an abbreviated scale ("5m", only read as one in money);
# - a vulgar fraction alone ("½").
# Digits glued to letters still convert ("mp3" → "mp three") so that "mp3" and "mp 3" agree.
#
# The regex starts at the first digit, which lets Python's re skip ahead to candidate digits
# quickly; the signs before a number (currency, minus, "#", "No.", a leading ".") and a currency
# sign after it are looked at by hand (_numbers_to_words), ~2.5x faster than optional prefixes
# inside the regex.
_NUMBER_RE = re.compile(
    # The lookahead gives re the set of characters a match starts with, so that it skips ahead to
    # them (the lookbehinds below would stop it from finding that set: ~1.5x slower).
    rf"(?=[0-9{_VULGAR_FRACTIONS}])(?:"
    r"(?<![0-9:.,/])(?P<hour>[0-9]{1,2}):(?P<minute>[0-5][0-9])(?![0-9]|:[0-9])"
    r"|(?<![0-9:.,/])(?:(?P<whole>[0-9]+) )?(?P<num>[0-9]{1,2})/(?P<den>[0-9]{1,2})(?![0-9]|/[0-9])"
    r"|(?P<int>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])"
    r"|(?:[0-9]{2,3}(?: [0-9]{3})+|[0-9] 0[0-9]{2}(?: [0-9]{3})*|[0-9](?: [0-9]{3}){2,})(?![0-9]| [0-9])"
    r"|[0-9]+)"
    rf"(?:(?P<vulgar>[{_VULGAR_FRACTIONS}])"
    r"|(?P<frac>\.[0-9]+)?"
    r"(?:(?P<pct> ?%)"
    r"|(?P<suffix>st|nd|rd|th|['\u2019]?s)(?![^\W\d_])"
    r"|\s+(?P<scale>thousand|million|billion|trillion)(?![^\W\d_])"
    r"|(?P<abbr>k|mn|m|bn|b|tn)(?![^\W\d_]))?)"
    rf"|(?P<lone>[{_VULGAR_FRACTIONS}]))",
    re.IGNORECASE,
)
# Positions in match.groups().
_INT, _VULGAR_GROUP, _FRAC, _SUFFIX, _ABBR, _LONE = (_NUMBER_RE.groupindex[name] - 1
                                                     for name in ("int", "vulgar", "frac", "suffix", "abbr", "lone"))
_INFLECT_SEPARATORS = re.compile(r"[-,\s]+")
# A range "5-10" → "5 to 10": two plain numbers joined by a hyphen or en dash, not part of a
# longer chain ("2020-01-05", "555-123-4567") or a word ("covid-19", "A4-5"). Only rising pairs
# are ranges ("1990-2000", "1990-95"); "3-2" is a score and stays two numbers.
_DIGIT_DASH_DIGIT = re.compile("[0-9][-\u2013][0-9]")  # cheap first test: most hyphens join words
_RANGE_RE = re.compile(r"(?=[0-9])(?<![\w.,:/\-\u2013\u2212])([0-9]+(?:\.[0-9]+)?)[-\u2013]([0-9]+(?:\.[0-9]+)?)"
                       r"(?![\w\-\u2013/:]|[.,][0-9])")

# A decimal comma "3,5" → "3.5" (European style): a comma between digit runs that is not followed by
# exactly three digits ("3,500" is grouped thousands), outside a chain of numbers ("1,2,3") or a
# number with both separators ("1.000,5").
# The regex starts at the comma, a literal Python's re jumps to (~10x faster than starting at the
# digits before it, which needs lookbehinds at every position); what precedes the digit run before
# the comma is looked at by hand (_decimal_comma_sub).
_DECIMAL_COMMA_RE = re.compile(r",(?<=[0-9],)([0-9]{1,2}|[0-9]{4,})(?![0-9]|[.,][0-9])")


def _decimal_comma_sub(match: re.Match[str]) -> str:
    text, start = match.string, match.start() - 1
    while start > 0 and "0" <= text[start - 1] <= "9":
        start -= 1
    if start >= 2 and text[start - 1] in ",." and "0" <= text[start - 2] <= "9":  # "1,2,3", "1.000,5"
        return match.group(0)
    return "." + match.group(1)

# A hyphen-minus or minus sign directly before the number (or its currency sign) is "minus" when it
# starts a word: at the start of the text or after whitespace or an opening bracket or quote
# ("-4", "(-4)", "-$5"); after anything else it joins ("covid-19", "1990-2000", "mid-80s").
_MINUS_SIGNS = "-\u2212"
# A "+" directly before a number is said "plus" where it starts a word ("+5 degrees", "+1 650 555
# 1234": a sign, or a phone number's country code, said "plus one") or follows a digit ("2+2"); after
# a letter it is part of a name ("c++11"). The punct step keeps "+" and the other math symbols
# (Unicode Sm: = < > ± ×), which are said: it has no way to tell a sign from "c++" or "a+b".
_SIGNS = _MINUS_SIGNS + "+"
# An apostrophe before a two-digit year ("'90s", "’99") at the start of a word is read with it.
_ELISION_MARKS = "'\u2019\u2018\u02bc"
_OPENERS = "([{\"'\u2018\u201c\u00ab"
# Four-digit numbers that can be read as years, by hundreds: "1990" → "nineteen ninety", "2020" →
# "twenty twenty", "1066" → "ten sixty six" (1000-1009 and 2000-2009 are said as cardinals as
# years too, "two thousand five", so they are not in it).
_YEAR_RANGES = ((1010, 1999), (2010, 2099))
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@functools.lru_cache(maxsize=1)
def _inflect_engine():  # inflect takes ~0.1 s to import; only pay for it when numbers is on
    import inflect

    return inflect.engine()


@functools.lru_cache(maxsize=200_000)
def _number_words(integer: str, frac: str, ordinal: bool) -> str:
    """Words for one number; cached because corpora repeat the same numbers a lot.

    A digit run with a leading zero ("007", "02") is not a quantity: it is read digit by digit
    ("zero zero seven"), as it is said; "0" and "0.5" are read as numbers."""
    engine = _inflect_engine()
    digits = integer.replace(",", "").replace(" ", "")
    if len(digits) > 1 and digits[0] == "0":
        spoken = " ".join(_DIGIT_WORDS[int(d)] for d in digits)
        if frac:
            spoken += " " + _number_words("0", frac, False).removeprefix("zero ")
        return spoken
    if ordinal and not frac:
        spoken = engine.number_to_words(engine.ordinal(digits), andword="")
    else:
        spoken = engine.number_to_words(digits + frac, andword="")
    return _INFLECT_SEPARATORS.sub(" ", str(spoken)).strip()


def _plural(words: str) -> str:
    """The last word made plural: "twenty" → "twenties", "six" → "sixes", "one hundred" → "one
    hundreds"."""
    head, _, last = words.rpartition(" ")
    if last.endswith("y"):
        last = last[:-1] + "ies"
    elif last.endswith("x"):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def _year_words(integer: str) -> str | None:
    """A plain four-digit number said as a year, or None outside _YEAR_RANGES: "1990" →
    "nineteen ninety", "1905" → "nineteen oh five", "1900" → "nineteen hundred", "2020" → "twenty
    twenty"."""
    if len(integer) != 4 or not integer.isdigit():
        return None
    value = int(integer)
    if not any(lo <= value <= hi for lo, hi in _YEAR_RANGES):
        return None
    return _pair_words(value)


@functools.lru_cache(maxsize=20_000)
def _pair_words(value: int) -> str:
    """A number said by hundreds, its last two digits as a pair: 1990 → "nineteen ninety", 1905 →
    "nineteen oh five", 1900 → "nineteen hundred", 101 → "one oh one", 370 → "three seventy"."""
    hundreds, rest = divmod(value, 100)
    if rest == 0:
        tens = "hundred"
    elif rest < 10:
        tens = f"oh {_DIGIT_WORDS[rest]}"
    else:
        tens = _number_words(str(rest), "", False)
    return f"{_number_words(str(hundreds), '', False)} {tens}"


# Words after which a three- or four-digit number is a name, not a quantity, and is said by pairs
# as labels are ("Flight 1549" → "flight fifteen forty nine", "room 101" → "room one oh one",
# "Interstate 405" → "interstate four oh five", "page 250" → "page two fifty"), whatever follows it;
# a round thousand stays a cardinal ("flight 2000" → "two thousand"), as does a leading zero
# (digit by digit) or anything written around it ("flight 1,549", "room 101st").
_LABEL_WORDS = frozenset(("flight", "route", "room", "bus", "channel", "apollo", "model", "gate", "platform",
                          "track", "highway", "interstate", "page"))
# Their last two letters: a test on two characters turns away most words before a number.
_LABEL_ENDINGS = frozenset(word[-2:] for word in _LABEL_WORDS)


def _label_words(text: str, start: int, groups: tuple[str | None, ...]) -> str | None:
    """The words for a bare three- or four-digit number at ``text[start:]`` after a word of
    _LABEL_WORDS, or None where it is not one (see _LABEL_WORDS)."""
    if start < 3 or text[start - 1] != " " or text[start - 3:start - 1].lower() not in _LABEL_ENDINGS:
        return None
    integer = groups[_INT]
    if (integer is None or not 3 <= len(integer) <= 4 or integer[0] == "0" or not integer.isdigit()
            or any(groups[_VULGAR_GROUP:_LONE]) or integer[1:] == "000"):
        return None
    space = text.rfind(" ", start - 13 if start > 13 else 0, start - 1)
    if space < 0 and start > 12:
        return None
    if text[space + 1:start - 1].lower() not in _LABEL_WORDS:
        return None
    return _pair_words(int(integer))


# When a four-digit number in _YEAR_RANGES is a year (_reads_as_year). Years are said by hundreds,
# quantities as cardinals ("1234 steps" → "one thousand two hundred thirty four steps"); the text
# around the number tells which. Month names (and their abbreviations) say year before or after it.
_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|december"
           "|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec")
# The word before a year: a preposition of time ("in 1990", "since 2010", "by 2030"), "year", a
# season, a month, or a determiner of an attributive year ("the 1990 election", "a 2019 study"); unless
# a word of _COUNTED_WORDS_AFTER follows ("the 1234 steps"). "of" and "to" are not in
# it: "a total of 1234", "up to 1234 people" are quantities as often as "the summer of 1969".
_YEAR_WORDS_BEFORE = frozenset((
    "in", "since", "until", "till", "from", "by", "between", "during", "before", "after", "circa", "year",
    "spring", "summer", "autumn", "fall", "winter", "the", "a", "an", "this", "that", "his", "her", "its",
    "our", "their", "my", "your", *_MONTHS.split("|")))
# Numbers joined into one run of years ("1990 to 95", "1990-2000", "1990, 1991 and 1992") share
# the context of the run's first (before) and last (after) number.
_YEAR_JOINER_WORDS = frozenset(("to", "and", "or", "through", "till", "until"))
_YEAR_JOINER = rf"(?:\s*[-\u2013,&/]\s*|\s+(?:{'|'.join(sorted(_YEAR_JOINER_WORDS))})\s+)"
_YEAR_CHAINED = r"[0-9]+(?:st|nd|rd|th|['\u2019]?s)?"
# Matched in the reversed text before the number (an anchored match, ~15x faster than a search
# for a match ending at the number): the word before its run, or a month and a day ("May 5, 1990",
# "May 5 1990"), spelt backwards.
_YEAR_BEFORE_REVERSED_RE = re.compile(
    r"(?:(?:\s*[-\u2013,&/]\s*|\s+(?:ot|dna|ro|hguorht|llit|litnu)\s+)(?:ts|dn|dr|ht|s['\u2019]?)?[0-9]+)*\s+"
    r"(?:,?(?:ts|dn|dr|ht)?(?P<day>[0-9]{1,2}) )?\.?(?P<word>[^\W\d_]+)(?![^\W\d_])",
    re.IGNORECASE,
)
_MONTH_NAMES = frozenset(_MONTHS.split("|"))
# Matched after the number: the end of the text, punctuation ("1990.", "2020-01-05", "1990-era"),
# an era ("1066 AD"), a month ("1990 May"), or "was", "is", "when" ("1990 was a good year").
_YEAR_WORDS_AFTER = frozenset(("ad", "bc", "bce", "ce", "was", "is", "when", *_MONTH_NAMES))
# The word after the number that makes it a count even after a word of _YEAR_WORDS_BEFORE: a plural
# noun that is counted, a unit or a span of time ("in 1234 steps", "the 1234 miles", "in 1990 kg").
# Only these: a plural after an attributive year is as common ("the 1990 elections", "the 2012
# games"), so a plural noun alone says nothing.
_COUNTED_WORDS_AFTER = frozenset((
    "steps", "times", "miles", "kilometres", "kilometers", "metres", "meters", "feet", "yards", "inches",
    "km", "m", "cm", "mm", "kg", "g", "mg", "lb", "lbs", "ml", "l", "mph", "kph", "kmh", "pounds", "kilos",
    "kilograms", "grams", "tons", "tonnes", "litres", "liters", "gallons", "dollars", "euros", "cents",
    "words", "pages", "pieces", "points", "units", "items", "copies", "cases", "deaths", "calories", "degrees",
    "acres", "bytes", "pixels", "lines", "characters", "years", "months", "weeks", "days", "hours",
    "minutes", "seconds", "ms"))
# People, counted after a determiner ("the 1234 people who") but the subject of a new clause after a
# preposition of time, which is then a year ("in 1990 people voted", "by 2030 students will").
_PEOPLE_WORDS_AFTER = frozenset((
    "people", "men", "women", "children", "kids", "students", "voters", "workers", "soldiers", "troops",
    "residents", "families", "fans", "players", "members", "users", "customers", "employees", "patients"))
_DETERMINERS = frozenset(("the", "a", "an", "this", "that", "his", "her", "its", "our", "their", "my", "your"))
# A year that starts a sentence is the subject of a verb in the past ("1990 saw the end of...", "2012
# marked...", any word in -ed but -eed) or comes before a preposition ("1984 by George Orwell", "1990
# in review"); a count that starts one is said in words by most style guides. Not "were" (a plural
# subject: "1234 were injured"), "of" or "for" ("1234 of them").
_PAST_VERBS_AFTER = frozenset((
    "saw", "had", "brought", "began", "became", "came", "gave", "made", "took", "went", "found", "held",
    "left", "led", "met", "ran", "rose", "fell", "got", "kept", "lost", "won", "set", "put", "built", "bought",
    "sold", "told", "said", "hit", "struck", "drew", "grew", "knew", "threw", "wrote", "broke", "chose",
    "shook", "stood", "meant", "felt", "sent", "spent", "proved", "seemed"))
_PREPOSITIONS_AFTER = frozenset(("by", "in", "on", "at", "during", "after", "before", "through", "under"))
_YEAR_AFTER_RE = re.compile(
    rf"(?:{_YEAR_JOINER}{_YEAR_CHAINED})*\s*(?:$|[^\w\s]"
    rf"|(?:a\.d\.|b\.c\.|b\.c\.e\.|c\.e\.|{'|'.join(sorted(_YEAR_WORDS_AFTER))})(?![^\W\d_]))",
    re.IGNORECASE,
)


def _year_candidate(groups: tuple[str | None, ...]) -> bool:
    """Whether a match is a bare four-digit number in _YEAR_RANGES (no decimal part, %, suffix or
    scale after it), the only numbers _reads_as_year decides about. Letters after it ("1500m")
    are read as the word after it ("1500 m") is."""
    integer = groups[_INT]
    return (integer is not None and len(integer) == 4
            and ("1010" <= integer <= "1999" or "2010" <= integer <= "2099")
            and not any(groups[_VULGAR_GROUP:_ABBR]))


def _reads_as_year(text: str, start: int) -> bool:
    """Whether the bare four-digit number at ``text[start:]`` (see _year_candidate) is said as a
    year. In order: after a month and a day ("May 5 1990"), a year; in a run of digit groups
    (after "<digit> " or "<three digits>-", or before " <three digits>": phone numbers "555 1234",
    "555-1234", "0800 1234", "1234 5678"), a cardinal; a multiple of a hundred ("1500 people"),
    "fifteen hundred" (said so as a quantity too); after a word of _YEAR_WORDS_BEFORE, a year
    unless a counted word follows ("in 1234 steps", "the 1234 people"); before what _YEAR_AFTER_RE
    matches (the end, punctuation, an era, a month, "was"/"is"/"when"), or at the start of a
    sentence before a verb in the past or a preposition ("1990 saw", "1984 by"), a year; a
    cardinal otherwise ("1234 steps", "about 1990 people")."""
    # The cheap tests on characters first: this runs for every year-like number.
    end = start + 4
    after_digit_space = start >= 2 and text[start - 1] == " " and "0" <= text[start - 2] <= "9"
    if not after_digit_space:
        if start >= 4 and text[start - 1] in "-\u2013" and text[start - 4:start - 1].isdigit():
            return False
        following = text[end + 1:end + 4]
        if text[end:end + 1] == " " and len(following) == 3 and following.isdigit():
            return False
        if text[end - 2:end] == "00":
            return True
        if end == len(text) or not (text[end].isalnum() or text[end].isspace() or text[end] == "_"):
            return True  # the end or punctuation: what _YEAR_AFTER_RE matches most often
    word = ""
    before = None
    if start and text[start - 1] in "-\u2013,&/":  # in a run: "1990,1991", "1990/1991"
        before = _YEAR_BEFORE_REVERSED_RE.match(text[max(0, start - 64):start][::-1])
    elif start and text[start - 1].isspace():
        # A plain word and one space before it are looked at without the regex, which is needed
        # only for a run of numbers or a day ("1990 and 1995", "May 5, 1990") or other spacing.
        space = text.rfind(" ", max(0, start - 24), start - 1)
        last = text[space + 1:start - 1].removesuffix(".") if space >= 0 or start <= 24 else ""
        if text[start - 1] == " " and last.isalpha() and last.lower() not in _YEAR_JOINER_WORDS:
            word = last.lower()
        elif after_digit_space and (parts := text[max(0, start - 24):start].split()) and (
                len(parts) < 2 or parts[-2].removesuffix(".").lower() not in _MONTH_NAMES):
            return False  # no "May 5 1990"
        else:
            before = _YEAR_BEFORE_REVERSED_RE.match(text[max(0, start - 64):start][::-1])
    if before is not None:
        word = before.group("word")[::-1].lower()
        if before.group("day") is not None:
            if word in _MONTH_NAMES:
                return True
            word = ""  # "5 1990": no word right before it
    if after_digit_space:
        return False
    following_word = _word_after(text, end)
    if word in _YEAR_WORDS_BEFORE:
        if following_word in _COUNTED_WORDS_AFTER:
            return False  # "in 1234 steps", "the 1234 miles"
        return not (following_word in _PEOPLE_WORDS_AFTER and word in _DETERMINERS)  # "the 1234 people"
    if following_word and following_word not in _YEAR_JOINER_WORDS:
        return following_word in _YEAR_WORDS_AFTER or (
            (following_word in _PREPOSITIONS_AFTER or following_word in _PAST_VERBS_AFTER
             or (following_word.endswith("ed") and len(following_word) > 3 and not following_word.endswith("eed")))
            and _starts_sentence(text, start))
    return _YEAR_AFTER_RE.match(text, end) is not None


def _word_after(text: str, end: int) -> str:
    """The word right after a number ending at ``end``, lower-cased, after one space or glued to it
    ("1990 kg", "1990kg"), or "" where none is (a whole word: followed by something inside a short
    window, or the text ends in it; by hand, as the word before is, since this runs per number); ""
    before an abbreviation with points ("1990 A.D."), which _YEAR_AFTER_RE reads."""
    following = _WORD_AFTER_RE.match(text, end)
    return following.group(1).lower() if following is not None else ""


_WORD_AFTER_RE = re.compile(r" ?([^\W\d_]{1,23})(?![^\W\d_]|\.[^\W\d_])")


def _starts_sentence(text: str, start: int) -> bool:
    """Whether only spaces and opening brackets or quotes lie between ``start`` and the start of the
    text or the end of a sentence (".", "!", "?")."""
    i = start - 1
    while i >= 0 and (text[i].isspace() or text[i] in _OPENERS):
        i -= 1
    return i < 0 or text[i] in ".!?"


def _plural_words(integer: str) -> str | None:
    """A number's plural, for the number before an "s" or "'s": a decade "1990" → "nineteen
    nineties", "80" → "eighties", "2000" → "two thousands"; any plural four-digit number in
    _YEAR_RANGES is years ("the 1995s", model years, → "nineteen ninety fives"); "100" →
    "hundreds" (no "one": "100s of people" is said "hundreds of people"); "5" → "fives". None when
    ``integer`` has a separator ("1,990s" stays "one thousand nine hundred ninety s")."""
    if not integer.isdigit():
        return None
    if (year := _year_words(integer)) is not None:
        return _plural(year)
    spoken = _number_words(integer, "", False)
    if integer[0] == "1" and len(integer) > 2 and not integer[1:].strip("0"):  # 100, 1000, ...
        spoken = spoken.removeprefix("one ")
    return _plural(spoken)


def _money_words(currency: str, integer: str, frac: str, scale: str | None) -> str:
    """Amount of money: "$5" → "five dollars", "$5.50" → "five dollars fifty cents", "$0.01" →
    "one cent", "$2.5 million" → "two point five million dollars", "$5.5" → "five point five
    dollars" (a decimal part that is not two digits is not a number of cents)."""
    unit, units, subunit, subunits = _CURRENCIES[currency]
    if scale:
        return f"{_number_words(integer, frac, False)} {scale.lower()} {units}"
    if frac and len(frac) != 3:
        return f"{_number_words(integer, frac, False)} {units}"
    whole = int(integer.replace(",", "").replace(" ", ""))
    cents = int(frac[1:]) if frac else 0
    parts = []
    if whole or not cents:
        parts.append(f"{_number_words(integer, '', False)} {unit if whole == 1 else units}")
    if cents:
        parts.append(f"{_number_words(str(cents), '', False)} {subunit if cents == 1 else subunits}")
    return " ".join(parts)


def _time_words(hour: str, minute: str) -> str:
    """A time of day: "3:45" → "three forty five", "3:05" → "three oh five", "3:00" → "three
    o'clock", "15:00" → "fifteen hundred"; an hour over 24 ("45:30", a duration or a score) is read
    as its two numbers."""
    h = int(hour)
    if h > 24:
        return f"{_number_words(hour, '', False)} : {_number_words(minute, '', False)}"
    spoken = _number_words(str(h), "", False)
    m = int(minute)
    if m == 0:
        return f"{spoken} o'clock" if 1 <= h <= 12 else f"{spoken} hundred"
    if m < 10:
        return f"{spoken} oh {_DIGIT_WORDS[m]}"
    return f"{spoken} {_number_words(minute, '', False)}"


def _fraction_words(whole: str | None, num: str, den: str) -> str:
    """"1/2" → "one half", "3/4" → "three quarters", "1 1/2" and "1½" → "one and a half", "2 3/4" →
    "two and three quarters"; "24/7" (not a fraction: see _FRACTION_NAMES) → its two numbers."""
    n, d = int(num), int(den)
    head = f"{_number_words(whole, '', False)} " if whole else ""
    if not 0 < n < d <= 10:
        return f"{head}{_number_words(num, '', False)} / {_number_words(den, '', False)}"
    name = _FRACTION_NAMES[d][n > 1]
    if whole:
        return f"{head}and {'a' if n == 1 else _number_words(num, '', False)} {name}"
    return f"{_number_words(num, '', False)} {name}"


def _amount_words(currency: str, lead: str, integer: str, frac: str | None, pct: str | None,
                  suffix: str | None, scale: str | None, abbr: str | None, minus: bool, year: bool) -> str:
    """A number that is not a time or a fraction, with what is written around it. ``year``: a bare
    four-digit number that its context says is a year (_reads_as_year)."""
    frac = frac or ""
    if currency:
        if abbr:
            scale, abbr = _SCALE_ABBREVIATIONS[abbr.lower()], None
        spoken = _money_words(currency, integer, frac, scale)
        if suffix or pct:  # "$5th", "$5%": not money words; keep the letters as a word of their own
            spoken = f"{spoken} {suffix or pct.strip()}"
        return spoken
    plural = suffix is not None and suffix[-1] in "sS" and len(suffix) < 3 and suffix.lower() != "st"
    if lead == "point":  # ".5": the digits after a point are read one by one
        spoken = "point " + " ".join(_DIGIT_WORDS[int(d)] for d in integer if d.isdigit())
        if suffix:
            spoken = f"{spoken} {suffix}"
    elif plural and not frac and (words := _plural_words(integer)) is not None:
        spoken = words
    elif year and not (lead or minus) and (said := _year_words(integer)):
        spoken = said
    else:
        ordinal = bool(suffix) and not plural and not frac
        spoken = _number_words(integer, frac, ordinal)
        if suffix and not ordinal:  # "3.5th", "1,990s": keep the letters as a word of their own
            spoken = f"{spoken} {suffix.lstrip(chr(39) + chr(0x2019))}"
    if pct:
        spoken = f"{spoken} percent"
    if scale:  # no currency: the scale word stays as written
        spoken = f"{spoken} {scale}"
    if abbr:
        spoken = f"{spoken} {abbr}"
    if lead == "number":
        spoken = f"number {spoken}"
    return spoken


@functools.lru_cache(maxsize=200_000)
def _spoken(sign: str, currency: str, lead: str, groups: tuple[str | None, ...], year: bool = False) -> str:
    """The words for one matched number with its signs; cached per distinct token. ``sign``: "",
    "minus" or "plus", said before it. ``year``: see _amount_words."""
    hour, minute, whole, num, den, integer, vulgar, frac, pct, suffix, scale, abbr, lone = groups
    if hour is not None:
        spoken = _time_words(hour, minute or "")
    elif num is not None:
        spoken = _fraction_words(whole, num, den or "")
    elif lone is not None:
        spoken = _fraction_words(None, *(str(p) for p in _VULGAR[lone]))
    elif vulgar is not None:
        spoken = _fraction_words(integer, *(str(p) for p in _VULGAR[vulgar]))
    else:
        spoken = _amount_words(currency, lead, integer or "", frac, pct, suffix, scale, abbr, bool(sign), year)
    return f"{sign} {spoken}" if sign else spoken


def _range_sub(match: re.Match[str]) -> str:
    left, right = match.group(1), match.group(2)
    if len(left) == 3 and len(right) == 4 and right.isdigit() and left.isdigit() and right[2:] != "00":
        return match.group(0)  # "555-1234": a phone number; a range to four digits ends at a round number
    low = left
    if len(right) < len(left) == 4 and right.isdigit():  # "1990-95"
        low = left[-len(right):]
    return f"{left} to {right}" if float(low) < float(right) else match.group(0)


def _number_sign_start(text: str, end: int, done: int) -> int:
    """Where "No." or "№" ends at ``end`` ("No. 5", "no.5", "№ 5" → "number five"), or -1. The
    abbreviation must be a word of its own: "techno. 5" is not one. By hand: a regex search with
    the lookbehind this needs costs ~7x more, once per number."""
    if end - 1 >= done and text[end - 1] == "\u2116":
        return end - 1
    if end - 3 >= done and text[end - 3:end].lower() == "no." and (end == 3 or not text[end - 4].isalpha()):
        return end - 3
    return -1


def _numbers_to_words(text: str) -> str:
    """Every number of ``text`` in words, with the signs written around them. Other scripts'
    digits must have been made ASCII (_ascii_digits) before."""
    if "," in text:
        text = _DECIMAL_COMMA_RE.sub(_decimal_comma_sub, text)
    if ("-" in text or "\u2013" in text) and _DIGIT_DASH_DIGIT.search(text):
        text = _RANGE_RE.sub(_range_sub, text)
    has_currency = any(sign in text for sign in _CURRENCY_SIGNS)
    pieces = []
    done = 0  # text[:done] is in pieces
    for match in _NUMBER_RE.finditer(text):
        start, end = match.span()
        if start < done:  # a currency sign after the previous number was this one's
            continue
        groups = match.groups()
        currency = lead = ""
        if groups[_INT] is not None and groups[_VULGAR_GROUP] is None:
            # The common case, a number after a space in a text without a currency sign, is decided
            # in a few comparisons: this runs for every number.
            before = text[start - 1] if start > done else ""
            if has_currency and before in _CURRENCIES:
                start, currency = start - 1, before
            elif before == " ":
                if start - 1 > done:
                    two_before = text[start - 2]
                    if has_currency and two_before in _CURRENCIES:  # "$ 5"
                        start, currency = start - 2, two_before
                    elif two_before in ".\u2116" and (sign := _number_sign_start(text, start - 1, done)) >= 0:
                        start, lead = sign, "number"  # "No. 5"
            elif before == "#":
                start, lead = start - 1, "number"
            elif before == ".":
                if groups[_FRAC] is None and (start == 1 or text[start - 2].isspace() or text[start - 2] in _OPENERS):
                    start, lead = start - 1, "point"
                elif (sign := _number_sign_start(text, start, done)) >= 0:
                    start, lead = sign, "number"  # "No.5"
            elif before == "\u2116":
                start, lead = start - 1, "number"
            if has_currency and not (currency or lead or any(groups[_FRAC + 1:_LONE])):  # no %, suffix, scale
                after = end + (text[end:end + 1] == " ")  # "5$", "5 €"
                if (after < len(text) and text[after] in _CURRENCIES
                        and (after + 1 == len(text) or not text[after + 1].isalnum())):
                    currency, end = text[after], after + 1
        sign = ""
        if start > done and text[start - 1] in _SIGNS:
            is_plus = text[start - 1] == "+"
            if (start == 1 or text[start - 2].isspace() or text[start - 2] in _OPENERS
                    or (is_plus and "0" <= text[start - 2] <= "9")):
                sign = "plus" if is_plus else "minus"
        if sign:
            start -= 1
        elif (start > done and text[start - 1] in _ELISION_MARKS and len(groups[_INT] or "") == 2 and not currency
              and not any(groups[_FRAC:_SUFFIX]) and not any(groups[_SUFFIX + 1:_LONE])
              and (groups[_SUFFIX] or "s")[-1] in "sS" and (start == 1 or not text[start - 2].isalnum())):
            start -= 1  # "'90s", "class of '99": the mark stands for the century left out
        if not (currency or lead or sign) and (label := _label_words(text, start, groups)) is not None:
            spoken = label
        else:
            year = _year_candidate(groups) and not (currency or lead or sign) and _reads_as_year(text, start)
            spoken = _spoken(sign, currency, lead, groups, year)
        # Spaces on both sides so that a number glued to letters becomes separate words.
        pieces += (text[done:start], " ", spoken, " ")
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


# Texts where nothing that _numbers_to_words looks at by hand sits next to a digit (most of them:
# _apply_numbers finds them with one Arrow kernel) get the same result from a plain re.sub, ~20%
# faster. RE2 syntax.
_SIGNS_RE2 = re.escape(_CURRENCY_SIGNS)
_NEEDS_SIGNS = "|".join((
    f"[-\u2212\u2013#+{_SIGNS_RE2}][0-9\\x{{bc}}-\\x{{be}}\\x{{2150}}-\\x{{215e}}]",  # "-4", "5-10", "$5", "#1", "-½"
    f"[{_SIGNS_RE2}] [0-9]|[0-9] ?[{_SIGNS_RE2}]",  # "$ 5", "5$", "5 €"
    r"(?:^|[^0-9])\.[0-9]",                        # ".5"
    "['\u2019\u2018\u02bc][0-9]{2}(?:[^0-9]|$)",   # "'90s"
    "(?i:no)\\. ?[0-9]|\u2116 ?[0-9]",             # "No. 5", "№ 5"
    "[0-9],(?:[0-9]{1,2}|[0-9]{4,})(?:[^0-9]|$)",  # "3,5" (a superset of _DECIMAL_COMMA_RE's)
))


@functools.lru_cache(maxsize=1)
def _other_digits() -> tuple[dict[int, str], str, str]:
    """The decimal digits of other scripts (Unicode Nd beyond ASCII: Arabic-Indic "٥", Devanagari
    "५", Thai "๕"...) → ASCII ones, as a str.translate table; the RE2 class of the characters
    _ascii_digits changes (those digits and the Arabic number signs); and the RE2 class of
    the characters a string numbers has anything to do in (those digits, ASCII digits, vulgar
    fractions)."""
    major, minor = _categories()
    codes = np.flatnonzero((major == ord("N")) & (minor == ord("d")))
    codes = codes[codes > 0x7F]
    table = {code: str(unicodedata.decimal(chr(code))) for code in codes.tolist()}
    number_chars = np.concatenate((np.arange(ord("0"), ord("9") + 1), [ord(c) for c in _VULGAR_FRACTIONS], codes))
    changed = np.concatenate((codes, [ord(c) for c in _ARABIC_NUMBER_SIGNS]))
    return table, _re2_class(np.unique(changed)), _re2_class(np.unique(number_chars))


# The Arabic percent sign, decimal and thousands separators after a digit: "٥٪", "٣٫٥", "١٬٠٠٠".
_ARABIC_NUMBER_SIGNS = {"\u066a": "%", "\u066b": ".", "\u066c": ","}
_ARABIC_NUMBER_SIGN_RE = re.compile("(?<=[0-9])[\u066a-\u066c]")


def _ascii_digits(text: str) -> str:
    """Other scripts' digits as ASCII ones, and the Arabic signs after them as ASCII signs."""
    text = text.translate(_other_digits()[0])
    if "\u066a" in text or "\u066b" in text or "\u066c" in text:
        text = _ARABIC_NUMBER_SIGN_RE.sub(lambda sign: _ARABIC_NUMBER_SIGNS[sign.group()], text)
    return text


def _unsigned_number_sub(match: re.Match[str]) -> str:
    groups = match.groups()
    integer = groups[_INT]
    if integer is not None and 3 <= len(integer) <= 4:
        if (label := _label_words(match.string, match.start(), groups)) is not None:
            return f" {label} "
        if _year_candidate(groups):
            return f" {_spoken('', '', '', groups, _reads_as_year(match.string, match.start()))} "
    return f" {_spoken('', '', '', groups)} "


def _unsigned_numbers_to_words(text: str) -> str:
    """:func:`_numbers_to_words` for a text with no sign around a digit (see _NEEDS_SIGNS)."""
    return _NUMBER_RE.sub(_unsigned_number_sub, text)


# --- the prelude: one spelling per text --------------------------------------------------------
#
# Before any step, whatever steps are on, a text is put in one spelling, since the same words
# typed two ways must score as the same words: Unicode NFKC (composed and decomposed accents
# "café"/"cafe\u0301", ligatures "ﬁ", full-width "Ａ１", no-break and thin spaces), except that
# symbols and number characters keep their form ("²", "½", "™", "①": NFKC would turn "10²" into
# "102" and "1½" into "11⁄2"); and invisible format characters are removed (Unicode Cf: soft
# hyphen, zero-width space and joiners, bidi marks, BOM) along with variation selectors, which
# only pick a glyph.


@functools.lru_cache(maxsize=1)
def _categories() -> tuple[np.ndarray, np.ndarray]:
    """Every code point's Unicode category as two byte arrays ("Lu" → ord("L"), ord("u")); ~0.1 s."""
    categories = "".join(unicodedata.category(chr(c)) for c in range(_MAX_CODE_POINT + 1))
    pairs = np.frombuffer(categories.encode("ascii"), dtype=np.uint8).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


@functools.lru_cache(maxsize=1)
def _fold_table() -> dict[int, str | None]:
    """Per code point: its NFKC form for letters, marks, punctuation, spaces and decimal digits whose
    NFKC differs from NFC; None for invisible ones. NFC of the translated text is then NFKC except
    for the code points left out (once per process, only when a step is on)."""
    major, minor = _categories()
    codes = np.arange(len(major))
    invisible = (((major == ord("C")) & (minor == ord("f"))) | ((codes >= 0xFE00) & (codes <= 0xFE0F))
                 | ((codes >= 0xE0100) & (codes <= 0xE01EF)))
    table: dict[int, str | None] = dict.fromkeys(np.flatnonzero(invisible).tolist())
    kept_form = np.isin(major, np.frombuffer(b"LMPZ", dtype=np.uint8)) | ((major == ord("N")) & (minor == ord("d")))
    for code in np.flatnonzero(kept_form).tolist():
        char = chr(code)
        if unicodedata.decomposition(char):
            compatible = unicodedata.normalize("NFKC", char)
            if compatible != unicodedata.normalize("NFC", char):
                table[code] = compatible
    return table


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text.translate(_fold_table()))


@functools.lru_cache(maxsize=1)
def _re2_fold_class() -> str:
    return _re2_class(np.array(sorted(_fold_table()), dtype=np.int64))


def _apply_fold(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The prelude on every string. ASCII strings (nothing to do) stay in Arrow; of the others,
    only those holding a code point of the table are translated (str.translate looks every
    character up in a dict: ~20x slower than RE2 finding that there is none), and the rest only
    checked to be NFC (a quick check in C)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    other = pc.invert(pc.string_is_ascii(arr))
    if not pc.any(other).as_py():
        return arr
    texts = pc.filter(arr, other)
    in_table = pc.match_substring_regex(texts, _re2_fold_class()).to_pylist()
    folded = [_fold(s) if hit else s if unicodedata.is_normalized("NFC", s) else unicodedata.normalize("NFC", s)
              for s, hit in zip(texts.to_pylist(), in_table)]
    return pc.replace_with_mask(arr, other, pa.array(folded, type=arr.type))


# --- punctuation -------------------------------------------------------------------------------
#
# Rules, in order: a tag such as "<unk>" or "[noise]" (a single ASCII word in <> or []) is removed,
# as it is no spoken word; the marks used as apostrophes (’ ʼ ‘ ` ´ ′) become '; dashes (Unicode
# Pd) and "/" become spaces; every other punctuation character (Unicode P*) except ', every other
# symbol (So: emoji, ©, °; Sk: skin tones, ^) and the optional vowel and cantillation marks of
# Arabic (harakat, tatweel) and Hebrew (niqqud) are removed: they are written or not at the
# writer's choice and not said; then a contraction split off its word is joined back ("it 's",
# "don ' t", "do n't" → "it's", "don't", "don't", as tokenised corpora write them); then an
# apostrophe survives only when it is a single ' between two word characters (letters, digits,
# marks: "don't", "rock'n'roll"), so quotes and runs like "''" go.
#
# One definition: which code points are punctuation, dashes and word characters is decided once,
# from Python's unicodedata, and both paths use those sets: a translation table plus Python regexes
# for small inputs, the same sets spelled as explicit RE2 ranges for Arrow (the bulk path). RE2's
# own \p{P} / \pL tables follow a newer Unicode than Python's, so using them would make a line
# normalise differently depending on the size of the manifest it is in.

_APOSTROPHES = "\u2019\u02bc\u2018`\u00b4\u2032"
_APOSTROPHE_RUN = r"''+"
# Same syntax and meaning in Python's re and RE2 (ASCII only).
_TAG = r"<[/]?[A-Za-z][A-Za-z0-9_-]*>|\[[/]?[A-Za-z][A-Za-z0-9_-]*\]"
_CONTRACTION_SUFFIXES = "(?i:s|t|re|ve|ll|d|m)"
# Arabic harakat, Quranic marks and tatweel; Hebrew points and cantillation (not maqaf, paseq, sof
# pasuq or nun hafukha, which are punctuation already).
_OPTIONAL_MARKS = ((0x0610, 0x061A), (0x0640, 0x0640), (0x064B, 0x065F), (0x0670, 0x0670),
                   (0x06D6, 0x06DC), (0x06DF, 0x06E4), (0x06E7, 0x06E8), (0x06EA, 0x06ED),
                   (0x0591, 0x05BD), (0x05BF, 0x05BF), (0x05C1, 0x05C2), (0x05C4, 0x05C5),
                   (0x05C7, 0x05C7))

# Inputs shorter than this take the Python path (no RE2 compilation of the big classes).
_PYTHON_PUNCT_MAX_ROWS = 64
_MAX_CODE_POINT = 0x10FFFF


@dataclass(frozen=True)
class _PunctRules:
    """The punct step's code point sets, as a str.translate table and as regex classes."""

    translate: dict[int, str | None]  # apostrophe marks → ', joiners → " ", removed → removed
    joiners: np.ndarray               # Pd and "/"
    removed: np.ndarray               # P*, So, Sk and optional marks, except ' and the apostrophe marks
    word: np.ndarray                  # L*, N*, M*
    whitespace: np.ndarray            # str.isspace


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
    major, minor = _categories()
    punct = major == ord("P")
    joiners = (punct & (minor == ord("d"))) | (np.arange(len(major)) == ord("/"))
    symbols = (major == ord("S")) & ((minor == ord("o")) | (minor == ord("k")))
    removed = (punct & ~joiners) | symbols
    for lo, hi in _OPTIONAL_MARKS:
        removed[lo:hi + 1] = True
    apostrophes = [ord(c) for c in "'" + _APOSTROPHES]
    removed[apostrophes] = False
    word = (major == ord("L")) | (major == ord("N")) | (major == ord("M"))
    joiner_points, removed_points = np.flatnonzero(joiners), np.flatnonzero(removed)
    table: dict[int, str | None] = dict.fromkeys(removed_points.tolist())
    table.update(dict.fromkeys(joiner_points.tolist(), " "))
    table.update(dict.fromkeys(apostrophes[1:], "'"))
    whitespace = np.array([ord(c) for c in WHITESPACE])
    return _PunctRules(translate=table, joiners=joiner_points, removed=removed_points,
                       word=np.flatnonzero(word), whitespace=whitespace)


def _contraction_patterns(cls: Callable[..., str], after: str, end: str) -> tuple[str, str]:
    """"it 's" / "don ' t" → "it's" / "don't" and "do n't" → "don't": the patterns (replacements
    r"\1'\2\3" and r"\1\2\3"). The character after the suffix is captured (RE2 has no lookahead)
    and Python uses the same spelling, so both paths consume the same characters. ``after`` is an
    ASCII non-word character other than ' ("the 'd' key" quotes a letter; any non-ASCII character
    counts as a letter): a small class, where the word class costs ~0.2 s more to compile in re."""
    rules = _punct_rules()
    ws, not_ws = cls(rules.whitespace), cls(rules.whitespace, negate=True)
    non_word = after
    split_apostrophe = rf"({not_ws})(?:{ws}+'{ws}*|'{ws}+)({_CONTRACTION_SUFFIXES})({non_word}|{end})"
    split_negation = rf"({not_ws}){ws}+((?i:n)'(?i:t))({non_word}|{end})"
    return split_apostrophe, split_negation


@functools.lru_cache(maxsize=1)
def _re2_punct_patterns() -> tuple[str, ...]:
    rules = _punct_rules()
    non_word = _re2_class(rules.word, negate=True)
    # Apostrophes after / before a non-word character (RE2 has no lookaround). One match consumes
    # the neighbour, but single apostrophes never share a neighbour once runs are gone, so one pass
    # each side is exact.
    after_non_word, before_non_word = rf"(^|{non_word})'", rf"'({non_word}|$)"
    apostrophes = _re2_class(np.array(sorted(ord(c) for c in _APOSTROPHES)))
    return (apostrophes, _re2_class(rules.joiners), _re2_class(rules.removed),
            *_contraction_patterns(_re2_class, r"[^'A-Za-z0-9\x{80}-\x{10ffff}]", "$"), after_non_word, before_non_word)


def _punct_arrow(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    (apostrophes, joiners, removed, split_apostrophe, split_negation, after_non_word,
     before_non_word) = _re2_punct_patterns()
    arr = pc.replace_substring_regex(arr, _TAG, " ")
    arr = pc.replace_substring_regex(arr, apostrophes, "'")
    arr = pc.replace_substring_regex(arr, joiners, " ")
    arr = pc.replace_substring_regex(arr, removed, "")
    # The apostrophe rules only on the strings that have one (as _punct_python does): five regex
    # passes over every string would cost more than finding them.
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    has_apostrophe = pc.match_substring(arr, "'")
    if not pc.any(has_apostrophe).as_py():
        return arr
    quoted = pc.filter(arr, has_apostrophe)
    quoted = pc.replace_substring_regex(quoted, split_apostrophe, r"\1'\2\3")
    quoted = pc.replace_substring_regex(quoted, split_negation, r"\1\2\3")
    quoted = pc.replace_substring_regex(quoted, _APOSTROPHE_RUN, "")
    quoted = pc.replace_substring_regex(quoted, after_non_word, r"\1")
    quoted = pc.replace_substring_regex(quoted, before_non_word, r"\1")
    return pc.replace_with_mask(arr, has_apostrophe, quoted)


@functools.lru_cache(maxsize=1)
def _python_punct_regexes() -> tuple[re.Pattern[str], ...]:
    word = _python_class(_punct_rules().word)
    # The same rules as RE2's, spelled to start with the apostrophe: Python's re then jumps from
    # apostrophe to apostrophe instead of testing the big class at every position (~100x faster).
    # "' not preceded by a word character" is: the two characters ending after it are not word + '.
    after_non_word = rf"'(?<!{word}')"
    before_non_word = rf"'(?!{word})"
    split_apostrophe, split_negation = _contraction_patterns(_python_class, "[^'A-Za-z0-9\u0080-\U0010ffff]", r"\Z")
    return (re.compile(_TAG), re.compile(split_apostrophe), re.compile(split_negation),
            re.compile(_APOSTROPHE_RUN), re.compile(after_non_word), re.compile(before_non_word))


def _punct_python(text: str) -> str:
    tag, split_apostrophe, split_negation, run, after_non_word, before_non_word = _python_punct_regexes()
    if "<" in text or "[" in text:
        text = tag.sub(" ", text)
    chars = text.translate(_punct_rules().translate)
    if "'" not in chars:
        return chars
    chars = split_apostrophe.sub(r"\1'\2\3", chars)
    chars = split_negation.sub(r"\1\2\3", chars)
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
    arr = _apply_fold(arr)
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


#: Every character for which str.isspace() is true (tests/test_text.py checks the list): where
#: str.split() cuts words, so where sde's words (vocabulary, metrics, word indexes, ``has``) end.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: An RE2 class of them (RE2's ``\s`` is only ``[\t\n\f\r ]``), and one of them but the plain space.
RE2_WHITESPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]"
RE2_OTHER_WHITESPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE if c != " ") + "]"
# A run of two or more, or one that is not a plain space: the only places that need rewriting.
_RE2_WHITESPACE_TO_SPACE = f"{RE2_WHITESPACE}{{2,}}|{RE2_OTHER_WHITESPACE}"


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string (or binary) array's value offsets, len + 1 of them as int64 positions in its data
    buffer (a slice keeps its own), and that buffer's bytes (uint8, not copied): for scans of a
    column's bytes at once, with no per-string work."""
    n = len(arr)
    buffers = arr.buffers()
    if n == 0 or len(buffers) < 3 or buffers[1] is None:  # no offsets: no value has a byte
        return np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)[arr.offset:arr.offset + n + 1]
    data = buffers[2]
    return offsets.astype(np.int64), np.zeros(0, dtype=np.uint8) if data is None else np.frombuffer(data, dtype=np.uint8)


def collapse_whitespace(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``" ".join(s.split())`` for every string of an Arrow string column.

    A regex rewrite plus ``utf8_trim_whitespace`` (whose whitespace set equals ``str.isspace``):
    ~4x faster than splitting into lists and joining them again. Only the strings that may need
    it are rewritten: most transcripts hold single plain spaces alone, and one vectorised pass over
    a chunk's bytes finds the others (the regex was ~35% of :func:`word_lists`).
    """
    def rewritten(strings: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        return pc.utf8_trim_whitespace(pc.replace_substring_regex(strings, _RE2_WHITESPACE_TO_SPACE, " "))

    if isinstance(arr, pa.ChunkedArray):
        return pa.chunked_array([collapse_whitespace(chunk) for chunk in arr.chunks], type=arr.type)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)) or len(arr) == 0:
        return rewritten(arr)
    offsets, data = string_buffers(arr)
    first, end = int(offsets[0]), int(offsets[-1])
    if end == first:
        return arr  # all empty or missing: nothing to collapse
    data = data[first:end]
    starts, stops = offsets[:-1] - first, offsets[1:] - first
    filled = stops > starts
    # a leading or trailing space (a missing value's slot is empty: it is never looked at)
    edge = np.zeros(len(arr), dtype=bool)
    edge[filled] = (data[starts[filled]] == 32) | (data[stops[filled] - 1] == 32)
    # Whitespace other than the plain space: an ASCII one is below 32, a longer one's UTF-8 starts
    # with 0xC2, 0xE1, 0xE2 or 0xE3. Other characters with those bytes (control characters, "é",
    # "’") only send their strings to the regex for nothing: slower, never wrong.
    space = data == 32
    runs = space[:-1] & space[1:]
    if int(data.min()) >= 32 and int(data.max()) < 0xC2 and not edge.any() and not runs.any():
        return arr  # the usual transcript: words between single plain spaces
    bad = (data < 32) | (data == 0xC2) | ((data - np.uint8(0xE1)) <= 2)
    bad[:-1] |= runs  # a run of spaces (one crossing into the next string flags the string it starts in)
    found = np.flatnonzero(bad)
    if len(found):  # each suspect byte's string: the last one starting at or before it
        edge[np.searchsorted(starts, found, side="right") - 1] = True
    count = int(edge.sum())
    if count == 0:
        return arr
    if count * 4 > len(arr):  # most need it: one pass over all is cheaper than taking them out
        return rewritten(arr)
    mask = pa.array(edge)
    return pc.replace_with_mask(arr, mask, rewritten(arr.filter(mask)))


def word_lists(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The words of each string of an Arrow string column, a list per string: ``str.split()``,
    except that an empty (or all-whitespace) string gives ``[""]``."""
    return pc.split_pattern(collapse_whitespace(arr), " ")


def token_numbers(words: Iterable[str]) -> dict[str, int]:
    """The distinct ``words`` that are one ``str.split()`` token each, numbered in the order first
    seen: "" and a word holding whitespace ("a b") are in no text's words, so they are left out."""
    return {w: k for k, w in enumerate(dict.fromkeys(w for w in words if w.split() == [w]))}


def split_words(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """All words of an Arrow string column, flattened: ``str.split()`` of every string."""
    tokens = pc.list_flatten(word_lists(arr))
    # An empty (or all-whitespace) string splits to [""]; str.split() gives [].
    return pc.filter(tokens, pc.not_equal(tokens, pa.scalar("", tokens.type)))


def _apply_numbers(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Convert digits to words in the strings that have any; the rest stay in Arrow."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    _, other_digit, number_char = _other_digits()
    has_digit = pc.match_substring_regex(arr, number_char)
    if not pc.any(has_digit).as_py():
        return arr
    with_digits = pc.filter(arr, has_digit)
    if not pc.all(pc.string_is_ascii(with_digits)).as_py():
        # Before the signs are looked for: "-٤" is signed as "-4" is. Found by RE2 first, since
        # str.translate looks every character up (~40% slower on all-accented text otherwise).
        foreign = pc.match_substring_regex(with_digits, other_digit)
        if pc.any(foreign).as_py():
            ascii_texts = [_ascii_digits(t) for t in pc.filter(with_digits, foreign).to_pylist()]
            with_digits = pc.replace_with_mask(with_digits, foreign, pa.array(ascii_texts, type=with_digits.type))
    texts = with_digits.to_pylist()
    signed = pc.match_substring_regex(with_digits, _NEEDS_SIGNS).to_pylist()
    converted = pa.array([_numbers_to_words(s) if sign else _unsigned_numbers_to_words(s)
                          for s, sign in zip(texts, signed)], type=arr.type)
    return pc.replace_with_mask(arr, has_digit, converted)


def normalize(text: str, steps: Sequence[str]) -> str:
    """Normalise one string with the given steps (see the module docstring).

    With no steps the text is returned unchanged; with any step on, the text first gets one
    spelling (the prelude) and whitespace is collapsed at the end.
    """
    if not parse_normalize(steps):
        return text
    return normalize_many([text], steps)[0]
