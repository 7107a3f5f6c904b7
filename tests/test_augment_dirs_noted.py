"""A --noise-dir or --rir-dir holding no audio file is said as the server starts: the inspector's
augmentation preview offered none and used its synthetic noise or room without a word (QA)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent


def start_lines(cwd: Path, *args: str) -> list[str]:
    """What `sde m.json ARGS` prints until it says where it listens (it is stopped then)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sde.cli", "m.json", "--port", "0", "--no-cache", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    deadline = time.monotonic() + 240
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "http://127.0.0.1:" in line or time.monotonic() > deadline:
                break
    finally:
        proc.terminate()
        proc.wait(30)
    assert any("http://127.0.0.1:" in line for line in lines), "".join(lines)
    return lines


@pytest.fixture
def folder(tmp_path):
    sf.write(tmp_path / "a.wav", 0.1 * np.sin(np.arange(16_000) / 3.0), 16_000)
    (tmp_path / "m.json").write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "a b",
                                                 "pred_text": "a b"}) + "\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("not audio")
    (tmp_path / "rooms" / "hall").mkdir(parents=True)
    sf.write(tmp_path / "rooms" / "hall" / "ir.flac", np.exp(-np.arange(800) / 80.0), 16_000)
    return tmp_path


@pytest.mark.parametrize("option, says", [("--noise-dir", "synthetic noise"), ("--rir-dir", "a synthetic room")])
def test_a_folder_without_audio_is_said_at_the_start(folder, option, says):
    notes = [line for line in start_lines(folder, option, "empty") if line.startswith("note: ")]
    assert any(f"{option} empty holds no audio file" in n and says in n for n in notes), notes


def test_a_folder_with_audio_in_a_subfolder_is_not(folder):
    lines = start_lines(folder, "--rir-dir", "rooms", "--noise-dir", "rooms")
    assert not any("holds no audio file" in line for line in lines), lines
