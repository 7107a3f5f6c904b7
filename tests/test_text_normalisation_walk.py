"""--normalize as a speech-ML user scores with it: what each step does to the text they write.

Every table is one behaviour, each row a text and what `--normalize lower,punct,numbers` makes of
it (or a pair of texts that must, or must not, become the same words: a normalisation that makes
two spellings of one spoken word differ, or two spoken words equal, changes WER).
"""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

import sde.text as text_module
from sde.text import normalize, normalize_many

ALL = ("lower", "punct", "numbers")

# --- numbers -------------------------------------------------------------------------------------

MONEY_SIGN_SPACED_OR_AFTER = [
    ("$ 5", "five dollars"),
    ("5$", "five dollars"),
    ("5 €", "five euros"),
    ("it is 20€.", "it is twenty euros"),
    ("¥100", "one hundred yen"),
    ("₹50", "fifty rupees"),
    ("£3.20", "three pounds twenty pence"),
    ("5 $5", "five five dollars"),  # the sign belongs to the number after it
]

MONEY_SCALE_ABBREVIATIONS = [
    ("$5m", "five million dollars"),
    ("$2.5bn", "two point five billion dollars"),
    ("£3B", "three billion pounds"),
    ("$5k", "five thousand dollars"),
    ("€1tn", "one trillion euros"),
    ("$5 million", "five million dollars"),
    ("5k run", "five k run"),  # no money: the letters may be a unit; left as written
    ("5m", "five m"),
]

PERCENT_AFTER_A_SPACE = [
    ("25 %", "twenty five percent"),
    ("0.5 %", "zero point five percent"),
]

PLURALS = [
    ("100s of people", "hundreds of people"),
    ("1000s", "thousands"),
    ("1990's", "nineteen nineties"),
    ("the 90's", "the nineties"),
    ("the ’90s", "the nineties"),
    ("in 5s and 6s", "in fives and sixes"),
    ("the 20s", "the twenties"),
    ("2000s", "two thousands"),
]

ORDINALS = [
    ("1st", "first"),
    ("22nd", "twenty second"),
    ("103rd", "one hundred third"),
    ("11TH", "eleventh"),
    ("2nd-hand", "second hand"),
]

TIMES = [
    ("3:45", "three forty five"),
    ("at 3:05 pm", "at three oh five pm"),
    ("10:00", "ten o'clock"),
    ("07:30", "seven thirty"),
    ("15:00", "fifteen hundred"),
    ("45:30", "forty five thirty"),  # not an hour: its two numbers
    ("1:02:03", "one zero two zero three"),  # not a time of day
]

FRACTIONS = [
    ("1/2", "one half"),
    ("3/4 cup", "three quarters cup"),
    ("2/3", "two thirds"),
    ("1 1/2 hours", "one and a half hours"),
    ("½", "one half"),
    ("1½", "one and a half"),
    ("2¾", "two and three quarters"),
    ("24/7", "twenty four seven"),  # not a fraction
    ("9/11", "nine eleven"),
    ("50/50", "fifty fifty"),
    ("1/2/2020", "one two twenty twenty"),  # a date
]

NUMBER_SIGNS = [
    ("No. 5", "number five"),
    ("no.5", "number five"),
    ("№ 5", "number five"),
    ("#1", "number one"),
    ("techno. 5", "techno five"),  # "no." inside a word is not the abbreviation
]

RANGES = [
    ("5-10", "five to ten"),
    ("5–10 years", "five to ten years"),  # en dash
    ("5-10%", "five to ten percent"),
    ("1990-95", "nineteen ninety to ninety five"),
    ("3-2", "three two"),  # falling: a score
    ("2020-01-05", "twenty twenty zero one zero five"),  # a chain: not a range
    ("covid-19", "covid nineteen"),
]

GROUPED_THOUSANDS = [
    ("1,000,000", "one million"),
    ("1 000 000", "one million"),
    ("10\u00a0000", "ten thousand"),  # no-break space
    ("10\u202f000", "ten thousand"),  # narrow no-break space
    ("555 123 4567", "five hundred fifty five one hundred twenty three four thousand five hundred sixty seven"),
    ("1 2 3", "one two three"),
]

DIGIT_STRINGS = [
    ("911", "nine hundred eleven"),  # a digit run is read as a number, never guessed digit by digit
    ("007", "zero zero seven"),  # a leading zero: not a quantity, read digit by digit
    ("0800 123", "zero eight zero zero one hundred twenty three"),
    ("0.05", "zero point zero five"),
    (".5", "point five"),
    ("(.5)", "point five"),
    ("1.2.3", "one point two three"),
]

LEFT_AS_WRITTEN = [
    ("3,5 Prozent", "three point five prozent"),  # a decimal comma is read; the words stay English
    ("5kg", "five kg"),  # units are not spelled out
    ("x²", "x²"),  # superscripts keep their form (the prelude does not make "10²" "102")
    ("٣", "three"),  # any script's decimal digits are read, in English
]


