"""Real audio for the data-quality tests and benchmark: espeak-ng speech, trimmed to the speech
itself so that silence added around it is known exactly, plus noise and silence."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ESPEAK_RATE = 22050


def need_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")


def speak(text: str, voice: str = "en", sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """espeak-ng reading ``text`` (float32 mono), without espeak's own leading/trailing silence."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
        y, sr = sf.read(wav, dtype="float32")
    loud = np.flatnonzero(np.abs(y) > 0.01)
    y = y[loud[0]:loud[-1] + 1]
    if sample_rate is not None and sample_rate != sr:
        import soxr

        y, sr = soxr.resample(y, sr, sample_rate, quality="HQ").astype(np.float32), sample_rate
    return y, sr


def silence(seconds: float, sample_rate: int) -> np.ndarray:
    return np.zeros(int(round(seconds * sample_rate)), dtype=np.float32)


def noise(seconds: float, sample_rate: int, level: float = 0.03, seed: int = 0) -> np.ndarray:
    """White noise of RMS ``level`` (0.03 ≈ -30 dBFS): a hiss, not speech."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * sample_rate)) * level).astype(np.float32)


def padded(speech: np.ndarray, sample_rate: int, before: float, after: float) -> np.ndarray:
    return np.concatenate([silence(before, sample_rate), speech, silence(after, sample_rate)])


def write(path: Path, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, samples, sample_rate, subtype=subtype)
    return path
