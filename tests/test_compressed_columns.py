"""sde.compressed_columns: string columns stored compressed, read by batch, and the pandas array
over them behaving as pandas' own Arrow strings."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sde import compressed_columns as cc
from sde.compressed_columns import (BATCH_ROWS, CompressedColumn, CompressedStringArray, is_compressed,
                                    read_strings, write_compressed)
from sde.query import TableQuery

ROWS = 3 * BATCH_ROWS + 123  # four batches, the last one short


def _values(n: int = ROWS) -> list[str | None]:
    words = ["the", "cat", "straße", "日本語", "", "a'b", "Z"]
    return [None if i % 101 == 7 else " ".join(words[(i + k) % len(words)] for k in range(i % 5)) for i in range(n)]


@pytest.fixture(scope="module")
def values() -> list[str | None]:
    return _values()


@pytest.fixture(scope="module")
def column(tmp_path_factory, values) -> CompressedColumn:
    path = tmp_path_factory.mktemp("cc") / "text.arrow"
    # written from pieces of several types and sizes, as parts of a build arrive
    pieces = [pa.array(values[:1000], pa.string()),
              pa.chunked_array([pa.array(values[1000:5000]), pa.array(values[5000:9000])]),
              pa.array(values[9000:], pa.large_string())]
    assert write_compressed(path, "text", pieces) == len(values)
    return CompressedColumn(path)


def _plain(values) -> pd.Series:
    return pd.Series(values, dtype="string[pyarrow]")


def _series(column: CompressedColumn) -> pd.Series:
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


def test_a_take_reads_only_the_batches_of_its_rows(tmp_path, values):
    path = tmp_path / "c.arrow"
    write_compressed(path, "text", [pa.array(values)])
    fresh = CompressedColumn(path)
    fresh.take(np.array([1, 2 * BATCH_ROWS + 5]))
    assert sorted(fresh._cache._items) == [0, 2]


@pytest.mark.parametrize("case, written, nulls, lower", [
    ("no rows", [], 0, True),
    ("only nulls", [None, None], 2, True),
    ("lower case", ["abc", "é"], 0, True),
    ("upper case", ["abc", "Abc"], 0, False),
    ("long s folds to s", ["ſ"], 0, False),
])
def test_edge_columns_keep_their_counts(tmp_path, case, written, nulls, lower):
    path = tmp_path / "c.arrow"
    write_compressed(path, "x", [pa.array(written, pa.string())])
    got = CompressedColumn(path)
    assert (len(got), got.null_count, got.no_ascii_upper) == (len(written), nulls, lower)
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
    write_compressed(tmp_path / "c.arrow", "t", [pa.array(text)])
    assert (tmp_path / "c.arrow").stat().st_size < pa.array(text, pa.large_string()).nbytes / 3


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


def test_a_value_set_into_it_makes_it_plain(column, values):
    array = CompressedStringArray.over(column).copy()
    array[0] = "changed"
    assert array.compressed is None and array[0] == "changed" and array[1] == values[1]
    assert CompressedStringArray.over(column)[0] == values[0]  # the file is untouched


@pytest.mark.parametrize("budget, kept", [(cc.WHOLE_BYTES, True), (1024, False)])
def test_a_whole_read_is_kept_only_while_small(monkeypatch, tmp_path, values, budget, kept):
    monkeypatch.setattr(cc, "_WHOLE", cc.LRUCache(budget, size_of=lambda a: a.nbytes))
    path = tmp_path / "c.arrow"
    write_compressed(path, "t", [pa.array(values)])
    fresh = CompressedColumn(path)
    first = fresh.read_all()
    assert fresh.read_all() is first  # held by the caller: one read shared
    assert (cc._WHOLE.get(fresh.path) is first) is kept


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


@pytest.mark.parametrize("filt, sort", QUERY_CASES)
def test_queries_over_compressed_columns_equal_those_over_plain_ones(column, values, filt, sort):
    n = np.arange(len(values))
    other = [v if i % 3 else "x" for i, v in enumerate(values)]
    plain = pd.DataFrame({"n": n, "text": _plain(values), "other": _plain(other)})
    stored = pd.DataFrame({"n": n})
    stored.insert(1, "text", _series(column))
    stored.insert(2, "other", pd.Series(other, dtype="string[pyarrow]"))
    want = TableQuery(plain).select(filt, sort).tolist()
    got = TableQuery(stored)
    assert got.select(filt, sort).tolist() == want
    total, page = got.page(filt, sort, page=1, page_size=20)
    assert total == len(want) and page["text"].tolist() == plain["text"].iloc[want[20:40]].tolist()
    assert stored["text"].array.compressed is column  # the query streamed it
