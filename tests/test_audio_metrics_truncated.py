"""--estimate-audio-metrics records a truncated WAV's truncation in ``audio_error``, as the player
and speech activity refuse it.

QA: a WAV whose header announces 2.8 s and that holds 0.9 s was refused by ``/audio/ID.wav`` (422),
the signal and the VAD ("truncated file: expected audio up to 2.822 s ..., the file has 0.941 s"),
but its audio metrics had no ``audio_error`` and full levels: ``sde stats --vad
--estimate-audio-metrics`` said "2 utterances unreadable" for the speech hours and "unreadable
audio 1 of 62 utterances" for the metrics. The measures still measure what the file holds, and
the error is the player's own (sde.audio.io.truncation_error, the check a strict read makes).

Real parts: WAV files written with soundfile and cut with their header kept, the real CLI and
server in subprocesses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sde.audio import AudioError, audio_metrics, compute_audio_metrics
from sde.audio.io import read_segment
from tests.test_audio_faults import SdeServer

ROOT = Path(__file__).resolve().parent.parent
SR = 16_000


def _cut_wav(folder: Path, seconds: float = 3.0, kept: float = 1.0 / 3) -> Path:
    """A 16-bit WAV of ``seconds`` whose data is cut to ``kept`` of it, the header kept (it still
    announces every frame)."""
    t = np.arange(int(seconds * SR)) / SR
    full = folder / "full.wav"
    sf.write(full, 0.3 * np.sin(2 * np.pi * 440 * t), SR, subtype="PCM_16")
    raw = full.read_bytes()
    cut = folder / "truncated.wav"
    cut.write_bytes(raw[:44 + int((len(raw) - 44) * kept) // 2 * 2])
    full.unlink()
    return cut


def _players_error(path: Path, offset: float, duration: float) -> str:
    with pytest.raises(AudioError) as refused:
        read_segment(str(path), offset, duration)
    return str(refused.value)


def test_a_truncated_wavs_metrics_carry_the_players_error(tmp_path):
    cut = _cut_wav(tmp_path)
    error = _players_error(cut, 0.0, 3.0)
    assert "truncated file: expected audio up to 3.000 s" in error and "the file has 1.000 s" in error, error
    table = pd.DataFrame({"audio_path": [str(cut), str(cut)], "offset": [0.0, 0.0], "duration": [3.0, 0.5]})
    # workers=1: in this process, each file opened once for its segments (sde.audio.quality._metrics_for_file)
    got = compute_audio_metrics(table, workers=1)
    assert got["audio_error"].iloc[0] == error, got.iloc[0].to_dict()
    # measured as far as the data goes, as before: a second of the sine
    assert got["audio_duration"].iloc[0] == pytest.approx(1.0, abs=1e-3)
    assert got["peak_dbfs"].iloc[0] == pytest.approx(20 * np.log10(0.3), abs=0.1)
    # a segment inside the data that is there plays, and measures without an error
    assert read_segment(str(cut), 0.0, 0.5).duration == pytest.approx(0.5)
    assert pd.isna(got["audio_error"].iloc[1]), got.iloc[1].to_dict()
    # the one-segment reader (audio_metrics, read_channels) says the same
    one = audio_metrics(str(cut), 0.0, 3.0)
    assert one["audio_error"] == error and one["audio_duration"] == pytest.approx(1.0, abs=1e-3)
    assert audio_metrics(str(cut), 0.0, 0.5)["audio_error"] is None


def _manifest(folder: Path) -> tuple[Path, Path]:
    cut = _cut_wav(folder)
    good = folder / "good.wav"
    sf.write(good, 0.1 * np.sin(2 * np.pi * 300 * np.arange(SR) / SR), SR)
    manifest = folder / "m.json"
    manifest.write_text(json.dumps({"audio_filepath": "good.wav", "duration": 1.0, "text": "fine"}) + "\n"
                        + json.dumps({"audio_filepath": "truncated.wav", "duration": 3.0, "text": "cut short"}) + "\n")
    return manifest, cut


def _stats(manifest: Path, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "sde.cli", "stats", str(manifest), "--estimate-audio-metrics",
                           "--no-cache", *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_sde_stats_counts_a_truncated_wav_unreadable_in_the_players_words(tmp_path):
    manifest, cut = _manifest(tmp_path)
    error = _players_error(cut, 0.0, 3.0)
    why = error.removeprefix(f"{cut}: ")
    lines = _stats(manifest).stdout.splitlines()
    assert 'unreadable audio 1 of 2 utterances (1 file), not measured: filter {audio_error} != ""' in lines, lines
    assert f"    {why} (1)" in lines, lines
    assert f"  first: {cut} (utterance 1)" in lines, lines
    # --json: stdout is /api/summary's JSON, the note on stderr says the same count
    js = _stats(manifest, "--json")
    json.loads(js.stdout)
    assert "note: unreadable audio 1 of 2 utterances (1 file)" in js.stderr, js.stderr


def test_the_servers_audio_quality_names_the_truncation_its_player_refuses(tmp_path):
    manifest, _ = _manifest(tmp_path)
    with SdeServer(str(manifest), "--estimate-audio-metrics", "--port", "9013", port_zero=False) as server:
        quality = server.json("/api/audio-quality", status=200)
        status, _, body = server.get("/audio/1.wav")
    assert status == 422, body[:300]
    refused = json.loads(body)
    assert quality["unreadable"]["utterances"] == 1, quality["unreadable"]
    assert quality["measured_utterances"] == 1 and quality["measured_files"] == 1, quality
    example = quality["unreadable"]["examples"][0]
    assert example["id"] == 1 and example["error"] == refused["error"], (example, refused)
