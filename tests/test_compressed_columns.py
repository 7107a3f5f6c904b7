"""sde.compressed_columns: string columns stored compressed (read by batch) or as labels (codes and
their distinct values), and the pandas array over either behaving as pandas' own Arrow strings."""

from __future__ import annotations

from collections import Counter

import multiprocessing
import pickle
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sde import compressed_columns as cc
from sde import analysis as A
from sde import engine as sde_engine
from sde.engine import EngineSettings
from sde.compressed_columns import (BATCH_ROWS, CompressedColumn, CompressedStringArray, LabelColumn, is_compressed,
                                    label_column, open_column, read_strings, write_compressed)
from sde.query import TableQuery

ROWS = 3 * BATCH_ROWS + 123  # four batches, the last one short


def _values(n: int = ROWS) -> list[str | None]:
    words = ["the", "cat", "straße", "日本語", "", "a'b", "Z"]
    return [None if i % 101 == 7 else " ".join(words[(i + k) % len(words)] for k in range(i % 5)) for i in range(n)]


@pytest.fixture(scope="module")
def values() -> list[str | None]:
    return _values()


@pytest.fixture(scope="module", params=[CompressedColumn, LabelColumn], ids=["compressed", "labels"])
def column(request, tmp_path_factory, values) -> CompressedColumn | LabelColumn:
    """The values (35 distinct ones) stored either way: as labels, or compressed when labels are off."""
    path = tmp_path_factory.mktemp("cc") / "text.arrow"
    # written from pieces of several types and sizes, as parts of a build arrive
    pieces = [pa.array(values[:1000], pa.string()),
              pa.chunked_array([pa.array(values[1000:5000]), pa.array(values[5000:9000])]),
              pa.array(values[9000:], pa.large_string())]
    assert write_compressed(path, "text", pieces, labels=request.param is LabelColumn) == len(values)
    opened = open_column(path)
    assert type(opened) is request.param
    return opened


def _plain(values) -> pd.Series:
    return pd.Series(values, dtype="string[pyarrow]")


def _series(column: CompressedColumn | LabelColumn) -> pd.Series:
    return pd.Series(CompressedStringArray.over(column), copy=False)


# ---------------------------------------------------------------- the file

def test_the_file_is_marked_and_counted_when_written(column, values):
    assert is_compressed(pa.ipc.open_file(column.path).schema)
    assert len(column) == len(values) and column.batches == 4
    assert column.null_count == sum(v is None for v in values)
    assert column.no_ascii_upper is False  # "Z"
    plain = pa.array(values, pa.large_string()).nbytes
    assert abs(column.nbytes - plain) <= 8


@pytest.mark.parametrize("case, indices", [
    ("one row", [5]),
    ("first and last rows", [0, ROWS - 1]),
    ("across batch boundaries", [BATCH_ROWS - 1, BATCH_ROWS, 2 * BATCH_ROWS + 1, 1]),
    ("repeats, out of order", [9000, 3, 9000, 3, 4100]),
    ("a null", [7]),
    ("nothing", []),
])
def test_take_gives_the_values_at_those_rows(column, values, case, indices):
    assert column.take(np.array(indices, dtype=np.int64)).to_pylist() == [values[i] for i in indices]


def test_a_column_kept_whole_gives_the_same_values_from_its_chunks(tmp_path, values):
    path = tmp_path / "c.arrow"
    write_compressed(path, "text", [pa.array(values)], labels=False)
    whole = CompressedColumn(path)
    whole.read_all()
    assert whole.kept_whole() is not None
    indices = [9000, 3, 9000, BATCH_ROWS - 1, BATCH_ROWS, 7, ROWS - 1, 2 * BATCH_ROWS + 1]
    assert whole.take(np.array(indices)).to_pylist() == [values[i] for i in indices]


@pytest.mark.parametrize("workers, at_once", [(1, 16), (2, 1), (3, 1), (2, 16)],
                         ids=["one thread", "two threads, a batch a run", "three threads", "two threads, one run"])
def test_a_stream_gives_every_batch_in_order_and_keeps_none(tmp_path, values, monkeypatch, workers, at_once):
    monkeypatch.setattr(cc, "STREAM_BATCHES", at_once)
    path = tmp_path / "c.arrow"
    write_compressed(path, "text", [pa.array(values)], labels=False)
    column = CompressedColumn(path)
    chunks = list(column.stream(workers))
    assert [len(c) for c in chunks] == [len(c) for c in column.chunks()]
    assert pa.chunked_array(chunks).to_pylist() == values
    assert column.kept_whole() is None and not column._cache._items
    column.read_all()
    assert pa.chunked_array(list(column.stream(workers))).to_pylist() == values  # from the column kept whole


def test_a_take_reads_only_the_batches_of_its_rows(tmp_path, values):
    path = tmp_path / "c.arrow"
    write_compressed(path, "text", [pa.array(values)], labels=False)
    fresh = CompressedColumn(path)
    fresh.take(np.array([1, 2 * BATCH_ROWS + 5]))
    assert sorted(fresh._cache._items) == [0, 2]


@pytest.mark.parametrize("at_once", [1, 2, 3])
def test_a_take_of_more_batches_than_it_decompresses_at_once_keeps_the_order_asked(tmp_path, values, monkeypatch,
                                                                                    at_once):
    path = tmp_path / "c.arrow"
    write_compressed(path, "text", [pa.array(values)], labels=False)
    monkeypatch.setattr(cc, "CACHED_BATCHES", at_once)
    indices = [3 * BATCH_ROWS + 5, 7, 2 * BATCH_ROWS, 7, BATCH_ROWS + 1, 0, ROWS - 1, 2 * BATCH_ROWS + 9]
    assert CompressedColumn(path).take(np.array(indices)).to_pylist() == [values[i] for i in indices]


def test_the_most_common_value_is_counted_from_labels_or_values(column, values):
    counts = Counter(v for v in values if v is not None)
    top = max(counts.values())
    assert cc.most_common(_series(column)) in {v for v, n in counts.items() if n == top}
    assert cc.most_common(_plain(values)) in {v for v, n in counts.items() if n == top}
    assert cc.most_common(_plain([None, None])) is None


