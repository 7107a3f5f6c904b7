"""Persistent cache of built datasets, so a second start on a million-utterance manifest is fast.

Entries live in a diskcache store outside the dataset folder (the user cache dir by default). Each
table is stored as an Arrow IPC file, which diskcache keeps as a plain file; a warm start memory-maps
it instead of parsing and scoring the manifest again. The small metadata record is written last and
acts as the commit marker: a reader never sees a half-written entry. Any failure to read or write
the cache is a warning, never fatal.

Every diskcache store sde opens (datasets, predictions, the UI's background jobs) goes through
:func:`open_store`, which keeps the promises of the README:

* the folder must be usable: creatable, a folder, writable, not full; else ``CacheUnusable``
  (the caller warns once and runs without it);
* the folder must be private: entries are pickles, so a folder that another user owns or can write
  (directly, or by renaming it through a shared parent) would let them run code as us;
* a corrupt index (``cache.db``) is set aside and recreated, with one warning;
* temporary and orphan files of writers killed mid-write (``kill -9``) are removed.

Tables are memory-mapped. sde never rewrites a file in place (diskcache writes every value under a
new name and unlinks old ones; unlinking leaves existing mappings valid), stored tables are
read-only, and their size is checked against the size written before they are mapped. Something
outside sde truncating a table while a server maps it would still crash that server with SIGBUS.
"""

from __future__ import annotations

import atexit
import dataclasses
import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import socket
import sqlite3
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import diskcache
import pandas as pd
import pyarrow as pa
from platformdirs import user_cache_dir

from sde import __version__
from sde.dataset import Dataset, DatasetOptions
from sde.sources import SourceSet, as_source_set, source_stamps

# Bump when the layout of a built Dataset changes, so old entries are not misread.
CACHE_FORMAT = 6
DEFAULT_SIZE_LIMIT = 20 * 2**30


def default_cache_dir() -> Path:
    return Path(os.environ.get("SDE_CACHE_DIR") or user_cache_dir("sde"))


def _file_stamp(path: str | Path) -> dict:
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
        "files": [_file_stamp(f) for f in options.files() if Path(f).exists()],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


Warn = Callable[[str], None]


def warn_on_stderr(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


# ------------------------------------------------------------------------------ safe stores

# A temporary or orphan file this old belongs to no running write: writes touch their file
# continuously, and the longest copy (a GB-sized table into diskcache) takes seconds.
STALE_FILE_S = 600.0
# Temporary files named before they carried their writer's host and pid.
LEGACY_TEMP_S = 60.0
FIX_FOLDER = "pass --cache-dir DIR with a writable folder of your own, or --no-cache"
FIX_PRIVATE = "pass --cache-dir DIR with a folder only you can write (mkdir -m 700 DIR), or --no-cache"
FIX_FULL = "free disk space, pass --cache-dir DIR on another disk, or --no-cache"
_PICKLES = "cache entries are Python pickles, so whoever can write there could run code as you"
_TEMP_NAME = re.compile(r"\.tmp-([A-Za-z0-9]*)-(\d+)-")
_VALUE_DIR = re.compile(r"[0-9a-f]{2}")
HOST_TAG = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]
# Ownership, mode bits and pid probes are POSIX (on Windows os.kill(pid, 0) would kill the process).
_POSIX = hasattr(os, "geteuid")
_writing: set[str] = set()          # temporary files this process is writing right now
_reported: set[Path] = set()        # folders already warned about (the first warning says it all)


class CacheUnusable(Exception):
    """A cache folder sde must not or cannot use: why, and what the user can do about it."""

    def __init__(self, directory: Path, reason: str, fix: str = FIX_FOLDER) -> None:
        super().__init__(f"{reason} (fix: {fix})")
        self.directory = Path(directory)
        self.reason = reason
        self.fix = fix


def report_unusable(warn: Warn, error: CacheUnusable, consequence: str, *, once: bool = False) -> None:
    """One warning line. ``once``: stay quiet when this folder, or one above it, was reported
    already (every writer of a start meets the same unusable folder; the user needs one line)."""
    folder = error.directory.absolute()
    if once and any(folder == seen or seen in folder.parents for seen in _reported):
        return
    _reported.add(folder)
    warn(f"cannot use the cache in {error.directory}: {error.reason}; {consequence} (fix: {error.fix})")


