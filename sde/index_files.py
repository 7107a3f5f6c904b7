"""Word indexes and text ranks kept in files beside their column, mapped at the next start.

A transcript column's word index (sde.word_index), its pairs of common words and joins of words
(sde.word_joins), and a text column's ranks (the sort keys) take a server's warm-up tens of seconds
at 10M lines, on every start, in memory that counts against --memory-limit. They depend on the
column's values alone, and a stored column never changes (a new build writes a new file), so each
is written once beside the column's file (``<column file>.<part>.sdeidx``) and the next start maps
it: ready at once, its pages the kernel's to drop and read again, not the process's own memory.

A file holds named numpy arrays and Arrow tables, each at an offset aligned to 64 bytes after a
JSON header, and is read without a copy (``np.frombuffer`` / Arrow IPC over the mapped file). It is
written to a temporary file in the same folder and renamed into place, read-only: a reader sees a
whole file or none. One that does not read back as written (another version of sde, a truncated
copy) is ignored, and the part built again. Where the folder cannot be written (a read-only cache),
the part stays in memory as before; so it does under a cache folder opened read-only
(:func:`write_none_under`), whose subfolders may still be writable (``chmod a-w`` of the folder).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from sde.word_index import Postings, WordIndex, no_pairs
from sde.word_joins import WordJoins, JoinSegment

__all__ = ["PARTS", "SORT_PARTS", "SUFFIX", "TEMP_PREFIX", "files_beside", "part_path", "read_index", "read_number_ranks",
           "read_ranks", "write_none_under", "write_number_ranks", "write_part", "write_ranks"]

#: Written in the header; a file of another format version is ignored (and its part built again).
FORMAT = 1
SUFFIX = ".sdeidx"
TEMP_PREFIX = ".tmp-sdeidx-"
_MAGIC = b"SDEIDX\x00\x01"
_ALIGN = 64
#: The parts of a word index, each a file, in the order they are built (pairs and joins grow the words).
PARTS = ("words", "pairs", "joins")

#: The sort keys of a text column, each a file: its ranks in text order, or, for a column holding
#: values that read as numbers, its ranks in number-first order (sde.filters.engine.number_first_ranks).
SORT_PARTS = ("ranks", "number-ranks")

#: Folders under which no index file is written (write_none_under), each ending with a separator.
_READ_ONLY_FOLDERS: set[str] = set()


def write_none_under(folder: str | os.PathLike) -> None:
    """From now on, write no index file beside a column under ``folder`` (a cache folder sde opened
    read-only, sde.cache.DatasetCache): those already there are read, new parts stay in memory."""
    _READ_ONLY_FOLDERS.add(os.path.join(os.path.realpath(folder), ""))


def _written_under_read_only(column_path: str) -> bool:
    path = os.path.realpath(column_path)
    return any(path.startswith(folder) for folder in _READ_ONLY_FOLDERS)


def part_path(column_path: str, part: str) -> str:
    """The file beside a column's file holding one part of its index (or ``ranks``)."""
    return f"{column_path}.{part}{SUFFIX}"


def files_beside(column_path: str) -> list[str]:
    """The index files written beside a column's file (its parts and ranks), where they exist."""
    return [path for path in (part_path(column_path, part) for part in (*PARTS, *SORT_PARTS)) if os.path.exists(path)]


def write_part(column_path: str, index: WordIndex, part: str) -> bool:
    """Write one part of ``index`` (see :data:`PARTS`) beside the column's file; False where it
    cannot be written (the folder is read-only, the disk full): the index then stays in memory."""
    blobs, meta = _ENCODERS[part](index)
    return _write(column_path, part, blobs, meta)


def read_index(column_path: str, rows: int) -> WordIndex | None:
    """The column's index as its files hold it, mapped: its words, with its pairs and joins where
    those were written too; None when the words are not (or not readable as written, or not of a
    column of ``rows`` lines)."""
    words = _read(column_path, "words")
    if words is None or words[1].get("rows") != rows:
        return None
    index = _decode_words(*words)
    for part, decode in (("pairs", _decode_pairs), ("joins", _decode_joins)):
        stored = _read(column_path, part)
        if stored is not None and stored[1].get("rows") == rows:
            index = decode(index, *stored)
    return index


