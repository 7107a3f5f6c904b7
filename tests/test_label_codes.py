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

BUDGET = cc.KEPT_CODE_BYTES


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


# kept_bytes: the budget, the chunks are held as codes (labels written directly, the column never
# compressed); 1 byte, they are not (compressed as they come, then rewritten as labels looked up)
@pytest.mark.parametrize("kept_bytes", [BUDGET, 6_000, 1], ids=[
    "held as codes: labels directly", "the budget runs out after the first chunks", "over the budget at once"])
@pytest.mark.parametrize("chunks", list(CHUNKS.values()), ids=list(CHUNKS))
def test_labels_from_kept_codes_equal_a_lookup(tmp_path: Path, chunks: list[list], kept_bytes: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cc, "KEPT_CODE_BYTES", kept_bytes)
    compressed: list[str] = []
    opened = cc._CompressedWriter._open
    monkeypatch.setattr(cc._CompressedWriter, "_open",
                        lambda self: (self._writer is None and compressed.append(str(self.path))) or opened(self))
    arrays = [pa.array(chunk, type=pa.large_string()) for chunk in chunks]
    rows = sum(len(a) for a in arrays)
    written = tmp_path / "labels.arrow"
    assert cc.write_compressed(written, "v", arrays) == rows
    # compressed only where the codes were over the budget
    assert compressed == ([] if kept_bytes == BUDGET else [str(written)])
    column = cc.open_column(written)
    assert isinstance(column, cc.LabelColumn)
    assert column.take(np.arange(rows)).to_pylist() == [v for chunk in chunks for v in chunk]
    values = column.dictionary
    column._source.close()

    plain = tmp_path / "plain.arrow"
    cc.write_compressed(plain, "v", arrays, labels=False)
    assert written.read_bytes() == _labels_by_lookup(plain, values, rows)


def test_chunks_held_for_labels_are_compressed_in_order_when_the_values_turn_out_unique(tmp_path: Path) -> None:
    # three chunks of two values are held back as likely labels; the fourth's unique lines end that
    chunks = [["a", "b"] * 1_000, ["b", None] * 1_000, ["a"] * 500, [f"line {i}" for i in range(80_000)]]
    arrays = [pa.array(chunk, type=pa.large_string()) for chunk in chunks]
    written = tmp_path / "text.arrow"
    assert cc.write_compressed(written, "text", arrays) == 84_500
    column = cc.open_column(written)
    assert isinstance(column, cc.CompressedColumn)
    assert column.take(np.arange(84_500)).to_pylist() == [v for chunk in chunks for v in chunk]
    plain = tmp_path / "plain.arrow"
    cc.write_compressed(plain, "text", arrays, labels=False)
    assert written.read_bytes() == plain.read_bytes()
