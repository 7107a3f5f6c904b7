"""Which cached datasets a live sde process is using, across processes sharing a cache folder.

A server memory-maps its dataset's tables and opens its compressed columns and their index files
by name at each search. Another process making room (``SDE_CACHE_SIZE=1MB sde index big.json``
over the same ``--cache-dir``) removed those files: the server's searches then failed (500, or a
400 that blamed the query) until it was restarted. Each process that reads or stores an entry
holds a shared ``flock`` on a file of its own, ``in-use/<key>``, for as long as it lives; whoever
removes an entry first takes that lock exclusively without waiting, and keeps the entry where it
cannot (:func:`removing`). A loader takes its shared lock before it looks the entry up, so it
never reads one being removed: it waits for the removal, then misses (and lets the lock go) and
builds. The file outlives its holders (the kernel drops the lock); it goes with its entry.

The lock is per process, not per use: one ``open`` and one ``flock`` per entry a process reads,
however often it reads it. A process's own uses never keep it from removing an entry (a test or
a remeasure that replaces what it serves): only other processes' do. An entry removed, its file
goes too, under the exclusive lock; a loader that had opened the old file finds, once it has its
lock, that the name now points elsewhere (or nowhere), and opens it again.

As with the build locks (sde.cache.building): where no lock can be taken (no ``fcntl``, a file
system without locks, a folder it cannot be created in) the entry is read and removed as before;
a read-only cache folder takes none (nothing is removed there). A forked child closes its copies
of the descriptors at once: a flock lasts while any copy is open, so a Dash background job would
otherwise keep the entry for its own lifetime. Processes of an sde from before these locks take
none: an older sde serving from a shared folder is not protected.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: entries are removed as before
    fcntl = None  # type: ignore[assignment]

#: The cache folder's subfolder of "in use" files, one per entry a live process has read or stored.
IN_USE = "in-use"

_held: dict[Path, int] = {}  # in-use file -> this process's descriptor holding it shared
_guard = threading.Lock()


def in_use_file(directory: Path, key: str) -> Path:
    return directory / IN_USE / key


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (it is unlinked as its entry is removed)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _open(path: Path) -> int | None:
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None


def use(directory: Path, key: str) -> bool:
    """Hold entry ``key`` of the cache in ``directory`` as in use by this process, until it exits
    (waiting while another process removes it). True where this call took the lock (the caller
    may :func:`release` it at once on a miss); False where it was held already, or none can be
    taken."""
    if fcntl is None:
        return False
    path = in_use_file(directory, key)
    with _guard:
        if path in _held:
            return False
        for _ in range(3):  # the file removed with its entry between our open and our lock: again
            fd = _open(path)
            if fd is None:
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)  # an exclusive holder only removes the entry: brief
            except OSError:  # a file system without locks
                os.close(fd)
                return False
            except BaseException:  # Ctrl-C while waiting
                os.close(fd)
                raise
            if _same_file(fd, path):
                _held[path] = fd
                return True
            os.close(fd)
    return False


def release(directory: Path, key: str) -> None:
    """Stop holding entry ``key`` (a miss: this process does not use it after all)."""
    with _guard:
        fd = _held.pop(in_use_file(directory, key), None)
    if fd is not None:
        os.close(fd)


@contextmanager
def removing(directory: Path, key: str) -> Iterator[bool]:
    """Whether entry ``key`` may be removed now: True, held exclusively for the ``with`` body (its
    in-use file is removed after it, and this process no longer holds the entry); False where
    another process uses it."""
    if fcntl is None:
        yield True
        return
    path = in_use_file(directory, key)
    with _guard:
        own = _held.pop(path, None)
        fd = own if own is not None else _open(path)
        if fd is None:  # no lock to take: removed as before
            free = True
        else:
            try:
                # a held shared lock is converted; Linux drops it first, so it is taken back below
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                free = _same_file(fd, path)  # else removed and made anew since we opened it: in use
                locked = True
            except BlockingIOError:
                free, locked = False, False
            except OSError:  # a file system without locks: removed as before
                free, locked = True, False
            if not (free and locked):
                if own is not None:
                    try:
                        fcntl.flock(own, fcntl.LOCK_SH)
                        _held[path] = own
                    except OSError:
                        os.close(own)
                else:
                    os.close(fd)
                fd = None
    try:
        yield free
    finally:
        if fd is not None:
            try:
                path.unlink()
            except OSError:
                pass
            os.close(fd)


def close_in_forked_child(forget: Callable[[], Iterable[int]]) -> None:
    """In every child forked from now on, close the descriptors ``forget`` hands over (and forgets):
    copies of ones the parent holds a flock on. Closed, not unlocked: LOCK_UN on a copy would free
    the parent's lock too, and a flock lasts while any copy is open. Shared by these locks and the
    build locks (sde.cache.building)."""
    def close() -> None:
        for fd in forget():
            try:
                os.close(fd)
            except OSError:
                pass

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=close)


def _forget_held() -> list[int]:
    global _guard
    _guard = threading.Lock()  # another thread may have held it as the process forked
    fds = list(_held.values())
    _held.clear()
    return fds


close_in_forked_child(_forget_held)