@pytest.mark.parametrize(
    "text, expected",
    MONEY_SIGN_SPACED_OR_AFTER + MONEY_SCALE_ABBREVIATIONS + PERCENT_AFTER_A_SPACE + PLURALS + ORDINALS
    + TIMES + FRACTIONS + NUMBER_SIGNS + RANGES + GROUPED_THOUSANDS + DIGIT_STRINGS + LEFT_AS_WRITTEN,
)
def test_numbers_reads_what_a_user_writes_as_it_is_said(text, expected):
    assert normalize(text, ALL) == expected


# --- the same spoken words, spelled two ways, become the same words -----------------------------

SAME_WORDS = [
    ("café", "cafe\u0301"),  # composed / decomposed accent
    ("fine", "\ufb01ne"),  # ligature
    ("ABC 123", "ＡＢＣ １２３"),  # full-width
    ("cooperate", "co\u00adoperate"),  # soft hyphen
    ("two words", "two\u200b words"),  # zero-width space
    ("שלום", "\u200fשלום\u200e"),  # bidi marks
    ("hello", "hello\ufe0f"),  # variation selector
    ("مرحبا", "مَرْحَبًا"),  # Arabic harakat
    ("كتاب", "كتـــاب"),  # tatweel
    ("שלום", "שָׁלוֹם"),  # Hebrew niqqud
    ("don't", "don’t"),
    ("don't", "donʼt"),  # modifier letter apostrophe
    ("don't", "don´t"),  # acute accent typed as an apostrophe
    ("don't", "don‘t"),
    ("don't", "don ' t"),
    ("don't", "do n't"),
    ("it's John's", "it 's John 's"),
    ("we're", "we 're"),
    ("the d key", "the 'd' key"),  # a quoted letter is no contraction
    ("hello", "<unk> hello [noise]"),  # tags are no spoken words
    ("hello", "[NOISE] hello</s>"),
    ("great", "great 👍🏽"),  # emoji
    ("family", "family 👨\u200d👩\u200d👧"),
    ("a b c d", "a\t\tb\n c\u2028  d"),
    ("twenty five percent", "25 %"),
]


@pytest.mark.parametrize("one, other", SAME_WORDS)
def test_two_spellings_of_the_same_words_normalise_equal(one, other):
    assert normalize(one, ALL) == normalize(other, ALL)


DIFFERENT_WORDS = [
    ("café", "cafe"),  # diacritics are kept: they can tell words apart ("pêche", "péché")
    ("pêche", "péché"),
    ("don't", "dont"),
    ("straße", "strasse"),
    ("ıi", "ii"),
    ("x²", "x2"),
    ("it's", "its"),
]


@pytest.mark.parametrize("one, other", DIFFERENT_WORDS)
def test_different_words_stay_different(one, other):
    assert normalize(one, ALL) != normalize(other, ALL)


UNSPACED_SCRIPTS = [
    ("日本語、です。", "日本語です"),  # punctuation goes; no word split is invented (score CER there)
    ("ภาษาไทย ง่าย", "ภาษาไทย ง่าย"),
]


@pytest.mark.parametrize("text, expected", UNSPACED_SCRIPTS)
def test_scripts_without_spaces_are_left_unsegmented(text, expected):
    assert normalize(text, ALL) == expected


# --- one definition whatever the path ------------------------------------------------------------

WALK_PIECES = [
    "it", "'s", "'", " '", "n't", "don", "t", "re", "<unk>", "[noise]", "[/x]", "<a", "]", "👍🏽", "❤️",
    "\u200d", "\u00ad", "cafe\u0301", "ﬁ", "Ａ", "\u00a0", "$", " ", " ", "5", "10", "-", "–", "%", "m",
    "bn", "3:45", "1/2", "½", "No.", "#", ".", "s", "1990", "000", ",", "’", "ʼ", "´", "`", "مَ", "שָׁ",
    "x", "'d", "\t",
]


def _walk_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(WALK_PIECES) for _ in range(rng.randint(0, 12))) for _ in range(n)]


def test_punct_small_and_bulk_paths_agree_on_the_new_rules():
    texts = [text_module._fold(t) for t in _walk_texts(3000, seed=3)]
    python = [text_module._punct_python(t) for t in texts]
    arrow = text_module._punct_arrow(pa.array(texts)).to_pylist()
    assert python == arrow


def test_numbers_fast_path_agrees_with_the_general_one_on_the_new_signs():
    texts = _walk_texts(3000, seed=4)
    general = [" ".join(text_module._numbers_to_words(text_module._ascii_digits(text_module._fold(t))).split()) for t in texts]
    assert normalize_many(texts, ["numbers"]) == general


def test_normalize_many_equals_normalize_on_the_new_rules():
    texts = _walk_texts(300, seed=5)
    assert normalize_many(texts, ALL) == [normalize(t, ALL) for t in texts]


def test_prelude_bulk_path_equals_the_full_fold():
    # The bulk path skips strings that need no translation and only NFC-checks them.
    texts = _walk_texts(3000, seed=6) + ["plain ascii", "café", "cafe\u0301", "Ａ", "x\u200by", ""]
    assert text_module._apply_fold(pa.array(texts)).to_pylist() == [text_module._fold(t) for t in texts]
