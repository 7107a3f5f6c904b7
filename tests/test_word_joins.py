"""sde.word_joins: the lines holding each join of two words (the byte ending a word, the byte
starting the next), so that a regex that may match a space at one character reads them instead
of searching every line, and selects exactly the rows a scan selects."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sde import compressed_columns as cc
from sde import word_index as wi
from sde import word_joins as wj
from sde.filters import IndexAnswer
from sde.query import TableQuery
from tests.test_word_index import _few_words, _texts, _room_for_the_words_alone

LINES = ["the cat", "the  cat", " the cat ", "thecat", "e t", "e\tt", "naïve time", "日本 the", "", None,
         "one two three", "a", "the cat the cat", "x. y"]


def _held(line: str | None, join: str) -> bool:
    return line is not None and f"{join[0]} {join[1]}" in line


@pytest.mark.parametrize("join, rows", [
    ("ec", [0, 2, 12]),   # "the cat": not "the  cat" (two spaces), not "thecat"
    ("et", [4, 6, 10]),   # "e t", "naïve time", "one two"; not "e\tt"
    ("ot", [10]),
    ("ca", []),           # "cat the": t then t
    ("tt", [12]),
    (".y", [13]),
    ("zz", []),
])
def test_a_join_is_a_space_between_the_bytes_of_two_words(join, rows):
    joins = wj.WordJoins(len(LINES), (wj.segment_joins(0, [pa.array(LINES, pa.large_string())]),))
    assert np.flatnonzero(joins.rows_joining([join])).tolist() == rows


@pytest.mark.parametrize("bits_share", [0.0, 1 / 32, 2.0], ids=["every join as bits", "the common ones as bits",
                                                               "every join as rows"])
@pytest.mark.parametrize("string_type", [pa.string(), pa.large_string()])
@pytest.mark.parametrize("segment_bytes", [1, 300, 10**9], ids=["a chunk a segment", "segments across chunks",
                                                               "one segment"])
def test_the_joins_give_the_lines_holding_them(monkeypatch, bits_share, string_type, segment_bytes):
    monkeypatch.setattr(wj, "BITS_SHARE", bits_share)
    monkeypatch.setattr(wj, "_BLOCK_ROWS", 5)  # blocks of chunks, and chunks cut by blocks
    monkeypatch.setattr(wi, "SEGMENT_BYTES", segment_bytes)
    texts = _texts(400, seed=3, lower=False) + LINES
    whole = pa.array(texts, string_type)
    chunks = [whole.slice(a, 7) for a in range(0, len(texts), 7)]  # slices: their offsets start inside a buffer
    index = wi.with_joins(wi.build_word_index(chunks, len(texts)), chunks)
    for joins in (["et"], ["he"], ["et", "eT", "Et"], ["ec", "ro"], ["bw"], ["zq"]):
        want = [any(_held(t, j) for j in joins) for t in texts]
        assert index.joins.rows_joining(joins).tolist() == want, joins
        assert index.joined_rows(frozenset(joins)).to_pylist() == [None if t is None else w for t, w in zip(texts, want)]


def test_joins_in_many_lines_are_kept_as_bits_and_rare_ones_as_rows():
    texts = ["the cat"] * 97 + ["a dog"] * 3  # 3 lines in 100: under BITS_SHARE
    segment = wj.segment_joins(0, [pa.array(texts)])
    kept = dict(zip(segment.codes.tolist(), zip(segment.bits.tolist(), segment.kept)))
    assert sorted(kept) == [wj.join_code("ad"), wj.join_code("ec")]
    bits, ec = kept[wj.join_code("ec")]
    assert bits and ec.nbytes == 13  # 100 rows: 13 bytes of bits, not 97 rows of 4 bytes
    rows, ad = kept[wj.join_code("ad")]
    assert not rows and ad.tolist() == [97, 98, 99]



@pytest.mark.parametrize("bits_share", [0.0, 2.0], ids=["as bits", "as rows"])
def test_a_block_of_more_rows_than_two_bytes_count_keeps_its_rows(monkeypatch, bits_share):
    monkeypatch.setattr(wj, "BITS_SHARE", bits_share)
    texts = ["c d" if i % 3 == 0 else "a b" for i in range(70_001)]  # one chunk: one block past 65,536 rows
    joins = wj.WordJoins(len(texts), (wj.segment_joins(0, [pa.array(texts)]),))
    assert np.flatnonzero(joins.rows_joining(["cd"])).tolist() == list(range(0, 70_001, 3))
    assert int(joins.rows_joining(["ab"]).sum()) == 70_001 - len(range(0, 70_001, 3))


def _segment_peak(lines: int) -> int:
    """The memory segment_joins takes at most for ``lines`` lines of 12 words (11 joins a line)."""
    rng = np.random.default_rng(5)
    words = np.array(["the", "cat", "sat", "on", "a", "mat", "of", "words", "and", "then", "some", "more", "x1", "y2"])
    whole = pa.array([" ".join(line) for line in rng.choice(words, size=(lines, 12)).tolist()])
    chunks = [whole.slice(a, 4096) for a in range(0, lines, 4096)]
    tracemalloc.start()
    try:
        segment = wj.segment_joins(0, chunks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert segment.rows == lines and segment.bits.any()
    return peak


def test_a_segments_joins_take_a_few_bytes_a_join():
    # at 10M lines, two segments of 64 MB of text at once each took ~0.28 GB (~30 bytes a join: a
    # grid and a sort over the whole segment), and the first start that built the joins peaked
    # ~0.5 GB over --memory-limit; a block's work is the same whatever the segment's size
    small, big = _segment_peak(40_000), _segment_peak(160_000)
    assert (big - small) / (11 * 120_000) < 8, (small, big)

# ---------------------------------------------------------------- searches through TableQuery

def _joined(monkeypatch, tmp_path) -> tuple[TableQuery, list[str]]:
    query, texts = _few_words(monkeypatch, tmp_path)
    assert query.warm_joins(["text"]) == ["text"]
    return query, texts


def test_a_regex_with_one_character_each_side_of_its_space_is_read_from_the_joins(monkeypatch, tmp_path):
    query, texts = _joined(monkeypatch, tmp_path)
    monkeypatch.setattr("sde.query.PIECE_ROWS_SHARE", 0.0)  # the words ending "e" or starting "o": too common to narrow
    masks: dict = {}
    answer = query._engine.marked_sql(masks, query.clauses('{text} matches "e.o"')[0])
    assert answer == IndexAnswer(("m0",), True)  # matched, nothing left to test
    assert masks["m0"].to_pylist() == [bool(re.search("e.o", t)) for t in texts]
    assert query.count('{text} matches "e.o"') == sum(bool(re.search("e.o", t)) for t in texts) > 0


def test_a_regex_with_longer_pieces_tests_only_the_lines_holding_its_join(monkeypatch, tmp_path):
    query, texts = _joined(monkeypatch, tmp_path)
    monkeypatch.setattr("sde.query.PIECE_ROWS_SHARE", 0.0)  # the words alone narrow nothing
    masks: dict = {}
    answer = query._engine.marked_sql(masks, query.clauses('{text} matches "th.s"')[0])
    assert not answer.exact and answer.sure is not None
    tested = masks[answer.rows[0]].to_numpy(zero_copy_only=False).tolist()
    assert tested == ["h s" in t for t in texts] and 0 < sum(tested) < 0.2 * len(texts)
    assert query.count('{text} matches "th.s"') == sum(bool(re.search("th.s", t)) for t in texts)


def test_joins_are_indexed_only_where_the_budget_has_room_beside_every_word_index(monkeypatch, tmp_path):
    query, texts, column = _room_for_the_words_alone(monkeypatch, tmp_path)
    assert query.warm_joins(["text"]) == [] and cc.word_index(column).joins is None
    assert cc._WORDS.size == cc.word_index(column).nbytes
    want = TableQuery(pd.DataFrame({"n": np.arange(len(texts)), "text": pd.Series(texts, dtype="string[pyarrow]")}))
    for filt in ['{text} matches "e.t"', '{text} matches "th.o"']:  # the lines are searched
        assert query.select(filt, "-n").tolist() == want.select(filt, "-n").tolist()
