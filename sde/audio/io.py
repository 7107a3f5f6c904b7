"""Reading audio: one reader, one fallback chain (libsndfile → ffmpeg → audioread).

Everything here works on the *segment* an utterance names (``offset``, ``duration``), never on the
whole file: soundfile seeks to the first frame and reads only the frames asked for, so a 20 s
segment costs the same inside a 1-minute file as inside a 30-minute one.

Long segments are never held whole: :func:`open_segment` gives a :class:`SegmentReader` that reads
block by block (the encoders of :mod:`sde.audio.encode` and the display reduction of
:mod:`sde.audio.dsp` consume it as they go). :func:`read_segment` decodes a segment whole, mono;
:func:`read_channels` decodes it whole with every channel, leniently (metrics, transcription).

Formats: whatever libsndfile reads (WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3, AIFF, …); anything else
goes through an ``ffmpeg`` subprocess that decodes only the segment (``-ss``/``-t``), or through
audioread (via librosa) when ffmpeg is not installed. Every failure is an :class:`AudioError` that
names the file and why.

Imports only numpy and soundfile at import time (librosa lazily): the metric worker processes
import this package, and their start-up time counts.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import soundfile as sf

from sde.audio.inputs import AudioInput, _Guarded, as_input, shown_name, store_failed, utf8_spelling, written_name

__all__ = [
    "AudioError",
    "BLOCK_FRAMES",
    "DURATION_TOLERANCE",
    "IN_MEMORY_MAX_FRAMES",
    "MAX_SECONDS",
    "RawAudio",
    "Segment",
    "SegmentReader",
    "ChannelSelection",
    "file_info",
    "file_kind",
    "channel_selection",
    "select_channels",
    "open_segment",
    "read_channels",
    "read_segment",
    "to_mono",
]

log = logging.getLogger(__name__)

#: A duration mismatch is flagged above this many seconds (the manifest's durations are rounded);
#: also how far a segment may run past the end of a truncated file before it is refused.
DURATION_TOLERANCE = 0.1
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
    ``field`` names the manifest field and ``value`` holds its value); for a file in an object
    store, ``timeout`` or ``store_error`` when the store did not answer or failed
    (:data:`~sde.audio.inputs.STORE_REASONS`: a state of the store, not of the file), and
    ``permission`` when it refused (:attr:`store_failed` tells those from answers about the file).
    """

    def __init__(self, path: str, why: str, reason: str = "unreadable", *,
                 field: str | None = None, value: float | None = None) -> None:
        self.path = written_name(str(path))  # as the manifest wrote it, not as local_name spelt it for the OS
        self.why = why
        self.reason = reason
        self.field = field
        self.value = value
        super().__init__(f"{self.path}: {why}")

    @property
    def store_failed(self) -> bool:
        """Whether the object store holding the file failed, did not answer or refused (the next
        try may get it), rather than the file being missing or no usable audio."""
        return store_failed(self.reason, self.path)


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
class RawAudio:
    """A decoded segment before the mono mix-down (metrics look at every channel)."""

    data: np.ndarray      # float32, shape (frames, channels)
    sample_rate: int
    channels: int
    file_duration: float
    truncated: bool
    #: What a strict read refuses the segment with (:func:`truncation_error`): it runs past the end
    #: of a truncated file. The data holds what is there; the measures record this as the error.
    truncation: AudioError | None = None


def check_file(path: str | AudioInput) -> None:
    """Turn the common 'cannot even open it' cases into precise messages before decoding."""
    if isinstance(path, AudioInput):
        if path.size() == 0:
            raise AudioError(path, "zero-byte file (empty, no audio)", "empty")
        return
    if "\x00" in path:  # no file system names a file so (os.stat raises ValueError, not OSError)
        raise AudioError(path.replace("\x00", "\\x00"), "the audio path holds a NUL character (\\x00), which "
                         "no file name can; fix audio_filepath in the manifest", "not_found")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(path, f"file not found{_locale_hint(path)}", "not_found") from None
    except UnicodeEncodeError:  # a name the locale's encoding cannot spell, nor under its UTF-8 bytes
        raise AudioError(path, f"file not found{_locale_hint(path)}", "not_found") from None
    except PermissionError:
        raise AudioError(path, "permission denied", "permission") from None
    except OSError as exc:  # e.g. ENOTDIR when a parent is a file, ENAMETOOLONG
        if exc.errno == errno.ENOTDIR:
            raise AudioError(path, "file not found", "not_found") from None
        raise AudioError(path, f"cannot access the file ({exc.strerror})", "unreadable") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(path, "is a directory, not an audio file: point audio_filepath at an audio file",
                         "not_a_file")
    if not stat.S_ISREG(st.st_mode):  # its size says nothing: a pipe or /dev/zero reads as 0 bytes
        # never opened: opening a named pipe blocks until something writes to it
        raise AudioError(path, f"not a regular file (a pipe, socket or device): it is {file_kind(st.st_mode)}; "
                         "point audio_filepath at an audio file", "not_a_file")
    if st.st_size == 0:
        raise AudioError(path, "zero-byte file (empty, no audio)", "empty")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied", "permission")


