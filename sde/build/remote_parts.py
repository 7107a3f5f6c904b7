"""Remote and gzip-compressed manifests built part by part, like local plain ones.

A remote file cannot be mapped or cut at byte offsets by the workers, so each remote manifest of
the build is first streamed once into the build folder (a few MiB in memory at a time, under a
temporary name, then renamed), and the parts read that copy. Nor can a gzip stream be cut at byte
offsets: each gzip-compressed manifest (judged by its first bytes; local, or a remote one's copy)
is decompressed into the build folder the same way, a block at a time, and the parts read the
decompressed copy, whose lines are the original's. The copy only replaces what is opened
(``Source.local_copy``): messages still name the manifest as given (``s3://...``,
``manifest.json.gz``), relative audio paths still start from its folder, and the dataset's name,
``source`` names and cache key are those of the one-piece read; export reads the original. The
copies are removed once the parts are joined; an interrupted build keeps its complete copies
(half-written ones are removed as stale), which the resumed build reuses.

Which sources are cut into parts (NeMo JSON lines bigger than a part, local or remote, a gzip one
counted at its likely decompressed size) is sde.build.parts.cut_in_parts.
"""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from sde.build.atomic import replace_atomically
from sde.build.parts import file_size
from sde.cache import remove_stale_temp_files
from sde.manifest import ManifestError
from sde.manifest.files import GZIP_ERRORS, damaged_gzip, is_gzip
from sde.progress import progress_bar
from sde.sources import RemoteError, SourceSet, is_url, remote

# Bytes fetched per request while copying (one ranged read each): the copy's memory.
COPY_BLOCK_BYTES = 4 << 20
# Remote manifests (shards) copied at once: the network, not the CPU, is what they wait on.
COPY_THREADS = 8
# The build folder's subfolder holding the copies.
COPIES = "remote-copies"
# gzip manifests (shards) decompressed at once, each holding a block (COPY_BLOCK_BYTES): zlib works
# without the GIL, but beyond a few the disk is what they wait on.
DECOMPRESS_THREADS = min(4, os.cpu_count() or 1)
#: Errors that say a folder has no room for a file (full, over quota, read-only).
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


class NoRoomToDecompress(Exception):
    """A gzip manifest could not be decompressed into the build folder for want of room; the
    message says where and why. The build reads it in one piece instead (sde.build.load)."""


@contextmanager
def local_copies(manifest: str | SourceSet, folder: Path, *, progress: bool = False,
                 say: Callable[[str], None] = lambda _msg: None,
                 damaged_read_whole: bool = False) -> Iterator[str | SourceSet]:
    """``manifest`` in a form the parts can cut: each of its remote manifests read from a copy
    in ``folder``, each gzip-compressed one from a decompressed copy there; the copies are removed
    on leaving the block, unless it was interrupted (Ctrl-C: a resumed build reuses them). A local
    manifest given by its path, or a set without remote or gzip manifests, is given back as it is.

    A remote manifest that cannot be copied: one manifest raises the one-piece read's error; of a
    set, it is read from its URL (it is missing or unreadable, and its part says so as the
    one-piece read does). A damaged gzip manifest likewise (the one-piece read's message, or read
    whole by its part); no room to decompress one raises NoRoomToDecompress. ``damaged_read_whole``:
    one damaged manifest is read whole by its part too (a Lhotse CutSet: its one-piece read keeps
    the lines before the damage)."""
    if not isinstance(manifest, SourceSet) or not any(s.remote or is_gzip(s.location) for s in manifest.sources):
        yield manifest
        return
    copies = folder / COPIES
    copies.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(copies)  # of a copy interrupted mid-file
    try:
        copied = _with_copies(manifest, copies, progress=progress, say=say) \
            if any(s.remote for s in manifest.sources) else manifest
        yield _decompressed(copied, copies, progress=progress, say=say, damaged_read_whole=damaged_read_whole)
    except Exception:
        shutil.rmtree(copies, ignore_errors=True)
        raise
    shutil.rmtree(copies, ignore_errors=True)


