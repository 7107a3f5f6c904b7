"""The reviews database: one SQLite file of keep / drop / fix decisions, their history and undo.

What a review is, how it is keyed and why the store is durable and safe to share: see
:mod:`sde.reviews`, which applies these reviews to a dataset and re-exports every name here.
"""

from __future__ import annotations

import collections
import datetime as _dt
import functools
import itertools
import json
import logging
import os
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

STATUSES = ("keep", "drop", "fix")
MAX_NOTE_CHARS = 10_000
MAX_TEXT_CHARS = 100_000
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_USER_CHARS = 200
# The largest request body the review and rules routes read: the web layer refuses bigger ones
# before parsing them. The largest review escaped as JSON encoders do by default (every character
# an emoji: 12 bytes as \\ud83d\\ude00) is ~1.35 MB, over the 1 MiB this was; the server's 4 MiB.
MAX_REQUEST_BYTES = 4 << 20
MAX_PAGE_SIZE = 1000
DEFAULT_TIMEOUT_S = 5.0
SCHEMA_VERSION = 1
KIND = "sde-reviews"
#: The meta row naming the reviews file a file was copied from (its manifest renamed or moved).
COPIED_FROM = "copied_from"
REVIEW_COLUMNS = ("review", "review_text", "review_note", "review_tags", "review_user", "review_time")
BODY_FIELDS = ("status", "text", "note", "tags", "version")
#: The largest version a review can have: SQLite's largest INTEGER. A bigger one in a request can
#: never be the stored version, so it is a mistake (400), not a stale save (409).
MAX_VERSION = 2**63 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOTE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # a note may have lines and tabs
_TAG_BAD = re.compile(r"[\s,\x00-\x1f\x7f]")
_TAG_SPLIT = re.compile(r'[\s,\[\]"]+')  # how a hand-typed tags field ("noise, bad") is read as words
# Unreadable rows are logged once each, the first this many per store: a file with a million of
# them must not flood the terminal (all are still skipped or read leniently).
MAX_REPORTED = 20
#: Recent writes remembered for changes_since: more between two reads of the reviews, and those
#: read them all again.
CHANGES_KEPT = 10_000

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reviews (
    source TEXT NOT NULL, line INTEGER NOT NULL, audio_filepath TEXT NOT NULL, offset REAL NOT NULL,
    status TEXT CHECK (status IN ('keep', 'drop', 'fix') OR status IS NULL),
    text TEXT, note TEXT, tags TEXT NOT NULL DEFAULT '[]', user TEXT, time REAL,
    version INTEGER NOT NULL,
    base INTEGER NOT NULL,  -- the version an undo of this state goes back to (-1: nothing to undo)
    PRIMARY KEY (source, line, audio_filepath, offset)
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL, line INTEGER NOT NULL, audio_filepath TEXT NOT NULL, offset REAL NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('set', 'undo')),
    status TEXT, text TEXT, note TEXT, tags TEXT NOT NULL, user TEXT, time REAL NOT NULL,
    version INTEGER NOT NULL, base INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_key ON history (source, line, audio_filepath, offset, version);
"""


# ------------------------------------------------------------------------------------- errors


class ReviewError(Exception):
    """A review that cannot be read or saved; `str()` is the whole message, `status` its HTTP code."""

    status = 400

    def payload(self) -> dict:
        return {"error": str(self)}


class InvalidReview(ReviewError):
    status = 400


class UnknownUtterance(ReviewError):
    status = 404


class NothingToUndo(ReviewError):
    status = 409


class ReadOnlyReviews(ReviewError):
    status = 403


class ReviewsLocked(ReviewError):
    status = 503


class ReviewsUnusable(ReviewError):
    status = 500


class WrongManifest(ReviewError):
    status = 409


class SharedKey(ReviewError):
    """Another row has this row's review key (two supervisions of one cut starting together)."""

    status = 409


class Conflict(ReviewError):
    """Someone saved this utterance's review since the editor read it: nothing was overwritten."""

    status = 409

    def __init__(self, stored: "Review", attempted: dict, expected_version: int) -> None:
        who = f" by {stored.user}" if stored.user else ""
        super().__init__(f"this review was changed{who} since you loaded it (version {expected_version} → "
                         f"{stored.version}); nothing was overwritten: compare both and save again")
        self.stored = stored
        self.attempted = attempted

    def payload(self) -> dict:
        return {"error": str(self), "stored": self.stored.to_json(), "attempted": self.attempted}


# ---------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class ReviewKey:
    source: str
    line: int
    audio_filepath: str
    offset: float

    def to_json(self) -> dict:
        return {"source": self.source, "line": self.line, "audio_filepath": self.audio_filepath,
                "offset": self.offset}


