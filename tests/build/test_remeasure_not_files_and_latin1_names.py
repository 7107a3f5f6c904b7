"""The record of audio files' states (sde.build.remeasure) answers as the presence check does: a
named pipe is something there that cannot be read ("unreadable: a named pipe"), not a file gone,
and a pipe removed later is a change; under a Latin-1 locale a file stored under its UTF-8 name is
found, so a rewrite of it is measured again. Both were recorded as "no file": a rewritten
données.wav kept its old measures. Through the real CLI (`sde stats --estimate-audio-metrics`) and
a real cache folder, two or three starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_audio_names_under_a_latin1_locale import _LOCALE_ENV, LOCALE

ROOT = Path(__file__).resolve().parents[2]
SR = 16_000


def _tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)


def _manifest(folder: Path, names: list[str]) -> Path:
    rows = [{"audio_filepath": n, "duration": 0.5, "text": "a tone"} for n in names]
    path = folder / "m.json"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _stats(manifest: Path, env: dict[str, str] | None = None) -> str:
    """stderr of `sde stats --estimate-audio-metrics` with the manifest's own cache folder."""
    env = env or {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--estimate-audio-metrics",
                          "--cache-dir", str(manifest.parent / "cache")],
                         capture_output=True, cwd=ROOT, env=env, timeout=300)
    said = run.stderr.decode("utf-8", "replace")
    assert run.returncode == 0, said[-2000:]
    return said


def test_a_file_become_a_named_pipe_is_unreadable_not_gone_and_its_removal_is_a_change(tmp_path):
    for name in ("tone.wav", "other.wav"):
        sf.write(tmp_path / name, _tone(0.5), SR)
    manifest = _manifest(tmp_path, ["tone.wav", "other.wav"])
    _stats(manifest)
    (tmp_path / "other.wav").unlink()
    os.mkfifo(tmp_path / "other.wav")
    said = _stats(manifest)
    assert "audio measures: 1 of 2 audio files changed since measured (1 unreadable: a named pipe)" in said, said
    assert "gone" not in said and "missing" not in said, said
    (tmp_path / "other.wav").unlink()
    said = _stats(manifest)  # recorded as "no file" too, the pipe's removal went unnoticed
    assert "audio measures: 1 of 2 audio files changed since measured (1 gone)" in said, said


@pytest.mark.skipif(_LOCALE_ENV is None, reason=f"locale {LOCALE} is neither installed nor can be compiled")
def test_a_rewritten_utf8_named_file_is_measured_again_under_a_latin1_locale(tmp_path):
    assert _LOCALE_ENV is not None
    names = ["données.wav", "plain.wav"]
    for name in names:  # stored under UTF-8 bytes, as a UTF-8 system wrote them
        sf.write(os.fsencode(str(tmp_path)) + b"/" + name.encode("utf-8"), _tone(0.5), SR)
    manifest = _manifest(tmp_path, names)
    said = _stats(manifest, _LOCALE_ENV)
    assert "missing" not in said, said
    sf.write(os.fsencode(str(tmp_path)) + b"/" + "données.wav".encode("utf-8"), _tone(0.25, 880.0), SR)
    said = _stats(manifest, _LOCALE_ENV)
    assert "audio measures: 1 of 2 audio files changed since measured; re-measured their 1 utterance" in said, said
