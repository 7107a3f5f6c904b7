"""Speech activity of one segment with Silero VAD: how much speech, how much silence around it.

The model is Silero VAD's *sequence* export (``silero_vad_16k_sequence.onnx``, shipped inside the
``silero-vad`` wheel): the same network as the streaming model, but one ONNX call scores a block of
up to 512 frames (16 s) instead of one Python-level call per 32 ms frame, which is what makes
≥ 50× real time per core possible. It is run with onnxruntime directly: importing the
``silero_vad`` package would import torch (seconds per worker process) and its audio helpers want
torchaudio, which does not install beside sde's torch. Only the model file is taken from the
package (found without importing it).

Frame probabilities become speech intervals with a hysteresis threshold (speech starts at
``threshold``, ends below ``threshold - 0.15``), short pauses bridged, short blips dropped and a
small pad kept around speech — the rules Silero's own timestamp helper uses, with its defaults.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MODEL_RATE",
    "VAD_COLUMNS",
    "SileroVad",
    "VadError",
    "VadParams",
    "load_model",
    "model_path",
    "speech_activity",
    "speech_intervals",
]

#: Columns :func:`speech_activity` returns, in this order (seconds, and a 0–1 share).
VAD_COLUMNS: tuple[str, ...] = ("speech_duration", "leading_silence", "trailing_silence", "speech_ratio")

MODEL_RATE = 16000
_FRAME = 512          # samples per model frame at 16 kHz (32 ms)
_CONTEXT = 64         # samples of the previous frame the model sees before each frame
_STATE = (1, 1, 128)  # LSTM h and c
_BLOCK_FRAMES = 512   # frames per ONNX call: 16.4 s of audio, ~1.2 MB of input
_MODEL_FILE = "silero_vad_16k_sequence.onnx"


class VadError(RuntimeError):
    """The VAD cannot run here (package missing); the message says what to install."""


@dataclass(frozen=True)
class VadParams:
    """How frame probabilities become speech intervals (Silero's defaults)."""

    threshold: float = 0.5
    min_speech_s: float = 0.25   # shorter bursts are noise, not speech
    min_silence_s: float = 0.10  # shorter pauses do not end a speech interval
    pad_s: float = 0.03          # kept around each interval: onsets and decays score low


def model_path() -> Path:
    """The sequence ONNX model shipped in the ``silero-vad`` wheel, located without importing it."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VadError("speech activity needs the silero-vad package: pip install --no-deps silero-vad "
                       "onnxruntime (--no-deps: its optional extras would replace torch)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / _MODEL_FILE
    if not path.is_file():
        raise VadError(f"{path}: Silero VAD model file missing; reinstall silero-vad (>= 6.2.3 ships it)")
    return path


class SileroVad:
    """One onnxruntime session of the sequence model, pinned to one thread (one per worker)."""

    def __init__(self, path: str | Path | None = None) -> None:
        try:
            import onnxruntime as ort  # lazy: the optional [vad] extra, heavy to import
        except ImportError:
            raise VadError("speech activity needs onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        # Parallelism comes from worker processes; threads inside each would fight for the cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path or model_path()), sess_options=options,
                                             providers=["CPUExecutionProvider"])

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of each 32 ms frame of 16 kHz mono ``samples`` (last frame zero-padded)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        n_frames = -(-len(x) // _FRAME)
        if n_frames == 0:
            return np.zeros(0, dtype=np.float32)
        padded = np.zeros(_CONTEXT + n_frames * _FRAME, dtype=np.float32)
        padded[_CONTEXT:_CONTEXT + len(x)] = x
        # Row i = the 64 samples before frame i, then frame i: a strided view, no copy until ONNX.
        rows = np.lib.stride_tricks.as_strided(
            padded, shape=(n_frames, _CONTEXT + _FRAME), strides=(_FRAME * 4, 4), writeable=False)
        h = np.zeros(_STATE, dtype=np.float32)
        c = np.zeros(_STATE, dtype=np.float32)
        out = []
        for start in range(0, n_frames, _BLOCK_FRAMES):
            block = np.ascontiguousarray(rows[start:start + _BLOCK_FRAMES])
            probs, h, c = self._session.run(["speech_probs", "hn", "cn"], {"input": block, "h": h, "c": c})
            out.append(probs.reshape(-1))
        return np.concatenate(out)


_models: dict[str, SileroVad] = {}
_models_lock = threading.Lock()
# A forked worker loads its own session: one inherited from the parent shares its native state.
os.register_at_fork(after_in_child=_models.clear)


def load_model(path: str | Path | None = None) -> SileroVad:
    """The process's model for ``path`` (loaded on first use: once per worker process)."""
    key = str(path or model_path())
    with _models_lock:
        if key not in _models:
            _models[key] = SileroVad(key)
        return _models[key]


def speech_intervals(probs: np.ndarray, params: VadParams = VadParams(),
                     n_samples: int | None = None) -> np.ndarray:
    """Speech intervals, shape (k, 2), in seconds, from 32 ms frame probabilities.

    ``n_samples`` (at 16 kHz) clips the last interval to the real end of the audio.
    """
    frame_s = _FRAME / MODEL_RATE
    end_s = (n_samples if n_samples is not None else len(probs) * _FRAME) / MODEL_RATE
    off = params.threshold - 0.15
    intervals: list[list[float]] = []
    start: int | None = None
    quiet_since: int | None = None
    for i, p in enumerate(np.asarray(probs, dtype=np.float64)):
        if start is None:
            if p >= params.threshold:
                start, quiet_since = i, None
            continue
        if p >= off:  # still speech (hysteresis: a dip above `off` does not end it)
            quiet_since = None
        elif quiet_since is None:
            quiet_since = i
        elif (i - quiet_since + 1) * frame_s >= params.min_silence_s:
            intervals.append([start * frame_s, quiet_since * frame_s])
            start, quiet_since = None, None
    if start is not None:
        stop = quiet_since if quiet_since is not None else len(probs)
        intervals.append([start * frame_s, stop * frame_s])
    kept = [iv for iv in intervals if iv[1] - iv[0] >= params.min_speech_s]
    if not kept:
        return np.zeros((0, 2))
    arr = np.array(kept)
    arr[:, 0] = np.maximum(arr[:, 0] - params.pad_s, 0.0)
    arr[:, 1] = np.minimum(arr[:, 1] + params.pad_s, end_s)
    return _merge(arr)


def _merge(intervals: np.ndarray) -> np.ndarray:
    """Join intervals that the padding made overlap (they would count some speech twice)."""
    merged = [intervals[0].copy()]
    for lo, hi in intervals[1:]:
        if lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append(np.array([lo, hi]))
    return np.array(merged)


def to_model_rate(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz. soxr's medium quality: the VAD needs no audiophile anti-aliasing."""
    if sample_rate == MODEL_RATE:
        return np.asarray(samples, dtype=np.float32)
    import soxr  # lazy: not a direct dependency (librosa brings it); only resampling needs it

    return soxr.resample(np.asarray(samples, dtype=np.float32), sample_rate, MODEL_RATE, quality="MQ")


def speech_activity(samples: np.ndarray, sample_rate: int, params: VadParams = VadParams(),
                    model: SileroVad | None = None) -> dict[str, Any]:
    """:data:`VAD_COLUMNS` of one segment (mono float samples at any rate).

    No speech at all: ``speech_duration`` 0 and both silences equal to the whole duration.
    """
    duration = len(samples) / sample_rate if sample_rate > 0 else 0.0
    if len(samples) == 0:
        return dict(zip(VAD_COLUMNS, (0.0, 0.0, 0.0, float("nan"))))
    x = to_model_rate(samples, sample_rate)
    probs = (model or load_model()).probabilities(x)
    intervals = speech_intervals(probs, params, n_samples=len(x))
    if len(intervals) == 0:
        return dict(zip(VAD_COLUMNS, (0.0, duration, duration, 0.0)))
    speech = float(np.sum(intervals[:, 1] - intervals[:, 0]))
    speech = min(speech, duration)
    leading = float(intervals[0, 0])
    trailing = max(duration - float(intervals[-1, 1]), 0.0)
    return dict(zip(VAD_COLUMNS, (speech, leading, trailing, speech / duration)))