def write_ranks(column_path: str, ranks: pa.Array) -> bool:
    """Write a text column's ranks (sde.compressed_columns.keep_ranks) beside its file."""
    return _write(column_path, "ranks", {"ranks": pa.table({"ranks": ranks})}, {"rows": len(ranks)})


def read_ranks(column_path: str, rows: int) -> pa.Array | None:
    """A text column's ranks as written beside its file, mapped; None where they are not."""
    stored = _read(column_path, "ranks")
    if stored is None or stored[1].get("rows") != rows:
        return None
    ranks = stored[0]["ranks"].column("ranks")
    return ranks.chunk(0) if ranks.num_chunks == 1 else ranks.combine_chunks()


def write_number_ranks(column_path: str, ranks: np.ndarray, numbers: int) -> bool:
    """Write a text column's number-first ranks (0: missing) and how many of them are numbers
    beside its file: a column where one line reads as a number ("2020") sorts by these, not by its
    text ranks, and they took ~3 s at every start of 10M lines."""
    return _write(column_path, "number-ranks", {"ranks": np.asarray(ranks)}, {"rows": len(ranks), "numbers": int(numbers)})


def read_number_ranks(column_path: str, rows: int) -> tuple[np.ndarray, int] | None:
    """(the ranks, how many are numbers) as :func:`write_number_ranks` wrote them, mapped; None
    where they are not."""
    stored = _read(column_path, "number-ranks")
    if stored is None or stored[1].get("rows") != rows or not isinstance(stored[1].get("numbers"), int):
        return None
    ranks = stored[0].get("ranks")
    if not isinstance(ranks, np.ndarray) or ranks.shape != (rows,) or ranks.dtype.kind != "u":
        return None
    return ranks, stored[1]["numbers"]


# -- the index's parts as arrays and tables ----------------------------------------------------


def _encode_postings(postings: Postings, prefix: str) -> dict[str, Any]:
    rows = [np.asarray(r) for r in postings.rows]
    bits = [np.asarray(b) for b in postings.bits]
    return {
        f"{prefix}bases": postings.bases,
        f"{prefix}rows": _pieces(rows, np.uint32),
        f"{prefix}row_offsets": np.cumsum([0, *(len(r) for r in rows)], dtype=np.int64),
        f"{prefix}bits": _pieces([b.reshape(-1) for b in bits], np.uint8),
        f"{prefix}bit_shapes": np.array([b.shape for b in bits], dtype=np.int64).reshape(-1, 2),
    }


def _decode_postings(blobs: Mapping[str, Any], prefix: str) -> Postings:
    rows, offsets = blobs[f"{prefix}rows"], blobs[f"{prefix}row_offsets"]
    bits, shapes = blobs[f"{prefix}bits"], blobs[f"{prefix}bit_shapes"]
    bit_ends = np.cumsum(shapes[:, 0] * shapes[:, 1]) if len(shapes) else np.zeros(0, dtype=np.int64)
    bit_starts = bit_ends - (shapes[:, 0] * shapes[:, 1]) if len(shapes) else bit_ends
    return Postings(blobs[f"{prefix}bases"],
                    tuple(rows[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())),
                    tuple(bits[a:b].reshape(int(n), int(w))
                          for a, b, (n, w) in zip(bit_starts.tolist(), bit_ends.tolist(), shapes.tolist())))


def _encode_words(index: WordIndex) -> tuple[dict[str, Any], dict[str, Any]]:
    vocabulary = index.vocabulary.drop_columns(["common"])  # the pairs' part says which are common
    return ({"words": index.words, "vocabulary": vocabulary, "nulls": index.nulls,
             **_encode_postings(index.postings, "")}, {"rows": index.rows})


def _decode_words(blobs: Mapping[str, Any], meta: Mapping[str, Any]) -> WordIndex:
    vocabulary = blobs["vocabulary"]
    vocabulary = vocabulary.add_column(1, "common", pa.array(np.zeros(vocabulary.num_rows, dtype=bool)))
    empty = Postings(np.array([meta["rows"]], dtype=np.int64), (), ())  # no pairs until their part is read
    return WordIndex(rows=int(meta["rows"]), words=blobs["words"], postings=_decode_postings(blobs, ""),
                     vocabulary=vocabulary, nulls=blobs["nulls"], pairs=no_pairs(), pair_postings=empty)


