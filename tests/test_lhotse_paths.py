"""Lhotse sources wherever they are named from: a Shar directory named by any path (a subfolder of
where sde runs, an absolute path, with a trailing slash) serves, plays and exports (its cuts files
are read where they are, not below the folder sde runs in, where its server stopped with a
traceback); a recording's relative path is read as lhotse reads it, from the folder sde runs in,
where it names no file beside the manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.browser_kit import sde_server
from tests.test_cache_identity_more import shar_folder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def nested(tmp_path) -> Path:
    """tmp_path/data/shar, sde run from tmp_path/elsewhere."""
    (tmp_path / "data").mkdir()
    folder = shar_folder(tmp_path / "data")
    (tmp_path / "elsewhere").mkdir()
    return folder


# (behaviour, how the folder is named from tmp_path/elsewhere)
NAMES = [
    ("a relative path through another folder", lambda f: os.path.relpath(f, f.parent.parent / "elsewhere")),
    ("an absolute path", str),
    ("an absolute path with a trailing slash", lambda f: str(f) + "/"),
]


@pytest.mark.parametrize("behaviour, name", NAMES, ids=[n[0] for n in NAMES])
def test_a_shar_folder_exports_its_lines_from_anywhere(nested, behaviour, name):
    cwd = nested.parent.parent / "elsewhere"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SDE_CACHE_DIR": str(cwd / "cache")}
    done = subprocess.run([sys.executable, "-m", "sde.cli", "export", name(nested), "-o", "kept.jsonl"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kept = [json.loads(line) for line in (cwd / "kept.jsonl").read_text().splitlines()]
    assert [c["id"] for c in kept] == ["c0", "c1"]


def test_a_shar_folder_in_another_folder_serves_and_plays(nested, tmp_path):
    cwd = tmp_path / "elsewhere"
    with sde_server(os.path.relpath(nested, cwd), "--cache-dir", str(cwd / "cache"), cwd=cwd,
                    no_cache=False) as url:
        summary = json.loads(urllib.request.urlopen(url + "/api/summary").read())
        assert summary["utterances"] == 2
        wav = cwd / "c1.wav"
        wav.write_bytes(urllib.request.urlopen(url + "/audio/1.wav").read())
        assert sf.info(wav).duration == pytest.approx(0.5, abs=0.01)


def _cuts_with_a_relative_recording(root: Path) -> Path:
    """root/wav/a.wav recorded as "wav/a.wav" (Recording.from_file from root, as a recipe run there
    writes it), in root/lh/cuts.jsonl.gz."""
    lhotse = pytest.importorskip("lhotse")
    (root / "wav").mkdir()
    sf.write(root / "wav" / "a.wav", np.zeros(8000, dtype="float32"), 16000)
    here = os.getcwd()
    os.chdir(root)
    try:
        recording = lhotse.Recording.from_file("wav/a.wav", recording_id="r")
    finally:
        os.chdir(here)
    assert recording.sources[0].source == "wav/a.wav"
    supervision = lhotse.SupervisionSegment(id="s", recording_id="r", start=0, duration=0.5, text="hi")
    (root / "lh").mkdir()
    cuts = lhotse.CutSet.from_manifests(recordings=lhotse.RecordingSet.from_recordings([recording]),
                                        supervisions=lhotse.SupervisionSet.from_segments([supervision]))
    cuts.to_file(root / "lh" / "cuts.jsonl.gz")
    return root / "lh" / "cuts.jsonl.gz"


# (behaviour, where sde runs (below tmp_path), a copy of the audio beside the manifest too, the file read)
RELATIVE = [
    ("from the folder sde runs in, as lhotse reads it", ".", False, "wav/a.wav"),
    ("beside the manifest first, as NeMo reads it, where it is there", ".", True, "lh/wav/a.wav"),
    ("from another folder, where neither has it: beside the manifest, missing", "wav", False, "lh/wav/a.wav"),
]


@pytest.mark.parametrize("behaviour, run_in, beside, read", RELATIVE, ids=[r[0] for r in RELATIVE])
def test_a_recordings_relative_path(tmp_path, monkeypatch, behaviour, run_in, beside, read):
    from sde.build.load import load_dataset

    manifest = _cuts_with_a_relative_recording(tmp_path)
    if beside:
        (tmp_path / "lh" / "wav").mkdir()
        sf.write(tmp_path / "lh" / "wav" / "a.wav", np.zeros(4000, dtype="float32"), 16000)
    monkeypatch.chdir(tmp_path / run_in)
    dataset = load_dataset(str(manifest), cache_dir=tmp_path / "cache")
    assert dataset.utterances["audio_path"].tolist() == [str(tmp_path / read)]
