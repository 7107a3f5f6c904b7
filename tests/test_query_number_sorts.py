"""Sorting a text column that holds numbers on some lines (sde/query.py, sde/filters/sql.py): the
values that read as numbers (what the filter `{snr} < 10` compares as numbers) first, as numbers,
equal numbers by their text, then the other values in text order, missing values last; descending,
the numbers high to low, then the text Z to A, then the missing values. A column of text alone
sorts as before. Through TableQuery over plain, compressed and label columns (first pages, deep
pages, the warm-up's ranks), through the grid's column headers, and through the HTTP API: JSON
pages, the CSV and JSONL twins, the vocabulary and the breakdown by value."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sde import compressed_columns as cc
from sde.compressed_columns import CompressedStringArray, LabelColumn, label_column, open_column, write_compressed
from sde.dataset import build_dataset
from sde.filters import number_key_sql, number_sql
from sde.filters.engine import rows_sql
from sde.index_files import part_path, write_ranks
from sde.query import LONG_PREFIX_ROWS, TableQuery
from sde.web.api import MAX_PAGE_SIZE
from tests import cache_kit
from sde.web.app import AppConfig, create_app
from sde.web.grid import grid_rows
from tests.browser_kit import get_csv, get_json


# ---------------------------------------------------------------- what reads as a number

READS_AS_NUMBER = [  # (case, value, the number it reads as; None: it is text)
    ("a whole number", "7", 7.0),
    ("a decimal", "12.5", 12.5),
    ("spaces around", " 20 ", 20.0),
    ("a tab and a line break around", "\t3\n", 3.0),
    ("an exponent", "1e3", 1000.0),
    ("a negative exponent", "2.5E-2", 0.025),
    ("a negative", "-4", -4.0),
    ("a plus sign", "+4", 4.0),
    ("a leading point", ".5", 0.5),
    ("leading zeros", "007", 7.0),
    ("infinity", "inf", math.inf),
    ("negative infinity, spelt out", "-Infinity", -math.inf),
    ("nan is text, as in a filter", "nan", None),
    ("NaN is text", "NaN", None),
    ("words", "n/a", None),
    ("the empty string", "", None),
    ("spaces only", "  ", None),
    ("a space inside", "1 2", None),
    ("a comma", "1,5", None),
    ("hexadecimal", "0x1A", None),
    ("a word starting with i", "in 5", None),
    ("a unit", "5dB", None),
]


def _read(sql: str, value: str):
    return rows_sql(f"SELECT {sql} FROM t", (), {"t": pa.table({"v": pa.array([value], pa.large_string())})})[0][0]


@pytest.mark.parametrize("case, value, number", READS_AS_NUMBER, ids=[c[0] for c in READS_AS_NUMBER])
def test_a_text_value_reads_as_the_number_a_filter_compares(case, value, number):
    for sql in (number_sql("v"), number_key_sql("v")):  # the filter's rule, and the sort's cheaper one
        got = _read(sql, value)
        assert (got is None) if number is None else got == pytest.approx(number)


def test_the_sorts_cheaper_rule_reads_every_value_as_the_filters_does():
    pieces = list("0123456789+-.eE_ \t\n\r\x0b\x0cinfINFtyTYaAnNx/,") + ["infinity", "nan", "١", "\u00a0", "é", "\x1f"]
    rng = random.Random(0)
    values = ["".join(rng.choice(pieces) for _ in range(rng.choice([1, 2, 3, 4, 6, 9]))) for _ in range(50_000)]
    table = pa.table({"v": pa.array(values, pa.large_string())})
    numbers, differ = rows_sql(f"SELECT count({number_sql('v')}), count(*) FILTER (WHERE ({number_sql('v')} "
                               f"IS NOT DISTINCT FROM {number_key_sql('v')}) IS NOT TRUE) FROM t", (), {"t": table})[0]
    assert numbers > 1_000 and differ == 0


# ---------------------------------------------------------------- the order, through TableQuery

def _number(value: str) -> float | None:
    """Python's reading of the values these tests write (DuckDB's on them, see the case above)."""
    try:
        x = float(value)
    except ValueError:
        return None
    return None if math.isnan(x) else x


def expected_order(values: list[str | None], sort: str = "v", rows: list[int] | None = None) -> list[int]:
    """Row positions in the documented order, worked out in Python: numbers, then text, then
    missing; within the numbers (number, text) and within the text the text, both reversed by a
    leading -; equal values in the order of ``rows`` (default: table order). A second key ``n``
    (``v,-n``: the row position) gives that order."""
    first, _, second = sort.partition(",")
    desc = first.startswith("-")
    rows = list(range(len(values))) if rows is None else list(rows)
    if second:
        rows.sort(reverse=second.startswith("-"))

    def key(i: int) -> tuple:
        v = values[i]
        x = None if v is None else _number(v)
        return (2, 0.0, "") if v is None else (1, 0.0, v) if x is None else (0, x, v)

    rows = sorted(rows, key=lambda i: key(i)[1:], reverse=desc)  # stable: equal values keep their order
    return sorted(rows, key=lambda i: key(i)[0])


ORDER_CASES = [  # (case, values, sort, the values in order)
    ("numbers first, as numbers", ["12.5", "7", "n/a", " 20 ", "2", "10"], "v",
     ["2", "7", "10", "12.5", " 20 ", "n/a"]),
    ("descending: numbers high to low, then text Z to A", ["12.5", "7", "n/a", " 20 ", "high", "10"], "-v",
     [" 20 ", "12.5", "10", "7", "n/a", "high"]),
    ("missing values last, ascending", [None, "10", "x", None, "9"], "v", ["9", "10", "x", None, None]),
    ("missing values last, descending", [None, "10", "x", None, "9"], "-v", ["10", "9", "x", None, None]),
    ("spaces, exponents and negatives", ["1e3", "-2", " 5", "\t3\n", "+4", ".5", "-1.5e1"], "v",
     ["-1.5e1", "-2", ".5", "\t3\n", "+4", " 5", "1e3"]),
    ("inf is a number, nan is text", ["nan", "inf", "-inf", "0", "NaN", "1e308"], "v",
     ["-inf", "0", "1e308", "inf", "NaN", "nan"]),
    ("equal numbers by their text", ["7.0", "7", "007", "07", "6.5"], "v", ["6.5", "007", "07", "7", "7.0"]),
    ("equal numbers by their text, descending", ["7.0", "7", "007", "07", "6.5"], "-v",
     ["7.0", "7", "07", "007", "6.5"]),
    ("numbers alone (no other text)", ["007", "10", "9", "2", "1e1"], "v", ["2", "007", "9", "10", "1e1"]),
    ("the empty string is text", ["", "b", "3", "a"], "v", ["3", "", "a", "b"]),
    ("speaker ids", ["103", "2", "10", "spk_1"], "v", ["2", "10", "103", "spk_1"]),
    ("a column of text alone keeps its text order", ["spk_10", "spk_2", "spk_1", "Spk_3", "nan"], "v",
     ["Spk_3", "nan", "spk_1", "spk_10", "spk_2"]),
    ("a column of text alone, descending", ["spk_10", "spk_2", "spk_1", "Spk_3", "nan"], "-v",
     ["spk_2", "spk_10", "spk_1", "nan", "Spk_3"]),
]

STORED = ["plain", "compressed", "labels"]


def _frame(tmp_path, values: list[str | None], stored: str) -> pd.DataFrame:
    """``values`` as the text column ``v`` between ``n`` (the row position) and ``third`` (n % 3):
    plain Arrow strings, or a column file as a build stores it (compressed, or labels: codes of the
    distinct values)."""
    frame = pd.DataFrame({"n": np.arange(len(values)), "third": np.arange(len(values)) % 3})
    if stored == "plain":
        frame.insert(1, "v", pd.Series(values, dtype="string[pyarrow]"))
        return frame
    path = tmp_path / f"v-{stored}.arrow"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cc, "LABEL_MIN_ROWS_PER_VALUE", 1)  # labels however few the rows
        write_compressed(path, "v", [pa.array(values, pa.large_string())], labels=stored == "labels")
    column = open_column(path)
    assert isinstance(column, LabelColumn) is (stored == "labels")
    frame.insert(1, "v", pd.Series(CompressedStringArray.over(column), copy=False))
    return frame


@pytest.mark.parametrize("stored", STORED)
@pytest.mark.parametrize("case, values, sort, want", ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_a_text_column_sorts_its_numbers_first_as_numbers(tmp_path, stored, case, values, sort, want):
    frame = _frame(tmp_path, values, stored)
    query = TableQuery(frame)
    assert [values[i] for i in query.select(None, sort)] == want
    assert query.select(None, sort).tolist() == expected_order(values, sort)
    # a first page (DuckDB's top-N) and a filtered view agree with the whole sort
    assert TableQuery(frame).window(None, sort, 0, 3)[1].tolist() == query.select(None, sort).tolist()[:3]
    kept = [i for i in query.select(None, sort).tolist() if i != 1]
    assert query.select("{n} != 1", sort).tolist() == kept


TIE_CASES = [  # (case, sort, row positions in order) of ["7.0", "7", "x", "7", "7", None, "10"]
    ("equal values keep table order", "v", [1, 3, 4, 0, 6, 2, 5]),
    ("equal values keep table order, descending", "-v", [6, 0, 1, 3, 4, 2, 5]),
    ("a second key orders equal values", "v,-n", [4, 3, 1, 0, 6, 2, 5]),
    ("a second key orders equal values, descending", "-v,-n", [6, 0, 4, 3, 1, 2, 5]),
]


@pytest.mark.parametrize("stored", STORED)
@pytest.mark.parametrize("case, sort, want", TIE_CASES, ids=[c[0] for c in TIE_CASES])
def test_equal_values_break_ties_by_the_next_key_then_the_row(tmp_path, stored, case, sort, want):
    values = ["7.0", "7", "x", "7", "7", None, "10"]
    assert TableQuery(_frame(tmp_path, values, stored)).select(None, sort).tolist() == want == expected_order(values, sort)


@pytest.mark.parametrize("stored", STORED)
def test_a_column_of_text_alone_keeps_its_sort(tmp_path, stored):
    values = ["spk_10", "spk_2", None, "nan", "n/a"] * 3
    query = TableQuery(_frame(tmp_path, values, stored))
    assert query.select(None, "-v").tolist() == expected_order(values, "-v")
    engine = query._engine
    assert not engine.holds_numbers("v")
    # the same SQL as before: the strings, or a label column's codes
    assert engine.sort_key("v", True) == (('"kc1"', '"kc1"') if stored == "labels" else ('"c1"', '"c1"'))
    assert engine._known_number_first("c1") is None


def _mixed(rows: int, seed: int, distinct: int | None = None) -> list[str | None]:
    """Values of a field such as snr: numbers written every way, some text, some missing."""
    rng = random.Random(seed)
    forms = [lambda: f"{rng.uniform(-10, 60):.2f}", lambda: str(rng.randint(0, 40)), lambda: f" {rng.randint(0, 40)} ",
             lambda: f"{rng.uniform(0.5, 9.5):.1f}e1", lambda: f"{rng.randint(0, 40):03d}", lambda: "inf",
             lambda: rng.choice(["n/a", "high", "low", "", "nan", "?"]), lambda: None]
    if distinct is None:
        return [rng.choice(forms)() for _ in range(rows)]
    pool = [rng.choice(forms)() for _ in range(distinct)]
    return [rng.choice(pool) for _ in range(rows)]


@pytest.fixture(scope="module")
def deep_values() -> list[str | None]:
    return _mixed(3 * LONG_PREFIX_ROWS, seed=5, distinct=1500)  # few enough distinct ones for labels


@pytest.mark.parametrize("stored", STORED)
@pytest.mark.parametrize("sort", ["v", "-v", "-v,n", "v,-n"])
@pytest.mark.parametrize("filt", [None, "{third} != 0"])
def test_pages_deep_in_the_sort_continue_its_order(tmp_path, deep_values, stored, sort, filt):
    frame = _frame(tmp_path, deep_values, stored)
    want = expected_order(deep_values, sort)
    if filt is not None:
        want = [i for i in want if i % 3 != 0]
    # the top-N, the long top-N, bands of the keys, and the missing values (the whole view sorted)
    for start, band in ((0, False), (990, False), (LONG_PREFIX_ROWS + 50, True), (len(want) // 2, True),
                        (len(want) - 20, False)):
        query = TableQuery(frame)
        total, page = query.window(filt, sort, start, start + 50)
        assert total == len(want) and page.tolist() == want[start:start + 50]
        assert len(query._bands) == band  # a band of the integer keys, not a sort of the whole view
    assert TableQuery(frame).select(filt, sort).tolist() == want


# ---------------------------------------------------------------- learnt once; the warm-up's ranks

def test_a_stored_column_is_learnt_once_for_every_table_over_it(tmp_path):
    values = _mixed(20_000, seed=1)
    frame = _frame(tmp_path, values, "compressed")
    first = TableQuery(frame)
    assert first.window(None, "-v", 0, 10)[0] == 20_000 and first._engine._scans  # read once, streamed
    later = TableQuery(frame)
    assert later.window(None, "v", 0, 10)[1].tolist() == expected_order(values)[:10]
    assert not later._engine._scans  # its keys were known: nothing read


def test_a_transcript_whose_words_hold_no_number_is_known_from_its_word_index(tmp_path):
    frame = _frame(tmp_path, ["the cat sat", "a dog", None, "on the mat 5x"] * 1000, "compressed")
    query = TableQuery(frame)
    assert query.warm_search(["v"]) == ["v"]
    later = TableQuery(frame)
    assert not later._engine.holds_numbers("v") and not later._engine._scans


def _reopened(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame over its column file opened again, as the next start of a server opens it."""
    column = open_column(frame["v"].array.compressed.path)
    again = frame.drop(columns="v")
    again.insert(1, "v", pd.Series(CompressedStringArray.over(column), copy=False))
    return again