def _encode_pairs(index: WordIndex) -> tuple[dict[str, Any], dict[str, Any]]:
    common = index.vocabulary["common"].to_numpy(zero_copy_only=False).astype(bool)
    return ({"pairs": index.pairs, "common": common, **_encode_postings(index.pair_postings, "pair_")},
            {"rows": index.rows})


def _decode_pairs(index: WordIndex, blobs: Mapping[str, Any], meta: Mapping[str, Any]) -> WordIndex:
    common = blobs["common"]
    if len(common) != index.vocabulary.num_rows:
        return index  # not of these words: built again
    vocabulary = index.vocabulary.set_column(index.vocabulary.schema.get_field_index("common"), "common",
                                             pa.array(np.asarray(common, dtype=bool)))
    return replace(index, vocabulary=vocabulary, pairs=blobs["pairs"],
                   pair_postings=_decode_postings(blobs, "pair_"))


def _encode_joins(index: WordIndex) -> tuple[dict[str, Any], dict[str, Any]]:
    segments = index.joins.segments if index.joins is not None else ()
    kept = [k for s in segments for k in s.kept]
    flags = np.concatenate([np.asarray(s.bits, dtype=bool) for s in segments]) if segments else np.zeros(0, bool)
    as_bits = [k for k, bit in zip(kept, flags.tolist()) if bit]
    as_rows = [k for k, bit in zip(kept, flags.tolist()) if not bit]
    return ({"bases": np.array([s.base for s in segments], dtype=np.int64),
             "counts": np.array([s.rows for s in segments], dtype=np.int64),
             "codes": _pieces([s.codes for s in segments], np.uint16),
             "code_offsets": np.cumsum([0, *(len(s.codes) for s in segments)], dtype=np.int64),
             "flags": flags,
             "bit_rows": _pieces(as_bits, np.uint8),
             "bit_offsets": np.cumsum([0, *(len(k) for k in as_bits)], dtype=np.int64),
             "kept_rows": _pieces(as_rows, np.uint32),
             "kept_offsets": np.cumsum([0, *(len(k) for k in as_rows)], dtype=np.int64)},
            {"rows": index.rows})


def _decode_joins(index: WordIndex, blobs: Mapping[str, Any], meta: Mapping[str, Any]) -> WordIndex:
    flags = blobs["flags"].tolist()
    bit_offsets, kept_offsets = blobs["bit_offsets"].tolist(), blobs["kept_offsets"].tolist()
    kept, b, r = [], 0, 0
    for flag in flags:  # each code's rows or bits, in the order written
        if flag:
            kept.append(blobs["bit_rows"][bit_offsets[b]:bit_offsets[b + 1]])
            b += 1
        else:
            kept.append(blobs["kept_rows"][kept_offsets[r]:kept_offsets[r + 1]])
            r += 1
    codes, offsets = blobs["codes"], blobs["code_offsets"].tolist()
    segments = tuple(JoinSegment(int(base), int(count), codes[a:z], blobs["flags"][a:z], tuple(kept[a:z]))
                     for base, count, a, z in zip(blobs["bases"].tolist(), blobs["counts"].tolist(),
                                                  offsets[:-1], offsets[1:]))
    return replace(index, joins=WordJoins(index.rows, segments))


_ENCODERS = {"words": _encode_words, "pairs": _encode_pairs, "joins": _encode_joins}


# -- the file ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pieces:
    """One array written as these pieces back to back (a segment's postings each), so that a part
    of hundreds of MB is never concatenated in memory to be written; read back as one array."""

    dtype: np.dtype
    arrays: Sequence[np.ndarray]


