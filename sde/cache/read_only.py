"""A diskcache store read in a cache folder that sde cannot write (sde.cache.folders.CacheReadOnly).

A batch job indexes into shared storage that a login node or a container sees read-only; diskcache
cannot open such a store (its ``Cache`` writes settings, tables and PRAGMAs at every open). This
reads its index, ``cache.db``, with SQLite in read-only mode, and its values with diskcache's own
:class:`diskcache.Disk` (keys encoded by ``Disk.put``, values read by ``Disk.fetch``), as
``diskcache.Cache.get`` does, writing nothing: no statistics, no access times, no settings.

A WAL index is read through its ``-shm`` file, which SQLite cannot create in a folder it cannot
write; the index is then opened immutable (https://www.sqlite.org/wal.html#readonly): read as it
is, without locks. A writer that was killed before it folded its WAL in leaves entries that are not
seen there: they are missed, and built again without being stored.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache
import diskcache.core

from sde.cache.folders import CacheUnusable


class ReadOnlyStore:
    """The entries of the diskcache store in ``directory``, read only: ``get``, ``in``,
    ``iterkeys`` and ``close`` as diskcache.Cache has them. A folder without an index holds
    nothing. Raises CacheUnusable where the index cannot be read."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = str(directory)
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        index = Path(directory) / "cache.db"
        if not index.exists():
            self._disk = diskcache.Disk(self.directory)
            return
        try:
            self._con = _connect(index)
            settings = dict(self._con.execute("SELECT key, value FROM Settings").fetchall())
        except sqlite3.Error as e:
            self.close()
            raise CacheUnusable(Path(directory), f"its index cache.db cannot be read ({e})") from None
        defaults = diskcache.core.DEFAULT_SETTINGS
        self._disk = diskcache.Disk(self.directory,
                                    min_file_size=settings.get("disk_min_file_size", defaults["disk_min_file_size"]),
                                    pickle_protocol=settings.get("disk_pickle_protocol", defaults["disk_pickle_protocol"]))

    def get(self, key: Any, default: Any = None, read: bool = False) -> Any:
        """The value stored under ``key`` (with ``read``: a file handle, or the bytes of a value
        kept in the index), else ``default``."""
        row = self._row(key)
        if row is None:
            return default
        try:
            return self._disk.fetch(*row, read)
        except OSError:  # its file is gone (as diskcache.Cache.get)
            return default

    def __contains__(self, key: Any) -> bool:
        return self._row(key) is not None

    def _row(self, key: Any) -> tuple[int, str | None, Any] | None:
        """(mode, filename, value) of the entry stored under ``key``, None where there is none."""
        if self._con is None:
            return None
        db_key, raw = self._disk.put(key)
        with self._lock:
            return self._con.execute(
                "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = ?"
                " AND (expire_time IS NULL OR expire_time > ?)", (db_key, raw, time.time())).fetchone()

    def iterkeys(self) -> Iterator[Any]:
        if self._con is None:
            return iter(())
        with self._lock:
            rows = self._con.execute("SELECT key, raw FROM Cache ORDER BY rowid").fetchall()
        return (self._disk.get(key, raw) for key, raw in rows)

    def close(self) -> None:
        with self._lock:
            con, self._con = self._con, None
        if con is not None:
            con.close()


def _connect(index: Path) -> sqlite3.Connection:
    """``index`` opened read-only; immutable where its WAL index cannot be opened (see the module)."""
    uri = index.absolute().as_uri()
    con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=1.0, check_same_thread=False)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError:  # "unable to open database file": no -shm, none can be made
        con.close()
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=1.0, check_same_thread=False)
