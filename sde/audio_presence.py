"""Which audio files exist, checked at load time: the `audio_exists` column and the summary's
`audio_missing`, so a missing file shows up on the Problems page and in a filter
(`{audio_exists} = false`) instead of only when its utterance is opened.

Each distinct file is checked once (segments of one long recording share it). Files are grouped by
folder, in Arrow: a folder holding many of them is listed once (one `scandir` answers all of its
files, and a folder that is not there answers them without a call each), the files of the other
folders get a `stat` each. Both are I/O-bound, and on a network file system each call waits on a
round trip, so a few threads overlap them; few, because the Python between the calls holds the
GIL, and this check runs while the server already answers requests (32 threads fighting for it
made requests wait up to a quarter of a second at 1M files). The check has a time budget: a slow
or hung mount must not hold the server's start hostage, so files not reached in time stay
unchecked (<NA>), and URLs (s3://…) are never checked (a request per file is not a stat).

The same pass can also answer each file's state (:func:`file_states`: a digest of its size,
modification time, inode and change time, all four from the one `stat`), which tells a cache entry's
audio measures from files changed since they were measured (sde.build.remeasure). Size and
modification time alone missed a file replaced by another of the same size with its time put back
(`cp --preserve=timestamps`, `rsync -t`, `touch -r`, a same-length PCM re-encode): a new file has
another inode, a rewrite in place a new change time, and neither can be set back. The price: what
moves only the change time re-measures too: a `chmod -R`, `chown -R` or `cp -a` of the audio folder
(as does a mount that numbers inodes anew at each mount, some FUSE ones); measuring again costs
what the first build's measuring did, for the files touched: 1,000 WAV files of 5 s took 11-17 s
(~6.5 ms of CPU each) on two loaded cores, against 2.5-4 s for a start with nothing changed.
A listed folder still answers its missing files without a call; each file there costs a `stat`,
since a listing does not carry sizes and times. The states of a dataset's files, taken at load,
also answer its presence check that follows (:func:`remember`): one pass over the files per
start, not two.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue
import stat
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.caching import for_dataset
from sde.compressed_columns import read_strings

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

COLUMN = "audio_exists"
DEFAULT_WORKERS = 8
DEFAULT_BUDGET_S = 10.0
# Paths handed to one stat task: small enough that the budget is checked often, large enough that
# the bookkeeping stays small next to the stats themselves.
_CHUNK = 256
# A folder holding at least this many of the files is listed instead of stat-ing each file: one
# listing of a folder that also holds many other files must not cost more than the stats it saves.
LIST_AT_LEAST = 16
# Scheme "://" as sde.manifest reads URLs: ASCII letters, digits, "+", "." and "-", at least one
# letter or digit, before the first "://".
_URL = r"^[A-Za-z0-9+.\-]*[A-Za-z0-9][A-Za-z0-9+.\-]*://"
_UNCHECKED, _MISSING, _THERE = -1, 0, 1
#: The two digests (:func:`file_states`) that stand for no file state: nothing there (or not a
#: regular file), and not checked (a URL, or the time budget ran out first). A real digest is
#: never either.
NO_FILE, NOT_CHECKED = 0, 1
# States are written a few files at a time: on a slow mount, the stats done before the budget
# ran out count (a write per file took as long as the stat itself on a local disk).
_DIGESTS_AT_ONCE = 64
# How the states are taken on one thread or several (_run's ramp): files answering slower than
# this (a local disk answers ~250k a second on one thread) get the other threads.
_FAST_FILES_PER_S = 50_000
_RAMP_CHECK_S = 0.1
#: States taken this recently answer a presence check (:func:`with_audio_presence`) as its own would.
STATES_FRESH_S = 60.0


@dataclass(frozen=True)
class AudioPresence:
    """Per distinct path: True (a file is there), False (nothing, or not a regular file), None
    (not checked: a URL, or the time budget ran out first)."""

    exists: dict[str, bool | None]
    elapsed_s: float
    timed_out: bool

    @property
    def checked(self) -> int:
        return sum(v is not None for v in self.exists.values())

    @property
    def missing(self) -> int:
        return sum(v is False for v in self.exists.values())


@dataclass(frozen=True)
class _Answers:
    """Per distinct path, as an array: 1 there, 0 missing, -1 unchecked, _NOT_A_FILE and up:
    something there that is no regular file."""

    codes: np.ndarray  # int8 (uint64 digests where asked for those)
    elapsed_s: float
    timed_out: bool
    unchecked: int = 0  # local files (not URLs) left unchecked by the budget


# Something there that is not a regular file (a named pipe, a folder named like a WAV) is answered
# _NOT_A_FILE plus its type's bits of st_mode (S_IFMT >> 12: 1 to 15), by the presence check and
# as a file's state alike (digests below _RESERVED are never a real file's): it is no missing file
# but one that cannot be read, said with what it is, and never opened (opening a named pipe nobody
# writes to blocks).
_NOT_A_FILE = 2
_RESERVED = _NOT_A_FILE + 16


@functools.cache
def _utf8_spelling() -> Callable[[str], str | None] | None:
    """sde.audio.inputs.utf8_spelling where the locale's file names are not UTF-8, else None: looked
    up once, lazily (sde.audio is no import of every load)."""
    from sde.audio.inputs import utf8_spelling

    return None if utf8_spelling("\u00e9") is None else utf8_spelling


def _stat(path: str) -> os.stat_result | None:
    """The stat of `path` (links followed), None where nothing is there. Under a locale whose file
    names are not UTF-8, a name not there is looked for under its UTF-8 spelling too, as the reader
    finds it (sde.audio.inputs.local_name): données.wav, stored by a UTF-8 system, was "missing"."""
    try:
        return os.stat(path)
    except (OSError, ValueError):  # missing, no permission on a parent, NUL in the name, not encodable
        return _stat_respelt(path)


def _stat_respelt(path: str, dir_fd: int | None = None) -> os.stat_result | None:
    """The stat of `path` under its UTF-8 spelling, where that is another name (see _stat)."""
    respell = _utf8_spelling()
    respelt = respell(path) if respell is not None else None
    if respelt is None:
        return None
    try:
        return os.stat(respelt, dir_fd=dir_fd)
    except (OSError, ValueError):
        return None


def _answer(st: os.stat_result | None) -> int:
    """One stat's answer: _THERE (a regular file), _MISSING, or _NOT_A_FILE plus its type."""
    if st is None:
        return _MISSING
    return _THERE if stat.S_ISREG(st.st_mode) else _NOT_A_FILE + (stat.S_IFMT(st.st_mode) >> 12)


