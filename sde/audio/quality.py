"""Audio metrics of utterance segments: sample rate, channels, readable duration, levels,
clipping, leading/trailing silence, bandwidth; computed for a whole table in worker processes,
one file opened once for all of its segments."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing as mp
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import soundfile as sf

from sde.audio.dsp import DB_FLOOR, blackman_harris, rfft
from sde.audio.inputs import AudioInput, as_input, install_openers, installed_openers
from sde.audio.io import (DURATION_TOLERANCE, AudioError, ChannelSelection, RawAudio, _announced_seconds, _sf_reason,
                          channel_selection, check_file, frame_range, header_overstates, read_channels, seek_read,
                          select_channels, to_mono, truncation_error)

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
    "peak_dbfs",          # dBFS of the largest |sample| (all channels, or audio_channel's: a list's mean); DB_FLOOR for silence
    "rms_dbfs",           # dBFS of the RMS (all channels, or audio_channel's: a list's mean); a full-scale sine is -3.01
    "clipping_ratio",     # fraction of samples (all channels) with |x| >= CLIP_LEVEL
    "silence_start",      # s of leading silence (see SILENCE_* below)
    "silence_end",        # s of trailing silence
    "bandwidth_hz",       # highest frequency within BANDWIDTH_THRESHOLD_DB of the spectrum's peak
    "audio_error",        # why the segment could not be read (or not whole: a truncated file's); <NA> when it could
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
#: Frames read and measured at a time (~1 MB per channel): a segment hours long is measured in
#: a few MB more than a short one.
METRIC_BLOCK_FRAMES = 1 << 18


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 10.0 ** (DB_FLOOR / 20.0) else DB_FLOOR


class _Measure:
    """The metrics of one segment fed block by block ((frames, channels) arrays, in order).

    Same numbers as measuring the whole segment at once (up to float rounding), in memory that
    does not grow with it: each block's temporaries, the samples a frame straddling two blocks
    still waits for, and one float per 10 ms frame (silence can place its threshold only once
    the loudest frame is known): ~29 MB for 10 hours, where measuring the whole array at once
    took 1.2 GB for 30 minutes at 16 kHz. :meth:`result` ends it: call it once, after the last block.
    """

    def __init__(self, sample_rate: int, channels: int) -> None:
        self.sr = sample_rate
        self.channels = channels
        self.n = 0  # mono frames fed
        self.size = 0  # samples fed, all channels
        self.peak = 0.0
        self.sum_sq = 0.0
        self.clipped = 0
        # Silence: 10 ms frames from the segment start; the samples of an unfinished frame wait.
        self.flen = max(1, int(round(SILENCE_FRAME_S * sample_rate)))
        self.pending = np.zeros(0, dtype=np.float32)
        self.frame_db: list[np.ndarray] = []
        # Bandwidth: centred STFT (n_fft/2 zeros before the signal and after it). ``tail`` holds
        # the padded signal from the next frame's start; ``skip`` counts samples to drop first
        # when the hop is longer than the window (> 51.2 kHz): frames then leave gaps.
        self.n_fft = BANDWIDTH_N_FFT
        self.hop = max(1, int(sample_rate * 0.01))
        self.window = blackman_harris(self.n_fft)
        self.tail = np.zeros(self.n_fft // 2, dtype=np.float32)
        self.skip = 0
        self.power_sum = np.zeros(self.n_fft // 2 + 1, dtype=np.float64)
        self.n_frames = 0

    def feed(self, data: np.ndarray) -> None:
        # A whole segment in one array is measured in blocks too: its temporaries stay small.
        for i in range(0, len(data), METRIC_BLOCK_FRAMES):
            self._block(data[i:i + METRIC_BLOCK_FRAMES])

    def _block(self, data: np.ndarray) -> None:
        absdata = np.abs(data)
        self.peak = max(self.peak, float(absdata.max()))
        self.clipped += int(np.count_nonzero(absdata >= CLIP_LEVEL))
        self.sum_sq += float(np.square(data, dtype=np.float64).sum())
        self.size += data.size
        mono = to_mono(data).astype(np.float32, copy=False)
        self.n += len(mono)
        x = np.concatenate((self.pending, mono)) if len(self.pending) else mono
        whole = len(x) - len(x) % self.flen
        if whole:
            sums = np.square(x[:whole], dtype=np.float64).reshape(-1, self.flen).sum(axis=1)
            self.frame_db.append(_power_db(sums / self.flen))
        self.pending = x[whole:].copy()  # a copy: the block itself need not stay alive
        self._stft(mono)

    def _stft(self, x: np.ndarray) -> None:
        """Add ``x`` (the padded signal's next samples) and the power of every frame now whole."""
        drop = min(self.skip, len(x))
        self.skip -= drop
        self.tail = np.concatenate((self.tail, x[drop:]))
        n_fft, hop = self.n_fft, self.hop
        if len(self.tail) < n_fft:
            return
        k = (len(self.tail) - n_fft) // hop + 1
        frames = np.lib.stride_tricks.sliding_window_view(self.tail, n_fft)[:(k - 1) * hop + 1:hop]
        spec = rfft(frames * self.window)
        self.power_sum += (spec.real.astype(np.float64) ** 2 + spec.imag ** 2).sum(axis=0)
        self.n_frames += k
        self.skip = max(0, k * hop - len(self.tail))
        self.tail = self.tail[k * hop:].copy()

    def _silences(self) -> tuple[float, float]:
        """Leading and trailing silence in seconds (rules: SILENCE_* constants)."""
        if self.n == 0:
            return 0.0, 0.0
        if len(self.pending):  # the last frame may be shorter: it still counts
            sums = np.square(self.pending, dtype=np.float64).sum(keepdims=True)
            self.frame_db.append(_power_db(sums / len(self.pending)))
            self.pending = self.pending[:0]
        frame_db = np.concatenate(self.frame_db)
        self.frame_db = [frame_db]
        threshold = max(float(frame_db.max()) - SILENCE_REL_DB, SILENCE_ABS_DBFS)
        loud = np.flatnonzero(frame_db >= threshold)
        duration = self.n / self.sr
        if len(loud) == 0:
            return duration, duration
        end = min((int(loud[-1]) + 1) * self.flen, self.n)
        return float(loud[0] * self.flen / self.sr), float((self.n - end) / self.sr)

    def _bandwidth(self) -> float:
        """NeMo SDE's ``eval_bandwidth`` without librosa (same STFT, same rule)."""
        if self.n == 0:
            return 0.0
        # The right-hand padding; a padded signal shorter than one window is padded to one.
        pad = self.n_fft // 2
        self._stft(np.zeros(max(self.n + 2 * pad, self.n_fft) - (self.n + pad), dtype=np.float32))
        power = self.power_sum / self.n_frames
        peak = power.max()
        if peak <= 0:
            return 0.0
        # librosa.power_to_db(ref=np.max, top_db=100): dB re peak, floored at -100 (below threshold).
        db = 10.0 * np.log10(np.maximum(power, 1e-10) / peak)
        above = np.flatnonzero(db > BANDWIDTH_THRESHOLD_DB)
        return float(above[-1] / self.n_fft * self.sr) if len(above) else 0.0

    def result(self, file_duration: float, manifest_duration: float | None) -> dict[str, Any]:
        """The metrics (keys AUDIO_METRIC_COLUMNS) once the whole segment has been fed."""
        actual = self.n / self.sr
        if manifest_duration is None or not math.isfinite(manifest_duration):
            mismatch = False  # no claim to contradict: the segment runs to the end of the file
        else:
            mismatch = abs(actual - manifest_duration) > DURATION_TOLERANCE
        rms = math.sqrt(self.sum_sq / self.size) if self.size else 0.0
        lead, trail = self._silences()
        return {
            "sample_rate": float(self.sr),
            "channels": float(self.channels),
            "audio_duration": actual,
            "file_duration": float(file_duration),
            "duration_mismatch": bool(mismatch),
            "peak_dbfs": _db(self.peak),
            "rms_dbfs": _db(rms),
            "clipping_ratio": self.clipped / self.size if self.size else 0.0,
            "silence_start": lead,
            "silence_end": trail,
            "bandwidth_hz": self._bandwidth(),
            "audio_error": None,
        }


def _power_db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 1e-20))


