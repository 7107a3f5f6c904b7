"""sde.text: tokenisation, the normalisation spec, normalisation by hand."""

from __future__ import annotations

import random
import unicodedata

import pandas as pd
import pyarrow as pa
import pytest

import sde.text as text_module
from sde.text import (
    NORMALIZERS,
    collapse_whitespace,
    normalize,
    normalize_many,
    parse_normalize,
    split_words,
    words,
)

ALL = ("lower", "punct", "numbers")


def test_words_is_whitespace_split():
    assert words("  the\tcat\n sat  ") == ["the", "cat", "sat"]
    assert words("naïve 日本語 😀") == ["naïve", "日本語", "😀"]
    assert words("") == [] and words(" \t ") == []
    assert words("Hello, World!") == ["Hello,", "World!"]  # no normalisation


def test_parse_normalize():
    assert NORMALIZERS == ("lower", "punct", "numbers")
    assert parse_normalize(None) == ()
    assert parse_normalize("") == ()
    assert parse_normalize("lower,punct") == ("lower", "punct")
    assert parse_normalize("punct, lower") == ("lower", "punct")  # canonical order
    assert parse_normalize(["numbers", "lower,punct", "lower"]) == ALL
    assert parse_normalize(("LOWER",)) == ("lower",)
    with pytest.raises(ValueError, match="lower, punct, numbers"):
        parse_normalize("lower,stem")


@pytest.mark.parametrize(
    "text, steps, expected",
    [
        ("Hello  World", (), "Hello  World"),  # no steps: untouched
        ("Hello  World ", ("lower",), "hello world"),  # any step collapses spaces
        ("ÀÉÎ Straße", ("lower",), "àéî straße"),
        ("Hello, World!", ("punct",), "Hello World"),
        ("Don't 'quote' me", ("lower", "punct"), "don't quote me"),
        ("it’s rock’n’roll", ("punct",), "it's rock'n'roll"),
        ("''hi'' o'clock ' x", ("punct",), "hi o'clock x"),
        ("a''b 'a' x'", ("punct",), "ab a x"),
        ("well-known a/b — c", ("punct",), "well known a b c"),
        ("e.g. U.S.A. ¿qué?", ("lower", "punct"), "eg usa qué"),
        ("naïve 日本語 😀", ALL, "naïve 日本語"),  # an emoji is a symbol: punct removes it
        ("I have 25 cats", ("numbers",), "I have twenty five cats"),
        ("3.5 kg", ("numbers",), "three point five kg"),
        ("0.05", ("numbers",), "zero point zero five"),
        ("1,000 people", ("numbers", "punct"), "one thousand people"),
        ("1200", ("numbers",), "twelve hundred"),  # a four-digit number is read as a year
        ("2024", ("numbers",), "twenty twenty four"),
        ("1,200", ("numbers", "punct"), "one thousand two hundred"),
        ("the 21st and 3rd", ("numbers",), "the twenty first and third"),
        ("mp3 covid-19", ALL, "mp three covid nineteen"),
        ("25, 26.", ALL, "twenty five twenty six"),
        ("Call 911!", ALL, "call nine hundred eleven"),
        ("", ALL, ""),
        ("  \t ", ALL, ""),
    ],
)
def test_normalize_by_hand(text, steps, expected):
    assert normalize(text, steps) == expected


# --- numbers: the signs around a number, read as a reference transcript spells them out -------

NUMBERS_READ_MONEY = [
    ("$5", "five dollars"),
    ("$1", "one dollar"),
    ("$0", "zero dollars"),
    ("$5.50", "five dollars fifty cents"),
    ("$5.00", "five dollars"),
    ("$1.01", "one dollar one cent"),
    ("$0.50", "fifty cents"),
    ("$0.01", "one cent"),
    ("$1,000", "one thousand dollars"),
    ("$1,250.75", "one thousand two hundred fifty dollars seventy five cents"),
    ("$5.5", "five point five dollars"),  # not a number of cents
    ("$2.5 million", "two point five million dollars"),
    ("$1 Billion", "one billion dollars"),
    ("£5", "five pounds"),
    ("£1", "one pound"),
    ("£2.50", "two pounds fifty pence"),
    ("£0.01", "one penny"),
    ("€5", "five euros"),
    ("€1.20", "one euro twenty cents"),
    ("it cost $5, not €7", "it cost five dollars not seven euros"),
    ("-$5", "minus five dollars"),
    ("5 million people", "five million people"),  # a scale word alone is left as it is
]

NUMBERS_READ_PERCENT = [
    ("25%", "twenty five percent"),
    ("3.5%", "three point five percent"),
    ("100% sure", "one hundred percent sure"),
    ("-2%", "minus two percent"),
    ("a 1,000% rise", "a one thousand percent rise"),
]