def _presence(path: str) -> int:
    return _answer(_stat(path))


def _is_file(path: str) -> bool:
    return _presence(path) == _THERE


def _kind(code: int) -> str:
    """What a _NOT_A_FILE answer is, for messages ("a named pipe")."""
    from sde.audio.io import file_kind

    return file_kind((code - _NOT_A_FILE) << 12)


def not_files(answers: np.ndarray) -> dict[int, str]:
    """{index: what it is} of the presence answers or file states (:func:`file_states`) that are
    something there but no regular file (a named pipe, a folder named like a WAV)."""
    found = np.flatnonzero((answers >= _NOT_A_FILE) & (answers < _RESERVED))
    return {int(i): _kind(int(answers[i])) for i in found}


# An odd multiplier per field of a state (size, modification time, inode, change time), so that equal
# values in two fields (a file's change time is often its modification time) do not cancel out.
_FIELD_MULTIPLIERS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63],
                              dtype=np.uint64)
_FIELDS = len(_FIELD_MULTIPLIERS)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _digest_rows(fields: np.ndarray) -> np.ndarray:
    """The digest of each row of `fields` (int64, one column per field of _FIELD_MULTIPLIERS): each
    field mixed on its own (splitmix64's finalizer) and the four combined; in place, all columns at
    once, as the stats come 64 at a time and numpy's cost there is per call, not per file."""
    h = fields.view(np.uint64) * _FIELD_MULTIPLIERS
    h ^= h >> _S30
    h *= _M1
    h ^= h >> _S27
    h *= _M2
    h ^= h >> _S31
    combined = np.bitwise_xor.reduce(h, axis=1)
    return np.where(combined >= _RESERVED, combined, combined + np.uint64(_RESERVED))


def digests(sizes: np.ndarray, mtimes_ns: np.ndarray, inodes: np.ndarray | int = 0,
            ctimes_ns: np.ndarray | int = 0) -> np.ndarray:
    """Files' states in 64 bits each (uint64): equal for equal size, modification time, inode and
    change time, and different, bar a 2^-64 chance, when any of them changes; never NO_FILE,
    NOT_CHECKED nor what is there but no regular file. Eight bytes a file keep a million files'
    states in 8 MB."""
    inodes_signed = np.asarray(inodes).astype(np.uint64).view(np.int64)  # st_ino is unsigned: 2^63 and up fit
    columns = np.broadcast_arrays(np.asarray(sizes, dtype=np.int64), np.asarray(mtimes_ns, dtype=np.int64),
                                  inodes_signed, np.asarray(ctimes_ns, dtype=np.int64))
    return _digest_rows(np.stack(columns, axis=1))


