"""Audio files the tests of sde.audio share: a 30-minute WAV, a truncated WAV, a long FLAC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.audio import (
    IN_MEMORY_MAX_FRAMES,
)
from tests.audio.audio_kit import sine, write


@pytest.fixture(scope="module")
def long_file(tmp_path_factory) -> str:
    """30-minute 8 kHz mono 16-bit WAV: silence with a 1 kHz tone over [1234.5, 1236.5) s,
    written in 60 s blocks so the test never holds the whole file in memory."""
    sr = 8000
    path = tmp_path_factory.mktemp("long") / "thirty_minutes.wav"
    block = np.zeros(60 * sr, dtype=np.float32)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for minute in range(30):
            if minute == 20:  # 1200..1260 s
                b = block.copy()
                start = int((1234.5 - 1200) * sr)
                b[start:start + 2 * sr] = sine(1000, 2.0, sr, 0.5)
                f.write(b)
            else:
                f.write(block)
    return str(path)


@pytest.fixture
def cut_wav(tmp_path) -> str:
    """A WAV whose header announces 2 s and that holds 1 s of samples."""
    path = write(tmp_path / "full.wav", sine(440, 2.0, 16000, 0.5), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(Path(path).read_bytes()[: 44 + 2 * 16000])
    return str(cut)


@pytest.fixture(scope="module")
def long_noise(tmp_path_factory) -> tuple[str, np.ndarray]:
    """(FLAC path, its samples): 8 kHz noise bursts a little past IN_MEMORY_MAX_FRAMES (~4.4 min),
    so segments of it are read, encoded and drawn block by block."""
    sr = 8000
    n = IN_MEMORY_MAX_FRAMES + 54321
    rng = np.random.default_rng(7)
    t = np.arange(n) / sr
    x = (rng.standard_normal(n) * 0.2 * (np.sin(2 * np.pi * 0.5 * t) > 0)
         + 0.3 * np.sin(2 * np.pi * 700 * t)).astype(np.float32)
    x = np.clip(x, -1, 1)
    path = tmp_path_factory.mktemp("long_noise") / "noise.flac"
    sf.write(str(path), x, sr, subtype="PCM_16")
    back, _ = sf.read(str(path), dtype="float32")  # what PCM_16 kept
    return str(path), back
