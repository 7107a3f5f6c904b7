"""Reviews: keep / drop / fix decisions on utterances, a corrected transcript, a note, tags.

They live in a sidecar SQLite database, never in the user's manifest: by default in the cache
folder (one file per manifest, named after its path), or any file given with `--reviews FILE`.

* Durable: WAL journal with `synchronous=FULL`; every change is one transaction, and a change is
  acknowledged (a version returned, the UI shows "saved") only after its COMMIT, so a kill -9 or a
  power cut never loses an acknowledged edit.
* Safe when shared: each utterance's review has a `version`; a change made against a stale
  version raises `Conflict` carrying both the stored and the attempted values (two tabs, two
  people), and nothing is overwritten. A database locked by another program is an error after
  `timeout` seconds, never a hang.
* Undo: every change is a row of `history`; undo restores the state before the last change as a
  new version (so an undo is itself visible to, and checked against, other editors).
* Keys: (source file name, line, audio_filepath as written, offset): stable across rebuilds and
  cache moves. A manifest edited above a review (lines added, removed, re-sorted) moves its
  utterance: the review follows it to the one row of its file with the same audio_filepath and
  offset (see aligned_reviews), and is "stale" (counted, not applied) where no row or several
  rows have them, so it never lands on another utterance. A line may hold several rows (a Lhotse
  cut's supervisions): the offset tells them apart.
* A file edited by hand into rows sde never writes is read leniently or row by row skipped, each
  problem reported once (`ReviewStore.problems`, the log) with the SQL that repairs it.
* A file sde cannot write (read-only file system or folder) is opened read-only, with the reason.
* A reviews file records the manifest file names it was made for. A manifest renamed or moved
  keeps its reviews: where at least half of an old name's reviews are on the lines of one of the
  dataset's files, they are read as that file's (`ReviewStore.aliases`; the file is not rewritten,
  and a review edited keeps its key), and a new default location with no file yet starts as a copy
  of the renamed manifest's file found beside it (renamed_reviews). A file made for other names
  whose reviews are not on these lines, or whose reviews match none of its lines, is refused with
  a message (with the SQL that re-points it, for a manifest renamed and edited).
* Lines alone do not tell a manifest moved from another one made of its lines (`sde export`'s
  output: its kept lines, byte for byte). A reviews file also records where each of its manifest
  files is and which file it is (device, inode); a new default location takes its reviews only
  where that file moved (its inode is the new one's, or nothing is left where it was: then an
  edit since is fine) or the new manifest is a copy of its bytes (moved_here); a file still in
  place keeps them to itself, the new manifest starts without them, with a note (an export of it,
  a copy edited since: another dataset). A file named with --reviews is read all the same.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import stat
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.cache import default_cache_dir
from sde.filters.parser import parse as parse_filter_text
from sde.filters.tree import column_refs
from sde.lines import source_files
from sde.query import QueryError, TableQuery
from sde.review_store import (
    BODY_FIELDS,
    COPIED_FROM,
    DEFAULT_TIMEOUT_S,
    KIND,
    MAX_NOTE_CHARS,
    MAX_PAGE_SIZE,
    MAX_REQUEST_BYTES,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TEXT_CHARS,
    MAX_USER_CHARS,
    REVIEW_COLUMNS,
    SCHEMA_VERSION,
    STATUSES,
    Conflict,
    InvalidReview,
    NothingToUndo,
    ReadOnlyReviews,
    Review,
    ReviewError,
    ReviewKey,
    ReviewsLocked,
    SharedKey,
    ReviewStore,
    ReviewsUnusable,
    UnknownUtterance,
    WrongManifest,
    _short,
    _version,
    iso_time,
    validate,
)

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

log = logging.getLogger(__name__)

__all__ = [
    "AlignedReviews",
    "BODY_FIELDS",
    "Conflict",
    "DEFAULT_TIMEOUT_S",
    "InvalidReview",
    "KIND",
    "MAX_NOTE_CHARS",
    "MAX_PAGE_SIZE",
    "MAX_REQUEST_BYTES",
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_USER_CHARS",
    "NothingToUndo",
    "REVIEW_COLUMNS",
    "ReadOnlyReviews",
    "Review",
    "ReviewError",
    "ReviewKey",
    "ReviewStore",
    "ReviewsLocked",
    "ReviewsUnusable",
    "SCHEMA_VERSION",
    "STATUSES",
    "UnknownUtterance",
    "UtteranceKeys",
    "WrongManifest",
    "aligned_reviews",
    "check_reviews_match",
    "default_reviews_path",
    "iso_time",
    "open_reviews",
    "parse_review_body",
    "query_for",
    "review_columns",
    "review_get_route",
    "review_post_route",
    "review_summary",
    "review_undo_route",
    "reviews_list_route",
    "source_names",
    "utterance_keys",
    "validate",
]


# ------------------------------------------------------------------ the store of a dataset


def source_names(dataset: "Dataset") -> list[str]:
    files, _ = source_files(dataset)
    return [f.name for f in files]


def default_reviews_path(dataset: "Dataset", cache_dir: str | Path | None = None) -> Path:
    """cache folder / reviews / <manifest stem>-<hash of the sources' paths>.sqlite

    Keyed by where the manifest is, not by its content or sde's version: editing the manifest or
    upgrading sde keeps its reviews (review keys then tell which still match a line).
    """
    files, _ = source_files(dataset)
    paths = sorted(f.path if not f.local else str(Path(f.path).resolve()) for f in files)
    digest = hashlib.sha256("\n".join(paths).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    stem = re.sub(r"[^\w.-]+", "_", Path(files[0].name).stem)[:40] or "manifest"
    return Path(cache_dir or default_cache_dir()) / "reviews" / f"{stem}-{digest}.sqlite"


def open_reviews(dataset: "Dataset", path: str | Path | None = None, *, cache_dir: str | Path | None = None,
                 read_only: bool = False, timeout: float = DEFAULT_TIMEOUT_S, quiet: bool = False) -> ReviewStore:
    """The dataset's reviews (default location unless `path`), checked to belong to its manifest;
    `store.notes` says how they were read (logged too, unless `quiet`).

    A manifest renamed or moved keeps its reviews: a file whose reviews name another manifest file
    is read as this one's where its reviews are on this manifest's lines (see follow_renamed), and a
    default location with no file yet takes the reviews of the renamed or moved manifest from
    beside it (see renamed_reviews)."""
    default = path is None
    path = default_reviews_path(dataset, cache_dir) if path is None else Path(path)
    if default and not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise ReviewsUnusable(f"cannot create {path.parent} for the reviews ({e.strerror}); pass "
                                  "--reviews FILE or --cache-dir DIR") from None
    took_over = None
    at_default = default or _is_default_location(dataset, path)
    notes: list[str] = []
    if at_default and (not path.exists() or never_written(path)):
        found = renamed_reviews(dataset, path, notes)
        if found is not None:
            took_over, path = found, (found if read_only else _take_over(found, path))
    store = ReviewStore(path, sources=source_names(dataset), read_only=read_only, timeout=timeout,
                        follow_renames=True)
    try:
        store.notes.extend(notes)
        if took_over is not None and took_over != path:
            store.notes.append(f"{path} starts as a copy of {took_over}, the reviews of this manifest before it "
                               "was renamed, moved or copied (that file is left as it was)")
        follow_renamed(dataset, store, given=not at_default)
        check_reviews_match(dataset, store)
        store.remember_sources(manifest_files(dataset) if not store.read_only else None)
    except ReviewError:
        store.close()
        raise
    for note in store.notes if not quiet else ():
        log.warning("note: %s", note)
    return store


def never_written(path: Path) -> bool:
    """Whether the reviews file `path` holds no review and no history (made by a start of sde
    with no review saved since: e.g. a renamed manifest's, before its reviews followed it)."""
    import sqlite3

    try:
        con = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True, timeout=DEFAULT_TIMEOUT_S)
        try:
            return con.execute("SELECT count(*) FROM history").fetchone()[0] == 0
        finally:
            con.close()
    except sqlite3.Error:
        return False   # not a reviews file, or not readable: opening it says so


