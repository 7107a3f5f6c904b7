"""--normalize numbers: when a four-digit number is a year, and how decades are read.

A bare four-digit number in 1010-1999 or 2010-2099 is said as a year where the text around it says
it is one, as a cardinal where it counts something or is a group of a phone number; plurals are
years whatever is around them. Each table is one behaviour; each row a text and what
`--normalize lower,punct,numbers` (or numbers alone) makes of it.
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

YEARS_WHERE_THE_CONTEXT_SAYS_YEAR = [
    ("in 1990 we moved", "in nineteen ninety we moved"),
    ("In 1990 people", "in nineteen ninety people"),
    ("since 2010 the", "since twenty ten the"),
    ("by 2030 the city", "by twenty thirty the city"),
    ("the year 1990 was", "the year nineteen ninety was"),
    ("the 1990 election", "the nineteen ninety election"),
    ("a 2019 study", "a twenty nineteen study"),
    ("May 1990 was", "may nineteen ninety was"),
    ("May 5, 1990 we", "may five nineteen ninety we"),
    ("May 5 1990 we", "may five nineteen ninety we"),  # a day before it is no digit-group run
    ("5 May 1990 we", "five may nineteen ninety we"),
    ("1066 AD", "ten sixty six ad"),
    ("1990 was a good year", "nineteen ninety was a good year"),
    ("it ended in 1945.", "it ended in nineteen forty five"),
    ("(1990)", "nineteen ninety"),
    ("from 1990 to 1995 we", "from nineteen ninety to nineteen ninety five we"),  # a run shares its context
    ("between 1990 and 1995 we", "between nineteen ninety and nineteen ninety five we"),
    ("1990-1995", "nineteen ninety to nineteen ninety five"),
    ("05-01-2020", "zero five zero one twenty twenty"),  # a date: two digits before the hyphen
    ("2020-01-05", "twenty twenty zero one zero five"),
]

QUANTITIES_STAY_CARDINAL = [
    ("1234 steps", "one thousand two hundred thirty four steps"),
    ("he took 1234 steps", "he took one thousand two hundred thirty four steps"),
    ("about 1990 people came", "about one thousand nine hundred ninety people came"),
    ("a total of 2048 bytes", "a total of two thousand forty eight bytes"),  # "of" says nothing
    ("1990kg", "one thousand nine hundred ninety kg"),  # glued letters are the word after it
    ("1990 kg", "one thousand nine hundred ninety kg"),
    ("1500 people", "fifteen hundred people"),  # round hundreds: said so as quantities too
    ("1500m", "fifteen hundred m"),
]

DIGIT_GROUP_RUNS_ARE_NOT_YEARS = [
    ("0800 1234", "zero eight zero zero one thousand two hundred thirty four"),
    ("555 1234", "five hundred fifty five one thousand two hundred thirty four"),
    ("call 555-1234", "call five hundred fifty five one thousand two hundred thirty four"),  # no range
    ("1 650 555 1234", "one six hundred fifty five hundred fifty five one thousand two hundred thirty four"),
    ("1234 5678", "one thousand two hundred thirty four five thousand six hundred seventy eight"),
    ("0800 1200", "zero eight zero zero one thousand two hundred"),
    ("500-1000 words", "five hundred to one thousand words"),  # a range to a round number stays one
]

LEADING_ZERO_DIGIT_BY_DIGIT = [
    ("0800", "zero eight zero zero"),
    ("007", "zero zero seven"),
]

# 1010-1099 are years as 1100-1999 are; 1000-1009, like 2000-2009, are said the same either way.
YEARS_OF_THE_ELEVENTH_CENTURY = [
    ("1066", "ten sixty six"),
    ("in 1066", "in ten sixty six"),
    ("1010", "ten ten"),
    ("1005", "one thousand five"),
    ("1000", "one thousand"),
    ("1060s", "ten sixties"),
]

DECADES_AND_PLURAL_YEARS = [
    ("1960s", "nineteen sixties"),
    ("the 80s", "the eighties"),
    ("2000s", "two thousands"),
    ("1995s", "nineteen ninety fives"),  # model years: a plural four-digit number is years
    ("1234s", "twelve thirty fours"),
]

# With numbers alone, the elision mark before a two-digit year is read with it (punct would
# otherwise be needed to drop it).
ELIDED_CENTURY_WITH_NUMBERS_ALONE = [
    ("'90s", "nineties"),
    ("\u201990s", "nineties"),
    ("\u201890s", "nineties"),
    ("the '70s music", "the seventies music"),
    ("class of '99", "class of ninety nine"),
    ("rock'n'roll 90s", "rock'n'roll nineties"),
    ("it's 5", "it's five"),
]


@pytest.mark.parametrize(
    "text, expected",
    [pytest.param(*row, id=f"year:{row[0]}") for row in YEARS_WHERE_THE_CONTEXT_SAYS_YEAR]
    + [pytest.param(*row, id=f"cardinal:{row[0]}") for row in QUANTITIES_STAY_CARDINAL]
    + [pytest.param(*row, id=f"run:{row[0]}") for row in DIGIT_GROUP_RUNS_ARE_NOT_YEARS]
    + [pytest.param(*row, id=f"zero:{row[0]}") for row in LEADING_ZERO_DIGIT_BY_DIGIT]
    + [pytest.param(*row, id=f"1000s:{row[0]}") for row in YEARS_OF_THE_ELEVENTH_CENTURY]
    + [pytest.param(*row, id=f"plural:{row[0]}") for row in DECADES_AND_PLURAL_YEARS],
)
def test_four_digit_numbers_are_years_where_the_text_says_so(text, expected):
    assert normalize(text, ALL) == expected


@pytest.mark.parametrize("text, expected", ELIDED_CENTURY_WITH_NUMBERS_ALONE, ids=[r[0] for r in ELIDED_CENTURY_WITH_NUMBERS_ALONE])
def test_numbers_alone_reads_an_elided_century(text, expected):
    assert normalize(text, ("numbers",)) == expected
    assert normalize(text, ALL) == expected.lower()


def test_sde_stats_scores_years_in_digits_and_in_words_equal(tmp_path):
    # The user's view: a reference in digits, a hypothesis in words (as an ASR says them).
    pairs = [("In 1990 he took 1234 steps.", "in nineteen ninety he took one thousand two hundred thirty four steps"),
             ("Call 0800 1234.", "call zero eight zero zero one thousand two hundred thirty four"),
             ("The '90s and the 1960s", "the nineties and the nineteen sixties")]
    manifest = tmp_path / "years.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"{k}.wav", "duration": 1.0, "text": ref, "pred_text": hyp})
                                + "\n" for k, (ref, hyp) in enumerate(pairs)), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--normalize", "lower,punct,numbers",
                          "--json", "--no-cache"], capture_output=True, text=True, check=True)
    scores = json.loads(run.stdout)["hypotheses"]["pred_text"]
    assert scores["wer"] > 0 and scores["normalized"]["wer"] == pytest.approx(0.0, abs=1e-9)


PIECES = ["1990", "1500", "1066", "1234", "555", "0800", "07", "90s", "'", "\u2019", " ", " ", " ", "in ", "the ",
          "May ", "5, ", "steps", "AD", "-", ",", ".", " to ", " and ", "$", "%", "s", "x"]


def test_bulk_and_fast_paths_agree_with_the_general_one_on_year_contexts():
    rng = random.Random(11)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 10))) for _ in range(2000)]
    general = [" ".join(text_module._numbers_to_words(text_module._ascii_digits(text_module._fold(t))).split()) for t in texts]
    assert normalize_many(texts, ["numbers"]) == general
