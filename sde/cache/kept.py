"""Values derived from a build, kept beside it in the dataset cache so that a later start reads
them instead of computing them (the sde.caching.Keeper of a dataset the cache read or wrote)."""

from __future__ import annotations

import pickle
import threading
import weakref
from pathlib import Path

import diskcache

from sde.cache.read_only import ReadOnlyStore
from sde.cache.store import LinkingDisk

#: A value bigger than this, pickled, is not kept: the kept values are pages' results (kilobytes
#: to a few megabytes), read back at each start.
KEPT_VALUE_BYTES = 32 * 2**20


class KeptWithBuild:
    """What sde.caching's kept caches compute from one build (the pages the warm-up lays out: at
    10M utterances ~20 s a start), kept in the dataset cache beside it under ("kept", key, name):
    ``DatasetCache.delete`` removes them with it. The sde.caching.Keeper of a dataset read from
    or written to the cache. The store is opened at the first use; every failure is quiet (a
    read-only or damaged cache: the value is computed at each start, as without it).
    ``read_only``: a cache folder sde cannot write (sde.cache.read_only): what was kept is
    recalled, nothing is kept. ``build``: the name of the build read or written
    (``("build", key)``), so that nothing computed from it is kept with another build stored under
    the same key since (by another process: an input edited with its size and modification time
    kept, audio measured again)."""

    def __init__(self, directory: Path, key: str, *, read_only: bool = False, build: str | None = None) -> None:
        self._directory = directory
        self._key = key
        self._build = build
        self._read_only = read_only
        self._store: diskcache.Cache | ReadOnlyStore | None = None
        self._kept: set[str] = set()  # names kept, or not to keep (too big, failed)
        self._lock = threading.Lock()

    def _opened(self) -> diskcache.Cache | ReadOnlyStore:
        """The store, with the names kept for this build read once (a miss then costs no read)."""
        if self._store is None:
            store = (ReadOnlyStore(self._directory) if self._read_only
                     else diskcache.Cache(str(self._directory), eviction_policy="none", disk=LinkingDisk))
            self._kept = {k[2] for k in store.iterkeys()
                          if isinstance(k, tuple) and len(k) == 3 and k[0] == "kept" and k[1] == self._key}
            self._store = store
            # its SQLite connection closed with this object (Python 3.13 warns of one left open)
            weakref.finalize(self, store.close)
        return self._store

    def recall(self, name: str) -> tuple[bool, object]:
        try:
            with self._lock:
                store = self._opened()
                data = store.get(("kept", self._key, name)) if name in self._kept else None
            return (True, pickle.loads(data)) if isinstance(data, bytes) else (False, None)
        except Exception:  # noqa: BLE001 - unreadable or from another sde: computed again
            return False, None

    def keep(self, name: str, value: object) -> None:
        if self._read_only:
            return
        try:
            with self._lock:
                store = self._opened()
                if name in self._kept:
                    return
                self._kept.add(name)  # tried once, whatever happens
                data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                if len(data) <= KEPT_VALUE_BYTES and self._still_stored(store):
                    store.set(("kept", self._key, name), data)
        except Exception:  # noqa: BLE001 - a full disk, a read-only cache, a value that does not pickle
            pass

    def _still_stored(self, store: diskcache.Cache | ReadOnlyStore) -> bool:
        """Whether the build the values come from is stored under its key still (not deleted, nor
        replaced by another build)."""
        if ("meta", self._key) not in store:
            return False
        return self._build is None or store.get(("build", self._key)) == self._build