def _nan_metrics(error: str) -> dict[str, Any]:
    out: dict[str, Any] = {c: float("nan") for c in AUDIO_METRIC_COLUMNS}
    out["duration_mismatch"] = False
    out["audio_error"] = error
    return out


def _metrics_of(raw: RawAudio, manifest_duration: float | None) -> dict[str, Any]:
    m = _Measure(raw.sample_rate, raw.channels)
    m.feed(raw.data)
    return _with_truncation(m.result(raw.file_duration, manifest_duration), raw.truncation)


def _with_truncation(metrics: dict[str, Any], error: AudioError | None) -> dict[str, Any]:
    """A segment running past the end of a truncated file (:func:`~sde.audio.io.truncation_error`,
    the check the player and speech activity refuse it with) is measured as far as the data goes
    and its ``audio_error`` says why the rest is missing: it counts as unreadable, as they count it."""
    if error is not None:
        metrics["audio_error"] = str(error)
    return metrics


def audio_metrics(path: "str | AudioInput", offset: float = 0.0, duration: float | None = None,
                  channel: object = None) -> dict[str, Any]:
    """Metrics of one segment, keys :data:`AUDIO_METRIC_COLUMNS`; ``channel``: of that channel
    alone (a supervision on one side of a call), or of the mean of the listed channels (a
    microphone array's MultiCut): a row's ``audio_channel`` as it came, read by
    :func:`~sde.audio.io.channel_selection`. Never raises for bad audio: a
    missing/unreadable file gives NaN metrics and the reason in ``audio_error``; a segment running
    past the end of a truncated file is measured as far as it goes, with the truncation there."""
    duration = None if duration is None or not math.isfinite(float(duration)) else float(duration)
    try:
        raw = read_channels(path, offset, duration)
        selection = channel_selection(channel, path, raw.channels)
        if selection is not None:
            raw = dataclasses.replace(raw, data=_selected(raw.data, selection))
    except AudioError as exc:
        return _nan_metrics(str(exc))
    return _metrics_of(raw, duration)


