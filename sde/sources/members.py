"""Where an utterance's audio is, as sde.audio reads it: a local path, a file in an object store
(read with byte ranges), or a member of a NeMo tar shard (``shard_id`` + member name).

One place turns a row into a readable source (:func:`audio_input`), for the /audio routes and the
inspector, transcription and the load-time checks alike. Tar members are found through the tar's
member index (:mod:`sde.sources.tar_index`, built once per tar and kept in memory for the
process) and read by seek: one ``pread`` of a local tar, one ranged request of a remote one, then
decoded from memory. Nothing is extracted, no tar is downloaded whole. A member too large to hold
(a long recording) is read in place through a window on the tar.

:func:`check_tar_members` runs at load time: every tar indexed (in parallel, each request bounded
in time), each line checked for a valid ``shard_id`` and a member that its tar holds, with one
clear problem per line and per tar; the other utterances are unaffected.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import pandas as pd

from sde.audio.inputs import AudioInput, FileAudio, MemoryAudio, set_prefix_opener
from sde.audio.io import AudioError, file_info
from sde.sources import remote
from sde.sources.remote import RemoteError, is_url
from sde.sources.tar_index import TarIndex, TarIndexError, TarMember, load_tar_index, member_name, read_member

remote.install_audio_opener()  # rows whose audio is a URL are read with byte ranges

__all__ = ["TAR_MEMBER", "MemberCheck", "TarShards", "audio_input", "check_tar_members", "default_index_dir",
           "job_audio_paths", "job_audio_table", "open_tar_member", "parse_tar_member_path", "shard_number", "tar_member_path",
           "with_tar_members"]

# Members up to this size are read whole into memory (one pread / one request); larger ones are
# read in place, so a 60-minute member costs no more memory than a 60-minute file.
MEMBER_IN_MEMORY_BYTES = 64 << 20
# The same for a tar in an object store, where every byte crosses the network: a 30-minute member
# (57 MB) fetched whole to play 20 s of it cost seconds per utterance view. Above this, the member
# is read in place with byte ranges (the header, then the segment's frames).
REMOTE_MEMBER_IN_MEMORY_BYTES = 4 << 20
# Tars indexed at once at load time (remote ones mostly wait on the network).
INDEX_WORKERS = 8
# Lines reported one by one per shard and kind of problem; the rest are counted in one more line.
LINES_REPORTED = 200
TARRED_FIX = "check the line's shard_id and that --tarred-audio lists the shards in the order of the shard ids"

_T = TypeVar("_T")
_R = TypeVar("_R")

_indexes: dict[str, tuple[Any, TarIndex]] = {}  # location → (identity, index): one build per process
_indexes_lock = threading.Lock()


def default_index_dir() -> Path:
    """Where built tar indexes are kept: beside sde's dataset cache."""
    from sde.caching import default_cache_dir

    return default_cache_dir() / "tar-index"


