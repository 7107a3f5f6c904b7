"""Values derived from a build, kept beside it in the dataset cache so that a later start reads
them instead of computing them (the sde.caching.Keeper of a dataset the cache read or wrote)."""

from __future__ import annotations

import pickle
import threading
import weakref
from pathlib import Path

import diskcache
import pandas as pd

from sde.cache.mapped_frames import mapped_frame, write_frame
from sde.cache.read_only import ReadOnlyStore
from sde.cache.store import LinkedFile, LinkingDisk, done_with_temp_file, make_read_only, temp_file_in

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
        self._columns: set[str] = set()  # names of the column files kept for this build
        self._lock = threading.Lock()

    def _opened(self) -> diskcache.Cache | ReadOnlyStore:
        """The store, with the names kept for this build read once (a miss then costs no read)."""
        if self._store is None:
            store = (ReadOnlyStore(self._directory) if self._read_only
                     else diskcache.Cache(str(self._directory), eviction_policy="none", disk=LinkingDisk))
            keys = [k for k in store.iterkeys() if isinstance(k, tuple) and len(k) == 3 and k[1] == self._key]
            self._kept = {k[2] for k in keys if k[0] == "kept"}
            self._columns = {k[2] for k in keys if k[0] == "columns"}
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

    def _columns_name(self, name: str) -> str:
        # the build's name in it: files kept from an earlier build under the same key are not read
        return f"{self._build or ''}/{name}"

    def recall_columns(self, name: str, index: pd.Index) -> pd.DataFrame | None:
        """The frame kept under ``name`` for this build, memory-mapped on ``index``; None where none
        is kept (or it is unreadable, or of another length)."""
        try:
            with self._lock:
                store = self._opened()
                stored = self._columns_name(name)
                handle = store.get(("columns", self._key, stored), read=True) if stored in self._columns else None
            if handle is None or isinstance(handle, (bytes, bytearray, str)):
                return None
            with handle:
                path = getattr(handle, "name", None)
            return mapped_frame(path, index) if isinstance(path, str) else None
        except Exception:  # noqa: BLE001 - unreadable, or written by another sde: computed again
            return None

    def keep_columns(self, name: str, frame: pd.DataFrame) -> pd.DataFrame | None:
        """Keep ``frame`` (fixed-width columns: sde.cache.mapped_frames) under ``name`` as a file
        beside the build, and give it back memory-mapped from there; None where it could not be
        kept (a read-only cache, a full disk, the build gone, text columns): the caller holds
        ``frame`` itself."""
        if self._read_only:
            return None
        stored = self._columns_name(name)
        try:
            with self._lock:
                store = self._opened()
                known = stored in self._columns
            if not known:
                # written outside the lock (a second or so at 10M rows): kept values are read meanwhile
                tmp = temp_file_in(self._directory, ".arrow")
                try:
                    write_frame(tmp, frame)
                    with self._lock:
                        if not self._still_stored(store):
                            return None
                        store.set(("columns", self._key, stored), LinkedFile(tmp), read=True)
                        self._columns.add(stored)
                finally:
                    done_with_temp_file(tmp)
                make_read_only(store, ("columns", self._key, stored))
        except Exception:  # noqa: BLE001 - a full disk, a read-only cache: held in memory instead
            return None
        return self.recall_columns(name, frame.index)
