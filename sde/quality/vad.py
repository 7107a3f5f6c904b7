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
    "FrameScorer",
    "SileroVad",
    "SpeechActivity",
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
        scorer = FrameScorer(self)
        scorer.feed(samples)
        return scorer.finish()

    def run(self, rows: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One ONNX call: (probabilities, h, c) of ``rows`` (frames with their context, float32)."""
        probs, h, c = self._session.run(["speech_probs", "hn", "cn"], {"input": rows, "h": h, "c": c})
        return probs.reshape(-1), h, c


class FrameScorer:
    """Frame probabilities of a 16 kHz stream fed piece by piece.

    Frames are scored in the same ONNX blocks (and so with the same numbers) as the whole stream in
    one array would be; what waits is less than one block (16 s, 1 MB) plus one float per scored
    32 ms frame, however long the stream.
    """

    def __init__(self, model: SileroVad) -> None:
        self.model = model
        # The 64 samples before the next unscored frame (zeros before the start), then the
        # samples not scored yet.
        self._pending = np.zeros(_CONTEXT, dtype=np.float32)
        self._h = np.zeros(_STATE, dtype=np.float32)
        self._c = np.zeros(_STATE, dtype=np.float32)
        self._probs: list[np.ndarray] = []
        self.samples = 0

    def feed(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if len(x) == 0:
            return
        self.samples += len(x)
        buf = np.concatenate((self._pending, x))
        block = _BLOCK_FRAMES * _FRAME
        whole = (len(buf) - _CONTEXT) // block * block
        if whole:
            self._score(buf[:_CONTEXT + whole], whole // _FRAME)
        self._pending = buf[whole:].copy()  # a copy: the caller's block need not stay alive

    def finish(self) -> np.ndarray:
        """Every frame's probability (the last frame zero-padded); call once, after the last feed."""
        rest = len(self._pending) - _CONTEXT
        n_frames = -(-rest // _FRAME)
        if n_frames:
            padded = np.zeros(_CONTEXT + n_frames * _FRAME, dtype=np.float32)
            padded[:len(self._pending)] = self._pending
            self._score(padded, n_frames)
            self._pending = self._pending[-_CONTEXT:]
        return np.concatenate(self._probs) if self._probs else np.zeros(0, dtype=np.float32)

    def _score(self, x: np.ndarray, n_frames: int) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        # Row i = the 64 samples before frame i, then frame i: a strided view, no copy until ONNX.
        rows = np.lib.stride_tricks.as_strided(
            x, shape=(n_frames, _CONTEXT + _FRAME), strides=(_FRAME * 4, 4), writeable=False)
        for start in range(0, n_frames, _BLOCK_FRAMES):
            block = np.ascontiguousarray(rows[start:start + _BLOCK_FRAMES])
            probs, self._h, self._c = self.model.run(block, self._h, self._c)
            self._probs.append(probs.astype(np.float32, copy=False))


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


class SpeechActivity:
    """:data:`VAD_COLUMNS` of one segment (mono float samples at any rate) fed block by block.

    The segment is resampled to 16 kHz as a stream (soxr gives the same samples as resampling it
    whole) and scored by :class:`FrameScorer`: an hours-long segment costs one float per 32 ms.
    :meth:`result` ends it: call it once, after the last block.
    """

    def __init__(self, sample_rate: int, params: VadParams = VadParams(),
                 model: SileroVad | None = None) -> None:
        self.sample_rate = int(sample_rate)
        self.params = params
        self.samples = 0
        self._scorer = FrameScorer(model or load_model())
        self._resampler = None
        if self.sample_rate != MODEL_RATE and self.sample_rate > 0:
            import soxr  # lazy, as in to_model_rate

            self._resampler = soxr.ResampleStream(self.sample_rate, MODEL_RATE, 1, dtype="float32",
                                                  quality="MQ")

    def feed(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if len(x) == 0:
            return
        self.samples += len(x)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=False)
        self._scorer.feed(x)

    def result(self) -> dict[str, Any]:
        """No speech at all: ``speech_duration`` 0 and both silences equal to the whole duration."""
        duration = self.samples / self.sample_rate if self.sample_rate > 0 else 0.0
        if self.samples == 0:
            return dict(zip(VAD_COLUMNS, (0.0, 0.0, 0.0, float("nan"))))
        if self._resampler is not None:
            self._scorer.feed(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        probs = self._scorer.finish()
        intervals = speech_intervals(probs, self.params, n_samples=self._scorer.samples)
        if len(intervals) == 0:
            return dict(zip(VAD_COLUMNS, (0.0, duration, duration, 0.0)))
        speech = float(np.sum(intervals[:, 1] - intervals[:, 0]))
        speech = min(speech, duration)
        leading = float(intervals[0, 0])
        trailing = max(duration - float(intervals[-1, 1]), 0.0)
        return dict(zip(VAD_COLUMNS, (speech, leading, trailing, speech / duration)))


def speech_activity(samples: np.ndarray, sample_rate: int, params: VadParams = VadParams(),
                    model: SileroVad | None = None) -> dict[str, Any]:
    """:data:`VAD_COLUMNS` of one segment held whole (see :class:`SpeechActivity`)."""
    activity = SpeechActivity(sample_rate, params, model)
    activity.feed(samples)
    return activity.result()
