"""`sde stats --estimate-audio-metrics` says what the measures found, as the Statistics page does.

QA: the stats table measured every file and then printed only the unreadable ones: a clipped
file, a duration 27.5 s off the manifest's, an 8 kHz file among 16 kHz ones and a stereo file
among mono ones went unsaid, though /api/audio-quality (the Statistics page's "Audio quality"
card) counts each with the filter that lists it. The table now has a line for each, from the same
summary (sde.audio_quality.audio_quality_summary), and each filter lists those utterances.

Real parts: WAV files written with soundfile, the real CLI in a subprocess; the filters checked
on the dataset the build makes (sde.build.load with the same options).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from sde.build.load import load_dataset
from sde.dataset import DatasetOptions

ROOT = Path(__file__).resolve().parent.parent


def _tone(seconds: float, sr: int, amplitude: float = 0.1) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * 300 * np.arange(int(seconds * sr)) / sr)


def _write(folder: Path, files: dict[str, tuple[np.ndarray, int, float]]) -> Path:
    """WAVs (samples, rate, the duration the manifest claims) and their manifest, in order."""
    lines = []
    for name, (x, sr, claimed) in files.items():
        sf.write(folder / name, x, sr, subtype="PCM_16")
        lines.append(json.dumps({"audio_filepath": name, "duration": claimed, "text": name.split(".")[0]}))
    manifest = folder / "m.json"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _stats(manifest: Path, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--estimate-audio-metrics",
                           "--no-cache", *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def _listed(manifest: Path, filter_text: str) -> list[str]:
    """The texts of the utterances ``filter_text`` selects (as Samples lists them)."""
    dataset = load_dataset(str(manifest), DatasetOptions(estimate_audio_metrics=True), use_cache=False)
    rows = dataset.utterance_query.select(filter_text)
    return sorted(dataset.utterances["text"].iloc[rows].astype(str))


def test_stats_names_clipped_mismatched_and_mixed_audio_with_their_filters(tmp_path):
    manifest = _write(tmp_path, {
        "good.wav": (_tone(1.0, 16_000), 16_000, 1.0),
        "other.wav": (_tone(1.5, 16_000), 16_000, 1.5),
        "clipped.wav": (np.clip(_tone(1.0, 16_000, 8.0), -1, 1), 16_000, 1.0),
        "wrongdur.wav": (_tone(1.0, 16_000), 16_000, 28.5),
        "phone.wav": (_tone(1.0, 8_000), 8_000, 1.0),
        "stereo.wav": (np.stack([_tone(1.0, 16_000), _tone(1.0, 16_000, 0.05)], 1), 16_000, 1.0),
    })
    lines = _stats(manifest).stdout.splitlines()
    want = {
        "clipped audio    1 of 6 utterances (> 0.1% of samples at full scale): filter {clipping_ratio} > 0.001":
            ["clipped"],
        "durations differ 1 of 6 utterances (manifest vs audio by > 0.1 s, largest 27.5 s): "
        "filter {duration_mismatch} = true": ["wrongdur"],
        "sample rates     16 kHz 5 files, 8 kHz 1 file: filter {sample_rate} != 16000 lists the files not 16 kHz":
            ["phone"],
        "channels         mono 5 files, stereo 1 file: filter {channels} != 1 lists the files not mono":
            ["stereo"],
    }
    for line, texts in want.items():
        assert line in lines, (line, lines)
        assert _listed(manifest, line.split(": filter ")[1].split(" lists ")[0]) == texts, line
    assert not any(line.startswith("unreadable audio") for line in lines), lines
    # --json is /api/summary's twin: the lines are the table's alone
    js = _stats(manifest, "--json")
    assert "clipped" not in js.stdout and "sample_rate" not in js.stdout, js.stdout
    json.loads(js.stdout)


def test_stats_of_uniform_clean_audio_says_so_without_filters(tmp_path):
    manifest = _write(tmp_path, {"a.wav": (_tone(1.0, 22_050), 22_050, 1.0),
                                 "b.wav": (_tone(2.0, 22_050), 22_050, 2.0)})
    lines = _stats(manifest).stdout.splitlines()
    for line in ("clipped audio    0 of 2 utterances (> 0.1% of samples at full scale)",
                 "durations differ 0 of 2 utterances (manifest vs audio by > 0.1 s)",
                 "sample rates     22.05 kHz (every readable file)",
                 "channels         mono (every readable file)"):
        assert line in lines, (line, lines)
    # unmeasured, nothing is said of the measures
    done = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not any(w in done.stdout for w in ("clipped audio", "durations differ", "sample rates", "channels")), \
        done.stdout