def _is_default_location(dataset: "Dataset", path: Path) -> bool:
    """Whether `path` is where the dataset's reviews are kept by default (in some cache folder)."""
    return path.parent.name == "reviews" and path == default_reviews_path(dataset, path.parent.parent)


#: At most this many reviews files beside a new default location are read to find a renamed one.
MAX_RENAME_CANDIDATES = 50
#: Renamed shards are matched to new ones pair by pair up to this many pairs (old names × new).
MAX_RENAME_PAIRS = 1024
#: The reviews of a file beside a new default location compared with the dataset's lines: a sample.
MAX_KEYS_COMPARED = 2000
#: Above this many rows, a file beside a new default location none of whose reviews is on its own
#: line is not searched for moved lines (a pass over every row's audio, per file).
RELOCATE_ROWS = 1_000_000


def renamed_reviews(dataset: "Dataset", default: Path, notes: list[str] | None = None) -> Path | None:
    """The reviews file, in the folder of the default location `default` (which has none yet), of
    this manifest before it was renamed or moved: the one file there (the most recently changed
    first, at most MAX_RENAME_CANDIDATES) at least half of whose reviews are on this manifest's
    lines (under its name, or another one it was renamed from), and whose manifest is this one
    moved, not another file with those lines (see moved_here: an export of it). None when there is
    none, or several (which one is meant cannot be told). A file passed over because its manifest
    is still in place is said in `notes`, with how to read it all the same."""
    folder = default.parent
    try:
        candidates = sorted((f for f in folder.glob("*.sqlite") if f.is_file() and f != default),
                            key=lambda f: f.stat().st_mtime, reverse=True)[:MAX_RENAME_CANDIDATES]
    except OSError:
        return None
    found: list[Path] = []
    copied_from: dict[Path, str | None] = {}
    for candidate in candidates:
        try:
            store = ReviewStore(candidate, read_only=True, timeout=0.5)
        except ReviewError:
            continue
        try:
            keys = store.keys(MAX_KEYS_COMPARED)   # enough to tell; a big file is not read whole
            # Following moved lines reads the dataset's whole audio column: not for every file of
            # a big dataset's cache folder whose reviews match none of its lines exactly.
            relocate = len(dataset.utterances) <= RELOCATE_ROWS
            aliases = {old: new for old, (new, _, _) in _renames(dataset, keys, relocate).items()}
            on_lines = _on_lines(dataset, keys, aliases, relocate)
            if not on_lines or 2 * on_lines < len(keys):
                continue
            kept_in_place = _not_moved(dataset, store, {k.source for k in keys}, aliases)
            if kept_in_place is None:
                found.append(candidate)
                copied_from[candidate.resolve()] = store.copied_from
            elif notes is not None:
                new, why = kept_in_place
                notes.append(f"the reviews in {candidate} are on lines of {new}, but not read as its reviews: {why}, "
                             f"so {new} is another manifest (an export of it, or a copy edited since) and starts "
                             f"without them; to read them with it, pass --reviews {shlex.quote(str(candidate))}")
        except ReviewError:
            continue
        finally:
            store.close()
    # A manifest renamed twice leaves the file of each name: each copied from the one before it,
    # which is an older state of the same reviews, not another manifest's.
    older = {Path(origin) for origin in copied_from.values() if origin}
    latest = [f for f in found if f.resolve() not in older]
    return latest[0] if len(latest) == 1 else None


