"""Persistent cache of built datasets, so a second start on a million-utterance manifest is fast.

Entries live in a diskcache store outside the dataset folder (the user cache dir by default). Each
table is stored as an Arrow IPC file, which diskcache keeps as a plain file; a warm start memory-maps
it instead of parsing and scoring the manifest again. The small metadata record is written last and
acts as the commit marker: a reader never sees a half-written entry. Any failure to read or write
the cache is a warning, never fatal.

An entry is keyed by its input files' paths, sizes and modification times; it also keeps their
inodes, change times and content digests (sde.cache.identity), so that an edit that kept a file's
size and modification time (``sed -i`` then ``touch -r``, ``rsync -t``) builds it again, and a
chmod or a copy back of the same content does not.

Every diskcache store sde opens (datasets, predictions, the UI's background jobs) goes through
:func:`open_store`, which keeps the promises of the README:

* the folder must be usable: creatable, a folder, writable, not full; else ``CacheUnusable``
  (the caller warns once and runs without it). One that passes the privacy checks below but
  cannot be written (a read-only mount of what a batch job indexed) raises ``CacheReadOnly``:
  the dataset cache reads it (sde.cache.read_only) and stores nothing there, with one note;
* the folder must be private: entries are pickles, so a folder that another user owns or can write
  (directly, or by renaming it through a shared parent) would let them run code as us;
* a corrupt index (``cache.db``) is set aside and recreated, with one warning;
* temporary and orphan files of writers killed mid-write (``kill -9``) are removed.

A dataset a live sde process has read or stored is not removed by another process sharing the
folder (sde.cache.in_use): making room skips it, saying so once, and a later start removes it once
no process uses it. An entry of the same dataset written by an sde of an older cache format (the
format is in the key) is named as the reason of the rebuild and removed once the new one is stored.

Tables are memory-mapped. sde never rewrites a file in place (diskcache writes every value under a
new name and unlinks old ones; unlinking leaves existing mappings valid), stored tables are
read-only, and their size is checked against the size written before they are mapped. Something
outside sde truncating a table while a server maps it would still crash that server with SIGBUS.
"""

from sde.cache.datasets import (BUILDS, CACHE_FORMAT, COLUMN_FILE_SEPARATOR, NUMPY_FLOATS, DatasetCache, built_meta,
                                 file_stamp, fingerprint, mark_build_format, missing_as_nan, read_built, remove_build,
                                 remove_build_soon)
from sde.cache.folders import (FIX_FOLDER, FIX_FULL, FIX_PRIVATE, POSIX, CacheReadOnly, CacheUnusable, Warn,
                               check_cache_folder, note_on_stderr, report_read_only, report_unusable, warn_on_stderr)
from sde.cache.limit import DEFAULT_SIZE_LIMIT, SIZE_LIMIT_VARIABLE, make_room_among, mark_used, size_limit
from sde.cache.read_only import ReadOnlyStore
from sde.cache.store import (HOST_TAG, LEGACY_TEMP_S, STALE_FILE_S, JobStore, done_with_temp_file, open_job_store,
                             open_store, private_temp_folder, remove_orphan_values, remove_stale_temp_files,
                             temp_file_in)
from sde.caching import default_cache_dir  # the bottom layer's: sde.sources' tar indexes sit beside it

__all__ = [
    "BUILDS", "CACHE_FORMAT", "COLUMN_FILE_SEPARATOR", "DEFAULT_SIZE_LIMIT", "FIX_FOLDER", "FIX_FULL", "FIX_PRIVATE", "HOST_TAG",
    "LEGACY_TEMP_S", "NUMPY_FLOATS", "POSIX", "SIZE_LIMIT_VARIABLE", "STALE_FILE_S", "CacheReadOnly", "CacheUnusable",
    "DatasetCache", "JobStore", "ReadOnlyStore", "Warn",
    "built_meta", "check_cache_folder", "default_cache_dir", "done_with_temp_file", "file_stamp", "fingerprint",
    "make_room_among", "mark_build_format", "mark_used", "missing_as_nan", "note_on_stderr", "open_job_store",
    "open_store", "private_temp_folder", "read_built", "remove_build", "remove_build_soon", "remove_orphan_values", "remove_stale_temp_files",
    "report_read_only", "report_unusable", "size_limit", "temp_file_in", "warn_on_stderr",
]