"""Signal side of sde: read an utterance's segment, encode it, summarise it for display, measure it.

Everything here works on the *segment* an utterance names (``offset``, ``duration``), never on the
whole file: soundfile seeks to the first frame and reads only the frames asked for, so a 20 s
segment costs the same inside a 1-minute file as inside a 30-minute one. Display data is bounded
(envelope ≤ ``max_points`` points, spectrogram ≤ ``max_frames`` × ``max_bins``) whatever the length.

Formats: whatever libsndfile reads (WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3, AIFF, …); anything else
goes through an ``ffmpeg`` subprocess that decodes only the segment (``-ss``/``-t``), or through
audioread (via librosa) when ffmpeg is not installed.

This module imports only numpy and soundfile at import time (pandas, librosa lazily): it is
imported by the metric worker processes, where start-up time counts.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import soundfile as sf

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "AUDIO_METRIC_COLUMNS",
    "AudioError",
    "DB_FLOOR",
    "Segment",
    "audio_metrics",
    "compute_audio_metrics",
    "envelope",
    "file_info",
    "read_segment",
    "spectrogram",
    "wav_bytes",
]

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

#: Lowest level reported, in dB: log of zero is -inf, which neither JSON nor tables handle well.
DB_FLOOR = -120.0
#: A duration mismatch is flagged above this many seconds (the manifest's durations are rounded).
DURATION_TOLERANCE = 0.1
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

_FFMPEG_TIMEOUT_S = 120.0


class AudioError(Exception):
    """A segment that cannot be read. ``str(exc)`` names the file and why, for users.

    ``reason`` is a short machine-readable kind: ``not_found``, ``permission``, ``not_a_file``,
    ``empty``, ``unreadable`` (not a sound file / corrupt / unsupported), ``truncated``,
    ``offset`` (segment starts beyond the end), ``invalid`` (bad offset/duration values).
    HTTP routes map ``not_found`` to 404 and the rest to 422.
    """

    def __init__(self, path: str, why: str, reason: str = "unreadable") -> None:
        self.path = str(path)
        self.why = why
        self.reason = reason
        super().__init__(f"{self.path}: {why}")


@dataclass
class Segment:
    """Decoded audio of one segment, mixed down to mono."""

    samples: np.ndarray   # float32 mono in [-1, 1]
    sample_rate: int
    channels: int         # channels in the file (mixed down to mono)
    path: str
    offset: float         # s, where the segment starts in the file
    duration: float       # actual seconds returned
    file_duration: float = float("nan")  # s, readable length of the whole file (NaN if unknown)
    truncated: bool = False              # the file holds less audio than its header announces


# --------------------------------------------------------------------------------------------
# Reading


@dataclass
class _Raw:
    """A decoded segment before the mono mix-down (metrics look at every channel)."""

    data: np.ndarray      # float32, shape (frames, channels)
    sample_rate: int
    channels: int
    file_duration: float
    truncated: bool


def _check_file(path: str) -> None:
    """Turn the common 'cannot even open it' cases into precise messages before decoding."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(path, "file not found", "not_found") from None
    except PermissionError:
        raise AudioError(path, "permission denied", "permission") from None
    except OSError as exc:  # e.g. ENOTDIR when a parent is a file, ENAMETOOLONG
        if exc.errno == errno.ENOTDIR:
            raise AudioError(path, "file not found", "not_found") from None
        raise AudioError(path, f"cannot access the file ({exc.strerror})", "unreadable") from None
    if os.path.isdir(path):
        raise AudioError(path, "is a directory, not an audio file", "not_a_file")
    if st.st_size == 0:
        raise AudioError(path, "zero-byte file (empty, no audio)", "empty")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied", "permission")