@dataclass(frozen=True)
class Review:
    key: ReviewKey
    status: str | None          # None: no review (never made, or undone)
    text: str | None = None
    note: str | None = None
    tags: tuple[str, ...] = ()
    user: str | None = None
    time: float | None = None   # seconds since the epoch
    version: int = 0

    def to_json(self) -> dict:
        return {**self.key.to_json(), "status": self.status, "text": self.text, "note": self.note,
                "tags": list(self.tags), "user": self.user, "time": iso_time(self.time), "version": self.version}


def iso_time(t: float | None) -> str | None:
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unicode(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidReview(f"{name} is not valid Unicode text (it has a lone surrogate)") from None


def validate(status: Any, text: Any = None, note: Any = None, tags: Any = (), user: Any = None) -> dict:
    """The review's values checked against the limits; InvalidReview says which and how to fix it."""
    if status not in STATUSES:
        raise InvalidReview(f"status must be one of {', '.join(STATUSES)}; got {_short(status)}")
    if text is not None:
        _check_free_text("text", text, " (the corrected transcript)", MAX_TEXT_CHARS, _CONTROL,
                         "text must be one line without control characters (it becomes a manifest's "
                         "text field); remove the line breaks or tabs")
        # spaces around a typed correction would reach the exported manifest's text
        text = text.strip()
    if status == "fix" and not text:
        # Empty or blank (stripped above) is no correction: exported, it would write "text": "".
        got = "" if text is None else "; got an empty one"
        raise InvalidReview(f'status "fix" needs the corrected transcript in text{got}: type the transcript, '
                            'or mark the utterance "drop" if it cannot be transcribed; nothing was saved')
    if note is not None:
        _check_free_text("note", note, "", MAX_NOTE_CHARS, _NOTE_CONTROL,
                         "note has control characters; only line breaks and tabs are allowed")
        note = note or None
    return {"status": status, "text": text, "note": note, "tags": _tags(tags), "user": _user(user)}


def _check_free_text(name: str, value: Any, what: str, limit: int, control: re.Pattern[str],
                     control_advice: str) -> None:
    """A text field a reviewer types: a string, at most ``limit`` characters, none that ``control``
    finds (``control_advice`` says what to remove), and encodable as UTF-8."""
    if not isinstance(value, str):
        raise InvalidReview(f"{name} must be a string{what}; got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidReview(f"{name} is {len(value):,} characters long; at most {limit:,}")
    if control.search(value):
        raise InvalidReview(control_advice)
    _unicode(name, value)


def _tags(tags: Any) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)):
        raise InvalidReview(f'tags must be a list of words, e.g. ["noise", "accent"]; got {_short(tags)}')
    if len(tags) > MAX_TAGS:
        raise InvalidReview(f"{len(tags)} tags; at most {MAX_TAGS}")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise InvalidReview(f"a tag is a non-empty string; got {_short(tag)}")
        if len(tag) > MAX_TAG_CHARS:
            raise InvalidReview(f"tag {tag[:20]!r}... is {len(tag)} characters long; at most {MAX_TAG_CHARS}")
        if _TAG_BAD.search(tag):
            suggestion = re.sub(r"[^\w-]+", "-", tag).strip("-") or "noise"
            raise InvalidReview(f"tag {tag!r} has a space, comma or control character: a tag is one word "
                                f"(e.g. {suggestion!r}), so that " '{review_tags} has "TAG" finds it')
        _unicode("tag", tag)
        if tag not in out:
            out.append(tag)
    return tuple(out)


def _user(user: Any) -> str | None:
    if user is None:
        return None
    if not isinstance(user, str) or len(user) > MAX_USER_CHARS or _CONTROL.search(user):
        raise InvalidReview(f"user must be a name of at most {MAX_USER_CHARS} printable characters")
    _unicode("user", user)
    return user or None


