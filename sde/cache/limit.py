"""How much a cache store keeps: $SDE_CACHE_SIZE, and whole entries removed least recently used first.

diskcache's own eviction removes entries one by one as they are stored, the entry just stored
included: a built dataset or a model's predictions bigger than the limit were never kept. sde's
stores open with that eviction off; after each store (and load) the caller lists what it holds
(:class:`Held`: a dataset with its tables and index files, one model's predictions) and
:func:`remove_least_recently_used` removes the others, oldest use first, until the rest fit.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import diskcache

from sde.engine import EngineSettingError, parse_size

from sde.cache.folders import Warn, warn_on_stderr

#: What each store keeps (built datasets with their search indexes; predictions apart), unless
#: $SDE_CACHE_SIZE says otherwise. The entry just stored is kept however big (a 100M-utterance
#: build is ~34 GB).
DEFAULT_SIZE_LIMIT = 20 * 2**30
SIZE_LIMIT_VARIABLE = "SDE_CACHE_SIZE"
#: The least $SDE_CACHE_SIZE the command line takes. A limit smaller than one dataset's build makes
#: each store remove every other cached dataset (SDE_CACHE_SIZE=1KB: each start of another manifest
#: removed the last one's build); a limit of 1KB or 100B is a unit left out or mistyped. A small
#: dataset's build is about 1 MB (20k utterances: 5.6 MB). sde.build and the stores take any size
#: (:func:`size_limit`): tests fill a small one.
LEAST_SIZE_LIMIT = 10**6


class CacheSizeError(ValueError):
    """$SDE_CACHE_SIZE is not a size, or too small a one; the message names it and what to write."""


def size_limit(warn: Warn = warn_on_stderr) -> int:
    """$SDE_CACHE_SIZE in bytes (e.g. ``100GB``), else :data:`DEFAULT_SIZE_LIMIT`; one that is not
    a size is named by ``warn`` and the default kept (the command line refused it at its start:
    :func:`check_size_limit`)."""
    text = os.environ.get(SIZE_LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_SIZE_LIMIT
    try:
        return parse_size(text)
    except EngineSettingError:
        warn(f"{_not_a_size(text)}; keeping up to {size_text(DEFAULT_SIZE_LIMIT)}")
        return DEFAULT_SIZE_LIMIT


def check_size_limit() -> int:
    """$SDE_CACHE_SIZE as the command line takes it, in bytes (:data:`DEFAULT_SIZE_LIMIT` when
    unset): checked where a command starts, before any build. Raises CacheSizeError for a value
    that is not a size, or less than :data:`LEAST_SIZE_LIMIT`."""
    text = os.environ.get(SIZE_LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_SIZE_LIMIT
    unset = f"or unset it to keep up to {size_text(DEFAULT_SIZE_LIMIT)}"
    try:
        limit = parse_size(text)
    except EngineSettingError:
        raise CacheSizeError(f"{_not_a_size(text)} ({unset})") from None
    if limit < LEAST_SIZE_LIMIT:
        raise CacheSizeError(
            f"{SIZE_LIMIT_VARIABLE}={text!r} is too small for the cache: each store would remove every "
            f"other cached dataset; set at least 1MB, e.g. {SIZE_LIMIT_VARIABLE}=100GB ({unset})")
    return limit


def _not_a_size(text: str) -> str:
    return (f"{SIZE_LIMIT_VARIABLE}={text!r} is not a size: write a number and a unit, e.g. "
            f"{SIZE_LIMIT_VARIABLE}=100GB or 500MB")


def size_text(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{max(size, 0) / 2**20:.1f} MiB"


class InUse(Exception):
    """Raised by a ``remove`` of :func:`remove_least_recently_used` for an entry another process
    is using (sde.cache.in_use): it is kept, and said so once."""


#: (folder, entry) said to be kept as in use by another process, once a process.
_SAID_IN_USE: set[tuple[Path, str]] = set()


@dataclasses.dataclass(frozen=True)
class Held:
    """One whole entry of a store: its key, what messages call it (``build of train.json``), its
    bytes on disk and its last use (seconds since the epoch; 0 when never recorded)."""

    key: str
    label: str
    size: int
    used: float = 0.0


def mark_used(store: diskcache.Cache, key: str, name: str) -> None:
    """Record that the entry ``key`` was stored or read now (its place in the removal order)."""
    try:
        store.set(("used", key), {"at": time.time(), "name": name})
    except Exception:  # noqa: BLE001 - a store that cannot be written keeps the order it has
        pass


def last_use(store: diskcache.Cache, key: str) -> tuple[float, str | None]:
    """(when the entry was last used, its name) as :func:`mark_used` recorded them."""
    used = store.get(("used", key))
    if not isinstance(used, dict):
        return 0.0, None
    return float(used.get("at", 0.0)), used.get("name")


def value_path(store: diskcache.Cache, store_key: tuple) -> Path | None:
    """The file holding a value diskcache keeps as a file; None for a small one kept in its index."""
    handle = store.get(store_key, read=True)
    if handle is None or isinstance(handle, (bytes, bytearray, str)):  # kept in the index, not a file
        return None
    with handle:
        path = getattr(handle, "name", None)
    return Path(path) if isinstance(path, str) else None


def file_size(path: str | Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def remove_least_recently_used(held: Sequence[Held], *, keep: str, limit: int, remove: Callable[[str], bool],
                               entries: str, folder: Path, warn: Warn, note: Warn | None = None) -> list[Held]:
    """Remove entries other than ``keep`` (by ``remove``, False where that failed; raising
    :class:`InUse` where another process uses it: said once by ``note``), least recently used
    first, until the rest fit ``limit``; says which (``entries``: what the store keeps), and
    returns them."""
    total = sum(h.size for h in held)
    removed = []
    for h in sorted(held, key=lambda h: (h.used, h.key)):
        if total <= limit:
            break
        if h.key == keep:
            continue
        try:
            if not remove(h.key):
                continue
        except InUse:
            say_in_use(h, folder, note or warn)
            continue
        total -= h.size
        removed.append(h)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(h.used)) if h.used else "unknown"
        warn(f"removed the cached {h.label} ({size_text(h.size)}, last used {when}) from {folder}: "
             f"the cache keeps up to {size_text(limit)} of {entries} (set {SIZE_LIMIT_VARIABLE}, e.g. "
             f"{SIZE_LIMIT_VARIABLE}=100GB, to keep more)")
    return removed


def say_in_use(h: Held, folder: Path, note: Warn) -> None:
    """One line, once a process, that entry ``h`` was not removed: another process uses it."""
    if (folder, h.key) in _SAID_IN_USE:
        return
    _SAID_IN_USE.add((folder, h.key))
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(h.used)) if h.used else "unknown"
    note(f"kept the cached {h.label} ({size_text(h.size)}, last used {when}) in {folder}: another sde "
         "process is using it; it is removed once none does")


def make_room_among(store: diskcache.Cache, kind: str, *, keep: str, limit: int, entry: str, entries: str,
                    warn: Warn) -> list[Held]:
    """:func:`remove_least_recently_used` for a store whose entries are one value each, ``(kind,
    key)`` (a model's predictions of a manifest), the others' kinds left alone."""
    held = []
    for k in list(store.iterkeys()):
        if isinstance(k, tuple) and len(k) == 2 and k[0] == kind:
            used, name = last_use(store, k[1])
            held.append(Held(k[1], f"{entry} of {name or k[1][:12]}", _value_size(store, k), used))

    def remove(key: str) -> bool:
        try:
            store.delete((kind, key))
            store.delete(("used", key))
        except Exception:  # noqa: BLE001 - a store that cannot be written keeps it
            return False
        return True

    return remove_least_recently_used(held, keep=keep, limit=limit, remove=remove, entries=entries,
                                      folder=Path(store.directory), warn=warn)


def _value_size(store: diskcache.Cache, store_key: tuple) -> int:
    """Bytes of a value: its file's, or a small one's kept in the index (one read either way)."""
    handle = store.get(store_key, read=True)
    if handle is None:
        return 0
    if isinstance(handle, (bytes, bytearray, str)):
        return len(handle)
    with handle:
        return os.fstat(handle.fileno()).st_size
