"""Signals and files shared by the tests of sde.audio (written with soundfile into tmp folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

RAMP_SCALE = 2.0 ** -24  # float32 holds i * 2**-24 exactly for i < 2**24


def sine(freq: float, seconds: float, sr: int, amp: float = 1.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path: Path, data: np.ndarray, sr: int, **kw) -> str:
    sf.write(str(path), data, sr, **kw)
    return str(path)


def lowpassed_noise(sr: int, cutoff: float, seconds: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(4)
    spec = np.fft.rfft(rng.standard_normal(int(seconds * sr)))
    spec[np.fft.rfftfreq(int(seconds * sr), 1 / sr) > cutoff] = 0
    x = np.fft.irfft(spec, int(seconds * sr))
    # 50 ms fades: an abrupt start is a broadband click (the zero padding of the first frame).
    fade = int(0.05 * sr)
    ramp = np.sin(np.linspace(0, np.pi / 2, fade)) ** 2
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def segments_table(rows: list[tuple[str, float, float]], index=None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["audio_path", "offset", "duration"], index=index)
    df.insert(0, "id", np.arange(len(df)))
    return df


def long_recording(folder: Path, minute: np.ndarray, minutes: int, sr: int, kept: str = "in a file") -> str:
    """``minutes`` copies of ``minute`` in one 16-bit WAV, "in a file" or "in a tar" (the member
    of a NeMo shard): the name sde reads it by."""
    import tarfile

    from sde.sources.members import tar_member_path

    path = folder / "long.wav"
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for _ in range(minutes):
            f.write(minute)
    if kept != "in a tar":
        return str(path)
    with tarfile.open(folder / "audio_0.tar", "w") as tar:
        tar.add(path, arcname="long.wav")
    path.unlink()
    return tar_member_path(str(folder / "audio_0.tar"), "long.wav")
