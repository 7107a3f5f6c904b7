"""A dataset's audio metrics: measured (a transform the caller applies) and summarised.

Measuring: :func:`with_measured_audio` runs :func:`sde.audio.compute_audio_metrics` over every
utterance and returns a copy of the dataset with the metric columns; :func:`with_audio_metrics`
adds columns measured elsewhere (the Statistics page's background job), matched by utterance id.
``sde.build.load.load_dataset`` applies the first after building when ``--estimate-audio-metrics`` is
set, so ``sde.dataset`` itself never decodes audio.

Summarising (Statistics page, GET /api/audio-quality): :func:`audio_quality_summary` counts problems
(unreadable files, duration mismatches, clipping), tabulates sample rates and channel counts, and
says whether the audio is ready for NeMo ASR (16 kHz) and TTS training (at least 22.05 kHz). Every
count comes with the filter (the query language of :mod:`sde.query`) that lists the utterances
behind it, so the UI can link to Samples. The summary is JSON-safe (plain ints, floats, strings,
lists, dicts; NaN → None). Pure: no dash.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from sde.audio import AUDIO_METRIC_COLUMNS, DURATION_TOLERANCE, compute_audio_metrics
from sde.caching import for_dataset
from sde.compressed_columns import distinct_count
from sde.engine import settings
from sde.progress import WorkerProgress, where_measured
from sde.sources.members import job_audio_table

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

__all__ = [
    "ASR_SAMPLE_RATE",
    "CLIPPING_THRESHOLD",
    "StaleMetrics",
    "TTS_MIN_SAMPLE_RATE",
    "audio_quality_summary",
    "cached_audio_quality_summary",
    "count_files",
    "has_audio_metrics",
    "plural",
    "with_audio_metrics",
    "with_measured_audio",
]

#: NeMo ASR models are trained on 16 kHz audio.
ASR_SAMPLE_RATE = 16_000
#: Below this, audio is too narrow-band for TTS training (22.05 kHz is the usual minimum).
TTS_MIN_SAMPLE_RATE = 22_050
#: An utterance counts as clipped when more than this fraction of its samples are at full scale.
CLIPPING_THRESHOLD = 0.001
#: How many unreadable-file reasons and examples the summary lists.
MAX_REASONS = 5
MAX_EXAMPLES = 5

# Filters (sde.query syntax) that select the utterances behind each count. Missing values never
# match a clause (SQL semantics), so `!= ""` selects exactly the rows that carry an error message.
FILTER_UNREADABLE = '{audio_error} != ""'
FILTER_MISMATCH = "{duration_mismatch} = true"
FILTER_CLIPPED = f"{{clipping_ratio}} > {CLIPPING_THRESHOLD:g}"
FILTER_NOT_ASR_RATE = f"{{sample_rate}} != {ASR_SAMPLE_RATE}"
FILTER_BELOW_TTS_RATE = f"{{sample_rate}} < {TTS_MIN_SAMPLE_RATE}"


def has_audio_metrics(df: pd.DataFrame) -> bool:
    """True when `df` carries every audio metric column (a manifest field that happens to be called
    `sample_rate` alone does not count: the metrics come as a set)."""
    return all(c in df.columns for c in AUDIO_METRIC_COLUMNS)


def count_files(df: pd.DataFrame) -> int:
    """Distinct audio files (offset manifests name one recording on many lines)."""
    if "audio_path" not in df.columns:
        return len(df)
    return distinct_count(df["audio_path"])


def _floats(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _bools(df: pd.DataFrame, col: str) -> np.ndarray:
    s = df[col]
    if pd.api.types.is_bool_dtype(s.dtype) and not s.hasnans:
        return s.to_numpy(dtype=bool)
    # object/nullable columns (e.g. read back from a cache): missing → False.
    return s.map(lambda v: False if pd.isna(v) else bool(v)).to_numpy(dtype=bool)


def _error_mask(df: pd.DataFrame) -> np.ndarray:
    err = df["audio_error"]
    return (err.notna() & (err.astype("string").fillna("") != "")).to_numpy(dtype=bool)


def _num(x: float, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def plural(n: int, one: str, many: str | None = None) -> str:
    """``n`` and its noun: "1 file", "1,200 files" (``many``: default ``one`` + "s")."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _all_readable(n: int) -> str:
    return "The one readable file is" if n == 1 else f"All {n:,} readable files are"


def _median(values: np.ndarray, digits: int = 2) -> float | None:
    finite = values[np.isfinite(values)]
    return _num(float(np.median(finite)), digits) if finite.size else None


