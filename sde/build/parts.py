"""Where a dataset is cut into parts of about PART_BYTES: a manifest at line boundaries; the
manifests of a set (shards) grouped, consecutive small ones into one part, a big one cut in lines."""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from sde.manifest import ManifestPart
from sde.manifest.files import is_gzip
from sde.manifest.formats import GZIP_MAGIC, first_line_is_nemo
from sde.sources import RemoteError, SourceSet, is_url, remote
from sde.sources.lhotse_source import head_kind

# Big enough that a part's fixed costs (a task, a few files) are noise, small enough that two
# workers building one part each stay far below the memory budget (~150 MB per 32 MB part).
PART_BYTES = 32 << 20
# A single local manifest up to this size is built in one piece, where its peak memory
# (:func:`one_piece_memory`) fits: parsing and aligning run on every core either way, and the one
# piece is served before its cache entry is written, skipping the part files and their join
# (100k lines of 31 words, 48 MiB: ready in 1.33-1.39 s instead of 2.22-2.36 s). Bigger ones gain
# less and pay more (1M lines of 15 words, 306 MiB: ~1 s sooner, its cache entry ~4 s later, peak
# memory 1.4 GB instead of 1.05): they are built part by part, in memory that does not grow with
# the manifest, and resume when interrupted.
ONE_PIECE_BYTES = 128 << 20
# A one-piece build's peak resident memory: about this many times the manifest, plus the
# process's own (measured: 48 MiB → ~0.40 GB, 306 MiB → 1.2-1.46 GB).
ONE_PIECE_MEMORY_FACTOR = 4
ONE_PIECE_BASE_MEMORY = 300 << 20
# ... and of the machine's memory, at most this share, where no --memory-limit is given.
ONE_PIECE_MEMORY_SHARE = 1 / 8
# Read in blocks (not mapped): a mapping's pages would count in the process's resident memory.
BLOCK_BYTES = 8 << 20
# What the NeMo check reads of a manifest's head.
HEAD_BYTES = 1 << 16
# A gzip stream cannot be cut at byte offsets: a gzip manifest is built part by part from a copy
# decompressed into the build folder (sde.build.remote_parts). Its decompressed size is unknown
# until then (the gzip trailer holds it modulo 4 GiB, and of the last member only), so it is sized
# at this many times its compressed bytes: more than NeMo manifests compress (the benchmark's:
# 4.5x; long repeated paths, short texts: ~10x), so that no big one is read in one piece. Sizing
# high costs little: once decompressed, the real size chooses between parts and one piece (read
# from the copy), as for a plain manifest; small ones keep the streamed one-piece read.
GZIP_RATIO = 32


@dataclass(frozen=True)
class Part:
    """What one part of a build reads: lines of one manifest, or whole manifests of a set."""

    manifest: str | SourceSet  # a manifest's path, or some manifests of a set (SourceSet.subset)
    lines: ManifestPart | None = None  # these lines of it; None: the manifests whole
    # Of a set: the bytes of all its local manifests, which size the cap on extra fields (0: each
    # manifest's own, where some are remote), as in the one-piece read (sde.manifest.several)
    dataset_bytes: int = 0

    @property
    def files(self) -> list[str]:
        """The local files the part reads."""
        if isinstance(self.manifest, SourceSet):
            return [s.readable for s in self.manifest.sources]
        return [self.manifest]

    @property
    def shown(self) -> str:
        """How messages name what the part belongs to: the manifest as given, or the dataset."""
        if isinstance(self.manifest, SourceSet):
            return self.manifest.name if self.manifest.several else self.manifest.sources[0].given
        return self.manifest


def one_piece_memory(manifest_bytes: int) -> int:
    """About the peak resident memory of building a manifest of this size in one piece."""
    return ONE_PIECE_MEMORY_FACTOR * manifest_bytes + ONE_PIECE_BASE_MEMORY


