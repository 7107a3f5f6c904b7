"""--normalize numbers: the number forms the last review found read wrong or not at all.

Space-grouped thousands that are no count before a number, years, decimal commas, other scripts'
digits; and the forms left as written (units, am/pm, superscripts), which must at least agree
between their spellings. Each table is one behaviour; each row a text and what
`--normalize lower,punct,numbers` makes of it, or a pair that must (or must not) become equal.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

import sde.text as text_module
from sde.text import normalize, normalize_many

ALL = ("lower", "punct", "numbers")

SPACE_GROUPED_THOUSANDS_JOIN = [
    ("1 000 000", "one million"),
    ("12 500 people", "twelve thousand five hundred people"),  # a first group of 2-3 digits
    ("100 000", "one hundred thousand"),
    ("1 000", "one thousand"),  # a group starting with 0 is no number said on its own
    ("5 050", "five thousand fifty"),
    ("5 100 200", "five million one hundred thousand two hundred"),  # three groups
]

# One digit, a space, three digits: as likely a count before a number ("5 100 people", "2 500 ml
# bottles") as one number in SI style; read as two numbers. The cost: "1 500" meaning 1500 is
# read "one five hundred".
COUNT_BEFORE_A_NUMBER_STAYS_TWO_NUMBERS = [
    ("5 100 people", "five one hundred people"),
    ("in 2 100 ml cups", "in two one hundred ml cups"),
    ("1 500", "one five hundred"),
    ("555 123 4567", "five hundred fifty five one hundred twenty three four thousand five hundred sixty seven"),
]

# A bare four-digit number in 1010-1999 or 2010-2099 is said as a year where its context says so
# (tests/test_normalize_numbers_years_decades.py); round hundreds by hundreds ("1500 people").
FOUR_DIGIT_NUMBERS_READ_AS_YEARS = [
    ("1099", "ten ninety nine"),  # 1010-1099 are years too ("1066")
    ("in 1990.", "in nineteen ninety"),
    ("1905", "nineteen oh five"),
    ("1900", "nineteen hundred"),
    ("1100", "eleven hundred"),
    ("2000", "two thousand"),  # 2000-2009 are said as cardinals
    ("2005", "two thousand five"),
    ("2010", "twenty ten"),
    ("2020", "twenty twenty"),
    ("1990-95", "nineteen ninety to ninety five"),
    ("FY2024", "fy twenty twenty four"),
    ("1500 people", "fifteen hundred people"),  # the trade-off
    ("1234 steps", "one thousand two hundred thirty four steps"),  # a count: a cardinal
]

NUMBERS_WITH_A_SIGN_OR_OUTSIDE_THE_YEARS_STAY_CARDINAL = [
    ("2100", "two thousand one hundred"),
    ("1,500 people", "one thousand five hundred people"),  # grouped
    ("$1990", "one thousand nine hundred ninety dollars"),
    ("1990%", "one thousand nine hundred ninety percent"),
    ("1990.5", "one thousand nine hundred ninety point five"),
    ("-1990", "minus one thousand nine hundred ninety"),
    ("No. 1990", "number one thousand nine hundred ninety"),
    ("1990th", "one thousand nine hundred ninetieth"),
    ("01990", "zero one nine nine zero"),
    ("19900", "nineteen thousand nine hundred"),
]

# A comma followed by exactly three digits groups thousands; by one, two or four or more, it is a
# decimal comma (outside a chain "1,2,3" or a number with both separators "1.000,5").
DECIMAL_COMMA = [
    ("3,5", "three point five"),
    ("3,5 Prozent", "three point five prozent"),
    ("€3,50", "three euros fifty cents"),
    ("3,50 €", "three euros fifty cents"),
    ("2,5%", "two point five percent"),
    ("3,5-4,5", "three point five to four point five"),
    ("3,500", "three thousand five hundred"),
    ("1,2,3", "one two three"),
    ("1.000,5", "one point zero zero zero five"),
]

OTHER_SCRIPTS_DIGITS_READ_IN_ENGLISH = [
    ("٣", "three"),  # Arabic-Indic
    ("۳", "three"),  # Extended Arabic-Indic (Persian, Urdu)
    ("عام ٢٠٢٠", "عام twenty twenty"),
    ("١٬٠٠٠", "one thousand"),  # Arabic thousands separator
    ("٣٫٥", "three point five"),  # Arabic decimal separator
    ("٥٪", "five percent"),  # Arabic percent sign
    ("५ लोग", "five लोग"),  # Devanagari
    ("-٤", "minus four"),
    ("5٬000", "five thousand"),
]

# Left as written, the same whichever way it is typed: spelling units out would pick one of
# "kilometres" / "kilometers", "km" / "kms"; "p m" as an ASR may write it is not joined; a
# superscript may be a power or a footnote ("word¹").
LEFT_AS_WRITTEN = [
    ("5kg", "five kg"),
    ("10 km", "ten km"),
    ("5pm", "five pm"),
    ("5 p.m.", "five pm"),
    ("10:30am", "ten thirty am"),
    ("m²", "m²"),
]


@pytest.mark.parametrize(
    "text, expected",
    [pytest.param(*row, id=f"join:{row[0]}") for row in SPACE_GROUPED_THOUSANDS_JOIN]
    + [pytest.param(*row, id=f"count:{row[0]}") for row in COUNT_BEFORE_A_NUMBER_STAYS_TWO_NUMBERS]
    + [pytest.param(*row, id=f"year:{row[0]}") for row in FOUR_DIGIT_NUMBERS_READ_AS_YEARS]
    + [pytest.param(*row, id=f"cardinal:{row[0]}") for row in NUMBERS_WITH_A_SIGN_OR_OUTSIDE_THE_YEARS_STAY_CARDINAL]
    + [pytest.param(*row, id=f"decimal-comma:{row[0]}") for row in DECIMAL_COMMA]
    + [pytest.param(*row, id=f"script:{row[0]}") for row in OTHER_SCRIPTS_DIGITS_READ_IN_ENGLISH]
    + [pytest.param(*row, id=f"as-written:{row[0]}") for row in LEFT_AS_WRITTEN],
)
def test_numbers_reads_the_remaining_forms_as_said(text, expected):
    assert normalize(text, ALL) == expected


SAID_THE_SAME = [
    ("in 1990", "in nineteen ninety"),  # a reference in digits, a hypothesis in words
    ("the 1990s", "the nineteen nineties"),
    ("2020", "twenty twenty"),
    ("12 500", "12,500"),
    ("1 000 000", "1,000,000"),
    ("3,5", "3.5"),
    ("€3,50", "€3.50"),
    ("٥", "5"),
    ("١٢٣", "123"),
    ("5pm", "5 p.m."),
    ("5 PM", "5pm"),
    ("10:30am", "10:30 a.m."),
    ("5kg", "5 kg"),
    ("1500m", "1500 m"),
    ("1990kg", "1990 kg"),
]


@pytest.mark.parametrize("one, other", [pytest.param(*pair, id=f"{pair[0]}={pair[1]}") for pair in SAID_THE_SAME])
def test_two_spellings_of_the_same_number_normalise_equal(one, other):
    assert normalize(one, ALL) == normalize(other, ALL)


def test_sde_stats_scores_a_reference_in_digits_and_a_hypothesis_in_words_equal(tmp_path):
    # The user's view: every pair above as a reference and a hypothesis, normalised WER 0.
    manifest = tmp_path / "said_the_same.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"{k}.wav", "duration": 1.0, "text": one, "pred_text": other},
                                           ensure_ascii=False) + "\n" for k, (one, other) in enumerate(SAID_THE_SAME)),
                        encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--normalize", "lower,punct,numbers",
                          "--json", "--no-cache"], capture_output=True, text=True, check=True)
    scores = json.loads(run.stdout)["hypotheses"]["pred_text"]
    assert scores["wer"] > 0 and scores["normalized"]["wer"] == 0.0


SAID_DIFFERENTLY = [
    ("5 100 people", "5100 people"),  # a count before a number is no thousands group
    ("2 100 ml", "2100 ml"),
    ("3,5", "3,500"),
    ("3,5", "35"),
    ("1905", "1950"),
]


@pytest.mark.parametrize("one, other", [pytest.param(*pair, id=f"{pair[0]}!={pair[1]}") for pair in SAID_DIFFERENTLY])
def test_different_numbers_stay_different(one, other):
    assert normalize(one, ALL) != normalize(other, ALL)


PIECES = ["1990", "1500", "5", "100", "12", "500", "000", " ", " ", ",", ".", "3,5", ",50", "$", "€", "-",
          "٣", "٬", "٫", "१", "pm", "p.m.", "kg", "x", "s", "%", "1,2,3", "é"]


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 10))) for _ in range(n)]


def test_bulk_and_fast_paths_agree_with_the_general_one_on_these_forms():
    texts = _texts(2000, seed=8)
    general = [" ".join(text_module._numbers_to_words(text_module._ascii_digits(text_module._fold(t))).split()) for t in texts]
    assert normalize_many(texts, ["numbers"]) == general
    table_texts = [row[0] for table in (SPACE_GROUPED_THOUSANDS_JOIN, FOUR_DIGIT_NUMBERS_READ_AS_YEARS,
                                        DECIMAL_COMMA, OTHER_SCRIPTS_DIGITS_READ_IN_ENGLISH) for row in table]
    bulk = normalize_many(table_texts * 50 + texts[:200], ALL)  # over 64 rows: the Arrow punct path
    assert bulk == [normalize(t, ALL) for t in table_texts * 50 + texts[:200]]
