"""Where the data lives: the manifest files a dataset is read from.

``sde SOURCE...`` takes one or more manifests, globs (``shards/*.json``), NeMo shard patterns
(``manifest__OP_0..511_CL_.json``, ``manifest_{0..511}.json``) and URLs (``s3://bucket/m.json``,
also with patterns). :func:`expand_sources` turns them into a :class:`SourceSet`: every file, in
order, each with the name the ``source`` column shows (its path relative to the folder all sources
share). Files named by a pattern that turn out missing are kept: reading reports each as a problem
of its own while the others load; a pattern or glob that matches no file at all is a
:class:`PatternError` (a usage error).

Submodules: :mod:`sde.sources.patterns` (brace and glob expansion), :mod:`sde.sources.remote`
(fsspec access with storage options, time limits and clear errors), :mod:`sde.sources.tar_index`
(member index of NeMo tarred-audio shards).
"""

from __future__ import annotations

import glob as local_glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sde.sources import remote
from sde.sources.patterns import PatternError, brace_expand, has_braces, has_glob, natural_key
from sde.sources.remote import RemoteError, is_url

__all__ = ["PatternError", "RemoteError", "Source", "SourceSet", "as_source_set", "expand_sources", "is_url",
           "source_stamps"]

# How many sources a dataset name lists before "+ N more".
NAMED_SOURCES = 2


@dataclass(frozen=True)
class Source:
    """One manifest file."""

    location: str  # what is opened: an absolute local path, or a URL
    given: str     # the path as the user wrote it (for a pattern: the expanded name)
    name: str      # relative to the folder all sources share: the `source` column
    # A local copy read in place of a remote manifest, or a decompressed copy of a gzip one
    # (sde.build cuts it into parts: sde.build.remote_parts); everything else (messages, the
    # audio folder, the cache key, export) still follows ``location``.
    local_copy: str | None = None

    @property
    def remote(self) -> bool:
        return is_url(self.location)

    @property
    def readable(self) -> str:
        """What is opened to read the manifest: its local copy if it has one, else ``location``."""
        return self.local_copy or self.location

    @property
    def folder(self) -> str:
        """Where relative audio paths of this manifest start (NeMo: the manifest's own folder)."""
        return remote.url_folder(self.location) if self.remote else os.path.dirname(self.location)


@dataclass(frozen=True)
class SourceSet:
    """The files of one dataset, in the order their lines get ids."""

    specs: tuple[str, ...]  # what the user typed
    sources: tuple[Source, ...]
    # some files of a bigger set, read as one part of it (sde.build): named as in the whole set
    part_of_set: bool = False
    # (as named, the name read instead) of each file named again: a link to it, or a second path
    repeats: tuple[tuple[str, str], ...] = ()

    @property
    def several(self) -> bool:
        return len(self.sources) > 1 or self.part_of_set

    def subset(self, sources: "Sequence[Source]") -> "SourceSet":
        """Some of these files, as a part of this set (same dataset name, same source names)."""
        return SourceSet(self.specs, tuple(sources), part_of_set=True)

    @property
    def name(self) -> str:
        """The dataset's name (page title, summary): the file name, or the patterns as typed."""
        # a spec typed twice is read once (expand_sources): named once too
        again = {given for given, first in self.repeats if given != first}  # a link to a file named before
        names = [_basename(spec) for spec in dict.fromkeys(self.specs) if spec not in again]
        if len(names) <= NAMED_SOURCES:
            return " + ".join(names)
        return f"{' + '.join(names[:NAMED_SOURCES])} + {len(names) - NAMED_SOURCES} more"

    @property
    def manifest_path(self) -> Path:
        """The first file, resolved (for code that needs one path). A URL has no local path: its
        scheme becomes the first folder (``s3/bucket/m.json``), which exists nowhere."""
        first = self.sources[0].location
        return Path(first).resolve() if not is_url(first) else Path(first.replace("://", "/", 1))

    def __len__(self) -> int:
        return len(self.sources)

    def __str__(self) -> str:
        return self.name


