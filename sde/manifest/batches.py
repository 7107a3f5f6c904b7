"""Small local manifests (shards) read as one: their bytes joined, parsed in one go, the rows split
back by file.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np

from sde.manifest.columns import string_column
from sde.manifest.files import CHUNK_BYTES, FileRead, finish_file, is_gzip, open_local, read_chunks, whole_file_reason
from sde.manifest.formats import SNIFF_BYTES, check_json_array, check_other_formats, first_line_is_nemo, head_checks
from sde.manifest.model import ManifestError, Problem
from sde.manifest.other_files import null_rows
from sde.manifest.paths import base_dir, resolve_paths
from sde.manifest.pieces import AUDIO_PATH, Piece, ReadState, Spec
from sde.sources import Source, SourceSet

# Local manifests up to SMALL_FILE_BYTES (shards) are parsed in batches of up to BATCH_BYTES.
SMALL_FILE_BYTES = 8 << 20
BATCH_BYTES = CHUNK_BYTES


def batch_jobs(sources: SourceSet, sizes: list[int | None]) -> list[list[tuple[int, Source]]]:
    """Consecutive small local files joined into batches of up to BATCH_BYTES; any other file
    (remote, large, missing) is a job of its own."""
    jobs: list[list[tuple[int, Source]]] = []
    batch: list[tuple[int, Source]] = []
    batch_bytes = 0
    for k, (source, size) in enumerate(zip(sources.sources, sizes)):
        # a gzip-compressed shard (judged by its first bytes: its name may not say) is read
        # (decompressed) by itself, as one file is
        small = size is not None and size <= SMALL_FILE_BYTES and not is_gzip(source.location)
        if batch and (not small or batch_bytes + (size or 0) > BATCH_BYTES):
            jobs.append(batch)
            batch, batch_bytes = [], 0
        if small:
            batch.append((k, source))
            batch_bytes += size or 0
        else:
            jobs.append([(k, source)])
    if batch:
        jobs.append(batch)
    return jobs


class _BatchState(ReadState):
    """The reading state of several small files parsed as one chunk: lines are counted over the
    whole batch, and problems are told by file and line within it."""

    def __init__(self, names: list[str], first_lines: np.ndarray, spec: Spec, strict: bool, size: int) -> None:
        super().__init__(names[0], spec, strict, size)
        self.names = names
        self.first_lines = first_lines  # lines of the batch before each file's first line

    def file_of(self, lines: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.first_lines, lines - 1, side="right") - 1

    def locate(self, problem: Problem) -> Problem:
        f = int(self.file_of(np.array([problem.line]))[0])
        return Problem(self.names[f], problem.line - int(self.first_lines[f]), problem.reason)

    def commit(self, problems: list[Problem]) -> None:
        super().commit([self.locate(q) for q in problems])

    def place(self, line: int) -> tuple[str, int]:
        shown = self.locate(Problem(self.names[0], max(1, line), ""))
        return shown.path, shown.line


def read_batch(batch: list[tuple[int, Source]], spec: Spec, strict: bool, audio_base_path: str | Path | None,
                rows_of: int | None) -> list[FileRead]:
    """Small manifests (shards) read as one: their bytes joined, parsed in one go, the rows split
    back by file. Parsing a file has a fixed cost (~2 ms) that 512 shards would pay 512 times;
    joined they cost what one file of the same lines costs."""
    buf = _batch_buffer(0)
    ends: list[int] = []  # where each kept file's bytes end in the buffer
    kept: list[tuple[int, Source]] = []
    failed: dict[int, FileRead] = {}
    for k, source in batch:
        try:
            buf, end = _read_small_file(source, buf, ends[-1] if ends else 0)
        except ManifestError as e:
            if strict:
                raise
            failed[k] = FileRead([], None, 0, [Problem(source.name, 0, whole_file_reason(
                str(e), source.name, source))], False, "")
            continue
        ends.append(end)
        kept.append((k, source))
    size = ends[-1] if ends else 0
    starts = [0] + ends[:-1]
    # numpy counts without holding the GIL, so the other reading threads go on meanwhile
    newlines = np.frombuffer(buf, np.uint8, size) == 10
    counts = np.array([np.count_nonzero(newlines[a:b]) for a, b in zip(starts, ends)], dtype=np.int64)
    del newlines
    first_lines = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(kept) else counts
    names = [source.name for _, source in kept] or [batch[0][1].name]
    state = _BatchState(names, first_lines, spec, strict, rows_of or size)
    pieces: list[Piece] = []
    if size:
        # a view of the thread's buffer: parsed values are copied out, so the next batch may reuse it
        read_chunks(iter([(memoryview(buf)[:size], size)]), state, pieces, size, names[0], False)
    bases = [base_dir(source.location, audio_base_path) for _, source in kept]
    problems_by_file: dict[str, list[Problem]] = {}
    for q in state.problems:
        problems_by_file.setdefault(q.path, []).append(q)
    reads = dict(failed)
    if len(set(bases)) == 1 and not any(_needs_other_files(p) for p in pieces):
        # The common case (shards of one folder, lines complete): the batch's pieces stay whole, each
        # row tagged with its file, and the first file's read carries them (the files are consecutive).
        rows = np.zeros(len(kept), dtype=np.int64)
        for piece in pieces:
            owner = state.file_of(piece.lines)
            rows += np.bincount(owner, minlength=len(kept))
            piece.lines = piece.lines - state.first_lines[owner]
            piece.source = np.asarray([k for k, _ in kept], dtype=np.int64)[owner]
            piece.cols[AUDIO_PATH] = resolve_paths(string_column([piece], "audio_filepath"), bases[0])
        for f, (k, source) in enumerate(kept):
            problems = problems_by_file.get(source.name, [])
            if not rows[f] and not problems:
                problems = [Problem(source.name, 0, "no utterances: the file is empty or has only blank lines")]
            reads[k] = FileRead(pieces if f == 0 else [], state, int(counts[f]), problems, False, bases[f])
        return [reads[k] for k, _ in batch]
    by_file = _split_by_file(pieces, state, len(kept))
    for f, (k, source) in enumerate(kept):
        reads[k] = finish_file(k, source.name, by_file[f], state, problems_by_file.get(source.name, []),
                                int(counts[f]), bases[f], strict, several=True)
    return [reads[k] for k, _ in batch]


def _needs_other_files(piece: Piece) -> bool:
    """Whether some row takes its duration from an audio header or its text from text_filepath."""
    return bool(null_rows(piece.cols.get("duration"), piece.n).any() or null_rows(piece.cols.get("text"), piece.n).any())


_thread_buffers = threading.local()


def _batch_buffer(size: int) -> bytearray:
    """This thread's buffer for batches, at least ``size`` bytes: reused from batch to batch, its
    pages are allocated once, not once per batch."""
    buf = getattr(_thread_buffers, "buf", None)
    if buf is None or len(buf) < size:
        grown = bytearray(max(size, BATCH_BYTES + SMALL_FILE_BYTES))
        if buf is not None:
            grown[:len(buf)] = buf
        buf = _thread_buffers.buf = grown
    return buf


def _read_small_file(source: Source, buf: bytearray, pos: int) -> tuple[bytearray, int]:
    """A small manifest read into ``buf`` at ``pos`` after the whole-file checks, without a BOM,
    ending with a newline: (the buffer, grown if need be; where the file's bytes end)."""
    f, size = open_local(source.location, source.name)
    with f:
        buf = _batch_buffer(pos + size + 1) if len(buf) < pos + size + 1 else buf
        with memoryview(buf) as view:
            n = f.readinto(view[pos:pos + size]) or 0
    head = bytes(buf[pos:pos + min(n, 4096)])
    head_checks(source.name, head)
    if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"["):
        check_json_array(source.name, io.BytesIO(bytes(buf[pos:pos + n])), head)
    if not first_line_is_nemo(head):
        check_other_formats(source.name, io.BytesIO(bytes(buf[pos:pos + min(n, SNIFF_BYTES)])))
    if head.startswith(b"\xef\xbb\xbf"):  # a BOM is not an error
        buf[pos:pos + n - 3] = buf[pos + 3:pos + n]
        n -= 3
    if n and buf[pos + n - 1] != 10:
        buf[pos + n] = 10
        n += 1
    return buf, pos + n


def _split_by_file(pieces: list[Piece], state: _BatchState, files: int) -> list[list[Piece]]:
    """The batch's pieces cut where one file's rows end, with line numbers within each file."""
    out: list[list[Piece]] = [[] for _ in range(files)]
    for piece in pieces:
        owner = state.file_of(piece.lines)
        cuts = np.concatenate([[0], np.flatnonzero(np.diff(owner)) + 1, [piece.n]])
        for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
            f = int(owner[a])
            cols = {key: col.slice(a, b - a) for key, col in piece.cols.items()}
            out[f].append(Piece(b - a, piece.lines[a:b] - state.first_lines[f], cols))
    return out
