"""The user's manifest lines behind a dataset's rows, read back byte for byte.

A dataset row knows its source file and its 1-based physical line (`line`). :func:`source_files`
names each row's file (with its size and modification time when sde read it); :class:`ManifestLines`
reads the lines back exactly as they are, checking first that no file changed since. Export (the
CLI and the streamed download) and reviews (whose keys name a row's file and line) both stand on it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Iterator, Mapping

import numpy as np
import pandas as pd

from sde.manifest.files import is_gzip
from sde.manifest.formats import GZIP_MAGIC
from sde.sources import as_source_set, remote

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

READ_CHUNK_BYTES = 4 << 20
STREAM_CHUNK_BYTES = 1 << 20
BOM = b"\xef\xbb\xbf"
# A line longer than this is not a manifest line sde loaded (the reader's own limit is far lower).
MAX_LINE_BYTES = 1 << 30


class ExportError(Exception):
    """An export that cannot be done as asked; the message names the file and the fix."""


@dataclass(frozen=True)
class SourceFile:
    """One manifest file behind a dataset, with its identity when sde read it."""

    path: str          # local path or URL, as opened
    name: str          # the `source` column's name (one file: its file name): review keys use it
    stamp: dict | None  # size and modification time (remote: size and ETag); None when unknown
    # a local file gzip-compressed, judged by its first bytes as sde read it (its name may not say);
    # a remote one is only ever streamed, and _open_source judges its bytes as it opens it
    compressed: bool = False

    @property
    def local(self) -> bool:
        return "://" not in self.path

    @property
    def seekable(self) -> bool:
        return self.local and not self.compressed

    @property
    def size(self) -> int | None:
        return (self.stamp or {}).get("size")


def _stamp(path: str) -> dict | None:
    if "://" in path:
        try:
            return remote.stamp(remote.info(path))
        except Exception:  # noqa: BLE001 - no stamp means no change check, the read still reports errors
            return None
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def local_stamps(manifest: Any) -> dict[str, dict]:
    """The stamp (size, modification time) of each local file among the sources ``manifest``
    names, by real path, taken now: before they are read (Dataset.read_stamps). Remote files are
    stamped when first read back, as before; sources that cannot be named give none."""
    try:
        located = [s.location for s in as_source_set(manifest).sources if not s.remote]
    except Exception:  # noqa: BLE001 - the build reports missing or unreadable sources, with their fix
        return {}
    stamps = {}
    for location in located:
        try:
            stamps[os.path.realpath(location)] = _stamp(location)
        except OSError:
            continue
    return stamps


def _source(path: str, name: str | None = None, read_stamps: Mapping[str, dict] | None = None) -> SourceFile:
    try:
        known = (read_stamps or {}).get(os.path.realpath(path)) if "://" not in path else None
        stamp = known or _stamp(path)
    except OSError as e:
        raise ExportError(f"{path}: cannot read the manifest ({e.strerror}); it was moved or deleted "
                          "after sde loaded it: restore it, or load the dataset again") from None
    return SourceFile(path, name or path.rstrip("/").rsplit("/", 1)[-1], stamp, "://" not in path and is_gzip(path))


def _opened(manifest_path: str) -> str:
    """What to open for a dataset's ``manifest_path``: a local one is absolute; a URL's is written
    ``scheme/bucket/key`` (sde.sources.SourceSet.manifest_path), and is opened as ``scheme://bucket/key``."""
    if "://" in manifest_path or os.path.isabs(manifest_path):
        return manifest_path
    scheme, _, rest = manifest_path.partition("/")
    return f"{scheme}://{rest}" if rest else manifest_path


def _declared_sources(dataset: "Dataset") -> dict[str, str]:
    """name → location of the dataset's files, when it records them (a SourceSet or Source list)."""
    declared = getattr(dataset, "source_set", None) or getattr(dataset, "sources", None)
    items = getattr(declared, "sources", declared) or []
    return {item.name: item.location for item in items if hasattr(item, "location") and hasattr(item, "name")}


def source_files(dataset: "Dataset") -> tuple[list[SourceFile], np.ndarray]:
    """The dataset's source files and, per row, the index of its file.

    A dataset read from several files has a `source` column naming each row's file relative to the
    folder they share; the file is found from the dataset's recorded sources, else beside the first
    file (`dataset.manifest_path`, whose path ends with the first row's name).
    """
    utt = dataset.utterances
    if "source" not in utt.columns:
        located = list(_declared_sources(dataset).values())
        path = located[0] if len(located) == 1 else _opened(str(dataset.manifest_path))
        return [_source(path, read_stamps=dataset.read_stamps)], np.zeros(len(utt), dtype=np.int32)
    codes, names = pd.factorize(utt["source"], sort=False)
    declared = _declared_sources(dataset)
    first = _opened(str(dataset.manifest_path))
    shared = first[: len(first) - len(str(names[0]))] if len(names) and first.endswith(str(names[0])) else None
    files = []
    for name in map(str, names):
        location = declared.get(name) or (shared + name if shared is not None else None)
        if location is None:
            raise ExportError(f"cannot tell where the source {name!r} of {dataset.name} is; load the dataset "
                              "again")
        files.append(_source(location, name, dataset.read_stamps))
    return files, np.asarray(codes, dtype=np.int32)


