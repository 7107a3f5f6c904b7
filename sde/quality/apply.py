"""Data-quality columns on a dataset: dataset transforms, as ``sde.audio_quality`` has for audio metrics.

Two families, computed at different times because they cost very different amounts:

- **Measured from the audio** (``speech_duration``, ``leading_silence``, ``trailing_silence``,
  ``speech_ratio`` from Silero VAD, ``audio_hash``, ``lufs``): a read of every segment, minutes to
  hours. :func:`with_vad` runs it at load time (``--vad``; ``sde.build.load.load_dataset`` caches the
  result with the dataset) and the web's background job hands its result to
  :func:`apply_segment_measures`.
- **Derived from the text** (the suspicious-utterance columns, ``dup_text_group``,
  ``dup_audio_group``, optional near-duplicates): ~2 s (duplicates) and ~12 s (suspicious, one
  hypothesis) of CPU per million utterances (benchmarks/bench_quality.py). That would triple a cold
  start (target: 5 s for a million lines), and most
  sessions never look at them, so they are not computed at load time but on first use:
  :func:`quality_frame` computes a kind once per generation of the tables for what only reads them
  (the Suspicious panel's counts, the duplicate groups), and :func:`ensure_quality_columns` adds
  them to the table when a filter or sort names one of them.

Both swap the dataset in place (``Dataset.replace_with``) under one lock per dataset, so a VAD
result applied while the text columns are computed loses neither.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sde.caching import for_dataset
from sde.compressed_columns import held_whole
from sde.dataset import HYPOTHESIS_CHECKS
from sde.progress import WorkerProgress, where_measured
from sde.quality.duplicates import DUPLICATE_COLUMNS, duplicate_columns
from sde.quality.segments import KINDS, measure_segments
from sde.quality.suspicious import suspicious_columns
from sde.quality.vad import VAD_COLUMNS, VadError
from sde.sources.members import job_audio_table

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

__all__ = [
    "QUALITY_KINDS",
    "SEGMENT_COLUMNS",
    "StaleMeasures",
    "TooLarge",
    "apply_segment_measures",
    "ensure_quality_columns",
    "has_vad",
    "kind_columns",
    "measure_workers",
    "named_quality_kinds",
    "ensure_named_quality_columns",
    "quality_frame",
    "quality_column_kinds",
    "segment_kinds",
    "speech_hours",
    "swap_lock",
    "vad_unavailable",
    "with_quality_columns",
    "with_segment_measures",
    "with_vad",
]

#: Columns the measure job can add (plus ``quality_error``: why a segment could not be measured).
SEGMENT_COLUMNS: tuple[str, ...] = (*VAD_COLUMNS, "audio_hash", "lufs", "quality_error")
#: The text-derived kinds :func:`ensure_quality_columns` adds.
QUALITY_KINDS: tuple[str, ...] = ("duplicates", "suspicious", "near_duplicates")
NEAR_DUPLICATE_EDITS = 2
#: The near-duplicate search holds every distinct transcript as a Python string, sorted twice (~1 GB
#: a million utterances): over this many utterances it is refused (:class:`TooLarge`) rather than
#: take a server's memory. Exact duplicates are digested a chunk at a time, at any size.
NEAR_DUPLICATE_MAX_ROWS = 2_000_000
#: Most worker processes :func:`with_vad` starts by default: each holds an onnxruntime session and
#: ~0.2 GB, so a 64-core node does not spend 13 GB on them.
MAX_MEASURE_WORKERS = 8


class TooLarge(ValueError):
    """A check this dataset is too large for; the message says what to use instead."""


class StaleMeasures(ValueError):
    """Measures taken for other utterances than the dataset now holds."""


# ---------------------------------------------------------------- availability


def vad_unavailable() -> str | None:
    """None when Silero VAD can run here, else what to install (checked without importing torch)."""
    if importlib.util.find_spec("silero_vad") is None or importlib.util.find_spec("onnxruntime") is None:
        return ('speech activity (VAD) needs Silero VAD: pip install "sde[vad]" (silero-vad and onnxruntime; '
                "silero-vad brings torch: install the CPU wheel first)")
    try:
        from sde.quality.vad import model_path

        model_path()
    except VadError as exc:
        return str(exc)
    return None


def segment_kinds(vad: bool = True) -> tuple[str, ...]:
    """What the measure job reads: the VAD (when asked and installed), the audio hash
    (duplicate audio) and the loudness (TTS); one read of each segment serves all of them."""
    return (("vad",) if vad and vad_unavailable() is None else ()) + ("hash", "loudness")


def measure_workers() -> int:
    """Worker processes for ``--vad`` (``sde index``/``stats``/``serve``): ``--threads`` (default every
    core), at most :data:`MAX_MEASURE_WORKERS`. The VAD is CPU-bound and a worker's memory no longer
    grows with a segment's length, so a batch job on a big node uses its cores."""
    from sde.engine import settings

    return max(1, min(settings().processes, MAX_MEASURE_WORKERS))


