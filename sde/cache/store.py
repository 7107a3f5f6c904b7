"""diskcache stores in checked folders, and the temporary files of their writers (see sde.cache)."""

from __future__ import annotations

import atexit
import dataclasses
import os
import re
import socket
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import diskcache
import diskcache.core

from sde.workers import stop_signals_held
from sde.cache.folders import (POSIX, CacheUnusable, Warn, check_cache_folder, os_reason,
                               report_unusable, sqlite_reason, warn_on_stderr)

# A temporary or orphan file this old belongs to no running write: writes touch their file
# continuously, and the longest copy (a GB-sized table into diskcache) takes seconds.
STALE_FILE_S = 600.0
# Temporary files named before they carried their writer's host and pid.
LEGACY_TEMP_S = 60.0
_TEMP_NAME = re.compile(r"\.tmp-([A-Za-z0-9]*)-(\d+)-")
_VALUE_DIR = re.compile(r"[0-9a-f]{2}")
HOST_TAG = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]
_writing: set[str] = set()          # temporary files this process is writing right now



@dataclasses.dataclass(frozen=True)
class LinkedFile:
    """A finished file handed to a store by name (``store.set(key, LinkedFile(path), read=True)``
    with a :class:`LinkingDisk`): hard-linked in, not copied, so storing a GB-sized table built
    in the cache folder costs no copy. The file must not be written again."""

    path: str

    def read(self, size: int = -1) -> bytes:  # a file-like for any other Disk: copied as usual
        raise TypeError("LinkedFile is stored by a LinkingDisk")


class LinkingDisk(diskcache.Disk):
    """diskcache's Disk, storing a :class:`LinkedFile` as a hard link (a copy where the filesystem
    has none, or the file is elsewhere)."""

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not (read and isinstance(value, LinkedFile)):
            return super().store(value, read, key=key)
        filename, full_path = self.filename(key, value)
        os.makedirs(os.path.dirname(full_path), exist_ok=True)
        try:
            os.link(value.path, full_path)
        except OSError:  # another filesystem (EXDEV), no hard links (EPERM): the copy
            with open(value.path, "rb") as f:
                return super().store(f, read, key=key)
        return os.path.getsize(full_path), diskcache.core.MODE_BINARY, filename, None


def make_read_only(store: "diskcache.Cache", store_key: tuple) -> None:
    """Make the file of a stored value read-only.

    A mapped file that shrinks kills the process (SIGBUS). sde never writes a stored file again;
    read-only keeps a stray `> file` or editor of the same user from doing it. (Not on Windows:
    there a read-only file cannot be deleted, and eviction deletes.)"""
    if not POSIX:
        return
    handle = store.get(store_key, read=True)
    if handle is not None and not isinstance(handle, (bytes, bytearray, str)):
        with handle:
            path = getattr(handle, "name", None)
            if isinstance(path, str):
                os.chmod(path, 0o444)


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
        raise CacheUnusable(folder, *sqlite_reason(e)) from None
    except OSError as e:
        raise CacheUnusable(folder, *os_reason(e, folder)) from None
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
    if host != HOST_TAG or age_s > STALE_FILE_S or not POSIX:  # another machine's pids mean nothing here
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
    """Temporary table files of writers that died (kill -9, power loss), and folders a killed
    process was deleting (:func:`abandoned_name`): their process is gone, or they are too old to
    belong to any running work. Returns what was removed."""
    removed = []
    now = time.time()
    try:
        candidates = [e for e in os.scandir(folder) if e.name.startswith(".tmp-")
                      and (e.is_file() or e.is_dir(follow_symlinks=False))]
    except OSError:
        return removed
    for entry in candidates:
        if entry.path in _writing:
            continue
        try:
            if _writer_is_gone(entry.name, now - entry.stat(follow_symlinks=False).st_mtime):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _temp_prefix() -> str:
    """What names a temporary file or folder of this process (see _writer_is_gone)."""
    return f".tmp-{HOST_TAG}-{os.getpid()}-"


def abandoned_name(prefix: str = "") -> str:
    """A name for something this process leaves to be removed (a folder being deleted on a
    thread): it carries this host and pid, so remove_stale_temp_files tells a dead process's from
    a live one's."""
    return f"{_temp_prefix()}{prefix}{uuid.uuid4().hex[:12]}"


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
            removed += _remove_orphan_index_files(sub, now)
    return removed


def _remove_orphan_index_files(sub: Path, now: float) -> list[Path]:
    """Index files written beside a column's value file (sde.index_files: ``<value>.<part>.sdeidx``)
    whose value file is gone (the dataset evicted or deleted), and their writers' temporary files
    left by a kill, once too old to belong to a running write."""
    removed = []
    for path in [*sub.glob("*.val.*.sdeidx"), *sub.glob(".tmp-sdeidx-*")]:
        temporary = path.name.startswith(".tmp-sdeidx-")
        value = None if temporary else sub / (path.name.split(".val.", 1)[0] + ".val")
        try:
            if (value is None and now - path.stat().st_mtime > STALE_FILE_S) or (value is not None and not value.exists()):
                path.unlink()
                removed.append(path)
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
    # Ctrl-C or SIGTERM held until the file is listed: raised between mkstemp and the listing, the
    # exit handler below would not know the file (seen under load: a .tmp- file left by SIGTERM)
    with stop_signals_held():
        fd, path = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(), suffix=suffix)
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
