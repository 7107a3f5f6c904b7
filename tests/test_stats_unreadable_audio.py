"""`sde stats --estimate-audio-metrics` says which audio it could not read, as the server does.

A manifest of three lines, one audio file corrupt and one missing: the server's Statistics page
counted them ("Unreadable or missing") and said why, while `sde stats` printed its table as if all
three had been measured. Now the table says how many could not be read, the server's reasons
(sde.audio_quality's summary, which /api/audio-quality serves) and the first file.

Real parts: the real CLI and server in subprocesses, real WAV files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.test_audio_faults import SdeServer

ROOT = Path(__file__).resolve().parent.parent


def _manifest(folder: Path) -> Path:
    sr = 16_000
    sf.write(folder / "good.wav", 0.1 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr), sr)
    (folder / "bad.wav").write_bytes(bytes(range(100)))  # not a sound file
    manifest = folder / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"{name}.wav", "duration": 1.0, "text": "hello"}) + "\n"
                                for name in ("good", "bad", "missing")))
    return manifest


def test_stats_names_the_audio_it_could_not_read_in_the_servers_words(tmp_path):
    manifest = _manifest(tmp_path)
    stats = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--no-cache",
                            "--estimate-audio-metrics"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert stats.returncode == 0, stats.stderr
    with SdeServer(str(manifest), "--estimate-audio-metrics") as server:
        unreadable = server.json("/api/audio-quality", status=200)["unreadable"]
    assert unreadable["utterances"] == 2 and len(unreadable["reasons"]) == 2, unreadable
    lines = stats.stdout.splitlines()
    assert "unreadable audio 2 of 3 utterances (2 files), not measured: filter {audio_error} != \"\"" in lines, stats.stdout
    for reason in unreadable["reasons"]:
        assert f"    {reason['reason']} (1)" in lines, (reason, stats.stdout)
    assert f"  first: {tmp_path / 'bad.wav'} (utterance 1)" in lines, stats.stdout


def test_stats_of_audio_all_read_says_nothing_of_unreadable_audio(tmp_path):
    manifest = _manifest(tmp_path)
    manifest.write_text(manifest.read_text().splitlines()[0] + "\n")  # the good file alone
    stats = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--no-cache",
                            "--estimate-audio-metrics"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert stats.returncode == 0, stats.stderr
    assert "unreadable" not in stats.stdout, stats.stdout
