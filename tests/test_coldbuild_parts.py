"""The cold build's cheaper steps give what the old ones gave: parts of one size (no short last
part leaving a core idle), whitespace collapsed only where a string needs it."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from sde.build.merge import join_parts
from sde.build.part_files import build_and_write
from sde.build.parts import Part, split_lines
from sde.cache import COLUMN_FILE_SEPARATOR
from sde.dataset import DatasetOptions, build_dataset
from sde.manifest import ManifestPart
from sde.text import collapse_whitespace, word_lists

# (lines, bytes per line, part_bytes): the file's size is not a multiple of part_bytes
EVEN_CASES = {
    "ten parts and a bit": (1_050, 100, 10_000),
    "two parts and a bit": (210, 100, 10_000),
    "a few lines past one part": (103, 100, 10_000),
}


@pytest.mark.parametrize("lines, width, part_bytes", EVEN_CASES.values(), ids=EVEN_CASES.keys())
def test_parts_are_of_one_size_no_short_last_part(tmp_path, lines, width, part_bytes):
    path = tmp_path / "m.json"
    data = b"".join(b"x" * (width - 1) + b"\n" for _ in range(lines))
    path.write_bytes(data)
    parts = split_lines(str(path), part_bytes)
    sizes = [p.stop - p.start for p in parts]
    assert len(parts) == -(-len(data) // part_bytes)  # as many as part_bytes asks for
    assert max(sizes) <= part_bytes + width
    assert max(sizes) - min(sizes) <= width  # one line's difference at most
    assert [p.first_line for p in parts] == [data[:p.start].count(b"\n") for p in parts]


# Each column is collapsed as " ".join(s.split()) would (missing values stay missing).
COLLAPSE_CASES = {
    "single plain spaces only": ["a b c", "dd ee", "", "f"],
    "a double space": ["a b", "c  d", "e"],
    "leading and trailing spaces": [" a b", "c d ", "e"],
    "a tab and a newline": ["a\tb", "c\nd", "e f"],
    "non-ASCII whitespace": ["a\u00a0b", "c\u3000d", "e\u2009f", "g h"],
    "non-ASCII letters, no odd whitespace": ["café au lait", "l’eau", "naïve"],
    "missing values": [None, "a  b", None, "c d"],
    "all need it": ["  a", "b  ", " c "],
    "only blanks": ["", " ", "\t", None],
}


@pytest.mark.parametrize("texts", COLLAPSE_CASES.values(), ids=COLLAPSE_CASES.keys())
@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()], ids=["string", "large_string"])
def test_whitespace_is_collapsed_as_str_split_joins(texts, kind):
    expected = [None if t is None else " ".join(t.split()) for t in texts]
    arr = pa.array(["x  y", *texts, "z"], type=kind).slice(1, len(texts))  # a slice: offsets not at 0
    out = collapse_whitespace(arr)
    assert out.type == kind
    assert out.to_pylist() == expected
    chunked = collapse_whitespace(pa.chunked_array([arr, arr], type=kind))
    assert chunked.to_pylist() == expected * 2
    words = word_lists(arr).to_pylist()
    assert words == [None if t is None else (t.split() or [""]) for t in texts]


def test_a_hypothesis_starting_at_a_part_boundary_joins_as_one_piece_reads_it(tmp_path):
    # the parts before the boundary lack pred_text_b, those after have it on every line: its
    # counts were joined as integers with nulls (pandas copied the column at every start), where a
    # one-piece read has floats with NaN
    rows = [{"audio_filepath": f"a{i}.wav", "duration": 1.0 + i, "text": "the cat sat", "pred_text": "the cat sat",
             **({"pred_text_b": "a cat sat"} if i >= 4 else {})} for i in range(8)]
    lines = [json.dumps(r).encode() + b"\n" for r in rows]
    manifest = tmp_path / "m.json"
    manifest.write_bytes(b"".join(lines))
    cut = len(b"".join(lines[:4]))
    parts = [Part(str(manifest), ManifestPart(0, cut, 0)), Part(str(manifest), ManifestPart(cut, manifest.stat().st_size, 4))]
    folder = tmp_path / "build"
    folder.mkdir()
    infos = [build_and_write(part, DatasetOptions(), folder, k) for k, part in enumerate(parts)]
    joined = join_parts(infos, folder, DatasetOptions(), threads=1)
    one_piece = build_dataset(str(manifest)).utterances
    for column in ("sub_b", "del_b", "ins_b"):
        stored = ipc.open_file(pa.memory_map(str(joined.files[f"utterances{COLUMN_FILE_SEPARATOR}{column}"]))).read_all()[column]
        assert str(one_piece[column].dtype) == "float64"
        assert stored.type == pa.float64() and stored.null_count == 0  # NaN, as pandas maps it
        assert joined.dtypes["utterances"][column] == "float64"
