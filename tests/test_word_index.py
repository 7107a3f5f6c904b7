"""sde.word_index: the words of a transcript column and their rows, so that a ``contains`` / ``has``
search tests the distinct words instead of every line, and selects exactly the rows a scan selects."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import replace
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sde import compressed_columns as cc
from sde import word_index as wi
from sde.filters import IndexAnswer
from sde.compressed_columns import BATCH_ROWS, CompressedStringArray, open_column, write_compressed
import sde.query
from sde.query import TableQuery
from tests.test_audio_faults import ROOT, SdeServer

WORDS = ["the", "other", "theme", "The", "THE", "cat", "ſecret", "secret", "\u212aelvin", "kelvin", "straße",
         "日本語", "a'b", "x.y", "tab\tword", "naïve", "NAÏVE", "", "  ", "the\u00a0end"]


def _texts(n: int, seed: int, lower: bool) -> list[str | None]:
    """Lines of 0-6 words joined by one or two spaces, with leading / trailing spaces, empty lines and
    missing values; ``lower``: no A-Z, ſ or K (the fast plain-substring path of sde.filters)."""
    rng = np.random.default_rng(seed)
    words = [w for w in WORDS if not lower or not any(c in w for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZſ\u212a")]
    out: list[str | None] = []
    for i in range(n):
        if i % 97 == 5:
            out.append(None)
            continue
        picked = [words[k] for k in rng.integers(0, len(words), size=int(rng.integers(0, 7)))]
        gaps = [" " if rng.random() < 0.8 else "  " for _ in picked]
        out.append((" " if i % 11 == 0 else "") + "".join(g + w for g, w in zip(gaps, picked)).lstrip(" ")
                   + (" " if i % 13 == 0 else ""))
    return out


def _stored(tmp_path, texts: list[str | None]) -> pd.DataFrame:
    path = tmp_path / "text.arrow"
    write_compressed(path, "text", [pa.array(texts, pa.large_string())], labels=False)
    frame = pd.DataFrame({"n": np.arange(len(texts))})
    frame.insert(1, "text", pd.Series(CompressedStringArray.over(open_column(path)), copy=False))
    return frame


def _budget(monkeypatch, budget: int, files: bool = False) -> None:
    """A fresh shared cache of whole columns and word indexes, of ``budget`` bytes; ``files``:
    indexes written beside their column and mapped from there (sde.index_files), else kept in
    memory, counted against the budget (what these tests weigh)."""
    monkeypatch.setattr(cc, "KEEP_IN_FILES", files)
    monkeypatch.setattr(cc, "whole_budget", lambda: budget)
    monkeypatch.setattr(cc, "_WHOLE", cc.whole_cache(budget))
    monkeypatch.setattr(cc, "_WORDS", cc.whole_cache(budget))
    monkeypatch.setattr(cc, "READ_LATER_DELAY_S", 0.0)


# ---------------------------------------------------------------- the index itself

@pytest.mark.parametrize("needle", ["the", "he", "The", "e", "ſ", "日本", "a'b", "\t", "zzz", "end"])
@pytest.mark.parametrize("segment_bytes", [1, 300, 10**9], ids=["a chunk a segment", "segments across chunks",
                                                               "one segment"])
def test_the_index_gives_the_rows_whose_words_contain_the_text(monkeypatch, needle, segment_bytes):
    monkeypatch.setattr(wi, "SEGMENT_BYTES", segment_bytes)
    texts = _texts(200, seed=1, lower=False)
    chunks = [pa.array(texts[a:a + 7], pa.large_string()) for a in range(0, len(texts), 7)]
    index = wi.build_word_index(chunks, len(texts))
    got = index.matching_rows(wi.WordTest(f"contains({wi.WORD}, ?)", [needle])).to_pylist()
    assert got == [None if t is None else needle in t for t in texts]


def test_an_index_counts_every_word_once_per_row_it_is_in():
    texts = ["the the cat", "cat", None, "", "  the"]
    index = wi.build_word_index([pa.array(texts, pa.large_string())], len(texts))
    rows = {w: sorted(index.postings.of(*where).tolist())
            for w, *where in zip(*(index.words.column(c).to_pylist() for c in ("w", "seg", "start", "stop", "bit")))}
    assert rows == {"the": [0, 4], "cat": [0, 1], "": [3, 4]}
    assert index.nulls.tolist() == [2]
    assert index.nbytes >= index.postings.nbytes


@pytest.mark.parametrize("share, as_bits", [
    (0.0, {"the", "cat", "a", "dog"}),  # every word over the share: all bits
    (0.3, {"the", "cat"}),              # 4 and 2 rows of 6 over 1.8; a, dog: 1 row each
    (0.5, {"the"}),
    (1.0, set()),                       # none over: all rows
])
@pytest.mark.parametrize("segment_bytes", [1, 10**9], ids=["a segment a chunk", "one segment"])
def test_a_word_in_more_than_a_share_of_a_segments_rows_is_kept_as_bits(monkeypatch, share, as_bits, segment_bytes):
    monkeypatch.setattr(wi, "BITS_SHARE", share)
    monkeypatch.setattr(wi, "SEGMENT_BYTES", segment_bytes)
    texts = ["the cat", "the", "a the", None, "the dog", "cat"]
    chunks = [pa.array(texts, pa.large_string())] if segment_bytes > 1 else \
        [pa.array(texts[:3], pa.large_string()), pa.array(texts[3:], pa.large_string())]
    index = wi.build_word_index(chunks, len(texts))
    words = index.words.to_pylist()
    if segment_bytes > 1:  # per segment the shares differ: one segment is the case table's
        assert {w["w"] for w in words if w["bit"] >= 0} == as_bits
    segment_rows = 6 if segment_bytes > 1 else 3
    assert all((w["bit"] >= 0) == (w["count"] > share * segment_rows) for w in words)
    assert all(w["start"] == w["stop"] for w in words if w["bit"] >= 0)  # no rows beside its bits
    for word in ("the", "cat", "a", "dog"):
        held = [i for i, t in enumerate(texts) if t is not None and word in t.split(" ")]
        kept = sorted(r for w in words if w["w"] == word
                      for r in index.postings.of(w["seg"], w["start"], w["stop"], w["bit"]).tolist())
        assert kept == held
        got = index.matching_rows(wi.WordTest(f"{wi.WORD} = ?", [word]), per_row=10).to_pylist()
        assert got == [None if t is None else i in held for i, t in enumerate(texts)]


def test_bits_hold_the_rows_of_the_common_words_in_less_memory(monkeypatch):
    texts = [f"the {i} of" for i in range(4096)]  # the, of: in every line; each number in one
    as_rows = wi.build_word_index([pa.array(texts, pa.large_string())], len(texts))
    monkeypatch.setattr(wi, "BITS_SHARE", 1.0)  # nothing as bits
    no_bits = wi.build_word_index([pa.array(texts, pa.large_string())], len(texts))
    assert no_bits.postings.nbytes - as_rows.postings.nbytes == 2 * 4096 * 4 - 2 * 4096 // 8


@pytest.mark.parametrize("rows, offsets, kept, new_offsets", [
    ([4, 4, 4, 7], [0, 4], [4, 7], [0, 2]),                  # "the the the": one row
    ([1, 1, 1, 1, 2], [0, 2, 5], [1, 1, 2], [0, 1, 3]),      # the same row in two words: once in each
    ([3, 5, 5, 6], [0, 0, 2, 2, 4], [3, 5, 5, 6], [0, 0, 2, 2, 4]),  # empty words keep their place
    ([9], [0, 1], [9], [0, 1]),
    ([], [0, 0], [], [0, 0]),
])
def test_postings_keep_a_row_once_per_word(rows, offsets, kept, new_offsets):
    got, got_offsets = wi._once_per_row(np.array(rows, dtype=np.uint32), np.array(offsets, dtype=np.int64))
    assert got.tolist() == kept and got_offsets.tolist() == new_offsets


@pytest.mark.parametrize("needle, per_row, marked", [
    ("the", 2, True),
    ("e", 2, True),      # 4 rows with "e" words in 5 rows
    ("e", 0.5, False),   # more than half a row per row: the lines are scanned instead
    ("zzz", 0, True),    # no word: nothing to mark, never too many
])
def test_words_holding_too_many_rows_are_left_to_a_scan(monkeypatch, needle, per_row, marked):
    monkeypatch.setattr(wi, "MAX_POSTINGS_PER_ROW", per_row)
    texts = ["the cat", "theme", "one", "the other", "e e e"]
    index = wi.build_word_index([pa.array(texts, pa.large_string())], len(texts))
    got = index.matching_rows(wi.WordTest(f"contains({wi.WORD}, ?)", [needle]))
    assert (got is not None) is marked
    assert got is None or got.to_pylist() == [needle in t for t in texts]


@pytest.mark.parametrize("needle", ["the", "e", "ſ", "zzz", "a'b"])
@pytest.mark.parametrize("segment_bytes", [1, 10**9], ids=["a chunk a segment", "one segment"])
@pytest.mark.parametrize("share", [0.0, 1.0], ids=["as bits", "as rows"])
def test_the_rows_a_tests_words_hold_are_counted_before_their_rows_are_gathered(monkeypatch, needle, segment_bytes,
                                                                               share):
    monkeypatch.setattr(wi, "SEGMENT_BYTES", segment_bytes)
    monkeypatch.setattr(wi, "BITS_SHARE", share)
    texts = _texts(300, seed=4, lower=False)
    chunks = [pa.array(texts[a:a + 7], pa.large_string()) for a in range(0, len(texts), 7)]
    index = wi.build_word_index(chunks, len(texts))
    passing = index._passing(wi.WordTest(f"contains({wi.WORD}, ?)", [needle]))
    held = sum(len({w for w in t.split(" ") if needle in w}) for t in texts if t is not None)
    assert passing.postings == held
    assert "spans" not in passing.__dict__  # counted without them
    assert passing.spans.postings == held


def test_a_search_left_to_the_scan_gathers_no_rows_of_its_words(monkeypatch):
    monkeypatch.setattr(wi, "MAX_POSTINGS_PER_ROW", 0.5)
    texts = ["the cat", "theme", "one", "the other", "e e e"]
    index = wi.build_word_index([pa.array(texts, pa.large_string())], len(texts))
    gathered = []
    real = wi._Spans.of
    monkeypatch.setattr(wi._Spans, "of", classmethod(lambda cls, *a: gathered.append(a) or real(*a)))
    assert index.matching_rows(wi.WordTest(f"contains({wi.WORD}, ?)", ["e"])) is None
    assert gathered == []
    assert index.matching_rows(wi.WordTest(f"contains({wi.WORD}, ?)", ["one"])).to_pylist() == [
        False, False, True, False, False]
    assert len(gathered) == 1


@pytest.mark.parametrize("per_row", [0, 0.5, 2])
def test_a_search_too_common_for_the_index_still_selects_what_a_scan_selects(monkeypatch, tmp_path, per_row):
    _budget(monkeypatch, 10**9)
    monkeypatch.setattr(wi, "MAX_POSTINGS_PER_ROW", per_row)
    texts = _texts(3000, seed=11, lower=True)
    query = TableQuery(_stored(tmp_path, texts))
    query.warm(text=["text"])
    for filt in ['{text} contains "e"', '{text} contains "the other"', '!({text} contains "t")']:
        want = TableQuery(pd.DataFrame({"n": np.arange(len(texts)), "text": pd.Series(texts, dtype="string[pyarrow]")}))
        assert query.select(filt, "-n").tolist() == want.select(filt, "-n").tolist()


@pytest.mark.parametrize("pattern, answer", [
    # nothing it matches can hold a space: its rows are the rows of the words it matches
    ("the", True), ("th(e|em)+", True), ("(?i)straße", True), ("a{2,3}b*", True), ("", True), ("x*", True),
    ("[a-z]+", True), ("\\w+", True), ("[0-9]", True), ("\\d{3}", True), ("\\S+", True), ("[^ ]+", True),
    ("[^\\s]", True), ("\\bthe\\b", True), ("ing\\b", True), ("\\Bx", True), ("a\tb", True), ("a\u00a0b", True),
    ("x{,3}", True), ("[!-~]+", True), ("(?P<g>ab)+", True),
    # anchored: the words give rows to test
    ("^the", False), ("the$", False), ("(?m)^x", False), ("\\Athe", False), ("^[a-z]+$", False),
    # may match a space, or not read for sure: the lines are scanned
    ("the cat", None), ("t.e", None), ("\\s", None), ("\\x20", None), ("\\ ", None), ("[^a]", None),
    ("[^\\S]", None), ("(?i)[^A]", None), ("\\D", None), ("\\W", None), ("[ -~]", None), ("[\\x00-\\x7f]", None),
    ("a|b c", None), ("[[:alpha:]]", None), ("[[:^space:]]", None), ("\\pL", None), ("\\p{Greek}", None),
    ("\\Qa b\\E", None), ("(?x)a b", None), ("(?=a)", None), ("(?<!a)b", None), ("(a)\\1", None), ("(", None),
])
def test_which_regexes_match_within_one_word(pattern, answer):
    assert wi.within_one_word(pattern) is answer


@pytest.mark.parametrize("pattern, words", [
    ("clipuzir.the", ["clipuzir", "the"]),
    ("^the .* of$", ["the", "of"]),
    ("(abc) d+e", ["abc", "e"]),          # a group is in its place; a repeat ends a run
    ("ab*c", ["a", "c"]),
    ("abc|abd", ["ab"]),                  # what the alternatives share
    ("the (cat|dog) sat", ["the", "sat"]),
    ("(?i)Hello World", ["Hello", "World"]),
    ("a|b c", []), (".*", []), ("[[:alpha:]] x", []), ("\\pL x", []), ("(?x)a b", []), ("(", []),
])
def test_the_text_every_match_of_a_regex_holds(pattern, words):
    assert wi.required_words(pattern) == words


def _j(*joins: str) -> frozenset[str]:
    return frozenset(joins)


@pytest.mark.parametrize("pattern, within, sure, across, spaced, joins, joined", [
    # "." inside a word, or a space; a word ending "h" then one starting "s"
    ("th.s", "(?:th.s)", True, [["(?:th)$", "^(?:s)"]], ["(?:th) (?:s)"], [[_j("hs")]], [False]),
    ("of the", None, True, [["(?:of)$", "^(?:the)"]], ["(?:of) (?:the)"], [[_j("ft")]], [False]),  # a space is always one
    # one character each side: its lines are those holding the join
    ("e.t", "(?:e.t)", True, [["(?:e)$", "^(?:t)"]], ["(?:e) (?:t)"], [[_j("et")]], [True]),
    ("e\\sc", "(?:e[\\s]c)", True, [["(?:e)$", "^(?:c)"]], ["(?:e) (?:c)"], [[_j("ec")]], [True]),
    ("a..b", "(?:a..b)", True, [["(?:a.)$", "^(?:b)"], ["(?:a)$", "^(?:.b)"], ["(?:a)$", None, "^(?:b)"]],
     ["(?:a.) (?:b)", "(?:a) (?:.b)", "(?:a)  (?:b)"], [[None], [None], [None, None]], [False, False, False]),
    (".the", "(?:.the)", True, [[None, "^(?:the)"]], [" (?:the)"], [[None]], [False]),  # an empty piece says nothing
    # case ignored: both cases; s and k also match "ſ" and the Kelvin sign, so no join is known
    ("(?i)Th.s", "(?i)(?:Th.s)", True, [["(?i)(?:Th)$", "(?i)^(?:s)"]], ["(?i)(?:Th) (?:s)"], [[None]], [False]),
    ("(?i)E.t", "(?i)(?:E.t)", True, [["(?i)(?:E)$", "(?i)^(?:t)"]], ["(?i)(?:E) (?:t)"], [[_j("et", "eT", "Et", "ET")]], [True]),
    ("\\bthe[^x]c(ab|o)t+", "(?:\\bthe[^x]c(?:ab|o)(?:t){1,})", True, [["(?:\\bthe)$", "^(?:c(?:ab|o)(?:t){1,})"]],
     ["(?:\\bthe) (?:c(?:ab|o)(?:t){1,})"], [[_j("ec")]], [False]),
    ("x\\.y.(z)", "(?:x\\x2ey.z)", True, [["(?:x\\x2ey)$", "^(?:z)"]], ["(?:x\\x2ey) (?:z)"], [[_j("yz")]], [False]),
    ("^th.s", "(?:^th.s)", False, [["(?:^th)$", "^(?:s)"]], ["(?:^th) (?:s)"], [[_j("hs")]], [False]),  # a word's start is not the line's
    ("^e.t", "(?:^e.t)", False, [["(?:^e)$", "^(?:t)"]], ["(?:^e) (?:t)"], [[_j("et")]], [False]),  # the join, not only it
    ("th.(s|x$)", "(?:th.(?:s|x$))", False, [["(?:th)$", "^(?:(?:s|x$))"]], ["(?:th) (?:(?:s|x$))"], [[None]], [False]),
])
def test_a_regex_is_cut_at_the_characters_that_may_be_spaces(pattern, within, sure, across, spaced, joins, joined):
    assert wi.space_cuts(pattern) == [wi.SpaceCuts(within, sure, across, spaced, joins, joined)]


@pytest.mark.parametrize("pattern", ["ß.t", "e.ß", "e+.t", "[ae].t", "e.\\w", "(?i)k.t", "e\\b.t"])
def test_a_join_is_known_only_between_two_ascii_characters(pattern):
    # joins are bytes: a character of several (UTF-8), a repeat, a class or an anchor gives none
    assert [cuts.joins for cuts in wi.space_cuts(pattern)] == [[[None]]]


@pytest.mark.parametrize("pattern, alternatives", [
    ("you know|i mean", [(None, True, [["(?:you)$", "^(?:know)"]], ["(?:you) (?:know)"], [[_j("uk")]], [False]),
                         (None, True, [["(?:i)$", "^(?:mean)"]], ["(?:i) (?:mean)"], [[_j("im")]], [False])]),
    ("a|b c", [("(?:a)", True, [], [], [], []),  # an alternative within a word
               (None, True, [["(?:b)$", "^(?:c)"]], ["(?:b) (?:c)"], [[_j("bc")]], [True])]),
    ("(?i)You Know|like", [(None, True, [["(?i)(?:You)$", "(?i)^(?:Know)"]], ["(?i)(?:You) (?:Know)"], [[None]], [False]),
                           ("(?i)(?:like)", True, [], [], [], [])]),
    ("^ | $", [(None, False, [["(?:^)$", None]], ["(?:^) "], [[None]], [False]),
               (None, False, [[None, "^(?:$)"]], [" (?:$)"], [[None]], [False])]),  # an empty first or last word
])
def test_each_alternative_of_an_alternation_is_cut(pattern, alternatives):
    assert wi.space_cuts(pattern) == [wi.SpaceCuts(*alternative) for alternative in alternatives]


@pytest.mark.parametrize("pattern", [
    # a part holding a space among other characters, too many cuts, or not read for sure: not cut
    "^the .* of$", "a|b .*", "a b|c d|e f|g h|i j|k l|m n|o p|q r", "a b c d e", "(?i:a).b", "(a).\\1", "(?=a).b", "[[:alpha:]].b", "(?m)^a.b", "the",
])
def test_a_regex_is_not_cut_where_a_space_may_hide_in_a_longer_part(pattern):
    assert wi.space_cuts(pattern) is None


SPANNING = ["th.o", "e.t", "he.ot", "(?i)THE.OTHER", "e\\sc", "[^x]the", "x\\.y.t", "e..t", "^the.o", "r.t.e",
            "\\bthe.\\w", "a'b.", ".the", "the.", "e.(t|c)at", "c[ ]t", "ß.日", "(?i)kelvin.s", "ſecret.c", "e\tw.t",
            "the other|cat", "he.ot|ß", "(?i)THE OTHER|kelvin", "^ | $", "he ot|x\\.y|^cat$", "(?i)He.oT|THE.c"]

# ... of which these have a way whose words are in most lines ("the", "e" and "t", an empty word): every line is
# tested, unless the joins of words give the lines of that way ("e" then "t")
TOO_COMMON_TO_NARROW = {"e.t", "[^x]the", "e..t", ".the", "^ | $"}
JOINED = {"e.t"}


@pytest.mark.parametrize("joins", [False, True], ids=["words", "words and joins"])
@pytest.mark.parametrize("common_share", [0.0, 0.3, 2.0], ids=["every word common", "some common", "none common"])
@pytest.mark.parametrize("pattern", SPANNING)
def test_a_regex_cut_at_its_spaces_selects_the_rows_a_scan_selects(monkeypatch, tmp_path, texts, pattern, common_share,
                                                                   joins):
    query, paired = _indexed_with_pairs(monkeypatch, tmp_path, texts, common_share, joins)
    filt = f'{{text}} matches "{pattern}"'
    if pattern not in TOO_COMMON_TO_NARROW or (joins and pattern in JOINED):  # the lines to test were narrowed
        assert query._engine.marked_sql({}, query.clauses(filt)[0]) is not None
    _selects_what_a_scan_selects(query, texts, filt)


def _indexed_with_pairs(monkeypatch, tmp_path, texts, common_share: float, joins: bool = False,
                        ) -> tuple[TableQuery, list[str]]:
    """A query over the texts stored compressed, their words indexed (a segment per batch), and the
    pairs of those in at least ``common_share`` of the lines (and ``joins``: the joins of words); the
    columns paired."""
    _budget(monkeypatch, 10**9)
    monkeypatch.setattr(wi, "SEGMENT_BYTES", 1)
    monkeypatch.setattr(wi, "COMMON_SHARE", common_share)
    query = TableQuery(_stored(tmp_path, texts))
    query.warm(text=["text"])
    paired = query.warm_phrases(["text"])
    if joins:
        assert query.warm_joins(["text"]) == ["text"]
    return query, paired


def _selects_what_a_scan_selects(query: TableQuery, texts, filt: str) -> None:
    """The filter, its negation and an OR select on the indexed query what they select on plain
    strings, whether the lines left to test are tested at once or by the query's scan."""
    want = TableQuery(pd.DataFrame({"n": np.arange(len(texts)), "text": pd.Series(texts, dtype="string[pyarrow]")}))
    for at_once in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            query._filters.clear()  # compiled again, this way
            if not at_once:
                _tested_by_the_scan(patch)
            for f in (filt, f"!({filt})", f"{filt} || {{n}} < 5"):
                assert query.select(f, "-n").tolist() == want.select(f, "-n").tolist(), (f, at_once)