def _frame_range(path: str, offset: float, duration: float | None, sample_rate: int,
                 total_frames: int, truncated: bool) -> tuple[int, int]:
    """First frame and frame count of a segment, validated against the file's length."""
    if not math.isfinite(offset) or offset < 0:
        raise AudioError(path, f"invalid offset {offset!r} (must be a number >= 0)", "invalid")
    start = int(round(offset * sample_rate))
    file_s = total_frames / sample_rate if sample_rate else 0.0
    if total_frames == 0:
        if truncated:
            raise AudioError(path, "truncated: the file holds no audio samples", "truncated")
        raise AudioError(path, "the file holds no audio samples", "empty")
    if start >= total_frames:
        why = (f"offset {offset:.3f} s is beyond the end of the file "
               f"(the file is {file_s:.3f} s long)")
        if truncated:
            why += "; the file is truncated (its header announces more audio than it holds)"
        raise AudioError(path, why, "truncated" if truncated else "offset")
    if duration is None or not math.isfinite(duration):
        count = total_frames - start
    else:
        # A negative manifest duration is a manifest problem, not a reason to crash: empty segment.
        count = max(0, int(round(duration * sample_rate)))
        count = min(count, total_frames - start)
    return start, count


def _read_soundfile(path: str, offset: float, duration: float | None) -> _Raw:
    with sf.SoundFile(path) as f:
        sr = int(f.samplerate)
        channels = int(f.channels)
        total = int(f.frames)
        truncated = _header_overstates(f)
        start, count = _frame_range(path, offset, duration, sr, total, truncated)
        data = _seek_read(f, path, start, count)
    if len(data) < count:
        # Compressed formats (FLAC, OGG, MP3) only know their true length when decoding reaches it.
        truncated = True
    return _Raw(data, sr, channels, total / sr, truncated)


def _header_overstates(f: sf.SoundFile) -> bool:
    """libsndfile trims the frame count of a cut-off WAV/AIFF to the data present and notes the
    header's claim in its log (``data : 64000 (should be 31978)``): our truncation flag. Only
    the data chunk counts: a wrong RIFF size alone is a common, harmless writer bug."""
    return any(line.lstrip().lower().startswith(("data", "ssnd")) and "(should be" in line
               for line in (f.extra_info or "").splitlines())


#: MP3 decoding right after a seek is garbage for up to ~0.2 s (mpg123 lacks the bit reservoir
#: of the previous frames); decoding from this many frames earlier and dropping them is exact.
_MP3_PREROLL_FRAMES = 8192


def _seek_read(f: sf.SoundFile, path: str, start: int, count: int) -> np.ndarray:
    """Frames [start, start + count) of an open file as float32 (frames, channels)."""
    preroll = min(start, _MP3_PREROLL_FRAMES) if f.format == "MP3" else 0
    try:
        if count:
            # Always seek, offset 0 included: an open file may be read several times (one file,
            # many segments) and must not continue from where the previous read stopped.
            f.seek(start - preroll)
        data = f.read(count + preroll if count else 0, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(path, f"corrupt or truncated audio data ({_sf_reason(exc)})",
                         "truncated") from None
    return data[preroll:] if preroll else data


def _sf_reason(exc: BaseException) -> str:
    msg = str(exc)
    # soundfile prefixes "Error opening 'path': " — the path is already in our message.
    if ": " in msg and msg.startswith("Error opening"):
        msg = msg.split("': ", 1)[-1]
    return msg.strip().rstrip(".") or type(exc).__name__


def _ffprobe(path: str) -> tuple[int, int, float]:
    """(sample_rate, channels, duration_s) of the first audio stream, via ffprobe."""
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0",
         "-show_entries", "stream=sample_rate,channels:format=duration", "-of", "json", path],
        capture_output=True, timeout=_FFMPEG_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ValueError(lines[-1] if lines else "ffprobe failed")
    info = json.loads(proc.stdout or b"{}")
    streams = info.get("streams") or []
    if not streams:
        raise ValueError("no audio stream")
    sr = int(streams[0].get("sample_rate") or 0)
    ch = int(streams[0].get("channels") or 0)
    dur = float((info.get("format") or {}).get("duration") or "nan")
    if sr <= 0 or ch <= 0:
        raise ValueError("no audio stream")
    return sr, ch, dur


