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


def need_vad() -> None:
    """Skip where Silero VAD cannot run (the ``vad`` extra is not installed), saying what to install."""
    from sde.quality.apply import vad_unavailable

    missing = vad_unavailable()
    if missing:
        pytest.skip(missing)


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


def long_recording_manifest(folder: Path, segments: int, segment_s: float) -> Path:
    """folder/long.json: ``segments`` segments of ``segment_s`` seconds of one long recording
    (folder/long.wav: espeak-ng speech, 0.3 s pauses, over and over), three speakers in turn. A
    Measure job over it runs long enough to be watched, joined and cancelled; hundreds of short
    files would take minutes of espeak-ng to make."""
    import json

    need_espeak()
    speech, sr = speak(SENTENCES["fox"])
    take = np.concatenate([speech, silence(0.3, sr)])
    write(folder / "long.wav", np.resize(take, int(segments * segment_s * sr)), sr)
    manifest = folder / "long.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": "long.wav", "offset": i * segment_s,
                                            "duration": segment_s, "text": f"the quick brown fox {i}",
                                            "speaker": f"s{i % 3}"}) + "\n" for i in range(segments)))
    return manifest


# ---------------------------------------------------------------- a small corpus with known faults

SENTENCES = {
    "fox": "the quick brown fox jumps over the lazy dog",
    "stella": "please call stella and ask her to bring these things with her",
    "snow": "six spoons of fresh snow peas and five thick slabs of blue cheese",
    "frog": "we also need a small plastic snake and a big toy frog for the kids",
}
LOOP = "please call stella please call stella please call stella please call stella"


def quality_corpus(directory: Path) -> tuple[Path, dict]:
    """A manifest of espeak-ng speech with known faults, and what is known about each line:

    0 anna fox      22.05 kHz, 1.0 s silence before and 0.5 s after the speech
    1 anna stella   22.05 kHz, hiss at -50 dBFS under and 0.6 s around the speech; the hypothesis loops
    2 anna fox      a FLAC copy of line 0's audio, the text with other case and punctuation
    3 anna snow     line 1's audio again (a copy) with another transcript: same audio, different text
    4 ben  snow     16 kHz
    5 ben  frog     16 kHz, 0.3 s / 1.2 s of silence around the speech
    6 ben  (none)   3 s of silence, an empty reference
    7 ben  fox      a 36 s segment (speech then silence) of a 40 s file: too long for the augmentation preview

    Returns (manifest path, {"speech_s": seconds of speech per line, "silence": (before, after) per line}).
    """
    directory.mkdir(parents=True, exist_ok=True)
    fox, sr = speak(SENTENCES["fox"])
    stella, _ = speak(SENTENCES["stella"])
    snow16, sr16 = speak(SENTENCES["snow"], sample_rate=16000)
    frog16, _ = speak(SENTENCES["frog"], sample_rate=16000)
    fox16, _ = speak(SENTENCES["fox"], sample_rate=16000)
    hiss = noise(0.6, sr, level=0.003)
    write(directory / "fox.wav", padded(fox, sr, 1.0, 0.5), sr)
    noisy = stella + noise(len(stella) / sr + 0.01, sr, level=0.003, seed=1)[:len(stella)]
    write(directory / "stella.wav", np.concatenate([hiss, noisy, hiss]), sr)
    sf.write(directory / "fox_copy.flac", sf.read(directory / "fox.wav", dtype="int16")[0], sr, subtype="PCM_16")
    (directory / "stella_copy.wav").write_bytes((directory / "stella.wav").read_bytes())
    write(directory / "snow16.wav", padded(snow16, sr16, 0.5, 0.5), sr16)
    write(directory / "frog16.wav", padded(frog16, sr16, 0.3, 1.2), sr16)
    write(directory / "silence.wav", silence(3.0, sr16), sr16)
    write(directory / "long.wav", padded(fox16, sr16, 0.5, 40.0 - 0.5 - len(fox16) / sr16), sr16)
    import json

    def dur(name: str) -> float:
        return round(sf.info(directory / name).duration, 4)

    rows = [
        ("fox.wav", SENTENCES["fox"], SENTENCES["fox"], "anna"),
        ("stella.wav", SENTENCES["stella"], LOOP, "anna"),
        ("fox_copy.flac", "The quick brown fox, jumps over the lazy dog!", SENTENCES["fox"], "anna"),
        ("stella_copy.wav", SENTENCES["snow"], SENTENCES["stella"], "anna"),
        ("snow16.wav", SENTENCES["snow"], SENTENCES["snow"], "ben"),
        ("frog16.wav", SENTENCES["frog"], "we also need a small plastic snake", "ben"),
        ("silence.wav", "", "", "ben"),
        ("long.wav", SENTENCES["fox"], SENTENCES["fox"], "ben"),
    ]
    lines = []
    for name, text, hyp, speaker in rows:
        duration = 36.0 if name == "long.wav" else dur(name)
        lines.append(json.dumps({"audio_filepath": name, "duration": duration, "text": text, "pred_text": hyp,
                                 "speaker": speaker}))
    manifest = directory / "manifest.json"
    manifest.write_text("\n".join(lines) + "\n")
    speech = [len(fox) / sr, len(stella) / sr, len(fox) / sr, len(stella) / sr, len(snow16) / sr16,
              len(frog16) / sr16, 0.0, len(fox16) / sr16]
    silences = [(1.0, 0.5), None, (1.0, 0.5), None, (0.5, 0.5), (0.3, 1.2), None, None]
    return manifest, {"speech_s": speech, "silence": silences}
