"""Signal side of sde: read an utterance's segment, encode it, summarise it for display, measure it.

Everything here works on the *segment* an utterance names (``offset``, ``duration``), never on the
whole file: soundfile seeks to the first frame and reads only the frames asked for, so a 20 s
segment costs the same inside a 1-minute file as inside a 30-minute one. Display data is bounded
(envelope ≤ ``max_points`` points, spectrogram ≤ ``max_frames`` × ``max_bins``) whatever the length.

Long segments are never held whole: :func:`open_segment` gives a :class:`SegmentReader` that reads
block by block, :class:`WavStream` and :func:`ogg_stream` encode from it as they are read, and
:func:`display_data` reduces it to the figure's envelope and spectrogram in one pass. Memory per
request is then a few blocks, whatever the segment's length (a 60-minute utterance included).

Formats: whatever libsndfile reads (WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3, AIFF, …); anything else
goes through an ``ffmpeg`` subprocess that decodes only the segment (``-ss``/``-t``), or through
audioread (via librosa) when ffmpeg is not installed.

This module imports only numpy and soundfile at import time (pandas, librosa lazily): it is
imported by the metric worker processes, where start-up time counts.
"""

from __future__ import annotations

import errno
import functools
import io
import json
import logging
import math
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import soundfile as sf

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "AUDIO_METRIC_COLUMNS",
    "AudioError",
    "BLOCK_FRAMES",
    "DB_FLOOR",
    "DisplayData",
    "IN_MEMORY_MAX_FRAMES",
    "MAX_SECONDS",
    "Segment",
    "SegmentReader",
    "WavStream",
    "audio_metrics",
    "compute_audio_metrics",
    "display_data",
    "envelope",
    "file_info",
    "ogg_bytes",
    "ogg_stream",
    "open_segment",
    "read_segment",
    "spectrogram",
    "wav_bytes",
    "wav_header",
]

log = logging.getLogger(__name__)

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

#: Segments up to this many frames may be decoded whole (8 MB of mono float32: 131 s at 16 kHz,
#: 43.7 s at 48 kHz) and cached by the routes; longer ones are only ever read block by block.
IN_MEMORY_MAX_FRAMES = 1 << 21
#: Frames per block when a segment is read, encoded or summarised piece by piece. Also the most
#: frames handed to libvorbis in one write: one write of 2**21 frames overflows the stack (SIGSEGV).
BLOCK_FRAMES = 1 << 16
#: Offsets and durations are seconds from 0 to this (~31 years). Larger values are manifest
#: errors, and their frame numbers would overflow (1e308 s × 16 kHz is inf).
MAX_SECONDS = 1e9

_FFMPEG_TIMEOUT_S = 120.0


class AudioError(Exception):
    """A segment that cannot be read. ``str(exc)`` names the file and why, for users.

    ``reason`` is a short machine-readable kind: ``not_found``, ``permission``, ``not_a_file``,
    ``empty``, ``unreadable`` (not a sound file / corrupt / unsupported), ``truncated``,
    ``offset`` (segment starts beyond the end), ``invalid`` (bad offset/duration values; then
    ``field`` names the manifest field and ``value`` holds its value).
    HTTP routes map ``not_found`` to 404 and the rest to 422.
    """

    def __init__(self, path: str, why: str, reason: str = "unreadable", *,
                 field: str | None = None, value: float | None = None) -> None:
        self.path = str(path)
        self.why = why
        self.reason = reason
        self.field = field
        self.value = value
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


def _check_times(path: str, offset: float, duration: float | None) -> None:
    """An offset or duration no file can satisfy is a manifest error: name the field, the value
    and the fix (``duration=None`` means "to the end of the file" and is always fine)."""
    for field, value in (("offset", offset), ("duration", duration)):
        if value is None or (math.isfinite(value) and 0.0 <= value <= MAX_SECONDS):
            continue
        raise AudioError(path, f"invalid {field} {value:g} in the manifest: it must be a number "
                               f"of seconds from 0 to {MAX_SECONDS:g}; fix this line's "
                               f'"{field}"', "invalid", field=field, value=value)