def digest(size: int, mtime_ns: int, inode: int = 0, ctime_ns: int = 0) -> int:
    """One file's state (see :func:`digests`)."""
    return int(_digests_found([size, mtime_ns, inode, ctime_ns])[0])


#: No file there, as the four fields of a state (a size of -1 is no file's; below that, something
#: there that is no regular file: its answer is -1 - size, see _state_found).
_NO_STATE = (-1, 0, 0, 0)


def _state_found(st: os.stat_result | None) -> tuple[int, int, int, int]:
    """The four fields of a state (_digests_found) from one stat's result."""
    answer = _answer(st)
    if answer == _THERE:
        assert st is not None
        return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns
    return (-1 - answer, 0, 0, 0)


def _as_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _digests_found(found: list[int]) -> np.ndarray:
    """The digests of states given flat, four ints a file from one stat (size, mtime_ns, st_ino,
    st_ctime_ns: a same-size replacement with its times put back has another inode, or, rewritten
    in place, another change time); flat, as numpy reads a flat list of ints ~4x faster than one of
    tuples. A negative size stands for no regular file there (_state_found)."""
    try:
        fields = np.array(found, dtype=np.int64)
    except OverflowError:  # an inode of 2^63 or more (st_ino is unsigned): rare, so not checked per file
        fields = np.array([_as_int64(v) for v in found], dtype=np.int64)
    fields = fields.reshape(-1, _FIELDS)
    sizes = fields[:, 0]
    return np.where(sizes >= 0, _digest_rows(fields), np.maximum(-1 - sizes, NO_FILE).astype(np.uint64))