def _with_copies(sources: SourceSet, copies: Path, *, progress: bool, say: Callable[[str], None]) -> SourceSet:
    """``sources`` with a copy (in ``copies``) behind each remote manifest that could be copied."""
    targets = {k: copies / f"{k:05d}-{_basename(s.location)}" for k, s in enumerate(sources.sources) if s.remote}
    try:
        found = remote.details([sources.sources[k].location for k in targets])
    except RemoteError as e:
        raise ManifestError(str(e)) from None
    sizes = {k: int((found.get(sources.sources[k].location) or {}).get("size") or 0) for k in targets}
    todo = [k for k in targets if found.get(sources.sources[k].location) is not None
            and not _complete(targets[k], sizes[k])]
    if todo:
        total = sum(sizes[k] for k in todo)
        say(f"copying {len(todo)} remote manifest{'s' * (len(todo) > 1)} ({total / (1 << 20):,.1f} MB) into "
            f"{copies} to build {'them' if len(todo) > 1 else 'it'} part by part")
    copied = _copy_all([(sources.sources[k].location, targets[k], sizes[k]) for k in todo], progress)
    failed = {url: why for url, why in copied.items() if why is not None}
    replaced = tuple(
        replace(s, local_copy=str(targets[k]))
        if k in targets and found.get(s.location) is not None and s.location not in failed else s
        for k, s in enumerate(sources.sources))
    if not sources.several and replaced[0].local_copy is None:  # what the one-piece read would say
        url = replaced[0].location
        raise ManifestError(failed.get(url) or str(remote.explain(url, FileNotFoundError(url))))
    return replace(sources, sources=replaced)


