"""Audio metrics of utterance segments: sample rate, channels, readable duration, levels,
clipping, leading/trailing silence, bandwidth; computed for a whole table in worker processes,
one file opened once for all of its segments."""

from __future__ import annotations

import math
import multiprocessing as mp
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import soundfile as sf

from sde.audio.dsp import DB_FLOOR, blackman_harris, rfft, stft_frames
from sde.audio.inputs import AudioInput, as_input, install_openers, installed_openers
from sde.audio.io import (DURATION_TOLERANCE, AudioError, RawAudio, check_file, frame_range,
                          header_overstates, read_channels, seek_read, to_mono)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["AUDIO_METRIC_COLUMNS", "audio_metrics", "compute_audio_metrics"]

#: Columns added by :func:`compute_audio_metrics`, in this order.
AUDIO_METRIC_COLUMNS: tuple[str, ...] = (
    "sample_rate",        # Hz, the file's own rate
    "channels",           # channels in the file (display and metrics mix down to mono)
    "audio_duration",     # s, the part of the manifest segment that is actually readable
    "file_duration",      # s, the whole file's readable length
    "duration_mismatch",  # bool: |audio_duration - manifest duration| > DURATION_TOLERANCE
    "peak_dbfs",          # dBFS of the largest |sample| (all channels); DB_FLOOR for digital silence
    "rms_dbfs",           # dBFS of the RMS (all channels); a full-scale sine is -3.01
    "clipping_ratio",     # fraction of samples (all channels) with |x| >= CLIP_LEVEL
    "silence_start",      # s of leading silence (see SILENCE_* below)
    "silence_end",        # s of trailing silence
    "bandwidth_hz",       # highest frequency within BANDWIDTH_THRESHOLD_DB of the spectrum's peak
    "audio_error",        # why the segment could not be read; <NA> when it could
)

#: |x| at or above this counts as clipped (int16 full scale reads as 32767/32768 = 0.99997).
CLIP_LEVEL = 0.999
#: Silence detection: 10 ms frames; a frame is silent when its RMS is more than
#: SILENCE_REL_DB below the loudest frame of the segment, or below SILENCE_ABS_DBFS in any case.
#: The relative rule follows the recording's own level (quiet corpora stay measurable); the
#: absolute floor keeps faint hiss in an otherwise empty segment from counting as sound.
SILENCE_FRAME_S = 0.01
SILENCE_REL_DB = 40.0
SILENCE_ABS_DBFS = -60.0
#: Bandwidth, as NeMo's speech data explorer estimates it (``eval_bandwidth``): mean power spectrum
#: of a 512-point Blackman-Harris STFT with a 10 ms hop; highest bin above -50 dB of its peak.
BANDWIDTH_THRESHOLD_DB = -50.0
BANDWIDTH_N_FFT = 512


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 10.0 ** (DB_FLOOR / 20.0) else DB_FLOOR


