"""Audio bytes decoded through lhotse's own recording loading (a 'memory' AudioSource).

For audio whose bytes sde already holds (a Lhotse Shar member read from its tar by seek) in a
format that libsndfile cannot decode: lhotse picks its own backend (soundfile, torchaudio, ffmpeg
through its audio backends) the way it would when training on the same data, so sde plays what
the model sees. Nothing here touches the disk or runs a command; lhotse is imported on first use
(it is heavy, and most datasets never need it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sde.audio.io import AudioError

__all__ = ["decode_with_lhotse", "row_audio"]


def decode_with_lhotse(data: bytes, offset: float = 0.0, duration: float | None = None, *,
                       name: str = "audio") -> tuple[np.ndarray, int]:
    """Mono float32 samples of ``data`` (encoded audio) from ``offset`` for ``duration`` seconds (to
    the end when None), and their sample rate. Raises AudioError naming ``name`` when lhotse cannot
    decode the bytes or the segment starts past the end."""
    try:
        from lhotse import Recording
    except ImportError:  # pragma: no cover - lhotse comes with NeMo; a lean install may lack it
        raise AudioError(name, "decoding this audio needs lhotse: pip install lhotse") from None
    try:
        recording = Recording.from_bytes(data, recording_id=name)
    except Exception as e:  # noqa: BLE001 - lhotse's backends raise anything for undecodable bytes
        raise AudioError(name, f"not audio lhotse can decode ({type(e).__name__}: {e})") from None
    offset = max(0.0, float(offset or 0.0))
    if offset >= recording.duration:
        raise AudioError(name, f"offset {offset:g} s is past the end of the audio ({recording.duration:g} s)", "offset")
    if duration is not None and (not math.isfinite(duration) or offset + duration > recording.duration):
        duration = None  # lhotse refuses a segment past the end; sde's reader gives what the audio holds
    try:
        samples = recording.load_audio(offset=offset, duration=duration)
    except Exception as e:  # noqa: BLE001 - as above
        raise AudioError(name, f"lhotse cannot decode it ({type(e).__name__}: {e})") from None
    mono = samples.mean(axis=0) if samples.ndim == 2 else samples
    return np.ascontiguousarray(mono, dtype=np.float32), int(recording.sampling_rate)


def row_audio(row: Mapping[str, Any], data: bytes) -> tuple[np.ndarray, int]:
    """The utterance segment of a table row (its ``offset`` and ``duration``) out of ``data``, the
    bytes of its audio (e.g. its Shar member)."""
    duration = row.get("duration")
    return decode_with_lhotse(data, float(row.get("offset") or 0.0),
                              None if duration is None else float(duration),
                              name=str(row.get("audio_filepath") or "audio"))