@pytest.mark.parametrize("case, written, nulls, lower, single_line", [
    ("no rows", [], 0, True, True),
    ("only nulls", [None, None], 2, True, True),
    ("lower case", ["abc", "é"], 0, True, True),
    ("upper case", ["abc", "Abc"], 0, False, True),
    ("long s folds to s", ["ſ"], 0, False, True),
    ("a line break", ["a b", "a\nb"], 0, True, False),
    ("a carriage return is no line break to RE2", ["a\rb"], 0, True, True),
])
def test_edge_columns_keep_their_counts(tmp_path, case, written, nulls, lower, single_line):
    path = tmp_path / "c.arrow"
    write_compressed(path, "x", [pa.array(written, pa.string())])
    got = CompressedColumn(path)
    assert (len(got), got.null_count, got.no_ascii_upper, got.no_line_break) == (len(written), nulls, lower,
                                                                                single_line)
    assert got.read_all().to_pylist() == written


def test_a_file_that_is_not_a_compressed_column_is_refused(tmp_path):
    path = tmp_path / "plain.arrow"
    table = pa.table({"x": ["a"]})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert not is_compressed(table.schema)
    with pytest.raises(ValueError, match="not a compressed column"):
        CompressedColumn(path)


def test_it_compresses_text(tmp_path):
    text = _values(20 * BATCH_ROWS)
    write_compressed(tmp_path / "c.arrow", "t", [pa.array(text)], labels=False)
    assert (tmp_path / "c.arrow").stat().st_size < pa.array(text, pa.large_string()).nbytes / 3


def _distinct(n_values: int, rows: int) -> list[str | None]:
    return [None if i % 97 == 3 else f"spk_{i % n_values}" for i in range(rows)]


