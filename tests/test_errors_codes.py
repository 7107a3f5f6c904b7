"""sde.analysis.errors on big, chunked errors tables: the words are encoded on several threads,
each range with a dictionary of its own that is then merged; every answer must be the one a plain
Counter over the rows gives, whatever the threads and the chunks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sde import analysis as A
from sde import engine
from sde.analysis import errors as E

# Words in both columns, non-ASCII ones (code point order: "Zed" < "ab" < "b" < "ß" < "é" < "ő"),
# and a word that only ever appears as a hypothesis.
REFS = ["ab", "b", "é", "ß", "Zed", "ő", "b"]
HYPS = ["b", "ab", "x", "é", "Zed", "ß", "only-hyp"]


def random_rows(n: int, seed: int) -> list[tuple[int, str, str | None, str | None]]:
    rng = np.random.default_rng(seed)
    ops = rng.choice(["sub", "del", "ins"], n, p=[0.6, 0.2, 0.2])
    refs = rng.choice(REFS, n)
    hyps = rng.choice(HYPS, n)
    return [(int(rng.integers(0, 50)), op, None if op == "ins" else str(r), None if op == "del" else str(h))
            for op, r, h in zip(ops, refs, hyps)]


def chunked_table(rows: list[tuple[int, str, str | None, str | None]], chunks: int) -> pd.DataFrame:
    """The errors table as the cache maps it: large-string columns in several Arrow chunks."""
    cuts = np.linspace(0, len(rows), chunks + 1).astype(int)

    def column(i: int) -> pd.arrays.ArrowStringArray:
        values = [r[i] for r in rows]
        pieces = [pa.array(values[a:b], type=pa.large_string()) for a, b in zip(cuts[:-1], cuts[1:])]
        return pd.arrays.ArrowStringArray(pa.chunked_array(pieces, type=pa.large_string()))

    return pd.DataFrame({
        "utt": np.array([r[0] for r in rows], dtype=np.int64),
        "op": pd.Categorical([r[1] for r in rows], categories=["sub", "del", "ins"]),
        "ref": column(2),
        "hyp": column(3),
    })


@pytest.fixture
def threads(monkeypatch):
    """Encode on `n` threads even for a small table."""
    def use(n: int) -> None:
        monkeypatch.setattr(E, "_ROWS_PER_THREAD", 1)
        monkeypatch.setattr(engine, "_current", engine.EngineSettings(threads=n))
    return use


@pytest.mark.parametrize("n_threads, chunks, limit", [
    (1, 1, 3), (2, 1, 3), (3, 7, 3), (4, 2, None), (8, 13, 1),
])
def test_top_errors_is_the_same_on_any_number_of_threads_and_chunks(threads, n_threads, chunks, limit):
    threads(n_threads)
    rows = random_rows(2_000, seed=n_threads)
    got = A.top_errors(chunked_table(rows, chunks), limit=limit)
    subs = Counter((r, h) for _, op, r, h in rows if op == "sub")
    assert [((r, h), c) for r, h, c in got["substitutions"].values.tolist()] == \
        sorted(subs.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    for kind, op, at in (("deletions", "del", 2), ("insertions", "ins", 3)):
        words = Counter(row[at] for row in rows if row[1] == op)
        assert [tuple(x) for x in got[kind].values.tolist()] == \
            sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def test_ties_are_broken_in_code_point_order(threads):
    threads(3)
    rows = [(i, "del", w, None) for i, w in enumerate(["é", "ő", "Zed", "b", "ß", "ab"])]
    got = A.top_errors(chunked_table(rows, 3))["deletions"]
    assert got["word"].tolist() == ["Zed", "ab", "b", "ß", "é", "ő"]
    assert got["count"].tolist() == [1] * 6


@pytest.mark.parametrize("limit", [1, 2, 3, 40, 500], ids=["the most frequent", "down to the runner-up",
                                                          "into the words seen once", "deep in them", "past them all"])
def test_a_top_n_cut_within_the_words_seen_once_keeps_the_first_of_them_in_code_point_order(threads, limit):
    """Most errors of a big table are seen once: its top-N ends in a run of ties."""
    threads(2)
    once = [f"ő{i:03d}" if i % 3 else f"w{i:03d}" for i in range(300)]
    rows = [(0, "del", "common", None)] * 3 + [(1, "del", "rarer", None)] * 2 + \
        [(i, "del", word, None) for i, word in enumerate(once)] + [(i, "sub", word, "x") for i, word in enumerate(once)]
    got = A.top_errors(chunked_table(rows, 3), limit=limit)
    deletions = Counter(r for _, op, r, _ in rows if op == "del")
    assert [tuple(x) for x in got["deletions"].values.tolist()] == \
        sorted(deletions.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    assert got["substitutions"]["ref"].tolist() == sorted(once)[:limit]


@pytest.mark.parametrize("prepared", [False, True], ids=["asked first", "counted in the warm-up"])
def test_the_whole_tables_counts_kept_give_the_top_n_a_selection_of_every_utterance_gives(threads, prepared):
    threads(2)
    rows = random_rows(3_000, seed=11)
    table = chunked_table(rows, 4)
    if prepared:
        A.prepare_errors(table)
    every = np.arange(50)
    for limit in (2, 5, None):
        whole, selected = A.top_errors(table, limit=limit), A.top_errors(table, utt_ids=every, limit=limit)
        for kind in ("substitutions", "deletions", "insertions"):
            assert whole[kind].values.tolist() == selected[kind].values.tolist()


@pytest.mark.parametrize("n_threads, chunks", [(1, 1), (3, 5)])
def test_utterance_lookups_agree_with_the_rows(threads, n_threads, chunks):
    threads(n_threads)
    rows = random_rows(1_500, seed=7)
    table = chunked_table(rows, chunks)
    for op, ref, hyp in [("sub", "ab", "b"), ("sub", "ő", None), ("del", "ß", None), ("ins", None, "only-hyp"),
                         ("sub", "nowhere", None)]:
        expect = sorted({u for u, o, r, h in rows if o == op and ref in (None, r) and hyp in (None, h)})
        assert A.utterances_with_error(table, op, ref, hyp).tolist() == expect
    top = A.top_errors(table, limit=5)["substitutions"]
    per_pair = [len({u for u, o, r, h in rows if o == "sub" and (r, h) == (a, b)}) for a, b in
                top[["ref", "hyp"]].values.tolist()]
    assert A.affected_utterances(table, "substitutions", top).tolist() == per_pair


AFFECTED_ROWS = [  # (utt, op, ref, hyp): utterance 1 has "a → b" twice, counted once
    (0, "sub", "a", "b"), (1, "sub", "a", "b"), (1, "sub", "a", "b"), (2, "sub", "a", "c"),
    (0, "del", "x", None), (2, "del", "x", None), (3, "del", "y", None),
    (1, "ins", None, "z"), (3, "ins", None, "z"), (3, "ins", None, "z"),
]


@pytest.mark.parametrize("kind, rows, utt_ids, expected", [
    ("substitutions", {"ref": ["a", "a"], "hyp": ["b", "c"]}, None, [2, 1]),
    ("substitutions", {"ref": ["a", "a"], "hyp": ["b", "c"]}, [1, 2], [1, 1]),
    ("substitutions", {"ref": ["a", "nowhere", "a"], "hyp": ["b", "b", "b"]}, None, [2, 0, 0]),  # unknown; repeated
    ("substitutions", {"ref": ["b"], "hyp": ["a"]}, None, [0]),          # the pair the other way round
    ("deletions", {"word": ["x", "y", "z"]}, None, [2, 1, 0]),           # z is only ever inserted
    ("deletions", {"word": ["x"]}, np.array([False, False, True, True]), [1]),  # a mask over the utterances
    ("insertions", {"word": ["z", "x"]}, None, [2, 0]),
    ("insertions", {"word": ["z"]}, [], [0]),
    ("insertions", {"word": []}, None, []),
])
def test_affected_utterances_counts_distinct_utterances(threads, kind, rows, utt_ids, expected):
    threads(2)
    got = A.affected_utterances(chunked_table(AFFECTED_ROWS, 2), kind, pd.DataFrame(rows, dtype=object), utt_ids)
    assert got.tolist() == expected


def test_a_table_of_only_nulls_and_an_empty_one(threads):
    threads(2)
    only_nulls = chunked_table([(0, "sub", None, None), (1, "sub", None, None)], 2)
    assert [len(v) for v in A.top_errors(only_nulls).values()] == [0, 0, 0]
    assert [len(v) for v in A.top_errors(chunked_table([], 1)).values()] == [0, 0, 0]
