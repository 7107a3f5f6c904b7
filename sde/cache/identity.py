"""Whether a cache entry still describes its input files when their size and modification time did
not change.

The entry's key holds each file's path, size and modification time (sde.cache.datasets.fingerprint):
stable across a copy of the file with its times, a chmod, a remount. But an edit that keeps the size
(``sed -i 's/teh/the/'``, a fixed label, a digit) with the modification
time set back (``rsync -t``, ``cp -p``, ``touch -r``, a script's ``os.utime``) keeps the key too:
the entry then served the old lines as the new ones. Like git's index, each entry also keeps its
files' inode and change time (which no user can set back), and a digest of their content:

* inode and change time unchanged: the file is the one built (one ``stat`` per file, no read);
* either changed (the edit above, but also a chmod, a copy back from a backup, a FUSE remount
  numbering inodes anew): the file is read and its digest compared; equal, the entry serves and its
  record takes the new inode and change time (no second read next time); different, it is stale.

The digest is taken while the dataset is built, on a thread of its own (SHA-1 at ~1.4 GB/s: ~0.25 s
of one core for a 1M-line, 319 MB manifest), from the files as they were before the build read them:
a file that changed during the build (its inode, change time, size or modification time) keeps no
record, and the next start builds again. An entry without a record (a write interrupted between the
entry and its record) is stale too. Remote sources (their ETag is in the key) keep no record. A
Lhotse Shar folder's record is of its cuts files (``cuts.N.jsonl[.gz]``: the rows' text and times),
not of its audio shards (``recording.N.tar``: gigabytes to read at each build, and their audio is
checked where it is measured, sde.build.remeasure): a same-size rewrite of a shard with its time put
back is not told.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sde.dataset import DatasetOptions
from sde.sources import SourceSet, as_source_set, is_url
from sde.sources.lhotse_source import SHAR_CUTS  # the files sde reads a Shar folder's rows from

#: Read size of the digest: one buffer, filled again and again, small enough to stay in the core's
#: cache while SHA-1 reads it (a new 1 MiB bytes object per read cost ~3 % more CPU).
CHUNK = 1 << 18
#: The layout of a record: one of another layout is no record.
RECORD_FORMAT = 1


@dataclass(frozen=True)
class FileState:
    """What one ``stat`` says of a file, without reading it."""

    path: str
    ino: int
    ctime_ns: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str) -> "FileState | None":
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return cls(path, st.st_ino, st.st_ctime_ns, st.st_size, st.st_mtime_ns)

    def same_file(self, other: "FileState") -> bool:
        """The same file, unchanged since: a change to it (or a new file in its place) sets a new
        change time or inode."""
        return (self.ino, self.ctime_ns, self.size, self.mtime_ns) == (other.ino, other.ctime_ns, other.size,
                                                                       other.mtime_ns)


def input_files(manifest: "str | Path | Sequence[str | Path] | SourceSet", options: DatasetOptions) -> list[str]:
    """The local files whose content an entry of ``manifest`` with ``options`` was built from, as
    the key names them: each local manifest (not a URL; a Lhotse Shar folder's cuts files, see the
    module) and each other input file (``--predictions``, ``--vocab``)."""
    try:
        sources = as_source_set(manifest)
    except Exception:  # noqa: BLE001 - a source that cannot be expanded has no key either
        return []
    paths = []
    for source in sources.sources:
        if source.remote:
            continue
        path = os.path.realpath(source.location)
        paths += _shar_cuts(path) if os.path.isdir(path) else [path]
    paths += [str(Path(f).resolve()) for f in options.files() if not is_url(str(f))]
    return [p for p in dict.fromkeys(paths) if os.path.isfile(p)]


def _shar_cuts(folder: str) -> list[str]:
    """The cuts files of a Lhotse Shar folder (none where it cannot be listed)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [os.path.join(folder, name) for name in names if SHAR_CUTS.match(name)]


def files_tag(paths: Sequence[str]) -> str:
    """A short name of the inodes and change times of ``paths`` now ("" for none): what tells the
    parts of an interrupted build from those of the same files edited since (their size and
    modification time kept)."""
    states = [FileState.of(p) for p in paths]
    if not states:
        return ""
    text = repr([(s.path, s.ino, s.ctime_ns) if s is not None else None for s in states])
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def digest(path: str) -> str:
    """The SHA-1 of the file's content."""
    h = hashlib.sha1(usedforsecurity=False)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while size := f.readinto(buffer):
            h.update(view[:size])
    return h.hexdigest()


class Recording:
    """The record of the input files of a build, taken on a thread while the build runs: started
    before the build reads them (:meth:`start`), :meth:`record` waits for it."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._paths = list(paths)
        self._record: dict | None = None
        self._thread = threading.Thread(target=self._take, name="sde-input-digests", daemon=True)

    def start(self) -> "Recording":
        self._thread.start()
        return self

    def _take(self) -> None:
        try:
            before = [FileState.of(p) for p in self._paths]
            if any(s is None for s in before):
                return
            digests = [digest(p) for p in self._paths]
            after = [FileState.of(p) for p in self._paths]
            if any(a is None or not a.same_file(b) for a, b in zip(after, before)):  # changed meanwhile
                return
            self._record = {"format": RECORD_FORMAT,
                            "files": [[s.path, s.ino, s.ctime_ns, s.size, s.mtime_ns, d]
                                      for s, d in zip(before, digests)]}
        except OSError:
            self._record = None

    def record(self) -> dict | None:
        """The record (None: a file changed or could not be read: the entry is built again next time)."""
        self._thread.join()
        return self._record


@dataclass
class Verdict:
    """Whether an entry's files are those it was built from: ``current``; ``changed`` names the
    files that are not; ``renewed``, the record to keep where only inodes or change times moved."""

    current: bool
    changed: list[str]
    renewed: dict | None = None


def check(record: object, paths: Sequence[str]) -> Verdict:
    """Compare the ``record`` kept with an entry with the files now (see the module doc)."""
    if not paths:  # remote sources: their ETags are in the key
        return Verdict(True, [])
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return Verdict(False, [])
    files = record.get("files") or []
    if sorted(f[0] for f in files) != sorted(paths):
        return Verdict(False, [])
    changed: list[str] = []
    renewed = False
    kept = []
    for path, ino, ctime_ns, size, mtime_ns, sha in files:
        now = FileState.of(path)
        if now is None or (now.size, now.mtime_ns) != (size, mtime_ns):
            changed.append(path)
            continue
        if (now.ino, now.ctime_ns) == (ino, ctime_ns):
            kept.append([path, ino, ctime_ns, size, mtime_ns, sha])
            continue
        try:
            same = digest(path) == sha
        except OSError:
            same = False
        if not same:
            changed.append(path)
            continue
        after = FileState.of(path)  # not changed while it was read
        if after is None or not after.same_file(now):
            changed.append(path)
            continue
        renewed = True
        kept.append([path, now.ino, now.ctime_ns, size, mtime_ns, sha])
    if changed:
        return Verdict(False, changed)
    return Verdict(True, [], {"format": RECORD_FORMAT, "files": kept} if renewed else None)
