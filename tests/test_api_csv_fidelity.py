"""The CSV twins write every cell as users' spreadsheets and scripts have always read it: numbers
in Python's text for them, missing values as empty cells, text quoted as RFC 4180 says, formulas
defused, rows ending in CRLF, whatever the view's rows and however it is cut into chunks. sde
writes CSV with Arrow (faster than pandas' writer); these pin what it writes to pandas' text."""

from __future__ import annotations

import csv
import io
import json
import math
import urllib.request
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sde.compressed_columns import take_rows
from sde.web.api.respond import FORMULA_PREFIXES, csv_chunks, escape_formulas

# ---------------------------------------------------------------- through the server

# (behaviour, a manifest's text value, the raw CSV cell sde writes for it)
TEXT_CELLS = [
    ("plain text is written as it is", "word", "word"),
    ("a comma is quoted", "hello, world", '"hello, world"'),
    ("quotes are doubled inside quotes", 'say "hi"', '"say ""hi"""'),
    ("a line feed is quoted", "line\nbreak", '"line\nbreak"'),
    ("a carriage return is quoted", "cr\rhere", '"cr\rhere"'),
    ("CRLF inside a cell is quoted", "a\r\nb", '"a\r\nb"'),
    ("a formula gets a leading quote", "=1+2", "'=1+2"),
    ("a formula holding quotes is defused and quoted", '=HYPERLINK("x")', '"\'=HYPERLINK(""x"")"'),
    ("text starting with a minus gets a leading quote", "-4", "'-4"),
    ("text starting with a plus gets a leading quote", "+plus", "'+plus"),
    ("text starting with an at gets a leading quote", "@at", "'@at"),
    ("text starting with a tab gets a leading quote", "\ttab", "'\ttab"),
    ("text starting with a carriage return is defused and quoted", "\r=cmd", "\"'\r=cmd\""),
    ("a formula after the first character is left alone", "a=b", "a=b"),
    ("unicode is written as it is", "naïve café 日本 🎉", "naïve café 日本 🎉"),
    ("a quote alone", '"', '""""'),
    ("a missing value is an empty cell", None, ""),
]

# (behaviour, a manifest's number, the raw CSV cell sde writes for it)
NUMBER_CELLS = [
    ("a tenth is 0.1, not 0.10000000000000001", 0.1, "0.1"),
    ("a whole number keeps its .0", 5.0, "5.0"),
    ("a large whole number keeps its .0", 1e15, "1000000000000000.0"),
    ("from 1e16 numbers have an exponent", 1e16, "1e+16"),
    ("a small number below 1e-4 has a two-digit exponent", 1e-05, "1e-05"),
    ("1e-4 is still plain", 0.0001, "0.0001"),
    ("seventeen digits when they are needed", 50 / 3, "16.666666666666668"),
    ("a third", 1 / 3, "0.3333333333333333"),
    ("a fraction with twelve digits before the point", 123456789012.5, "123456789012.5"),
    ("minus zero", -0.0, "-0.0"),
    ("a negative number is a number, not a formula", -2.5, "-2.5"),
    ("a tiny number", 2.5e-7, "2.5e-07"),
    ("the largest number", 1.7976931348623157e308, "1.7976931348623157e+308"),
    ("a missing number is an empty cell", None, ""),
]


def _manifest(path):
    """One line per case, its value between two markers: `before`, `note` (text), `score`
    (a number), `after`."""
    cases = [("text", text, None) for _, text, _ in TEXT_CELLS] + [("number", None, n) for _, n, _ in NUMBER_CELLS]
    lines = [{"audio_filepath": f"audio/{i}.wav", "duration": 1.0 + i, "text": "a b c", "before": f"b{i}",
              "note": note, "score": score, "after": f"a{i}", "kind": kind}
             for i, (kind, note, score) in enumerate(cases)]
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.browser_kit import sde_server

    manifest = _manifest(tmp_path_factory.mktemp("csv_fidelity") / "tricky.json")
    with sde_server(str(manifest)) as url:
        yield url


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.headers.get_content_type() == "text/csv"
        return r.read()


def _utterances_csv(base: str, **params) -> str:
    return _get(f"{base}/api/utterances.csv" + (f"?{urlencode(params)}" if params else "")).decode("utf-8")


@pytest.mark.parametrize("behaviour, value, cell", TEXT_CELLS, ids=[c[0] for c in TEXT_CELLS])
def test_text_cells(server, behaviour, value, cell):
    body = _utterances_csv(server)
    i = TEXT_CELLS.index((behaviour, value, cell))
    assert f",b{i},{cell},,a{i}," in body, body        # then its empty `score`


@pytest.mark.parametrize("behaviour, value, cell", NUMBER_CELLS, ids=[c[0] for c in NUMBER_CELLS])
def test_number_cells(server, behaviour, value, cell):
    body = _utterances_csv(server)
    i = len(TEXT_CELLS) + NUMBER_CELLS.index((behaviour, value, cell))
    assert f",b{i},,{cell},a{i}," in body, body       # its empty `note`, then its score


