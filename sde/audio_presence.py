"""Which audio files exist, checked at load time: the `audio_exists` column and the summary's
`audio_missing`, so a missing file shows up on the Problems page and in a filter
(`{audio_exists} = false`) instead of only when its utterance is opened.

One `stat` per distinct file (segments of one long recording share it), spread over a thread pool:
stat is I/O-bound, and on a network file system each call waits on a round trip, so threads
overlap them. The check has a time budget: a slow or hung mount must not hold the server's start
hostage, so files not reached in time stay unchecked (<NA>), and URLs (s3://…) are never
checked (a request per file is not a stat).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import stat
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

COLUMN = "audio_exists"
DEFAULT_WORKERS = 32
DEFAULT_BUDGET_S = 10.0
# Paths handed to one pool task: small enough that the budget is checked often, large enough that
# the pool's bookkeeping stays small next to the stats themselves.
_CHUNK = 256


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


def _is_url(path: str) -> bool:
    head, sep, _ = path.partition("://")
    return bool(sep) and head.isascii() and head.replace("+", "").replace(".", "").replace("-", "").isalnum()


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # missing, no permission on a parent, NUL in the name
        return False


def check_paths(paths: Sequence[str], *, workers: int = DEFAULT_WORKERS, budget_s: float = DEFAULT_BUDGET_S,
                is_file: Callable[[str], bool] | None = None) -> AudioPresence:
    """Stat every distinct local path of `paths`, in parallel, for at most about `budget_s`
    (`is_file`: how one path is checked; a regular file by default)."""
    is_file = is_file or _is_file
    start = time.monotonic()
    distinct = list(dict.fromkeys(p for p in paths if isinstance(p, str) and p))
    exists: dict[str, bool | None] = {p: None for p in distinct}
    local = [p for p in distinct if not _is_url(p)]
    if not local:
        return AudioPresence(exists, 0.0, False)
    chunks: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
    for i in range(0, len(local), _CHUNK):
        chunks.put(local[i:i + _CHUNK])
    found: dict[str, bool] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                chunk = chunks.get_nowait()
            except queue.Empty:
                return
            for p in chunk:
                answer = is_file(p)
                with lock:  # each answer as it comes: on a slow mount, every stat done counts
                    if stop.is_set():
                        return
                    found[p] = answer

    # Daemon threads, not a pool: a stat stuck on a hung mount must hold up neither the start
    # (the budget) nor the exit of the process (a pool's workers are joined at exit).
    threads = [threading.Thread(target=work, name="sde-stat", daemon=True)
               for _ in range(max(1, min(workers, -(-len(local) // _CHUNK))))]
    for t in threads:
        t.start()
    deadline = start + budget_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    with lock:
        stop.set()
        exists.update(found)
    timed_out = len(found) < len(local)
    return AudioPresence(exists, time.monotonic() - start, timed_out)


def distinct_paths(paths: pd.Series) -> tuple[list[str], np.ndarray]:
    """(each distinct path once, each row's index into that list, -1 where the row has none):
    computed by Arrow, so 10M rows never become 10M Python strings."""
    values = pa.chunked_array([pa.array(paths.array, from_pandas=True)]) if not isinstance(
        getattr(paths.array, "_pa_array", None), pa.ChunkedArray) else paths.array._pa_array
    encoded = pc.dictionary_encode(values).combine_chunks()
    codes = pc.fill_null(encoded.indices.cast(pa.int64()), -1).to_numpy(zero_copy_only=False)
    return encoded.dictionary.to_pylist(), codes


def presence_column(paths: pd.Series, presence: AudioPresence, distinct: tuple[list[str], np.ndarray] | None = None,
                    ) -> pd.Series:
    """`audio_exists` for each row of `paths` (nullable boolean: <NA> where unchecked)."""
    names, codes = distinct if distinct is not None else distinct_paths(paths)
    # per distinct path: 1 exists, 0 missing, -1 unchecked; one more entry for rows without a path
    answers = np.array([_code(presence.exists.get(p) if isinstance(p, str) else None) for p in names] + [-1],
                       dtype=np.int8)
    per_row = answers[codes]  # -1 (no path) picks the last entry
    values = pd.arrays.BooleanArray(per_row == 1, per_row < 0)
    return pd.Series(values, index=paths.index, name=COLUMN)


def _code(answer: bool | None) -> int:
    return -1 if answer is None else int(bool(answer))


def with_audio_presence(dataset: "Dataset", *, workers: int = DEFAULT_WORKERS, budget_s: float = DEFAULT_BUDGET_S,
                        status: Callable[[str], None] | None = None) -> "Dataset":
    """A copy of `dataset` with the `audio_exists` column (right after `audio_path`).

    A copy, not an in-place change: the cache may be writing the loaded dataset from another
    thread, and presence is a fact about the disk now, so it is never cached with the tables."""
    table = dataset.utterances
    if "audio_path" not in table.columns or len(table) == 0:
        return dataset
    distinct = distinct_paths(table["audio_path"])
    presence = check_paths(distinct[0], workers=workers, budget_s=budget_s)
    column = presence_column(table["audio_path"], presence, distinct)
    if status is not None:
        distinct = len(presence.exists)
        if presence.timed_out:
            status(f"note: checked {presence.checked:,} of {distinct:,} audio files in {budget_s:g} s; "
                   "the rest are left unchecked (audio_exists is empty for them)")
        if presence.missing:
            rows = int((~column.fillna(True)).sum())
            status(f"note: {presence.missing:,} of {distinct:,} audio files are missing ({rows:,} utterances); "
                   "listed on the Problems page, filter {audio_exists} = false")
    out = table.copy(deep=False)
    if COLUMN in out.columns:
        out = out.drop(columns=[COLUMN])
    out.insert(int(out.columns.get_loc("audio_path")) + 1, COLUMN, column)
    return dataclasses.replace(dataset, utterances=out, _queries={}, _lock=threading.Lock())


def missing_rows(utterances: pd.DataFrame) -> np.ndarray:
    """Row positions whose audio file is known to be missing (empty without the column)."""
    if COLUMN not in utterances.columns:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(~utterances[COLUMN].fillna(True).to_numpy(dtype=bool))


def audio_missing_count(utterances: pd.DataFrame) -> int | None:
    """Utterances whose audio file is missing; None when presence was not checked."""
    if COLUMN not in utterances.columns:
        return None
    return int(len(missing_rows(utterances)))


def audio_presence_summary(utterances: pd.DataFrame) -> dict[str, int | None]:
    """The summary's `audio_missing` (utterances whose file is missing) and `audio_missing_files`
    (distinct files); both None when presence was not checked."""
    rows = missing_rows(utterances) if COLUMN in utterances.columns else None
    if rows is None:
        return {"audio_missing": None, "audio_missing_files": None}
    files = int(utterances["audio_path"].iloc[rows].nunique()) if len(rows) else 0
    return {"audio_missing": int(len(rows)), "audio_missing_files": files}
