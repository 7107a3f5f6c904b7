"""NeMo tarred datasets for the tests: real audio (speech spoken by espeak-ng, tones written with
soundfile as WAV and FLAC) packed into tar shards with Python's tarfile the way NeMo's
convert_to_tarred_audio_dataset.py does (tests.test_tar_index.write_nemo_shard), a reused file
named with NeMo's -sub suffix, and the tarred manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.test_tar_index import dali_index_text, write_nemo_shard

SR = 16000
PATTERN = "audio__OP_0..1_CL_.tar"


@dataclass
class Tarred:
    folder: Path
    manifest: Path
    lines: list[dict]        # the tarred manifest's lines
    originals: list[dict]    # per line: the file it was made from, offset, duration

    @property
    def pattern(self) -> str:
        return str(self.folder / PATTERN)

    def expected(self, k: int) -> np.ndarray:
        """Line k's segment as soundfile reads it from the original file (mono float32)."""
        o = self.originals[k]
        with sf.SoundFile(o["audio_filepath"]) as f:
            f.seek(int(round(o.get("offset", 0.0) * f.samplerate)))
            data = f.read(int(round(o["duration"] * f.samplerate)), dtype="float32", always_2d=True)
        return data.mean(axis=1)


def speak(text: str, path: Path) -> float:
    """espeak-ng's voice saying `text` (a WAV); its length in seconds."""
    if shutil.which("espeak-ng") is None:  # pragma: no cover
        tone(path, 1.2, 220)
    else:
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return sf.info(path).duration


def tone(path: Path, seconds: float, freq: float, **kwargs) -> float:
    t = np.arange(int(SR * seconds)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, **kwargs)
    return seconds


def make_tarred(folder: Path, *, index_files: bool = False) -> Tarred:
    """Two shards: shard 0 holds spoken WAVs and a FLAC, plus a second segment of the first file
    (NeMo names it <stem>-sub1.wav and stores the file once); shard 1 holds tones."""
    src = folder / "src"
    src.mkdir(parents=True, exist_ok=True)
    shard0 = []
    for k, text in enumerate(["the cat sat on the mat", "hello world"]):
        path = src / f"spoken_{k}.wav"
        shard0.append({"audio_filepath": str(path), "duration": round(speak(text, path), 3), "text": text})
    flac = src / "tone.flac"
    shard0.append({"audio_filepath": str(flac), "duration": tone(flac, 1.5, 330, format="FLAC"), "text": "a tone"})
    half = round(shard0[0]["duration"] / 2, 3)
    shard0.append({"audio_filepath": shard0[0]["audio_filepath"], "offset": half, "duration": half,
                   "text": "on the mat"})
    shard1 = []
    for k in range(3):
        path = src / f"tone_{k}.wav"
        shard1.append({"audio_filepath": str(path), "duration": tone(path, 1.0 + k / 2, 200 + 100 * k),
                       "text": f"tone {k}"})
    lines = []
    for shard_id, entries in enumerate([shard0, shard1]):
        tar_path, shard_lines = write_nemo_shard(folder, entries, shard_id)
        lines += shard_lines
        if index_files:
            (folder / "dali_index").mkdir(exist_ok=True)
            (folder / "dali_index" / f"audio_{shard_id}.index").write_text(dali_index_text(tar_path))
    manifest = folder / "tarred_audio_manifest.json"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return Tarred(folder, manifest, lines, shard0 + shard1)