def test_every_row_ends_in_crlf_and_reads_back(server):
    body = _utterances_csv(server)
    assert body.endswith("\r\n") and "\r\n\r\n" not in body
    rows = list(csv.DictReader(io.StringIO(body, newline="")))
    assert len(rows) == len(TEXT_CELLS) + len(NUMBER_CELLS)
    notes = [r["note"] for r in rows if r["kind"] == "text"]
    assert notes == [_defused(text) for _, text, _ in TEXT_CELLS]
    scores = [r["score"] for r in rows if r["kind"] == "number"]
    assert scores == [cell for _, _, cell in NUMBER_CELLS]


def _defused(text):
    if text is None:
        return ""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


# (behaviour, query of the view) — its CSV has the rows of the JSON view, in its order
VIEWS = [
    ("every row", {}),
    ("sorted, descending", {"sort": "-duration"}),
    ("sorted by text, a subset", {"filter": '{kind} = "text"', "sort": "note"}),
    ("a filtered subset", {"filter": "{duration} > 10 && {duration} < 20"}),
    ("an empty view has the header alone", {"filter": "{duration} > 1000"}),
]


@pytest.mark.parametrize("behaviour, query", VIEWS, ids=[v[0] for v in VIEWS])
def test_views_have_their_rows_in_their_order(server, behaviour, query):
    body = _utterances_csv(server, **query)
    with urllib.request.urlopen(f"{server}/api/utterances?{urlencode({**query, 'page_size': 1000})}",
                                timeout=60) as r:
        expected = [row["id"] for row in json.loads(r.read())["rows"]]
    rows = list(csv.DictReader(io.StringIO(body, newline="")))
    assert [int(r["id"]) for r in rows] == expected
    assert body.startswith("id,line,audio_filepath,")


# ---------------------------------------------------------------- csv_chunks against pandas' writer

def _pandas_csv(df: pd.DataFrame, positions) -> str:
    """What sde wrote before: the header, then pandas' to_csv of the rows with formulas escaped."""
    rows = df.iloc[np.asarray(positions, dtype=np.int64)]
    header = df.iloc[:0].rename(columns={c: "'" + c for c in df.columns
                                         if isinstance(c, str) and c.startswith(FORMULA_PREFIXES)})
    return (header.to_csv(index=False, lineterminator="\r\n")
            + escape_formulas(rows).to_csv(index=False, header=False, lineterminator="\r\n"))


def _floats(seed: int = 0) -> np.ndarray:
    """Numbers of every scale, the edges of Python's plain and exponent texts, and random bits."""
    rng = np.random.default_rng(seed)
    edges = [0.0, -0.0, 0.1, 0.2, 0.3, 1 / 3, 2 / 3, 5.0, 100.0, 1e-4, 9.999999999999999e-5, 1e-5, 1e15, 1e16,
             9999999999999998.0, 1e16 + 2, 1e21, 1e22, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
             np.inf, -np.inf, np.nan, 123456789012.5, 0.000123, 12345678.9, 4.35, 2.675, 1.005]
    powers = np.concatenate([10.0 ** np.arange(-320, 300), 3 * 10.0 ** np.arange(-300, 300)])
    scaled = np.concatenate([rng.random(5000) * 100, np.round(rng.random(5000) * 100, 2), rng.random(2000) * 1e17,
                             rng.standard_normal(2000) * 1e-3, rng.integers(-10**9, 10**9, 2000).astype(float)])
    bits = rng.integers(0, 2**64, 5000, dtype=np.uint64).view(np.float64)
    return np.concatenate([edges, powers, -powers, scaled, -scaled, bits])


TEXTS = ["word", "", "hello, world", 'say "hi"', "line\nbreak", "cr\rhere", "a\r\nb", "=1+2", '=HYPERLINK("x")',
         "-4", "+plus", "@at", "\ttab", "\r=cmd", "a=b", "naïve café 日本 🎉", '"', ",", "'quoted", " lead space"]


def _texts(dtype) -> pd.Series:
    return pd.Series(TEXTS + [None], dtype=dtype)