@pytest.mark.parametrize("case, values, read", [
    ("paths: the first and the last start with /", [f"/data/{i % 97}/{i}.wav" for i in range(5_000)], False),
    ("ids from 0001_x: a digit may start a number", [f"{i:04d}_x" for i in range(5_000)], True),
])
def test_the_text_ranks_an_earlier_start_wrote_can_show_a_column_holds_no_number(monkeypatch, tmp_path, case, values,
                                                                                  read):
    frame = _frame(tmp_path, values, "compressed")
    assert TableQuery(frame).warm_sorts(["v"]) == ["v"]  # text ranks, written beside the column
    later = TableQuery(_reopened(frame))
    streamed = []
    monkeypatch.setattr(cc.CompressedColumn, "dataset",
                        lambda column, scan=cc.CompressedColumn.dataset: streamed.append(1) or scan(column))
    assert not later._engine.holds_numbers("v")
    assert bool(streamed) is read  # the column streamed, or only its first and last values read
    assert later.warm_sorts(["v"]) == ["v"] and later._engine.sort_key("v", False) == ('"kc1"', '"kc1"')
    assert later.select(None, "-v").tolist() == expected_order(values, "-v")


@pytest.mark.parametrize("stale", [False, True], ids=["no ranks written", "text ranks of an older sde beside it"])
def test_the_warm_up_ranks_a_column_holding_numbers_numbers_first(tmp_path, stale):
    values = _mixed(20_000, seed=2)
    frame = _frame(tmp_path, values, "compressed")
    column = frame["v"].array.compressed
    if stale:  # what an older sde's warm-up wrote: each value's rank in text order
        order = sorted({v for v in values if v is not None})
        rank = {v: i + 1 for i, v in enumerate(order)}
        assert write_ranks(column.path, pa.array([0 if v is None else rank[v] for v in values], pa.uint32(),
                                                 mask=np.array([v is None for v in values])))
    query = TableQuery(frame)
    assert query.warm_sorts(["v"]) == ["v"]
    assert column.ranks is None  # not the text ranks, from a file or computed
    deep = TableQuery(frame)
    for sort in ("v", "-v"):
        want = expected_order(values, sort)
        assert deep.window(None, sort, 15_000, 15_050)[1].tolist() == want[15_000:15_050]
    assert not deep._engine._scans  # the warm-up's keys: the sorts read no string


