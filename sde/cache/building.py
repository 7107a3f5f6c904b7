"""One build of a dataset at a time in a cache folder, across processes.

Two processes that miss the same entry (a batch ``sde index`` and a server started meanwhile, two
people opening one manifest over a shared cache folder) would build it into the same build folder
and store it under the same key: one's joined tables were rewritten under the other as it read
them, and it stopped with a traceback (``ArrowInvalid: Not an Arrow file``). The first to miss
takes the entry's lock for its build and the write of the entry; the others wait for it, then read
the entry it stored instead of building it again.

The lock is ``flock`` on a small file beside the build folders (``builds/<key>.lock``): the kernel
drops it when its process ends, however it ends, so a killed build never leaves others waiting. Where
no lock can be taken (no ``fcntl``, a read-only folder, a file system without locks) the build goes
on without one, as before.

A process forked while the lock is held (a Dash background job started during a background cache
write) closes its copy of the descriptor at once: a flock lasts while any copy is open, so the
child would otherwise hold every other process back until it ended.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: builds are not serialised there
    fcntl = None  # type: ignore[assignment]

from sde.cache.datasets import BUILDS
from sde.cache.in_use import close_in_forked_child


class BuildLock:
    """The held lock of one entry's build (:func:`lock_build`); ``release`` once, from any thread."""

    def __init__(self, fd: int | None, path: Path | None = None) -> None:
        self._fd, self._path = fd, path
        if fd is not None:
            _HELD.add(self)

    def release(self, built: bool = False) -> None:
        """Let the next process go; ``built``: the entry is stored, so its lock file goes too (a
        process still waiting on it then finds the entry; one coming later finds it first)."""
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        if fd is None:
            return
        if built and self._path is not None:
            try:
                self._path.unlink()
            except OSError:
                pass
        os.close(fd)  # closing the descriptor drops its flock


_HELD: "weakref.WeakSet[BuildLock]" = weakref.WeakSet()


def _forget_held() -> list[int]:
    """The held locks' descriptors, forgotten by their locks (in a forked child: close_in_forked_child)."""
    fds = []
    for lock in list(_HELD):
        fd, lock._fd = lock._fd, None
        if fd is not None:
            fds.append(fd)
    _HELD.clear()
    return fds


close_in_forked_child(_forget_held)


def lock_build(directory: Path, key: str, say: Callable[[str], None]) -> BuildLock:
    """Take the lock of entry ``key``'s build in the cache folder ``directory``, waiting (and saying
    so once) while another process holds it."""
    if fcntl is None:
        return BuildLock(None)
    path = directory / BUILDS / f"{key}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return BuildLock(None)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another sde process that is building this dataset into {directory} "
                "(it is then read from there)")
            fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a file system without locks
        os.close(fd)
        return BuildLock(None)
    except BaseException:  # Ctrl-C while waiting
        os.close(fd)
        raise
    return BuildLock(fd, path)