SegmentJob = tuple[int, float, "float | None", object]  # position, offset, duration, audio_channel as it came


def _metrics_for_file(path: str, segments: Sequence[SegmentJob]) -> list[tuple[int, dict[str, Any]]]:
    """Metrics of several segments of one file, opening it once (long recordings with many
    utterances are the common case for offset manifests). A URL or a tar member is read through
    its seekable file object, block by block like a local file: an hours-long recording in a
    bucket is never in memory whole."""
    try:
        source = as_input(path)
    except AudioError as exc:  # a tar member that its tar does not hold
        return [(pos, _nan_metrics(str(exc))) for pos, *_ in segments]
    with contextlib.ExitStack() as opened:
        try:
            check_file(source)
            raw = source if isinstance(source, str) else opened.enter_context(source.open())
            f = opened.enter_context(sf.SoundFile(raw))
        except AudioError as exc:
            return [(pos, _nan_metrics(str(exc))) for pos, *_ in segments]
        except Exception:  # noqa: BLE001 - not for libsndfile: the general path reports precisely
            return [(pos, audio_metrics(source, off, dur, channel)) for pos, off, dur, channel in segments]
        sr, ch, total = int(f.samplerate), int(f.channels), int(f.frames)
        truncated = header_overstates(f)
        announced = _announced_seconds(f, total / sr) if truncated else None
        out: list[tuple[int, dict[str, Any]]] = []
        for pos, off, dur, channel in segments:
            dur = None if dur is None or not math.isfinite(dur) else float(dur)
            try:
                off = 0.0 if off is None else float(off)
                start, count = frame_range(path, off, dur, sr, total, truncated)
                selection = channel_selection(channel, path, ch)
                m = _Measure(sr, ch)
                _feed_segment(f, path, start, count, m, selection)
                _raise_input_failure(source)
                short = truncation_error(path, off, dur, sr, total, truncated, announced)
                out.append((pos, _with_truncation(m.result(total / sr, dur), short)))
            except AudioError as exc:
                out.append((pos, _nan_metrics(str(exc))))
    return out