def test_the_next_start_reads_the_number_first_keys_an_earlier_one_wrote(tmp_path):
    """A transcript where one line in a hundred reads as a number ("2020"): its keys were computed
    at every start (~3 s at 10M lines), as its text ranks could not serve; now written beside it."""
    values = [str(2000 + i % 50) if i % 100 == 0 else f"the line {i % 977}" for i in range(20_000)]
    frame = _frame(tmp_path, values, "compressed")
    assert TableQuery(frame).warm_sorts(["v"]) == ["v"]
    assert os.path.exists(part_path(frame["v"].array.compressed.path, "number-ranks"))
    later = TableQuery(_reopened(frame))
    assert later.warm_sorts(["v"]) == ["v"] and later._engine.holds_numbers("v")
    assert not later._engine._scans  # neither whether it holds a number nor its keys read a value
    for sort in ("v", "-v"):
        assert later.window(None, sort, 0, 300)[1].tolist() == expected_order(values, sort)[:300]
    assert not later._engine._scans


@pytest.mark.parametrize("stored", STORED)
def test_the_warm_up_gives_a_column_holding_numbers_its_keys_however_stored(tmp_path, stored):
    values = _mixed(5_000, seed=3)
    query = TableQuery(_frame(tmp_path, values, stored))
    assert query.warm_sorts() == ["v"]  # n and third are numbers: sorted as they are
    assert query._engine._known_number_first("c1") is not None  # a first sort computes nothing
    assert query.select(None, "-v").tolist() == expected_order(values, "-v")