def _digests_of(paths: list[str]) -> np.ndarray:
    """The state of each path: a stat each (NO_FILE where none, what it is where no regular file)."""
    found: list[int] = []
    for path in paths:  # a tight loop: a regular file, the usual answer, takes no call of its own
        try:
            st: os.stat_result | None = os.stat(path)
        except (OSError, ValueError):
            st = _stat_respelt(path)
        if st is not None and stat.S_ISREG(st.st_mode):
            found += (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
        else:
            found += _state_found(st)
    return _digests_found(found)


def check_paths(paths: Sequence[str], *, workers: int = DEFAULT_WORKERS, budget_s: float = DEFAULT_BUDGET_S,
                is_file: Callable[[str], bool] | None = None) -> AudioPresence:
    """Check every distinct local path of `paths`, in parallel, for at most about `budget_s`
    (`is_file`: how one path is checked, then path by path; by default a regular file, folder by folder)."""
    distinct = list(dict.fromkeys(p for p in paths if isinstance(p, str) and p))
    answers = _check(pa.array(distinct, type=pa.large_string()), workers=workers, budget_s=budget_s, is_file=is_file)
    exists = {p: None if a == _UNCHECKED else a == _THERE for p, a in zip(distinct, answers.codes.tolist())}
    return AudioPresence(exists, answers.elapsed_s, answers.timed_out)


@dataclass(frozen=True)
class FileStates:
    """The state of each distinct audio file of a table, taken at one time (:func:`file_states`)."""

    names: pa.Array      # each distinct path once (distinct_paths)
    codes: np.ndarray    # each row's index into names, -1 where the row names no file
    digests: np.ndarray  # uint64 per name: digest(size, mtime_ns, inode, ctime_ns), NO_FILE, NOT_CHECKED, or
    #                      _NOT_A_FILE plus its type where something else is there
    elapsed_s: float
    timed_out: bool
    unchecked: int       # local files (not URLs) the budget left unchecked
    taken: float         # time.monotonic() when taken

    def presence(self) -> _Answers:
        """The answers of a presence check, read from the states."""
        d = self.digests
        codes = np.where(d == NOT_CHECKED, _UNCHECKED,
                         np.where(d >= _RESERVED, _THERE, d.astype(np.int64))).astype(np.int8)
        return _Answers(codes, self.elapsed_s, self.timed_out, self.unchecked)


def file_states(names: pa.Array, codes: np.ndarray, *, workers: int = DEFAULT_WORKERS,
                budget_s: float = DEFAULT_BUDGET_S) -> FileStates:
    """The state of each of the distinct paths `names` (with `codes`, each row's index into them:
    see distinct_paths), checked as presence is (grouped by folder, in threads, within about
    `budget_s`; URLs never), one `stat` per file found."""
    taken = time.monotonic()
    answers = _check(names, workers=workers, budget_s=budget_s, is_file=None, digests=True)
    return FileStates(names, codes, answers.codes, answers.elapsed_s, answers.timed_out, answers.unchecked, taken)


def remember(dataset: "Dataset", states: FileStates) -> None:
    """Let the presence check of `dataset` (its current tables) that follows read `states`."""
    for_dataset(dataset, "audio-file-states", 1).put("states", states)


def _recent_states(dataset: "Dataset") -> FileStates | None:
    states = for_dataset(dataset, "audio-file-states", 1).get("states")
    return states if states is not None and time.monotonic() - states.taken <= STATES_FRESH_S else None


def _check(paths: pa.Array, *, workers: int, budget_s: float, is_file: Callable[[str], bool] | None,
           digests: bool = False) -> _Answers:
    """Check the distinct `paths` (URLs and "" stay unchecked) within about `budget_s`; with
    `digests`, each answer is the file's digest (:func:`digests`, NO_FILE, NOT_CHECKED)
    instead of a presence code. No budget at all (0) checks nothing."""
    start = time.monotonic()
    unchecked = NOT_CHECKED if digests else _UNCHECKED
    answers = np.full(len(paths), unchecked, dtype=np.uint64 if digests else np.int8)
    checkable = pc.and_(pc.not_equal(paths, ""), pc.invert(pc.match_substring_regex(paths, _URL)))
    local = np.flatnonzero(pc.fill_null(checkable, False).to_numpy(zero_copy_only=False))
    if not local.size:
        return _Answers(answers, 0.0, False)
    if budget_s <= 0:
        return _Answers(answers, 0.0, True, len(local))
    by_folder = is_file is None and os.name == "posix"  # elsewhere "C:x.wav" is not a folder and a name
    tasks: list = _folder_tasks(paths, local, digests) if by_folder else []
    single = np.zeros(len(paths), dtype=bool)
    single[local] = True
    for task in tasks:
        single[task.rows] = False
    singles = np.flatnonzero(single)  # not np.setdiff1d: its hash-based unique holds the GIL ~0.2 s at 1M
    task = _DigestFiles if digests else functools.partial(_StatFiles, is_file=is_file or _presence)
    tasks += [task(paths, singles[i:i + _CHUNK]) for i in range(0, len(singles), _CHUNK)]
    done = _run(tasks, answers, workers=workers, deadline=start + budget_s, ramp=digests)
    left = int((done[local] == unchecked).sum())
    return _Answers(done, time.monotonic() - start, left > 0, left)


class _Board:
    """Where the tasks write their answers, until the budget runs out: then no more."""

    def __init__(self, answers: np.ndarray) -> None:
        self.answers = answers
        self.lock = threading.Lock()
        self.stopped = False
        self.written = 0

    def write(self, rows: np.ndarray | int, found: np.ndarray | bool) -> bool:
        with self.lock:
            if self.stopped:
                return False
            self.answers[rows] = found
            self.written += np.size(rows)
            return True

    def close(self) -> np.ndarray:
        with self.lock:
            self.stopped = True
            return self.answers.copy()


def _run(tasks: list, answers: np.ndarray, *, workers: int, deadline: float, ramp: bool = False) -> np.ndarray:
    """Run `tasks` on `workers` threads until `deadline`. `ramp`: on one thread while the files
    answer fast (a local disk: then more threads only fight over the GIL, 1M stats took 11 s on
    eight threads of two cores, 7 s on one), on all of them once they answer slower (a network mount,
    where each stat waits on a round trip)."""
    board = _Board(answers)
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for task in tasks:
        pending.put(task)

    def work() -> None:
        while not board.stopped:
            try:
                task = pending.get_nowait()
            except queue.Empty:
                return
            task.run(board)

    # Daemon threads, not a pool: a call stuck on a hung mount must hold up neither the start
    # (the budget) nor the exit of the process (a pool's workers are joined at exit).
    def started(n: int) -> list[threading.Thread]:
        threads = [threading.Thread(target=work, name="sde-stat", daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        return threads

    wanted = max(1, min(workers, len(tasks)))
    threads = started(1 if ramp else wanted)
    start = time.monotonic()
    while ramp and len(threads) < wanted and threads[0].is_alive() and time.monotonic() < deadline:
        threads[0].join(min(_RAMP_CHECK_S, max(0.0, deadline - time.monotonic())))
        seconds = time.monotonic() - start
        if threads[0].is_alive() and board.written < _FAST_FILES_PER_S * seconds:
            threads += started(wanted - 1)
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return board.close()


@dataclass
class _StatFiles:
    paths: pa.Array
    rows: np.ndarray
    is_file: Callable[[str], int]  # a presence code (_presence), or a bool

    def run(self, board: _Board) -> None:
        for row, path in zip(self.rows.tolist(), self.paths.take(pa.array(self.rows)).to_pylist()):
            # each answer as it comes: on a slow mount, every stat done counts
            if not board.write(row, self.is_file(path)):
                return


@dataclass
class _DigestFiles:
    paths: pa.Array
    rows: np.ndarray

    def run(self, board: _Board) -> None:
        for start in range(0, len(self.rows), _DIGESTS_AT_ONCE):
            rows = self.rows[start:start + _DIGESTS_AT_ONCE]
            if not board.write(rows, _digests_of(self.paths.take(pa.array(rows)).to_pylist())):
                return


@dataclass
class _ListFolder:
    folder: str            # as the paths spell it, "" for the current one
    names: pa.Array        # the file names of `rows` in it
    paths: pa.Array
    rows: np.ndarray

    def run(self, board: _Board) -> None:
        regular: list[str] = []
        others: dict[str, os.DirEntry] = {}  # listed, not regular files: what each is takes a stat
        try:
            with os.scandir(self.folder or ".") as entries:
                for e in entries:
                    if _is_regular(e):
                        regular.append(e.name)
                    else:
                        others[e.name] = e
        except (FileNotFoundError, NotADirectoryError):
            board.write(self.rows, _MISSING)  # no folder: none of its files is there
            return
        except (OSError, ValueError):  # not listable (no read permission, NUL in the name): stat each
            _StatFiles(self.paths, self.rows, _presence).run(board)
            return
        found = pc.is_in(self.names, value_set=pa.array(regular, type=pa.large_string()))
        found = found.to_numpy(zero_copy_only=False)
        if not found.all() and _matches_loosely(self.folder, regular):
            # a case- or normalization-insensitive file system finds "A.wav" as "a.wav": stat each
            # file not listed as spelt, as a stat would find it
            if not board.write(self.rows[found], _THERE):
                return
            _StatFiles(self.paths, self.rows[~found], _presence).run(board)
            return
        answers = found.astype(np.int8)  # _THERE, _MISSING
        if not found.all():
            listed, unlisted = set(regular), self._unlisted(~found, others)
            for i, name in zip(unlisted.tolist(), self.names.take(pa.array(unlisted)).to_pylist()):
                answers[i] = _listed_answer(name, listed, others)
        board.write(self.rows, answers)

    def _unlisted(self, not_found: np.ndarray, others: dict[str, os.DirEntry]) -> np.ndarray:
        """The files not listed as regular ones that the listing may still answer otherwise: listed
        as something else, or (names not UTF-8) listed under their UTF-8 spelling."""
        maybe = pc.is_in(self.names, value_set=pa.array(list(others), type=pa.large_string()))
        if _utf8_spelling() is not None:
            maybe = pc.or_(maybe, pc.invert(pc.string_is_ascii(self.names)))
        return np.flatnonzero(not_found & maybe.to_numpy(zero_copy_only=False))


class _DigestFolder(_ListFolder):
    """The states of a listed folder's files: a listing answers those not there without a call (all
    of them where the folder is not there); each file there then costs a stat relative to the folder
    (no path walk; on NFS the listing has fetched its attributes)."""

    def run(self, board: _Board) -> None:
        try:
            fd = os.open(self.folder or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except (FileNotFoundError, NotADirectoryError):
            board.write(self.rows, NO_FILE)
            return
        except (OSError, ValueError):  # not readable, a NUL in the name: stat each by its path
            _DigestFiles(self.paths, self.rows).run(board)
            return
        try:
            self._stat_listed(fd, board)
        finally:
            os.close(fd)

    def _stat_listed(self, fd: int, board: _Board) -> None:
        names = self.names.to_pylist()
        respell = _utf8_spelling()
        # names not UTF-8: a name is also looked for under its UTF-8 spelling, in the same listing
        respelt = {n: r for n in names if (r := respell(n)) is not None} if respell is not None else {}
        wanted = set(names) | set(respelt.values())
        try:
            with os.scandir(fd) as entries:
                listed = {e.name: e for e in entries if e.name in wanted}
            # a case- or normalization-insensitive file system finds "A.wav" as "a.wav": a stat for
            # each name not listed as spelt, as a stat by its path would find it
            unanswered = any(n not in listed and respelt.get(n) not in listed for n in names) if respelt \
                else len(listed) < len(wanted)
            stat_unlisted = unanswered and _matches_loosely(self.folder, os.listdir(fd))
        except OSError:  # opened but not listable: a stat for each name
            listed, stat_unlisted = {}, True
        get, regular = listed.get, stat.S_ISREG
        for start in range(0, len(names), _DIGESTS_AT_ONCE):
            found: list[int] = []  # four fields a file, flat (_digests_found): a tight loop, a stat each
            for name in names[start:start + _DIGESTS_AT_ONCE]:
                entry = get(name) or (get(respelt[name]) if name in respelt else None)
                try:
                    if entry is not None:
                        st = entry.stat()  # follows a link, as a stat does; relative to the folder
                    elif stat_unlisted and name:
                        st = os.stat(name, dir_fd=fd)
                    else:
                        found += _NO_STATE
                        continue
                except (OSError, ValueError):
                    found += _NO_STATE
                    continue
                found += (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns) if regular(st.st_mode) \
                    else _state_found(st)
            if not board.write(self.rows[start:start + _DIGESTS_AT_ONCE], _digests_found(found)):
                return


def _listed_answer(name: str, regular: set[str], others: dict[str, os.DirEntry]) -> int:
    """The answer a listing gives for `name`, not listed as a regular file: something else listed
    (a stat says what), or a file listed under the name's UTF-8 spelling (see _stat); else missing."""
    respell = _utf8_spelling()
    respelt = respell(name) if respell is not None else None
    for spelt in (name, respelt):
        if spelt is None:
            continue
        if spelt in regular:
            return _THERE
        entry = others.get(spelt)
        if entry is not None:
            try:
                return _answer(entry.stat())  # follows a link, as a stat does
            except (OSError, ValueError):  # a broken link: nothing there
                return _MISSING
    return _MISSING


def _is_regular(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # follows a link, as stat does
    except OSError:
        return False


def _matches_loosely(folder: str, names: list[str]) -> bool:
    """Whether the file system finds a file of `folder` under another spelling of its name: another
    case, or another Unicode normalization (one stat per kind of spelling)."""
    listed = set(names)
    not_ascii = [n for n in names if not n.isascii()]
    respellings = ((n.swapcase() for n in names), (unicodedata.normalize("NFD", n) for n in not_ascii),
                   (unicodedata.normalize("NFC", n) for n in not_ascii))
    for spelt in respellings:
        other = next((o for o in spelt if o not in listed), None)
        if other is not None and os.path.lexists(os.path.join(folder or ".", other)):
            return True
    return False


def _folder_tasks(paths: pa.Array, rows: np.ndarray, digests: bool = False) -> list[_ListFolder]:
    """One listing per folder holding at least LIST_AT_LEAST of the files `rows` of `paths`."""
    folder_names, names = _folder_and_name(paths.take(pa.array(rows)))
    folders = pc.dictionary_encode(folder_names)
    folder_of = folders.indices.to_numpy()
    files_in = np.bincount(folder_of, minlength=len(folders.dictionary))
    order = np.argsort(folder_of, kind="stable")
    ends = np.cumsum(files_in)
    tasks = []
    for f in np.flatnonzero(files_in >= LIST_AT_LEAST).tolist():
        members = order[ends[f] - files_in[f]:ends[f]]
        task = _DigestFolder if digests else _ListFolder
        tasks.append(task(folders.dictionary[f].as_py(), names.take(pa.array(members)), paths, rows[members]))
    return tasks


def _folder_and_name(paths: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Each path cut at its last "/": (the folder with that "/", or "" for none; the name)."""
    parts = pc.split_pattern(paths, "/", max_splits=1, reverse=True)
    pieces = parts.flatten()
    offsets = parts.offsets.to_numpy()
    offsets = offsets - offsets[0]  # positions in `pieces`
    names = pieces.take(pa.array(offsets[1:] - 1))
    in_folder = pa.array(np.diff(offsets) == 2)
    slash, empty = pa.scalar("/", pieces.type), pa.scalar("", pieces.type)
    folders = pc.if_else(in_folder, pc.binary_join_element_wise(pieces.take(pa.array(offsets[:-1])), slash, empty),
                         empty)
    return folders, names


def distinct_paths(paths: pd.Series) -> tuple[pa.Array, np.ndarray]:
    """(each distinct path once, each row's index into it, -1 where the row has none): computed by
    Arrow, so 10M rows never become 10M Python strings."""
    values = read_strings(paths) if isinstance(paths.dtype, pd.StringDtype) else pa.chunked_array(
        [pa.array(paths.array, from_pandas=True)])
    encoded = pc.dictionary_encode(values).combine_chunks()
    codes = pc.fill_null(encoded.indices.cast(pa.int64()), -1).to_numpy(zero_copy_only=False)
    return encoded.dictionary.cast(pa.large_string()), codes


def presence_column(paths: pd.Series, answers: np.ndarray, codes: np.ndarray) -> pd.Series:
    """`audio_exists` for each row of `paths` (nullable boolean: <NA> where unchecked), from the
    answer of each distinct path (1, 0, -1; something there that is no regular file counts as there:
    it is unreadable, not missing) and each row's index into them (-1: no path)."""
    per_row = np.append(answers, np.int8(_UNCHECKED))[codes]  # -1 (no path) picks the last entry
    values = pd.arrays.BooleanArray(per_row >= _THERE, per_row == _UNCHECKED)
    return pd.Series(values, index=paths.index, name=COLUMN)


def with_audio_presence(dataset: "Dataset", *, workers: int = DEFAULT_WORKERS, budget_s: float = DEFAULT_BUDGET_S,
                        status: Callable[[str], None] | None = None) -> "Dataset":
    """A copy of `dataset` with the `audio_exists` column (right after `audio_path`).

    A copy, not an in-place change: the cache may be writing the loaded dataset from another
    thread, and presence is a fact about the disk now, so it is never cached with the tables."""
    table = dataset.utterances
    if "audio_path" not in table.columns or len(table) == 0:
        return dataset
    states = _recent_states(dataset)  # the files' states, just taken at load (sde.build.remeasure)
    if states is not None:
        for_dataset(dataset, "audio-file-states", 1).discard("states")  # read once: its paths weigh
        names, codes, answers = states.names, states.codes, states.presence()
    else:
        names, codes = distinct_paths(table["audio_path"])
        answers = _check(names, workers=workers, budget_s=budget_s, is_file=None)
    column = presence_column(table["audio_path"], answers.codes, codes)
    if status is not None:
        _report(names, answers, column, budget_s, status, tarred_hint(table))
        _report_not_files(names, codes, not_files(answers.codes), status)
    out = table.copy(deep=False)
    if COLUMN in out.columns:
        out = out.drop(columns=[COLUMN])
    out.insert(int(out.columns.get_loc("audio_path")) + 1, COLUMN, column)
    checked = dataclasses.replace(dataset, utterances=out, _queries={}, _lock=threading.Lock())
    # what is kept with the dataset's build (pages, reports, quality columns) reads no `audio_exists`:
    # the copy keeps with its keepers, also where the build is stored after the copy is made
    checked.caches.follow(dataset.caches, dataset.generation, checked.generation)
    return checked


def _report_not_files(names: pa.Array, codes: np.ndarray, kinds: dict[int, str],
                      status: Callable[[str], None], shown: int = 3) -> None:
    if not kinds:
        return
    rows = int(np.isin(codes, np.fromiter(kinds, dtype=np.int64)).sum())
    listed = "; ".join(f"{names[i].as_py()}: not a regular file ({kind})" for i, kind in list(kinds.items())[:shown])
    more = f"; and {len(kinds) - shown:,} more" if len(kinds) > shown else ""
    status(f"note: {len(kinds):,} audio {'file is' if len(kinds) == 1 else 'files are'} there but unreadable "
           f"({rows:,} {'utterance' if rows == 1 else 'utterances'}), never opened: {listed}{more}; point "
           "audio_filepath at audio files")


def tarred_hint(table: pd.DataFrame) -> str:
    """For a manifest whose lines name a tar shard (shard_id) served without its tars: how to give
    them. Its members' names resolved as files are all missing, which alone says nothing of why."""
    if "shard_id" not in table.columns:
        return ""
    shards = pd.to_numeric(table["shard_id"], errors="coerce")
    if not shards.notna().all():
        return ""
    return (f"; its lines name tar shards (shard_id 0..{int(shards.max())}): a NeMo tarred manifest is served "
            f"with its tars, e.g. --tarred-audio 'audio_{{0..{int(shards.max())}}}.tar'")


def _report(names: pa.Array, answers: _Answers, column: pd.Series, budget_s: float,
            status: Callable[[str], None], hint: str = "") -> None:
    distinct = len(names) - int(pc.sum(pc.equal(names, "")).as_py() or 0)
    checked = int((answers.codes != _UNCHECKED).sum())
    missing = int((answers.codes == _MISSING).sum())
    if answers.timed_out:
        status(f"note: checked {checked:,} of {distinct:,} audio files in {budget_s:g} s; "
               "the rest are left unchecked (audio_exists is empty for them)")
    if missing:
        rows = int((~column.fillna(True)).sum())
        status(f"note: {missing:,} of {distinct:,} audio files are missing ({rows:,} utterances); "
               "listed on the Problems page, filter {audio_exists} = false" + (hint if missing == distinct else ""))


def missing_rows(utterances: pd.DataFrame) -> np.ndarray:
    """Row positions whose audio file is known to be missing (empty without the column)."""
    if COLUMN not in utterances.columns:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(~utterances[COLUMN].fillna(True).to_numpy(dtype=bool))


def checked(utterances: pd.DataFrame) -> bool:
    """Whether presence was checked for any utterance: a column of nothing but nulls (remote audio,
    which is never checked at start) says nothing, and counting it said "0 missing"."""
    if COLUMN not in utterances.columns:
        return False
    return not len(utterances) or bool(utterances[COLUMN].notna().any())


def audio_missing_count(utterances: pd.DataFrame) -> int | None:
    """Utterances whose audio file is missing; None when presence was not checked."""
    if not checked(utterances):
        return None
    return int(len(missing_rows(utterances)))


def first_missing_files(utterances: pd.DataFrame, shown: int) -> tuple[int, np.ndarray]:
    """(how many distinct audio files are missing, the rows naming the first ``shown`` of them, each
    file's first row). Reads the audio path column alone: the Problems page took every column of
    every missing row (a million with the audio elsewhere: +0.7-1.4 GB per view) to list 50."""
    rows = missing_rows(utterances)
    if not len(rows):
        return 0, rows
    first = ~utterances["audio_path"].iloc[rows].duplicated().to_numpy(dtype=bool)
    return int(first.sum()), rows[np.flatnonzero(first)[:shown]]


#: The filter of the utterances whose audio file was not found at load time.
MISSING_AUDIO_FILTER = "{audio_exists} = false"


def missing_audio_listing(utterances: pd.DataFrame, name: str, shown: int) -> dict | None:
    """The audio files not found at load time, as the Problems page lists them and its JSON twin
    returns them: {"files", "utterances", "listed": [{"file", "line", "audio_path"}] (each of the
    first ``shown`` files at its first line; ``name``: the file of rows that do not name theirs),
    "more", "filter"}; None when no file is known to be missing."""
    rows = missing_rows(utterances)
    if not len(rows):
        return None
    files, first_rows = first_missing_files(utterances, shown)
    listed_rows = utterances.iloc[first_rows][[c for c in ("audio_path", "line", "source") if c in utterances.columns]]
    sources = listed_rows["source"].astype(str).tolist() if "source" in listed_rows.columns \
        else [name] * len(listed_rows)
    listed = [{"file": src, "line": int(line), "audio_path": p}
              for p, line, src in zip(listed_rows["audio_path"].astype(str), listed_rows["line"], sources)]
    return {"files": files, "utterances": int(len(rows)), "listed": listed, "more": max(files - len(listed), 0),
            "filter": MISSING_AUDIO_FILTER}


def audio_presence_summary(utterances: pd.DataFrame) -> dict[str, int | None]:
    """The summary's `audio_missing` (utterances whose file is missing) and `audio_missing_files`
    (distinct files); both None when presence was not checked."""
    if not checked(utterances):
        return {"audio_missing": None, "audio_missing_files": None}
    rows = missing_rows(utterances)
    files = int(utterances["audio_path"].iloc[rows].nunique()) if len(rows) else 0
    return {"audio_missing": int(len(rows)), "audio_missing_files": files}