NUMBERS_READ_DECADES = [
    ("1990s", "nineteen nineties"),
    ("the 1960s and 1800s", "the nineteen sixties and eighteen hundreds"),
    ("1100s", "eleven hundreds"),
    ("2010s", "twenty tens"),
    ("2090s", "twenty nineties"),
    ("2000s", "two thousands"),  # not read as a year: a plain cardinal, made plural
    ("80s", "eighties"),
    ("the '70s", "the seventies"),
    ("10s of thousands", "tens of thousands"),
    ("1990S", "nineteen nineties"),
    ("1990s-era", "nineteen nineties era"),
    ("1990", "nineteen ninety"),  # the same year as "1990s"
    ("1995s", "nineteen ninety fives"),  # not a decade, but a plural of years: not merged with 1990s
    ("5s", "fives"),
    ("1,990s", "one thousand nine hundred ninety s"),
    ("1.50s", "one point five zero s"),
]

NUMBERS_READ_MINUS = [
    ("-4", "minus four"),
    ("it was -4 degrees", "it was minus four degrees"),
    ("−4", "minus four"),  # U+2212 MINUS SIGN
    ("-4.5", "minus four point five"),
    ("-1,000", "minus one thousand"),
    ("(-4)", "minus four"),
    ('"-4"', "minus four"),
    ("covid-19", "covid nineteen"),  # a hyphen after a word joins
    ("1990-2000", "nineteen ninety to two thousand"),  # a rising pair is a range
    ("5-4", "five four"),  # a falling pair is a score, not a range
    ("5 - 4", "five four"),
    ("mid-80s", "mid eighties"),
]


@pytest.mark.parametrize("steps", [("numbers",), ALL], ids=["numbers", "all"])
@pytest.mark.parametrize(
    "text, expected",
    NUMBERS_READ_MONEY + NUMBERS_READ_PERCENT + NUMBERS_READ_DECADES + NUMBERS_READ_MINUS,
)
def test_numbers_reads_the_signs_around_a_number(text, expected, steps):
    # Numbers alone keeps the punctuation it does not read ("(minus four)" stays bracketed), so
    # compare with every step on, and numbers alone after removing the punctuation by hand.
    if steps == ALL:
        assert normalize(text, steps) == expected
    else:
        alone = normalize(text, steps)
        assert normalize(alone, ("lower", "punct")) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("$5", "five dollars"),
        ("25%", "twenty five percent"),
        ("-4", "minus four"),
        ("(-4)", "( minus four )"),
        ("1990s", "nineteen nineties"),
        ("covid-19", "covid- nineteen"),
        ("US$5", "US five dollars"),
        ("$5 Million", "five million dollars"),
        ("5 Million", "five Million"),
        ("3.5th", "three point five th"),
    ],
)
def test_numbers_alone_reads_the_signs_it_knows_and_keeps_the_rest(text, expected):
    assert normalize(text, ("numbers",)) == expected


@pytest.mark.parametrize("text", ["$5", "25%", "-4", "1990s", "$5.50", "£1", "−4", "80s"])
def test_numbers_reads_signs_the_same_with_each_other_step(text):
    expected = normalize(text, ("numbers",)).lower()
    for steps in [("numbers", "lower"), ("numbers", "punct"), ALL]:
        assert normalize(text, steps) == expected
    assert normalize_many([text] * 100, ALL) == [expected] * 100  # the Arrow punct path


def test_numbers_fast_path_for_unsigned_texts_equals_the_general_one():
    texts = _random_texts(3000, seed=5)
    assert any("$" in t for t in texts) and any("-4" in t for t in texts)
    general = [" ".join(text_module._numbers_to_words(text_module._ascii_digits(text_module._fold(t))).split()) for t in texts]
    assert normalize_many(texts, ["numbers"]) == general


PIECES = [
    "The",
    "cat's",
    "'",
    "''",
    "25",
    "3.5",
    "1,000",
    "21st",
    "—",
    "-",
    ",",
    "!",
    "  ",
    "\t",
    "naïve",
    "ÉCOLE",
    "日本語",
    "😀",
    "o'clock",
    "mp3",
    ".",
    "’",
    "e\u0301",
    "\u0301",
    "/",
    "«",
    "»",
    "_",
    "x",
    "é",
    "٣",
    "$5",
    "£0.01",
    "€1,000.50",
    "$2.5 million",
    "-4",
    "(−3",
    "x-4",
    "25%",
    "1990s",
    "80s",
    "5s",
]


def _random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice(PIECES + [" "] * 6) for _ in range(rng.randint(0, 15))) for _ in range(n)
    ]


def test_punct_python_and_arrow_paths_agree():
    texts = _random_texts(3000, seed=11)
    python = [text_module._punct_python(t) for t in texts]
    arrow = text_module._punct_arrow(pa.array(texts)).to_pylist()
    assert python == arrow


def test_normalize_many_equals_normalize_one_by_one(monkeypatch):
    texts = _random_texts(300, seed=7)
    singles = {
        steps: [normalize(t, steps) for t in texts]
        for steps in [(), ("lower",), ("punct",), ("numbers",), ALL]
    }
    for limit in (0, 10_000):  # Arrow punct path, then the Python one
        monkeypatch.setattr(text_module, "_PYTHON_PUNCT_MAX_ROWS", limit)
        for steps, expected in singles.items():
            many = normalize_many(texts, steps)
            assert many == expected
            if steps:
                assert all(m == " ".join(m.split()) for m in many)