def _local_identity(location: str) -> tuple[int, int] | None:
    try:
        st = os.stat(location)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def shard_number(value: Any) -> int | None:
    """A row's ``shard_id`` as an int, None when absent or not a whole number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if np.isfinite(number) and number == int(number) else None


class TarShards:
    """The tar shards of one dataset (index = ``shard_id``) and their member indexes."""

    def __init__(self, tars: Sequence[str], cache_dir: str | Path | None = None) -> None:
        self.tars = tuple(tars)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_index_dir()

    def __len__(self) -> int:
        return len(self.tars)

    def tar(self, shard_id: Any) -> str:
        number = shard_number(shard_id)
        if number is None or not 0 <= number < len(self.tars):
            span = f"0..{len(self.tars) - 1}" if self.tars else "none: --tarred-audio names no tar"
            raise AudioError(f"shard_id {shard_id}", f"no such shard (shard ids are {span}); {TARRED_FIX}",
                             "not_found")
        return self.tars[number]

    def index(self, shard_id: Any) -> TarIndex:
        """The member index of a shard: from this process's memory, else built once (a corrupt tar
        keeps the members before the damage). AudioError when the tar cannot be read at all."""
        location = self.tar(shard_id)
        remote_tar = is_url(location)
        identity = None if remote_tar else _local_identity(location)
        with _indexes_lock:
            known = _indexes.get(location)
        if known is not None and (remote_tar or known[0] == identity):
            return known[1]
        try:
            index = load_tar_index(location, cache_dir=self.cache_dir)
        except TarIndexError as e:
            if not e.members:
                reason = "not_found" if "not found" in str(e) or "no such file" in str(e) else "unreadable"
                raise AudioError(location, _without_prefix(str(e), location), reason) from None
            size = identity[0] if identity else max(m.offset + m.size for m in e.members.values())
            index = TarIndex(location, size, dict(e.members), "scan (partial)", notes=[str(e)])
        with _indexes_lock:
            _indexes[location] = (identity, index)
        return index

    def stamp(self, shard_id: Any) -> str:
        """What changes when the shard does (for HTTP validators): a remote tar's ETag as indexed."""
        location = self.tar(shard_id)
        if is_url(location):
            with _indexes_lock:
                known = _indexes.get(location)
            return f"{location}|{known[1].etag if known else None}"
        return f"{location}|{_local_identity(location)}"

    def member(self, shard_id: Any, name: str) -> AudioInput:
        """The member a tarred manifest line names, as sde.audio reads it. A remote tar rewritten
        since it was indexed (its reads name the indexed ETag) is indexed again, once."""
        try:
            return self._member(shard_id, name)
        except _Changed:
            _forget(self.tar(shard_id))
            try:
                return self._member(shard_id, name)
            except _Changed as e:
                raise e.error from None

    def _member(self, shard_id: Any, name: str) -> AudioInput:
        index = self.index(shard_id)
        try:
            found = index.lookup(name)
        except KeyError as e:
            raise AudioError(f"{index.tar}:{name}", _member_missing(index, name, str(e)), "not_found") from None
        shown = f"{index.tar}:{name}"
        remote_tar = is_url(index.tar)
        if found.size > (REMOTE_MEMBER_IN_MEMORY_BYTES if remote_tar else MEMBER_IN_MEMORY_BYTES):
            def opener() -> _Window:
                return _Window(_open_tar(index.tar, ranged=False, size=index.size or None, etag=index.etag), found)

            return FileAudio(shown, opener, found.size, explain=_explainer(index.tar))
        try:
            return MemoryAudio(shown, _read_whole(index.tar, found, index.size, index.etag))
        except (OSError, RemoteError, TarIndexError) as e:
            why, reason = _explainer(index.tar)(e)
            if reason == "changed":
                raise _Changed(AudioError(shown, why, "unreadable")) from None
            raise AudioError(shown, why, reason) from None


class _Changed(Exception):
    """A remote tar rewritten since it was indexed (``error``: what to say if it persists)."""

    def __init__(self, error: AudioError) -> None:
        super().__init__(str(error))
        self.error = error


def _forget(location: str) -> None:
    """Drop a tar's index from this process's memory: the next read indexes it again."""
    with _indexes_lock:
        _indexes.pop(location, None)


def _without_prefix(text: str, location: str) -> str:
    return text[len(location) + 2:] if text.startswith(f"{location}: ") else text


def _member_missing(index: TarIndex, name: str, message: str) -> str:
    damaged = next((n for n in index.notes if "truncated" in n or "corrupt" in n), None)
    if damaged:
        # the note names the damage and already says to re-copy or re-create the shard
        return f"not among the {len(index):,} members before the tar's damage at {_without_prefix(damaged, index.tar)}"
    return _without_prefix(message, index.tar)


def _explainer(tar: str):
    def explain(error: BaseException) -> tuple[str, str]:
        if is_url(tar):
            found = remote.explain(tar, error)
            if found.reason == "changed":
                _forget(tar)  # a member read in place: this read fails, the next one uses the new index
            return _without_prefix(str(found), tar), found.reason
        if isinstance(error, FileNotFoundError):
            return "the tar is gone (file not found); check --tarred-audio", "not_found"
        if isinstance(error, OSError):
            return f"cannot read the tar ({error.strerror or error})", "unreadable"
        return _without_prefix(str(error), tar), "truncated" if "truncated" in str(error) else "unreadable"
    return explain


def _open_tar(location: str, *, ranged: bool, size: int | None = None, etag: str | None = None) -> BinaryIO:
    if is_url(location):  # a known size spares a HEAD request; the ETag pins the version indexed
        return remote.open_file(location, ranged=ranged, size=size, etag=etag)
    return open(location, "rb")  # noqa: SIM115 - the window closes it


