"""Where a manifest is cut into parts: at line boundaries, about PART_BYTES each."""

from __future__ import annotations

import os
from typing import BinaryIO

from sde.manifest import ManifestPart

# Big enough that a part's fixed costs (a task, a few files) are noise, small enough that two
# workers building one part each stay far below the memory budget (~150 MB per 32 MB part).
PART_BYTES = 32 << 20
# Read in blocks (not mapped): a mapping's pages would count in the process's resident memory.
BLOCK_BYTES = 8 << 20


def split_lines(path: str, part_bytes: int = PART_BYTES) -> list[ManifestPart]:
    """Parts of about ``part_bytes`` covering the whole file, each ending after a newline (or at
    the end of the file), each knowing how many lines come before it."""
    size = os.path.getsize(path)
    if size == 0:
        return [ManifestPart(0, 0, 0)]
    parts: list[ManifestPart] = []
    with open(path, "rb") as f:
        start, lines = 0, 0
        while start < size:
            stop = _line_end(f, min(start + part_bytes, size), size)
            parts.append(ManifestPart(start, stop, lines))
            lines += _count_newlines(f, start, stop)
            start = stop
    return parts


def _line_end(f: BinaryIO, at: int, size: int) -> int:
    """The offset just after the first newline at or after ``at - 1`` (the end of the file if none)."""
    if at >= size:
        return size
    f.seek(at - 1)
    while block := f.read(1 << 16):
        newline = block.find(b"\n")
        if newline >= 0:
            return f.tell() - len(block) + newline + 1
    return size


def _count_newlines(f: BinaryIO, start: int, stop: int) -> int:
    f.seek(start)
    count, left = 0, stop - start
    while left > 0:
        block = f.read(min(BLOCK_BYTES, left))
        if not block:
            break
        count += block.count(b"\n")
        left -= len(block)
    return count