def _complete(path: Path, size: int) -> bool:
    """A copy an interrupted build finished (copies appear only whole: see _copy_one)."""
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _basename(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[-100:] or "manifest"


def _copy_all(jobs: list[tuple[str, Path, int]], progress: bool) -> dict[str, str | None]:
    """Each (url, target, size) copied, several at once; per URL, why it could not be (else None)."""
    if not jobs:
        return {}
    bar = progress_bar(sum(size for _, _, size in jobs), "copying", unit="B", unit_scale=True, enabled=progress,
                       unit_divisor=1024, leave=False)
    lock = threading.Lock()

    def advance(n: int) -> None:
        with lock:
            bar.update(n)

    pool = ThreadPoolExecutor(min(COPY_THREADS, len(jobs)), thread_name_prefix="sde-copy")
    try:
        futures = {url: pool.submit(_copy_one, url, target, size, advance) for url, target, size in jobs}
        return {url: future.result() for url, future in futures.items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def _copy_one(url: str, target: Path, size: int, advance: Callable[[int], None]) -> str | None:
    """Stream ``url`` into ``target`` one ranged read at a time, under a temporary name renamed
    when whole; None, or why it failed (the store's error, or the local disk's)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as sink:
            with remote.reading(url):
                source = remote.open_file(url, ranged=True, size=size)
            with source:
                while True:
                    with remote.reading(url):
                        block = source.read(COPY_BLOCK_BYTES)
                    if not block:
                        break
                    sink.write(block)
                    advance(len(block))
            sink.flush()
            os.fsync(sink.fileno())  # a copy that exists whole is reused by a resumed build

    try:
        replace_atomically(target, write)
    except RemoteError as e:
        return str(e)
    except OSError as e:
        return (f"{url}: cannot copy it into {target.parent} to build it part by part ({e.strerror or e}); "
                "free some space there (or pass --cache-dir DIR on a bigger disk)")
    return None


def _decompressed(sources: SourceSet, copies: Path, *, progress: bool, say: Callable[[str], None],
                  damaged_read_whole: bool = False) -> SourceSet:
    """``sources`` with a decompressed copy (in ``copies``) behind each gzip-compressed manifest
    (judged by the first bytes of what is read: the file, or a remote one's copy)."""
    zipped = {k: s for k, s in enumerate(sources.sources) if not is_url(s.readable) and is_gzip(s.readable)}
    if not zipped:
        return sources
    # A copy appears only whole, once its stream ended and its checksum matched, so one that exists
    # is complete; the build folder it lies in is keyed by the manifest's size and modification time.
    targets = {k: copies / f"{k:05d}-decompressed-{_basename(s.location).removesuffix('.gz')}"
               for k, s in zipped.items()}
    todo = [k for k in zipped if not targets[k].is_file()]
    if todo:
        total = sum(file_size(zipped[k].readable) for k in todo)
        say(f"decompressing {len(todo)} gzip-compressed manifest{'s' * (len(todo) > 1)} ({total / (1 << 20):,.1f} MB) "
            f"into {copies}: a gzip stream cannot be cut in parts")
    damaged = _decompress_all([(zipped[k].readable, targets[k], zipped[k].name if sources.several else zipped[k].given)
                               for k in todo], progress)
    if not sources.several and damaged and not damaged_read_whole:  # the one-piece read's error, without reading it again
        raise ManifestError(next(iter(damaged.values())))
    # one that could not be decompressed (damaged, unreadable) is read whole by its part, which says why
    replaced = tuple(replace(s, local_copy=str(targets[k])) if k in zipped and targets[k].is_file() else s
                     for k, s in enumerate(sources.sources))
    return replace(sources, sources=replaced)


def _decompress_all(jobs: list[tuple[str, Path, str]], progress: bool) -> dict[str, str]:
    """Each (gzip file, target, how messages name it) decompressed, several at once; the message
    of each that is damaged. No room for one raises NoRoomToDecompress."""
    if not jobs:
        return {}
    bar = progress_bar(sum(file_size(path) for path, _, _ in jobs), "decompressing", unit="B", unit_scale=True,
                       enabled=progress, unit_divisor=1024, leave=False)
    lock = threading.Lock()
    stop = threading.Event()  # set when this call ends early (Ctrl-C, no room): the others stop too

    def advance(n: int) -> None:
        if stop.is_set():
            raise _Stopped
        with lock:
            bar.update(n)

    pool = ThreadPoolExecutor(min(DECOMPRESS_THREADS, len(jobs)), thread_name_prefix="sde-gunzip")
    try:
        futures = {path: pool.submit(_decompress_one, path, target, shown, advance) for path, target, shown in jobs}
        done = {path: future.result() for path, future in futures.items()}
        return {path: why for path, why in done.items() if why is not None}
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


class _Stopped(Exception):
    """A decompression stopped because the build stops."""


def _decompress_one(path: str, target: Path, shown: str, advance: Callable[[int], None]) -> str | None:
    """Decompress ``path`` into ``target`` a block at a time (a few MB of memory), under a
    temporary name renamed when whole (as _copy_one); None, or the one-piece read's message for a
    damaged stream. Unreadable, it is left as it is (no copy). No room for the copy raises
    NoRoomToDecompress."""
    def write(tmp: str) -> None:
        with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped, open(tmp, "wb") as sink:
            done = 0
            while block := unzipped.read(COPY_BLOCK_BYTES):
                sink.write(block)
                advance(raw.tell() - done)
                done = raw.tell()
            sink.flush()
            os.fsync(sink.fileno())  # a copy that exists whole is reused by a resumed build

    try:
        replace_atomically(target, write)
    except GZIP_ERRORS as e:  # before OSError: gzip.BadGzipFile is one
        return str(damaged_gzip(shown, e))
    except OSError as e:
        if e.errno in NO_ROOM:
            raise NoRoomToDecompress(
                f"cannot decompress {shown} into {target.parent} to build it part by part ({e.strerror or e}); "
                "reading it in one piece, decompressed as it goes, in memory about 4x its decompressed size "
                "(free some space there, or pass --cache-dir DIR on a bigger disk)") from None
    return None