# (behaviour, frame): csv_chunks writes what pandas' to_csv wrote
FRAMES = [
    ("floats of every scale", lambda: pd.DataFrame({"x": _floats(), "n": np.arange(len(_floats()))})),
    ("floats alone in their row", lambda: pd.DataFrame({"x": _floats()})),
    ("float32", lambda: pd.DataFrame({"x": np.array([0.1, 5.0, 1 / 3, np.nan, 1e20], dtype=np.float32),
                                      "s": ["a"] * 5})),
    ("ints, negative and large", lambda: pd.DataFrame({"i": np.array([0, -1, 2**63 - 1, -2**63, 42]),
                                                       "u": np.array([0, 1, 2**64 - 1, 7, 8], dtype=np.uint64),
                                                       "i8": np.array([-128, 0, 127, 1, 2], dtype=np.int8)})),
    ("booleans", lambda: pd.DataFrame({"b": [True, False, True], "s": ["x", "y", "z"]})),
    ("ints with missing values", lambda: pd.DataFrame({"i": pd.array([1, None, -3], dtype="Int64"),
                                                       "b": pd.array([True, None, False], dtype="boolean"),
                                                       "f": pd.array([0.1, None, 5.0], dtype="Float64")})),
    ("ints that became floats for a missing value", lambda: pd.DataFrame({"i": [3, None, -7], "s": ["a", "b", "c"]})),
    ("text, arrow strings", lambda: pd.DataFrame({"t": _texts("string[pyarrow]"), "n": range(len(TEXTS) + 1)})),
    ("text, python strings", lambda: pd.DataFrame({"t": _texts("string[python]"), "n": range(len(TEXTS) + 1)})),
    ("text, the str dtype", lambda: pd.DataFrame({"t": _texts("str"), "n": range(len(TEXTS) + 1)})),
    ("text, objects", lambda: pd.DataFrame({"t": _texts(object), "n": range(len(TEXTS) + 1)})),
    ("text alone in its row, empty and missing", lambda: pd.DataFrame({"t": _texts("string[pyarrow]")})),
    ("objects alone in their row, empty and missing", lambda: pd.DataFrame({"t": ["", None, np.nan, "x"]})),
    ("objects with missing values of every kind", lambda: pd.DataFrame({"t": ["a", None, np.nan, pd.NA, "-b"],
                                                                        "n": range(5)})),
    ("objects that are not all text", lambda: pd.DataFrame({"t": ["a", -4, 2.5, None, b"=x", "=y"], "n": range(6)})),
    ("categories", lambda: pd.DataFrame({"c": pd.Categorical(["=a", "b", None, "b"]), "n": range(4)})),
    ("dates", lambda: pd.DataFrame({"d": pd.to_datetime(["2024-01-02 00:00:00", None, "1999-12-31 23:59:59"]),
                                    "n": range(3)})),
    ("risky column names", lambda: pd.DataFrame({"=cmd": ["x"], "-neg": [1.5], "@at": [1], "plain": ["y"]})),
    ("all text missing", lambda: pd.DataFrame({"t": pd.Series([None, None], dtype="string[pyarrow]"),
                                               "f": [np.nan, np.nan]})),
]


@pytest.mark.parametrize("behaviour, frame", FRAMES, ids=[f[0] for f in FRAMES])
def test_csv_is_what_pandas_wrote(behaviour, frame):
    df = frame()
    everything = np.arange(len(df))
    assert "".join(csv_chunks(df, everything)) == _pandas_csv(df, everything)


@pytest.mark.parametrize("behaviour, frame", FRAMES, ids=[f[0] for f in FRAMES])
def test_a_sorted_subset_in_small_chunks_is_what_pandas_wrote(behaviour, frame):
    df = frame()
    subset = np.random.default_rng(1).permutation(len(df))[: max(1, len(df) * 2 // 3)]
    for chunk_rows, rows in ((1, 40), (2, 40), (7, 40), (1000, None), (100_000, None)):
        positions = subset[:rows]
        assert "".join(csv_chunks(df, positions, chunk_rows=chunk_rows)) == _pandas_csv(df, positions), chunk_rows


def test_floats_are_written_as_python_writes_them():
    values = _floats()
    text = "".join(csv_chunks(pd.DataFrame({"x": values, "n": 0}), np.arange(len(values))))
    cells = [line.split(",")[0] for line in text.split("\r\n")[1:-1]]
    assert cells == ["" if math.isnan(v) else repr(float(v)) for v in values]


def test_a_scattered_view_of_compressed_text_is_taken_in_larger_runs_and_written_the_same(tmp_path, monkeypatch):
    from sde.compressed_columns import BATCH_ROWS, CompressedColumn, CompressedStringArray, write_compressed
    from sde.web.api import respond

    texts = [TEXTS[i % len(TEXTS)] + f" {i}" if i % 13 else None for i in range(3 * BATCH_ROWS + 5)]
    write_compressed(tmp_path / "t.arrow", "text", [pa.array(texts)], labels=False)
    df = pd.DataFrame({"text": pd.Series(CompressedStringArray.over(CompressedColumn(tmp_path / "t.arrow")),
                                         copy=False), "n": np.arange(len(texts))})
    taken: list[int] = []

    def counted_take(frame, positions):
        taken.append(len(positions))
        return take_rows(frame, positions)

    monkeypatch.setattr(respond, "take_rows", counted_take)
    scattered = np.random.default_rng(5).permutation(len(texts))
    chunks = list(csv_chunks(df, scattered, chunk_rows=1000, scattered_rows=5000))
    assert "".join(chunks) == _pandas_csv(df, scattered)
    assert taken == [5000, 5000, len(texts) - 10_000]  # not 13 takes of 1,000
    assert len(chunks) == 1 + 13  # still sent 1,000 rows at a time, after the header
    taken.clear()
    in_order = np.arange(len(texts))
    assert "".join(csv_chunks(df, in_order, chunk_rows=1000, scattered_rows=5000)) == _pandas_csv(df, in_order)
    assert taken == [1000] * 12 + [len(texts) - 12_000]