def _error_reasons(paths: list[str | None], errors: np.ndarray) -> list[dict[str, Any]]:
    """Most frequent reasons, the file name taken off (AudioError messages read "PATH: why")."""
    whys = []
    for path, err in zip(paths, errors):
        err = str(err)
        prefix = f"{path}: "
        whys.append(err[len(prefix):] if path and err.startswith(prefix) else err)
    counts = pd.Series(whys, dtype=object).value_counts(sort=True)
    return [{"reason": str(r), "utterances": int(c)} for r, c in counts.head(MAX_REASONS).items()]


def _file_codes(df: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Each row's file as an integer (-1 when the path is missing) and the number of files.
    Factorised once: every per-file count below is then integer work, not string hashing."""
    if "audio_path" not in df.columns:
        return np.arange(len(df), dtype=np.int64), len(df)
    codes, uniques = pd.factorize(df["audio_path"], use_na_sentinel=True)
    return codes.astype(np.int64, copy=False), len(uniques)


def _nfiles(codes: np.ndarray, n_files: int, mask: np.ndarray | None = None) -> int:
    c = codes if mask is None else codes[mask]
    seen = np.zeros(n_files, dtype=bool)
    seen[c[c >= 0]] = True
    return int(seen.sum())


def _distribution(key: str, values: np.ndarray, codes: np.ndarray, n_files: int,
                  durations: np.ndarray) -> list[dict]:
    """Rows {key, files, utterances, hours} per distinct finite value, ascending by value."""
    keep = np.isfinite(values)
    if not keep.any():
        return []
    distinct, inverse = np.unique(values[keep], return_inverse=True)
    utts = np.bincount(inverse, minlength=len(distinct))
    d = durations[keep]
    hours = np.bincount(inverse, weights=np.where(np.isfinite(d), d, 0.0), minlength=len(distinct)) / 3600.0
    c = codes[keep]
    if len(distinct) <= 64:  # the usual case (a handful of rates): one boolean pass per value
        files = [_nfiles(c, n_files, inverse == j) for j in range(len(distinct))]
    else:
        pairs = np.unique(inverse[c >= 0].astype(np.int64) * max(n_files, 1) + c[c >= 0])
        files = np.bincount(pairs // max(n_files, 1), minlength=len(distinct))
    return [{key: int(v) if float(v).is_integer() else float(v), "files": int(f), "utterances": int(u),
             "hours": _num(float(h), 4)}
            for v, f, u, h in zip(distinct, files, utts, hours)]


def _readiness(kind: str, bad_files: int, bad_utts: int, readable_files: int, *, filter_: str,
               bad_message: str, ok_message: str) -> dict[str, Any]:
    if readable_files == 0:
        status, message = "unknown", "No readable audio: nothing to check."
    elif bad_files:
        status, message = "warning", bad_message
    else:
        status, message = "ok", ok_message
    return {"kind": kind, "ok": status == "ok", "status": status, "files": int(bad_files),
            "utterances": int(bad_utts), "filter": filter_, "message": message}


def audio_quality_summary(utterances: pd.DataFrame) -> dict[str, Any]:
    """JSON-safe summary of the audio metric columns of an utterance table.

    Without the columns: ``{"measured": False, "utterances", "files"}``. With them (counts of
    utterances, i.e. manifest lines, unless the key says files)::

        measured, utterances, files, measured_utterances, measured_files,
        unreadable  {utterances, files, filter, reasons: [{reason, utterances}], examples: [{id, path, error}]}
        duration_mismatch {utterances, tolerance_s, max_abs_diff_s, filter}
        clipped     {utterances, threshold, filter}
        sample_rates [{sample_rate, files, utterances, hours}]   (readable audio, ascending)
        channels     [{channels, files, utterances, hours}]
        levels       {median_peak_dbfs, median_rms_dbfs, median_silence_start_s,
                      median_silence_end_s, median_bandwidth_hz}
        readiness    {asr: {...}, tts: {...}}  each {kind, ok, status ("ok"|"warning"|"unknown"),
                      files, utterances, filter, message}
    """
    n = len(utterances)
    if not has_audio_metrics(utterances):
        return {"measured": False, "utterances": n, "files": count_files(utterances)}

    df = utterances
    codes, n_files = _file_codes(df)
    files = _nfiles(codes, n_files)
    durations = _floats(df, "duration") if "duration" in df.columns else np.full(n, np.nan)
    bad = _error_mask(df)
    ok = ~bad
    rates = _floats(df, "sample_rate")
    channels = _floats(df, "channels")
    measured_files = _nfiles(codes, n_files, ok)

    # Unreadable (usually few rows: only these paths are turned into Python strings)
    err_idx = np.flatnonzero(bad)
    errors = df["audio_error"].to_numpy(dtype=object)[err_idx]
    if "audio_path" in df.columns:
        err_paths = df["audio_path"].to_numpy(dtype=object)[err_idx]
        paths = [None if pd.isna(p) else str(p) for p in err_paths]
    else:
        paths = [None] * len(err_idx)
    ids = df["id"].to_numpy() if "id" in df.columns else np.arange(n)
    unreadable = {
        "utterances": int(bad.sum()),
        "files": _nfiles(codes, n_files, bad),
        "filter": FILTER_UNREADABLE,
        "reasons": _error_reasons(paths, errors) if err_idx.size else [],
        "examples": [{"id": int(ids[i]), "path": p, "error": str(e)}
                     for i, p, e in zip(err_idx[:MAX_EXAMPLES], paths[:MAX_EXAMPLES], errors[:MAX_EXAMPLES])],
    }

    # Duration mismatches
    mismatch = _bools(df, "duration_mismatch")
    diff = np.abs(_floats(df, "audio_duration") - durations)
    mism_diff = diff[mismatch & np.isfinite(diff)]
    duration_mismatch = {
        "utterances": int(mismatch.sum()),
        "tolerance_s": DURATION_TOLERANCE,
        "max_abs_diff_s": _num(float(mism_diff.max()), 3) if mism_diff.size else None,
        "filter": FILTER_MISMATCH,
    }

    # Clipping (NaN for unreadable rows: never counted)
    clip = _floats(df, "clipping_ratio")
    with np.errstate(invalid="ignore"):
        clipped_mask = clip > CLIPPING_THRESHOLD
    clipped = {"utterances": int(clipped_mask.sum()), "threshold": CLIPPING_THRESHOLD, "filter": FILTER_CLIPPED}

    # Readiness: judged per file (a long recording cut into segments is one file to resample).
    with np.errstate(invalid="ignore"):
        not_asr = ok & np.isfinite(rates) & (rates != ASR_SAMPLE_RATE)
        below_tts = ok & np.isfinite(rates) & (rates < TTS_MIN_SAMPLE_RATE)
    not_asr_files = _nfiles(codes, n_files, not_asr)
    below_tts_files = _nfiles(codes, n_files, below_tts)
    are = "is" if not_asr_files == 1 else "are"
    readiness = {
        "asr": _readiness(
            "asr", not_asr_files, int(not_asr.sum()), measured_files, filter_=FILTER_NOT_ASR_RATE,
            bad_message=(f"{plural(not_asr_files, 'file', 'files')} {are} not 16 kHz: NeMo ASR models "
                         "expect 16 kHz; resample them (e.g. sox in.wav -r 16000 out.wav)"),
            ok_message=f"{_all_readable(measured_files)} 16 kHz, as NeMo ASR models expect."),
        "tts": _readiness(
            "tts", below_tts_files, int(below_tts.sum()), measured_files, filter_=FILTER_BELOW_TTS_RATE,
            bad_message=(f"{plural(below_tts_files, 'file', 'files')} below 22.05 kHz: "
                         "too low for TTS training"),
            ok_message=f"{_all_readable(measured_files)} at least 22.05 kHz: fine for TTS training."),
    }

    levels = {
        "median_peak_dbfs": _median(_floats(df, "peak_dbfs")[ok]),
        "median_rms_dbfs": _median(_floats(df, "rms_dbfs")[ok]),
        "median_silence_start_s": _median(_floats(df, "silence_start")[ok], 3),
        "median_silence_end_s": _median(_floats(df, "silence_end")[ok], 3),
        "median_bandwidth_hz": _median(_floats(df, "bandwidth_hz")[ok], 0),
    }

    return {
        "measured": True,
        "utterances": n,
        "files": files,
        "measured_utterances": int(ok.sum()),
        "measured_files": measured_files,
        "unreadable": unreadable,
        "duration_mismatch": duration_mismatch,
        "clipped": clipped,
        "sample_rates": _distribution("sample_rate", np.where(ok, rates, np.nan), codes, n_files, durations),
        "channels": _distribution("channels", np.where(ok, channels, np.nan), codes, n_files, durations),
        "levels": levels,
        "readiness": readiness,
    }


def cached_audio_quality_summary(dataset: Dataset) -> dict[str, Any]:
    """:func:`audio_quality_summary` of ``dataset.utterances``, computed once per table (~0.8 s for a
    million rows) and kept beside the dataset; a swapped-in table (``Dataset.replace_with``) is
    summarised afresh. Shared by the Statistics page and ``/api/audio-quality``."""
    cache = for_dataset(dataset, "audio-quality-summary", 1, kept=1)
    return cache.get_or_compute_once("summary", lambda: audio_quality_summary(dataset.utterances))


# ---------------------------------------------------------------- measuring: dataset transforms


class StaleMetrics(ValueError):
    """Metrics measured for other utterances than the dataset now holds."""


def with_audio_metrics(dataset: Dataset, metrics: pd.DataFrame) -> Dataset:
    """A copy of `dataset` whose utterance table carries the audio metric columns of `metrics`
    (``id`` + AUDIO_METRIC_COLUMNS, matched by utterance id). Manifest fields that share a metric's
    name are kept as ``manifest_<name>``, as `build_dataset` does for its own columns; existing
    metric columns are replaced. StaleMetrics when the ids do not match the dataset's."""
    table = dataset.utterances.copy()
    ids = table["id"].to_numpy(dtype="int64") if "id" in table.columns else np.arange(len(table))
    mids = metrics["id"].to_numpy(dtype="int64")
    if len(mids) == len(ids) and np.array_equal(mids, ids):
        order = None
    else:
        pos = pd.Index(mids).get_indexer(ids)
        if len(mids) != len(ids) or (pos < 0).any():
            raise StaleMetrics("The dataset changed while its audio was being measured.")
        order = pos
    replace = has_audio_metrics(table)
    for c in AUDIO_METRIC_COLUMNS:
        if c in table.columns and not replace:
            table = table.rename(columns={c: f"manifest_{c}"})
    for c in AUDIO_METRIC_COLUMNS:
        values = metrics[c]
        if order is not None:
            values = values.iloc[order]
        table[c] = pd.Series(values.to_numpy(), index=table.index, dtype=metrics[c].dtype)
    options = dataclasses.replace(dataset.options, estimate_audio_metrics=True)
    return dataclasses.replace(dataset, utterances=table, options=options, _queries={}, _lock=threading.Lock())


def with_measured_audio(dataset: Dataset, *, workers: int | None = None, progress: bool = False,
                        callback: Callable[[int, int], None] | None = None,
                        status: Callable[[str], None] | None = None,
                        rows: np.ndarray | None = None) -> Dataset:
    """A copy of `dataset` with every utterance's audio measured (see with_audio_metrics).
    ``callback(done, total)`` reports progress, ``progress=True`` shows a bar, ``status`` gets one
    line when measuring starts (printed on stderr with ``progress`` when not given).
    ``workers``: processes (default ``--threads``: every core; a batch job on a big node measures
    millions of files). ``rows``: measure only the utterances at these positions (their files changed since they were
    measured: sde.build.remeasure); the others keep the metrics they carry, and no line is said."""
    say = status or (lambda msg: print(msg, file=sys.stderr) if progress else None)
    table = dataset.utterances
    workers = workers or settings().processes
    if rows is None:
        say(f"measuring audio ({where_measured(workers)})")
    elif not has_audio_metrics(table):
        raise StaleMetrics("Only measured audio can be measured again in part.")
    job = table if rows is None else _audio_columns(table).iloc[rows]
    with WorkerProgress("audio metrics", enabled=progress, callback=callback) as meter:
        metrics = compute_audio_metrics(job_audio_table(job, dataset.tar_shards), workers=workers, callback=meter.report)
    if rows is not None:
        metrics = _measured_at(table[list(AUDIO_METRIC_COLUMNS)], rows, metrics)
    ids = table["id"].to_numpy(dtype="int64") if "id" in table.columns else np.arange(len(table), dtype="int64")
    metrics.insert(0, "id", ids)
    return with_audio_metrics(dataset, metrics)


#: What a measurement reads of each utterance (a tarred dataset's rows name their member by these).
_JOB_COLUMNS = ("id", "audio_path", "offset", "duration", "shard_id", "audio_filepath", "audio_channel")


def _audio_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The columns a measurement reads: a few rows taken of them decompress no transcript."""
    return table[[c for c in _JOB_COLUMNS if c in table.columns]]


def _measured_at(current: pd.DataFrame, rows: np.ndarray, fresh: pd.DataFrame) -> pd.DataFrame:
    """The metric columns `current` with the rows at positions `rows` replaced by `fresh`'s."""
    out = {}
    for c in AUDIO_METRIC_COLUMNS:
        if c == "audio_error":
            values = current[c].astype(object).to_numpy(copy=True)
            values[rows] = fresh[c].astype(object).to_numpy()
            out[c] = pd.array(values, dtype=pd.StringDtype("pyarrow"))
        elif c == "duration_mismatch":
            values = current[c].fillna(False).to_numpy(dtype=bool, copy=True)
            values[rows] = fresh[c].to_numpy(dtype=bool)
            out[c] = values
        else:
            values = pd.to_numeric(current[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan, copy=True)
            values[rows] = fresh[c].to_numpy(dtype="float64")
            out[c] = values
    return pd.DataFrame(out)