def _pieces(arrays: Sequence[np.ndarray], dtype: Any) -> Pieces:
    return Pieces(np.dtype(arrays[0].dtype if len(arrays) else dtype), list(arrays))


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _write_blob(f: Any, blob: Any) -> dict[str, Any]:
    """Write one blob at the file's position; what the header says of it."""
    if isinstance(blob, pa.Table):
        began = f.tell()
        with pa.ipc.new_file(f, blob.schema) as writer:
            writer.write_table(blob)
        return {"kind": "table", "nbytes": f.tell() - began}
    if not isinstance(blob, Pieces):
        blob = Pieces(np.asarray(blob).dtype, [np.asarray(blob)])
    count = 0
    for array in blob.arrays:
        f.write(memoryview(np.ascontiguousarray(array, dtype=blob.dtype)).cast("B"))
        count += array.size
    shape = list(blob.arrays[0].shape) if len(blob.arrays) == 1 else [count]
    return {"kind": "array", "dtype": blob.dtype.str, "shape": shape, "nbytes": count * blob.dtype.itemsize}


def _column_stamp(column_path: str) -> dict[str, int] | None:
    """The column file's size and modification time: a file written for another column at the
    same path (a build folder written again) does not read back."""
    try:
        st = os.stat(column_path)
    except OSError:
        return None
    return {"column_bytes": st.st_size, "column_mtime_ns": st.st_mtime_ns}


def _write(column_path: str, part: str, blobs: Mapping[str, Any], meta: Mapping[str, Any]) -> bool:
    """One part's file beside its column: the blobs after a magic number, each at an offset aligned
    to :data:`_ALIGN`, then a JSON header (format, meta with the column's stamp, where each blob
    is), its length and the magic number again: written in one pass, the header last."""
    stamp = _column_stamp(column_path)
    if stamp is None or _written_under_read_only(column_path):
        return False
    target = part_path(column_path, part)
    meta = {**meta, **stamp}
    try:  # a temporary name sde.cache.remove_orphan_values removes where a writer was killed
        fd, tmp = tempfile.mkstemp(dir=Path(target).parent, prefix=TEMP_PREFIX, suffix=SUFFIX)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC)
            entries = []
            for name, blob in blobs.items():
                f.seek(_aligned(f.tell()))
                offset = f.tell()
                entries.append({**_write_blob(f, blob), "name": name, "offset": offset})
            header = json.dumps({"format": FORMAT, "meta": dict(meta), "blobs": entries}).encode()
            f.write(header + len(header).to_bytes(8, "little") + _MAGIC)
        os.chmod(tmp, 0o444)  # never written again: a mapped file that shrinks kills its reader
        os.replace(tmp, target)
        return True
    except (OSError, pa.ArrowException):
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


def _read(column_path: str, part: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A part's blobs (mapped, read-only) and meta; None where its file is missing, not as
    written, or written for another file at the column's path."""
    stamp = _column_stamp(column_path)
    try:
        buf = pa.memory_map(part_path(column_path, part), "r").read_buffer()
    except (OSError, pa.ArrowException):
        return None
    tail = len(_MAGIC) + 8
    try:
        if buf.size < len(_MAGIC) + tail or buf.slice(0, len(_MAGIC)).to_pybytes() != _MAGIC \
                or buf.slice(buf.size - len(_MAGIC)).to_pybytes() != _MAGIC:
            return None
        size = int.from_bytes(buf.slice(buf.size - tail, 8).to_pybytes(), "little")
        if size > buf.size - tail - len(_MAGIC):
            return None
        header = json.loads(buf.slice(buf.size - tail - size, size).to_pybytes())
        if header.get("format") != FORMAT or stamp is None \
                or any(header.get("meta", {}).get(k) != v for k, v in stamp.items()):
            return None
        blobs: dict[str, Any] = {}
        for entry in header["blobs"]:
            at, n = int(entry["offset"]), int(entry["nbytes"])
            if at < len(_MAGIC) or at + n > buf.size - tail - size:
                return None
            if entry["kind"] == "table":
                blobs[entry["name"]] = pa.ipc.open_file(buf.slice(at, n)).read_all()
            else:
                dtype = np.dtype(entry["dtype"])
                shape = tuple(int(s) for s in entry["shape"])
                array = np.frombuffer(buf, dtype=dtype, count=n // dtype.itemsize, offset=at)
                blobs[entry["name"]] = array.reshape(shape)
        return blobs, dict(header.get("meta", {}))
    except (ValueError, KeyError, TypeError, pa.ArrowException):
        return None
