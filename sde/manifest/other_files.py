"""Values a line takes from other files: durations from audio headers (lines without
``duration``) and texts from ``text_filepath`` (lines without ``text``).
"""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sde.sources import remote
from sde.manifest.careful import show_value
from sde.manifest.model import Problem
from sde.manifest.paths import resolve_paths
from sde.manifest.pieces import DURATION_SOURCE, Piece

# text_filepath files larger than this are not transcripts (and must not fill memory).
MAX_TEXT_FILE_BYTES = 1 << 20
# Audio headers and transcript files are read on this many threads (they mostly wait on the disk).
FILE_READ_THREADS = 16


def _header_duration(path: str) -> tuple[float | None, str | None]:
    """(seconds, None) from the audio file's header, or (None, why it cannot be read)."""
    from sde.audio import AudioError, file_info  # only manifests without durations need it

    remote.install_audio_opener()  # a header in an object store is read with byte ranges
    try:
        return float(file_info(path)["duration"]), None
    except AudioError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - any decoder failure is this line's problem, not a crash
        return None, f"{path}: {type(e).__name__}: {e}"


def _read_text_file(path: str) -> tuple[str | None, str | None]:
    """(text, None) as NeMo reads ``text_filepath`` (UTF-8, line breaks removed), or (None, why)."""
    try:
        # Not blocking: a FIFO opened for reading would wait for a writer forever (a stalled load).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            os.close(fd)
            raise
        if stat.S_ISDIR(mode):
            os.close(fd)
            return None, "is a directory"
        if not stat.S_ISREG(mode):
            os.close(fd)
            return None, "not a regular file (a pipe, socket or device): point it at a text file"
        with open(fd, "rb") as f:
            raw = f.read(MAX_TEXT_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, "file not found"
    except IsADirectoryError:
        return None, "is a directory"
    except PermissionError:
        return None, "permission denied"
    except OSError as e:
        return None, e.strerror or type(e).__name__
    if len(raw) > MAX_TEXT_FILE_BYTES:
        return None, f"larger than {MAX_TEXT_FILE_BYTES >> 20} MiB, not a transcript"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
    # NeMo opens the file in text mode (universal newlines) and drops every "\n"
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", ""), None


def _read_all(read: Any, paths: list[str]) -> dict[str, tuple[Any, str | None]]:
    """``read`` of every distinct path, on a thread pool (header and file reads wait on the disk)."""
    unique = list(dict.fromkeys(paths))
    if len(unique) < 8:
        return {p: read(p) for p in unique}
    with ThreadPoolExecutor(min(FILE_READ_THREADS, len(unique))) as pool:
        return dict(zip(unique, pool.map(read, unique, chunksize=64)))


def null_rows(col: pa.Array | pa.ChunkedArray | None, n: int) -> np.ndarray:
    if col is None:
        return np.ones(n, dtype=bool)
    return np.asarray(pc.is_null(col), dtype=bool) if col.null_count else np.zeros(n, dtype=bool)


def _as_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def fill_from_files(pieces: list[Piece], path: str, base: str) -> tuple[list[Piece], list[Problem], bool]:
    """Durations from audio headers (lines without one) and texts from ``text_filepath`` (lines
    without ``text``). Lines whose file cannot be read are left out, with a problem each.

    Returns the pieces (with a ``duration_source`` column when any header was read), the new
    problems, and whether any duration came from a header.
    """
    # A line with a shard_id (NeMo tarred audio) names a member of a tar, not a file: its duration
    # is read from the member's header once the tars are indexed (sde.sources.members).
    needs = [(null_rows(p.cols.get("duration"), p.n) & null_rows(p.cols.get("shard_id"), p.n),
              null_rows(p.cols.get("text"), p.n)) for p in pieces]
    if not any(d.any() or t.any() for d, t in needs):
        return pieces, [], False
    from_header = any(d.any() for d, _ in needs)
    durations = _read_all(_header_duration, [
        path_ for p, (d, _) in zip(pieces, needs) if d.any()
        for path_ in resolve_paths(pa.chunked_array([_as_array(p.cols["audio_filepath"]).filter(pa.array(d))]),
                              base).to_pylist()])
    texts = _read_all(_read_text_file, [
        path_ for p, (_, t) in zip(pieces, needs) if t.any()
        for path_ in resolve_paths(pa.chunked_array([_as_array(p.cols["text_filepath"]).cast(pa.string())
                                                .filter(pa.array(t))]), base).to_pylist()])
    problems: list[Problem] = []
    out: list[Piece] = []
    for p, (need_duration, need_text) in zip(pieces, needs):
        keep = np.ones(p.n, dtype=bool)
        cols = dict(p.cols)
        if need_duration.any():
            cols["duration"] = _durations_from_headers(p, need_duration, keep, durations, base, path, problems)
        if from_header:
            cols[DURATION_SOURCE] = pa.array(np.where(need_duration, "header", "manifest"), pa.string())
        if need_text.any():
            cols["text"] = _texts_from_files(p, need_text, keep, texts, base, path, problems)
        if not keep.all():
            mask = pa.array(keep)
            cols = {k: v.filter(mask) for k, v in cols.items()}
        out.append(Piece(int(keep.sum()), p.lines[keep], cols))
    problems.sort(key=lambda q: q.line)
    return [p for p in out if p.n], problems, from_header


def _durations_from_headers(p: Piece, need: np.ndarray, keep: np.ndarray,
                            found: dict[str, tuple[Any, str | None]], base: str, path: str,
                            problems: list[Problem]) -> pa.Array:
    """The piece's duration column with the missing values read from the audio headers; rows
    whose header cannot be read (or whose offset lies beyond the end) are cleared in ``keep``."""
    dur = p.cols.get("duration")
    values = np.full(p.n, np.nan) if dur is None else \
        _as_array(dur).cast(pa.float64()).to_numpy(zero_copy_only=False).copy()
    rows = np.flatnonzero(need)
    audio = resolve_paths(pa.chunked_array([_as_array(p.cols["audio_filepath"]).filter(pa.array(need))]), base).to_pylist()
    offset_col = p.cols.get("offset")
    offsets = np.zeros(p.n) if offset_col is None else \
        pc.fill_null(_as_array(offset_col).cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
    for row, audio_path in zip(rows.tolist(), audio):
        seconds, why = found[audio_path]
        offset = float(offsets[row])
        if seconds is None:
            reason = (f'missing field "duration" and the audio header cannot be read ({why}); '
                      'add "duration" to the line, or fix the audio file')
        elif offset > seconds:
            reason = (f'missing field "duration" and "offset" {offset:g} is beyond the end of the audio '
                      f'({seconds:.3f} s); fix the offset, or add "duration"')
        else:
            values[row] = seconds - offset
            continue
        keep[row] = False
        problems.append(Problem(path, int(p.lines[row]), reason))
    return pa.array(values, pa.float64())


def _texts_from_files(p: Piece, need: np.ndarray, keep: np.ndarray,
                      found: dict[str, tuple[Any, str | None]], base: str, path: str,
                      problems: list[Problem]) -> pa.Array:
    """The piece's text column with the missing values read from ``text_filepath``."""
    text = p.cols.get("text")
    values = [None] * p.n if text is None else _as_array(text).cast(pa.string()).to_pylist()
    written = _as_array(p.cols["text_filepath"]).cast(pa.string()).filter(pa.array(need))
    resolved = resolve_paths(pa.chunked_array([written]), base).to_pylist()
    for row, shown, text_path in zip(np.flatnonzero(need).tolist(), written.to_pylist(), resolved):
        content, why = found[text_path]
        if content is None:
            keep[row] = False
            problems.append(Problem(path, int(p.lines[row]),
                                    f'"text_filepath" {show_value(shown)} cannot be read ({why}); '
                                    'fix the path, or give the transcript as "text"'))
        else:
            values[row] = content
    return pa.array(values, pa.string())
