"""Cache folders sde may use: usable, private, and what to tell the user when they are not."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Callable

Warn = Callable[[str], None]


def warn_on_stderr(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def note_on_stderr(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


# ------------------------------------------------------------------------------ safe stores

FIX_FOLDER = "pass --cache-dir DIR with a writable folder of your own, or --no-cache"
FIX_PRIVATE = "pass --cache-dir DIR with a folder only you can write (mkdir -m 700 DIR), or --no-cache"
FIX_FULL = "free disk space, pass --cache-dir DIR on another disk, or --no-cache"
_PICKLES = "cache entries are Python pickles, so whoever can write there could run code as you"
# Ownership, mode bits and pid probes are POSIX (on Windows os.kill(pid, 0) would kill the process).
POSIX = hasattr(os, "geteuid")
_reported: set[Path] = set()        # folders already warned about (the first warning says it all)


class CacheUnusable(Exception):
    """A cache folder sde must not or cannot use: why, and what the user can do about it."""

    def __init__(self, directory: Path, reason: str, fix: str = FIX_FOLDER) -> None:
        super().__init__(f"{reason} (fix: {fix})")
        self.directory = Path(directory)
        self.reason = reason
        self.fix = fix


class CacheReadOnly(CacheUnusable):
    """A cache folder that passes every safety check (ours, private, in safe parents) but cannot
    be written (a read-only file system or mount, no write permission): one to read, never to
    write (sde.cache.read_only). Whoever must write there treats it as any unusable folder."""


def report_unusable(warn: Warn, error: CacheUnusable, consequence: str, *, once: bool = False) -> None:
    """One warning line. ``once``: stay quiet when this folder, or one above it, was reported
    already (every writer of a start meets the same unusable folder; the user needs one line)."""
    folder = error.directory.absolute()
    if once and any(folder == seen or seen in folder.parents for seen in _reported):
        return
    _reported.add(folder)
    warn(f"cannot use the cache in {error.directory}: {error.reason}; {consequence} (fix: {error.fix})")


def report_read_only(note: Warn, error: CacheReadOnly) -> None:
    """One note that a cache folder is read only, once a process; the stores that would write in
    it (background jobs, predictions: ``report_unusable(..., once=True)``) then say nothing more."""
    folder = error.directory.absolute()
    if any(folder == seen or seen in folder.parents for seen in _reported):
        return
    _reported.add(folder)
    note(f"the cache folder {error.directory} is read-only: its datasets are read, nothing new is stored there")


def os_reason(e: OSError, directory: Path) -> tuple[str, str]:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full", FIX_FULL
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"{_file_in_the_way(directory) or directory} is a file, not a folder", FIX_FOLDER
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"it is not writable ({e.strerror})", FIX_FOLDER
    return f"cannot create it ({e.strerror or e})", FIX_FOLDER


def sqlite_reason(e: sqlite3.Error) -> tuple[str, str]:
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
    and naming the fix; nothing is created in a folder that fails the checks. One that passes
    every check but cannot be written raises CacheReadOnly (a CacheUnusable): it may be read."""
    directory = Path(directory)
    blocker = _file_in_the_way(directory)
    if blocker is not None:
        raise CacheUnusable(directory, f"{blocker} is a file, not a folder")
    _check_parents(directory)
    try:
        # each missing folder made 0700, parents too: mkdir(parents=True) made those with the umask's
        # mode (0777 under umask 000, group-writable under 002), which the next start then refused
        for folder in [*reversed([p for p in directory.parents if not p.exists()]), directory]:
            if not folder.exists():
                folder.mkdir(mode=0o700, exist_ok=True)
        st = directory.stat()
    except OSError as e:
        raise CacheUnusable(directory, *os_reason(e, directory)) from None
    if POSIX:
        _check_private(directory, st)
    if not os.access(directory, os.W_OK | os.X_OK):
        reason = "it is on a read-only file system" if _read_only_fs(directory) else "it is not writable"
        raise CacheReadOnly(directory, reason)
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
    if not POSIX:
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