def _basename(spec: str) -> str:
    stripped = spec.rstrip("/")
    return stripped.rsplit("/", 1)[-1] or spec


def as_source_set(sources: "str | os.PathLike | Sequence[str | os.PathLike] | SourceSet") -> SourceSet:
    """A SourceSet from whatever names the sources (one path, a list, or a SourceSet)."""
    if isinstance(sources, SourceSet):
        return sources
    if isinstance(sources, (str, os.PathLike)):
        return expand_sources([sources])
    return expand_sources(list(sources))


def expand_sources(specs: Sequence[str | os.PathLike]) -> SourceSet:
    """Every file the specs name, in order (see the module docstring).

    Raises PatternError when a pattern or glob matches no file (or is malformed), RemoteError when
    a remote folder cannot be listed.
    """
    if not specs:
        raise PatternError("no manifest given; pass one or more: sde MANIFEST [MANIFEST...]")
    found: list[tuple[str, str]] = []  # (location, given)
    for raw in specs:
        spec = os.fspath(raw)
        found.extend(_expand_remote(spec) if is_url(spec) else _expand_local(spec))
    unique, repeats = _first_occurrences(found)
    names = _relative_names([location for location, _ in unique])
    sources = tuple(Source(location, given, name) for (location, given), name in zip(unique, names))
    return SourceSet(tuple(os.fspath(s) for s in specs), sources, repeats=tuple(repeats))


