"""One manifest file: opened (local or a URL), checked as a whole, cut into chunks at line ends and
parsed into pieces; then completed from other files and tagged with its place among several.
"""

from __future__ import annotations

import gzip
import io
import mmap
import os
import shlex
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sde.manifest.columns import string_column
from sde.manifest.fast import chunk_pieces
from sde.manifest.formats import GZIP_MAGIC, check_json_array, check_other_formats, gzip_checks, head_checks
from sde.manifest.model import STRICT_HINT, ManifestError, ManifestPart, Problem
from sde.manifest.other_files import fill_from_files
from sde.manifest.paths import base_dir, resolve_paths
from sde.manifest.pieces import AUDIO_PATH, Piece, ReadState, Spec
from sde.progress import progress_bar
from sde.sources import RemoteError, Source, is_url, remote

# Chunk of the file handled at once: large enough for pyarrow's threads to pay off, small enough
# that a chunk falling back to the careful path costs well under a second, and memory stays low.
CHUNK_BYTES = 32 << 20


# How many problems a whole-file error quotes.
QUOTED_PROBLEMS = 5


def mapped_chunks(mm: mmap.mmap, start: int, stop: int | None = None) -> Iterator[tuple[memoryview | bytes, int]]:
    """(data, end offset) for chunks of the mapped file (up to ``stop``) that end with b"\\n".

    Zero-copy views of the mapping: no read() copies, and the kernel can drop pages behind us.
    A last line without its newline gets one (that chunk alone is copied).
    """
    size = len(mm) if stop is None else min(stop, len(mm))
    view = memoryview(mm)
    pos = start
    try:
        while pos < size:
            end = min(pos + CHUNK_BYTES, size)
            if end < size:
                cut = mm.rfind(b"\n", pos, end)
                if cut < 0:
                    cut = mm.find(b"\n", end)  # a line longer than a chunk
                end = size if cut < 0 else cut + 1
            if end == size and mm[size - 1:size] != b"\n":
                yield bytes(view[pos:end]) + b"\n", end
            else:
                yield view[pos:end], end
            pos = end
    finally:
        view.release()


def streamed_chunks(f: BinaryIO, start: int) -> Iterator[tuple[bytes, int]]:
    """(data, end offset) for chunks of a streamed file (a remote manifest) that end with b"\\n":
    CHUNK_BYTES at a time, the part after the last line end carried into the next chunk."""
    f.seek(start)
    carry = b""
    while True:
        block = f.read(CHUNK_BYTES)
        if not block:
            break
        data = carry + block if carry else block
        cut = data.rfind(b"\n")
        if cut < 0:  # a line longer than a chunk: keep reading
            carry = data
            continue
        carry = data[cut + 1:]
        yield data[:cut + 1], f.tell() - len(carry)
    if carry:
        yield carry + b"\n", f.tell()


def open_local(path: str, shown: str) -> tuple[BinaryIO, int]:
    if os.path.isdir(path):
        raise ManifestError(f"{shown}: is a directory; pass the manifest file inside it "
                            f"(a .json/.jsonl file with one JSON object per line)")
    try:
        f = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise ManifestError(f"{shown}: file not found; check the path (relative paths start from "
                            f"{os.getcwd()})") from None
    except OSError as e:
        raise ManifestError(f"{shown}: cannot open: {e.strerror}; check the file's permissions") from None
    return f, os.fstat(f.fileno()).st_size


def _open_remote(url: str) -> tuple[BinaryIO, int]:
    """A remote manifest, streamed with byte ranges (a buffered reader gives the line reads the
    format checks need); nothing is downloaded whole, but for a manifest of one block or less, read
    in one request: the format checks read to its end and seek back to its start, which emptied
    the buffer, so each read after them fetched the file again (3 GETs of a 2 KB manifest)."""
    try:
        found = remote.info(url)
        size = int(found.get("size") or 0)
        raw = remote.open_file(url, ranged=True, size=size, etag=remote.stamp(found)["etag"])
        if size <= remote.STREAM_BLOCK_BYTES:
            with remote.reading(url), raw:
                return io.BytesIO(raw.read()), size
    except RemoteError as e:
        raise ManifestError(str(e)) from None
    return io.BufferedReader(raw, buffer_size=remote.STREAM_BLOCK_BYTES), size


