"""`sde transcribe ds/m.json --out preds/` copies each line as written, relative audio paths
included, into a folder where they no longer resolve (sde stats: audio_missing; NeMo: audio not
found), and said nothing. It now prints sde export's note for that case (the same function), whose
--audio-base-path reads the output; merging the output back with --predictions still matches.
`--shard I/N` runs each say it, and `--merge`, which writes the file users go on to read, says it for
the whole merged output (it said nothing).
The real CLI, the tiny real .nemo model of tests/conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nemo.speech_kit import speech_rows, write_jsonl

pytestmark = pytest.mark.nemo

ROOT = str(Path(__file__).resolve().parents[2])


def _sde(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sde.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": ROOT})


def _stats(cwd: Path, *args: str) -> dict:
    r = _sde(cwd, "stats", *args, "--json", "--no-cache")
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@pytest.fixture()
def manifest(audio_dir, tmp_path) -> Path:
    """tmp_path/ds/m.json: two lines naming their audio relative to ds/, one by an absolute path."""
    ds = tmp_path / "ds"
    ds.mkdir()
    rows = speech_rows(audio_dir, ds)[:3]
    for row in rows[:2]:
        row["audio_filepath"] = os.path.relpath(row["audio_filepath"], ds)
    return write_jsonl(ds / "m.json", rows)


def test_an_output_in_another_folder_gets_exports_note_on_relative_audio(manifest, tiny_nemo, tmp_path):
    r = _sde(tmp_path, "transcribe", "ds/m.json", "--model", str(tiny_nemo), "--out", "out/preds/", "--device", "cpu",
             "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    notes = [line for line in r.stderr.splitlines() if line.startswith("note: ")]
    first = json.loads(manifest.read_text().splitlines()[0])["audio_filepath"]
    ds = tmp_path / "ds"
    assert notes == [f"note: 2 transcribed lines name their audio by a path relative to the folder of their manifest "
                     f"(e.g. {first} in ds/m.json), and out/preds/m_tiny_ctc.json is in another "
                     "folder: NeMo and sde read such a path from the manifest's folder, so from there it names "
                     f"another file. Write --out into ds, or read what it wrote with --audio-base-path {ds}"]
    # what the note says: the two relative paths name no file from out/preds/, and its remedy finds them
    assert _stats(tmp_path, "out/preds/m_tiny_ctc.json")["audio_missing"] == 2
    assert _stats(tmp_path, "out/preds/m_tiny_ctc.json", "--audio-base-path", str(ds))["audio_missing"] == 0
    # merged back, every line gets its prediction
    merged = _stats(tmp_path, "ds/m.json", "--predictions", "out/preds/m_tiny_ctc.json")
    assert list(merged["hypotheses"]) == ["pred_text"] and not merged["hypotheses"]["pred_text"].get("missing")
    assert merged["audio_missing"] == 0 and not merged["warnings"]


def test_an_output_beside_the_manifest_gets_no_note(manifest, tiny_nemo, tmp_path):
    r = _sde(tmp_path, "transcribe", "ds/m.json", "--model", str(tiny_nemo), "--out", "ds/preds.json",
             "--device", "cpu", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert not [line for line in r.stderr.splitlines() if line.startswith("note: ")]
    assert _stats(tmp_path, "ds/preds.json")["audio_missing"] == 0


def _notes(r: subprocess.CompletedProcess) -> list[str]:
    assert r.returncode == 0, r.stderr[-2000:]
    return [line for line in r.stderr.splitlines() if line.startswith("note: ")]


def _shards_then_merge(cwd: Path, model: Path, out: str) -> list[str]:
    """Both shards of a 2-way split transcribed, then merged: the merge's notes."""
    common = ("--model", str(model), "--out", out, "--device", "cpu", "--no-progress")
    for i in range(2):
        _notes(_sde(cwd, "transcribe", "ds/m.json", "--shard", f"{i}/2", *common))
    return _notes(_sde(cwd, "transcribe", "ds/m.json", "--merge", *common))


def test_a_merge_into_another_folder_gets_the_note_on_relative_audio(manifest, tiny_nemo, tmp_path):
    notes = _shards_then_merge(tmp_path, tiny_nemo, "out/preds/")
    first = json.loads(manifest.read_text().splitlines()[0])["audio_filepath"]
    assert notes == [f"note: 2 transcribed lines name their audio by a path relative to the folder of their manifest "
                     f"(e.g. {first} in ds/m.json), and out/preds/m_tiny_ctc.json is in another "
                     "folder: NeMo and sde read such a path from the manifest's folder, so from there it names "
                     f"another file. Write --out into ds, or read what it wrote with --audio-base-path {tmp_path / 'ds'}"]
    assert len((tmp_path / "out/preds/m_tiny_ctc.json").read_text().splitlines()) == 3


def test_a_merge_beside_the_manifest_gets_no_note(manifest, tiny_nemo, tmp_path):
    assert _shards_then_merge(tmp_path, tiny_nemo, "ds/preds.json") == []
    assert len((tmp_path / "ds/preds.json").read_text().splitlines()) == 3