def _tested_by_the_scan(monkeypatch) -> None:
    """Lines a word index leaves to test are tested by the query's scan, not at once from their batches."""
    monkeypatch.setattr(sde.query, "TEST_NOW_SHARE", 0)
    monkeypatch.setattr(sde.query, "TEST_NOW_BYTES", 0)


def _few_words(monkeypatch, tmp_path) -> tuple[TableQuery, list[str]]:
    """3,000 lines of ten words, each common (their pairs indexed), indexed."""
    _budget(monkeypatch, 10**9)
    rng = np.random.default_rng(5)
    vocabulary = ["this", "with", "see", "the", "of", "and", "a", "bath", "sea", "on"]
    texts = [" ".join(rng.choice(vocabulary, size=int(rng.integers(1, 9)), p=[.02, .03, .05, .3, .2, .2, .1, .02, .03, .05]))
             for _ in range(3000)]
    query = TableQuery(_stored(tmp_path, texts))
    query.warm(text=["text"])
    assert query.warm_phrases(["text"]) == ["text"]
    return query, texts


def test_an_alternation_of_phrases_tests_only_the_lines_holding_one(monkeypatch, tmp_path):
    query, texts = _few_words(monkeypatch, tmp_path)
    masks: dict = {}
    answer = query._engine.marked_sql(masks, query.clauses('{text} matches "with see|bath sea"')[0])
    assert answer[:3] == (("m0",), False, None) and answer.test.value == "(?:with) (?:see)|(?:bath) (?:sea)"
    tested = masks["m0"].to_numpy(zero_copy_only=False).tolist()
    assert tested == [bool(re.search("with see|bath sea", t)) for t in texts] and 0 < sum(tested) < 0.1 * len(texts)
    assert query.count('{text} matches "with see|bath sea"') == sum(tested)


