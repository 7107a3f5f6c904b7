"""--normalize numbers: what the words around a number say about how it is read.

A year that starts a sentence, a number after a label ("Flight 1549", "room 101"), a count after a
word that usually comes before a year ("in 1234 steps"), and a "+" sign. Each table is one
behaviour; each row a text and what `--normalize lower,punct,numbers` makes of it.
"""

from __future__ import annotations

import pytest

from sde.text import normalize, normalize_many

ALL = ("lower", "punct", "numbers")

# A sentence that starts with a year in the past: its verb ("saw", "marked") or a preposition
# ("1984 by George Orwell") follows.
YEAR_STARTING_A_SENTENCE = [
    ("1990 saw the end of the war", "nineteen ninety saw the end of the war"),
    ("1984 by George Orwell", "nineteen eighty four by george orwell"),
    ("2012 marked a change", "twenty twelve marked a change"),
    ("It rained. 2012 marked a change", "it rained twenty twelve marked a change"),
    ('"1969 brought the moon"', "nineteen sixty nine brought the moon"),
    ("1990 in review", "nineteen ninety in review"),
]

# Not at the start of a sentence, or with a plural verb, it stays a count.
COUNT_BEFORE_A_VERB = [
    ("we saw 1234 died", "we saw one thousand two hundred thirty four died"),
    ("1234 were injured", "one thousand two hundred thirty four were injured"),
    ("1234 of them", "one thousand two hundred thirty four of them"),
    ("1234 need help", "one thousand two hundred thirty four need help"),
]

# After a label word a three- or four-digit number is a name, said in pairs.
LABELS_READ_IN_PAIRS = [
    ("Flight 1549", "flight fifteen forty nine"),
    ("Flight 1549 landed", "flight fifteen forty nine landed"),
    ("flight 2005 left", "flight twenty oh five left"),
    ("route 3456 is closed", "route thirty four fifty six is closed"),
    ("room 101", "room one oh one"),
    ("Room 370 is", "room three seventy is"),
    ("bus 143 to town", "bus one forty three to town"),
    ("Interstate 405", "interstate four oh five"),
    ("Highway 101 north", "highway one oh one north"),
    ("gate 110", "gate one ten"),
    ("page 250 says", "page two fifty says"),
    ("platform 1900", "platform nineteen hundred"),
    ("Apollo 13", "apollo thirteen"),  # two digits: said as a number anyway
    ("Route 66", "route sixty six"),
]

# What is not a bare label number is read as before.
LABELS_THAT_STAY_NUMBERS = [
    ("flight 2000", "flight two thousand"),  # a round thousand
    ("room 007", "room zero zero seven"),  # a leading zero: digit by digit
    ("flight 1,549", "flight one thousand five hundred forty nine"),  # grouped: a quantity
    ("page 12345", "page twelve thousand three hundred forty five"),
    ("flights 1549 were late", "flights one thousand five hundred forty nine were late"),  # no label word
    ("room 101st", "room one hundred first"),
]

# A counted plural noun, a unit or a span of time after the number makes it a count even after
# "in", "the" and the other words that usually come before a year.
COUNTED_NOUN_AFTER_MAKES_A_CARDINAL = [
    ("in 1234 steps", "in one thousand two hundred thirty four steps"),
    ("the 1234 steps", "the one thousand two hundred thirty four steps"),
    ("in 1990 miles", "in one thousand nine hundred ninety miles"),
    ("by 1234 times", "by one thousand two hundred thirty four times"),
    ("in 1990 kg", "in one thousand nine hundred ninety kg"),
    ("in 1990kg", "in one thousand nine hundred ninety kg"),
    ("the 1234 people who", "the one thousand two hundred thirty four people who"),
    ("in 1500 years", "in fifteen hundred years"),  # round hundreds: said so either way
]

# Where the same words could be either; the reading chosen is the one right most often.
AMBIGUOUS_CASES_CHOSEN = [
    ("in 1990 people voted", "in nineteen ninety people voted"),  # people: a subject after a year
    ("by 2030 students will", "by twenty thirty students will"),
    ("the 1990 elections", "the nineteen ninety elections"),  # a plural noun alone says nothing
    ("in 1990 years", "in one thousand nine hundred ninety years"),  # a span of time: a count
    ("1234 in total", "twelve thirty four in total"),  # a preposition after a sentence's first number
    ("1234 killed in attack", "twelve thirty four killed in attack"),  # a headline's count: read as a year
]

# "+" before a number is said "plus" as a sign, a country code, or in a sum; in a name it stays.
PLUS_SIGN = [
    ("+5 degrees", "plus five degrees"),
    ("+1 650 555 1234", "plus one six hundred fifty five hundred fifty five one thousand two hundred thirty four"),
    ("call +44 20", "call plus forty four twenty"),
    ("2+2", "two plus two"),
    ("(+5)", "plus five"),
    ("+$5", "plus five dollars"),
    ("+1990", "plus one thousand nine hundred ninety"),  # a sign: no year
    ("c++11", "c++ eleven"),
    ("a + b", "a + b"),
]


@pytest.mark.parametrize(
    "text, expected",
    [pytest.param(*row, id=f"start:{row[0]}") for row in YEAR_STARTING_A_SENTENCE]
    + [pytest.param(*row, id=f"count:{row[0]}") for row in COUNT_BEFORE_A_VERB]
    + [pytest.param(*row, id=f"label:{row[0]}") for row in LABELS_READ_IN_PAIRS]
    + [pytest.param(*row, id=f"nolabel:{row[0]}") for row in LABELS_THAT_STAY_NUMBERS]
    + [pytest.param(*row, id=f"counted:{row[0]}") for row in COUNTED_NOUN_AFTER_MAKES_A_CARDINAL]
    + [pytest.param(*row, id=f"ambiguous:{row[0]}") for row in AMBIGUOUS_CASES_CHOSEN]
    + [pytest.param(*row, id=f"plus:{row[0]}") for row in PLUS_SIGN],
)
def test_numbers_are_read_by_the_words_around_them(text, expected):
    assert normalize(text, ALL) == expected


def test_numbers_alone_says_plus_and_keeps_what_is_around_it():
    assert normalize("(+5) Flight 1549", ("numbers",)) == "( plus five ) Flight fifteen forty nine"


def test_bulk_path_agrees_with_one_text_at_a_time():
    # normalize_many takes a plain re.sub path for texts with no sign next to a digit: both paths
    # must read labels, counts and "+" alike.
    texts = [row[0] for table in (YEAR_STARTING_A_SENTENCE, COUNT_BEFORE_A_VERB, LABELS_READ_IN_PAIRS,
                                  LABELS_THAT_STAY_NUMBERS, COUNTED_NOUN_AFTER_MAKES_A_CARDINAL,
                                  AMBIGUOUS_CASES_CHOSEN, PLUS_SIGN) for row in table]
    bulk = normalize_many(texts * 40, ALL)
    assert bulk[:len(texts)] == [normalize(t, ALL) for t in texts]
    assert bulk[-len(texts):] == bulk[:len(texts)]
