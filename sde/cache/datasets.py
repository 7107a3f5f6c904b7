"""Built datasets in the cache: their key, and their tables as memory-mapped Arrow files."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Sequence

import diskcache
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: build folders of older formats are left to the size limit
    fcntl = None  # type: ignore[assignment]

from sde import __version__
from sde.compressed_columns import (CompressedColumn, CompressedStringArray, LabelColumn, is_compressed,
                                     open_column, read_strings, write_compressed)
from sde.dataset import Dataset, DatasetOptions
from sde.index_files import PARTS as INDEX_PARTS, SORT_PARTS, files_beside, part_path, write_none_under
from sde.sources import SourceSet, as_source_set, source_stamps

from sde.cache.folders import CacheReadOnly, Warn, note_on_stderr, report_read_only, warn_on_stderr
from sde.cache import in_use
from sde.cache.kept import KeptWithBuild
from sde.cache.limit import (Held, InUse, file_size, last_use, mark_used, remove_least_recently_used, say_in_use,
                             size_limit, value_path)
from sde.cache.read_only import ReadOnlyStore
from sde.cache.store import (STALE_FILE_S, LinkedFile, LinkingDisk, abandoned_name, done_with_temp_file, make_read_only,
                             open_store, remove_stale_temp_files, temp_file_in)


# Bump when the layout of a built Dataset changes, or what sde computes into it (the version is not
# bumped per change), so old entries are not misread or kept with old numbers.
CACHE_FORMAT = 16  # 10: scores and measures this version computes otherwise (predictions by shard_id,
# one-channel measures, long-utterance alignment, numbers read as money, percent, decades, minus);
# 11: --normalize reads more of numbers (times, fractions, ranges...) and gives text one spelling;
# 12: --normalize numbers reads years, decimal commas, other scripts' digits, fewer space groups
# 13: years by their context ("1234 steps" a cardinal, "555 1234" a phone number), '90s, 1010-1099
# 14: labels read in pairs ("Flight 1549", "room 101"), "+" as plus, a year starting a sentence
# ("1990 saw"), a counted noun after "in"/"the" ("in 1234 steps") a cardinal
# 15: a --predictions line without pred_text is a missing prediction, not a bad line
# 16: a segment running past the end of a truncated WAV/AIFF has the player's "truncated file" error
# in audio_error (its measures of what the file holds counted it readable)


#: The cache folder's subfolder of build folders (sde.build.load).
BUILDS = "builds"
#: The file in a build folder that names the cache format its parts are built for: one of an older
#: format is never resumed, and is removed (DatasetCache._remove_older_builds). Folders of an sde from
#: before this file name none: they are counted toward the size limit, as any interrupted build.
BUILD_FORMAT_FILE = "format"
_BUILD_FOLDER = re.compile(r"([0-9a-f]{64}(?:-vad)?)-\d+(?:-[0-9a-f]+)?")


_SHORT_ERRNOS = {errno.ENOMEM, errno.EAGAIN, errno.EMFILE, errno.ENFILE}
_SHORT_TEXTS = ("can't start new thread", "failed to launch worker thread", "resource temporarily unavailable",
                "cannot allocate memory", "out of memory", "unable to allocate", "too many open files")


def _short_of_resources(error: BaseException) -> bool:
    """Whether reading an entry failed for want of memory, threads or file descriptors (a ulimit,
    a busy machine): a state of this process, not damage to the entry, which must not be deleted
    for it (a build of 10M utterances takes minutes to make again)."""
    if isinstance(error, MemoryError) or (isinstance(error, OSError) and error.errno in _SHORT_ERRNOS):
        return True
    text = str(error).lower()
    return any(t in text for t in _SHORT_TEXTS)


def mark_build_format(folder: Path) -> None:
    """Create the build folder ``folder`` if need be, naming this version's cache format in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / BUILD_FORMAT_FILE
        if not marker.exists():
            marker.write_text(f"{CACHE_FORMAT}\n")
    except OSError:  # the build itself says what is wrong with the folder
        pass