def _silences(mono: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """Leading and trailing silence in seconds (rules: SILENCE_* constants)."""
    n = len(mono)
    duration = n / sample_rate
    flen = max(1, int(round(SILENCE_FRAME_S * sample_rate)))
    if n == 0:
        return 0.0, 0.0
    starts = np.arange(0, n, flen)  # the last frame may be shorter: it still counts
    sums = np.add.reduceat(np.square(mono, dtype=np.float64), starts)
    ends = np.append(starts[1:], n)
    frame_db = 10.0 * np.log10(np.maximum(sums / (ends - starts), 1e-20))
    threshold = max(float(frame_db.max()) - SILENCE_REL_DB, SILENCE_ABS_DBFS)
    loud = np.flatnonzero(frame_db >= threshold)
    if len(loud) == 0:
        return duration, duration
    return float(starts[loud[0]] / sample_rate), float((n - ends[loud[-1]]) / sample_rate)


def _bandwidth(mono: np.ndarray, sample_rate: int) -> float:
    """NeMo SDE's ``eval_bandwidth`` without librosa (same STFT, same rule)."""
    n_fft = BANDWIDTH_N_FFT
    hop = max(1, int(sample_rate * 0.01))
    if len(mono) == 0:
        return 0.0
    frames = stft_frames(mono, n_fft, hop)
    spec = rfft(frames * blackman_harris(n_fft))
    power = (spec.real.astype(np.float64) ** 2 + spec.imag ** 2).mean(axis=0)
    peak = power.max()
    if peak <= 0:
        return 0.0
    # librosa.power_to_db(ref=np.max, top_db=100): dB re peak, floored at -100 (below threshold).
    db = 10.0 * np.log10(np.maximum(power, 1e-10) / peak)
    above = np.flatnonzero(db > BANDWIDTH_THRESHOLD_DB)
    return float(above[-1] / n_fft * sample_rate) if len(above) else 0.0


def _nan_metrics(error: str) -> dict[str, Any]:
    out: dict[str, Any] = {c: float("nan") for c in AUDIO_METRIC_COLUMNS}
    out["duration_mismatch"] = False
    out["audio_error"] = error
    return out


def _metrics_of(raw: RawAudio, manifest_duration: float | None) -> dict[str, Any]:
    data = raw.data
    sr = raw.sample_rate
    mono = to_mono(data)
    n = len(mono)
    actual = n / sr
    absdata = np.abs(data)
    peak = float(absdata.max()) if data.size else 0.0
    rms = math.sqrt(float(np.mean(np.square(data, dtype=np.float64)))) if data.size else 0.0
    clip = float(np.count_nonzero(absdata >= CLIP_LEVEL) / data.size) if data.size else 0.0
    lead, trail = _silences(mono, sr)
    if manifest_duration is None or not math.isfinite(manifest_duration):
        mismatch = False  # no claim to contradict: the segment runs to the end of the file
    else:
        mismatch = abs(actual - manifest_duration) > DURATION_TOLERANCE
    return {
        "sample_rate": float(sr),
        "channels": float(raw.channels),
        "audio_duration": actual,
        "file_duration": float(raw.file_duration),
        "duration_mismatch": bool(mismatch),
        "peak_dbfs": _db(peak),
        "rms_dbfs": _db(rms),
        "clipping_ratio": clip,
        "silence_start": lead,
        "silence_end": trail,
        "bandwidth_hz": _bandwidth(mono, sr),
        "audio_error": None,
    }


def audio_metrics(path: "str | AudioInput", offset: float = 0.0, duration: float | None = None) -> dict[str, Any]:
    """Metrics of one segment, keys :data:`AUDIO_METRIC_COLUMNS`. Never raises for bad audio:
    a missing/unreadable file gives NaN metrics and the reason in ``audio_error``."""
    duration = None if duration is None or not math.isfinite(float(duration)) else float(duration)
    try:
        raw = read_channels(path, offset, duration)
    except AudioError as exc:
        return _nan_metrics(str(exc))
    return _metrics_of(raw, duration)


def _metrics_for_file(path: str, segments: Sequence[tuple[int, float, float | None]]
                      ) -> list[tuple[int, dict[str, Any]]]:
    """Metrics of several segments of one file, opening it once (long recordings with many
    utterances are the common case for offset manifests)."""
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        source = as_input(path)
    except AudioError as exc:  # a tar member that its tar does not hold
        return [(pos, _nan_metrics(str(exc))) for pos, _, _ in segments]
    if not isinstance(source, str):  # a URL or a tar member: the general reader takes it
        return [(pos, audio_metrics(source, off, dur)) for pos, off, dur in segments]
    try:
        check_file(path)
        f = sf.SoundFile(path)
    except AudioError as exc:
        return [(pos, _nan_metrics(str(exc))) for pos, _, _ in segments]
    except Exception:  # noqa: BLE001 - not for libsndfile: the general path reports precisely
        return [(pos, audio_metrics(path, off, dur)) for pos, off, dur in segments]
    with f:
        sr, ch, total = int(f.samplerate), int(f.channels), int(f.frames)
        truncated = header_overstates(f)
        for pos, off, dur in segments:
            dur = None if dur is None or not math.isfinite(dur) else float(dur)
            try:
                start, count = frame_range(path, 0.0 if off is None else float(off), dur, sr,
                                            total, truncated)
                data = seek_read(f, path, start, count)
                raw = RawAudio(data, sr, ch, total / sr, truncated or len(data) < count)
                out.append((pos, _metrics_of(raw, dur)))
            except AudioError as exc:
                out.append((pos, _nan_metrics(str(exc))))
    return out


def _metrics_task(groups: list[tuple[str, list[tuple[int, float, float | None]]]]
                  ) -> list[tuple[int, dict[str, Any]]]:
    out: list[tuple[int, dict[str, Any]]] = []
    for path, segs in groups:
        out.extend(_metrics_for_file(path, segs))
    return out


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _run_in_processes(chunks: list[list], workers: int
                      ) -> Iterable[list[tuple[int, dict[str, Any]]]]:
    """Yield ``_metrics_task(chunk)`` for every chunk, computed by ``workers`` processes.

    Start method: ``fork`` when this process runs a single thread (instant start, children
    inherit the imports; forking is only unsafe when another thread may hold a lock), else
    ``forkserver`` (``spawn`` where there is none), whose children re-import ``__main__`` and
    this module (~0.5–2 s). If the pool cannot work (e.g. a ``__main__`` that children cannot
    re-import, like ``python - < script``), the remaining chunks are computed here instead:
    slower, never a hang or a crash.
    """
    methods = mp.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    todo = dict(enumerate(chunks))
    try:
        # the openers of URLs and tar members (installed by sde.sources) go with the workers
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method),
                                 initializer=install_openers, initargs=(installed_openers(),)) as ex:
            # A bounded window of tasks in flight keeps results (and memory) flowing.
            futures: dict[Any, int] = {}
            queue = iter(list(todo))
            for key in queue:
                futures[ex.submit(_metrics_task, todo[key])] = key
                if len(futures) >= workers * 4:
                    break
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    key = futures.pop(fut)
                    res = fut.result()
                    del todo[key]
                    yield res
                    nxt = next(queue, None)
                    if nxt is not None:
                        futures[ex.submit(_metrics_task, todo[nxt])] = nxt
    except (BrokenProcessPool, OSError, RuntimeError):
        pass
    for key in sorted(todo):
        yield _metrics_task(todo[key])