def test_a_regex_that_may_span_words_tests_only_the_lines_its_words_allow(monkeypatch, tmp_path):
    query, texts = _few_words(monkeypatch, tmp_path)
    masks: dict = {}
    clause = query.clauses('{text} matches "th.s"')[0]
    # the lines not matched for sure are tested with the way across words alone: the text "th s"
    assert query._engine.marked_sql(masks, clause) == IndexAnswer(("m0",), False, "m1", replace(clause, value="(?:th) (?:s)"))
    tested, sure = (masks[m].to_numpy(zero_copy_only=False).tolist() for m in ("m0", "m1"))
    words = [t.split(" ") for t in texts]
    assert sure == ["this" in ws for ws in words]  # "th", one character and "s" in a word: a match
    # a word ending "th" then one starting "s": lines to test
    assert tested == [any(a in ("with", "bath") and b.startswith("s") for a, b in zip(ws, ws[1:])) for ws in words]
    assert 0 < sum(tested) < 0.1 * len(texts)
    assert [bool(re.search("th.s", t)) for t in texts] == [a or b for a, b in zip(sure, tested)]


def test_a_regex_whose_words_are_in_most_lines_tests_every_line_not_matched_for_sure(monkeypatch, tmp_path):
    query, texts = _few_words(monkeypatch, tmp_path)
    monkeypatch.setattr(sde.query, "PIECE_ROWS_SHARE", 0.0)  # every way across words: too common to narrow
    masks: dict = {}
    clause = query.clauses('{text} matches "th.s"')[0]
    assert query._engine.marked_sql(masks, clause) == IndexAnswer((), False, "m0", replace(clause, value="(?:th) (?:s)"))
    assert masks["m0"].to_pylist() == ["this" in t.split(" ") for t in texts]  # no test for these
    _selects_what_a_scan_selects(query, texts, '{text} matches "th.s"')