def _build_format(folder: Path) -> int | None:
    """The cache format a build folder's parts were built for; None: not named."""
    try:
        return int((folder / BUILD_FORMAT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def remove_build(folder: Path) -> bool:
    """Remove a build folder (its parts and joined tables, see sde.build.load); whether it is gone."""
    shutil.rmtree(folder, ignore_errors=True)
    return not folder.exists()


def remove_build_soon(folder: Path) -> threading.Thread | None:
    """Remove a finished build folder without waiting for it: the file system frees each part's
    file in ~30 ms (1M utterances: ~0.4 s that a server's start waited for). The folder is renamed
    first, so it is gone under its name at once (no build resumes from it), then deleted on a
    thread the process finishes before it exits (not a daemon); a killed process's is removed by the
    next store into the cache (DatasetCache.make_room). Removed here where it cannot be renamed."""
    trash = folder.with_name(abandoned_name("removing-"))
    try:
        os.rename(folder, trash)
    except OSError:
        remove_build(folder)
        return None
    thread = threading.Thread(target=shutil.rmtree, args=(trash,), kwargs={"ignore_errors": True},
                              name="sde-build-removal", daemon=False)
    thread.start()
    return thread


def file_stamp(path: str | Path) -> dict:
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def fingerprint(manifest: "str | Path | Sequence[str | Path] | SourceSet", options: DatasetOptions) -> str:
    """Key of a built dataset: the identity of every manifest file (size and modification time, or
    size and ETag for a remote one; a missing shard counts too) and every option that changes the
    result."""
    record = {
        "format": CACHE_FORMAT,
        "sde": __version__,
        "manifest": source_stamps(as_source_set(manifest)),
        "options": dataclasses.asdict(options),
        "files": [file_stamp(f) for f in options.files() if Path(f).exists()],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


#: (cache folder, entry) whose read-only record was said not to be renewed (DatasetCache._not_renewed).
_SAID_NOT_RENEWED: set[tuple[Path, str]] = set()


class DatasetCache:
    """diskcache-backed store of built datasets; every method degrades to a warning on failure.

    A folder that passes every safety check but cannot be written (sde.cache.folders.CacheReadOnly:
    a read-only mount of what a batch job indexed, a folder made read-only) is opened ``read_only``
    (``note`` says so, once): its datasets are read (sde.cache.read_only), and nothing is written
    there, not even the index files, kept values and summary sums a read otherwise keeps beside
    them: those stay in memory, as without a cache. The caller builds what it misses without
    storing it (sde.build.load)."""

    def __init__(self, directory: str | Path, warn: Warn = warn_on_stderr, note: Warn = note_on_stderr) -> None:
        """Raises CacheUnusable (see open_store; a read-only folder whose index cannot be read)."""
        self.directory = Path(directory)
        self.warn = warn
        self.note = note
        self.size_limit = size_limit(warn)
        self._why_read_only: CacheReadOnly | None = None
        #: entries this cache did not remove because another process uses them (sde.cache.in_use)
        self.kept_in_use: set[str] = set()
        self._said_short: set[str] = set()  # entries said to be unreadable for want of memory or threads
        self._replacing: dict[str, list[str]] = {}  # entry -> older formats' entries of its dataset
        self._store: diskcache.Cache | ReadOnlyStore
        try:
            # No eviction by diskcache: it removes entries one by one as they are stored, so a dataset
            # bigger than its limit evicted its own first tables and could never be read back.
            # make_room removes whole datasets instead, counting the index files beside them (sde.cache.limit).
            self._store = open_store(self.directory, warn, eviction_policy="none", disk=LinkingDisk)
        except CacheReadOnly as e:
            self._store = ReadOnlyStore(e.directory)
            self._why_read_only = e
            write_none_under(e.directory)
            report_read_only(note, e)

    @property
    def read_only(self) -> bool:
        return self._why_read_only is not None

    def close(self) -> None:
        self._store.close()

    def holds(self, key: str) -> bool:
        """Whether an entry is stored under ``key`` (False where the index cannot be read)."""
        try:
            return self._store.get(("meta", key)) is not None
        except Exception:  # noqa: BLE001 - a damaged index holds nothing usable
            return False

    def get(self, key: str) -> Dataset | None:
        # held before the look-up: an entry another process is removing is waited for, then missed
        newly = False if self.read_only else in_use.use(self.directory, key)
        try:
            meta_raw = self._store.get(("meta", key))
        except Exception as e:  # noqa: BLE001 - an index damaged while running: next start repairs it
            self.warn(f"cannot read the cache index in {self.directory} ({e}); rebuilding without it")
            meta_raw = None
        if meta_raw is None:
            if newly:  # a miss: stored by this process later (put), or not used
                in_use.release(self.directory, key)
            return None
        build = self._build_of(key)
        try:
            meta = pickle.loads(meta_raw)
            sizes = meta.get("table_bytes", {})
            read = {name: self._read_table(key, name, sizes.get(name)) for name in meta["tables"]}
            dataset = _dataset_from(meta, _frames(meta, {name: table for name, (table, _) in read.items()}))
            dataset.files = _read_ahead_order(list(read.values()))
        except Exception as e:  # noqa: BLE001 - any corruption means "rebuild", never a crash
            # the process's limits, not the entry: it stays for the next start. Once short, a later
            # failure is taken as the same: under ulimit -v, DuckDB's next "Failed to launch worker
            # thread" came cut to "Failed to launc", and the entry was deleted as unreadable
            if _short_of_resources(e) or self._said_short:
                if key not in self._said_short:
                    self._said_short.add(key)
                    self.warn(f"cannot read cache entry {key[:12]} in {self.directory} now ({e}): this process is short "
                              "of memory or threads (a ulimit -v or -u, or a busy machine?); the entry is kept, "
                              "and this run builds without it")
                return None
            self.warn(f"cache entry {key[:12]} in {self.directory} is unreadable ({e}); rebuilding it")
            self.delete(key)
            return None
        if self.read_only:  # what was kept with it is read, nothing is kept
            self._summary_sums(key, dataset)
            dataset.caches.keep_with(KeptWithBuild(self.directory, key, read_only=True, build=build), dataset.generation)
            return dataset
        mark_used(self._store, key, meta.get("name", key[:12]))
        self._summary_sums(key, dataset)
        dataset.caches.keep_with(KeptWithBuild(self.directory, key, build=build), dataset.generation)
        self.make_room(keep=key)  # its index files, written since it was stored, may have passed the limit
        return dataset

    def _summary_sums(self, key: str, dataset: Dataset) -> None:
        """Give the dataset the summary's sums kept beside it (Dataset.summary_sums: ~24 columns read
        at each start otherwise, seconds at 100M utterances), or compute and keep them: once, at the
        first load of a build."""
        try:
            if not dataset.preset_summary_sums(self._store.get(("sums", key))) and not self.read_only:
                self._store.set(("sums", key), dataset.summary_sums())
        except Exception:  # noqa: BLE001 - a read-only cache: the summary is computed at each start
            pass

    def put(self, key: str, dataset: Dataset) -> None:
        if self.read_only:  # said once, when the cache was opened
            return
        in_use.use(self.directory, key)
        try:
            meta = _meta_of(dataset, [])
            sizes: dict[str, int] = {}
            for name, df in _tables_of(dataset).items():
                compressed = _compressible(df)
                if compressed:
                    meta.setdefault("column_order", {})[name] = [str(c) for c in df.columns]
                sizes[name] = self._write_table(key, name, df.drop(columns=compressed))
                for column in compressed:
                    part = f"{name}{COLUMN_FILE_SEPARATOR}{column}"
                    sizes[part] = self._write_compressed(key, part, str(column), df[column])
            meta["tables"] = list(sizes)
            meta["table_bytes"] = sizes
            build = self._new_build(key)
            self._store.set(("meta", key), pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL))
            mark_used(self._store, key, meta["name"])
            self._supersede(key)
        except Exception as e:  # noqa: BLE001 - a full disk or read-only cache must not stop the app
            if threading.main_thread().is_alive():
                self.warn(f"could not write the cache in {self.directory} ({e}); continuing without it")
            # else: sde is exiting (Ctrl-C, SIGTERM) while a background write runs; nothing to report
            self.delete(key)
            return
        self._summary_sums(key, dataset)
        dataset.caches.keep_with(KeptWithBuild(self.directory, key, build=build), dataset.generation)
        self.make_room(keep=key)

    def _new_build(self, key: str) -> str:
        """Name the build about to be stored under ``key``, before its description: values kept
        from another build once stored under it (the same key: an input edited with its size and
        time kept, measures taken again) are not kept with this one (sde.cache.kept)."""
        build = uuid.uuid4().hex
        self._store.set(("build", key), build)
        for stale in [k for k in self._store.iterkeys()
                      if isinstance(k, tuple) and len(k) == 3 and k[0] == "columns" and k[1] == key]:
            self._store.delete(stale)  # derived from the build replaced (a process mapping one reads on)
        return build

    def put_built(self, key: str, meta: dict, files: dict[str, Path]) -> None:
        """Store a dataset whose tables are already Arrow files (sde.build); raises on failure
        (the caller keeps the files and serves from them)."""
        if self._why_read_only is not None:
            raise self._why_read_only
        in_use.use(self.directory, key)
        try:
            sizes = {}
            for name, path in files.items():
                sizes[name] = os.path.getsize(path)
                # linked, not copied: the built files are in this cache's folder (see load.py)
                self._store.set(("table", key, name), LinkedFile(str(path)), read=True)
                self._make_read_only(("table", key, name))
            meta = {**meta, "tables": list(files), "table_bytes": sizes}
            self._new_build(key)
            self._store.set(("meta", key), pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL))
            mark_used(self._store, key, meta["name"])
            self._supersede(key)
        except BaseException:
            self.delete(key)
            raise
        self.make_room(keep=key)

    def replace_older(self, key: str, inputs: Sequence[str], options: DatasetOptions) -> None:
        """Before entry ``key`` is built: say, once, where the cache holds its dataset (the same
        local input files and options) as written by an sde of another cache format, which this
        one cannot read; those of an older format are removed once entry ``key`` is stored
        (:meth:`_supersede`), those of a newer one are kept for it."""
        older = self._other_formats(key, inputs, options)
        if not older:
            return
        _, fmt, name = max(older, key=lambda o: (o[1] < CACHE_FORMAT, o[1]))
        age = "an older" if fmt < CACHE_FORMAT else "a newer"
        self.note(f"the cached build of {name} in {self.directory} was made by {age} sde (cache format {fmt}; this "
                  f"version reads {CACHE_FORMAT}): building it again"
                  + ("" if fmt < CACHE_FORMAT else " (that entry is kept for the newer sde)"))
        if not self.read_only:
            self._replacing[key] = [k for k, f, _ in older if f < CACHE_FORMAT]

    def _other_formats(self, key: str, inputs: Sequence[str], options: DatasetOptions) -> list[tuple[str, int, str]]:
        """(key, cache format, name) of each entry of other keys built from the same local input
        files (their record, sde.cache.identity) with the same options, in another cache format
        (the format is in the key, sde.cache.datasets.fingerprint). Remote sources: none."""
        if not inputs:
            return []
        want = sorted(inputs)
        vad = key.endswith("-vad")
        found = []
        try:
            metas = [k[1] for k in self._store.iterkeys()
                     if isinstance(k, tuple) and len(k) == 2 and k[0] == "meta" and k[1] != key]
        except Exception:  # noqa: BLE001 - an unreadable index: nothing to say
            return []
        for other in metas:
            if other.endswith("-vad") != vad:
                continue
            try:
                record = self._store.get(("inputs", other))
                if not isinstance(record, dict) or sorted(str(f[0]) for f in record.get("files") or ()) != want:
                    continue
                meta = pickle.loads(self._store.get(("meta", other)))
                fmt = meta.get("format")
                if (isinstance(fmt, int) and fmt != CACHE_FORMAT
                        and dataclasses.asdict(meta.get("options")) == dataclasses.asdict(options)):
                    found.append((other, fmt, str(meta.get("name") or other[:12])))
            except Exception:  # noqa: BLE001 - a description this sde cannot read: another dataset's, for all we know
                continue
        return found

    def _supersede(self, key: str) -> None:
        """Entry ``key`` is stored: mark the older formats' entries of its dataset (replace_older)
        for removal, now (make_room) or, where another process uses one, at a later store or load."""
        for old in self._replacing.pop(key, ()):
            self._store.set(("superseded", old), key)

    def _build_of(self, key: str) -> str | None:
        try:
            build = self._store.get(("build", key))
        except Exception:  # noqa: BLE001
            return None
        return build if isinstance(build, str) else None

    def input_record(self, key: str) -> object:
        """The record of the input files entry ``key`` was built from (sde.cache.identity), or None."""
        try:
            return self._store.get(("inputs", key))
        except Exception:  # noqa: BLE001 - unreadable: no record, the entry is built again
            return None

    def keep_input_record(self, key: str, record: dict | None) -> None:
        """Keep ``record`` with entry ``key`` (after the entry: one without a record is stale);
        nothing where it cannot be written. A read-only folder cannot take a record renewed (files
        read whole because their inode or change time moved): that is said, see _not_renewed."""
        if record is None:
            return
        if self.read_only:
            self._not_renewed(key, record)
            return
        if not self.holds(key):  # not stored (a full disk)
            return
        try:
            self._store.set(("inputs", key), record)
        except Exception:  # noqa: BLE001 - a full disk: the next start builds it again
            pass

    def _not_renewed(self, key: str, record: dict) -> None:
        """Say, once a process, which input files of entry ``key`` were read whole to tell they are
        the ones built (copied back, restored or remounted since: another inode or change time than
        the entry's record) and will be at every start, as this read-only folder keeps no new
        record; and the remedy. Renewing the record somewhere writable instead (a per-user file
        beside the shared cache) would be one more store to trust and keep in step for a cost that
        is one sequential read of those files (SHA-1: ~0.25 s of one core for 319 MB)."""
        if (self.directory, key) in _SAID_NOT_RENEWED:
            return
        _SAID_NOT_RENEWED.add((self.directory, key))
        kept = self.input_record(key)
        before = {tuple(f[:3]) for f in kept.get("files", ())} if isinstance(kept, dict) else set()
        reread = [f for f in record.get("files", ()) if tuple(f[:3]) not in before]
        if not reread:
            return
        names = ", ".join(str(f[0]) for f in reread)
        size = sum(int(f[3]) for f in reread) / 1e6
        one = len(reread) == 1
        self.note(f"{names} ({size:,.1f} MB) {'was' if one else 'were'} read whole to tell {'it is' if one else 'they are'} "
                  f"what the cache in {self.directory} was built from (another inode or change time: copied, restored "
                  f"or remounted since); that folder is read-only, so it cannot record this, and every start reads "
                  f"{'it' if one else 'them'} again. To skip that, run sde on this dataset once where {self.directory} "
                  f"is writable, seeing the files as this machine does (sde index SOURCE --cache-dir {self.directory}, "
                  "with this start's options), or use a --cache-dir you can write")

    def delete(self, key: str) -> bool:
        """Remove a dataset's entries, its table files and the index files beside them; False where
        that failed (a read-only folder) or another sde process uses it (then in kept_in_use)."""
        try:
            return self._delete_unless_used(key)
        except InUse:
            return False

    def _delete_unless_used(self, key: str) -> bool:
        """:meth:`delete`, raising InUse where another process uses the entry (sde.cache.in_use)."""
        if self.read_only:
            return False
        with in_use.removing(self.directory, key) as free:
            if not free:
                self.kept_in_use.add(key)
                raise InUse(key)
            try:
                keys = [k for k in self._store.iterkeys() if isinstance(k, tuple) and len(k) >= 2 and k[1] == key]
                beside = [index for k in keys if k[0] == "table" for index in files_beside(str(value_path(self._store, k)))]
                for k in keys:
                    self._store.delete(k)
            except Exception:  # noqa: BLE001
                return False
            for path in beside:  # else removed as orphans when a cache folder is next opened
                try:
                    os.unlink(path)
                except OSError:
                    pass
        return True

    def make_room(self, keep: str) -> list[str]:
        """Remove whole datasets other than ``keep`` and the parts of interrupted builds, least
        recently used first, until those left (table files, the index files beside them, parts) fit
        the size limit; says which were removed, and returns their keys."""
        if self.read_only:
            return []
        try:
            datasets = self._datasets()
            superseded = {h.key for h in datasets if h.key != keep and ("superseded", h.key) in self._store}
            self._remove_older_builds(keep)
            held = datasets + self._interrupted_builds(keep)
        except Exception:  # noqa: BLE001 - an unreadable index: nothing is removed
            return []
        gone = []
        for h in datasets:  # an older format's build of a dataset stored since: never read again
            if h.key in superseded:
                try:
                    if self._delete_unless_used(h.key):
                        gone.append(h)
                except InUse:
                    say_in_use(h, self.directory, self.note)
        held = [h for h in held if h not in gone]

        def remove(key: str) -> bool:
            return remove_build(self.directory / key) if key.startswith(f"{BUILDS}/") else self._delete_unless_used(key)

        removed = remove_least_recently_used(held, keep=keep, limit=self.size_limit, remove=remove,
                                             entries="built datasets", folder=self.directory, warn=self.warn,
                                             note=self.note)
        return [h.key for h in gone + removed]

    def _remove_older_builds(self, keep: str) -> None:
        """Remove the build folders of an older cache format (BUILD_FORMAT_FILE), which this version
        never resumes, with their lock file: those no process is building (their lock is free) nor
        wrote in the last :data:`STALE_FILE_S`; says so once for each."""
        builds = self.directory / BUILDS
        if fcntl is None or not builds.is_dir():
            return
        older: dict[str, list[tuple[Path, int]]] = {}
        for folder in builds.iterdir():
            found = _BUILD_FOLDER.fullmatch(folder.name)
            if found is None or found.group(1) == keep or not folder.is_dir():
                continue
            fmt = _build_format(folder)
            if fmt is not None and fmt < CACHE_FORMAT:
                older.setdefault(found.group(1), []).append((folder, fmt))
        now = time.time()
        for key, folders in older.items():
            lock = builds / f"{key}.lock"
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # being built, or no locks here: left to the size limit
                os.close(fd)
                continue
            try:
                for folder, fmt in folders:
                    newest = max((p.stat().st_mtime for p in folder.rglob("*")), default=folder.stat().st_mtime)
                    if now - newest >= STALE_FILE_S and remove_build(folder):
                        self.note(f"removed the parts of an interrupted build ({BUILDS}/{folder.name[:16]}…) from "
                                  f"{self.directory}: made by an older sde (cache format {fmt}), "
                                  "this version cannot resume it")
                if not any(f.exists() for f, _ in folders):
                    lock.unlink(missing_ok=True)
            except OSError:
                pass
            finally:
                os.close(fd)

    def _interrupted_builds(self, keep: str) -> list[Held]:
        """The build folders (sde.build.load: ``builds/<key>-<part size>``, where an interrupted
        build's finished parts wait for the same command to resume it) other than ``keep``'s and
        those written in the last :data:`STALE_FILE_S` (a build running in another process)."""
        held = []
        now = time.time()
        remove_stale_temp_files(self.directory / BUILDS)  # finished builds a killed process was removing
        for folder in sorted((self.directory / BUILDS).glob("*")) if (self.directory / BUILDS).is_dir() else []:
            if not folder.is_dir() or folder.name.startswith((f"{keep}-", ".tmp-")):  # .tmp-: being removed
                continue
            stats = [p.stat() for p in folder.rglob("*") if p.is_file()]
            newest = max((st.st_mtime for st in stats), default=folder.stat().st_mtime)
            if now - newest < STALE_FILE_S:
                continue
            held.append(Held(f"{BUILDS}/{folder.name}", f"parts of an interrupted build ({BUILDS}/{folder.name[:16]}…)",
                             sum(st.st_size for st in stats), newest))
        return held

    def _datasets(self) -> list[Held]:
        """Each whole dataset stored (one whose description is written: a dataset still being
        stored by another process is not counted), with its bytes on disk."""
        files: dict[str, list[Path]] = {}
        described = set()
        for k in list(self._store.iterkeys()):
            if not isinstance(k, tuple) or len(k) < 2:
                continue
            if k[0] == "meta":
                described.add(k[1])
            elif k[0] in ("table", "columns"):  # columns: derived from the build, kept with it (sde.cache.kept)
                path = value_path(self._store, k)
                if path is not None:
                    files.setdefault(k[1], []).append(path)
        held = []
        for key in described:
            used, name = last_use(self._store, key)
            paths = [str(p) for p in files.get(key, [])]
            size = sum(file_size(p) for path in paths for p in (path, *files_beside(path)))
            held.append(Held(key, f"build of {name or key[:12]}", size, used))
        return held

    def _write_table(self, key: str, name: str, df: pd.DataFrame) -> int:
        """Store `df` as an Arrow file; returns its size (checked again before it is mapped)."""
        table = pa.Table.from_pandas(df, preserve_index=False)
        table = pa.Table.from_arrays([missing_as_nan(table[name]) if str(df[name].dtype) in NUMPY_FLOATS else table[name]
                                      for name in table.column_names], schema=table.schema)

        def write(path: str) -> None:
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                # One record batch: columns read back as single contiguous arrays (fast row takes).
                writer.write_table(table.combine_chunks())
        return self._store_file(key, name, write)

    def _write_compressed(self, key: str, name: str, column: str, values: pd.Series) -> int:
        """Store a string column as a compressed column file; returns its size."""
        return self._store_file(key, name, lambda path: write_compressed(path, column, [read_strings(values)]))

    def _store_file(self, key: str, name: str, write: Callable[[str], object]) -> int:
        """Have `write` fill a temporary file, link it into the store read-only; returns its size."""
        # Written to a temporary file first so that the store links a complete file in.
        tmp = temp_file_in(self.directory, ".arrow")
        try:
            write(tmp)
            size = os.path.getsize(tmp)
            self._store.set(("table", key, name), LinkedFile(tmp), read=True)
        finally:
            done_with_temp_file(tmp)
        self._make_read_only(("table", key, name))
        return size

    def _make_read_only(self, store_key: tuple) -> None:
        make_read_only(self._store, store_key)

    def _read_table(self, key: str, name: str, expected_bytes: int | None = None,
                    ) -> tuple[pa.Table | CompressedColumn | LabelColumn, str | None]:
        """A stored table, and the file it is read from (None: read into memory)."""
        handle = self._store.get(("table", key, name), read=True)
        if handle is None:
            raise KeyError(f"table {name} missing")
        with handle:
            path = getattr(handle, "name", None)
            if isinstance(path, str) and os.path.exists(path):
                # Memory-mapped: pages load on demand and are shared with the OS page cache.
                source = pa.memory_map(path, "r")
                if expected_bytes is not None and source.size() != expected_bytes:
                    raise ValueError(f"table {name} is {source.size()} bytes, {expected_bytes} when written: "
                                     "changed outside sde")
                return _open_table_file(path, source), path
            return pa.ipc.open_file(pa.BufferReader(handle.read())).read_all(), None


def _read_ahead_order(tables: Sequence[tuple[pa.Table | CompressedColumn | LabelColumn, str | None]]) -> tuple[str, ...]:
    """The files of a dataset's stored tables in the order its first queries need them: the
    memory-mapped tables (numbers every filter, sort and breakdown reads; label codes), then the
    word indexes and ranks beside the compressed columns (searches, sorts by text), then those
    columns (read whole by the warm-up where they fit, else by each search)."""
    mapped: list[str] = []
    indexed: list[str] = []
    compressed: list[str] = []
    for table, path in tables:
        if path is None:  # read into memory: nothing to read ahead
            continue
        if isinstance(table, CompressedColumn):
            compressed.append(path)
        else:
            mapped.append(path)
        if isinstance(table, (CompressedColumn, LabelColumn)):
            indexed.append(path)
    # words and ranks first (searches, sorts by text), then pairs (phrases) and joins (regexes)
    indexes = [index for part in ("words", *SORT_PARTS, *INDEX_PARTS[1:]) for column in indexed
               if os.path.exists(index := part_path(column, part))]
    return tuple(dict.fromkeys([*mapped, *indexes, *compressed]))


# A stored table may be kept as several files ("<table>/<column>"): each fixed-width column in a
# file of its own (one contiguous array: pandas then maps it without a copy), each string column
# compressed (sde.compressed_columns), the rest in "<table>". meta["column_order"][table] lists the
# columns.
COLUMN_FILE_SEPARATOR = "/"


def _frames(meta: dict, tables: dict[str, pa.Table | CompressedColumn | LabelColumn]) -> dict[str, pd.DataFrame]:
    """The stored tables as frames, each assembled from its column files (see above); a compressed
    column file becomes a :class:`CompressedStringArray` column (read by batch, never whole)."""
    order = meta.get("column_order", {})
    frames = {}
    for name, table in tables.items():
        if COLUMN_FILE_SEPARATOR in name:
            continue
        assert isinstance(table, pa.Table)
        compressed: dict[str, CompressedColumn | LabelColumn] = {}
        if name in order:
            columns = {n: table[n] for n in table.column_names}
            for other, part in tables.items():
                if other.startswith(name + COLUMN_FILE_SEPARATOR):
                    column = other[len(name) + 1:]
                    if isinstance(part, (CompressedColumn, LabelColumn)):
                        compressed[column] = part
                    else:
                        columns[column] = part.column(0)
            plain = [n for n in order[name] if n not in compressed]
            table = pa.Table.from_arrays([columns[n] for n in plain], names=plain, metadata=table.schema.metadata)
        frame = table.to_pandas(split_blocks=True, self_destruct=False, types_mapper=_TEXT_AS_IS.get)
        dtypes = meta["dtypes"].get(name, {})
        for column, file in compressed.items():
            # inserted in place: a frame of single-column blocks is never consolidated (copied)
            frame.insert(order[name].index(column), column,
                         pd.Series(CompressedStringArray.over(file, _string_dtype(dtypes.get(column))), copy=False))
        frames[name] = frame
    return frames


def _string_dtype(stored: str | None) -> pd.StringDtype:
    """The pandas string dtype a compressed column was built with ("string" or "str")."""
    try:
        dtype = pd.api.types.pandas_dtype(stored) if stored else None
    except TypeError:
        dtype = None
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        return dtype
    return pd.StringDtype("pyarrow")


# Text columns become pandas' Arrow-backed strings around the mapped buffers (large_string ones
# without a copy); their stored dtype is then restored (_restore_dtypes).
_TEXT_AS_IS = {pa.large_string(): pd.StringDtype("pyarrow"), pa.string(): pd.StringDtype("pyarrow")}


#: pandas dtypes without a missing value of their own: a missing float is NaN.
NUMPY_FLOATS = ("float64", "float32", "float16")


def missing_as_nan(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A float column with its missing values as NaN, without a validity bitmap (other columns as
    they are), for a frame whose dtype is numpy's float: pandas reads a missing value there as NaN
    either way, and maps a column without a bitmap in place, where one with a bitmap is copied whole
    at every start (10M rows: 80 MB and ~50 ms a column; a dataset where some lines lack a
    hypothesis or a score has 16 such columns)."""
    if pa.types.is_floating(values.type) and values.null_count:
        return pc.fill_null(values, pa.scalar(float("nan"), values.type))
    return values


def _compressible(df: pd.DataFrame) -> list:
    """The columns of a frame stored compressed: its Arrow strings (sde.compressed_columns)."""
    return [c for c in df.columns if isinstance(df[c].dtype, pd.StringDtype) and df[c].dtype.storage == "pyarrow"]


def _tables_of(dataset: Dataset) -> dict[str, pd.DataFrame]:
    tables = {"utterances": dataset.utterances, "vocabulary": dataset.vocabulary}
    for i, h in enumerate(dataset.hypotheses):
        tables[f"errors{i}"] = dataset.errors[h.field]
    return tables


def built_meta(dataset: Dataset, dtypes: dict[str, dict[str, str]], column_order: dict[str, list[str]]) -> dict:
    """The cache entry's description of a dataset whose tables are files (its frames are empty);
    ``column_order``: the columns of each table kept as several files (see _frames)."""
    return {**_meta_of(dataset, list(dtypes), dtypes), "column_order": column_order}


def read_built(meta: dict, files: dict[str, Path]) -> Dataset:
    """A dataset from its Arrow table files (memory-mapped) and built_meta's description."""
    tables = {name: _open_table_file(str(path)) for name, path in files.items()}
    dataset = _dataset_from(meta, _frames(meta, tables))
    dataset.files = _read_ahead_order([(tables[name], str(path)) for name, path in files.items()])
    return dataset


def _open_table_file(path: str, source: pa.MemoryMappedFile | None = None) -> pa.Table | CompressedColumn | LabelColumn:
    """A stored table file: a compressed column (read by batch, see sde.compressed_columns), or a
    table memory-mapped (not closed: the frames' columns are views of the mapping; pages load on
    demand)."""
    source = source if source is not None else pa.memory_map(path, "r")
    reader = pa.ipc.open_file(source)
    if is_compressed(reader.schema):
        return open_column(path)
    return reader.read_all()


def _meta_of(dataset: Dataset, table_names: list[str], dtypes: dict[str, dict[str, str]] | None = None) -> dict:
    return {
        "format": CACHE_FORMAT,
        "tables": table_names,
        "name": dataset.name,
        "manifest_path": str(dataset.manifest_path),
        "options": dataset.options,
        "hypotheses": dataset.hypotheses,
        "problems": dataset.problems,
        "alphabet": dataset.alphabet,
        "total_lines": dataset.total_lines,
        "warnings": dataset.warnings,
        "alphabet_report": dataset.alphabet_report,
        "extra_summary": dataset.extra_summary,
        "tar_shards": dataset.tar_shards,
        "dtypes": dtypes if dtypes is not None else {
            name: {c: str(t) for c, t in df.dtypes.items()} for name, df in _tables_of(dataset).items()
        },
    }


def _dataset_from(meta: dict, tables: dict[str, pd.DataFrame]) -> Dataset:
    if meta.get("format") != CACHE_FORMAT:
        raise ValueError(f"format {meta.get('format')} is not {CACHE_FORMAT}")
    for name, df in tables.items():
        _restore_dtypes(df, meta["dtypes"][name])
    return Dataset(
        name=meta["name"],
        manifest_path=Path(meta["manifest_path"]),
        options=meta["options"],
        utterances=tables["utterances"],
        vocabulary=tables["vocabulary"],
        hypotheses=meta["hypotheses"],
        errors={h.field: tables[f"errors{i}"] for i, h in enumerate(meta["hypotheses"])},
        problems=meta["problems"],
        alphabet=meta["alphabet"],
        total_lines=meta["total_lines"],
        warnings=meta["warnings"],
        alphabet_report=meta["alphabet_report"],
        extra_summary=meta["extra_summary"],
        tar_shards=tuple(meta.get("tar_shards", ())),
    )


def _restore_dtypes(df: pd.DataFrame, dtypes: dict[str, str]) -> None:
    """Arrow round trips may widen a few dtypes (e.g. string flavours); put back what was built."""
    for col, want in dtypes.items():
        if col in df and str(df[col].dtype) != want:
            try:
                df[col] = df[col].astype(want)
            except (TypeError, ValueError):
                pass
