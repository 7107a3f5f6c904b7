"""Audio path resolution: NeMo's rule (absolute paths and URLs as written, others joined to the
manifest's folder or ``--audio-base-path``), vectorised over a column.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sde.sources import is_url, remote
from sde.text import string_buffers

# A location of its own (s3://, https://): never joined to a folder.
_URL_START = r"^[A-Za-z][A-Za-z0-9+.\-]*://"
# Columns up to this size are resolved as one array (string offsets are 32-bit: stay well below 2 GB).
COMBINE_BYTES = 256 << 20


def resolve_paths(fp: pa.ChunkedArray, base: str) -> pa.ChunkedArray:
    """NeMo's rule, vectorised: absolute paths and URLs as written, others joined to base (a folder,
    or a URL's folder for a remote manifest); normalised."""
    prefix = base if base.endswith("/") else base + "/"
    base_is_url = is_url(base)
    if fp.num_chunks > 1 and fp.nbytes < COMBINE_BYTES:
        fp = pa.chunked_array([fp.combine_chunks()], pa.string())  # ~10 compute calls per chunk add up
    chunks = []
    for chunk in fp.chunks:
        urls = bool(_url_rows(chunk).any())
        if urls:
            chunk = _local_file_urls(chunk)
            urls = bool(_url_rows(chunk).any())
        is_abs = pc.starts_with(chunk, "/")
        if urls:  # s3://..., https://...: a location of its own, never joined to the base
            is_abs = pc.or_(is_abs, pc.match_substring_regex(chunk, _URL_START))
        rel = chunk
        if pc.any(pc.starts_with(chunk, "./")).as_py():
            rel = pc.replace_substring_regex(chunk, r"^(\./)+", "")  # the common "./x.wav"
        # inserting bytes at 0 is the join, at a third of binary_join_element_wise's cost
        out = pc.binary_replace_slice(rel, 0, 0, prefix)
        if pc.any(is_abs).as_py():  # the usual manifest has none: no if_else pass
            out = pc.if_else(is_abs, chunk, out)
        # "/." finds "/./", "/../" and a trailing "/." or "/.." (and hidden folders: harmless)
        if urls or base_is_url:  # "//" belongs in "s3://": only other double slashes need fixing
            dotty = _dotty_rows(out, every_double=False)
            normalise = remote.normalise
        else:
            dotty = _dotty_rows(out, every_double=True)
            normalise = os.path.normpath
        if dotty.any():
            mask = pa.array(dotty)
            fixed = [normalise(p) for p in pc.filter(out, mask).to_pylist()]
            out = pc.replace_with_mask(out, mask, pa.array(fixed, pa.string()))
        chunks.append(out)
    return pa.chunked_array(chunks, pa.string())


# Pair scans over a string array's UTF-8 bytes: Arrow's match_substring costs ~250 ns a string
# (most of a cold build's path resolution), these ~1 ns a byte. A pair of bytes read as one
# little-endian uint16 is first + 256 * second.
_SLASH = ord("/")
_SLASH_SLASH = _SLASH | _SLASH << 8
_DOT_TO_SLASH = 0x0100  # "." (0x2E) | 1 == "/" (0x2F): a second byte of either, made "/"


def _slash_pairs(data: np.ndarray, start: int, end: int, dot: bool) -> np.ndarray:
    """Positions p in [start, end - 1) where data[p] is "/" and data[p + 1] is "/" (or "." too,
    with ``dot``), ascending. Pairs across two values are in it: the caller drops them."""
    found = []
    for first in (start, start + 1):  # pairs at even and at odd distances from start
        count = (end - first) // 2
        if count <= 0:
            continue
        pairs = data[first : first + 2 * count].view("<u2")
        hit = ((pairs | _DOT_TO_SLASH) if dot else pairs) == _SLASH_SLASH
        if hit.any():
            found.append(np.flatnonzero(hit) * 2 + first)
    if not found:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(found))