@pytest.mark.parametrize("filt", ['{text} matches "^th.s"', '{text} matches "th.s|^a"'])
def test_a_regex_with_a_line_anchor_tests_its_lines_with_itself(monkeypatch, tmp_path, filt):
    query, texts = _few_words(monkeypatch, tmp_path)
    answer = query._engine.marked_sql({}, query.clauses(filt)[0])
    assert answer is not None and not answer.exact and answer.test is None  # a word's start is not the line's
    _selects_what_a_scan_selects(query, texts, filt)


def test_a_regex_whose_words_matching_it_whole_are_too_many_to_mark_tests_its_lines_with_itself(monkeypatch, tmp_path):
    query, texts = _few_words(monkeypatch, tmp_path)
    monkeypatch.setattr(wi, "MAX_POSTINGS_PER_ROW", 0)  # no word's rows are marked for sure
    answer = query._engine.marked_sql({}, query.clauses('{text} matches "th.s"')[0])
    assert answer is None or answer.test is None
    _selects_what_a_scan_selects(query, texts, '{text} matches "th.s"')


def test_the_index_keeps_the_rows_of_each_two_common_words_that_follow_each_other(monkeypatch):
    monkeypatch.setattr(wi, "COMMON_SHARE", 0.3)  # of: 5 rows in 7, the: 6; cat: 2, "": 1
    monkeypatch.setattr(wi, "SEGMENT_BYTES", 1)  # and a segment per chunk
    texts = ["of the cat", "the of", "of  the", "cat of the the", None, "the", "of the of the"]
    chunks = [pa.array(texts[a:a + 2], pa.large_string()) for a in range(0, len(texts), 2)]
    words = wi.build_word_index(chunks, len(texts))
    assert not len(words.pairs) and not pc.sum(words.vocabulary["common"]).as_py()  # the words first
    index = wi.with_pairs(words, chunks)
    assert index.postings is words.postings and index.nbytes > words.nbytes
    common = index.vocabulary.filter(index.vocabulary["common"])["w"].to_pylist()
    pairs: dict = {}
    for a, b, *where in zip(*(index.pairs[c].to_pylist() for c in ("a", "b", "seg", "start", "stop", "bit"))):
        pairs[a, b] = sorted(pairs.get((a, b), []) + index.pair_postings.of(*where).tolist())  # one entry a segment
    assert sorted(common) == ["of", "the"]
    assert pairs == {("of", "the"): [0, 3, 6], ("the", "of"): [1, 6], ("the", "the"): [3]}


