"""sde.web.grid: AG Grid's filter and sort models as clauses of the filter language, and the
answer to a getRowsRequest (the infinite row model) over the hostile manifest of conftest.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sde.query import MAX_CLAUSES, MAX_SORT_KEYS, Clause, QueryError, TableQuery
from sde.web.grid import clauses_from_grid, grid_range, grid_rows, sort_from_grid
from sde.web.present import check_filter
from tests.conftest import XSS

STR = "string[pyarrow]"


@pytest.fixture
def tq() -> TableQuery:
    return TableQuery(pd.DataFrame({
        "id": np.arange(8, dtype=np.int64),
        "wer": [10.0, np.nan, 30.0, 20.0, 20.0, 5.0, 50.0, 0.0],
        "speaker": pd.array(["a", "b", "a", "b", None, "b", "a", "a"], dtype=STR),
    }))


def test_grid_filter_models():
    assert clauses_from_grid(None) == [] and clauses_from_grid({}) == []
    model = {
        "wer": {"filterType": "number", "type": "greaterThan", "filter": 20},
        "text": {"filterType": "text", "type": "contains", "filter": "hello"},
        "cer": {"filterType": "number", "type": "inRange", "filter": 1, "filterTo": 5},
        "spk": {"filterType": "text", "type": "notEqual", "filter": "s1"},
    }
    assert clauses_from_grid(model) == [
        Clause("wer", ">", 20.0), Clause("text", "contains", "hello"),
        Clause("cer", ">", 1.0), Clause("cer", "<", 5.0), Clause("spk", "!=", "s1"),
    ]
    assert clauses_from_grid({"cer": model["cer"]}, in_range_inclusive=True) == [
        Clause("cer", ">=", 1.0), Clause("cer", "<=", 5.0)]
    for gtype, op in [("equals", "="), ("notEqual", "!="), ("lessThan", "<"), ("lessThanOrEqual", "<="),
                      ("greaterThan", ">"), ("greaterThanOrEqual", ">=")]:
        assert clauses_from_grid({"x": {"filterType": "number", "type": gtype, "filter": "2.5"}}) == [
            Clause("x", op, 2.5)]
    # Combined conditions: AG Grid >= 29 ("conditions") and the older condition1/condition2.
    new = {"wer": {"filterType": "number", "operator": "AND", "conditions": [
        {"filterType": "number", "type": "greaterThan", "filter": 1},
        {"filterType": "number", "type": "lessThan", "filter": 9}]}}
    old = {"wer": {"filterType": "number", "operator": "AND",
                   "condition1": {"type": "greaterThan", "filter": 1},
                   "condition2": {"type": "lessThan", "filter": 9}}}
    assert clauses_from_grid(new) == clauses_from_grid(old) == [Clause("wer", ">", 1.0), Clause("wer", "<", 9.0)]
    # A condition with no value yet is skipped.
    assert clauses_from_grid({"wer": {"filterType": "number", "type": "equals", "filter": None}}) == []


@pytest.mark.parametrize("model, words", [
    ({"wer": {"filterType": "number", "operator": "OR", "conditions": []}}, "OR is not supported"),
    ({"t": {"filterType": "text", "type": "startsWith", "filter": "a"}}, "not supported"),
    ({"t": {"filterType": "text", "type": "blank"}}, "not supported"),
    ({"d": {"filterType": "date", "type": "equals", "dateFrom": "2024-01-01"}}, "date filters"),
    ({"s": {"filterType": "set", "values": ["a"]}}, "set filters"),
    ({"w": {"filterType": "number", "type": "equals", "filter": "abc"}}, "not a number"),
    ({"w": 3}, "expected an object"),
])
def test_grid_filter_model_errors(model, words):
    with pytest.raises(QueryError, match=words):
        clauses_from_grid(model)


def test_grid_models_drive_the_engine(tq):
    clauses = clauses_from_grid({"wer": {"filterType": "number", "type": "greaterThanOrEqual", "filter": 10},
                                    "speaker": {"filterType": "text", "type": "equals", "filter": "a"}})
    sort = sort_from_grid([{"colId": "wer", "sort": "desc"}])
    assert tq.select(clauses, sort).tolist() == [6, 2, 0]
    with pytest.raises(QueryError, match="Unknown column"):
        tq.select(clauses_from_grid({"nope": {"filterType": "number", "type": "equals", "filter": 1}}))


def test_sort_from_grid():
    assert sort_from_grid(None) == [] and sort_from_grid([]) == []
    assert sort_from_grid([{"colId": "wer", "sort": "desc"}, {"colId": "id", "sort": "asc"},
                           {"colId": "x", "sort": None}]) == [("wer", True), ("id", False)]
    with pytest.raises(QueryError):
        sort_from_grid([{"colId": "wer", "sort": "up"}])
    with pytest.raises(QueryError):
        sort_from_grid([{"sort": "asc"}])




@pytest.mark.parametrize("model, words", [
    ({"w": {"filterType": "number", "operator": "AND", "conditions": [
        {"operator": "AND", "conditions": [{"type": "equals", "filter": 1}]}]}}, "cannot be nested"),
    ({"w": {"filterType": "number", "operator": "AND", "conditions": "abc"}}, "must be a list"),
    ({f"c{i}": {"filterType": "number", "type": "equals", "filter": i} for i in range(MAX_CLAUSES + 1)},
     f"at most {MAX_CLAUSES}"),
    ({"w": {"filterType": "number", "operator": "AND",
            "conditions": [{"type": "equals", "filter": i} for i in range(MAX_CLAUSES + 1)]}}, f"at most {MAX_CLAUSES}"),
], ids=["nested", "not a list", "many columns", "many conditions"])
def test_grid_filter_models_are_bounded(model, words):
    with pytest.raises(QueryError, match=words):
        clauses_from_grid(model)

COLS = [f"c{i}" for i in range(MAX_SORT_KEYS + 1)]


@pytest.mark.parametrize("model, keys", [
    ([{"colId": "id", "sort": "asc"}] * 3_000, [("id", False)]),
    ([{"colId": "wer", "sort": "desc"}, {"colId": "id", "sort": "asc"}, {"colId": "wer", "sort": "asc"}],
     [("wer", True), ("id", False)]),                                  # a column's first key wins
    ([{"colId": c, "sort": "asc"} for c in COLS[:MAX_SORT_KEYS]], [(c, False) for c in COLS[:MAX_SORT_KEYS]]),
], ids=["one key 3000 times", "repeats", "the limit"])
def test_grid_sort_keys_are_deduplicated(model, keys):
    assert sort_from_grid(model) == keys


def test_more_grid_sort_columns_than_the_limit_raise_naming_it():
    with pytest.raises(QueryError, match=f"at most {MAX_SORT_KEYS}"):
        sort_from_grid([{"colId": c, "sort": "asc"} for c in COLS] * 500)


@pytest.mark.parametrize("request_, rows", [
    ({"startRow": 0, "endRow": 10}, (0, 10)),
    ({"startRow": 5}, (5, 105)),
    ({"startRow": -3, "endRow": 2.0}, (0, 2)),
    ({"startRow": 0, "endRow": 10**9}, (0, 1000)),
], ids=["plain", "no end", "negative start, float end", "hostile end"])
def test_grid_range_is_bounded(request_, rows):
    assert grid_range(request_) == rows


@pytest.mark.parametrize("request_", [{"startRow": "x"}, {"endRow": [1]}, {"startRow": True}])
def test_grid_range_refuses_non_numbers(request_):
    with pytest.raises(QueryError, match="whole number"):
        grid_range(request_)


# ---------------------------------------------------------------- getRowsRequest → rows

def test_grid_rows_translates_filter_and_sort_models(web_dataset):
    q, df = web_dataset.utterance_query, web_dataset.utterances
    request = {
        "startRow": 0, "endRow": 100,
        "filterModel": {"snr": {"filterType": "number", "type": "greaterThan", "filter": 5}},
        "sortModel": [{"colId": "duration", "sort": "desc"}],
    }
    r = grid_rows(q, df, request, '{speaker} = "en-us"')
    assert r.error is None
    assert [row["id"] for row in r.response["rowData"]] == [4]
    assert r.response["rowCount"] == r.total == 1
    assert r.effective == '{speaker} = "en-us" && {snr} > 5'
    assert r.sort == "-duration"
    # The effective text means the same to the API and the CSV export.
    assert list(q.select(r.effective, r.sort)) == [4]


def test_grid_rows_blocks(web_dataset):
    r = grid_rows(web_dataset.utterance_query, web_dataset.utterances, {"startRow": 1, "endRow": 3, "sortModel": []}, "")
    assert [row["id"] for row in r.response["rowData"]] == [1, 2]
    assert r.response["rowCount"] == 6
    assert r.effective == "" and r.sort == ""


def test_grid_rows_json_safe_and_text_verbatim(web_dataset):
    r = grid_rows(web_dataset.utterance_query, web_dataset.utterances, {"startRow": 0, "endRow": 10}, None)
    json.dumps(r.response, allow_nan=False)
    assert r.response["rowData"][2]["text"] == XSS


@pytest.mark.parametrize("box, model, words", [
    ("{nope} > 1", None, "nope"),
    ("", {"text": {"filterType": "text", "type": "startsWith", "filter": "a"}}, "startsWith"),
], ids=["box", "grid"])
def test_grid_rows_errors_are_messages(web_dataset, box, model, words):
    r = grid_rows(web_dataset.utterance_query, web_dataset.utterances,
                  {"startRow": 0, "endRow": 10, "filterModel": model}, box)
    assert r.error and words in r.error
    assert r.response == {"rowData": [], "rowCount": 0}


@pytest.mark.parametrize("text, words", [
    ("", None),
    ('{wer} > 20 && {speaker} = "en-gb"', None),
    ("{wer} > abc", "number"),
    ("{werr} > 2", "Did you mean"),
], ids=["empty", "valid", "not a number", "unknown column"])
def test_check_filter(web_dataset, text, words):
    message = check_filter(web_dataset.utterance_query, text)
    assert message is None if words is None else words in message
