"""A column written as labels takes its codes from the pass that wrote it (no second read of its
strings): the label file is the one a lookup of every row in the sorted values writes, byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sde import compressed_columns as cc

CHUNKS = {
    "few values, one chunk": [["b", "a", "c"] * 3_000],
    "several chunks with different values": [["a", "b"] * 2_000, ["c", "a"] * 3_000, ["d"] * 5_000],
    "missing values": [["a", None, "b"] * 3_000, ["b", "a"] * 2_000],
    "a chunk of missing values only": [[None] * 5_000, ["x", "y"] * 4_000, [None] * 10],
    "non-ascii values": [["é", "你好", "😀", ""] * 3_000],
    "over 127 values: 16-bit codes": [[f"v{i % 300}" for i in range(20_000)]],
}


def _labels_by_lookup(path: Path, values: pa.Array, rows: int) -> bytes:
    """The label file a lookup of every row in ``values`` writes (the way before codes were kept)."""
    stats = {"rows": rows, "nulls": 0, "bytes": 0, "lower": True, "single_line": True}
    column = cc.CompressedColumn(path)
    stats.update(nulls=sum(c.null_count for c in column.chunks()),
                 bytes=sum(cc._data_bytes(c) for c in column.chunks()),
                 lower=cc.holds_no_ascii_upper(list(column.chunks())),
                 single_line=cc.holds_no_line_break(list(column.chunks())))
    column.close()
    cc._rewrite_as_labels(path, values, stats)
    return path.read_bytes()


@pytest.mark.parametrize("kept_bytes", [cc.KEPT_CODE_BYTES, 1], ids=["codes kept", "over the budget: looked up"])
@pytest.mark.parametrize("chunks", list(CHUNKS.values()), ids=list(CHUNKS))
def test_labels_from_kept_codes_equal_a_lookup(tmp_path: Path, chunks: list[list], kept_bytes: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cc, "KEPT_CODE_BYTES", kept_bytes)
    arrays = [pa.array(chunk, type=pa.large_string()) for chunk in chunks]
    rows = sum(len(a) for a in arrays)
    written = tmp_path / "labels.arrow"
    assert cc.write_compressed(written, "v", arrays) == rows
    column = cc.open_column(written)
    assert isinstance(column, cc.LabelColumn)
    assert column.take(np.arange(rows)).to_pylist() == [v for chunk in chunks for v in chunk]
    values = column.dictionary
    column._source.close()

    plain = tmp_path / "plain.arrow"
    cc.write_compressed(plain, "v", arrays, labels=False)
    assert written.read_bytes() == _labels_by_lookup(plain, values, rows)