def _frame_range(path: str, offset: float, duration: float | None, sample_rate: int,
                 total_frames: int, truncated: bool, *, strict: bool = False,
                 announced_s: float | None = None) -> tuple[int, int]:
    """First frame and frame count of a segment, validated against the file's length.

    A segment running past the end of a complete file is shortened (the manifest's durations
    are rounded). ``strict`` (serving, display): a segment running more than DURATION_TOLERANCE
    past the end of a *truncated* file is an error, not silently shorter audio."""
    _check_times(path, offset, duration)
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
    if duration is None:
        return start, total_frames - start
    count = int(round(duration * sample_rate))
    missing_s = (start + count - total_frames) / sample_rate
    if strict and truncated and missing_s > DURATION_TOLERANCE:
        raise _truncated(path, offset + duration, f"has {file_s:.3f} s", announced_s)
    return start, min(count, total_frames - start)


def _truncated(path: str, end_s: float, has: str, announced_s: float | None) -> AudioError:
    header = f" (its header announces {announced_s:.3f} s)" if announced_s else ""
    return AudioError(path, f"truncated file: expected audio up to {end_s:.3f} s (the end of the "
                            f"segment), the file {has}{header}", "truncated")


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


_DATA_CLAIM = re.compile(r"^\s*(?:data|ssnd)\s*:\s*(\d+)\s*\(should be\s*(\d+)\)", re.I | re.M)


def _announced_seconds(f: sf.SoundFile, file_s: float) -> float | None:
    """The length a truncated file's header claims: its data size over the size really there."""
    m = _DATA_CLAIM.search(f.extra_info or "")
    if not m or int(m.group(2)) <= 0:
        return None
    return file_s * int(m.group(1)) / int(m.group(2))


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


def _ffmpeg_cmd(path: str, offset: float, duration: float | None) -> list[str]:
    # -ss before -i seeks in the input (fast: only the segment is decoded); native rate and
    # channel layout are kept so the numbers match what soundfile would report.
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{offset:.6f}"]
    if duration is not None:
        cmd += ["-t", f"{max(0.0, duration):.6f}"]
    return cmd + ["-i", path, "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-"]


def _offset_beyond_end(path: str, offset: float, file_s: float) -> AudioError:
    return AudioError(path, f"offset {offset:.3f} s is beyond the end of the file "
                            f"(the file is {file_s:.3f} s long)", "offset")


