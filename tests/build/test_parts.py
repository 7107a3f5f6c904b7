"""Where sde.build cuts a manifest: whole lines, every byte once, line counts that add up."""

from __future__ import annotations

import pytest

from sde.build.parts import split_lines

CASES = {
    "lines shorter than a part": (b"a\nbb\nccc\ndddd\n", 4),
    "no newline at the end": (b"a\nbb\nccc", 3),
    "a line longer than a part": (b"x" * 50 + b"\nshort\n", 8),
    "blank lines": (b"\n\n\na\n\n", 2),
    "one byte per part": (b"a\nb\nc\n", 1),
}


@pytest.mark.parametrize("data, part_bytes", CASES.values(), ids=CASES.keys())
def test_parts_cover_the_file_in_whole_lines(tmp_path, data, part_bytes):
    path = tmp_path / "m.json"
    path.write_bytes(data)
    parts = split_lines(str(path), part_bytes)
    assert parts[0].start == 0 and parts[-1].stop == len(data)
    for before, after in zip(parts, parts[1:]):
        assert before.stop == after.start
        assert data[before.stop - 1:before.stop] == b"\n"  # a part ends where a line does
        assert after.first_line == before.first_line + data[before.start:before.stop].count(b"\n")
    assert all(p.stop > p.start for p in parts)


def test_an_empty_file_is_one_empty_part(tmp_path):
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    assert [(p.start, p.stop, p.first_line) for p in split_lines(str(path))] == [(0, 0, 0)]