def _version(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VERSION:
        raise InvalidReview(f"version must be the review's version number (an integer from 0 to {MAX_VERSION}, "
                            f"0 when the utterance has no review yet); got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------------- the store


#: A serial per store opened in this process: what caches derived from a store are keyed by. id()
#: is not: a store closed and freed hands its id to the next one (often on Python 3.13), whose
#: generation starts at the same small numbers, and a filter answered with the old file's reviews.
_SERIALS = itertools.count(1)


class ReviewStore:
    """One reviews database. Thread-safe (one connection, one lock); several processes may share it."""

    def __init__(self, path: str | Path, *, sources: Sequence[str] = (), read_only: bool = False,
                 timeout: float = DEFAULT_TIMEOUT_S, follow_renames: bool = False) -> None:
        self.path = Path(path)
        self.serial = next(_SERIALS)  # this store among every one opened in the process (see _SERIALS)
        self.timeout = timeout
        self.sources = tuple(sources)
        # follow_renames: a file made for other manifest names is opened, not refused, so that the
        # caller (sde.reviews.open_reviews) can tell from its reviews whether it is the same manifest
        # renamed or moved (then `aliases` maps each old name to the new one) or another one.
        self.follow_renames = follow_renames
        self.made_for: set[str] = set()      # the manifest names the file was made for (its meta)
        # where each of those manifest files was, and which file it was, when last opened with these
        # reviews (name → {"path", "dev", "ino", "size", "mtime_ns"}): tells a manifest moved from
        # another file with its lines (an export of it) while the reviewed one is still in place
        self.made_for_files: dict[str, dict] = {}
        self.aliases: dict[str, str] = {}    # review source name → the dataset's name it is read as
        # the reviews file this one was copied from when its manifest was renamed or moved
        # (sde.reviews.take_over): that file is then an older state of these reviews
        self.copied_from: str | None = None
        self.notes: list[str] = []           # what the user should know about how the reviews were read
        self._lock = threading.Lock()
        self._writes = 0
        # (write number, key) of this connection's recent writes: what changed since a generation,
        # so that derived views follow one edit without reading every review again (changes_since)
        self._changes: collections.deque[tuple[int, ReviewKey]] = collections.deque(maxlen=CHANGES_KEPT)
        self._pending: list[ReviewKey] = []
        self._con: sqlite3.Connection | None = None
        self.problems: list[str] = []       # rows read leniently or skipped: what and how to fix, once each
        # the keys of the current reviews stored as a "fix" without a corrected transcript (none, or an
        # empty one an older sde saved): read as "keep", and named by an export as fixes not applied
        self.fixes_without_text: set[ReviewKey] = set()
        self._reported: set[str] = set()
        if self.path.is_dir():
            raise ReviewsUnusable(f"{self.path} is a folder; --reviews takes a file name (e.g. reviews.sqlite)")
        # Why editing is off: --read-only, or a file or folder that cannot be written, whose
        # reviews are then still shown rather than turned off with an error.
        self.read_only_reason = READ_ONLY_FLAG if read_only else _unwritable(self.path)
        self.read_only = self.read_only_reason is not None
        if self.read_only and not read_only:
            log.warning("warning: %s", self.read_only_message)
        if self.read_only and not self.path.exists():
            return  # nothing reviewed yet, and nothing may be created: an empty store
        try:
            self._con = self._open()
            self._prepare()
        except sqlite3.Error as e:
            self.close()
            raise self._error(e, "open") from None
        except ReviewError:
            self.close()
            raise

    def _connect(self, immutable: bool = False) -> sqlite3.Connection:
        params = (["mode=ro"] if self.read_only else []) + (["immutable=1"] if immutable else [])
        uri = self.path.absolute().as_uri() + ("?" + "&".join(params) if params else "")
        return sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False)

    def _open(self) -> sqlite3.Connection:
        """The connection, read-only ones included where the folder cannot be written.

        A WAL database is read through its -shm index, which SQLite creates beside the file: on a
        read-only file system (or folder) that fails with "unable to open database file" unless the
        index is already there. Nothing can change a file there, so it is then opened immutable
        (https://www.sqlite.org/wal.html#readonly): read as it is, without -shm or locks.
        """
        con = self._connect()
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.Error as e:
            con.close()
            if not (self.read_only and "unable to open" in str(e).lower() and _folder_unwritable(self.path)):
                raise
        self._warn_unfolded_wal()
        return self._connect(immutable=True)

    def _warn_unfolded_wal(self) -> None:
        wal = Path(f"{self.path}-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            self._report(f"{wal} may hold changes not yet written into {self.path.name} (sde writes each review "
                         "into the file at once unless a reader holds it back), and its folder is read-only, so "
                         "any there are not shown: open the reviews once where the folder is writable (sde does "
                         "it at start) to fold them in")

    @property
    def read_only_message(self) -> str:
        """Why editing is off, for the terminal, the inspector and a refused edit (403)."""
        return f"reviews in {self.path} are read-only: {self.read_only_reason}"

    def _durable(self) -> None:
        # Only once the file is known to be ours: WAL is a persistent change to the file.
        assert self._con is not None
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")  # the WAL is synced at every COMMIT

    def _prepare(self) -> None:
        con = self._con
        assert con is not None
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            if self.read_only:
                return
            self._durable()
            with self._transaction() as tx:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        tx.execute(statement)
                meta = {"kind": KIND, "schema_version": str(SCHEMA_VERSION),
                        "sources": json.dumps(sorted(set(self.sources))), "created": iso_time(time.time()) or ""}
                tx.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
            return
        meta = dict(con.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        if meta.get("kind") != KIND:
            raise ReviewsUnusable(f"{self.path} is an SQLite database but not an sde reviews file; pass "
                                  "--reviews with a new file name (sde creates it) or with a reviews file")
        if _meta_int(self.path, meta, "schema_version") > SCHEMA_VERSION:
            raise ReviewsUnusable(f"{self.path} was written by a newer sde (reviews format "
                                  f"{meta['schema_version']}); upgrade sde to use it")
        stored = self.made_for = _meta_sources(self.path, meta)
        self.made_for_files = _meta_files(meta)
        self.copied_from = meta.get(COPIED_FROM)
        other = bool(self.sources and stored and not stored & set(self.sources))
        if other and not self.follow_renames:
            raise WrongManifest(
                f"{self.path} holds the reviews of {', '.join(sorted(stored)[:3])}, not of "
                f"{', '.join(self.sources[:3])}: pass --reviews with this manifest's reviews file, or a "
                "new file name to start reviewing it")
        if self.read_only:
            return
        self._durable()
        if not other:  # a renamed manifest's name is remembered once its reviews are known to follow it
            self.remember_sources()

    def remember_sources(self, files: Mapping[str, dict] | None = None) -> None:
        """Record the dataset's manifest names in the file (more shards of the same dataset, or its
        new name after a rename), so that the file keeps matching; and `files`, where each of them is
        and which file it is (see `made_for_files`): written only when that changed."""
        if self.read_only or self._con is None:
            return
        names = set(self.sources) - self.made_for
        known = {**self.made_for_files, **(files or {})}
        if not names and known == self.made_for_files:
            return
        with self._lock, self._transaction() as tx:
            if names:
                tx.execute("INSERT OR REPLACE INTO meta VALUES ('sources', ?)",
                           (json.dumps(sorted(self.made_for | names)),))
            if known != self.made_for_files:
                tx.execute("INSERT OR REPLACE INTO meta VALUES ('files', ?)", (json.dumps(known, sort_keys=True),))
        self.made_for = self.made_for | names
        self.made_for_files = known

    def keys(self, limit: int | None = None) -> list[ReviewKey]:
        """The keys of the reviews (at most `limit`, the most recently changed first); rows whose key
        cannot be read are left out."""
        with self._lock:
            if self._con is None:
                return []
            try:
                rows = self._con.execute("SELECT source, line, audio_filepath, offset FROM reviews"
                                         + (" ORDER BY time DESC LIMIT ?" if limit is not None else ""),
                                         (limit,) if limit is not None else ()).fetchall()
            except sqlite3.Error as e:
                raise self._error(e, "read") from None
        return [ReviewKey(s, int(line), a, float(o)) for s, line, a, o in rows
                if isinstance(s, str) and _is_int(line) and isinstance(a, str)
                and isinstance(o, (int, float)) and not isinstance(o, bool)]

    def source_counts(self) -> dict[str, int]:
        """How many reviews each manifest name in the file has (undone ones included)."""
        with self._lock:
            if self._con is None:
                return {}
            try:
                return {str(name): int(n) for name, n in self._con.execute(
                    "SELECT source, count(*) FROM reviews GROUP BY source") if isinstance(name, str)}
            except sqlite3.Error as e:
                raise self._error(e, "read") from None

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    # -- errors and transactions ------------------------------------------------------------

    def _error(self, e: sqlite3.Error, doing: str) -> ReviewError:
        msg = str(e).lower()
        if "locked" in msg or "busy" in msg:
            return ReviewsLocked(
                f"the reviews file {self.path} is locked by another program for more than {self.timeout:g} s "
                "(another sde, or an sqlite3 shell in a transaction); nothing was saved: close it and retry")
        if "readonly" in msg or "read-only" in msg:
            return ReviewsUnusable(f"cannot write the reviews file {self.path}: it or its folder is read-only; "
                                   "fix its permissions, pass --reviews with a writable file, or use --read-only")
        if "full" in msg:
            return ReviewsUnusable(f"cannot write the reviews file {self.path}: the disk is full; nothing was "
                                   "saved: free some space and retry")
        if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
            return ReviewsUnusable(f"{self.path} is not a usable reviews file ({e}); pass --reviews with a new "
                                   "file name, or restore the file from a backup")
        if "unable to open" in msg:
            return ReviewsUnusable(f"cannot {doing} the reviews file {self.path} ({e}); check that its folder "
                                   "exists and is yours")
        return ReviewsUnusable(f"the reviews file {self.path}: {e}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: the write lock is taken first, so a read-check-write is atomic
        across processes; the caller holds `self._lock` (or is the constructor)."""
        con = self._con
        assert con is not None
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise self._error(e, "write") from None
        self._pending = []
        try:
            yield con
        except BaseException as e:
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(e, sqlite3.Error):
                raise self._error(e, "write") from None
            raise
        try:
            con.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise self._error(e, "write") from None
        self._writes += 1
        self._changes.extend((self._writes, key) for key in self._pending)
        try:  # into the file itself: a copy of it alone (a backup, `cp` while the server runs) has the review
            con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:  # a reader in the way: the next write (or the last close) folds it in
            pass

    def _writable(self) -> sqlite3.Connection:
        if self.read_only:
            raise ReadOnlyReviews(self.read_only_message)
        if self._con is None:
            raise ReviewsUnusable(f"the reviews file {self.path} is closed")
        return self._con

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: ReviewKey) -> Review:
        """The utterance's review (status None and version 0 when it has none)."""
        with self._lock:
            if self._con is None:
                return Review(key, None)
            try:
                return self._get(self._con, key) or Review(key, None)
            except sqlite3.Error as e:
                raise self._error(e, "read") from None

    def _get(self, con: sqlite3.Connection, key: ReviewKey) -> Review | None:
        row = con.execute(f"SELECT rowid, {_FIELDS} FROM reviews "
                          "WHERE source = ? AND line = ? AND audio_filepath = ? AND offset = ?",
                          _key_values(key)).fetchone()
        return None if row is None else self._readable(key, _Row("reviews", row[0]), row[1:])

    def reviews(self) -> list[Review]:
        """Every utterance's current review (undone ones included, with status None); a row that
        cannot be read (edited by hand) is reported in `problems` and skipped or read leniently."""
        with self._lock:
            if self._con is None:
                return []
            try:
                rows = self._con.execute(f"SELECT rowid, source, line, audio_filepath, offset, {_FIELDS} "
                                         "FROM reviews").fetchall()
            except sqlite3.Error as e:
                raise self._error(e, "read") from None
        out = []
        for r in rows:
            key = self._row_key(_Row("reviews", r[0]), r[1:5])
            review = None if key is None else self._readable(key, _Row("reviews", r[0]), r[5:])
            if review is not None:
                out.append(review)
        return out

    def history(self, key: ReviewKey) -> list[dict]:
        """Every change of one utterance's review, oldest first."""
        with self._lock:
            if self._con is None:
                return []
            try:
                rows = self._con.execute(
                    f"SELECT seq, action, {_FIELDS} FROM history WHERE source = ? "
                    "AND line = ? AND audio_filepath = ? AND offset = ? ORDER BY version", _key_values(key)).fetchall()
            except sqlite3.Error as e:
                raise self._error(e, "read") from None
        readable = ((r[1], self._readable(key, _Row("history", r[0]), r[2:])) for r in rows)
        return [{"action": action, **review.to_json()} for action, review in readable if review is not None]

    # -- rows as written by hand -------------------------------------------------------------

    def _readable(self, key: ReviewKey, row: "_Row", values: Sequence) -> Review | None:
        """A stored row as a Review, its problems reported (None: it cannot be read at all)."""
        review, problems = _read_review(key, row, values)
        if row.table == "reviews":
            if _fix_without_text(values[0], values[1]):
                self.fixes_without_text.add(key)
            else:
                self.fixes_without_text.discard(key)
        for problem in problems:
            self._report(f"{self.path}: {row} ({_where(key)}): {problem}")
        return review

    def _row_key(self, row: "_Row", values: Sequence) -> ReviewKey | None:
        source, line, audio, offset = values
        if (isinstance(source, str) and _is_int(line) and isinstance(audio, str)
                and isinstance(offset, (int, float)) and not isinstance(offset, bool)):
            return ReviewKey(source, int(line), audio, float(offset))
        self._report(f"{self.path}: {row}: its key (source {_short(source)}, line {_short(line)}, audio_filepath "
                     f"{_short(audio)}, offset {_short(offset)}) is not (text, whole number, text, number): the "
                     f"row is skipped; fix: correct it, or run {row.delete()}")
        return None

    def _report(self, message: str) -> None:
        """Log a problem of the file once (the rows are read again after every change)."""
        if message in self._reported or len(self.problems) > MAX_REPORTED:
            return
        if len(self.problems) == MAX_REPORTED:
            message = (f"{self.path}: more rows cannot be read as written; only the first {MAX_REPORTED} are "
                       "listed: fix those and start sde again to see the others")
        self._reported.add(message)
        self.problems.append(message)
        log.warning("warning: %s", message)

    def changes_since(self, generation: tuple[int, int]) -> list[ReviewKey] | None:
        """The keys this store wrote since ``generation`` (an earlier :meth:`generation`), in order;
        None when that cannot be told: another process wrote since, or more changes were made than
        are kept (then read every review again)."""
        with self._lock:
            now = self._generation_held()
            if now[1] != generation[1] or generation[0] > now[0]:
                return None
            if generation[0] == now[0]:
                return []
            if not self._changes or self._changes[0][0] > generation[0] + 1:
                return None
            return [key for n, key in self._changes if n > generation[0]]

    def generation(self) -> tuple[int, int]:
        """Changes whenever anyone (this process or another) commits: a key for derived caches."""
        with self._lock:
            return self._generation_held()

    def _generation_held(self) -> tuple[int, int]:
        """:meth:`generation`, with the lock held. (This connection's writes, and SQLite's data_version,
        which other connections' commits change.)"""
        if self._con is None:
            return (0, 0)
        try:
            return (self._writes, int(self._con.execute("PRAGMA data_version").fetchone()[0]))
        except sqlite3.Error as e:
            raise self._error(e, "read") from None

    # -- writing -------------------------------------------------------------------------------

    def set_review(self, key: ReviewKey, status: str, text: str | None = None, note: str | None = None,
                   tags: Sequence[str] | None = (), user: str | None = None,
                   expected_version: int | None = None) -> Review:
        """Save a review as a new version; `expected_version` (None: unconditional) guards against
        overwriting a change someone else made since the caller read version `expected_version`."""
        values = validate(status, text, note, tags, user)
        expected = _version(expected_version)
        with self._lock:
            con = self._writable()
            with self._transaction():
                current = self._current(con, key)
                version = current[0].version if current else 0
                if expected is not None and expected != version:
                    stored = current[0] if current else Review(key, None)
                    raise Conflict(stored, {**values, "tags": list(values["tags"]), "version": expected}, expected)
                review = Review(key, values["status"], values["text"], values["note"], values["tags"],
                                values["user"], time.time(), version + 1)
                self._write(con, review, base=version, action="set")
        return review

    def undo(self, key: ReviewKey, user: str | None = None, expected_version: int | None = None) -> Review:
        """Restore the state before the last change, as a new version; NothingToUndo at the start."""
        user = _user(user)
        expected = _version(expected_version)
        with self._lock:
            con = self._writable()
            with self._transaction():
                current = self._current(con, key)
                version = current[0].version if current else 0
                if expected is not None and expected != version:
                    stored = current[0] if current else Review(key, None)
                    raise Conflict(stored, {"undo": True, "version": expected}, expected)
                if current is None or current[1] < 0:
                    raise NothingToUndo("nothing to undo: this utterance's review is back where it started")
                base = current[1]
                if base == 0:
                    previous, next_base = Review(key, None), -1
                else:
                    previous, next_base = self._version_state(con, key, base)
                review = Review(key, previous.status, previous.text, previous.note, previous.tags, user,
                                time.time(), version + 1)
                self._write(con, review, base=next_base, action="undo")
        return review

    def _current(self, con: sqlite3.Connection, key: ReviewKey) -> tuple[Review, int] | None:
        row = con.execute(f"SELECT rowid, {_FIELDS}, base FROM reviews "
                          "WHERE source = ? AND line = ? AND audio_filepath = ? AND offset = ?",
                          _key_values(key)).fetchone()
        if row is None:
            return None
        where = _Row("reviews", row[0])
        review, problems = _read_review(key, where, row[1:8])
        if review is None:
            # Overwriting it would lose the state and history it stands for: the user decides.
            raise ReviewsUnusable(f"{self.path}: {where} ({_where(key)}) cannot be read, so nothing was saved "
                                  f"over it: {problems[0]}")
        return review, (int(row[8]) if _is_int(row[8]) else -1)  # an unreadable base: nothing to undo

    def _version_state(self, con: sqlite3.Connection, key: ReviewKey, version: int) -> tuple[Review, int]:
        row = con.execute(f"SELECT seq, {_FIELDS}, base FROM history WHERE source = ? "
                          "AND line = ? AND audio_filepath = ? AND offset = ? AND version = ?",
                          (*_key_values(key), version)).fetchone()
        review = None if row is None else self._readable(key, _Row("history", row[0]), row[1:8])
        if review is None or not _is_int(row[8]):
            raise ReviewsUnusable(f"{self.path}: the history of {key.source}:{key.line} lacks a readable version "
                                  f"{version}, so it cannot be undone: the file was edited by hand; save a new "
                                  "review instead")
        return review, int(row[8])

    def _write(self, con: sqlite3.Connection, review: Review, *, base: int, action: str) -> None:
        self._pending.append(review.key)
        values = (review.status, review.text, review.note, json.dumps(list(review.tags), ensure_ascii=False),
                  review.user, review.time, review.version, base)
        con.execute("INSERT INTO reviews (source, line, audio_filepath, offset, status, text, note, tags, user, time, "
                    "version, base) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (source, line, audio_filepath, offset) DO UPDATE SET status = excluded.status, "
                    "text = excluded.text, note = excluded.note, tags = excluded.tags, user = excluded.user, "
                    "time = excluded.time, version = excluded.version, base = excluded.base",
                    (*_key_values(review.key), *values))
        con.execute("INSERT INTO history (source, line, audio_filepath, offset, action, status, text, note, tags, "
                    "user, time, version, base) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*_key_values(review.key), action, *values))


def _key_values(key: ReviewKey) -> tuple:
    return (key.source, int(key.line), key.audio_filepath, float(key.offset))


# ------------------------------------------------------------------------ rows as stored on disk
# sde writes every row itself, but the file is the user's: one edited with the sqlite3 shell may hold
# what sde never writes (tags typed as "noise, bad", a fix without its text). Such a row is read as
# near to what was meant as can be told, or skipped, and reported with the SQL that repairs it,
# rather than stopping the server.

_FIELDS = "status, text, note, tags, user, time, version"


@dataclass(frozen=True)
class _Row:
    """One stored row, named in messages and in the SQL that repairs it."""

    table: str   # "reviews" (rowid) or "history" (seq)
    id: int

    def __str__(self) -> str:
        return f"{self.table} row {self.id}"

    def _where(self) -> str:
        return f"WHERE {'rowid' if self.table == 'reviews' else 'seq'} = {self.id}"

    def update(self, field: str, value: Any) -> str:
        return f"UPDATE {self.table} SET {field} = {_sql_literal(value)} {self._where()}"

    def fix(self, sql: str) -> str:
        """How to repair the row: in the inspector (which rewrites a current review whole), or SQL."""
        inspector = "save the review again in the inspector, or " if self.table == "reviews" else ""
        return f"fix: {inspector}run {sql}"

    def delete(self) -> str:
        return f"DELETE FROM {self.table} {self._where()}"


def _read_review(key: ReviewKey, row: _Row, values: Sequence) -> tuple[Review | None, list[str]]:
    """The row's values as a Review, and what in them was not as sde writes it (with the fix)."""
    status, text, note, tags, user, t, version = values
    if status is not None and status not in STATUSES:
        return None, [f"status {_short(status)} is not keep, drop or fix: the row is skipped; fix: run "
                      f"{row.update('status', 'keep')} (or drop, fix), or {row.delete()}"]
    if not _is_int(version) or version < 0:
        return None, [f"version {_short(version)} is not a whole number: the row is skipped; fix: run "
                      f"{row.update('version', 1)}, or {row.delete()}"]
    problems: list[str] = []
    text = _stored_text("text", text, row, problems)
    note = _stored_text("note", note, row, problems)
    user = _stored_text("user", user, row, problems)
    read_tags, wrong, as_json = _stored_tags(tags)
    if wrong:
        problems.append(f"tags {_short(tags)} {wrong}: read as {as_json}; {row.fix(row.update('tags', as_json))}")
    t = _stored_time(t, row, problems)
    if _fix_without_text(status, text):
        # A fix leaves the line as it is without its text: counting it as fixed would be a lie, and
        # applying an empty one (an older sde saved the box cleared) would export "text": "".
        what = "no corrected text" if text is None else "an empty corrected text"
        problems.append(f'status "fix" has {what}: read as "keep" (the line is kept unchanged); fix: '
                        "type the transcript in the inspector and press Fix (or Drop the utterance), or run "
                        f"{row.update('status', 'keep')}")
        status, text = "keep", None
    return Review(key, status, text, note, read_tags, user, t, int(version)), problems


def _fix_without_text(status: Any, text: Any) -> bool:
    """Whether a stored row is a "fix" with no corrected transcript to apply: none, text of another
    type (read as none), or an empty or blank one (sde refuses those now; older versions saved them)."""
    return status == "fix" and (not isinstance(text, str) or not text.strip())


def _stored_text(name: str, value: Any, row: _Row, problems: list[str]) -> str | None:
    if value is None or isinstance(value, str):
        return value
    problems.append(f"{name} {_short(value)} is not text: read as empty; {row.fix(row.update(name, None))}")
    return None


def _stored_time(value: Any, row: _Row, problems: list[str]) -> float | None:
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return None if value is None else float(value)
    problems.append(f"time {_short(value)} is not seconds since 1970: read as unknown; "
                    f"{row.fix(row.update('time', None))}")
    return None


@functools.lru_cache(maxsize=4096)  # rows share a few tag sets: 200k rows read ~2x faster
def _stored_tags(value: Any) -> tuple[tuple[str, ...], str | None, str]:
    """(the tags, what is wrong with the stored value or None, the tags as JSON) of a tags field: a
    JSON list of words; anything else is read as the words it holds ("noise, bad")."""
    if value is None or value == "" or value == "[]":
        return (), None, "[]"
    parsed = _json_list(value)
    if parsed is not None:
        try:
            return _tags(parsed), None, value
        except InvalidReview as e:
            return (), f"has a tag sde would not save ({e})", "[]"
    words = [w for w in _TAG_SPLIT.split(value) if w] if isinstance(value, str) else []
    try:
        tags = _tags(words)
    except InvalidReview:
        tags = ()
    return tags, "is not a JSON list of words", json.dumps(list(tags), ensure_ascii=False)


def _json_list(value: Any) -> list | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, list) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _where(key: ReviewKey) -> str:
    return f"{key.source} line {key.line}, {key.audio_filepath} at {key.offset:g} s"


def _meta_int(path: Path, meta: dict, name: str) -> int:
    value = meta.get(name, "0")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ReviewsUnusable(f"{path}: meta row {name!r} is {_short(value)}, not a whole number (edited by hand?); "
                              f"fix: UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = '{name}'") from None


def _meta_sources(path: Path, meta: dict) -> set[str]:
    """The manifest file names the file was made for (a JSON list of names)."""
    parsed = _json_list(meta.get("sources", "[]"))
    if parsed is None or not all(isinstance(name, str) for name in parsed):
        raise ReviewsUnusable(f"{path}: meta row 'sources' is {_short(meta.get('sources'))}, not a JSON list of "
                              "manifest file names (edited by hand?); fix: UPDATE meta SET value = "
                              "'[\"manifest.json\"]' WHERE key = 'sources', with your manifest's file name")
    return set(parsed)


def _meta_files(meta: dict) -> dict[str, dict]:
    """The meta row 'files' (see ReviewStore.made_for_files); {} where there is none (a file written
    before sde kept it) or it is not what sde writes (then a rename is told by the lines alone)."""
    try:
        parsed = json.loads(meta.get("files", "{}"))
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {name: where for name, where in parsed.items() if isinstance(where, dict)}


# ------------------------------------------------------------------------ files sde cannot write

READ_ONLY_FLAG = "sde was started with --read-only; they are shown, not edited"


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def _unwritable(path: Path) -> str | None:
    """Why the reviews file `path` cannot be written (None: it can). SQLite writes the file and,
    in WAL mode, its -wal and -shm files beside it, so the folder must be writable too."""
    folder = path.absolute().parent
    if _read_only_file_system(folder):
        return (f"its folder {folder} is on a read-only file system; they are shown, not edited: to edit them, "
                "copy the file to a writable folder and pass --reviews with the copy")
    if path.exists() and not os.access(path, os.W_OK):
        owner = path.stat().st_uid
        if owner == os.geteuid():
            return "the file is not writable; they are shown, not edited: to edit them, make it writable (chmod u+w)"
        # shared by a team: only its owner can change its mode (SQLite made it 0644 whatever the umask)
        return (f"the file is not writable by you (its owner, {_user_name(owner)}, can let the group edit it: "
                f"chmod g+w {path} {path}-wal {path}-shm); they are shown, not edited")
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        return (f"its folder {folder} is not writable (SQLite writes {path.name}-wal and {path.name}-shm beside "
                "the file); they are shown, not edited: to edit them, make the folder writable or copy the file")
    return None


def _folder_unwritable(path: Path) -> bool:
    folder = path.absolute().parent
    return _read_only_file_system(folder) or not os.access(folder, os.W_OK | os.X_OK)


def _read_only_file_system(folder: Path) -> bool:
    if not hasattr(os, "statvfs"):  # Windows: os.access tells it
        return False
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False  # a missing folder: opening the file says so