def test_the_warm_up_still_ranks_a_column_of_text_alone_by_its_text(tmp_path):
    values = [f"spk_{i % 997}" for i in range(20_000)]
    frame = _frame(tmp_path, values, "compressed")
    query = TableQuery(frame)
    assert query.warm_sorts(["v"]) == ["v"] and frame["v"].array.compressed.ranks is not None
    assert query._engine.sort_key("v", True) == ('"kc1"', '"kc1"')
    assert query.select(None, "-v").tolist() == expected_order(values, "-v")


# ---------------------------------------------------------------- through the HTTP API

MANIFEST_FIELDS = [  # per line: snr (numbers and text), spk (ids), code (numbers alone), tag (text alone)
    ("12.5", "10", "007", "spk_10"), ("7", "2", "10", "spk_2"), ("n/a", "103", "9", "spk_1"),
    (" 20 ", "spk_a", "2", "Spk_3"), (None, "2", "1e1", None), ("-3", "10", "010", "spk_1"),
    ("1e3", None, "7", "spk_2"), ("inf", "2", "7.0", "spk_9"), ("nan", "103", "07", "spk_10"),
    ("7.0", "spk_b", "3", "spk_3"), ("high", "10", "11", "spk_1"), ("", "2", "4", "spk_2"),
    ("007", "103", "5", "spk_4"), ("7", "2", "6", "spk_5"),
]
WORDS = ["cat", "10", "9", "dog", "2", "1e3", "apple", "100"]