def has_vad(table: pd.DataFrame) -> bool:
    return all(c in table.columns for c in VAD_COLUMNS)


def speech_hours(table: pd.DataFrame) -> float | None:
    """Hours of speech the VAD found (None when it has not run)."""
    if "speech_duration" not in table.columns:
        return None
    total = float(np.nansum(pd.to_numeric(table["speech_duration"], errors="coerce").to_numpy(np.float64)))
    return total / 3600.0


# ---------------------------------------------------------------- per-dataset lock


_locks: dict[int, threading.RLock] = {}
_locks_guard = threading.Lock()


def swap_lock(dataset: Dataset) -> threading.RLock:
    """One lock per dataset object for every swap this module makes (replace_with keeps the object),
    and the server's audio presence check (sde.cli): a swap reads the tables and swaps in a version
    of them, which must not undo another one's made meanwhile."""
    key = id(dataset)
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = threading.RLock()
            weakref.finalize(dataset, _locks.pop, key, None)
        return lock


def _copy(dataset: Dataset, table: pd.DataFrame) -> Dataset:
    return dataclasses.replace(dataset, utterances=table, _queries={}, _lock=threading.Lock())


def _set_columns(table: pd.DataFrame, columns: pd.DataFrame, ours: Iterable[str]) -> pd.DataFrame:
    """``table`` with ``columns`` (of the same index) added, sharing both frames' arrays; a manifest
    field of the same name is kept as ``manifest_<name>`` unless the whole set ``ours`` is already
    there (then it was computed by sde and is replaced, in its place)."""
    replace = all(c in table.columns for c in ours)
    # a new frame of both frames' columns, not setitem or rename: pandas copies an array set into
    # a frame (before pandas 3, even a Series, and every column renamed), and a copy of columns
    # mapped from a file (sde.cache.kept) would hold them in memory again
    parts: dict[str, pd.Series] = {}
    for name in table.columns:
        if name in columns.columns:
            parts[name if replace else f"manifest_{name}"] = columns[name] if replace else table[name]
        else:
            parts[name] = table[name]
    parts.update((name, columns[name]) for name in columns.columns if name not in parts)
    return pd.DataFrame(parts, index=table.index, copy=False)


# ---------------------------------------------------------------- measured from the audio