def _raise_input_failure(source: str | AudioInput) -> None:
    """A read of a remote file or tar that failed underneath libsndfile reads as an early end of
    the data: say what really happened (a timeout, a 403) instead of measuring what came."""
    if isinstance(source, AudioInput) and source.failure is not None:
        why, reason = source.explain(source.failure)
        raise AudioError(str(source), why, reason)


def _selected(data: np.ndarray, selection: ChannelSelection) -> np.ndarray:
    """(frames, 1) of the selected channel, or of the mean of the selected channels: the measures
    of several microphones are of the signal sde plays for them, not of each channel apart."""
    return data if selection is None else select_channels(data, selection)[:, None]


def _feed_segment(f: sf.SoundFile, path: str, start: int, count: int, m: _Measure,
                  channel: ChannelSelection = None) -> None:
    """Feed frames [start, start + count) of an open file (of ``channel`` alone, or the mean of
    the listed channels, block by block, when given) to
    ``m``, METRIC_BLOCK_FRAMES at a time,
    so a recording hours long is never in memory whole. The first read seeks (MP3 pre-roll and
    errors as :func:`seek_read`); the next ones go on from where the decoder stands (a seek
    costs FLAC a decode). Data ending early is measured as far as it goes, as a whole read is."""
    got = 0
    while got < count:
        want = min(METRIC_BLOCK_FRAMES, count - got)
        if got == 0 or f.format == "MP3":
            # libsndfile's MP3 decoder (1.2) garbles the start of every read that continues
            # another, as after a seek: each block is read as a segment of its own, pre-roll
            # included (~3 % more decoding), which gives exactly the samples of one whole read.
            block = seek_read(f, path, start + got, want)
        else:
            try:
                block = f.read(want, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(path, f"corrupt or truncated audio data ({_sf_reason(exc)})",
                                 "truncated") from None
        m.feed(_selected(block, channel))
        got += len(block)
        if len(block) < want:
            break


def _metrics_task(groups: list[tuple[str, list[SegmentJob]]]) -> list[tuple[int, dict[str, Any]]]:
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


def segment_channels(table: "pd.DataFrame") -> list[object]:
    """Each row's ``audio_channel`` as it came (a Lhotse supervision on one channel of a
    recording: its measures are of that channel, not the mix of both sides of a call; a list: of
    the mean of those channels), None where the table has none. Read when the row's file is
    opened, by :func:`~sde.audio.io.channel_selection`,
    the same rule as the player's: an unusable value is that row's ``audio_error``, naming it."""
    if "audio_channel" not in table.columns:
        return [None] * len(table)
    return list(table["audio_channel"].astype(object).to_numpy())


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

    channels = segment_channels(table)
    groups: dict[str, list[SegmentJob]] = {}
    for pos in range(n):
        p = paths[pos]
        key = "" if p is None or p is pd.NA or (isinstance(p, float) and math.isnan(p)) else str(p)
        d = durations[pos]
        groups.setdefault(key, []).append((pos, float(offsets[pos]), None if math.isnan(d) else float(d),
                                           channels[pos]))
    missing_path = groups.pop("", [])

    cols: dict[str, Any] = {c: np.full(n, np.nan) for c in AUDIO_METRIC_COLUMNS}
    cols["duration_mismatch"] = np.zeros(n, dtype=bool)
    cols["audio_error"] = np.full(n, None, dtype=object)

    def store(results: list[tuple[int, dict[str, Any]]]) -> None:
        for pos, m in results:
            for c in AUDIO_METRIC_COLUMNS:
                cols[c][pos] = m[c]

    store([(pos, _nan_metrics("(no audio path): the manifest line names no audio file"))
           for pos, *_ in missing_path])

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