def one_piece_limit(memory_bytes: int) -> int:
    """The biggest single local manifest built in one piece with ``memory_bytes`` to spend (a
    --memory-limit, else a share of the machine's memory): at most :data:`ONE_PIECE_BYTES`, 0
    where even a small one would not fit."""
    return max(0, min(ONE_PIECE_BYTES, (memory_bytes - ONE_PIECE_BASE_MEMORY) // ONE_PIECE_MEMORY_FACTOR))


def split_parts(manifest: str | SourceSet, part_bytes: int = PART_BYTES) -> list[Part]:
    """The parts of a manifest (its path) or of a set of local manifests, in line order."""
    if not isinstance(manifest, SourceSet):
        return [Part(manifest, lines) for lines in _split_lines(manifest, part_bytes)]
    if not manifest.several:  # one manifest read through its Source (a remote one's local copy)
        return [Part(manifest, lines) for lines in _split_lines(manifest.sources[0].readable, part_bytes)]
    parts: list[Part] = []
    group: list = []
    group_bytes = 0
    whole = 0 if any(s.remote for s in manifest.sources) else sum(file_size(s.location) for s in manifest.sources)
    for source in manifest.sources:
        size = file_size(source.readable)  # a missing manifest (0): its part says so, as a one-piece read
        if group and (size > part_bytes or group_bytes + size > part_bytes):
            parts.append(Part(manifest.subset(group), dataset_bytes=whole))
            group, group_bytes = [], 0
        if size > part_bytes:  # a big manifest of the set: cut in lines
            one = manifest.subset([source])
            parts.extend(Part(one, lines, whole) for lines in _split_lines(source.readable, part_bytes))
        else:
            group.append(source)
            group_bytes += size
    if group:
        parts.append(Part(manifest.subset(group), dataset_bytes=whole))
    return parts


def cut_in_parts(sources: SourceSet, part_bytes: int = PART_BYTES) -> bool:
    """Whether ``sources`` are built part by part (:func:`parts_format`)."""
    return parts_format(sources, part_bytes) is not None


def parts_format(sources: SourceSet, part_bytes: int = PART_BYTES) -> str | None:
    """How ``sources`` (local, remote or both) are built part by part: "nemo" (NeMo JSON lines) or
    "cuts" (one Lhotse CutSet) of more than ``part_bytes`` in all, a gzip-compressed manifest
    counting :data:`GZIP_RATIO` times its size (it is decompressed first); None when they are not:
    another format (a Lhotse recordings + supervisions pair, a Shar directory, several CutSets), or
    a store that cannot be reached (the one-piece read reports that with its fix)."""
    try:
        found = remote.details([s.location for s in sources.sources if s.remote]) \
            if any(s.remote for s in sources.sources) else {}
        sizes = [int((found.get(s.location) or {}).get("size") or 0) if s.remote else file_size(s.location)
                 for s in sources.sources]
        # judged by its first bytes where that costs a local read; a remote shard by its name (the
        # copy is judged by its bytes before it is cut: sde.build.remote_parts)
        expected = [size * GZIP_RATIO if (s.location.endswith(".gz") if s.remote else is_gzip(s.location)) else size
                    for s, size in zip(sources.sources, sizes)]
        # the first manifest with lines (an empty gzip has bytes, not lines), read only if need be
        heads = (read_head(s.location) for s, size in zip(sources.sources, sizes) if size)
        if sum(expected) <= part_bytes:
            return None
        head = next((h for h in heads if h.strip()), b"")
        if first_line_is_nemo(head):
            return "nemo"
        return "cuts" if len(sources) == 1 and is_cutset_head(head) else None
    except (RemoteError, OSError):
        return None


def is_cutset_head(head: bytes) -> bool:
    """Whether a manifest's first bytes (decompressed) start a Lhotse CutSet, which is cut in lines
    as a NeMo manifest is (each cut is one line whose rows depend on it alone)."""
    return head_kind(head) == "cuts"


def is_cutset(location: str) -> bool:
    """Whether a manifest (a local path or a URL) is a Lhotse CutSet; False when it cannot be read."""
    try:
        return is_cutset_head(read_head(location))
    except (RemoteError, OSError):
        return False


def head_is_nemo(location: str) -> bool:
    """Whether a manifest (a local path or a URL; gzip-compressed or not) starts with a NeMo JSON
    line; raises OSError or RemoteError when it cannot be read."""
    return first_line_is_nemo(read_head(location))


def read_head(location: str) -> bytes:
    """The first bytes of a manifest's content (decompressed where it is gzip-compressed, past
    empty members; empty where the stream is damaged: the one-piece read says so); raises OSError
    or RemoteError when it cannot be read."""
    if not is_url(location):
        with open(location, "rb") as f:
            head = f.read(HEAD_BYTES)
    else:
        with remote.reading(location):
            with remote.open_file(location, ranged=True) as f:
                head = f.read(HEAD_BYTES)
    if not head.startswith(GZIP_MAGIC):
        return head
    content = b""
    try:  # the start of its content, from its first compressed bytes (an empty member says nothing)
        while not content and head.startswith(GZIP_MAGIC):
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            content = member.decompress(head, HEAD_BYTES)
            head = member.unused_data
    except zlib.error:
        return b""  # damaged: the one-piece read says so
    return content


def _split_lines(path: str, part_bytes: int) -> list[ManifestPart | None]:
    """:func:`split_lines`, except that a gzip-compressed file is one part read whole (None),
    decompressed as it goes: a gzip stream cannot be cut at byte offsets. A build decompresses
    gzip manifests first (sde.build.remote_parts); one it could not (damaged, unreadable) is read
    whole, and its part says what the one-piece read would."""
    return [None] if is_gzip(path) else list(split_lines(path, part_bytes))


def file_size(path: str) -> int:
    """A local file's size; 0 when it cannot be read (a missing shard: its part says so)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def split_lines(path: str, part_bytes: int = PART_BYTES) -> list[ManifestPart]:
    """Parts of about ``part_bytes`` covering the whole file, each ending after a newline (or at
    the end of the file), each knowing how many lines come before it. The file is cut into as
    many parts as ``part_bytes`` asks for, all of about the same size: a short last part left a
    core idle while the others' last parts were built (1M lines, 306 MiB, on 2 workers: 10 parts,
    the last 18 MiB)."""
    size = os.path.getsize(path)
    if size == 0:
        return [ManifestPart(0, 0, 0)]
    count = -(-size // max(1, part_bytes))
    bounds: list[tuple[int, int]] = []
    with open(path, "rb") as f:
        start = 0
        while start < size:
            # the k-th part ends at the first line end past k/count of the file (not past its own
            # start plus a share: each part's overshoot to a line end would pile up on the last)
            at = max(start + 1, -(-(len(bounds) + 1) * size // count))
            stop = _line_end(f, min(at, size), size)
            bounds.append((start, stop))
            start = stop
    # counted on threads (reading and numpy's compare let go of the GIL): the workers start when
    # every part knows its first line's number (1M lines, 306 MiB: 0.26 s on one core, 0.14 s on two)
    with ThreadPoolExecutor(min(len(bounds), os.cpu_count() or 1)) as pool:
        counts = list(pool.map(lambda bound: _newlines_in(path, *bound), bounds))
    before = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
    return [ManifestPart(start, stop, lines) for (start, stop), lines in zip(bounds, before)]


def _newlines_in(path: str, start: int, stop: int) -> int:
    with open(path, "rb") as f:
        return _count_newlines(f, start, stop)


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
    # numpy's vectorised compare counts ~1.4x faster than bytes.count, into one reused buffer
    f.seek(start)
    block = bytearray(min(BLOCK_BYTES, max(0, stop - start)))
    view = memoryview(block)
    count, left = 0, stop - start
    while left > 0:
        read = f.readinto(view[:min(len(block), left)])
        if not read:
            break
        count += int(np.count_nonzero(np.frombuffer(view[:read], dtype=np.uint8) == 10))
        left -= read
    return count