def _locale_hint(path: str) -> str:
    """Why a file with a non-ASCII name may be there and still not found: a locale whose file names
    are not UTF-8 (under both spellings tried, :func:`~sde.audio.inputs.local_name`)."""
    if utf8_spelling(written_name(path)) is None:
        return ""
    lang = os.environ.get("LC_ALL") or os.environ.get("LC_CTYPE") or os.environ.get("LANG") or "unset"
    return (f" (this locale encodes file names as {sys.getfilesystemencoding()}, LANG={lang}; if the file is "
            "stored under another encoding of its name, run with PYTHONUTF8=1 or a UTF-8 locale)")


def file_kind(mode: int) -> str:
    """What a file system entry that is not a regular file is, for messages ("a named pipe")."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _check_times(path: str, offset: float, duration: float | None) -> None:
    """An offset or duration no file can satisfy is a manifest error: name the field, the value
    and the fix (``duration=None`` means "to the end of the file" and is always fine)."""
    for field, value in (("offset", offset), ("duration", duration)):
        if value is None or (math.isfinite(value) and 0.0 <= value <= MAX_SECONDS):
            continue
        raise AudioError(path, f"invalid {field} {value:g} in the manifest: it must be a number "
                               f"of seconds from 0 to {MAX_SECONDS:g}; fix this line's "
                               f'"{field}"', "invalid", field=field, value=value)


def segment_frames(duration: float, sample_rate: int) -> int:
    """Frames of a segment of ``duration`` seconds: at least one for any duration above 0. A segment
    of 1e-5 s at 16 kHz (0.16 frames) rounded to none, and its empty WAV failed in the browser; the
    manifest names a segment there, so its one nearest frame is it (0 s reads no frame: file_info)."""
    frames = int(round(duration * sample_rate))
    return max(frames, 1) if duration > 0 else frames


def frame_range(path: str, offset: float, duration: float | None, sample_rate: int,
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
        if truncated:
            raise AudioError(path, f"offset {offset:.3f} s is beyond the end of the file (the file is {file_s:.3f} s "
                                   f"long); the file is truncated (its header announces more audio than it holds): "
                                   f"{_TRUNCATED_FIX}", "truncated")
        raise _offset_beyond_end(path, offset, file_s)
    if duration is None:
        return start, total_frames - start
    count = segment_frames(duration, sample_rate)
    short = truncation_error(path, offset, duration, sample_rate, total_frames, truncated,
                             announced_s) if strict else None
    if short is not None:
        raise short
    return start, min(count, total_frames - start)


def truncation_error(path: str | AudioInput, offset: float, duration: float | None, sample_rate: int,
                     total_frames: int, truncated: bool, announced_s: float | None = None) -> AudioError | None:
    """The "truncated file" error of a segment running more than DURATION_TOLERANCE past the end
    of a *truncated* file (its header announces more audio than it holds): what a strict
    :func:`frame_range` raises (serving, display, speech activity); the measures, which read what
    is there, record it as the segment's ``audio_error``. None for any other segment (a whole-file
    segment, a complete file's segment that the manifest's rounding lets run past the end)."""
    if not truncated or duration is None or not sample_rate:
        return None
    start = int(round(offset * sample_rate))
    count = segment_frames(duration, sample_rate)
    if (start + count - total_frames) / sample_rate <= DURATION_TOLERANCE:
        return None
    return _truncated(path, offset + duration, f"has {total_frames / sample_rate:.3f} s", announced_s)


def _truncated(path: str, end_s: float, has: str, announced_s: float | None) -> AudioError:
    header = f" (its header announces {announced_s:.3f} s)" if announced_s else ""
    return AudioError(path, f"truncated file: expected audio up to {end_s:.3f} s (the end of the "
                            f"segment), the file {has}{header}: {_TRUNCATED_FIX}", "truncated")


#: The fix of a file cut short (a copy or a download that stopped).
_TRUNCATED_FIX = "copy the file again from its source (a copy or download stopped early)"


class _OwningSoundFile(sf.SoundFile):
    """A SoundFile on a file object it closes with itself (``owned``: from the start; else once
    it is handed over, after an open that may be retried on the same file object)."""

    def __init__(self, raw: Any, owned: bool = True) -> None:
        self._raw = raw if owned else None  # before the parent's init: its __del__ closes even a file it refused
        super().__init__(raw)

    def close(self) -> None:
        try:
            super().close()
        finally:
            raw = getattr(self, "_raw", None)
            if raw is not None:
                raw.close()


def _soundfile(path: str | AudioInput) -> sf.SoundFile:
    """libsndfile on a path, or on an AudioInput's file object (decoded from memory or read with
    byte ranges: nothing is written to disk)."""
    if not isinstance(path, AudioInput):
        return sf.SoundFile(path)
    raw = None
    try:
        raw = path.open()
        if isinstance(raw, _Guarded):
            raw.prefetch()
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - the opener's failure, explained by the input
        if raw is not None:
            raw.close()
        why, reason = path.explain(exc)
        raise AudioError(path, why, reason) from None
    try:
        return _open_prefetched(path, raw) if isinstance(raw, _Guarded) else _OwningSoundFile(raw)
    except BaseException:
        raw.close()
        raise


def _open_prefetched(path: AudioInput, raw: _Guarded) -> sf.SoundFile:
    """libsndfile on a file read from the network, opened on the bytes fetched before (soundfile
    holds a process-wide lock while it opens: see PREFETCH_WHOLE_BYTES). An open that asked for
    more is discarded and tried again with those bytes fetched too."""
    while True:
        raw.seek(0)
        raw.offline = True
        f = None
        try:
            f = _OwningSoundFile(raw, owned=False)
        except Exception:  # noqa: BLE001 - maybe only for want of the bytes it was not given
            if not raw.missed:
                raise
        finally:
            raw.offline = False
        if f is not None and not raw.missed:
            f._raw = raw
            return f
        if f is not None:
            f.close()
        if not _fetched_missed(path, raw):  # past the bound (a header of megabytes): read as it goes
            raw.seek(0)
            f = _OwningSoundFile(raw, owned=False)
            f._raw = raw
            return f


def _fetched_missed(path: AudioInput, raw: _Guarded) -> bool:
    try:
        return raw.fetch_missed()
    except Exception as exc:  # noqa: BLE001 - the store's failure, explained by the input
        why, reason = path.explain(exc)
        raise AudioError(path, why, reason) from None


def _input_failure(path: str | AudioInput) -> AudioError | None:
    """What really went wrong when a decoder failed on a file whose reads failed underneath it."""
    if isinstance(path, AudioInput) and path.failure is not None:
        why, reason = path.explain(path.failure)
        return AudioError(path, why, reason)
    return None


def _read_soundfile(path: str | AudioInput, offset: float, duration: float | None) -> RawAudio:
    with _soundfile(path) as f:
        sr = int(f.samplerate)
        channels = int(f.channels)
        total = int(f.frames)
        truncated = header_overstates(f)
        start, count = frame_range(path, offset, duration, sr, total, truncated)
        announced = _announced_seconds(f, total / sr) if truncated else None
        short = truncation_error(path, offset, duration, sr, total, truncated, announced)
        data = seek_read(f, path, start, count)
    if len(data) < count:
        # Compressed formats (FLAC, OGG, MP3) only know their true length when decoding reaches it.
        truncated = True
    return RawAudio(data, sr, channels, total / sr, truncated, short)


def header_overstates(f: sf.SoundFile) -> bool:
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


def seek_read(f: sf.SoundFile, path: str, start: int, count: int) -> np.ndarray:
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


# soundfile prefixes "Error opening 'path': ", or for a file object (a tar member in memory, a
# file in a store) its repr: "Error opening <_io.BytesIO object at 0x7f…>: ".
_SF_OPENING = re.compile(r"""Error opening (?:<[^<>]*>|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+): """)


def _sf_reason(exc: BaseException) -> str:
    """libsndfile's own words, without soundfile's "Error opening NAME: ": the path is already in
    our message, and a file object's NAME was its Python repr, an address that means nothing."""
    msg = _SF_OPENING.sub("", str(exc), count=1) if str(exc).startswith("Error opening") else str(exc)
    return msg.strip().rstrip(".") or type(exc).__name__