def _read_whole(location: str, member: TarMember, tar_size: int, etag: str | None = None) -> bytes:
    """The member's bytes: one pread of a local tar, one ranged request of a remote one."""
    if not is_url(location):
        fd = os.open(location, os.O_RDONLY)
        try:
            data = os.pread(fd, member.size, member.offset)
        finally:
            os.close(fd)
        if len(data) != member.size:
            raise TarIndexError(f"{location}: truncated: member {member.name!r} needs {member.size:,} bytes at byte "
                                f"{member.offset:,} but the file ends first; re-copy the shard")
        return data
    with remote.reading(location):
        with remote.open_file(location, ranged=True, size=tar_size or None, etag=etag) as f:
            return read_member(f, member, shown=location)


class _Window(io.RawIOBase):
    """The member's bytes inside the tar as a file of their own (seek, read, tell)."""

    def __init__(self, raw: BinaryIO, member: TarMember) -> None:
        super().__init__()
        self._raw = raw
        self._start = member.offset
        self._size = member.size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        left = max(0, self._size - self._pos)
        count = left if size is None or size < 0 else min(size, left)
        if count == 0:
            return b""
        self._raw.seek(self._start + self._pos)
        data = self._raw.read(count)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def audio_input(audio_path: Any, audio_filepath: Any = None, shard_id: Any = None,
                shards: TarShards | None = None) -> str | AudioInput:
    """What sde.audio reads for one row: a tar member (when the dataset has tar shards and the row
    a shard id), a remote file (a URL), else the local path. AudioError when it cannot be found."""
    if shards is not None and len(shards) and shard_number(shard_id) is not None:
        return shards.member(shard_id, str(audio_filepath))
    if shards is not None and len(shards) and shard_id is not None and not _is_missing(shard_id):
        shards.tar(shard_id)  # raises: names the bad value
    path = str(audio_path)
    return remote.audio_file(path) if is_url(path) else path


# A tar member named by one string (for the audio jobs' worker processes, transcription batches
# and Ray tasks, which take plain picklable paths): the prefix, then JSON [tar, member].
TAR_MEMBER = "sde-tar-member:"


def tar_member_path(tar: str, member: str) -> str:
    """The one-string name of ``member`` in ``tar``; sde.audio opens it (see open_tar_member)."""
    return TAR_MEMBER + json.dumps([tar, member], ensure_ascii=False)


def parse_tar_member_path(path: str) -> tuple[str, str] | None:
    if not path.startswith(TAR_MEMBER):
        return None
    tar, member = json.loads(path[len(TAR_MEMBER):])
    return str(tar), str(member)


def open_tar_member(path: str) -> AudioInput:
    """What sde.audio reads for a :func:`tar_member_path` (member indexes are kept per process)."""
    tar, member = parse_tar_member_path(path) or ("", "")
    return TarShards((tar,)).member(0, member)


set_prefix_opener(TAR_MEMBER, open_tar_member)


def job_audio_paths(table: pd.DataFrame, tars: Sequence[str]) -> list[str]:
    """Each row's audio as one string for a job that reads many (audio metrics, speech activity,
    transcription): its file, or its member of a tar (a :func:`tar_member_path`)."""
    if not tars or "shard_id" not in table.columns:
        return table["audio_path"].astype(object).tolist()
    return _per_row_member(table, tars, tar_member_path)


def _per_row_member(table: pd.DataFrame, tars: Sequence[str], named: Callable[[str, str], str]) -> list:
    """Each row's ``audio_path``, or ``named(tar, member)`` for a row whose shard_id names one of ``tars``."""
    numbers = [shard_number(k) for k in table["shard_id"].tolist()]
    return [named(tars[k], str(name)) if k is not None and 0 <= k < len(tars) else path
            for path, k, name in zip(table["audio_path"].astype(object).tolist(), numbers,
                                     table["audio_filepath"].tolist())]


def job_audio_table(table: pd.DataFrame, tars: Sequence[str]) -> pd.DataFrame:
    """``table`` for a job that reads its audio by ``audio_path``: in a tarred dataset, rows name
    their tar member (:func:`job_audio_paths`); otherwise the table as it is."""
    if not tars or "shard_id" not in table.columns or "audio_path" not in table.columns:
        return table
    return table.assign(audio_path=job_audio_paths(table, tars))


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------- load-time check