# What reading a damaged or cut-short gzip stream raises (gzip.BadGzipFile is an OSError).
GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def is_gzip(path: str) -> bool:
    """Whether a local file is gzip-compressed, judged by its first bytes (whatever its name); a
    file that cannot be read is not (its read says why)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    except OSError:
        return False


def damaged_gzip(shown: str, e: BaseException) -> ManifestError:
    """The one message for a gzip manifest that cannot be decompressed (read whole here, or
    decompressed to be built part by part: sde.build.remote_parts)."""
    check = "a copy of it with gzip -t" if "://" in shown else f"it with: gzip -t {shlex.quote(shown)}"
    return ManifestError(f"{shown}: the gzip-compressed file is damaged or cut short ({e}); compress it "
                         f"again, or check {check}")


def read_file(path: str | Path, spec: Spec, strict: bool, progress: bool, *, shown: str | None = None,
          rows_of: int | None = None, allow_empty: bool = False,
          part: "ManifestPart | None" = None) -> tuple[list[Piece], ReadState, int]:
    """Read one manifest file (local, or a URL) into pieces of valid rows.

    ``shown``: how messages name the file (default: ``path``). ``rows_of``: bytes of all the
    manifests read together (the cap on extra fields depends on the dataset's size).
    ``allow_empty``: a file without valid lines returns no pieces (its problems say why) instead
    of raising; several manifests are read this way, so one bad shard does not stop the others.
    ``part``: read only these lines of a local file (see ManifestPart).
    """
    location = str(path)
    shown = location if shown is None else shown
    is_remote = is_url(location)
    f, size = _open_remote(location) if is_remote else open_local(location, shown)
    compressed = False
    try:
        with f:
            head = f.read(4096)
            if head.startswith(GZIP_MAGIC) and part is None:  # sde export -o kept.json.gz, read back
                gzip_checks(shown, head)
                f.seek(0)
                f = gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[assignment]  # the file closes with the outer one
                compressed = True
                head = f.read(4096)
            head_checks(shown, head)
            check_json_array(shown, f, head)
            check_other_formats(shown, f)
            state = ReadState(shown, spec, strict, rows_of or size)
            pieces: list[Piece] = []
            total = 0
            if part is not None:
                total = _read_mapped(f, max(part.start, 3 if head.startswith(b"\xef\xbb\xbf") else 0),
                                     state, pieces, size, shown, progress, stop=part.stop, line0=part.first_line)
            elif size:
                start = 3 if head.startswith(b"\xef\xbb\xbf") else 0  # a BOM is not an error
                if is_remote or compressed:
                    total = read_chunks(streamed_chunks(f, start), state, pieces, size, shown, progress)
                else:
                    total = _read_mapped(f, start, state, pieces, size, shown, progress)
    except ManifestError:
        raise
    except GZIP_ERRORS as e:
        raise damaged_gzip(shown, e) from None
    except Exception as e:  # the connection (any backend's exception) or the disk failed mid-file
        if is_remote:
            raise ManifestError(str(remote.explain(location, e))) from None
        if isinstance(e, OSError):
            raise ManifestError(f"{shown}: cannot read: {e.strerror or e}") from None
        raise
    if not pieces and not allow_empty:
        _raise_no_pieces(shown, spec, state, head)
    return pieces, state, total


def _read_mapped(f: BinaryIO, start: int, state: ReadState, pieces: list[Piece], size: int, shown: str,
                 progress: bool, *, stop: int | None = None, line0: int = 0) -> int:
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return read_chunks(mapped_chunks(mm, start, stop), state, pieces, size, shown, progress, mm, line0=line0)
    finally:
        try:
            mm.close()
        except BufferError:  # a view still referenced by an in-flight exception: GC closes it
            pass


def read_chunks(chunks: Iterator[tuple[memoryview | bytes, int]], state: ReadState, pieces: list[Piece],
                 size: int, shown: str, progress: bool, mm: mmap.mmap | None = None, *, line0: int = 0) -> int:
    """Parse every chunk into ``pieces``; returns the number of physical lines (``line0``: lines
    before the first chunk, so that line numbers count from the file's start)."""
    total = line0
    bar = progress_bar(size, f"reading {Path(shown).name}", unit="B", unit_scale=True, enabled=progress,
                       unit_divisor=1024, leave=False)
    try:
        done = 0
        for data, end in chunks:
            if total == line0:
                state.estimate_rows(int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10)), len(data))
            for piece, problems, nlines in chunk_pieces(data, total, state):
                state.commit(problems)
                if piece.n:
                    pieces.append(piece)
                total += nlines
            if isinstance(data, memoryview):
                data.release()
            # the pages read so far are not needed again: keep them out of our RSS
            if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                mm.madvise(mmap.MADV_DONTNEED, 0, end - end % mmap.PAGESIZE)
            bar.update(end - done)
            done = end
        bar.set_postfix_str(f"{total - line0:,} line{'' if total - line0 == 1 else 's'}", refresh=False)
    finally:
        bar.close()
    return total - line0


def _raise_no_pieces(shown: str, spec: Spec, state: ReadState, head: bytes) -> None:
    if not state.problems:
        raise ManifestError(f"{shown}: no utterances: the file is empty or has only blank lines; "
                            "sde expects one JSON object per line with audio_filepath, duration and text")
    quoted = "\n  ".join(str(q) for q in state.problems[:QUOTED_PROBLEMS])
    more = len(state.problems) - QUOTED_PROBLEMS
    hint = (f"\n  ... and {more} more" if more > 0 else "")
    pretty = ""
    first_line = head.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].strip()
    if state.problems[0].line == 1 and first_line == b"{":
        pretty = ("\nIt looks like pretty-printed JSON; sde expects one object per line; "
                  "convert with: jq -c . in.json > out.json")
    need = "audio_filepath and pred_text" if spec.predictions else "audio_filepath, duration and text"
    raise ManifestError(f"{shown}: no valid utterances: every line is bad:\n  {quoted}{hint}{pretty}\n"
                        + _what_sde_expects(shown, state.problems, need))