def _ffmpeg_input(path: str | AudioInput) -> tuple[str, bytes | None]:
    """(what ffmpeg's -i gets, bytes for its stdin): an AudioInput goes through a pipe."""
    if isinstance(path, AudioInput):
        return "pipe:0", path.read_all()
    return path, None


def _ffprobe(path: str | AudioInput) -> tuple[int, int, float]:
    """(sample_rate, channels, duration_s) of the first audio stream, via ffprobe."""
    source, data = _ffmpeg_input(path)
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0",
         "-show_entries", "stream=sample_rate,channels:format=duration", "-of", "json", source],
        input=data, capture_output=True, timeout=_FFMPEG_TIMEOUT_S, check=False)
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
                            f"(the file is {file_s:.3f} s long): fix this line's offset, or its audio_filepath "
                            "if the segment is in another file", "offset")


def _read_ffmpeg(path: str | AudioInput, offset: float, duration: float | None) -> RawAudio:
    sr, ch, file_s = _ffprobe(path)
    _check_times(path, offset, duration)
    if math.isfinite(file_s) and offset >= file_s:
        raise _offset_beyond_end(path, offset, file_s)
    source, data = _ffmpeg_input(path)
    asked = duration if duration is None else segment_frames(max(0.0, duration), sr) / sr  # a frame at least
    proc = subprocess.run(_ffmpeg_cmd(source, offset, asked), input=data, capture_output=True,
                          timeout=_FFMPEG_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise ValueError(proc.stderr.decode("utf-8", "replace").strip() or "ffmpeg failed")
    data = np.frombuffer(proc.stdout, dtype="<f4")
    data = data[: len(data) // ch * ch].reshape(-1, ch).astype(np.float32, copy=True)
    if duration is not None:
        data = data[: segment_frames(max(0.0, duration), sr)]
    return RawAudio(data, sr, ch, file_s, False)


def _read_audioread(path: str | AudioInput, offset: float, duration: float | None) -> RawAudio:
    """audioread's own decoders (GStreamer, Core Audio, MAD), called directly: librosa 1.0 dropped
    its audioread fallback, and a librosa.load there only asked libsndfile again."""
    if isinstance(path, AudioInput):
        raise ValueError("this format needs ffmpeg when the file is not a local path")
    try:
        import audioread  # lazy: only without ffmpeg; not installed with librosa >= 1.0
    except ImportError:
        raise ValueError("no other decoder is installed") from None
    with audioread.audio_open(path) as f:
        sr, ch, file_s = int(f.samplerate), int(f.channels), float(f.duration)
        if math.isfinite(file_s) and file_s > 0 and offset >= file_s:
            raise _offset_beyond_end(path, offset, file_s)
        first = int(round(offset * sr)) * ch
        last = None if duration is None else first + segment_frames(max(0.0, duration), sr) * ch
        pieces, seen = [], 0
        for block in f:  # 16-bit little-endian samples, channels interleaved
            samples = np.frombuffer(block, dtype="<i2")
            lo, hi = max(first - seen, 0), len(samples) if last is None else min(last - seen, len(samples))
            if hi > lo:
                pieces.append(samples[lo:hi])
            seen += len(samples)
            if last is not None and seen >= last:
                break
    data = np.concatenate(pieces) if pieces else np.zeros(0, dtype="<i2")
    y = (data[: len(data) // ch * ch].reshape(-1, ch) / 32768.0).astype(np.float32)
    return RawAudio(y, sr, ch, file_s, False)


def _times(offset: float | None, duration: float | None) -> tuple[float, float | None]:
    return (0.0 if offset is None else float(offset)), (None if duration is None else float(duration))


# An AudioInput named TAR:MEMBER (sde.sources.members): a member of a tar shard.
_TAR_MEMBER = re.compile(r"\.tar:(?!//)")


def _not_audio(path: str | AudioInput, sf_reason: str, exc: BaseException) -> AudioError:
    ext = os.path.splitext(str(path))[1].lower()
    what = "not a sound file, or corrupt"
    if ext:
        what += f" (extension {ext!r})"
    fix = ""
    if isinstance(path, AudioInput) and _TAR_MEMBER.search(str(path)):
        # the tar itself indexed fine (the member was found): the member's bytes are the damage
        fix = "; the member's bytes in the tar are no audio: re-create the shard from the original audio, or " \
              "re-copy it if a copy broke it"
    return AudioError(path, f"{what}: libsndfile says \"{sf_reason}\"; "
                            f"fallback decoder says \"{_short(exc, path)}\"{fix}", "unreadable")


T = TypeVar("T")
#: A backend opens or decodes (path, offset, duration); it raises AudioError for what it can
#: explain, anything else for "I cannot decode this file".
Backend = Callable[[str, float, float | None], T]


def _decode(path: str, offset: float | None, duration: float | None, soundfile: Backend[T],
            ffmpeg: Backend[T], audioread: Backend[T]) -> T:
    """The one fallback chain: libsndfile; when it refuses the file (a format it does not know,
    AAC/M4A, WMA, …, or a broken file), ffmpeg when installed, else audioread. The checks every
    backend needs (times, file exists and is readable) come first."""
    path = as_input(path)
    offset, duration = _times(offset, duration)
    _check_times(path, offset, duration)
    check_file(path)
    try:
        return soundfile(path, offset, duration)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        failure = _input_failure(path)
        if failure is not None:  # the bytes never came (a timeout, access denied): not a format issue
            raise failure from None
        sf_reason = _sf_reason(exc)
    except OSError as exc:  # raced with a delete/chmod after check_file
        raise AudioError(path, f"cannot read the file ({exc.strerror or exc})", "unreadable") from None
    has_ffmpeg = bool(shutil.which("ffmpeg") and shutil.which("ffprobe"))
    try:
        if has_ffmpeg:
            return ffmpeg(path, offset, duration)
        return audioread(path, offset, duration)
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoder failure means the same to the user
        if has_ffmpeg:
            raise _not_audio(path, sf_reason, exc) from None
        # the file may well be fine: a format only ffmpeg decodes here (AAC/M4A, WMA, …)
        ext = os.path.splitext(str(path))[1].lower()
        raise AudioError(path, f"no decoder installed reads it{f' (extension {ext!r})' if ext else ''}: libsndfile "
                               f"says \"{sf_reason}\", and ffmpeg, which decodes AAC/M4A, WMA and more, is not "
                               "installed; install ffmpeg (e.g. apt-get install ffmpeg) and open it again (if ffmpeg "
                               "cannot read it either, the file is corrupt)", "unreadable") from None


def read_channels(path: str, offset: float = 0.0, duration: float | None = None) -> RawAudio:
    """The segment with every channel, leniently (metrics, transcription): a segment running past
    the end of a truncated file comes back shortened and flagged rather than refused."""
    return _decode(path, offset, duration, _read_soundfile, _read_ffmpeg, _read_audioread)


def _short(exc: BaseException, path: str | AudioInput = "") -> str:
    text = " ".join(str(exc).split())
    piped = isinstance(path, AudioInput)
    path = str(path)
    if path:  # ffmpeg prefixes its messages with the input path, which we already name
        text = text.replace(f"{path}: ", "")
    if piped:  # ... or with "pipe:0", the pipe an AudioInput's bytes were handed over through
        text = text.replace("pipe:0: ", "")
    return (text[:200] + "…") if len(text) > 200 else (text or type(exc).__name__)


def to_mono(data: np.ndarray) -> np.ndarray:
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
    #: The channels read (:func:`channel_selection`): one alone, the mean of several (a microphone
    #: array's MultiCut), or None: every channel mixed.
    channel: ChannelSelection = None
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
            np.clip(self._mono(raw[:got]), -1.0, 1.0, out=out[:got])
        if got < count and self.exact:
            self._warn(f"the data ends {(count - got) / self.sample_rate:.3f} s early")
        return out

    def _mono(self, raw: np.ndarray) -> np.ndarray:
        return select_channels(raw, self.channel)

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s: %s; serving silence in its place", self.path, why)

    def blocks(self, block_frames: int = BLOCK_FRAMES, *, strict: bool = False) -> Iterator[np.ndarray]:
        """The whole segment as consecutive mono blocks of ``block_frames`` (the last shorter).
        ``strict``: data the decoder cannot deliver is an :class:`AudioError`, as for a segment
        read whole, not silence (a measure must not take a damaged stretch for a pause)."""
        for start in range(0, self.frames, block_frames):
            count = min(block_frames, self.frames - start)
            yield self._read_strictly(start, count) if strict else self.read(start, count)

    def raw_blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """The segment as consecutive mono float32 blocks (the channel alone, else the mix) as
        decoded, neither clipped nor padded: the samples :func:`read_channels` gives, mixed down,
        in memory of one block. Data that ends early ends the blocks (lenient, like read_channels)."""
        for start in range(0, self.frames, block_frames):
            count = min(block_frames, self.frames - start)
            raw = self._read_raw(start, count)
            got = min(len(raw), count)
            if got:
                yield np.asarray(self._mono(raw[:got]), dtype=np.float32)
            if got < count:
                return

    def _read_strictly(self, start: int, count: int) -> np.ndarray:
        raw = self._read_raw(start, count)
        got = min(len(raw), count)
        if got < count:
            self._refuse_short(start + got)
        return np.clip(self._mono(raw[:got]), -1.0, 1.0).astype(np.float32, copy=False)

    def _refuse_short(self, got: int) -> None:
        """"truncated" (expected vs. actual end) when the data, ``got`` frames of the segment, ends
        more than DURATION_TOLERANCE before the segment does."""
        if self.exact and (self.frames - got) / self.sample_rate > DURATION_TOLERANCE:
            end = self.offset + self.frames / self.sample_rate
            has = f"has data up to {self.offset + got / self.sample_rate:.3f} s"
            raise _truncated(self.path, end, has, self._announced)

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
            np.clip(self._mono(raw[:n]), -1.0, 1.0, out=out[got:got + n])
            got += n
            if n < count:
                break
        self._refuse_short(got)
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

    _strict = True

    def __init__(self, path: str | AudioInput, offset: float, duration: float | None) -> None:
        f = _soundfile(path)
        try:
            sr, channels, total = int(f.samplerate), int(f.channels), int(f.frames)
            truncated = header_overstates(f)
            announced = _announced_seconds(f, total / sr) if truncated else None
            start, count = frame_range(path, offset, duration, sr, total, truncated,
                                        strict=self._strict, announced_s=announced)
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
        # Sequential blocks: no seek (a FLAC seek costs a decode). Not MP3: libsndfile (1.2.2)
        # decodes garbage after a read boundary (up to 0.35 off on a 0.3 sine), while each read
        # from a seek with its pre-roll (seek_read) is exact.
        if pos == self._next and self._f.format != "MP3":
            try:
                data = self._f.read(count, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                self._next = None
                raise AudioError(self.path, f"corrupt or truncated audio data ({_sf_reason(exc)})",
                                 "truncated") from None
        else:
            data = seek_read(self._f, self.path, pos, count)
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


class _LenientSoundfileReader(_SoundfileReader):
    """A segment running past the end of a truncated file is shortened, as read_channels does."""

    _strict = False


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
        frames = 0 if seconds is None else segment_frames(seconds, sr)
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
        return self._segment(np.clip(self._mono(raw.data), -1.0, 1.0), False)

    def raw_blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        if self._length_known:
            yield from super().raw_blocks(block_frames)
            return
        # No length to read up to: one decode of the segment (rare: a container without a duration).
        raw = _read_ffmpeg(self.path, self.offset, self._duration)
        if len(raw.data):
            yield np.asarray(self._mono(raw.data), dtype=np.float32)

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

    def __init__(self, path: str, offset: float, raw: RawAudio) -> None:
        super().__init__(path, offset, raw.sample_rate, raw.channels, len(raw.data),
                         raw.file_duration, raw.truncated)
        self._data = raw.data

    def _read_raw(self, start: int, count: int) -> np.ndarray:
        return self._data[start:start + count]


def open_segment(path: str, offset: float = 0.0, duration: float | None = None, *,
                 channel: object = None, lenient: bool = False) -> SegmentReader:
    """Open ``duration`` seconds from ``offset`` (to the end of file when ``None``) for reading.
    ``channel``: read that channel of the file alone, or the mean of several (0-based, or a row's
    ``audio_channel`` as it came, checked by :func:`channel_selection`; None: every channel, mixed).

    Every check that can fail is made here, before any audio is served: missing/unreadable file,
    invalid offset or duration, offset beyond the end, and — for a segment too long to decode
    whole — a file whose data ends before the segment does (a segment running more than
    ``DURATION_TOLERANCE`` past the end of a truncated file is refused, not shortened).
    ``lenient`` (transcription, as :func:`read_channels`): such a segment is opened anyway and
    :meth:`SegmentReader.raw_blocks` gives what the file holds.
    """
    soundfile = _SoundfileReader if not lenient else _LenientSoundfileReader
    reader: SegmentReader = _decode(path, offset, duration, soundfile, _ffmpeg_reader, _decoded_whole)
    try:
        reader.channel = channel_selection(channel, path, reader.channels)
    except AudioError:
        reader.close()
        raise
    if not reader.fits_in_memory and not lenient:
        try:
            reader.check_end()
        except BaseException:
            reader.close()
            raise
    return reader


#: What a row's ``audio_channel`` selects (:func:`channel_selection`): one channel (int), the mean
#: of several (a sorted tuple of two or more distinct channels), or None: every channel mixed.
ChannelSelection = int | tuple[int, ...] | None


def channel_selection(value: object, path: str | AudioInput = "", channels: int | None = None) -> ChannelSelection:
    """The one rule for a row's ``audio_channel`` (a Lhotse supervision on one channel of a call,
    or a MultiCut on several microphones of an array), shared by the player, the figures, the
    measures, speech activity and transcription.

    - missing, None, NaN, "": None, every channel of the file mixed (their mean);
    - a whole number (``1``, ``1.0``, ``"1"``, ``[1]``): that channel alone, as an int;
    - a list of two or more distinct whole numbers (``[0, 1]``, ``"[0, 1]"``, as Lhotse and NeMo's
      ``channel_selector`` write them): the mean of those channels, as a tuple in ascending order
      (the mean does not depend on the order, so ``[1, 0]`` is the same audio and the same line key).

    Anything else is an :class:`AudioError` naming the value and the file, never a guess
    (truncating 1.5, or mixing for a value that names one side of a call, would play or transcribe
    the other speaker): a fraction, a negative, a word, a boolean, an empty list, a list with a
    repeated channel (a weighted mean nobody asked for, more likely a typo) or a nested list.
    ``channels``: the file's channel count, when known, to refuse channels it lacks."""
    name = shown_name(path) if path else "(audio)"
    listed = _listed(value)
    if listed is not None and len(listed) != 1:
        return _channel_list(value, listed, name, channels)
    number = _whole_channel(value)
    if number is _MISSING:
        return None
    if number is None:
        raise _bad_channel(name, value, "is not a channel number")
    _check_present(name, value, [number], channels)
    return number


def select_channels(data: np.ndarray, selection: ChannelSelection) -> np.ndarray:
    """Frames (frames, channels) as mono float32: the selected channel, the mean of the selected
    channels, or (None) the mean of every channel. Used on each block as it is read, so a long
    multi-channel file never needs more than one block of every channel."""
    if selection is None:
        return to_mono(data)
    if isinstance(selection, tuple):
        return data[:, list(selection)].mean(axis=1, dtype=np.float32)
    return data[:, selection]


_ONE_RULE = ("it must be one whole number from 0 (the channel this line is on), a list of distinct whole "
             "numbers (the mean of those channels, e.g. [0, 1]), or absent to mix every channel; fix the "
             "line's audio_channel")


def _bad_channel(name: str, value: object, what: str) -> AudioError:
    # no ``field``: an AudioError's field comes with a number of seconds (value), which a list is not;
    # the message names audio_channel and its value
    return AudioError(name, f"audio_channel {_shown(value)} {what}: {_ONE_RULE}", "invalid")


def _channel_list(value: object, listed: list, name: str, channels: int | None) -> tuple[int, ...]:
    if not listed:
        raise _bad_channel(name, value, "is an empty list of channels")
    numbers = []
    for item in listed:
        number = None if _is_sequence(item) or _listed(item) is not None else _whole_channel(item)
        if number is None or number is _MISSING:
            raise _bad_channel(name, value, f"lists {_shown(item)}, which is not a channel number")
        numbers.append(number)
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if repeated:
        raise _bad_channel(name, value, f"lists channel {', '.join(map(str, repeated))} more than once")
    _check_present(name, value, numbers, channels)
    return tuple(sorted(numbers))


def _check_present(name: str, value: object, numbers: list[int], channels: int | None) -> None:
    lacking = [n for n in numbers if channels is not None and n >= channels]
    if not lacking:
        return
    what = ("is not one of the file's channels" if len(numbers) == 1 else
            f"lists {'channel' if len(lacking) == 1 else 'channels'} {', '.join(map(str, lacking))}, not among "
            "the file's channels")
    raise AudioError(name, f"audio_channel {_shown(value)} {what} (0..{channels - 1}), it has {channels}; "
                           "fix the line's audio_channel", "invalid")


_MISSING = object()


def _is_sequence(value: object) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _listed(value: object) -> list | None:
    """The items of a list of channels (a Python/numpy sequence, or JSON text as tables keep
    lists), None for anything else."""
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            items = json.loads(value)
        except ValueError:
            return None
        return items if isinstance(items, list) else None
    return None


def _shown(value: object) -> str:
    if isinstance(value, (np.ndarray, np.generic)):  # as the manifest wrote it, not np.float64(1.5)
        value = value.tolist()
    listed = _listed(value)
    if listed is not None:  # a list alike as the line wrote it, as JSON text or as a table's tuple or array
        value = [_as_written(v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v) for v in listed]
    text = repr(_as_written(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _as_written(value: object) -> object:
    # A column with a missing value is float: the line's 5 arrives as 5.0 (the measures said
    # "audio_channel 5.0" where the player, given the line's own value, said 5)
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _whole_channel(value: object) -> Any:
    """The channel a value names (int), None when it names none, _MISSING when it is absent."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing values, without pandas
        return _MISSING
    if isinstance(value, (bool, np.bool_)):
        return None
    items = _listed(value)
    if items is not None:
        return _whole_channel(items[0]) if len(items) == 1 and not _is_sequence(items[0]) else None
    if isinstance(value, (int, np.integer)):
        return int(value) if value >= 0 else None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return _MISSING
        try:
            value = float(text)
        except ValueError:
            return None
        if math.isnan(value):
            return None  # "nan" written out is a value, not a missing one
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return _MISSING
        return int(value) if math.isfinite(value) and value >= 0 and value == int(value) else None
    return None


def _decoded_whole(path: str, offset: float, duration: float | None) -> SegmentReader:
    return _ArrayReader(path, offset, _read_audioread(path, offset, duration))


def _ffmpeg_reader(path: str | AudioInput, offset: float, duration: float | None) -> SegmentReader:
    """ffmpeg streams a local file block by block; bytes from memory or a store go through one
    pipe, the segment decoded whole (formats libsndfile refuses are rare inside tars)."""
    if isinstance(path, AudioInput):
        return _ArrayReader(str(path), offset, _read_ffmpeg(path, offset, duration))
    return _FfmpegReader(path, offset, duration)


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


def file_info(path: str | AudioInput) -> dict[str, Any]:
    """``{"sample_rate", "channels", "duration"}`` of a whole file without decoding it (a remote
    file or a large tar member: only the header's bytes are read)."""
    path = as_input(path)
    check_file(path)
    try:
        with _soundfile(path) as info:
            return {"sample_rate": int(info.samplerate), "channels": int(info.channels),
                    "duration": info.frames / info.samplerate}
    except AudioError:
        raise
    except Exception:  # noqa: BLE001 - fall back to the slow path, which raises AudioError
        failure = _input_failure(path)
        if failure is not None:
            raise failure from None
        raw = read_channels(path, 0.0, 0.0)
        return {"sample_rate": raw.sample_rate, "channels": raw.channels,
                "duration": raw.file_duration}


