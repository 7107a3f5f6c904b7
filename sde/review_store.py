"""The reviews database: one SQLite file of keep / drop / fix decisions, their history and undo.

What a review is, how it is keyed and why the store is durable and safe to share: see
:mod:`sde.reviews`, which applies these reviews to a dataset and re-exports every name here.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

STATUSES = ("keep", "drop", "fix")
MAX_NOTE_CHARS = 10_000
MAX_TEXT_CHARS = 100_000
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_USER_CHARS = 200
# The largest review a client can send (text + note + tags as JSON, escaped): the web layer
# refuses bigger request bodies before parsing them.
MAX_REQUEST_BYTES = 1 << 20
MAX_PAGE_SIZE = 1000
DEFAULT_TIMEOUT_S = 5.0
SCHEMA_VERSION = 1
KIND = "sde-reviews"
REVIEW_COLUMNS = ("review", "review_text", "review_note", "review_tags", "review_user", "review_time")
BODY_FIELDS = ("status", "text", "note", "tags", "version")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOTE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # a note may have lines and tabs
_TAG_BAD = re.compile(r"[\s,\x00-\x1f\x7f]")

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
    if status == "fix" and text is None:
        raise InvalidReview('status "fix" needs the corrected transcript in text')
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
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidReview(f"version must be the review's version number (an integer ≥ 0, 0 when the "
                            f"utterance has no review yet); got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------------- the store


class ReviewStore:
    """One reviews database. Thread-safe (one connection, one lock); several processes may share it."""

    def __init__(self, path: str | Path, *, sources: Sequence[str] = (), read_only: bool = False,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.timeout = timeout
        self.sources = tuple(sources)
        self._lock = threading.Lock()
        self._writes = 0
        self._con: sqlite3.Connection | None = None
        if self.path.is_dir():
            raise ReviewsUnusable(f"{self.path} is a folder; --reviews takes a file name (e.g. reviews.sqlite)")
        if read_only and not self.path.exists():
            return  # nothing reviewed yet, and nothing may be created: an empty store
        try:
            self._con = self._connect()
            self._prepare()
        except sqlite3.Error as e:
            self.close()
            raise self._error(e, "open") from None
        except ReviewError:
            self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        uri = self.path.absolute().as_uri() + ("?mode=ro" if self.read_only else "")
        return sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False)

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
        if int(meta.get("schema_version", "0")) > SCHEMA_VERSION:
            raise ReviewsUnusable(f"{self.path} was written by a newer sde (reviews format "
                                  f"{meta['schema_version']}); upgrade sde to use it")
        stored = set(json.loads(meta.get("sources", "[]")))
        if self.sources and stored and not stored & set(self.sources):
            raise WrongManifest(
                f"{self.path} holds the reviews of {', '.join(sorted(stored)[:3])}, not of "
                f"{', '.join(self.sources[:3])}: pass --reviews with this manifest's reviews file, or a "
                "new file name to start reviewing it")
        if self.read_only:
            return
        self._durable()
        if self.sources and not set(self.sources) <= stored:
            # more shards of the same dataset: remember them, so the file keeps matching
            with self._transaction() as tx:
                tx.execute("INSERT OR REPLACE INTO meta VALUES ('sources', ?)",
                           (json.dumps(sorted(stored | set(self.sources))),))

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

    def _writable(self) -> sqlite3.Connection:
        if self.read_only:
            raise ReadOnlyReviews("reviews are read-only here (--read-only): editing is off")
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
        row = con.execute("SELECT status, text, note, tags, user, time, version FROM reviews "
                          "WHERE source = ? AND line = ? AND audio_filepath = ? AND offset = ?",
                          _key_values(key)).fetchone()
        return None if row is None else _review(key, row)

    def reviews(self) -> list[Review]:
        """Every utterance's current review (undone ones included, with status None)."""
        with self._lock:
            if self._con is None:
                return []
            try:
                rows = self._con.execute("SELECT source, line, audio_filepath, offset, status, text, note, tags, "
                                         "user, time, version FROM reviews").fetchall()
            except sqlite3.Error as e:
                raise self._error(e, "read") from None
        return [_review(ReviewKey(r[0], int(r[1]), r[2], float(r[3])), r[4:]) for r in rows]

    def history(self, key: ReviewKey) -> list[dict]:
        """Every change of one utterance's review, oldest first."""
        with self._lock:
            if self._con is None:
                return []
            try:
                rows = self._con.execute(
                    "SELECT action, status, text, note, tags, user, time, version FROM history WHERE source = ? "
                    "AND line = ? AND audio_filepath = ? AND offset = ? ORDER BY version", _key_values(key)).fetchall()
            except sqlite3.Error as e:
                raise self._error(e, "read") from None
        return [{"action": r[0], **_review(key, r[1:]).to_json()} for r in rows]

    def generation(self) -> tuple[int, int]:
        """Changes whenever anyone (this process or another) commits: a key for derived caches."""
        with self._lock:
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
        row = con.execute("SELECT status, text, note, tags, user, time, version, base FROM reviews "
                          "WHERE source = ? AND line = ? AND audio_filepath = ? AND offset = ?",
                          _key_values(key)).fetchone()
        return None if row is None else (_review(key, row[:7]), int(row[7]))

    def _version_state(self, con: sqlite3.Connection, key: ReviewKey, version: int) -> tuple[Review, int]:
        row = con.execute("SELECT status, text, note, tags, user, time, version, base FROM history WHERE source = ? "
                          "AND line = ? AND audio_filepath = ? AND offset = ? AND version = ?",
                          (*_key_values(key), version)).fetchone()
        if row is None:
            raise ReviewsUnusable(f"{self.path}: the history of {key.source}:{key.line} lacks version {version}; "
                                  "the file was edited by hand")
        return _review(key, row[:7]), int(row[7])

    def _write(self, con: sqlite3.Connection, review: Review, *, base: int, action: str) -> None:
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


def _review(key: ReviewKey, row: Sequence) -> Review:
    status, text, note, tags, user, t, version = row
    return Review(key, status, text, note, tuple(json.loads(tags or "[]")), user,
                  None if t is None else float(t), int(version))