def _what_sde_expects(shown: str, problems: list[Problem], need: str) -> str:
    """The closing advice of a manifest whose every line is bad: the encoding's fix when no line
    was UTF-8 (Latin-1 and Windows-1252 exports are the usual), else what a line must hold."""
    if all(q.reason.startswith("not valid UTF-8") for q in problems):
        return (f"the file is not UTF-8 (Latin-1 or Windows-1252, most likely); sde reads UTF-8 JSON Lines. "
                f"Convert it with: iconv -f WINDOWS-1252 -t UTF-8 {shown} > manifest.utf8.json")
    return f"sde expects one JSON object per line with {need}"


#: The tail of a skipped file's reason that is wrong once every file is skipped.
_READ_WITHOUT_IT = "; the other manifests are read without it"


def every_line_bad(shown: str, problems: list[Problem]) -> ManifestError:
    if problems and all(not q.line for q in problems):
        # several manifests, none of them readable: no line was bad, and no other manifest was read
        listed = "\n  ".join(f"{q.path}: {q.reason.removesuffix(_READ_WITHOUT_IT)}" for q in problems[:QUOTED_PROBLEMS])
        more = len(problems) - QUOTED_PROBLEMS
        return ManifestError(f"none of the {len(problems)} manifests could be read:\n  {listed}"
                             + (f"\n  ... and {more} more" if more > 0 else "")
                             + f"\ncheck the paths (relative ones are read from {os.getcwd()})")
    quoted = "\n  ".join(str(q) for q in problems[:QUOTED_PROBLEMS])
    more = len(problems) - QUOTED_PROBLEMS
    hint = f"\n  ... and {more} more" if more > 0 else ""
    return ManifestError(f"{shown}: no valid utterances: every line is bad:\n  {quoted}{hint}\n"
                         + _what_sde_expects(shown, problems, "audio_filepath, duration and text"))


@dataclass
class FileRead:
    """One manifest file read, with the durations and texts its lines take from other files."""

    pieces: list[Piece]
    state: ReadState | None  # None: the whole file failed (several manifests: one problem for it)
    total: int
    problems: list[Problem]
    from_header: bool
    base: str


def read_source(k: int, source: Source, shown: str, spec: Spec, strict: bool, progress: bool,
                 audio_base_path: str | Path | None, *, several: bool, rows_of: int | None,
                 part: ManifestPart | None = None) -> FileRead:
    """Read manifest number ``k``. Of several manifests, one that cannot be used at all (missing,
    empty, not a manifest) is one problem of its own, unless ``strict``."""
    base = base_dir(source.location, audio_base_path)
    try:
        pieces, state, total = read_file(source.readable, spec, strict, progress, shown=shown, rows_of=rows_of,
                                     allow_empty=several or part is not None, part=part)
    except ManifestError as e:
        if not several or strict:
            raise
        return FileRead([], None, 0, [Problem(shown, 0, whole_file_reason(str(e), shown, source))], False, base)
    return finish_file(k, shown, pieces, state, list(state.problems), total, base, strict, several)


def finish_file(k: int, shown: str, pieces: list[Piece], state: ReadState, problems: list[Problem], total: int,
                 base: str, strict: bool, several: bool) -> FileRead:
    """A file's lines completed from other files (durations, texts), and tagged with the file."""
    pieces, file_problems, from_header = fill_from_files(pieces, shown, base)
    if file_problems:
        if strict:
            raise ManifestError(f"{file_problems[0]}\n{STRICT_HINT}")
        problems = sorted(problems + file_problems, key=lambda q: q.line)
        if not pieces and not several:
            raise every_line_bad(shown, problems)
    if several and not pieces and not problems:
        problems = [Problem(shown, 0, "no utterances: the file is empty or has only blank lines")]
    for piece in pieces:
        piece.source = k
        if several and AUDIO_PATH not in piece.cols:  # on the reading threads, from the file's own folder
            piece.cols[AUDIO_PATH] = resolve_paths(string_column([piece], "audio_filepath"), base)
    return FileRead(pieces, state, total, problems, from_header, base)


def whole_file_reason(message: str, shown: str, source: Source) -> str:
    """Why one of several manifests was skipped, without repeating its name."""
    for prefix in (shown, source.location, source.given):
        message = message.removeprefix(f"{prefix}: ")
    if message.startswith(("file not found", "no such file")):
        return f"file not found ({source.given}){_READ_WITHOUT_IT}"
    return message