def compute_audio_metrics(table: "pd.DataFrame", workers: int = 2,
                          callback: Callable[[int, int], None] | None = None) -> "pd.DataFrame":
    """Audio metrics for every row of ``table`` (columns ``audio_path``, ``offset``, ``duration``).

    Returns a DataFrame with the same index and the columns :data:`AUDIO_METRIC_COLUMNS`
    (float64, except ``duration_mismatch`` bool and ``audio_error`` string with <NA> when fine).
    Rows are grouped by file so a long recording is opened once for all its segments; groups are
    spread over ``workers`` processes. ``callback(done_rows, total_rows)`` reports progress (in
    the calling process, after each group of files: the first call comes once the worker processes
    exist, so a progress bar made then, with its monitor thread, does not stop them forking).
    """
    import pandas as pd  # lazy on purpose: the worker processes import this module and never need it

    n = len(table)
    paths = table["audio_path"].astype(object).to_numpy()
    offsets = (pd.to_numeric(table["offset"], errors="coerce").fillna(0.0).to_numpy(np.float64)
               if "offset" in table else np.zeros(n))
    durations = (pd.to_numeric(table["duration"], errors="coerce").to_numpy(np.float64)
                 if "duration" in table else np.full(n, np.nan))

    groups: dict[str, list[tuple[int, float, float | None]]] = {}
    for pos in range(n):
        p = paths[pos]
        key = "" if p is None or p is pd.NA or (isinstance(p, float) and math.isnan(p)) else str(p)
        d = durations[pos]
        groups.setdefault(key, []).append((pos, float(offsets[pos]),
                                           None if math.isnan(d) else float(d)))
    missing_path = groups.pop("", [])

    cols: dict[str, Any] = {c: np.full(n, np.nan) for c in AUDIO_METRIC_COLUMNS}
    cols["duration_mismatch"] = np.zeros(n, dtype=bool)
    cols["audio_error"] = np.full(n, None, dtype=object)

    def store(results: list[tuple[int, dict[str, Any]]]) -> None:
        for pos, m in results:
            for c in AUDIO_METRIC_COLUMNS:
                cols[c][pos] = m[c]

    store([(pos, _nan_metrics("(no audio path): the manifest line names no audio file"))
           for pos, _, _ in missing_path])

    done = len(missing_path)

    def report(k: int) -> None:
        nonlocal done
        done += k
        if callback is not None:
            callback(done, n)

    items = list(groups.items())
    if workers <= 1 or len(items) < 64:
        # Process start-up (~0.3 s) is not worth it for a handful of files.
        for chunk in _chunks(items, 16):
            res = _metrics_task(chunk)
            store(res)
            report(len(res))
    else:
        size = max(1, min(256, len(items) // (workers * 16)))
        pending = list(_chunks(items, size))
        for res in _run_in_processes(pending, workers):
            store(res)
            report(len(res))

    out = pd.DataFrame({c: cols[c] for c in AUDIO_METRIC_COLUMNS}, index=table.index)
    out["audio_error"] = out["audio_error"].astype(pd.StringDtype("pyarrow"))
    return out