def manifest_files(dataset: "Dataset") -> dict[str, dict]:
    """Where each local manifest file of the dataset is and which file it is (its device and inode,
    size and modification time), by name: kept in its reviews file (ReviewStore.made_for_files)."""
    files, _ = source_files(dataset)
    out = {}
    for f in files:
        if not f.local:
            continue
        try:
            st = os.stat(f.path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out[f.name] = {"path": os.path.realpath(f.path), "dev": st.st_dev, "ino": st.st_ino,
                           "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return out


def moved_here(was: object, path: str, compare_bytes: bool = True) -> str | None:
    """Why reviews made for the manifest file `was` (its entry in ReviewStore.made_for_files) are
    not those of the file at `path`, which has their lines; None where they are.

    Lines alone cannot tell a manifest moved (and perhaps edited since) from another file made of
    its lines: `sde export` writes the kept lines byte for byte. The file reviewed can: renamed, its
    inode is the one at `path`; moved to another file system, or renamed by a tool that writes a
    new file, nothing is left where it was. Still there, the file at `path` is another manifest,
    unless it is a copy of the same bytes (`compare_bytes`; else not compared). A reviews file
    written before sde kept where its manifest was has no entry: its lines alone tell."""
    if not isinstance(was, dict) or not isinstance(was.get("path"), str):
        return None
    where = was["path"]
    try:
        now = os.stat(path)
    except OSError:
        return None
    if os.path.realpath(path) == where or (now.st_dev, now.st_ino) == (was.get("dev"), was.get("ino")):
        return None   # the same file: renamed or hard-linked, edited or not
    try:
        there = os.stat(where)
    except OSError:
        return None   # moved: nothing left where it was
    if not stat.S_ISREG(there.st_mode):
        return None
    if compare_bytes and there.st_size == now.st_size and _same_bytes(where, path):
        return None   # a copy of it
    return f"they were made for {where}, which is still there"


def _same_bytes(a: str, b: str) -> bool:
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                chunk = fa.read(COMPARED_BYTES)
                if chunk != fb.read(COMPARED_BYTES):
                    return False
                if not chunk:
                    return True
    except OSError:
        return False


#: Read size of the comparison of a manifest with the file its reviews were made for.
COMPARED_BYTES = 1 << 20


def _not_moved(dataset: "Dataset", store: ReviewStore, names: set[str], aliases: Mapping[str, str],
               compare_bytes: bool = True) -> tuple[str, str] | None:
    """(the dataset's file name, why) for the first of the reviews' manifest `names` (read through
    `aliases`) whose reviews stay with the file they were made for (see moved_here); None if none."""
    files, _ = source_files(dataset)
    paths = {f.name: f.path for f in files if f.local}
    for old in sorted(names):
        new = aliases.get(old, old)
        if new in paths and (why := moved_here(store.made_for_files.get(old), paths[new], compare_bytes)):
            return new, why
    return None


def _take_over(found: Path, default: Path) -> Path:
    """A copy of the renamed manifest's reviews file `found` at `default` (SQLite's backup: the
    changes still in its -wal are copied too), so that its reviews go on in the new default location
    and the old file is left as it was; `found` itself where the copy cannot be made."""
    import sqlite3

    try:
        source = sqlite3.connect(found.absolute().as_uri() + "?mode=ro", uri=True, timeout=DEFAULT_TIMEOUT_S)
        try:
            target = sqlite3.connect(str(default))
            try:
                source.backup(target)
                with target:  # the next rename finds both files: this one is the later state
                    target.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (COPIED_FROM, str(found.resolve())))
            finally:
                target.close()
        finally:
            source.close()
        return default
    except (OSError, sqlite3.Error) as e:
        log.warning("warning: could not copy the reviews %s to %s (%s); reading them where they are", found,
                    default, e)
        default.unlink(missing_ok=True)
        return found


def _renames(dataset: "Dataset", keys: Sequence[ReviewKey], relocate: bool = True,
             ) -> dict[str, tuple[str, int, int]]:
    """The manifest names of `reviews` that are not the dataset's and are read as one of its names:
    {old name: (new name, reviews of it on that file's lines, reviews of it)}.

    An old name is read as the one file of the dataset (of those whose name has no reviews yet and
    no other old name read as it, for shards) that has at least half of its reviews on its lines (same line, or the same
    audio_filepath and offset on another: see aligned_reviews), as they are after a rename or move;
    a few reviews match another manifest's lines by chance, not half."""
    by_name: dict[str, list[ReviewKey]] = {}
    for key in keys:
        by_name.setdefault(key.source, []).append(key)
    names = source_names(dataset)
    orphans = [name for name in by_name if name not in names]
    targets = names if len(names) == 1 else [name for name in names if name not in by_name]
    if not orphans or not targets or len(orphans) * len(targets) > MAX_RENAME_PAIRS:
        return {}
    out: dict[str, tuple[str, int, int]] = {}
    for old in orphans:
        mine = by_name[old]
        # one manifest file takes every name it had (renamed twice, its reviews file holds reviews
        # under both); a shard takes one
        taken = {n for n, _, _ in out.values()} if len(names) > 1 else set()
        fits = [(new, on) for new in targets if new not in taken
                for on in [_on_lines(dataset, mine, {old: new}, relocate)] if on and 2 * on >= len(mine)]
        if len(fits) == 1:   # several: which file it became cannot be told
            out[old] = (fits[0][0], fits[0][1], len(mine))
    return out


def _on_lines(dataset: "Dataset", keys: Sequence[ReviewKey], aliases: Mapping[str, str],
              relocate: bool = True) -> int:
    """How many of `keys` (their manifest names read through `aliases`) are on a line of the
    dataset: the same line, or (`relocate`, or some are on their own line) the same audio_filepath
    and offset on another (see aligned_reviews)."""
    if not keys:
        return 0
    wanted = [ReviewKey(aliases.get(k.source, k.source), k.line, k.audio_filepath, k.offset) for k in keys]
    rows = utterance_keys(dataset)
    positions = rows.positions(wanted)
    lost = np.flatnonzero(positions < 0)
    if len(lost) and (relocate or len(lost) < len(positions)):
        positions[lost] = rows.relocated([wanted[i] for i in lost.tolist()])
    return int((positions >= 0).sum())


def follow_renamed(dataset: "Dataset", store: ReviewStore, given: bool = False) -> None:
    """Read the reviews of a renamed or moved manifest (same lines, another file name in their
    keys) as this dataset's: `store.aliases` maps the old name to the new one. The file itself is
    not rewritten: the old manifest, if it is still there, keeps its reviews too, and a review
    edited here is saved under the key it has. A file made for other manifests whose reviews are
    not on these lines is refused, with how to re-point it if it is this manifest after all.

    A file the user named (`given`, --reviews FILE) is read with another manifest that has its
    lines even where the manifest it was made for is still in place (an export of it): the note
    says so. (A file found at the default location was taken over only where it was this manifest
    moved or copied: renamed_reviews.)"""
    renames = _renames(dataset, store.keys())
    store.aliases = {old: new for old, (new, _, _) in renames.items()}
    for old, (new, on_lines, total) in renames.items():
        kept = _not_moved(dataset, store, {old}, store.aliases, compare_bytes=False)
        if kept is None:
            how = "renamed or moved"
        # a default location's file was taken over from a copy (renamed_reviews): its bytes are not
        # compared again at each start
        elif not given or _not_moved(dataset, store, {old}, store.aliases) is None:
            how = f"copied: {kept[1]}"
        else:
            how = f"{kept[1]}: read with {new} as --reviews names this file"
        store.notes.append(f"the reviews in {store.path} were made for {old}: {on_lines:,} of its {total:,} "
                           f"reviews are on lines of {new} ({how}), so they are read as its reviews")
    names = source_names(dataset)
    counts = store.source_counts()
    if store.made_for and not (store.made_for | set(counts)) & set(names) and not renames:
        old = max(counts, key=lambda name: counts[name]) if counts else sorted(store.made_for)[0]
        new = names[0]
        # one manifest file: its old name; shards: the first pair, to repeat for the others
        sql = (f"UPDATE reviews SET source = {_sql_text(new)} WHERE source = {_sql_text(old)}; "
               f"UPDATE history SET source = {_sql_text(new)} WHERE source = {_sql_text(old)}; "
               f"UPDATE meta SET value = json_array({', '.join(map(_sql_text, sorted(names)))}) "
               "WHERE key = 'sources';")
        repoint = f"sqlite3 {shlex.quote(str(store.path))} {_double_quoted(sql)}"
        raise WrongManifest(
            f"{store.path} holds the reviews of {', '.join(sorted(store.made_for)[:3])}, not of "
            f"{', '.join(names[:3])}, and fewer than half of them are on its lines (same line, audio_filepath "
            f"and offset): pass --reviews with this manifest's reviews file, or a new file name to start "
            f"reviewing it; if {new} is {old} renamed and edited, re-point the reviews (the file is "
            f"changed; keep a copy)"
            + (" with one UPDATE reviews and one UPDATE history per renamed file, e.g." if len(names) > 1 else "")
            + f": {repoint}")


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _double_quoted(value: str) -> str:
    """`value` as one word of a shell command in double quotes (the SQL's own quotes are single)."""
    return '"' + re.sub(r'(["$`\\])', r"\\\1", value) + '"'


def check_reviews_match(dataset: "Dataset", store: ReviewStore) -> None:
    """A reviews file none of whose reviews is a line of this dataset belongs to another manifest."""
    aligned = aligned_reviews(dataset, store)
    if aligned.stale and not len(aligned.positions):
        raise WrongManifest(
            f"none of the {aligned.stale:,} reviews in {store.path} matches a line of {dataset.name} "
            "(same file name, line, audio_filepath and offset): it holds the reviews of another manifest, "
            "or of an older version of this one; pass --reviews with a new file name to start afresh")


class UtteranceKeys:
    """Review keys of a dataset's rows, and rows of review keys.

    Several rows may share a (source, line): a Lhotse cut's line holds all its supervisions, told
    apart by their offset (and audio). The rows are kept sorted by (source, line, offset), so a key
    is found exactly with two binary searches, for any number of keys at once.
    """

    def __init__(self, dataset: "Dataset") -> None:
        files, self.codes = source_files(dataset)
        self.names = [f.name for f in files]
        self._code_of = {name: i for i, name in enumerate(self.names)}
        utt = dataset.utterances
        self.lines = utt["line"].to_numpy(dtype=np.int64)
        self.audio = utt["audio_filepath"]
        self.offsets = utt["offset"].to_numpy(dtype="float64", na_value=0.0)
        combined = (self.codes.astype(np.int64) << 40) | self.lines
        self._order = _key_order(combined, self.offsets)
        self._sorted = combined if self._order is None else combined[self._order]
        self._sorted_offsets = self.offsets if self._order is None else self.offsets[self._order]
        self._relocated: dict[ReviewKey, int] = {}

    def relocated(self, keys: Sequence[ReviewKey]) -> np.ndarray:
        """For keys whose line no longer matches (lines added, removed or reordered above them):
        the one row of the same file with the same audio_filepath and offset, -1 where there is
        none or several. Remembered per key: the stale keys of a session rarely change, and
        finding their audio is a pass over every row."""
        todo = [k for k in dict.fromkeys(keys) if k not in self._relocated]
        if todo:
            self._relocated.update(self._find_moved(todo))
        return np.array([self._relocated[k] for k in keys], dtype=np.int64)

    def _find_moved(self, keys: Sequence[ReviewKey]) -> dict[ReviewKey, int]:
        wanted = {k.audio_filepath for k in keys}
        # the audio column as text (as key() stores it); a pyarrow isin, not a Python loop per row
        audio = self.audio.astype("string[pyarrow]")
        rows = np.flatnonzero(audio.isin(list(wanted)).to_numpy(dtype=bool, na_value=False))
        found: dict[tuple[int, str, float], list[int]] = {}
        for row, name in zip(rows.tolist(), audio.iloc[rows].tolist()):
            found.setdefault((int(self.codes[row]), str(name), float(self.offsets[row])), []).append(row)
        out = {}
        for k in keys:
            same = found.get((self._code_of.get(k.source, -1), k.audio_filepath, float(k.offset)), [])
            out[k] = same[0] if len(same) == 1 else -1   # several: which one is ambiguous, so none
        return out

    def key(self, position: int) -> ReviewKey:
        return ReviewKey(self.names[int(self.codes[position])], int(self.lines[position]),
                         str(self.audio.iat[position]), float(self.offsets[position]))

    def positions(self, keys: Sequence[ReviewKey]) -> np.ndarray:
        """Row position of each key, -1 where no row has it (the manifest changed since)."""
        if not keys:
            return np.empty(0, dtype=np.int64)
        codes = np.array([self._code_of.get(k.source, -1) for k in keys], dtype=np.int64)
        lines = np.array([k.line for k in keys], dtype=np.int64)
        offsets = np.array([k.offset for k in keys], dtype="float64")
        wanted = (codes << 40) | lines
        lo = np.searchsorted(self._sorted, wanted, side="left")
        hi = np.where(codes >= 0, np.searchsorted(self._sorted, wanted, side="right"), lo)
        first = _first_at_least(self._sorted_offsets, lo, hi, offsets)
        return self._same_audio(first, hi, offsets, [k.audio_filepath for k in keys])

    def shared(self, position: int) -> bool:
        """Whether another row has this row's key: two supervisions of one cut starting at the same
        time on one recording (overlapping speakers, channels). A review cannot tell them apart."""
        combined = (int(self.codes[position]) << 40) | int(self.lines[position])
        offset = self.offsets[position]
        lo = int(np.searchsorted(self._sorted, combined, side="left"))
        hi = int(np.searchsorted(self._sorted, combined, side="right"))
        same = np.flatnonzero(self._sorted_offsets[lo:hi] == offset) + lo
        if len(same) < 2:
            return False
        rows = same if self._order is None else self._order[same]
        audio = str(self.audio.iat[int(position)])
        return sum(str(self.audio.iat[int(r)]) == audio for r in rows) > 1

    def _same_audio(self, candidate: np.ndarray, hi: np.ndarray, offsets: np.ndarray,
                    audio: list[str]) -> np.ndarray:
        """Walk each key's rows of the same (source, line, offset), in sorted order, to the first
        with its audio_filepath: usually one step, as rows of a line rarely share an offset."""
        out = np.full(len(candidate), -1, dtype=np.int64)
        todo = np.flatnonzero(candidate < hi)
        while len(todo):
            todo = todo[self._sorted_offsets[candidate[todo]] == offsets[todo]]
            at = candidate[todo]
            rows = at if self._order is None else self._order[at]
            wanted = np.array([audio[i] for i in todo.tolist()], dtype=object)
            # str() as in key(): the audio a review was saved with is the row's, as text
            same = np.array([str(a) for a in self.audio.iloc[rows].tolist()], dtype=object) == wanted
            out[todo[same]] = rows[same]
            todo = todo[~same]
            candidate[todo] += 1
            todo = todo[candidate[todo] < hi[todo]]
        return out


def _key_order(combined: np.ndarray, offsets: np.ndarray) -> np.ndarray | None:
    """The rows' order by (source and line, offset); None when they are in it already (a manifest
    read in order, the usual case: no 80 MB permutation for 10M rows)."""
    if len(combined) < 2:
        return None
    step = np.diff(combined)
    if bool(np.all((step > 0) | ((step == 0) & (offsets[1:] >= offsets[:-1])))):
        return None
    return np.lexsort((offsets, combined))


def _first_at_least(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each i, the first index in values[lo[i]:hi[i]] (sorted) whose value is >= targets[i]
    (hi[i] when none): a binary search of every range at once, log2(longest range) numpy steps."""
    lo, hi = lo.astype(np.int64), hi.astype(np.int64)
    open_ = np.flatnonzero(lo < hi)
    while len(open_):
        mid = (lo[open_] + hi[open_]) // 2
        below = values[mid] < targets[open_]
        lo[open_[below]] = mid[below] + 1
        hi[open_[~below]] = mid[~below]
        open_ = open_[lo[open_] < hi[open_]]
    return lo


def utterance_keys(dataset: "Dataset") -> UtteranceKeys:
    cached = dataset.__dict__.get("_sde_review_keys")
    if cached is None:
        cached = dataset.__dict__["_sde_review_keys"] = UtteranceKeys(dataset)
    return cached


@dataclass
class AlignedReviews:
    positions: np.ndarray       # row of each review below
    reviews: list[Review]       # current reviews that match a row (status None: undone)
    stale: int                  # reviews that match no row (the manifest changed since)
    moved: int = 0              # reviews found on another line than they were saved on
    # what changed since the aligned reviews this was updated from (see aligned_reviews and
    # review_columns): those (weakly held, so that no chain of them stays alive) and each changed
    # row with its review now
    update: tuple[weakref.ref, dict[int, Review]] | None = field(default=None, repr=False, compare=False)

    def at(self, position: int) -> Review | None:
        """The review aligned with row `position`, if any."""
        if self._by_position is None:
            self._by_position = dict(zip(self.positions.tolist(), self.reviews))
        return self._by_position.get(int(position))

    _by_position: dict[int, Review] | None = field(default=None, repr=False, compare=False)


def aligned_reviews(dataset: "Dataset", store: ReviewStore) -> AlignedReviews:
    """The store's reviews on the dataset's rows. A review's key names its line, but a manifest
    edited above it (a line added, removed, the file re-sorted) moves the utterance: a review whose
    line no longer matches follows it to the one row of its file with the same audio_filepath and
    offset, unless that row has a review of its own, another review moves there too, or several
    rows share that audio (then it is stale: counted, never applied to a guess)."""
    token = (store.serial, store.generation())
    cached = dataset.__dict__.get("_sde_aligned_reviews")
    if cached is not None and cached[0] == token:
        return cached[1]
    updated = _updated(dataset, store, cached[0], cached[1]) if cached is not None else None
    if updated is not None:
        dataset.__dict__["_sde_aligned_reviews"] = (token, updated)
        return updated
    reviews = store.reviews()
    positions, moved = np.empty(0, dtype=np.int64), 0
    if reviews:  # else no keys to find: the rows' keys (~0.1 GB at 10M rows) wait for a first review
        keys = utterance_keys(dataset)
        wanted = _lookup_keys(store, reviews)
        positions = keys.positions(wanted)
        moved = _follow_moved_lines(keys, wanted, positions)
    matched = np.flatnonzero(positions >= 0)
    aligned = AlignedReviews(positions[matched], [reviews[i] for i in matched.tolist()],
                             int(len(reviews) - len(matched)), moved)
    dataset.__dict__["_sde_aligned_reviews"] = (token, aligned)
    return aligned


def _updated(dataset: "Dataset", store: ReviewStore, token: tuple, aligned: AlignedReviews) -> AlignedReviews | None:
    """``aligned`` (of generation ``token``) with the reviews this store saved since: a save reads
    its own review back, not all of them (2 s a save at 90k reviews, and growing). None where that
    cannot be told (another process wrote, a review of a row that had none moved there) or the
    store is another: then every review is read again."""
    if token[0] != store.serial:
        return None
    changed = store.changes_since(token[1])
    if changed is None:
        return None
    by_key = {r.key: i for i, r in enumerate(aligned.reviews)}
    reviews, positions = list(aligned.reviews), aligned.positions.copy()
    added: list[Review] = []
    rows: dict[int, Review] = {}
    for key in dict.fromkeys(changed):
        review = store.get(key)
        if key in by_key:
            reviews[by_key[key]] = review
            rows[int(positions[by_key[key]])] = review
        else:
            added.append(review)
    if added:
        found = utterance_keys(dataset).positions(_lookup_keys(store, added)).tolist()
        if min(found) < 0 or len(set(found)) < len(found) or set(positions.tolist()).intersection(found):
            return None
        reviews.extend(added)
        positions = np.concatenate([positions, np.asarray(found, dtype=np.int64)])
        rows.update(zip(found, added))
    return AlignedReviews(positions, reviews, aligned.stale, aligned.moved, update=(weakref.ref(aligned), rows))


def _lookup_keys(store: ReviewStore, reviews: Sequence[Review]) -> list[ReviewKey]:
    """The keys the reviews are looked up by: their own, with a renamed manifest's old name read as
    its new one (`store.aliases`, see follow_renamed)."""
    aliases = store.aliases
    if not aliases:
        return [r.key for r in reviews]
    return [ReviewKey(aliases[r.key.source], r.key.line, r.key.audio_filepath, r.key.offset)
            if r.key.source in aliases else r.key for r in reviews]


def _follow_moved_lines(keys: UtteranceKeys, wanted: Sequence[ReviewKey], positions: np.ndarray) -> int:
    """Give each stale review (looked up by `wanted`) the row its utterance moved to (in place in
    `positions`); return how many moved."""
    stale = np.flatnonzero(positions < 0)
    if not len(stale):
        return 0
    targets = keys.relocated([wanted[i] for i in stale.tolist()])
    taken = np.zeros(len(keys.lines), dtype=np.int64)
    np.add.at(taken, positions[positions >= 0], 2)       # a row's own review always wins
    np.add.at(taken, targets[targets >= 0], 1)
    ok = (targets >= 0) & (taken[np.maximum(targets, 0)] == 1)
    positions[stale[ok]] = targets[ok]
    return int(ok.sum())


def review_columns(dataset: "Dataset", store: ReviewStore | None) -> pd.DataFrame:
    """The review columns, aligned with `dataset.utterances` (missing values where unreviewed).

    `review_tags` holds the tags separated by spaces, so `{review_tags} has "noise"` finds a tag;
    `review_time` is ISO 8601 UTC text, so it sorts and compares as time.
    """
    if store is None:
        return _spread_reviews(dataset, [], [])
    aligned = aligned_reviews(dataset, store)
    cached = dataset.__dict__.get("_sde_review_columns")
    if cached is not None and cached[0] is aligned:
        return cached[1]
    if cached is not None and aligned.update is not None and cached[0] is aligned.update[0]():
        columns = _with_rows_changed(cached[1], aligned.update[1])
    else:
        columns = _spread_reviews(dataset, aligned.positions.tolist(), aligned.reviews)
    dataset.__dict__["_sde_review_columns"] = (aligned, columns)
    return columns


def _column_values(reviews: Sequence[Review]) -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {name: [] for name in REVIEW_COLUMNS}
    for r in reviews:
        values["review"].append(r.status)
        values["review_text"].append(r.text if r.status is not None else None)
        values["review_note"].append(r.note if r.status is not None else None)
        values["review_tags"].append(" ".join(r.tags) if r.tags and r.status is not None else None)
        values["review_user"].append(r.user if r.status is not None else None)
        values["review_time"].append(iso_time(r.time) if r.status is not None else None)
    return values


def _spread_reviews(dataset: "Dataset", positions: list[int], reviews: Sequence[Review]) -> pd.DataFrame:
    """Each column is its few reviewed values spread over the rows by Arrow (a take): 10M rows as
    Python objects took ~25 s at every new Samples page of a reviewed server. Undone reviews
    (status None) leave their row empty."""
    shown = [(p, r) for p, r in zip(positions, reviews) if r.status is not None]
    values = _column_values([r for _, r in shown])
    where = np.zeros(len(dataset.utterances), dtype=np.int64)
    where[np.asarray([p for p, _ in shown], dtype=np.int64)] = np.arange(1, len(shown) + 1)
    spread = pa.array(where)
    return pd.DataFrame({name: pd.array(pa.array([None, *column], pa.large_string()).take(spread),
                                        dtype="string[pyarrow]")
                         for name, column in values.items()}, index=dataset.utterances.index)


def _with_rows_changed(columns: pd.DataFrame, rows: dict[int, Review]) -> pd.DataFrame:
    """``columns`` with each of ``rows`` set from its review: one save changes a row or two, so the
    columns are not built again from every review."""
    if not rows:
        return columns
    order = sorted(rows)
    values = _column_values([rows[row] for row in order])
    mask = np.zeros(len(columns), dtype=bool)
    mask[order] = True
    mask_array = pa.array(mask)
    out = {}
    for name in REVIEW_COLUMNS:
        old = pa.chunked_array(columns[name].array._pa_array).combine_chunks().cast(pa.large_string())
        new = pc.replace_with_mask(old, mask_array, pa.array(values[name], pa.large_string()))
        out[name] = pd.array(new, dtype="string[pyarrow]")
    return pd.DataFrame(out, index=columns.index)


def write_review(record: dict, extras: dict, review: Any, old_text: Any) -> None:
    """A review written into a manifest record (an export): a fix's text into ``record["text"]``,
    the old one kept in ``extras["text_original"]`` (an existing one is kept: it is the oldest),
    the note and tags in ``extras["review_note"]`` / ``extras["review_tags"]``. ``extras`` is the
    record itself for a NeMo line, a supervision's ``custom`` for a Lhotse cut. A fix without a
    corrected transcript (None, empty or blank) leaves the text as it is: the store reads such a
    fix as "keep" and refuses to save one, and an empty transcript is never written."""
    if review.status == "fix" and review.text and review.text.strip() and review.text != old_text:
        extras.setdefault("text_original", old_text)
        record["text"] = review.text
    if review.note:
        extras["review_note"] = review.note
    if review.tags:
        extras["review_tags"] = list(review.tags)


# A review column, or braced as a column a field of /api/reviews' rows ({status}, {time}, ...): the
# latter is unknown, and only a query over the review columns names them in its message ({status}:
# did you mean {review}?). Braced only: `{text} contains "time"` must not build that query (a bare
# name is found by parsing: _names_review_field).
_NAMES_REVIEWS = re.compile(r"review|\{\s*(?:status|time|note|tags|user)\s*\}", re.IGNORECASE)
_REVIEW_FIELDS = frozenset({"status", "time", "note", "tags", "user"})


def _names_review_field(dataset: "Dataset", text: str) -> bool:
    """Whether filter `text` names a field of /api/reviews' rows bare (`status = "drop"`) where
    the dataset has no column of that name: as braced, only the query over the review columns
    suggests the column that holds it. Parsed, so a value ("time") is no column."""
    try:
        tree = parse_filter_text(text)
    except QueryError:  # said when the filter is used
        return False
    columns = dataset.utterances.columns
    return tree is not None and any(c.name.lower() in _REVIEW_FIELDS and c.name not in columns
                                    for c in column_refs(tree))


def query_for(dataset: "Dataset", store: ReviewStore | None, *texts: str | None) -> "TableQuery":
    """The query engine for filters/sorts `texts`: the dataset's own, or, when one of them names a
    review column, one over the utterances plus the current review columns (rebuilt after edits)."""
    if store is None or not any(t and (_NAMES_REVIEWS.search(t) or _names_review_field(dataset, t))
                                for t in texts):
        return dataset.utterance_query
    token = (store.serial, store.generation())
    cached = dataset.__dict__.get("_sde_reviewed_query")
    if cached is not None and cached[0] == token:
        return cached[1]
    query = _reviewed_query(dataset, dataset.utterances, review_columns(dataset, store))
    dataset.__dict__["_sde_reviewed_query"] = (token, query)
    return query


def _reviewed_query(dataset: "Dataset", utterances: pd.DataFrame, columns: pd.DataFrame) -> TableQuery:
    """A query over `utterances` (the dataset's rows, or some of them) plus the review `columns` of
    the same index."""
    # Review columns win over manifest fields of the same name: {review} means the review here.
    frame = utterances.drop(columns=[c for c in REVIEW_COLUMNS if c in utterances.columns])
    for name in columns.columns:  # same index: no alignment, and the stored columns stay as they are
        frame[name] = columns[name].array
    error_columns = getattr(dataset, "_error_columns", None)
    return TableQuery(frame, virtual=error_columns() if callable(error_columns) else None)


def _check_review_query(dataset: "Dataset", filter_text: str | None, sort_text: str | None) -> None:
    """Raise the QueryError that the filter and sort would raise over the review columns, without
    spreading those over every row (~0.5 s at 10M): they are run over none of the rows."""
    none = dataset.utterances.iloc[:0]
    empty = pd.DataFrame({name: pd.array([], dtype="string[pyarrow]") for name in REVIEW_COLUMNS},
                         index=none.index)
    _reviewed_query(dataset, none, empty).select(filter_text, sort_text)


def review_summary(dataset: "Dataset", store: ReviewStore | None) -> dict:
    """Counts and hours per review status, for the Statistics page and /api/summary."""
    duration = dataset.utterances["duration"].to_numpy(dtype="float64", na_value=np.nan)
    out: dict[str, Any] = {"reviewed": 0, "hours_reviewed": 0.0, "stale": 0}
    for status in STATUSES:
        out[status] = 0
        out[f"hours_{status}"] = 0.0
    if store is None:
        return out
    aligned = aligned_reviews(dataset, store)
    statuses = np.array([r.status or "" for r in aligned.reviews], dtype=object)
    for status in STATUSES:
        rows = aligned.positions[statuses == status] if len(statuses) else aligned.positions[:0]
        out[status] = int(len(rows))
        out[f"hours_{status}"] = float(np.nansum(duration[rows])) / 3600.0
    reviewed = aligned.positions[statuses != ""] if len(statuses) else aligned.positions[:0]
    out["reviewed"] = int(len(reviewed))
    out["hours_reviewed"] = float(np.nansum(duration[reviewed])) / 3600.0
    out["stale"] = aligned.stale
    return out


# ----------------------------------------------------------------------------------- HTTP twins
# Plain functions: (dataset, store, request values) → (HTTP status, JSON payload). The web layer
# registers them, bounds the request body (MAX_REQUEST_BYTES) and passes the --auth user name.


def _position(dataset: "Dataset", utterance_id: Any) -> int:
    text = str(utterance_id)
    if len(text) > 20 or not text.isdigit() or int(text) >= len(dataset.utterances):
        raise UnknownUtterance(f"no utterance with id {text[:20]!r}: ids are 0..{len(dataset.utterances) - 1}")
    return int(text)


def _no_store() -> ReviewError:
    return ReadOnlyReviews("reviews are off for this server (no reviews file could be opened); "
                           "restart sde with --reviews FILE")


def parse_review_body(body: Any) -> dict:
    """The POST body {"status", "text"?, "note"?, "tags"?, "version"?} as set_review's arguments."""
    if not isinstance(body, Mapping):
        raise InvalidReview('send a JSON object: {"status": "keep"|"drop"|"fix", "text"?, "note"?, "tags"?, '
                            '"version"?}')
    unknown = [k for k in body if k not in BODY_FIELDS]
    if unknown:
        raise InvalidReview(f"unknown field {_short(unknown[0])}; a review has {', '.join(BODY_FIELDS)}")
    return {"status": body.get("status"), "text": body.get("text"), "note": body.get("note"),
            # absent (None) is no tags; 0, false or "" are refused by validate, not taken for none
            "tags": body.get("tags"), "expected_version": _version(body.get("version"))}


def review_post_route(dataset: "Dataset", store: ReviewStore | None, utterance_id: Any, body: Any,
                      user: str | None = None) -> tuple[int, dict]:
    """POST /api/utterances/ID/review → 200 the stored review with its new version; 409 on a stale version."""
    try:
        position = _position(dataset, utterance_id)
        if store is None:
            raise _no_store()
        fields = parse_review_body(body)
        review = store.set_review(_stored_key(dataset, store, position), user=user, **fields)
        return 200, _shown(dataset, position, review)
    except ReviewError as e:
        return e.status, e.payload()


def review_undo_route(dataset: "Dataset", store: ReviewStore | None, utterance_id: Any, body: Any,
                      user: str | None = None) -> tuple[int, dict]:
    """POST /api/utterances/ID/review/undo with {"version"?} → the restored review as a new version."""
    try:
        position = _position(dataset, utterance_id)
        if store is None:
            raise _no_store()
        body = body if isinstance(body, Mapping) else {}
        review = store.undo(_stored_key(dataset, store, position), user=user,
                            expected_version=_version(body.get("version")))
        return 200, _shown(dataset, position, review)
    except ReviewError as e:
        return e.status, e.payload()


def _stored_key(dataset: "Dataset", store: ReviewStore, position: int) -> ReviewKey:
    """The key a row's review is stored under: its own, or, for a review that followed its
    utterance to another line (see aligned_reviews), the key it was saved with, so that editing
    it changes that review (its version, its history) rather than starting a second one."""
    moved = _moved_key(dataset, store, position)
    return moved if moved is not None else _own_key(dataset, position)


def _moved_key(dataset: "Dataset", store: ReviewStore, position: int) -> ReviewKey | None:
    """The key of the review that followed row `position` from another line, if any."""
    cached = dataset.__dict__.get("_sde_aligned_reviews")
    if cached is not None and cached[0][0] == store.serial and not cached[1].moved and not store.aliases:
        # Nothing had moved when the reviews were last aligned, and saves go to the keys the rows
        # have: no need to align every review again (a read of the whole file) at each request.
        return None
    review = aligned_reviews(dataset, store).at(position)
    return None if review is None or review.key == utterance_keys(dataset).key(position) else review.key


def _shown(dataset: "Dataset", position: int, review: Review) -> dict:
    """A review as the API shows it: on the row's current line, whatever line it was saved on."""
    return {"id": position, **review.to_json(), **utterance_keys(dataset).key(position).to_json()}


def _own_key(dataset: "Dataset", position: int) -> ReviewKey:
    """The review key of a row, refused (409) where another row has it too: saved, the review
    would be read back as the other row's."""
    keys = utterance_keys(dataset)
    if keys.shared(position):
        key = keys.key(position)
        raise SharedKey(f"utterance {position} cannot be reviewed on its own: another supervision of its cut "
                        f"({key.source} line {key.line}) starts at the same time ({key.offset:g} s) on the same "
                        "recording, and a review is keyed by file, line, recording and start; drop or keep it "
                        'with a rule instead (a filter such as {supervision_id} = "ID", see docs/cleaning.md)')
    return keys.key(position)


def review_get_route(dataset: "Dataset", store: ReviewStore | None, utterance_id: Any) -> tuple[int, dict]:
    """GET /api/utterances/ID/review → the current review (status null, version 0 when none)."""
    try:
        position = _position(dataset, utterance_id)
        if store is None:
            review = Review(utterance_keys(dataset).key(position), None)
        else:
            moved = _moved_key(dataset, store, position)
            review = store.get(moved if moved is not None else utterance_keys(dataset).key(position))
        return 200, {**_shown(dataset, position, review), "editable": store is not None and not store.read_only}
    except ReviewError as e:
        return e.status, e.payload()


def reviews_list_route(dataset: "Dataset", store: ReviewStore | None, args: Mapping[str, str]) -> tuple[int, dict]:
    """GET /api/reviews?filter=Q&sort=S&page=P&page_size=N → {"total", "page", "page_size", "rows", "stale",
    "problems"}: the reviewed utterances that the filter selects (review columns included), with their
    review; "problems" lists rows of the file that were edited by hand into something unreadable."""
    try:
        page = _int_arg(args, "page", 0, 10**9)
        page_size = _int_arg(args, "page_size", 50, MAX_PAGE_SIZE, lo=1)
        filter_text, sort_text = args.get("filter") or None, args.get("sort") or None
        if store is None:
            return 200, {"total": 0, "page": page, "page_size": page_size, "rows": [], "stale": 0, "problems": []}
        aligned = aligned_reviews(dataset, store)
        by_position = {p: r for p, r in zip(aligned.positions.tolist(), aligned.reviews) if r.status is not None}
        if not by_position:  # nothing reviewed (yet): no filter selects a row, a bad one is still a 400
            _check_review_query(dataset, filter_text, sort_text)
            return 200, {"total": 0, "page": page, "page_size": page_size, "rows": [],
                         "stale": aligned.stale, "problems": list(store.problems)}
        selected = query_for(dataset, store, "review", filter_text, sort_text).select(filter_text, sort_text)
        reviewed = np.zeros(len(dataset.utterances), dtype=bool)
        reviewed[list(by_position)] = True
        hits = selected[reviewed[selected]]
        rows = []
        texts = dataset.utterances["text"]
        for position in hits[page * page_size:(page + 1) * page_size].tolist():
            reference = texts.iat[position]
            rows.append({"reference": None if pd.isna(reference) else str(reference),
                         **_shown(dataset, position, by_position[position])})
        return 200, {"total": int(len(hits)), "page": page, "page_size": page_size, "rows": rows,
                     "stale": aligned.stale, "problems": list(store.problems)}
    except QueryError as e:
        payload: dict[str, Any] = {"error": str(e)}
        if getattr(e, "position", None) is not None:
            payload["position"] = e.position
        return 400, payload
    except ReviewError as e:
        return e.status, e.payload()


def _int_arg(args: Mapping[str, str], name: str, default: int, hi: int, lo: int = 0) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    text = str(raw)
    if len(text) > 12 or not text.isdigit() or not lo <= int(text) <= hi:
        raise InvalidReview(f"{name} must be a whole number between {lo} and {hi}; got {text[:20]!r}")
    return int(text)
