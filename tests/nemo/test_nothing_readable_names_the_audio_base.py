"""A run in which no audio can be read (the usual cause: relative paths resolved against the wrong
folder) stops with the folder they were resolved against and the option that sets it, prints no
throughput line for work that never happened, and leaves no part file with nothing in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sde.nemo.jobs import predictions_for, transcribe_manifest
from sde.nemo.model import TranscribeError
from sde.nemo.parts import part_path

pytestmark = pytest.mark.nemo

REPO = Path(__file__).resolve().parents[2]
SR = 16000


@pytest.fixture()
def manifest(tmp_path) -> Path:
    """Three utterances whose audio paths are relative to the manifest's folder."""
    folder = tmp_path / "data"
    (folder / "audio").mkdir(parents=True)
    rows = []
    for k in range(3):
        sf.write(folder / "audio" / f"a{k}.wav", np.zeros(SR // 2, dtype=np.float32), SR)
        rows.append({"audio_filepath": f"audio/a{k}.wav", "duration": 0.5, "text": f"utterance {k}"})
    m = folder / "m.json"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return m


def test_a_wrong_audio_base_path_is_named_with_the_fix_and_leaves_nothing(manifest, tiny_nemo, tmp_path):
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    out = tmp_path / "preds"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "sde.cli", "transcribe", str(manifest), "--model", str(tiny_nemo),
                        "--out", f"{out}/", "--audio-base-path", str(wrong)],
                       env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"none of the 3 utterances could be read, e.g. {manifest}:" in r.stderr
    assert (f"relative audio paths were resolved against --audio-base-path {wrong}: check it (without it they are "
            f"resolved against the manifest's folder {manifest.parent})") in r.stderr
    assert "Transcribing:" not in r.stderr  # no "3 utt, 10000 utt/s, RTFx 0.0" for nothing transcribed
    assert list(out.iterdir()) == []  # neither an output nor a part file holding only its header


def test_a_manifest_moved_away_from_its_audio_names_its_folder(manifest, tiny_model, tmp_path):
    moved = tmp_path / "m.json"
    moved.write_bytes(manifest.read_bytes())
    out = tmp_path / "o.json"
    with pytest.raises(TranscribeError) as caught:
        transcribe_manifest(moved, tiny_model, out=out, device="cpu", progress=False)
    assert str(caught.value).endswith(f"; relative audio paths are resolved against the manifest's folder {tmp_path}: "
                                      "pass --audio-base-path DIR if the audio is under another folder")
    assert not out.exists() and not part_path(out).exists()


def test_a_run_stopped_before_its_first_batch_leaves_no_part_file(manifest, tiny_model, tmp_path):
    out = tmp_path / "o.json"
    with pytest.raises(TranscribeError, match=r"^transcription stopped after 0 of 3 utterances$"):
        transcribe_manifest(manifest, tiny_model, out=out, device="cpu", progress=False, should_stop=lambda: True)
    assert not part_path(out).exists()  # and the message does not send the user to it


def test_a_datasets_transcription_that_reads_nothing_prints_no_throughput(manifest, tiny_model, tmp_path, capfd):
    from sde.dataset import build_dataset

    moved = tmp_path / "m.json"
    moved.write_bytes(manifest.read_bytes())
    dataset = build_dataset(moved, workers=1)
    capfd.readouterr()
    with pytest.raises(TranscribeError, match="none of the 3 utterances could be read"):
        predictions_for(dataset, tiny_model, device="cpu", use_cache=False, progress=True)
    assert "Transcribing:" not in capfd.readouterr().err
