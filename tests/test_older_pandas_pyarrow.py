"""sde on the oldest dependencies pyproject allows (Python 3.10 resolves pandas 2.3 and pyarrow 25).

Before, the suite had only run on pandas 3 and pyarrow 26, and on the older pair a warm start from
the cache answered /api/summary with 500 (pandas 2's ArrowStringArray takes no ``dtype``: any rows
taken from a compressed text column failed), and `sde stats` of a part-by-part build with a
hypothesis died joining the parts (pyarrow 25's file reader has no ``count_rows``). These tests pass
on both pairs; on the older one they failed before."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sde.compressed_columns import BATCH_ROWS, CompressedStringArray, open_column, write_compressed

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ROWS = BATCH_ROWS + 10  # two batches

# pandas' two Arrow string dtypes: "string" (missing is pd.NA) and "str" (missing is NaN)
DTYPES = {"string[pyarrow]": pd.StringDtype("pyarrow"), "str": pd.StringDtype("pyarrow", na_value=np.nan)}


def _values() -> list[str | None]:
    return [None if i % 7 == 3 else f"line {i}" for i in range(ROWS)]


@pytest.fixture(scope="module", params=[False, True], ids=["compressed", "labels"])
def column(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "text.arrow"
    values = _values() if not request.param else [None if v is None else v[-1] for v in _values()]
    assert write_compressed(path, "text", [pa.array(values, pa.large_string())], labels=request.param) == ROWS
    return open_column(path), values


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_rows_taken_from_compressed_text_keep_its_dtype_and_its_missing_values(column, dtype):
    stored, values = column
    series = pd.Series(CompressedStringArray.over(stored, dtype), copy=False)
    rows = [0, 3, ROWS - 1, BATCH_ROWS + 3]
    taken = series.iloc[rows]
    assert taken.dtype == dtype
    assert [None if pd.isna(v) else v for v in taken] == [values[i] for i in rows]
    assert taken.isna().tolist() == [values[i] is None for i in rows]
    # a reindex takes with -1 for a row that is not there: it comes back as the dtype's missing value
    padded = series.array.take(np.array([1, -1]), allow_fill=True)
    assert padded.dtype == dtype and padded[0] == values[1] and padded[1] is dtype.na_value


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_compressed_text_with_a_value_set_into_it_pickles_to_the_same_values(column, dtype):
    stored, values = column
    series = pd.Series(CompressedStringArray.over(stored, dtype), copy=False)
    series.iloc[0] = "set"  # read whole from here on: pickled as the plain Arrow strings it holds
    back = pickle.loads(pickle.dumps(series))
    assert back.dtype == dtype
    assert [None if pd.isna(v) else v for v in back] == ["set", *values[1:]]


def test_sde_stats_of_a_part_by_part_build_with_a_hypothesis_equals_the_one_piece_build(tmp_path):
    words = "the cat sat on a mat and then it ran far away".split()
    manifest = tmp_path / "m.json"
    with manifest.open("w") as f:
        for i in range(3000):  # ~0.4 MB: 6 parts of 64 KB
            text = " ".join(words[(i + k) % len(words)] for k in range(3 + i % 7))
            pred = " ".join(words[(i + k + (i % 3 == 0)) % len(words)] for k in range(3 + i % 7))
            f.write(json.dumps({"audio_filepath": f"a/{i}.wav", "duration": 1 + i % 5, "text": text,
                                "pred_text": pred}) + "\n")
    runs = {}
    for how, options in {"in one piece": [], "part by part": ["--part-size", "64KB"]}.items():
        done = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--no-cache", *options],
                              cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        runs[how] = done
    assert "joining 6 parts" in runs["part by part"].stderr, runs["part by part"].stderr
    assert "pred_text" in runs["part by part"].stdout
    assert runs["part by part"].stdout == runs["in one piece"].stdout
