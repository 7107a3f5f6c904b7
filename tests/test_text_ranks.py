"""sde.text_ranks: dense ranks of a text column in byte order, the order DuckDB sorts text in, from
ranges of the values' first 8 bytes ranked on several threads, the column read in passes."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from sde import text_ranks
from sde.text_ranks import prefix_keys, text_dense_ranks


def _duckdbs(values: list[str | None]) -> list[int | None]:
    """DuckDB's dense ranks of the values (ORDER BY a VARCHAR), null where missing."""
    con = duckdb.connect()
    con.register("t", pa.table({"v": pa.array(values, pa.large_string()),
                                "pos": pa.array(np.arange(len(values), dtype=np.int64))}))
    got = con.execute("SELECT pos, dense_rank() OVER (ORDER BY v) AS r FROM t WHERE v IS NOT NULL").fetchnumpy()
    ranks: list[int | None] = [None] * len(values)
    for pos, rank in zip(got["pos"].tolist(), got["r"].tolist()):
        ranks[pos] = rank
    return ranks


def _chunks(values: list[str | None], size: int, large: bool = True) -> list[pa.Array]:
    whole = pa.array(values, pa.large_string() if large else pa.string())
    return [whole.slice(a, size) for a in range(0, len(values), size)]  # slices: offsets into one buffer


EIGHT = "abcdefgh"
VALUES = {
    "ties, missing and empty": ["b", "a", "b", None, "", "a", "b", "c", "a"],
    "one value": ["x"] * 7,
    "missing only": [None, None],
    "none": [],
    "byte order": ["é", "e", "z", "É", "e", "ab", "a", "a b", "a\x00", "日本", "🙂", "Z", "\x00", "\x01", ""],
    "prefixes at the eighth byte": [EIGHT + "i", EIGHT, EIGHT + "\x00", EIGHT[:7], EIGHT[:7] + "\x00", EIGHT + "h" * 30,
                                    EIGHT + "a", EIGHT[:7] + "i", None, EIGHT],
    "one 8-byte start shared by every value": [f"{EIGHT} {i % 13} {'x' * (i % 5)}" for i in range(200)],
}


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("pass_bytes", [1 << 20, 16, 1], ids=["one pass", "passes of 16 bytes", "a range a pass"])
@pytest.mark.parametrize("chunk", [1, 4, 1000], ids=["a value a chunk", "chunks of four", "one chunk"])
@pytest.mark.parametrize("name", list(VALUES))
def test_ranks_are_duckdbs_dense_ranks(name, chunk, pass_bytes, workers):
    values = VALUES[name]
    chunks = _chunks(values, chunk, large=chunk != 4)
    ranks = text_dense_ranks(lambda: iter(chunks), len(values), pass_bytes, workers)
    assert ranks.type == pa.uint32()
    assert ranks.to_pylist() == _duckdbs(values)


@pytest.mark.parametrize("seed", range(6))
def test_ranks_of_random_text_in_many_ranges_are_duckdbs(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(text_ranks, "SAMPLE_ROWS", int(rng.integers(1, 64)))  # bounds from a few values
    words = ["the", "then", "thematic", "a", "é", "日本", "", "\x00", "abcdefgh", "abcdefghi"]
    values = [None if rng.random() < 0.05 else " ".join(rng.choice(words, int(rng.integers(0, 5))))
              for _ in range(int(rng.integers(300, 1500)))]
    chunks = _chunks(values, int(rng.integers(1, 300)))
    ranks = text_dense_ranks(lambda: iter(chunks), len(values), int(rng.integers(50, 5000)), 2)
    assert ranks.to_pylist() == _duckdbs(values)


def _passes_held(monkeypatch) -> list[int]:
    """The bytes of text each pass of the next ranking holds."""
    held, original = [], text_ranks._in_ranges

    def in_ranges(*args):
        got = original(*args)
        held.append(sum(piece.nbytes for pieces in got[0] for piece in pieces))
        return got

    monkeypatch.setattr(text_ranks, "_in_ranges", in_ranges)
    return held


@pytest.mark.parametrize("values, key_reads", [
    ([f"{i:03d}{chr(97 + i % 26)} and some text after it" for i in range(400)], 1),
    ([f"/data/corpus/audio/spk{i % 37:03d}/utt_{i:05d}.wav" for i in range(400)], 2),  # keyed after "/data/corpus/audio/spk0"
], ids=["values of many starts", "paths of one long start"])
def test_each_pass_reads_the_column_again_and_holds_only_its_values(monkeypatch, values, key_reads):
    chunks = _chunks(values, 64)
    reads, held = [], _passes_held(monkeypatch)

    def read():
        reads.append(1)
        return iter(chunks)

    ranks = text_dense_ranks(read, len(values), pass_bytes=2_000, workers=2)
    assert ranks.to_pylist() == _duckdbs(values)
    assert len(reads) == key_reads + len(held) and len(held) >= 6  # the keys, then each pass
    assert max(held) <= 2_000 + 8 * 64  # a pass's text (its values and their offsets)


def test_a_range_of_one_key_is_ranked_as_a_column_keyed_deeper(monkeypatch):
    monkeypatch.setattr(text_ranks, "MAX_RANGE_BYTES", 100)
    values = [f"x/{'a' * 12}{i % 90:02d}" if i % 2 else f"x/b{i}" for i in range(600)]  # half share "x/aaaaaaaa"
    calls, original = [], text_ranks.text_dense_ranks
    monkeypatch.setattr(text_ranks, "text_dense_ranks", lambda *a, **k: calls.append(a[1]) or original(*a, **k))
    chunks = _chunks(values, 50)
    assert original(lambda: iter(chunks), len(values), 1_000, 2).to_pylist() == _duckdbs(values)
    assert calls and max(calls) <= 300  # that range's values alone, keyed after "x/aaaaaaaaaaaa"


@pytest.mark.parametrize("given, rows", [(5, 6), (7, 6)], ids=["fewer values than rows", "more"])
def test_a_column_of_another_length_is_refused(given, rows):
    chunks = _chunks(["a"] * given, 2)
    with pytest.raises(ValueError, match="values than its 6 rows"):
        text_dense_ranks(lambda: iter(chunks), rows)


@pytest.mark.parametrize("large", [True, False], ids=["large_string", "string"])
def test_prefix_keys_order_values_as_their_bytes_do(large):
    values = sorted(VALUES["byte order"] + VALUES["prefixes at the eighth byte"][:-2], key=lambda v: v.encode())
    keys, lengths = prefix_keys(pa.array(values, pa.large_string() if large else pa.string()).slice(0))
    assert np.all(keys[1:] >= keys[:-1])  # never out of order: ties are left to the strings
    assert lengths.tolist() == [len(v.encode()) for v in values]
    sliced = pa.array([None, "ab", None, "b"], pa.large_string() if large else pa.string()).slice(1)
    keys, lengths = prefix_keys(sliced)
    assert keys.tolist() == [int.from_bytes(b"ab".ljust(8, b"\0"), "big"), 0, int.from_bytes(b"b".ljust(8, b"\0"), "big")]
    assert lengths.tolist() == [2, 0, 1]