def _read_ffmpeg(path: str, offset: float, duration: float | None) -> _Raw:
    sr, ch, file_s = _ffprobe(path)
    if not math.isfinite(offset) or offset < 0:
        raise AudioError(path, f"invalid offset {offset!r} (must be a number >= 0)", "invalid")
    if math.isfinite(file_s) and offset >= file_s:
        raise AudioError(path, f"offset {offset:.3f} s is beyond the end of the file "
                               f"(the file is {file_s:.3f} s long)", "offset")
    # -ss before -i seeks in the input (fast: only the segment is decoded); native rate and
    # channel layout are kept so the numbers match what soundfile would report.
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{offset:.6f}"]
    if duration is not None and math.isfinite(duration):
        cmd += ["-t", f"{max(0.0, duration):.6f}"]
    cmd += ["-i", path, "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, timeout=_FFMPEG_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise ValueError(proc.stderr.decode("utf-8", "replace").strip() or "ffmpeg failed")
    data = np.frombuffer(proc.stdout, dtype="<f4")
    data = data[: len(data) // ch * ch].reshape(-1, ch).astype(np.float32, copy=True)
    if duration is not None and math.isfinite(duration):
        data = data[: max(0, int(round(duration * sr)))]
    return _Raw(data, sr, ch, file_s, False)


def _read_audioread(path: str, offset: float, duration: float | None) -> _Raw:
    import librosa  # lazy: slow to import, and only needed without ffmpeg

    y, sr = librosa.load(path, sr=None, mono=False, offset=offset,
                         duration=None if duration is None or not math.isfinite(duration)
                         else max(0.0, duration))
    y = np.atleast_2d(np.asarray(y, dtype=np.float32)).T  # librosa: (channels, n) → (n, channels)
    try:
        file_s = float(librosa.get_duration(path=path))
    except Exception:  # noqa: BLE001 - the length is a nicety here
        file_s = float("nan")
    if len(y) == 0 and math.isfinite(file_s) and offset >= file_s:
        raise AudioError(path, f"offset {offset:.3f} s is beyond the end of the file "
                               f"(the file is {file_s:.3f} s long)", "offset")
    return _Raw(y, int(sr), y.shape[1], file_s, False)


def _read_raw(path: str, offset: float = 0.0, duration: float | None = None) -> _Raw:
    path = os.fspath(path)
    offset = 0.0 if offset is None else float(offset)
    duration = None if duration is None else float(duration)
    _check_file(path)
    try:
        return _read_soundfile(path, offset, duration)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        sf_reason = _sf_reason(exc)
    except OSError as exc:  # raced with a delete/chmod after _check_file
        raise AudioError(path, f"cannot read the file ({exc.strerror or exc})", "unreadable") from None
    # libsndfile refused it: a format it does not know (AAC/M4A, WMA, …) or a broken file.
    try:
        if shutil.which("ffmpeg") and shutil.which("ffprobe"):
            return _read_ffmpeg(path, offset, duration)
        return _read_audioread(path, offset, duration)
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoder failure means the same to the user
        ext = os.path.splitext(path)[1].lower()
        what = "not a sound file, or corrupt"
        if ext:
            what += f" (extension {ext!r})"
        raise AudioError(path, f"{what}: libsndfile says \"{sf_reason}\"; "
                               f"fallback decoder says \"{_short(exc, path)}\"", "unreadable") from None


def _short(exc: BaseException, path: str = "") -> str:
    text = " ".join(str(exc).split())
    if path:  # ffmpeg prefixes its messages with the input path, which we already name
        text = text.replace(f"{path}: ", "")
    return (text[:200] + "…") if len(text) > 200 else (text or type(exc).__name__)


def _mono(data: np.ndarray) -> np.ndarray:
    if data.shape[1] == 1:
        return np.ascontiguousarray(data[:, 0])
    return data.mean(axis=1, dtype=np.float32)


def read_segment(path: str, offset: float = 0.0, duration: float | None = None) -> Segment:
    """Read ``duration`` seconds from ``offset`` (to the end of file when ``None``), as mono float32.

    Only the segment is read (seek + read of exactly those frames). A segment running past the
    end of the file is returned shortened (``Segment.duration`` says how long); a segment that
    starts at or past the end raises :class:`AudioError` giving the file's real length.
    """
    raw = _read_raw(path, offset, duration)
    samples = np.clip(_mono(raw.data), -1.0, 1.0)
    return Segment(samples=samples, sample_rate=raw.sample_rate, channels=raw.channels,
                   path=os.fspath(path), offset=float(offset or 0.0),
                   duration=len(samples) / raw.sample_rate, file_duration=raw.file_duration,
                   truncated=raw.truncated)


def file_info(path: str) -> dict[str, Any]:
    """``{"sample_rate", "channels", "duration"}`` of a whole file without decoding it."""
    path = os.fspath(path)
    _check_file(path)
    try:
        info = sf.info(path)
        return {"sample_rate": int(info.samplerate), "channels": int(info.channels),
                "duration": info.frames / info.samplerate}
    except Exception:  # noqa: BLE001 - fall back to the slow path, which raises AudioError
        raw = _read_raw(path, 0.0, 0.0)
        return {"sample_rate": raw.sample_rate, "channels": raw.channels,
                "duration": raw.file_duration}


# --------------------------------------------------------------------------------------------
# Encoding


def wav_bytes(segment: Segment) -> bytes:
    """The segment as a mono 16-bit PCM WAV file (browsers play it everywhere)."""
    pcm = np.clip(segment.samples, -1.0, 1.0) * 32767.0
    pcm = np.rint(pcm).astype("<i2").tobytes()
    sr = int(segment.sample_rate)
    # A hand-written 44-byte header: faster than a codec round trip and exactly what we mean.
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16,
                         1, 1, sr, sr * 2, 2, 16, b"data", len(pcm))
    return header + pcm


def ogg_bytes(segment: Segment) -> bytes:
    """The segment as mono Ogg Vorbis: ~7x smaller than the WAV, for the inspector's player, so a
    20 s view stays well under its transfer budget (the WAV route stays for lossless listening)."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    samples = np.clip(np.asarray(segment.samples, dtype=np.float32), -1.0, 1.0)
    if samples.size == 0:  # libvorbis needs at least one sample to write a valid stream
        samples = np.zeros(1, dtype=np.float32)
    sf.write(buf, samples, int(segment.sample_rate), format="OGG", subtype="VORBIS")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Display data


def envelope(samples: np.ndarray, sample_rate: int,
             max_points: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max envelope: ``(times_s, mins, maxs)``, at most ``max_points`` points.

    Bucket ``i`` covers ``k`` consecutive samples starting at ``times[i]`` (seconds from the
    segment's start; the last bucket may be shorter); ``mins``/``maxs`` are its extremes, so the
    band always contains every sample. Short signals are returned sample by sample.
    """
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    n = len(x)
    max_points = max(1, int(max_points))
    if n == 0:
        empty = np.zeros(0, dtype=np.float32)
        return np.zeros(0, dtype=np.float64), empty, empty.copy()
    k = max(1, -(-n // max_points))  # ceil: bucket size
    if k == 1:
        return np.arange(n, dtype=np.float64) / sample_rate, x.copy(), x.copy()
    starts = np.arange(0, n, k)
    mins = np.minimum.reduceat(x, starts)
    maxs = np.maximum.reduceat(x, starts)
    return starts.astype(np.float64) / sample_rate, mins, maxs


def _n_fft(sample_rate: int) -> int:
    """Power of two covering ≥ 25 ms: 256 @ 8 kHz, 512 @ 16 kHz, 1024 @ 22.05 kHz, 2048 @ 44.1 kHz."""
    return int(2 ** math.ceil(math.log2(max(16, 0.025 * sample_rate))))


def _hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)  # periodic


def _blackman_harris(n: int) -> np.ndarray:
    # Periodic 4-term Blackman-Harris, as scipy.signal.get_window("blackmanharris", n, fftbins=True).
    t = 2 * np.pi * np.arange(n) / n
    return (0.35875 - 0.48829 * np.cos(t) + 0.14128 * np.cos(2 * t)
            - 0.01168 * np.cos(3 * t)).astype(np.float32)


_SCIPY_RFFT: Any = None


def _rfft(frames: np.ndarray) -> np.ndarray:
    """rfft along axis 1. Big batches use scipy's FFT (a librosa dependency; ~3x numpy's on
    float32), imported on first need: it costs 0.25 s, which metric workers on short clips
    (numpy is fine there) should not pay."""
    global _SCIPY_RFFT
    if frames.size < 200_000:
        return np.fft.rfft(frames, axis=1)
    if _SCIPY_RFFT is None:
        try:
            from scipy.fft import rfft as scipy_rfft
        except ImportError:  # pragma: no cover
            scipy_rfft = np.fft.rfft
        _SCIPY_RFFT = scipy_rfft
    return _SCIPY_RFFT(frames, axis=1)


def _frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centered frames (zero padding of n_fft/2 on each side, as librosa's default)."""
    pad = n_fft // 2
    padded = np.pad(x.astype(np.float32, copy=False), (pad, pad))
    if len(padded) < n_fft:
        padded = np.pad(padded, (0, n_fft - len(padded)))
    view = np.lib.stride_tricks.sliding_window_view(padded, n_fft)
    return view[::hop]


def _pool_mean(a: np.ndarray, group: int, axis: int) -> np.ndarray:
    if group <= 1:
        return a
    n = a.shape[axis]
    starts = np.arange(0, n, group)
    sums = np.add.reduceat(a, starts, axis=axis)
    counts = np.diff(np.append(starts, n)).astype(a.dtype)
    shape = [1] * a.ndim
    shape[axis] = len(counts)
    return sums / counts.reshape(shape)


@functools.lru_cache(maxsize=16)
def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """HTK-mel triangles on the rfft bins (peak weight 1, so a tone keeps its level in dB)."""
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    bins_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(np.array(sample_rate / 2.0)), n_mels + 2))
    lo, ctr, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins_hz[None, :] - lo) / np.maximum(ctr - lo, 1e-9)
    down = (hi - bins_hz[None, :]) / np.maximum(hi - ctr, 1e-9)
    fb = np.clip(np.minimum(up, down), 0.0, None)
    # Low mel bands can be narrower than one FFT bin: give them their nearest bin rather than
    # leaving empty (-120 dB) stripes across the image.
    empty = fb.sum(axis=1) == 0
    if empty.any():
        nearest = np.rint(ctr[empty, 0] * n_fft / sample_rate).astype(int)
        fb[np.flatnonzero(empty), np.clip(nearest, 0, n_fft // 2)] = 1.0
    fb = fb.astype(np.float32)
    centres = edges[1:-1].copy()
    fb.setflags(write=False)  # shared by the lru_cache
    centres.setflags(write=False)
    return fb, centres


def spectrogram(samples: np.ndarray, sample_rate: int, kind: str = "linear",
                max_frames: int = 400, max_bins: int = 256,
                n_mels: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-power spectrogram ``(times_s, freqs_hz, db)`` with ``db.shape == (len(freqs), len(times))``.

    ``kind="linear"``: STFT bins; ``kind="mel"``: ``min(n_mels, max_bins)`` HTK-mel bands (freqs
    are the band centres). Window ≥ 25 ms (Hann), 50 % overlap; neighbouring frames and bins are
    averaged in power so the image is at most ``max_frames`` × ``max_bins`` whatever the length.
    dB are relative to full scale (a full-scale sine peaks near 0 dB), floored at ``DB_FLOOR``.
    ``times`` are frame centres in seconds from the segment's start.
    """
    if kind not in ("linear", "mel"):
        raise ValueError(f"kind must be 'linear' or 'mel', not {kind!r}")
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    n_fft = _n_fft(sample_rate)
    max_frames = max(1, int(max_frames))
    max_bins = max(1, int(max_bins))
    # 50 % overlap: Hann windows then sum to a constant, so every sample weighs the same in the
    # pooled columns; more overlap would only add work (columns average many frames anyway).
    hop = n_fft // 2
    # Bound the work for very long segments: at most ~8 raw frames per displayed column.
    hop = max(hop, -(-len(x) // (max_frames * 8)))
    frames = _frames(x, n_fft, hop)
    window = _hann(n_fft)
    spec = _rfft(frames * window)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32, copy=False)
    # |X| of a full-scale sine is sum(window)/2: normalise so such a tone reads 0 dB.
    power /= np.float32((window.sum() / 2.0) ** 2)
    # Pool in time first: mel weighting and bin pooling are linear, so they commute with it.
    times = np.arange(power.shape[0], dtype=np.float64) * hop / sample_rate
    group_t = -(-power.shape[0] // max_frames)
    if group_t > 1:
        power = _pool_mean(power, group_t, axis=0)
        times = _pool_mean(times, group_t, axis=0)
    if kind == "mel":
        fb, freqs = _mel_filterbank(sample_rate, n_fft, min(n_mels, max_bins))
        power = power @ fb.T
    else:
        power = power[:, : n_fft // 2]  # drop Nyquist: 2**k bins pool evenly
        freqs = np.arange(n_fft // 2) * sample_rate / n_fft
        group_f = -(-power.shape[1] // max_bins)
        if group_f > 1:
            power = _pool_mean(power, group_f, axis=1)
            freqs = _pool_mean(freqs.astype(np.float64), group_f, axis=0)
    db = 10.0 * np.log10(np.maximum(power, np.float32(10.0 ** (DB_FLOOR / 10.0))))
    return times, np.array(freqs, dtype=np.float64), np.ascontiguousarray(db.T, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Metrics


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
    frames = _frames(mono, n_fft, hop)
    spec = _rfft(frames * _blackman_harris(n_fft))
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


def _metrics_of(raw: _Raw, manifest_duration: float | None) -> dict[str, Any]:
    data = raw.data
    sr = raw.sample_rate
    mono = _mono(data)
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


def audio_metrics(path: str, offset: float = 0.0, duration: float | None = None) -> dict[str, Any]:
    """Metrics of one segment, keys :data:`AUDIO_METRIC_COLUMNS`. Never raises for bad audio:
    a missing/unreadable file gives NaN metrics and the reason in ``audio_error``."""
    duration = None if duration is None or not math.isfinite(float(duration)) else float(duration)
    try:
        raw = _read_raw(path, offset, duration)
    except AudioError as exc:
        return _nan_metrics(str(exc))
    return _metrics_of(raw, duration)


def _metrics_for_file(path: str, segments: Sequence[tuple[int, float, float | None]]
                      ) -> list[tuple[int, dict[str, Any]]]:
    """Metrics of several segments of one file, opening it once (long recordings with many
    utterances are the common case for offset manifests)."""
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        _check_file(path)
        f = sf.SoundFile(path)
    except AudioError as exc:
        return [(pos, _nan_metrics(str(exc))) for pos, _, _ in segments]
    except Exception:  # noqa: BLE001 - not for libsndfile: the general path reports precisely
        return [(pos, audio_metrics(path, off, dur)) for pos, off, dur in segments]
    with f:
        sr, ch, total = int(f.samplerate), int(f.channels), int(f.frames)
        truncated = _header_overstates(f)
        for pos, off, dur in segments:
            dur = None if dur is None or not math.isfinite(dur) else float(dur)
            try:
                start, count = _frame_range(path, 0.0 if off is None else float(off), dur, sr,
                                            total, truncated)
                data = _seek_read(f, path, start, count)
                raw = _Raw(data, sr, ch, total / sr, truncated or len(data) < count)
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
    import multiprocessing as mp
    import threading
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    methods = mp.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    todo = dict(enumerate(chunks))
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method)) as ex:
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


def compute_audio_metrics(table: "pd.DataFrame", workers: int = 2, progress: bool = False,
                          callback: Callable[[int, int], None] | None = None) -> "pd.DataFrame":
    """Audio metrics for every row of ``table`` (columns ``audio_path``, ``offset``, ``duration``).

    Returns a DataFrame with the same index and the columns :data:`AUDIO_METRIC_COLUMNS`
    (float64, except ``duration_mismatch`` bool and ``audio_error`` string with <NA> when fine).
    Rows are grouped by file so a long recording is opened once for all its segments; groups are
    spread over ``workers`` processes. ``callback(done_rows, total_rows)`` reports progress (in
    the calling process), ``progress=True`` shows a tqdm bar.
    """
    import pandas as pd

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

    bar = None
    done = len(missing_path)

    def report(k: int) -> None:
        nonlocal done, bar
        done += k
        if progress and bar is None:
            # Created at the first result, i.e. after the worker processes exist: tqdm starts a
            # monitor thread, and a process with threads is not forked (see _run_in_processes).
            from tqdm import tqdm
            bar = tqdm(total=n, initial=done - k, desc="audio metrics", unit="utt")
        if bar is not None:
            bar.update(k)
        if callback is not None:
            callback(done, n)

    items = list(groups.items())
    try:
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
    finally:
        if bar is not None:
            bar.close()

    out = pd.DataFrame({c: cols[c] for c in AUDIO_METRIC_COLUMNS}, index=table.index)
    out["audio_error"] = out["audio_error"].astype(pd.StringDtype("pyarrow"))
    return out