def _first_occurrences(found: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The same file named twice (``a.json a.json``, ``./a.json``, a link to it, overlapping
    globs) is read once: (the files to read, (as named, the name read) for each one dropped)."""
    seen: dict[Any, str] = {}
    out, repeats = [], []
    for location, given in found:
        key = _file_identity(location)
        if key in seen:
            if (given, seen[key]) not in repeats:
                repeats.append((given, seen[key]))
            continue
        seen[key] = given
        out.append((location, given))
    return out, repeats


def _file_identity(location: str) -> Any:
    """What two names of one local file share (a symbolic or hard link too); a URL is itself."""
    if is_url(location):
        return location
    try:
        st = os.stat(location)
    except OSError:
        return os.path.realpath(location)
    return (st.st_dev, st.st_ino)


def _refuse_pipes(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A named pipe, ``<(zcat m.json.gz)`` or /dev/stdin is read once and cannot be read again
    (sde reads a manifest to build it, then again for its lines): refused by name with the remedy.
    Opening a named pipe no one writes to blocked the load forever."""
    for location, given in found:
        try:
            mode = os.stat(location).st_mode
        except OSError:
            continue  # missing: reported when read
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            kind = "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
            raise PatternError(f"{given}: is {kind}, not a file: sde reads its files more than once (a manifest "
                               "to build it, then for its lines); save it to a file first, e.g. "
                               "zcat m.json.gz > m.json (sde reads .gz files itself)")
    return found


def _expand_local(spec: str) -> list[tuple[str, str]]:
    return _refuse_pipes(_expand_local_names(spec))


def _expand_local_names(spec: str) -> list[tuple[str, str]]:
    path = os.path.expanduser(spec)
    if os.path.exists(path) or not (has_braces(spec) or has_glob(spec)):
        return [(os.path.abspath(path), spec)]
    out: list[tuple[str, str]] = []
    for name in brace_expand(path):
        if has_glob(name):
            matches = [m for m in local_glob.glob(name, recursive=True) if os.path.isfile(m)]
            out.extend((os.path.abspath(m), m) for m in sorted(matches, key=natural_key))
        else:
            out.append((os.path.abspath(name), name))
    if not any(os.path.isfile(location) for location, _ in out):
        raise PatternError(f"{spec}: matches no file; check the pattern (relative paths start from "
                           f"{os.getcwd()}; NeMo ranges are written {{0..511}} or _OP_0..511_CL_)")
    return out


def _expand_remote(spec: str) -> list[tuple[str, str]]:
    if not (has_braces(spec) or has_glob(spec)):
        _refuse_remote_shar(spec)
        return [(spec, spec)]
    out: list[str] = []
    for name in brace_expand(spec):
        out.extend(sorted(remote.glob(name), key=natural_key) if has_glob(name) else [name])
    if not out or not any(remote.details(out).values()):
        raise PatternError(f"{spec}: matches no file; check the pattern and the bucket (NeMo ranges are "
                           "written {0..511} or _OP_0..511_CL_)")
    return [(url, url) for url in out]


def _refuse_remote_shar(url: str) -> None:
    """A Lhotse Shar folder in a store (``s3://bucket/shar/``) is refused by name: sde reads Shar
    from local folders only (reading said "is a folder; pass the manifest file inside it", and one
    cuts file loads one shard). Only a URL that may name a folder (ending in "/", or a last part
    without a ".") costs the one listing that tells; a store that does not answer is said here."""
    last = url.rstrip("/").rsplit("/", 1)[-1]
    if not url.endswith("/") and "." in last:
        return
    from sde.sources.lhotse_source import SHAR_CUTS, SHAR_RECORDINGS

    folder = url.rstrip("/")
    try:
        entries = remote.listing(folder)
    except RemoteError as e:
        if e.reason == "timeout":
            raise
        return  # reading it says why
    names = [u.rsplit("/", 1)[-1] for u, e in entries.items() if e.get("type") != "directory"]
    if any(SHAR_CUTS.match(n) or SHAR_RECORDINGS.match(n) for n in names):
        raise RemoteError(f"{url}: a Lhotse Shar folder; sde reads Shar from local folders only: copy it "
                          f"first (e.g. aws s3 cp --recursive {folder}/ {last}/, or your store's tool), then: "
                          f"sde {last}/")


def _relative_names(locations: list[str]) -> list[str]:
    """Each location relative to the folder all of them share; mixed local and remote stay whole."""
    if len(locations) == 1:
        return [_basename(locations[0])]
    if all(is_url(x) for x in locations):
        folders = [remote.url_folder(x).split("/") for x in locations]
        common = _common_prefix(folders)
        return [x[len("/".join(common)) + 1:] if common else x for x in locations]
    if any(is_url(x) for x in locations):
        return list(locations)
    common_dir = os.path.commonpath([os.path.dirname(x) for x in locations])
    return [os.path.relpath(x, common_dir) for x in locations]


def _common_prefix(parts: list[list[str]]) -> list[str]:
    common = parts[0]
    for other in parts[1:]:
        k = 0
        while k < min(len(common), len(other)) and common[k] == other[k]:
            k += 1
        common = common[:k]
    return common if len(common) >= 3 else []  # "s3:", "", "bucket": never cut inside the bucket name


def source_stamps(sources: SourceSet) -> list[dict[str, Any]]:
    """What identifies the current content of every source (the dataset cache's key): size and
    modification time of local files, size and ETag of remote ones; missing files say so."""
    remote_found = remote.details([s.location for s in sources.sources if s.remote]) \
        if any(s.remote for s in sources.sources) else {}
    stamps: list[dict[str, Any]] = []
    for s in sources.sources:
        if s.remote:
            found = remote_found.get(s.location)
            stamps.append({"url": s.location, **(remote.stamp(found) if found else {"missing": True})})
            continue
        try:
            st = os.stat(s.location)
        except OSError:
            stamps.append({"path": s.location, "missing": True})
            continue
        stamp = {"path": os.path.realpath(s.location), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if stat.S_ISDIR(st.st_mode):  # a folder source (Lhotse Shar): its files change, not the folder
            stamp["files"] = _folder_stamps(s.location)
        stamps.append(stamp)
    return stamps


def _folder_stamps(folder: str) -> list[tuple[str, int, int]]:
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        try:
            if entry.is_file():
                st = entry.stat()
                found.append((entry.name, st.st_size, st.st_mtime_ns))
        except OSError:
            continue
    return found