def _open_source(src: SourceFile) -> BinaryIO:
    try:
        if not src.local:
            raw = remote.open_file(src.path)
            magic = raw.read(len(GZIP_MAGIC))
            raw.seek(0)
            return gzip.GzipFile(fileobj=raw, mode="rb") if magic == GZIP_MAGIC else raw  # type: ignore[return-value]
        if src.compressed:
            return gzip.open(src.path, "rb")  # type: ignore[return-value]
        return open(src.path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as e:
        raise ExportError(f"{src.path}: cannot read the manifest ({e.strerror or e}); it was moved or "
                          "deleted after sde loaded it: restore it, or load the dataset again") from None


class _Scan:
    """One sequential read of a source that hands out the wanted lines (sorted line numbers)."""

    def __init__(self, src: SourceFile, digest: "hashlib._Hash | None" = None) -> None:
        self.src = src
        self.digest = digest
        self.line_end = b"\n"   # the file's line end, for a last line that lacks one
        self.lines_read = 0

    def lines(self, wanted: np.ndarray) -> Iterator[tuple[int, int, bytes]]:
        """(index into `wanted`, byte offset in the decompressed file, the line with its line end)."""
        n = len(wanted)
        k = 0
        with _open_source(self.src) as f:
            buf = self._read(f)
            offset = 3 if buf.startswith(BOM) else 0
            buf = buf[offset:]
            line_base = 0  # lines completed before buf[0]
            while True:
                ends = np.flatnonzero(np.frombuffer(buf, np.uint8) == 10)
                if len(ends):
                    last = line_base + len(ends)
                    j = int(np.searchsorted(wanted, last, side="right"))
                    if j > k:
                        idx = wanted[k:j] - line_base - 1
                        stops = ends[idx] + 1
                        starts = np.where(idx > 0, ends[np.maximum(idx - 1, 0)] + 1, 0)
                        for t, (s, e) in enumerate(zip(starts.tolist(), stops.tolist())):
                            yield k + t, offset + s, buf[s:e]
                        k = j
                    cut = int(ends[-1]) + 1
                    self.line_end = b"\r\n" if cut >= 2 and buf[cut - 2] == 13 else b"\n"
                    line_base = last
                    buf = buf[cut:]
                    offset += cut
                if k == n and self.digest is None:
                    self.lines_read = line_base
                    return
                chunk = self._read(f)
                if not chunk:
                    break
                if len(buf) > MAX_LINE_BYTES:
                    raise ExportError(f"{self.src.path}: line {line_base + 1} is longer than "
                                      f"{MAX_LINE_BYTES >> 20} MiB: this is not the file sde loaded; "
                                      "load the dataset again")
                buf = buf + chunk if buf else chunk
        self.lines_read = line_base + (1 if buf else 0)
        if buf and k < n and wanted[k] == line_base + 1:
            yield k, offset, buf + (b"\n" if buf.endswith(b"\r") else self.line_end)
            k += 1
        if k < n:
            raise ExportError(f"{self.src.path}: has {self.lines_read:,} lines, but sde loaded line "
                              f"{int(wanted[k]):,} from it: the file changed after sde read it; "
                              "load the dataset again (restart sde) and export again")

    def _read(self, f: BinaryIO) -> bytes:
        chunk = f.read(READ_CHUNK_BYTES)
        if self.digest is not None and chunk:
            self.digest.update(chunk)
        return chunk


def in_chunks(lines: Iterator[bytes], size: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
    """Lines joined into chunks of about ``size`` bytes (a streamed download)."""
    parts: list[bytes] = []
    held = 0
    for line in lines:
        parts.append(line)
        held += len(line)
        if held >= size:
            yield b"".join(parts)
            parts, held = [], 0
    if parts:
        yield b"".join(parts)


class ManifestLines:
    """The manifest lines behind a dataset's rows, read back byte for byte.

    Built once per dataset (it records each source's size and modification time); every read
    first checks them, so a file edited while sde runs is an error, never the wrong lines.
    """

    def __init__(self, dataset: "Dataset") -> None:
        self.sources, self.codes = source_files(dataset)
        self.lines = dataset.utterances["line"].to_numpy(dtype=np.int64)
        self.digests: dict[int, str] = {}

    def check_unchanged(self) -> None:
        for src in self.sources:
            if src.stamp is None:
                continue
            try:
                now = _stamp(src.path)
            except OSError as e:
                raise ExportError(f"{src.path}: cannot read the manifest ({e.strerror}); it was moved or "
                                  "deleted after sde loaded it: restore it, or load the dataset again") from None
            if now is not None and now != src.stamp:
                raise ExportError(f"{src.path}: the file changed after sde loaded it (size or modification "
                                  "time differ), so its line numbers may point at other lines; load the "
                                  "dataset again (restart sde) and export again")

    # -- reading -------------------------------------------------------------------------------

    def read(self, positions: np.ndarray, *, hash_sources: bool = False) -> Iterator[tuple[int, bytes]]:
        """(row position, the line's bytes with its line end), in the order of `positions`.

        `hash_sources` reads each source touched to its end and records its SHA-256 in `digests`.
        """
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) == 0:
            return
        self.check_unchanged()
        if self._in_file_order(positions):
            yield from self._read_in_order(positions, hash_sources)
        else:
            yield from self._read_by_offsets(positions, hash_sources)

    def chunks(self, positions: np.ndarray, size: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
        """The selected lines joined into chunks of about `size` bytes (a streamed download)."""
        return in_chunks((line for _, line in self.read(positions)), size)

    def source_digest(self, index: int) -> str:
        """SHA-256 of one source's bytes (computed once)."""
        if index not in self.digests:
            digest = hashlib.sha256()
            scan = _Scan(self.sources[index], digest)
            for _ in scan.lines(np.empty(0, dtype=np.int64)):
                pass
            self.digests[index] = digest.hexdigest()
        return self.digests[index]

    def _in_file_order(self, positions: np.ndarray) -> bool:
        codes = self.codes[positions]
        lines = self.lines[positions]
        same = codes[1:] == codes[:-1]
        if np.any(lines[1:][same] <= lines[:-1][same]):
            return False
        runs = 1 + int(np.count_nonzero(~same))
        return runs == len(np.unique(codes))

    def _scan(self, index: int, hash_sources: bool) -> _Scan:
        digest = hashlib.sha256() if hash_sources and index not in self.digests else None
        return _Scan(self.sources[index], digest)

    def _finish(self, index: int, scan: _Scan) -> None:
        if scan.digest is not None:
            self.digests[index] = scan.digest.hexdigest()

    def _read_in_order(self, positions: np.ndarray, hash_sources: bool) -> Iterator[tuple[int, bytes]]:
        codes = self.codes[positions]
        bounds = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(positions)]):
            index = int(codes[a])
            run = positions[a:b]
            scan = self._scan(index, hash_sources)
            for k, _, line in scan.lines(self.lines[run]):
                yield int(run[k]), line
            self._finish(index, scan)

    def _read_by_offsets(self, positions: np.ndarray, hash_sources: bool) -> Iterator[tuple[int, bytes]]:
        codes = self.codes[positions]
        lines = self.lines[positions]
        starts = np.empty(len(positions), dtype=np.int64)
        lengths = np.empty(len(positions), dtype=np.int64)
        files: dict[int, int] = {}
        line_ends: dict[int, bytes] = {}
        spools: list[IO[bytes]] = []
        try:
            for index in np.unique(codes).tolist():
                rows = np.flatnonzero(codes == index)
                wanted, where = np.unique(lines[rows], return_inverse=True)
                at, size, fd = self._index_source(index, wanted, hash_sources, spools, line_ends)
                starts[rows] = at[where]
                lengths[rows] = size[where]
                files[index] = fd
            for i, position in enumerate(positions.tolist()):
                index = int(codes[i])
                line = os.pread(files[index], int(lengths[i]), int(starts[i]))
                if not line.endswith(b"\n"):  # the file's last line, which has no line end
                    line += b"\n" if line.endswith(b"\r") else line_ends[index]
                yield position, line
        finally:
            for fd in {fd for index, fd in files.items() if self.sources[index].seekable}:
                os.close(fd)
            for spool in spools:
                spool.close()

    def _index_source(self, index: int, wanted: np.ndarray, hash_sources: bool, spools: list,
                      line_ends: dict) -> tuple[np.ndarray, np.ndarray, int]:
        """Byte offsets and lengths of the wanted lines, and a descriptor to read them at."""
        src = self.sources[index]
        at = np.empty(len(wanted), dtype=np.int64)
        size = np.empty(len(wanted), dtype=np.int64)
        scan = self._scan(index, hash_sources)
        if src.seekable:
            for k, offset, line in scan.lines(wanted):
                at[k] = offset
                size[k] = min(len(line), src.size - offset)
            fd = os.open(src.path, os.O_RDONLY)
        else:
            # Compressed or remote: the wanted lines go to a private temporary file, read back there.
            spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller's finally
            spools.append(spool)
            pos = 0
            for k, _, line in scan.lines(wanted):
                spool.write(line)
                at[k], size[k] = pos, len(line)
                pos += len(line)
            spool.flush()
            fd = spool.fileno()
        line_ends[index] = scan.line_end
        self._finish(index, scan)
        return at, size, fd
