"""sde.audio.check_file: what cannot even be opened gets a precise reason. A NUL in a path raised
ValueError from os.stat (a traceback from `sde stats --estimate-audio-metrics`), and a pipe or a
device was "zero-byte file (empty, no audio)" (found by exploratory QA)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.audio import AudioError
from sde.audio.io import check_file

ROOT = Path(__file__).resolve().parents[2]


def _fifo(tmp_path: Path) -> str:
    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize("make, reason, words", [
    (lambda d: str(d / "a.wav") + "\x00x", "not_found", "NUL character"),
    (_fifo, "not_a_file", "not a regular file (a pipe, socket or device)"),
    (lambda d: "/dev/zero", "not_a_file", "not a regular file"),
    (lambda d: str(d), "not_a_file", "is a directory"),
    (lambda d: (d / "empty.wav").write_bytes(b"") or str(d / "empty.wav"), "empty", "zero-byte file"),
    (lambda d: str(d / "gone.wav"), "not_found", "file not found"),
], ids=["nul", "fifo", "device", "directory", "empty", "missing"])
def test_what_cannot_be_opened_gets_its_reason(tmp_path, make, reason, words):
    with pytest.raises(AudioError) as exc:
        check_file(make(tmp_path))
    assert exc.value.reason == reason
    assert words in str(exc.value)


def test_audio_metrics_of_a_path_with_a_nul_is_a_note_not_a_traceback(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    lines = [{"audio_filepath": "a.wav", "duration": 1.0, "text": "good"},
             {"audio_filepath": "a.wav\x00x", "duration": 1.0, "text": "nul in the path"}]
    (tmp_path / "m.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(tmp_path / "m.json"), "--no-cache",
                          "--estimate-audio-metrics", "--json"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert json.loads(run.stdout)["utterances"] == 2
