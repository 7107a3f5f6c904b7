"""The presence check answers each file with one stat: a regular file, something there that is no
regular file (a named pipe: said as such, never opened), or nothing. It took a second pass over the
files answered missing (a stat each again, a third for a pipe), which doubled the stats of a partly
downloaded dataset. Counted with strace on the real CLI (`sde stats`), path by path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.audio_presence import LIST_AT_LEAST

ROOT = Path(__file__).resolve().parent.parent
STATS = "stat,lstat,newfstatat,statx"

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="counting stat calls needs strace")


def _stats_per_file(tmp_path: Path, names: list[str]) -> tuple[Counter, str]:
    """(stat calls per file name of `names`, stderr) of one `sde stats` of a manifest naming them in
    tmp_path/audio (tone.wav a real file, pipe.wav a named pipe, the others not there)."""
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "tone.wav", 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000), 16000)
    os.mkfifo(audio / "pipe.wav")
    rows = [{"audio_filepath": f"audio/{n}", "duration": 0.5, "text": "a tone"} for n in names]
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trace = tmp_path / "trace.txt"
    run = subprocess.run(["strace", "-f", "-qq", "-e", f"trace={STATS}", "-o", str(trace),
                          sys.executable, "-m", "sde.cli", "stats", str(manifest), "--no-cache"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if run.returncode != 0 and "ptrace" in run.stderr:
        pytest.skip(f"strace cannot trace here: {run.stderr.strip()[:200]}")
    assert run.returncode == 0, run.stderr[-2000:]
    called = Counter(m.group(1) for m in re.finditer(rf'"{re.escape(str(audio))}/([^"/]+)"', trace.read_text()))
    return called, run.stderr


def test_each_file_of_a_folder_is_answered_by_one_stat(tmp_path):
    gone = [f"gone_{k}.wav" for k in range(3)]  # few: each gets a stat, no listing
    called, said = _stats_per_file(tmp_path, ["tone.wav", "pipe.wav", *gone])
    assert "3 of 5 audio files are missing" in said, said
    assert "pipe.wav: not a regular file (a named pipe)" in said, said
    assert {n: called[n] for n in ["pipe.wav", *gone]} == {n: 1 for n in ["pipe.wav", *gone]}, called


def test_a_listed_folder_answers_its_missing_files_without_a_stat(tmp_path):
    gone = [f"gone_{k}.wav" for k in range(LIST_AT_LEAST)]  # many: the folder is listed once
    called, said = _stats_per_file(tmp_path, ["tone.wav", "pipe.wav", *gone])
    assert f"{len(gone)} of {len(gone) + 2} audio files are missing" in said, said
    assert "pipe.wav: not a regular file (a named pipe)" in said, said
    assert not any(called[n] for n in gone), called
    assert called["pipe.wav"] == 1, called  # what it is