@pytest.mark.parametrize("text, pieces", [
    ("of the", [("of ", "w || ' '"), (" the", "' ' || w")]),
    ("a b c", [("a ", "w || ' '"), (" b ", "' ' || w || ' '"), (" c", "' ' || w")]),
    ("the", None), (" the", None), ("of  the", None), ("of the ", None), (" ", None),
])
def test_a_phrase_is_words_with_one_space_between(text, pieces):
    assert wi.phrase_pieces(text) == pieces


PHRASES = ["the other", "other the", "the the", "he ot", "the other theme", "THE cat", "ß the", "b x.y", "end cat",
           "kelvin secret", "ſecret cat", "naïve 日本", "e\tw the", "zzz the"]


@pytest.mark.parametrize("common_share", [0.0, 0.3, 2.0], ids=["every word common", "some common", "none common"])
@pytest.mark.parametrize("phrase", PHRASES)
def test_a_phrase_search_selects_the_rows_a_scan_selects(monkeypatch, tmp_path, texts, phrase, common_share):
    query, paired = _indexed_with_pairs(monkeypatch, tmp_path, texts, common_share)
    assert paired == ([] if common_share > 1 else ["text"])
    filt = f'{{text}} contains "{phrase}"'
    assert query._engine.marked_sql({}, query.clauses(filt)[0]) is not None  # the pairs and words narrowed it
    _selects_what_a_scan_selects(query, texts, filt)


def test_a_phrase_of_common_words_marks_only_the_lines_that_hold_it(monkeypatch, tmp_path):
    _budget(monkeypatch, 10**9)
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(["of", "the", "and", "a"], size=int(rng.integers(1, 9)))) for _ in range(2000)]
    query = TableQuery(_stored(tmp_path, texts))
    query.warm(text=["text"])
    query.warm_phrases(["text"])
    masks: dict = {}
    query._engine.marked_sql(masks, query.clauses('{text} contains "of the"')[0])
    holding = sum("of the" in t for t in texts)
    assert [m.true_count for m in masks.values()] == [holding]  # both words in most lines; the pair in these
    assert holding < 0.5 * sum("of" in t.split() and "the" in t.split() for t in texts)


def test_a_column_shorter_than_it_says_is_refused():
    with pytest.raises(ValueError, match="gave 2 values, not 3"):
        wi.build_word_index([pa.array(["a", "b"], pa.large_string())], 3)


# ---------------------------------------------------------------- searches through TableQuery

FILTERS = [
    '{text} contains "the"',
    '{text} contains "THE"',
    '{text} contains "he"',
    '{text} contains "secret"',
    '{text} contains "kelvin"',
    '{text} contains "ß"',
    '{text} contains "naïve"',
    '{text} contains "日本"',
    '{text} contains "zzz"',
    '{text} contains "the other"',
    '{text} contains "e t"',
    '{text} contains " the "',
    '{text} contains "the "',
    '{text} contains "  "',
    '{text} contains " "',
    '{text} contains "b\tw"',
    '{text} contains "the\u00a0"',
    '{text} has "the"',
    '{text} has "The"',
    '{text} has "straße"',
    "{text} has \"a'b\"",
    '!({text} contains "the")',
    '!({text} has "cat")',
    '{text} contains "the" || {text} contains "cat"',
    '{text} contains "the" && !({text} contains "other")',
    '{n} > 300 && {text} contains "e"',
    '({text} contains "cat" || {n} < 10) && {text} is not null',
    '{text} matches "^the"',
    '{text} matches "the"',
    '{text} matches "th(e|em)e?"',
    '{text} matches "(?i)THE"',
    '{text} matches "e$"',
    '{text} matches "^$"',
    '{text} matches "x*"',
    '{text} matches "the other"',
    '{text} matches "t.e"',
    '!({text} matches "ret")',
    '{text} matches "[a-z]+"',
    '{text} matches "\\\\bthe\\\\b"',
    '{text} matches "(?i)the\\\\b"',
    '{text} matches "x\\\\.y"',
    '{text} matches "[^ ]e$"',
    '{text} matches "the.oth"',
    '{text} matches "(?i)THE OTHER"',
    '{text} contains "the other theme"',
    '{text} contains "THE cat"',
]