def test_normalize_many_accepts_series_and_missing_values():
    series = pd.Series(["A  b", None, "X 1"], dtype=pd.StringDtype("pyarrow"))
    assert normalize_many(series, ["lower", "numbers"]) == ["a b", "", "x one"]
    assert normalize_many(["A  b", None], []) == ["A  b", ""]


def test_arrow_whitespace_helpers_match_str_split():
    texts = ["  a\t b  ", "", " ", "x\u3000y\x1cz", "one"]
    arr = pa.array(texts)
    assert collapse_whitespace(arr).to_pylist() == [" ".join(t.split()) for t in texts]
    assert split_words(arr).to_pylist() == [w for t in texts for w in t.split()]


def test_whitespace_list_is_str_isspace():
    every = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
    assert text_module.WHITESPACE == every
    texts = [f"{c}a{c}{c}b {c}c{c}" for c in every] + ["a b", "ab"]
    arr = pa.array(texts)
    assert collapse_whitespace(arr).to_pylist() == [" ".join(t.split()) for t in texts]
    assert split_words(arr).to_pylist() == [w for t in texts for w in t.split()]


# --- lower-casing is Python's str.lower, whatever the path -----------------------------------


def _every_code_point() -> list[str]:
    """Every code point except the surrogates (which no UTF-8 text can hold)."""
    return [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def _python_lower(text: str) -> str:
    """str.lower after the prelude every step starts with (NFKC but for symbols and numbers)."""
    return " ".join(text_module._fold(text).lower().split())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ΟΔΟΣ", "οδος"),  # final sigma: Arrow's per-character mapping gives "οδοσ"
        ("ΟΔΟΣ ΚΑΙ ΣΑΣ.", "οδος και σας."),
        ("ΣΑΣ Σ ΑΣΑ", "σας σ ασα"),  # word-initial and lone Σ are σ, final is ς
        ("İSTANBUL İ", "i̇stanbul i̇"),  # dotted capital I lowers to i + combining dot (two code points)
        ("IŞIK ı I", "işik ı i"),  # Turkish dotless i: str.lower is language-neutral
        ("STRAẞE ẞ", "straße ß"),  # capital sharp s
        ("ﬀ ﬁ Ǆ ǅ", "ff fi dž dž"),  # ligatures and digraphs: the prelude spells them out (NFKC)
        # prosgegrammeni, Ohm, Kelvin, Angstrom, numerals and circled letters (symbols: the prelude
        # keeps them), fullwidth (the prelude makes it ASCII)
        ("ᾼ Ω K Å Ⅻ Ⓐ Ａ", "ᾳ ω k å ⅻ ⓐ a"),
        ("plain ASCII Words", "plain ascii words"),
    ],
)
@pytest.mark.parametrize("rows", [1, 100], ids=["one_row", "hundred_rows"])
def test_lower_is_str_lower_for_tricky_letters(text, expected, rows):
    assert expected == _python_lower(text)
    assert normalize_many([text] * rows, ["lower"]) == [expected] * rows


def test_lower_equals_str_lower_for_every_code_point():
    chars = _every_code_point()
    # Alone, after a capital (final-sigma context) and before Σ, which then ends a word.
    texts = [f"{c} A{c} {c}Σ" for c in chars]
    assert normalize_many(texts, ["lower"]) == [_python_lower(t) for t in texts]


# --- punctuation: one definition, whatever the number of rows ----------------------------------


def _punct_probe_texts() -> list[str]:
    """Every code point where the punct rules look at it: alone (removed, a space, or kept) and
    on either side of an apostrophe (word character or not), 256 code points per string."""
    snippets = [f"{c} a'{c} {c}'a" for c in _every_code_point()]
    return [" ".join(snippets[i:i + 256]) for i in range(0, len(snippets), 256)]


def test_punct_small_and_big_paths_agree_on_every_code_point(monkeypatch):
    texts = _punct_probe_texts()
    monkeypatch.setattr(text_module, "_PYTHON_PUNCT_MAX_ROWS", len(texts) + 1)
    small = normalize_many(texts, ["punct"])
    monkeypatch.setattr(text_module, "_PYTHON_PUNCT_MAX_ROWS", 0)
    big = normalize_many(texts, ["punct"])
    assert small == big


@pytest.mark.parametrize("char", ["\U00011b00", "\U00011b09", "\U00011f43", "\u2e5d", "\u058a", "\u00bf"])
def test_punct_follows_python_unicodedata_whatever_the_manifest_size(char):
    line = f"a{char}b c"
    category = unicodedata.category(char)
    expected = "a b c" if category == "Pd" else ("ab c" if category.startswith("P") else line)
    assert normalize(line, ["punct"]) == expected  # one row: the small path
    assert normalize_many([line] * 10, ["punct"]) == [expected] * 10
    assert normalize_many([line] * 100, ["punct"]) == [expected] * 100  # the Arrow path