def _pair_rows(arr: pa.Array, dot: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of :func:`_slash_pairs` that lie within one non-null value of ``arr``: their
    positions, their rows, the rows' offsets and the data bytes."""
    offsets, data = string_buffers(arr)
    start, end = int(offsets[0]), int(offsets[-1])
    pos = _slash_pairs(data, start, end, dot)
    if not pos.size:
        return pos, pos, offsets, data
    row = np.searchsorted(offsets, pos, side="right") - 1  # empty values hold no byte: skipped
    keep = pos + 1 < offsets[row + 1]  # a "/" ending one value and a "." or "/" starting the next
    if arr.null_count:  # a null's bytes (Arrow allows some) are no value
        keep &= arr.is_valid().to_numpy(zero_copy_only=False)[row]
    return pos[keep], row[keep], offsets, data


def relative_rows(arr: pa.Array) -> np.ndarray:
    """Rows (bool per row; nulls and empty paths False) whose path NeMo's rule joins to the
    manifest's folder: neither absolute nor a URL."""
    located = pc.or_(pc.starts_with(arr, "/"), pc.match_substring_regex(arr, _URL_START))
    written = pc.greater(pc.utf8_length(arr), 0)
    return np.asarray(pc.and_(written, pc.invert(located)).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _url_rows(arr: pa.Array) -> np.ndarray:
    """Rows holding "://" (bool per row; nulls False), as ``match_substring(arr, "://")``."""
    rows = np.zeros(len(arr), dtype=bool)
    pos, row, offsets, data = _pair_rows(arr, dot=False)
    after = pos > offsets[row]
    rows[row[after][data[pos[after] - 1] == ord(":")]] = True
    return rows


def _dotty_rows(arr: pa.Array, every_double: bool) -> np.ndarray:
    """Rows to normalise (bool per row; nulls False): those holding "/." or "//", as
    ``match_substring`` tells; without ``every_double``, a "//" only where a character other than
    ":" is before it, as ``match_substring_regex(arr, "[^:]//")`` tells (any byte of a UTF-8
    character but the first is a continuation byte, never ":")."""
    rows = np.zeros(len(arr), dtype=bool)
    pos, row, offsets, data = _pair_rows(arr, dot=True)
    hit = data[pos + 1] == ord(".")
    double = ~hit
    if every_double:
        hit |= double
    else:
        inside = double & (pos > offsets[row])
        hit[inside] = data[pos[inside] - 1] != ord(":")
    rows[row[hit]] = True
    return rows


def _local_file_urls(chunk: pa.Array) -> pa.Array:
    """``file:///data/a%20b.wav`` (and ``file://localhost/…``) as the local path it names
    (``/data/a b.wav``, percent-decoded as RFC 8089 writes it): a file URL is a local file, which
    sde checks, plays and measures as one (read as a URL, it was "not found" and never counted
    missing). A file URL naming another host is left as it is."""
    found = pc.match_substring_regex(chunk, "^(?i)file://(localhost)?/")
    if not pc.any(found).as_py():
        return chunk
    paths = [unquote(urlsplit(url).path) for url in pc.filter(chunk, found).to_pylist()]
    return pc.replace_with_mask(chunk, found, pa.array(paths, pa.string()))


def base_dir(path: str | Path, audio_base_path: str | Path | None) -> str:
    """Where relative audio paths start: --audio-base-path, else the manifest's own folder (a URL's
    folder for a remote manifest)."""
    if audio_base_path is not None:
        if is_url(str(audio_base_path)):
            return str(audio_base_path).rstrip("/")
        return os.path.abspath(os.path.expanduser(str(audio_base_path)))
    if is_url(str(path)):
        return remote.url_folder(str(path))
    return os.path.dirname(os.path.abspath(str(path)))


def resolve_audio_path(value: str, manifest: str | Path, audio_base_path: str | Path | None = None) -> str:
    """One line's audio_filepath resolved as read_manifest resolves the column (for tools that read
    a manifest line by line, such as ``sde transcribe``)."""
    return resolve_paths(pa.chunked_array([[value]], pa.string()), base_dir(manifest, audio_base_path))[0].as_py()