def _read_ffmpeg(path: str, offset: float, duration: float | None) -> _Raw:
    sr, ch, file_s = _ffprobe(path)
    _check_times(path, offset, duration)
    if math.isfinite(file_s) and offset >= file_s:
        raise _offset_beyond_end(path, offset, file_s)
    proc = subprocess.run(_ffmpeg_cmd(path, offset, duration), capture_output=True,
                          timeout=_FFMPEG_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise ValueError(proc.stderr.decode("utf-8", "replace").strip() or "ffmpeg failed")
    data = np.frombuffer(proc.stdout, dtype="<f4")
    data = data[: len(data) // ch * ch].reshape(-1, ch).astype(np.float32, copy=True)
    if duration is not None:
        data = data[: max(0, int(round(duration * sr)))]
    return _Raw(data, sr, ch, file_s, False)


def _read_audioread(path: str, offset: float, duration: float | None) -> _Raw:
    import librosa  # lazy: slow to import, and only needed without ffmpeg

    y, sr = librosa.load(path, sr=None, mono=False, offset=offset,
                         duration=None if duration is None else max(0.0, duration))
    y = np.atleast_2d(np.asarray(y, dtype=np.float32)).T  # librosa: (channels, n) → (n, channels)
    try:
        file_s = float(librosa.get_duration(path=path))
    except Exception:  # noqa: BLE001 - the length is a nicety here
        file_s = float("nan")
    if len(y) == 0 and math.isfinite(file_s) and offset >= file_s:
        raise _offset_beyond_end(path, offset, file_s)
    return _Raw(y, int(sr), y.shape[1], file_s, False)


def _times(offset: float | None, duration: float | None) -> tuple[float, float | None]:
    return (0.0 if offset is None else float(offset)), (None if duration is None else float(duration))


def _not_audio(path: str, sf_reason: str, exc: BaseException) -> AudioError:
    ext = os.path.splitext(path)[1].lower()
    what = "not a sound file, or corrupt"
    if ext:
        what += f" (extension {ext!r})"
    return AudioError(path, f"{what}: libsndfile says \"{sf_reason}\"; "
                            f"fallback decoder says \"{_short(exc, path)}\"", "unreadable")


def _read_raw(path: str, offset: float = 0.0, duration: float | None = None) -> _Raw:
    """The segment with every channel, leniently (metrics): a segment running past the end of a
    truncated file comes back shortened and flagged rather than refused."""
    path = os.fspath(path)
    offset, duration = _times(offset, duration)
    _check_times(path, offset, duration)
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
        raise _not_audio(path, sf_reason, exc) from None


def _short(exc: BaseException, path: str = "") -> str:
    text = " ".join(str(exc).split())
    if path:  # ffmpeg prefixes its messages with the input path, which we already name
        text = text.replace(f"{path}: ", "")
    return (text[:200] + "…") if len(text) > 200 else (text or type(exc).__name__)


def _mono(data: np.ndarray) -> np.ndarray:
    if data.shape[1] == 1:
        return data[:, 0]
    return data.mean(axis=1, dtype=np.float32)


class SegmentReader:
    """One segment of an audio file, open for reading piece by piece as mono float32 in [-1, 1].

    ``frames`` is the segment's length: exact for what libsndfile reads; for the ffmpeg fallback
    the container's duration, which :meth:`read` honours (padding with silence or cutting).
    Nothing is decoded until asked for, so serving or summarising a 60-minute segment holds one
    block at a time. A context manager; :meth:`close` releases the file (or decoder process).
    """

    #: ``frames`` is the decoded length itself, not the container's estimate.
    exact = True
    #: Seconds a truncated file's header claims (for messages), when known.
    _announced: float | None = None

    def __init__(self, path: str, offset: float, sample_rate: int, channels: int, frames: int,
                 file_duration: float, truncated: bool) -> None:
        self.path = path
        self.offset = offset
        self.sample_rate = sample_rate
        self.channels = channels
        self.frames = frames
        self.file_duration = file_duration
        self.truncated = truncated
        self._warned = False

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    @property
    def fits_in_memory(self) -> bool:
        return self.frames <= IN_MEMORY_MAX_FRAMES

    def _read_raw(self, start: int, count: int) -> np.ndarray:
        """Up to ``count`` frames from segment frame ``start``, (frames, channels) float32."""
        raise NotImplementedError

    def check_end(self) -> None:
        """Raise "truncated" now if the data ends before the segment does (see subclasses)."""

    def read(self, start: int, count: int) -> np.ndarray:
        """Frames [start, start + count) of the segment (clamped to it), mono, in [-1, 1].

        Always exactly that many frames: data the decoder cannot deliver (a file damaged after
        it was opened) reads as silence and is logged, because a response that announced its
        length has to keep its word."""
        start = max(0, min(int(start), self.frames))
        count = max(0, min(int(count), self.frames - start))
        out = np.zeros(count, dtype=np.float32)
        try:
            raw = self._read_raw(start, count)
        except AudioError as exc:
            self._warn(exc.why)
            return out
        got = min(len(raw), count)
        if got:
            np.clip(_mono(raw[:got]), -1.0, 1.0, out=out[:got])
        if got < count and self.exact:
            self._warn(f"the data ends {(count - got) / self.sample_rate:.3f} s early")
        return out

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s: %s; serving silence in its place", self.path, why)

    def blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """The whole segment as consecutive mono blocks of ``block_frames`` (the last shorter)."""
        for start in range(0, self.frames, block_frames):
            yield self.read(start, min(block_frames, self.frames - start))

    def segment(self) -> Segment:
        """The whole segment in memory (mono: a multi-channel file is mixed block by block).

        A file whose data ends more than DURATION_TOLERANCE before the segment does is an error
        ("truncated", expected vs. actual end), not silently shorter audio."""
        out = np.empty(self.frames, dtype=np.float32)
        got = 0
        while got < self.frames:
            count = min(BLOCK_FRAMES, self.frames - got)
            raw = self._read_raw(got, count)
            n = min(len(raw), count)
            np.clip(_mono(raw[:n]), -1.0, 1.0, out=out[got:got + n])
            got += n
            if n < count:
                break
        if self.exact and (self.frames - got) / self.sample_rate > DURATION_TOLERANCE:
            end = self.offset + self.frames / self.sample_rate
            has = f"has data up to {self.offset + got / self.sample_rate:.3f} s"
            raise _truncated(self.path, end, has, self._announced)
        return self._segment(out[:got], self.truncated or got < self.frames)

    def _segment(self, samples: np.ndarray, truncated: bool) -> Segment:
        return Segment(samples=samples, sample_rate=self.sample_rate, channels=self.channels,
                       path=self.path, offset=self.offset,
                       duration=len(samples) / self.sample_rate,
                       file_duration=self.file_duration, truncated=truncated)

    def close(self) -> None:
        """Release the file; reading after this is an error."""

    def __enter__(self) -> "SegmentReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SoundfileReader(SegmentReader):
    """A segment of a file libsndfile decodes (seekable: blocks are read where they are)."""

    def __init__(self, path: str, offset: float, duration: float | None) -> None:
        f = sf.SoundFile(path)
        try:
            sr, channels, total = int(f.samplerate), int(f.channels), int(f.frames)
            truncated = _header_overstates(f)
            announced = _announced_seconds(f, total / sr) if truncated else None
            start, count = _frame_range(path, offset, duration, sr, total, truncated,
                                        strict=True, announced_s=announced)
        except BaseException:
            f.close()
            raise
        super().__init__(path, offset, sr, channels, count, total / sr, truncated)
        self._f = f
        self._first = start
        self._next: int | None = None  # file frame the decoder stands at (None: unknown)
        # FLAC/MP3 headers announce the full length even when the data stops early.
        self._announced = announced or total / sr

    def _read_raw(self, start: int, count: int) -> np.ndarray:
        pos = self._first + start
        if pos == self._next:  # sequential blocks: no seek (FLAC/MP3 seeks cost a decode)
            try:
                data = self._f.read(count, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                self._next = None
                raise AudioError(self.path, f"corrupt or truncated audio data ({_sf_reason(exc)})",
                                 "truncated") from None
        else:
            data = _seek_read(self._f, self.path, pos, count)
        self._next = pos + len(data)
        return data

    def check_end(self) -> None:
        """Compressed files (FLAC, MP3) learn where their data really ends only when decoding
        gets there: read the segment's last frame now (give or take DURATION_TOLERANCE), so a
        truncated file is refused before a streamed response announces a length it cannot keep."""
        if self.frames == 0:
            return
        slack = min(self.frames - 1, int(DURATION_TOLERANCE * self.sample_rate))
        try:
            self._f.seek(self._first + self.frames - 1 - slack)
            ok = len(self._f.read(1, dtype="float32", always_2d=True)) == 1
        except (sf.LibsndfileError, RuntimeError):
            ok = False
        self._next = None
        if not ok:
            raise _truncated(self.path, self.offset + self.duration, "has less data than that",
                             self._announced)

    def close(self) -> None:
        self._f.close()


class _FfmpegReader(SegmentReader):
    """A segment of a file only ffmpeg decodes (AAC/M4A, WMA, …): its length is the container's
    estimate; sequential blocks come from one ``ffmpeg`` pipe, a jump restarts it at the spot."""

    exact = False

    def __init__(self, path: str, offset: float, duration: float | None) -> None:
        sr, channels, file_s = _ffprobe(path)
        if math.isfinite(file_s) and offset >= file_s:
            raise _offset_beyond_end(path, offset, file_s)
        seconds = duration
        if math.isfinite(file_s):
            seconds = file_s - offset if duration is None else min(duration, file_s - offset)
        # Unknown length (no duration, no container length): small enough to decode whole.
        frames = 0 if seconds is None else int(round(seconds * sr))
        super().__init__(path, offset, sr, channels, frames, file_s, False)
        self._duration = duration
        self._length_known = seconds is not None
        self._proc: subprocess.Popen | None = None
        self._pos = -1

    @property
    def fits_in_memory(self) -> bool:
        return not self._length_known or super().fits_in_memory

    def segment(self) -> Segment:
        raw = _read_ffmpeg(self.path, self.offset, self._duration)
        return self._segment(np.clip(_mono(raw.data), -1.0, 1.0), False)

    def _read_raw(self, start: int, count: int) -> np.ndarray:
        if self._proc is None or start != self._pos:
            self._stop()
            cmd = _ffmpeg_cmd(self.path, self.offset + start / self.sample_rate,
                              (self.frames - start) / self.sample_rate)
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
        frame_bytes = 4 * self.channels
        data = self._proc.stdout.read(count * frame_bytes) if self._proc.stdout else b""
        n = len(data) // frame_bytes
        self._pos = start + n
        return np.frombuffer(data[: n * frame_bytes], dtype="<f4").reshape(n, self.channels)

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None

    def close(self) -> None:
        self._stop()


class _ArrayReader(SegmentReader):
    """A segment already decoded whole (the audioread fallback, when ffmpeg is missing)."""

    def __init__(self, path: str, offset: float, raw: _Raw) -> None:
        super().__init__(path, offset, raw.sample_rate, raw.channels, len(raw.data),
                         raw.file_duration, raw.truncated)
        self._data = raw.data

    def _read_raw(self, start: int, count: int) -> np.ndarray:
        return self._data[start:start + count]


def open_segment(path: str, offset: float = 0.0, duration: float | None = None) -> SegmentReader:
    """Open ``duration`` seconds from ``offset`` (to the end of file when ``None``) for reading.

    Every check that can fail is made here, before any audio is served: missing/unreadable file,
    invalid offset or duration, offset beyond the end, and — for a segment too long to decode
    whole — a file whose data ends before the segment does (a segment running more than
    ``DURATION_TOLERANCE`` past the end of a truncated file is refused, not shortened).
    """
    path = os.fspath(path)
    offset, duration = _times(offset, duration)
    _check_times(path, offset, duration)
    _check_file(path)
    reader: SegmentReader
    try:
        reader = _SoundfileReader(path, offset, duration)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        sf_reason = _sf_reason(exc)
        reader = _open_fallback(path, offset, duration, sf_reason)
    except OSError as exc:  # raced with a delete/chmod after _check_file
        raise AudioError(path, f"cannot read the file ({exc.strerror or exc})", "unreadable") from None
    if not reader.fits_in_memory:
        try:
            reader.check_end()
        except BaseException:
            reader.close()
            raise
    return reader


def _open_fallback(path: str, offset: float, duration: float | None, sf_reason: str) -> SegmentReader:
    try:
        if shutil.which("ffmpeg") and shutil.which("ffprobe"):
            return _FfmpegReader(path, offset, duration)
        return _ArrayReader(path, offset, _read_audioread(path, offset, duration))
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoder failure means the same to the user
        raise _not_audio(path, sf_reason, exc) from None


def read_segment(path: str, offset: float = 0.0, duration: float | None = None) -> Segment:
    """Read ``duration`` seconds from ``offset`` (to the end of file when ``None``), as mono float32.

    Only the segment is read (seek + read of exactly those frames). A segment running past the
    end of a complete file is returned shortened (``Segment.duration`` says how long); one that
    starts at or past the end, or runs past the end of a truncated file, raises
    :class:`AudioError` giving the file's real length. The whole segment is held in memory:
    for segments of any length use :func:`open_segment`.
    """
    with open_segment(path, offset, duration) as reader:
        return reader.segment()


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


def wav_header(frames: int, sample_rate: int) -> bytes:
    """The 44-byte header of a mono 16-bit PCM WAV file of ``frames`` frames."""
    size = 2 * frames
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + size, b"WAVE", b"fmt ", 16,
                       1, 1, sample_rate, sample_rate * 2, 2, 16, b"data", size)


def _pcm16(samples: np.ndarray) -> bytes:
    return np.rint(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def wav_bytes(segment: Segment) -> bytes:
    """The segment as a mono 16-bit PCM WAV file (browsers play it everywhere)."""
    # A hand-written header: faster than a codec round trip and exactly what we mean.
    return wav_header(len(segment.samples), int(segment.sample_rate)) + _pcm16(segment.samples)


class WavStream(io.RawIOBase):
    """A segment as a mono 16-bit WAV file, decoded only where it is read.

    Seekable, with its full ``size`` known up front, so HTTP Range requests work; reading any
    part costs the blocks under it, never the whole segment. Closing it closes the reader.
    """

    def __init__(self, reader: SegmentReader) -> None:
        super().__init__()
        self._reader = reader
        self._header = wav_header(reader.frames, int(reader.sample_rate))
        self.size = len(self._header) + 2 * reader.frames
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + int(pos))
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self._pos, 2 * BLOCK_FRAMES)
        if n <= 0:
            return 0
        chunk = self._bytes(self._pos, self._pos + n)
        buffer[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def _bytes(self, a: int, b: int) -> bytes:
        head = len(self._header)
        out = self._header[a:b] if a < head else b""
        a = max(a, head) - head
        b -= head
        if b > a:
            first = a // 2
            pcm = _pcm16(self._reader.read(first, (b + 1) // 2 - first))
            out += pcm[a - 2 * first: b - 2 * first]
        return out

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


class _ByteSink:
    """The file-like object libsndfile writes an Ogg stream into; bytes are taken as they come."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        # libsndfile asks for the size when it opens the file; an Ogg stream is written
        # front to back and never rewritten, so "here" is the only answer needed.
        return self._written

    def read(self, size: int = -1) -> bytes:
        return b""

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _ogg_chunks(blocks: Iterable[np.ndarray], sample_rate: int) -> Iterator[bytes]:
    sink = _ByteSink()
    wrote = False
    with sf.SoundFile(sink, "w", samplerate=int(sample_rate), channels=1, format="OGG",
                      subtype="VORBIS") as f:
        for block in blocks:
            # Never more than BLOCK_FRAMES per write: libvorbis overflows the stack on ~2**21.
            for i in range(0, len(block), BLOCK_FRAMES):
                f.write(np.ascontiguousarray(block[i:i + BLOCK_FRAMES], dtype=np.float32))
                wrote = True
            chunk = sink.take()
            if chunk:
                yield chunk
        if not wrote:  # libvorbis needs at least one sample to write a valid stream
            f.write(np.zeros(1, dtype=np.float32))
    yield sink.take()


def ogg_bytes(segment: Segment) -> bytes:
    """The segment as mono Ogg Vorbis: ~7x smaller than the WAV, for the inspector's player, so a
    20 s view stays well under its transfer budget (the WAV route stays for lossless listening)."""
    return b"".join(_ogg_chunks([np.clip(segment.samples, -1.0, 1.0)], segment.sample_rate))


def ogg_stream(reader: SegmentReader) -> Iterator[bytes]:
    """The reader's segment as mono Ogg Vorbis, encoded block by block as it is consumed (the
    length is unknown until the end, so a streamed Ogg has no Content-Length and no Range)."""
    yield from _ogg_chunks(reader.blocks(), reader.sample_rate)


# --------------------------------------------------------------------------------------------
# Display data


class _Envelope:
    """Min/max per bucket of ``k`` consecutive samples, fed block by block (any block sizes)."""

    def __init__(self, n: int, sample_rate: int, max_points: int) -> None:
        self.k = max(1, -(-n // max(1, int(max_points))))  # ceil: bucket size
        self.sample_rate = sample_rate
        buckets = -(-n // self.k)
        self.mins = np.full(buckets, np.inf, dtype=np.float32)
        self.maxs = np.full(buckets, -np.inf, dtype=np.float32)
        self.pos = 0

    def feed(self, x: np.ndarray) -> None:
        if len(x) == 0:
            return
        first = (-self.pos) % self.k  # where the first bucket starting in x starts
        starts = np.arange(first, len(x), self.k)
        if first:  # x begins inside a bucket started by the previous block
            starts = np.concatenate(([0], starts))
        buckets = (self.pos + starts) // self.k
        self.mins[buckets] = np.minimum(self.mins[buckets], np.minimum.reduceat(x, starts))
        self.maxs[buckets] = np.maximum(self.maxs[buckets], np.maximum.reduceat(x, starts))
        self.pos += len(x)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        filled = -(-self.pos // self.k)
        times = np.arange(filled, dtype=np.float64) * self.k / self.sample_rate
        return times, self.mins[:filled].copy(), self.maxs[:filled].copy()


def envelope(samples: np.ndarray, sample_rate: int,
             max_points: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max envelope: ``(times_s, mins, maxs)``, at most ``max_points`` points.

    Bucket ``i`` covers ``k`` consecutive samples starting at ``times[i]`` (seconds from the
    segment's start; the last bucket may be shorter); ``mins``/``maxs`` are its extremes, so the
    band always contains every sample. Short signals are returned sample by sample.
    """
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    env = _Envelope(len(x), sample_rate, max_points)
    env.feed(x)
    return env.result()


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


class _PowerColumns:
    """The power spectrogram of an ``n``-sample signal fed block by block, pooled on the fly into
    at most ``max_frames`` columns: memory is one block plus the columns, whatever ``n``.

    Frames are those of a centred STFT (Hann window ≥ 25 ms, zero padding of n_fft/2 at both
    ends). The hop is half a window, widened for long signals to at most ~8 frames per column,
    so very long segments are strided (frames sampled evenly), not read twice.
    """

    def __init__(self, n: int, sample_rate: int, max_frames: int) -> None:
        self.sample_rate = sample_rate
        self.n_fft = n_fft = _n_fft(sample_rate)
        self.pad = n_fft // 2
        max_frames = max(1, int(max_frames))
        # 50 % overlap: Hann windows then sum to a constant, so every sample weighs the same in
        # the pooled columns; more overlap would only add work (columns average many frames).
        self.hop = max(n_fft // 2, -(-n // (max_frames * 8)))
        self.padded_len = max(n + 2 * self.pad, n_fft)
        self.n_frames = 1 + (self.padded_len - n_fft) // self.hop
        self.group = -(-self.n_frames // max_frames)
        n_cols = -(-self.n_frames // self.group)
        self.sums = np.zeros((n_cols, n_fft // 2 + 1), dtype=np.float64)
        self.counts = np.zeros(n_cols, dtype=np.int64)
        self.window = _hann(n_fft)
        # |X| of a full-scale sine is sum(window)/2: normalise so such a tone reads 0 dB.
        self.scale = np.float32((self.window.sum() / 2.0) ** 2)
        self.buf = np.zeros(self.pad, dtype=np.float32)  # padded-signal samples from buf_start
        self.buf_start = 0
        self.stream_pos = self.pad  # padded index of the next sample fed
        self.next_frame = 0

    def feed(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32)
        # > 0 after a jump: the next frame starts past what came so far (hop > window).
        drop = self.buf_start + len(self.buf) - self.stream_pos
        self.stream_pos += len(x)
        if drop > 0:
            x = x[drop:]
        if len(x) == 0 or self.next_frame >= self.n_frames:
            return
        self.buf = np.concatenate((self.buf, x)) if len(self.buf) else x
        self._frames_in_buffer()

    def _frames_in_buffer(self) -> None:
        end = self.buf_start + len(self.buf)
        last = min(self.n_frames, (end - self.n_fft) // self.hop + 1) if end >= self.n_fft else 0
        if last > self.next_frame:
            first = self.next_frame
            view = np.lib.stride_tricks.sliding_window_view(self.buf, self.n_fft)
            at = first * self.hop - self.buf_start
            frames = view[at: at + (last - first - 1) * self.hop + 1: self.hop]
            spec = _rfft(frames * self.window)
            power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32, copy=False)
            cols = np.arange(first, last) // self.group
            bounds = np.flatnonzero(np.diff(cols, prepend=-1))
            self.sums[cols[bounds]] += np.add.reduceat(power, bounds, axis=0)
            self.counts[cols[bounds]] += np.diff(np.append(bounds, len(cols)))
            self.next_frame = last
        keep_from = self.next_frame * self.hop
        if keep_from >= end:
            self.buf = self.buf[:0]
            self.buf_start = keep_from
        elif keep_from > self.buf_start:
            self.buf = self.buf[keep_from - self.buf_start:]
            self.buf_start = keep_from

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(times of the column centres in s, mean power per column (columns, n_fft/2 + 1))."""
        tail = self.padded_len - self.stream_pos
        if tail > 0:
            self.feed(np.zeros(tail, dtype=np.float32))
        used = self.counts > 0
        power = (self.sums[used] / self.counts[used, None] / self.scale).astype(np.float32)
        cols = np.flatnonzero(used)
        first = cols * self.group
        last = np.minimum(first + self.group, self.n_frames) - 1
        times = (first + last) / 2.0 * self.hop / self.sample_rate
        return times, power


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


def _power_to_db(times: np.ndarray, power: np.ndarray, sample_rate: int, n_fft: int, kind: str,
                 max_bins: int, n_mels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if kind not in ("linear", "mel"):
        raise ValueError(f"kind must be 'linear' or 'mel', not {kind!r}")
    max_bins = max(1, int(max_bins))
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
    # log10 in float32 puts the floor at -120.00001: clamp, so silence reads DB_FLOOR exactly.
    db = np.maximum(db, np.float32(DB_FLOOR))
    return times, np.array(freqs, dtype=np.float64), np.ascontiguousarray(db.T, dtype=np.float32)


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
    cols = _PowerColumns(len(x), sample_rate, max_frames)
    cols.feed(x)
    times, power = cols.finish()
    return _power_to_db(times, power, sample_rate, cols.n_fft, kind, max_bins, n_mels)


@dataclass
class DisplayData:
    """What the waveform + spectrogram figure shows of a segment, bounded whatever its length:
    the min/max envelope and the pooled power spectrogram (either kind is derived from it)."""

    sample_rate: int
    duration: float          # s
    env_times: np.ndarray    # s, bucket starts
    env_mins: np.ndarray
    env_maxs: np.ndarray
    spec_times: np.ndarray   # s, column centres
    power: np.ndarray        # (columns, n_fft/2 + 1) mean power, full scale = 1
    n_fft: int

    def spectrogram(self, kind: str = "linear", max_bins: int = 256,
                    n_mels: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(times_s, freqs_hz, db)`` as :func:`spectrogram` gives them."""
        return _power_to_db(self.spec_times, self.power, self.sample_rate, self.n_fft, kind,
                            max_bins, n_mels)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.env_times, self.env_mins, self.env_maxs,
                                      self.spec_times, self.power))


def display_data(source: Segment | SegmentReader, max_points: int = 2000,
                 max_frames: int = 400) -> DisplayData:
    """Envelope (≤ ``max_points``) and spectrogram (≤ ``max_frames`` columns) of a segment, in
    one pass over it: a :class:`SegmentReader` is read block by block, never held whole."""
    sr = int(source.sample_rate)
    if isinstance(source, Segment):
        n, blocks = len(source.samples), iter([source.samples])
    else:
        n, blocks = source.frames, source.blocks()
    env = _Envelope(n, sr, max_points)
    cols = _PowerColumns(n, sr, max_frames)
    for block in blocks:
        env.feed(block)
        cols.feed(block)
    env_times, mins, maxs = env.result()
    spec_times, power = cols.finish()
    return DisplayData(sr, n / sr, env_times, mins, maxs, spec_times, power, cols.n_fft)


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
            from sde.progress import progress_bar  # a tqdm bar on a terminal, one plain line in a log
            bar = progress_bar(n, "audio metrics", unit="utt", initial=done - k)
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
