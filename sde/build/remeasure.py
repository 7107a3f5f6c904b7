"""Audio measures kept in a cache entry stay true to the audio files they were measured from.

With ``--estimate-audio-metrics`` or ``--vad`` the dataset cache entry holds the measures (sample
rate, clipping, speech activity, audio hashes, …), keyed by the manifest, which a re-encoded,
trimmed or repaired audio file leaves as it is. So the entry also keeps a record of each distinct
file's state when it was measured: a digest of its size, modification time, inode and change time
(sde.audio_presence.file_states: so a file replaced by one of the same size with its times put back
counts as changed), taken before measuring and kept beside the entry (a kept value: deleted with
it). A warm start takes the files' states again, in the pass the presence check would make anyway
(it then reads them: sde.audio_presence.remember), and re-measures the utterances of the files
whose state changed (a file gone counts: it is then measured as missing; one that came back too;
and one that became something else, a named pipe: measured as unreadable, never opened), and only
those (the states answer as the presence check does: a file stored under its UTF-8 name under a
Latin-1 locale is found, as the reader finds it): then the entry is stored again with the new
measures and record, so that the next start finds nothing to do. What moves only the change time counts too: after a ``chmod -R``,
``chown -R`` or ``cp -a`` of the audio folder the next start measures its files again, at the cost
of the first build's measuring (see sde.audio_presence).

A server need not wait for that check: asked to (``load_dataset(..., measure_checks=[])``), the load
leaves it as a :class:`MeasureCheck`, which the server runs once it answers (sde.cli: from 100,000
utterances on, where the check takes seconds), serving the stored measures meanwhile.

Tarred audio (NeMo tarred datasets, Lhotse Shar) is checked tar by tar: a line whose member is in
a tar counts that tar as its file, so a rewritten shard has the utterances of its members measured
again (the manifest, hence the entry's key, stays the same when a shard is re-packed).

What is not checked keeps its measures: URLs (s3://…: a request per file is not a stat; their
measures are as old as the entry), files the time budget did not reach (said in one line), and
the files of datasets with more than :data:`MAX_RECORDED_FILES` files (too many to keep a record
of). After changing those, ``--no-cache`` once measures everything again.

An entry whose record is from an sde that kept only sizes and modification times
(:data:`RECORD_SIZE_AND_TIME`) has all its files measured again once: that record cannot vouch for
a file replaced by one of the same size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from sde.audio_presence import (DEFAULT_BUDGET_S, NO_FILE, NOT_CHECKED, FileStates, distinct_paths, file_states,
                                not_files, remember)
from sde.audio_quality import has_audio_metrics, plural, with_measured_audio
from sde.cache import CacheUnusable, DatasetCache
from sde.cache.building import BuildLock, lock_build
from sde.cache.kept import KEPT_VALUE_BYTES
from sde.dataset import Dataset
from sde.sources.members import shard_number

#: The kept value holding the record (bump the version when its layout or meaning changes).
RECORD = "audio-files/v2"
#: The record of earlier sde versions: digests of size and modification time only.
RECORD_SIZE_AND_TIME = "audio-files/v1"
#: The record takes eight bytes a file, and a kept value at most KEPT_VALUE_BYTES.
MAX_RECORDED_FILES = (KEPT_VALUE_BYTES - 4096) // 8
#: The states taken before a build measures its audio: measuring reads every file anyway, so a slow
#: mount gets more time here than at a warm start, and the record is complete.
RECORD_BUDGET_S = 300.0
#: Fewer utterances to measure again than this get no progress bar: the one line says it all.
BAR_ROWS = 500
#: From this many files on, a warm start says it is checking them before it does: at ~5 µs a stat,
#: a million files hold the start for seconds, which would otherwise pass unexplained.
SAY_CHECKING_FILES = 100_000
#: Columns of the measures each kind of entry holds (sde.audio / sde.quality.segments).
_VAD_COLUMNS = ("speech_duration", "audio_hash", "lufs")


def carries_measures(dataset: Dataset) -> bool:
    """Whether the dataset holds measures of its audio files that may go stale."""
    table = dataset.utterances
    return "audio_path" in table.columns and (has_audio_metrics(table) or _has_vad_measures(table))


def _has_vad_measures(table: pd.DataFrame) -> bool:
    return all(c in table.columns for c in _VAD_COLUMNS)


def states_before_measuring(dataset: Dataset, *, budget_s: float = RECORD_BUDGET_S) -> FileStates | None:
    """The states of the dataset's audio files, taken before they are measured (what
    :func:`keep_record` keeps once the entry is stored); None where no record is kept."""
    table = dataset.utterances
    if "audio_path" not in table.columns or len(table) == 0:
        return None
    names, codes = distinct_paths(audio_files(dataset))
    if len(names) > MAX_RECORDED_FILES:
        return None
    return file_states(names, codes, budget_s=budget_s)


def audio_files(dataset: Dataset) -> pd.Series:
    """Each utterance's file as the record knows it: its audio file, or the tar holding its member
    (a row of a tarred dataset whose ``shard_id`` names one of the dataset's tars)."""
    table = dataset.utterances
    paths = table["audio_path"]
    tars = dataset.tar_shards
    if not tars or "shard_id" not in table.columns:
        return paths
    codes, shards = pd.factorize(table["shard_id"], use_na_sentinel=True)
    numbers = np.array([shard_number(s) for s in shards] + [None], dtype=object)  # the last: NA's code -1
    known = np.array([n is not None and 0 <= n < len(tars) for n in numbers], dtype=bool)
    in_tar = known[codes]
    numbers = numbers[codes]
    files = paths.astype(object).to_numpy(copy=True)
    files[in_tar] = np.asarray(tars, dtype=object)[numbers[in_tar].astype(np.int64)]
    return pd.Series(files, index=table.index, name="audio_path")


def keep_record(dataset: Dataset, states: FileStates | None) -> None:
    """Keep ``states`` as the record of the entry the dataset was just stored as (or read from)."""
    if states is not None:
        _keep(dataset, states.digests)


def _keep(dataset: Dataset, digests: np.ndarray) -> None:
    keeper = dataset.caches.keeper(dataset.generation)
    if keeper is not None:
        keeper.keep(RECORD, {"files": len(digests), "digests": np.ascontiguousarray(digests, dtype=np.uint64)})


def _recorded(dataset: Dataset, files: int) -> np.ndarray | None:
    """The entry's record of its ``files`` files. Where only an earlier sde's record is kept
    (:data:`RECORD_SIZE_AND_TIME`): every file not checked then (so changed, :func:`_changed`), as
    that record cannot tell a same-size replacement."""
    digests = _kept_digests(dataset, files, RECORD)
    if digests is None and _kept_digests(dataset, files, RECORD_SIZE_AND_TIME) is not None:
        return np.full(files, NOT_CHECKED, dtype=np.uint64)
    return digests


def _kept_digests(dataset: Dataset, files: int, name: str) -> np.ndarray | None:
    keeper = dataset.caches.keeper(dataset.generation)
    found, value = keeper.recall(name) if keeper is not None else (False, None)
    if not (found and isinstance(value, dict) and value.get("files") == files):
        return None
    digests = value.get("digests")
    return digests if isinstance(digests, np.ndarray) and digests.dtype == np.uint64 and len(digests) == files else None


def _changed(recorded: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Files whose state now differs from their record. Not checked now: unchanged (they keep their
    measures). Not checked then (the budget ran out while recording): changed, as nothing vouches
    for their measures."""
    return (now != NOT_CHECKED) & (now != recorded)


@dataclass(frozen=True)
class MeasureCheck:
    """The check of the measures of entry ``key`` of the cache in ``directory`` against their audio
    files (:func:`refreshed`), left by the load for later (see the module docstring)."""

    directory: Path
    key: str
    budget_s: float = DEFAULT_BUDGET_S

    def run(self, dataset: Dataset, *, say: Callable[[str], None]) -> Dataset:
        """``dataset`` (read from the entry, and served meanwhile) brought up to date: see
        :func:`refreshed`. Where files changed, the values kept beside the entry stop being kept
        from ``dataset`` before the entry is stored anew: computed from its old measures, they
        would serve the next start."""
        try:
            cache = DatasetCache(self.directory, warn=say)
        except CacheUnusable as e:  # removed or damaged since the load: the measures stay as read
            say(f"note: audio measures: not checked for changed audio files ({e})")
            return dataset
        try:
            return refreshed(cache, self.key, dataset, say=say, budget_s=self.budget_s, served=True)
        finally:
            cache.close()


def refreshed(cache: DatasetCache, key: str, dataset: Dataset, *, lock: BuildLock | None = None,
              say: Callable[[str], None], progress: bool = False, budget_s: float = DEFAULT_BUDGET_S,
              served: bool = False) -> Dataset:
    """``dataset``, read from entry ``key`` of ``cache``, with the measures of the files changed
    since they were measured taken again, and stored again (under the entry's build lock: ``lock``
    when the caller holds it); itself when nothing changed. Says one line where files changed, the
    check was incomplete, or the entry had no record. ``served``: ``dataset`` is being served (by
    :class:`MeasureCheck`): it keeps nothing beside the entry once that is to be stored anew."""
    if not carries_measures(dataset) or len(dataset.utterances) == 0:
        return dataset
    serving, start = dataset, time.monotonic()
    names, codes = distinct_paths(audio_files(dataset))
    files = len(names)
    if files > MAX_RECORDED_FILES:
        say(f"note: audio measures: {files:,} audio files, too many to keep a record of; their measures are "
            "not checked for files changed since (after changing audio files, run once with --no-cache)")
        return dataset
    if files >= SAY_CHECKING_FILES and not served:  # a server has said it checks them while serving
        say(f"audio measures: checking {files:,} audio files for changes since they were measured "
            f"(at most {budget_s:g} s)")
    now = file_states(names, codes, budget_s=budget_s)
    if now.timed_out:
        local = files - _uncheckable(now)
        say(f"note: audio measures: checked {local - now.unchecked:,} of {local:,} audio files for changes in "
            f"{budget_s:g} s (the time allowed); the other {now.unchecked:,} keep their measures unchecked")
    recorded = _recorded(dataset, files)
    if recorded is None:
        _keep(dataset, now.digests)
        _for_presence(dataset, now)
        say(f"note: audio measures: no record of the state of the {plural(files, 'audio file')} when they were "
            "measured; recorded it now, so that changes from now on are noticed")
        return dataset
    changed = _changed(recorded, now.digests)
    if not changed.any():
        return _unchanged(dataset, now, say=say if served else None, start=start)
    if (recorded == NOT_CHECKED).all() and _kept_digests(dataset, files, RECORD_SIZE_AND_TIME) is not None:
        say(f"note: audio measures: the record of the {plural(files, 'audio file')} is from an earlier sde, blind "
            "to a file replaced by one of the same size with its times put back; measuring them again, once")
    own_lock = lock is None and not cache.read_only
    held = lock_build(cache.directory, key, say) if own_lock else lock
    try:
        if served:  # the entry is stored anew from other tables (here, or by another process meanwhile)
            serving.caches.stop_keeping()
        if own_lock:  # another process may have refreshed the entry meanwhile: compare with its record
            again = cache.get(key)
            record = _recorded(again, files) if again is not None else None
            if again is not None and record is not None:
                dataset, recorded, changed = again, record, _changed(record, now.digests)
                if not changed.any():  # measured again by the other process
                    return _unchanged(dataset, now, say=say if served else None, start=start)
        return _remeasured(cache, key, dataset, now, recorded, changed, say=say, progress=progress)
    finally:
        if own_lock and held is not None:
            held.release(built=True)


def _unchanged(dataset: Dataset, now: FileStates, *, say: Callable[[str], None] | None, start: float) -> Dataset:
    """``dataset`` as it is, its files' states kept for the presence check; ``say``: a server that
    said it was checking the files says the check's end too."""
    _for_presence(dataset, now)
    if say is not None:
        say(f"audio measures: none of the {plural(_files(now), _noun(dataset))} changed since measured "
            f"(checked in {time.monotonic() - start:.1f} s)")
    return dataset


def _for_presence(dataset: Dataset, now: FileStates) -> None:
    """Hand the states just taken to the presence check that follows, which a tarred dataset's
    files (its tars) are not for: its members are checked in their tars' indexes."""
    if not dataset.tar_shards:
        remember(dataset, now)


def _uncheckable(states: FileStates) -> int:
    """Files never checked (URLs, empty paths), as opposed to those the budget left."""
    return int((states.digests == NOT_CHECKED).sum()) - states.unchecked


def _remeasured(cache: DatasetCache, key: str, dataset: Dataset, now: FileStates, recorded: np.ndarray,
                changed: np.ndarray, *, say: Callable[[str], None], progress: bool) -> Dataset:
    start = time.monotonic()
    rows = np.flatnonzero(np.append(changed, False)[now.codes])  # -1 (no path) picks the False
    table = dataset.utterances
    out = dataset
    if has_audio_metrics(table):
        out = with_measured_audio(out, progress=progress and len(rows) >= BAR_ROWS, rows=rows)
    if _has_vad_measures(table):
        from sde.quality.apply import with_vad  # torch and Silero only where the entry holds VAD measures

        out = with_vad(out, progress=progress and len(rows) >= BAR_ROWS, rows=rows)
    record = np.where(now.digests == NOT_CHECKED, recorded, now.digests)
    gone = int((changed & (now.digests == NO_FILE)).sum())
    # there but no regular file (a named pipe): measured as unreadable, so not said as gone
    unreadable = [kind for i, kind in not_files(now.digests).items() if changed[i]]
    stored = out
    # another process serving the entry keeps it (sde.cache.in_use): stored over, its files would go
    kept_elsewhere = False
    if not cache.read_only:
        inputs = cache.input_record(key)  # the same input files: their record stays
        kept_elsewhere = not cache.delete(key) and key in cache.kept_in_use
    if not cache.read_only and not kept_elsewhere:
        # the whole entry again: what was kept beside it (the pages the warm-up lays out, the audio
        # summary) was computed from the old measures, and goes with it
        cache.put(key, out)
        cache.keep_input_record(key, inputs if isinstance(inputs, dict) else None)
        _keep(out, record)
        read_back = cache.get(key)  # its tables from the new entry's files (the old ones are deleted)
        stored = read_back if read_back is not None else out
    _for_presence(stored, now)
    seconds = time.monotonic() - start
    said = (f"audio measures: {int(changed.sum()):,} of {plural(_files(now), _noun(dataset))} changed since measured"
            f"{_gone_or_unreadable(gone, unreadable)}; re-measured their {plural(len(rows), 'utterance')} in "
            f"{seconds:.1f} s")
    if cache.read_only:
        said += " (the cache folder is read-only: again at each start)"
    elif kept_elsewhere:
        said += " (not stored: another sde process is using the cached build; again at the next start)"
    say(said)
    return stored


def _gone_or_unreadable(gone: int, unreadable: list[str]) -> str:
    """What the line says after the count: " (1 gone, 2 unreadable: a named pipe, a directory)", or nothing."""
    kinds = ", ".join(dict.fromkeys(unreadable))
    said = ([f"{gone:,} gone"] if gone else []) + ([f"{len(unreadable):,} unreadable: {kinds}"] if unreadable else [])
    return f" ({', '.join(said)})" if said else ""


def _noun(dataset: Dataset) -> str:
    """What a tarred dataset's record holds is its tars."""
    return "audio tar" if dataset.tar_shards else "audio file"


def _files(states: FileStates) -> int:
    """Distinct audio files, an empty path not counted."""
    return len(states.names) - int(pc.sum(pc.equal(states.names, "")).as_py() or 0)