def with_segment_measures(dataset: Dataset, measured: pd.DataFrame) -> Dataset:
    """A copy of ``dataset`` with the columns of ``measured`` (``id`` + columns of
    ``sde.quality.segments``), matched by utterance id. StaleMeasures when the ids differ. The
    duplicate columns, when present, are recomputed (a new ``audio_hash`` makes audio groups)."""
    table = dataset.utterances
    ids = table["id"].to_numpy(dtype="int64") if "id" in table.columns else np.arange(len(table))
    mids = measured["id"].to_numpy(dtype="int64")
    values = measured.drop(columns=["id"])
    if not (len(mids) == len(ids) and np.array_equal(mids, ids)):
        pos = pd.Index(mids).get_indexer(ids)
        if len(mids) != len(ids) or (pos < 0).any():
            raise StaleMeasures("The dataset changed while its audio was being measured.")
        values = values.iloc[pos]
    values = values.reset_index(drop=True).set_axis(table.index)
    kinds = [k for k, cols in KINDS.items() if all(c in values.columns for c in cols)]
    new_table = table
    for kind in kinds:
        new_table = _set_columns(new_table, values[list(KINDS[kind])], KINDS[kind])
    if "quality_error" in values.columns:
        new_table = new_table.copy(deep=False)
        new_table["quality_error"] = values["quality_error"].astype(pd.StringDtype("pyarrow")).array
    out = _copy(dataset, new_table)
    if _has_kind(dataset, "duplicates"):
        out = _copy(out, _set_columns(out.utterances, _compute(out, "duplicates"), kind_columns(out, "duplicates")))
    return out


def apply_segment_measures(dataset: Dataset, measured: pd.DataFrame,
                           also: Callable[[Dataset], Dataset] | None = None) -> None:
    """Swap ``measured`` into ``dataset`` in place (every holder sees the new columns), after
    ``also`` (another transform of the same swap, e.g. adding audio metrics measured with it).
    StaleMeasures when the ids are not the dataset's."""
    with swap_lock(dataset):
        updated = also(dataset) if also is not None else dataset
        dataset.replace_with(with_segment_measures(updated, measured))


def with_vad(dataset: Dataset, *, workers: int | None = None, progress: bool = False,
             callback: Callable[[int, int], None] | None = None,
             status: Callable[[str], None] | None = None,
             cancel: Callable[[], bool] | threading.Event | None = None,
             rows: np.ndarray | None = None) -> Dataset:
    """A copy of ``dataset`` with speech activity, audio hashes and loudness measured (``--vad``).
    VadError (saying what to install) when Silero VAD is not installed. ``rows``: measure only the
    utterances at these positions (their files changed since they were measured:
    sde.build.remeasure); the others keep the measures they carry, and no line is said."""
    missing = vad_unavailable()
    if missing is not None:
        raise VadError(missing)
    say = status or (lambda msg: print(msg, file=sys.stderr) if progress else None)
    table = dataset.utterances
    kinds = segment_kinds(vad=True)
    workers = workers or measure_workers()
    if rows is None:
        say(f"measuring speech activity (VAD), audio hashes and loudness ({where_measured(workers)})")
    elif not all(c in table.columns for kind in kinds for c in KINDS[kind]):
        raise StaleMeasures("Only measured audio can be measured again in part.")
    job = table if rows is None else table[[c for c in _JOB_COLUMNS if c in table.columns]].iloc[rows]
    with WorkerProgress("speech activity", enabled=progress, callback=callback) as meter:
        measured = measure_segments(job_audio_table(job, dataset.tar_shards), kinds, workers=workers,
                                    callback=meter.report, cancel=cancel)
    if rows is not None:
        measured = _measured_at(table, rows, measured)
    ids = table["id"].to_numpy(dtype="int64") if "id" in table.columns else np.arange(len(table), dtype="int64")
    measured.insert(0, "id", ids)
    return with_segment_measures(dataset, measured)


#: What a measurement reads of each utterance (a tarred dataset's rows name their member by these).
_JOB_COLUMNS = ("id", "audio_path", "offset", "duration", "shard_id", "audio_filepath", "audio_channel")