def _lines() -> list[dict]:
    rows = []
    for i in range(3):  # 42 lines: the same fields three times, other durations and words
        for j, (snr, spk, code, tag) in enumerate(MANIFEST_FIELDS):
            words = [WORDS[(i + j + k) % len(WORDS)] for k in range(1 + (i + j) % 4)]
            fields = {"snr": snr, "spk": spk, "code": code, "tag": tag}
            rows.append({"audio_filepath": f"a{i}_{j}.wav", "duration": 1.0 + j + i / 10, "text": " ".join(words),
                         "pred_text": " ".join(words[1:]), **{k: v for k, v in fields.items() if v is not None}})
    return rows


@pytest.fixture(scope="module", params=["built", "stored", "stored as labels"])
def api_dataset(request, tmp_path_factory):
    """The manifest as built (plain columns), and as read back from the cache: its text columns
    compressed files, or labels (with the rows-per-value rule relaxed, as a big dataset's are)."""
    path = tmp_path_factory.mktemp("numbers") / "m.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in _lines()), encoding="utf-8")
    built = build_dataset(path)
    if request.param == "built":
        return built
    stored = cache_kit.stored(built, tmp_path_factory.mktemp("cache"),
                              label_min_rows=1 if request.param == "stored as labels" else 100)
    assert isinstance(stored.utterances["snr"].array, CompressedStringArray)
    assert (label_column(stored.utterances["snr"]) is not None) is (request.param == "stored as labels")
    return stored


@pytest.fixture(scope="module")
def api_client(api_dataset):
    return create_app(api_dataset, AppConfig(title="numbers", audio_routes=False)).server.test_client()


def _ids(client, path: str, **params) -> list[int]:
    return [r["id"] for r in get_json(client, f"{path}?{urlencode({**params, 'page_size': MAX_PAGE_SIZE})}")["rows"]]


API_SORTS = ["snr", "-snr", "spk,-duration", "-spk,duration", "code", "-code", "tag", "-tag,snr", "spk,-code"]


def _expected_ids(dataset, sort: str) -> list[int]:
    """The ids in the documented order (expected_order); a second key, a text column sorted the
    same way or a number column, orders equal values."""
    t = dataset.utterances
    first, _, second = sort.partition(",")

    def text(column: str) -> list[str | None]:
        return [None if pd.isna(v) else str(v) for v in t[column.lstrip("-")]]

    rows = None
    if second and second.lstrip("-") in ("snr", "spk", "code", "tag"):
        rows = expected_order(text(second), second)
    elif second:
        numbers = t[second.lstrip("-")].to_numpy()
        rows = sorted(range(len(t)), key=lambda i: numbers[i], reverse=second.startswith("-"))
    ids = t["id"].tolist()
    return [ids[i] for i in expected_order(text(first), first, rows)]