@pytest.mark.parametrize("case, written, labels, stored_as", [
    ("speakers: few values, many rows", _distinct(300, 20_000), True, LabelColumn),
    ("one value", ["en"] * 50, True, LabelColumn),
    ("unique lines", [f"line {i}" for i in range(20_000)], True, CompressedColumn),
    ("few rows per value", _distinct(300, 1_000), True, CompressedColumn),
    ("labels turned off", _distinct(300, 20_000), False, CompressedColumn),
    ("only nulls", [None] * 100, True, CompressedColumn),
])
def test_a_column_of_few_distinct_values_is_stored_as_labels(tmp_path, case, written, labels, stored_as):
    path = tmp_path / "c.arrow"
    write_compressed(path, "speaker", [pa.array(written[:777]), pa.array(written[777:])], labels=labels)
    got = open_column(path)
    assert type(got) is stored_as
    assert got.read_all().to_pylist() == written and got.null_count == written.count(None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.arrow"]  # nothing left beside it


def test_too_many_distinct_values_stay_compressed(monkeypatch, tmp_path):
    monkeypatch.setattr(cc, "LABEL_MAX_VALUES", 100)
    write_compressed(tmp_path / "c.arrow", "speaker", [pa.array(_distinct(101, 20_000))])
    assert type(open_column(tmp_path / "c.arrow")) is CompressedColumn


@pytest.mark.parametrize("n_values, index_type", [(100, pa.int8()), (300, pa.int16()), (40_000, pa.int32())])
def test_labels_take_the_smallest_code_that_fits(tmp_path, n_values, index_type):
    written = _distinct(n_values, 8 * n_values + 1)
    write_compressed(tmp_path / "c.arrow", "speaker", [pa.array(written)])
    got = open_column(tmp_path / "c.arrow")
    assert isinstance(got, LabelColumn) and got.indices.type == index_type
    assert got.dictionary.to_pylist() == sorted(set(written) - {None})
    codes = got.codes()
    assert [None if c < 0 else got.dictionary[int(c)].as_py() for c in codes[:500]] == written[:500]
    assert (tmp_path / "c.arrow").stat().st_size < len(written) * (index_type.bit_width // 8 + 1) + 20 * n_values


def test_labels_group_a_breakdown_as_plain_strings_do(tmp_path):
    rng = np.random.default_rng(3)
    n = 12_000
    speaker = _distinct(400, n)
    words = rng.integers(1, 20, n)
    plain = pd.DataFrame({"speaker": pd.array(speaker, dtype="string[pyarrow]"), "num_words": words,
                          "num_chars": words * 5, "sub": rng.binomial(words, 0.2), "del": rng.binomial(words, 0.1),
                          "ins": rng.binomial(2, 0.1, n), "char_edits": rng.binomial(words * 5, 0.1)})
    write_compressed(tmp_path / "s.arrow", "speaker", [pa.array(speaker)])
    stored = plain.copy()
    stored["speaker"] = pd.Series(CompressedStringArray.over(open_column(tmp_path / "s.arrow")), copy=False)
    assert label_column(stored["speaker"]) is not None
    for rows in (None, np.flatnonzero(words > 5)):
        want = A.breakdown(plain, "speaker", {}, rows, sort="-wer")
        got = A.breakdown(stored, "speaker", {}, rows, sort="-wer")
        pd.testing.assert_frame_equal(got, want)
    assert A.group_counts(stored)["speaker"] == A.group_counts(plain)["speaker"] == 400


# ---------------------------------------------------------------- the pandas array

def test_rows_of_a_frame_read_without_reading_the_column(column, values):
    s = _series(column)
    df = pd.DataFrame({"n": np.arange(len(values))})
    df.insert(1, "text", s)
    rows = np.random.default_rng(0).integers(0, len(values), 300)
    page = df.iloc[rows]
    assert page["text"].tolist() == _plain(values).iloc[rows].tolist()
    assert s.iat[7] is pd.NA and s.iat[-1] == values[-1] and s.iloc[10:20].tolist() == values[10:20]
    assert s[s.index[:3]].tolist() == values[:3]
    assert s.array.compressed is column  # still by batch


def test_whole_column_operations_equal_plain_strings(column, values):
    s, plain = _series(column), _plain(values)
    assert s.equals(plain)
    assert s.str.contains("cat").sum() == plain.str.contains("cat").sum()
    assert s.value_counts().to_dict() == plain.value_counts().to_dict()
    assert s.isna().sum() == plain.isna().sum() and s.dtype == plain.dtype
    assert s.array.compressed is column  # read for the operation, the array still reads by batch


def test_copies_views_and_pickles_stay_compressed(column, values):
    s = _series(column)
    for other in (s.copy(), s.copy(deep=False), s.array.view(), pickle.loads(pickle.dumps(s.array))):
        array = other.array if isinstance(other, pd.Series) else other
        assert isinstance(array, CompressedStringArray) and array.compressed is not None
        assert array[5] == values[5]


def test_take_with_fill_marks_missing(column, values):
    got = CompressedStringArray.over(column).take(np.array([0, -1, 9]), allow_fill=True)
    assert got.tolist() == [values[0], pd.NA, values[9]]
    with pytest.raises(IndexError):
        CompressedStringArray.over(column).take(np.array([ROWS]))


@pytest.mark.parametrize("reshape", [
    lambda f: pd.concat([f, pd.DataFrame({"x": np.zeros(len(f))})], axis=1),
    lambda f: f.drop(columns=["n"]),
    lambda f: f.assign(y=1),
], ids=["concat beside other columns", "drop another column", "assign a column"])
def test_a_frame_reshaped_around_it_keeps_it_stored(column, values, reshape):
    # a server's reviews add columns beside 10M stored transcripts: reading them whole took ~25 s
    frame = pd.DataFrame({"n": np.arange(len(values))})
    frame["text"] = _series(column).array
    got = reshape(frame)["text"]
    assert cc.stored_column(got) is column and [None if pd.isna(v) else v for v in got.tolist()] == values


def test_a_whole_slice_stays_stored_and_a_part_is_read(column, values):
    array = CompressedStringArray.over(column)
    assert array[:].compressed is column and array[0:len(values):1].compressed is column
    def plain(part):
        return [None if pd.isna(v) else v for v in part.tolist()]

    assert plain(array[1:4]) == values[1:4] and plain(array[::-2]) == values[::-2]


def test_distinct_count_of_a_stored_column_is_that_of_its_values(column, values):
    assert cc.distinct_count(_series(column)) == pd.Series(values, dtype=object).nunique(dropna=True) > 1
    assert cc.distinct_count(_plain(values)) == pd.Series(values, dtype=object).nunique(dropna=True)


def test_distinct_count_reads_batch_by_batch_never_the_whole_column(column, values, monkeypatch):
    # 10M audio paths read whole held ~0.8 GB beside DuckDB's own distinct count
    def refuse(*args, **kwargs):
        raise AssertionError("the column was read whole")

    monkeypatch.setattr(type(column), "read_all", refuse)
    assert cc.distinct_count(_series(column)) == pd.Series(values, dtype=object).nunique(dropna=True)


@pytest.mark.parametrize("stored", [True, False], ids=["stored: its null count", "plain: its values"])
def test_present_count_is_the_values_not_missing(column, values, monkeypatch, stored):
    monkeypatch.setattr(type(column), "read_all", lambda *a, **k: pytest.fail("the column was read whole"))
    series = _series(column) if stored else _plain(values)
    assert cc.present_count(series) == sum(v is not None for v in values) < len(values)


def test_a_value_set_into_it_makes_it_plain(column, values):
    array = CompressedStringArray.over(column).copy()
    array[0] = "changed"
    assert array.compressed is None and array[0] == "changed" and array[1] == values[1]
    assert CompressedStringArray.over(column)[0] == values[0]  # the file is untouched


def _budget(monkeypatch, budget: int) -> None:
    """A fresh shared cache of whole columns, of ``budget`` bytes (word indexes and ranks kept in
    memory, counted against it: not written beside their column)."""
    monkeypatch.setattr(cc, "KEEP_IN_FILES", False)
    monkeypatch.setattr(cc, "whole_budget", lambda: budget)
    monkeypatch.setattr(cc, "_WHOLE", cc.whole_cache(budget))
    monkeypatch.setattr(cc, "_WORDS", cc.whole_cache(budget))
    monkeypatch.setattr(cc, "READ_LATER_DELAY_S", 0.0)


@pytest.mark.parametrize("memory_limit, machine, budget", [
    ("8GB", 64 * 2**30, 4 * 10**9),
    ("512MiB", 64 * 2**30, 256 * 2**20),
    (None, 24 * 2**30, 6 * 2**30),
    (None, 2 * 2**30, cc.WHOLE_BYTES),
])
def test_the_whole_column_budget_is_half_the_memory_limit_else_a_quarter_of_the_machine(
        monkeypatch, memory_limit, machine, budget):
    monkeypatch.setattr(cc, "settings", lambda: EngineSettings(memory_limit=memory_limit))
    monkeypatch.setattr(cc, "machine_memory", lambda: machine)
    assert cc.whole_budget() == budget


def test_one_column_may_fill_the_whole_budget(tmp_path, values):
    write_compressed(tmp_path / "c.arrow", "t", [pa.array(values)], labels=False)
    whole = CompressedColumn(tmp_path / "c.arrow").read_all()
    cache = cc.whole_cache(whole.nbytes)
    cache.put("a", whole)
    assert cache.get("a") is whole
    cache.put("b", whole)
    assert cache.get("a") is None and cache.get("b") is whole  # the last one read stays


def test_a_column_read_whole_pushes_out_the_one_before_it_before_it_is_read(monkeypatch, tmp_path, values):
    """A budget holding one column: the second read whole drops the first before decompressing,
    never holding both (two 10M-row transcript columns: ~1.5 GB in a 1 GB budget)."""
    for name in ("a", "b"):
        write_compressed(tmp_path / f"{name}.arrow", "t", [pa.array(values)], labels=False)
    first, second = CompressedColumn(tmp_path / "a.arrow"), CompressedColumn(tmp_path / "b.arrow")
    _budget(monkeypatch, first.nbytes + first.nbytes // 2)
    first.read_all()
    kept_while_reading = []
    decoded = CompressedColumn._decoded
    monkeypatch.setattr(CompressedColumn, "_decoded",
                        lambda self, workers=None: kept_while_reading.append(cc._WHOLE.size) or decoded(self, workers))
    whole = second.read_all()
    assert kept_while_reading == [0] and cc._WHOLE.get(second.path) is whole and cc._WHOLE.size == second.nbytes


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_a_whole_read_on_several_threads_keeps_the_batches_in_order(monkeypatch, tmp_path, threads):
    texts = _values(5 * BATCH_ROWS + 7)
    write_compressed(tmp_path / "c.arrow", "t", [pa.array(texts)], labels=False)
    monkeypatch.setattr(cc, "settings", lambda: EngineSettings(threads=threads))
    got = CompressedColumn(tmp_path / "c.arrow")._decoded()
    assert got.num_chunks == 6 and got.to_pylist() == texts


@pytest.mark.parametrize("budget, kept", [(cc.WHOLE_BYTES, True), (1024, False)])
def test_a_whole_read_is_kept_only_while_small(monkeypatch, tmp_path, values, budget, kept):
    _budget(monkeypatch, budget)
    path = tmp_path / "c.arrow"
    write_compressed(path, "t", [pa.array(values)], labels=False)
    fresh = CompressedColumn(path)
    first = fresh.read_all()
    assert fresh.read_all() is first  # held by the caller: one read shared
    assert (cc._WHOLE.get(fresh.path) is first) is kept


@pytest.mark.parametrize("stopping, reported", [(True, False), (False, True)],
                         ids=["sde stopping: quiet", "no stop: the error shows"])
def test_a_background_read_refused_by_the_exit_ends_quietly(monkeypatch, tmp_path, values, stopping, reported):
    import concurrent.futures.thread
    import threading

    import sde.filters.engine

    _budget(monkeypatch, cc.WHOLE_BYTES)
    path = tmp_path / "c.arrow"
    write_compressed(path, "t", [pa.array(values)], labels=False)
    column = CompressedColumn(path)
    monkeypatch.setattr(cc, "settings", lambda: EngineSettings(threads=2))  # the read runs on a thread pool
    monkeypatch.setattr(concurrent.futures.thread, "_shutdown", True)  # as Python's exit leaves it
    monkeypatch.setattr(sde.filters.engine, "_stopping", stopping)  # as the server's stop_queries leaves it
    raised: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    column.read_later()
    deadline = time.monotonic() + 10
    while column._reading and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not column._reading and column.kept_whole() is None
    assert [type(e) for e in raised] == ([RuntimeError] if reported else [])


def test_read_strings_gives_arrow_for_any_string_column(column, values):
    for s in (_series(column), _plain(values), pd.Series(values, dtype=object)):
        got = read_strings(s)
        assert got.type == pa.large_string() and got.to_pylist() == values


# ---------------------------------------------------------------- queries

QUERY_CASES = [
    ('{text} contains "cat"', None),
    ('{text} contains "CAT"', None),
    ('{text} matches "^the (cat|straße)"', None),
    ('{text} = "Z"', "-n"),
    ('{text} is null', None),
    ('{n} > 100 && {text} contains "日本"', "-n"),
    ('{n} < 50 || {text} =~ "z"', None),
    ('{text} = {other}', None),
    (None, "text"),
    (None, "-text,n"),
    ('{n} * 2 > 30000', "-text"),
]


def _kept_soon(column, seconds: float = 10.0):
    """The column's whole read once the background read (read_later) is done (None if never)."""
    deadline = time.monotonic() + seconds
    while column.kept_whole() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return column.kept_whole()


@pytest.mark.parametrize("stored", ["sorted", "permuted"], ids=["values stored sorted", "values in another order"])
@pytest.mark.parametrize("sort", ["speaker", "-speaker", "speaker,-n", "-speaker,n"])
def test_a_sort_by_labels_orders_their_codes_as_the_strings_would_be(tmp_path, stored, sort):
    names = ["spk_b", "Spk_a", "spk_a", "Ärger", "ärger", "zz", "日本", "", "spk_a ", "spk_10", "spk_9"]
    values = [None if i % 17 == 3 else names[(i * 7) % len(names)] for i in range(3 * BATCH_ROWS)]
    path = tmp_path / "speaker.arrow"
    write_compressed(path, "speaker", [pa.array(values, pa.large_string())])
    labels = open_column(path)
    assert isinstance(labels, LabelColumn)
    if stored == "permuted":  # as if written by another tool: the codes' order is not the strings'
        order = np.random.default_rng(0).permutation(len(labels.dictionary))
        where = np.empty_like(order)
        where[order] = np.arange(len(order))
        labels.dictionary = labels.dictionary.take(pa.array(order))
        labels.indices = pa.array(where).take(labels.indices).cast(labels.indices.type)
    assert labels.take(np.arange(len(values))).to_pylist() == values
    n = np.arange(len(values))
    frame = pd.DataFrame({"n": n})
    frame.insert(1, "speaker", pd.Series(CompressedStringArray.over(labels), copy=False))
    plain = pd.DataFrame({"n": n, "speaker": _plain(values)})
    query, want = TableQuery(frame), TableQuery(plain)
    for filt in (None, "{n} > 5000", '{speaker} contains "a"'):
        (total, page), (want_total, want_page) = query.window(filt, sort, 0, 40), want.window(filt, sort, 0, 40)
        assert total == want_total and page.tolist() == want_page.tolist()
        assert query.select(filt, sort).tolist() == want.select(filt, sort).tolist()
        deep = TableQuery(frame)  # a page past the long top-N: a band of the codes (query._band)
        assert deep.window(filt, sort, 10_100, 10_140)[1].tolist() == want.select(filt, sort).tolist()[10_100:10_140]
        if filt is None:
            assert not query._engine._scans and not deep._engine._scans  # a sort reads the codes, never the strings


@pytest.mark.parametrize("sort", ["text", "-text,n"])
@pytest.mark.parametrize("filt", [None, "{n} > 100"])
def test_pages_past_the_long_top_n_equal_those_over_plain_ones(column, values, filt, sort):
    n = np.arange(len(values))
    stored = pd.DataFrame({"n": n})
    stored.insert(1, "text", _series(open_column(column.path)))
    want = TableQuery(pd.DataFrame({"n": n, "text": _plain(values)})).select(filt, sort).tolist()
    for start in (10_050, len(want) - 500, len(want) - 20):
        assert TableQuery(stored).window(filt, sort, start, start + 50)[1].tolist() == want[start:start + 50]


@pytest.mark.parametrize("keeps", [True, False], ids=["kept for the next query", "too big to keep"])
@pytest.mark.parametrize("filt, sort", QUERY_CASES)
def test_queries_over_compressed_columns_equal_those_over_plain_ones(monkeypatch, column, values, filt, sort, keeps):
    column = open_column(column.path)  # no whole read left by an earlier test
    _budget(monkeypatch, 2 * column.nbytes if keeps else 1_000)  # 2×: too big for the warm-up's preload
    n = np.arange(len(values))
    other = [v if i % 3 else "x" for i, v in enumerate(values)]
    plain = pd.DataFrame({"n": n, "text": _plain(values), "other": _plain(other)})
    stored = pd.DataFrame({"n": n})
    stored.insert(1, "text", _series(column))
    stored.insert(2, "other", pd.Series(other, dtype="string[pyarrow]"))
    want = TableQuery(plain).select(filt, sort).tolist()
    named = "text" in f"{filt} {sort}"
    keeps = keeps and isinstance(column, CompressedColumn) and named  # labels: their codes are scanned
    # labels sort by their codes, in memory (LabelColumn.sort_keys): only a filter streams them
    streams = "text" in str(filt) or (named and isinstance(column, CompressedColumn))
    for attempt in ("first", "next"):
        got = TableQuery(stored)
        got.warm()  # as the server does: from then on, a streamed column is kept for the next query
        assert got.select(filt, sort).tolist() == want
        total, page = got.page(filt, sort, page=1, page_size=20)
        assert total == len(want) and page["text"].tolist() == plain["text"].iloc[want[20:40]].tolist()
        assert stored["text"].array.compressed is column  # the frame still reads the file by batch
        # the first query streams the file beside the table; the next one scans the column kept whole
        assert bool(got._engine._scans) is (streams and not (keeps and attempt == "next"))
        assert (_kept_soon(column, 10 if keeps else 0) is not None) is keeps


@pytest.mark.parametrize("case, spare, kept", [
    ("the budget is the column's size", 0, True),
    ("a byte short", -1, False),
])
def test_a_column_is_read_in_the_background_once_and_kept_when_the_budget_holds_it(
        monkeypatch, tmp_path, values, case, spare, kept):
    write_compressed(tmp_path / "t.arrow", "text", [pa.array(values)], labels=False)
    column = CompressedColumn(tmp_path / "t.arrow")
    _budget(monkeypatch, column.nbytes + spare)
    reads = []
    monkeypatch.setattr(column, "_decoded", lambda workers=None, original=column._decoded: reads.append(1) or original(workers))
    frame = pd.DataFrame({"n": np.arange(len(values))})
    frame.insert(1, "text", _series(column))
    for pattern in ("cat", "the", "Z"):
        query = TableQuery(frame)
        query.warm()
        query.count(f'{{text}} contains "{pattern}"')
        _kept_soon(column, 10 if kept else 0)
    assert len(reads) == int(kept) and (column.kept_whole() is not None) is kept


def test_a_batch_command_streams_every_search(monkeypatch, tmp_path, values):
    write_compressed(tmp_path / "t.arrow", "text", [pa.array(values)], labels=False)
    column = CompressedColumn(tmp_path / "t.arrow")
    _budget(monkeypatch, 10**9)
    frame = pd.DataFrame({"n": np.arange(len(values))})
    frame.insert(1, "text", _series(column))
    query = TableQuery(frame)  # not warmed: e.g. sde export --filter
    for pattern in ("cat", "the"):
        assert query.count(f'{{text}} contains "{pattern}"') == _plain(values).str.contains(pattern, case=False, regex=False).sum()
    time.sleep(0.1)
    assert column.kept_whole() is None and not column._reading


def test_the_read_for_the_next_search_starts_after_the_answer(monkeypatch, tmp_path, values):
    write_compressed(tmp_path / "t.arrow", "text", [pa.array(values)], labels=False)
    column = CompressedColumn(tmp_path / "t.arrow")
    _budget(monkeypatch, 2 * column.nbytes)
    monkeypatch.setattr(cc, "READ_LATER_DELAY_S", 0.5)
    frame = pd.DataFrame({"n": np.arange(len(values))})
    frame.insert(1, "text", _series(column))
    query = TableQuery(frame)
    query.warm()
    started = time.monotonic()
    query.count('{text} contains "cat"')
    assert column.kept_whole() is None or time.monotonic() - started >= 0.5
    assert _kept_soon(column) is not None and time.monotonic() - started >= 0.5


def test_top_errors_over_labels_equal_those_over_plain_words(tmp_path):
    rng = np.random.default_rng(5)
    n = 20_000
    words = np.array([f"w{i}" for i in range(300)], dtype=object)
    op = rng.choice(["sub", "del", "ins"], n)
    ref = np.where(op == "ins", None, words[rng.zipf(1.5, n) % 300])
    hyp = np.where(op == "del", None, words[rng.integers(0, 300, n)])
    plain = pd.DataFrame({"utt": np.sort(rng.integers(0, 5_000, n)), "op": pd.Categorical(op, ["sub", "del", "ins"]),
                          "ref": pd.array(ref, dtype="string[pyarrow]"), "hyp": pd.array(hyp, dtype="string[pyarrow]")})
    stored = plain.copy()
    for name, written in (("ref", ref), ("hyp", hyp)):
        write_compressed(tmp_path / f"{name}.arrow", name, [pa.array(written.tolist(), pa.string())])
        stored[name] = pd.Series(CompressedStringArray.over(open_column(tmp_path / f"{name}.arrow")), copy=False)
        assert label_column(stored[name]) is not None
    want, got = A.top_errors(plain, limit=50), A.top_errors(stored, limit=50)
    assert set(got) == set(want) == {"substitutions", "deletions", "insertions"}
    for kind in want:
        pd.testing.assert_frame_equal(got[kind].reset_index(drop=True), want[kind].reset_index(drop=True))


def test_a_column_held_whole_is_read_once_for_the_whole_block(monkeypatch, tmp_path, values):
    _budget(monkeypatch, 1024)  # too small to keep it
    write_compressed(tmp_path / "t.arrow", "text", [pa.array(values)], labels=False)
    frame = pd.DataFrame({"n": np.arange(len(values))})
    frame.insert(1, "text", _series(open_column(tmp_path / "t.arrow")))
    reads = []
    column = frame["text"].array.compressed
    monkeypatch.setattr(column, "_decoded", lambda workers=None, original=column._decoded: reads.append(1) or original(workers))
    with cc.held_whole(frame, ["text", "n", "absent"]):
        assert frame["text"].str.len().sum() == _plain(values).str.len().sum()
        assert frame["text"].str.contains("cat").sum() == _plain(values).str.contains("cat").sum()
    assert len(reads) == 1
    frame["text"].str.len().sum()
    assert len(reads) == 2  # let go after the block


def _frame_of(tmp_path, columns: dict[str, list]) -> pd.DataFrame:
    frame = pd.DataFrame({"n": np.arange(len(next(iter(columns.values()))))})
    for k, (name, written) in enumerate(columns.items()):
        write_compressed(tmp_path / f"{name}.arrow", name, [pa.array(written)], labels=False)
        frame.insert(k + 1, name, _series(open_column(tmp_path / f"{name}.arrow")))
    return frame


@pytest.mark.parametrize("case, budget, loaded", [
    ("everything fits", 10**9, ["short", "long"]),
    ("the long one is over a quarter", 4 * 60_000, ["short"]),
    ("nothing fits", 1_000, []),
])
def test_preload_reads_whole_the_columns_the_budget_keeps(monkeypatch, tmp_path, case, budget, loaded):
    _budget(monkeypatch, budget)
    frame = _frame_of(tmp_path, {"long": [f"a long line of text {i} " * 3 for i in range(1_000)],
                                 "short": [f"s{i}" for i in range(1_000)]})
    assert cc.preload(frame) == loaded
    for name in ("short", "long"):
        column = frame[name].array.compressed
        assert (column.kept_whole() is not None) is (name in loaded)
        rows = np.array([5, 999, 0])
        assert frame[name].iloc[rows].tolist() == [frame[name].iat[i] for i in rows]
        assert (len(column._cache._items) == 0) is (name in loaded)  # a kept column serves pages itself


@pytest.mark.parametrize("case, room, kept, paths_kept", [
    ("both fit together, the paths make way", 2.0, ["text", "pred_text"], False),
    ("the first named fits alone, beside the paths", 1.5, ["text"], True),
    ("neither fits", 0.5, [], True),
])
def test_the_warm_up_ends_with_the_transcripts_whole_where_the_budget_keeps_them(monkeypatch, tmp_path, case, room,
                                                                                 kept, paths_kept):
    lines = [f"a long line of text {i} " * 3 for i in range(1_000)]
    frame = _frame_of(tmp_path, {"text": lines, "pred_text": lines[::-1], "audio_filepath": [f"/a/{i}.wav" for i in range(1_000)]})
    size = frame["text"].array.compressed.nbytes
    _budget(monkeypatch, int(room * size) + 1)
    frame["audio_filepath"].array.compressed.read_all()  # read whole by another step (a page's preparation)
    frame.insert(1, "n_plain", frame["n"])  # a column that is not stored compressed: in memory anyway
    assert cc.preload_transcripts(frame, ["text", "pred_text", "n_plain"]) == [*kept, "n_plain"]
    for name in ("text", "pred_text"):
        assert (frame[name].array.compressed.kept_whole() is not None) is (name in kept)
    assert (frame["audio_filepath"].array.compressed.kept_whole() is not None) is paths_kept


@pytest.mark.parametrize("filt, sort", QUERY_CASES[:4])
def test_queries_over_a_column_kept_whole_equal_those_over_plain_ones(tmp_path, values, filt, sort):
    frame = _frame_of(tmp_path, {"text": values})
    frame["other"] = pd.Series([v if i % 3 else "x" for i, v in enumerate(values)], dtype="string[pyarrow]")
    plain = pd.DataFrame({"n": frame["n"], "text": _plain(values), "other": frame["other"]})
    kept = frame["text"].array.compressed.read_all()
    assert frame["text"].array.compressed.kept_whole() is kept
    assert TableQuery(frame).select(filt, sort).tolist() == TableQuery(plain).select(filt, sort).tolist()


@pytest.mark.parametrize("case, texts", [
    ("ascii and other scripts' digits", ["no", "room 42", None, "١٢", "", "x"] * 2_000),
    ("no digits", ["a b", None] * 10),
    ("empty", []),
])
def test_texts_with_digits_are_counted_a_batch_at_a_time(tmp_path, case, texts):
    want = int(A.has_digits(pd.Series(texts, dtype=object)).sum())
    stored = _frame_of(tmp_path, {"text": texts})["text"] if texts else pd.Series([], dtype="string[pyarrow]")
    column = getattr(stored.array, "compressed", None)
    for s in (stored, _plain(texts), pd.Series(texts, dtype=object)):
        assert A.count_with_digits(s) == want
    if column is not None:
        assert column.kept_whole() is None  # counted by batch, never read whole


# ---------------------------------------------------------------- ranks: sorts by text compare integers

def _ranked_frame(tmp_path, values) -> tuple[pd.DataFrame, pd.DataFrame, CompressedColumn]:
    """The values as a compressed column beside a number column, and the same as plain strings."""
    write_compressed(tmp_path / "text.arrow", "text", [pa.array(values, pa.large_string())], labels=False)
    column = open_column(tmp_path / "text.arrow")
    n = np.arange(len(values))
    stored = pd.DataFrame({"n": n})
    stored.insert(1, "text", _series(column))
    return stored, pd.DataFrame({"n": n, "text": _plain(values)}), column


@pytest.mark.parametrize("kept, pass_bytes", [
    (True, 1 << 30),
    (False, 1 << 30),
    (False, 1 << 12),  # a few KB a pass: the column is read again for each
], ids=["kept whole", "streamed in one pass", "streamed in passes"])
def test_ranks_are_the_dense_ranks_of_the_values_in_byte_order(monkeypatch, tmp_path, values, kept, pass_bytes):
    import sde.text_ranks as text_ranks

    _budget(monkeypatch, 2**30)
    monkeypatch.setattr(text_ranks, "PASS_BYTES", pass_bytes)
    stored, _, column = _ranked_frame(tmp_path, values)
    if kept:
        column.read_all()
    reads, stream = [], column.stream
    monkeypatch.setattr(column, "stream", lambda *a: reads.append(1) or stream(*a))
    query = TableQuery(stored)
    assert query.warm_sorts() == ["text"]
    assert len(reads) == 2 if pass_bytes > column.nbytes else len(reads) > 2  # its keys, then each pass
    assert (column.kept_whole() is not None) is kept  # a column streamed for its ranks is not kept
    order = sorted({v for v in values if v is not None}, key=lambda v: v.encode())
    rank = {v: i + 1 for i, v in enumerate(order)}  # ties share one: "text,-n" still orders them by n
    assert column.ranks.to_pylist() == [None if v is None else rank[v] for v in values]
    assert cc._WORDS.size >= 4 * len(values)  # counted in the budget, beside the word indexes


@pytest.mark.parametrize("sort", ["text", "-text", "text,-n", "-text,n"])
@pytest.mark.parametrize("filt", [None, "{n} > 100", '{text} contains "cat"'])
def test_a_ranked_text_column_sorts_as_its_strings_do(monkeypatch, tmp_path, values, filt, sort):
    _budget(monkeypatch, 2**30)
    stored, plain, column = _ranked_frame(tmp_path, values)
    want = TableQuery(plain).select(filt, sort).tolist()
    query = TableQuery(stored)
    assert query.warm_sorts() == ["text"] and query._engine.sort_name("text") == "kc1"
    total, first = query.window(filt, sort, 0, 50)  # the top-N
    assert total == len(want) and first.tolist() == want[:50]
    assert query.select(filt, sort).tolist() == want
    for start in (10_050, len(want) - 500, len(want) - 20):  # past the long top-N: a band of the ranks
        deep = TableQuery(stored)
        assert deep.window(filt, sort, start, start + 50)[1].tolist() == want[start:start + 50]
        if filt is None:
            assert not deep._engine._scans  # the sort read the ranks, never the strings


def test_without_room_for_ranks_sorts_compare_the_strings(monkeypatch, tmp_path, values):
    _budget(monkeypatch, 1_000)
    stored, plain, column = _ranked_frame(tmp_path, values)
    query = TableQuery(stored)
    assert query.warm_sorts() == [] and column.ranks is None and query._engine.sort_name("text") == "c1"
    assert query.select(None, "-text,n").tolist() == TableQuery(plain).select(None, "-text,n").tolist()


def _written_without_the_line_break_count(monkeypatch) -> None:
    """Columns written from now on as before 2026-12-03: without ``sde.no_line_break``."""
    counted = cc._stats_metadata
    monkeypatch.setattr(cc, "_stats_metadata",
                        lambda stats: {k: v for k, v in counted(stats).items() if k != "sde.no_line_break"})


@pytest.mark.parametrize("stored_as", ["labels", "compressed", "compressed before the count was kept"])
@pytest.mark.parametrize("line_break", [False, True], ids=["single lines", "a line break"])
def test_whether_a_stored_column_holds_a_line_break_is_known_without_decompressing_it(monkeypatch, tmp_path,
                                                                                     stored_as, line_break):
    values = ["the cat", "a dog"] * 20 + ["a\nb" if line_break else "a b"]
    path = tmp_path / "text.arrow"
    if stored_as == "compressed before the count was kept":
        _written_without_the_line_break_count(monkeypatch)
    write_compressed(path, "text", [pa.array(values)], labels=stored_as == "labels")
    column = open_column(path)
    assert isinstance(column, LabelColumn) is (stored_as == "labels")
    stored = pd.DataFrame({"n": np.arange(len(values))})
    stored.insert(1, "text", _series(column))
    query = TableQuery(stored)
    if stored_as == "compressed":
        assert column.no_line_break is not line_break
    if stored_as == "compressed before the count was kept":  # read once kept whole: a query never decompresses it to ask
        assert column.no_line_break is None
        assert "text" not in query._engine.single_line
        column.read_all()
    assert ("text" in query._engine.single_line) is not line_break  # the LIKE test alone where none
    assert query.select('{text} matches "a.b"').tolist() == ([] if line_break else [len(values) - 1])
    assert column.kept_whole() is None or stored_as == "compressed before the count was kept"


def test_the_warm_up_learns_whether_a_transcript_written_before_the_count_holds_a_line_break(monkeypatch, tmp_path):
    _written_without_the_line_break_count(monkeypatch)
    frame = _frame_of(tmp_path, {"text": ["a b", "the cat"] * 50})
    query = TableQuery(frame)
    assert query.warm_transcripts(["text"]) == ["text"]
    column = frame["text"].array.compressed
    cc._WHOLE.discard(column.path)  # made way for another column
    column._recent = None
    assert column.kept_whole() is None
    assert "text" in query._engine.single_line  # known from the warm-up: not asked of a column no longer whole


# ---------------------------------------------------------------- a page's rows, decompressed at once

def _page_frame(tmp_path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three compressed columns, labels and numbers over ``ROWS`` rows, and the same frame plainly."""
    texts = {name: _values()[shift:] + _values()[:shift] for name, shift in (("a", 0), ("b", 11), ("c", 29))}
    frame = _frame_of(tmp_path, texts)
    write_compressed(tmp_path / "speaker.arrow", "speaker", [pa.array([f"s{i % 3}" for i in range(ROWS)])])
    frame["speaker"] = _series(open_column(tmp_path / "speaker.arrow"))
    plain = pd.DataFrame({"n": frame["n"], **{name: _plain(v) for name, v in texts.items()},
                          "speaker": _plain([f"s{i % 3}" for i in range(ROWS)])})
    return frame, plain


@pytest.mark.parametrize("case, threads, rows, decompressed", [
    ("scattered rows on two workers", 2, [ROWS - 1, 5, 2 * BATCH_ROWS + 3, 5, BATCH_ROWS], 3 * 4),
    ("rows of one batch", 2, [1, 2, 3], 3),
    ("one worker takes them itself", 1, [ROWS - 1, 5, 2 * BATCH_ROWS + 3], 0),
    ("no row", 2, [], 0),
])
def test_a_page_of_rows_decompresses_the_batches_of_every_column_at_once(monkeypatch, tmp_path, case, threads,
                                                                         rows, decompressed):
    monkeypatch.setattr(cc, "settings", lambda: EngineSettings(threads=threads))
    frame, plain = _page_frame(tmp_path)
    by_thread = []
    keep = CompressedColumn.keep_batch
    monkeypatch.setattr(CompressedColumn, "keep_batch",
                        lambda self, i, v: (by_thread.append(threading.current_thread().name), keep(self, i, v)))
    positions = np.array(rows, dtype=np.int64)
    system_bytes = pa.system_memory_pool().bytes_allocated()
    assert cc.decompress_ahead(frame, positions) == decompressed
    # freed later by the request's thread: the system's allocator, which keeps no memory back for the threads
    assert (pa.system_memory_pool().bytes_allocated() > system_bytes) is (decompressed > 0)
    assert all(name.startswith("sde-decompress") for name in by_thread) and len(by_thread) == decompressed
    assert cc.decompress_ahead(frame, positions) == 0  # kept: the take that follows decompresses nothing
    pd.testing.assert_frame_equal(cc.take_rows(frame, positions).astype(plain.dtypes), plain.iloc[positions])


@pytest.mark.parametrize("case, setup", [
    ("rows in more batches than a column keeps", lambda monkeypatch, frame: monkeypatch.setattr(cc, "CACHED_BATCHES", 1)),
    ("columns kept whole", lambda monkeypatch, frame: [cc.stored_column(frame[n]).read_all() for n in "abc"]),
])
def test_rows_a_column_takes_itself_are_not_decompressed_ahead(monkeypatch, tmp_path, case, setup):
    monkeypatch.setattr(cc, "settings", lambda: EngineSettings(threads=2))
    frame, plain = _page_frame(tmp_path)
    setup(monkeypatch, frame)
    positions = np.array([ROWS - 1, 5, 2 * BATCH_ROWS + 3])
    assert cc.decompress_ahead(frame, positions) == 0
    pd.testing.assert_frame_equal(cc.take_rows(frame, positions).astype(plain.dtypes), plain.iloc[positions])


def test_a_column_whose_file_was_removed_is_still_read_from_its_map(monkeypatch, tmp_path):
    monkeypatch.setattr(cc, "settings", lambda: EngineSettings(threads=2))
    frame, plain = _page_frame(tmp_path)
    for name in "abc":
        (tmp_path / f"{name}.arrow").unlink()  # a cache cleared while the server reads it
    positions = np.array([ROWS - 1, 5, 2 * BATCH_ROWS + 3])
    assert cc.decompress_ahead(frame, positions) == 9
    pd.testing.assert_frame_equal(cc.take_rows(frame, positions).astype(plain.dtypes), plain.iloc[positions])
    whole = cc.stored_column(frame["b"]).read_all(workers=2)  # on two threads
    assert whole.to_pylist() == [None if v is pd.NA else v for v in plain["b"].tolist()]


def _rows_in_a_child(frame: pd.DataFrame) -> list:
    return cc.take_rows(frame, np.array([ROWS - 1, 5, BATCH_ROWS]))["a"].tolist()


def test_a_forked_child_decompresses_ahead_with_threads_of_its_own(monkeypatch, tmp_path):
    monkeypatch.setattr(cc, "settings", lambda: EngineSettings(threads=2))
    frame, plain = _page_frame(tmp_path)
    cc.take_rows(frame, np.array([1, BATCH_ROWS + 1]))  # the parent's pool is started
    for name in "abc":
        cc.stored_column(frame[name])._cache.clear()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_rows_in_a_child, (frame,)).get(timeout=30)
    assert got == plain["a"].iloc[[ROWS - 1, 5, BATCH_ROWS]].tolist()


# Past the budget's check, a column is read whole for later searches only where the process itself
# has room for it under --memory-limit: the budget splits the limit between DuckDB and what is
# kept, and the process's own memory comes on top (sde.engine.room_in_process).
ROOM_CASES = {
    "no limit": (None, True),
    "room under the limit": ("64TB", True),
    "the process alone over the limit": ("1MB", False),
}


@pytest.mark.parametrize("memory_limit, kept", ROOM_CASES.values(), ids=ROOM_CASES.keys())
def test_the_warm_up_reads_a_transcript_whole_only_where_the_process_has_room(monkeypatch, tmp_path, memory_limit, kept):
    frame = _frame_of(tmp_path, {"text": [f"a long line of text {i} " * 3 for i in range(1_000)]})
    _budget(monkeypatch, 10 * frame["text"].array.compressed.nbytes)  # the budget keeps it every time
    monkeypatch.setattr(sde_engine, "_current", EngineSettings(memory_limit=memory_limit))
    monkeypatch.setattr(cc, "ROOM_WAIT_S", 0.2)  # over the limit: it waits this long for room, in vain
    assert cc.preload_transcripts(frame, ["text"]) == (["text"] if kept else [])
    assert (frame["text"].array.compressed.kept_whole() is not None) is kept


@pytest.mark.parametrize("memory_limit, kept", ROOM_CASES.values(), ids=ROOM_CASES.keys())
def test_a_column_a_search_streamed_is_read_whole_for_the_next_only_where_the_process_has_room(
        monkeypatch, tmp_path, memory_limit, kept):
    frame = _frame_of(tmp_path, {"text": [f"a long line of text {i} " * 3 for i in range(1_000)]})
    column = frame["text"].array.compressed
    _budget(monkeypatch, 10 * column.nbytes)
    monkeypatch.setattr(sde_engine, "_current", EngineSettings(memory_limit=memory_limit))
    cc.keep_for_next_scan(column)
    deadline = time.monotonic() + 10
    while column._reading and time.monotonic() < deadline:  # the background read has looked
        time.sleep(0.01)
    assert not column._reading
    assert (column.kept_whole() is not None) is kept


# ---------------------------------------------------------------- rows taken at once (streamed views)

def _frame_by_batch(tmp_path, values, *, whole: bool) -> pd.DataFrame:
    path = tmp_path / "t.arrow"
    write_compressed(path, "text", [pa.array(values)], labels=False)
    column = CompressedColumn(path)
    if whole:
        column.read_all()
    return pd.DataFrame({"text": _series(column), "n": np.arange(len(values))})


_SCATTERED = np.random.default_rng(3).permutation(ROWS)


# (behaviour, frame: "by batch" / "kept whole" / "in memory", positions, rows, most, rows taken)
ROWS_PER_TAKE = [
    ("a run of neighbouring rows is taken a chunk at a time", "by batch", np.arange(ROWS), 100, 5000, 100),
    ("a run starting inside a batch is still a run", "by batch", np.arange(BATCH_ROWS - 10, ROWS), 2 * BATCH_ROWS,
     5000, 2 * BATCH_ROWS),
    ("rows scattered over a column read by batch are taken up to most at once", "by batch", _SCATTERED, 100, 5000,
     5000),
    ("scattered, no more than the rows left", "by batch", _SCATTERED[:700], 100, 5000, 700),
    ("scattered, never fewer than a chunk", "by batch", _SCATTERED, 100, 10, 100),
    ("rows in table order that skip most rows (a filtered view) are taken a chunk at a time", "by batch",
     np.arange(0, ROWS, 7), 100, 5000, 100),
    ("a view sorted back to front is out of order", "by batch", np.arange(ROWS)[::-1], 100, 5000, 5000),
    ("scattered rows of a column kept whole are taken a chunk at a time", "kept whole", _SCATTERED, 100, 5000, 100),
    ("scattered rows of columns in memory are taken a chunk at a time", "in memory", _SCATTERED, 100, 5000, 100),
    ("fewer rows than a chunk are taken at once", "by batch", _SCATTERED[:40], 100, 5000, 40),
]


@pytest.mark.parametrize("behaviour, frame, positions, rows, most, taken", ROWS_PER_TAKE,
                         ids=[case[0] for case in ROWS_PER_TAKE])
def test_rows_per_take(tmp_path, values, behaviour, frame, positions, rows, most, taken):
    df = (pd.DataFrame({"text": _plain(values), "n": np.arange(len(values))}) if frame == "in memory"
          else _frame_by_batch(tmp_path, values, whole=frame == "kept whole"))
    assert cc.rows_per_take(df, positions, rows, most) == taken