@pytest.fixture(scope="module", params=[True, False], ids=["lower-case column", "mixed-case column"])
def texts(request) -> list[str | None]:
    return _texts(2 * BATCH_ROWS + 17, seed=7, lower=request.param)


@pytest.mark.parametrize("sort", [None, "-n", "text"])
@pytest.mark.parametrize("filt", FILTERS)
def test_an_indexed_search_selects_the_rows_a_scan_selects(monkeypatch, tmp_path, texts, filt, sort):
    _budget(monkeypatch, 10**9)
    monkeypatch.setattr(wi, "SEGMENT_BYTES", 1)  # a segment per compressed batch: three
    stored = _stored(tmp_path, texts)
    query = TableQuery(stored)
    query.warm(text=["text"])
    assert cc.word_index(stored["text"].array.compressed) is not None
    want = TableQuery(pd.DataFrame({"n": stored["n"], "text": pd.Series(texts, dtype="string[pyarrow]")}))
    assert query.select(filt, sort).tolist() == want.select(filt, sort).tolist()
    total, page = query.page(filt, sort, page=0, page_size=30)
    assert total == want.count(filt) and page["text"].tolist() == want.page(filt, sort, 0, 30)[1]["text"].tolist()


@pytest.mark.parametrize("sort", ["-n", "n", "text"])
@pytest.mark.parametrize("filt", ['{text} contains "the"', '{text} contains "er"', '{text} has "cat"',
                                  '{text} matches "th(e|em)"', '{text} contains "zyzzyva"'])
def test_the_first_page_of_a_view_one_word_index_marks_is_counted_from_its_marks(monkeypatch, tmp_path, filt, sort):
    _budget(monkeypatch, 10**9)
    monkeypatch.setattr(sde.query, "PREFIX_ROWS", 40)  # the top-N shorter than most views
    texts = _texts(2 * BATCH_ROWS + 17, seed=7, lower=True)
    stored = _stored(tmp_path, texts)
    query = TableQuery(stored)
    query.warm(text=["text"])
    want = TableQuery(pd.DataFrame({"n": stored["n"], "text": pd.Series(texts, dtype="string[pyarrow]")}))
    total, page = query.page(filt, sort, page=1, page_size=20)  # asked first: no whole view kept to count
    assert total == want.count(filt)
    assert page["n"].tolist() == want.page(filt, sort, 1, 20)[1]["n"].tolist()


@pytest.mark.parametrize("filt, streams", [
    ('{text} contains "the"', False),
    ('!({text} has "cat")', False),
    ('{text} contains "the other"', True),   # words matched piece by piece, then the line tested
    ('{text} matches "th(e|em)"', False),    # a regex that matches within a word
    ('{text} matches "^the"', True),         # anchored: the words give rows to test
    ('{text} matches "the ot"', True),       # may match across words: the words give rows to test
    ('{text} matches "[sS]ecret\\\\b"', False),  # nothing it matches holds a space
    ('{text} contains " "', True),           # spaces alone: every line with two words
])
def test_a_search_of_one_word_reads_no_line(monkeypatch, tmp_path, filt, streams):
    _budget(monkeypatch, 10**9)
    _tested_by_the_scan(monkeypatch)
    stored = _stored(tmp_path, _texts(3 * BATCH_ROWS, seed=3, lower=True))
    query = TableQuery(stored)
    query.warm(text=["text"])
    column = stored["text"].array.compressed
    cc._WHOLE.discard(column.path)  # the warm-up read it whole: make a scan stream the file
    column._recent = None
    assert column.kept_whole() is None
    query.select(filt)
    assert bool(query._engine._scans) is streams


@pytest.mark.parametrize("at_once", [True, False], ids=["tested at once", "tested by the scan"])
@pytest.mark.parametrize("filt, found", [
    ('{text} contains "zyzzyva the"', [5 * BATCH_ROWS + 7, 5 * BATCH_ROWS + 99]),  # "zyzzyva then" holds it too
    ('{text} matches "zyzzyva.the"', [5 * BATCH_ROWS + 7, 5 * BATCH_ROWS + 99]),
    ('{text} matches "^a zyzzyva"', [5 * BATCH_ROWS + 7]),
    ('!({text} contains "zyzzyva the")', None),
])
def test_lines_left_to_test_in_few_batches_are_tested_from_those_batches(monkeypatch, tmp_path, at_once, filt, found):
    """A search whose words leave a few lines to test decompresses their batches, not the column."""
    _budget(monkeypatch, 10**9)
    if not at_once:
        _tested_by_the_scan(monkeypatch)
    texts = _texts(8 * BATCH_ROWS, seed=9, lower=True)
    texts[5 * BATCH_ROWS + 7], texts[5 * BATCH_ROWS + 99] = "a zyzzyva the cat", "zyzzyva then"
    texts[5 * BATCH_ROWS + 100], texts[6 * BATCH_ROWS] = "zyzzyva cat", "the zyzzyva"
    stored = _stored(tmp_path, texts)
    query = TableQuery(stored)
    query.warm(text=["text"])
    column = stored["text"].array.compressed
    cc._WHOLE.discard(column.path)  # the warm-up read it whole: make a scan stream the file
    column._recent = None
    want = TableQuery(pd.DataFrame({"n": np.arange(len(texts)), "text": pd.Series(texts, dtype="string[pyarrow]")}))
    got = query.select(filt).tolist()
    assert got == want.select(filt).tolist() and (found is None or got == found)
    assert bool(query._engine._scans) is not at_once


def test_a_new_sort_of_a_search_does_not_mark_its_rows_again(monkeypatch, tmp_path):
    query, texts = _few_words(monkeypatch, tmp_path)
    marked = []
    original = sde.query._Engine.marked_sql
    monkeypatch.setattr(sde.query._Engine, "marked_sql", lambda self, *a: marked.append(1) or original(self, *a))
    filt = '{text} matches "th.s"'
    want = [i for i, t in enumerate(texts) if re.search("th.s", t)]
    assert sorted(query.select(filt, "text").tolist()) == want
    assert sorted(query.select(filt, "-text").tolist()) == want and query.window(filt, None, 0, 5)[0] == len(want)
    assert len(marked) == 1
    assert query.count(f"{filt} && {{text}} contains \"a\"") > 0 and len(marked) == 3  # another filter: both parts
    query._engine.indexes_made += 1  # an index added since: compiled again, to use it
    query._results.clear()
    query._prefixes.clear()
    assert query.count(filt) == len(want) and len(marked) == 4