@pytest.mark.parametrize("sort", API_SORTS)
def test_the_api_sorts_numbers_first_on_every_page(api_client, api_dataset, sort):
    want = _expected_ids(api_dataset, sort)
    assert _ids(api_client, "/api/utterances", sort=sort) == want
    paged = []
    for page in range(0, len(want) // 5 + 1):  # pages of 5: each continues where the last ended
        got = get_json(api_client, f"/api/utterances?{urlencode({'sort': sort, 'page': page, 'page_size': 5})}")
        assert got["total"] == len(want)
        paged += [r["id"] for r in got["rows"]]
    assert paged == want
    filtered = _ids(api_client, "/api/utterances", sort=sort, filter="{duration} > 3")
    durations = dict(zip(api_dataset.utterances["id"], api_dataset.utterances["duration"]))
    assert filtered == [i for i in want if durations[i] > 3]


@pytest.mark.parametrize("model, sort", [
    ([{"colId": "snr", "sort": "asc"}], "snr"),
    ([{"colId": "snr", "sort": "desc"}], "-snr"),
    ([{"colId": "spk", "sort": "desc"}, {"colId": "code", "sort": "asc"}], "-spk,code"),
])
def test_the_grids_column_headers_sort_as_the_api_does(api_dataset, model, sort):
    want = _expected_ids(api_dataset, sort)
    for start, end in ((0, 10), (10, 30), (30, 100)):  # the grid's blocks, each continuing the last
        got = grid_rows(api_dataset.utterance_query, api_dataset.utterances,
                        {"startRow": start, "endRow": end, "sortModel": model}, "")
        assert got.error is None and got.sort == sort
        assert [row["id"] for row in got.response["rowData"]] == want[start:end]


@pytest.mark.parametrize("sort", ["snr", "-snr", "-code,duration"])
def test_the_csv_and_jsonl_twins_keep_the_json_order(api_client, api_dataset, sort):
    want = _ids(api_client, "/api/utterances", sort=sort)
    assert want == _expected_ids(api_dataset, sort)
    assert [int(r["id"]) for r in get_csv(api_client, f"/api/utterances.csv?{urlencode({'sort': sort})}")] == want
    r = api_client.get(f"/api/utterances.jsonl?{urlencode({'sort': sort})}")
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    lines = [json.loads(line) for line in r.get_data(as_text=True).splitlines()]
    files = dict(zip(api_dataset.utterances["audio_filepath"], api_dataset.utterances["id"]))
    assert [files[line["audio_filepath"]] for line in lines] == want


@pytest.mark.parametrize("sort", ["word", "-word"])
def test_the_vocabulary_sorts_its_number_words_first(api_client, sort):
    words = [r["word"] for r in get_json(api_client, f"/api/vocabulary?sort={sort}&page_size=100")["rows"]]
    assert words == [words[i] for i in expected_order(words, sort.replace("word", "v"))]
    assert words[:5] == (["2", "9", "10", "100", "1e3"] if sort == "word" else ["1e3", "100", "10", "9", "2"])
    rows = list(csv.DictReader(io.StringIO(api_client.get(f"/api/vocabulary.csv?sort={sort}").get_data(as_text=True))))
    assert [r["word"].lstrip("'") for r in rows] == words


@pytest.mark.parametrize("sort, want", [
    ("value", ["2", "10", "103", "spk_a", "spk_b", None]),
    ("-value", ["103", "10", "2", "spk_b", "spk_a", None]),
])
def test_the_breakdown_by_value_sorts_as_the_utterances_do(api_client, sort, want):
    rows = get_json(api_client, f"/api/breakdown?by=spk&sort={sort}&page_size=100")["rows"]
    assert [r["value"] for r in rows] == want
    csv_rows = get_csv(api_client, f"/api/breakdown.csv?by=spk&sort={sort}")
    assert [r["value"] or None for r in csv_rows] == want
    utterances = get_json(api_client, f"/api/utterances?sort={sort.replace('value', 'spk')}&page_size=100")["rows"]
    assert list(dict.fromkeys(r.get("spk") for r in utterances)) == want  # the groups in the utterances' order