def _measured_at(table: pd.DataFrame, rows: np.ndarray, fresh: pd.DataFrame) -> pd.DataFrame:
    """``fresh``'s columns for the whole of ``table``: its values at positions ``rows``, the
    table's own elsewhere (a ``quality_error`` the table lacks is missing there)."""
    out = {}
    for c in fresh.columns:
        if c in ("audio_hash", "quality_error"):
            values = (table[c].astype(object).to_numpy(copy=True) if c in table.columns
                      else np.full(len(table), None, dtype=object))
            values[rows] = fresh[c].astype(object).to_numpy()
            out[c] = pd.array(values, dtype=pd.StringDtype("pyarrow"))
        else:
            values = pd.to_numeric(table[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan, copy=True)
            values[rows] = pd.to_numeric(fresh[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            out[c] = values
    return pd.DataFrame(out)


# ---------------------------------------------------------------- derived from the text


def kind_columns(dataset: Dataset, kind: str) -> tuple[str, ...]:
    """The columns :func:`ensure_quality_columns` adds for ``kind`` on this dataset."""
    if kind == "duplicates":
        return DUPLICATE_COLUMNS
    if kind == "near_duplicates":
        return ("dup_near_group",)
    if kind == "suspicious":
        base = ["repeated_ngram", "char_rate_z", "word_rate_z", "empty_reference"]
        if dataset.options.alphabet:
            base.append("non_alphabet")
        for h in dataset.hypotheses:
            base += [h.column(m) for m in HYPOTHESIS_CHECKS]
        return tuple(base)
    raise ValueError(f"unknown quality kind {kind!r}; choose from {', '.join(QUALITY_KINDS)}")


def quality_column_kinds(dataset: Dataset) -> dict[str, str]:
    """Every text-derived column name this dataset can have → its kind."""
    return {c: kind for kind in QUALITY_KINDS for c in kind_columns(dataset, kind)}


def _has_kind(dataset: Dataset, kind: str) -> bool:
    return all(c in dataset.utterances.columns for c in kind_columns(dataset, kind))


def _speaker_column(table: pd.DataFrame) -> str:
    return next((c for c in ("speaker", "speaker_id", "spk", "spk_id") if c in table.columns), "speaker")


def _compute(dataset: Dataset, kind: str) -> pd.DataFrame:
    table = dataset.utterances
    # both read the transcripts a chunk of rows at a time
    if kind == "suspicious":
        present = [h for h in dataset.hypotheses if h.field in table.columns]
        return suspicious_columns(table, present, alphabet=dataset.options.alphabet or None,
                                  speaker_column=_speaker_column(table))
    if kind == "duplicates":
        return duplicate_columns(table)
    if len(table) > NEAR_DUPLICATE_MAX_ROWS:
        raise TooLarge(f"The near-duplicate search takes ~1 GB of memory per million utterances and is refused over "
                       f"{NEAR_DUPLICATE_MAX_ROWS:,} ({len(table):,} here); exact duplicates (after lower-casing and "
                       "removing punctuation) work at any size: kind=text, {dup_text_group}.")
    with held_whole(table, ["text"]):  # read twice (digests, then the strings compared): decompressed once
        near = duplicate_columns(table, max_edits=NEAR_DUPLICATE_EDITS)["dup_text_group"]
        return pd.DataFrame({"dup_near_group": near.array}, index=table.index)


def quality_frame(dataset: Dataset, kind: str) -> pd.DataFrame:
    """The columns of ``kind`` for the dataset's current tables (the table's index), computed once
    per generation of the tables and kept beside the dataset: reading them (counts, groups) does
    not change the dataset; :func:`ensure_quality_columns` adds them without computing again.
    Where the dataset is a build in the dataset cache they are also kept as a file beside it and
    held memory-mapped from there (see :func:`_kept_or_computed`)."""
    if _has_kind(dataset, kind):
        table = dataset.utterances  # its columns shared (table[list] copies them before pandas 3)
        return pd.DataFrame({c: table[c] for c in kind_columns(dataset, kind)}, index=table.index, copy=False)
    cache = for_dataset(dataset, "quality-columns", len(QUALITY_KINDS))
    return cache.get_or_compute_once(kind, lambda: _kept_or_computed(dataset, kind))


#: The layout of the quality columns kept beside a build: bump it when a kind's columns change
#: meaning, so that those an older sde kept are computed again.
KEPT_COLUMNS_VERSION = 1


def _kept_or_computed(dataset: Dataset, kind: str) -> pd.DataFrame:
    """The columns of ``kind``: those kept beside the dataset's build (a later start: minutes of
    work at 10M utterances saved), else computed and kept there. Kept ones are memory-mapped: the
    server holds them as pages of a file the OS may drop, not as its own memory (~0.5 GB at 10M).
    Named after everything they are computed from besides the build's tables: its columns (the
    hypotheses), the speaker column, the alphabet."""
    keeper = dataset.caches.columns_keeper(dataset.generation)
    if keeper is None:
        return _compute(dataset, kind)
    table = dataset.utterances
    present = [h.field for h in dataset.hypotheses if h.field in table.columns]
    name = (f"quality-columns/v{KEPT_COLUMNS_VERSION}/{kind}/"
            f"{(kind_columns(dataset, kind), present, _speaker_column(table), dataset.options.alphabet or None)!r}")
    kept = keeper.recall_columns(name, table.index)
    if kept is not None:
        return kept
    computed = _compute(dataset, kind)
    kept = keeper.keep_columns(name, computed)
    return computed if kept is None else kept


def with_quality_columns(dataset: Dataset, kinds: Sequence[str] = ("duplicates", "suspicious")) -> Dataset:
    """A copy of ``dataset`` with the columns of each text-derived ``kind`` (replacing earlier ones)."""
    table = dataset.utterances
    for kind in kinds:
        table = _set_columns(table, quality_frame(dataset, kind), kind_columns(dataset, kind))
    return _copy(dataset, table)


def ensure_quality_columns(dataset: Dataset, kinds: Sequence[str] = ("duplicates", "suspicious")) -> None:
    """Add the ``kinds`` the dataset lacks, in place (once: later calls return at once). Only
    what filters and sorts need: counts and groups read :func:`quality_frame` instead, since a swap
    rebuilds every view of the dataset (a page showing while it happens would be rebuilt under it)."""
    if all(_has_kind(dataset, k) for k in kinds):
        return
    for kind in kinds:  # computed before the swap lock (minutes at 10M): other swaps go on meanwhile
        quality_frame(dataset, kind)
    with swap_lock(dataset):
        missing = [k for k in kinds if not _has_kind(dataset, k)]
        if missing:  # on the tables as they are now: computed again only where a swap since changed their inputs
            # kept over the swap: the other kinds' columns computed (no kind reads another's) and
            # the keeper of those kept with the build; not the pages kept, which read every column
            dataset.replace_with(with_quality_columns(dataset, missing), keep=("quality-columns",),
                                 keepers="columns")


def named_quality_kinds(dataset: Dataset, texts: Iterable[str | None]) -> list[str]:
    """The text-derived kinds whose columns ``texts`` (filters, sorts, rules' filters) name and the
    dataset lacks, e.g. ``["duplicates"]`` for ``{dup_text_group} is not null``."""
    kinds = quality_column_kinds(dataset)
    names = sorted((c for c in kinds if c not in dataset.utterances.columns), key=len, reverse=True)
    if not names:
        return []
    # whole names only: {char_rate} must not ask for char_rate_z's kind
    pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in names) + r")(?!\w)")
    found = {kinds[m] for t in texts if t for m in pattern.findall(t)}
    return sorted(found)


def ensure_named_quality_columns(dataset: Dataset, texts: Iterable[str | None]) -> list[str]:
    """Add, in place, the text-derived quality columns that ``texts`` name (see
    :func:`named_quality_kinds`); returns the kinds added. For filters evaluated outside a request
    that names them — ``sde export --filter/--rules``, a rule set POSTed to ``/api/rules/preview`` —
    where a column computed on first use would otherwise be an "Unknown column". TooLarge for
    near-duplicates over NEAR_DUPLICATE_MAX_ROWS."""
    wanted = named_quality_kinds(dataset, texts)
    if wanted:
        ensure_quality_columns(dataset, wanted)
    return wanted