def _os_reason(e: OSError, directory: Path) -> tuple[str, str]:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full", FIX_FULL
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"{_file_in_the_way(directory) or directory} is a file, not a folder", FIX_FOLDER
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"it is not writable ({e.strerror})", FIX_FOLDER
    return f"cannot create it ({e.strerror or e})", FIX_FOLDER


def _sqlite_reason(e: sqlite3.Error) -> tuple[str, str]:
    text = str(e)
    if "full" in text:
        return f"the disk is full ({text})", FIX_FULL
    return f"its index cannot be written ({text})", FIX_FOLDER


def _file_in_the_way(directory: Path) -> Path | None:
    for p in (directory, *directory.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def _private_group(gid: int) -> bool:
    """The group holds nobody but us (a "user private group", as umask 002 systems create)."""
    try:
        import grp
        import pwd

        me = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(gid)
    except (ImportError, KeyError):
        return False
    return group.gr_name == me and set(group.gr_mem) <= {me}


def _writable_by_others(st: os.stat_result) -> str | None:
    if st.st_mode & stat.S_IWOTH:
        return "every user"
    if st.st_mode & stat.S_IWGRP and not _private_group(st.st_gid):
        return f"group {_group_name(st.st_gid)}"
    return None


def _group_name(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def check_cache_folder(directory: str | Path) -> Path:
    """Create `directory` (mode 0700) or check the existing one: a writable folder that only we
    control, inside folders that nobody else can rename it out of. Raises CacheUnusable saying why
    and naming the fix; nothing is created in a folder that fails the checks."""
    directory = Path(directory)
    blocker = _file_in_the_way(directory)
    if blocker is not None:
        raise CacheUnusable(directory, f"{blocker} is a file, not a folder")
    _check_parents(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.stat()
    except OSError as e:
        raise CacheUnusable(directory, *_os_reason(e, directory)) from None
    if _POSIX:
        _check_private(directory, st)
    if not os.access(directory, os.W_OK | os.X_OK):
        reason = "it is on a read-only file system" if _read_only_fs(directory) else "it is not writable"
        raise CacheUnusable(directory, reason)
    return directory


def _check_private(directory: Path, st: os.stat_result) -> None:
    me = os.geteuid()
    if st.st_uid != me:
        raise CacheUnusable(directory, f"it is owned by {_owner(st.st_uid)}, not by you ({_owner(me)}): "
                            + _PICKLES, FIX_PRIVATE)
    others = _writable_by_others(st)
    if others:
        raise CacheUnusable(directory, f"it is writable by {others} (mode {stat.S_IMODE(st.st_mode):04o}): "
                            + _PICKLES, FIX_PRIVATE)


def _check_parents(directory: Path) -> None:
    """Whoever owns or can write a parent folder can rename the cache folder away and put their
    own in its place. Parents must be ours or root's and not writable by others, except sticky
    ones (/tmp), where nobody can rename what they do not own."""
    if not _POSIX:
        return
    me = os.geteuid()
    for parent in Path(os.path.realpath(directory)).parents:
        try:
            st = parent.stat()
        except OSError:  # not created yet (mkdir makes it ours), or not ours to look into
            continue
        if st.st_mode & stat.S_ISVTX:
            continue
        if st.st_uid not in (me, 0):
            raise CacheUnusable(directory, f"its parent {parent} is owned by {_owner(st.st_uid)}, who could swap "
                                "the cache folder for their own: " + _PICKLES, FIX_PRIVATE)
        others = _writable_by_others(st)
        if others:
            raise CacheUnusable(directory, f"its parent {parent} is writable by {others}, who could swap the "
                                "cache folder for their own: " + _PICKLES, FIX_PRIVATE)


def _read_only_fs(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False


def open_store(directory: str | Path, warn: Warn = warn_on_stderr, *, sub: str | None = None,
               **settings) -> "diskcache.Cache":
    """The diskcache store in `directory` (or its subfolder `sub`), after checking both folders
    (check_cache_folder), removing what killed writers left behind and repairing a corrupt
    index. Raises CacheUnusable."""
    folder = check_cache_folder(directory)
    if sub is not None:
        folder = check_cache_folder(folder / sub)
    remove_stale_temp_files(folder)
    _repair_corrupt_index(folder, warn)
    try:
        store = diskcache.Cache(str(folder), **settings)
    except sqlite3.Error as e:
        raise CacheUnusable(folder, *_sqlite_reason(e)) from None
    except OSError as e:
        raise CacheUnusable(folder, *_os_reason(e, folder)) from None
    remove_orphan_values(folder)
    return store


def _repair_corrupt_index(folder: Path, warn: Warn) -> None:
    """A garbage or damaged cache.db would fail every start: set it aside (one warning) so diskcache
    starts an empty index. A busy or unreadable one is left to diskcache's own error."""
    index = folder / "cache.db"
    if not index.is_file():
        return
    try:
        with _sqlite_read_only(index) as con:
            verdict = con.execute("PRAGMA quick_check").fetchone()
        if verdict and verdict[0] == "ok":
            return
        problem = f"quick_check: {verdict[0] if verdict else 'no answer'}"
    except sqlite3.OperationalError:  # locked, unreadable: not proof of corruption
        return
    except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
        problem = str(e)
    aside = index.with_name("cache.db.corrupt")
    try:
        os.replace(index, aside)
        for suffix in ("-wal", "-shm"):
            index.with_name(index.name + suffix).unlink(missing_ok=True)
    except OSError as e:
        raise CacheUnusable(folder, f"its index cache.db is corrupt ({problem}) and cannot be moved aside "
                            f"({e.strerror})") from None
    warn(f"the cache index {index} was corrupt ({problem}); moved it to {aside.name} and started an empty cache")


class _sqlite_read_only:
    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=1.0)

    def __enter__(self) -> sqlite3.Connection:
        return self.con

    def __exit__(self, *exc) -> None:
        self.con.close()


def _writer_is_gone(name: str, age_s: float) -> bool:
    m = _TEMP_NAME.match(name)
    if m is None:
        return age_s > LEGACY_TEMP_S
    host, pid = m.group(1), int(m.group(2))
    if host != HOST_TAG or age_s > STALE_FILE_S or not _POSIX:  # another machine's pids mean nothing here
        return age_s > STALE_FILE_S
    if pid == os.getpid():  # an earlier process with our pid (containers restart as pid 1)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Temporary table files of writers that died (kill -9, power loss): their process is gone,
    or they are too old to belong to any running write. Returns what was removed."""
    removed = []
    now = time.time()
    try:
        candidates = [e for e in os.scandir(folder) if e.name.startswith(".tmp-") and e.is_file()]
    except OSError:
        return removed
    for entry in candidates:
        if entry.path in _writing:
            continue
        try:
            if _writer_is_gone(entry.name, now - entry.stat().st_mtime):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def remove_orphan_values(folder: Path) -> list[Path]:
    """diskcache value files (``ab/cd/*.val``) that its index does not know: a writer was killed
    between writing the file and committing the row (or the index was replaced). Only files too old
    to belong to a running write are removed."""
    index = folder / "cache.db"
    try:
        with _sqlite_read_only(index) as con:
            known = {row[0] for row in con.execute("SELECT filename FROM Cache WHERE filename IS NOT NULL")}
    except sqlite3.Error:
        return []
    removed = []
    now = time.time()
    for top in _value_dirs(folder):
        for sub in _value_dirs(top):
            for value in sub.glob("*.val"):
                rel = os.path.join(top.name, sub.name, value.name)
                try:
                    if rel not in known and now - value.stat().st_mtime > STALE_FILE_S:
                        value.unlink()
                        removed.append(value)
                except OSError:
                    pass
    return removed


def _value_dirs(folder: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(folder) if _VALUE_DIR.fullmatch(e.name) and e.is_dir()]
    except OSError:
        return []


def temp_file_in(folder: Path, suffix: str) -> str:
    """A new temporary file in `folder`, named after this host and process so that a later start
    can tell a dead writer's leftovers from a live one's work (remove_stale_temp_files)."""
    fd, path = tempfile.mkstemp(dir=folder, prefix=f".tmp-{HOST_TAG}-{os.getpid()}-", suffix=suffix)
    _writing.add(path)
    os.close(fd)
    return path


@atexit.register
def _remove_unfinished_temp_files() -> None:
    # A signal can land between mkstemp and the caller's try/finally; whatever is still listed
    # as being written when the interpreter exits is unfinished.
    for path in list(_writing):
        Path(path).unlink(missing_ok=True)


def done_with_temp_file(path: str) -> None:
    _writing.discard(path)
    Path(path).unlink(missing_ok=True)


@dataclasses.dataclass
class JobStore:
    """Where a UI background job hands its result over (`folder`) and Dash's job store (`store`)."""

    folder: Path
    store: "diskcache.Cache"


def open_job_store(folder: str | Path | None, store_name: str, warn: Warn = warn_on_stderr, *,
                   root: str | Path | None = None) -> JobStore:
    """The job store `folder/store_name`; when `folder` (or the cache folder `root` it lies in) is
    None or unusable (warned once), a private temporary folder instead: the handoff is transient,
    so background jobs keep working without the cache. Raises CacheUnusable when no folder works
    (the caller disables the jobs, saying why)."""
    if folder is not None:
        try:
            if root is not None:
                check_cache_folder(root)
            return JobStore(Path(folder), open_store(folder, warn, sub=store_name))
        except CacheUnusable as e:
            report_unusable(warn, e, "background jobs use a private temporary folder instead", once=True)
    try:
        temp = private_temp_folder(f"sde-{store_name}-")
    except OSError as e:
        raise CacheUnusable(Path(tempfile.gettempdir()),
                            f"no private temporary folder can be created ({e.strerror or e})") from None
    return JobStore(temp, open_store(temp, warn, sub=store_name))


def private_temp_folder(prefix: str) -> Path:
    """A new folder only we can use (mkdtemp: mode 0700), removed when this process exits."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # not from a forked job process that inherited the hook
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder


class DatasetCache:
    """diskcache-backed store of built datasets; every method degrades to a warning on failure."""

    def __init__(self, directory: str | Path, warn: Warn = warn_on_stderr) -> None:
        """Raises CacheUnusable (see open_store)."""
        self.directory = Path(directory)
        self.warn = warn
        self._store = open_store(self.directory, warn, size_limit=DEFAULT_SIZE_LIMIT,
                                 eviction_policy="least-recently-used")

    def close(self) -> None:
        self._store.close()

    def get(self, key: str) -> Dataset | None:
        try:
            meta_raw = self._store.get(("meta", key))
        except Exception as e:  # noqa: BLE001 - an index damaged while running: next start repairs it
            self.warn(f"cannot read the cache index in {self.directory} ({e}); rebuilding without it")
            return None
        if meta_raw is None:
            return None
        try:
            meta = pickle.loads(meta_raw)
            sizes = meta.get("table_bytes", {})
            tables = {name: self._read_table(key, name, sizes.get(name)) for name in meta["tables"]}
            return _dataset_from(meta, _frames(meta, tables))
        except Exception as e:  # noqa: BLE001 - any corruption means "rebuild", never a crash
            self.warn(f"cache entry {key[:12]} in {self.directory} is unreadable ({e}); rebuilding it")
            self.delete(key)
            return None

    def put(self, key: str, dataset: Dataset) -> None:
        try:
            tables = _tables_of(dataset)
            sizes = {name: self._write_table(key, name, df) for name, df in tables.items()}
            meta = _meta_of(dataset, list(tables))
            meta["table_bytes"] = sizes
            self._store.set(("meta", key), pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as e:  # noqa: BLE001 - a full disk or read-only cache must not stop the app
            if threading.main_thread().is_alive():
                self.warn(f"could not write the cache in {self.directory} ({e}); continuing without it")
            # else: sde is exiting (Ctrl-C, SIGTERM) while a background write runs; nothing to report
            self.delete(key)

    def put_built(self, key: str, meta: dict, files: dict[str, Path]) -> None:
        """Store a dataset whose tables are already Arrow files (sde.build); raises on failure
        (the caller keeps the files and serves from them)."""
        try:
            sizes = {}
            for name, path in files.items():
                sizes[name] = os.path.getsize(path)
                with open(path, "rb") as f:
                    self._store.set(("table", key, name), f, read=True)
                self._make_read_only(("table", key, name))
            meta = {**meta, "tables": list(files), "table_bytes": sizes}
            self._store.set(("meta", key), pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL))
        except BaseException:
            self.delete(key)
            raise

    def delete(self, key: str) -> None:
        try:
            for k in list(self._store.iterkeys()):
                if isinstance(k, tuple) and len(k) >= 2 and k[1] == key:
                    self._store.delete(k)
        except Exception:  # noqa: BLE001
            pass

    def _write_table(self, key: str, name: str, df: pd.DataFrame) -> int:
        """Store `df` as an Arrow file; returns its size (checked again before it is mapped)."""
        table = pa.Table.from_pandas(df, preserve_index=False)
        # Written to a temporary file first so diskcache can move a complete file into its store.
        tmp = temp_file_in(self.directory, ".arrow")
        try:
            with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                # One record batch: columns read back as single contiguous arrays (fast row takes).
                writer.write_table(table.combine_chunks())
            size = os.path.getsize(tmp)
            with open(tmp, "rb") as f:
                self._store.set(("table", key, name), f, read=True)
        finally:
            done_with_temp_file(tmp)
        self._make_read_only(("table", key, name))
        return size

    def _make_read_only(self, store_key: tuple) -> None:
        # A mapped file that shrinks kills the process (SIGBUS). sde never writes a stored file
        # again; read-only keeps a stray `> file` or editor of the same user from doing it.
        # (Not on Windows: there a read-only file cannot be deleted, and eviction deletes.)
        if not _POSIX:
            return
        handle = self._store.get(store_key, read=True)
        if handle is not None:
            with handle:
                path = getattr(handle, "name", None)
                if isinstance(path, str):
                    os.chmod(path, 0o444)

    def _read_table(self, key: str, name: str, expected_bytes: int | None = None) -> pa.Table:
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
            else:
                source = pa.BufferReader(handle.read())
            return pa.ipc.open_file(source).read_all()


# A stored table may be kept as several files: its text columns in one (record batch per built
# part), and each fixed-width column in a file of its own ("<table>/<column>", one contiguous
# array: pandas then maps it without a copy). meta["column_order"][table] lists the columns.
COLUMN_FILE_SEPARATOR = "/"


def _frames(meta: dict, tables: dict[str, pa.Table]) -> dict[str, pd.DataFrame]:
    """The stored tables as frames, each assembled from its column files (see above)."""
    order = meta.get("column_order", {})
    frames = {}
    for name, table in tables.items():
        if COLUMN_FILE_SEPARATOR in name:
            continue
        if name in order:
            columns = {n: table[n] for n in table.column_names}
            for other, part in tables.items():
                if other.startswith(name + COLUMN_FILE_SEPARATOR):
                    columns[other[len(name) + 1:]] = part.column(0)
            table = pa.Table.from_arrays([columns[n] for n in order[name]], names=list(order[name]),
                                         metadata=table.schema.metadata)
        frames[name] = table.to_pandas(split_blocks=True, self_destruct=False, types_mapper=_TEXT_AS_IS.get)
    return frames


# Text columns become pandas' Arrow-backed strings around the mapped buffers (large_string ones
# without a copy); their stored dtype is then restored (_restore_dtypes).
_TEXT_AS_IS = {pa.large_string(): pd.StringDtype("pyarrow"), pa.string(): pd.StringDtype("pyarrow")}


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
    # Not closed: the frames' columns are views of the mappings (pages load on demand).
    tables = {name: pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all() for name, path in files.items()}
    return _dataset_from(meta, _frames(meta, tables))


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