@dataclass
class MemberCheck:
    """What :func:`check_tar_members` found."""

    # (manifest file, line, message) for the Problems page: lines whose member cannot be found
    problems: list[tuple[str, int, str]] = field(default_factory=list)
    # notes about whole tars: missing, unreadable, corrupt after N members, a wrong index file
    notes: list[str] = field(default_factory=list)
    # per row of the table: its member is in its tar (the `audio_exists` of tarred datasets)
    present: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # per row: seconds read from the member's header where the line has no duration (else NaN)
    header_durations: np.ndarray = field(default_factory=lambda: np.zeros(0))
    indexes: dict[int, TarIndex] = field(default_factory=dict)


def check_tar_members(table: pd.DataFrame, shards: TarShards | Sequence[str], *, manifest: str = "manifest",
                      cache_dir: str | Path | None = None, workers: int = INDEX_WORKERS) -> MemberCheck:
    """Index every tar the table's ``shard_id`` values name (in parallel) and check each line:
    a valid shard id, a tar that can be read, a member that the tar holds (NeMo's ``-sub`` names
    included). Problems name the manifest (the ``source`` column when several) and the line."""
    if not isinstance(shards, TarShards):
        shards = TarShards(shards, cache_dir)
    n = len(table)
    check = MemberCheck(present=np.zeros(n, dtype=bool))
    if n == 0 or not len(shards):
        return check
    raw_ids = table["shard_id"] if "shard_id" in table.columns else pd.Series([None] * n, index=table.index)
    ids = pd.to_numeric(raw_ids, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    whole = np.isfinite(ids) & (ids == np.floor(np.where(np.isfinite(ids), ids, 0)))
    valid = whole & (ids >= 0) & (ids < len(shards))
    lines = table["line"].to_numpy() if "line" in table.columns else np.arange(1, n + 1)
    files = table["source"].astype(str).to_numpy() if "source" in table.columns else np.full(n, manifest, object)
    reporter = _Reporter(check, files, lines)
    bad = np.flatnonzero(~valid)
    reporter.lines(bad, "bad shard_id", lambda row: _bad_shard_message(raw_ids.iat[row], len(shards)))

    used = sorted({int(x) for x in ids[valid]})
    names = table["audio_filepath"].astype(str).to_numpy() if "audio_filepath" in table.columns \
        else np.full(n, "", object)
    # One load: a store's answer about a file or folder (or its silence) holds for every tar of it.
    with remote.silence_is_final():
        _ask_remote_tars_at_once([shards.tars[k] for k in used])
        outcomes = dict(zip(used, _on_daemon_threads(lambda s: _index_or_error(shards, s), used, workers)))
        _check_members(check, table, shards, ids, valid, names, outcomes, reporter)
    reporter.finish()
    return check


def _ask_remote_tars_at_once(tars: Sequence[str]) -> None:
    """Size and ETag of the remote tars of a folder holding remote.LIST_WHEN_FILES or more, by one
    listing: each tar's index then starts without a HEAD request of its own, and its index files
    are found in the same listing. A failure is said by each tar's index (a folder that did not
    answer: at once, remote.silence_is_final); fewer tars ask for themselves, in parallel."""
    remote.details([tar for tar in tars if is_url(tar)], one_by_one=False)


def _check_members(check: MemberCheck, table: pd.DataFrame, shards: TarShards, ids: np.ndarray, valid: np.ndarray,
                   names: np.ndarray, outcomes: dict[int, TarIndex | AudioError], reporter: "_Reporter") -> None:
    for shard, outcome in outcomes.items():
        rows = np.flatnonzero(valid & (ids == shard))
        tar = shards.tars[shard]
        if isinstance(outcome, AudioError):
            check.notes.append(f"{tar}: {outcome.why} ({len(rows):,} lines use this shard)")
            reporter.lines(rows, f"tar {shard}", lambda row, e=outcome, k=shard: f"shard {k}: {e}")
            continue
        check.indexes[shard] = outcome
        check.notes.extend(outcome.notes)
        held = _held(outcome, names[rows])
        check.present[rows[held]] = True
        missing = rows[~held]
        reporter.lines(missing, f"member {shard}",
                       lambda row, index=outcome: f"{index.tar}: {_member_missing(index, names[row], _absent(index, names[row]))}")
    _durations_from_headers(check, table, shards, ids, names, reporter)


def _durations_from_headers(check: MemberCheck, table: pd.DataFrame, shards: TarShards, ids: np.ndarray,
                            names: np.ndarray, reporter: "_Reporter") -> None:
    """Lines without a duration: the member's header (only its first bytes are read), minus the offset."""
    n = len(table)
    check.header_durations = np.full(n, np.nan)
    if "duration" not in table.columns:
        duration = np.full(n, np.nan)
    else:
        duration = pd.to_numeric(table["duration"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    rows = np.flatnonzero(check.present & ~np.isfinite(duration))
    if not len(rows):
        return
    offsets = pd.to_numeric(table["offset"], errors="coerce").fillna(0.0).to_numpy(dtype=float) \
        if "offset" in table.columns else np.zeros(n)

    def header(row: int) -> float | AudioError:
        try:
            return float(file_info(shards.member(int(ids[row]), str(names[row])))["duration"])
        except AudioError as e:
            return e

    found = _on_daemon_threads(header, rows.tolist(), INDEX_WORKERS)
    failed = []
    for row, seconds in zip(rows.tolist(), found):
        if isinstance(seconds, AudioError):
            failed.append((row, f'missing field "duration" and the member\'s header cannot be read ({seconds}); '
                                'add "duration" to the line'))
        elif offsets[row] > seconds:
            failed.append((row, f'missing field "duration" and "offset" {offsets[row]:g} is beyond the end of the '
                                f"member ({seconds:.3f} s); fix the offset, or add \"duration\""))
        else:
            check.header_durations[row] = seconds - offsets[row]
    reasons = dict(failed)
    reporter.lines(np.array([row for row, _ in failed], dtype=int), "duration", lambda row: reasons[row])


def with_tar_members(dataset: Any, problem: Callable[[str, int, str], Any], *, cache_dir: str | Path | None = None,
                     status: Callable[[str], None] | None = None) -> Any:
    """A copy of a tarred dataset (a dataclass with ``utterances``, ``warnings`` and ``tar_shards``)
    with :func:`check_tar_members` applied: ``audio_exists`` says whether each line's member is in
    its tar, durations missing from lines are read from the member headers (``duration_source`` =
    "header"), one ``problem(path, line, reason)`` among the warnings per line whose audio is not
    found (the line is kept, as a line whose audio file is missing is: counted among the skipped
    lines, it was still exported), notes about whole tars to ``status``.
    Not cached with the tables (the tars may change); the indexes are, so a restart is cheap."""
    table = dataset.utterances
    check = check_tar_members(table, dataset.tar_shards, manifest=str(getattr(dataset, "name", "manifest")),
                              cache_dir=cache_dir)
    for note in check.notes:
        if status is not None:
            status(f"warning: {note}")
    out = table.copy(deep=False)
    exists = pd.Series(pd.array(check.present, dtype="boolean"), index=table.index, name="audio_exists")
    if "audio_exists" in out.columns:
        out = out.drop(columns=["audio_exists"])
    if "audio_path" in out.columns and "shard_id" in out.columns:
        out["audio_path"] = _member_locations(out, dataset.tar_shards)
    at = int(out.columns.get_loc("audio_path")) + 1 if "audio_path" in out.columns else len(out.columns)
    out.insert(at, "audio_exists", exists)
    from_header = np.isfinite(check.header_durations)
    if from_header.any():
        duration = pd.to_numeric(out["duration"], errors="coerce") if "duration" in out.columns \
            else pd.Series(np.nan, index=out.index)
        out["duration"] = np.where(from_header, check.header_durations, duration.to_numpy(dtype=float, na_value=np.nan))
        out["duration_source"] = np.where(from_header, "header", out.get("duration_source", "manifest"))
        _rates_from_header(out, from_header)
    warnings = [*dataset.warnings, *(problem(path, line, reason) for path, line, reason in check.problems)]
    return dataclasses.replace(dataset, utterances=out, warnings=warnings, _queries={}, _lock=threading.Lock())


def _rates_from_header(table: pd.DataFrame, rows: np.ndarray) -> None:
    """Word and character rates of the rows whose duration now comes from the member's header
    (they were built without a duration: NaN)."""
    duration = table["duration"].to_numpy(dtype="float64", na_value=np.nan)
    for rate, count in (("word_rate", "num_words"), ("char_rate", "num_chars")):
        if rate in table.columns and count in table.columns:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                measured = np.where(duration > 0, table[count].to_numpy(dtype="float64", na_value=np.nan) / duration,
                                    np.nan)
            table[rate] = np.where(rows, measured, table[rate].to_numpy(dtype="float64", na_value=np.nan))


def _member_locations(table: pd.DataFrame, tars: Sequence[str]) -> pd.Series:
    """``audio_path`` of a tarred dataset as users read it: ``<tar>:<member>`` (where the audio
    is; the manifest's folder joined to a member name names no file)."""
    paths = _per_row_member(table, tars, lambda tar, member: f"{tar}:{member}")
    return pd.Series(pd.array(paths, dtype=pd.StringDtype("pyarrow")), index=table.index, name="audio_path")


def _absent(index: TarIndex, name: str) -> str:
    return (f"no member {name!r} (the tar holds {len(index):,} members); {TARRED_FIX}")


def _held(index: TarIndex, names: np.ndarray) -> np.ndarray:
    """Which names the tar holds: exact names first, then NeMo's ``x-sub<k>.wav`` → ``x.wav``."""
    members = index.members
    exact = np.fromiter((name in members for name in names), dtype=bool, count=len(names))
    if exact.all():
        return exact
    for k in np.flatnonzero(~exact):
        exact[k] = member_name(str(names[k])) in members
    return exact


def _bad_shard_message(value: Any, count: int) -> str:
    if _is_missing(value):
        return ('missing field "shard_id" (a tarred manifest line names its shard); add it, or leave out '
                "--tarred-audio for a manifest of plain files")
    shown = value.item() if isinstance(value, np.generic) else value
    if isinstance(shown, float) and shown.is_integer():
        shown = int(shown)  # the column is float where another line lacks a shard_id: 7.0 was 7 in the file
    return f"shard_id {shown!r} is not one of 0..{count - 1} (--tarred-audio names {count:,} tars); {TARRED_FIX}"


def _on_daemon_threads(work: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    """``[work(item) for item in items]``, run on up to ``workers`` daemon threads. A thread pool's
    threads are joined when Python exits: Ctrl-C or SIGTERM while a tar's read was stalled waited
    for its attempts to time out (2 x SDE_REMOTE_TIMEOUT: ~39 s at the default). Daemon threads are
    left behind; what they write is written whole or not at all (a tar index: a temporary file
    renamed), so a stop leaves nothing half-written. The first exception of ``work`` is raised."""
    results: list[Any] = [None] * len(items)
    failures: list[BaseException] = []
    pending = iter(range(len(items)))
    lock = threading.Lock()

    def run() -> None:
        while not failures:
            with lock:
                k = next(pending, None)
            if k is None:
                return
            try:
                results[k] = work(items[k])
            except BaseException as e:  # noqa: BLE001 - raised in the calling thread
                failures.append(e)

    threads = [threading.Thread(target=run, name="sde-tar-index", daemon=True)
               for _ in range(max(1, min(workers, len(items))))]
    for thread in threads:
        thread.start()
    for thread in threads:  # a lock's wait: Ctrl-C and SIGTERM's handler interrupt it
        thread.join()
    if failures:
        raise failures[0]
    return results


def _index_or_error(shards: TarShards, shard: int) -> TarIndex | AudioError:
    try:
        return shards.index(shard)
    except AudioError as e:
        return e


class _Reporter:
    """Problems line by line, at most LINES_REPORTED per shard and kind, then one line counting the rest."""

    def __init__(self, check: MemberCheck, files: np.ndarray, lines: np.ndarray) -> None:
        self.check = check
        self.files = files
        self.line_numbers = lines
        self.more: dict[str, tuple[str, int, int]] = {}

    def lines(self, rows: np.ndarray, kind: str, message) -> None:
        for row in rows[:LINES_REPORTED].tolist():
            self.check.problems.append((str(self.files[row]), int(self.line_numbers[row]), message(row)))
        if len(rows) > LINES_REPORTED:
            last = int(rows[LINES_REPORTED])
            self.more[kind] = (str(self.files[last]), int(self.line_numbers[last]), len(rows) - LINES_REPORTED)

    def finish(self) -> None:
        for kind, (file, line, count) in self.more.items():
            self.check.problems.append((file, line, f"... and {count:,} more lines like the above ({kind})"))
        self.check.problems.sort(key=lambda p: (p[0], p[1]))