def test_the_compiled_filters_kept_are_counted_by_their_masks_bytes(monkeypatch, tmp_path):
    query, texts = _few_words(monkeypatch, tmp_path)
    filt, want = '{text} contains "with see"', sum("with see" in t for t in texts)
    assert query.count(filt) == want and len(query._filters) == 1
    (_, _, _, masks), _ = next(iter(query._filters._items.values()))
    assert masks and query._filters.size == 1024 + sum(mask.nbytes for mask in masks.values())
    query._filters.resize(0)  # no room: nothing kept, the same answers
    assert query.count(filt) == want and query.select(filt, "-text").size == want and len(query._filters) == 0


@pytest.mark.parametrize("size, rows, nulls, sliced", [
    (0, [], [], 0),
    (5, [4], [], 0),
    (BATCH_ROWS, [0, BATCH_ROWS - 1], [], 0),
    (BATCH_ROWS + 3, [BATCH_ROWS + 2], [], 0),                   # the last row of a short last batch
    (3 * BATCH_ROWS + 5, [1, 2, 2 * BATCH_ROWS + 9], [], 0),
    (3 * BATCH_ROWS, [5, BATCH_ROWS + 1], [BATCH_ROWS + 1], 0),   # a missing value holds nothing
    (3 * BATCH_ROWS, [5, 2 * BATCH_ROWS + 1], [], 3),             # a slice: its own rows
])
def test_the_batches_a_mask_holds_rows_in(size, rows, nulls, sliced):
    values = np.zeros(size + sliced, dtype=bool)
    values[np.asarray(rows, dtype=np.int64) + sliced] = True
    missing = np.zeros(size + sliced, dtype=bool)
    missing[np.asarray(nulls, dtype=np.int64) + sliced] = True
    mask = pa.array(values, mask=missing).slice(sliced)
    held = {r // BATCH_ROWS for r in rows if r not in nulls}
    assert sde.query._batches_holding(mask) == len(held)


@pytest.mark.parametrize("case, budget, indexed", [
    ("room for it", 10**9, True),
    ("no room", 1_000, False),
])
def test_the_warm_up_indexes_the_transcripts_the_budget_has_room_for(monkeypatch, tmp_path, case, budget, indexed):
    _budget(monkeypatch, budget)
    stored = _stored(tmp_path, _texts(500, seed=5, lower=True))
    column = stored["text"].array.compressed
    query = TableQuery(stored)
    query.warm(text=["text"])
    index = cc.word_index(column)
    assert (index is not None) is indexed
    if indexed:
        assert column.path in cc._WORDS and cc._WORDS.size == index.nbytes
    assert query.count('{text} contains "the"') == sum(t is not None and "the" in t for t in _texts(500, 5, True))


def test_only_the_columns_named_as_transcripts_are_indexed(monkeypatch, tmp_path):
    _budget(monkeypatch, 10**9)
    stored = _stored(tmp_path, _texts(300, seed=2, lower=True))
    query = TableQuery(stored)
    query.warm()  # a batch command's engine, or a table with no transcripts named
    assert cc.word_index(stored["text"].array.compressed) is None


def test_an_index_is_built_once_when_asked_twice(monkeypatch, tmp_path):
    _budget(monkeypatch, 10**9)
    stored = _stored(tmp_path, _texts(300, seed=2, lower=True))
    column = stored["text"].array.compressed
    first = cc.index_words(column)
    assert first is not None and cc.index_words(column) is first


def _index_bytes(column) -> int:
    return wi.build_word_index(column.chunks(), column.rows).nbytes


def test_whole_columns_make_way_for_a_word_index(monkeypatch, tmp_path):
    stored = _stored(tmp_path, _texts(3 * BATCH_ROWS, seed=4, lower=True))
    column = stored["text"].array.compressed
    _budget(monkeypatch, column.nbytes + _index_bytes(column) - 1)  # one or the other
    column.read_all()
    column._recent = None
    assert column.kept_whole() is not None
    assert cc.index_words(column) is not None
    column._recent = None
    assert column.kept_whole() is None and cc._WHOLE.size == 0


@pytest.mark.parametrize("room_for_both", [False, True])
def test_a_whole_column_makes_way_before_a_word_index_is_built_where_both_do_not_fit(monkeypatch, tmp_path,
                                                                                     room_for_both):
    """The budget holds the index or the column: the column goes before the build (which streams
    the file), not once the index is kept (10M transcripts: 0.7 GB held beside the build). Where
    both fit, the build reads the column kept whole."""
    stored = _stored(tmp_path, _texts(3 * BATCH_ROWS, seed=4, lower=True))
    column = stored["text"].array.compressed
    index_bytes = _index_bytes(column)
    _budget(monkeypatch, 2 * column.nbytes + index_bytes if room_for_both else column.nbytes + index_bytes - 1)
    column.read_all()
    column._recent = None
    kept_at_build = []
    build = cc.build_word_index
    monkeypatch.setattr(cc, "build_word_index",
                        lambda chunks, rows, room: kept_at_build.append(cc._WHOLE.size) or build(chunks, rows, room))
    assert cc.index_words(column) is not None
    assert kept_at_build == [column.nbytes if room_for_both else 0]
    assert (column.kept_whole() is not None) is room_for_both


def test_a_column_read_for_the_next_search_never_pushes_out_a_word_index(monkeypatch, tmp_path):
    texts = _texts(3 * BATCH_ROWS, seed=4, lower=True)
    stored = _stored(tmp_path, texts)
    column = stored["text"].array.compressed
    _budget(monkeypatch, column.nbytes + _index_bytes(column) - 1)
    _tested_by_the_scan(monkeypatch)
    query = TableQuery(stored)
    query.warm(text=["text"])  # indexes it; too big to preload beside the index
    assert cc.word_index(column) is not None and column.kept_whole() is None
    assert query.count('{text} contains "the other"') == sum(t is not None and "the other" in t for t in texts)
    assert query._engine._scans and not column._reading  # the phrase streamed it; no read for later
    whole = column.read_all()  # a computation that reads it whole (held while it runs) ...
    column._recent = None
    del whole
    assert column.kept_whole() is None and cc.word_index(column) is not None  # ... keeps the index


# ---------------------------------------------------------------- through the real server

SERVER_FILTERS = ['{text} contains "the"', '{text} contains "he"', '{text} has "cat"', '!({text} contains "other")',
                  '{text} contains "the other"', '{pred_text} contains "other the"', '{text} matches "[a-z]+e\\\\b"',
                  '{text} matches "the.o"', '{text} matches "e.o"', '{pred_text} matches "(?i)E.t|r.t"',
                  '{text} contains "THE" || {pred_text} contains "them"',
                  '{pred_text} has "secret"']


def _said(server, start: str, seconds: float = 60.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        said = [line for line in server.stderr if line.startswith(start)]
        if said:
            return said[0]
        time.sleep(0.05)
    raise AssertionError(f"the server never said {start!r}: {''.join(server.stderr)}")


def test_the_server_indexes_its_transcripts_and_finds_what_a_scan_finds(tmp_path):
    texts = [t or "" for t in _texts(600, seed=9, lower=True)]
    # every 50th hypothesis holds a line break (RE2's "." never matches one); the references none
    preds = [" ".join(reversed(t.split(" "))).replace(" ", "\n", 1 if i % 50 == 0 else 0) for i, t in enumerate(texts)]
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"a{i}.wav", "duration": 1.0 + i % 5, "text": t,
                                            "pred_text": preds[i]}) + "\n"
                                for i, t in enumerate(texts)))
    cache_dir = tmp_path / "cache"
    built = subprocess.run([sys.executable, "-m", "sde.cli", "index", str(manifest), "--cache-dir", str(cache_dir)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    with SdeServer(str(manifest), "--cache-dir", str(cache_dir), no_cache=False) as indexed, \
            SdeServer(str(manifest)) as scanned:  # built in memory: nothing compressed, nothing indexed
        assert "words of text, pred_text indexed" in _said(indexed, "searches ready")
        assert "pairs of common words of text, pred_text indexed" in _said(indexed, "phrases ready")
        assert "indexed" not in _said(scanned, "searches ready")
        assert not [line for line in scanned.stderr if line.startswith("phrases ready")]  # nothing to pair
        assert "text, pred_text, audio_filepath, audio_path ranked" in _said(indexed, "sorts ready")
        assert "no text column ranked" in _said(scanned, "sorts ready")
        assert "joins of words of text, pred_text indexed" in _said(indexed, "regexes across words ready")
        assert "; Statistics, Errors prepared)" in _said(indexed, "pages ready")
        assert "; text, pred_text kept whole)" in _said(indexed, "transcripts in memory")  # the warm-up's last line
        for filt in SERVER_FILTERS:
            path = "/api/utterances?" + urlencode({"filter": filt, "sort": "-duration", "page_size": 1000})
            got, want = indexed.json(path, 200), scanned.json(path, 200)
            assert got["total"] == want["total"] > 0, filt
            assert [r["id"] for r in got["rows"]] == [r["id"] for r in want["rows"]], filt
        for column, values, regex in (("text", texts, "t.*o"), ("pred_text", preds, "e.*t")):  # LIKE tests
            path = "/api/utterances?" + urlencode({"filter": f'{{{column}}} matches "{regex}"', "page_size": 1000})
            want_ids = [i for i, v in enumerate(values) if re.search(regex, v)]  # "." as RE2's: no line break
            for server in (indexed, scanned):
                assert sorted(r["id"] for r in server.json(path, 200)["rows"]) == want_ids, (column, regex)


def test_a_phrase_of_many_words_marks_at_most_a_few_of_them(monkeypatch, tmp_path):
    _budget(monkeypatch, 10**9)
    texts = _texts(2000, seed=6, lower=True)
    query = TableQuery(_stored(tmp_path, texts))
    query.warm(text=["text"])
    many = " ".join(f"w{i}" for i in range(600)) + " the"  # a hostile filter: 601 pieces
    masks: dict = {}
    clause = query.clauses(f'{{text}} contains "{many}"')[0]
    answer = query._engine.marked_sql(masks, clause)
    assert not answer.exact and answer.sure is None and 0 < len(masks) <= 3 and len(answer.rows) == len(masks)
    assert query.count(f'{{text}} contains "{many}"') == 0


@pytest.mark.parametrize("spare, built", [(0, True), (-1, False)], ids=["exactly its size", "a byte short"])
def test_an_index_bigger_than_its_room_is_given_up(monkeypatch, spare, built):
    monkeypatch.setattr(wi, "SEGMENT_BYTES", 1)  # a segment per chunk: the projection is checked often
    texts = _texts(300, seed=8, lower=True)
    chunks = [pa.array(texts[a:a + 50], pa.large_string()) for a in range(0, 300, 50)]
    words = wi.build_word_index(chunks, 300)
    assert (wi.build_word_index(chunks, 300, max_bytes=words.nbytes + spare) is not None) is built
    paired = wi.with_pairs(words, chunks)
    got = wi.with_pairs(words, chunks, max_bytes=paired.nbytes - words.nbytes + spare)  # the room for the pairs
    assert (got is not None) is built
    joined = wi.with_joins(words, chunks)
    assert joined.nbytes == words.nbytes + joined.joins.nbytes
    assert (wi.with_joins(words, chunks, max_bytes=joined.joins.nbytes + spare) is not None) is built


def _room_for_the_words_alone(monkeypatch, tmp_path) -> tuple[TableQuery, list[str | None], cc.CompressedColumn]:
    """A query over texts stored compressed, their words indexed in a budget with 1,000 bytes to spare."""
    texts = _texts(3 * BATCH_ROWS, seed=4, lower=True)
    stored = _stored(tmp_path, texts)
    column = stored["text"].array.compressed
    _budget(monkeypatch, wi.build_word_index(column.chunks(), column.rows).nbytes + 1_000)
    query = TableQuery(stored)
    query.warm(text=["text"])
    return query, texts, column


def test_pairs_are_indexed_only_where_the_budget_has_room_beside_every_word_index(monkeypatch, tmp_path):
    query, texts, column = _room_for_the_words_alone(monkeypatch, tmp_path)
    assert query.warm_phrases(["text"]) == [] and not len(cc.word_index(column).pairs)
    assert cc._WORDS.size == cc.word_index(column).nbytes
    for phrase in ["the other", "other the"]:  # the words alone narrow a phrase
        assert query.count(f'{{text}} contains "{phrase}"') == sum(t is not None and phrase in t for t in texts)


def test_a_column_of_one_long_word_a_line_is_not_indexed_beside_a_small_budget(monkeypatch, tmp_path):
    texts = [f"utt{i:06d}-path/to/audio{i}.wav" for i in range(3 * BATCH_ROWS)]  # every line a new word
    stored = _stored(tmp_path, texts)
    column = stored["text"].array.compressed
    _budget(monkeypatch, column.nbytes)  # such an index takes more than the column itself
    assert cc.index_words(column) is None and cc._WORDS.size == 0
